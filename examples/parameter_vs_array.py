"""The seed program: a Parameter trains, a plain array is static state and never changes.

A module holds ``weights1`` as an ``nn.Parameter`` and ``weights2`` as a plain array. Fake data
``x`` of shape (100, 2, 2) and labels (100, 2) go through ``x @ weights1 @ weights2``; the
(100, 2, 2) outputs are logits with the class on axis 1 (torch's convention), so
``CrossEntropyLoss`` sees N=100, C=2 and one extra dimension of size 2.

It prints both weights after each epoch and saves a PNG of how far each of their four entries
moved from its initial value: ``weights1``'s entries move, ``weights2``'s stay at zero.

Run: ``python examples/parameter_vs_array.py [--epochs 2] [--out examples/out]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import numpy as np

from fparam import nn, optim


class M(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weights1 = nn.Parameter(jax.random.normal(jax.random.key(0), (2, 2)))
        self.weights2 = jax.random.normal(jax.random.key(1), (2, 2))  # plain array: static state

    def forward(self, x: jax.Array) -> jax.Array:
        return x @ self.weights1 @ self.weights2


def save_trajectories(w1: list[np.ndarray], w2: list[np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(len(w1))  # 0 = before training
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, history, title in (
        (axes[0], w1, "weights1: nn.Parameter (trained)"),
        (axes[1], w2, "weights2: plain array (static state)"),
    ):
        # The change from the initial value: a few SGD steps move entries of size ~1 by ~1e-2.
        change = np.stack(history) - history[0]  # (epochs + 1, 2, 2)
        for i in range(2):
            for j in range(2):
                ax.plot(epochs, change[:, i, j], marker="o", label=f"[{i}, {j}]")
        ax.set_xticks(list(epochs))
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_ylabel("entry minus its initial value")
        ax.set_title(title)
        ax.legend(title="entry")
    fig.suptitle("Only the nn.Parameter changes under opt.step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(epochs: int = 2, out: str = "examples/out") -> tuple[M, list[float]]:
    m = M()
    print("parameters:", [name for name, _ in m.named_parameters()])
    print(list(m.parameters()))

    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = jax.random.normal(jax.random.key(2), (100, 2, 2))
    y = jax.random.randint(jax.random.key(3), (100, 2), 0, 2)

    @jax.jit
    def train_step(m: M, opt: optim.SGD, x: jax.Array, y: jax.Array):
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(m)
        m, opt = opt.step(m, grads)  # functional: a new module and a new optimizer
        return m, opt, loss

    losses = []
    w1, w2 = [np.asarray(m.weights1)], [np.asarray(m.weights2)]
    for epoch in range(epochs):
        m, opt, loss = train_step(m, opt, x, y)
        losses.append(float(loss))
        w1.append(np.asarray(m.weights1))
        w2.append(np.asarray(m.weights2))
        print(f"epoch {epoch}: loss {float(loss):.6f}")
        print("  weights1 (Parameter, trains):\n", w1[-1])
        print("  weights2 (plain array, static):\n", w2[-1])
    path = Path(out) / "parameter_vs_array.png"
    save_trajectories(w1, w2, path)
    print(f"trajectories saved to {path}")
    return m, losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.out)
