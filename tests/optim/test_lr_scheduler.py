"""``optim.lr_scheduler`` against ``torch.optim.lr_scheduler``: the same lr, step by step.

At top level ``sched.step(opt)`` runs torch's own recursion in Python floats, so the lrs (and
the cycled momenta) are torch's to the last digit, also when a jitted optimizer step (float32
leaves) runs between the scheduler steps. Under ``jit``, ``sched.apply(opt, epoch)`` evaluates
the closed form in float32.
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

# Measured over the runs of every case below, apply under jit (float32 closed form) against
# torch's float64 recursion: at most 5.9e-6 relative (ExponentialLR after 120 steps, where the
# float32 power accumulates), 3.2e-5 for OneCycleLR near its tiny final lr (1e-4 of max_lr,
# where the cosine's cancellation leaves float32 ~1e-12 absolute). The bounds keep ~2x room.
JIT_RTOL = 1.2e-5
ATOL = 2e-10  # absolute: the exact zeros of the cosines, OneCycle's final 4e-7 lrs
TOP_RTOL = 0.0  # exact: torch's recursion in the same Python floats


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(jnp.ones((2,)))
        self.v = nn.Parameter(jnp.ones((3,)))


def make_optimizers(momentum: float = 0.0) -> tuple[Tiny, optim.SGD, torch.optim.SGD]:
    m = Tiny()
    opt = optim.SGD(
        [
            {"params": [m.get_parameter("w")], "lr": LRS[0]},
            {"params": [m.get_parameter("v")], "lr": LRS[1]},
        ],
        lr=1.0,
        momentum=momentum,
    )
    tw, tv = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    topt = torch.optim.SGD(
        [{"params": [tw], "lr": LRS[0]}, {"params": [tv], "lr": LRS[1]}], lr=1.0, momentum=momentum
    )
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
    ("multiplicative", "MultiplicativeLR", {"lr_lambda": lambda e: 0.97}),
    ("constant", "ConstantLR", {"factor": 0.5, "total_iters": 4}),
    ("linear", "LinearLR", {"start_factor": 0.25, "end_factor": 0.9, "total_iters": 13}),
    ("exponential", "ExponentialLR", {"gamma": 0.93}),
    ("polynomial", "PolynomialLR", {"total_iters": 30, "power": 1.7}),
    ("warm-restarts", "CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 2, "eta_min": 5e-4}),
    ("warm-restarts-1", "CosineAnnealingWarmRestarts", {"T_0": 7}),
    (
        "cyclic-triangular2",
        "CyclicLR",
        {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 9, "step_size_down": 5,
         "mode": "triangular2", "cycle_momentum": False},
    ),
    (
        "cyclic-exp-range",
        "CyclicLR",
        {"base_lr": [0.001, 0.002], "max_lr": 0.1, "step_size_up": 6, "mode": "exp_range",
         "gamma": 0.99, "cycle_momentum": False},
    ),
    ("onecycle", "OneCycleLR", {"max_lr": [0.1, 0.05], "total_steps": 60, "cycle_momentum": False}),
    (
        "onecycle-3-linear",
        "OneCycleLR",
        {"max_lr": 0.1, "total_steps": 45, "three_phase": True, "anneal_strategy": "linear",
         "cycle_momentum": False},
    ),
]  # fmt: skip
BUILTIN = [c for c in CASES if c[1] not in ("LambdaLR", "MultiplicativeLR")]
LAMBDAS = ("LambdaLR", "MultiplicativeLR")


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


CLOSED_RTOL = 5e-14  # float64 closed form vs torch's float64 recursion: 9.2e-15 measured


@pytest.mark.parametrize(("case", "name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_step_matches_torch_to_the_last_digit(case: str, name: str, kwargs: dict[str, Any]) -> None:
    want, states = torch_sequence(name, kwargs)
    m, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    # A jitted optimizer step between scheduler steps: the optimizer comes back with float32
    # lrs, and the scheduler still continues torch's doubles.
    train = jax.jit(lambda m, o: o.step(m, jax.tree.map(jnp.ones_like, m)))
    got = []
    for epoch in range(EPOCHS):
        lrs = [float(g["lr"]) for g in opt.param_groups]
        assert sched.last_epoch == epoch == states[epoch]["last_epoch"]
        assert sched.base_lrs == states[epoch]["base_lrs"]
        got.append(sched.get_last_lr())
        np.testing.assert_allclose(lrs, got[-1], rtol=1e-7)  # the optimizer holds them
        m, opt = train(m, opt)
        opt = sched.step(opt)
    assert got == want.tolist()
    # lr_at is the closed form, for any epoch: equal up to float64 rounding.
    np.testing.assert_allclose(
        [sched.lr_at(e) for e in range(EPOCHS)], want, rtol=CLOSED_RTOL, atol=1e-17
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
    kinds: list[Callable[[int], Any]] = [int] if name in LAMBDAS else [int, jnp.int32]
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
    """Resume mid-run, as torch users do: the optimizer's and the scheduler's state_dicts,
    saved by torch and loaded by fparam, and saved by fparam and loaded by fparam or torch."""
    want, states = torch_sequence(name, kwargs)
    _, _, topt = make_optimizers()
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    _, opt, _ = make_optimizers()
    sched = build(name, kwargs, opt)
    for _ in range(13):
        topt.step()
        tsched.step()
        opt = sched.step(opt)
    saved = sched.state_dict()
    assert not any(callable(v) for v in saved.values())
    assert saved.keys() == states[13].keys()
    for key in saved:
        if key != "lr_lambdas":
            assert saved[key] == states[13][key], key

    # torch -> fparam, fparam -> fparam: a fresh optimizer and scheduler load both states.
    for opt_state, sched_state in (
        (topt.state_dict(), tsched.state_dict()),
        (opt.state_dict(), saved),
    ):
        _, fresh_opt, _ = make_optimizers()
        resumed = build(name, kwargs, fresh_opt)
        fresh_opt.load_state_dict(opt_state)
        resumed.load_state_dict(sched_state)
        assert resumed.last_epoch == 13
        got = []
        for _ in range(14, EPOCHS):
            fresh_opt = resumed.step(fresh_opt)
            got.append([g["lr"] for g in fresh_opt.param_groups])
        assert got == want[14:].tolist()

    # fparam -> torch.
    _, _, fresh_topt = make_optimizers()
    theirs = getattr(torch.optim.lr_scheduler, name)(fresh_topt, **kwargs)
    fresh_topt.load_state_dict(opt.state_dict())
    theirs.load_state_dict(saved)
    got = []
    for _ in range(14, EPOCHS):
        fresh_topt.step()
        theirs.step()
        got.append([g["lr"] for g in fresh_topt.param_groups])
    assert got == want[14:].tolist()


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
