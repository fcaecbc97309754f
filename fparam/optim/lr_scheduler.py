"""Learning-rate schedules with torch's sequences, to the last digit.

fparam optimizers are values, so a scheduler cannot reach "the" optimizer behind the user's
back as torch's does. It offers both styles:

* torch style, at top level: ``opt = scheduler.step(opt)`` after each epoch (or batch, for
  ``OneCycleLR`` and ``CyclicLR``). It runs torch's own update (``get_lr``, recursive for most
  schedules: ``lr *= gamma`` at a boundary) in Python floats on the optimizer you pass, in
  place, and returns it. ``ReduceLROnPlateau.step(opt, metrics)`` takes the metric as torch's.
  Inside ``jit`` or ``scan`` ``step`` raises: it would advance the epoch once, when the step is
  traced, and the compiled step would keep that lr for ever;
* inside ``jit``: ``opt = scheduler.apply(opt, epoch)`` sets the lrs (and the momentum or
  ``betas[0]`` that ``OneCycleLR`` and ``CyclicLR`` cycle) for a traced epoch number without
  touching ``scheduler``, on a copy that the step must return (as every value changed under
  ``jit``). The values are leaves, so nothing recompiles. ``apply`` evaluates the closed form
  (``lr_at``) in the optimizer's float32, which equals torch's recursion up to rounding.

Why ``step`` gives torch's exact doubles even across jitted steps: an optimizer that went
through ``jit`` reads its lr back from a float32 leaf, which would make the recursion drift from
torch's in the 8th digit. Each scheduler keeps the doubles it set (``_last_lr``, torch's own
attribute) and continues from them while the optimizer still holds them (equal in float32); a
value set by anyone else (another scheduler chained on the same optimizer, the user) is read
from the optimizer, as torch reads ``group['lr']``.
"""

from __future__ import annotations

import math
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _torch_names
from fparam.optim._errors import SCHEDULER_STEP_TRACED
from fparam.optim.optimizer import Optimizer

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]

# torch's messages, where a test compares them.
_MISSING_INITIAL_LR = (
    "param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler with "
    "last_epoch >= 0.\nThis typically happens when:\n1. You're trying to resume training from a "
    "checkpoint but haven't properly loaded the optimizer state\n2. You're using last_epoch >= 0 "
    "for a fresh training run (not recommended)"
)
_EPOCH_DEPRECATION = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler. During the deprecation, if "
    "epoch is different from None, the closed form is used instead of the new chainable form, "
    "where available. Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)
_NO_MOMENTUM = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
_PLATEAU_IN_JIT = (
    "ReduceLROnPlateau has no closed form: its lr depends on the history of the metric. Call "
    "`opt = scheduler.step(opt, metric)` between jitted steps (at top level, with the metric "
    "as a number or array); the lr is a leaf of the optimizer, so the jitted step does not "
    "recompile when it changes."
)
_NO_CLOSED_FORM = (
    "{cls}.apply() needs a closed form of the schedule for a traced epoch; {why}. Call "
    "`opt = scheduler.step(opt)` between jitted steps instead (the lr is a leaf: nothing "
    "recompiles)."
)


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


def _number(value: Any) -> float:
    """A group's lr (a Python number or a concrete 0-d array) as a Python float."""
    return float(value)


def _set_value(group: Any, key: str, value: Any) -> None:
    """torch's ``_update_param_group_val``: a tensor-valued option keeps its kind and dtype."""
    current = group.get(key)
    if isinstance(current, jax.Array) and not isinstance(current, jax.core.Tracer):
        group[key] = jnp.asarray(value, current.dtype)
    else:
        group[key] = value


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def _check_top_level(scheduler: Any, optimizer: Optimizer) -> None:
    if _staging() or any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(optimizer)):
        raise RuntimeError(SCHEDULER_STEP_TRACED.format(cls=type(scheduler).__name__))


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """torch's ``_format_param``: one value per group, from a scalar or a list/tuple."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. {name} has "
                f"{len(value)} values, param_groups has {groups}."
            )
        return list(value)
    return [value] * groups


def _copy(optimizer: Optimizer) -> Optimizer:
    """A new optimizer value with the same leaves (``apply`` never touches its argument)."""
    leaves, treedef = jax.tree.flatten(optimizer)
    return jax.tree.unflatten(treedef, leaves)


def _leaf(value: Any) -> Any:
    # A traced value gets the leaf type the optimizer flattens to (a strong float), so a jitted
    # step that applies the schedule returns what it was given: no retrace.
    return value if isinstance(value, int | float) else _float(value)


class LRScheduler:
    """Base of the schedules: torch's ``base_lrs``, ``last_epoch`` and ``step``.

    Arguments:
        optimizer: the optimizer to schedule. As in torch, each group gets ``initial_lr`` (its
            current lr) when ``last_epoch == -1``; the ``base_lrs`` are those ``initial_lr``.
        last_epoch: the index of the last epoch (``-1`` starts fresh; a value ``>= 0`` resumes
            and needs ``initial_lr`` in every group, else ``KeyError`` as torch). As in torch,
            the constructor performs the first ``step``, so the optimizer holds the epoch-0 lrs.

    A subclass implements ``get_lr(current)`` (torch's ``get_lr``, with the groups' current lrs
    passed in) and, where one exists, ``_closed_form(epoch, base_lr)`` (torch's
    ``_get_closed_form_lr``, also for a traced epoch).
    """

    _is_initial: bool = False
    _get_lr_called_within_step: bool = False
    # Whether each update multiplies the current lr by a factor (a ChainedScheduler's apply).
    _multiplicative: bool = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                if "initial_lr" not in group:
                    # A static option of the group: a number (torch clones a tensor lr).
                    lr = group["lr"]
                    group["initial_lr"] = lr if isinstance(lr, int | float) else _number(lr)
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(_MISSING_INITIAL_LR.format(i=i))
        self.base_lrs: list[Any] = [_number(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[Any] = [_number(g["lr"]) for g in optimizer.param_groups]
        self._initial_step(optimizer)

    def _initial_step(self, optimizer: Optimizer) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step(optimizer)
        finally:
            self._is_initial = False
            self._get_lr_called_within_step = False  # torch's state_dict has both flags

    # ------------------------------------------------------------ torch's recursion, host side

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        """The next lrs from the groups' ``current`` lrs (torch's ``get_lr``)."""
        raise NotImplementedError

    def _current_lrs(self, optimizer: Optimizer) -> list[float]:
        """The groups' lrs as exact doubles (see the module docstring)."""
        current = []
        for group, mine in zip(optimizer.param_groups, self._last_lr):
            value = _number(group["lr"])
            same = value == mine or np.float32(value) == np.float32(mine)
            current.append(mine if same and _is_real(mine) else value)
        return current

    def _check_groups(self, optimizer: Optimizer) -> None:
        if len(optimizer.param_groups) != len(self.base_lrs):
            raise ValueError(
                f"the scheduler was built for {len(self.base_lrs)} parameter groups, the "
                f"optimizer has {len(optimizer.param_groups)}"
            )

    def step(self, optimizer: Optimizer, epoch: int | None = None) -> Optimizer:
        """Advance one epoch and set ``optimizer``'s lrs in place (top level); returns it.

        Arguments:
            optimizer: the optimizer the training loop holds now (what the last jitted step
                returned).
            epoch: deprecated in torch; sets ``last_epoch`` and uses the closed form, with
                torch's warning.

        Raises ``RuntimeError`` inside ``jit``/``scan`` (with a traced optimizer, or a concrete
        one captured by closure): the epoch would advance once at trace time. Use
        ``scheduler.apply(opt, epoch)`` there.
        """
        _check_top_level(self, optimizer)
        self._check_groups(optimizer)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self._update_lr(optimizer, epoch)
        return optimizer

    def _update_lr(self, optimizer: Optimizer, epoch: int | None) -> None:
        current = self._current_lrs(optimizer)
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr(current, optimizer)
        else:
            self.last_epoch = epoch
            if type(self)._closed_form is not LRScheduler._closed_form:  # torch's closed form
                values = [self._closed_form(epoch, base) for base in self.base_lrs]
            else:
                values = self.get_lr(current, optimizer)
        for group, lr in zip(optimizer.param_groups, values):
            _set_value(group, "lr", lr)
        self._last_lr = list(values)

    def get_last_lr(self) -> list[Any]:
        """The lrs set by the last ``step``."""
        return list(self._last_lr)

    # ------------------------------------------------------------ closed form, usable in jit

    def _has_closed_form(self) -> bool:
        return type(self)._closed_form is not LRScheduler._closed_form

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        raise NotImplementedError

    def lr_at(self, epoch: Any) -> list[Any]:
        """The lr of each group at ``epoch`` (a Python int, or a traced integer under jit)."""
        if not self._has_closed_form():
            raise TypeError(
                _NO_CLOSED_FORM.format(cls=type(self).__name__, why="this schedule has none")
            )
        return [self._closed_form(epoch, base) for base in self.base_lrs]

    def _lrs_for(self, epoch: Any, optimizer: Optimizer) -> list[Any]:
        """The lrs ``apply`` sets: ``lr_at``, unless the schedule reads the optimizer's groups."""
        return self.lr_at(epoch)

    def _momentum_at(self, epoch: Any, optimizer: Optimizer) -> list[Any] | None:
        """The momentum (or ``betas[0]``) of each group at ``epoch``, for cycling schedules."""
        return None

    def apply(self, optimizer: Optimizer, epoch: Any) -> Optimizer:
        """A copy of ``optimizer`` with the lrs of ``epoch``; pure, usable inside ``jit``.

        Arguments:
            optimizer: left unchanged.
            epoch: a Python int, or an integer array (traced under ``jit``): the value
                ``last_epoch`` has after that many ``step`` calls (0 for the first batch or epoch).

        Returns:
            The new optimizer; inside a jitted step, return it (or what ``step`` makes of it),
            or the new lrs are lost with the trace.
        """
        self._check_groups(optimizer)
        lrs = self._lrs_for(epoch, optimizer)
        momenta = self._momentum_at(epoch, optimizer)
        new = _copy(optimizer)
        for i, (group, lr) in enumerate(zip(new.param_groups, lrs)):
            group["lr"] = _leaf(lr)
            if momenta is not None:
                _set_momentum(group, _leaf(momenta[i]), "betas" in optimizer.defaults)
        return new

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (everything but callables), as in torch."""
        return {k: v for k, v in self.__dict__.items() if not callable(v)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
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
                or len(lrs) != len(self._last_lr)
                or not all(_is_real(lr) for lr in lrs)
            ):
                raise ValueError(
                    f"{cls}.load_state_dict(): {key!r} must be a list of {len(self._last_lr)} "
                    f"real numbers (one per parameter group), got {lrs!r}"[:300]
                )
            values[key] = [float(lr) for lr in lrs]
        self._check_loaded(values)
        if lambdas is not None:
            self._load_lambdas(lambdas)
        self.__dict__.update(values)

    def _check_loaded(self, values: dict[str, Any]) -> None:
        """Subclass checks of a state about to be loaded (raise before anything is set)."""

    def _load_lambdas(self, lambdas: Any) -> None:
        raise ValueError(
            f"{type(self).__name__}.load_state_dict(): unexpected key 'lr_lambdas' (a "
            "LambdaLR's state?)"
        )


def _set_momentum(group: Any, value: Any, use_beta1: bool) -> None:
    if use_beta1:
        betas = group["betas"]
        group["betas"] = (value, *tuple(betas)[1:])
    else:
        _set_value(group, "momentum", value)


def _checked_lambdas(
    optimizer: Optimizer, lr_lambda: Any, check_callable: bool = False
) -> list[Callable[[Any], Any]]:
    groups = len(optimizer.param_groups)
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != groups:
            raise ValueError(f"Expected {groups} lr_lambdas, but got {len(lr_lambda)}")
        lambdas = list(lr_lambda)
    else:
        lambdas = [lr_lambda] * groups
    if check_callable:
        for fn in lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
    return lambdas


class _LambdaState:
    """torch's ``lr_lambdas`` state: ``None`` per plain function, a callable object's dict."""

    lr_lambdas: list[Callable[[Any], Any]]

    def state_dict(self) -> dict[str, Any]:
        state = LRScheduler.state_dict(self)  # type: ignore[arg-type]
        state.pop("lr_lambdas", None)
        state["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) else dict(getattr(fn, "__dict__", {}))
            for fn in self.lr_lambdas
        ]
        return state

    def _load_lambdas(self, lambdas: Any) -> None:
        # Checked before anything is set.
        if not isinstance(lambdas, Sequence) or len(lambdas) != len(self.lr_lambdas):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict(): 'lr_lambdas' must have one entry "
                f"per group ({len(self.lr_lambdas)}), got {lambdas!r}"[:300]
            )
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None and not (isinstance(saved, Mapping) and hasattr(fn, "__dict__")):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict(): an 'lr_lambdas' entry must be "
                    f"None or the __dict__ of a callable object, got {saved!r}"[:300]
                )
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved:
                fn.__dict__.update(saved)


class LambdaLR(_LambdaState, LRScheduler):
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
        _check_optimizer(optimizer)
        self.lr_lambdas = _checked_lambdas(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]

    def lr_at(self, epoch: Any) -> list[Any]:
        return [base * fn(epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class MultiplicativeLR(_LambdaState, LRScheduler):
    """Multiply each lr by ``lr_lambda(epoch)`` at every epoch after the first.

    ``apply`` under ``jit`` evaluates ``base * prod(lr_lambda(k) for k in 1..epoch)`` with a
    ``fori_loop`` over the traced epoch, so each function must accept a traced integer.
    """

    _multiplicative = True

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.lr_lambdas = _checked_lambdas(optimizer, lr_lambda, check_callable=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self._is_initial:
            return current
        return [lr * fn(self.last_epoch) for lr, fn in zip(current, self.lr_lambdas)]

    def lr_at(self, epoch: Any) -> list[Any]:
        out = []
        for base, fn in zip(self.base_lrs, self.lr_lambdas):
            if _is_python_int(epoch):
                lr = base
                for k in range(1, epoch + 1):
                    lr = lr * fn(k)
                out.append(lr)
            else:
                product = jax.lax.fori_loop(
                    1, epoch + 1, lambda k, acc, fn=fn: acc * fn(k), _float(1.0)
                )
                out.append(base * product)
        return out


class StepLR(LRScheduler):
    """Decay each lr by ``gamma`` every ``step_size`` epochs: ``base * gamma ** (e // step_size)``."""

    _multiplicative = True

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if not _is_python_int(step_size) or step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return current
        return [lr * self.gamma for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            return base_lr * self.gamma ** (epoch // self.step_size)
        return base_lr * jnp.power(self.gamma, _float(epoch // self.step_size))


class MultiStepLR(LRScheduler):
    """Decay by ``gamma`` at each milestone (a repeated milestone decays once per repeat)."""

    _multiplicative = True

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

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self.last_epoch not in self.milestones:
            return current
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            return base_lr * self.gamma ** bisect_right(sorted(self.milestones.elements()), epoch)
        passed = _float(0)
        for m, n in self.milestones.items():
            passed = passed + jnp.where(epoch >= m, n, 0)
        return base_lr * jnp.power(self.gamma, passed)


class ConstantLR(LRScheduler):
    """``base * factor`` until epoch ``total_iters``, then ``base``."""

    _multiplicative = True

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.factor for lr in current]
        if self.last_epoch != self.total_iters:
            return current
        return [lr * (1.0 / self.factor) for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        after = epoch >= self.total_iters
        if not _is_python_int(epoch):
            after = _float(after)
        return base_lr * (self.factor + after * (1 - self.factor))


class LinearLR(LRScheduler):
    """Scale linearly from ``start_factor * base`` to ``end_factor * base`` over
    ``total_iters`` epochs."""

    _multiplicative = True

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or "
                "equal to 1."
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in current]
        if self._is_initial or self.last_epoch > self.total_iters:
            return current
        delta = self.end_factor - self.start_factor
        scale = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta)
        return [lr * scale for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            done = min(self.total_iters, epoch)
        else:
            done = _float(jnp.minimum(self.total_iters, epoch))
        return base_lr * (
            self.start_factor + (self.end_factor - self.start_factor) * done / self.total_iters
        )


class ExponentialLR(LRScheduler):
    """Multiply each lr by ``gamma`` every epoch: ``base * gamma ** epoch``."""

    _multiplicative = True

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self._is_initial:
            return current
        return [lr * self.gamma for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            return base_lr * self.gamma**epoch
        return base_lr * jnp.power(self.gamma, _float(epoch))


class PolynomialLR(LRScheduler):
    """``base * (1 - min(epoch, total_iters) / total_iters) ** power``."""

    _multiplicative = True

    def __init__(
        self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        if self._is_initial or self.last_epoch > self.total_iters:
            return current
        decay = (
            (1.0 - self.last_epoch / self.total_iters)
            / (1.0 - (self.last_epoch - 1) / self.total_iters)
        ) ** self.power
        return [lr * decay for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        if _is_python_int(epoch):
            return base_lr * (1.0 - min(self.total_iters, epoch) / self.total_iters) ** self.power
        # The remaining count in integers: a float 1 - done / total can round below 0 (NaN).
        left = _float(self.total_iters - jnp.minimum(self.total_iters, epoch))
        return base_lr * jnp.power(left / self.total_iters, self.power)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2`` (periodic past T_max).

    ``step`` runs torch's recursive form (which differs from the closed form in the last
    digits, and follows changes made to the lr by others, as torch's does).
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        e, t, eta = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return current
        if self._step_count == 1 and e > 0:
            return [
                eta + (base - eta) * (1 + math.cos(e * math.pi / t)) / 2 for base in self.base_lrs
            ]
        if (e - 1 - t) % (2 * t) == 0:
            return [
                lr + (base - eta) * (1 - math.cos(math.pi / t)) / 2
                for base, lr in zip(self.base_lrs, current)
            ]
        ratio = (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t))
        return [ratio * (lr - eta) + eta for lr in current]

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        cos: Any
        if _is_python_int(epoch):
            cos = math.cos(math.pi * epoch / self.T_max)
        else:
            # The schedule has period 2 * T_max: reduce the integer first, then go to float.
            phase = epoch % (2 * self.T_max) if _is_python_int(self.T_max) else epoch
            cos = jnp.cos(math.pi * _float(phase) / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing restarted every ``T_i`` epochs, ``T_i`` growing by ``T_mult``.

    ``step(opt, epoch)`` with a float epoch (torch's per-batch idiom ``epoch + i / iters``) is
    supported as in torch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(
                f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}"
            )
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur: Any = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        cos = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base - self.eta_min) * cos / 2 for base in self.base_lrs]

    def step(self, optimizer: Optimizer, epoch: float | None = None) -> Optimizer:
        _check_top_level(self, optimizer)
        self._check_groups(optimizer)
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        values = self.get_lr(self._current_lrs(optimizer), optimizer)
        for group, lr in zip(optimizer.param_groups, values):
            _set_value(group, "lr", lr)
        self._last_lr = list(values)
        return optimizer

    def _closed_form(self, epoch: Any, base_lr: float) -> Any:
        t0, mult = self.T_0, self.T_mult
        if _is_python_int(epoch):
            if epoch < t0:
                t_cur, t_i = epoch, t0
            elif mult == 1:
                t_cur, t_i = epoch % t0, t0
            else:
                n = 0  # the number of finished cycles, counted exactly
                while t0 * (mult ** (n + 1) - 1) // (mult - 1) <= epoch:
                    n += 1
                t_cur, t_i = epoch - t0 * (mult**n - 1) // (mult - 1), t0 * mult**n
            return (
                self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
            )
        if mult == 1:
            t_cur_traced, t_i_traced = _float(epoch % t0), _float(t0)
        else:
            # Cycle starts t0 * (mult**n - 1) / (mult - 1): count those <= epoch. 64 cycles
            # bound any epoch an int32 can hold.
            starts = [t0 * (mult**k - 1) // (mult - 1) for k in range(1, 64)]
            starts = [s for s in starts if s < 2**31]
            cycles = jnp.sum(jnp.asarray(starts) <= epoch)
            start = jnp.asarray([0, *starts])[cycles]
            t_cur_traced = _float(epoch - start)
            t_i_traced = t0 * jnp.power(_float(mult), _float(cycles))
        cos = jnp.cos(math.pi * t_cur_traced / t_i_traced)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2


class CyclicLR(LRScheduler):
    """Cycle each lr between ``base_lr`` and ``max_lr`` (torch's CLR), stepped per batch.

    With ``cycle_momentum`` (the default) the momentum (SGD) or ``betas[0]`` (Adam family)
    cycles inversely, as in torch; ``apply`` under ``jit`` sets both. A ``scale_fn`` receives a
    traced value under ``apply``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[Any], Any] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                _set_value(group, "lr", lr)
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_fn()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(_NO_MOMENTUM)
            self.use_beta1 = "betas" in defaults
            self.base_momentums = _per_group("base_momentum", optimizer, base_momentum)
            self.max_momentums = _per_group("max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                for high, low, group in zip(
                    self.max_momentums, self.base_momentums, optimizer.param_groups
                ):
                    _set_momentum(group, high, self.use_beta1)
                    group["max_momentum"] = high
                    group["base_momentum"] = low
        super().__init__(optimizer, last_epoch)
        self.base_lrs = [float(lr) for lr in base_lrs]

    def _init_scale_fn(self) -> None:
        if self._scale_fn_custom is not None:
            return
        if self.mode == "triangular" or self.mode == "triangular2":
            self.scale_mode = "cycle"
        elif self.mode == "exp_range":
            self.scale_mode = "iterations"

    def scale_fn(self, x: Any) -> Any:
        """torch's scale function of the mode (or the user's ``scale_fn``)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / 2.0 ** (x - 1)
        return self.gamma**x

    def _phase(self, epoch: Any) -> tuple[Any, Any, Any]:
        """``(cycle, scale_factor, scale)`` at ``epoch``, torch's arithmetic."""
        if _is_python_int(epoch):
            cycle: Any = math.floor(1 + epoch / self.total_size)
            x = 1.0 + epoch / self.total_size - cycle
            if x <= self.step_ratio:
                factor = x / self.step_ratio
            else:
                factor = (x - 1) / (self.step_ratio - 1)
            at = cycle if self.scale_mode == "cycle" else epoch
            return cycle, factor, self.scale_fn(at)
        e = _float(epoch)
        cycle = jnp.floor(1 + e / self.total_size)
        x = 1.0 + e / self.total_size - cycle
        factor = jnp.where(
            x <= self.step_ratio, x / self.step_ratio, (x - 1) / (self.step_ratio - 1)
        )
        at = cycle if self.scale_mode == "cycle" else e
        return cycle, factor, self.scale_fn(at)

    def lr_at(self, epoch: Any) -> list[Any]:
        _, factor, scale = self._phase(epoch)
        return [
            base + (high - base) * factor * scale for base, high in zip(self.base_lrs, self.max_lrs)
        ]

    def _momentum_at(self, epoch: Any, optimizer: Optimizer) -> list[Any] | None:
        if not self.cycle_momentum:
            return None
        _, factor, scale = self._phase(epoch)
        return [
            high - (high - low) * factor * scale
            for low, high in zip(self.base_momentums, self.max_momentums)
        ]

    def _has_closed_form(self) -> bool:
        return True

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        # torch's get_lr is already a closed form of last_epoch (with the momentum as a side
        # effect); the same expression order keeps its doubles.
        _, factor, scale = self._phase(self.last_epoch)
        lrs = [
            base + (high - base) * factor * scale for base, high in zip(self.base_lrs, self.max_lrs)
        ]
        if self.cycle_momentum:
            for group, low, high in zip(
                optimizer.param_groups, self.base_momentums, self.max_momentums
            ):
                _set_momentum(group, high - (high - low) * factor * scale, self.use_beta1)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = (
            None
            if fn is None or isinstance(fn, types.FunctionType)
            else dict(getattr(fn, "__dict__", {}))
        )
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        values = dict(state_dict)
        saved_fn = values.pop("_scale_fn_custom", None)
        values.pop("_scale_fn_ref", None)
        fn = self._scale_fn_custom
        super().load_state_dict(values)
        self._scale_fn_custom = fn
        if saved_fn and fn is not None:
            fn.__dict__.update(saved_fn)
        self._init_scale_fn()


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up to ``max_lr``, anneal to ``max_lr / div_factor /
    final_div_factor`` over ``total_steps`` batches (torch's phases, cosine or linear).

    With ``cycle_momentum`` (the default) the momentum (SGD) or ``betas[0]`` (Adam family)
    cycles inversely, as in torch; ``apply`` under ``jit`` sets both. torch raises when stepped
    past ``total_steps``; ``apply`` cannot raise on a traced step, so it returns a NaN lr there.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(
                    f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}"
                )
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        total = self.total_steps
        if three_phase:
            self._schedule_phases = [
                _phase(float(pct_start * total) - 1, "initial_lr", "max_lr", "max", "base"),
                _phase(float(2 * pct_start * total) - 2, "max_lr", "initial_lr", "base", "max"),
                _phase(total - 1, "initial_lr", "min_lr", "max", "max"),
            ]
        else:
            self._schedule_phases = [
                _phase(float(pct_start * total) - 1, "initial_lr", "max_lr", "max", "base"),
                _phase(total - 1, "max_lr", "min_lr", "base", "max"),
            ]
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self._anneal_func_type = anneal_strategy
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for lr, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(_NO_MOMENTUM)
            self.use_beta1 = "betas" in defaults
            highs = _per_group("max_momentum", optimizer, max_momentum)
            lows = _per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for high, low, group in zip(highs, lows, optimizer.param_groups):
                    _set_momentum(group, high, self.use_beta1)
                    group["max_momentum"] = high
                    group["base_momentum"] = low
        self._group_values = [
            {k: group[k] for k in _ONE_CYCLE_KEYS if k in group} for group in optimizer.param_groups
        ]
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: Any, end: Any, pct: Any) -> Any:
        if self._anneal_func_type == "cos":
            cos = math.cos(math.pi * pct) if isinstance(pct, float) else jnp.cos(math.pi * pct)
            return end + (start - end) / 2.0 * (cos + 1)
        return (end - start) * pct + start

    def _values_at(self, step: Any, groups: Sequence[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
        """``(lr, momentum)`` of each group at ``step`` (momentum None without cycling)."""
        out = []
        last = len(self._schedule_phases) - 1
        for group in groups:
            if _is_python_int(step):
                start = 0.0
                for i, phase in enumerate(self._schedule_phases):
                    end = phase["end_step"]
                    if step <= end or i == last:
                        pct = (step - start) / (end - start)
                        lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                        mom = None
                        if self.cycle_momentum:
                            mom = self._anneal(
                                group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                            )
                        break
                    start = end
                out.append((lr, mom))
                continue
            s = _float(step)
            lr_t: Any = jnp.nan
            mom_t: Any = jnp.nan
            start = 0.0
            chosen: Any = False
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                here = jnp.logical_and(jnp.logical_not(chosen), (s <= end) | (i == last))
                pct = (s - start) / (end - start)
                lr_t = jnp.where(
                    here, self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct), lr_t
                )
                if self.cycle_momentum:
                    m = self._anneal(
                        group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                    )
                    mom_t = jnp.where(here, m, mom_t)
                chosen = jnp.logical_or(chosen, here)
                start = end
            lr_t = jnp.where(s > self.total_steps, jnp.nan, lr_t)
            out.append((lr_t, mom_t if self.cycle_momentum else None))
        return out

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"Tried to step {step} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        values = self._values_at(step, list(optimizer.param_groups))
        if self.cycle_momentum:
            for group, (_, mom) in zip(optimizer.param_groups, values):
                _set_momentum(group, mom, self.use_beta1)
        return [lr for lr, _ in values]

    def _has_closed_form(self) -> bool:
        return True

    def lr_at(self, epoch: Any) -> list[Any]:
        return [lr for lr, _ in self._values_at(epoch, self._group_values)]

    # As torch, the phases' ends are read from the optimizer's groups (``initial_lr``,
    # ``max_lr``, ``min_lr``, ``max_momentum``, ``base_momentum``: static options there).
    def _lrs_for(self, epoch: Any, optimizer: Optimizer) -> list[Any]:
        return [lr for lr, _ in self._values_at(epoch, list(optimizer.param_groups))]

    def _momentum_at(self, epoch: Any, optimizer: Optimizer) -> list[Any] | None:
        if not self.cycle_momentum:
            return None
        return [mom for _, mom in self._values_at(epoch, list(optimizer.param_groups))]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("_group_values")  # a copy of the groups' options, not torch's state
        return state


_ONE_CYCLE_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _phase(end_step: float, start_lr: str, end_lr: str, start_m: str, end_m: str) -> dict[str, Any]:
    return {
        "end_step": end_step,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "start_momentum": f"{start_m}_momentum",
        "end_momentum": f"{end_m}_momentum",
    }


def _check_children(cls: str, schedulers: Sequence[Any], what: str) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{cls} expects at least one scheduler{what}, but got no scheduler.")
    for i, scheduler in enumerate(schedulers):
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{cls} does not support `ReduceLROnPlateau` scheduler as it requires additional "
                "kwargs to be specified when calling `step`, but got one at index "
                f"{i} in the given schedulers sequence."
            )
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                f"{cls} at index {i} should be an fparam LRScheduler, got "
                f"{type(scheduler).__name__}"
            )


class SequentialLR(LRScheduler):
    """Run ``schedulers[i]`` from ``milestones[i - 1]`` on (torch's ``SequentialLR``).

    Each scheduler must have been built on ``optimizer``. At a milestone the next scheduler
    restarts from its epoch-0 value, as in torch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_children(type(self).__name__, schedulers, "")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                "than the number of milestone points, but got number of schedulers "
                f"{len(schedulers)} and the number of milestones to be equal to {len(milestones)}"
            )
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.base_lrs = [_number(g["initial_lr"]) for g in optimizer.param_groups]
        for group in optimizer.param_groups:
            _set_value(group, "lr", group["initial_lr"])
        for s in self._schedulers:
            _undo(s)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step(optimizer)
        self._last_lr = first.get_last_lr()

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        raise NotImplementedError  # step is overridden

    def step(self, optimizer: Optimizer, epoch: int | None = None) -> Optimizer:
        _check_top_level(self, optimizer)
        self._check_groups(optimizer)
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(optimizer, 0)
        else:
            scheduler.step(optimizer)
        self._last_lr = scheduler.get_last_lr()
        return optimizer

    def _has_closed_form(self) -> bool:
        return True

    def lr_at(self, epoch: Any) -> list[Any]:
        if _is_python_int(epoch):
            idx = bisect_right(self._milestones, epoch)
            start = self._milestones[idx - 1] if idx > 0 else 0
            return self._schedulers[idx].lr_at(epoch - start)
        idx_t = jnp.sum(jnp.asarray(self._milestones) <= epoch) if self._milestones else 0
        starts = [0, *self._milestones]
        out = [jnp.asarray(_float(0))] * len(self.base_lrs)
        for i, scheduler in enumerate(self._schedulers):
            lrs = scheduler.lr_at(epoch - starts[i])
            out = [jnp.where(idx_t == i, _float(lr), o) for lr, o in zip(lrs, out)]
        return out

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "_schedulers" and not callable(v)}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        values = dict(state_dict)
        children = values.pop("_schedulers", None)
        if children is not None and (
            not isinstance(children, Sequence) or len(children) != len(self._schedulers)
        ):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict(): '_schedulers' must hold "
                f"{len(self._schedulers)} states, got {children!r}"[:300]
            )
        LRScheduler.load_state_dict(self, values)
        for s, saved in zip(self._schedulers, children or []):
            s.load_state_dict(saved)


def _undo(scheduler: Any) -> None:
    """torch's ``recursive_undo``: one epoch back, through nested sequential schedulers."""
    if hasattr(scheduler, "_schedulers"):
        for s in scheduler._schedulers:
            _undo(s)
    elif hasattr(scheduler, "last_epoch"):
        scheduler.last_epoch -= 1


class ChainedScheduler(LRScheduler):
    """Step several schedulers of one optimizer together, each on the lrs the previous set.

    ``apply`` under ``jit`` multiplies the schedules' factors (``lr_at(e) / base``), which is
    what the chain computes when every update is a factor on the current lr (``StepLR``,
    ``MultiStepLR``, ``ConstantLR``, ``LinearLR``, ``ExponentialLR``, ``PolynomialLR``,
    ``MultiplicativeLR``); a chain holding another schedule has no closed form, and ``apply``
    raises (``step`` works for every chain).
    """

    def __init__(
        self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None
    ) -> None:
        _check_children(type(self).__name__, schedulers, " to be chained")
        self._schedulers = list(schedulers)
        self.base_lrs = list(self._schedulers[0].base_lrs)
        self._last_lr = list(self._schedulers[-1].get_last_lr())
        self.last_epoch = self._schedulers[0].last_epoch

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        raise NotImplementedError  # step is overridden

    def step(self, optimizer: Optimizer, epoch: int | None = None) -> Optimizer:
        _check_top_level(self, optimizer)
        self._check_groups(optimizer)
        # The chain's own doubles back in place of their float32 read-back (see the module
        # docstring): each scheduler then continues from the value the previous one set.
        for group, exact in zip(optimizer.param_groups, self._current_lrs(optimizer)):
            _set_value(group, "lr", exact)
        for scheduler in self._schedulers:
            scheduler.step(optimizer)
        self._last_lr = [_number(g["lr"]) for g in optimizer.param_groups]
        self.last_epoch = self._schedulers[0].last_epoch
        return optimizer

    def _has_closed_form(self) -> bool:
        return True

    def lr_at(self, epoch: Any) -> list[Any]:
        for scheduler in self._schedulers:
            if not scheduler._multiplicative:
                raise TypeError(
                    _NO_CLOSED_FORM.format(
                        cls=type(self).__name__,
                        why=f"a chain holding a {type(scheduler).__name__} has none (its update "
                        "is not a factor on the lr the previous scheduler set)",
                    )
                )
        out: list[Any] = list(self.base_lrs)
        for scheduler in self._schedulers:
            for i, (lr, base) in enumerate(zip(scheduler.lr_at(epoch), scheduler.base_lrs)):
                out[i] = out[i] * (lr / base)
        return out

    state_dict = SequentialLR.state_dict
    load_state_dict = SequentialLR.load_state_dict


class ReduceLROnPlateau(LRScheduler):
    """Reduce each lr by ``factor`` once the metric stopped improving for ``patience`` epochs.

    ``opt = scheduler.step(opt, metrics)`` at top level (the metric as a number or a concrete
    array). Its lr depends on the metric's history, so it has no ``apply`` for ``jit``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor
        _check_optimizer(optimizer)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(
                    f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}"
                )
            self.default_min_lr: float | None = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = [_number(g["lr"]) for g in optimizer.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        if mode not in {"min", "max"}:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in {"rel", "abs"}:
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def get_lr(self, current: list[float], optimizer: Optimizer) -> list[float]:
        raise NotImplementedError  # step is overridden

    def step(  # type: ignore[override]
        self, optimizer: Optimizer, metrics: Any, epoch: int | None = None
    ) -> Optimizer:
        """Record ``metrics`` (its ``float``) for this epoch and reduce the lrs if it stalled.

        Returns ``optimizer``, changed in place (top level only, like every ``step``).
        """
        _check_top_level(self, optimizer)
        if isinstance(metrics, jax.core.Tracer):
            raise RuntimeError(_PLATEAU_IN_JIT)
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr(optimizer)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs(optimizer)
        return optimizer

    def _reduce_lr(self, optimizer: Optimizer) -> None:
        groups = optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the `optimizer` ({len(groups)}) differs "
                    f"from when `ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), "
                    "usually due to a new param group being added to the optimizer. Please "
                    "modify the `min_lrs` field to match the length of the `optimizer` param "
                    "groups."
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        current = self._current_lrs(optimizer)
        for i, group in enumerate(groups):
            old = current[i]
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                _set_value(group, "lr", new)

    def _current_lrs(self, optimizer: Optimizer) -> list[float]:
        if len(optimizer.param_groups) != len(self._last_lr):
            return [_number(g["lr"]) for g in optimizer.param_groups]
        return super()._current_lrs(optimizer)

    def apply(self, optimizer: Optimizer, epoch: Any) -> Optimizer:
        raise TypeError(_PLATEAU_IN_JIT)

    def lr_at(self, epoch: Any) -> list[Any]:
        raise TypeError(_PLATEAU_IN_JIT)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)


# Python calls this only for a name the module does not define: a torch name says "not yet".
__getattr__ = _torch_names.missing_attribute_hook(
    __name__, "torch.optim.lr_scheduler", _torch_names.LR_SCHEDULER
)
