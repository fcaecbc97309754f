"""Activations (``torch/nn/modules/activation.py``): thin modules over ``nn.functional``.

``inplace=`` is accepted for signature compatibility and shown in ``repr`` as in torch; JAX
arrays are immutable, so it changes nothing.
"""

from __future__ import annotations

import jax

from fparam._module import Module
from fparam.nn import functional as F

__all__ = ["ELU", "GELU", "LeakyReLU", "LogSoftmax", "ReLU", "SiLU", "Sigmoid", "Softmax", "Tanh"]


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class ReLU(Module):
    """``max(0, x)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.relu(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class LeakyReLU(Module):
    """``x if x >= 0 else negative_slope * x``."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"negative_slope={self.negative_slope}{inplace}"


class ELU(Module):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"alpha={self.alpha}{inplace}"


class GELU(Module):
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: jax.Array) -> jax.Array:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.silu(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.sigmoid(input)


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.tanh(input)


class Softmax(Module):
    """Softmax over ``dim`` (torch's legacy implicit dim when ``None``)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax over ``dim`` (torch's legacy implicit dim when ``None``)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.log_softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


__all__ += ["Softmax2d"]

_SOFTMAX2D_RANK = "Softmax2d: expected input to be 3D or 4D, got {rank}D instead"


class Softmax2d(Module):
    """Softmax over the channels (dim -3) at every position, like ``torch.nn.Softmax2d``.

    Input ``(N, C, H, W)`` or unbatched ``(C, H, W)``; any other rank raises torch's
    ``ValueError``.
    """

    def forward(self, input: jax.Array) -> jax.Array:
        rank = jax.numpy.ndim(input)
        if rank not in (3, 4):
            raise ValueError(_SOFTMAX2D_RANK.format(rank=rank))
        return F.softmax(input, -3)
