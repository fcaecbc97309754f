"""Checkpoint write / read time of an FSDP-sharded model: one file vs a sharded directory vs orbax.

    python benchmarks/sharded_checkpoint.py --layers 16 --width 1024 --repeats 5

Runs on 8 simulated CPU devices (sets ``XLA_FLAGS`` itself when it is not set). The model is
``layers`` x ``Linear(width, width)`` with every weight and bias split over its first axis
(FSDP). Contenders, each timed from the call to arrays ready on their devices:

- write: ``fparam.save`` (one file: every shard copied to the host, one writer),
  ``fparam.distributed.save_sharded`` (each distinct piece written once from its device),
  orbax ``StandardCheckpointer`` (when installed).
- read into the sharded model: ``fparam.load`` + ``load_state_dict`` (everything staged on
  device 0, then resharded), ``fparam.load(like=model)`` + ``load_state_dict`` and
  ``load_sharded(like=model)`` + ``load_state_dict`` (each device reads its slice), orbax
  ``restore`` into the sharded abstract tree.

The directory defaults to a fresh temporary directory (``--dir`` to put it on another disk).
Every save fsyncs, so the write times include the disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import numpy as np
from _timing import measure
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import fparam
import fparam.distributed
from fparam import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    devices = jax.device_count()
    mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    fsdp = NamedSharding(mesh, P("data"))
    model = nn.Sequential(*(nn.Linear(args.width, args.width) for _ in range(args.layers)))
    # Placed from the host: each device receives its slice.
    model = jax.tree.map(lambda a: jax.device_put(np.asarray(a), fsdp), model)
    size = sum(v.nbytes for v in model.state_dict().values())
    root = Path(args.dir or tempfile.mkdtemp(prefix="fparam-ckpt-"))
    root.mkdir(parents=True, exist_ok=True)
    one, sharded = root / "model.safetensors", root / "sharded"

    try:
        import orbax.checkpoint as ocp
    except ImportError:  # pragma: no cover - an optional contender
        ocp = None
    checkpointer = ocp.StandardCheckpointer() if ocp else None

    def write_orbax(n: int) -> None:
        for _ in range(n):
            path = root / "orbax"
            shutil.rmtree(path, ignore_errors=True)
            checkpointer.save(path, model)
            checkpointer.wait_until_finished()

    writers = {
        "fparam.save (one file)": lambda n: [fparam.save(model, one) for _ in range(n)],
        "save_sharded": lambda n: [
            fparam.distributed.save_sharded(model, sharded) for _ in range(n)
        ],
    }
    if checkpointer:
        writers["orbax save"] = write_orbax
    write = measure(writers, steps=1, repeats=args.repeats)

    def into_model(state: dict) -> None:
        model.load_state_dict(state)
        jax.block_until_ready(model)

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, model) if ocp else None
    readers = {
        "fparam.load + load_state_dict": lambda n: [into_model(fparam.load(one)) for _ in range(n)],
        "fparam.load(like=) + load_state_dict": lambda n: [
            into_model(fparam.load(one, like=model)) for _ in range(n)
        ],
        "load_sharded(like=) + load_state_dict": lambda n: [
            into_model(fparam.distributed.load_sharded(sharded, like=model)) for _ in range(n)
        ],
    }
    if checkpointer:
        readers["orbax restore"] = lambda n: [
            jax.block_until_ready(checkpointer.restore(root / "orbax", abstract)) for _ in range(n)
        ]
    read = measure(readers, steps=1, repeats=args.repeats)

    print(
        f"{args.layers} x Linear({args.width}, {args.width}), {size / 2**20:.0f} MiB, FSDP over "
        f"{devices} devices; medians of {args.repeats}; directory {root}"
    )
    print("\n| write | ms | vs fparam.save |\n|---|---:|---:|")
    base = write["fparam.save (one file)"]
    for name, t in write.items():
        print(f"| {name} | {t * 1e3:.0f} | {t / base:.2f} |")
    print("\n| read into the sharded model | ms | vs fparam.load |\n|---|---:|---:|")
    base = read["fparam.load + load_state_dict"]
    for name, t in read.items():
        print(f"| {name} | {t * 1e3:.0f} | {t / base:.2f} |")
    print(
        f"\nbytes placed on device 0 by a load: {size / 2**20:.0f} MiB with fparam.load "
        f"(then resharded), {size / devices / 2**20:.0f} MiB with like= / load_sharded"
    )
    if checkpointer:
        checkpointer.close()
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
