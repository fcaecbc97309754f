"""Train step of a ``TransformerEncoderLayer``: fparam against the same computation in raw JAX and torch.

The layer: ``TransformerEncoderLayer(d_model=E, nhead=H, dim_feedforward=4E, dropout=0.0,
batch_first=True)`` (post-norm, ReLU: torch's defaults otherwise) on a batch of ``N`` sequences
of ``S`` tokens, mean squared error against a fixed target, Adam (torch's defaults, lr 1e-3).
``dropout=0.0`` so that the three contenders compute the same numbers; the layer still runs in
training mode.

- **fparam**: ``nn.TransformerEncoderLayer`` in the jitted step of the README
  (``with fparam.rng(key): fparam.value_and_grad(...)``, then ``opt.step``).
- **raw JAX**: the same computation on a dict of arrays (``state_dict`` names): packed ``q, k,
  v`` projection, per-head scaled dot-product attention with a softmax, output projection,
  residual + ``LayerNorm``, ``Linear``-ReLU-``Linear``, residual + ``LayerNorm``; Adam with
  torch's formulas (bias corrections, ``eps`` added to ``sqrt(v_hat)``), the step count and the
  hyperparameters passed in as arguments. A second row, ``raw JAX + dpa``, computes the attention
  with ``jax.nn.dot_product_attention`` (the lowering fparam's ``scaled_dot_product_attention``
  uses) instead of explicit matmuls and softmax.
- **torch eager**: ``torch.nn.TransformerEncoderLayer`` and ``torch.optim.Adam``, one intra-op
  thread (as in ``step_overhead.py``).

Before timing, the fparam and raw JAX steps run 5 steps from the same weights on the same
batches; losses and parameters must agree to float32 tolerance, and the first loss must equal
torch's, or the script stops. Timing: ``_timing.measure`` (warm-up, then interleaved repeats,
medians).

Run: ``python benchmarks/transformer_step.py [--steps 30] [--repeats 9] [--batch 8] [--seq 64]
[--d-model 64] [--nhead 4]``
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

import fparam
from fparam import nn, optim

LR, BETAS, EPS, LN_EPS = 1e-3, (0.9, 0.999), 1e-8, 1e-5


def make_model(d_model: int, nhead: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
    )


def batches(n: int, shape: tuple[int, int, int]) -> list[tuple[jax.Array, jax.Array]]:
    out = []
    for i in range(n):
        kx, ky = jax.random.split(jax.random.key(100 + i))
        out.append((jax.random.normal(kx, shape), jax.random.normal(ky, shape)))
    return out


# --------------------------------------------------------------------------------- fparam


def fparam_step() -> Callable[..., Any]:
    criterion = nn.MSELoss()

    @jax.jit
    def train_step(model: Any, opt: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> Any:
        with fparam.rng(key):
            loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    return train_step


# --------------------------------------------------------------------------------- raw JAX


def raw_params(model: nn.Module) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in model.state_dict().items()}


def layer_norm(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * w + b


def raw_forward(
    p: dict[str, jax.Array], x: jax.Array, nhead: int, library_attention: bool = False
) -> jax.Array:
    n, s, e = x.shape
    hd = e // nhead
    qkv = x @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]
    if library_attention:
        q, k, v = (t.reshape(n, s, nhead, hd) for t in jnp.split(qkv, 3, -1))
        attn = jax.nn.dot_product_attention(q, k, v).reshape(n, s, e)
    else:
        q, k, v = (t.reshape(n, s, nhead, hd).transpose(0, 2, 1, 3) for t in jnp.split(qkv, 3, -1))
        scores = (q / math.sqrt(hd)) @ k.swapaxes(-1, -2)
        attn = jax.nn.softmax(scores, axis=-1) @ v
        attn = attn.transpose(0, 2, 1, 3).reshape(n, s, e)
    attn = attn @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]
    h = layer_norm(x + attn, p["norm1.weight"], p["norm1.bias"])
    ff = jax.nn.relu(h @ p["linear1.weight"].T + p["linear1.bias"])
    ff = ff @ p["linear2.weight"].T + p["linear2.bias"]
    return layer_norm(h + ff, p["norm2.weight"], p["norm2.bias"])


def raw_step(nhead: int, library_attention: bool = False) -> Callable[..., Any]:
    @jax.jit
    def step(params: Any, m: Any, v: Any, t: Any, hyper: Any, x: jax.Array, y: jax.Array) -> Any:
        lr, beta1, beta2, eps = hyper
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean(jnp.square(raw_forward(p, x, nhead, library_attention) - y))
        )(params)
        t = t + 1
        m = jax.tree.map(lambda m_, g: beta1 * m_ + (1 - beta1) * g, m, grads)
        v = jax.tree.map(lambda v_, g: beta2 * v_ + (1 - beta2) * g * g, v, grads)
        step_size = lr / (1 - beta1**t)
        root_c2 = jnp.sqrt(1 - beta2**t)
        params = jax.tree.map(
            lambda p, m_, v_: p - step_size * m_ / (jnp.sqrt(v_) / root_c2 + eps), params, m, v
        )
        return params, m, v, t, loss

    return step


def raw_state(model: nn.Module) -> list[Any]:
    params = raw_params(model)
    zeros = jax.tree.map(jnp.zeros_like, params)
    hyper = jnp.asarray([LR, BETAS[0], BETAS[1], EPS], jnp.float32)
    return [params, zeros, jax.tree.map(jnp.zeros_like, params), jnp.float32(0), hyper]


# --------------------------------------------------------------------------------- check


def torch_first_loss(model: nn.Module, x: jax.Array, y: jax.Array) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    e, h = model.self_attn.embed_dim, model.self_attn.num_heads
    twin = torch.nn.TransformerEncoderLayer(e, h, 4 * e, dropout=0.0, batch_first=True)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    out = twin(torch.tensor(np.asarray(x)))
    return float(torch.mean((out - torch.tensor(np.asarray(y))) ** 2).detach())


def check_same_computation(
    d_model: int, nhead: int, shape: tuple[int, int, int], steps: int = 5
) -> float:
    """Both jitted steps from the same weights on the same batches: the largest difference."""
    model = make_model(d_model, nhead)
    params, m, v, t, hyper = raw_state(model)
    opt = optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    f_step, r_step = fparam_step(), raw_step(nhead)
    data = batches(steps, shape)
    want = torch_first_loss(model, *data[0])
    worst = 0.0
    for i, (x, y) in enumerate(data):
        model, opt, f_loss = f_step(model, opt, x, y, jax.random.key(i))
        params, m, v, t, r_loss = r_step(params, m, v, t, hyper, x, y)
        np.testing.assert_allclose(float(f_loss), float(r_loss), rtol=1e-5, atol=1e-6)
        worst = max(worst, abs(float(f_loss) - float(r_loss)))
        if i == 0 and want is not None:
            np.testing.assert_allclose(float(f_loss), want, rtol=1e-5, atol=1e-6)
    sd = model.state_dict()
    for name, value in params.items():
        got, expected = np.asarray(sd[name]), np.asarray(value)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5, err_msg=name)
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


# --------------------------------------------------------------------------------- runners


def fparam_runner(d_model: int, nhead: int, x: jax.Array, y: jax.Array) -> Callable[[int], Any]:
    model = make_model(d_model, nhead)
    opt = optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    step = fparam_step()
    keys = [jax.random.fold_in(jax.random.key(0), i) for i in range(64)]
    state = [model, opt, 0]

    def run(n: int) -> Any:
        model, opt, i = state
        for _ in range(n):
            model, opt, loss = step(model, opt, x, y, keys[i % len(keys)])
            i += 1
        state[:] = [model, opt, i]
        return jax.block_until_ready(loss)

    return run


def raw_runner(
    d_model: int, nhead: int, x: jax.Array, y: jax.Array, library_attention: bool = False
) -> Callable[[int], Any]:
    state = raw_state(make_model(d_model, nhead))
    step = raw_step(nhead, library_attention)

    def run(n: int) -> Any:
        params, m, v, t, hyper = state
        for _ in range(n):
            params, m, v, t, loss = step(params, m, v, t, hyper, x, y)
        state[:] = [params, m, v, t, hyper]
        return jax.block_until_ready(loss)

    return run


def torch_runner(
    d_model: int, nhead: int, x: jax.Array, y: jax.Array
) -> Callable[[int], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # as in step_overhead.py: idle OpenMP workers steal the cores
    model = torch.nn.TransformerEncoderLayer(
        d_model, nhead, 4 * d_model, dropout=0.0, batch_first=True
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    tx, ty = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))

    def run(n: int) -> Any:
        for _ in range(n):
            opt.zero_grad()
            loss = torch.mean((model(tx) - ty) ** 2)
            loss.backward()
            opt.step()
        return loss.item()

    return run


def main(
    steps: int = 30,
    repeats: int = 9,
    batch: int = 8,
    seq: int = 64,
    d_model: int = 64,
    nhead: int = 4,
) -> dict[str, float]:
    shape = (batch, seq, d_model)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; TransformerEncoderLayer("
        f"{d_model}, {nhead}, {4 * d_model}), batch {batch} x {seq} tokens; "
        f"{steps} steps x {repeats} repeats"
    )
    worst = check_same_computation(d_model, nhead, shape)
    print(f"same computation: 5 steps from the same weights agree (max abs diff {worst:.1e})")
    x, y = batches(1, shape)[0]
    runners = {
        "fparam": fparam_runner(d_model, nhead, x, y),
        "raw JAX": raw_runner(d_model, nhead, x, y),
        "raw JAX + dpa": raw_runner(d_model, nhead, x, y, library_attention=True),
    }
    torch_run = torch_runner(d_model, nhead, x, y)
    if torch_run is not None:
        runners["torch eager"] = torch_run
    medians = measure(runners, steps, repeats)
    base = medians["raw JAX"]
    print(f"  {'':14s} {'µs/step':>10s} {'/ raw JAX':>10s}")
    for name, t in medians.items():
        print(f"  {name:14s} {t * 1e6:10.1f} {t / base:10.2f}")
    return medians


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--nhead", type=int, default=4)
    args = parser.parse_args()
    main(args.steps, args.repeats, args.batch, args.seq, args.d_model, args.nhead)
