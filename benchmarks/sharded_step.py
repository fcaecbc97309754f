"""Step time of the digits CNN on 1, 2, 4 and 8 devices: fparam with a placement plan against
raw JAX with hand-built shardings.

The model is examples/train_digits_sharded.py's CNN (three 3x3 convolutions 32/64/64, Linear
1024 -> 128 -> 10), global batch 64 split over the ``data`` axis, momentum SGD. Two plans:

* ``dp``: parameters replicated (``fparam.distributed.distribute(model, mesh)``);
* ``fsdp``: every parameter split over ``data`` on its first divisible dimension
  (``fparam.distributed.fully_shard``).

"raw JAX" is the same computation on a dict of arrays (``lax.conv_general_dilated``,
``x @ w.T + b``, log-softmax cross entropy, a ``jax.tree.map`` momentum update with lr and
momentum passed as arguments, as fparam's are leaves), its parameters and momentum placed by
``jax.device_put`` with ``NamedSharding`` trees written by hand. Each device count runs in its
own child process (``XLA_FLAGS=--xla_force_host_platform_device_count=N``; JAX fixes the
device count at start-up); within a child the four steps (2 plans x 2 implementations) are
interleaved and the median of the repeats reported. First-call time (trace, lower, compile and
one step) is measured per step function.

Run: ``python benchmarks/sharded_step.py [--counts 1 2 4 8] [--steps 20] [--repeats 7] [--wall]``
(``--wall``: wall time; default CPU seconds of the process, all threads, which other jobs on a
shared machine disturb less).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

LR, MOMENTUM, BATCH = 0.05, 0.9, 64


def child(steps: int, repeats: int, wall: bool) -> dict[str, Any]:
    from _timing import measure
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import fparam
    from fparam import nn, optim
    from fparam.distributed import distribute, fully_shard

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from train_digits_sharded import CNN

    devices = jax.device_count()
    mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32)
    y_host = rng.integers(0, 10, BATCH).astype(np.int32)
    batch = NamedSharding(mesh, P("data"))
    x, y = jax.device_put(x_host, batch), jax.device_put(y_host, batch)

    fparam.manual_seed(0)
    init = {k: np.asarray(v) for k, v in CNN().state_dict().items()}
    criterion = nn.CrossEntropyLoss()

    def fparam_step(model, opt, x, y):
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    def first_divisible(shape: tuple[int, ...]) -> P:
        # What fully_shard does, written by hand for the raw contender.
        for dim, size in enumerate(shape):
            if size % devices == 0:
                return P(*([None] * dim), "data")
        return P()

    def raw_forward(params, x):
        for i in range(3):
            stride = 2 if i == 2 else 1
            x = jax.lax.conv_general_dilated(
                x,
                params[f"conv{i}.weight"],
                (stride, stride),
                ((1, 1), (1, 1)),
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
            )
            x = jax.nn.relu(x + params[f"conv{i}.bias"][None, :, None, None])
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(x @ params["fc1.weight"].T + params["fc1.bias"])
        return x @ params["fc2.weight"].T + params["fc2.bias"]

    def raw_loss(params, x, y):
        logp = jax.nn.log_softmax(raw_forward(params, x), axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def raw_step(params, momentum, lr, mu, x, y):
        loss, grads = jax.value_and_grad(raw_loss)(params, x, y)
        momentum = jax.tree.map(lambda b, g: mu * b + g, momentum, grads)
        params = jax.tree.map(lambda p, b: p - lr * b, params, momentum)
        return params, momentum, loss

    names = {
        "features.0": "conv0",
        "features.2": "conv1",
        "features.4": "conv2",
        "classifier.1": "fc1",
        "classifier.3": "fc2",
    }
    raw_init = {}
    for key, value in init.items():
        module, leaf = key.rsplit(".", 1)
        raw_init[f"{names[module]}.{leaf}"] = value

    clock = time.perf_counter if wall else time.process_time
    runners, first_call, states = {}, {}, {}
    for plan in ("dp", "fsdp"):
        model = CNN()
        model.load_state_dict(init)
        if plan == "dp":
            distribute(model, mesh)
        else:
            fully_shard(model, mesh=mesh, axis="data")
        opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        step = jax.jit(lambda *a: fparam_step(*a))
        start = clock()
        model, opt, loss = step(model, opt, x, y)
        jax.block_until_ready(loss)
        first_call[f"fparam {plan}"] = clock() - start
        first_loss = float(loss)
        states[f"fparam {plan}"] = [model, opt]

        def run_fparam(n, step=step, state=states[f"fparam {plan}"]):
            model, opt = state
            for _ in range(n):
                model, opt, loss = step(model, opt, x, y)
            jax.block_until_ready(loss)
            state[:] = [model, opt]

        runners[f"fparam {plan}"] = run_fparam

        if plan == "dp":
            tree = {k: NamedSharding(mesh, P()) for k in raw_init}
        else:
            tree = {k: NamedSharding(mesh, first_divisible(v.shape)) for k, v in raw_init.items()}
        params = jax.device_put(raw_init, tree)
        momentum = jax.device_put({k: np.zeros_like(v) for k, v in raw_init.items()}, tree)
        scalar = NamedSharding(mesh, P())
        lr = jax.device_put(np.float32(LR), scalar)
        mu = jax.device_put(np.float32(MOMENTUM), scalar)
        raw = jax.jit(lambda *a: raw_step(*a))
        start = clock()
        params, momentum, loss = raw(params, momentum, lr, mu, x, y)
        jax.block_until_ready(loss)
        first_call[f"raw {plan}"] = clock() - start
        # The same computation: the same first loss (measured difference 0 to 1e-7).
        assert abs(float(loss) - first_loss) <= 1e-5, (plan, float(loss), first_loss)
        states[f"raw {plan}"] = [params, momentum]

        def run_raw(n, raw=raw, state=states[f"raw {plan}"], lr=lr, mu=mu):
            params, momentum = state
            for _ in range(n):
                params, momentum, loss = raw(params, momentum, lr, mu, x, y)
            jax.block_until_ready(loss)
            state[:] = [params, momentum]

        runners[f"raw {plan}"] = run_raw

    # Same placements on both sides, or the comparison is not of like with like. (On one
    # device every placement is equivalent, and jit returns the first input's spelling.)
    for plan in ("dp", "fsdp") if devices > 1 else ():
        model = states[f"fparam {plan}"][0]
        specs = {
            f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v.sharding.spec
            for k, v in model.state_dict().items()
        }
        raw_specs = {k: v.sharding.spec for k, v in states[f"raw {plan}"][0].items()}
        assert specs == raw_specs, (plan, specs, raw_specs)
    per_step = measure(runners, steps, repeats, clock=clock)
    return {"devices": devices, "per_step": per_step, "first_call": first_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--wall", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.repeats, args.wall)))
        return

    unit = "wall" if args.wall else "CPU"
    print(
        f"digits CNN train step, global batch {BATCH}, momentum SGD; {unit} ms per step "
        f"(median), {unit} s for the first call"
    )
    print(
        f"{'devices':>7} | {'plan':>4} | {'fparam':>8} | {'raw JAX':>8} | {'ratio':>5} | "
        f"{'first call fparam / raw':>23}"
    )
    root = Path(__file__).resolve().parent
    for count in args.counts:
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
        env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(root.parent), str(root), env.get("PYTHONPATH")])
        )
        command = [sys.executable, __file__, "--child", "--steps", str(args.steps)]
        command += ["--repeats", str(args.repeats)] + (["--wall"] if args.wall else [])
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"child with {count} devices failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for plan in ("dp", "fsdp"):
            ours, raw = result["per_step"][f"fparam {plan}"], result["per_step"][f"raw {plan}"]
            first_ours, first_raw = (result["first_call"][f"{k} {plan}"] for k in ("fparam", "raw"))
            print(
                f"{result['devices']:>7} | {plan:>4} | {1000 * ours:8.2f} | {1000 * raw:8.2f} | "
                f"{ours / raw:5.2f} | {first_ours:14.2f} / {first_raw:.2f}"
            )


if __name__ == "__main__":
    main()
