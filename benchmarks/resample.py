"""Resampling: ``fparam.nn.functional.interpolate`` against raw ``jax.image.resize`` and torch eager.

Each workload is forward + backward under ``jax.jit``: the value and the input gradient of
``mean(y**2)``. The raw JAX contender is ``jax.image.resize`` where it computes the same thing as
torch's mode (checked before timing, against fparam and against torch):

  * nearest 2x up: torch's ``nearest`` reads ``floor(i / 2)``, ``jax.image.resize``'s
    ``floor((i + 0.5) / 2)``: the same pixels;
  * nearest-exact 2x down: both read ``floor((i + 0.5) * 2)`` (torch's legacy ``nearest``
    reads ``2 i`` instead, which ``jax.image.resize`` has no mode for);
  * bilinear 2x up and 2x down with ``align_corners=False`` and no antialiasing: both sample at
    half-pixel centres with a triangle kernel (``jax.image.resize(..., antialias=False)`` when
    shrinking).

torch eager runs with its default intra-op threads and with one thread. The runs are interleaved
and the median of the repeats is reported (``_timing.measure``).

Run: ``python benchmarks/resample.py [--steps 10] [--repeats 9] [--batch 8]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

from fparam.nn import functional as F

try:
    import torch
except ImportError:  # the benchmark runs without torch; its columns are left out
    torch = None


def workloads(batch: int) -> list[dict[str, Any]]:
    up = (batch, 32, 64, 64)
    down = (batch, 32, 128, 128)
    return [
        dict(name="nearest 2x up", shape=up, out=(128, 128), mode="nearest", kw={}, raw="nearest"),
        dict(
            name="nearest-exact 2x down",
            shape=down,
            out=(64, 64),
            mode="nearest-exact",
            kw={},
            raw="nearest",
        ),
        dict(
            name="bilinear 2x up",
            shape=up,
            out=(128, 128),
            mode="bilinear",
            kw=dict(align_corners=False),
            raw="bilinear",
        ),
        dict(
            name="bilinear 2x down",
            shape=down,
            out=(64, 64),
            mode="bilinear",
            kw=dict(align_corners=False),
            raw="bilinear",
        ),
    ]


def runners(w: dict[str, Any]) -> tuple[dict[str, Callable[[int], Any]], dict[str, float]]:
    x = jax.random.normal(jax.random.key(0), w["shape"])
    out_shape = w["shape"][:2] + w["out"]

    def fparam_forward(x: jax.Array) -> jax.Array:
        return F.interpolate(x, size=w["out"], mode=w["mode"], **w["kw"])

    def raw_forward(x: jax.Array) -> jax.Array:
        return jax.image.resize(x, out_shape, w["raw"], antialias=False)

    def loss(forward: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
        return lambda x: jnp.mean(forward(x) ** 2)

    fparam_step = jax.jit(jax.value_and_grad(loss(fparam_forward)))
    raw_step = jax.jit(jax.value_and_grad(loss(raw_forward)))

    def run(step: Callable[..., Any]) -> Callable[[int], Any]:
        def go(n: int) -> Any:
            for _ in range(n):
                out = step(x)
            return jax.block_until_ready(out)

        return go

    out: dict[str, Callable[[int], Any]] = {"fparam": run(fparam_step), "raw JAX": run(raw_step)}
    y_f, y_r = np.asarray(jax.jit(fparam_forward)(x)), np.asarray(jax.jit(raw_forward)(x))
    g_f, g_r = np.asarray(fparam_step(x)[1]), np.asarray(raw_step(x)[1])
    checks = {"|fparam - raw| value": float(np.abs(y_f - y_r).max())}
    checks["|fparam - raw| grad"] = float(np.abs(g_f - g_r).max())
    if torch is not None:
        t_x = torch.from_numpy(np.array(x)).requires_grad_(True)

        def torch_step() -> Any:
            t_x.grad = None
            y = torch.nn.functional.interpolate(t_x, size=w["out"], mode=w["mode"], **w["kw"])
            loss = y.pow(2).mean()
            loss.backward()
            return loss

        torch_step()
        checks["|fparam - torch| value"] = float(
            np.abs(
                y_f
                - torch.nn.functional.interpolate(t_x, size=w["out"], mode=w["mode"], **w["kw"])
                .detach()
                .numpy()
            ).max()
        )
        checks["|fparam - torch| grad"] = float(np.abs(g_f - t_x.grad.numpy()).max())

        def run_torch(n: int) -> Any:
            for _ in range(n):
                loss = torch_step()
            return loss.item()

        default = torch.get_num_threads()
        out[f"torch ({default} thr)"] = run_torch
        if default > 1:

            def run_torch_one(n: int) -> Any:
                torch.set_num_threads(1)
                try:
                    return run_torch(n)
                finally:
                    torch.set_num_threads(default)

            out["torch (1 thr)"] = run_torch_one
    for key, err in checks.items():
        if err > 1e-5:
            raise SystemExit(f"{w['name']}: {key} = {err:.2e}: not the same computation")
    return out, checks


def main(steps: int, repeats: int, batch: int) -> None:
    print(f"jax {jax.__version__}" + ("" if torch is None else f", torch {torch.__version__}"))
    print("ms per step (forward + input gradient), medians; ratio = fparam / raw JAX\n")
    rows = []
    for w in workloads(batch):
        run, checks = runners(w)
        times = measure(run, steps, repeats)
        rows.append((w, times, checks))
        cells = "  ".join(f"{k} {v * 1e3:8.2f}" for k, v in times.items())
        ratio = times["fparam"] / times["raw JAX"]
        print(f"{w['name']:24s} {w['shape']} -> {w['out']}: {cells}  ratio {ratio:.2f}")
        print("    max abs differences: " + ", ".join(f"{k} {v:.1e}" for k, v in checks.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    main(args.steps, args.repeats, args.batch)
