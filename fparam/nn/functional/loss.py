"""Loss functions with torch's formulas, shapes, reductions and error messages.

All checks on shapes, dtypes and options happen at trace time, from static information, and raise
torch's exception types with torch's wording (the messages live in the constants below). The
maths is pure JAX and works under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

Divergences from torch, on purpose:

- class-index targets may have any integer dtype (JAX's default int32 included); torch wants
  int64 or uint8. Float and bool index targets still raise.
- a negative ``label_smoothing`` raises (torch silently treats it as 0).
- a class index outside ``[0, C)`` raises torch's ``IndexError`` only when the target is concrete;
  under ``jit``/``vmap`` its element's loss is NaN (see `cross_entropy`).
- ``binary_cross_entropy`` cannot check that inputs lie in ``[0, 1]`` (a value check); outside
  that range the loss is NaN.
- the legacy ``size_average``/``reduce`` arguments do not exist; options after the torch
  positional prefix (``input, target, weight``) are keyword-only.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from fparam.nn import _validation as V
from fparam.nn.functional import _sharding as S

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# --------------------------------------------------------------------------------------------
# Messages (torch's wording; see torch-semantics.md §5.6)

_BAD_REDUCTION = "{reduction} is not a valid value for reduction"
_NOT_IMPLEMENTED = "\"{fn}\" not implemented for '{dtype}'"
_NO_DIMS = "Expected 1 or more dimensions (got {ndim})"
_DIM_OUT_OF_RANGE = "Dimension out of range (expected to be in range of [-1, 0], but got 1)"
_PROB_ZERO_DIM = "Dimension specified as 1 but tensor has no dimensions"
_BATCH_MISMATCH = "Expected input batch_size ({n}) to match target batch_size ({m})."
_MULTI_TARGET = "0D or 1D target tensor expected, multi-target not supported"
_ONE_D_TARGET = "For 1D input, 1D target must have size 1, but got target size: {size}"
_SIZE_MISMATCH_1D = "size mismatch (got input: {input}, target: {target})"
_SIZE_MISMATCH_2D = "size mismatch (got input: {input} , target: {target}"  # sic, as torch
_SPATIAL_TARGET = (
    "only batches of spatial targets supported (3D tensors) but got targets of dimension: {ndim}"
)
_TARGET_SIZE = "Expected target size {want}, got {got}"
_WEIGHT_CLASSES = (
    "weight tensor should be defined either for all {c} classes or no classes but got weight "
    "tensor of shape: {shape}"
)
_WEIGHT_CLASSES_ND = "weight tensor should be defined either for all or no classes"
_WEIGHT_DTYPE = "expected scalar type {want} but found {got}"
_TARGET_DTYPE = (
    "expected target dtype to be an integer type (torch: Long or Byte; fparam also accepts Int "
    "and the other integer types), but got {dtype}"
)
_PROB_TARGET_DTYPE = "Expected floating point type for target with class probabilities, got {dtype}"
_PROB_IGNORE_INDEX = "ignore_index is not supported for floating point target"
_LABEL_SMOOTHING = (
    "label_smoothing must be between 0.0 and 1.0. Got: {value} (fparam also rejects negative "
    "values, which torch silently treats as 0)"
)
_OUT_OF_BOUNDS = "Target {target} is out of bounds."
_SIZE_DEPRECATED = (
    "Using a target size ({target}) that is different to the input size ({input}) is "
    "deprecated. Please ensure they have the same size."
)
_SIZE_BROADCAST_WARNING = (
    "Using a target size ({target}) that is different to the input size ({input}). This will "
    "likely lead to incorrect results due to broadcasting. Please ensure they have the same size."
)
_LOGITS_SIZE = "Target size ({target}) must be the same as input size ({input})"
_BROADCAST = (
    "The size of tensor a ({a}) must match the size of tensor b ({b}) at non-singleton "
    "dimension {dim}"
)
_WEIGHT_SIZE = "Weights and input must have the same size."
_BCE_TARGET_DTYPE = "Found dtype {got} but expected {want}"

# torch's BCE backward divides by max((1 - x) * x, EPSILON).
_BCE_EPSILON = 1e-12
# torch clamps each log term of binary_cross_entropy at -100.
_BCE_LOG_FLOOR = -100.0

_TORCH_DTYPE_NAMES = {
    "float32": "Float",
    "float64": "Double",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "bool": "Bool",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def _dtype_name(dtype: np.dtype) -> str:
    """torch's name for a dtype (``Float``, ``Long``, ...), for messages a torch user knows."""
    return _TORCH_DTYPE_NAMES.get(np.dtype(dtype).name, str(dtype))


def _view(x: object) -> Any:
    """``x`` as something with ``.shape``/``.dtype`` for the trace-time checks.

    NumPy arrays are kept as they are until the maths, so that messages name the dtype the
    caller passed (a NumPy int64 is ``Long``, even though JAX without x64 would make it int32).
    """
    if isinstance(x, jax.Array | np.ndarray):
        return x
    if isinstance(x, np.generic):
        return np.asarray(x)
    return jnp.asarray(x)


def _maybe_array(x: Any) -> jax.Array | None:
    return None if x is None else jnp.asarray(x)


def _sizes(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _torch_size(shape: Sequence[int]) -> str:
    return f"torch.Size({_sizes(shape)})"


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_reduction(reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(_BAD_REDUCTION.format(reduction=reduction))


def _check_floating(x: jax.Array, fn: str) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise NotImplementedError(_NOT_IMPLEMENTED.format(fn=fn, dtype=_dtype_name(x.dtype)))


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.mean(loss)


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """``torch.broadcast_shapes(a, b)`` with torch's error message."""
    ndim = max(len(a), len(b))
    pa = (1,) * (ndim - len(a)) + a
    pb = (1,) * (ndim - len(b)) + b
    out = []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(_BROADCAST.format(a=x, b=y, dim=i))
        out.append(y if x == 1 else x)
    return tuple(out)


def _expand_to(x: jax.Array, shape: tuple[int, ...], *, x_is_a: bool) -> jax.Array:
    """Broadcast ``x`` to exactly ``shape`` (explicitly, so strict rank promotion is respected)."""
    a, b = (x.shape, shape) if x_is_a else (shape, x.shape)
    if _broadcast_shape(a, b) != shape:
        # x would grow the result: torch's in-place kernels refuse that too.
        raise RuntimeError(
            f"output with shape {_sizes(shape)} doesn't match the broadcast shape "
            f"{_sizes(_broadcast_shape(a, b))}"
        )
    return jnp.broadcast_to(x, shape)


def _class_broadcast(weight: jax.Array, ndim: int, class_dim: int) -> jax.Array:
    """View a ``(C,)`` weight so that it broadcasts along ``class_dim`` of an ``ndim`` array."""
    shape = [1] * ndim
    shape[class_dim] = weight.shape[0]
    return weight.reshape(shape)


def _smoothing(label_smoothing: float | jax.Array) -> float | jax.Array | None:
    """Validate ``label_smoothing``; return it when the smoothing path applies, else None.

    A traced value cannot be checked or branched on: it always takes the smoothing path (which
    equals the plain path at 0).
    """
    if isinstance(label_smoothing, jax.core.Tracer):
        return label_smoothing
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise RuntimeError(_LABEL_SMOOTHING.format(value=value))
    return value if value > 0.0 else None


def _check_weight_dtype(weight: jax.Array, input: jax.Array) -> None:
    if weight.dtype != input.dtype:
        raise RuntimeError(
            _WEIGHT_DTYPE.format(want=_dtype_name(input.dtype), got=_dtype_name(weight.dtype))
        )


# --------------------------------------------------------------------------------------------
# Class-index targets (nll_loss_nd)


def _check_index_target(input: jax.Array, target: jax.Array, weight: jax.Array | None) -> jax.Array:
    """torch's ``nll_loss_nd`` shape checks, in torch's order; returns the (maybe squeezed) target.

    ``input`` has at least one axis here.
    """
    ndim = input.ndim
    if ndim != 1:
        target_batch = target.shape[0] if target.ndim else 0
        if input.shape[0] != target_batch:
            raise ValueError(_BATCH_MISMATCH.format(n=input.shape[0], m=target_batch))
    n_classes = input.shape[0 if ndim == 1 else 1]
    if ndim <= 2:
        if target.ndim > 1:
            raise RuntimeError(_MULTI_TARGET)
        if ndim == 1 and target.ndim == 1:
            if target.shape[0] != 1:
                raise ValueError(_ONE_D_TARGET.format(size=target.shape[0]))
            target = target.reshape(())
        if ndim == 2 and target.ndim == 0:
            raise RuntimeError(
                _SIZE_MISMATCH_1D.format(input=_sizes(input.shape), target=_sizes(target.shape))
            )
        if weight is not None and (weight.ndim != 1 or weight.shape[0] != n_classes):
            raise RuntimeError(_WEIGHT_CLASSES.format(c=n_classes, shape=_sizes(weight.shape)))
    elif ndim == 4:
        if target.ndim != 3:
            raise RuntimeError(_SPATIAL_TARGET.format(ndim=target.ndim))
        if weight is not None and (weight.ndim != 1 or weight.shape[0] != n_classes):
            raise RuntimeError(_WEIGHT_CLASSES_ND)
        if target.shape != (input.shape[0], *input.shape[2:]):
            raise RuntimeError(
                _SIZE_MISMATCH_2D.format(input=_sizes(input.shape), target=_sizes(target.shape))
            )
    else:
        want = (input.shape[0], *input.shape[2:])
        if target.shape[1:] != input.shape[2:]:
            raise RuntimeError(_TARGET_SIZE.format(want=_sizes(want), got=_sizes(target.shape)))
        if weight is not None and (weight.ndim != 1 or weight.shape[0] != n_classes):
            raise RuntimeError(_WEIGHT_CLASSES_ND)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise RuntimeError(_TARGET_DTYPE.format(dtype=_dtype_name(target.dtype)))
    return target


def _check_bounds(target: Any, ignore_index: int, n_classes: int) -> None:
    """Raise torch's IndexError for a concrete out-of-range class index (not under tracing)."""
    if isinstance(target, jax.core.Tracer):
        return
    values = np.asarray(target).astype(np.int64)
    bad = (values != ignore_index) & ((values < 0) | (values >= n_classes))
    if bad.any():
        raise IndexError(_OUT_OF_BOUNDS.format(target=int(values[bad].flat[0])))


def _pick(logp: jax.Array, safe: jax.Array, class_dim: int) -> jax.Array:
    """``logp`` at class ``safe`` along ``class_dim``. On an Explicit mesh the gather runs with
    the axes in Auto mode (the classes may be sharded: tensor-parallel logits) and the result
    keeps the target's sharding (see ``_sharding``)."""

    def pick(logp: jax.Array, safe: jax.Array) -> jax.Array:
        index = jnp.expand_dims(safe, class_dim)
        return jnp.take_along_axis(logp, index, axis=class_dim).squeeze(class_dim)

    mesh = S.explicit_mesh(logp, safe)
    if mesh is None:
        return pick(logp, safe)
    with S.within(mesh):
        return S.in_auto(pick, P(*S.spec(safe)), logp, safe)


def _take(weight: jax.Array, safe: jax.Array) -> jax.Array:
    """``weight[safe]`` (class weights per element), placed like ``safe`` on an Explicit mesh."""
    mesh = S.explicit_mesh(weight, safe)
    if mesh is None:
        return jnp.take(weight, safe)
    with S.within(mesh):
        return S.in_auto(jnp.take, P(*S.spec(safe)), weight, safe)


def _index_terms(
    logp: jax.Array,
    target: jax.Array,
    weight: jax.Array | None,
    ignore_index: int,
    class_dim: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-element ``-w[y] * logp[y]``, the mean's denominator, and the mask of counted elements.

    Ignored elements give 0; out-of-range ones give NaN, and count as ignored in the denominator
    and the gradient.
    """
    n_classes = logp.shape[class_dim]
    if target.dtype not in (jnp.int32, jnp.int64):
        target = target.astype(jnp.int32)
    info = jnp.iinfo(target.dtype)
    if info.min <= ignore_index <= info.max:
        ignored = target == ignore_index
    else:
        ignored = jnp.zeros(target.shape, dtype=bool)
    out_of_range = ~ignored & ((target < 0) | (target >= n_classes))
    valid = ~(ignored | out_of_range)
    safe = jnp.where(valid, target, 0)
    if n_classes == 0:
        picked = jnp.zeros(target.shape, logp.dtype)
    else:
        picked = _pick(logp, safe, class_dim)
    if weight is None:
        loss = -picked
        total = jnp.sum(valid, dtype=logp.dtype)
    else:
        w = _take(weight, safe) if n_classes else jnp.zeros(target.shape, logp.dtype)
        loss = -w * picked
        total = jnp.sum(jnp.where(valid, w, 0))
    loss = jnp.where(valid, loss, 0)
    loss = jnp.where(out_of_range, jnp.nan, loss)
    return loss, total, valid


def _reduce_weighted(loss: jax.Array, total: jax.Array, reduction: str) -> jax.Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.sum(loss) / total


def nll_loss(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> jax.Array:
    """Negative log-likelihood of class indices, like ``torch.nn.functional.nll_loss``.

    ``l_i = -weight[y_i] * input[i, y_i]`` (the class axis is 1, or 0 for a 1-D input), and 0 where
    ``y_i == ignore_index``. ``'mean'`` is the weighted mean ``Σ l_i / Σ_{i not ignored}
    weight[y_i]`` (NaN when every element is ignored or the batch is empty).

    **Arguments:**

    - `input`: log-probabilities of shape ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    - `target`: integer class indices of shape ``()``, ``(N)`` or ``(N, d1, ..., dK)``. Any integer
      dtype is accepted (torch wants int64/uint8).
    - `weight`: optional ``(C,)`` class weights, same dtype as ``input``.
    - `ignore_index`: a target value that contributes neither to the loss nor to the mean's
      denominator (any int, also in-range or out-of-range ones).
    - `reduction`: ``'mean'``, ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the per-element loss of the target's shape for ``'none'``. Out-of-range indices
    behave as in `cross_entropy`.
    """
    V.check_array("nll_loss()", "input", input)
    V.check_array("nll_loss()", "target", target)
    _check_reduction(reduction)
    ignore_index = V.check_int("nll_loss()", "ignore_index", ignore_index)
    V.check_optional_array("nll_loss()", "weight", weight)
    input, target = _view(input), _view(target)
    if input.ndim < 1:
        raise ValueError(_NO_DIMS.format(ndim=input.ndim))
    weight = None if weight is None else _view(weight)
    target = _check_index_target(input, target, weight)
    _check_floating(input, "nll_loss")
    if weight is not None:
        _check_weight_dtype(weight, input)
    class_dim = 0 if input.ndim == 1 else 1
    ignore_index = operator.index(ignore_index)
    _check_bounds(target, ignore_index, input.shape[class_dim])
    loss, total, _ = _index_terms(
        jnp.asarray(input), jnp.asarray(target), _maybe_array(weight), ignore_index, class_dim
    )
    return _reduce_weighted(loss, total, reduction)


def cross_entropy(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float | jax.Array = 0.0,
) -> jax.Array:
    """Cross-entropy between logits and class indices or class probabilities, like torch.

    The class axis is **1** (0 for a 1-D input): logits ``(N, C, d1, ..., dK)`` go with index
    targets ``(N, d1, ..., dK)``; e.g. logits ``(100, 2, 2)`` and labels ``(100, 2)`` are 100
    samples of 2 positions over **2 classes on axis 1**.

    *Index targets* (``target.shape != input.shape``): ``nll_loss(log_softmax(input, 1), target,
    weight, ignore_index, reduction)``. With ``label_smoothing = ε > 0`` the result is
    ``(1 - ε) * nll + (ε / C) * smooth``, where ``smooth_i = -Σ_c weight[c] * logp[i, c]`` (0 at
    ignored elements) is reduced like the nll term (``'mean'`` divides by the same
    ``Σ_{not ignored} weight[y_i]``).

    *Probability targets* (chosen when ``target.shape == input.shape``; must be floating):
    ``per_i = -Σ_c weight[c] * logp[i, c] * t'[i, c]`` with ``t' = t * (1 - ε) + ε / C``;
    ``'mean'`` divides by ``N * d1 * ... * dK`` (not by the weights); ``ignore_index`` must be
    negative.

    Everything is checked at trace time with torch's exception types and messages (batch and
    spatial size mismatches, target rank, weight size, dtypes, ``ε > 1``, a bad reduction).

    *Out-of-range class indices.* With a concrete target (not a tracer), a target outside
    ``[0, C)`` that is not ``ignore_index`` raises torch's ``IndexError: Target 2 is out of
    bounds.`` (the check copies the target to the host, once per eager call). Under ``jit``/``vmap`` the values cannot be checked: such an element's loss is
    **NaN** (so ``'sum'`` and ``'mean'`` are NaN, and ``'none'`` is NaN at that element only),
    while the gradient treats the element as ignored (zero contribution, excluded from the
    mean's denominator), so the NaN is visible in the loss without being spread by the gradient.

    **Arguments:**

    - `input`: logits of shape ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``, floating.
    - `target`: class indices of shape ``()``, ``(N)`` or ``(N, d1, ..., dK)`` with any integer
      dtype (torch wants int64/uint8; JAX's int32 is accepted), or probabilities of the input's
      shape and a floating dtype.
    - `weight`: optional ``(C,)`` class weights, same dtype as ``input``.
    - `ignore_index`: index target value to skip (default -100; any int).
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    - `label_smoothing`: ε in ``[0, 1]`` (a negative value raises; torch treats it as 0). A traced
      value is used as is, unchecked.

    **Returns:**

    A scalar of the input's dtype, or for ``'none'`` the per-element loss of shape ``()``,
    ``(N)`` or ``(N, d1, ..., dK)``.
    """
    V.check_array("cross_entropy()", "input", input)
    V.check_array("cross_entropy()", "target", target)
    _check_reduction(reduction)
    ignore_index = V.check_int("cross_entropy()", "ignore_index", ignore_index)
    V.check_number("cross_entropy()", "label_smoothing", label_smoothing)
    V.check_optional_array("cross_entropy()", "weight", weight)
    input, target = _view(input), _view(target)
    weight = None if weight is None else _view(weight)

    if input.shape == target.shape:
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing)

    _check_floating(input, "log_softmax")
    if input.ndim == 0:
        raise IndexError(_DIM_OUT_OF_RANGE)
    target = _check_index_target(input, target, weight)
    if weight is not None:
        _check_weight_dtype(weight, input)
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim]
    ignore_index = operator.index(ignore_index)
    eps = _smoothing(label_smoothing)
    _check_bounds(target, ignore_index, n_classes)

    input, target, weight = jnp.asarray(input), jnp.asarray(target), _maybe_array(weight)
    logp = jax.nn.log_softmax(input, axis=class_dim)
    loss, total, valid = _index_terms(logp, target, weight, ignore_index, class_dim)
    nll = _reduce_weighted(loss, total, reduction)
    if eps is None:
        return nll
    if weight is None:
        smooth = -jnp.sum(logp, axis=class_dim)
    else:
        smooth = -jnp.sum(logp * _class_broadcast(weight, logp.ndim, class_dim), axis=class_dim)
    smooth = jnp.where(valid, smooth, 0)
    ret = _reduce_weighted(smooth, total, reduction)
    if isinstance(eps, jax.Array):
        eps = eps.astype(input.dtype)
    per_class = eps / n_classes if n_classes else jnp.nan
    return (1 - eps) * nll + per_class * ret


def _cross_entropy_probs(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float | jax.Array,
) -> jax.Array:
    """torch's ``cross_entropy_loss_prob_target`` (equal shapes)."""
    if not jnp.issubdtype(target.dtype, jnp.floating):
        raise RuntimeError(_PROB_TARGET_DTYPE.format(dtype=_dtype_name(target.dtype)))
    if operator.index(ignore_index) >= 0:
        raise RuntimeError(_PROB_IGNORE_INDEX)
    if input.ndim == 0:
        raise IndexError(_PROB_ZERO_DIM)
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != n_classes):
        raise RuntimeError(
            "cross_entropy: " + _WEIGHT_CLASSES.format(c=n_classes, shape=_sizes(weight.shape))
        )
    eps = _smoothing(label_smoothing)
    _check_floating(input, "log_softmax")
    if weight is not None:
        _check_weight_dtype(weight, input)

    input, target, weight = jnp.asarray(input), jnp.asarray(target), _maybe_array(weight)
    logp = jax.nn.log_softmax(input, axis=class_dim)
    if eps is not None:
        if isinstance(eps, jax.Array):
            eps = eps.astype(target.dtype)
        target = target * (1 - eps) + eps / n_classes
    terms = logp * target
    if weight is not None:
        terms = terms * _class_broadcast(weight, logp.ndim, class_dim)
    if reduction == "none":
        return -jnp.sum(terms, axis=class_dim)
    if reduction == "sum":
        return -jnp.sum(terms)
    if input.size == 0:
        return jnp.full((), jnp.nan, input.dtype)
    return -jnp.sum(terms) / (input.size / n_classes)


# --------------------------------------------------------------------------------------------
# Regression losses


def _pointwise(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None,
    reduction: str,
    fn: str,
    error: str,
) -> jax.Array:
    _check_reduction(reduction)
    input, target = _view(input), _view(target)
    if target.shape != input.shape:
        warnings.warn(
            _SIZE_BROADCAST_WARNING.format(
                target=_torch_size(target.shape), input=_torch_size(input.shape)
            ),
            UserWarning,
            stacklevel=3,
        )
    shape = _broadcast_shape(input.shape, target.shape)
    _check_floating(input, fn)
    input, target = jnp.asarray(input), jnp.asarray(target)
    diff = jnp.broadcast_to(input, shape) - jnp.broadcast_to(target, shape)
    if error == "square":
        loss = jnp.square(diff)
    else:
        # torch's subgradient of |d| at 0 is 0 (JAX's `abs` passes the tangent through).
        loss = jnp.where(diff == 0, jnp.zeros_like(diff), jnp.abs(diff))
    if weight is None:
        return _reduce(loss, reduction)
    weight = jnp.asarray(weight)
    if weight.shape != input.shape:
        raise ValueError(_WEIGHT_SIZE)
    loss = loss * jnp.broadcast_to(weight, shape)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(weight)
    return _reduce(loss, reduction)


def mse_loss(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
    weight: jax.Array | None = None,
) -> jax.Array:
    """Squared error ``(input - target)²``, like ``torch.nn.functional.mse_loss``.

    As in torch, a target of another shape is broadcast against the input with a
    ``UserWarning`` (incompatible shapes raise torch's ``RuntimeError``).

    **Arguments:**

    - `input`, `target`: floating arrays of the same (or broadcastable) shape.
    - `reduction`: ``'mean'`` (default; NaN for empty inputs), ``'sum'`` or ``'none'``.
    - `weight`: optional per-element weights of the input's shape (torch 2.6+): the loss is
      multiplied by it, and ``'mean'`` becomes ``Σ w·e / Σ w``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("mse_loss()", "input", input)
    V.check_array("mse_loss()", "target", target)
    return _pointwise(input, target, weight, reduction, "mse", "square")


def l1_loss(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
    weight: jax.Array | None = None,
) -> jax.Array:
    """Absolute error ``|input - target|``, like ``torch.nn.functional.l1_loss``.

    Shapes, broadcasting, reductions and ``weight`` as in `mse_loss`; the gradient at 0 is 0.

    **Arguments:**

    - `input`, `target`: floating arrays of the same (or broadcastable) shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    - `weight`: optional per-element weights of the input's shape.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("l1_loss()", "input", input)
    V.check_array("l1_loss()", "target", target)
    return _pointwise(input, target, weight, reduction, "l1", "abs")


# --------------------------------------------------------------------------------------------
# Binary cross-entropy


@jax.custom_jvp
def _bce_terms(input: jax.Array, target: jax.Array) -> jax.Array:
    log_x = jnp.maximum(jnp.log(input), _BCE_LOG_FLOOR)
    log_1mx = jnp.maximum(jnp.log1p(-input), _BCE_LOG_FLOOR)
    return (target - 1) * log_1mx - target * log_x


@_bce_terms.defjvp
def _bce_terms_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    # torch's derivatives: d/dx = (x - t) / max((1 - x) x, 1e-12), d/dt = -logit(x). Autodiff of
    # the clamped logs would instead give 0 * inf = NaN at x in {0, 1}.
    input, target = primals
    d_input, d_target = tangents
    out = _bce_terms(input, target)
    grad_input = (input - target) / jnp.maximum((1 - input) * input, _BCE_EPSILON)
    grad_target = jnp.log1p(-input) - jnp.log(input)
    return out, grad_input * d_input + grad_target * d_target


def binary_cross_entropy(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Binary cross-entropy of probabilities, like ``torch.nn.functional.binary_cross_entropy``.

    ``l = -w * (t * max(log x, -100) + (1 - t) * max(log(1 - x), -100))``: like torch, each log is
    clamped at -100, so ``x = 0`` or ``1`` gives a finite loss, and the gradient is torch's
    ``(x - t) / max(x (1 - x), 1e-12)``. Unlike torch, inputs outside ``[0, 1]`` are not checked
    (a value check); they give NaN.

    **Arguments:**

    - `input`: probabilities, floating.
    - `target`: targets of **the same shape** (torch's deprecation of broadcasting is a
      ``ValueError``) and the same dtype.
    - `weight`: optional rescaling weights broadcastable to the input's shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("binary_cross_entropy()", "input", input)
    V.check_array("binary_cross_entropy()", "target", target)
    _check_reduction(reduction)
    V.check_optional_array("binary_cross_entropy()", "weight", weight)
    input, target = _view(input), _view(target)
    if target.shape != input.shape:
        raise ValueError(
            _SIZE_DEPRECATED.format(
                target=_torch_size(target.shape), input=_torch_size(input.shape)
            )
        )
    _check_floating(input, "binary_cross_entropy")
    if target.dtype != input.dtype:
        raise RuntimeError(
            _BCE_TARGET_DTYPE.format(got=_dtype_name(target.dtype), want=_dtype_name(input.dtype))
        )
    loss = _bce_terms(jnp.asarray(input), jnp.asarray(target))
    if weight is not None:
        loss = loss * _expand_to(jnp.asarray(weight), input.shape, x_is_a=False)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    *,
    reduction: str = "mean",
    pos_weight: jax.Array | None = None,
) -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step, like torch's ``..._with_logits``.

    ``l = w * ((1 - t) * x - (1 + (p - 1) * t) * log σ(x))`` with ``log σ(x) = -softplus(-x)``
    (torch's formula), finite for any logits.

    **Arguments:**

    - `input`: logits, floating.
    - `target`: targets of the same shape (else torch's ``ValueError``), floating.
    - `weight`: optional rescaling weights broadcastable to the input's shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    - `pos_weight`: optional weight of the positive term, broadcastable to the input's shape
      (typically ``(C,)`` for a trailing class axis).

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("binary_cross_entropy_with_logits()", "input", input)
    V.check_array("binary_cross_entropy_with_logits()", "target", target)
    _check_reduction(reduction)
    V.check_optional_array("binary_cross_entropy_with_logits()", "weight", weight)
    V.check_optional_array("binary_cross_entropy_with_logits()", "pos_weight", pos_weight)
    input, target = _view(input), _view(target)
    if target.shape != input.shape:
        raise ValueError(
            _LOGITS_SIZE.format(target=_torch_size(target.shape), input=_torch_size(input.shape))
        )
    _check_floating(input, "binary_cross_entropy_with_logits")
    _check_floating(target, "binary_cross_entropy_with_logits")
    input, target = jnp.asarray(input), jnp.asarray(target)
    log_sigmoid = jax.nn.log_sigmoid(input)
    if pos_weight is not None:
        pos_weight = _expand_to(jnp.asarray(pos_weight), input.shape, x_is_a=True)
        log_sigmoid = log_sigmoid * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input - log_sigmoid
    if weight is not None:
        loss = loss * _expand_to(jnp.asarray(weight), input.shape, x_is_a=False)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------
# More losses (torch/nn/functional.py and aten/src/ATen/native/Loss*.cpp): regression, KL,
# margin and embedding losses, Poisson and Gaussian likelihoods. Same conventions as above:
# checks at trace time with torch's types and wording, options after torch's positional prefix
# (the arguments before ``size_average``) are keyword-only, no ``size_average``/``reduce``.

_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)
_KL_INTEGRAL = "kl_div: Integral inputs not supported."
_BAD_REDUCTION_SHORT = "{reduction} is not valid"
_HUBER_BAD_REDUCTION = "Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'."
_NEGATIVE_BETA = "smooth_l1_loss does not support negative values for beta."
_NONPOSITIVE_DELTA = "huber_loss does not support non-positive values for delta."
_RESULT_CAST = "result type Float can't be cast to the desired output type {dtype}"
_NO_DIMS_CLASS = "Dimension specified as -1 but tensor has no dimensions"
_NON_EMPTY = "Expected non-empty vector or matrix with optional 0-dim batch size, but got: {shape}"
_MULTILABEL_TARGET = "inconsistent target size: {target} for input of size: {input}"
_MULTILABEL_RANGE = "argument #2 'target' is out of range"
_LONG_TARGET = "expected scalar type Long but found {dtype}"
_MARGIN_P = "only p == 1 and p == 2 supported"
_MARGIN_WEIGHT_DIM = "weight must be one-dimensional"
_MARGIN_WEIGHT_SIZE = "inconsistent weight size, expected {c} but got {shape}"
_MARGIN_TARGET = (
    "multi_margin_loss: target tensor should be 1-D with size equal to the number of input "
    "samples (batch size). Expected target size [{n}], but got {got}. Input has shape {shape}."
)
_MARGIN_RANGE = "target out of range"
_RANKING_DIMS = (
    "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
    "input1: {a}, input2: {b}, target: {t} "
)
_COSINE_TARGET_1D = (
    "1D target tensor expects 2D input tensors, but found inputs with sizes {a} and {b}."
)
_COSINE_TARGET_0D = (
    "0D target tensor expects 1D input tensors, but found inputs with sizes {a} and {b}."
)
_TRIPLET_MARGIN = "margin must be greater than 0, got {margin}"
_TRIPLET_DIMS = (
    "The anchor, positive, and negative tensors are expected to have the same number of "
    "dimensions, but got: anchor {a}D, positive {p}D, and negative {n}D inputs"
)
_VAR_NEGATIVE = "var has negative entry/entries"
_VAR_SIZE = "var is of incorrect size"

# torch's cosine_embedding_loss adds it to each squared magnitude.
_COSINE_EPSILON = 1e-12


def _check_reduction_as(reduction: str, message: str = _BAD_REDUCTION) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(message.format(reduction=reduction))


def _warn_size(input: Any, target: Any) -> None:
    if target.shape != input.shape:
        warnings.warn(
            _SIZE_BROADCAST_WARNING.format(
                target=_torch_size(target.shape), input=_torch_size(input.shape)
            ),
            UserWarning,
            stacklevel=3,
        )


def _float(x: Any) -> jax.Array:
    """``x`` as a JAX array; integer and bool arrays become JAX's default float (as torch promotes
    them in these losses' arithmetic)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _broadcast(*xs: jax.Array) -> list[jax.Array]:
    """``xs`` broadcast to their common shape explicitly (strict rank promotion is respected)."""
    shape = functools.reduce(_broadcast_shape, [x.shape for x in xs])
    return [jnp.broadcast_to(x, shape) for x in xs]


def _relu_ge(x: jax.Array) -> jax.Array:
    """``x.clamp_min(0)``: torch's gradient is 1 at 0 (``jnp.maximum`` would give 1/2)."""
    return jnp.where(x >= 0, x, jnp.zeros_like(x))


def _relu_gt(x: jax.Array) -> jax.Array:
    """``z if z > 0 else 0`` as torch's margin kernels write it: gradient 0 at 0."""
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def _abs0(x: jax.Array) -> jax.Array:
    """``|x|`` with torch's subgradient 0 at 0."""
    return jnp.where(x == 0, jnp.zeros_like(x), jnp.abs(x))


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _scalar(value: Any) -> Any:
    """A number option as a Python float (weakly typed, so it never promotes the loss's dtype);
    a JAX array (maybe traced) is kept as it is."""
    return value if isinstance(value, jax.Array) else float(value)


def kl_div(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
    log_target: bool = False,
) -> jax.Array:
    """Kullback-Leibler divergence, like ``torch.nn.functional.kl_div``.

    ``l = target * (log(target) - input)`` (``xlogy``: 0 where ``target == 0``), or with
    ``log_target=True``, ``l = exp(target) * (target - input)``. ``input`` holds
    log-probabilities. ``input`` and ``target`` broadcast against each other (no warning, as in
    torch).

    **Arguments:**

    - `input`: log-probabilities, floating.
    - `target`: probabilities (or log-probabilities with ``log_target``), floating.
    - `reduction`: ``'mean'`` (default: the mean over **all** elements, with torch's
      ``UserWarning`` that it is not the KL divergence), ``'batchmean'`` (the sum divided by
      ``input.shape[0]``; the sum for a 0-d input), ``'sum'`` or ``'none'``.
    - `log_target`: whether ``target`` is in log space.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("kl_div()", "input", input)
    V.check_array("kl_div()", "target", target)
    if reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
    if reduction != "batchmean":
        _check_reduction(reduction)
    input, target = _view(input), _view(target)
    for x in (input, target):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            raise RuntimeError(_KL_INTEGRAL)
    _broadcast_shape(target.shape, input.shape)
    ndim = input.ndim
    batch = input.shape[0] if ndim else 1
    input, target = _broadcast(jnp.asarray(input), jnp.asarray(target))
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = jax.scipy.special.xlogy(target, target) - target * input
    if reduction == "batchmean":
        total = jnp.sum(loss)
        return total / batch if ndim else total
    return _reduce(loss, reduction)


def smooth_l1_loss(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
    beta: float = 1.0,
) -> jax.Array:
    """Smooth L1 loss, like ``torch.nn.functional.smooth_l1_loss``.

    With ``d = |input - target|``: ``0.5 d² / beta`` where ``d < beta``, else ``d - 0.5 beta``;
    ``beta = 0`` is exactly `l1_loss` (gradient 0 at ``d = 0``). A target of another shape
    broadcasts with torch's ``UserWarning``.

    **Arguments:**

    - `input`, `target`: floating arrays of the same (or broadcastable) shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    - `beta`: the threshold, ``>= 0`` (a negative value raises torch's ``RuntimeError``).

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("smooth_l1_loss()", "input", input)
    V.check_array("smooth_l1_loss()", "target", target)
    V.check_number("smooth_l1_loss()", "beta", beta)
    input, target = _view(input), _view(target)
    _warn_size(input, target)
    _check_reduction(reduction)
    shape = _broadcast_shape(input.shape, target.shape)
    beta = _scalar(beta)
    if _concrete(beta) and float(beta) == 0.0:
        _check_floating(input, "l1")
        diff = jnp.broadcast_to(jnp.asarray(input), shape) - jnp.broadcast_to(
            jnp.asarray(target), shape
        )
        return _reduce(_abs0(diff), reduction)
    _check_floating(input, "smooth_l1_cpu")
    if _concrete(beta) and float(beta) < 0:
        raise RuntimeError(_NEGATIVE_BETA)
    diff = jnp.broadcast_to(jnp.asarray(input), shape) - jnp.broadcast_to(
        jnp.asarray(target), shape
    )
    d = jnp.abs(diff)
    loss = jnp.where(d < beta, 0.5 * diff * diff / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(
    input: jax.Array,
    target: jax.Array,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: jax.Array | None = None,
) -> jax.Array:
    """Huber loss, like ``torch.nn.functional.huber_loss``.

    With ``d = |input - target|``: ``0.5 d²`` where ``d < delta``, else
    ``delta (d - 0.5 delta)`` (``= delta * smooth_l1_loss(beta=delta)``). A target of another
    shape broadcasts with torch's ``UserWarning``.

    **Arguments:**

    - `input`, `target`: floating arrays of the same (or broadcastable) shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    - `delta`: the threshold, ``> 0`` (else torch's ``RuntimeError``).
    - `weight`: optional per-element weights of the input's shape; the loss is multiplied by it
      and ``'mean'`` stays the plain mean (torch's rule, unlike `mse_loss`'s weighted mean).

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("huber_loss()", "input", input)
    V.check_array("huber_loss()", "target", target)
    V.check_number("huber_loss()", "delta", delta)
    V.check_optional_array("huber_loss()", "weight", weight)
    input, target = _view(input), _view(target)
    _warn_size(input, target)
    if weight is None:
        _check_reduction(reduction)
    shape = _broadcast_shape(input.shape, target.shape)
    _check_floating(input, "huber_cpu")
    delta = _scalar(delta)
    if _concrete(delta) and float(delta) <= 0:
        raise RuntimeError(_NONPOSITIVE_DELTA)
    diff = jnp.broadcast_to(jnp.asarray(input), shape) - jnp.broadcast_to(
        jnp.asarray(target), shape
    )
    d = jnp.abs(diff)
    loss = jnp.where(d < delta, 0.5 * diff * diff, delta * (d - 0.5 * delta))
    if weight is None:
        return _reduce(loss, reduction)
    weight = _view(weight)
    if weight.shape != input.shape:
        raise ValueError(_WEIGHT_SIZE)
    _check_reduction_as(reduction, _HUBER_BAD_REDUCTION)
    loss, weight = _broadcast(loss, jnp.asarray(weight))
    return _reduce(loss * weight, reduction)


def soft_margin_loss(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Two-class logistic loss ``log(1 + exp(-target * input))``, like torch's
    ``soft_margin_loss``.

    ``target`` (usually ±1) is broadcast to the input's shape (a target that would grow the
    result raises torch's ``RuntimeError``). Computed as ``softplus(-target * input)``: where
    torch's ``log1p(exp(.))`` overflows to ``inf`` (``-target * input`` above ~88 in float32),
    this gives the finite value.

    **Arguments:**

    - `input`: floating scores.
    - `target`: labels broadcastable to the input's shape.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("soft_margin_loss()", "input", input)
    V.check_array("soft_margin_loss()", "target", target)
    _check_reduction(reduction)
    input, target = _view(input), _view(target)
    if not jnp.issubdtype(input.dtype, jnp.inexact):
        raise RuntimeError(_RESULT_CAST.format(dtype=_dtype_name(input.dtype)))
    input = jnp.asarray(input)
    target = _expand_to(jnp.asarray(target), input.shape, x_is_a=False).astype(input.dtype)
    return _reduce(jax.nn.softplus(-target * input), reduction)


def multilabel_soft_margin_loss(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Multi-label one-versus-all logistic loss, like torch's ``multilabel_soft_margin_loss``.

    ``l = -(t log σ(x) + (1 - t) log σ(-x)) * weight``, summed over the input's last axis and
    divided by its size ``C``; ``target`` and ``weight`` broadcast as in torch (a ``weight`` with
    more axes gives a larger result, torch's rule).

    **Arguments:**

    - `input`: floating scores ``(C)`` or ``(N, C)`` (the last axis is the class axis).
    - `target`: 0/1 labels (any real dtype) broadcastable with the input.
    - `weight`: optional class weights broadcastable with the loss (typically ``(C,)``).
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'`` (else torch's ``ValueError``).

    **Returns:**

    A scalar, or the per-sample loss (the input's shape without its last axis) for ``'none'``.
    """
    V.check_array("multilabel_soft_margin_loss()", "input", input)
    V.check_array("multilabel_soft_margin_loss()", "target", target)
    V.check_optional_array("multilabel_soft_margin_loss()", "weight", weight)
    input, target = _view(input), _view(target)
    shape = _broadcast_shape(input.shape, target.shape)
    if weight is not None:
        weight = _view(weight)
        shape = _broadcast_shape(shape, weight.shape)
    if input.ndim == 0:
        raise IndexError(_NO_DIMS_CLASS)
    _check_reduction_as(reduction, _BAD_REDUCTION_SHORT)
    x, t = (jnp.broadcast_to(a, shape) for a in (_float(input), _float(target)))
    loss = -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
    if weight is not None:
        loss = loss * jnp.broadcast_to(jnp.asarray(weight), shape)
    # torch sums over axis `input.ndim - 1` of the (maybe larger) broadcast loss.
    loss = jnp.sum(loss, axis=input.ndim - 1) / input.shape[-1]
    return _reduce(loss, reduction)


def _check_index_dtype(target: Any) -> None:
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise RuntimeError(_LONG_TARGET.format(dtype=_dtype_name(target.dtype)))


def _check_margin_input(input: Any) -> tuple[int, int]:
    """torch's ``multi*_margin_loss_shape_check`` on the input: (frames, classes)."""
    ndim = input.ndim
    if not (
        (ndim == 2 and input.shape[1] != 0) or (ndim == 1 and input.shape[0] != 0) or ndim == 0
    ):
        raise RuntimeError(_NON_EMPTY.format(shape=_sizes(input.shape)))
    if ndim <= 1:
        return 1, (1 if ndim == 0 else input.shape[0])
    return input.shape[0], input.shape[1]


def multilabel_margin_loss(
    input: jax.Array,
    target: jax.Array,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Multi-class multi-label hinge loss, like ``torch.nn.functional.multilabel_margin_loss``.

    For each sample, the target classes are the entries of ``target`` before its first negative
    value (torch pads with -1); ``l = Σ_j Σ_{i not a target} max(0, 1 - (x[y_j] - x[i])) / C``
    (a repeated target counts once per occurrence, as in torch; the gradient is 0 at the hinge).

    **Arguments:**

    - `input`: floating scores ``(C)`` or ``(N, C)`` (a 0-d input is one class), ``C > 0``.
    - `target`: integer class indices of the input's shape (any integer dtype; torch wants
      int64). With a concrete target, values outside ``[-1, C)`` raise torch's
      ``RuntimeError``; under ``jit`` they cannot be checked (negative values end the list,
      too-large ones are clipped).
    - `reduction`: ``'mean'`` (default; over samples), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or ``(N,)`` for ``'none'`` with a 2-D input.
    """
    V.check_array("multilabel_margin_loss()", "input", input)
    V.check_array("multilabel_margin_loss()", "target", target)
    _check_reduction(reduction)
    input, target = _view(input), _view(target)
    _check_floating(input, "multilabel_margin_loss_forward_out_frame")
    frames, classes = _check_margin_input(input)
    if input.ndim <= 1:
        ok = target.ndim <= 1 and target.size == classes
    else:
        ok = target.shape == input.shape
    if not ok:
        raise RuntimeError(
            _MULTILABEL_TARGET.format(target=_sizes(target.shape), input=_sizes(input.shape))
        )
    _check_index_dtype(target)
    if _concrete(target) and target.size:
        values = np.asarray(target).astype(np.int64)
        if values.min() < -1 or values.max() >= classes:
            raise RuntimeError(_MULTILABEL_RANGE)
    x = jnp.asarray(input).reshape(frames, classes)
    y = jnp.asarray(target).reshape(frames, classes).astype(jnp.int32)
    listed = jnp.cumprod(y >= 0, axis=1).astype(bool)  # entries before the first negative
    safe = jnp.clip(y, 0, classes - 1)
    one_hot = (safe[:, :, None] == jnp.arange(classes)[None, None, :]) & listed[:, :, None]
    is_target = jnp.any(one_hot, axis=1)  # (N, C)
    x_target = jnp.take_along_axis(x, safe, axis=1)  # (N, C_j)
    z = 1 - x_target[:, :, None] + x[:, None, :]
    keep = listed[:, :, None] & ~is_target[:, None, :]
    loss = jnp.sum(jnp.where(keep, _relu_gt(z), 0), axis=(1, 2)) / classes
    if reduction == "none":
        return loss if input.ndim == 2 else loss.reshape(())
    return _reduce(loss, reduction)


def multi_margin_loss(
    input: jax.Array,
    target: jax.Array,
    p: int = 1,
    margin: float = 1.0,
    weight: jax.Array | None = None,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Multi-class hinge loss, like ``torch.nn.functional.multi_margin_loss``.

    ``l = Σ_{i != y} weight[y] * max(0, margin - x[y] + x[i])^p / C`` (torch's kernel: the weight
    multiplies the powered hinge; the gradient is 0 at the hinge).

    **Arguments:**

    - `input`: floating scores ``(C)`` or ``(N, C)`` (a 0-d input is one class), ``C > 0``.
    - `target`: integer class indices, 1-D with ``N`` entries (``()`` or ``(1,)`` for an unbatched
      input). Any integer dtype (torch wants int64). A concrete index outside ``[0, C)`` raises
      torch's ``RuntimeError``; under ``jit`` it is clipped.
    - `p`: 1 or 2.
    - `margin`: the margin.
    - `weight`: optional ``(C,)`` class weights, the input's dtype.
    - `reduction`: ``'mean'`` (default; over samples), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the per-sample loss of the target's shape for ``'none'``.
    """
    V.check_array("multi_margin_loss()", "input", input)
    V.check_array("multi_margin_loss()", "target", target)
    V.check_number("multi_margin_loss()", "margin", margin)
    V.check_optional_array("multi_margin_loss()", "weight", weight)
    _check_reduction(reduction)
    if p != 1 and p != 2:
        raise ValueError(_MARGIN_P)
    input, target = _view(input), _view(target)
    if weight is not None:
        weight = _view(weight)
        if weight.ndim != 1:
            raise ValueError(_MARGIN_WEIGHT_DIM)
    _check_floating(input, "multi_margin_loss_cpu_kernel")
    frames, classes = _check_margin_input(input)
    if not (target.ndim <= 1 and target.size == frames):
        raise RuntimeError(
            _MARGIN_TARGET.format(n=frames, got=_sizes(target.shape), shape=_sizes(input.shape))
        )
    if weight is not None:
        if weight.size != classes:
            raise RuntimeError(_MARGIN_WEIGHT_SIZE.format(c=classes, shape=_sizes(weight.shape)))
        _check_weight_dtype(weight, input)
    _check_index_dtype(target)
    if _concrete(target) and target.size:
        values = np.asarray(target).astype(np.int64)
        if values.min() < 0 or values.max() >= classes:
            raise RuntimeError(_MARGIN_RANGE)
    x = jnp.asarray(input).reshape(frames, classes)
    y = jnp.clip(jnp.asarray(target).reshape(frames).astype(jnp.int32), 0, classes - 1)
    x_target = jnp.take_along_axis(x, y[:, None], axis=1)
    h = _relu_gt(_scalar(margin) - x_target + x)
    if p == 2:
        h = h * h
    if weight is not None:
        h = h * jnp.take(jnp.asarray(weight), y)[:, None]
    h = jnp.where(jnp.arange(classes)[None, :] == y[:, None], 0, h)
    loss = jnp.sum(h, axis=1) / classes
    if reduction == "none":
        return loss.reshape(target.shape)
    return _reduce(loss, reduction)


def margin_ranking_loss(
    input1: jax.Array,
    input2: jax.Array,
    target: jax.Array,
    margin: float = 0.0,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Ranking hinge ``max(0, -target * (input1 - input2) + margin)``, like torch's
    ``margin_ranking_loss``.

    The three arrays must have the same number of axes (torch's ``RuntimeError``) and broadcast
    against each other. The gradient at the hinge is torch's ``clamp_min``'s (1).

    **Arguments:**

    - `input1`, `input2`: scores.
    - `target`: ±1 labels.
    - `margin`: the margin (default 0).
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    for name, value in (("input1", input1), ("input2", input2), ("target", target)):
        V.check_array("margin_ranking_loss()", name, value)
    V.check_number("margin_ranking_loss()", "margin", margin)
    _check_reduction(reduction)
    a, b, t = _view(input1), _view(input2), _view(target)
    if a.ndim != b.ndim or a.ndim != t.ndim:
        raise RuntimeError(
            _RANKING_DIMS.format(
                a=_torch_size(a.shape), b=_torch_size(b.shape), t=_torch_size(t.shape)
            )
        )
    _broadcast_shape(_broadcast_shape(a.shape, b.shape), t.shape)
    a, b, t = _broadcast(_float(a), _float(b), jnp.asarray(t))
    return _reduce(_relu_ge(-t * (a - b) + _scalar(margin)), reduction)


def hinge_embedding_loss(
    input: jax.Array,
    target: jax.Array,
    margin: float = 1.0,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Hinge embedding loss, like ``torch.nn.functional.hinge_embedding_loss``.

    torch's formula: ``(target != 1) * max(0, margin - x) + (target != -1) * x`` (so ``x`` where
    the target is 1, the hinge where it is -1); ``input`` and ``target`` broadcast.

    **Arguments:**

    - `input`: distances, floating.
    - `target`: ±1 labels.
    - `margin`: the margin (default 1).
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("hinge_embedding_loss()", "input", input)
    V.check_array("hinge_embedding_loss()", "target", target)
    V.check_number("hinge_embedding_loss()", "margin", margin)
    _check_reduction(reduction)
    x, t = _view(input), _view(target)
    _broadcast_shape(t.shape, x.shape)
    t, x = _broadcast(jnp.asarray(t), _float(x))
    zero = jnp.zeros((), x.dtype)
    loss = jnp.where(t != 1, _relu_ge(_scalar(margin) - x), zero) + jnp.where(t != -1, x, zero)
    return _reduce(loss, reduction)


def cosine_embedding_loss(
    input1: jax.Array,
    input2: jax.Array,
    target: jax.Array,
    margin: float = 0.0,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Cosine embedding loss, like ``torch.nn.functional.cosine_embedding_loss``.

    With ``cos = <x1, x2> / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12))`` along the feature axis:
    ``1 - cos`` where ``target == 1``, ``max(0, cos - margin)`` where ``target == -1``, and 0 for
    any other target value (torch's rule).

    **Arguments:**

    - `input1`, `input2`: ``(N, D)`` with a ``(N,)`` target, or ``(D,)`` with a ``()`` target
      (torch's ``RuntimeError`` otherwise); they broadcast against each other.
    - `target`: ±1 labels.
    - `margin`: the margin (default 0).
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or ``(N,)`` for ``'none'``.
    """
    for name, value in (("input1", input1), ("input2", input2), ("target", target)):
        V.check_array("cosine_embedding_loss()", name, value)
    V.check_number("cosine_embedding_loss()", "margin", margin)
    _check_reduction(reduction)
    a, b, t = _view(input1), _view(input2), _view(target)
    if t.ndim > 1:
        raise RuntimeError(_MULTI_TARGET)
    if t.ndim == 1 and not (a.ndim == 2 and b.ndim == 2):
        raise RuntimeError(_COSINE_TARGET_1D.format(a=_sizes(a.shape), b=_sizes(b.shape)))
    if t.ndim == 0 and not (a.ndim == 1 and b.ndim == 1):
        raise RuntimeError(_COSINE_TARGET_0D.format(a=_sizes(a.shape), b=_sizes(b.shape)))
    shape = _broadcast_shape(a.shape, b.shape)
    _broadcast_shape(t.shape, shape[:-1])
    a, b = _broadcast(_float(a), _float(b))
    t = jnp.asarray(t)
    axis = t.ndim
    prod = jnp.sum(a * b, axis=axis)
    mag1 = jnp.sum(a * a, axis=axis) + _COSINE_EPSILON
    mag2 = jnp.sum(b * b, axis=axis) + _COSINE_EPSILON
    t, cos = _broadcast(t, prod / jnp.sqrt(mag1 * mag2))
    zero = jnp.zeros((), cos.dtype)
    loss = jnp.where(t == 1, 1 - cos, zero) + jnp.where(
        t == -1, _relu_ge(cos - _scalar(margin)), zero
    )
    return _reduce(loss, reduction)


def _check_triplet(anchor: Any, positive: Any, negative: Any) -> None:
    if not (anchor.ndim == positive.ndim == negative.ndim):
        raise RuntimeError(_TRIPLET_DIMS.format(a=anchor.ndim, p=positive.ndim, n=negative.ndim))


def _check_margin_positive(margin: Any) -> None:
    if _concrete(margin) and float(margin) <= 0:
        raise ValueError(_TRIPLET_MARGIN.format(margin=margin))


def triplet_margin_loss(
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Triplet loss ``max(0, margin + d(a, p) - d(a, n))``, like torch's ``triplet_margin_loss``.

    ``d(x, y) = ‖x - y + eps‖_p`` over the last axis (torch's ``pairwise_distance``; inputs
    broadcast). With ``swap``, ``d(a, n)`` becomes ``min(d(a, n), d(p, n))``.

    **Arguments:**

    - `anchor`, `positive`, `negative`: ``(N, D)`` or ``(D)`` (any rank, the same for all three:
      torch's ``RuntimeError`` otherwise).
    - `margin`: ``> 0`` (torch's ``ValueError`` otherwise).
    - `p`: the norm degree (any real, ``inf`` included).
    - `eps`: added to the difference.
    - `swap`: use the distance swap.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the per-triplet loss for ``'none'``.
    """
    for name, value in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        V.check_array("triplet_margin_loss()", name, value)
    V.check_number("triplet_margin_loss()", "margin", margin)
    _check_reduction(reduction)
    _check_margin_positive(margin)
    a, pos, neg = _view(anchor), _view(positive), _view(negative)
    _check_triplet(a, pos, neg)
    a, pos, neg = _float(a), _float(pos), _float(neg)
    p, eps, margin = float(p), _scalar(eps), _scalar(margin)
    from fparam.nn.functional.distance import pairwise_distance  # distance imports this file

    dist_pos = pairwise_distance(a, pos, p, eps)
    dist_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        dist_neg = jnp.minimum(dist_neg, pairwise_distance(pos, neg, p, eps))
    return _reduce(_relu_ge(margin + dist_pos - dist_neg), reduction)


def triplet_margin_with_distance_loss(
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    *,
    distance_function: Any = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> jax.Array:
    """Triplet loss with a custom distance, like torch's ``triplet_margin_with_distance_loss``.

    ``max(0, margin + D(a, p) - D(a, n))`` with ``D = distance_function`` (default: the
    pairwise L2 distance with ``eps=1e-6``, as torch's ``pairwise_distance``); with ``swap``,
    ``D(a, n)`` becomes ``min(D(a, n), D(p, n))``.

    **Arguments:**

    - `anchor`, `positive`, `negative`: arrays of the same rank (torch's ``RuntimeError``
      otherwise).
    - `distance_function`: a callable ``(x, y) -> distances`` (JAX-traceable), or None.
    - `margin`: ``> 0`` (torch's ``ValueError`` otherwise).
    - `swap`: use the distance swap.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the per-triplet loss for ``'none'``.
    """
    for name, value in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        V.check_array("triplet_margin_with_distance_loss()", name, value)
    V.check_number("triplet_margin_with_distance_loss()", "margin", margin)
    if distance_function is not None and not callable(distance_function):
        raise TypeError(
            "triplet_margin_with_distance_loss(): argument 'distance_function' must be callable "
            f"or None, got {type(distance_function).__name__}"
        )
    _check_reduction(reduction)
    _check_margin_positive(margin)
    a, pos, neg = _view(anchor), _view(positive), _view(negative)
    _check_triplet(a, pos, neg)
    a, pos, neg = jnp.asarray(a), jnp.asarray(pos), jnp.asarray(neg)
    from fparam.nn.functional.distance import pairwise_distance  # distance imports this file

    dist = distance_function if distance_function is not None else pairwise_distance
    margin = _scalar(margin)
    dist_pos = dist(a, pos)
    dist_neg = dist(a, neg)
    if swap:
        dist_neg = jnp.minimum(dist_neg, dist(pos, neg))
    return _reduce(_relu_ge(margin + dist_pos - dist_neg), reduction)


def poisson_nll_loss(
    input: jax.Array,
    target: jax.Array,
    log_input: bool = True,
    full: bool = False,
    *,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> jax.Array:
    """Poisson negative log-likelihood, like ``torch.nn.functional.poisson_nll_loss``.

    ``exp(input) - target * input`` (``log_input=True``) or ``input - target * log(input + eps)``;
    with ``full``, the Stirling term ``t log t - t + 0.5 log(2π t)`` is added where ``t > 1``.
    ``input`` and ``target`` broadcast (no warning, as in torch).

    Divergence: with ``full``, the target's gradient is 0 where ``t <= 1`` (torch's is NaN at
    ``t = 0``: ``0 * log 0``).

    **Arguments:**

    - `input`: the log-rate (or the rate with ``log_input=False``).
    - `target`: counts.
    - `log_input`, `full`, `eps`: as above.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("poisson_nll_loss()", "input", input)
    V.check_array("poisson_nll_loss()", "target", target)
    V.check_number("poisson_nll_loss()", "eps", eps)
    _check_reduction(reduction)
    x, t = _view(input), _view(target)
    _broadcast_shape(t.shape, x.shape)
    x, t = _broadcast(_float(x), _float(t))
    eps = _scalar(eps)
    if log_input:
        loss = jnp.exp(x) - t * x
    else:
        loss = x - t * jnp.log(x + eps)
    if full:
        big = t > 1
        ts = jnp.where(big, t, 2)  # keeps the masked-out branch's gradient finite
        stirling = ts * jnp.log(ts) - ts + 0.5 * jnp.log(2 * np.pi * ts)
        loss = loss + jnp.where(big, stirling, 0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(
    input: jax.Array,
    target: jax.Array,
    var: jax.Array | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> jax.Array:
    """Gaussian negative log-likelihood, like ``torch.nn.functional.gaussian_nll_loss``.

    ``0.5 (log(max(var, eps)) + (input - target)² / max(var, eps))`` (+ ``0.5 log 2π`` with
    ``full``). As in torch, the clamp is not differentiated: the gradient of ``var`` passes
    through it unchanged.

    ``var`` may have the input's shape; or the input's shape without its last axis (a trailing
    1 is added); or the input's rank with exactly one axis of size 1 where the input's differs
    (torch's rule; anything else raises torch's ``ValueError: var is of incorrect size``). A
    Python number is used for every element. A negative ``var`` raises torch's ``ValueError``
    when ``var`` is concrete; under ``jit`` it cannot be checked and is clamped to ``eps``.

    **Arguments:**

    - `input`: the predicted means.
    - `target`: samples (broadcasts with the input).
    - `var`: the predicted variances, or a number.
    - `full`: add the constant term.
    - `eps`: the clamp.
    - `reduction`: ``'mean'`` (default), ``'sum'`` or ``'none'`` (else torch's ``ValueError``).

    **Returns:**

    A scalar, or the elementwise loss for ``'none'``.
    """
    V.check_array("gaussian_nll_loss()", "input", input)
    V.check_array("gaussian_nll_loss()", "target", target)
    V.check_number("gaussian_nll_loss()", "eps", eps)
    x, t = _view(input), _view(target)
    if isinstance(var, (int, float, np.integer, np.floating)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(_VAR_NEGATIVE)
        v: Any = jnp.full(x.shape, var, dtype=_float(x).dtype)
    else:
        V.check_array("gaussian_nll_loss()", "var", var)
        v = _view(var)
        if _concrete(v) and bool(np.any(np.asarray(v) < 0)):
            raise ValueError(_VAR_NEGATIVE)
    if v.shape != x.shape:
        if x.shape[:-1] == v.shape:
            v = jnp.expand_dims(jnp.asarray(v), -1)
        elif not (x.ndim == v.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1):
            raise ValueError(_VAR_SIZE)
    _check_reduction_as(reduction, _BAD_REDUCTION_SHORT)
    x, t, v = _broadcast(_float(x), _float(t), _float(v))
    # torch clamps a copy under no_grad: the clamp's value is used, its derivative is not.
    v = v + jax.lax.stop_gradient(jnp.maximum(v, _scalar(eps)) - v)
    loss = 0.5 * (jnp.log(v) + (x - t) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)
