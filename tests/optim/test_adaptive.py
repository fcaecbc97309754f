"""Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam and RAdam against ``torch.optim`` itself.

Each parity run feeds the same random gradients to torch (``p.grad = g; opt.step()``) and to
fparam (``m, opt = opt.step(m, grads)``) for 50 jitted steps, on a model with two parameter
groups (the second with its own options), a frozen layer (requires_grad False in both; fparam
is even given a gradient for it) and a parameter whose gradient is None every third step, and
compares every parameter and every state entry (torch's names, torch's state_dict layout).
Configurations are sampled from each optimizer's options with a fixed seed.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn, optim

# Measured over the sampled grids below (50 jitted steps; /tmp script, same runs): the largest
# parameter difference to torch is 1.9e-6 (Adam; parameters of order 1), the largest state
# difference 7.6e-6 on Adagrad's sums of order 50 (1.6e-7 relative); relative differences on state
# entries >= 1e-3 are <= 3.9e-6 (NAdam), except RMSprop's grad_avg near 1e-3 (5e-5 relative,
# 5e-8 absolute). float32 rounding order (XLA vs ATen; torch's scalar math is in double, fparam's
# in float32 with torch's 1 - beta restored, see fparam/optim/optimizer.py `_residual`) is the only
# source; a formula error is >= 1e-3.
RTOL, ATOL = 1e-5, 5e-6
STEPS = 50
N_CONFIGS = 10

SHAPES = {
    "fc1.weight": (4, 3),
    "fc1.bias": (4,),
    "fc2.weight": (2, 4),
    "fc2.bias": (2,),
    "head.weight": (1, 2),
    "head.bias": (1,),
}
FROZEN = ("head.weight", "head.bias")
SOMETIMES_NONE = "fc2.bias"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)
        self.head = nn.Linear(2, 1)


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 4)
        self.fc2 = torch.nn.Linear(4, 2)
        self.head = torch.nn.Linear(2, 1)


# Copies of one model share the module-level jitted step: one compile per static configuration.
TEMPLATE = Net()
TEMPLATE.head.requires_grad_(False)


def path_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def make_pair(seed: int = 0) -> tuple[Net, TorchNet]:
    rng = np.random.default_rng(seed)
    values = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    t = TorchNet()
    t.load_state_dict({k: torch.tensor(v) for k, v in values.items()})
    t.head.requires_grad_(False)
    m = jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(values[path_name(p)]), TEMPLATE)
    return m, t


def groups(model: Any, override: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"params": list(model.fc1.parameters())},
        {"params": [*model.fc2.parameters(), *model.head.parameters()], **override},
    ]


def random_grads(rng: np.random.Generator, i: int, none: bool = False) -> dict[str, Any]:
    """Gradients for step ``i``; with ``none``, fc2.bias has none at every third step (so its
    state is created a step later and its step count lags, as in torch)."""
    g: dict[str, Any] = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    if none and i % 3 == 0:
        g[SOMETIMES_NONE] = None
    return g


def grads_tree(model: Net, grads: dict[str, Any]) -> Any:
    def leaf(path: tuple[Any, ...], _: Any) -> Any:
        g = grads.get(path_name(path))
        return None if g is None else jnp.asarray(g)

    return jax.tree_util.tree_map_with_path(leaf, model)


def set_torch_grads(model: torch.nn.Module, grads: dict[str, Any]) -> None:
    for name, p in model.named_parameters():
        g = None if name in FROZEN else grads.get(name)
        p.grad = None if g is None else torch.tensor(g)


def as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy().copy()
    return np.array(x)


def assert_same(
    m: Net, opt: Any, t: TorchNet, topt: Any, where: str = "", groups: bool = True
) -> None:
    """Parameters, and every state entry (same parameters, same keys in the same order)."""
    theirs_p = {k: as_numpy(v) for k, v in t.state_dict().items()}
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(np.asarray(v), theirs_p[k], RTOL, ATOL, err_msg=f"{where} {k}")
    ours, theirs = opt.state_dict(), topt.state_dict()
    if groups:
        assert ours["param_groups"] == theirs["param_groups"], where
    assert list(ours["state"]) == list(theirs["state"]), where
    for i, entry in theirs["state"].items():
        assert list(ours["state"][i]) == list(entry), f"{where} state[{i}]"
        for key, value in entry.items():
            mine = ours["state"][i][key]
            if key in ("step", "mu_product"):
                assert mine.shape == () and mine.dtype == jnp.float32, key
            np.testing.assert_allclose(
                np.asarray(mine), as_numpy(value), RTOL, ATOL, err_msg=f"{where} state[{i}][{key}]"
            )


def _step(m: Any, opt: Any, grads: Any) -> Any:
    return opt.step(m, grads)


_jit_step = jax.jit(_step)


def train(
    m: Any, opt: Any, t: Any, topt: Any, steps: int, seed: int, jit: bool = True, none: bool = True
) -> Any:
    rng = np.random.default_rng(seed)
    step = _jit_step if jit else _step
    for i in range(steps):
        g = random_grads(rng, i, none)
        if t is not None:
            set_torch_grads(t, g)
            topt.step()
        if m is not None:
            m, opt = step(m, opt, grads_tree(m, g))
    return m, opt


# ------------------------------------------------------------------------------- the grids
#
# Each optimizer's float options are drawn at random per configuration; its static options
# (which change the compiled step) cycle through a few combinations that set every flag both
# ways, so the module's jitted step compiles a few times per optimizer, not once per
# configuration. The first combination's runs also get None gradients (another structure).

BETAS = [(0.9, 0.999), (0.8, 0.99), (0.5, 0.9), (0.0, 0.999)]
COMMON = {"eps": [1e-8, 1e-3], "weight_decay": [0, 0.1]}
FLOATS: dict[str, dict[str, list[Any]]] = {
    "Adam": {"lr": [1e-3, 1e-2, 0.1, "tensor"], "betas": BETAS, **COMMON},
    "AdamW": {"lr": [1e-3, 0.1, "tensor"], "betas": BETAS, **COMMON},
    "RMSprop": {"lr": [1e-3, 1e-2], "alpha": [0.99, 0.9, 0.5], **COMMON},
    "Adagrad": {
        "lr": [1e-2, 0.1, "tensor"],
        "lr_decay": [0, 0.01, 0.5],
        "initial_accumulator_value": [0, 0.1],
        "eps": [1e-10, 1e-3],
        "weight_decay": [0, 0.1],
    },
    "Adadelta": {
        "lr": [1.0, 0.1],
        "rho": [0.9, 0.5, 0.99],
        "eps": [1e-6, 1e-3],
        "weight_decay": [0, 0.1],
    },
    "Adamax": {"lr": [2e-3, 0.1], "betas": BETAS, **COMMON},
    "NAdam": {"lr": [2e-3, 0.1], "betas": BETAS, "momentum_decay": [4e-3, 0.1], **COMMON},
    # beta2 = 0: never rectified; 0.9: rectified from the 4th step; 0.999: from the 6th.
    "RAdam": {"lr": [1e-3, 0.1], "betas": [*BETAS, (0.9, 0.0)], **COMMON},
}
STATICS: dict[str, list[dict[str, Any]]] = {
    "Adam": [
        {"amsgrad": True, "maximize": False, "decoupled_weight_decay": False},
        {"amsgrad": False, "maximize": True, "decoupled_weight_decay": True},
    ],
    "AdamW": [{"amsgrad": True, "maximize": True}],  # Adam's code, decoupled_weight_decay=True
    # RMSprop's momentum: 0 (no buffer) or > 0 (a buffer) is structure.
    "RMSprop": [
        {"momentum": 0.9, "centered": True, "maximize": False},
        {"momentum": 0, "centered": False, "maximize": True},
    ],
    "Adagrad": [{"maximize": False}, {"maximize": True}],
    "Adadelta": [{"maximize": True}, {"maximize": False}],
    "Adamax": [{"maximize": False}, {"maximize": True}],
    "NAdam": [
        {"decoupled_weight_decay": True, "maximize": False},
        {"decoupled_weight_decay": False, "maximize": True},
    ],
    "RAdam": [
        {"decoupled_weight_decay": False, "maximize": True},
        {"decoupled_weight_decay": True, "maximize": False},
    ],
}
# The second group's own options.
OVERRIDES: dict[str, dict[str, Any]] = {
    "Adam": {"lr": 0.05, "betas": (0.7, 0.95), "weight_decay": 0.05},
    "AdamW": {"lr": 0.05, "betas": (0.7, 0.95), "weight_decay": 0.05},
    "RMSprop": {"lr": 0.005, "alpha": 0.8, "weight_decay": 0.05},
    "Adagrad": {"lr": 0.05, "lr_decay": 0.1},
    "Adadelta": {"lr": 0.5, "rho": 0.8},
    "Adamax": {"lr": 0.05, "betas": (0.7, 0.95)},
    "NAdam": {"lr": 0.05, "betas": (0.7, 0.95), "momentum_decay": 0.01},
    "RAdam": {"lr": 0.05, "betas": (0.7, 0.95), "weight_decay": 0.05},
}
OPTIMIZERS = list(FLOATS)


def sample(name: str, n: int = N_CONFIGS) -> list[tuple[dict[str, Any], bool]]:
    """``n`` configurations ``(options, with None gradients)``; float options at random."""
    rnd = random.Random(f"{name}-grid")
    configs: list[tuple[dict[str, Any], bool]] = []
    while len(configs) < n:
        k = len(configs) % len(STATICS[name])
        config = {key: rnd.choice(v) for key, v in FLOATS[name].items()}
        config.update(STATICS[name][k])
        if all(config != c for c, _ in configs):
            configs.append((config, k == 0))
    return configs


GRID = [(name, config, none) for name in OPTIMIZERS for config, none in sample(name)]


def kwargs_for(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ours, theirs = dict(config), dict(config)
    if config.get("lr") == "tensor":
        ours["lr"], theirs["lr"] = jnp.asarray(0.01, jnp.float32), torch.tensor(0.01)
    return ours, theirs


def build(name: str, config: dict[str, Any], m: Any, t: Any) -> tuple[Any, Any]:
    ours, theirs = kwargs_for(config)
    opt = getattr(optim, name)(groups(m, OVERRIDES[name]), **ours)
    topt = getattr(torch.optim, name)(groups(t, OVERRIDES[name]), **theirs)
    return opt, topt


def _id(item: tuple[str, dict[str, Any], bool]) -> str:
    name, config, none = item
    shown = ",".join(f"{k}={v}" for k, v in config.items() if v not in (0, False))
    return f"{name}[{shown}{',None-grads' if none else ''}]"


@pytest.mark.parametrize(("name", "config", "none"), GRID, ids=[_id(g) for g in GRID])
def test_trajectory_matches_torch(name: str, config: dict[str, Any], none: bool) -> None:
    m, t = make_pair()
    opt, topt = build(name, config, m, t)
    frozen = {k: np.asarray(v) for k, v in m.state_dict().items() if k in FROZEN}
    m, opt = train(m, opt, t, topt, 1, seed=1, none=none)  # the first step: state creation
    assert_same(m, opt, t, topt, "step 0")
    m, opt = train(m, opt, t, topt, STEPS - 1, seed=2, none=none)
    assert_same(m, opt, t, topt, f"step {STEPS}")
    for k, v in frozen.items():  # a frozen parameter: untouched, bit for bit, and no state
        np.testing.assert_array_equal(np.asarray(m.state_dict()[k]), v)


@pytest.mark.parametrize("name", ["Adam", "RAdam"])
def test_eager_steps_match_torch(name: str) -> None:
    # Eager (no jit): the hyperparameters are Python numbers; the same update.
    config, _ = sample(name)[0]
    m, t = make_pair(3)
    opt, topt = build(name, config, m, t)
    m, opt = train(m, opt, t, topt, 4, seed=4, jit=False)
    assert_same(m, opt, t, topt)


def test_none_grad_creates_no_state_like_torch() -> None:
    m, t = make_pair()
    opt, topt = build("Adam", {}, m, t)
    rng = np.random.default_rng(5)
    g = random_grads(rng, 0, none=True)  # fc2.bias: None
    set_torch_grads(t, g)
    topt.step()
    m, opt = _jit_step(m, opt, grads_tree(m, g))
    assert list(opt.state_dict()["state"]) == list(topt.state_dict()["state"]) == [0, 1, 2]
    assert_same(m, opt, t, topt)


# ------------------------------------------------------------------------------- resume

# The static options of each grid's first combination (their step is compiled already).
RESUME = {name: {**STATICS[name][0], "lr": 0.05, "weight_decay": 0.1} for name in OPTIMIZERS}
RESUME["Adagrad"].update(lr_decay=0.01, initial_accumulator_value=0.1)


@pytest.mark.parametrize("name", list(RESUME))
def test_resume_from_torch_checkpoint(name: str) -> None:
    """torch trains 20 steps; its state_dict loads into a fresh fparam optimizer (built with
    other options: they come from the checkpoint); both go on 30 steps, in step."""
    _, t = make_pair()
    topt = build(name, RESUME[name], make_pair()[0], t)[1]
    train(None, None, t, topt, 20, seed=6)
    m, _ = make_pair()
    m = jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(as_numpy(t.state_dict()[path_name(p)])), m
    )
    # Other lrs (the checkpoint's win); the same static options and key order, so the step
    # compiled for the grid is reused.
    opt = getattr(optim, name)(
        groups(m, {**OVERRIDES[name], "lr": 123.0}), **{**RESUME[name], "lr": 7.0}
    )
    opt.load_state_dict(copy.deepcopy(topt.state_dict()))
    assert_same(m, opt, t, topt, "loaded")
    m, opt = train(m, opt, t, topt, 30, seed=7)
    assert_same(m, opt, t, topt, "resumed")


@pytest.mark.parametrize("name", ["Adam", "NAdam", "RMSprop"])
def test_torch_resumes_from_fparam_checkpoint(name: str) -> None:
    m, t = make_pair()
    opt, topt = build(name, RESUME[name], m, t)
    m, opt = train(m, opt, None, None, 20, seed=8)
    saved = opt.state_dict()
    for entry in saved["state"].values():
        for k, v in entry.items():
            entry[k] = torch.tensor(np.asarray(v))
    topt.load_state_dict(saved)
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    assert_same(m, opt, t, topt, "loaded")
    m, opt = train(m, opt, t, topt, 10, seed=9)
    assert_same(m, opt, t, topt, "resumed")


def test_exact_resume_from_own_checkpoint() -> None:
    m, _ = make_pair()
    opt = optim.NAdam(groups(m, {"lr": 0.01}), **RESUME["NAdam"])
    m, opt = train(m, opt, None, None, 5, seed=10)
    model_sd, opt_sd = m.state_dict(), opt.state_dict()
    m, opt = train(m, opt, None, None, 5, seed=11)
    # tree_map, not load_state_dict: committed arrays would compile the step again.
    resumed = jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(model_sd[path_name(p)]), TEMPLATE
    )
    ropt = optim.NAdam(groups(resumed, {}), **{**RESUME["NAdam"], "lr": 3.0})
    ropt.load_state_dict(opt_sd)
    resumed, ropt = train(resumed, ropt, None, None, 5, seed=11)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(np.asarray(resumed.state_dict()[k]), np.asarray(v))
    assert str(ropt.state_dict()) == str(opt.state_dict())


# ------------------------------------------------------------------------------- retrace

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextmanager
def counting_compiles(name: str) -> Iterator[list[int]]:
    count = [0]

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT and kwargs.get("fun_name") == f"jit({name})":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def run_loop(m: Any, opt: Any, calls: int, between: Callable[[int, Any], Any]) -> tuple[int, int]:
    traces = 0

    @jax.jit
    def train_step(m: Any, opt: Any, g: Any) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, g)

    rng = np.random.default_rng(12)
    m, opt = train_step(m, opt, grads_tree(m, random_grads(rng, 1)))
    with counting_compiles("train_step") as compiles:
        for i in range(1, calls):
            opt = between(i, opt)
            m, opt = train_step(m, opt, grads_tree(m, random_grads(rng, i)))
        jax.block_until_ready(m)
    return traces, compiles[0]


def test_new_lrs_betas_and_loads_never_recompile() -> None:
    m, t = make_pair()
    # Weight decay starts nonzero: from 0 to nonzero is torch's Python branch, structure.
    opt, topt = build("Adam", {"amsgrad": True, "weight_decay": 0.05}, m, t)
    train(None, None, t, topt, 2, seed=13, none=False)  # its parameters step together

    def between(i: int, opt: Any) -> Any:
        group = opt.param_groups[i % 2]
        if i == 1:
            group["lr"] = 0.05
        elif i == 2:
            group["lr"] = jnp.asarray(0.02, jnp.float32)
        elif i == 3:
            group["betas"] = (0.8, 0.99)
        elif i == 4:
            group["betas"] = (jnp.asarray(0.7), jnp.asarray(0.9))
        elif i == 5:
            opt.load_state_dict(opt.state_dict())
        elif i == 6:
            opt.load_state_dict(topt.state_dict())  # torch's state, torch's float lr
        elif i == 7:
            group["eps"], group["weight_decay"] = 1e-3, np.float32(0.1)
        return opt

    assert run_loop(m, opt, 9, between) == (1, 0)


def test_step_lr_schedule_on_adam_never_recompiles_and_matches_torch() -> None:
    m, t = make_pair()
    opt, topt = build("Adam", {"lr": 0.1}, m, t)
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    tscheduler = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    rng = np.random.default_rng(14)
    traces = 0

    @jax.jit
    def train_step(m: Any, opt: Any, g: Any) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, g)

    with counting_compiles("train_step") as compiles:
        for i in range(6):
            g = random_grads(rng, i)
            set_torch_grads(t, g)
            topt.step()
            tscheduler.step()
            m, opt = train_step(m, opt, grads_tree(m, g))
            opt = scheduler.step(opt)
    assert (traces, compiles[0]) == (1, 1)  # the first call's compile only
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [g["lr"] for g in topt.param_groups], rel=1e-6
    )
    assert_same(m, opt, t, topt, groups=False)  # torch's scheduler adds 'initial_lr'


def test_jit_grad_through_the_step() -> None:
    # The step is a pure function: differentiable (torch's differentiable=True) under jit.
    m, _ = make_pair()
    opt = optim.Adam(m.parameters(), lr=0.1, differentiable=True)
    g = grads_tree(m, random_grads(np.random.default_rng(15), 1))

    def loss(scale: Any) -> Any:
        grads = jax.tree.map(lambda x: scale * x, g)
        new, _ = opt.step(m, grads)
        return jnp.sum(new.fc1.weight)

    value, slope = jax.jit(jax.value_and_grad(loss))(jnp.asarray(2.0))
    # Adam's first step is -lr * sign(g) (up to eps): flat in the scale of the gradient.
    assert abs(float(slope)) < 1e-6
    expected = np.sum(np.asarray(m.fc1.weight) - 0.1 * np.sign(np.asarray(g.fc1.weight)))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


# ------------------------------------------------------------------------------- constructors

CONSTRUCTOR_ERRORS = [
    ("Adam", {"lr": -1.0}),
    ("Adam", {"eps": -1.0}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"weight_decay": -1.0}),
    ("Adam", {"betas": (0, 0.999)}),  # an int beta: torch wants both floats
    ("Adam", {"fused": True, "differentiable": True}),
    ("Adam", {"fused": True, "foreach": True}),
    ("AdamW", {"betas": (0.9, 1.0)}),
    ("RMSprop", {"alpha": -1.0}),
    ("RMSprop", {"momentum": -1.0}),
    ("RMSprop", {"eps": -1.0}),
    ("Adagrad", {"lr_decay": -1.0}),
    ("Adagrad", {"initial_accumulator_value": -1.0}),
    ("Adadelta", {"rho": 1.5}),
    ("Adadelta", {"lr": -1.0}),
    ("Adamax", {"betas": (0.9, 1.0)}),
    ("NAdam", {"momentum_decay": -1.0}),
    ("RAdam", {"betas": (-0.1, 0.9)}),
]


@pytest.mark.parametrize(("name", "kwargs"), CONSTRUCTOR_ERRORS, ids=str)
def test_constructor_errors_like_torch(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, RuntimeError)) as theirs:
        getattr(torch.optim, name)([torch.nn.Parameter(torch.ones(2))], **kwargs)
    with pytest.raises(theirs.type) as ours:
        getattr(optim, name)([nn.Parameter(jnp.ones((2,)))], **kwargs)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_defaults_and_groups_like_torch(name: str) -> None:
    q, tq = nn.Parameter(jnp.ones((2,))), torch.nn.Parameter(torch.ones(2))
    ours, theirs = getattr(optim, name)([q]), getattr(torch.optim, name)([tq])
    assert list(ours.defaults) == list(theirs.defaults)
    assert ours.defaults == theirs.defaults
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
    assert list(ours.state_dict()["state"]) == list(theirs.state_dict()["state"])
    # add_param_group fills in the defaults, in torch's key order.
    r, tr = nn.Parameter(jnp.ones((3,))), torch.nn.Parameter(torch.ones(3))
    ours.add_param_group({"params": [r], "lr": 0.5})
    theirs.add_param_group({"params": [tr], "lr": 0.5})
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
    assert list(ours.state_dict()["state"]) == list(theirs.state_dict()["state"])


def test_adagrad_state_exists_from_the_constructor() -> None:
    q, tq = nn.Parameter(jnp.ones((2,))), torch.nn.Parameter(torch.ones(2))
    ours = optim.Adagrad([q], initial_accumulator_value=0.25)
    theirs = torch.optim.Adagrad([tq], initial_accumulator_value=0.25)
    (entry,) = ours.state_dict()["state"].values()
    (tentry,) = theirs.state_dict()["state"].values()
    assert list(entry) == list(tentry) == ["step", "sum"]
    assert float(entry["step"]) == 0.0
    np.testing.assert_array_equal(np.asarray(entry["sum"]), tentry["sum"].numpy())


def test_bad_betas_and_state_are_named() -> None:
    q = nn.Parameter(jnp.ones((2,)))
    with pytest.raises(TypeError, match=r"betas must be a tuple of 2 real numbers.*got float 0.9"):
        optim.Adam([q], betas=0.9)
    opt = optim.Adam([q])
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['betas'\]\[1\] must be a real"):
        opt.param_groups[0]["betas"] = (0.9, "x")
        opt.state_dict()
        jax.tree.leaves(opt)
    opt = optim.Adam([q])
    sd = {
        "state": {0: {"step": 1.0, "exp_avg": np.zeros(2)}},
        "param_groups": opt.state_dict()["param_groups"],
    }
    with pytest.raises(ValueError, match=r"state\[0\] has no 'exp_avg_sq'; Adam keeps it"):
        opt.load_state_dict(sd)
    sd["state"][0]["momentum_buffer"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"state\[0\] has key 'momentum_buffer'; Adam keeps only"):
        opt.load_state_dict(sd)
    sd["state"] = {0: {"step": 1.0, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(2)}}
    with pytest.raises(ValueError, match=r"exp_avg for parameter 0 has shape \(3,\)"):
        opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == {}  # unchanged by the failed loads


def test_parameters_that_step_together_share_one_row_of_scalars() -> None:
    """Each group keeps one row of per-parameter scalars (step, ...) per class of parameters
    that have stepped together (trainable and frozen apart), so a jitted step compiles one
    update per parameter shape; a None gradient splits a class once (one more trace), after
    which the structure is stable, and every step still equals torch's."""
    m, t = make_pair()
    opt, topt = build("NAdam", {}, m, t)
    # fc1 (weight, bias): one class; fc2 (weight, bias) and the frozen head: two.
    assert [len(np.asarray(opt._rows[gi])) for gi in range(2)] == [1, 2]
    traces = 0

    @jax.jit
    def train_step(m: Any, opt: Any, g: Any) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, g)

    rng = np.random.default_rng(21)
    for i in range(7):
        g = random_grads(rng, i, none=i == 3)  # fc2.bias has no gradient at step 3 only
        set_torch_grads(t, g)
        topt.step()
        m, opt = train_step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
        # Step 3's None is another gradient structure (a trace of its own); the split it
        # makes is one more at step 4, and the last.
        assert traces == (1 if i < 3 else 2 if i == 3 else 3), i
    assert [len(np.asarray(opt._rows[gi])) for gi in range(2)] == [1, 3]
    # Loading the optimizer's own state keeps the structure; a fresh optimizer loading it
    # takes the same structure, so the same compiled step serves both.
    opt.load_state_dict(opt.state_dict())
    fresh, _ = build("NAdam", {}, m, t)
    fresh.load_state_dict(opt.state_dict())
    assert jax.tree.structure(fresh) == jax.tree.structure(opt)
    m, opt = train_step(m, opt, grads_tree(m, random_grads(rng, 7)))
    m, fresh = train_step(m, fresh, grads_tree(m, random_grads(rng, 8)))
    assert traces == 3


def test_branch_outcomes_follow_every_kind_of_value() -> None:
    """torch decides ``weight_decay != 0`` and lerp's ``|1 - beta1| < 0.5`` in Python; fparam
    makes the outcome structure for host values and JAX arrays set on the host, and selects
    at run time for values set inside the jitted step. Every route equals torch."""
    m, t = make_pair()
    opt, topt = build("AdamW", {"betas": (0.3, 0.99), "weight_decay": 0.0}, m, t)

    @jax.jit
    def step(m: Any, opt: Any, g: Any, beta1: Any) -> Any:
        if beta1 is not None:  # a schedule's value, set inside the trace
            for group in opt.param_groups:
                group["betas"] = (beta1, group["betas"][1])
        return opt.step(m, g)

    rng = np.random.default_rng(22)
    settings: dict[int, dict[str, Any]] = {
        2: {"weight_decay": 0.1, "betas": (0.9, 0.999)},
        4: {"weight_decay": jnp.asarray(0.0), "betas": (jnp.asarray(0.2), jnp.asarray(0.9))},
        6: {"weight_decay": 0.02},
    }
    for i in range(10):
        for key, value in settings.get(i, {}).items():
            for group, tgroup in zip(opt.param_groups, topt.param_groups):
                group[key] = value
                tgroup[key] = tuple(map(float, value)) if key == "betas" else float(value)
        beta1 = 0.7 if i >= 8 else None  # crosses lerp's 0.5 inside the step
        if beta1 is not None:
            for tgroup in topt.param_groups:
                tgroup["betas"] = (beta1, tgroup["betas"][1])
        g = random_grads(rng, i)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g), None if beta1 is None else jnp.float32(beta1))
        assert_same(m, opt, t, topt, f"step {i}", groups=False)
