"""Train step of an LSTM classifier: fparam against the same computation in raw JAX and torch.

The model: ``nn.LSTM(I, H, num_layers=2)`` over a time-major ``(L, B, I)`` batch, then
``nn.Linear(H, 10)`` on the last layer's final hidden state, cross-entropy, momentum SGD
(defaults: ``I = 32``, ``H = 128``, ``B = 32``, ``L = 32``).

- **fparam**: the README's jitted step, written for torch's model
  (``fparam.value_and_grad(...)``, then ``opt.step``).
- **raw JAX**: a dict of parameters keyed by torch's ``state_dict`` names and the LSTM written
  by hand as a JAX user writes it: per layer, the input projection of the whole sequence as one
  matmul, then ``jax.lax.scan`` over time with torch's gate order (i, f, g, o); a
  ``jax.tree.map`` momentum update, lr and momentum passed as arguments.
- **torch eager**: ``torch.nn.LSTM`` + ``Linear``, one intra-op thread (see
  ``step_overhead.py``).

Before timing, both jitted steps start from the same weights (the fparam model's) and run a few
steps on the same batches; their losses and parameters must agree to float32 tolerance, or the
script stops. Timing: ``_timing.measure`` (warm-up, then interleaved repeats, medians).

Then the compile time of one step (``jax.jit(step).lower(...).compile()``, a fresh function each
time so that nothing is cached) at several sequence lengths: the time loop is a ``lax.scan``, so
it should not grow with ``L``.

``--cpu-time`` times the steps in this process's CPU seconds (all its threads) instead of wall
time: on a machine shared with other jobs, a step that waits for a core costs wall time but no
CPU time, so the ratio is steadier.

Run: ``python benchmarks/lstm_step.py [--steps 100] [--repeats 15] [--seq-len 32]
[--compile-lengths 16 128 1024] [--cpu-time]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

import fparam
from fparam import nn, optim

LR, MOMENTUM = 0.05, 0.9
CLASSES = 10


class Classifier(nn.Module):
    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: jax.Array) -> jax.Array:
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[-1])


def batches(n: int, seq_len: int, batch: int, features: int) -> list[tuple[jax.Array, jax.Array]]:
    out = []
    for i in range(n):
        kx, ky = jax.random.split(jax.random.key(100 + i))
        out.append(
            (
                jax.random.normal(kx, (seq_len, batch, features)),
                jax.random.randint(ky, (batch,), 0, CLASSES),
            )
        )
    return out


# --------------------------------------------------------------------------------- fparam


def fparam_step() -> Callable[..., Any]:
    criterion = nn.CrossEntropyLoss()

    def train_step(model: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    return train_step


# --------------------------------------------------------------------------------- raw JAX


def raw_params(model: Classifier) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in model.state_dict().items()}


def lstm_layer(p: dict[str, jax.Array], layer: int, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One LSTM layer over time-major ``x (L, B, I)`` from zero state: ``(outputs, h_L)``."""
    w_ih, w_hh = p[f"lstm.weight_ih_l{layer}"], p[f"lstm.weight_hh_l{layer}"]
    b_ih, b_hh = p[f"lstm.bias_ih_l{layer}"], p[f"lstm.bias_hh_l{layer}"]
    xg = x @ w_ih.T + b_ih
    hidden = w_hh.shape[1]
    zeros = jnp.zeros((x.shape[1], hidden), x.dtype)

    def body(carry: tuple[jax.Array, jax.Array], xg_t: jax.Array) -> Any:
        h, c = carry
        i, f, g, o = jnp.split(xg_t + h @ w_hh.T + b_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    (h, _), out = jax.lax.scan(body, (zeros, zeros), xg)
    return out, h


def raw_forward(p: dict[str, jax.Array], x: jax.Array, layers: int) -> jax.Array:
    h = x
    for layer in range(layers):
        h, last = lstm_layer(p, layer, h)
    return last @ p["head.weight"].T + p["head.bias"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def raw_step(layers: int) -> Callable[..., Any]:
    def step(params: Any, bufs: Any, lr: Any, momentum: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(raw_forward(p, x, layers), y))(
            params
        )
        bufs = jax.tree.map(lambda b, g: momentum * b + g, bufs, grads)
        params = jax.tree.map(lambda p, b: p - lr * b, params, bufs)
        return params, bufs, loss

    return step


# --------------------------------------------------------------------------------- check


def check_same_computation(shape: dict[str, int], steps: int = 5) -> float:
    """Both jitted steps from the same weights on the same batches: the largest difference."""
    model = Classifier(shape["features"], shape["hidden"], shape["layers"])
    params = raw_params(model)
    bufs = jax.tree.map(jnp.zeros_like, params)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    f_step, r_step = jax.jit(fparam_step()), jax.jit(raw_step(shape["layers"]))
    worst = 0.0
    data = batches(steps, shape["seq_len"], shape["batch"], shape["features"])
    for x, y in data:
        model, opt, f_loss = f_step(model, opt, x, y)
        params, bufs, r_loss = r_step(params, bufs, LR, MOMENTUM, x, y)
        np.testing.assert_allclose(float(f_loss), float(r_loss), rtol=1e-5, atol=1e-6)
        worst = max(worst, abs(float(f_loss) - float(r_loss)))
    sd = model.state_dict()
    for name, value in params.items():
        got, want = np.asarray(sd[name]), np.asarray(value)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


# --------------------------------------------------------------------------------- runners


def fparam_runner(shape: dict[str, int], x: jax.Array, y: jax.Array) -> Callable[[int], Any]:
    model = Classifier(shape["features"], shape["hidden"], shape["layers"])
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    step = jax.jit(fparam_step())
    state = [model, opt]

    def run(n: int) -> Any:
        model, opt = state
        for _ in range(n):
            model, opt, loss = step(model, opt, x, y)
        state[:] = [model, opt]
        return jax.block_until_ready(loss)

    return run


def raw_runner(shape: dict[str, int], x: jax.Array, y: jax.Array) -> Callable[[int], Any]:
    params = raw_params(Classifier(shape["features"], shape["hidden"], shape["layers"]))
    step = jax.jit(raw_step(shape["layers"]))
    state = [params, jax.tree.map(jnp.zeros_like, params)]

    def run(n: int) -> Any:
        params, bufs = state
        for _ in range(n):
            params, bufs, loss = step(params, bufs, LR, MOMENTUM, x, y)
        state[:] = [params, bufs]
        return jax.block_until_ready(loss)

    return run


def torch_runner(shape: dict[str, int], x: jax.Array, y: jax.Array) -> Callable[[int], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # as in step_overhead.py: idle OpenMP workers steal the cores
    lstm = torch.nn.LSTM(shape["features"], shape["hidden"], num_layers=shape["layers"])
    head = torch.nn.Linear(shape["hidden"], CLASSES)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    criterion = torch.nn.CrossEntropyLoss()
    tx = torch.tensor(np.asarray(x))
    ty = torch.tensor(np.asarray(y)).long()

    def run(n: int) -> Any:
        for _ in range(n):
            opt.zero_grad()
            _, (h_n, _) = lstm(tx)
            loss = criterion(head(h_n[-1]), ty)
            loss.backward()
            opt.step()
        return loss.item()

    return run


# --------------------------------------------------------------------------------- compile


def compile_seconds(shape: dict[str, int], seq_len: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds to trace, lower and compile one step at ``seq_len``, fparam and raw
    JAX (fresh functions: nothing cached). CPU seconds are this process's, which other jobs on
    a shared machine disturb less than wall time."""
    x, y = batches(1, seq_len, shape["batch"], shape["features"])[0]
    model = Classifier(shape["features"], shape["hidden"], shape["layers"])
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    params = raw_params(model)
    bufs = jax.tree.map(jnp.zeros_like, params)
    contenders = {
        "fparam": (fparam_step(), (model, opt, x, y)),
        "raw JAX": (raw_step(shape["layers"]), (params, bufs, LR, MOMENTUM, x, y)),
    }
    out = {}
    for name, (step, args) in contenders.items():
        wall, cpu = time.perf_counter(), time.process_time()
        jax.jit(step).lower(*args).compile()
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


def main(
    steps: int = 100,
    repeats: int = 15,
    seq_len: int = 32,
    batch: int = 32,
    features: int = 32,
    hidden: int = 128,
    layers: int = 2,
    compile_lengths: tuple[int, ...] = (16, 128, 1024),
    cpu_time: bool = False,
) -> dict[str, Any]:
    shape = {
        "seq_len": seq_len,
        "batch": batch,
        "features": features,
        "hidden": hidden,
        "layers": layers,
    }
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; LSTM({features}, {hidden}, "
        f"num_layers={layers}) + Linear({hidden}, {CLASSES}), batch {batch}, length {seq_len}; "
        f"{steps} steps x {repeats} repeats"
    )
    worst = check_same_computation(shape)
    print(f"same computation: 5 steps from the same weights agree (max abs diff {worst:.1e})")
    x, y = batches(1, seq_len, batch, features)[0]
    runners = {"fparam": fparam_runner(shape, x, y), "raw JAX": raw_runner(shape, x, y)}
    torch_run = torch_runner(shape, x, y)
    if torch_run is not None:
        runners["torch eager"] = torch_run
    clock = time.process_time if cpu_time else time.perf_counter
    medians = measure(runners, steps, repeats, clock)
    base = medians["raw JAX"]
    unit = "CPU µs/step" if cpu_time else "µs/step"
    print(f"  {'':12s} {unit:>12s} {'/ raw JAX':>10s}")
    for name, t in medians.items():
        print(f"  {name:12s} {t * 1e6:12.1f} {t / base:10.2f}")
    compiles = {}
    if compile_lengths:
        print("compile time of one step (trace + lower + XLA compile), seconds wall / CPU:")
        print(f"  {'length':>8s} {'fparam':>13s} {'raw JAX':>13s}")
        for length in compile_lengths:
            compiles[length] = c = compile_seconds(shape, length)
            cells = [f"{c[k][0]:6.2f}/{c[k][1]:6.2f}" for k in ("fparam", "raw JAX")]
            print(f"  {length:8d} {cells[0]:>13s} {cells[1]:>13s}")
    return {"step": medians, "compile": compiles}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--compile-lengths", type=int, nargs="*", default=[16, 128, 1024])
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time steps in this process's CPU seconds (steadier on a shared machine)",
    )
    args = parser.parse_args()
    main(
        args.steps,
        args.repeats,
        args.seq_len,
        args.batch,
        args.features,
        args.hidden,
        args.layers,
        tuple(args.compile_lengths),
        args.cpu_time,
    )
