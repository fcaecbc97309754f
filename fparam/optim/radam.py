"""``optim.RAdam``: torch's RAdam, step for step, as a pytree."""

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

__all__ = ["RAdam"]


def _series(x: Any, coefficients: tuple[float, ...]) -> Any:
    total = jnp.zeros_like(x)
    for a in reversed(coefficients):
        total = total * x + a
    return total


def sma_length(one_minus_beta2: Any, step: Any) -> Any:
    """torch's ``rho_t = rho_inf - 2 step beta2**step / (1 - beta2**step)``, ``rho_inf =
    2 / (1 - beta2) - 1``, accurate in float32.

    Written out, it is the difference of two numbers near ``rho_inf`` (2000 for beta2 =
    0.999): float32 would lose 3e-4 of it. With ``c = 1 - beta2``, ``L = -log(beta2)`` and
    ``x = step * L`` it is ``2 (L - c) / (c L) - 1 + (2 / L)(1 - x / expm1(x))``, where ``L - c``
    and ``expm1(x) - x`` come from their Taylor series when small.
    """
    c = jnp.asarray(one_minus_beta2, step.dtype)
    log = -jnp.log1p(-c)
    excess = jnp.where(  # L - c = c^2 (1/2 + c/3 + c^2/4 + ...)
        c < 0.2, c * c * _series(c, tuple(1.0 / k for k in range(2, 14))), log - c
    )
    x = step * log
    e = jnp.expm1(x)
    rest = jnp.where(  # 1 - x / expm1(x) = (x^2/2! + x^3/3! + ...) / expm1(x)
        x < 0.2,
        x * x * _series(x, (1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040, 1 / 40320)) / e,
        1 - x / e,
    )
    rho = 2 * excess / (c * log) - 1 + (2 / log) * rest
    return jnp.where(c < 1, rho, 1.0)  # beta2 = 0: rho_inf = rho_t = 1


class RAdam(AdaptiveOptimizer):
    """RAdam (Liu et al.: rectified Adam), exactly ``torch.optim.RAdam``::

        g = -grad if maximize else grad
        if weight_decay != 0:
            if decoupled_weight_decay: p = p * (1 - lr * weight_decay)
            else: g = g + weight_decay * p
        step += 1
        exp_avg = exp_avg.lerp(g, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
        m = exp_avg / (1 - beta1 ** step)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2 ** step / (1 - beta2 ** step)
        if rho_t > 5:
            rect = sqrt((rho_t-4) (rho_t-2) rho_inf / ((rho_inf-4) (rho_inf-2) rho_t))
            p = p - m * lr * sqrt(1 - beta2 ** step) / (sqrt(exp_avg_sq) + eps) * rect
        else: p = p - m * lr

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, betas, eps, weight_decay: pytree leaves (never recompile).
        decoupled_weight_decay, maximize: change the computation (static).
        foreach, capturable, differentiable: accepted and recorded (``fparam/optim/_adaptive.py``).
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    tuple_hyperparameters = {"betas": 2}  # noqa: RUF012 - a class constant
    branch_tests = {"weight_decay": nonzero, "betas": small_lerp_weight}  # noqa: RUF012
    state_order = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
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
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        c2 = jnp.asarray(one_minus(group, "betas", 1), step.dtype)
        rho_inf = 2 / c2 - 1
        rho = sma_length(c2, step)
        rectified = rho > 5.0
        # The ratio is negative for rho_t < 4: only the chosen branch may take its root.
        ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        return {}, {
            "bc1": bias_correction(one_minus(group, "betas", 0), step),
            "bc2_sqrt": jnp.sqrt(bias_correction(c2, step)),
            "rect": jnp.sqrt(jnp.where(rectified, ratio, 1.0)),
            "rectified": rectified,
        }

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, group["decoupled_weight_decay"])
        exp_avg = first_moment(state["exp_avg"], g, group, dt)
        beta2, c2 = _as_dtype(group["betas"][1], dt), _as_dtype(one_minus(group, "betas", 1), dt)
        exp_avg_sq = state["exp_avg_sq"] * beta2 + c2 * g * g
        corrected = exp_avg / c["bc1"].astype(dt) * _as_dtype(group["lr"], dt)
        adaptive = c["bc2_sqrt"].astype(dt) / (jnp.sqrt(exp_avg_sq) + _as_dtype(group["eps"], dt))
        update = jnp.where(c["rectified"], corrected * adaptive * c["rect"].astype(dt), corrected)
        return param + (-1) * update, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
