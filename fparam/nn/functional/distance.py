"""Distances and norms with torch's formulas and gradients: ``cosine_similarity``,
``pairwise_distance``, ``pdist`` and ``normalize``.

The p-norms follow ATen's ``linalg_vector_norm`` and its backward (``norm_backward``): the
gradient at a zero norm is 0 (not NaN), ``p=inf`` splits the gradient evenly between tied
maxima, ``p=0`` counts non-zeros and has gradient 0. ``cosine_similarity`` divides each input by
its norm clamped at ``eps`` first, as torch 2.x does, with the clamp invisible to the gradient
(torch clamps in place under ``no_grad``). Every function is pure, works under ``jax.jit``,
``jax.grad`` and ``jax.vmap``, and checks its static arguments with torch's messages.
"""

from __future__ import annotations

import functools
import math
import operator
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fparam.nn import _validation as V
from fparam.nn.functional.loss import _broadcast_shape, _dtype_name
from fparam.nn.functional.shape import _wrap_dim

__all__ = ["cosine_similarity", "normalize", "pairwise_distance", "pdist"]

# torch's messages.
_NOT_FLOAT = "{fn}(): argument '{name}' (position {pos}) must be float, not {type}"
_NOT_INT = "{fn}(): argument '{name}' (position {pos}) must be int, not {type}"
_COMMON_DTYPE = "expected common dtype to be floating point, yet common dtype is {dtype}"
_EPS_NEGATIVE = "eps must be non-negative, got: {eps}"
_PDIST_RANK = "pdist only supports 2D tensors, got: {rank}D"
_PDIST_DTYPE = "pdist only supports floating-point dtypes"
_PDIST_P = "pdist only supports non-negative p values"
_NORM_DTYPE = (
    "linalg.vector_norm: Expected a floating point or complex tensor as input. Got {dtype}"
)
_OUT = (
    "normalize(): out= is not supported: JAX arrays are immutable, so use the returned array "
    "(got out of type {type})"
)


def _float(value: Any, fn: str, name: str, pos: int) -> float:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(_NOT_FLOAT.format(fn=fn, name=name, pos=pos, type=type(value).__name__))
    return float(value)


def _int(value: Any, fn: str, name: str, pos: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(_NOT_INT.format(fn=fn, name=name, pos=pos, type=type(value).__name__))
    return operator.index(value)


def _float_dtype(*arrays: jax.Array) -> Any:
    """The common floating dtype (integers join a float as that float, like torch's promotion,
    also under JAX's strict promotion mode); ``None`` when every input is an integer."""
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.inexact)]
    return functools.reduce(jnp.promote_types, floats) if floats else None


def _promote(*arrays: Any) -> list[jax.Array]:
    """The inputs in their common floating dtype; two integer inputs are refused (torch)."""
    xs = [jnp.asarray(a) for a in arrays]
    common = _float_dtype(*xs)
    if common is None:
        given = [np.asarray(a).dtype if isinstance(a, np.ndarray) else x.dtype
                 for a, x in zip(arrays, xs)]  # fmt: skip
        name = _dtype_name(functools.reduce(np.promote_types, given))
        raise RuntimeError(_COMMON_DTYPE.format(dtype=name))
    return [x.astype(common) for x in xs]


# --------------------------------------------------------------------------------------------
# The p-norm, with torch's gradient.
# --------------------------------------------------------------------------------------------


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _norm(x: jax.Array, p: float, axis: tuple[int, ...], keepdims: bool) -> jax.Array:
    a = jnp.abs(x)
    if p == 0:
        return jnp.sum(a != 0, axis=axis, keepdims=keepdims).astype(x.dtype)
    if p == 1:
        return jnp.sum(a, axis=axis, keepdims=keepdims)
    if p == 2:
        return jnp.sqrt(jnp.sum(a * a, axis=axis, keepdims=keepdims))
    if p == math.inf:
        return jnp.max(a, axis=axis, keepdims=keepdims, initial=0)
    if p == -math.inf:
        return jnp.min(a, axis=axis, keepdims=keepdims, initial=math.inf)
    return jnp.sum(a**p, axis=axis, keepdims=keepdims) ** (1 / p)


def _norm_grad(x: jax.Array, norm: jax.Array, p: float) -> jax.Array:
    """d norm / d x for finite ``p`` (ATen's ``norm_backward``); ``norm`` kept on its axes."""
    zero = jnp.zeros((), x.dtype)
    if p == 0:
        return jnp.zeros_like(x)
    if p == 1:
        return jnp.sign(x)
    if p == 2:
        return jnp.where(norm == 0, zero, x / jnp.where(norm == 0, 1, norm))
    a = jnp.abs(x)
    scaled = jnp.sign(x) * jnp.where(a == 0, zero, a ** (p - 1))
    if p < 1:
        return scaled * norm ** (1 - p)
    return jnp.where(norm == 0, zero, scaled / jnp.where(norm == 0, 1, norm ** (p - 1)))


@_norm.defjvp
def _norm_jvp(
    p: float, axis: tuple[int, ...], keepdims: bool, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    kept = _norm(x, p, axis, True)
    if math.isinf(p):
        # The maxima (minima) share the gradient equally; NaNs count as maxima, as in torch.
        a = jnp.abs(x)
        mask = (a == kept) | jnp.isnan(a)
        count = jnp.sum(mask, axis=axis, keepdims=True).astype(x.dtype)
        grad = jnp.where(mask, jnp.sign(x), jnp.zeros((), x.dtype)) / count
    else:
        grad = _norm_grad(x, kept, p)
    out = kept if keepdims else jnp.squeeze(kept, axis)
    return out, jnp.sum(grad * t, axis=axis, keepdims=keepdims)


def _vector_norm(x: jax.Array, p: float, axis: tuple[int, ...], keepdims: bool) -> jax.Array:
    """``torch.linalg.vector_norm(x, p, axis, keepdims)``; a 0-d ``x`` is one element."""
    if x.ndim == 0:
        return _norm(x.reshape(1), p, (0,), False)
    return _norm(x, p, axis, keepdims)


# --------------------------------------------------------------------------------------------
# The functions.
# --------------------------------------------------------------------------------------------


def cosine_similarity(x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> jax.Array:
    """Cosine similarity along ``dim``, like ``torch.nn.functional.cosine_similarity``.

    ``sum((x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps)), dim)``, after broadcasting ``x1``
    and ``x2`` to a common shape (``dim`` indexes that shape and is removed). The clamp at
    ``eps`` does not enter the gradient (torch's in-place clamp under ``no_grad``), and a zero
    vector has gradient 0.

    Arguments:
        x1, x2: broadcastable arrays; integer inputs join a floating one as floats, but two
            integer inputs are refused (torch's ``RuntimeError``).
        dim: the axis to reduce.
        eps: the smallest norm divided by (>= 0).

    Returns:
        The similarities, in the common dtype, with ``dim`` removed.
    """
    V.check_array("cosine_similarity()", "x1", x1)
    V.check_array("cosine_similarity()", "x2", x2)
    dim = _int(dim, "cosine_similarity", "dim", 3)
    eps = _float(eps, "cosine_similarity", "eps", 4)
    if eps < 0:
        raise RuntimeError(_EPS_NEGATIVE.format(eps=f"{eps:g}"))
    a, b = _promote(x1, x2)
    shape = _broadcast_shape(a.shape, b.shape)
    a, b = jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)
    axis = _wrap_dim(dim, len(shape))

    def unit(x: jax.Array) -> jax.Array:
        norm = _vector_norm(x, 2.0, (axis,), True)
        clamped = norm + lax.stop_gradient(jnp.maximum(norm, eps) - norm)
        return x / clamped

    if not shape:
        return unit(a) * unit(b)
    return jnp.sum(unit(a) * unit(b), axis=axis)


def pairwise_distance(
    x1: Any, x2: Any, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> jax.Array:
    """The p-norm of ``x1 - x2 + eps`` over the last dim, like
    ``torch.nn.functional.pairwise_distance``.

    The inputs broadcast; the norm runs over the last dim of the higher-rank one (a 0-d pair
    gives ``|x1 - x2 + eps|``). ``p`` may be any float, including ``0`` (count of non-zeros),
    ``inf``, ``-inf`` and negative values.

    Arguments:
        x1, x2: broadcastable arrays ``(*, D)``.
        p: the norm's order.
        eps: added to the difference (torch's, to avoid a zero norm's gradient).
        keepdim: keep the reduced dim with size 1.

    Returns:
        The distances ``(*)`` (``(*, 1)`` with ``keepdim``).
    """
    V.check_array("pairwise_distance()", "x1", x1)
    V.check_array("pairwise_distance()", "x2", x2)
    p = _float(p, "pairwise_distance", "p", 3)
    eps = _float(eps, "pairwise_distance", "eps", 4)
    a, b = jnp.asarray(x1), jnp.asarray(x2)
    shape = _broadcast_shape(a.shape, b.shape)
    dtype = _float_dtype(a, b) or jnp.dtype(jnp.float32)  # integers: torch's default float
    a, b = jnp.broadcast_to(a.astype(dtype), shape), jnp.broadcast_to(b.astype(dtype), shape)
    diff = a - b + eps
    if diff.ndim == 0:
        return _vector_norm(diff, p, (0,), keepdim)
    return _vector_norm(diff, p, (diff.ndim - 1,), keepdim)


def pdist(input: Any, p: float = 2.0) -> jax.Array:
    """The p-norm distance between every pair of rows, like ``torch.nn.functional.pdist``.

    For an ``(N, M)`` input the output has ``N * (N - 1) / 2`` entries: ``||x_i - x_j||_p`` for
    ``i < j``, in row-major order (the upper triangle of the distance matrix without its
    diagonal). A zero distance has gradient 0.

    Arguments:
        input: a 2-D floating array.
        p: a non-negative float (``0``, ``inf`` included).

    Returns:
        A 1-D array of distances.

    Raises:
        RuntimeError: not 2-D, not floating, or ``p < 0`` (torch's messages).
    """
    V.check_array("pdist()", "input", input)
    p = _float(p, "pdist", "p", 2)
    x = jnp.asarray(input)
    if x.ndim != 2:
        raise RuntimeError(_PDIST_RANK.format(rank=x.ndim))
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise RuntimeError(_PDIST_DTYPE)
    if p < 0:
        raise RuntimeError(_PDIST_P)
    n = x.shape[0]
    rows, cols = np.triu_indices(n, k=1)  # static indices: a gather, also under jit
    return _vector_norm(x[rows] - x[cols], p, (1,), False)


def normalize(
    input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: None = None
) -> jax.Array:
    """``input / max(||input||_p, eps)`` along ``dim``, like ``torch.nn.functional.normalize``.

    Arguments:
        input: a floating array.
        p: the norm's order (any float, as ``torch.linalg.vector_norm``).
        dim: the axis (or a tuple of axes) to normalise over.
        eps: the smallest norm divided by; unlike ``cosine_similarity``, the clamp is part of the
            gradient (torch's ``clamp_min``).
        out: not supported (``None`` only): JAX arrays are immutable.

    Returns:
        An array of the input's shape and dtype.
    """
    V.check_array("normalize()", "input", input)
    if out is not None:
        raise TypeError(_OUT.format(type=type(out).__name__))
    p = _float(p, "normalize", "p", 2)
    eps = _float(eps, "normalize", "eps", 4)
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        given = input.dtype if isinstance(input, np.ndarray) else x.dtype
        raise RuntimeError(_NORM_DTYPE.format(dtype=_dtype_name(given)))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(sorted({_wrap_dim(_int(d, "normalize", "dim", 3), x.ndim) for d in dims}))
    if x.ndim == 0:
        norm = _vector_norm(x, p, (0,), False)
    else:
        norm = _vector_norm(x, p, axes, True)
    # clamp_min: the gradient reaches the norm wherever it is not below eps (NaN stays NaN).
    return x / jnp.where(norm < eps, jnp.asarray(eps, x.dtype), norm)
