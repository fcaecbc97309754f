"""Rearranging functions with torch.nn.functional's semantics: ``pixel_shuffle``,
``pixel_unshuffle``, ``channel_shuffle`` (and ``native_channel_shuffle``), ``unfold`` and ``fold``.

Each is pure data movement (``fold`` also sums overlapping blocks), written with reshapes,
transposes, strided slices and pads, so values are exact and every function works under
``jax.jit``, ``jax.grad`` and ``jax.vmap``. All checks run in Python on static shapes, with
torch's exception types and messages (ATen's ``pixel_shuffle``, ``channel_shuffle``,
``im2col`` / ``col2im`` shape checks), in torch's order.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fparam.nn import _validation as V

__all__ = [
    "channel_shuffle",
    "fold",
    "native_channel_shuffle",
    "pixel_shuffle",
    "pixel_unshuffle",
    "unfold",
]

IntOrPair = int | Sequence[int]

# torch's messages.
_SCALAR_NOT_INT = "{fn}(): argument '{name}' (position 2) must be int, not {type}"
_TUPLE_NOT_INT = (
    "{fn}(): argument '{name}' (position {position}) must be tuple of ints, but found element of "
    "type {type} at pos {pos}"
)
_SHUFFLE_RANK = (
    "{fn} expects input to have at least 3 dimensions, but got input with {rank} dimension(s)"
)
_SHUFFLE_FACTOR = "{fn} expects a positive {name}, but got {value}"
_SHUFFLE_CHANNELS = (
    "pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
    "upscale_factor, but input.size(-3)={channels} is not divisible by {square}"
)
_UNSHUFFLE_SIZE = (
    "pixel_unshuffle expects {what} to be divisible by downscale_factor, but "
    "input.size({dim})={size} is not divisible by {factor}"
)
_CHANNEL_SHUFFLE_RANK = (
    "channel_shuffle expects input with > 2 dims, but got input with sizes {shape}"
)
_GROUPS_POSITIVE = (
    "Number of groups to divide channels in must be positive. Value of groups:{groups}"
)
_GROUPS_DIVIDE = (
    "Number of channels must be divisible by groups. Got {channels} channels and {groups} groups."
)
_PAIR_LENGTH = "It is expected {name} equals to 2, but got size {size}"
_POSITIVE = "{what} should be greater than zero, but got {name}_height: {h} {name}_width: {w}"
_PADDING_NEGATIVE = "padding should be non-negative, but got pad_height: {h} pad_width: {w}"
_UNFOLD_DIM = "Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})"
_UNFOLD_0D = "Dimension specified as 1 but tensor has no dimensions"
_UNFOLD_INPUT = (
    "Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and other non-zero "
    "dimensions for input, but got: {shape}"
)
_UNFOLD_BLOCKS = (
    "Given input with spatial size ({h}, {w}), kernel_size=({kh}, {kw}), dilation=({dh}, {dw}), "
    "padding=({ph}, {pw}), calculated shape of the array of sliding blocks as ({bh}, {bw}), but "
    "its components must be at least one."
)
_FOLD_INPUT = (
    "Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch size and non-zero "
    "dimensions for input, but got: {shape}"
)
_FOLD_CHANNELS = (
    "Expected size of input's dimension 1 to be divisible by the product of kernel_size, but got "
    "input.size(1)={channels} and kernel_size=({kh}, {kw})."
)
_FOLD_CONFIG = (
    "Given output_size=({oh}, {ow}), kernel_size=({kh}, {kw}), dilation=({dh}, {dw}), "
    "padding=({ph}, {pw}), stride=({sh}, {sw}), "
)
_FOLD_BLOCKS = (
    "expected size of input's dimension 2 to match the calculated number of sliding blocks "
    "{bh} * {bw} = {blocks}, but got input.size(2)={length}."
)
_FOLD_BLOCKS_SMALL = (
    "calculated shape of the array of sliding blocks as ({bh}, {bw}), which is too small "
    "(non-positive)"
)
_FOLD_OUTPUT = "Expected output spatial size to be positive, but got: output_size=({oh}, {ow})."
_NOT_FLOATING = (
    '{fn}: "{kernel}" not implemented for {dtype} (torch: "{kernel}_out_cpu" not implemented '
    "for 'Long'): {fn} takes a floating input; cast it first (x.astype(jnp.float32))"
)


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _scalar_int(value: Any, fn: str, name: str) -> int:
    if isinstance(value, (bool, float)) or not hasattr(value, "__index__"):
        raise TypeError(_SCALAR_NOT_INT.format(fn=fn, name=name, type=type(value).__name__))
    return operator.index(value)


def _pair(value: Any, fn: str, name: str, position: int) -> tuple[int, ...]:
    """torch's ``_pair`` then the ``int[2]`` argument parse: ints only, length checked later."""
    values = tuple(value) if isinstance(value, Sequence) else (value, value)
    for pos, v in enumerate(values):
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(
                _TUPLE_NOT_INT.format(
                    fn=fn, name=name, position=position, type=type(v).__name__, pos=pos
                )
            )
    return tuple(operator.index(v) for v in values)


def _pairs(fn: str, **named: tuple[Any, int]) -> list[tuple[int, int]]:
    """Parse every argument first (torch's TypeErrors), then check the lengths in order."""
    parsed = {name: _pair(value, fn, name, pos) for name, (value, pos) in named.items()}
    for name, values in parsed.items():
        if len(values) != 2:
            raise RuntimeError(_PAIR_LENGTH.format(name=name, size=len(values)))
    return [(v[0], v[1]) for v in parsed.values()]


def _check_floating(x: jax.Array, fn: str, kernel: str) -> None:
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise NotImplementedError(_NOT_FLOATING.format(fn=fn, kernel=kernel, dtype=x.dtype))


# --------------------------------------------------------------------------------------------
# pixel_shuffle, pixel_unshuffle, channel_shuffle.
# --------------------------------------------------------------------------------------------


def pixel_shuffle(input: jax.Array, upscale_factor: int) -> jax.Array:
    """``(*, C * r**2, H, W)`` to ``(*, C, H * r, W * r)``, like ``torch.nn.functional.pixel_shuffle``.

    Output ``[..., c, h * r + i, w * r + j] = input[..., c * r**2 + i * r + j, h, w]``.

    Arguments:
        input: an array of rank >= 3 (any number of leading batch dims, none for unbatched).
        upscale_factor: ``r``, a positive int.

    Returns:
        The rearranged array, in the input's dtype.

    Raises:
        TypeError: ``upscale_factor`` is not an int.
        RuntimeError: rank < 3, ``r <= 0``, or ``C * r**2`` not divisible by ``r**2`` (torch's
        messages).
    """
    V.check_array("pixel_shuffle()", "input", input)
    r = _scalar_int(upscale_factor, "pixel_shuffle", "upscale_factor")
    x = jnp.asarray(input)
    if x.ndim < 3:
        raise RuntimeError(_SHUFFLE_RANK.format(fn="pixel_shuffle", rank=x.ndim))
    if r <= 0:
        raise RuntimeError(
            _SHUFFLE_FACTOR.format(fn="pixel_shuffle", name="upscale_factor", value=r)
        )
    *lead, c, h, w = x.shape
    if c % (r * r):
        raise RuntimeError(_SHUFFLE_CHANNELS.format(channels=c, square=r * r))
    n = len(lead)
    x = x.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: jax.Array, downscale_factor: int) -> jax.Array:
    """``(*, C, H * r, W * r)`` to ``(*, C * r**2, H, W)``, the inverse of :func:`pixel_shuffle`,
    like ``torch.nn.functional.pixel_unshuffle``.

    Arguments:
        input: an array of rank >= 3.
        downscale_factor: ``r``, a positive int dividing the height and the width.

    Returns:
        The rearranged array, in the input's dtype.

    Raises:
        TypeError: ``downscale_factor`` is not an int.
        RuntimeError: rank < 3, ``r <= 0``, or a size not divisible by ``r`` (torch's messages).
    """
    V.check_array("pixel_unshuffle()", "input", input)
    r = _scalar_int(downscale_factor, "pixel_unshuffle", "downscale_factor")
    x = jnp.asarray(input)
    if x.ndim < 3:
        raise RuntimeError(_SHUFFLE_RANK.format(fn="pixel_unshuffle", rank=x.ndim))
    if r <= 0:
        raise RuntimeError(
            _SHUFFLE_FACTOR.format(fn="pixel_unshuffle", name="downscale_factor", value=r)
        )
    *lead, c, h, w = x.shape
    for what, dim, size in (("height", -2, h), ("width", -1, w)):
        if size % r:
            raise RuntimeError(_UNSHUFFLE_SIZE.format(what=what, dim=dim, size=size, factor=r))
    n = len(lead)
    x = x.reshape(*lead, c, h // r, r, w // r, r)
    x = x.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)


def channel_shuffle(input: jax.Array, groups: int) -> jax.Array:
    """Interleave the channels of ``g`` groups, like ``torch.nn.functional.channel_shuffle``.

    The channels (dim 1, always: torch has no unbatched form, so a ``(C, H, W)`` input is read
    as ``(N, C, W)``) are viewed as ``(g, C // g)`` and transposed to ``(C // g, g)``: output
    channel ``i * g + j`` is input channel ``j * (C // g) + i``.

    Arguments:
        input: an array ``(N, C, *)`` of rank >= 3.
        groups: ``g``, a positive int dividing ``C``.

    Returns:
        An array of the input's shape and dtype.

    Raises:
        TypeError: ``groups`` is not an int.
        RuntimeError: rank < 3, ``g <= 0``, or ``C`` not divisible by ``g`` (torch's messages).
    """
    return _channel_shuffle(input, groups, "channel_shuffle")


def native_channel_shuffle(input: jax.Array, groups: int) -> jax.Array:
    """:func:`channel_shuffle` (torch's name for its native kernel; the same result here)."""
    return _channel_shuffle(input, groups, "native_channel_shuffle")


def _channel_shuffle(input: Any, groups: Any, fn: str) -> jax.Array:
    V.check_array(f"{fn}()", "input", input)
    g = _scalar_int(groups, fn, "groups")
    x = jnp.asarray(input)
    if x.ndim <= 2:
        raise RuntimeError(_CHANNEL_SHUFFLE_RANK.format(shape=_shape(x.shape)))
    if g <= 0:
        raise RuntimeError(_GROUPS_POSITIVE.format(groups=g))
    n, c, *rest = x.shape
    if c % g:
        raise RuntimeError(_GROUPS_DIVIDE.format(channels=c, groups=g))
    return x.reshape(n, g, c // g, *rest).swapaxes(1, 2).reshape(x.shape)


# --------------------------------------------------------------------------------------------
# unfold (im2col) and fold (col2im).
# --------------------------------------------------------------------------------------------


def _check_positive(what: str, name: str, values: tuple[int, int]) -> None:
    if values[0] <= 0 or values[1] <= 0:
        raise RuntimeError(_POSITIVE.format(what=what, name=name, h=values[0], w=values[1]))


def _check_padding(values: tuple[int, int]) -> None:
    if values[0] < 0 or values[1] < 0:
        raise RuntimeError(_PADDING_NEGATIVE.format(h=values[0], w=values[1]))


def _blocks(size: int, k: int, d: int, p: int, s: int) -> int:
    """The number of sliding blocks along one dim (ATen's ``div_rtn``: floor division)."""
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def unfold_arguments(
    kernel_size: IntOrPair, dilation: IntOrPair, padding: IntOrPair, stride: IntOrPair
) -> list[tuple[int, int]]:
    """``unfold``'s arguments as ``(h, w)`` pairs, checked in torch's order (``nn.Unfold``'s
    constructor calls this too, so a bad layer is never built).

    Raises:
        TypeError / RuntimeError: torch's, for non-ints, a length other than 2, a kernel, dilation
        or stride <= 0, or a negative padding.
    """
    k, d, p, s = _pairs(
        "im2col", kernel_size=(kernel_size, 2), dilation=(dilation, 3), padding=(padding, 4),
        stride=(stride, 5),
    )  # fmt: skip
    _check_positive("kernel size", "kernel", k)
    _check_positive("dilation", "dilation", d)
    _check_padding(p)
    _check_positive("stride", "stride", s)
    return [k, d, p, s]


def fold_arguments(
    output_size: IntOrPair,
    kernel_size: IntOrPair,
    dilation: IntOrPair,
    padding: IntOrPair,
    stride: IntOrPair,
) -> list[tuple[int, int]]:
    """``fold``'s arguments as ``(h, w)`` pairs, checked in torch's order (``nn.Fold``'s
    constructor calls this too).

    Raises:
        TypeError / RuntimeError: as :func:`unfold_arguments`, for ``output_size`` too (its
        sign is checked against the input in :func:`fold`).
    """
    o, k, d, p, s = _pairs(
        "col2im", output_size=(output_size, 2), kernel_size=(kernel_size, 3),
        dilation=(dilation, 4), padding=(padding, 5), stride=(stride, 6),
    )  # fmt: skip
    _check_positive("kernel size", "kernel", k)
    _check_positive("stride", "stride", s)
    _check_positive("dilation", "dilation", d)
    _check_padding(p)
    return [o, k, d, p, s]


def unfold(
    input: jax.Array,
    kernel_size: IntOrPair,
    dilation: IntOrPair = 1,
    padding: IntOrPair = 0,
    stride: IntOrPair = 1,
) -> jax.Array:
    """Extract sliding blocks (im2col), like ``torch.nn.functional.unfold``.

    ``(N, C, H, W)`` gives ``(N, C * kh * kw, L)``: column ``l`` (blocks in row-major order over
    the ``bh x bw`` grid of block positions) holds the block's values ordered by channel, then
    kernel row, then kernel column. Per dim, ``b = (size + 2p - d(k-1) - 1) // s + 1``. The
    input is zero-padded by ``padding`` on both sides of H and W.

    Arguments:
        input: ``(N, C, H, W)``, or unbatched ``(C, H, W)`` (gives ``(C * kh * kw, L)``); every
            dim but ``N`` must be non-empty. A floating dtype.
        kernel_size, dilation, padding, stride: ints or ``(h, w)`` pairs.

    Returns:
        The blocks, in the input's dtype.

    Raises:
        TypeError, RuntimeError, IndexError, NotImplementedError: where torch raises them
        (non-int or wrong-length arguments, non-positive kernel/dilation/stride, negative
        padding, rank < 3 (``IndexError``) or > 4, empty dims, no complete block, an integer
        input), with torch's messages.
    """
    V.check_array("unfold()", "input", input)
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = unfold_arguments(
        kernel_size, dilation, padding, stride
    )
    x = jnp.asarray(input)
    if x.ndim == 0:
        raise IndexError(_UNFOLD_0D)
    if x.ndim < 3:  # torch reads input.size(2) before it checks the rank
        raise IndexError(_UNFOLD_DIM.format(lo=-x.ndim, hi=x.ndim - 1, dim=x.ndim))
    if x.ndim > 4 or 0 in x.shape[-3:]:
        raise RuntimeError(_UNFOLD_INPUT.format(shape=_shape(x.shape)))
    _check_floating(x, "unfold", "im2col")
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    n, c, h, w = x.shape
    bh, bw = _blocks(h, kh, dh, ph, sh), _blocks(w, kw, dw, pw, sw)
    if bh < 1 or bw < 1:
        raise RuntimeError(
            _UNFOLD_BLOCKS.format(
                h=h, w=w, kh=kh, kw=kw, dh=dh, dw=dw, ph=ph, pw=pw, bh=bh, bw=bw
            )
        )  # fmt: skip
    if ph or pw:
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), (ph, ph, 0), (pw, pw, 0)])
    blocks = [
        lax.slice(
            x,
            (0, 0, i * dh, j * dw),
            (n, c, i * dh + sh * (bh - 1) + 1, j * dw + sw * (bw - 1) + 1),
            (1, 1, sh, sw),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    cols = jnp.stack(blocks, axis=2).reshape(n, c * kh * kw, bh * bw)
    return cols if batched else cols[0]


def fold(
    input: jax.Array,
    output_size: IntOrPair,
    kernel_size: IntOrPair,
    dilation: IntOrPair = 1,
    padding: IntOrPair = 0,
    stride: IntOrPair = 1,
) -> jax.Array:
    """Sum sliding blocks into an image (col2im), like ``torch.nn.functional.fold``.

    The adjoint of :func:`unfold`: ``(N, C * kh * kw, L)`` gives ``(N, C, *output_size)``, each
    block's values added at its position (overlaps sum); ``L`` must equal the number of block
    positions that :func:`unfold` finds in an ``output_size`` image with these settings.

    Arguments:
        input: ``(N, C * kh * kw, L)``, or unbatched ``(C * kh * kw, L)`` (gives
            ``(C, *output_size)``); every dim but ``N`` non-empty. A floating dtype.
        output_size: the spatial size ``(H, W)`` of the output (an int for both).
        kernel_size, dilation, padding, stride: ints or ``(h, w)`` pairs.

    Returns:
        The summed image, in the input's dtype.

    Raises:
        TypeError, RuntimeError, NotImplementedError: where torch raises them, with torch's
        messages, e.g. ``Given output_size=(4, 5), kernel_size=(2, 2), dilation=(1, 1),
        padding=(0, 0), stride=(1, 1), expected size of input's dimension 2 to match the
        calculated number of sliding blocks 3 * 4 = 12, but got input.size(2)=11.``
    """
    V.check_array("fold()", "input", input)
    (oh, ow), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = fold_arguments(
        output_size, kernel_size, dilation, padding, stride
    )
    x = jnp.asarray(input)
    if x.ndim not in (2, 3) or 0 in x.shape[-2:]:
        raise RuntimeError(_FOLD_INPUT.format(shape=_shape(x.shape)))
    batched = x.ndim == 3
    if not batched:
        x = x[None]
    n, ckk, length = x.shape
    if ckk % (kh * kw):
        raise RuntimeError(_FOLD_CHANNELS.format(channels=ckk, kh=kh, kw=kw))
    config = _FOLD_CONFIG.format(
        oh=oh, ow=ow, kh=kh, kw=kw, dh=dh, dw=dw, ph=ph, pw=pw, sh=sh, sw=sw
    )
    bh, bw = _blocks(oh, kh, dh, ph, sh), _blocks(ow, kw, dw, pw, sw)
    if length != bh * bw:
        raise RuntimeError(
            config + _FOLD_BLOCKS.format(bh=bh, bw=bw, blocks=bh * bw, length=length)
        )
    if bh < 1 or bw < 1:
        raise RuntimeError(config + _FOLD_BLOCKS_SMALL.format(bh=bh, bw=bw))
    if oh < 1 or ow < 1:
        raise RuntimeError(_FOLD_OUTPUT.format(oh=oh, ow=ow))
    _check_floating(x, "fold", "col2im")
    c = ckk // (kh * kw)
    cols = x.reshape(n, c, kh, kw, bh, bw)
    hp, wp = oh + 2 * ph, ow + 2 * pw
    zero = jnp.zeros((), x.dtype)

    def place(i: int, j: int) -> jax.Array:
        # Block (i, j) lands on rows i*dh + sh*t and columns j*dw + sw*u of the padded image: a
        # pad with interior stride - 1 puts it there (the last block ends inside the image).
        top, left = i * dh, j * dw
        return lax.pad(
            cols[:, :, i, j],
            zero,
            [
                (0, 0, 0),
                (0, 0, 0),
                (top, hp - top - (sh * (bh - 1) + 1), sh - 1),
                (left, wp - left - (sw * (bw - 1) + 1), sw - 1),
            ],
        )

    out = functools.reduce(operator.add, [place(i, j) for i in range(kh) for j in range(kw)])
    out = out[:, :, ph : ph + oh, pw : pw + ow]
    return out if batched else out[0]
