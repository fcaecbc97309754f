"""Optimizer leaves have names: tree paths that say which parameter and which state.

``jax.tree_util.tree_flatten_with_path(opt)`` names the packed vector ``.hyperparameters`` and
each state array ``.state['<state_dict key>']['<torch's state name>']`` (optax's own path under
the parameter for ``optim.Optax``), so checkpointers, sharding rules and debugging output keyed
by tree path can tell the leaves apart. The state names are checked against torch's own
``optimizer.state`` after a step.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import fparam
from fparam import nn, optim

# Each optimizer with options that create all of its state arrays.
OPTIONS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.9},
    "Adam": {"amsgrad": True},
    "AdamW": {},
    "RMSprop": {"momentum": 0.9, "centered": True},
    "Adagrad": {},
    "Adadelta": {},
    "Adamax": {},
    "NAdam": {},
    "RAdam": {},
}
KEYS = ["0.weight", "0.bias", "2.weight", "2.bias"]
FROZEN = "2.bias"


def model() -> nn.Sequential:
    m = nn.Sequential(
        nn.Linear(3, 4, key=jax.random.key(0)), nn.ReLU(), nn.Linear(4, 2, key=jax.random.key(1))
    )
    m.get_parameter(FROZEN).requires_grad = False
    return m


def groups(named: dict[str, Any]) -> list[dict[str, Any]]:
    """Two groups, the second with its own lr; the frozen parameter is in the second."""
    return [
        {"params": [named["0.weight"]]},
        {"params": [named[k] for k in KEYS[1:]], "lr": 0.05},
    ]


def loss(m: Any, x: Any) -> Any:
    return jnp.sum(m(x) ** 2)


def stepped(opt: Any, m: Any, compile: bool = False) -> Any:
    """The optimizer after one traced step: compiled and run, or (faster: names depend only
    on the structure) traced by ``jax.eval_shape``, whose leaves are shapes."""
    x = jnp.ones((2, 3), jnp.float32)

    def step(m: Any, opt: Any) -> Any:
        return opt.step(m, fparam.grad(loss)(m, x))

    return (jax.jit(step) if compile else partial(jax.eval_shape, step))(m, opt)[1]


def names(opt: Any) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(opt)[0]]


STATE = re.compile(r"^\.state\['([^']+)'\](.+)$")


def by_parameter(leaf_names: list[str]) -> dict[str, set[str]]:
    """``{state_dict key: {state name}}`` from the names; every name but the first is state."""
    assert leaf_names[0] == ".hyperparameters"
    found: dict[str, set[str]] = {}
    for name in leaf_names[1:]:
        match = STATE.match(name)
        assert match, name
        found.setdefault(match.group(1), set()).add(match.group(2))
    return found


def torch_state_names(name: str) -> dict[str, set[str]]:
    """torch's array state (parameter-shaped tensors) per parameter key after one step."""
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    named = dict(t.named_parameters())
    named[FROZEN].requires_grad_(False)
    topt = getattr(torch.optim, name)(groups(named), lr=0.1, **OPTIONS[name])
    t(torch.ones(2, 3)).pow(2).sum().backward()
    topt.step()
    key_of = {id(p): k for k, p in named.items()}
    return {
        key_of[id(p)]: {f"[{k!r}]" for k, v in s.items() if tuple(v.shape) == tuple(p.shape)}
        for p, s in topt.state.items()
    }


@pytest.mark.parametrize("name", list(OPTIONS))
def test_torch_optimizers_name_every_leaf_like_torch_state(name: str) -> None:
    m = model()
    opt = getattr(optim, name)(groups(dict(m.named_parameters())), lr=0.1, **OPTIONS[name])
    opt = stepped(opt, m)
    leaf_names = names(opt)
    assert len(set(leaf_names)) == len(leaf_names) == len(jax.tree.leaves(opt))
    found = by_parameter(leaf_names)
    theirs = torch_state_names(name)
    # torch creates state at a parameter's first step (never for the frozen one; Adagrad: in
    # the constructor); fparam allocates it for every parameter of the group, same names.
    assert set(KEYS) - {FROZEN} <= set(theirs) <= set(KEYS)
    assert set(found) == set(KEYS)
    for key in KEYS:
        assert found[key] == theirs.get(key, found["0.weight"]), (key, found[key])
    assert found["0.weight"] == theirs["0.weight"]
    # The with-path flatten has the keyless flatten's structure: tree_map_with_path round trips.
    assert jax.tree_util.tree_flatten_with_path(opt)[1] == jax.tree.structure(opt)
    doubled = jax.tree_util.tree_map_with_path(lambda p, x: x, opt)
    assert type(doubled) is type(opt)


def test_exact_names_and_paths_under_jit() -> None:
    m = model()
    opt = optim.Adam(groups(dict(m.named_parameters())), lr=0.1)
    expected = [".hyperparameters"] + [
        f".state['{k}']['{s}']" for k in KEYS for s in ("exp_avg", "exp_avg_sq")
    ]
    assert names(opt) == expected  # before any step: the state exists already
    assert names(stepped(opt, m, compile=True)) == expected

    seen: list[str] = []

    @jax.jit
    def inside(opt: Any) -> Any:  # an optimizer rebuilt from tracers has the same names
        seen.extend(names(opt))
        return opt

    inside(opt)
    assert seen == expected
    # As part of a bigger tree, with the simple spelling a checkpointer uses.
    simple = [
        jax.tree_util.keystr(p, simple=True, separator="/")
        for p, _ in jax.tree_util.tree_flatten_with_path({"opt": opt})[0]
    ]
    assert simple[:2] == ["opt/hyperparameters", "opt/state['0.weight']['exp_avg']"]


def test_optax_names_follow_optax_paths_under_the_parameter() -> None:
    m = model()
    with jax.numpy_dtype_promotion("standard"):
        opt = optim.Optax(
            optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), m.parameters()
        )
        opt = stepped(opt, m)
    leaf_names = names(opt)
    assert len(set(leaf_names)) == len(leaf_names)
    expected = [
        ".hyperparameters",
        ".opt_state[1][0].count",
        *(f".state['{k}'][1][0].mu" for k in KEYS),
        *(f".state['{k}'][1][0].nu" for k in KEYS),
    ]
    assert leaf_names == expected
    # Each named leaf has its parameter's shape.
    shapes = {k: tuple(p.shape) for k, p in m.named_parameters()}
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0][2:]:
        key = STATE.match(jax.tree_util.keystr(path)).group(1)  # type: ignore[union-attr]
        assert np.shape(leaf) == shapes[key]


def test_several_models_and_a_parameter_outside_any_module() -> None:
    gen, disc = model(), model()
    loose = nn.Parameter(jnp.zeros((3,)))
    opt = optim.SGD([*gen.parameters(), *disc.parameters(), loose], lr=0.1, momentum=0.9)
    leaf_names = names(opt)
    assert leaf_names[1] == ".state[0]['0.weight']['momentum_buffer']"
    assert leaf_names[5] == ".state[1]['0.weight']['momentum_buffer']"
    assert leaf_names[9] == ".state['#8']['momentum_buffer']"
    assert len(set(leaf_names)) == len(leaf_names) == 10
