"""fparam's default key stream: what a layer draws from when it is given no ``key=``.

It mirrors ``torch.manual_seed``: seeding makes construction reproducible, and an explicit
``key=`` always wins over the stream.
"""

from __future__ import annotations

import threading

import jax

__all__ = ["manual_seed", "next_key", "resolve_key"]

_DEFAULT_SEED = 0


class _KeyStream(threading.local):
    def __init__(self) -> None:
        self.seed = _DEFAULT_SEED
        self.counter = 0


_stream = _KeyStream()


def manual_seed(seed: int) -> None:
    """Reset the default key stream, like ``torch.manual_seed``.

    Arguments:
        seed: any Python int; the stream restarts from it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"manual_seed expects an int seed, got {type(seed).__name__}")
    _stream.seed = seed
    _stream.counter = 0


def next_key() -> jax.Array:
    """Return a fresh key from the default stream (each call gives a different key)."""
    # Folding a counter into the seed key, rather than splitting a stored key, keeps the stream a
    # pair of Python ints: nothing traced can be captured in it, even when called under `jit`.
    key = jax.random.fold_in(jax.random.key(_stream.seed), _stream.counter)
    _stream.counter += 1
    return key


def resolve_key(key: jax.Array | None) -> jax.Array:
    """Return ``key`` when given, else the next key of the default stream.

    Arguments:
        key: a JAX key (new-style ``jax.random.key`` or legacy ``PRNGKey``), or None.
    """
    return next_key() if key is None else key
