"""Buffer updates made by a forward inside a transformation, carried out to the caller.

A BatchNorm forward in training mode changes its running statistics. Eagerly it does so in
place, as in torch. Inside a JAX transformation the module it runs on is a copy made for the
trace, so the change must travel out through something the caller keeps (DESIGN.md, rule 9):

* ``fparam.value_and_grad`` / ``fparam.grad`` (and :func:`stateful`) open a *collection* around
  the function they run. The module copies they build for it are registered; a layer of those
  copies may change its buffers (``Module._update_buffers``), and when the function returns the
  new buffer values are written into the modules the wrapper was given, which are what the
  train step goes on with (``model, opt = opt.step(model, grads)`` returns them).
* Anywhere else inside a trace (a plain ``jax.grad``, a train-mode forward directly under
  ``jax.jit``), a buffer update raises ``BufferUpdateError`` naming the layer and the fix: it
  would be silently lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["BufferUpdateError", "collecting"]


class BufferUpdateError(RuntimeError):
    """A forward changed buffers where the change could not reach the caller."""


class _Collections(threading.local):
    def __init__(self) -> None:
        self.stack: list[set[int]] = []


_collections = _Collections()


@contextmanager
def collecting(modules: list[Any]) -> Iterator[None]:
    """Let the modules in ``modules`` (roots, and everything below them) change buffers
    inside the current trace."""
    ids = {id(m) for root in modules for _, m in root.named_modules()}
    _collections.stack.append(ids)
    try:
        yield
    finally:
        _collections.stack.pop()


def is_collected(module: Any) -> bool:
    """Whether an open collection registered ``module``."""
    key = id(module)
    return any(key in ids for ids in _collections.stack)


Updates = list[tuple[int, str, Any]]  # (index in named_modules() order, buffer name, value)


def run_collecting(roots: list[Any], call: Any) -> tuple[Any, list[Updates]]:
    """``call()`` with ``roots`` collected; returns its output and, per root, the buffers the
    call changed (found by identity: an unchanged buffer is the very object it was)."""
    before = [_buffer_values(root) for root in roots]
    with collecting(roots):
        out = call()
    changes = []
    for root, old in zip(roots, before):
        new = _buffer_values(root)
        changes.append([(i, n, v) for (i, n, v), (_, _, w) in zip(new, old) if v is not w])
    return out, changes


def apply_updates(root: Any, updates: Updates) -> None:
    """Write ``updates`` (from :func:`run_collecting` on a copy of ``root``) into ``root``."""
    if not updates:
        return
    modules = [m for _, m in root.named_modules()]
    for index, name, value in updates:
        modules[index]._write_buffer(name, value)


def _buffer_values(root: Any) -> Updates:
    out = []
    for index, (_, module) in enumerate(root.named_modules()):
        d = module.__dict__
        layout = d["_fp_layout"]
        # Parameters too: a forward may renormalise one in place (Embedding's max_norm).
        for name, _ in (*layout.buffers, *layout.params):
            out.append((index, name, d[name]))
    return out
