"""``Fold`` and ``Unfold`` (``torch/nn/modules/fold.py``): sliding blocks to and from images.

Thin shells over ``fparam.nn.functional.fold`` / ``unfold``. The arguments are stored as given
(an int or a pair, as torch keeps them, so ``repr`` is torch's) and checked at construction with
the functional's checks (types, lengths, signs: torch's exception types and messages, which
torch raises only in ``forward``).
"""

from __future__ import annotations

import jax

from fparam._module import Module
from fparam.nn import functional as F
from fparam.nn.functional import vision

__all__ = ["Fold", "Unfold"]

IntOrPair = int | tuple[int, int]


class Fold(Module):
    """Sums sliding blocks into an image (col2im), like ``torch.nn.Fold``.

    Arguments:
        output_size: the spatial size ``(H, W)`` of the output (an int for both).
        kernel_size, dilation, padding, stride: ints or ``(h, w)`` pairs (defaults 1, 0, 1).

    Input ``(N, C * kh * kw, L)`` or unbatched ``(C * kh * kw, L)``, with ``L`` the number of
    block positions; output ``(N, C, H, W)`` / ``(C, H, W)``. See ``F.fold``.
    """

    def __init__(
        self,
        output_size: IntOrPair,
        kernel_size: IntOrPair,
        dilation: IntOrPair = 1,
        padding: IntOrPair = 0,
        stride: IntOrPair = 1,
    ) -> None:
        vision.fold_arguments(output_size, kernel_size, dilation, padding, stride)
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: jax.Array) -> jax.Array:
        return F.fold(
            input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}"
        )


class Unfold(Module):
    """Extracts sliding blocks (im2col), like ``torch.nn.Unfold``.

    Arguments:
        kernel_size, dilation, padding, stride: ints or ``(h, w)`` pairs (defaults 1, 0, 1).

    Input ``(N, C, H, W)`` or unbatched ``(C, H, W)``; output ``(N, C * kh * kw, L)`` /
    ``(C * kh * kw, L)``. See ``F.unfold``.
    """

    def __init__(
        self,
        kernel_size: IntOrPair,
        dilation: IntOrPair = 1,
        padding: IntOrPair = 0,
        stride: IntOrPair = 1,
    ) -> None:
        vision.unfold_arguments(kernel_size, dilation, padding, stride)
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: jax.Array) -> jax.Array:
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
            f"stride={self.stride}"
        )
