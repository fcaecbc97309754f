"""Embedding lookups and one-hot encoding, like ``torch.nn.functional.embedding`` /
``embedding_bag`` / ``one_hot``.

torch's rules mirrored here (``torch/nn/functional.py`` and ATen ``Embedding.cpp`` /
``EmbeddingBag.cpp``):

- The weight gradient of a lookup is the scatter-add of the output gradient into the looked-up
  rows; rows at ``padding_idx`` get **no** gradient (the forward still reads the row as stored);
  ``scale_grad_by_freq`` divides each lookup's gradient by how often its index occurs in the
  input.
- ``max_norm``: before the lookup, every row the input refers to whose ``norm_type``-norm
  exceeds ``max_norm`` is scaled by ``max_norm / (norm + 1e-7)``, in the weight itself and
  outside autograd (torch's ``embedding_renorm_`` under ``no_grad``): the output holds the
  renormalised rows, and the gradient is the plain scatter-add above. Here the functions are
  pure and return the renormalised weight to the caller that stores it (``nn.Embedding`` does;
  see ``fparam/nn/sparse.py``). Called eagerly on a module's parameter (``F.embedding(x,
  m.weight, max_norm=1.0)``) they write the new rows into that module, as torch's in-place
  update does; inside a trace a plain array cannot be updated, so use ``nn.Embedding`` /
  ``nn.EmbeddingBag`` under ``fparam.value_and_grad`` / ``fparam.stateful`` for that.
- ``scale_grad_by_freq`` in ``embedding_bag`` follows the same documented rule. (torch 2.13's
  CPU ``embedding_bag`` backward divides the gradient of the i-th distinct index by the count
  of ``sorted(indices)[i]`` instead, e.g. index 5 of ``[5, 0, 0]`` gets half its gradient; its
  ``embedding`` does not, and fparam matches that.)
- ``sparse=True`` is accepted; JAX has no sparse gradients, so the gradient is dense (the same
  values torch's sparse gradient holds).
- Indices are checked eagerly (torch's ``IndexError``). Inside a trace they cannot be read:
  there ``jnp.take``'s rules apply (an index past the end gives a row of NaNs, a negative one
  counts from the end), so check them before the transformation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from fparam._module import _is_tracer, write_back
from fparam.nn import _validation as V
from fparam.nn.functional import _sharding as S

__all__ = ["embedding", "embedding_bag", "one_hot"]

_PADDING_RANGE = "Padding_idx must be within num_embeddings"
_BAG_PADDING_RANGE = "padding_idx must be within num_embeddings"
_INDEX_RANGE = "index out of range in self"
_NOT_INDICES = (
    "Expected tensor for argument #1 'indices' to have one of the following scalar types: "
    "Long, Int; but got dtype {dtype} instead (while checking arguments for {fn})"
)
_WEIGHT_2D = "'weight' must be 2-D"
_BAG_WEIGHT_2D = "weight has to be a 2D Tensor, but got Tensor of dimension {ndim}"
_PSW_SHAPE = (
    "embedding_bag: If per_sample_weights ({psw}) is not None, then it must have the same "
    "shape as the input ({input})"
)
_OFFSETS_WITH_2D = (
    "if input is 2D, then offsets has to be None, as input is treated is a mini-batch of fixed "
    "length sequences. However, found offsets of type {type}"
)
_OFFSETS_NONE = "offsets has to be a 1D Tensor but got None"
_OFFSETS_1D = "offsets has to be a 1D Tensor"
_BAG_INPUT_RANK = "input has to be 1D or 2D Tensor, but got Tensor of dimension {ndim}"
_BAG_MODE = "mode has to be one of sum, mean or max"
_MAX_SCALE = "max mode does not support scaling the gradient by the frequency"
_MAX_SPARSE = "max mode does not support sparse weights"
_PSW_MODE = (
    "embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for "
    "mode='sum' (got mode='{mode}'). Please open a feature request on GitHub."
)
_FIRST_OFFSET = (
    "offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start from "
    "position 0. However, got {first}"
)
_LAST_OFFSET = (
    "offsets[-1] can not be greater than input's length ({length}), but got offsets[-1] of {last}"
)
_ONE_HOT_DTYPE = "one_hot is only applicable to index tensor of type LongTensor."
_ONE_HOT_EMPTY = "Can not infer total number of classes from empty tensor."
_ONE_HOT_NEGATIVE = "Class values must be non-negative."
_ONE_HOT_TOO_BIG = "Class values must be smaller than num_classes."
_ONE_HOT_TRACED = (
    "one_hot(num_classes=-1) infers the number of classes from the largest value of the input, "
    "which is not known inside a JAX transformation (jit, grad, vmap): pass num_classes "
    "explicitly, e.g. F.one_hot(x, num_classes=10)"
)


def _indices(fn: str, input: Any) -> jax.Array:
    V.check_array(f"{fn}()", "input", input)
    input = jnp.asarray(input)
    if not jnp.issubdtype(input.dtype, jnp.integer):
        raise RuntimeError(_NOT_INDICES.format(dtype=input.dtype, fn=fn))
    return input


def _check_range(input: jax.Array, num: int) -> None:
    """torch's ``IndexError`` for an index outside ``[0, num)``: eagerly only (a trace cannot
    read the values)."""
    if _is_tracer(input) or input.size == 0:
        return
    values = np.asarray(input)
    if values.min() < 0 or values.max() >= num:
        raise IndexError(_INDEX_RANGE)


def _padding_idx(padding_idx: int | None, num: int, message: str) -> int | None:
    """torch's normalisation: a negative ``padding_idx`` counts from the end."""
    if padding_idx is None:
        return None
    padding_idx = V.check_int("embedding()", "padding_idx", padding_idx)
    if padding_idx >= num or padding_idx < -num:
        raise AssertionError(message)
    return padding_idx + num if padding_idx < 0 else padding_idx


def _with_grad_scale(value: jax.Array, scale: jax.Array) -> jax.Array:
    """``value`` in the forward pass; its gradient multiplied by ``scale`` in the backward."""
    frozen = jax.lax.stop_gradient(value)
    return frozen + (value - frozen) * scale


def _renorm(weight: jax.Array, flat: jax.Array, max_norm: float, norm_type: float) -> jax.Array:
    """torch's ``embedding_renorm_``: the rows ``flat`` refers to, scaled down to ``max_norm``.

    The values are the renormalised weight; the gradient passes through unchanged, as torch's
    renorm happens outside autograd.
    """
    frozen = jax.lax.stop_gradient(weight)
    rows = frozen[flat]
    norms = jnp.linalg.norm(rows, ord=norm_type, axis=-1, keepdims=True)
    scale = jnp.where(norms > max_norm, max_norm / (norms + 1e-7), jnp.ones_like(norms))
    renormed = frozen.at[flat].set(rows * scale.astype(rows.dtype))
    return renormed + (weight - frozen)


def _grad_scale(
    input: jax.Array, num: int, padding_idx: int | None, scale_grad_by_freq: bool
) -> jax.Array | None:
    """Per-lookup gradient factors: 0 at ``padding_idx``, ``1 / count`` by frequency."""
    scale = None
    if scale_grad_by_freq:
        counts = jnp.zeros((num,), jnp.int32).at[input.reshape(-1)].add(1)
        scale = 1 / jnp.maximum(counts[input], 1).astype(jnp.float32)
    if padding_idx is not None:
        keep = input != padding_idx
        scale = keep if scale is None else jnp.where(keep, scale, 0)
    return scale


def _embedding(
    input: jax.Array,
    weight: jax.Array,
    padding_idx: int | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """The lookup and, with ``max_norm``, the renormalised weight (``None`` otherwise).

    ``padding_idx`` must already be normalised (non-negative or ``None``).
    """
    mesh = S.explicit_mesh(input, weight)
    if mesh is not None:
        with S.within(mesh):
            return _explicit_embedding(
                input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq
            )
    return _lookup(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq)


def _lookup(
    input: jax.Array,
    weight: jax.Array,
    padding_idx: int | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
) -> tuple[jax.Array, jax.Array | None]:
    new_weight = None
    if max_norm is not None:
        weight = new_weight = _renorm(weight, input.reshape(-1), max_norm, norm_type)
    out = jnp.take(weight, input, axis=0)
    scale = _grad_scale(input, weight.shape[0], padding_idx, scale_grad_by_freq)
    if scale is not None:
        out = _with_grad_scale(out, scale[..., None].astype(out.dtype))
    return out, new_weight


def _explicit_embedding(
    input: jax.Array,
    weight: jax.Array,
    padding_idx: int | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """``_embedding`` on an Explicit mesh, by the rule of ``_sharding``: the looked-up rows keep
    the indices' sharding, the embedding dim takes the table's dim-1 sharding less the axes the
    indices use (the table is gathered over those: FSDP); a renormalised table keeps the
    table's sharding. The lookup runs with the axes in Auto mode."""
    xs = S.spec(input)
    used = S.used_axes(xs)
    w = S.gather_used(weight, used)
    out = P(*xs, S.spec(w)[1])
    new = None if max_norm is None else P(*S.spec(weight))

    def body(i: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        return _lookup(i, w, padding_idx, max_norm, norm_type, scale_grad_by_freq)

    return S.in_auto(body, (out, new), input, w)


def _check_weight(weight: Any) -> jax.Array:
    V.check_array("embedding()", "weight", weight)
    array = jnp.asarray(weight)
    if array.ndim != 2:
        raise RuntimeError(_WEIGHT_2D)
    return array


def embedding(
    input: jax.Array,
    weight: jax.Array,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> jax.Array:
    """Look up rows of ``weight``, like ``torch.nn.functional.embedding``.

    **Arguments:**

    - `input`: an integer array of indices into the rows of ``weight``, any shape.
    - `weight`: the ``(num_embeddings, embedding_dim)`` table.
    - `padding_idx`: a row that receives no gradient (negative counts from the end;
      ``AssertionError`` outside the table, as torch).
    - `max_norm`: renormalise the looked-up rows whose norm exceeds it (see the module
      docstring: eagerly, a module's weight passed here is updated as in torch).
    - `norm_type`: the p of the p-norm for ``max_norm`` (default 2).
    - `scale_grad_by_freq`: divide each row's gradient by its index's count in ``input``.
    - `sparse`: accepted; the gradient is dense.

    **Returns:** an array of shape ``input.shape + (embedding_dim,)`` and ``weight``'s dtype.
    """
    input = _indices("embedding", input)
    original = weight
    weight = _check_weight(weight)
    num = weight.shape[0]
    padding_idx = _padding_idx(padding_idx, num, _PADDING_RANGE)
    _check_range(input, num)
    out, new_weight = _embedding(
        input, weight, padding_idx, max_norm, norm_type, bool(scale_grad_by_freq)
    )
    if new_weight is not None and not _is_tracer(new_weight):
        write_back(original, new_weight)  # torch renormalises the weight in place
    return out


def _bag_segments(
    input: jax.Array, offsets: jax.Array, include_last_offset: bool
) -> tuple[jax.Array, int]:
    """Which bag each position of a 1-D ``input`` belongs to, and how many bags there are.

    A position before ``offsets[0]`` or (with ``include_last_offset``) at or after
    ``offsets[-1]`` gets an out-of-range bag id, which the segment reductions drop.
    """
    offsets = jnp.asarray(offsets)
    if not _is_tracer(offsets) and offsets.size:
        values = np.asarray(offsets)
        if values[0] != 0:
            raise RuntimeError(_FIRST_OFFSET.format(first=int(values[0])))
        if values[-1] > input.shape[0]:
            raise RuntimeError(_LAST_OFFSET.format(length=input.shape[0], last=int(values[-1])))
    num_bags = offsets.shape[0] - 1 if include_last_offset else offsets.shape[0]
    positions = jnp.arange(input.shape[0], dtype=offsets.dtype)
    segments = jnp.searchsorted(offsets, positions, side="right") - 1
    segments = jnp.where(segments < 0, num_bags, segments)
    return segments, max(num_bags, 0)


def embedding_bag(
    input: jax.Array,
    weight: jax.Array,
    offsets: jax.Array | None = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: jax.Array | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> jax.Array:
    """Sums, means or maxima of bags of embeddings, like ``torch.nn.functional.embedding_bag``.

    The result is what ``embedding`` followed by a reduction per bag gives, without the
    intermediate per-bag Python loop: a 2-D ``input`` ``(B, N)`` is ``B`` bags of ``N``
    indices; a 1-D ``input`` is the concatenation of bags starting at ``offsets`` (static
    shapes: the bag of each position is found by ``searchsorted``, the reduction is a segment
    sum / max). Entries equal to ``padding_idx`` are left out of their bag (not counted by the
    mean); an empty bag gives zeros, as torch.

    **Arguments:**

    - `input`: integer indices, 1-D (with ``offsets``) or 2-D (``offsets=None``).
    - `weight`: the ``(num_embeddings, embedding_dim)`` table.
    - `offsets`: 1-D start positions of the bags in a 1-D ``input``.
    - `max_norm`, `norm_type`, `scale_grad_by_freq`, `sparse`: as :func:`embedding`.
    - `mode`: ``'sum'``, ``'mean'`` or ``'max'``.
    - `per_sample_weights`: weights of ``input``'s shape multiplying each entry (``'sum'`` only;
      torch's ``NotImplementedError`` otherwise).
    - `include_last_offset`: ``offsets`` has one more entry, the end of the last bag.
    - `padding_idx`: an index left out of every bag (negative counts from the end).

    **Returns:** an array ``(B, embedding_dim)`` of ``weight``'s dtype.
    """
    out, new_weight = _embedding_bag(
        input,
        weight,
        offsets,
        max_norm,
        norm_type,
        scale_grad_by_freq,
        mode,
        sparse,
        per_sample_weights,
        include_last_offset,
        padding_idx,
    )
    if new_weight is not None and not _is_tracer(new_weight):
        write_back(weight, new_weight)  # torch renormalises the weight in place
    return out


def _embedding_bag(
    input: jax.Array,
    weight: jax.Array,
    offsets: jax.Array | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
    mode: str,
    sparse: bool,
    per_sample_weights: jax.Array | None,
    include_last_offset: bool,
    padding_idx: int | None,
) -> tuple[jax.Array, jax.Array | None]:
    """:func:`embedding_bag`'s result and, with ``max_norm``, the renormalised weight."""
    input = _indices("embedding_bag", input)
    if per_sample_weights is not None:
        per_sample_weights = jnp.asarray(per_sample_weights)
        if per_sample_weights.shape != input.shape:
            raise ValueError(_PSW_SHAPE.format(psw=per_sample_weights.shape, input=input.shape))
    weight = jnp.asarray(V.check_array("embedding_bag()", "weight", weight))
    if weight.ndim != 2:
        raise ValueError(_BAG_WEIGHT_2D.format(ndim=weight.ndim))
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(_OFFSETS_WITH_2D.format(type=type(offsets)))
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError(_OFFSETS_NONE)
        offsets = _indices("embedding_bag", offsets)
        if offsets.ndim != 1:
            raise ValueError(_OFFSETS_1D)
    else:
        raise ValueError(_BAG_INPUT_RANK.format(ndim=input.ndim))
    if mode not in ("sum", "mean", "max"):
        raise ValueError(_BAG_MODE)
    if mode == "max" and scale_grad_by_freq:
        raise ValueError(_MAX_SCALE)
    if mode == "max" and sparse:
        raise ValueError(_MAX_SPARSE)
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(_PSW_MODE.format(mode=mode))
    num = weight.shape[0]
    padding_idx = _padding_idx(padding_idx, num, _BAG_PADDING_RANGE)
    _check_range(input, num)

    rows, new_weight = _embedding(
        input, weight, None, max_norm, norm_type, bool(scale_grad_by_freq)
    )
    keep = None if padding_idx is None else input != padding_idx
    if input.ndim == 2:
        out = _reduce_fixed(rows, keep, per_sample_weights, mode)
    else:
        assert offsets is not None  # checked above for a 1-D input
        segments, num_bags = _bag_segments(input, offsets, include_last_offset)
        out = _reduce_segments(rows, keep, per_sample_weights, mode, segments, num_bags)
    return out, new_weight


def _reduce_fixed(
    rows: jax.Array, keep: jax.Array | None, weights: jax.Array | None, mode: str
) -> jax.Array:
    """Bags of equal length: ``rows`` is ``(B, N, D)``; reduce over ``N``."""
    if mode == "max":
        where = None if keep is None else keep[..., None]
        out = jnp.max(rows, axis=1, where=where, initial=-jnp.inf)
        filled = rows.shape[1] > 0 if keep is None else keep.any(axis=1, keepdims=True)
        return jnp.where(filled, out, jnp.zeros_like(out))
    if weights is not None:
        rows = rows * weights[..., None].astype(rows.dtype)
    if keep is not None:
        rows = jnp.where(keep[..., None], rows, jnp.zeros_like(rows))
    total = rows.sum(axis=1)
    if mode == "sum":
        return total
    count = rows.shape[1] if keep is None else keep.sum(axis=1, keepdims=True)
    return total / jnp.maximum(count, 1).astype(total.dtype)


def _reduce_segments(
    rows: jax.Array,
    keep: jax.Array | None,
    weights: jax.Array | None,
    mode: str,
    segments: jax.Array,
    num_bags: int,
) -> jax.Array:
    """Bags given by ``segments`` (one bag id per row of ``rows`` ``(N, D)``)."""
    if keep is not None:
        # A padded entry joins no bag: an out-of-range id is dropped by the reductions.
        segments = jnp.where(keep, segments, num_bags)
    ones = jnp.ones(segments.shape, jnp.int32)
    count = jax.ops.segment_sum(ones, segments, num_segments=num_bags)[:, None]
    if mode == "max":
        out = jax.ops.segment_max(rows, segments, num_segments=num_bags)
        return jnp.where(count > 0, out, jnp.zeros_like(out))
    if weights is not None:
        rows = rows * weights[..., None].astype(rows.dtype)
    total = jax.ops.segment_sum(rows, segments, num_segments=num_bags)
    if mode == "sum":
        return total
    return total / jnp.maximum(count, 1).astype(total.dtype)


def one_hot(tensor: jax.Array, num_classes: int = -1) -> jax.Array:
    """One-hot encode integer class indices, like ``torch.nn.functional.one_hot``.

    **Arguments:**

    - `tensor`: an integer array of class indices.
    - `num_classes`: the number of classes; ``-1`` infers ``max(tensor) + 1``, which needs a
      concrete input (inside ``jit`` / ``grad`` / ``vmap`` pass it: ``RuntimeError`` otherwise).
      Eagerly, values outside ``[0, num_classes)`` raise torch's ``RuntimeError``; inside a
      trace they give all-zero rows.

    **Returns:** an integer array of shape ``tensor.shape + (num_classes,)``, JAX's default
    integer dtype (torch's int64 when JAX's 64-bit mode is on, int32 otherwise).
    """
    V.check_array("one_hot()", "tensor", tensor)
    num_classes = V.check_int("one_hot()", "num_classes", num_classes)
    tensor = jnp.asarray(tensor)
    if not jnp.issubdtype(tensor.dtype, jnp.integer):
        raise RuntimeError(_ONE_HOT_DTYPE)
    if _is_tracer(tensor):
        if num_classes == -1:
            raise RuntimeError(_ONE_HOT_TRACED)
    else:
        values = np.asarray(tensor)
        if num_classes == -1:
            if values.size == 0:
                raise RuntimeError(_ONE_HOT_EMPTY)
            num_classes = int(values.max()) + 1
        if values.size:
            if values.min() < 0:
                raise RuntimeError(_ONE_HOT_NEGATIVE)
            if values.max() >= num_classes:
                raise RuntimeError(_ONE_HOT_TOO_BIG)
    dtype = jax.dtypes.canonicalize_dtype(jnp.int64)
    return jax.nn.one_hot(tensor, num_classes, dtype=dtype)
