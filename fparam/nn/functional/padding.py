"""``pad``: torch.nn.functional.pad's four modes as one pure JAX function.

Mirrors ``torch.nn.functional.pad`` (``reference/torch-semantics.md`` §3.7): the pad order (the
last dimension first), negative pads (they crop), the rank each non-constant mode accepts
(batched or unbatched), the size limits of each mode, and the error conditions, raised with
torch's exception types and messages (plus, where torch's message does not say which pad or dim
is at fault, a clause that does). All checks run in Python on static shapes, so ``pad`` works
under ``jax.jit``, ``jax.grad`` and ``jax.vmap``; the padding modules of ``fparam.nn.padding``
and the conv layers' ``padding_mode`` call it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fparam.nn import _validation as V

__all__ = ["pad"]

# torch's messages (ATen's constant_pad_nd, reflection/replication/circular pad kernels).
_PAD_NOT_SEQUENCE = "pad(): argument 'pad' must be tuple of ints, not {type}"
_PAD_NOT_INT = (
    "pad(): argument 'pad' (position 2) must be tuple of ints, but found element of type "
    "{type} at pos {pos}"
)
_PAD_ODD = "Padding length must be divisible by 2"
_PAD_TOO_LONG = (
    "Padding length should be less than or equal to two times the input dimension but got "
    "padding length {length} and input of dimension {rank}"
)
_PAD_MODE = "Unrecognised padding mode {mode}"
_PAD_VALUE = 'Padding mode "{mode}" doesn\'t take in value argument'
_PAD_UNSUPPORTED_RANK = (
    "Padding size {length} is not supported for {rank}D input tensor.\n"
    "Supported combinations for non-constant padding:\n"
    "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
    "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
    "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
)
_PAD_EMPTY_DIMS = (
    "Expected {unbatched}D or {batched}D (batch mode) tensor with possibly 0 batch size and other "
    "non-zero dimensions for input, but got: {shape}"
)
_PAD_REFLECT_TOO_BIG = (
    "Argument #{arg}: Padding size should be less than the corresponding input dimension, but "
    "got: padding ({lo}, {hi}) at dimension {dim} of input {shape}"
)
_PAD_OUTPUT_TOO_SMALL = "input ({input}) is too small. Calculated output {output}"
_PAD_NEGATIVE_OUTPUT = (
    "Trying to create tensor with negative dimension {size}: {out_shape} (padding {pads} of "
    "input {shape} gives a negative size at dimension {dim})"
)
_PAD_CIRCULAR_WRAP = "Padding value causes wrapping around more than once."
_PAD_CIRCULAR_EMPTY = "Negative padding value is resulting in an empty dimension"
_PAD_CONSTANT_NEGATIVE = (
    "narrow(): length must be non-negative. (negative padding ({lo}, {hi}) at dimension {dim} "
    "of input {shape} crops it to a negative size ({size}); torch crops before it pads)"
)

_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_DIM_LETTERS = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _shape(shape: Sequence[int]) -> str:
    """Format a shape as torch prints ``tensor.sizes()``: ``[2, 3, 8, 8]``."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _as_int(value: Any, pos: int) -> int:
    if isinstance(value, bool):
        raise TypeError(_PAD_NOT_INT.format(type="bool", pos=pos))
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(_PAD_NOT_INT.format(type=type(value).__name__, pos=pos)) from None


def _too_small(sizes: Sequence[int], out_sizes: Sequence[int]) -> str:
    """torch's reflection-pad wording: ``input (D: 3 H: 3, W: 3) ... output D: 0 H: 0 W: 0``."""
    letters = _DIM_LETTERS[len(sizes)]
    pairs = [f"{c}: {int(s)}" for c, s in zip(letters, sizes)]
    shown = ", ".join(pairs[-2:]) if len(pairs) > 1 else pairs[0]
    if len(pairs) == 3:
        shown = f"{pairs[0]} {shown}"
    output = " ".join(f"{c}: {int(s)}" for c, s in zip(letters, out_sizes))
    return _PAD_OUTPUT_TOO_SMALL.format(input=shown, output=output)


def pad(
    input: Any, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> jax.Array:
    """Pads an array, like ``torch.nn.functional.pad``.

    ``pad`` lists ``(lo, hi)`` pairs starting from the **last** dimension:
    ``(left, right)`` pads the last dim, ``(left, right, top, bottom)`` the last two, and so on.
    A negative pad crops.

    Arguments:
        input: any array.
        pad: an even-length sequence of ints, at most ``2 * input.ndim`` long.
        mode: ``'constant'`` (any rank; negative pads crop first, and a dim may not be cropped
            below size 0), ``'reflect'`` (mirror without repeating the edge; each pad must be
            smaller than the dim), ``'replicate'`` (repeat the edge; any size) or ``'circular'``
            (wrap around; negative pads crop first, then each pad may be at most the remaining
            size). The non-constant modes pad the last 1, 2 or 3 dims of a batched or unbatched
            input: a pad of length ``2k`` needs a ``(k+1)``-D or ``(k+2)``-D input with non-empty
            non-batch dims. They map onto ``jnp.pad``'s ``reflect``, ``edge`` and ``wrap``.
            ``'reflect'``/``'replicate'`` with negative pads: a padded dim may come out empty
            (but not negative) as long as one other padded dim keeps a size of 1 or more; a 1-D
            padding must leave at least 1.
        value: the fill value for ``'constant'`` (``None`` means 0; cast to the input's dtype,
            so 1.5 fills an integer array with 1); the other modes accept only 0 or ``None``.

    Returns:
        The padded array, in the input's dtype.

    Raises:
        RuntimeError / NotImplementedError / TypeError: where torch raises them, with torch's
        messages.
    """
    V.check_array("pad()", "input", input)
    if not isinstance(pad, (tuple, list)):  # torch's TypeError ('NoneType' is not iterable)
        raise TypeError(_PAD_NOT_SEQUENCE.format(type=type(pad).__name__))
    if value is not None:
        V.check_number("pad()", "value", value)
    x = jnp.asarray(input)
    if mode not in _PAD_MODES:
        raise NotImplementedError(_PAD_MODE.format(mode=mode))
    pads = tuple(_as_int(p, i) for i, p in enumerate(pad))
    if len(pads) % 2:
        raise RuntimeError(_PAD_ODD)
    if len(pads) > 2 * x.ndim:
        raise RuntimeError(_PAD_TOO_LONG.format(length=len(pads), rank=x.ndim))
    # pairs[i] pads dimension dims[i]; torch's pad order starts from the last dimension.
    pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)]
    dims = [x.ndim - 1 - i for i in range(len(pairs))]

    if mode == "constant":
        config = [(0, 0, 0)] * x.ndim
        for dim, (lo, hi) in zip(dims, pairs):
            # torch narrows away the negative pads before it pads, so the crop alone must fit.
            cropped = x.shape[dim] + min(lo, 0) + min(hi, 0)
            if cropped < 0:
                raise RuntimeError(
                    _PAD_CONSTANT_NEGATIVE.format(
                        lo=lo, hi=hi, dim=dim, shape=_shape(x.shape), size=cropped
                    )
                )
            config[dim] = (lo, hi, 0)
        fill = jnp.asarray(0 if value is None else value).astype(x.dtype)
        return lax.pad(x, fill, config)

    if value is not None and value != 0:
        raise RuntimeError(_PAD_VALUE.format(mode=mode))
    k = len(pairs)
    if k not in (1, 2, 3) or x.ndim not in (k + 1, k + 2):
        raise NotImplementedError(_PAD_UNSUPPORTED_RANK.format(length=len(pads), rank=x.ndim))

    if mode == "circular":
        # torch crops the negative pads first, then wraps around what is left.
        start = [0] * x.ndim
        stop = list(x.shape)
        for dim, (lo, hi) in zip(dims, pairs):
            if lo > x.shape[dim] or hi > x.shape[dim]:
                raise RuntimeError(_PAD_CIRCULAR_WRAP)
            start[dim], stop[dim] = max(-lo, 0), x.shape[dim] - max(-hi, 0)
            if stop[dim] < start[dim]:
                raise RuntimeError(_PAD_CIRCULAR_EMPTY)
            if max(lo, 0) > stop[dim] - start[dim] or max(hi, 0) > stop[dim] - start[dim]:
                raise RuntimeError(_PAD_CIRCULAR_WRAP)
        x = lax.slice(x, start, stop)
        widths = [(0, 0)] * x.ndim
        for dim, (lo, hi) in zip(dims, pairs):
            widths[dim] = (max(lo, 0), max(hi, 0))
        return jnp.pad(x, widths, mode="wrap") if any(map(any, widths)) else x

    # reflect / replicate: output position j reads input position j - lo, reflected or clamped
    # into range; that is padding the positive parts, then cropping the negative ones.
    if any(s == 0 for s in (x.shape[1:] if x.ndim == k + 2 else x.shape)):
        raise RuntimeError(
            _PAD_EMPTY_DIMS.format(unbatched=k + 1, batched=k + 2, shape=_shape(x.shape))
        )
    if mode == "reflect":
        for i, (dim, (lo, hi)) in enumerate(zip(dims, pairs)):
            if lo >= x.shape[dim] or hi >= x.shape[dim]:
                raise RuntimeError(
                    _PAD_REFLECT_TOO_BIG.format(
                        arg=4 + 2 * i, lo=lo, hi=hi, dim=dim, shape=_shape(x.shape)
                    )
                )
    out_sizes = [x.shape[dim] + lo + hi for dim, (lo, hi) in zip(dims, pairs)]
    # torch refuses an output with no padded dim of size >= 1, and any negative size (2-D and
    # 3-D padding may leave some padded dims empty).
    if all(s < 1 for s in out_sizes):
        in_sizes = [x.shape[d] for d in dims[::-1]]
        raise RuntimeError(_too_small(in_sizes, out_sizes[::-1]))
    if any(s < 0 for s in out_sizes):
        out_shape = list(x.shape)
        for dim, s in zip(dims, out_sizes):
            out_shape[dim] = s
        dim, size = next((d, s) for d, s in zip(dims[::-1], out_sizes[::-1]) if s < 0)
        raise RuntimeError(
            _PAD_NEGATIVE_OUTPUT.format(
                size=size, out_shape=_shape(out_shape), pads=pads, shape=_shape(x.shape), dim=dim
            )
        )
    widths = [(0, 0)] * x.ndim
    start = [0] * x.ndim
    stop = list(x.shape)
    for dim, (lo, hi) in zip(dims, pairs):
        widths[dim] = (max(lo, 0), max(hi, 0))
        start[dim] = max(-lo, 0)
        stop[dim] = x.shape[dim] + max(lo, 0) + max(hi, 0) - max(-hi, 0)
    if any(map(any, widths)):
        x = jnp.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    if any(start) or tuple(stop) != x.shape:
        x = lax.slice(x, start, stop)
    return x
