"""Train an MLP on scikit-learn's bundled handwritten digits (no download) with fparam.

8x8 grey-level digits, 10 classes, 1797 images; a stratified 80/20 split with a fixed seed.
A jitted train step (forward, backward, optimizer update) runs over mini-batches, with the
learning-rate schedule applied inside the step. The optimizer is momentum SGD by default, or
any of ``--optimizer adamw|adam|rmsprop``; the schedule cosine annealing, or
``--schedule onecycle`` (which also cycles the momentum, or Adam's ``beta1``, per batch as
torch's ``OneCycleLR``). It prints held-out accuracy and saves the loss and accuracy curves as
a PNG. The same script runs unchanged on CPU or GPU.

Run: ``python examples/train_digits.py [--epochs 40] [--optimizer adamw --schedule onecycle]``
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


class MLP(nn.Module):
    def __init__(self, in_features: int = 64, hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: jax.Array) -> jax.Array:
        return self.net(x)


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    # One mean and std for all pixels: a per-pixel std is ~0 for border pixels that are blank in
    # every training image and would blow up the few test images that use them.
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


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
    ax_acc.plot(epochs, history["train_acc"], marker=".", label="train (epoch mean)")
    final = history["test_acc"][-1]
    ax_acc.plot(epochs, history["test_acc"], marker=".", label=f"held-out (final {final:.3f})")
    ax_acc.set_ylim(0.0, 1.0)  # the full range: nothing hidden below a floor
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle("fparam MLP on scikit-learn digits")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Each optimizer with the lr it trains this MLP well with (the peak lr under OneCycle).
OPTIMIZERS = {
    "sgd": (0.1, lambda params, lr: optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-3)),
    "adamw": (3e-3, lambda params, lr: optim.AdamW(params, lr=lr, weight_decay=1e-2)),
    "adam": (1e-3, lambda params, lr: optim.Adam(params, lr=lr)),
    "rmsprop": (1e-3, lambda params, lr: optim.RMSprop(params, lr=lr, momentum=0.9)),
}


def main(
    epochs: int = 40,
    batch_size: int = 64,
    lr: float | None = None,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
    optimizer: str = "sgd",
    schedule_name: str = "cosine",
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_data(seed)
    model = MLP()
    criterion = nn.CrossEntropyLoss()
    default_lr, make_optimizer = OPTIMIZERS[optimizer]
    lr = default_lr if lr is None else lr
    opt = make_optimizer(model.parameters(), lr)
    steps_per_epoch = len(x_train) // batch_size
    total_steps = epochs * steps_per_epoch
    schedule: optim.lr_scheduler.LRScheduler
    if schedule_name == "onecycle":
        schedule = optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)
    else:
        schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)

    @jax.jit
    def train_step(model, opt, step, x, y):
        # The lr (and OneCycle's momentum or beta1) are leaves: a new value never recompiles.
        opt = schedule.apply(opt, step)

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
            model, opt, loss, acc = train_step(model, opt, step, x_train[idx], y_train[idx])
            losses.append(loss)
            accs.append(acc)
            step += 1
        history["train_loss"].append(float(np.mean(jax.device_get(losses))))
        history["train_acc"].append(float(np.mean(jax.device_get(accs))))
        history["test_acc"].append(float(accuracy(model, x_test, y_test)))
    elapsed = time.perf_counter() - start

    test_acc = history["test_acc"][-1]
    print(f"{type(opt).__name__} with {type(schedule).__name__}")
    print(f"device: {jax.devices()[0].platform}; {step} steps in {elapsed:.1f} s")
    print(f"final train loss {history['train_loss'][-1]:.4f}")
    print(f"held-out accuracy: {test_acc:.4f} ({len(x_test)} images)")
    path = Path(out) / "train_digits_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: per optimizer")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    parser.add_argument("--schedule", choices=["cosine", "onecycle"], default="cosine")
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(
        args.epochs,
        args.batch_size,
        args.lr,
        args.out,
        optimizer=args.optimizer,
        schedule_name=args.schedule,
    )
