"""Pooling: fparam against raw ``jax.lax.reduce_window`` and torch eager.

Each workload is forward + backward (the gradient of ``mean(y**2)`` with respect to the input)
under ``jax.jit``, on the same input for every contender:

  MaxPool2d(2) and MaxPool2d(3, 2, 1) (ResNet's stem), AvgPool2d(2) and AvgPool2d(3, 2, 1),
  AdaptiveAvgPool2d(1) (global pooling), AdaptiveAvgPool2d(7) (equal windows) and
  AdaptiveAvgPool2d(5) on 12x12 (unequal windows).

"raw JAX" is ``lax.reduce_window`` (max with ``-inf`` or add, the same padding and strides,
divided by the window size) differentiated by JAX itself; for the adaptive layers, the mean or
the equal-window average pool, and for unequal windows the same per-axis averaging matrices
fparam uses (raw JAX has no adaptive pooling). fparam's max pooling differs from raw JAX by
design: its derivative routes each output's gradient to the element torch picks (the first
maximum of the window; the last NaN), where JAX's own derivative of ``reduce_window`` may pick
another among equal elements. The script also reports, on a tie-heavy input (small integers),
whether raw JAX's and fparam's gradients equal torch's (entries off by more than 1e-6).

torch eager runs with one intra-op thread (``--torch-threads``).

Run: ``python benchmarks/pooling.py [--steps 20] [--repeats 7] [--batch 16]``
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure
from jax import lax

import fparam
from fparam import nn

try:
    import torch
except ImportError:  # the benchmark runs without torch; its rows are left out
    torch = None


def raw_max_pool2d(x: jax.Array, k: int, s: int, p: int) -> jax.Array:
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s), ((0, 0), (0, 0), (p, p), (p, p))
    )


def raw_avg_pool2d(x: jax.Array, k: int, s: int, p: int) -> jax.Array:
    total = lax.reduce_window(
        x, 0.0, lax.add, (1, 1, k, k), (1, 1, s, s), ((0, 0), (0, 0), (p, p), (p, p))
    )
    return total / (k * k)


def raw_adaptive_avg(x: jax.Array, out: int) -> jax.Array:
    size = x.shape[-1]
    if out == 1:
        return jnp.mean(x, axis=(2, 3), keepdims=True)
    if size % out == 0:
        k = size // out
        return raw_avg_pool2d(x, k, k, 0)
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    pos = np.arange(size)
    m = ((pos[None] >= start[:, None]) & (pos[None] < end[:, None])) / (end - start)[:, None]
    m = jnp.asarray(m, x.dtype)
    return jnp.einsum("nchw,ph,qw->ncpq", x, m, m, precision=lax.Precision.HIGHEST)


# (name, fparam layer, raw forward, torch layer factory, spatial size)
WORKLOADS: list[tuple[str, Any, Callable[[jax.Array], jax.Array], Callable[[], Any], int]] = [
    (
        "MaxPool2d(2)",
        nn.MaxPool2d(2),
        lambda x: raw_max_pool2d(x, 2, 2, 0),
        lambda: torch.nn.MaxPool2d(2),
        32,
    ),
    (
        "MaxPool2d(3, 2, 1)",
        nn.MaxPool2d(3, 2, 1),
        lambda x: raw_max_pool2d(x, 3, 2, 1),
        lambda: torch.nn.MaxPool2d(3, 2, 1),
        32,
    ),
    (
        "AvgPool2d(2)",
        nn.AvgPool2d(2),
        lambda x: raw_avg_pool2d(x, 2, 2, 0),
        lambda: torch.nn.AvgPool2d(2),
        32,
    ),
    (
        "AvgPool2d(3, 2, 1)",
        nn.AvgPool2d(3, 2, 1),
        lambda x: raw_avg_pool2d(x, 3, 2, 1),
        lambda: torch.nn.AvgPool2d(3, 2, 1),
        32,
    ),
    (
        "AdaptiveAvgPool2d(1)",
        nn.AdaptiveAvgPool2d(1),
        lambda x: raw_adaptive_avg(x, 1),
        lambda: torch.nn.AdaptiveAvgPool2d(1),
        14,
    ),
    (
        "AdaptiveAvgPool2d(7)",
        nn.AdaptiveAvgPool2d(7),
        lambda x: raw_adaptive_avg(x, 7),
        lambda: torch.nn.AdaptiveAvgPool2d(7),
        14,
    ),
    (
        "AdaptiveAvgPool2d(5)",
        nn.AdaptiveAvgPool2d(5),
        lambda x: raw_adaptive_avg(x, 5),
        lambda: torch.nn.AdaptiveAvgPool2d(5),
        12,
    ),
]


def _tie_check(
    layer: Any, raw: Callable[[jax.Array], jax.Array], make_torch: Callable[[], Any]
) -> str:
    """Whether raw JAX's and fparam's input gradients equal torch's on a tie-heavy input (small
    integers, 3 % NaN)."""
    if torch is None:
        return "-"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 4, 12, 12)).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan  # torch takes a window's last NaN
    tx = torch.tensor(x, requires_grad=True)
    out = make_torch()(tx)
    g = np.random.default_rng(1).standard_normal(tuple(out.shape)).astype(np.float32)
    out.backward(torch.tensor(g))
    expected = tx.grad.numpy()
    raw_grad = jax.vjp(raw, jnp.asarray(x))[1](jnp.asarray(g))[0]
    ours = jax.vjp(layer, jnp.asarray(x))[1](jnp.asarray(g))[0]
    verdict = []
    for name, grad in (("raw", raw_grad), ("fparam", ours)):
        diff = np.abs(np.asarray(grad) - expected)
        wrong = int((diff > 1e-6).sum() + (np.isnan(np.asarray(grad)) != np.isnan(expected)).sum())
        verdict.append(f"{name} {'=' if wrong == 0 else '!='} torch ({wrong} entries differ)")
    return ", ".join(verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(args.torch_threads)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; fparam {fparam.__file__}")
    print(f"cpu count {os.cpu_count()}, load {os.getloadavg()}")
    header = (
        "| layer | input | fparam µs | raw JAX µs | torch eager µs | fparam / raw | tie gradients |"
    )
    print(header)
    print("|---|---|---:|---:|---:|---:|---|")
    for name, layer, raw, make_torch, size in WORKLOADS:
        shape = (args.batch, args.channels, size, size)
        row(name, layer, raw, make_torch, shape, args.steps, args.repeats)


def row(
    name: str,
    layer: Any,
    raw: Callable[[jax.Array], jax.Array],
    make_torch: Callable[[], Any],
    shape: tuple[int, ...],
    steps: int,
    repeats: int,
) -> None:
    """Time one workload and print its table row."""
    x = jax.random.normal(jax.random.key(0), shape)

    def fparam_loss(x: jax.Array) -> jax.Array:
        return jnp.mean(layer(x) ** 2)

    def raw_loss(x: jax.Array) -> jax.Array:
        return jnp.mean(raw(x) ** 2)

    fparam_step = jax.jit(jax.value_and_grad(fparam_loss))
    raw_step = jax.jit(jax.value_and_grad(raw_loss))
    got, expected = fparam_step(x), raw_step(x)
    assert np.allclose(got[0], expected[0], rtol=1e-5), name

    def runner(step: Callable[[jax.Array], Any]) -> Callable[[int], Any]:
        def run(n: int) -> Any:
            result = None
            for _ in range(n):
                result = step(x)
            return jax.block_until_ready(result)

        return run

    runners = {"fparam": runner(fparam_step), "raw": runner(raw_step)}
    if torch is not None:
        t_layer = make_torch()
        t_x = torch.from_numpy(np.array(x)).requires_grad_(True)

        def torch_run(n: int) -> Any:
            for _ in range(n):
                t_x.grad = None
                loss = t_layer(t_x).pow(2).mean()
                loss.backward()
            return loss

        runners["torch"] = torch_run
    times = measure(runners, steps, repeats)
    t_torch = f"{times['torch'] * 1e6:.0f}" if "torch" in times else "-"
    ratio = times["fparam"] / times["raw"]
    ties = _tie_check(layer, raw, make_torch)
    print(
        f"| {name} | {'x'.join(map(str, shape))} | {times['fparam'] * 1e6:.0f} | "
        f"{times['raw'] * 1e6:.0f} | {t_torch} | **{ratio:.2f}** | {ties} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
