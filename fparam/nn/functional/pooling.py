"""Pooling as pure JAX functions, with torch.nn.functional's semantics.

Signatures, defaults, output sizes (ATen's ``pooling_output_shape``, ceil mode included), the
divisor rules of average pooling, the windows of adaptive pooling, unbatched inputs and the error
conditions are torch's (exception types, and messages that carry torch's wording).

Max pooling picks the element torch picks. torch scans a window in row-major order and keeps
the FIRST maximum (``val > maxval``), except that a NaN always wins, so the LAST NaN of a window
is kept. Its indices and its gradient both point at that element. JAX's own derivative of
``lax.reduce_window`` max (select-and-scatter) may route a tie elsewhere, so the value is
computed with ``lax.reduce_window`` and its derivative is a ``jax.custom_jvp`` that selects
torch's element window-offset by window-offset (the transpose of the selection is the backward,
so ``jax.grad``, ``jax.jvp`` and higher orders all see the same routing).

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
    "max_pool1d",
    "max_pool1d_with_indices",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
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

    def __init__(self, axis: int, kind: str, params: tuple[Any, ...]) -> None:
        self.axis = axis
        self.kind = kind
        self.params = params
        if kind == "slide":
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

    def takes(self, x: jax.Array, fill: Any) -> list[jax.Array]:
        """The ``k``-th element of every window, for each offset ``k``."""
        if self.kind == "slide":
            _size, out, kernel, stride, pad, dilation = self.params
            if pad or self.high:
                config = [(0, 0, 0)] * x.ndim
                config[self.axis] = (pad, self.high, 0)
                x = lax.pad(x, np.array(fill, x.dtype), config)
            return [
                lax.slice_in_dim(
                    x, k * dilation, k * dilation + (out - 1) * stride + 1, stride, self.axis
                )
                for k in range(kernel)
            ]
        columns = np.asarray(self.params, np.int32).T  # (count, out)
        return [jnp.take(x, columns[k], axis=self.axis) for k in range(self.count)]

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
        return lax.reduce_max(_stack(self.takes(x, lowest)), (0,))


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
    x: jax.Array, payload: jax.Array | None, ax: _Axis, lowest: Any
) -> tuple[jax.Array, jax.Array | None]:
    """Max over the windows of one axis, differentiated as torch routes it; ``payload`` (the
    flat input index of each element) follows the chosen elements."""
    valid = ax.valid(x.ndim)

    @jax.custom_jvp
    def stage(x: jax.Array) -> jax.Array:
        return ax.maximum(x, lowest)

    @stage.defjvp
    def stage_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> Any:
        (x,), (t,) = primals, tangents
        out = ax.maximum(x, lowest)
        sel = _selection(_stack(ax.takes(x, lowest)), out, valid)
        return out, _pick(_stack(ax.takes(t, 0)), sel)

    out = stage(x)
    if payload is not None:
        primal = lax.stop_gradient(x)
        sel = _selection(_stack(ax.takes(primal, lowest)), lax.stop_gradient(out), valid)
        payload = _pick(_stack(ax.takes(jnp.broadcast_to(payload, x.shape), 0)), sel)
    return out, payload


@partial(jax.jit, static_argnums=(1, 2))
def _max_pool_core(
    x: jax.Array, axes: tuple[_Axis, ...], with_indices: bool
) -> tuple[jax.Array, jax.Array | None]:
    """The maxima (and flat plane indices) of a batched input over separable windows: one
    compiled program per configuration, also when called eagerly."""
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
        # Unequal windows: one averaging matrix per dim, applied in turn.
        y = x.astype(acc)
        for axis, (i, o) in enumerate(zip(spatial, out_sizes)):
            start, end = _adaptive_bounds(i, o)
            positions = np.arange(i)
            inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
            matrix = inside / np.maximum(end - start, 1)[:, None]
            y = jnp.moveaxis(
                jnp.tensordot(
                    jnp.moveaxis(y, 2 + axis, -1),
                    jnp.asarray(matrix.T, acc),
                    axes=1,
                    precision=lax.Precision.HIGHEST,
                ),
                -1,
                2 + axis,
            )
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
