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

import operator
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam.nn import _validation as V

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "l1_loss",
    "mse_loss",
    "nll_loss",
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
        index = jnp.expand_dims(safe, class_dim)
        picked = jnp.take_along_axis(logp, index, axis=class_dim).squeeze(class_dim)
    if weight is None:
        loss = -picked
        total = jnp.sum(valid, dtype=logp.dtype)
    else:
        w = jnp.take(weight, safe) if n_classes else jnp.zeros(target.shape, logp.dtype)
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
