"""``optim.Adam`` and ``optim.AdamW``: torch's Adam, step for step, as a pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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

__all__ = ["Adam", "AdamW"]


class Adam(AdaptiveOptimizer):
    """Adam (Kingma & Ba), exactly ``torch.optim.Adam`` (torch's single-tensor reference)::

        g = -grad if maximize else grad
        if weight_decay != 0:
            if decoupled_weight_decay: p = p * (1 - lr * weight_decay)
            else: g = g + weight_decay * p
        step += 1
        exp_avg = exp_avg.lerp(g, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
        v = max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq) if amsgrad else exp_avg_sq
        denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
        p = p - lr / (1 - beta1 ** step) * exp_avg / denom

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()`` or a list of group dicts.
        lr, betas, eps, weight_decay: pytree leaves (a new value, Python number or JAX array,
            never recompiles a jitted step).
        amsgrad, maximize, decoupled_weight_decay: change the computation (static).
        foreach, capturable, differentiable, fused: accepted and recorded (see
            ``fparam/optim/_adaptive.py``: one XLA program, always differentiable).

    The state (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) has torch's names and
    ``state_dict()`` layout; ``step`` counts each parameter's steps with a gradient.
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    tuple_hyperparameters = {"betas": 2}  # noqa: RUF012 - a class constant
    branch_tests = {"weight_decay": nonzero, "betas": small_lerp_weight}  # noqa: RUF012
    state_order = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        array = (jax.Array, np.ndarray)
        if isinstance(lr, array) and foreach and not capturable:
            raise ValueError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )
        lr, v = check_options(
            lr,
            [("eps", eps, ">=0"), ("betas", betas, "betas"), ("weight_decay", weight_decay, ">=0")],
        )
        b0, b1 = v["betas"]
        if not (
            (isinstance(b0, float) and isinstance(b1, float))
            or (isinstance(b0, array) and isinstance(b1, array))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        if fused and differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        defaults = {
            "lr": lr,
            "betas": v["betas"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _array_state(self, group: ParamGroup, current: Any) -> tuple[str, ...]:
        extra = ("max_exp_avg_sq",) if group["amsgrad"] else ()
        return ("exp_avg", "exp_avg_sq", *extra)

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        bc1 = bias_correction(one_minus(group, "betas", 0), step)
        bc2 = bias_correction(one_minus(group, "betas", 1), step)
        return {}, {
            "step_size": _as_dtype(group["lr"], step.dtype) / bc1,
            "bc2_sqrt": jnp.sqrt(bc2),
        }

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        dt = param.dtype
        param, g = decay_weights(param, signed(grad, group), group, group["decoupled_weight_decay"])
        exp_avg = first_moment(state["exp_avg"], g, group, dt)
        beta2, c2 = _as_dtype(group["betas"][1], dt), _as_dtype(one_minus(group, "betas", 1), dt)
        exp_avg_sq = state["exp_avg_sq"] * beta2 + c2 * g * g
        new = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        v = exp_avg_sq
        if group["amsgrad"]:
            v = new["max_exp_avg_sq"] = jnp.maximum(state["max_exp_avg_sq"], exp_avg_sq)
        denom = jnp.sqrt(v) / c["bc2_sqrt"].astype(dt) + _as_dtype(group["eps"], dt)
        return param + (-c["step_size"]).astype(dt) * (exp_avg / denom), new


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter), exactly ``torch.optim.AdamW``: Adam with
    ``decoupled_weight_decay=True`` (``p = p * (1 - lr * weight_decay)`` before the update) and
    ``weight_decay=1e-2`` by default. See :class:`Adam`."""

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )
