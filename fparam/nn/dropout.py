"""Dropout layers (``torch/nn/modules/dropout.py``): thin modules over ``nn.functional``.

A dropout module holds no random state, as in torch (no ``state_dict`` entries). In training
mode its forward draws a key from fparam's stream (``fparam.manual_seed`` eagerly; the key in
scope of ``with fparam.rng(key):`` under a transformation), or uses the ``key=`` given to the
call. ``inplace=`` is accepted and shown in ``repr`` as in torch; JAX arrays are immutable, so it
changes nothing.
"""

from __future__ import annotations

import jax

from fparam._module import Module
from fparam.nn import functional as F
from fparam.nn.functional.dropout import _check_p

__all__ = [
    "AlphaDropout",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        _check_p(p)
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` in training mode, scaling the rest by
    ``1 / (1 - p)``; the identity in eval mode. Like ``torch.nn.Dropout``.

    Arguments:
        p: drop probability in ``[0, 1]`` (``ValueError`` otherwise, as torch).
        inplace: accepted for torch compatibility; no effect.

    ``forward(input, *, key=None)``: ``key`` overrides fparam's key stream for this call.
    """

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` inputs; see :class:`Dropout`."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole channels of ``(N, C, H, W)`` inputs (torch's rank rules and warnings);
    see :class:`Dropout`."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` inputs; see
    :class:`Dropout`."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Alpha dropout for SELU networks (keeps zero mean, unit variance), like
    ``torch.nn.AlphaDropout``; see :func:`fparam.nn.functional.alpha_dropout`."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels, like ``torch.nn.FeatureAlphaDropout``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.feature_alpha_dropout(input, self.p, self.training)
