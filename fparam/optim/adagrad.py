"""``optim.Adagrad``: torch's Adagrad, step for step, as a pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam.optim._adaptive import AdaptiveOptimizer, check_options, decay_weights, signed
from fparam.optim.optimizer import ParamGroup, zeros_like_param
from fparam.optim.sgd import _as_dtype

__all__ = ["Adagrad"]


class Adagrad(AdaptiveOptimizer):
    """Adagrad (Duchi et al.), exactly ``torch.optim.Adagrad`` (dense gradients)::

        g = -grad if maximize else grad
        if weight_decay != 0: g = g + weight_decay * p
        step += 1
        clr = lr / (1 + (step - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, lr_decay, eps, weight_decay: pytree leaves (never recompile).
        initial_accumulator_value: the value ``sum`` starts at (as torch, the constructor's
            value for every group).
        maximize: changes the computation (static).
        foreach, differentiable, fused: accepted and recorded (``fparam/optim/_adaptive.py``).

    As torch, the state of the constructor's parameters exists from the start (``step`` 0);
    a group added later gets its state at its first step.
    """

    hyperparameters = ("lr", "lr_decay", "eps", "weight_decay")
    state_order = ("step", "sum")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        lr, v = check_options(
            lr,
            [
                ("lr_decay", lr_decay, ">=0"),
                ("weight_decay", weight_decay, ">=0"),
                ("initial_accumulator_value", initial_accumulator_value, ">=0"),
                ("eps", eps, ">=0"),
            ],
        )
        defaults = {
            "lr": lr,
            "lr_decay": v["lr_decay"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "initial_accumulator_value": v["initial_accumulator_value"],
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        for rows in self._rows.values():  # torch creates this state in its constructor
            rows[:, 0] = 1
        self._state_changed()

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        return ("sum",)

    def _initial_array(self, name: str, handle: Any) -> jax.Array:
        initial = self.defaults["initial_accumulator_value"]
        return zeros_like_param(handle, float(np.asarray(initial)))

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        lr, lr_decay = (_as_dtype(group[k], step.dtype) for k in ("lr", "lr_decay"))
        return {}, {"clr": lr / (1 + (step - 1) * lr_decay)}

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, False)
        total = state["sum"] + g * g
        std = jnp.sqrt(total) + _as_dtype(group["eps"], dt)
        return param + (-c["clr"]).astype(dt) * (g / std), {"sum": total}
