"""``optim.Adamax``: torch's Adamax, step for step, as a pytree."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from fparam.optim._adaptive import (
    AdaptiveOptimizer,
    bias_correction,
    check_options,
    decay_weights,
    first_moment,
    signed,
)
from fparam.optim.optimizer import ParamGroup, nonzero, one_minus, small_lerp_weight
from fparam.optim.sgd import _as_dtype

__all__ = ["Adamax"]


class Adamax(AdaptiveOptimizer):
    """Adamax (Adam with the infinity norm), exactly ``torch.optim.Adamax``::

        g = -grad if maximize else grad
        if weight_decay != 0: g = g + weight_decay * p
        step += 1
        exp_avg = exp_avg.lerp(g, 1 - beta1)
        exp_inf = max(exp_inf * beta2, |g| + eps)
        p = p - lr / (1 - beta1 ** step) * exp_avg / exp_inf

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, betas, eps, weight_decay: pytree leaves (never recompile).
        maximize: changes the computation (static).
        foreach, differentiable, capturable: accepted and recorded (``fparam/optim/_adaptive.py``).
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    tuple_hyperparameters = {"betas": 2}  # noqa: RUF012 - a class constant
    branch_tests = {"weight_decay": nonzero, "betas": small_lerp_weight}  # noqa: RUF012
    state_order = ("step", "exp_avg", "exp_inf")

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        lr, v = check_options(
            lr,
            [("eps", eps, ">=0"), ("betas", betas, "betas"), ("weight_decay", weight_decay, ">=0")],
        )
        defaults = {
            "lr": lr,
            "betas": v["betas"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        return ("exp_avg", "exp_inf")

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {
            "clr": _as_dtype(group["lr"], step.dtype)
            / bias_correction(one_minus(group, "betas", 0), step)
        }

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, False)
        exp_avg = first_moment(state["exp_avg"], g, group, dt)
        beta2, eps = _as_dtype(group["betas"][1], dt), _as_dtype(group["eps"], dt)
        exp_inf = jnp.maximum(state["exp_inf"] * beta2, jnp.abs(g) + eps)
        new_param = param + (-c["clr"]).astype(dt) * (exp_avg / exp_inf)
        return new_param, {"exp_avg": exp_avg, "exp_inf": exp_inf}
