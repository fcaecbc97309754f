"""Train a small decoder-only Transformer, character by character, on Python's own source code.

The text ships with every Python: the source files of a few standard-library modules (found
through their ``__file__``, so no download and no path guessing), concatenated. Characters
outside printable ASCII become ``?``; the vocabulary is the characters that occur. The last
10 % of the text is held out.

The model is a GPT-style stack written with torch's modules: ``nn.Embedding`` for the tokens
and for the positions, ``nn.TransformerEncoder`` of pre-norm ``nn.TransformerEncoderLayer``
(GELU, dropout) run with ``Transformer.generate_square_subsequent_mask`` (so each position sees
only the past), a final ``LayerNorm`` and a ``Linear`` head. The train step is the README's
jitted step: the dropout masks come from the key of ``fparam.rng(key)`` (a fresh one per step),
``AdamW`` updates the weights, and ``OneCycleLR.apply`` sets the lr of each step inside the
jitted step (warm-up, then cosine decay; no recompilation). Held-out loss is measured in eval
mode every ``--eval-every`` steps. Sampling is one jitted program: a ``lax.fori_loop`` that
feeds the last ``--block`` characters (a fixed-size window) back into the model, drawing each
next character from the softmax at temperature 0.8. Prints the losses and samples, and saves
the loss curves as a PNG.

Run: ``python examples/char_transformer.py [--steps 600] [--out examples/out]``
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import string
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fparam
from fparam import nn, optim

# Standard-library modules whose source is the corpus (about 400 kB of Python).
MODULES = (
    "argparse",
    "textwrap",
    "string",
    "json.decoder",
    "json.encoder",
    "functools",
    "heapq",
    "bisect",
    "fractions",
    "shlex",
    "calendar",
    "csv",
)
PRINTABLE = set(string.printable) - {"\x0b", "\x0c", "\r"}


def load_text(modules: tuple[str, ...] = MODULES) -> str:
    """The concatenated source of ``modules``, non-printable characters as ``?``."""
    parts = []
    for name in modules:
        path = Path(importlib.import_module(name).__file__)  # type: ignore[arg-type]
        text = path.read_text(encoding="utf-8")
        parts.append("".join(c if c in PRINTABLE else "?" for c in text))
    return "\n".join(parts)


class Vocabulary:
    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], dtype=np.int32)

    def decode(self, ids: np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class CharTransformer(nn.Module):
    """Token and position embeddings, a causal pre-norm Transformer stack, a linear head."""

    def __init__(
        self, vocab: int, block: int, d_model: int, nhead: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.block = block
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(block, d_model)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm: the stack's output is normalised once more before the head.
        self.blocks = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: jax.Array) -> jax.Array:
        t = ids.shape[-1]
        x = self.drop(self.tok(ids) + self.pos(jnp.arange(t))[None])
        # A (t, t) constant of the trace: -inf above the diagonal.
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        x = self.blocks(x, mask=causal, is_causal=True)
        return self.head(x)


def sample_batch(data: np.ndarray, rng: np.random.Generator, batch: int, block: int):
    starts = rng.integers(0, len(data) - block - 1, size=batch)
    x = np.stack([data[s : s + block] for s in starts])
    y = np.stack([data[s + 1 : s + block + 1] for s in starts])
    return x, y


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def make_generate(length: int, temperature: float):
    """A jitted sampler: ``length`` new characters after a ``(block,)`` window of ids."""

    @jax.jit
    def generate(model: CharTransformer, window: jax.Array, key: jax.Array) -> jax.Array:
        def body(i, carry):
            window, out = carry
            logits = model(window[None])[0, -1] / temperature
            nxt = jax.random.categorical(jax.random.fold_in(key, i), logits).astype(window.dtype)
            window = jnp.concatenate([window[1:], nxt[None]])  # the fixed-size context slides
            return window, out.at[i].set(nxt)

        out = jnp.zeros((length,), window.dtype)
        return jax.lax.fori_loop(0, length, body, (window, out))[1]

    return generate


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = np.arange(1, len(history["train_loss"]) + 1)
    window = max(1, len(steps) // 50)
    smooth = np.convolve(history["train_loss"], np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], smooth, label=f"train (mean of {window} steps, dropout on)")
    final = history["heldout_loss"][-1]
    ax.plot(
        history["eval_step"],
        history["heldout_loss"],
        marker="o",
        label=f"held-out, eval mode (final {final:.3f})",
    )
    ax.axhline(math.log(history["vocab"][0]), color="grey", linestyle=":", label="uniform guess")
    top = max(
        max(history["train_loss"]), max(history["heldout_loss"]), math.log(history["vocab"][0])
    )
    ax.set_ylim(0.0, 1.05 * top)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title("character-level Transformer on standard-library source")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    steps: int = 600,
    batch_size: int = 32,
    block: int = 64,
    d_model: int = 64,
    nhead: int = 4,
    layers: int = 2,
    dropout: float = 0.1,
    lr: float = 3e-3,
    eval_every: int = 100,
    eval_batches: int = 8,
    sample_chars: int = 300,
    out: str = "examples/out",
    seed: int = 0,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    text = load_text()
    vocab = Vocabulary(text)
    data = vocab.encode(text)
    split = int(0.9 * len(data))
    train, heldout = data[:split], data[split:]
    print(
        f"corpus: {len(text):,} characters of {len(MODULES)} standard-library modules, "
        f"{len(vocab)} distinct; {len(train):,} for training, {len(heldout):,} held out"
    )

    model = CharTransformer(len(vocab), block, d_model, nhead, layers, dropout)
    n_params = sum(p.size for p in model.parameters())
    print(f"model: {layers} layers, d_model {d_model}, {nhead} heads, {n_params:,} parameters")
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    schedule = optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)

    @jax.jit
    def train_step(model, opt, x, y, step, key):
        opt = schedule.apply(opt, step)  # this step's lr (and betas), inside the step
        with fparam.rng(key):  # the dropout masks of this step come from this key
            loss, grads = fparam.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    evaluate = jax.jit(lambda m, x, y: cross_entropy(m(x), y))
    eval_rng = np.random.default_rng(seed + 1)
    eval_set = [sample_batch(heldout, eval_rng, batch_size, block) for _ in range(eval_batches)]

    def heldout_loss(model: CharTransformer) -> float:
        model.eval()
        losses = [evaluate(model, x, y) for x, y in eval_set]
        model.train()
        return float(np.mean(jax.device_get(losses)))

    history: dict[str, list[float]] = {
        "train_loss": [],
        "eval_step": [0],
        "heldout_loss": [heldout_loss(model)],
        "vocab": [float(len(vocab))],
    }
    print(f"step     0: held-out loss {history['heldout_loss'][0]:.3f}")
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    start = time.perf_counter()
    for step in range(steps):
        x, y = sample_batch(train, rng, batch_size, block)
        model, opt, loss = train_step(model, opt, x, y, step, jax.random.fold_in(key, step))
        history["train_loss"].append(loss)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            history["train_loss"] = [float(v) for v in jax.device_get(history["train_loss"])]
            history["eval_step"].append(step + 1)
            history["heldout_loss"].append(heldout_loss(model))
            recent = np.mean(history["train_loss"][-eval_every:])
            print(
                f"step {step + 1:5d}: train loss {recent:.3f}, "
                f"held-out loss {history['heldout_loss'][-1]:.3f}"
            )
    elapsed = time.perf_counter() - start
    print(f"device: {jax.devices()[0].platform}; {steps} steps in {elapsed:.1f} s")

    model.eval()
    generate = make_generate(sample_chars, temperature=0.8)
    for i, prompt in enumerate(["def ", "class "]):
        window = vocab.encode(("\n" * block + prompt)[-block:])
        ids = generate(model, window, jax.random.key(seed + 10 + i))
        print(f"--- sample {i + 1} (prompt {prompt!r}, temperature 0.8) ---")
        print(prompt + vocab.decode(np.asarray(ids)))
    path = Path(out) / "char_transformer_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block", type=int, default=64, help="context length (characters)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--nhead", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(
        args.steps,
        args.batch_size,
        args.block,
        args.d_model,
        args.nhead,
        args.layers,
        args.dropout,
        args.lr,
        args.eval_every,
        sample_chars=args.sample_chars,
        out=args.out,
        seed=args.seed,
    )
