"""Train a small CNN on scikit-learn's bundled handwritten digits (no download) with fparam.

The 8x8 grey-level digits as (N, 1, 8, 8) images (torch's NCHW layout), 10 classes, a
stratified 80/20 split with a fixed seed. ``Conv2d``/``ReLU``/``Flatten``/``Linear`` layers
with torch's signatures; a jitted train step (random one-pixel shifts as augmentation, forward,
backward, momentum SGD) with a cosine learning-rate schedule applied inside the step. It prints
held-out accuracy and saves the loss and accuracy curves as a PNG. The same script runs
unchanged on CPU or GPU.

Run: ``python examples/train_digits_cnn.py [--epochs 30] [--out examples/out]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import fparam
from fparam import nn, optim


class CNN(nn.Module):
    """8x8 -> conv 32 -> conv 64 -> stride-2 conv 64 (4x4) -> linear 10."""

    def __init__(self, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 4 * 4, classes))

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


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train (epoch mean)")
    ax_loss.set_yscale("log")  # the first epochs and the last ones on one axis
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    ax_acc.plot(
        epochs, history["train_acc"], marker=".", label="train, shifted images (epoch mean)"
    )
    final = history["test_acc"][-1]
    ax_acc.plot(epochs, history["test_acc"], marker=".", label=f"held-out (final {final:.3f})")
    ax_acc.set_ylim(0.0, 1.0)  # the full range: nothing hidden below a floor
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle("fparam CNN on scikit-learn digits")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 0.05,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
    width: int = 32,
    weight_decay: float = 5e-4,
    shift: bool = True,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_images(seed)
    background = float(x_train.min())  # a blank pixel after standardisation
    model = CNN(width=width)
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = len(x_train) // batch_size
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)

    @jax.jit
    def train_step(model, opt, step, key, x, y):
        opt = schedule.apply(opt, step)  # the lr is a leaf: a new value never recompiles
        if shift:
            x = random_shift(key, x, background)

        def loss_fn(model):
            logits = model(x)
            return criterion(logits, y), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss, jnp.mean(jnp.argmax(logits, axis=1) == y)

    @jax.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), axis=1) == y)

    history: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "test_acc": []}
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    step = 0
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="epochs", disable=None):
        order = rng.permutation(len(x_train))
        losses, accs = [], []
        batches = range(
            steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        )
        for b in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=None):
            idx = order[b * batch_size : (b + 1) * batch_size]
            key, shift_key = jax.random.split(key)
            model, opt, loss, acc = train_step(
                model, opt, step, shift_key, x_train[idx], y_train[idx]
            )
            losses.append(loss)
            accs.append(acc)
            step += 1
        history["train_loss"].append(float(np.mean(jax.device_get(losses))))
        history["train_acc"].append(float(np.mean(jax.device_get(accs))))
        history["test_acc"].append(float(accuracy(model, x_test, y_test)))
    elapsed = time.perf_counter() - start

    test_acc = history["test_acc"][-1]
    print(f"device: {jax.devices()[0].platform}; {step} steps in {elapsed:.1f} s")
    print(f"final train loss {history['train_loss'][-1]:.4f}")
    print(f"held-out accuracy: {test_acc:.4f} ({len(x_test)} images)")
    path = Path(out) / "train_digits_cnn_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.out)
