"""Whether JAX is tracing right now, and which trace: the one place fparam asks.

JAX has no public API for it. ``jax._src.core.trace_ctx.trace`` is the active trace (an
``EvalTrace`` at top level) and has been since JAX 0.4.36; mutation guards compare its
identity (a module may change only inside the trace that built it), key streams only need to
know whether there is one.
"""

from __future__ import annotations

from typing import Any

from jax._src import core as _jax_core

__all__ = ["current_trace", "in_trace"]

_EvalTrace = _jax_core.EvalTrace


def current_trace() -> Any:
    """The active JAX trace (jit, grad, vmap, scan, eval_shape...), or None at top level."""
    trace = _jax_core.trace_ctx.trace
    return None if isinstance(trace, _EvalTrace) else trace


def in_trace() -> bool:
    """Whether JAX is tracing (``jit``, ``vmap``, ``grad``, ``eval_shape``...) right now."""
    return not isinstance(_jax_core.trace_ctx.trace, _EvalTrace)
