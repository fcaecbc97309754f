"""``CosineSimilarity`` and ``PairwiseDistance`` (``torch/nn/modules/distance.py``).

Thin shells over ``fparam.nn.functional.cosine_similarity`` / ``pairwise_distance``. As in torch
neither has an ``extra_repr`` (``repr`` is ``CosineSimilarity()``), and ``PairwiseDistance``
stores ``p`` as ``norm``.
"""

from __future__ import annotations

import jax

from fparam._module import Module
from fparam.nn import functional as F

__all__ = ["CosineSimilarity", "PairwiseDistance"]


class CosineSimilarity(Module):
    """Cosine similarity of two inputs along ``dim``, like ``torch.nn.CosineSimilarity``.

    Arguments:
        dim: the axis reduced (default 1).
        eps: the smallest norm divided by (default 1e-8).

    ``forward(x1, x2)``: broadcastable inputs; the output drops ``dim``.
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """The p-norm of ``x1 - x2 + eps`` over the last dim, like ``torch.nn.PairwiseDistance``.

    Arguments:
        p: the norm's order (stored as ``norm``, torch's attribute name).
        eps: added to the difference (default 1e-6).
        keepdim: keep the reduced dim.
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm = p
        self.eps = eps
        self.keepdim = keepdim

    def forward(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
