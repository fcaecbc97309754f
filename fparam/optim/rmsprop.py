"""``optim.RMSprop``: torch's RMSprop, step for step, as a pytree."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from fparam.optim._adaptive import AdaptiveOptimizer, check_options, decay_weights, lerp, signed
from fparam.optim.optimizer import ParamGroup, one_minus
from fparam.optim.sgd import _as_dtype

__all__ = ["RMSprop"]


class RMSprop(AdaptiveOptimizer):
    """RMSprop (Hinton), exactly ``torch.optim.RMSprop`` (torch's single-tensor reference)::

        g = -grad if maximize else grad
        if weight_decay != 0: g = g + weight_decay * p
        square_avg = square_avg * alpha + (1 - alpha) * g * g
        if centered:
            grad_avg = grad_avg.lerp(g, 1 - alpha)
            avg = sqrt(square_avg - grad_avg * grad_avg) + eps
        else: avg = sqrt(square_avg) + eps
        if momentum > 0:
            momentum_buffer = momentum_buffer * momentum + g / avg
            p = p - lr * momentum_buffer
        else: p = p - lr * g / avg

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, momentum, alpha, eps, weight_decay: pytree leaves (never recompile).
        centered, maximize: change the computation (static).
        capturable, foreach, differentiable: accepted and recorded (``fparam/optim/_adaptive.py``).

    A group has ``momentum_buffer`` state when its momentum is > 0 (as torch decides at a
    parameter's first step); a group given a JAX-array momentum keeps the buffers it has
    (reading the array would wait for the device), and steps with them while momentum > 0.
    """

    hyperparameters = ("lr", "momentum", "alpha", "eps", "weight_decay")
    state_order = ("step", "square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        lr, v = check_options(
            lr,
            [
                ("eps", eps, ">=0"),
                ("momentum", momentum, ">=0"),
                ("weight_decay", weight_decay, ">=0"),
                ("alpha", alpha, ">=0"),
            ],
        )
        defaults = {
            "lr": lr,
            "momentum": v["momentum"],
            "alpha": v["alpha"],
            "eps": v["eps"],
            "centered": centered,
            "weight_decay": v["weight_decay"],
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        momentum = dict.__getitem__(group, "momentum")  # not read back from the packed vector
        if isinstance(momentum, int | float):
            has_buffer = momentum > 0
        else:  # unread since a step, or an array: keep what there is
            has_buffer = current is None or "momentum_buffer" in current
        return (
            "square_avg",
            *(("momentum_buffer",) if has_buffer else ()),
            *(("grad_avg",) if group["centered"] else ()),
        )

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, False)
        alpha, c_alpha = _as_dtype(group["alpha"], dt), _as_dtype(one_minus(group, "alpha"), dt)
        square_avg = state["square_avg"] * alpha + c_alpha * g * g
        new = {"square_avg": square_avg}
        if group["centered"]:
            grad_avg = new["grad_avg"] = lerp(state["grad_avg"], g, c_alpha)
            avg = jnp.sqrt(square_avg + (-1) * grad_avg * grad_avg)
        else:
            avg = jnp.sqrt(square_avg)
        avg = avg + _as_dtype(group["eps"], dt)
        lr = _as_dtype(group["lr"], dt)
        plain = param + (-lr) * (g / avg)
        if "momentum_buffer" not in state:
            return plain, new
        momentum = _as_dtype(group["momentum"], dt)
        buf = state["momentum_buffer"] * momentum + g / avg
        if isinstance(momentum, int | float):
            if momentum <= 0:
                return plain, {**new, "momentum_buffer": state["momentum_buffer"]}
            return param + (-lr) * buf, {**new, "momentum_buffer": buf}
        on = momentum > 0
        new["momentum_buffer"] = jnp.where(on, buf, state["momentum_buffer"])
        return jnp.where(on, param + (-lr) * buf, plain), new
