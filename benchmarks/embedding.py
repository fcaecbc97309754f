"""Embedding lookups: fparam against raw ``jnp.take`` and torch eager.

Forward + backward (the value and the weight gradient of ``mean(y**2)``), all contenders
starting from the same weights and indices:

  (a) ``nn.Embedding(vocab, dim)`` on a batch of index sequences: raw JAX is
      ``jnp.take(weight, idx, axis=0)`` with the same loss;
  (b) ``nn.EmbeddingBag(vocab, dim, mode='mean')`` on the same indices as fixed-size bags:
      raw JAX is ``jnp.take(...).mean(axis=1)``.

Both jitted steps are checked to give the same value and gradient before timing, and the script
says whether fparam's compiled program is the raw one (names and metadata aside). torch eager runs
with one intra-op thread and with its default. Runs are interleaved; medians of the repeats.

Run: ``python benchmarks/embedding.py [--vocab 10000] [--dim 128] [--batch 64] [--seq 32]
[--steps 50] [--repeats 9]``
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

import fparam
from fparam import nn

try:
    import torch
except ImportError:  # the benchmark runs without torch; its rows are left out
    torch = None


def _program(fn: Callable[..., Any], *args: Any) -> str:
    """The optimised HLO of ``jax.jit(fn)(*args)`` without names and metadata."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r"%[\w.\-]+", "%x", text)
    # The instructions only: the header, signatures and stack-frame tables name Python files.
    return "\n".join(line.strip() for line in text.splitlines() if " = " in line)


def _runner(step: Callable[..., Any], *args: Any) -> Callable[[int], Any]:
    def run(n: int) -> Any:
        out = None
        for _ in range(n):
            out = step(*args)
        return jax.block_until_ready(out)

    return run


def _torch_runner(step: Callable[[], Any], threads: int | None) -> Callable[[int], Any]:
    default = torch.get_num_threads()

    def run(n: int) -> Any:
        torch.set_num_threads(threads or default)
        try:
            for _ in range(n):
                step()
        finally:
            torch.set_num_threads(default)

    return run


def workload(kind: str, vocab: int, dim: int, batch: int, seq: int) -> dict[str, Any]:
    fparam.manual_seed(0)
    layer = nn.Embedding(vocab, dim) if kind == "Embedding" else nn.EmbeddingBag(vocab, dim)
    idx = jax.random.randint(jax.random.key(1), (batch, seq), 0, vocab)

    def fparam_loss(m: nn.Module, x: jax.Array) -> jax.Array:
        return jnp.mean(m(x) ** 2)

    def raw_forward(w: jax.Array, x: jax.Array) -> jax.Array:
        rows = jnp.take(w, x, axis=0)
        return rows if kind == "Embedding" else rows.mean(axis=1)

    def raw_loss(w: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.mean(raw_forward(w, x) ** 2)

    fp_step = jax.jit(fparam.value_and_grad(fparam_loss))
    raw_step = jax.jit(jax.value_and_grad(raw_loss))
    (v1, g1), (v2, g2) = fp_step(layer, idx), raw_step(layer.weight, idx)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(g1.weight, g2, rtol=1e-6, atol=1e-12)
    same = _program(fparam.value_and_grad(fparam_loss), layer, idx) == _program(
        jax.value_and_grad(raw_loss), layer.weight, idx
    )
    runners = {
        "fparam": _runner(fp_step, layer, idx),
        "raw JAX": _runner(raw_step, layer.weight, idx),
    }
    if torch is not None:
        if kind == "Embedding":
            t = torch.nn.Embedding(vocab, dim)
        else:
            t = torch.nn.EmbeddingBag(vocab, dim)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        t_idx = torch.from_numpy(np.array(idx)).long()

        def torch_step() -> Any:
            t.weight.grad = None
            loss = t(t_idx).pow(2).mean()
            loss.backward()
            return loss

        runners["torch (1 thread)"] = _torch_runner(torch_step, 1)
        runners["torch"] = _torch_runner(torch_step, None)
    return {"runners": runners, "same_program": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; µs per forward+backward")
    for kind in ("Embedding", "EmbeddingBag"):
        w = workload(kind, args.vocab, args.dim, args.batch, args.seq)
        times = measure(w["runners"], args.steps, args.repeats)
        raw = times["raw JAX"]
        print(
            f"\n{kind}({args.vocab}, {args.dim}) on {args.batch}x{args.seq} indices "
            f"(fparam's compiled program {'==' if w['same_program'] else '!='} raw JAX's)"
        )
        for name, seconds in times.items():
            print(f"  {name:18s} {seconds * 1e6:10.1f}   {seconds / raw:5.2f}x raw JAX")


if __name__ == "__main__":
    main()
