"""A convolutional autoencoder on scikit-learn's bundled digits (no download) with fparam.

``Conv2d`` layers with stride 2 compress each 8x8 digit (64 pixels) to 8 channels of 2x2 (32 numbers), and
``ConvTranspose2d`` layers (torch's ``output_padding`` rule) bring it back to 8x8 through a
sigmoid; ``MSELoss`` against the input, momentum SGD in a jitted step. Prints the held-out
reconstruction error and saves two PNGs: a grid of held-out digits (top row) and their
reconstructions (below), and the error curves. Runs unchanged on CPU or GPU.

Run: ``python examples/digits_autoencoder.py [--epochs 60] [--out examples/out]``
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


class AutoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),  # 8x8 -> 4x4
            nn.ReLU(),
            nn.Conv2d(16, 8, 3, stride=2, padding=1),  # 4x4 -> 2x2: a 32-number code
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 16, 3, stride=2, padding=1, output_padding=1),  # -> 4x4
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),  # -> 8x8
            nn.Sigmoid(),
        )

    def forward(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))


def save_grid(originals: np.ndarray, reconstructions: np.ndarray, epochs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.4))
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            ax = axes[row, i]
            ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])  # pixels need no ticks; the row label stays visible
            ax.set_yticks([])
    axes[0, 0].set_ylabel("held-out", fontsize=8)
    axes[1, 0].set_ylabel("reconstructed", fontsize=8)
    fig.suptitle(f"Conv autoencoder: held-out digits and their reconstructions ({epochs} epochs)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_curves(history: dict[str, list[float]], baseline: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["train_mse"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["train_mse"], marker=".", label="train (epoch mean)")
    final = history["test_mse"][-1]
    ax.plot(epochs, history["test_mse"], marker=".", label=f"held-out (final {final:.4f})")
    ax.axhline(baseline, color="grey", linestyle="--", label="predicting the mean image")
    ax.set_yscale("log")  # the first epochs and the last ones on one axis
    ax.set_xlabel("epoch")
    ax.set_ylabel("reconstruction MSE (log scale)")
    ax.set_title("Conv autoencoder on scikit-learn digits")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 0.5,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    x_train, x_test = train_test_split(images, test_size=0.2, random_state=seed)
    model = AutoEncoder()
    criterion = nn.MSELoss()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    @jax.jit
    def train_step(model, opt, x):
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), x))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    @jax.jit
    def reconstruction_error(model, x):
        return criterion(model(x), x)

    history: dict[str, list[float]] = {"train_mse": [], "test_mse": []}
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(x_train) // batch_size
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="epochs", disable=None):
        order = rng.permutation(len(x_train))
        losses = []
        n_batches = steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        for b in tqdm(range(n_batches), desc=f"epoch {epoch}", leave=False, disable=None):
            idx = order[b * batch_size : (b + 1) * batch_size]
            model, opt, loss = train_step(model, opt, x_train[idx])
            losses.append(loss)
        history["train_mse"].append(float(np.mean(jax.device_get(losses))))
        history["test_mse"].append(float(reconstruction_error(model, x_test)))
    elapsed = time.perf_counter() - start

    print(f"device: {jax.devices()[0].platform}; {epochs} epochs in {elapsed:.1f} s")
    baseline = float(jnp.mean((x_test - x_train.mean(0)) ** 2))
    print(
        f"held-out reconstruction MSE: {history['test_mse'][-1]:.4f} "
        f"(predicting the mean image: {baseline:.4f})"
    )
    shown = x_test[:12]
    path = Path(out) / "digits_autoencoder.png"
    save_grid(shown, np.asarray(model(shown)), epochs, path)
    curves = Path(out) / "digits_autoencoder_curves.png"
    save_curves(history, baseline, curves)
    print(f"originals and reconstructions saved to {path}, error curves to {curves}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.out)
