"""``optim.lr_scheduler`` against ``torch.optim.lr_scheduler``: the same lr, epoch by epoch.

torch updates lrs recursively (``lr *= gamma`` at each boundary); fparam evaluates the closed
form, at top level in float64 (``sched.step(opt)``) and under ``jit`` in float32
(``sched.apply(opt, epoch)`` with a traced epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn, optim
from fparam.optim import lr_scheduler

EPOCHS = 40
LRS = (0.1, 0.01)

# Measured over the 40 epochs of every case below: top level (float64 closed form vs torch's
# float64 recursion) differs by at most 9.2e-15 relative (cosine), under jit (float32) by at
# most 1.4e-6 relative (cosine; 6e-7 for StepLR). The bounds keep ~5x and ~1.5x room.
TOP_RTOL = 5e-14
JIT_RTOL = 2e-6
ATOL = 1e-9  # for the cosine's exact zeros (eta_min=0 at T_max)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(jnp.ones((2,)))
        self.v = nn.Parameter(jnp.ones((3,)))


def make_optimizers() -> tuple[Tiny, optim.SGD, torch.optim.SGD]:
    m = Tiny()
    opt = optim.SGD(
        [
            {"params": [m.get_parameter("w")], "lr": LRS[0]},
            {"params": [m.get_parameter("v")], "lr": LRS[1]},
        ],
        lr=1.0,
    )
    tw, tv = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    topt = torch.optim.SGD([{"params": [tw], "lr": LRS[0]}, {"params": [tv], "lr": LRS[1]}], lr=1.0)
    return m, opt, topt


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("step", "StepLR", {"step_size": 3, "gamma": 0.3}),
    ("step-1", "StepLR", {"step_size": 1, "gamma": 0.9}),
    ("multistep-repeated", "MultiStepLR", {"milestones": [3, 7, 7, 20], "gamma": 0.3}),
    ("multistep-unsorted", "MultiStepLR", {"milestones": [25, 4], "gamma": 0.5}),
    ("cosine", "CosineAnnealingLR", {"T_max": 10, "eta_min": 0.001}),
    ("cosine-to-zero", "CosineAnnealingLR", {"T_max": 7}),
    ("lambda", "LambdaLR", {"lr_lambda": lambda e: 0.95**e}),
    ("lambda-per-group", "LambdaLR", {"lr_lambda": [lambda e: 0.95**e, lambda e: 1 / (e + 1)]}),
]
BUILTIN = [c for c in CASES if c[1] != "LambdaLR"]


def torch_sequence(name: str, kwargs: dict[str, Any]) -> tuple[np.ndarray, list[Any]]:
    """torch's lrs per epoch (rows) and group (columns), and its state_dicts per epoch."""
    _, _, topt = make_optimizers()
    sched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    lrs, states = [], []
    for _ in range(EPOCHS):
        lrs.append([g["lr"] for g in topt.param_groups])
        assert sched.get_last_lr() == lrs[-1]
        states.append(sched.state_dict())
        topt.step()
        sched.step()
    return np.asarray(lrs), states


def build(name: str, kwargs: dict[str, Any], opt: optim.SGD) -> lr_scheduler.LRScheduler:
    return getattr(lr_scheduler, name)(opt, **kwargs)


@pytest.mark.parametrize(("case", "name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_step_matches_torch(case: str, name: str, kwargs: dict[str, Any]) -> None:
    want, states = torch_sequence(name, kwargs)
    _, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    got = []
    for epoch in range(EPOCHS):
        lrs = [g["lr"] for g in opt.param_groups]
        assert sched.get_last_lr() == lrs
        assert sched.last_epoch == epoch == states[epoch]["last_epoch"]
        assert sched.base_lrs == states[epoch]["base_lrs"] == list(LRS)
        got.append(lrs)
        opt = sched.step(opt)
    np.testing.assert_allclose(got, want, rtol=TOP_RTOL, atol=ATOL)
    # lr_at is the same closed form, for any epoch.
    np.testing.assert_allclose(
        [sched.lr_at(e) for e in range(EPOCHS)], want, rtol=TOP_RTOL, atol=ATOL
    )


@pytest.mark.parametrize(("case", "name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_apply_under_jit_matches_torch(case: str, name: str, kwargs: dict[str, Any]) -> None:
    want, _ = torch_sequence(name, kwargs)
    _, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    traces = 0

    def apply(o: optim.SGD, epoch: Any) -> optim.SGD:
        nonlocal traces
        traces += 1
        return sched.apply(o, epoch)

    apply_jit = jax.jit(apply)
    # A Python int is traced as a weak int32; a jnp.int32 as a strong one. LambdaLR hands the
    # epoch to user code, and `0.95 ** epoch` needs the weak one under strict promotion.
    kinds: list[Callable[[int], Any]] = [int] if name == "LambdaLR" else [int, jnp.int32]
    for kind in kinds:
        got = [
            [float(g["lr"]) for g in apply_jit(opt, kind(epoch)).param_groups]
            for epoch in range(EPOCHS)
        ]
        np.testing.assert_allclose(got, want, rtol=JIT_RTOL, atol=ATOL)
    assert traces == len(kinds)
    # apply is pure: neither the scheduler nor the optimizer it was given moved.
    assert sched.last_epoch == 0
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], want[0], rtol=TOP_RTOL)


RETRACE_CASES = [(*c, int) for c in CASES] + [(*c, jnp.int32) for c in BUILTIN]


@pytest.mark.parametrize(
    ("case", "name", "kwargs", "kind"),
    RETRACE_CASES,
    ids=[f"{c[0]}-{c[3].__name__}" for c in RETRACE_CASES],
)
def test_jitted_train_step_does_not_retrace(
    case: str, name: str, kwargs: dict[str, Any], kind: Callable[[int], Any]
) -> None:
    want, _ = torch_sequence(name, kwargs)
    m, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    traces = 0

    @jax.jit
    def train_step(m: Tiny, opt: optim.SGD, epoch: Any) -> Any:
        nonlocal traces
        traces += 1
        opt = sched.apply(opt, epoch)
        grads = jax.tree.map(jnp.ones_like, m)
        return opt.step(m, grads)

    for epoch in range(12):
        before = np.asarray(m.w), np.asarray(m.v)
        m, opt = train_step(m, opt, kind(epoch))
        # Plain SGD with a grad of ones: each param moves by its group's lr (up to the rounding
        # of a float32 near 1, half an ulp = 6e-8).
        np.testing.assert_allclose(before[0] - np.asarray(m.w), want[epoch][0], atol=1e-7)
        np.testing.assert_allclose(before[1] - np.asarray(m.v), want[epoch][1], atol=1e-7)
    assert traces == 1


def test_apply_is_usable_inside_scan() -> None:
    _, opt, _ = make_optimizers()
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    def body(o: optim.SGD, epoch: Any) -> Any:
        o = sched.apply(o, epoch)
        return o, o.param_groups[0]["lr"]

    _, lrs = jax.lax.scan(body, opt, jnp.arange(6))
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6)


@pytest.mark.parametrize(("case", "name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip(case: str, name: str, kwargs: dict[str, Any]) -> None:
    want, states = torch_sequence(name, kwargs)
    _, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    for _ in range(13):
        opt = sched.step(opt)
    saved = sched.state_dict()
    assert "lr_lambdas" not in saved and not any(callable(v) for v in saved.values())
    for key in ("last_epoch", "base_lrs"):
        assert saved[key] == states[13][key]
    np.testing.assert_allclose(saved["_last_lr"], states[13]["_last_lr"], rtol=TOP_RTOL)

    # A fresh optimizer and scheduler (which starts at epoch 0), then the saved state.
    _, fresh_opt, _ = make_optimizers()
    resumed = build(name, kwargs, fresh_opt)
    resumed.load_state_dict(saved)
    assert resumed.last_epoch == 13
    got = []
    for _ in range(14, EPOCHS):
        fresh_opt = resumed.step(fresh_opt)
        got.append([g["lr"] for g in fresh_opt.param_groups])
    np.testing.assert_allclose(got, want[14:], rtol=TOP_RTOL, atol=ATOL)


def test_scheduler_needs_an_optimizer_with_its_group_count() -> None:
    _, opt, _ = make_optimizers()
    sched = lr_scheduler.StepLR(opt, step_size=2)
    single = optim.SGD(Tiny().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="built for 2 parameter groups"):
        sched.step(single)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))]), step_size=2)


def test_lambda_count_must_match_groups_like_torch() -> None:
    _, opt, topt = make_optimizers()
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 3") as theirs:
        torch.optim.lr_scheduler.LambdaLR(topt, [lambda e: 1.0] * 3)
    with pytest.raises(ValueError) as ours:
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0] * 3)
    assert str(ours.value) == str(theirs.value)


def test_step_sets_the_lrs_of_the_optimizer_passed() -> None:
    """Torch style at top level: the optimizer the loop holds now, whatever jit returned."""
    m, opt, topt = make_optimizers()
    sched = lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    tsched = torch.optim.lr_scheduler.MultiStepLR(topt, milestones=[2], gamma=0.1)
    step = jax.jit(lambda m, o: o.step(m, jax.tree.map(jnp.ones_like, m)))
    for _ in range(4):
        m, opt = step(m, opt)
        topt.step()
        opt = sched.step(opt)
        tsched.step()
        assert [float(g["lr"]) for g in opt.param_groups] == pytest.approx(
            [g["lr"] for g in topt.param_groups], rel=TOP_RTOL
        )
