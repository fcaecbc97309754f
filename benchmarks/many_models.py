"""Many fresh models of one architecture through one jitted train step: compiles and memory.

A hyperparameter sweep, k-fold training or evaluating many checkpoints builds a new model for
each run. Each contender builds ``--models`` fresh models (fparam: ``nn.Sequential`` of
``Linear``/``Tanh`` with ``optim.SGD``; raw JAX: the same MLP as a dict of arrays with a
hand-written momentum update) and calls one jitted train step on each. Printed per contender:
traces, XLA compiles, seconds, and the growth of the process's peak resident memory between the
first tenth of the models and the last (flat when the compiled step is reused).

    python benchmarks/many_models.py --models 500

Each contender runs in a fresh process so that the memory figures are its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CONTENDERS = {
    "fparam": """
        import fparam
        from fparam import nn, optim
        crit = nn.CrossEntropyLoss()

        @jax.jit
        def step(m, o, x, y):
            count["traces"] += 1
            loss, g = fparam.value_and_grad(lambda m: crit(m(x), y))(m)
            m, o = o.step(m, g)
            return m, o, loss

        def run(i):
            fparam.manual_seed(i)
            m = nn.Sequential(nn.Linear(32, 48), nn.Tanh(), nn.Linear(48, 10))
            o = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
            return step(m, o, x, y)[2]
    """,
    "raw JAX": """
        def forward(p, x):
            return jnp.tanh(x @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

        @jax.jit
        def step(p, buf, x, y):
            count["traces"] += 1
            def loss_fn(p):
                logp = jax.nn.log_softmax(forward(p, x))
                return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))
            loss, g = jax.value_and_grad(loss_fn)(p)
            buf = jax.tree.map(lambda b, g: 0.9 * b + g, buf, g)
            p = jax.tree.map(lambda p, b: p - 0.1 * b, p, buf)
            return p, buf, loss

        def run(i):
            k = jax.random.split(jax.random.key(i), 4)
            p = {"w1": jax.random.uniform(k[0], (48, 32), minval=-0.17, maxval=0.17),
                 "b1": jax.random.uniform(k[1], (48,), minval=-0.17, maxval=0.17),
                 "w2": jax.random.uniform(k[2], (10, 48), minval=-0.14, maxval=0.14),
                 "b2": jax.random.uniform(k[3], (10,), minval=-0.14, maxval=0.14)}
            buf = jax.tree.map(jnp.zeros_like, p)
            return step(p, buf, x, y)[2]
    """,
}

HARNESS = """
import json, resource, sys, time
import jax, jax.numpy as jnp
from jax import monitoring

count = {{"traces": 0, "compiles": 0}}
monitoring.register_event_duration_secs_listener(
    lambda event, *_, **__: count.__setitem__("compiles", count["compiles"] + 1)
    if event == "/jax/core/compile/backend_compile_duration" else None
)
x = jax.random.normal(jax.random.key(0), (64, 32))
y = jax.random.randint(jax.random.key(1), (64,), 0, 10)
{body}
n = {n}
start = time.perf_counter()
marks = []
for i in range(n):
    run(i).block_until_ready()
    if i + 1 in (max(1, n // 10), n):
        marks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
seconds = time.perf_counter() - start
print(json.dumps({{**count, "seconds": seconds, "first_mib": marks[0], "growth_mib": marks[1] - marks[0]}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    args = parser.parse_args()
    print(f"{args.models} fresh models, one jitted train step each (Linear 32-48-10, SGD momentum)")
    print(f"{'':10} {'traces':>7} {'compiles':>9} {'seconds':>8} {'peak RSS':>9} {'growth':>8}")
    for name, body in CONTENDERS.items():
        script = HARNESS.format(body=textwrap.dedent(body), n=args.models)
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:10} {r['traces']:>7} {r['compiles']:>9} {r['seconds']:>8.2f} "
            f"{r['first_mib']:>7.0f}Mi {r['growth_mib']:>6.1f}Mi"
        )


if __name__ == "__main__":
    main()
