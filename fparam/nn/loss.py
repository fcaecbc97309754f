"""Losses (``torch/nn/modules/loss.py``): thin modules over ``nn.functional``.

As in torch, nothing is validated at construction (a bad ``reduction`` fails at call time),
class weights are registered as buffers (so they appear in ``state_dict()``), and the legacy
``size_average`` / ``reduce`` arguments map to a ``reduction`` with a deprecation warning.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import jax
import numpy as np

from fparam._module import Module, _torch_to_numpy
from fparam.nn import functional as F

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "L1Loss", "MSELoss", "NLLLoss"]


def _caller_stacklevel() -> int:
    """The ``stacklevel`` naming the first frame outside this file (the user's constructor call,
    whichever class's ``__init__`` chain got here)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """torch's ``_Reduction.legacy_get_string``."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        reduction = "mean"
    elif reduce:
        reduction = "sum"
    else:
        reduction = "none"
    warnings.warn(
        "size_average and reduce args will be deprecated, please use "
        f"reduction='{reduction}' instead.",
        stacklevel=_caller_stacklevel(),
    )
    return reduction


def _weight_buffer(value: Any) -> Any:
    """A class-weight argument as a buffer value: torch tensors (what a torch user passes) are
    copied to NumPy; anything else goes to ``register_buffer``, which names what it refuses."""
    if value is not None and hasattr(value, "detach") and hasattr(value, "__array__"):
        return np.array(_torch_to_numpy(value), copy=True)
    return value


class _Loss(Module):
    def __init__(
        self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(
        self,
        weight: Any = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        weight = _weight_buffer(weight)
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy between logits and class indices or class probabilities.

    Arguments:
        weight: per-class weights ``(C,)`` (a buffer, saved in ``state_dict``).
        ignore_index: targets equal to it contribute nothing (index targets only).
        reduction: ``'none'``, ``'mean'`` (weighted mean over non-ignored) or ``'sum'``.
        label_smoothing: ε in ``[0, 1]``, torch's formula.

    Inputs are ``(C)``, ``(N, C)`` or ``(N, C, d1, ...)`` logits, the class dim being 1; targets
    are integer indices (int32 accepted, unlike torch) or probabilities of the input's shape.
    See ``nn.functional.cross_entropy`` for every rule and error.
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of log-probabilities ``input`` at class indices ``target``."""

    def __init__(
        self,
        weight: Any = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.nll_loss(
            input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction
        )


class MSELoss(_Loss):
    """Mean squared error."""

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error."""

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.l1_loss(input, target, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities (logs clamped at -100, as torch)."""

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross entropy in one numerically stable expression.

    ``weight`` and ``pos_weight`` are buffers, as in torch.
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: Any = None,
    ) -> None:
        weight = _weight_buffer(weight)
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", _weight_buffer(pos_weight))

    def forward(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )
