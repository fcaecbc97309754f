"""Pooling as pure JAX functions, with torch.nn.functional's semantics.

Signatures, defaults, output sizes (ATen's ``pooling_output_shape``, ceil mode included), the
divisor rules of average pooling, the windows of adaptive pooling, unbatched inputs and the error
conditions are torch's (exception types, and messages that carry torch's wording).

Max pooling picks the element torch picks. torch scans a window in row-major order and keeps
the FIRST maximum (``val > maxval``), except that a NaN always wins, so the LAST NaN of a window
is kept. Its indices and its gradient both point at that element. JAX's own derivative of
``lax.reduce_window`` max (select-and-scatter) routes elsewhere where a window holds a NaN
(measured in ``benchmarks/pooling.py``), so the value is computed with ``lax.reduce_window`` and
its derivative is a ``jax.custom_jvp`` that selects torch's element, one spatial axis at a time
(see ``_Axis``; the transpose of the selection is the backward, so ``jax.grad``, ``jax.jvp`` and
higher orders all see the same routing). Adaptive and fractional max pooling use the same
machinery with their own windows. ``max_unpool*``'s derivative is a ``jax.custom_vjp`` (torch's
gather of the output gradient), so it supports reverse mode only.

Fractional max pooling draws its window offsets from ``key=`` or fparam's key stream
(``fparam._random.resolve_key``), as dropout does; torch's ``_random_samples`` reproduce torch.

Indices are flat positions in each ``(N, C)`` plane, as torch returns them, as ``int32`` while
JAX's 64-bit mode is off (``int64`` with it on); torch returns ``int64``.

Every shape, option and check is a static Python value, so the functions work under
``jax.jit``, ``jax.grad`` and ``jax.vmap``, and all validation happens at trace time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fparam._random import resolve_key

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d",
    "fractional_max_pool3d_with_indices",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_pool1d",
    "max_pool1d_with_indices",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "pooling_output_size",
]

IntOrTuple = int | Sequence[int]

# --------------------------------------------------------------------------------------------
# Error messages (torch's wording; ATen's Pool.h / AdaptivePooling.h / functional.py).
# --------------------------------------------------------------------------------------------

_NOT_INT = "{fn}(): argument '{name}' must be tuple of ints, but found element of type {type}"
_NOT_BOOL = "{fn}(): argument '{name}' must be bool, not {type}"
_TUPLE_LENGTH = (
    "{fn}: {name} must either be {omitted}a single int, or a tuple of {n} ints, got {value}"
)
_STRIDE_ZERO = "{fn}: stride should not be zero, got stride={stride}"
_NEGATIVE_PAD = "{fn}: pad must be non-negative, but got pad: {pad}"
_PAD_TOO_BIG = (
    "{fn}: pad should be at most half of effective kernel size, but got pad={pad}, "
    "kernel_size={kernel} and dilation={dilation}"
)
_NONPOSITIVE_KERNEL = "{fn}: kernel size should be greater than zero, but got {fields}"
_NONPOSITIVE_STRIDE = "{fn}: stride should be greater than zero, but got {fields}"
_NONPOSITIVE_DILATION = "{fn}: dilation should be greater than zero, but got {fields}"
_INPUT_RANK = (
    "{fn}: Expected {unbatched}D or {batched}D (batch mode) tensor with optional 0 dim batch "
    "size for input, but got:{shape}"
)
_OUTPUT_TOO_SMALL = (
    "{fn}: Given input size: ({input}). Calculated output size: ({output}). Output size is too "
    "small"
)
_DIVISOR_ZERO = "{fn}: divisor must be not zero, got divisor_override={value}"
_NOT_FLOATING = "\"{fn}\" not implemented for '{dtype}' (an integer or bool input)"
_ADAPTIVE_RANK = "{fn}(): Expected {unbatched}D or {batched}D tensor, but got {shape}"
_ADAPTIVE_EMPTY = (
    "{fn}(): Expected input to have non-zero size for non-batch dimensions, but input has "
    "sizes {shape} with dimension {dim} being empty"
)
_ADAPTIVE_LENGTH = "{fn}: output_size must be {n}, got output_size={value}"
_ADAPTIVE_NEGATIVE = (
    "{fn}: elements of output_size must be greater than or equal to 0 but received {value}"
)
_ADAPTIVE_NOT_INT = (
    "{fn}(): argument 'output_size' must be an int, None, or a tuple of ints or None, got {value!r}"
)

_DIM_LETTERS = {1: ("W",), 2: ("H", "W"), 3: ("T", "H", "W")}


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _fields(prefix: str, values: Sequence[int]) -> str:
    letters = _DIM_LETTERS[len(values)]
    return " ".join(f"{prefix}{letter}: {int(v)}" for letter, v in zip(letters, values))


# --------------------------------------------------------------------------------------------
# Argument normalisation.
# --------------------------------------------------------------------------------------------


def _as_int(value: Any, fn: str, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(_NOT_INT.format(fn=fn, name=name, type="bool"))
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(_NOT_INT.format(fn=fn, name=name, type=type(value).__name__)) from None


def _ntuple(value: Any, n: int, fn: str, name: str, omitted: bool = False) -> tuple[int, ...]:
    """torch's pooling rule: an int, or a tuple of 1 or ``n`` ints (1 broadcasts)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(_NOT_INT.format(fn=fn, name=name, type=type(value).__name__))
    if isinstance(value, Sequence) or (
        isinstance(value, np.ndarray | jax.Array) and getattr(value, "ndim", 0) > 0
    ):
        items = tuple(_as_int(v, fn, name) for v in value)
        if len(items) == 1:
            return items * n
        if len(items) != n:
            raise RuntimeError(
                _TUPLE_LENGTH.format(
                    fn=fn,
                    name=name,
                    omitted="omitted, " if omitted else "",
                    n={1: "one", 2: "two", 3: "three"}[n],
                    value=value,
                )
            )
        return items
    return (_as_int(value, fn, name),) * n


def _check_bool(value: Any, fn: str, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(_NOT_BOOL.format(fn=fn, name=name, type=type(value).__name__))
    return bool(value)


def pooling_output_size(
    size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool
) -> int:
    """ATen's ``pooling_output_shape`` for one spatial dimension.

    ``floor`` (or ``ceil`` with ``ceil_mode``) of ``(size + 2 pad - dilation (kernel - 1) - 1) /
    stride + 1``; in ceil mode the last window must start inside the input or the left padding,
    else it is dropped.
    """
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _PoolSpec:
    """The normalised, checked arguments of one max/avg pooling call (all static)."""

    def __init__(
        self,
        fn: str,
        n: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        ceil_mode: Any,
    ) -> None:
        kernel = _ntuple(kernel_size, n, fn, "kernel_size")
        if stride is None or (isinstance(stride, Sequence) and len(stride) == 0):
            strides = kernel
        else:
            strides = _ntuple(stride, n, fn, "stride", omitted=True)
        pads = _ntuple(padding, n, fn, "padding")
        dilations = _ntuple(dilation, n, fn, "dilation")
        ceil = _check_bool(ceil_mode, fn, "ceil_mode")
        if any(k <= 0 for k in kernel):
            raise RuntimeError(_NONPOSITIVE_KERNEL.format(fn=fn, fields=_fields("k", kernel)))
        if any(s == 0 for s in strides):
            raise RuntimeError(_STRIDE_ZERO.format(fn=fn, stride=strides))
        if any(s < 0 for s in strides):
            raise RuntimeError(_NONPOSITIVE_STRIDE.format(fn=fn, fields=_fields("d", strides)))
        if any(d <= 0 for d in dilations):
            raise RuntimeError(
                _NONPOSITIVE_DILATION.format(fn=fn, fields=_fields("dilation", dilations))
            )
        for k, p, d in zip(kernel, pads, dilations):
            if p < 0:
                raise RuntimeError(_NEGATIVE_PAD.format(fn=fn, pad=p))
            if p > ((k - 1) * d + 1) // 2:
                raise RuntimeError(_PAD_TOO_BIG.format(fn=fn, pad=p, kernel=k, dilation=d))
        self.fn = fn
        self.n = n
        self.kernel = kernel
        self.stride = strides
        self.padding = pads
        self.dilation = dilations
        self.ceil_mode = ceil

    def output_sizes(self, spatial: Sequence[int], channels: int) -> tuple[int, ...]:
        out = tuple(
            pooling_output_size(i, k, p, s, d, self.ceil_mode)
            for i, k, p, s, d in zip(spatial, self.kernel, self.padding, self.stride, self.dilation)
        )
        if any(o < 1 for o in out):
            raise RuntimeError(
                _OUTPUT_TOO_SMALL.format(
                    fn=self.fn,
                    input="x".join(str(v) for v in (channels, *_pad_1d(spatial))),
                    output="x".join(str(v) for v in (channels, *_pad_1d(out))),
                )
            )
        return out

    def high_padding(self, spatial: Sequence[int], out: Sequence[int]) -> tuple[int, ...]:
        """Right padding so that every output window lies in the padded input (ceil mode)."""
        return tuple(
            max(0, (o - 1) * s + d * (k - 1) + 1 - (i + p))
            for i, o, k, p, s, d in zip(
                spatial, out, self.kernel, self.padding, self.stride, self.dilation
            )
        )


def _pad_1d(sizes: Sequence[int]) -> tuple[int, ...]:
    # torch reports a 1-d pooling as the 2-d pooling of a height-1 input: (C x 1 x L).
    return (1, *sizes) if len(sizes) == 1 else tuple(sizes)


def _batched(input: Any, n: int, fn: str, allow_empty_batch: bool = True) -> tuple[jax.Array, bool]:
    """``input`` with a batch dim (added for an unbatched input) and whether one was added."""
    x = jnp.asarray(input)
    if x.ndim not in (n + 1, n + 2) or any(s == 0 for s in x.shape[x.ndim - n - 1 :]):
        raise RuntimeError(
            _INPUT_RANK.format(fn=fn, unbatched=n + 1, batched=n + 2, shape=_shape(x.shape))
        )
    if x.ndim == n + 1:
        return x[None], True
    return x, False


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if dtype == jnp.bool_:
        return False
    return jnp.iinfo(dtype).min


def _accumulator(dtype: Any) -> Any:
    """float32 for half precision (torch sums those in float32 on CPU), else the dtype."""
    return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)


def _index_dtype() -> Any:
    return jax.dtypes.canonicalize_dtype(jnp.int64)


# --------------------------------------------------------------------------------------------
# Max pooling. A box's maximum is taken one spatial axis at a time (last axis first): torch's
# element, the first maximum in row-major order (or the last NaN), is the first (last NaN)
# maximum of the rows' maxima, taken within its row, so each axis stage can pick its element
# alone and the stages compose to torch's choice, for values, indices and gradients. An axis
# stage has K = that axis's window length offsets, so a 3x3 window costs 3 + 3 selections, not 9.
# --------------------------------------------------------------------------------------------


class _Axis:
    """The windows along one axis of a batched ``(N, C, *spatial)`` array.

    ``kind`` is ``"slide"`` (``size, out, kernel, stride, pad, dilation``: ATen's sliding
    windows over the ``-inf``-padded input) or ``"gather"`` (``coords``: per output, the input
    coordinates of its window, a short window repeating its last element, which changes neither
    the first maximum nor its position). Hashable, so a jitted core can take it as static.
    """

    def __init__(self, axis: int, kind: str, params: Any) -> None:
        self.axis = axis
        self.kind = kind
        self.params = params
        if kind == "plane":
            # Per (N, C) plane windows (fractional pooling): params is an (N, C, out, K) array,
            # maybe traced; such an axis is never a static argument.
            self.count = params.shape[-1]
        elif kind == "slide":
            size, out, kernel, stride, pad, dilation = params
            self.count = kernel
            self.high = max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - (size + pad))
        else:
            self.count = len(params[0])

    def _key(self) -> tuple[Any, ...]:
        return (self.axis, self.kind, self.params)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Axis) and self._key() == other._key()

    def stack(self, x: jax.Array, fill: Any) -> jax.Array:
        """The ``k``-th element of every window along a new leading axis: ``(K, *out_shape)``."""
        if self.kind == "slide":
            _, out, kernel, stride, pad, dilation = self.params
            if pad or self.high:
                config = [(0, 0, 0)] * x.ndim
                config[self.axis] = (pad, self.high, 0)
                x = lax.pad(x, np.array(fill, x.dtype), config)
            last = (out - 1) * stride + 1
            return _stack(
                [
                    lax.slice_in_dim(x, k * dilation, k * dilation + last, stride, self.axis)
                    for k in range(kernel)
                ]
            )
        if self.kind == "plane":
            n, c, out, count = self.params.shape
            shape = [n, c] + [1] * (x.ndim - 2)
            shape[self.axis] = out * count
            index = jnp.reshape(self.params, shape)
            taken = jnp.take_along_axis(x, index, axis=self.axis, mode="clip")
            split = list(taken.shape)
            split[self.axis : self.axis + 1] = [out, count]
            return jnp.moveaxis(jnp.reshape(taken, split), self.axis + 1, 0)
        # One gather for all offsets: (..., out, K, ...), then K to the front.
        coords = np.asarray(self.params, np.int32)
        taken = jnp.take(x, coords, axis=self.axis, mode="clip")
        return jnp.moveaxis(taken, self.axis + 1, 0)

    def valid(self, ndim: int) -> np.ndarray | None:
        """Per offset, the windows whose element is inside the input (``(K, ...)``), or None."""
        if self.kind != "slide":
            return None
        size, out, kernel, stride, pad, dilation = self.params
        if not (pad or self.high):
            return None
        pos = np.arange(out)[None, :] * stride - pad + np.arange(kernel)[:, None] * dilation
        mask = (pos >= 0) & (pos < size)
        shape = [kernel] + [1] * ndim
        shape[1 + self.axis] = out
        return mask.reshape(shape)

    def maximum(self, x: jax.Array, lowest: Any) -> jax.Array:
        if self.kind == "slide":
            _size, _out, kernel, stride, pad, dilation = self.params
            window = [1] * x.ndim
            strides = [1] * x.ndim
            dilations = [1] * x.ndim
            padding = [(0, 0)] * x.ndim
            window[self.axis], strides[self.axis] = kernel, stride
            dilations[self.axis], padding[self.axis] = dilation, (pad, self.high)
            return lax.reduce_window(
                x,
                np.array(lowest, x.dtype),
                lax.max,
                tuple(window),
                tuple(strides),
                tuple(padding),
                window_dilation=tuple(dilations),
            )
        return lax.reduce_max(self.stack(x, lowest), (0,))


def _stack(parts: list[jax.Array]) -> jax.Array:
    """``(K, *shape)``, with ``lax`` primitives (``jnp``'s wrappers dominate trace time here)."""
    return lax.concatenate([lax.expand_dims(p, (0,)) for p in parts], 0)


def _selection(stack: jax.Array, out: jax.Array, valid: np.ndarray | None) -> jax.Array:
    """Per window, the offset torch keeps: the first maximum, or the last NaN."""
    dims = tuple(range(1, stack.ndim))
    hit = lax.eq(stack, lax.broadcast_in_dim(out, stack.shape, dims))
    if valid is not None:
        hit = lax.bitwise_and(hit, lax.broadcast_in_dim(valid, stack.shape, (0, *dims)))
    sel = lax.argmax(hit, 0, np.int32)
    if jnp.issubdtype(out.dtype, jnp.floating):
        last_nan = lax.argmax(lax.rev(lax.ne(stack, stack), (0,)), 0, np.int32)
        sel = lax.select(lax.ne(out, out), lax.sub(np.int32(stack.shape[0] - 1), last_nan), sel)
    return sel


def _pick(stack: jax.Array, sel: jax.Array) -> jax.Array:
    """``stack[sel]`` per window, as a select-and-sum (its transpose is cheap, unlike a gather's
    scatter)."""
    dims = tuple(range(1, stack.ndim))
    chosen = lax.eq(
        lax.broadcast_in_dim(sel, stack.shape, dims),
        lax.broadcasted_iota(np.int32, stack.shape, 0),
    )
    return lax.reduce_sum(lax.select(chosen, stack, lax.full_like(stack, 0)), (0,))


def _max_stage(
    x: jax.Array, payload: jax.Array | None, axis: _Axis, lowest: Any
) -> tuple[jax.Array, jax.Array | None]:
    """Max over the windows of one axis, differentiated as torch routes it; ``payload`` (the
    flat input index of each element, or None) follows the chosen elements."""
    valid = axis.valid(x.ndim)
    # A per-plane axis holds arrays (maybe tracers): they enter the custom rule as arguments,
    # never as closed-over values.
    coords = axis.params if axis.kind == "plane" else None

    def rebuilt(coords: jax.Array | None) -> _Axis:
        return axis if coords is None else _Axis(axis.axis, "plane", coords)

    def chosen(ax: _Axis, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        stack = ax.stack(x, lowest)
        out = lax.reduce_max(stack, (0,))
        return out, _selection(stack, out, valid)

    @jax.custom_jvp
    def stage(x: jax.Array, payload: jax.Array | None, coords: jax.Array | None) -> Any:
        ax = rebuilt(coords)
        if payload is None:
            return ax.maximum(x, lowest), None
        out, sel = chosen(ax, x)
        return out, _pick(ax.stack(jnp.broadcast_to(payload, x.shape), 0), sel)

    @stage.defjvp
    def stage_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
        (x, payload, coords), (t, _, _) = primals, tangents
        ax = rebuilt(coords)
        out, sel = chosen(ax, x)
        t_out = _pick(ax.stack(t, 0), sel)
        if payload is None:
            return (out, None), (t_out, None)
        payload = _pick(ax.stack(jnp.broadcast_to(payload, x.shape), 0), sel)
        return (out, payload), (t_out, np.zeros(payload.shape, jax.dtypes.float0))

    result: tuple[jax.Array, jax.Array | None] = stage(x, payload, coords)
    return result


def _max_pool_body(
    x: jax.Array, axes: tuple[_Axis, ...], with_indices: bool
) -> tuple[jax.Array, jax.Array | None]:
    """The maxima (and flat plane indices) of a batched input over separable windows."""
    lowest = _lowest(x.dtype)
    payload = None
    if with_indices:
        spatial = x.shape[2:]
        dtype = _index_dtype()
        shape = (1, 1, *spatial)
        payload = lax.full(shape, 0, dtype)
        for i in range(len(spatial)):
            plane = int(np.prod(spatial[i + 1 :]))
            payload = payload + lax.broadcasted_iota(dtype, shape, 2 + i) * np.array(plane, dtype)
    for ax in reversed(axes):
        x, payload = _max_stage(x, payload, ax, lowest)
    return x, payload


# One compiled program per configuration, also when called eagerly.
_max_pool_core = partial(jax.jit, static_argnums=(1, 2))(_max_pool_body)


def _max_pool(
    input: Any,
    n: int,
    fn: str,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
    with_indices: bool,
) -> tuple[jax.Array, jax.Array | None]:
    spec = _PoolSpec(fn, n, kernel_size, stride, padding, dilation, ceil_mode)
    x, unbatched = _batched(input, n, fn)
    spatial = tuple(x.shape[2:])
    out_sizes = spec.output_sizes(spatial, x.shape[1])
    axes = tuple(
        _Axis(2 + i, "slide", (spatial[i], out_sizes[i], k, s, p, d))
        for i, (k, s, p, d) in enumerate(zip(spec.kernel, spec.stride, spec.padding, spec.dilation))
    )
    out, indices = _max_pool_core(x, axes, with_indices)
    if unbatched:
        out = out[0]
        indices = None if indices is None else indices[0]
    return out, indices


def max_pool1d_with_indices(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """:func:`max_pool1d` that always returns ``(output, indices)``."""
    out, indices = _max_pool(
        input, 1, "max_pool1d", kernel_size, stride, padding, dilation, ceil_mode, True
    )
    assert indices is not None
    return out, indices


def max_pool2d_with_indices(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """:func:`max_pool2d` that always returns ``(output, indices)``."""
    out, indices = _max_pool(
        input, 2, "max_pool2d", kernel_size, stride, padding, dilation, ceil_mode, True
    )
    assert indices is not None
    return out, indices


def max_pool3d_with_indices(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """:func:`max_pool3d` that always returns ``(output, indices)``."""
    out, indices = _max_pool(
        input, 3, "max_pool3d", kernel_size, stride, padding, dilation, ceil_mode, True
    )
    assert indices is not None
    return out, indices


def _max_pool_public(n: int) -> Callable[..., Any]:
    fn = f"max_pool{n}d"
    shape = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)"}.get(
        n, "(N, C, D, H, W) or (C, D, H, W)"
    )

    def max_pool(
        input: jax.Array,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> Any:
        out, indices = _max_pool(
            input,
            n,
            fn,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
            _check_bool(return_indices, fn, "return_indices"),
        )
        return (out, indices) if return_indices else out

    max_pool.__name__ = max_pool.__qualname__ = fn
    max_pool.__doc__ = f"""The maximum of each window, like ``torch.nn.functional.{fn}``.

    **Arguments:**

    - `input`: ``{shape}``; any real dtype (padding counts as ``-inf``, never selected).
    - `kernel_size`, `stride` (default: ``kernel_size``), `padding`, `dilation`: an int or a
      tuple of {n} ints. ``padding`` must be at most half the effective kernel size
      ``dilation * (kernel_size - 1) + 1`` (``RuntimeError``, as torch).
    - `ceil_mode`: round the output size up; the last window must still start inside the input
      or the left padding.
    - `return_indices`: also return the flat index, in each ``(N, C)`` plane, of the element
      each output took (``int32`` unless JAX's 64-bit mode is on; torch's are ``int64``).

    **Returns:**

    The pooled array (``output``), or ``(output, indices)``. Ties go to the first maximum of a
    window in row-major order and NaN wins (the last NaN), as in torch; the gradient flows to
    that same element.
    """
    return max_pool


max_pool1d = _max_pool_public(1)
max_pool2d = _max_pool_public(2)
max_pool3d = _max_pool_public(3)


# --------------------------------------------------------------------------------------------
# Average pooling.
# --------------------------------------------------------------------------------------------


def _avg_divisor(
    spec: _PoolSpec,
    spatial: Sequence[int],
    out: Sequence[int],
    count_include_pad: bool,
    divisor_override: int | None,
) -> np.ndarray | int:
    """ATen's divisor per output position: the window clipped to the padded input (with
    ``count_include_pad``) or to the input itself; ``divisor_override`` when given."""
    if divisor_override is not None:
        return divisor_override
    divisor = np.ones((1, 1, *out), np.int64)
    for axis, (i, o, k, p, s) in enumerate(
        zip(spatial, out, spec.kernel, spec.padding, spec.stride)
    ):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, i + p)
        size = end - start
        if not count_include_pad:
            size = np.minimum(end, i) - np.maximum(start, 0)
        divisor = divisor * size.reshape([1, 1] + [-1 if j == axis else 1 for j in range(len(out))])
    return divisor


def _avg_pool(
    input: Any,
    n: int,
    fn: str,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: Any,
    count_include_pad: Any,
    divisor_override: Any,
) -> jax.Array:
    spec = _PoolSpec(fn, n, kernel_size, stride, padding, 1, ceil_mode)
    include_pad = _check_bool(count_include_pad, fn, "count_include_pad")
    if divisor_override is not None:
        divisor_override = _as_int(divisor_override, fn, "divisor_override")
        if divisor_override == 0:
            raise RuntimeError(_DIVISOR_ZERO.format(fn=fn, value=divisor_override))
    x, unbatched = _batched(input, n, fn)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise NotImplementedError(_NOT_FLOATING.format(fn=fn, dtype=x.dtype))
    spatial = tuple(x.shape[2:])
    out_sizes = spec.output_sizes(spatial, x.shape[1])
    high = spec.high_padding(spatial, out_sizes)
    # Half precision sums in float32 and rounds once, as torch does on CPU.
    acc = _accumulator(x.dtype)
    total = lax.reduce_window(
        x.astype(acc),
        np.array(0, acc),
        lax.add,
        (1, 1, *spec.kernel),
        (1, 1, *spec.stride),
        ((0, 0), (0, 0), *zip(spec.padding, high)),
    )
    divisor = _avg_divisor(spec, spatial, out_sizes, include_pad, divisor_override)
    if isinstance(divisor, int) or np.all(divisor == np.ravel(divisor)[0]):
        out = total / jnp.asarray(int(np.ravel(divisor)[0]), acc)
    else:
        out = total / jnp.asarray(divisor, acc)
    out = out.astype(x.dtype)
    return out[0] if unbatched else out


def avg_pool1d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """The mean of each window of an ``(N, C, L)`` or ``(C, L)`` input, like
    ``torch.nn.functional.avg_pool1d``; see :func:`avg_pool2d` (1-d has no
    ``divisor_override``, as in torch)."""
    return _avg_pool(
        input, 1, "avg_pool1d", kernel_size, stride, padding, ceil_mode, count_include_pad, None
    )


def avg_pool2d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """The mean of each window, like ``torch.nn.functional.avg_pool2d``.

    **Arguments:**

    - `input`: ``(N, C, H, W)`` or ``(C, H, W)``, floating point (an integer input raises
      ``NotImplementedError``, as torch).
    - `kernel_size`, `stride` (default: ``kernel_size``), `padding`: an int or a tuple of 2 ints;
      ``padding`` (zeros) must be at most half of ``kernel_size``.
    - `ceil_mode`: round the output size up (the last window must start inside the input or the
      left padding).
    - `count_include_pad`: divide by the window size clipped to the padded input (torch's
      default) rather than by the number of input elements in it. A ceil-mode window that runs
      past the padded input is clipped in both cases, as in torch.
    - `divisor_override`: divide every window's sum by this (non-zero) int instead.

    **Returns:**

    The pooled array, in ``input``'s dtype (half precision sums in float32).
    """
    return _avg_pool(
        input,
        2,
        "avg_pool2d",
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


def avg_pool3d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """The mean of each window of an ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input, like
    ``torch.nn.functional.avg_pool3d``; see :func:`avg_pool2d`."""
    return _avg_pool(
        input,
        3,
        "avg_pool3d",
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


# --------------------------------------------------------------------------------------------
# Adaptive pooling: window i of a dim spans [floor(i * in / out), ceil((i + 1) * in / out)).
# --------------------------------------------------------------------------------------------


def _adaptive_output_size(
    output_size: Any, n: int, fn: str, spatial: Sequence[int]
) -> tuple[int, ...]:
    if output_size is None or (
        isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool)
    ):
        sizes: tuple[Any, ...] = (output_size,) * n
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        sizes = tuple(output_size)
        if n == 1 and len(sizes) != 1:
            raise RuntimeError(
                f"{fn}() argument 'output_size' should contain one int (got {len(sizes)})"
            )
        if len(sizes) != n:
            raise RuntimeError(_ADAPTIVE_LENGTH.format(fn=fn, n=n, value=output_size))
    else:
        raise TypeError(_ADAPTIVE_NOT_INT.format(fn=fn, value=output_size))
    result = []
    for s, i in zip(sizes, spatial):
        if s is None:
            result.append(int(i))
            continue
        if isinstance(s, (bool, np.bool_)) or not hasattr(s, "__index__"):
            raise TypeError(_ADAPTIVE_NOT_INT.format(fn=fn, value=output_size))
        result.append(operator.index(s))
    if any(s < 0 for s in result):
        raise RuntimeError(
            _ADAPTIVE_NEGATIVE.format(fn=fn, value="{" + ", ".join(map(str, result)) + "}")
        )
    return tuple(result)


def _adaptive_input(input: Any, n: int, fn: str) -> tuple[jax.Array, bool]:
    x = jnp.asarray(input)
    if x.ndim not in (n + 1, n + 2):
        if n == 1:
            raise RuntimeError(
                f"{fn}: Expected 2 to 3 dimensions, but got {x.ndim}-dimensional tensor for "
                f"argument #1 'self' (while checking arguments for {fn})"
            )
        raise RuntimeError(
            _ADAPTIVE_RANK.format(fn=fn, unbatched=n + 1, batched=n + 2, shape=_shape(x.shape))
        )
    for dim in range(x.ndim - n, x.ndim):
        if x.shape[dim] == 0:
            raise RuntimeError(_ADAPTIVE_EMPTY.format(fn=fn, shape=_shape(x.shape), dim=dim))
    if x.ndim == n + 1:
        return x[None], True
    return x, False


def _adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_avg(input: Any, n: int, fn: str, output_size: Any) -> jax.Array:
    x, unbatched = _adaptive_input(input, n, fn)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise NotImplementedError(_NOT_FLOATING.format(fn=fn, dtype=x.dtype))
    spatial = tuple(x.shape[2:])
    out_sizes = _adaptive_output_size(output_size, n, fn, spatial)
    acc = _accumulator(x.dtype)
    if all(o > 0 and i % o == 0 for i, o in zip(spatial, out_sizes)):
        # Equal windows: a plain strided average (global pooling is a mean).
        kernel = tuple(i // o for i, o in zip(spatial, out_sizes))
        if all(o == 1 for o in out_sizes):
            y = jnp.mean(x.astype(acc), axis=tuple(range(2, 2 + n)), keepdims=True)
        else:
            y = lax.reduce_window(
                x.astype(acc),
                np.array(0, acc),
                lax.add,
                (1, 1, *kernel),
                (1, 1, *kernel),
                "VALID",
            ) / jnp.asarray(math.prod(kernel), acc)
    else:
        # Unequal windows: one averaging matrix per dim, in one contraction (a zero-output
        # dim gives an empty matrix and an empty result, as torch).
        matrices = []
        for i, o in zip(spatial, out_sizes):
            start, end = _adaptive_bounds(i, o)
            positions = np.arange(i)
            inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
            matrices.append(jnp.asarray(inside / np.maximum(end - start, 1)[:, None], acc))
        src, dst = "ijk"[:n], "xyz"[:n]
        spec = f"nc{src}," + ",".join(f"{d}{s}" for d, s in zip(dst, src)) + f"->nc{dst}"
        y = jnp.einsum(spec, x.astype(acc), *matrices, precision=lax.Precision.HIGHEST)
    y = y.astype(x.dtype)
    return y[0] if unbatched else y


def adaptive_avg_pool1d(input: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """Average pooling of an ``(N, C, L)`` or ``(C, L)`` input to ``output_size`` (an int or
    a 1-tuple), like ``torch.nn.functional.adaptive_avg_pool1d``; see
    :func:`adaptive_avg_pool2d`."""
    return _adaptive_avg(input, 1, "adaptive_avg_pool1d", output_size)


def adaptive_avg_pool2d(input: jax.Array, output_size: Any) -> jax.Array:
    """Average pooling to a fixed output size, like ``torch.nn.functional.adaptive_avg_pool2d``.

    **Arguments:**

    - `input`: ``(N, C, H, W)`` or ``(C, H, W)``, floating point, non-empty spatial dims.
    - `output_size`: an int, or a tuple of 2 ints or ``None`` (``None`` keeps that input size).

    **Returns:**

    ``(..., out_h, out_w)``: output ``i`` of a dim averages input
    ``[floor(i * in / out), ceil((i + 1) * in / out))``.
    """
    return _adaptive_avg(input, 2, "adaptive_avg_pool2d", output_size)


def adaptive_avg_pool3d(input: jax.Array, output_size: Any) -> jax.Array:
    """Average pooling of an ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input to a fixed output
    size, like ``torch.nn.functional.adaptive_avg_pool3d``; see :func:`adaptive_avg_pool2d`."""
    return _adaptive_avg(input, 3, "adaptive_avg_pool3d", output_size)


def _adaptive_max(
    input: Any, n: int, fn: str, output_size: Any, with_indices: bool
) -> tuple[jax.Array, jax.Array | None]:
    x, unbatched = _adaptive_input(input, n, fn)
    spatial = tuple(x.shape[2:])
    out_sizes = _adaptive_output_size(output_size, n, fn, spatial)
    if any(o == 0 for o in out_sizes):
        out = jnp.zeros((*x.shape[:2], *out_sizes), x.dtype)
        indices: jax.Array | None = jnp.zeros(out.shape, _index_dtype())
    elif all(i % o == 0 for i, o in zip(spatial, out_sizes)):
        kernel = tuple(i // o for i, o in zip(spatial, out_sizes))
        out, indices = _max_pool(x, n, fn, kernel, kernel, 0, 1, False, with_indices)
    else:
        axes = []
        for i, (size, o) in enumerate(zip(spatial, out_sizes)):
            start, end = _adaptive_bounds(size, o)
            kmax = int((end - start).max())
            coords = np.minimum(start[:, None] + np.arange(kmax)[None, :], end[:, None] - 1)
            axes.append(_Axis(2 + i, "gather", tuple(tuple(int(c) for c in row) for row in coords)))
        out, indices = _max_pool_core(x, tuple(axes), with_indices)
    if unbatched:
        out = out[0]
        indices = None if indices is None else indices[0]
    return out, (indices if with_indices else None)


def _adaptive_max_public(n: int, always_indices: bool) -> Callable[..., Any]:
    fn = f"adaptive_max_pool{n}d"

    def adaptive_max_pool(input: jax.Array, output_size: Any, return_indices: bool = False) -> Any:
        want = always_indices or _check_bool(return_indices, fn, "return_indices")
        out, indices = _adaptive_max(input, n, fn, output_size, want)
        if always_indices or return_indices:
            return out, indices
        return out

    name = fn + ("_with_indices" if always_indices else "")
    adaptive_max_pool.__name__ = adaptive_max_pool.__qualname__ = name
    if always_indices:
        adaptive_max_pool.__doc__ = f":func:`{fn}` that always returns ``(output, indices)``."
    else:
        adaptive_max_pool.__doc__ = f"""Max pooling to a fixed output size, like
    ``torch.nn.functional.{fn}``.

    **Arguments:**

    - `input`: ``({"N, C, " if True else ""}*spatial)`` with {n} spatial dims, or unbatched
      ``(C, *spatial)``; the spatial dims must be non-empty.
    - `output_size`: an int, or a tuple of {n} ints or ``None`` (``None`` keeps that input
      size). Output ``i`` of a dim takes the maximum of input
      ``[floor(i * in / out), ceil((i + 1) * in / out))``.
    - `return_indices`: also return the flat index in each ``(N, C)`` plane of the element taken
      (``int32`` unless JAX's 64-bit mode is on; torch's are ``int64``).

    **Returns:**

    ``output`` or ``(output, indices)``. Ties go to the first maximum in row-major order and NaN
    wins (the last NaN), as in torch; the gradient flows to that same element.
    """
    return adaptive_max_pool


adaptive_max_pool1d = _adaptive_max_public(1, False)
adaptive_max_pool2d = _adaptive_max_public(2, False)
adaptive_max_pool3d = _adaptive_max_public(3, False)
adaptive_max_pool1d_with_indices = _adaptive_max_public(1, True)
adaptive_max_pool2d_with_indices = _adaptive_max_public(2, True)
adaptive_max_pool3d_with_indices = _adaptive_max_public(3, True)


# --------------------------------------------------------------------------------------------
# Power-average pooling: torch's formula on top of avg_pool / max_pool.
# --------------------------------------------------------------------------------------------


def _lp_pool(
    input: Any, n: int, norm_type: Any, kernel_size: Any, stride: Any, ceil_mode: bool
) -> jax.Array:
    fn = f"lp_pool{n}d"
    kernel = _ntuple(kernel_size, n, fn, "kernel_size")
    if isinstance(norm_type, (int, float)) and math.isinf(norm_type):
        x = jnp.abs(jnp.asarray(input))
        if norm_type > 0:
            return _max_pool(x, n, f"max_pool{n}d", kernel_size, stride, 0, 1, ceil_mode, False)[0]
        neg = _max_pool(-x, n, f"max_pool{n}d", kernel_size, stride, 0, 1, ceil_mode, False)[0]
        return -neg
    x = jnp.asarray(input)
    # An integral power is a product, exactly as torch's pow computes it (and differentiable at
    # negative inputs).
    power = int(norm_type) if float(norm_type).is_integer() else norm_type
    out = _avg_pool(x**power, n, f"avg_pool{n}d", kernel_size, stride, 0, ceil_mode, True, None)
    out = jnp.sign(out) * jax.nn.relu(jnp.abs(out))
    return (out * math.prod(kernel)) ** (1.0 / norm_type)


def lp_pool1d(
    input: jax.Array,
    norm_type: float,
    kernel_size: int,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
) -> jax.Array:
    """Power-average pooling of an ``(N, C, L)`` or ``(C, L)`` input, like
    ``torch.nn.functional.lp_pool1d``; see :func:`lp_pool2d`."""
    return _lp_pool(input, 1, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(
    input: jax.Array,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
) -> jax.Array:
    """Power-average pooling, like ``torch.nn.functional.lp_pool2d``: torch's formula
    ``(sign(s) * relu(|s|) * prod(kernel_size)) ** (1 / p)`` with ``s`` the window mean of
    ``input ** p`` (``avg_pool2d`` without padding, so a ceil-mode window at the edge is scaled
    as torch scales it); ``p = inf`` is max pooling of ``|input|``, ``p = -inf`` its min.

    **Arguments:**

    - `input`: ``(N, C, H, W)`` or ``(C, H, W)``.
    - `norm_type`: the power ``p``.
    - `kernel_size`, `stride` (default ``kernel_size``): an int or a tuple of 2 ints.
    - `ceil_mode`: round the output size up.

    **Returns:**

    The pooled array. Where a window's sum is zero the gradient is zero, as in torch.
    """
    return _lp_pool(input, 2, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(
    input: jax.Array,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
) -> jax.Array:
    """Power-average pooling of an ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input, like
    ``torch.nn.functional.lp_pool3d``; see :func:`lp_pool2d`."""
    return _lp_pool(input, 3, norm_type, kernel_size, stride, ceil_mode)


# --------------------------------------------------------------------------------------------
# Max unpooling: scatter each value to its index in a zero plane.
# --------------------------------------------------------------------------------------------

_UNPOOL_INDICES_SHAPE = (
    "{fn}: Expected shape of indices to be same as that of the input tensor ({input}) but got "
    "indices tensor with shape: {indices}"
)
_UNPOOL_INDICES_DTYPE = "{fn}: elements in indices should be an integer type but got: {dtype}"
_UNPOOL_OUTPUT_LENGTH = (
    "output_size should be a sequence containing {n} or {full} elements, but it has a length "
    "of '{got}'"
)
_UNPOOL_OUTPUT_RANGE = 'invalid output_size "{size}" (dim {dim} must be between {lo} and {hi})'
_UNPOOL_RANK = "{fn}: Expected {unbatched}D or {batched}D input, but got input of size: {shape}"


def _unpool_output_size(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_size: Any,
) -> tuple[int, ...]:
    """torch's ``_unpool_output_size``: ``(in - 1) * stride + kernel - 2 * padding`` per dim,
    or ``output_size`` (its last ``n`` entries), within one stride of that."""
    n = len(kernel)
    default = [(i - 1) * s + k - 2 * p for i, k, s, p in zip(spatial, kernel, stride, padding)]
    if output_size is None:
        return tuple(default)
    sizes = list(output_size)
    if len(sizes) == n + 2:
        sizes = sizes[2:]
    if len(sizes) != n:
        raise ValueError(_UNPOOL_OUTPUT_LENGTH.format(n=n, full=n + 2, got=len(sizes)))
    for d in range(n):
        lo, hi = default[d] - stride[d], default[d] + stride[d]
        if not lo < sizes[d] < hi:
            raise ValueError(_UNPOOL_OUTPUT_RANGE.format(size=output_size, dim=d, lo=lo, hi=hi))
    return tuple(int(s) for s in sizes)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scatter_planes(values: jax.Array, indices: jax.Array, size: int) -> jax.Array:
    """``(N, C, size)`` zeros with ``values`` (``(N, C, L)``) written at ``indices``
    (an index outside the plane writes nothing).

    The derivative is torch's: each input takes the output gradient at its index (a gather),
    also where two inputs share an index (overlapping pooling windows), where a plain scatter's
    derivative would give it to one of them only.
    """
    n, c, _ = values.shape
    out = jnp.zeros((n, c, size), values.dtype)
    rows = lax.broadcasted_iota(np.int32, indices.shape, 0)
    cols = lax.broadcasted_iota(np.int32, indices.shape, 1)
    return out.at[rows, cols, indices].set(values, mode="drop")


def _scatter_fwd(values: jax.Array, indices: jax.Array, size: int) -> Any:
    return _scatter_planes(values, indices, size), indices


def _scatter_bwd(size: int, indices: jax.Array, g: jax.Array) -> Any:
    grad = jnp.take_along_axis(g, indices, axis=2, mode="fill", fill_value=0)
    return grad, np.zeros(indices.shape, jax.dtypes.float0)


_scatter_planes.defvjp(_scatter_fwd, _scatter_bwd)


def _max_unpool(
    input: Any,
    indices: Any,
    n: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    output_size: Any,
) -> jax.Array:
    fn = f"max_unpool{n}d"
    kernel = _ntuple(kernel_size, n, fn, "kernel_size")
    strides = kernel if stride is None else _ntuple(stride, n, fn, "stride", omitted=True)
    pads = _ntuple(padding, n, fn, "padding")
    x = jnp.asarray(input)
    idx = jnp.asarray(indices)
    if x.ndim not in (n + 1, n + 2):
        raise RuntimeError(
            _UNPOOL_RANK.format(fn=fn, unbatched=n + 1, batched=n + 2, shape=_shape(x.shape))
        )
    if idx.shape != x.shape:
        raise RuntimeError(
            _UNPOOL_INDICES_SHAPE.format(fn=fn, input=_shape(x.shape), indices=_shape(idx.shape))
        )
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise RuntimeError(_UNPOOL_INDICES_DTYPE.format(fn=fn, dtype=idx.dtype))
    unbatched = x.ndim == n + 1
    if unbatched:
        x, idx = x[None], idx[None]
    out_sizes = _unpool_output_size(x.shape[2:], kernel, strides, pads, output_size)
    planes = _scatter_planes(
        x.reshape(*x.shape[:2], -1), idx.reshape(*idx.shape[:2], -1), math.prod(out_sizes)
    )
    out = planes.reshape(*x.shape[:2], *out_sizes)
    return out[0] if unbatched else out


def _max_unpool_doc(n: int) -> str:
    shapes = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)"}.get(
        n, "(N, C, D, H, W) or (C, D, H, W)"
    )
    return f"""The partial inverse of :func:`max_pool{n}d`, like
    ``torch.nn.functional.max_unpool{n}d``: zeros, with each input value written at its index.

    **Arguments:**

    - `input`: ``{shapes}``.
    - `indices`: integer array shaped like ``input``: flat indices into each output
      ``(N, C)`` plane, as ``max_pool{n}d(..., return_indices=True)`` returns them. torch raises
      for an index outside the plane; here the indices may be traced, so such a value is
      dropped instead.
    - `kernel_size`, `stride` (default ``kernel_size``), `padding`: the pooling's.
    - `output_size`: the output's spatial size ({n} or {n + 2} entries), within one stride of
      the default ``(in - 1) * stride + kernel_size - 2 * padding`` (``ValueError`` otherwise,
      as torch).

    **Returns:**

    ``(N, C, *output_size)`` (or unbatched). The gradient of an input is the output gradient at
    its index, as in torch.
    """


def max_unpool1d(
    input: jax.Array,
    indices: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    return _max_unpool(input, indices, 1, kernel_size, stride, padding, output_size)


def max_unpool2d(
    input: jax.Array,
    indices: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    return _max_unpool(input, indices, 2, kernel_size, stride, padding, output_size)


def max_unpool3d(
    input: jax.Array,
    indices: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    return _max_unpool(input, indices, 3, kernel_size, stride, padding, output_size)


max_unpool1d.__doc__ = _max_unpool_doc(1)
max_unpool2d.__doc__ = _max_unpool_doc(2)
max_unpool3d.__doc__ = _max_unpool_doc(3)


# --------------------------------------------------------------------------------------------
# Fractional max pooling (Graham, 2014): pseudo-random window starts per (N, C) plane.
# --------------------------------------------------------------------------------------------

_FRACTIONAL_NO_SIZE = "{fn} requires specifying either an output_size or an output_ratio"
_FRACTIONAL_RATIO = "{fn} requires output_ratio to either be a single Int or tuple of Ints."
_FRACTIONAL_TOO_LARGE = "{fn}(): pool {dim} {kernel} too large relative to input {dim} {size}"
_FRACTIONAL_RANK = "{fn}(): Expected {unbatched}D or {batched}D tensor, but got: {shape}"
_FRACTIONAL_SAMPLES = (
    "{fn}: Expect _random_samples of shape (N, C, {n}) with N no less than the batch size "
    "{batch} and C = {channels}, got {shape}"
)
_FRACTIONAL_DIMS = {2: ("height", "width"), 3: ("time", "height", "width")}


def _fractional_intervals(sample: jax.Array, size: int, out: int, kernel: int) -> jax.Array:
    """ATen's ``generate_intervals``, in the input's precision as there: window starts
    ``int((i + u) * alpha) - int(u * alpha)`` with ``alpha = (size - kernel) / (out - 1)``, the
    last window ending at the input's end. ``sample`` is ``(N, C)``; returns ``(N, C, out)``."""
    dtype = sample.dtype
    last = jnp.full((*sample.shape, 1), size - kernel, np.int32)
    if out == 1:
        return last
    alpha = np.array(size - kernel, dtype) / np.array(out - 1, dtype)
    i = lax.broadcasted_iota(dtype, (*sample.shape, out - 1), 2)
    u = sample[..., None]
    starts = ((i + u) * alpha).astype(np.int32) - (u * alpha).astype(np.int32)
    return jnp.concatenate([starts, last], axis=-1)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _fractional_core(
    x: jax.Array,
    samples: jax.Array,
    kernel: tuple[int, ...],
    out_sizes: tuple[int, ...],
    with_indices: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """The pooling of a batched input with the given ``(N, C, n)`` samples: one compiled program
    per configuration, also when called eagerly."""
    n = len(kernel)
    samples = lax.stop_gradient(samples)
    # ATen pairs the samples with the dims in reverse for 2-d (sample 0 is the width's).
    order = (1, 0) if n == 2 else tuple(range(n))
    axes = []
    for i, (size, length, k) in enumerate(zip(x.shape[2:], out_sizes, kernel)):
        starts = _fractional_intervals(samples[:, :, order[i]], size, length, k)
        coords = starts[..., None] + lax.broadcasted_iota(np.int32, (1, 1, 1, k), 3)
        axes.append(_Axis(2 + i, "plane", coords))
    return _max_pool_body(x, tuple(axes), with_indices)


def _fractional(
    input: Any,
    n: int,
    kernel_size: Any,
    output_size: Any,
    output_ratio: Any,
    with_indices: bool,
    random_samples: Any,
    key: Any,
) -> tuple[jax.Array, jax.Array | None]:
    fn = f"fractional_max_pool{n}d"
    if output_size is None and output_ratio is None:
        raise ValueError(_FRACTIONAL_NO_SIZE.format(fn=fn))
    x = jnp.asarray(input)
    if x.ndim not in (n + 1, n + 2):
        raise RuntimeError(
            _FRACTIONAL_RANK.format(fn=fn, unbatched=n + 1, batched=n + 2, shape=_shape(x.shape))
        )
    unbatched = x.ndim == n + 1
    if unbatched:
        x = x[None]
    spatial = tuple(x.shape[2:])
    kernel = _ntuple(kernel_size, n, fn, "kernel_size")
    if output_size is None:
        if isinstance(output_ratio, Sequence) and len(output_ratio) > n:
            raise ValueError(_FRACTIONAL_RATIO.format(fn=fn))
        ratios = tuple(output_ratio) if isinstance(output_ratio, Sequence) else (output_ratio,)
        ratios = ratios * n if len(ratios) == 1 else ratios
        out_sizes = tuple(int(s * r) for s, r in zip(spatial, ratios))
    else:
        out_sizes = _ntuple(output_size, n, fn, "output_size")
    if any(k <= 0 for k in kernel):
        raise RuntimeError(f"{fn}(): kernel_size must be greater than zero, got {kernel}")
    for dim, size, length, k in zip(_FRACTIONAL_DIMS[n], spatial, out_sizes, kernel):
        if length < 0:
            raise RuntimeError(f"{fn}(): output_size must be non-negative, got {out_sizes}")
        if length + k - 1 > size:
            raise RuntimeError(_FRACTIONAL_TOO_LARGE.format(fn=fn, dim=dim, kernel=k, size=size))
    batch, channels = x.shape[:2]
    if random_samples is None:
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else np.dtype(np.float32)
        samples = jax.random.uniform(
            resolve_key(key, f"{fn} (its random window offsets)"), (batch, channels, n), dtype
        )
    else:
        samples = jnp.asarray(random_samples)
        if (
            samples.ndim != 3
            or samples.shape[0] < batch
            or samples.shape[1] != channels
            or samples.shape[2] != n
        ):
            raise RuntimeError(
                _FRACTIONAL_SAMPLES.format(
                    fn=fn, n=n, batch=batch, channels=channels, shape=_shape(samples.shape)
                )
            )
        samples = samples[:batch]
    if any(o == 0 for o in out_sizes):
        out = jnp.zeros((batch, channels, *out_sizes), x.dtype)
        indices: jax.Array | None = jnp.zeros(out.shape, _index_dtype())
    else:
        out, indices = _fractional_core(x, samples, kernel, out_sizes, with_indices)
    if unbatched:
        out = out[0]
        indices = None if indices is None else indices[0]
    return out, indices


def _fractional_public(n: int, always_indices: bool) -> Callable[..., Any]:
    fn = f"fractional_max_pool{n}d"

    def fractional_max_pool(
        input: jax.Array,
        kernel_size: IntOrTuple,
        output_size: IntOrTuple | None = None,
        output_ratio: float | Sequence[float] | None = None,
        return_indices: bool = False,
        _random_samples: jax.Array | None = None,
        *,
        key: jax.Array | None = None,
    ) -> Any:
        want = always_indices or _check_bool(return_indices, fn, "return_indices")
        out, indices = _fractional(
            input, n, kernel_size, output_size, output_ratio, want, _random_samples, key
        )
        return (out, indices) if want else out

    name = fn + ("_with_indices" if always_indices else "")
    fractional_max_pool.__name__ = fractional_max_pool.__qualname__ = name
    if always_indices:
        fractional_max_pool.__doc__ = f":func:`{fn}` that always returns ``(output, indices)``."
        return fractional_max_pool
    spatial = "(N, C, H, W) or (C, H, W)" if n == 2 else "(N, C, T, H, W) or (C, T, H, W)"
    fractional_max_pool.__doc__ = f"""Fractional max pooling, like
    ``torch.nn.functional.{fn}``: windows of ``kernel_size`` whose starts are spread
    pseudo-randomly (one uniform sample per ``(N, C)`` plane and dim, ATen's interval rule).

    **Arguments:**

    - `input`: ``{spatial}``.
    - `kernel_size`: an int or a tuple of {n} ints.
    - `output_size`: the output's spatial size; or
    - `output_ratio`: in ``(0, 1)``, ``output_size = int(input_size * ratio)``.
    - `return_indices`: also return the flat index of each maximum in its ``(N, C)`` plane
      (``int32`` unless JAX's 64-bit mode is on).
    - `_random_samples`: ``(N, C, {n})`` samples in ``[0, 1)`` to use instead of drawing them
      (torch's argument; with torch's samples the result is torch's).
    - `key`: the JAX key to draw the samples from; ``None`` draws from fparam's key stream
      (``fparam.rng`` scope under a transformation, the default stream eagerly), as dropout
      does. The samples never equal torch's for a seed.

    **Returns:**

    ``output`` or ``(output, indices)``; ties and NaN pick torch's element, in the gradient too.
    """
    return fractional_max_pool


fractional_max_pool2d = _fractional_public(2, False)
fractional_max_pool3d = _fractional_public(3, False)
fractional_max_pool2d_with_indices = _fractional_public(2, True)
fractional_max_pool3d_with_indices = _fractional_public(3, True)
