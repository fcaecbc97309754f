"""Train a CNN with BatchNorm and Dropout on scikit-learn's bundled digits (no download).

The 8x8 grey-level digits as (N, 1, 8, 8) images (torch's NCHW layout), scaled with the training
set's mean and std, 10 classes, a stratified 80/20 split with a fixed seed. Conv2d-BatchNorm2d-ReLU
blocks, ``Dropout`` before the classifier. The train step is the jitted step of the README, as
it is written for torch's model: the Dropout masks come from the key of ``fparam.rng(key)`` (a
fresh one each step), and the BatchNorm running statistics updated by the forward come back in
the model returned by ``opt.step``. Random one-pixel shifts (augmentation) are drawn outside the
step; a cosine learning-rate schedule steps once per epoch at top level, as in torch. After training, ``model.eval()`` switches to the running statistics and turns Dropout off;
held-out accuracy is printed, and the loss and accuracy curves are saved as a PNG. The same
script runs unchanged on CPU or GPU.

Run: ``python examples/train_digits_bn.py [--epochs 15] [--out examples/out]``
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


class BNCNN(nn.Module):
    """8x8 -> conv-BN 32 -> conv-BN 64 -> stride-2 conv-BN 64 (4x4) -> dropout -> linear 10."""

    def __init__(self, classes: int = 10, width: int = 32, p: float = 0.25) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            # No conv bias: the BatchNorm that follows subtracts it again.
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(1, width), *block(width, 2 * width), *block(2 * width, 2 * width, stride=2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(p), nn.Linear(2 * width * 4 * 4, classes)
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


@jax.jit
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
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train, train mode (epoch mean)")
    ax_loss.set_yscale("log")  # the first epochs and the last ones on one axis
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    ax_acc.plot(epochs, history["train_acc"], marker=".", label="train images, eval mode")
    final = history["test_acc"][-1]
    ax_acc.plot(
        epochs, history["test_acc"], marker=".", label=f"held-out, eval mode (final {final:.3f})"
    )
    ax_acc.set_ylim(0.0, 1.0)  # the full range: nothing hidden below a floor
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy (running statistics, no dropout)")
    ax_acc.legend(loc="lower right")
    fig.suptitle("fparam CNN with BatchNorm2d and Dropout on scikit-learn digits")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 0.05,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
    width: int = 32,
    shift: bool = True,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_images(seed)
    background = float(x_train.min())  # a blank pixel after standardisation
    model = BNCNN(width=width)
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    # Per epoch, at top level as in torch: the lr is a leaf, a new value never recompiles.
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    @jax.jit
    def train_step(model, opt, x, y, key):
        with fparam.rng(key):  # the Dropout masks of this step come from this key
            loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)  # carries the new running statistics too
        return model, opt, loss

    predict = jax.jit(lambda m, x: m(x))

    def accuracy(model: BNCNN, x: np.ndarray, y: np.ndarray) -> float:
        return float(jnp.mean(jnp.argmax(predict(model, x), axis=1) == y))

    history: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "test_acc": []}
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    shift_key = jax.random.key(seed + 1)
    steps_per_epoch = len(x_train) // batch_size
    step = 0
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="epochs", disable=None):
        model.train()
        order = rng.permutation(len(x_train))
        losses = []
        batches = range(
            steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        )
        for b in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=None):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x, y = x_train[idx], y_train[idx]
            if shift:
                x = random_shift(jax.random.fold_in(shift_key, step), x, background)
            model, opt, loss = train_step(model, opt, x, y, jax.random.fold_in(key, step))
            losses.append(loss)
            step += 1
        opt = schedule.step(opt)
        history["train_loss"].append(float(np.mean(jax.device_get(losses))))
        model.eval()  # running statistics, no dropout; a second compiled program, kept
        history["train_acc"].append(accuracy(model, x_train, y_train))
        history["test_acc"].append(accuracy(model, x_test, y_test))
    elapsed = time.perf_counter() - start

    test_acc = history["test_acc"][-1]
    print(f"device: {jax.devices()[0].platform}; {step} steps in {elapsed:.1f} s")
    print(f"final train loss {history['train_loss'][-1]:.4f}")
    print(f"batches tracked by the first BatchNorm: {int(model.features[1].num_batches_tracked)}")
    print(f"held-out accuracy: {test_acc:.4f} ({len(x_test)} images)")
    path = Path(out) / "train_digits_bn_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.out)
