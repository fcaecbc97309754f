"""Train step of a small BatchNorm CNN: fparam against raw JAX (statistics threaded by hand) and torch.

The model: ``Conv2d(1, 16, 3, padding=1)``-``BatchNorm2d(16)``-``ReLU``-``Conv2d(16, 32, 3,
padding=1)``-``BatchNorm2d(32)``-``ReLU``-``Flatten``-``Linear(32 * S * S, 10)`` on a batch of 64
``1 x S x S`` images (``S = 8`` by default, the digits' size), cross-entropy, momentum SGD.

- **fparam**: the jitted step of issue 10 / the README, as written for torch's model
  (``with fparam.rng(key): fparam.value_and_grad(...)``, then ``opt.step``, which carries the new
  running statistics back in the model).
- **raw JAX**: the same computation on a dict of parameters and a dict of batch statistics
  threaded by hand through the jitted step, with torch's formulas (biased variance to normalise,
  unbiased in the running estimate, momentum 0.1, ``num_batches_tracked`` counted).
  Two rows: the step's key taken from keys made beforehand (``fparam``; the raw JAX step
  draws nothing and takes no key), and made in the loop with ``jax.random.fold_in(key, step)``
  as issue 10's loop does (``fparam + fold_in``: one more eager JAX dispatch per step).
- **torch eager**: the same model in torch, one intra-op thread (see ``step_overhead.py``).

Before timing, both jitted steps start from the same weights (copied from the fparam model) and
run a few steps on the same batches; their losses, parameters and running statistics must agree
to float32 tolerance, or the script stops. Timing: ``_timing.measure`` (warm-up, then interleaved
repeats, medians).

Run: ``python benchmarks/bn_step.py [--steps 200] [--repeats 15] [--size 8]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

import fparam
from fparam import nn, optim

LR, MOMENTUM, BN_MOMENTUM, EPS = 0.01, 0.9, 0.1, 1e-5
BATCH, CLASSES = 64, 10


def make_model(size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * size * size, CLASSES),
    )


def batches(size: int, n: int) -> list[tuple[jax.Array, jax.Array]]:
    out = []
    for i in range(n):
        kx, ky = jax.random.split(jax.random.key(100 + i))
        x = jax.random.normal(kx, (BATCH, 1, size, size))
        y = jax.random.randint(ky, (BATCH,), 0, CLASSES)
        out.append((x, y))
    return out


# --------------------------------------------------------------------------------- fparam


def fparam_step() -> Callable[..., Any]:
    criterion = nn.CrossEntropyLoss()

    @jax.jit
    def train_step(model: Any, opt: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> Any:
        with fparam.rng(key):
            loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    return train_step


# --------------------------------------------------------------------------------- raw JAX


def raw_state(model: nn.Sequential) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Parameters and batch statistics of ``model``, keyed by ``state_dict`` names."""
    sd = model.state_dict()
    params = {k: jnp.asarray(sd[k]) for k, _ in model.named_parameters()}
    stats = {k: jnp.asarray(v) for k, v in sd.items() if k not in params}
    return params, stats


def conv(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return y + b[None, :, None, None]


def batch_norm(
    x: jax.Array, p: dict[str, jax.Array], s: dict[str, jax.Array], name: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """torch's training-mode BatchNorm2d; returns the output and the new statistics."""
    n = x.size // x.shape[1]
    mean = jnp.mean(x, axis=(0, 2, 3))
    var = jnp.mean(jnp.square(x - mean[None, :, None, None]), axis=(0, 2, 3))  # biased
    inv = jax.lax.rsqrt(var + EPS) * p[f"{name}.weight"]
    out = (x - mean[None, :, None, None]) * inv[None, :, None, None]
    out = out + p[f"{name}.bias"][None, :, None, None]
    mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    new = {
        f"{name}.running_mean": (1 - BN_MOMENTUM) * s[f"{name}.running_mean"] + BN_MOMENTUM * mean,
        f"{name}.running_var": (1 - BN_MOMENTUM) * s[f"{name}.running_var"]
        + BN_MOMENTUM * var * (n / (n - 1)),  # unbiased in the running estimate
        f"{name}.num_batches_tracked": s[f"{name}.num_batches_tracked"] + 1,
    }
    return out, new


def raw_forward(
    p: dict[str, jax.Array], s: dict[str, jax.Array], x: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    h, s1 = batch_norm(conv(x, p["0.weight"], p["0.bias"]), p, s, "1")
    h = jax.nn.relu(h)
    h, s4 = batch_norm(conv(h, p["3.weight"], p["3.bias"]), p, s, "4")
    h = jax.nn.relu(h).reshape(h.shape[0], -1)
    return h @ p["7.weight"].T + p["7.bias"], {**s1, **s4}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def raw_step() -> Callable[..., Any]:
    @jax.jit
    def step(
        params: Any, stats: Any, bufs: Any, lr: Any, momentum: Any, x: jax.Array, y: jax.Array
    ) -> Any:
        def loss_fn(p: Any) -> Any:
            logits, new_stats = raw_forward(p, stats, x)
            return cross_entropy(logits, y), new_stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        bufs = jax.tree.map(lambda b, g: momentum * b + g, bufs, grads)
        params = jax.tree.map(lambda p, b: p - lr * b, params, bufs)
        return params, stats, bufs, loss

    return step


# --------------------------------------------------------------------------------- check


def check_same_computation(size: int, steps: int = 5) -> float:
    """Both jitted steps from the same weights on the same batches: the largest difference."""
    model = make_model(size)
    params, stats = raw_state(model)
    bufs = jax.tree.map(jnp.zeros_like, params)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    f_step, r_step = fparam_step(), raw_step()
    worst = 0.0
    for i, (x, y) in enumerate(batches(size, steps)):
        model, opt, f_loss = f_step(model, opt, x, y, jax.random.key(i))
        params, stats, bufs, r_loss = r_step(params, stats, bufs, LR, MOMENTUM, x, y)
        np.testing.assert_allclose(float(f_loss), float(r_loss), rtol=1e-5, atol=1e-6)
        worst = max(worst, abs(float(f_loss) - float(r_loss)))
    sd = model.state_dict()
    for name, value in {**params, **stats}.items():
        got, want = np.asarray(sd[name]), np.asarray(value)
        if name.endswith("num_batches_tracked"):
            assert int(got) == int(want) == steps, (name, got, want)
            continue
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


# --------------------------------------------------------------------------------- runners


def fparam_runner(
    size: int, x: jax.Array, y: jax.Array, fold_in_loop: bool
) -> Callable[[int], Any]:
    """``fold_in_loop``: the step's key made in the loop (``jax.random.fold_in(key, step)``, an
    eager dispatch per step, as in issue 10's loop); otherwise taken from keys made beforehand."""
    model = make_model(size)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    step = fparam_step()
    key = jax.random.key(0)
    keys = [jax.random.fold_in(key, i) for i in range(64)]
    state = [model, opt, 0]

    def run(n: int) -> Any:
        model, opt, i = state
        for _ in range(n):
            k = jax.random.fold_in(key, i) if fold_in_loop else keys[i % len(keys)]
            model, opt, loss = step(model, opt, x, y, k)
            i += 1
        state[:] = [model, opt, i]
        return jax.block_until_ready(loss)

    return run


def raw_runner(size: int, x: jax.Array, y: jax.Array) -> Callable[[int], Any]:
    params, stats = raw_state(make_model(size))
    step = raw_step()
    state = [params, stats, jax.tree.map(jnp.zeros_like, params)]

    def run(n: int) -> Any:
        params, stats, bufs = state
        for _ in range(n):
            params, stats, bufs, loss = step(params, stats, bufs, LR, MOMENTUM, x, y)
        state[:] = [params, stats, bufs]
        return jax.block_until_ready(loss)

    return run


def torch_runner(size: int, x: jax.Array, y: jax.Array) -> Callable[[int], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # as in step_overhead.py: idle OpenMP workers steal the cores
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * size * size, CLASSES),
    )
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    criterion = torch.nn.CrossEntropyLoss()
    tx = torch.tensor(np.asarray(x))
    ty = torch.tensor(np.asarray(y)).long()

    def run(n: int) -> Any:
        for _ in range(n):
            opt.zero_grad()
            loss = criterion(model(tx), ty)
            loss.backward()
            opt.step()
        return loss.item()

    return run


def main(steps: int = 200, repeats: int = 15, size: int = 8) -> dict[str, float]:
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; batch {BATCH} of 1x{size}x{size}; "
        f"{steps} steps x {repeats} repeats"
    )
    worst = check_same_computation(size)
    print(f"same computation: 5 steps from the same weights agree (max abs diff {worst:.1e})")
    x, y = batches(size, 1)[0]
    runners = {
        "fparam": fparam_runner(size, x, y, fold_in_loop=False),
        "fparam + fold_in": fparam_runner(size, x, y, fold_in_loop=True),
        "raw JAX": raw_runner(size, x, y),
    }
    torch_run = torch_runner(size, x, y)
    if torch_run is not None:
        runners["torch eager"] = torch_run
    medians = measure(runners, steps, repeats)
    base = medians["raw JAX"]
    print(f"  {'':16s} {'µs/step':>10s} {'/ raw JAX':>10s}")
    for name, t in medians.items():
        print(f"  {name:16s} {t * 1e6:10.1f} {t / base:10.2f}")
    return medians


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=8, help="image side (8: the digits)")
    args = parser.parse_args()
    main(args.steps, args.repeats, args.size)
