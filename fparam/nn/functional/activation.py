"""Activation functions with torch's formulas, defaults and (sub)gradients at the kinks.

Every function is pure and elementwise (``softmax``/``log_softmax`` reduce over one axis),
works under ``jax.jit``/``jax.grad``/``jax.vmap``, and keeps the input's dtype.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from fparam._random import resolve_key
from fparam.nn import _validation as V
from fparam.nn.functional import _sharding as S
from fparam.nn.functional.shape import _wrap_dim

__all__ = [
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
]

_GELU_APPROXIMATE = "approximate argument must be either none or tanh."
_NOT_A_DTYPE = "softmax/log_softmax: argument 'dtype' must be a dtype, got {dtype!r}"
_IMPLICIT_DIM = (
    "Implicit dimension choice for {name} has been deprecated. Change the call to include "
    "dim=X as an argument."
)


def relu(input: jax.Array) -> jax.Array:
    """``max(input, 0)``, like ``torch.nn.functional.relu``.

    The gradient at 0 is 0, as in torch (``jax.nn.relu``'s convention).

    **Arguments:**

    - `input`: any array.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("relu()", "input", input)
    return jax.nn.relu(input)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``input`` where ``input > 0``, else ``negative_slope * input``, like torch.

    At exactly 0 the gradient is ``negative_slope``, as in torch (``jax.nn.leaky_relu`` uses 1).

    **Arguments:**

    - `input`: a floating array.
    - `negative_slope`: the slope for negative inputs (default 0.01, torch's).

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("leaky_relu()", "input", input)
    V.check_number("leaky_relu()", "negative_slope", negative_slope)
    input = jnp.asarray(input)
    return jnp.where(input > 0, input, input * negative_slope)


def elu(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``input`` where ``input > 0``, else ``alpha * (exp(input) - 1)``, like torch.

    **Arguments:**

    - `input`: a floating array.
    - `alpha`: the saturation value for negative inputs (default 1.0). The gradient at 0 is
      ``alpha``, as in torch.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("elu()", "input", input)
    V.check_number("elu()", "alpha", alpha)
    input = jnp.asarray(input)
    positive = input > 0
    # The inner `where` keeps expm1 finite on the unused branch, so its gradient stays clean.
    negative = alpha * jnp.expm1(jnp.where(positive, 0, input))
    return jnp.where(positive, input, negative)


def gelu(input: jax.Array, approximate: str = "none") -> jax.Array:
    """Gaussian Error Linear Unit, like ``torch.nn.functional.gelu``.

    ``'none'``: ``x * Φ(x) = x/2 * (1 + erf(x/√2))``. ``'tanh'``:
    ``x/2 * (1 + tanh(√(2/π) * (x + 0.044715 x³)))``.

    **Arguments:**

    - `input`: a floating array.
    - `approximate`: ``'none'`` (exact, torch's default) or ``'tanh'``; anything else raises
      torch's ``RuntimeError``.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("gelu()", "input", input)
    if not isinstance(approximate, str):  # torch's TypeError
        V.check_str_choice("gelu()", "approximate", approximate, ("none", "tanh"), RuntimeError)
    if approximate not in ("none", "tanh"):
        raise RuntimeError(_GELU_APPROXIMATE)
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def silu(input: jax.Array) -> jax.Array:
    """``input * sigmoid(input)`` (swish), like ``torch.nn.functional.silu``.

    **Arguments:**

    - `input`: a floating array.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("silu()", "input", input)
    return jax.nn.silu(input)


def sigmoid(input: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-input))``, like ``torch.sigmoid``.

    **Arguments:**

    - `input`: a floating array.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("sigmoid()", "input", input)
    return jax.nn.sigmoid(input)


def tanh(input: jax.Array) -> jax.Array:
    """Hyperbolic tangent, like ``torch.tanh``.

    **Arguments:**

    - `input`: a floating array.

    **Returns:**

    An array of the same shape and dtype.
    """
    V.check_array("tanh()", "input", input)
    return jnp.tanh(input)


def _softmax_dim(name: str, ndim: int, dim: int | None) -> int:
    dim = V.check_optional_int(f"{name}()", "dim", dim)
    if dim is None:
        # torch's legacy `_get_softmax_dim` rule, with its deprecation warning.
        warnings.warn(_IMPLICIT_DIM.format(name=name), UserWarning, stacklevel=3)
        dim = 0 if ndim in (0, 1, 3) else 1
    return _wrap_dim(dim, ndim)


def _prepare(input: jax.Array, dtype: DTypeLike | None) -> jax.Array:
    input = jnp.asarray(input)
    if dtype is None:
        return input
    if type(dtype).__module__ == "torch":  # torch.float32 -> "float32", torch never imported
        dtype = str(dtype).removeprefix("torch.")
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(_NOT_A_DTYPE.format(dtype=dtype)) from None
    return input.astype(dtype)


def softmax(input: jax.Array, dim: int | None = None, dtype: DTypeLike | None = None) -> jax.Array:
    """``exp(x) / sum(exp(x), dim)``, like ``torch.nn.functional.softmax``.

    **Arguments:**

    - `input`: a floating array (a 0-d input gives 1).
    - `dim`: the axis to normalise over. Pass it: ``None`` applies torch's deprecated implicit
      rule (axis 0 for 0-, 1- and 3-d inputs, else axis 1) with torch's warning.
    - `dtype`: if given, the input is cast to it first (torch's ``dtype=``).

    **Returns:**

    An array of the input's shape whose slices along ``dim`` sum to 1.
    """
    V.check_array("softmax()", "input", input)
    input = _prepare(input, dtype)
    axis = _softmax_dim("softmax", input.ndim, dim)
    if input.ndim == 0:
        return jax.nn.softmax(input.reshape(1), axis=0).reshape(())
    return jax.nn.softmax(input, axis=axis)


def log_softmax(
    input: jax.Array, dim: int | None = None, dtype: DTypeLike | None = None
) -> jax.Array:
    """``x - logsumexp(x, dim)``, like ``torch.nn.functional.log_softmax`` (numerically stable).

    **Arguments:**

    - `input`: a floating array (a 0-d input gives 0).
    - `dim`: the axis to normalise over; ``None`` applies torch's deprecated implicit rule with
      its warning (see `softmax`).
    - `dtype`: if given, the input is cast to it first.

    **Returns:**

    An array of the input's shape.
    """
    V.check_array("log_softmax()", "input", input)
    input = _prepare(input, dtype)
    axis = _softmax_dim("log_softmax", input.ndim, dim)
    if input.ndim == 0:
        return jax.nn.log_softmax(input.reshape(1), axis=0).reshape(())
    return jax.nn.log_softmax(input, axis=axis)


# --------------------------------------------------------------------------------------------
# More activations (torch's ``F.relu6`` ... ``F.gumbel_softmax``) and the in-place spellings.
# Gradients at the kinks are torch's (its ``*_backward`` kernels); each formula below picks
# its branches with the same comparisons, so autodiff lands on the same side.

__all__ += [
    "celu",
    "celu_",
    "elu_",
    "glu",
    "gumbel_softmax",
    "hardshrink",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "hardtanh_",
    "leaky_relu_",
    "logsigmoid",
    "mish",
    "prelu",
    "relu6",
    "relu_",
    "rrelu",
    "rrelu_",
    "selu",
    "softmin",
    "softplus",
    "softshrink",
    "softsign",
    "tanhshrink",
    "threshold",
    "threshold_",
]

_HARDTANH_BOUNDS = "min_val cannot be greater than max_val"
_CELU_ZERO = "ZeroDivisionError: alpha cannot be 0 for CELU"
_GLU_SCALAR = "glu does not support scalars because halving size must be even"
_GLU_ODD = "Halving dimension must be even, but dimension {dim} is size {size}"
_SOFTSHRINK_LAMBD = (
    "lambda must be in range [0, 3.40282e+38] for input dtype Float, but found {lambd:g}"
)
_RRELU_BOUNDS = "Lower bound should be less than or equal to the upper bound"
_PRELU_ZERO_DIM = "Not allow zero-dim input tensor."
_PRELU_CHANNELS = (
    "Mismatch of parameter numbers and input channel size. Found parameter numbers = {n} and "
    "channel size = {channels}."
)
_GUMBEL_EPS = "`eps` parameter is deprecated and has no effect."
_NOT_FLOATING_INPUT = "{name}(): expected a floating point input, got dtype {dtype} (torch: not implemented for '{torch}')"

# SELU's constants, as in ATen.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _floating(name: str, input: jax.Array) -> jax.Array:
    """``input`` as a JAX array, refusing integer dtypes as torch's CPU kernels do."""
    input = jnp.asarray(input)
    if not jnp.issubdtype(input.dtype, jnp.inexact):
        torch_name = {"int64": "Long", "int32": "Int", "bool": "Bool"}.get(
            str(input.dtype), str(input.dtype)
        )
        raise NotImplementedError(
            _NOT_FLOATING_INPUT.format(name=name, dtype=input.dtype, torch=torch_name)
        )
    return input


def hardtanh(
    input: jax.Array, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> jax.Array:
    """``clip(input, min_val, max_val)``, like ``torch.nn.functional.hardtanh``.

    The gradient is 1 strictly inside ``(min_val, max_val)`` and 0 elsewhere, boundaries
    included, as torch's ``hardtanh_backward``.

    **Arguments:**

    - `input`: an array.
    - `min_val`, `max_val`: the bounds (``ValueError`` when ``min_val > max_val``, as torch).
    - `inplace`: accepted for torch compatibility; JAX arrays are immutable, so a new array is
      returned either way.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("hardtanh()", "input", input)
    V.check_number("hardtanh()", "min_val", min_val)
    V.check_number("hardtanh()", "max_val", max_val)
    if min_val > max_val:
        raise ValueError(_HARDTANH_BOUNDS)
    input = jnp.asarray(input)
    lo = jnp.asarray(min_val, input.dtype)
    hi = jnp.asarray(max_val, input.dtype)
    return jnp.where(input <= lo, lo, jnp.where(input >= hi, hi, input))


def relu6(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``min(max(0, input), 6)``: torch's ``relu6`` is ``hardtanh(input, 0, 6)``, so the
    gradient is 0 at exactly 0 and 6.

    **Arguments:** `input`: an array; `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("relu6()", "input", input)
    return hardtanh(input, 0.0, 6.0)


def selu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``scale * (max(0, x) + min(0, alpha * (exp(x) - 1)))`` with torch's constants
    (``alpha = 1.6733``, ``scale = 1.0507``); the gradient at 0 is ``scale * alpha``.

    **Arguments:** `input`: a floating array; `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("selu()", "input", input)
    return _SELU_SCALE * elu(input, _SELU_ALPHA)


def celu(input: jax.Array, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``, like torch (the gradient at 0 is 1).

    **Arguments:**

    - `input`: a floating array.
    - `alpha`: the saturation value; 0 raises torch's ``RuntimeError``.
    - `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("celu()", "input", input)
    V.check_number("celu()", "alpha", alpha)
    if isinstance(alpha, (int, float)) and alpha == 0:
        raise RuntimeError(_CELU_ZERO)
    input = jnp.asarray(input)
    positive = input > 0
    negative = alpha * jnp.expm1(jnp.where(positive, 0, input) / alpha)
    return jnp.where(positive, input, negative)


def glu(input: jax.Array, dim: int = -1) -> jax.Array:
    """Gated linear unit: ``a * sigmoid(b)`` where ``a, b`` are the two halves of ``input``
    along ``dim``, like ``torch.nn.functional.glu``.

    **Arguments:**

    - `input`: a floating array whose size along ``dim`` is even (``RuntimeError`` otherwise,
      and for a 0-d input, as torch).
    - `dim`: the axis to split (``IndexError`` when out of range).

    **Returns:** an array with half the size along ``dim``.
    """
    V.check_array("glu()", "input", input)
    dim = V.check_int("glu()", "dim", dim)
    input = jnp.asarray(input)
    if input.ndim == 0:
        raise RuntimeError(_GLU_SCALAR)
    axis = _wrap_dim(dim, input.ndim)
    size = input.shape[axis]
    if size % 2:
        raise RuntimeError(_GLU_ODD.format(dim=axis, size=size))
    a, b = jnp.split(input, 2, axis=axis)
    return a * jax.nn.sigmoid(b)


def hardswish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``x * relu6(x + 3) / 6``, like torch; the gradient is 0 up to -3 (included),
    ``x / 3 + 0.5`` strictly between -3 and 3, and 1 from 3 on, as torch's
    ``hardswish_backward``.

    **Arguments:** `input`: a floating array; `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("hardswish()", "input", input)
    input = _floating("hardswish", input)
    middle = input * (input + 3) / 6
    return jnp.where(input <= -3, jnp.zeros_like(input), jnp.where(input < 3, middle, input))


def hardsigmoid(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``relu6(x + 3) / 6``, like torch; the gradient is ``1/6`` strictly inside ``(-3, 3)``
    and 0 elsewhere.

    **Arguments:** `input`: a floating array; `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("hardsigmoid()", "input", input)
    input = _floating("hardsigmoid", input)
    inside = (input > -3) & (input < 3)
    outside = jnp.where(input >= 3, jnp.ones_like(input), jnp.zeros_like(input))
    return jnp.where(inside, input / 6 + 0.5, outside)


def hardshrink(input: jax.Array, lambd: float = 0.5) -> jax.Array:
    """``x`` where ``|x| > lambd``, else 0, like torch (gradient 0 at ``±lambd``).

    **Arguments:** `input`: an array; `lambd`: the threshold (default 0.5).

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("hardshrink()", "input", input)
    V.check_number("hardshrink()", "lambd", lambd)
    input = jnp.asarray(input)
    keep = (input > lambd) | (input < -lambd)
    return jnp.where(keep, input, jnp.zeros_like(input))


def softshrink(input: jax.Array, lambd: float = 0.5) -> jax.Array:
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0, like torch
    (gradient 0 at ``±lambd``).

    **Arguments:**

    - `input`: a floating array.
    - `lambd`: the threshold, ``>= 0`` (``RuntimeError`` otherwise, as torch).

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("softshrink()", "input", input)
    V.check_number("softshrink()", "lambd", lambd)
    if isinstance(lambd, (int, float)) and lambd < 0:
        raise RuntimeError(_SOFTSHRINK_LAMBD.format(lambd=lambd))
    input = jnp.asarray(input)
    shrunk = jnp.where(input > lambd, input - lambd, input + lambd)
    return jnp.where((input > lambd) | (input < -lambd), shrunk, jnp.zeros_like(input))


def tanhshrink(input: jax.Array) -> jax.Array:
    """``x - tanh(x)``, like ``torch.nn.functional.tanhshrink``.

    **Arguments:** `input`: a floating array. **Returns:** an array of the same shape and dtype.
    """
    V.check_array("tanhshrink()", "input", input)
    input = jnp.asarray(input)
    return input - jnp.tanh(input)


def threshold(input: jax.Array, threshold: float, value: float, inplace: bool = False) -> jax.Array:
    """``x`` where ``x > threshold``, else ``value``, like torch (gradient 0 at and below
    ``threshold``).

    **Arguments:**

    - `input`: an array.
    - `threshold`: the value to threshold at.
    - `value`: what replaces the elements at or below ``threshold``.
    - `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("threshold()", "input", input)
    V.check_number("threshold()", "threshold", threshold)
    V.check_number("threshold()", "value", value)
    input = jnp.asarray(input)
    return jnp.where(input > threshold, input, jnp.asarray(value, input.dtype))


_threshold = threshold  # for `threshold_`, whose argument shadows the name


def softmin(
    input: jax.Array,
    dim: int | None = None,
    _stacklevel: int = 3,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """``softmax(-input, dim)``, like ``torch.nn.functional.softmin``.

    **Arguments:** as :func:`softmax` (``dim=None`` applies torch's deprecated implicit rule,
    with its warning naming ``softmin``). ``_stacklevel`` is accepted for torch compatibility.

    **Returns:** an array of the input's shape whose slices along ``dim`` sum to 1.
    """
    V.check_array("softmin()", "input", input)
    input = _prepare(input, dtype)
    axis = _softmax_dim("softmin", input.ndim, dim)
    if input.ndim == 0:
        return jax.nn.softmax(-input.reshape(1), axis=0).reshape(())
    return jax.nn.softmax(-input, axis=axis)


def logsigmoid(input: jax.Array) -> jax.Array:
    """``log(sigmoid(x)) = -softplus(-x)``, computed stably, like torch.

    **Arguments:** `input`: a floating array. **Returns:** an array of the same shape and dtype.
    """
    V.check_array("logsigmoid()", "input", input)
    return jax.nn.log_sigmoid(_floating("log_sigmoid", input))


def softplus(input: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``, like
    torch (the gradient switches to 1 on the same side of ``threshold``).

    **Arguments:**

    - `input`: a floating array.
    - `beta`: the sharpness (default 1).
    - `threshold`: above ``beta * x > threshold`` the function is linear (default 20).

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("softplus()", "input", input)
    V.check_number("softplus()", "beta", beta)
    V.check_number("softplus()", "threshold", threshold)
    input = _floating("softplus", input)
    scaled = input * beta
    linear = scaled > threshold
    # The inner `where` keeps exp finite on the unused branch, so its gradient stays clean.
    safe = jnp.where(linear, jnp.zeros_like(scaled), scaled)
    return jnp.where(linear, input, jnp.log1p(jnp.exp(safe)) / beta)


def softsign(input: jax.Array) -> jax.Array:
    """``x / (1 + |x|)``, like torch.

    **Arguments:** `input`: a floating array. **Returns:** an array of the same shape and dtype.
    """
    V.check_array("softsign()", "input", input)
    input = jnp.asarray(input)
    return input / (jnp.abs(input) + 1)


def mish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``x * tanh(softplus(x))``, like torch.

    **Arguments:** `input`: a floating array; `inplace`: accepted, no effect.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("mish()", "input", input)
    input = _floating("mish", input)
    return input * jnp.tanh(jax.nn.softplus(input))


def prelu(input: jax.Array, weight: jax.Array) -> jax.Array:
    """``x`` where ``x > 0``, else ``weight * x`` with one learnt slope per channel, like torch.

    The channel axis is axis 1; inputs of fewer than 2 dimensions have one channel. ``weight``
    holds 1 slope (shared) or one per channel (``RuntimeError`` otherwise, as torch). At 0 the
    input gradient is ``weight``, as torch's ``prelu`` backward.

    **Arguments:**

    - `input`: a floating array.
    - `weight`: a 1-D (or 0-d) array of slopes.

    **Returns:** an array of the input's shape and dtype.
    """
    V.check_array("prelu()", "input", input)
    V.check_array("prelu()", "weight", weight)
    input = jnp.asarray(input)
    weight = jnp.asarray(weight)
    n = weight.size
    if n != 1:
        if input.ndim == 0:
            raise RuntimeError(_PRELU_ZERO_DIM)
        channels = input.shape[1] if input.ndim >= 2 else 1
        if n != channels:
            raise RuntimeError(_PRELU_CHANNELS.format(n=n, channels=channels))
        slope = weight.reshape((1, n) + (1,) * (input.ndim - 2)) if input.ndim >= 2 else weight
    else:
        slope = weight.reshape(())
    return jnp.where(input > 0, input, S.against(slope, input) * input)


def rrelu(
    input: jax.Array,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Randomized leaky ReLU, like ``torch.nn.functional.rrelu``.

    In training mode each non-positive element is multiplied by its own slope drawn from
    ``U(lower, upper)`` (the gradient there is that slope); in eval mode the slope is
    ``(lower + upper) / 2`` (a leaky ReLU). Positive elements pass unchanged.

    **Arguments:**

    - `input`: a floating array.
    - `lower`, `upper`: the slope range (``RuntimeError`` when ``lower > upper`` in training
      mode, as torch).
    - `training`: draw random slopes (torch's default for the function is ``False``).
    - `inplace`: accepted, no effect.
    - `key`: a JAX key for the slopes; ``None`` draws one from fparam's key stream (eagerly),
      or the key in scope of ``with fparam.rng(key):`` inside a transformation.

    **Returns:** an array of the same shape and dtype.
    """
    V.check_array("rrelu()", "input", input)
    V.check_number("rrelu()", "lower", lower)
    V.check_number("rrelu()", "upper", upper)
    input = _floating("rrelu", input)
    if not training:
        return leaky_relu(input, (lower + upper) / 2)
    if lower > upper:
        raise RuntimeError(_RRELU_BOUNDS)
    if input.size == 0:
        return input
    slope = jax.random.uniform(
        resolve_key(key, "an RReLU in training mode (F.rrelu)"),
        input.shape,
        input.dtype,
        minval=lower,
        maxval=upper,
    )
    return jnp.where(input > 0, input, input * slope)


def gumbel_softmax(
    logits: jax.Array,
    tau: float = 1,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Samples from the Gumbel-softmax distribution, like torch.

    ``softmax((logits + g) / tau, dim)`` with ``g ~ Gumbel(0, 1)``; with ``hard=True`` the
    result is the one-hot of its argmax in the forward pass and the soft sample's gradient in
    the backward pass (straight-through), as torch.

    **Arguments:**

    - `logits`: unnormalised log-probabilities.
    - `tau`: the temperature.
    - `hard`: return one-hot samples (straight-through gradient).
    - `eps`: deprecated and ignored (torch's warning when changed).
    - `dim`: the axis of the categories.
    - `key`: a JAX key for the noise; ``None`` draws one from fparam's key stream (the key in
      scope of ``fparam.rng`` inside a transformation).

    **Returns:** an array of the logits' shape.
    """
    V.check_array("gumbel_softmax()", "logits", logits)
    dim = V.check_int("gumbel_softmax()", "dim", dim)
    if eps != 1e-10:
        warnings.warn(_GUMBEL_EPS, UserWarning, stacklevel=2)
    logits = _floating("gumbel_softmax", logits)
    axis = _wrap_dim(dim, logits.ndim)
    gumbels = jax.random.gumbel(resolve_key(key, "F.gumbel_softmax"), logits.shape, logits.dtype)
    if logits.ndim == 0:
        return jnp.ones_like(logits)
    y_soft = jax.nn.softmax((logits + gumbels) / tau, axis=axis)
    if not hard:
        return y_soft
    index = jnp.argmax(y_soft, axis=axis, keepdims=True)
    positions = jax.lax.broadcasted_iota(jnp.int32, y_soft.shape, axis)
    y_hard = (positions == index).astype(y_soft.dtype)
    return y_hard - jax.lax.stop_gradient(y_soft) + y_soft


# torch's in-place spellings. JAX arrays are immutable: each returns a new array, exactly as
# the out-of-place function does (assign the result: ``x = F.relu_(x)``).


def relu_(input: jax.Array) -> jax.Array:
    """Out-of-place alias of :func:`relu` (torch's ``relu_``; JAX arrays are immutable)."""
    return relu(input)


def elu_(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Out-of-place alias of :func:`elu` (torch's ``elu_``; JAX arrays are immutable)."""
    return elu(input, alpha)


def leaky_relu_(input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Out-of-place alias of :func:`leaky_relu` (torch's ``leaky_relu_``)."""
    return leaky_relu(input, negative_slope)


def hardtanh_(input: jax.Array, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """Out-of-place alias of :func:`hardtanh` (torch's ``hardtanh_``)."""
    return hardtanh(input, min_val, max_val)


def celu_(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Out-of-place alias of :func:`celu` (torch's ``celu_``)."""
    return celu(input, alpha)


def rrelu_(
    input: jax.Array,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Out-of-place alias of :func:`rrelu` (torch's ``rrelu_``)."""
    return rrelu(input, lower, upper, training, key=key)


def threshold_(input: jax.Array, threshold: float, value: float) -> jax.Array:
    """Out-of-place alias of :func:`threshold` (torch's ``threshold_``)."""
    return _threshold(input, threshold, value)
