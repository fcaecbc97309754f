"""Activation functions with torch's formulas, defaults and (sub)gradients at the kinks.

Every function is pure and elementwise (``softmax``/``log_softmax`` reduce over one axis),
works under ``jax.jit``/``jax.grad``/``jax.vmap``, and keeps the input's dtype.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from fparam.nn import _validation as V
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
