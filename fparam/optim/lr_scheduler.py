"""Learning-rate schedules with torch's sequences: ``StepLR``, ``MultiStepLR``,
``CosineAnnealingLR``, ``LambdaLR``.

fparam optimizers are values, so a scheduler cannot reach "the" optimizer behind the user's
back as torch's does. It offers both styles:

* torch style, at top level: ``opt = scheduler.step(opt)`` after each epoch (it sets the lrs of
  the optimizer you pass, in place, and returns it). Inside ``jit`` or ``scan`` it raises: it
  would advance the epoch once, when the step is traced, and the compiled step would keep that
  lr for ever;
* inside ``jit``: ``opt = scheduler.apply(opt, epoch)`` sets the lrs for a (traced) epoch
  number without touching ``scheduler``, on a copy that the step must return (as every value
  changed under ``jit``); the lr is a leaf, so nothing recompiles.

Both compute torch's values: ``lr_at(epoch)`` is the closed form of torch's recursive update
(equal up to float rounding).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _torch_names
from fparam.optim._errors import SCHEDULER_STEP_TRACED
from fparam.optim.optimizer import Optimizer

__all__ = ["CosineAnnealingLR", "LRScheduler", "LambdaLR", "MultiStepLR", "StepLR"]


def _is_python_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _staging() -> bool:
    """Whether the caller runs inside ``jit``/``scan`` (where every new array is traced)."""
    return isinstance(jnp.asarray(0), jax.core.Tracer)


def _float(x: Any) -> Any:
    """A traced value as JAX's default float (an explicit cast: strict promotion allows it)."""
    return jnp.asarray(x, jax.dtypes.canonicalize_dtype(np.float64))


class LRScheduler:
    """Base of the schedules: base lrs from the optimizer, an epoch counter, torch's API.

    Arguments:
        optimizer: the optimizer whose groups' current ``lr`` are the base lrs.
        last_epoch: the index of the last epoch (``-1`` starts fresh). As in torch, the
            constructor performs the first ``step``, so ``last_epoch`` is 0 afterwards and
            ``optimizer``'s lrs are the epoch-0 values.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[Any] = list(self.base_lrs)
        self.step(optimizer)

    def _factor(self, epoch: Any, base_lr: float) -> Any:
        raise NotImplementedError

    def lr_at(self, epoch: Any) -> list[Any]:
        """The lr of each group at ``epoch`` (a Python int, or a traced integer under jit)."""
        return [self._factor(epoch, base) for base in self.base_lrs]

    def apply(self, optimizer: Optimizer, epoch: Any) -> Optimizer:
        """A copy of ``optimizer`` with the lrs of ``epoch``; pure, usable inside ``jit``.

        Arguments:
            optimizer: left unchanged.
            epoch: a Python int, or an integer array (traced under ``jit``).

        Returns:
            The new optimizer; inside a jitted step, return it (or what ``step`` makes of it),
            or the new lrs are lost with the trace.
        """
        leaves, treedef = jax.tree.flatten(optimizer)
        new = jax.tree.unflatten(treedef, leaves)
        for group, lr in zip(new.param_groups, self.lr_at(epoch)):
            # A traced lr gets the leaf type the optimizer flattens to (a strong float), so a
            # jitted step that applies the schedule returns what it was given: no retrace.
            group["lr"] = lr if isinstance(lr, int | float) else _float(lr)
        return new

    def step(self, optimizer: Optimizer) -> Optimizer:
        """Advance one epoch and set ``optimizer``'s lrs in place (top level); returns it.

        Raises ``RuntimeError`` inside ``jit``/``scan`` (with a traced optimizer, or a concrete
        one captured by closure): the epoch would advance once at trace time. Use
        ``scheduler.apply(opt, epoch)`` there.
        """
        if _staging() or any(
            isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(optimizer)
        ):
            raise RuntimeError(SCHEDULER_STEP_TRACED.format(cls=type(self).__name__))
        if len(optimizer.param_groups) != len(self.base_lrs):
            raise ValueError(
                f"the scheduler was built for {len(self.base_lrs)} parameter groups, the "
                f"optimizer has {len(optimizer.param_groups)}"
            )
        self.last_epoch += 1
        self._last_lr = self.lr_at(self.last_epoch)
        for group, lr in zip(optimizer.param_groups, self._last_lr):
            group["lr"] = lr
        return optimizer

    def get_last_lr(self) -> list[Any]:
        """The lrs set by the last ``step``."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (everything but callables), as in torch."""
        return {k: v for k, v in self.__dict__.items() if not callable(v)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (this class's or torch's), all or nothing.

        As torch, every entry is set on the scheduler; fparam first checks those it reads
        (``last_epoch`` an int, ``base_lrs`` and ``_last_lr`` one real number per group) and
        raises, unchanged, naming the key. torch's ``lr_lambdas`` entry (``None`` for a plain
        function, else the ``__dict__`` of a callable object) is handled as torch does.
        """
        cls = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{cls}.load_state_dict() expects a dict (a scheduler's state_dict), got "
                f"{type(state_dict).__name__}"
            )
        values = dict(state_dict)
        lambdas = values.pop("lr_lambdas", None)
        epoch = values.get("last_epoch", self.last_epoch)
        if not _is_python_int(epoch):
            raise TypeError(
                f"{cls}.load_state_dict(): 'last_epoch' must be an int, got "
                f"{type(epoch).__name__} {epoch!r}"[:300]
            )
        for key in ("base_lrs", "_last_lr"):
            if key not in values:
                continue
            lrs = values[key]
            if (
                not isinstance(lrs, Sequence)
                or isinstance(lrs, str)
                or len(lrs) != len(self.base_lrs)
                or not all(_is_real(lr) for lr in lrs)
            ):
                raise ValueError(
                    f"{cls}.load_state_dict(): {key!r} must be a list of {len(self.base_lrs)} "
                    f"real numbers (one per parameter group), got {lrs!r}"[:300]
                )
            values[key] = list(lrs)
        if lambdas is not None:
            self._load_lambdas(lambdas)
        self.__dict__.update(values)

    def _load_lambdas(self, lambdas: Any) -> None:
        raise ValueError(
            f"{type(self).__name__}.load_state_dict(): unexpected key 'lr_lambdas' (a "
            "LambdaLR's state?)"
        )


class StepLR(LRScheduler):
    """Decay each lr by ``gamma`` every ``step_size`` epochs: ``base * gamma ** (e // step_size)``."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if not _is_python_int(step_size) or step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            return base_lr * self.gamma ** (epoch // self.step_size)
        return base_lr * jnp.power(self.gamma, _float(epoch // self.step_size))


class MultiStepLR(LRScheduler):
    """Decay by ``gamma`` at each milestone (a repeated milestone decays once per repeat)."""

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            passed = sum(n for m, n in self.milestones.items() if m <= epoch)
            return base_lr * self.gamma**passed
        passed = _float(0)
        for m, n in self.milestones.items():
            passed = passed + jnp.where(epoch >= m, n, 0)
        return base_lr * jnp.power(self.gamma, passed)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2`` (periodic past T_max)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch: Any, base_lr: float) -> Any:
        cos: Any
        if _is_python_int(epoch):
            cos = math.cos(math.pi * epoch / self.T_max)
        else:
            # The schedule has period 2 * T_max: reduce the integer first, then go to float.
            phase = epoch % (2 * self.T_max) if _is_python_int(self.T_max) else epoch
            cos = jnp.cos(math.pi * _float(phase) / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2


class LambdaLR(LRScheduler):
    """``base * lr_lambda(epoch)``, one function or one per group.

    Under ``jit`` (``apply`` with a traced epoch) each function receives the traced integer
    epoch, so it must be written with JAX operations (``0.95 ** epoch``, ``jnp.where``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
        last_epoch: int = -1,
    ) -> None:
        groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != groups:
                raise ValueError(f"Expected {groups} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: Any) -> list[Any]:
        return [base * fn(epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("lr_lambdas", None)
        return state

    def _load_lambdas(self, lambdas: Any) -> None:
        # torch's layout: one entry per group, None for a plain function (nothing to restore),
        # else the __dict__ of a callable object. Checked before anything is set.
        if not isinstance(lambdas, Sequence) or len(lambdas) != len(self.lr_lambdas):
            raise ValueError(
                f"LambdaLR.load_state_dict(): 'lr_lambdas' must have one entry per group "
                f"({len(self.lr_lambdas)}), got {lambdas!r}"[:300]
            )
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None and not (isinstance(saved, Mapping) and hasattr(fn, "__dict__")):
                raise ValueError(
                    "LambdaLR.load_state_dict(): an 'lr_lambdas' entry must be None or the "
                    f"__dict__ of a callable object, got {saved!r}"[:300]
                )
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None:
                fn.__dict__.update(saved)


# Python calls this only for a name the module does not define: a torch name says "not yet".
__getattr__ = _torch_names.missing_attribute_hook(
    __name__, "torch.optim.lr_scheduler", _torch_names.LR_SCHEDULER
)
