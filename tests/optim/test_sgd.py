"""``optim.SGD`` against ``torch.optim.SGD`` itself: identical grads in, identical trajectories out.

Reference: §4 of ``shared/reference/torch-semantics.md``. Each parity test feeds the same random
gradients to torch (``p.grad = g; opt.step()``) and to fparam (``m, opt = opt.step(m, grads)``)
and compares every parameter and every momentum buffer after every step.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

# Measured on the 9 torch configs plus the 2^5 grid below, eager and jitted: after 12 steps the
# largest difference to torch is 4.8e-7 (params and momentum buffers, values of order 1); after
# 50 steps 2.9e-6. float32 rounding order (XLA vs ATen) is the only source; 2e-6 keeps ~4x room
# over the 12 steps the tests run, while any formula error is >= 1e-3.
RTOL = ATOL = 2e-6
STEPS = 10

SHAPES = {
    "scale": (4,),
    "a.weight": (3, 2),
    "a.bias": (3,),
    "b.weight": (2, 2),
    "b.bias": (2,),
}


# ------------------------------------------------------------------------------- models


class Leaf(nn.Module):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(jnp.zeros((rows, 2)))
        self.bias = nn.Parameter(jnp.zeros((rows,)))


class Net(nn.Module):
    """One parameter of its own and two children with two parameters each."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(jnp.zeros((4,)))
        self.a = Leaf(3)
        self.b = Leaf(2)


class TorchLeaf(torch.nn.Module):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(rows, 2))
        self.bias = torch.nn.Parameter(torch.zeros(rows))


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(4))
        self.a = TorchLeaf(3)
        self.b = TorchLeaf(2)


class One(nn.Module):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.p = nn.Parameter(jnp.asarray(value, jnp.float32))


# Most tests use copies of this one model: its parameters keep their uids through tree.map,
# so the module-level jitted step below compiles once per static configuration (nesterov,
# maximize, momentum buffers or not) and is then reused, with other hyperparameter values,
# by every test in the worker. That both keeps the suite fast and checks that a cached trace
# reads the hyperparameters from the optimizer it is given.
TEMPLATE = Net()


def make_pair(seed: int = 0, fresh: bool = False) -> tuple[Net, TorchNet]:
    """An fparam Net and a torch Net holding the same values (torch's copied into fparam).

    ``fresh`` builds a new Net (new parameter identities) instead of a copy of TEMPLATE.
    """
    rng = np.random.default_rng(seed)
    t = TorchNet()
    t.load_state_dict(
        {k: torch.tensor(rng.standard_normal(s).astype(np.float32)) for k, s in SHAPES.items()}
    )
    values = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
    # tree_map rather than load_state_dict: load_state_dict commits the arrays to the device,
    # and a first jitted call with committed params but uncommitted optimizer state compiles
    # twice (same trace, other input shardings). test_exact_resume covers load_state_dict.
    base = Net() if fresh else TEMPLATE
    m = jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(values[path_name(p)]), base)
    return m, t


def random_grads(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def path_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def grads_tree(model: nn.Module, grads: dict[str, Any]) -> Any:
    """A module-shaped gradient: ``grads[name]`` at each parameter, None where absent."""

    def leaf(path: tuple[Any, ...], _: Any) -> Any:
        g = grads.get(path_name(path))
        return None if g is None else jnp.asarray(g)

    return jax.tree_util.tree_map_with_path(leaf, model)


def set_torch_grads(model: torch.nn.Module, grads: dict[str, Any]) -> None:
    for name, p in model.named_parameters():
        g = grads.get(name)
        p.grad = None if g is None else torch.tensor(g)


# Copies (np.array): np.asarray of a JAX array may share its memory, and that memory must not
# be what a test uses to detect a change of the memory.
def params_of(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in model.state_dict().items()}


def torch_params_of(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def buffers_of(opt: optim.SGD) -> dict[int, np.ndarray]:
    return {i: np.array(s["momentum_buffer"]) for i, s in opt.state_dict()["state"].items()}


def torch_buffers_of(opt: torch.optim.SGD) -> dict[int, np.ndarray]:
    return {i: s["momentum_buffer"].numpy().copy() for i, s in opt.state_dict()["state"].items()}


def assert_same(m: Any, opt: optim.SGD, t: Any, topt: torch.optim.SGD, where: str = "") -> None:
    """Params and momentum buffers equal torch's (same set of initialised buffers)."""
    models = m if isinstance(m, tuple) else (m,)
    tmodels = t if isinstance(t, tuple) else (t,)
    for fm, tm in zip(models, tmodels):
        ours, theirs = params_of(fm), torch_params_of(tm)
        assert list(ours) == list(theirs)
        for k in ours:
            np.testing.assert_allclose(
                ours[k], theirs[k], rtol=RTOL, atol=ATOL, err_msg=f"{where} {k}"
            )
    ours_b, theirs_b = buffers_of(opt), torch_buffers_of(topt)
    assert sorted(ours_b) == sorted(theirs_b), where
    for i in ours_b:
        np.testing.assert_allclose(
            ours_b[i], theirs_b[i], rtol=RTOL, atol=ATOL, err_msg=f"{where} buffer {i}"
        )


def _step(m: Any, opt: optim.SGD, grads: Any) -> Any:
    return opt.step(m, grads)


_jit_step = jax.jit(_step)


def sgd_step(jit: bool) -> Callable[..., Any]:
    return _jit_step if jit else _step


# ------------------------------------------------------------------------------- trajectories

# torch.testing._internal.common_optimizers.optim_inputs_func_sgd (torch 2.13), verbatim;
# "tensor" stands for torch.tensor(0.001) / a JAX array.
TORCH_CONFIGS = [
    {},
    {"lr": 1e-2},
    {"lr": "tensor"},
    {"weight_decay": 0.5},
    {"momentum": 0.9},
    {"weight_decay": 0.1, "maximize": True},
    {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "weight_decay": 0.1},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
]

GRID = [
    {
        "lr": 0.1,
        "momentum": 0.9 if mom else 0,
        "dampening": 0.5 if damp else 0,
        "weight_decay": 0.1 if wd else 0,
        "nesterov": bool(nes),
        "maximize": bool(mx),
    }
    for mom, damp, wd, nes, mx in itertools.product([0, 1], repeat=5)
]
GRID_VALID = [c for c in GRID if not (c["nesterov"] and (c["momentum"] <= 0 or c["dampening"]))]
GRID_INVALID = [c for c in GRID if c not in GRID_VALID]


def _kwargs(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    theirs, ours = dict(config), dict(config)
    if config.get("lr") == "tensor":
        theirs["lr"], ours["lr"] = torch.tensor(0.001), jnp.asarray(0.001)
    return ours, theirs


def _config_id(config: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items() if v not in (0, False)) or "default"


def run_parity(config: dict[str, Any], jit: bool, steps: int = STEPS) -> None:
    ours, theirs = _kwargs(config)
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), **ours)
    topt = torch.optim.SGD(t.parameters(), **theirs)
    step = sgd_step(jit)
    rng = np.random.default_rng(1)
    for i in range(steps):
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("config", TORCH_CONFIGS + GRID_VALID, ids=_config_id)
def test_trajectory_matches_torch(config: dict[str, Any], jit: bool) -> None:
    run_parity(config, jit)


@pytest.mark.parametrize("config", GRID_INVALID, ids=_config_id)
def test_grid_rejected_like_torch(config: dict[str, Any]) -> None:
    m, t = make_pair()
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD(t.parameters(), **config)
    with pytest.raises(ValueError) as ours:
        optim.SGD(m.parameters(), **config)
    assert str(ours.value) == str(theirs.value)


P0 = [1.0, -2.0]
GOLDEN_GRADS = [[0.5, 1.0], [-1.0, 0.25], [0.0, 2.0]]
# §4.3 (checked against torch 2.13): kwargs -> params after each of the three steps.
GOLDENS = [
    ({"lr": 0.1}, [[0.95, -2.1], [1.05, -2.125], [1.05, -2.325]], None),
    (
        {"lr": 0.1, "momentum": 0.9},
        [[0.95, -2.1], [1.005, -2.215], [1.0545, -2.5185]],
        [-0.495, 3.035],
    ),
    (
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.5},
        [[0.95, -2.1], [0.955, -2.2025], [0.9595, -2.39475]],
        [-0.045, 1.9225],
    ),
    (
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        [[0.905, -2.19], [1.0545, -2.3185], [1.09905, -2.79165]],
        None,
    ),
    (
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True},
        [[0.886, -2.152], [1.010566, -2.223412], [1.0214486, -2.6223061]],
        None,
    ),
    (
        {"lr": 0.1, "maximize": True, "weight_decay": 0.1},
        [[1.04, -1.88], [0.9296, -1.8362], [0.9203039, -1.617838]],
        None,
    ),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("kwargs", "expected", "buffer"), GOLDENS, ids=[_config_id(g[0]) for g in GOLDENS]
)
def test_goldens(kwargs: dict[str, Any], expected: list[Any], buffer: Any, jit: bool) -> None:
    m = One(P0)
    opt = optim.SGD(m.parameters(), **kwargs)
    step = sgd_step(jit)
    for g, want in zip(GOLDEN_GRADS, expected):
        m, opt = step(m, opt, jax.tree.map(lambda _, g=g: jnp.asarray(g, jnp.float32), m))
        # The goldens are printed to 7 significant digits.
        np.testing.assert_allclose(np.asarray(m.p), want, rtol=1e-6, atol=1e-6)
    if buffer is not None:
        np.testing.assert_allclose(buffers_of(opt)[0], buffer, rtol=1e-6, atol=1e-6)


def test_zero_grad_still_applies_weight_decay() -> None:
    m = One([1.0])
    opt = optim.SGD(m.parameters(), lr=0.1, weight_decay=0.5)
    m, opt = opt.step(m, One([0.0]))
    np.testing.assert_allclose(np.asarray(m.p), [0.95], rtol=1e-7)


# ------------------------------------------------------------------------------- groups


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_param_groups_with_overrides(jit: bool) -> None:
    m, t = make_pair()
    opt = optim.SGD(
        [
            {"params": m.a.parameters()},
            {"params": m.b.parameters(), "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1},
        ],
        lr=0.1,
        momentum=0.9,
    )
    topt = torch.optim.SGD(
        [
            {"params": t.a.parameters()},
            {"params": t.b.parameters(), "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1},
        ],
        lr=0.1,
        momentum=0.9,
    )
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0, 0.1]
    scale = np.asarray(m.scale)
    step = sgd_step(jit)
    rng = np.random.default_rng(2)
    for i in range(STEPS):
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
    # `scale` is not in the optimizer: untouched, bit for bit, although it had a gradient.
    np.testing.assert_array_equal(np.asarray(m.scale), scale)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_named_parameters_input(jit: bool) -> None:
    m, t = make_pair()
    opt = optim.SGD(m.named_parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.named_parameters(), lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["param_names"] == list(SHAPES)
    # The group's keys are in torch's order, before and after a (jitted) step.
    assert list(opt.param_groups[0]) == list(topt.param_groups[0])
    step = sgd_step(jit)
    rng = np.random.default_rng(3)
    for i in range(3):
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
    assert list(opt.param_groups[0]) == list(topt.param_groups[0])
    ours, theirs = opt.state_dict()["param_groups"], topt.state_dict()["param_groups"]
    assert ours == theirs
    assert [list(g) for g in ours] == [list(g) for g in theirs]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_frozen_parameters_never_touched(jit: bool) -> None:
    m, t = make_pair()
    m.a.requires_grad_(False)
    t.a.requires_grad_(False)
    # Frozen parameters are in the optimizer (torch allows it) and weight decay is on.
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    frozen = {k: v for k, v in params_of(m).items() if k.startswith("a.")}
    coef = {k: float(i + 1) for i, k in enumerate(SHAPES)}

    def loss(model: Net) -> Any:
        return sum(
            jnp.sum(coef[path_name(p)] * x**2)
            for p, x in jax.tree_util.tree_flatten_with_path(model)[0]
        )

    def torch_loss(model: TorchNet) -> Any:
        return sum(torch.sum(coef[n] * p**2) for n, p in model.named_parameters())

    grad_fn = jax.jit(fparam.grad(loss))  # None for the frozen leaves, through jit too

    def step(m: Net, opt: optim.SGD) -> Any:
        return opt.step(m, grad_fn(m))

    step = jax.jit(step) if jit else step
    for i in range(4):
        topt.zero_grad()
        torch_loss(t).backward()
        topt.step()
        m, opt = step(m, opt)
        assert_same(m, opt, t, topt, f"step {i}")
    for k, v in frozen.items():
        np.testing.assert_array_equal(params_of(m)[k], v)
    # Even a dense gradient (jax.grad differentiates frozen leaves too) leaves them alone.
    m, opt = opt.step(m, jax.grad(loss)(m))
    for k, v in frozen.items():
        np.testing.assert_array_equal(params_of(m)[k], v)
    assert sorted(buffers_of(opt)) == [0, 3, 4]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_none_grads_skip_like_torch(jit: bool) -> None:
    """A None grad: no update, no weight decay, no buffer; its first real grad starts the buffer."""
    m, t = make_pair()
    kwargs = {"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.1}
    opt = optim.SGD(m.parameters(), **kwargs)
    topt = torch.optim.SGD(t.parameters(), **kwargs)
    step = sgd_step(jit)
    rng = np.random.default_rng(4)
    before = params_of(m)["a.bias"]
    for i in range(6):
        g: dict[str, Any] = dict(random_grads(rng))
        if i < 3:
            g["a.bias"] = None
        if i % 2:
            g["b.weight"] = None
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
        if i < 3:
            np.testing.assert_array_equal(params_of(m)["a.bias"], before)
            assert 2 not in buffers_of(opt)
    assert sorted(buffers_of(opt)) == [0, 1, 2, 3, 4]


def test_step_over_a_tuple_of_models() -> None:
    m1, t1 = make_pair(0)
    m2, t2 = make_pair(5, fresh=True)
    opt = optim.SGD([*m1.parameters(), *m2.b.parameters()], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([*t1.parameters(), *t2.b.parameters()], lr=0.1, momentum=0.9)
    untouched = params_of(m2)
    rng = np.random.default_rng(6)
    step = jax.jit(lambda ms, o, gs: o.step(ms, gs))
    for i in range(3):
        g1, g2 = random_grads(rng), random_grads(rng)
        set_torch_grads(t1, g1)
        set_torch_grads(t2, g2)
        topt.step()
        (m1, m2), opt = step((m1, m2), opt, (grads_tree(m1, g1), grads_tree(m2, g2)))
        assert_same((m1, m2), opt, (t1, t2), topt, f"step {i}")
    for k in ("scale", "a.weight", "a.bias"):
        np.testing.assert_array_equal(params_of(m2)[k], untouched[k])


def test_model_missing_the_optimizers_parameters() -> None:
    m1, _ = make_pair()
    m2, _ = make_pair(fresh=True)
    opt = optim.SGD([*m1.parameters(), *m2.parameters()], lr=0.1)
    g = random_grads(np.random.default_rng(0))
    with pytest.raises(
        ValueError, match=r"5 of this optimizer's 10 parameters are not in the model"
    ):
        opt.step(m1, grads_tree(m1, g))
    # An optimizer knows its parameters by state_dict key, shape and dtype: a model of another
    # architecture is refused, naming the keys it lacks ...
    other = Leaf(3)
    opt = optim.SGD(m1.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"5 of .* not in the model .*'scale', 'a.weight'"):
        opt.step(other, jax.tree.map(jnp.zeros_like, other))
    wider = Net()
    wider.b = Leaf(5)  # same keys, other shapes
    with pytest.raises(ValueError, match=r"2 of .* \('b.weight', 'b.bias'\)"):
        opt.step(wider, jax.tree.map(jnp.zeros_like, wider))
    # ... and a freshly built model of the same architecture is stepped like the original (one
    # compiled program serves every model of an architecture; see fparam/optim/optimizer.py).
    fresh = Net()
    stepped, _ = opt.step(fresh, grads_tree(fresh, g))
    np.testing.assert_allclose(stepped.scale, -0.1 * g["scale"], rtol=1e-6)


def test_wrong_grads_structure() -> None:
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1)
    g = random_grads(np.random.default_rng(0))
    with pytest.raises(ValueError, match="grads do not have the structure of the model"):
        opt.step(m, {k: jnp.asarray(v) for k, v in g.items()})
    with pytest.raises(ValueError, match="grads do not have the structure of the model"):
        opt.step(m, [jnp.asarray(v) for v in g.values()])
    with pytest.raises(ValueError, match=r"grads do not have the structure of the model at 'a'"):
        wrong = grads_tree(m, g)
        wrong.__dict__["a"] = One([1.0])
        opt.step(m, wrong)
    with pytest.raises(ValueError, match="grads do not have the structure of the model"):
        opt.step((m, m), grads_tree(m, g))


# ------------------------------------------------------------------------------- constructor


def _param() -> tuple[nn.Parameter, torch.nn.Parameter]:
    return nn.Parameter(jnp.ones((2,))), torch.nn.Parameter(torch.ones(2))


# (name, builder) with builder(P, SGD, param) -> a call that raises; P is one parameter factory.
ERRORS: list[tuple[str, type[Exception], Callable[[Any, Any, Any], Any]]] = [
    ("tensor lr not 1-element", ValueError, lambda p, sgd, arr: sgd([p()], lr=arr([0.1, 0.2]))),
    ("negative lr", ValueError, lambda p, sgd, arr: sgd([p()], lr=-1)),
    ("negative momentum", ValueError, lambda p, sgd, arr: sgd([p()], lr=1e-2, momentum=-0.5)),
    ("negative weight_decay", ValueError, lambda p, sgd, arr: sgd([p()], weight_decay=-1)),
    ("nesterov no momentum", ValueError, lambda p, sgd, arr: sgd([p()], nesterov=True)),
    (
        "nesterov dampening",
        ValueError,
        lambda p, sgd, arr: sgd([p()], momentum=0.9, dampening=0.1, nesterov=True),
    ),
    ("empty list", ValueError, lambda p, sgd, arr: sgd([])),
    ("empty generator", ValueError, lambda p, sgd, arr: sgd(x for x in [])),
    ("single parameter", TypeError, lambda p, sgd, arr: sgd(p())),
    ("set in group", TypeError, lambda p, sgd, arr: sgd([{"params": {p()}}])),
    ("non-dict group", TypeError, lambda p, sgd, arr: sgd([{"params": [p()]}, [p()]])),
    (
        "param in two groups",
        ValueError,
        lambda p, sgd, arr: (lambda q: sgd([{"params": [q]}, {"params": [q]}]))(p()),
    ),
    (
        "mixed named and unnamed",
        ValueError,
        lambda p, sgd, arr: sgd([("w", p()), p()]),
    ),
    ("a float", TypeError, lambda p, sgd, arr: sgd([1.5])),
]

# Messages fparam words differently on purpose: torch's names its own types.
SAME_PREFIX = {
    "single parameter": "params argument given to the optimizer should be an iterable of",
    "a float": "optimizer can only optimize",
}


@pytest.mark.parametrize(("name", "error", "call"), ERRORS, ids=[e[0] for e in ERRORS])
def test_constructor_errors_like_torch(
    name: str, error: type[Exception], call: Callable[..., Any]
) -> None:
    with pytest.raises(error) as theirs:
        call(lambda: _param()[1], torch.optim.SGD, torch.tensor)
    with pytest.raises(error) as ours:
        call(lambda: _param()[0], optim.SGD, jnp.asarray)
    if name in SAME_PREFIX:
        assert str(theirs.value).startswith(SAME_PREFIX[name])
        assert str(ours.value).startswith(SAME_PREFIX[name])
    else:
        assert str(ours.value) == str(theirs.value)


def test_plain_array_is_not_a_parameter() -> None:
    with pytest.raises(TypeError, match=r"optimizer can only optimize Parameters, .* jax\.Array"):
        optim.SGD([jnp.ones((2,))], lr=0.1)
    m, _ = make_pair()
    with pytest.raises(TypeError, match=re.escape("pass model.parameters()")):
        optim.SGD([m.scale], lr=0.1)


def test_duplicate_parameter_in_a_group_warns_like_torch() -> None:
    q, tq = _param()
    with pytest.warns(UserWarning) as theirs:
        torch.optim.SGD([tq, tq], lr=0.1)
    with pytest.warns(UserWarning) as ours:
        optim.SGD([q, q], lr=0.1)
    want = [str(w.message) for w in theirs if "duplicate" in str(w.message)]
    assert want and [str(w.message) for w in ours] == want


def test_accepted_like_torch() -> None:
    q, tq = _param()
    for kwargs in ({"lr": 0}, {"dampening": -1}, {"momentum": 0.9, "dampening": 0.5}):
        torch.optim.SGD([tq], **kwargs)
        optim.SGD([q], **kwargs)
    # A top-level set is turned into a list; a generator works.
    optim.SGD({q}, lr=0.1)
    optim.SGD(p for p in [q])
    # The nesterov check applies to the defaults only, never to a group.
    torch.optim.SGD([{"params": [tq], "nesterov": True}])
    opt = optim.SGD([{"params": [q], "nesterov": True}])
    assert opt.param_groups[0]["nesterov"] is True
    assert opt.param_groups[0]["lr"] == 1e-3


def test_defaults_order_like_torch() -> None:
    q, tq = _param()
    assert list(optim.SGD([q]).defaults) == list(torch.optim.SGD([tq]).defaults)
    assert optim.SGD([q]).defaults == torch.optim.SGD([tq]).defaults


# ------------------------------------------------------------------------------- jit, pytree


def test_no_retrace_when_hyperparameters_change() -> None:
    m, t = make_pair()
    # dampening and weight_decay are left at their defaults, the ints 0.
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)
    traces = 0

    @jax.jit
    def step(m: Net, opt: optim.SGD, grads: Net) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, grads)

    rng = np.random.default_rng(7)
    for i in range(20):
        if i == 5:
            for group in (opt.param_groups[0], topt.param_groups[0]):
                group["lr"] = 0.03
        if i == 9:
            for group in (opt.param_groups[0], topt.param_groups[0]):
                group["momentum"] = 0.5
        if i == 13:  # from 0: torch's `if weight_decay != 0` branch, structure (one trace)
            for group in (opt.param_groups[0], topt.param_groups[0]):
                group["dampening"] = 0.25
                group["weight_decay"] = 0.1
        if i == 16:  # nonzero to nonzero: values only
            for group in (opt.param_groups[0], topt.param_groups[0]):
                group["dampening"] = 0.5
                group["weight_decay"] = 0.2
                group["momentum"] = 0.7
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
        assert traces == (1 if i < 13 else 2), i


def test_optimizers_that_differ_in_hyperparameters_share_a_trace() -> None:
    m, _ = make_pair()
    traces = 0

    @jax.jit
    def step(m: Net, opt: optim.SGD, grads: Net) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, grads)

    g = grads_tree(m, random_grads(np.random.default_rng(0)))
    results = []
    # Weight decay zero or not is torch's Python branch, so structure (test above); any other
    # difference in values is not.
    for lr, momentum, wd in [(0.1, 0.9, 0.5), (0.01, 0.5, 0.1), (1, 0.99, 1e-4)]:
        opt = optim.SGD(m.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        results.append(step(m, opt, g)[0])
        np.testing.assert_allclose(
            params_of(results[-1])["scale"],
            params_of(opt.step(m, g)[0])["scale"],
            rtol=RTOL,
            atol=ATOL,
        )
    assert traces == 1


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_bfloat16_parameters_stay_bfloat16(jit: bool, tensor_lr: bool) -> None:
    m, t = make_pair()
    m = jax.tree.map(lambda x: x.astype(jnp.bfloat16), m)
    t = t.to(torch.bfloat16)
    kwargs = {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1}
    # jnp.asarray(0.1, jnp.float32) is a strong float32 (jnp.asarray(0.1) would be weak).
    lr = jnp.asarray(0.1, jnp.float32) if tensor_lr else 0.1
    opt = optim.SGD(m.parameters(), lr=lr, **kwargs)
    topt = torch.optim.SGD(t.parameters(), lr=torch.tensor(0.1) if tensor_lr else 0.1, **kwargs)
    step = sgd_step(jit)
    rng = np.random.default_rng(20)
    for _ in range(3):
        g = random_grads(rng)
        for name, p in t.named_parameters():
            p.grad = torch.tensor(g[name]).to(torch.bfloat16)
        topt.step()
        grads = jax.tree.map(lambda x: x.astype(jnp.bfloat16), grads_tree(m, g))
        m, opt = step(m, opt, grads)
    for name, value in m.state_dict().items():
        assert value.dtype == jnp.bfloat16, name
        theirs = t.state_dict()[name].float().numpy()
        # Measured 5.6e-3 relative (1.4 bfloat16 ulps; torch rounds after each op, XLA fuses).

        np.testing.assert_allclose(np.asarray(value, np.float32), theirs, rtol=1e-2, atol=1e-2)
    for buf in opt.state_dict()["state"].values():
        assert buf["momentum_buffer"].dtype == jnp.bfloat16


def test_changing_lr_changes_the_update() -> None:
    m = One([1.0])
    opt = optim.SGD(m.parameters(), lr=0.1)
    step = jax.jit(lambda m, o, g: o.step(m, g))
    m, opt = step(m, opt, One([1.0]))
    np.testing.assert_allclose(np.asarray(m.p), [0.9], rtol=1e-6)
    opt.param_groups[0]["lr"] = 0.5
    m, opt = step(m, opt, One([1.0]))
    np.testing.assert_allclose(np.asarray(m.p), [0.4], rtol=1e-6)


def test_step_inside_scan() -> None:
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9, dampening=0.5)
    rng = np.random.default_rng(8)
    batches = [grads_tree(m, random_grads(rng)) for _ in range(5)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)

    @jax.jit
    def train(m: Net, opt: optim.SGD, gs: Net) -> Any:
        def body(carry: Any, g: Net) -> Any:
            m, opt = carry
            return opt.step(m, g), None

        return jax.lax.scan(body, (m, opt), gs)[0]

    m_scan, opt_scan = train(m, opt, stacked)
    for g in batches:
        m, opt = opt.step(m, g)
    for k, v in params_of(m).items():
        np.testing.assert_allclose(params_of(m_scan)[k], v, rtol=RTOL, atol=ATOL)
    for k, v in buffers_of(opt).items():
        np.testing.assert_allclose(buffers_of(opt_scan)[k], v, rtol=RTOL, atol=ATOL)


def test_optimizer_is_a_pytree() -> None:
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    g = grads_tree(m, random_grads(np.random.default_rng(0)))
    m, opt = opt.step(m, g)
    leaves = jax.tree.leaves(opt)
    # One vector packs the hyperparameters (defaults', then the group's) and the
    # "buffer initialised" flags; then one leaf per momentum buffer. Every leaf is an input
    # and an output of a jitted step, so there are as few as possible.
    buffers = buffers_of(opt)
    assert len(leaves) == 1 + len(buffers)
    packed = np.asarray(leaves[0])
    assert packed.dtype == np.float32 and packed.ndim == 1
    # lr, momentum, dampening, weight_decay for the defaults and the group; how each reads
    # back (0: a Python number); what float32 lost of each (a jitted step's 1 - beta is
    # torch's with it); one "initialised" flag for the group's 5 parameters, which agree.
    lost = [float(np.float64(v) - np.float32(v)) for v in (0.1, 0.9, 0, 0)]
    np.testing.assert_array_equal(
        packed, np.float32([0.1, 0.9, 0, 0] * 2 + [0] * 8 + lost * 2 + [1])
    )
    for leaf, buf in zip(leaves[1:], buffers.values()):
        np.testing.assert_array_equal(np.asarray(leaf), buf)
    # A tree.map keeps everything: groups, options and the state.
    same = jax.tree.map(lambda x: x, opt)
    assert type(same) is optim.SGD
    assert same.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for k, v in buffers_of(opt).items():
        np.testing.assert_array_equal(buffers_of(same)[k], v)
    # Doubling every leaf doubles the lr: it is a leaf, not static.
    doubled = jax.tree.map(lambda x: x * 2 if x.dtype != bool else x, opt)
    assert float(doubled.param_groups[0]["lr"]) == pytest.approx(0.2)


def test_returned_optimizer_reads_and_writes_like_a_built_one() -> None:
    # A jitted step returns an optimizer whose fields are built on first access.
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)
    m, opt = _train(m, opt, t, topt, 1, seed=3)
    step = sgd_step(True)
    rng = np.random.default_rng(4)
    m, opt = step(m, opt, grads_tree(m, random_grads(rng)))
    assert not hasattr(opt, "no_such_attribute")
    with pytest.raises(AttributeError, match="no_such_attribute"):
        opt.no_such_attribute  # noqa: B018
    # Replacing the group list of a returned optimizer is seen by the next step.
    m, opt = step(m, opt, grads_tree(m, random_grads(rng)))
    opt.param_groups = [dict(opt.param_groups[0], lr=0.0)]
    before = params_of(m)
    m, opt = step(m, opt, grads_tree(m, random_grads(rng)))
    for k, v in params_of(m).items():
        np.testing.assert_array_equal(v, before[k])


def test_setting_one_groups_lr_keeps_the_others() -> None:
    # Group 0 of the returned optimizer is never read: its values stay packed while group 1's
    # new lr is written in.
    m, opt, t, topt = _two_group_pair()
    step = sgd_step(True)
    rng = np.random.default_rng(22)
    for i in range(4):
        if i >= 2:
            opt.param_groups[1]["lr"] = topt.param_groups[1]["lr"] = 0.05 * i
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
    assert_same(m, opt, t, topt)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.15]


def test_structure_of_an_abstract_step() -> None:
    # jax.eval_shape returns an optimizer of shapes: its structure can be read, no values.
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    g = grads_tree(m, random_grads(np.random.default_rng(0)))
    _, shapes = jax.eval_shape(lambda m, o, g: o.step(m, g), m, opt, g)
    assert len(shapes.param_groups) == 1 and shapes.param_groups[0]["nesterov"] is True
    assert [p.uid for p in shapes.param_groups[0]["params"]] == [
        p.uid for p in opt.param_groups[0]["params"]
    ]


def test_lr_becomes_an_array_and_back() -> None:
    # A JAX array lr reads back as an array of its dtype (torch keeps a tensor lr a tensor);
    # how a value reads back travels in the packed leaf, so no change of kind retraces
    # (issue 15: the README promises that a new lr never recompiles).
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)
    traces = 0

    @jax.jit
    def step(m: Net, opt: optim.SGD, grads: Net) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, grads)

    rng = np.random.default_rng(21)
    lrs = [
        0.1,
        jnp.asarray(0.05, jnp.float32),
        jnp.asarray(0.02, jnp.float32),
        0.01,
        jnp.asarray(0.25, jnp.bfloat16),
        0.03,
    ]
    for i, lr in enumerate(lrs):
        opt.param_groups[0]["lr"] = lr
        topt.param_groups[0]["lr"] = float(lr)
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
        read = opt.param_groups[0]["lr"]
        assert isinstance(read, jax.Array) == isinstance(lr, jax.Array), i
        if isinstance(lr, jax.Array):
            assert read.dtype == lr.dtype and read.shape == (), i
        assert float(read) == pytest.approx(float(lr))
    assert traces == 1


def test_deepcopy_steps_the_same_model_independently() -> None:
    m, opt, t, topt = _two_group_pair()
    m, opt = _train(m, opt, t, topt, 2, seed=5, skip="a.bias")
    step = sgd_step(True)
    m, opt = step(m, opt, grads_tree(m, random_grads(np.random.default_rng(6))))
    twin = copy.deepcopy(opt)
    twin.param_groups[1]["lr"] = 0.5
    assert opt.param_groups[1]["lr"] == 0.01
    twin = copy.deepcopy(opt)
    g = grads_tree(m, random_grads(np.random.default_rng(7)))
    m1, opt1 = step(m, opt, g)
    m2, opt2 = step(m, twin, g)
    for k, v in params_of(m1).items():
        np.testing.assert_array_equal(params_of(m2)[k], v)
    for k, v in buffers_of(opt1).items():
        np.testing.assert_array_equal(buffers_of(opt2)[k], v)


def test_pickled_optimizer_continues_identically() -> None:
    m, opt, t, topt = _two_group_pair()
    step = sgd_step(True)
    rng = np.random.default_rng(23)
    for _ in range(2):  # the second returns an optimizer nobody has read yet
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
    restored = pickle.loads(pickle.dumps(opt))
    g = random_grads(rng)
    set_torch_grads(t, g)
    topt.step()
    m1, opt1 = step(m, opt, grads_tree(m, g))
    m2, opt2 = step(m, restored, grads_tree(m, g))
    assert_same(m2, opt2, t, topt)
    for k, v in params_of(m1).items():
        np.testing.assert_array_equal(params_of(m2)[k], v)
    for k, v in buffers_of(opt1).items():
        np.testing.assert_array_equal(buffers_of(opt2)[k], v)


def test_mutating_a_returned_optimizer_does_not_change_the_input() -> None:
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    g = grads_tree(m, random_grads(np.random.default_rng(0)))
    _, new = opt.step(m, g)
    new.param_groups[0]["lr"] = 0.5
    assert opt.param_groups[0]["lr"] == 0.1
    assert opt.state_dict()["state"] == {}


# ------------------------------------------------------------------------------- state dict


def _two_group_pair(momentum: float = 0.9) -> tuple[Net, optim.SGD, TorchNet, torch.optim.SGD]:
    m, t = make_pair()
    opt = optim.SGD(
        [
            {"params": [m.get_parameter("scale"), *m.a.parameters()]},
            {"params": m.b.parameters(), "lr": 0.01},
        ],
        lr=0.1,
        momentum=momentum,
    )
    topt = torch.optim.SGD(
        [{"params": [t.scale, *t.a.parameters()]}, {"params": t.b.parameters(), "lr": 0.01}],
        lr=0.1,
        momentum=momentum,
    )
    return m, opt, t, topt


def _train(m: Any, opt: Any, t: Any, topt: Any, steps: int, seed: int, skip: str = "") -> Any:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        g: dict[str, Any] = dict(random_grads(rng))
        if skip:
            g[skip] = None
        if t is not None:
            set_torch_grads(t, g)
            topt.step()
        if m is not None:
            m, opt = opt.step(m, grads_tree(m, g))
    return m, opt


def test_state_dict_layout_equals_torch() -> None:
    m, opt, t, topt = _two_group_pair()
    # Before any step: no state (torch creates buffers lazily).
    assert opt.state_dict()["state"] == {} == topt.state_dict()["state"]
    m, opt = _train(m, opt, t, topt, 2, seed=9, skip="a.bias")
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert list(ours) == list(theirs) == ["state", "param_groups"]
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1, 3, 4]
    assert ours["param_groups"] == theirs["param_groups"]
    assert [list(g) for g in ours["param_groups"]] == [list(g) for g in theirs["param_groups"]]
    assert [g["params"] for g in ours["param_groups"]] == [[0, 1, 2], [3, 4]]
    for i in ours["state"]:
        assert list(ours["state"][i]) == ["momentum_buffer"]
    assert_same(m, opt, t, topt)


def test_state_dict_without_momentum_is_empty() -> None:
    m, opt, t, topt = _two_group_pair(momentum=0)
    m, opt = _train(m, opt, t, topt, 2, seed=9)
    assert opt.state_dict()["state"] == {} == topt.state_dict()["state"]
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


@pytest.mark.parametrize("source", ["fparam", "torch", "torch-as-numpy"])
def test_load_state_dict(source: str) -> None:
    """Load a saved state into a fresh optimizer built with other options, then continue."""
    m, opt, t, topt = _two_group_pair()
    m, opt = _train(m, opt, t, topt, 3, seed=10, skip="b.bias")
    if source == "fparam":
        saved = opt.state_dict()
    else:
        saved = copy.deepcopy(topt.state_dict())
        if source == "torch-as-numpy":
            for entry in saved["state"].values():
                entry["momentum_buffer"] = entry["momentum_buffer"].numpy()
    fresh = Net()
    fresh.load_state_dict(params_of(m))
    new = optim.SGD(
        [
            {"params": [fresh.get_parameter("scale"), *fresh.a.parameters()]},
            {"params": fresh.b.parameters()},
        ],
        lr=0.5,
        momentum=0.0,
    )
    new.load_state_dict(saved)
    # Hyperparameters come from the saved dict, as in torch.
    assert [g["lr"] for g in new.param_groups] == [0.1, 0.01]
    assert [g["momentum"] for g in new.param_groups] == [0.9, 0.9]
    assert new.state_dict()["param_groups"] == topt.state_dict()["param_groups"]
    assert sorted(buffers_of(new)) == [0, 1, 2, 3]
    # Continuing uses the loaded buffers (no reset) and the first-step rule for b.bias.
    fresh, new = _train(fresh, new, t, topt, 3, seed=11)
    assert_same(fresh, new, t, topt)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_load_torch_state_dict_with_tensor_lr(jit: bool) -> None:
    m, t = make_pair()
    topt = torch.optim.SGD(t.parameters(), lr=torch.tensor(0.01), momentum=0.9)
    opt = optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    _train(None, None, t, topt, 2, seed=18)
    opt.load_state_dict(topt.state_dict())
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, jax.Array) and lr.shape == () and float(lr) == pytest.approx(0.01)
    m = jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(torch_params_of(t)[path_name(p)]), m
    )
    rng = np.random.default_rng(19)
    step = sgd_step(jit)
    for i in range(3):
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
    # A tensor lr stays a 0-d array of its dtype through the packed leaf, as torch's stays a
    # tensor.
    lr = opt.param_groups[0]["lr"]
    assert (
        isinstance(lr, jax.Array) and lr.dtype == jnp.float32 and float(lr) == pytest.approx(0.01)
    )


def test_load_from_torch_does_not_alias_torch_memory() -> None:
    _, opt, t, topt = _two_group_pair()
    _train(None, None, t, topt, 2, seed=12)
    opt.load_state_dict(topt.state_dict())
    before = buffers_of(opt)
    _train(None, None, t, topt, 2, seed=13)  # torch updates its buffers in place
    for k, v in buffers_of(opt).items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_exact_resume(jit: bool) -> None:
    def build(model: Net) -> optim.SGD:
        return optim.SGD(
            [
                {"params": model.a.parameters()},
                {"params": [model.get_parameter("scale"), *model.b.parameters()], "lr": 0.05},
            ],
            lr=0.1,
            momentum=0.9,
            dampening=0.25,
            weight_decay=0.01,
            nesterov=False,
        )

    step = sgd_step(jit)
    rng = np.random.default_rng(14)
    grads = [random_grads(rng) for _ in range(7)]
    m, _ = make_pair()
    opt = build(m)
    for g in grads[:4]:
        m, opt = step(m, opt, grads_tree(m, g))
    model_sd, opt_sd = m.state_dict(), opt.state_dict()
    for g in grads[4:]:
        m, opt = step(m, opt, grads_tree(m, g))

    resumed = Net()
    resumed.load_state_dict(model_sd)
    ropt = build(resumed)
    ropt.param_groups[0]["lr"] = 123.0  # overwritten by the load
    ropt.load_state_dict(opt_sd)
    for g in grads[4:]:
        resumed, ropt = step(resumed, ropt, grads_tree(resumed, g))
    for k, v in params_of(m).items():
        np.testing.assert_array_equal(params_of(resumed)[k], v)
    ours, theirs = buffers_of(ropt), buffers_of(opt)
    assert sorted(ours) == sorted(theirs)
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v)
    assert ropt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def _snapshot(opt: optim.SGD) -> Any:
    return repr(opt), opt.state_dict()["param_groups"], buffers_of(opt), jax.tree.structure(opt)


def _assert_unchanged(opt: optim.SGD, snap: Any) -> None:
    now = _snapshot(opt)
    assert now[0] == snap[0] and now[1] == snap[1] and now[3] == snap[3]
    assert sorted(now[2]) == sorted(snap[2])
    for k, v in snap[2].items():
        np.testing.assert_array_equal(now[2][k], v)


def test_load_state_dict_errors_leave_the_optimizer_unchanged() -> None:
    m, opt, t, topt = _two_group_pair()
    m, opt = _train(m, opt, t, topt, 2, seed=15)
    good = copy.deepcopy(topt.state_dict())
    snap = _snapshot(opt)

    one_group = torch.optim.SGD(TorchNet().parameters(), lr=0.1).state_dict()
    with pytest.raises(
        ValueError, match="loaded state dict has a different number of parameter groups"
    ):
        opt.load_state_dict(one_group)
    _assert_unchanged(opt, snap)

    resized = copy.deepcopy(good)
    resized["param_groups"][1]["params"] = [3]
    with pytest.raises(
        ValueError,
        match="loaded state dict contains a parameter group that doesn't match the size of optimizer's group",
    ):
        opt.load_state_dict(resized)
    _assert_unchanged(opt, snap)

    bad_shape = copy.deepcopy(good)
    bad_shape["param_groups"][0]["lr"] = 7.0
    bad_shape["state"][4]["momentum_buffer"] = torch.zeros(5)
    with pytest.raises(ValueError, match="momentum_buffer for parameter 4 has shape"):
        opt.load_state_dict(bad_shape)
    _assert_unchanged(opt, snap)

    bad_id = copy.deepcopy(good)
    bad_id["state"][99] = bad_id["state"].pop(0)
    with pytest.raises(ValueError, match="99"):
        opt.load_state_dict(bad_id)
    _assert_unchanged(opt, snap)

    # torch's own errors for the first two cases, for the record.
    with pytest.raises(ValueError, match="different number of parameter groups"):
        topt.load_state_dict(one_group)
    with pytest.raises(ValueError, match="doesn't match the size"):
        topt.load_state_dict(resized)


def test_lr_change_and_reload_keep_momentum() -> None:
    m, opt, t, topt = _two_group_pair()
    step = sgd_step(True)
    rng = np.random.default_rng(16)

    def one(m: Any, opt: Any) -> Any:
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        return step(m, opt, grads_tree(m, g))

    for _ in range(3):
        m, opt = one(m, opt)
    for group in (*opt.param_groups, *topt.param_groups):
        group["lr"] = group["lr"] / 2
    m, opt = one(m, opt)
    assert_same(m, opt, t, topt, "after lr change")
    # Reload our own state with an edited lr: buffers stay.
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.02
    opt.load_state_dict(sd)
    topt.param_groups[0]["lr"] = 0.02
    m, opt = one(m, opt)
    assert_same(m, opt, t, topt, "after reload")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("momentum", [0.9, 1])
def test_momentum_set_later(momentum: float, jit: bool) -> None:
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, dampening=0.5)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, dampening=0.5)
    step = sgd_step(jit)
    rng = np.random.default_rng(17)
    for i in range(6):
        if i == 2:
            opt.param_groups[0]["momentum"] = momentum
            topt.param_groups[0]["momentum"] = momentum
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
        assert (len(buffers_of(opt)) == 5) == (i >= 2)


# ------------------------------------------------------------------------------- repr


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "maximize": True},
        {"lr": 1, "dampening": 0.5, "foreach": False},
    ],
    ids=_config_id,
)
def test_repr_like_torch(kwargs: dict[str, Any]) -> None:
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), **kwargs)
    topt = torch.optim.SGD(t.parameters(), **kwargs)
    assert repr(opt) == repr(topt)


def test_repr_like_torch_with_groups_and_names() -> None:
    m, t = make_pair()
    opt = optim.SGD(
        [{"params": m.a.named_parameters()}, {"params": m.b.named_parameters(), "lr": 0.5}],
        lr=0.1,
        momentum=0.9,
    )
    topt = torch.optim.SGD(
        [{"params": t.a.named_parameters()}, {"params": t.b.named_parameters(), "lr": 0.5}],
        lr=0.1,
        momentum=0.9,
    )
    assert repr(opt) == repr(topt)
    assert re.search(r"Parameter Group 1\n    dampening: 0\n", repr(opt))


def test_repr_after_a_jitted_step_keeps_the_values() -> None:
    m, _ = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    _, opt = jax.jit(lambda m, o, g: o.step(m, g))(
        m, opt, grads_tree(m, random_grads(np.random.default_rng(0)))
    )
    text = repr(opt)
    assert "    lr: 0.1\n" in text and "    momentum: 0.9\n" in text


def test_zero_grad_is_a_no_op() -> None:
    q, _ = _param()
    opt = optim.SGD([q], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert opt.zero_grad() is None
        assert opt.zero_grad(set_to_none=False) is None


def test_buffers_initialised_together_share_one_flag() -> None:
    """A group keeps one "buffer initialised" flag per class of parameters that have stepped
    together (one kernel per parameter shape in the compiled step); a None gradient splits a
    class once, the structure is stable after it, and every step equals torch's."""
    m, t = make_pair()
    kwargs = {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}
    opt = optim.SGD(m.parameters(), **kwargs)
    topt = torch.optim.SGD(t.parameters(), **kwargs)
    assert len(opt._initialized[0]) == 1
    traces = 0

    @jax.jit
    def step(m: Net, opt: optim.SGD, g: Any) -> Any:
        nonlocal traces
        traces += 1
        return opt.step(m, g)

    rng = np.random.default_rng(5)
    for i in range(5):
        g: dict[str, Any] = dict(random_grads(rng))
        if i == 0:
            g["a.bias"] = None  # its buffer starts a step later: a class of its own
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g))
        assert_same(m, opt, t, topt, f"step {i}")
    assert traces == 2  # step 0 (a None gradient), step 1 (full gradients, split flags), no more
    np.testing.assert_array_equal(opt._initialized[0], [True, True])
    assert opt._classes[0] == (0, 0, 1, 0, 0)


def test_zero_tests_follow_every_kind_of_value() -> None:
    """torch tests momentum, weight decay (and fparam dampening) against 0 in Python. fparam
    makes that structure when the value is a host number and selects at run time when it is
    a JAX array or was set inside the jitted step; every route equals torch, including
    momentum going to 0 and back in a group with buffers (the buffer waits untouched)."""
    m, t = make_pair()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)

    @jax.jit
    def step(m: Net, opt: optim.SGD, grads: Net, momentum: Any) -> Any:
        if momentum is not None:  # a schedule's value, set inside the trace
            opt.param_groups[0]["momentum"] = momentum
        return opt.step(m, grads)

    rng = np.random.default_rng(9)
    settings: dict[int, dict[str, Any]] = {
        2: {"momentum": 0.0},
        4: {"momentum": 0.8, "weight_decay": jnp.asarray(0.0)},
        6: {"weight_decay": jnp.asarray(0.2), "dampening": jnp.asarray(0.5)},
        8: {"weight_decay": 0.0, "dampening": 0.0},
    }
    for i in range(12):
        for key, value in settings.get(i, {}).items():
            opt.param_groups[0][key] = value
            topt.param_groups[0][key] = float(value)
        traced = 0.6 if i >= 10 else None  # inside the step from step 10 on
        if traced is not None:
            topt.param_groups[0]["momentum"] = traced
        g = random_grads(rng)
        set_torch_grads(t, g)
        topt.step()
        m, opt = step(m, opt, grads_tree(m, g), None if traced is None else jnp.float32(traced))
        assert_same(m, opt, t, topt, f"step {i}")
