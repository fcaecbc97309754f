"""``optim.NAdam``: torch's NAdam, step for step, as a pytree."""

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

__all__ = ["NAdam"]


class NAdam(AdaptiveOptimizer):
    """NAdam (Dozat: Adam with Nesterov momentum), exactly ``torch.optim.NAdam``::

        g = -grad if maximize else grad
        if weight_decay != 0:
            if decoupled_weight_decay: p = p * (1 - lr * weight_decay)
            else: g = g + weight_decay * p
        step += 1
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = mu_product * mu
        exp_avg = exp_avg.lerp(g, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
        denom = sqrt(exp_avg_sq / (1 - beta2 ** step)) + eps
        p = p - lr * (1 - mu) / (1 - mu_product) * g / denom
        p = p - lr * mu_next / (1 - mu_product * mu_next) * exp_avg / denom

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, betas, eps, weight_decay, momentum_decay: pytree leaves (never recompile).
        decoupled_weight_decay, maximize: change the computation (static).
        foreach, capturable, differentiable: accepted and recorded (``fparam/optim/_adaptive.py``).
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay", "momentum_decay")
    tuple_hyperparameters = {"betas": 2}  # noqa: RUF012 - a class constant
    branch_tests = {"weight_decay": nonzero, "betas": small_lerp_weight}  # noqa: RUF012
    scalar_state = {"step": 0.0, "mu_product": 1.0}  # noqa: RUF012 - a class constant
    state_order = ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        lr, v = check_options(
            lr,
            [
                ("eps", eps, ">=0"),
                ("betas", betas, "betas"),
                ("weight_decay", weight_decay, ">=0"),
                ("momentum_decay", momentum_decay, ">=0"),
            ],
        )
        defaults = {
            "lr": lr,
            "betas": v["betas"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "momentum_decay": v["momentum_decay"],
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, decay, lr = (
            _as_dtype(v, step.dtype)
            for v in (group["betas"][0], group["momentum_decay"], group["lr"])
        )
        mu = beta1 * (1.0 - 0.5 * jnp.power(0.96, step * decay))
        mu_next = beta1 * (1.0 - 0.5 * jnp.power(0.96, (step + 1) * decay))
        mu_product = jnp.where(stepped > 0, scalars["mu_product"] * mu, scalars["mu_product"])
        mu_product_next = mu_product * mu_next
        return {"mu_product": mu_product}, {
            "bc2": bias_correction(one_minus(group, "betas", 1), step),
            "grad_coef": -lr * (1.0 - mu) / (1.0 - mu_product),
            "avg_coef": (-lr * mu_next) / (1.0 - mu_product_next),
        }

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, group["decoupled_weight_decay"])
        exp_avg = first_moment(state["exp_avg"], g, group, dt)
        beta2, c2 = _as_dtype(group["betas"][1], dt), _as_dtype(one_minus(group, "betas", 1), dt)
        exp_avg_sq = state["exp_avg_sq"] * beta2 + c2 * g * g
        denom = jnp.sqrt(exp_avg_sq / c["bc2"].astype(dt)) + _as_dtype(group["eps"], dt)
        param = param + c["grad_coef"].astype(dt) * (g / denom)
        param = param + c["avg_coef"].astype(dt) * (exp_avg / denom)
        return param, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
