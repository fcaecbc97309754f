"""Train the digits CNN over every device present, with a placement plan (``fparam.distributed``).

The CNN of ``examples/train_digits_cnn.py`` with a two-Linear classifier, on a
``data`` x ``model`` mesh built from ``jax.device_count()``:

* ``--plan dp``: data parallelism (torch's DDP): parameters replicated, the batch split over
  ``data``; the gradient all-reduce comes from JAX's partitioner.
* ``--plan fsdp``: ``fully_shard`` (FSDP / ZeRO-3): every parameter and its optimizer state
  split over ``data`` too; gathered where a layer needs it.
* ``--plan tp``: tensor parallelism: ``parallelize_module`` splits the classifier's first Linear
  by output features (``ColwiseParallel``) and the second by input features
  (``RowwiseParallel``) over ``model``; the batch is not split.
* ``--plan 2d``: both on a (devices/2, 2) mesh: tensor-parallel classifier, ``fully_shard``
  over ``data``, batch over ``data``.

The training step is the one-device step, unchanged: ``jit`` partitions it by the placement of
its inputs. It prints the device count, the mesh, compile time, time per step and held-out
accuracy after the default 20 epochs (measured: 99.2 % with ``dp`` on one device; on 8
simulated devices 99.2 % with ``fsdp``, 98.9 % with ``tp`` and ``2d``).

Run::

    python examples/train_digits_sharded.py --plan fsdp            # the devices present
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python examples/train_digits_sharded.py --plan 2d          # 8 simulated CPU devices

Many processes (one per host, or several on one machine: here two with 4 CPU devices each form
one 8-device job; start both, in two shells)::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/train_digits_sharded.py \\
        --plan fsdp --coordinator localhost:1234 --num-processes 2 --process-id 0
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/train_digits_sharded.py \\
        --plan fsdp --coordinator localhost:1234 --num-processes 2 --process-id 1

Each process loads the whole dataset, draws the same shuffles (same seed), and feeds its own
share of every global batch (torch's ``DistributedSampler``).
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fparam
from fparam import nn, optim
from fparam.distributed import (
    ColwiseParallel,
    RowwiseParallel,
    distribute,
    fully_shard,
    parallelize_module,
)

PLANS = ("dp", "fsdp", "tp", "2d")


class CNN(nn.Module):
    """8x8 -> conv 32 -> conv 64 -> stride-2 conv 64 (4x4) -> linear 128 -> linear 10."""

    def __init__(self, classes: int = 10, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: jax.Array) -> jax.Array:
        return self.classifier(self.features(x))


def load_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, 1, 8, 8) float32 images, standardised with the training set's mean and std."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def random_shift(key: jax.Array, images: jax.Array, fill: float) -> jax.Array:
    """Shift each image by -1, 0 or 1 pixel along each axis; ``fill`` enters at the border."""
    n, c, h, w = images.shape
    padded = jnp.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    shifts = jax.random.randint(key, (n, 2), 0, 3)

    def crop(image: jax.Array, shift: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (0, shift[0], shift[1]), (c, h, w))

    return jax.vmap(crop)(padded, shifts)


def make_mesh(plan: str, devices: int) -> Mesh:
    """A ``data`` x ``model`` mesh over all devices, shaped for the plan."""
    if plan == "tp":
        shape = (1, devices)
    elif plan == "2d" and devices % 2 == 0:
        shape = (devices // 2, 2)
    else:
        shape = (devices, 1)
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh(shape, ("data", "model"), axis_types=(auto, auto))


def place(model: CNN, plan: str, mesh: Mesh) -> CNN:
    """Put the model's parameters where the plan says (in place)."""
    tensor_parallel = {"classifier.1": ColwiseParallel(), "classifier.3": RowwiseParallel()}
    if plan == "dp":
        return distribute(model, mesh)  # every array replicated
    if plan == "fsdp":
        return fully_shard(model, mesh=mesh, axis="data")
    parallelize_module(model, mesh, tensor_parallel, mesh_axis="model")
    if plan == "2d":
        fully_shard(model, mesh=mesh, axis="data")
    return model


def global_batch(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """One global array from the rows this process feeds (all of them in a one-process job)."""
    if sharding.is_fully_replicated:
        return jax.make_array_from_process_local_data(sharding, array)
    share = len(array) // jax.process_count()
    start = jax.process_index() * share
    return jax.make_array_from_process_local_data(
        sharding, array[start : start + share], array.shape
    )


def main(
    plan: str = "fsdp",
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.05,
    max_batches: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    if plan not in PLANS:
        raise ValueError(f"--plan must be one of {PLANS}, got {plan!r}")
    devices = jax.device_count()
    mesh = make_mesh(plan, devices)
    data = mesh.shape["data"]
    # A global batch every data-parallel device (and process) gets an equal share of.
    batch_size = math.lcm(data, jax.process_count()) * max(
        1, round(batch_size / math.lcm(data, jax.process_count()))
    )

    fparam.manual_seed(seed)  # every process builds the same initial model
    x_train, x_test, y_train, y_test = load_images(seed)
    background = float(x_train.min())
    model = place(CNN(), plan, mesh)
    criterion = nn.CrossEntropyLoss()
    # Optimizer state is born with each parameter's placement.
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = len(x_train) // batch_size
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)

    @jax.jit
    def train_step(model, opt, step, key, x, y):
        opt = schedule.apply(opt, step)
        x = random_shift(key, x, background)
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    @jax.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), axis=1) == y)

    split = NamedSharding(mesh, PartitionSpec("data"))
    whole = NamedSharding(mesh, PartitionSpec())
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    step = 0
    compile_s = 0.0
    timed_steps, timed_s = 0, 0.0
    loss = None
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        count = steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        start = time.perf_counter()
        for b in range(count):
            idx = order[b * batch_size : (b + 1) * batch_size]
            key, shift_key = jax.random.split(key)
            x, y = global_batch(x_train[idx], split), global_batch(y_train[idx], split)
            if step == 0:
                first = time.perf_counter()
                model, opt, loss = train_step(model, opt, step, shift_key, x, y)
                jax.block_until_ready(loss)
                compile_s = time.perf_counter() - first  # compile and one step
                start = time.perf_counter()
            else:
                model, opt, loss = train_step(model, opt, step, shift_key, x, y)
                timed_steps += 1
            step += 1
        jax.block_until_ready(loss)
        timed_s += time.perf_counter() - start

    acc = accuracy(model, global_batch(x_test, whole), global_batch(y_test, whole))
    # Replicated: every process holds the value; a multi-process array is read by its shard.
    test_acc = float(acc.addressable_shards[0].data)
    per_step_ms = 1000 * timed_s / max(timed_steps, 1)
    if jax.process_index() == 0:
        print(
            f"plan {plan}: {devices} {jax.devices()[0].platform} device(s) in "
            f"{jax.process_count()} process(es), mesh {dict(mesh.shape)}, global batch {batch_size}"
        )
        spec = model.classifier[1].weight.sharding.spec
        print(f"classifier.1.weight {tuple(model.classifier[1].weight.shape)} placed as {spec}")
        print(f"first step (compile) {compile_s:.2f} s; {per_step_ms:.2f} ms per step")
        print(f"held-out accuracy: {test_acc:.4f} ({len(x_test)} images, {step} steps)")
    return {"test_acc": test_acc, "ms_per_step": per_step_ms, "compile_s": compile_s}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=PLANS, default="fsdp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--max-batches", type=int, default=None, help="per epoch (a quick run)")
    parser.add_argument("--coordinator", help="host:port of process 0, for a multi-process job")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()
    if args.coordinator is not None:
        # Before any other JAX call: the job's devices are all processes' devices together.
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    main(args.plan, args.epochs, args.batch_size, args.lr, args.max_batches)
