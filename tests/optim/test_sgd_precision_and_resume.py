"""``optim.SGD`` against ``torch.optim.SGD`` on low-precision parameters, and resuming from torch
checkpoints whose state holds no buffer for some parameters (``momentum_buffer: None``, ``{}``).
"""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn, optim

SHAPES = {"weight": (3, 2), "bias": (3,)}


class Leaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(jnp.zeros((3, 2)))
        self.bias = nn.Parameter(jnp.zeros((3,)))


class TorchLeaf(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3, 2))
        self.bias = torch.nn.Parameter(torch.zeros(3))


def pair(dtype: Any, tdtype: Any, seed: int = 0) -> tuple[Leaf, TorchLeaf]:
    rng = np.random.default_rng(seed)
    t = TorchLeaf()
    values = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    t.load_state_dict({k: torch.tensor(v) for k, v in values.items()})
    t = t.to(tdtype)
    m = Leaf()
    m.load_state_dict(values)  # cast to the parameters' float32, then to ``dtype``
    return jax.tree.map(lambda x: x.astype(dtype), m), t


def as_float(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().numpy()
    return np.asarray(jnp.asarray(x, jnp.float32))


LOW = [
    (jnp.bfloat16, torch.bfloat16),
    (jnp.float16, torch.float16),
]
# Every option at once, and no momentum; lr as a Python float, a NumPy float64 (strongly
# typed for JAX: it must not promote the update to float32) and a JAX/torch 0-d array.
OPTIONS = [
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True},
    {"weight_decay": 0.1},
]
LRS = ["float", "numpy", "array"]


def _lr(kind: str) -> tuple[Any, Any]:
    if kind == "float":
        return 0.1, 0.1
    if kind == "numpy":
        return np.float64(0.1), 0.1
    return jnp.asarray(0.1, jnp.float32), torch.tensor(0.1)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("lr_kind", LRS)
@pytest.mark.parametrize("options", OPTIONS, ids=["damp", "nesterov-max", "plain"])
@pytest.mark.parametrize(("dtype", "tdtype"), LOW, ids=["bfloat16", "float16"])
def test_low_precision_parameters_keep_their_dtype_like_torch(
    dtype: Any, tdtype: Any, options: dict[str, Any], lr_kind: str, jit: bool
) -> None:
    m, t = pair(dtype, tdtype)
    ours_lr, theirs_lr = _lr(lr_kind)
    opt = optim.SGD(m.parameters(), lr=ours_lr, **options)
    topt = torch.optim.SGD(t.parameters(), lr=theirs_lr, **options)

    def step(m: Any, o: Any, g: Any) -> Any:
        return o.step(m, g)

    run = jax.jit(step) if jit else step
    rng = np.random.default_rng(1)
    for _ in range(4):
        g = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
        for name, p in t.named_parameters():
            p.grad = torch.tensor(g[name]).to(tdtype)
        topt.step()
        grads = jax.tree_util.tree_map_with_path(
            lambda path, _, g=g: jnp.asarray(g[path[-1].name]).astype(dtype), m
        )
        m, opt = run(m, opt, grads)
    for name, p in t.named_parameters():
        ours = m.state_dict()[name]
        assert ours.dtype == dtype and p.dtype == tdtype, name
        # Measured over this grid: at most 1 ulp of the dtype (of max(1, |x|); torch rounds
        # after each op, XLA fuses); 2 ulps keeps room, a formula error is far larger.
        ulp = 2.0**-7 if dtype == jnp.bfloat16 else 2.0**-10
        np.testing.assert_allclose(as_float(ours), as_float(p), rtol=2 * ulp, atol=2 * ulp)
    for buf in opt.state_dict()["state"].values():
        assert buf["momentum_buffer"].dtype == dtype


# ------------------------------------------------------------------------------- resume


def _fp32_pair() -> tuple[Leaf, TorchLeaf]:
    return pair(jnp.float32, torch.float32, seed=3)


@pytest.mark.parametrize("empty", [None, {}], ids=["momentum_buffer-None", "empty-entry"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_torch_state_without_a_buffer_loads_and_continues_like_torch(empty: Any, jit: bool) -> None:
    # A torch checkpoint where 'bias' has no buffer yet: as torch writes it (None, e.g. older
    # torch or momentum 0), or as an empty entry. torch loads both, and the next step of that
    # parameter is a first step (buffer = gradient).
    m, t = _fp32_pair()
    options = {"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01}
    topt = torch.optim.SGD(t.parameters(), **options)
    rng = np.random.default_rng(4)
    t.weight.grad = torch.tensor(rng.standard_normal((3, 2)).astype(np.float32))
    topt.step()  # weight has a buffer, bias none
    saved = copy.deepcopy(topt.state_dict())
    saved["state"][1] = {"momentum_buffer": None} if empty is None else {}
    topt.load_state_dict(copy.deepcopy(saved))  # torch accepts it
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    opt = optim.SGD(m.parameters(), lr=0.5)  # options come from the checkpoint
    opt.load_state_dict(saved)
    assert sorted(opt.state_dict()["state"]) == [0]

    def step(m: Any, o: Any, g: Any) -> Any:
        return o.step(m, g)

    run = jax.jit(step) if jit else step
    for _ in range(3):
        g = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
        for name, p in t.named_parameters():
            p.grad = torch.tensor(g[name])
        topt.step()
        grads = jax.tree_util.tree_map_with_path(
            lambda path, _, g=g: jnp.asarray(g[path[-1].name]), m
        )
        m, opt = run(m, opt, grads)
        for name, p in t.named_parameters():
            np.testing.assert_allclose(
                np.asarray(m.state_dict()[name]), as_float(p), rtol=2e-6, atol=2e-6
            )
        ours, theirs = opt.state_dict()["state"], topt.state_dict()["state"]
        assert sorted(ours) == sorted(theirs) == [0, 1]
        for i in ours:
            np.testing.assert_allclose(
                np.asarray(ours[i]["momentum_buffer"]),
                as_float(theirs[i]["momentum_buffer"]),
                rtol=2e-6,
                atol=2e-6,
            )


def test_momentum_zero_torch_state_with_none_buffers_loads() -> None:
    # What torch < 2.1 wrote for momentum 0: a None buffer for every parameter.
    m, t = _fp32_pair()
    topt = torch.optim.SGD(t.parameters(), lr=0.1)
    saved = copy.deepcopy(topt.state_dict())
    saved["state"] = {0: {"momentum_buffer": None}, 1: {"momentum_buffer": None}}
    topt.load_state_dict(copy.deepcopy(saved))
    opt = optim.SGD(m.parameters(), lr=0.3, momentum=0.9)
    opt.load_state_dict(saved)
    assert opt.state_dict()["state"] == {}
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]
