"""Per-step cost of a jitted train step with ``optim.Adam`` against the same update in raw JAX
and with ``optax.adam``.

The workloads of ``step_overhead.py``: (a) the README's seed model (tiny: the time is dispatch
overhead) and (b) a 24-layer ``Linear(128, 128)`` + ``ReLU`` MLP, batch 64. Each step is the full
forward, backward and Adam update (torch's defaults: betas (0.9, 0.999), eps 1e-8, lr 1e-3).

"raw JAX" is the same computation on a dict of arrays: ``jax.tree.map`` updates of ``exp_avg`` and
``exp_avg_sq``, a float32 step count, the bias corrections from it, and lr, betas and eps passed
as arguments (as fparam's are leaves). "optax" is ``optax.adam(1e-3)`` on the same dict (its
hyperparameters are constants of the compiled step). Runs interleave; medians are reported.

Run: ``python benchmarks/optimizers.py [--steps 200] [--repeats 15]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from _timing import measure
from step_overhead import log_softmax_ce, mlp_workload, seed_workload

from fparam import nn, optim

LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


def fparam_runner(w: dict[str, Any]) -> Callable[[int], Any]:
    criterion = nn.CrossEntropyLoss()
    opt = optim.Adam(w["model"].parameters(), lr=LR, betas=BETAS, eps=EPS)

    @jax.jit
    def step(model: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    state = [w["model"], opt]

    def run(n: int) -> Any:
        model, opt = state
        for _ in range(n):
            model, opt, loss = step(model, opt, w["x"], w["y"])
        state[:] = [model, opt]
        return jax.block_until_ready(loss)

    return run


def raw_runner(w: dict[str, Any]) -> Callable[[int], Any]:
    forward = w["raw_forward"]

    @jax.jit
    def step(params: Any, m: Any, v: Any, count: Any, hyper: Any, x: Any, y: Any) -> Any:
        lr, b1, b2, eps = hyper
        loss, grads = jax.value_and_grad(lambda p: log_softmax_ce(forward(p, x), y))(params)
        count = count + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        step_size = lr / (1 - b1**count)
        bc2_sqrt = jnp.sqrt(1 - b2**count)
        params = jax.tree.map(
            lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / bc2_sqrt + eps), params, m, v
        )
        return params, m, v, count, loss

    zeros = jax.tree.map(jnp.zeros_like, w["params"])
    hyper = jnp.asarray([LR, *BETAS, EPS], jnp.float32)
    state = [w["params"], zeros, zeros, jnp.zeros((), jnp.float32)]

    def run(n: int) -> Any:
        params, m, v, count = state
        for _ in range(n):
            params, m, v, count, loss = step(params, m, v, count, hyper, w["x"], w["y"])
        state[:] = [params, m, v, count]
        return jax.block_until_ready(loss)

    return run


def optax_runner(w: dict[str, Any]) -> Callable[[int], Any] | None:
    try:
        import optax
    except ImportError:
        return None
    forward = w["raw_forward"]
    tx = optax.adam(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS)

    @jax.jit
    def step(params: Any, opt_state: Any, x: Any, y: Any) -> Any:
        loss, grads = jax.value_and_grad(lambda p: log_softmax_ce(forward(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = [w["params"], tx.init(w["params"])]

    def run(n: int) -> Any:
        params, opt_state = state
        for _ in range(n):
            params, opt_state, loss = step(params, opt_state, w["x"], w["y"])
        state[:] = [params, opt_state]
        return jax.block_until_ready(loss)

    return run


def main(steps: int = 200, repeats: int = 15) -> list[tuple[str, dict[str, float]]]:
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {steps} steps x {repeats} repeats"
    )
    results = []
    for workload in (seed_workload(), mlp_workload()):
        runners = {"fparam Adam": fparam_runner(workload), "raw JAX Adam": raw_runner(workload)}
        optax_run = optax_runner(workload)
        if optax_run is not None:
            runners["optax.adam"] = optax_run
        medians = measure(runners, steps, repeats)
        results.append((workload["name"], medians))
        base = medians["raw JAX Adam"]
        print(f"\n{workload['name']}")
        print(f"  {'':14s} {'µs/step':>10s} {'/ raw JAX':>10s}")
        for name, t in medians.items():
            print(f"  {name:14s} {t * 1e6:10.1f} {t / base:10.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    main(args.steps, args.repeats)
