"""torch's ``nn.init`` functions, functional and driven by JAX keys.

Calling convention
------------------
Every initializer keeps torch's name and positional arguments, and adds a keyword-only ``key``::

    w = init.kaiming_uniform_(w, a=math.sqrt(5), key=key)
    b = init.uniform_(b, -bound, bound, key=key)
    w = init.xavier_normal_((out_features, in_features), key=key)   # a shape works too

- The first argument describes the result: an existing array (its **shape and dtype** are used,
  its values ignored), a ``jax.ShapeDtypeStruct``, or a shape tuple (dtype: ``dtype=``, else
  JAX's default float, float32 unless x64 is on). ``dtype=`` overrides the array's dtype.
- JAX arrays are immutable: each function **returns a new array** (``w = init.normal_(w,
  key=k)``). Given a module's parameter or buffer (``m.weight``, or a handle from
  ``parameters()``), it also stores the new values in that module, outside transformations, so
  torch's statement form ``init.normal_(m.weight, 0.0, 0.02)`` works as in torch.
- ``key`` is a JAX key (``jax.random.key`` or a legacy ``PRNGKey``). ``key=None`` draws the
  next key from fparam's default stream (``fparam.manual_seed`` resets it), like torch's global
  generator. Functions that draw nothing (``constant_``, ``zeros_``, ``ones_``) take no key.
- Distributions, bounds, fans, gains, warnings and errors are torch's; the random numbers are
  not torch's, so values are never bit-equal to torch's.
- Eagerly, with a concrete key, the values are drawn on the host by NumPy (PCG64 seeded from
  the key's data) and transferred once: nothing is compiled, so building a model costs what
  drawing its numbers costs. Inside a trace (``jax.eval_shape``, ``jit``, ``vmap`` over keys)
  they are drawn by ``jax.random``: same distributions, other values (see ``fparam._random``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from fparam import _random
from fparam._module import write_back

__all__ = [
    "calculate_gain",
    "constant_",
    "default_uniform_bound",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

ArrayOrShape = Any
"""An array, a ``jax.ShapeDtypeStruct`` (anything with ``.shape`` and ``.dtype``) or a shape."""

_UNSUPPORTED_NONLINEARITY = "Unsupported nonlinearity {nonlinearity}"
_BAD_SLOPE = "negative_slope {param} not a valid number"
_FAN_DIMS = "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
_BAD_MODE = "Mode {mode} not supported, please use one of {valid}"
_ZERO_ELEMENTS = "Initializing zero-element tensors is a no-op"
_TRUNC_MEAN = (
    "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
    "The distribution of values may be incorrect."
)
_ORTHOGONAL_DIMS = "Only tensors with 2 or more dimensions are supported"
_NOT_FLOATING = "{fn} draws random floats and needs a floating dtype, got {dtype}"

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


# --------------------------------------------------------------------------------------------
# Shapes, fans and gains


_Init = TypeVar("_Init", bound=Callable[..., jax.Array])


def _in_place(fn: _Init) -> _Init:
    """torch's statement form: ``nn.init.normal_(m.weight, 0.0, 0.02)`` re-initialises the
    module's parameter (outside transformations) as well as returning the new array; see
    ``fparam._module.write_back`` for what counts as a module's parameter."""

    @functools.wraps(fn)
    def init(tensor: ArrayOrShape, *args: Any, **kwargs: Any) -> jax.Array:
        result = fn(tensor, *args, **kwargs)
        write_back(tensor, result)
        return result

    return init  # type: ignore[return-value]


def _shape_dtype(tensor: ArrayOrShape, dtype: DTypeLike | None) -> tuple[tuple[int, ...], Any]:
    """The ``(shape, dtype)`` an initializer produces for ``tensor`` (see the module docstring)."""
    if hasattr(tensor, "shape") and hasattr(tensor, "dtype"):
        shape = tuple(int(s) for s in tensor.shape)
        return shape, np.dtype(tensor.dtype if dtype is None else dtype)
    if isinstance(tensor, int):
        shape = (tensor,)
    else:
        shape = tuple(int(s) for s in tensor)
    return shape, np.dtype(jnp.result_type(float) if dtype is None else dtype)


def _shape(tensor: ArrayOrShape) -> tuple[int, ...]:
    if hasattr(tensor, "shape"):
        return tuple(int(s) for s in tensor.shape)
    if isinstance(tensor, int):
        return (tensor,)
    return tuple(int(s) for s in tensor)


def _float_dtype(
    fn: str, tensor: ArrayOrShape, dtype: DTypeLike | None
) -> tuple[tuple[int, ...], Any]:
    shape, dt = _shape_dtype(tensor, dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(_NOT_FLOATING.format(fn=fn, dtype=dt))
    return shape, dt


def _unchanged(tensor: ArrayOrShape, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """The result of a torch no-op on an empty tensor: the input itself, or an empty array."""
    if isinstance(tensor, jax.Array) and tensor.dtype == dtype:
        return tensor
    return _filled(shape, 0, dtype)


def _filled(shape: tuple[int, ...], value: Any, dtype: Any) -> jax.Array:
    """A constant array: made on the host and transferred eagerly (``jnp.full`` compiles per
    shape), with ``jnp.full`` inside a trace (where it costs nothing and allocates nothing)."""
    if _random.in_trace():
        return jnp.full(shape, value, dtype=dtype)
    return jax.device_put(np.full(shape, value, dtype=dtype))


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Return torch's recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``).

    ``linear``, ``conv*``, ``conv_transpose*``, ``sigmoid``: 1; ``tanh``: 5/3; ``relu``: √2;
    ``leaky_relu``: √(2 / (1 + slope²)) with ``slope = param`` (default 0.01); ``selu``: 3/4.

    **Arguments:**

    - `nonlinearity`: the ``nn.functional`` name of the nonlinearity.
    - `param`: the negative slope for ``leaky_relu`` (an int or float, not a bool).

    **Returns:**

    The gain, a Python number (the int ``1`` for the linear family, as in torch). Unknown names
    raise ``ValueError: Unsupported nonlinearity ...``; a bad slope raises ``ValueError``.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope: float = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            negative_slope = param
        else:
            raise ValueError(_BAD_SLOPE.format(param=param))
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(_UNSUPPORTED_NONLINEARITY.format(nonlinearity=nonlinearity))


def _calculate_fan_in_and_fan_out(tensor: ArrayOrShape) -> tuple[int, int]:
    """torch's fans: ``fan_in = shape[1] * receptive``, ``fan_out = shape[0] * receptive``.

    ``receptive`` is the product of ``shape[2:]`` (1 for a matrix). This matches torch's weight
    layouts: ``(out, in)`` for Linear, ``(out, in/groups, *k)`` for Conv and ``(in, out/groups,
    *k)`` for ConvTranspose (whose "fan_in" is therefore ``out/groups * prod(k)``, as in torch).

    **Arguments:**

    - `tensor`: an array or a shape, with at least 2 dimensions (else ``ValueError``).

    **Returns:**

    ``(fan_in, fan_out)`` as Python ints.
    """
    shape = _shape(tensor)
    if len(shape) < 2:
        raise ValueError(_FAN_DIMS)
    receptive_field_size = math.prod(shape[2:])
    return shape[1] * receptive_field_size, shape[0] * receptive_field_size


def _calculate_correct_fan(tensor: ArrayOrShape, mode: str) -> int:
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(_BAD_MODE.format(mode=mode, valid=valid_modes))
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def default_uniform_bound(fan_in: int) -> float:
    """The bound ``1 / √fan_in`` of torch's default Linear/Conv init (0 when ``fan_in`` is 0).

    torch's ``reset_parameters`` draws the weight with ``kaiming_uniform_(w, a=√5)``, whose bound
    is exactly this, and the bias from ``U(-bound, bound)``.

    **Arguments:**

    - `fan_in`: the layer's fan-in (``_calculate_fan_in_and_fan_out(weight)[0]``).

    **Returns:**

    The bound as a Python float.
    """
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Constant fills


@_in_place
def constant_(tensor: ArrayOrShape, val: float, *, dtype: DTypeLike | None = None) -> jax.Array:
    """A new array of ``tensor``'s shape and dtype filled with ``val`` (``torch.nn.init.constant_``).

    **Arguments:**

    - `tensor`: an array or a shape (see the module docstring).
    - `val`: the fill value.
    - `dtype`: overrides the dtype.

    **Returns:**

    The filled array.
    """
    shape, dt = _shape_dtype(tensor, dtype)
    return _filled(shape, val, dt)


@_in_place
def zeros_(tensor: ArrayOrShape, *, dtype: DTypeLike | None = None) -> jax.Array:
    """A new array of zeros shaped like ``tensor`` (``torch.nn.init.zeros_``).

    **Arguments:**

    - `tensor`: an array or a shape.
    - `dtype`: overrides the dtype.

    **Returns:**

    The zero array.
    """
    shape, dt = _shape_dtype(tensor, dtype)
    return _filled(shape, 0, dt)


@_in_place
def ones_(tensor: ArrayOrShape, *, dtype: DTypeLike | None = None) -> jax.Array:
    """A new array of ones shaped like ``tensor`` (``torch.nn.init.ones_``).

    **Arguments:**

    - `tensor`: an array or a shape.
    - `dtype`: overrides the dtype.

    **Returns:**

    The array of ones.
    """
    shape, dt = _shape_dtype(tensor, dtype)
    return _filled(shape, 1, dt)


# --------------------------------------------------------------------------------------------
# Sampling: on the host for a concrete key, with jax.random inside a trace


_ALIGN = 64


def _aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data is 64-byte aligned.

    On the CPU backend ``jax.device_put`` adopts such a buffer without copying (measured: 0.7
    ms instead of 45-150 ms for ResNet-18's 47 MB); NumPy's own allocations are only 16-byte
    aligned, so they are copied. The array must not be used after it is handed to JAX.
    """
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    offset = -raw.ctypes.data % _ALIGN
    return raw[offset : offset + nbytes].view(dt).reshape(shape)


def _host_uniform(gen: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``U[0, 1)`` in ``dtype``: never 1, even after rounding to a narrow dtype."""
    if dtype in (np.float32, np.float64):
        return gen.random(shape, dtype=dtype, out=_aligned_empty(shape, dtype))
    # Multiples of 2^-nmant are exact in ``dtype`` (JAX's uniform uses the same grid), whereas
    # a float32 draw rounded to bfloat16 could round up to 1.
    nmant = int(jnp.finfo(dtype).nmant)
    ints = gen.integers(0, 1 << nmant, size=shape, dtype=np.int64)
    return (ints * (2.0**-nmant)).astype(dtype)


def _host_normal(gen: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if dtype in (np.float32, np.float64):
        return gen.standard_normal(shape, dtype=dtype, out=_aligned_empty(shape, dtype))
    return gen.standard_normal(shape, dtype=np.float32).astype(dtype)


def _standard(kind: str, key: jax.Array | None, shape: tuple[int, ...], dtype: Any) -> Any:
    """``U[0, 1)`` or ``N(0, 1)`` draws of ``shape``: a NumPy array, or a traced JAX array.

    Eagerly with a concrete key (the common case: building a model) the values are drawn on
    the host by a NumPy generator seeded from the key's data, so building a model compiles
    nothing (one XLA compilation per shape or size bucket cost seconds for a ResNet); the caller
    moves the result to the device in one transfer. Inside a trace, or with a traced key,
    ``jax.random`` draws them, so ``jax.eval_shape`` allocates nothing and ``jit``/``vmap``
    over keys work. The two paths give the same distribution but different values for the
    same key (see ``fparam._random``).
    """
    key = _random.init_key(key)
    gen = _random.host_generator(key)
    if gen is not None:
        if kind == "uniform":
            return _host_uniform(gen, shape, np.dtype(dtype))
        return _host_normal(gen, shape, np.dtype(dtype))
    key = _random.as_jax_key(key)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype)
    return jax.random.normal(key, shape, dtype)


def _to_device(array: np.ndarray) -> jax.Array:
    """One host-to-device transfer (none on the CPU backend for an array from `_aligned_empty`);
    ``jnp.asarray`` would compile a copy kernel per shape."""
    return jax.device_put(array)


def _scaled(sample: Any, scale: float, shift: float, dtype: Any) -> jax.Array:
    """``shift + scale * sample`` in ``dtype``, computed where the sample lives."""
    if isinstance(sample, np.ndarray):
        dt = np.dtype(dtype)
        # In place: the sample is ours, and a second 47 MB buffer for a ResNet costs page faults.
        np.multiply(sample, np.asarray(scale, dt), out=sample)
        np.add(sample, np.asarray(shift, dt), out=sample)
        return _to_device(sample)
    return (shift + scale * sample).astype(dtype)


# --------------------------------------------------------------------------------------------
# Random initializers


@_in_place
def uniform_(
    tensor: ArrayOrShape,
    a: float = 0.0,
    b: float = 1.0,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """Values drawn from ``U(a, b)`` (``torch.nn.init.uniform_``).

    **Arguments:**

    - `tensor`: an array or a shape (see the module docstring); floating dtype.
    - `a`, `b`: the bounds.
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array with values in ``[a, b)``.
    """
    shape, dt = _float_dtype("uniform_", tensor, dtype)
    return _scaled(_standard("uniform", key, shape, dt), b - a, a, dt)


@_in_place
def normal_(
    tensor: ArrayOrShape,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """Values drawn from ``N(mean, std²)`` (``torch.nn.init.normal_``).

    **Arguments:**

    - `tensor`: an array or a shape; floating dtype.
    - `mean`, `std`: the distribution's mean and standard deviation.
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array.
    """
    shape, dt = _float_dtype("normal_", tensor, dtype)
    return _scaled(_standard("normal", key, shape, dt), std, mean, dt)


@_in_place
def trunc_normal_(
    tensor: ArrayOrShape,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """``N(mean, std²)`` truncated to ``[a, b]`` (``torch.nn.init.trunc_normal_``).

    Note that ``a`` and ``b`` are absolute bounds, not multiples of ``std`` (torch's
    convention). Like torch, it warns when ``mean`` is more than 2 std outside ``[a, b]``.
    Sampling is torch's inverse CDF: ``U(Φ(α), Φ(β))`` through ``erfinv``, in float64 on the
    host for a concrete key, and ``jax.random.truncated_normal`` (the same method) in a trace.

    **Arguments:**

    - `tensor`: an array or a shape; floating dtype.
    - `mean`, `std`: parameters of the untruncated normal.
    - `a`, `b`: the truncation bounds.
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array with values in ``[a, b]``.
    """
    if (mean < a - 2 * std) or (mean > b + 2 * std):
        warnings.warn(_TRUNC_MEAN, UserWarning, stacklevel=2)
    shape, dt = _float_dtype("trunc_normal_", tensor, dtype)
    lower, upper = (a - mean) / std, (b - mean) / std
    key = _random.init_key(key)
    gen = _random.host_generator(key)
    if gen is not None:
        from scipy.special import erfinv  # a dependency of jax; imported when first needed

        lo, hi = math.erf(lower / math.sqrt(2.0)), math.erf(upper / math.sqrt(2.0))
        z = math.sqrt(2.0) * erfinv(gen.uniform(lo, hi, shape))
        values = np.clip(mean + std * z, a, b).astype(dt)
        return _to_device(np.clip(values, np.asarray(a, dt), np.asarray(b, dt)))
    z = jax.random.truncated_normal(_random.as_jax_key(key), lower, upper, shape, dt)
    return jnp.clip(mean + std * z, a, b)


@_in_place
def xavier_uniform_(
    tensor: ArrayOrShape,
    gain: float = 1.0,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """Glorot uniform: ``U(-a, a)``, ``a = gain * √(6 / (fan_in + fan_out))`` (torch's).

    **Arguments:**

    - `tensor`: an array or a shape with at least 2 dimensions; floating dtype.
    - `gain`: scaling factor (see `calculate_gain`).
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    shape, dt = _float_dtype("xavier_uniform_", tensor, dtype)
    return _scaled(_standard("uniform", key, shape, dt), 2 * bound, -bound, dt)


@_in_place
def xavier_normal_(
    tensor: ArrayOrShape,
    gain: float = 1.0,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """Glorot normal: ``N(0, std²)``, ``std = gain * √(2 / (fan_in + fan_out))`` (torch's).

    **Arguments:**

    - `tensor`: an array or a shape with at least 2 dimensions; floating dtype.
    - `gain`: scaling factor (see `calculate_gain`).
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    shape, dt = _float_dtype("xavier_normal_", tensor, dtype)
    return _scaled(_standard("normal", key, shape, dt), std, 0.0, dt)


def _kaiming_std(tensor: ArrayOrShape, a: float, mode: str, nonlinearity: str) -> float:
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan)


@_in_place
def kaiming_uniform_(
    tensor: ArrayOrShape,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """He uniform: ``U(-bound, bound)``, ``bound = gain * √(3 / fan_mode)`` (torch's).

    ``gain = calculate_gain(nonlinearity, a)``. torch's Linear and Conv layers use
    ``a=math.sqrt(5)``, which makes ``bound = 1 / √fan_in`` (see `default_uniform_bound`).
    A zero-element shape warns like torch and returns the (empty) input.

    **Arguments:**

    - `tensor`: an array or a shape with at least 2 dimensions; floating dtype.
    - `a`: the negative slope of the rectifier after this layer (``leaky_relu`` only).
    - `mode`: ``'fan_in'`` (default) or ``'fan_out'``.
    - `nonlinearity`: the ``nn.functional`` name, ``'relu'`` or ``'leaky_relu'`` (default).
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array.
    """
    shape, dt = _float_dtype("kaiming_uniform_", tensor, dtype)
    if 0 in shape:
        warnings.warn(_ZERO_ELEMENTS, UserWarning, stacklevel=2)
        return _unchanged(tensor, shape, dt)
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return _scaled(_standard("uniform", key, shape, dt), 2 * bound, -bound, dt)


@_in_place
def kaiming_normal_(
    tensor: ArrayOrShape,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """He normal: ``N(0, std²)``, ``std = gain / √fan_mode`` (torch's).

    **Arguments:**

    - `tensor`: an array or a shape with at least 2 dimensions; floating dtype.
    - `a`: the negative slope of the rectifier after this layer (``leaky_relu`` only).
    - `mode`: ``'fan_in'`` (default) or ``'fan_out'``.
    - `nonlinearity`: the ``nn.functional`` name, ``'relu'`` or ``'leaky_relu'`` (default).
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array (a zero-element shape warns like torch and returns the empty input).
    """
    shape, dt = _float_dtype("kaiming_normal_", tensor, dtype)
    if 0 in shape:
        warnings.warn(_ZERO_ELEMENTS, UserWarning, stacklevel=2)
        return _unchanged(tensor, shape, dt)
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return _scaled(_standard("normal", key, shape, dt), std, 0.0, dt)


@_in_place
def orthogonal_(
    tensor: ArrayOrShape,
    gain: float = 1,
    *,
    key: jax.Array | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """A (semi-)orthogonal matrix times ``gain`` (``torch.nn.init.orthogonal_``).

    torch's construction: a ``(rows, cols)`` standard normal matrix (``rows = shape[0]``,
    trailing axes flattened into ``cols``) is QR-factorised (transposed first when
    ``rows < cols``), ``Q`` is multiplied by ``sign(diag(R))`` so the result is uniformly
    (Haar) distributed, and reshaped back. Rows are orthonormal when ``rows <= cols``, columns
    otherwise. The factorisation runs in at least float32.

    **Arguments:**

    - `tensor`: an array or a shape with at least 2 dimensions (else ``ValueError``).
    - `gain`: scaling factor.
    - `key`: a JAX key; None draws from fparam's default key stream.
    - `dtype`: overrides the dtype.

    **Returns:**

    A new array (an empty shape is returned unchanged).
    """
    shape, dt = _float_dtype("orthogonal_", tensor, dtype)
    if len(shape) < 2:
        raise ValueError(_ORTHOGONAL_DIMS)
    if math.prod(shape) == 0:
        return _unchanged(tensor, shape, dt)
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = dt if dt.itemsize >= 4 else np.dtype(np.float32)  # QR in at least float32
    key = _random.init_key(key)
    gen = _random.host_generator(key)
    if gen is not None:  # NumPy's QR: no compilation per shape
        host = _host_normal(gen, (rows, cols), work)
        if rows < cols:
            host = host.T
        hq, hr = np.linalg.qr(host)
        hq = hq * np.sign(np.diagonal(hr))[None, :]
        if rows < cols:
            hq = hq.T
        return _to_device((np.asarray(gain, work) * hq).reshape(shape).astype(dt))
    flattened = jax.random.normal(_random.as_jax_key(key), (rows, cols), work)
    if rows < cols:
        flattened = flattened.T
    q, r = jnp.linalg.qr(flattened)
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dt)
