"""Classify scikit-learn's bundled digits with an LSTM that reads each image row by row.

Each 8x8 grey-level digit is a sequence of 8 steps (the rows, top to bottom) of 8 features (the
pixels of the row), standardised with the training set's mean and std; a stratified 80/20 split
with a fixed seed. ``nn.LSTM(8, hidden, num_layers=2, batch_first=True)`` reads the rows and a
``Linear`` classifies the last layer's final hidden state ``h_n[-1]``: the model only sees one
row at a time, so it must carry what it has seen in its state (the recurrence is one
``jax.lax.scan`` per layer, so compiling the step does not grow with the sequence length).

The train step is the README's jitted step written for torch's model (Adam, cross-entropy),
with the gradient clipping LSTMs are usually trained with (``nn.utils.clip_grad_norm_``, which
returns the clipped gradients). Held-out loss and accuracy are printed each epoch and the curves
are saved as a PNG. The whole run takes about a minute on 2 CPU cores.

Run: ``python examples/lstm_sequence.py [--epochs 30] [--hidden 64] [--out examples/out]``
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


class RowLSTM(nn.Module):
    """(N, 8 rows, 8 pixels) -> 2-layer LSTM -> h_n of the last layer -> Linear -> 10 logits."""

    def __init__(self, features: int = 8, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: jax.Array) -> jax.Array:
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers, N, hidden)
        return self.head(h_n[-1])


def load_sequences(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, 8, 8) float32 sequences (steps = image rows), standardised on the training set."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train (epoch mean)")
    ax_loss.plot(epochs, history["test_loss"], marker=".", label="held-out")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title("loss")
    ax_loss.legend()
    final = history["test_acc"][-1]
    ax_acc.plot(epochs, history["train_acc"], marker=".", label="train")
    ax_acc.plot(epochs, history["test_acc"], marker=".", label=f"held-out (final {final:.3f})")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle("fparam nn.LSTM reading scikit-learn digits row by row (8 steps x 8 pixels)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    hidden: int = 64,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
    max_norm: float = 1.0,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_sequences(seed)
    model = RowLSTM(hidden=hidden)
    criterion = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=lr)
    # Per epoch, at top level as in torch: the lr is a leaf, a new value never recompiles.
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    @jax.jit
    def train_step(model, opt, x, y):
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        grads, _ = nn.utils.clip_grad_norm_(grads, max_norm)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    @jax.jit
    def evaluate(model, x, y):
        logits = model(x)
        return criterion(logits, y), jnp.mean(jnp.argmax(logits, axis=1) == y)

    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc")
    }
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(x_train) // batch_size
    step = 0
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="epochs", disable=None)
    for _ in bar:
        order = rng.permutation(len(x_train))
        losses = []
        batches = range(
            steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        )
        for b in batches:
            idx = order[b * batch_size : (b + 1) * batch_size]
            model, opt, loss = train_step(model, opt, x_train[idx], y_train[idx])
            losses.append(loss)
            step += 1
        opt = schedule.step(opt)
        history["train_loss"].append(float(np.mean(jax.device_get(losses))))
        _, train_acc = evaluate(model, x_train, y_train)
        test_loss, test_acc = evaluate(model, x_test, y_test)
        history["train_acc"].append(float(train_acc))
        history["test_loss"].append(float(test_loss))
        history["test_acc"].append(float(test_acc))
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", held_out=f"{float(test_acc):.3f}")
    elapsed = time.perf_counter() - start

    print(f"device: {jax.devices()[0].platform}; {step} steps in {elapsed:.1f} s")
    print(f"final train loss {history['train_loss'][-1]:.4f}")
    print(
        f"held-out loss {history['test_loss'][-1]:.4f}, "
        f"accuracy {history['test_acc'][-1]:.4f} ({len(x_test)} sequences)"
    )
    path = Path(out) / "lstm_sequence_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.hidden, args.out)
