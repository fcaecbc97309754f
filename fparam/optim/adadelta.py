"""``optim.Adadelta``: torch's Adadelta, step for step, as a pytree."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from fparam.optim._adaptive import AdaptiveOptimizer, check_options, decay_weights, signed
from fparam.optim.optimizer import ParamGroup, one_minus
from fparam.optim.sgd import _as_dtype

__all__ = ["Adadelta"]


class Adadelta(AdaptiveOptimizer):
    """Adadelta (Zeiler), exactly ``torch.optim.Adadelta``::

        g = -grad if maximize else grad
        if weight_decay != 0: g = g + weight_decay * p
        square_avg = square_avg * rho + (1 - rho) * g * g
        delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
        acc_delta = acc_delta * rho + (1 - rho) * delta * delta
        p = p - lr * delta

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, rho, eps, weight_decay: pytree leaves (never recompile).
        maximize: changes the computation (static).
        foreach, capturable, differentiable: accepted and recorded (``fparam/optim/_adaptive.py``).
    """

    hyperparameters = ("lr", "rho", "eps", "weight_decay")
    state_order = ("step", "square_avg", "acc_delta")

    def __init__(
        self,
        params: Any,
        lr: Any = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        lr, v = check_options(
            lr, [("rho", rho, "[0,1]"), ("eps", eps, ">=0"), ("weight_decay", weight_decay, ">=0")]
        )
        defaults = {
            "lr": lr,
            "rho": v["rho"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, False)
        rho, c_rho = _as_dtype(group["rho"], dt), _as_dtype(one_minus(group, "rho"), dt)
        eps = _as_dtype(group["eps"], dt)
        square_avg = state["square_avg"] * rho + c_rho * g * g
        delta = jnp.sqrt(state["acc_delta"] + eps) / jnp.sqrt(square_avg + eps) * g
        acc_delta = state["acc_delta"] * rho + c_rho * delta * delta
        lr = _as_dtype(group["lr"], dt)
        return param + (-lr) * delta, {"square_avg": square_avg, "acc_delta": acc_delta}
