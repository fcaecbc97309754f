"""Channel/space rearranging layers: ``PixelShuffle``, ``PixelUnshuffle``
(``torch/nn/modules/pixelshuffle.py``) and ``ChannelShuffle`` (``channelshuffle.py``).

Thin shells over ``fparam.nn.functional.pixel_shuffle`` / ``pixel_unshuffle`` /
``channel_shuffle``, which hold the maths and torch's input checks. The factor is checked at
construction (an int, > 0), where torch only checks it in ``forward``: the same exception types
and torch's messages, earlier.
"""

from __future__ import annotations

import jax

from fparam._module import Module
from fparam.nn import functional as F
from fparam.nn.functional import vision

__all__ = ["ChannelShuffle", "PixelShuffle", "PixelUnshuffle"]


def _factor(value: int, fn: str, name: str, message: str) -> int:
    factor = vision._scalar_int(value, fn, name)
    if factor <= 0:
        raise RuntimeError(message.format(fn=fn, name=name, value=factor, groups=factor))
    return factor


class PixelShuffle(Module):
    """``(*, C * r**2, H, W)`` to ``(*, C, H * r, W * r)``, like ``torch.nn.PixelShuffle``.

    Arguments:
        upscale_factor: ``r``, a positive int.
    """

    def __init__(self, upscale_factor: int) -> None:
        upscale_factor = _factor(
            upscale_factor, "pixel_shuffle", "upscale_factor", vision._SHUFFLE_FACTOR
        )
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``(*, C, H * r, W * r)`` to ``(*, C * r**2, H, W)``, like ``torch.nn.PixelUnshuffle``.

    Arguments:
        downscale_factor: ``r``, a positive int.
    """

    def __init__(self, downscale_factor: int) -> None:
        downscale_factor = _factor(
            downscale_factor, "pixel_unshuffle", "downscale_factor", vision._SHUFFLE_FACTOR
        )
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class ChannelShuffle(Module):
    """Interleaves the channels (dim 1) of ``groups`` groups, like ``torch.nn.ChannelShuffle``.

    Arguments:
        groups: a positive int dividing the number of channels.

    Input ``(N, C, *)`` of rank >= 3 (torch has no unbatched form: dim 1 is always the channels).
    """

    def __init__(self, groups: int) -> None:
        groups = _factor(groups, "channel_shuffle", "groups", vision._GROUPS_POSITIVE)
        super().__init__()
        self.groups = groups

    def forward(self, input: jax.Array) -> jax.Array:
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
