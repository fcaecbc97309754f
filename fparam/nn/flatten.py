"""``Flatten`` and ``Unflatten`` (``torch/nn/modules/flatten.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from fparam._module import Module
from fparam.nn import _validation as V
from fparam.nn import functional as F

__all__ = ["Flatten", "Unflatten"]


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (``(2,3,4,5)`` gives ``(2,60)`` by default)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size`` (one entry may be ``-1``)."""

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        dim = V.check_int("Unflatten", "dim", dim)  # torch: TypeError in forward
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(
                "unflattened_size must be a tuple of ints, but found type "
                f"{type(unflattened_size).__name__}"
            )
        sizes = []
        for index, size in enumerate(unflattened_size):
            # bool too: torch accepts True here and raises this TypeError in forward.
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise TypeError(
                    "unflattened_size must be tuple of ints, but found element of type "
                    f"{type(size).__name__} at pos {index}"
                )
            sizes.append(int(size))
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(sizes)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
