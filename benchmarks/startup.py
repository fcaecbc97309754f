"""Start-up cost: building a model in a fresh process (cold) and again in the same process (warm).

fparam against torch, model for model, in one run. Every cold measurement is a fresh Python
process: it imports the framework (timed apart, and not counted), then times the construction
of the model, including the first use of each initialiser, until the parameters exist on the
device (``jax.block_until_ready``). It then builds the same model ``--warm`` more times and
reports the median (warm). For fparam it also counts the XLA compilations during the cold
build (JAX's monitoring events): building a model should compile nothing.

Models (parameters in torch's layouts and with torch's default initialisation):

- ``resnet18``: the ``Conv2d``/``Linear`` layers of torchvision's ResNet-18 (11.7 M
  parameters, convolutions without bias as there); fparam has no BatchNorm yet, so neither side
  builds it (BatchNorm holds 9.6 k of torchvision's parameters).
- ``transformer``: the ``Linear`` layers of a 6-layer encoder, d_model 512, feed-forward 2048
  (q, k, v and output projections plus the two feed-forward layers per layer, 18.9 M
  parameters); fparam has no attention or LayerNorm module yet, so neither side builds them.
- ``digits_cnn``: the CNN of ``examples/train_digits_cnn.py`` (the example's own class for
  fparam, a torch twin with the same layers).

Run: ``python benchmarks/startup.py [--repeats 5] [--warm 3] [--models resnet18,...]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("resnet18", "transformer", "digits_cnn")

# ResNet-18: (in, out, stride) of each BasicBlock; a 1x1 stride-2 downsample where shapes change.
_RESNET_BLOCKS = [(64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
_RESNET_BLOCKS += [(128, 256, 2), (256, 256, 1), (256, 512, 2), (512, 512, 1)]


def _resnet18(nn: Any) -> Any:
    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)]
    for cin, cout, stride in _RESNET_BLOCKS:
        layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))
        layers.append(nn.Conv2d(cout, cout, 3, padding=1, bias=False))
        if stride != 1 or cin != cout:
            layers.append(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))
    layers.append(nn.Linear(512, 1000))
    return nn.Sequential(*layers)


def _transformer(nn: Any, layers: int = 6, d_model: int = 512, ffn: int = 2048) -> Any:
    stack = []
    for _ in range(layers):
        stack += [nn.Linear(d_model, d_model) for _ in range(4)]  # q, k, v, out
        stack += [nn.Linear(d_model, ffn), nn.Linear(ffn, d_model)]
    return nn.Sequential(*stack)


def _digits_cnn_torch(nn: Any, classes: int = 10, width: int = 32) -> Any:
    # The layers of examples/train_digits_cnn.py's CNN.
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, classes),
    )


def _child(framework: str, model: str, warm: int) -> dict[str, Any]:
    """Runs in the fresh process: import, cold build, warm builds; returns the timings."""
    start = time.perf_counter()
    compiles = [0]
    if framework == "torch":
        import torch

        nn = torch.nn

        def sync(m: Any) -> int:
            return sum(p.numel() for p in m.parameters())

        builders = {"resnet18": _resnet18, "transformer": _transformer}
        build = builders.get(model, _digits_cnn_torch)
        make = lambda: build(nn)  # noqa: E731
    else:
        import jax
        from jax import monitoring

        import fparam  # noqa: F401
        from fparam import nn as fnn

        def on_event(event: str, duration: float, **kwargs: Any) -> None:
            if event.endswith("backend_compile_duration"):
                compiles[0] += 1

        monitoring.register_event_duration_secs_listener(on_event)

        def sync(m: Any) -> int:
            leaves = jax.block_until_ready([p for p in m.parameters()])
            return sum(int(x.size) for x in leaves)

        if model == "digits_cnn":
            sys.path.insert(0, os.path.join(ROOT, "examples"))
            from train_digits_cnn import CNN  # the example's class, imported before timing

            make = CNN
        else:
            build = _resnet18 if model == "resnet18" else _transformer
            make = lambda: build(fnn)  # noqa: E731
    imported = time.perf_counter() - start

    start = time.perf_counter()
    params = sync(make())
    cold = time.perf_counter() - start
    cold_compiles = compiles[0]
    warms = []
    for _ in range(warm):
        start = time.perf_counter()
        sync(make())
        warms.append(time.perf_counter() - start)
    return {
        "import": imported,
        "cold": cold,
        "warm": statistics.median(warms),
        "params": params,
        "compiles": cold_compiles,
    }


def _run_child(framework: str, model: str, warm: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, model, str(warm)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per cell")
    parser.add_argument("--warm", type=int, default=3, help="warm builds per process")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        framework, model, warm = args.child
        print(json.dumps(_child(framework, model, int(warm))))
        return

    models = args.models.split(",")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.repeats):
        for model in models:
            # Alternate which framework goes first, so that machine noise hits both alike.
            order = ("torch", "fparam") if r % 2 == 0 else ("fparam", "torch")
            for framework in order:
                results.setdefault((framework, model), []).append(
                    _run_child(framework, model, args.warm)
                )

    def med(framework: str, model: str, field: str) -> float:
        return statistics.median(run[field] for run in results[(framework, model)])

    print(f"median of {args.repeats} fresh processes; warm = median of {args.warm} rebuilds")
    header = (
        f"{'model':<12} {'params':>7} | {'torch cold':>10} {'fparam cold':>11} {'ratio':>6}"
        f" | {'torch warm':>10} {'fparam warm':>11} {'ratio':>6} | {'compiles':>8}"
        f" | {'import torch':>12} {'import fparam':>13}"
    )
    print(header)
    print("-" * len(header))
    for model in models:
        params = results[("fparam", model)][0]["params"]
        assert params == results[("torch", model)][0]["params"], model
        tc, fc = med("torch", model, "cold"), med("fparam", model, "cold")
        tw, fw = med("torch", model, "warm"), med("fparam", model, "warm")
        compiles = max(run["compiles"] for run in results[("fparam", model)])
        print(
            f"{model:<12} {params / 1e6:>6.2f}M | {tc * 1e3:>8.0f}ms {fc * 1e3:>9.0f}ms"
            f" {fc / tc:>5.1f}x | {tw * 1e3:>8.0f}ms {fw * 1e3:>9.0f}ms {fw / tw:>5.1f}x"
            f" | {compiles:>8d} | {med('torch', model, 'import'):>11.2f}s"
            f" {med('fparam', model, 'import'):>12.2f}s"
        )


if __name__ == "__main__":
    main()
