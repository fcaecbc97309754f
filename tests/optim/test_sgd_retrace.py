"""One trace and one compile per training loop (issue 9 item 11, issue 15).

A jitted step is traced once and compiled once however the loop goes on: the README's program,
a Linear/Conv model with every SGD option, a loop that reloads the optimizer's state and sets
the lr to a float, a JAX array and a float again. Each test counts the traces (a counter in the
jitted function), the compiles made by the later calls (JAX's compile events), and jit's cache
entries (a NumPy leaf on call 1 and a jax.Array on call 2 would make two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextmanager
def counting_compiles(name: str) -> Iterator[list[int]]:
    """Counts the compiles of the jitted function ``name`` (eager ops compile too)."""
    count = [0]

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT and kwargs.get("fun_name") == f"jit({name})":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def assert_one_cache_entry(fn: Any) -> None:
    size = getattr(fn, "_cache_size", None)  # jit's (private) count of cached signatures
    if size is not None:
        assert size() == 1


class M(nn.Module):
    """The README's model."""

    def __init__(self) -> None:
        super().__init__()
        self.weights1 = nn.Parameter(jax.random.normal(jax.random.key(0), (2, 2)))
        self.weights2 = jax.random.normal(jax.random.key(1), (2, 2))  # plain array: static

    def forward(self, x: jax.Array) -> jax.Array:
        return x @ self.weights1 @ self.weights2


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.conv(x))
        return self.fc(h.reshape(h.shape[0], -1))


def run_loop(
    model: Any,
    opt: optim.SGD,
    x: jax.Array,
    y: jax.Array,
    calls: int = 5,
    between: Callable[[int, optim.SGD], None] | None = None,
) -> tuple[int, int, Any]:
    """The README's loop: returns (traces, compiles after the first call, the jitted step)."""
    criterion = nn.CrossEntropyLoss()
    traces = 0

    @jax.jit
    def train_step(m: Any, opt: optim.SGD, x: jax.Array, y: jax.Array) -> Any:
        nonlocal traces
        traces += 1
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(m)
        m, opt = opt.step(m, grads)
        return m, opt, loss

    model, opt, loss = train_step(model, opt, x, y)
    with counting_compiles("train_step") as compiles:
        for i in range(1, calls):
            if between is not None:
                between(i, opt)
            model, opt, loss = train_step(model, opt, x, y)
        float(loss)
    return traces, compiles[0], train_step


def test_readme_loop_traces_once() -> None:
    m = M()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = jax.random.normal(jax.random.key(2), (100, 2, 2))
    y = jax.random.randint(jax.random.key(3), (100, 2), 0, 2)
    traces, compiles, step = run_loop(m, opt, x, y)
    assert (traces, compiles) == (1, 0)
    assert_one_cache_entry(step)


@pytest.mark.parametrize(
    "options",
    [
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        {"momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01, "maximize": True},
        {"weight_decay": 0.01},
    ],
    ids=["nesterov", "dampening-maximize", "no-momentum"],
)
def test_conv_linear_loop_with_every_option_traces_once(options: dict[str, Any]) -> None:
    fparam.manual_seed(0)
    m = ConvNet()
    opt = optim.SGD(m.parameters(), lr=0.1, **options)
    x = jax.random.normal(jax.random.key(2), (4, 1, 6, 6))
    y = jnp.array([0, 1, 2, 0])
    traces, compiles, step = run_loop(m, opt, x, y)
    assert (traces, compiles) == (1, 0)
    assert_one_cache_entry(step)


def test_reloads_and_new_lrs_of_every_kind_trace_once() -> None:
    # Issue 15: load_state_dict (the optimizer's own state, and torch's) and a new lr, float
    # or JAX array, never recompile.
    fparam.manual_seed(0)
    m = ConvNet()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    t = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(32, 3))
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    t(torch.ones(1, 1, 6, 6)).sum().backward()
    topt.step()
    x = jax.random.normal(jax.random.key(2), (4, 1, 6, 6))
    y = jnp.array([0, 1, 2, 0])

    def between(i: int, opt: optim.SGD) -> None:
        if i == 1:
            opt.load_state_dict(opt.state_dict())
        elif i == 2:
            opt.param_groups[0]["lr"] = 0.05
        elif i == 3:
            opt.param_groups[0]["lr"] = jnp.asarray(0.02, jnp.float32)
        elif i == 4:
            opt.param_groups[0]["lr"] = 0.01
        elif i == 5:
            opt.load_state_dict(topt.state_dict())  # a torch state: buffers, a float lr
        elif i == 6:
            sd = opt.state_dict()
            sd["param_groups"][0]["lr"] = torch.tensor(0.03)  # torch's tensor lr
            opt.load_state_dict(sd)
        elif i == 7:
            opt.param_groups[0]["lr"] = np.float32(0.04)

    traces, compiles, step = run_loop(m, opt, x, y, calls=9, between=between)
    assert (traces, compiles) == (1, 0)
    assert_one_cache_entry(step)


def test_lr_kind_reads_back_after_a_jitted_step() -> None:
    # What the packed leaf carries besides the values: how each reads back.
    m = M()
    opt = optim.SGD(m.parameters(), lr=jnp.asarray(0.5, jnp.bfloat16), momentum=0.9)
    grads = jax.tree.map(jnp.ones_like, m)
    _, new = jax.jit(lambda m, o, g: o.step(m, g))(m, opt, grads)
    lr = new.param_groups[0]["lr"]
    assert isinstance(lr, jax.Array) and lr.dtype == jnp.bfloat16 and float(lr) == 0.5
    momentum = new.param_groups[0]["momentum"]
    assert type(momentum) is float and momentum == 0.9
