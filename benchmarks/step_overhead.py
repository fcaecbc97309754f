"""Per-step overhead of a jitted fparam train step against raw JAX (and torch eager).

Two workloads, each a full train step (forward, backward, momentum-SGD update):

  (a) the seed model of the README: ``x @ weights1 @ weights2`` on (100, 2, 2) inputs with
      cross-entropy over (100, 2) labels — tiny, so the time is dispatch overhead;
  (b) a 24-layer ``Linear(128, 128)`` + ``ReLU`` MLP with a 10-class head, batch 64.

"raw JAX" is the same computation on a dict of arrays under ``jax.jit`` with a
``jax.tree.map`` momentum update (lr and momentum passed as arguments, as fparam's are leaves).
The runs are interleaved (fparam, raw, torch, torch, raw, fparam, ...) and the median of the repeats
is reported, so machine noise hits every contender alike.

``--host-lr`` adds two fparam rows to (a): the lr read (``opt.param_groups[0]['lr']``) or set
at top level after every step, as a torch loop that logs or schedules per batch does.

``--compile`` times the first call instead: trace, lowering and XLA compile of the SGD and Adam
train steps of (b) and of benchmarks/conv.py's CNN, against the same updates in raw JAX (and
optax's Adam), in CPU seconds, best of 7 fresh runs, interleaved (``--repeats`` sets how many).

Run: ``python benchmarks/step_overhead.py [--steps 200] [--repeats 15] [--host-lr] [--compile]``
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

from fparam import nn, optim

LR, MOMENTUM = 0.01, 0.9


def log_softmax_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross entropy with the class on axis 1 (torch's layout), mean over everything else."""
    logp = jax.nn.log_softmax(logits, axis=1)
    picked = jnp.take_along_axis(logp, jnp.expand_dims(labels, 1), axis=1)
    return -jnp.mean(picked)


# --------------------------------------------------------------------------------- workloads


class Seed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weights1 = nn.Parameter(jax.random.normal(jax.random.key(0), (2, 2)))
        self.weights2 = jax.random.normal(jax.random.key(1), (2, 2))

    def forward(self, x: jax.Array) -> jax.Array:
        return x @ self.weights1 @ self.weights2


def seed_workload() -> dict[str, Any]:
    model = Seed()
    x = jax.random.normal(jax.random.key(2), (100, 2, 2))
    y = jax.random.randint(jax.random.key(3), (100, 2), 0, 2)
    weights2 = model.weights2
    params = {"weights1": model.weights1}

    def raw_forward(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return x @ p["weights1"] @ weights2

    torch_model = None
    try:
        import torch

        class TorchSeed(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.weights1 = torch.nn.Parameter(torch.tensor(np.asarray(model.weights1)))
                self.weights2 = torch.tensor(np.asarray(weights2))

            def forward(self, x: Any) -> Any:
                return x @ self.weights1 @ self.weights2

        torch_model = TorchSeed()
    except ImportError:
        pass
    return dict(
        name="(a) seed model",
        model=model,
        params=params,
        raw_forward=raw_forward,
        x=x,
        y=y,
        torch_model=torch_model,
    )


def mlp_workload(depth: int = 24, width: int = 128, batch: int = 64) -> dict[str, Any]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    x = jax.random.normal(jax.random.key(4), (batch, width))
    y = jax.random.randint(jax.random.key(5), (batch,), 0, 10)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    params = {f"{i}": {"w": m.weight, "b": m.bias} for i, m in enumerate(linears)}

    def raw_forward(p: dict[str, Any], x: jax.Array) -> jax.Array:
        h = x
        for i in range(len(p)):
            h = h @ p[str(i)]["w"].T + p[str(i)]["b"]
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        return h

    torch_model = None
    try:
        import torch

        torch_layers: list[Any] = []
        for m in linears:
            lin = torch.nn.Linear(m.in_features, m.out_features)
            lin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
            torch_layers += [lin, torch.nn.ReLU()]
        torch_model = torch.nn.Sequential(*torch_layers[:-1])
    except ImportError:
        pass
    return dict(
        name=f"(b) {depth}-layer MLP, width {width}, batch {batch}",
        model=model,
        params=params,
        raw_forward=raw_forward,
        x=x,
        y=y,
        torch_model=torch_model,
    )


# --------------------------------------------------------------------------------- steps


def fparam_runner(w: dict[str, Any], host_lr: str = "") -> Callable[[int], Any]:
    criterion = nn.CrossEntropyLoss()
    model = w["model"]
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    @jax.jit
    def step(model: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    state = [model, opt]

    def run(n: int) -> Any:
        model, opt = state
        for _ in range(n):
            model, opt, loss = step(model, opt, w["x"], w["y"])
            if host_lr == "read":
                opt.param_groups[0]["lr"]  # waits for the step: the lr is one of its outputs
            elif host_lr == "set":
                opt.param_groups[0]["lr"] = LR
        state[:] = [model, opt]
        return jax.block_until_ready(loss)

    return run


def raw_runner(w: dict[str, Any]) -> Callable[[int], Any]:
    forward = w["raw_forward"]

    @jax.jit
    def step(params: Any, bufs: Any, lr: Any, momentum: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda p: log_softmax_ce(forward(p, x), y))(params)
        bufs = jax.tree.map(lambda b, g: momentum * b + g, bufs, grads)
        params = jax.tree.map(lambda p, b: p - lr * b, params, bufs)
        return params, bufs, loss

    state = [w["params"], jax.tree.map(jnp.zeros_like, w["params"])]

    def run(n: int) -> Any:
        params, bufs = state
        for _ in range(n):
            params, bufs, loss = step(params, bufs, LR, MOMENTUM, w["x"], w["y"])
        state[:] = [params, bufs]
        return jax.block_until_ready(loss)

    return run


def torch_runner(w: dict[str, Any]) -> Callable[[int], Any] | None:
    if w["torch_model"] is None:
        return None
    import torch

    # One intra-op thread: torch's idle OpenMP workers spin after each op and would steal the
    # cores from the JAX runs interleaved with them (and these workloads are too small to
    # gain from threads).
    torch.set_num_threads(1)
    model = w["torch_model"]
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    criterion = torch.nn.CrossEntropyLoss()
    x = torch.tensor(np.asarray(w["x"]))
    y = torch.tensor(np.asarray(w["y"])).long()

    def run(n: int) -> Any:
        for _ in range(n):
            opt.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    return run


# --------------------------------------------------------------------------------- compile time


def _stages(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[float, float, float]:
    """CPU seconds to trace, lower and XLA-compile ``jax.jit(fn)`` for ``args`` (caches cleared)."""
    jax.clear_caches()
    start = time.process_time()
    traced = jax.jit(fn).trace(*args)
    traced_at = time.process_time()
    lowered = traced.lower()
    lowered_at = time.process_time()
    lowered.compile()
    return traced_at - start, lowered_at - traced_at, time.process_time() - lowered_at


def _best_stages(
    contenders: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]], repeats: int
) -> dict[str, tuple[float, ...]]:
    """Each contender's fastest of ``repeats`` fresh first calls, the contenders interleaved
    (a, b, c, a, b, c, ...) so that other work on the machine hits them alike."""
    best: dict[str, tuple[float, ...]] = {}
    for _ in range(repeats):
        for name, (fn, args) in contenders.items():
            times = _stages(fn, args)
            best[name] = min(best.get(name, (float("inf"),) * 3), times, key=sum)
    return best


def cnn_compile_workload() -> dict[str, Any]:
    """benchmarks/conv.py's CNN (three convolutions and a linear head), batch 64."""
    from conv import cnn_data, cnn_raw_forward, make_cnn

    model = make_cnn()
    x, y = cnn_data()
    params = {k: v for k, v in model.state_dict().items()}
    return dict(name="CNN of benchmarks/conv.py", model=model, params=params,
                raw_forward=cnn_raw_forward, x=x, y=y)  # fmt: skip


def compile_times(w: dict[str, Any], repeats: int) -> dict[str, tuple[float, ...]]:
    """The first call's cost of each train step, by stage: fparam's SGD and Adam steps against
    the same updates written in raw JAX (hyperparameters passed as arguments, as fparam's are
    leaves), and optax's Adam when installed."""
    criterion = nn.CrossEntropyLoss()
    forward = w["raw_forward"]
    model, x, y = w["model"], w["x"], w["y"]

    def fparam_step(model: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    def raw_grads(params: Any, x: jax.Array, y: jax.Array) -> Any:
        return jax.value_and_grad(lambda p: log_softmax_ce(forward(p, x), y))(params)

    def raw_sgd(params: Any, bufs: Any, lr: Any, momentum: Any, x: Any, y: Any) -> Any:
        loss, grads = raw_grads(params, x, y)
        bufs = jax.tree.map(lambda b, g: momentum * b + g, bufs, grads)
        return jax.tree.map(lambda p, b: p - lr * b, params, bufs), bufs, loss

    def raw_adam(params: Any, m: Any, v: Any, count: Any, hyper: Any, x: Any, y: Any) -> Any:
        lr, beta1, beta2, eps = hyper
        loss, grads = raw_grads(params, x, y)
        count = count + 1
        m = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, m, grads)
        v = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grads)
        step_size = lr / (1 - beta1**count)
        root = jnp.sqrt(1 - beta2**count)
        params = jax.tree.map(
            lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root + eps), params, m, v
        )
        return params, m, v, count, loss

    params = w["params"]
    zeros = jax.tree.map(jnp.zeros_like, params)
    f32 = jnp.float32
    hyper = (f32(LR), f32(0.9), f32(0.999), f32(1e-8))
    contenders: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "fparam SGD": (
            fparam_step,
            (model, optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM), x, y),
        ),
        "raw JAX SGD": (raw_sgd, (params, zeros, f32(LR), f32(MOMENTUM), x, y)),
        "fparam Adam": (fparam_step, (model, optim.Adam(model.parameters(), lr=LR), x, y)),
        "raw JAX Adam": (raw_adam, (params, zeros, zeros, f32(0), hyper, x, y)),
    }
    try:
        import optax
    except ImportError:
        return _best_stages(contenders, repeats)
    tx = optax.adam(LR)

    def optax_adam(params: Any, state: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = raw_grads(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    contenders["optax Adam"] = (optax_adam, (params, tx.init(params), x, y))
    return _best_stages(contenders, repeats)


def print_compile_times(repeats: int = 3) -> None:
    for workload in (mlp_workload(), cnn_compile_workload()):
        times = compile_times(workload, repeats)
        print(f"\n{workload['name']}: first call, CPU seconds (best of {repeats})")
        header = f"{'trace':>7s} {'lower':>7s} {'compile':>8s} {'total':>7s} {'/ raw':>6s}"
        print(f"  {'':13s} {header}")
        for name, (t, lo, c) in times.items():
            total = t + lo + c
            base = sum(times["raw JAX Adam" if "Adam" in name else "raw JAX SGD"])
            print(f"  {name:13s} {t:7.2f} {lo:7.2f} {c:8.2f} {total:7.2f} {total / base:6.2f}")


def main(
    steps: int = 200, repeats: int = 15, host_lr: bool = False
) -> list[tuple[str, dict[str, float]]]:
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {steps} steps x {repeats} repeats"
    )
    results = []
    workloads = [seed_workload(), mlp_workload()]
    for workload in workloads:
        runners = {"fparam": fparam_runner(workload), "raw JAX": raw_runner(workload)}
        if host_lr and workload is workloads[0]:
            runners["fparam, lr read"] = fparam_runner(workload, "read")
            runners["fparam, lr set"] = fparam_runner(workload, "set")
        torch_run = torch_runner(workload)
        if torch_run is not None:
            runners["torch eager"] = torch_run
        medians = measure(runners, steps, repeats)
        results.append((workload["name"], medians))
        base = medians["raw JAX"]
        print(f"\n{workload['name']}")
        print(f"  {'':16s} {'µs/step':>10s} {'/ raw JAX':>10s}")
        for name, t in medians.items():
            print(f"  {name:16s} {t * 1e6:10.1f} {t / base:10.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--host-lr", action="store_true", help="(a) with the lr read/set per step")
    parser.add_argument(
        "--compile", action="store_true", help="time trace, lowering and compile instead"
    )
    args = parser.parse_args()
    if args.compile:
        print_compile_times(args.repeats if args.repeats != 15 else 7)
    else:
        main(args.steps, args.repeats, args.host_lr)
