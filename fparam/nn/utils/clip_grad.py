"""Gradient clipping with ``torch.nn.utils.clip_grad``'s arithmetic, returning new gradients.

torch: ``total_norm = norm(stack([norm(g, p) for g in grads]), p)``, then every gradient is
multiplied by ``clamp(max_norm / (total_norm + 1e-6), max=1)`` (also when that is 1), in the
gradient's dtype. The same here, on the floating leaves of any gradient pytree; ``None``
leaves (``fparam.grad``'s frozen parameters and buffers) and integer or ``float0`` leaves
(``jax.grad``'s for integer buffers) pass through untouched and do not count in the norm.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._module import Parameter
from fparam._trace import current_trace

__all__ = [
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
]

_NONFINITE = (
    "The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
    "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
    "anyway, set `error_if_nonfinite=False`"
)
_HANDLES = (
    "{fn}() got Parameter handles (model.parameters()): fparam keeps no `.grad` on parameters. "
    "Pass the gradients themselves and use the clipped ones it returns, e.g. "
    "`loss, grads = fparam.value_and_grad(loss_fn)(model, x, y); "
    "grads, total_norm = nn.utils.clip_grad_norm_(grads, max_norm)`."
)
_NOT_ARRAY = "{fn}() expects a pytree of gradient arrays (None allowed), got a leaf of type {type}"


def _is_gradient(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _gradients(grads: Any, fn: str) -> list[Any]:
    """The floating leaves of ``grads`` (checked: arrays only, no Parameter handles)."""
    grads = _materialized(grads)
    leaves = jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, Parameter))
    out = []
    for leaf in leaves:
        if isinstance(leaf, Parameter):
            raise TypeError(_HANDLES.format(fn=fn))
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise TypeError(_NOT_ARRAY.format(fn=fn, type=type(leaf).__name__))
        if _is_gradient(leaf):
            out.append(leaf)
    return out


def _materialized(grads: Any) -> Any:
    """A generator (torch's ``model.parameters()`` idiom) as a list; anything else as is."""
    if isinstance(grads, Iterator):
        return list(grads)
    return grads


def _vector_norm(x: Any, p: float) -> jax.Array:
    x = jnp.abs(jnp.ravel(x))
    if p == math.inf:
        return jnp.max(x, initial=0.0).astype(x.dtype)
    if p == -math.inf:
        return jnp.min(x, initial=math.inf).astype(x.dtype)
    if p == 0:
        return jnp.sum(x != 0).astype(x.dtype)
    if p == 1:
        return jnp.sum(x)
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x))
    return jnp.sum(x**p) ** (1.0 / p)


def _raise_if_nonfinite(total: Any, norm_type: float) -> None:
    if not bool(np.isfinite(np.asarray(total))):
        raise RuntimeError(_NONFINITE.format(norm_type=norm_type))


def get_total_norm(
    tensors: Any,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> jax.Array:
    """The norm of the per-gradient norms (torch's ``get_total_norm``).

    Arguments:
        tensors: an array or a pytree of gradient arrays (``None`` leaves skipped).
        norm_type: the ``p`` of the norms (``inf`` for the max-abs norm).
        error_if_nonfinite: raise ``RuntimeError`` when the total is NaN or infinite. Eagerly
            at once, as torch; inside ``jit`` the check runs with the step (a host callback)
            and the error surfaces when the result is used.
        foreach: accepted for torch's signature; the whole computation is one XLA program.

    Returns:
        A 0-d array (0.0 for no gradients, as torch).
    """
    norm_type = float(norm_type)
    grads = _gradients(tensors, "get_total_norm")
    if not grads:
        return jnp.asarray(0.0, jnp.float32)
    norms = [_vector_norm(g, norm_type) for g in grads]
    dtype = jnp.result_type(*norms)
    total = _vector_norm(jnp.stack([n.astype(dtype) for n in norms]), norm_type)
    if error_if_nonfinite:
        if current_trace() is None and not isinstance(total, jax.core.Tracer):
            _raise_if_nonfinite(total, norm_type)
        else:
            jax.debug.callback(_raise_if_nonfinite, total, norm_type)
    return total


def clip_grads_with_norm_(
    parameters: Any, max_norm: float, total_norm: Any, foreach: bool | None = None
) -> Any:
    """The gradients scaled by ``min(max_norm / (total_norm + 1e-6), 1)`` (torch's rule).

    Arguments:
        parameters: the gradients (an array or any pytree of them); torch's name is kept.
        max_norm: the largest total norm allowed.
        total_norm: the norm to clip with (``get_total_norm``'s result).
        foreach: accepted for torch's signature.

    Returns:
        The clipped gradients, same structure (``None`` and integer leaves untouched).
    """
    parameters = _materialized(parameters)
    _gradients(parameters, "clip_grads_with_norm_")
    coef = jnp.minimum(float(max_norm) / (jnp.asarray(total_norm) + 1e-6), 1.0)
    return jax.tree.map(
        lambda g: (g * coef.astype(g.dtype)) if _is_gradient(g) else g,
        parameters,
    )


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> tuple[Any, jax.Array]:
    """Clip the gradients' total norm to ``max_norm`` (torch's ``clip_grad_norm_``).

    torch clips ``p.grad`` in place and returns the norm; fparam's gradients are values, so
    this returns both: ``grads, total_norm = clip_grad_norm_(grads, max_norm)``.

    Arguments:
        parameters: the gradients: an array or any pytree of them (``fparam.grad``'s
            module-shaped result, ``jax.grad``'s, a list, a dict).
        max_norm: the largest total norm allowed.
        norm_type: the ``p`` of the norm (``float('inf')`` for max-abs).
        error_if_nonfinite: see ``get_total_norm``.
        foreach: accepted for torch's signature.

    Returns:
        ``(clipped_gradients, total_norm)``: the total norm before clipping, as torch returns.
    """
    parameters = _materialized(parameters)
    total = get_total_norm(parameters, norm_type, error_if_nonfinite, foreach)
    return clip_grads_with_norm_(parameters, max_norm, total, foreach), total


def clip_grad_norm(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> tuple[Any, jax.Array]:
    """torch's deprecated spelling of ``clip_grad_norm_``."""
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> Any:
    """Each gradient clamped to ``[-clip_value, clip_value]`` (torch's ``clip_grad_value_``).

    Arguments:
        parameters: the gradients: an array or any pytree of them.
        clip_value: the bound.
        foreach: accepted for torch's signature.

    Returns:
        The clamped gradients, same structure.
    """
    parameters = _materialized(parameters)
    _gradients(parameters, "clip_grad_value_")
    value = float(clip_value)
    return jax.tree.map(
        lambda g: jnp.clip(g, -value, value).astype(g.dtype) if _is_gradient(g) else g,
        parameters,
    )
