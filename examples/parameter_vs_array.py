"""The seed program: a Parameter trains, a plain array is static state and never changes.

A module holds ``weights1`` as an ``nn.Parameter`` and ``weights2`` as a plain array. Fake data
``x`` of shape (100, 2, 2) and labels (100, 2) go through ``x @ weights1 @ weights2``; the
(100, 2, 2) outputs are logits with the class on axis 1 (torch's convention), so
``CrossEntropyLoss`` sees N=100, C=2 and one extra dimension of size 2.

Run: ``python examples/parameter_vs_array.py [--epochs 2]``
"""

from __future__ import annotations

import argparse

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


def main(epochs: int = 2) -> tuple[M, list[float]]:
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
    for epoch in range(epochs):
        m, opt, loss = train_step(m, opt, x, y)
        losses.append(float(loss))
        print(f"epoch {epoch}: loss {float(loss):.6f}")
        print("  weights1 (Parameter, trains):\n", np.asarray(m.weights1))
        print("  weights2 (plain array, static):\n", np.asarray(m.weights2))
    return m, losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    main(parser.parse_args().epochs)
