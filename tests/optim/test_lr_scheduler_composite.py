"""The schedulers that compose or react: ``SequentialLR``, ``ChainedScheduler``,
``ReduceLROnPlateau``, and the momentum that ``CyclicLR`` / ``OneCycleLR`` cycle; against torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import optim
from fparam.optim import lr_scheduler
from tests.optim.test_lr_scheduler import Tiny, make_optimizers

T = torch.optim.lr_scheduler


def sequential(lib: Any, opt: Any) -> Any:
    a = lib.LinearLR(opt, start_factor=0.1, total_iters=5)
    b = lib.CosineAnnealingLR(opt, T_max=30, eta_min=1e-4)
    c = lib.ExponentialLR(opt, gamma=0.9)
    return lib.SequentialLR(opt, [a, b, c], milestones=[5, 40])


def chained(lib: Any, opt: Any) -> Any:
    a = lib.ConstantLR(opt, factor=0.5, total_iters=6)
    b = lib.ExponentialLR(opt, gamma=0.95)
    c = lib.MultiStepLR(opt, milestones=[10, 30], gamma=0.5)
    return lib.ChainedScheduler([a, b, c])


def chained_cosine(lib: Any, opt: Any) -> Any:
    return lib.ChainedScheduler([lib.CosineAnnealingLR(opt, T_max=10), lib.StepLR(opt, 4, 0.5)])


def cyclic(lib: Any, opt: Any) -> Any:
    return lib.CyclicLR(opt, base_lr=[0.001, 0.002], max_lr=0.1, step_size_up=7, step_size_down=4)


def onecycle(lib: Any, opt: Any) -> Any:
    return lib.OneCycleLR(opt, max_lr=[0.1, 0.05], epochs=6, steps_per_epoch=10)


BUILDERS: dict[str, Callable[[Any, Any], Any]] = {
    "sequential": sequential,
    "chained": chained,
    "chained-cosine": chained_cosine,
    "cyclic-momentum": cyclic,
    "onecycle-momentum": onecycle,
}
STEPS = 60


def run_torch(build: Callable[[Any, Any], Any]) -> tuple[list[Any], list[Any]]:
    _, _, topt = make_optimizers(momentum=0.9)
    sched = build(T, topt)
    lrs, momenta = [], []
    for _ in range(STEPS):
        lrs.append(sched.get_last_lr())
        momenta.append([g["momentum"] for g in topt.param_groups])
        topt.step()
        sched.step()
    return lrs, momenta


@pytest.mark.parametrize("name", list(BUILDERS))
def test_step_matches_torch_to_the_last_digit(name: str) -> None:
    want_lrs, want_momenta = run_torch(BUILDERS[name])
    m, opt, _ = make_optimizers(momentum=0.9)
    sched = BUILDERS[name](lr_scheduler, opt)
    train = jax.jit(lambda m, o: o.step(m, jax.tree.map(jnp.ones_like, m)))
    lrs, momenta = [], []
    for _ in range(STEPS):
        lrs.append(sched.get_last_lr())
        momenta.append([float(g["momentum"]) for g in opt.param_groups])
        m, opt = train(m, opt)
        opt = sched.step(opt)
    assert lrs == want_lrs
    np.testing.assert_allclose(momenta, want_momenta, rtol=1e-7)  # read back from float32


# Measured: at most 5.3e-6 relative (the sequence's cosine part, float32 under jit).
JIT_RTOL = 1e-5


@pytest.mark.parametrize("name", [n for n in BUILDERS if n != "chained-cosine"])
def test_apply_under_jit_matches_torch(name: str) -> None:
    want_lrs, want_momenta = run_torch(BUILDERS[name])
    _, opt, _ = make_optimizers(momentum=0.9)
    sched = BUILDERS[name](lr_scheduler, opt)
    traces = 0

    def apply(o: optim.SGD, epoch: Any) -> optim.SGD:
        nonlocal traces
        traces += 1
        return sched.apply(o, epoch)

    apply_jit = jax.jit(apply)
    got_lrs, got_momenta = [], []
    for epoch in range(STEPS):
        new = apply_jit(opt, epoch)
        got_lrs.append([float(g["lr"]) for g in new.param_groups])
        got_momenta.append([float(g["momentum"]) for g in new.param_groups])
    assert traces == 1
    np.testing.assert_allclose(got_lrs, want_lrs, rtol=JIT_RTOL, atol=1e-10)
    np.testing.assert_allclose(got_momenta, want_momenta, rtol=1e-6)


def test_momentum_cycling_trains_like_torch() -> None:
    """OneCycle's lr and momentum in a jitted SGD step: the parameters follow torch's."""
    m, opt, topt = make_optimizers(momentum=0.9)
    tparams = [p for g in topt.param_groups for p in g["params"]]
    sched = onecycle(lr_scheduler, opt)
    tsched = onecycle(T, topt)

    @jax.jit
    def step(m: Tiny, o: optim.SGD, i: Any, g: Any) -> Any:
        o = sched.apply(o, i)
        grads = jax.tree.map(lambda p: p * 0 + g, m)
        return o.step(m, grads)

    for i in range(STEPS):
        g = np.float32(np.sin(i))
        m, opt = step(m, opt, i, g)
        for p in tparams:
            p.grad = torch.full_like(p, float(g))
        topt.step()
        tsched.step()
    np.testing.assert_allclose(np.asarray(m.w), tparams[0].detach().numpy(), rtol=2e-6)
    np.testing.assert_allclose(np.asarray(m.v), tparams[1].detach().numpy(), rtol=2e-6)


def test_chain_without_a_closed_form_refuses_apply() -> None:
    _, opt, _ = make_optimizers()
    sched = chained_cosine(lr_scheduler, opt)
    with pytest.raises(TypeError, match="CosineAnnealingLR has none"):
        sched.apply(opt, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 2, "factor": 0.5},
        {"mode": "max", "patience": 3, "cooldown": 2, "threshold_mode": "abs",
         "threshold": 0.05, "min_lr": [0.003, 0.0001]},
        {"patience": 0, "factor": 0.7, "eps": 1e-3, "threshold": 0.0},
    ],
)  # fmt: skip
def test_reduce_on_plateau_matches_torch(kwargs: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    metrics = np.cumsum(rng.normal(0, 1, 80)) * 0.1 + 5
    m, opt, topt = make_optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    tsched = T.ReduceLROnPlateau(topt, **kwargs)
    train = jax.jit(lambda m, o: o.step(m, jax.tree.map(jnp.ones_like, m)))
    changes = 0
    for i, metric in enumerate(metrics):
        m, opt = train(m, opt)
        topt.step()
        before = sched.get_last_lr()
        opt = sched.step(opt, jnp.float32(metric))  # a device scalar, as a loss is
        tsched.step(torch.tensor(metric, dtype=torch.float32))
        changes += sched.get_last_lr() != before
        assert sched.get_last_lr() == tsched.get_last_lr(), i
        if i == 40:  # resume from torch's state halfway
            fresh = lr_scheduler.ReduceLROnPlateau(make_optimizers()[1], **kwargs)
            fresh.load_state_dict(tsched.state_dict())
            assert fresh.state_dict() == tsched.state_dict()
            sched = fresh
    assert changes >= 2  # the grid exercises reductions
    assert sched.state_dict().keys() == tsched.state_dict().keys()
    with pytest.raises(TypeError, match="no closed form"):
        sched.apply(opt, 3)


def test_onecycle_past_its_total_steps_raises_like_torch() -> None:
    _, opt, topt = make_optimizers(momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    tsched = T.OneCycleLR(topt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt = sched.step(opt)
        topt.step()
        tsched.step()
    topt.step()
    with pytest.raises(ValueError) as theirs:
        tsched.step()
    with pytest.raises(ValueError) as ours:
        sched.step(opt)
    assert str(ours.value) == str(theirs.value)
    # Under jit nothing can raise: the lr is NaN past the end, never a silently wrong value.
    assert np.isnan(float(jax.jit(sched.apply)(opt, 5).param_groups[0]["lr"]))


CONSTRUCTOR_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("ConstantLR", {"factor": 1.5}),
    ("LinearLR", {"start_factor": 0.0}),
    ("LinearLR", {"end_factor": 2.0}),
    ("CosineAnnealingWarmRestarts", {"T_0": 0}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 0}),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "mode": "sawtooth"}),
    ("CyclicLR", {"base_lr": [0.1], "max_lr": 1.0}),
    ("OneCycleLR", {"max_lr": 0.1}),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 1.5}),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "anneal_strategy": "cubic"}),
    ("OneCycleLR", {"max_lr": 0.1, "epochs": 0, "steps_per_epoch": 3}),
    ("ReduceLROnPlateau", {"factor": 1.0}),
    ("ReduceLROnPlateau", {"mode": "up"}),
    ("ReduceLROnPlateau", {"min_lr": [0.1]}),
    ("MultiplicativeLR", {"lr_lambda": 0.5}),
]


@pytest.mark.parametrize(("name", "kwargs"), CONSTRUCTOR_ERRORS)
def test_constructor_errors_match_torch(name: str, kwargs: dict[str, Any]) -> None:
    _, opt, topt = make_optimizers(momentum=0.9)
    with pytest.raises(Exception) as theirs:
        getattr(T, name)(topt, **kwargs)
    with pytest.raises(Exception) as ours:
        getattr(lr_scheduler, name)(opt, **kwargs)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


def test_resuming_needs_initial_lr_like_torch() -> None:
    _, opt, topt = make_optimizers()
    with pytest.raises(KeyError) as theirs:
        T.StepLR(topt, 2, last_epoch=4)
    with pytest.raises(KeyError) as ours:
        lr_scheduler.StepLR(opt, 2, last_epoch=4)
    assert str(ours.value) == str(theirs.value)


def test_cycling_momentum_needs_an_optimizer_with_momentum() -> None:
    _, opt, _ = make_optimizers()
    del opt.defaults["momentum"]
    with pytest.raises(ValueError, match="must support momentum or beta1"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)


def test_deprecated_epoch_argument_uses_the_closed_form_with_torchs_warning() -> None:
    _, opt, topt = make_optimizers()
    sched = lr_scheduler.StepLR(opt, 3, 0.5)
    tsched = T.StepLR(topt, 3, 0.5)
    with pytest.warns(UserWarning, match="epoch parameter in `scheduler.step\\(\\)`"):
        sched.step(opt, 7)
    with pytest.warns(UserWarning):
        tsched.step(7)
    assert sched.get_last_lr() == tsched.get_last_lr()
