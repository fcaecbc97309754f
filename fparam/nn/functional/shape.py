"""``flatten`` and ``unflatten``: torch's reshaping helpers, with torch's dimension rules."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fparam.nn import _validation as V

__all__ = ["flatten", "unflatten"]

_DIM_RANGE = "Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})"
_FLATTEN_ORDER = "flatten() has invalid args: start_dim cannot come after end_dim"
_UNFLATTEN_EMPTY = "unflatten: sizes must be non-empty"
_UNFLATTEN_PRODUCT = (
    "unflatten: Provided sizes {sizes} don't multiply up to the size of dim {dim} ({size}) in "
    "the input tensor"
)
_UNFLATTEN_TWO_INFERRED = "unflatten: only one dimension can be inferred, got sizes {sizes}"
_UNFLATTEN_NEGATIVE = "unflatten: invalid shape dimension {size} at index {index} of shape {sizes}"
_UNFLATTEN_AMBIGUOUS = (
    "unflatten: cannot reshape tensor of 0 elements into shape {sizes} because the unspecified "
    "dimension size -1 can be any value and is ambiguous"
)


def _sizes(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _wrap_dim(dim: int, ndim: int) -> int:
    """Normalise a possibly negative ``dim`` like torch (a 0-d array accepts 0 and -1).

    Raises torch's ``IndexError: Dimension out of range (expected to be in range of [-2, 1], but
    got 5)``.
    """
    dim = operator.index(dim)
    span = max(ndim, 1)
    if not -span <= dim < span:
        raise IndexError(_DIM_RANGE.format(lo=-span, hi=span - 1, dim=dim))
    return dim % span


def flatten(input: jax.Array, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    """Merge axes ``start_dim..end_dim`` (inclusive) into one, like ``torch.flatten``.

    Note the defaults: the function's ``start_dim=0`` is torch's (``torch.flatten``), while the
    ``nn.Flatten`` module defaults to ``start_dim=1`` to keep the batch axis.
    A 0-d input gives a 1-element 1-D array.

    **Arguments:**

    - `input`: any array.
    - `start_dim`: first axis to merge (negative counts from the end).
    - `end_dim`: last axis to merge, inclusive.

    **Returns:**

    A reshaped array with the same elements and dtype. Out-of-range dims raise torch's
    ``IndexError``; ``start_dim`` after ``end_dim`` raises ``RuntimeError``.
    """
    V.check_array("flatten()", "input", input)
    start_dim = V.check_int("flatten()", "start_dim", start_dim)
    end_dim = V.check_int("flatten()", "end_dim", end_dim)
    input = jnp.asarray(input)
    start = _wrap_dim(start_dim, input.ndim)
    end = _wrap_dim(end_dim, input.ndim)
    if start > end:
        raise RuntimeError(_FLATTEN_ORDER)
    if input.ndim == 0:
        return input.reshape(1)
    shape = input.shape
    merged = math.prod(shape[start : end + 1])
    return input.reshape((*shape[:start], merged, *shape[end + 1 :]))


def unflatten(input: jax.Array, dim: int, sizes: Sequence[int]) -> jax.Array:
    """Split axis ``dim`` into ``sizes``, like ``torch.unflatten``; one size may be ``-1``.

    **Arguments:**

    - `input`: an array with at least one axis.
    - `dim`: the axis to split (negative counts from the end).
    - `sizes`: the new sizes; their product must equal ``input.shape[dim]``, and a single
      ``-1`` is inferred.

    **Returns:**

    A reshaped array with ``len(sizes) - 1`` more axes. Errors are torch's: ``IndexError`` for
    a bad ``dim``, ``RuntimeError`` for sizes that don't multiply up.
    """
    V.check_array("unflatten()", "input", input)
    dim = V.check_int("unflatten()", "dim", dim)
    sizes = [V.check_int("unflatten()", f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    input = jnp.asarray(input)
    if input.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    d = _wrap_dim(dim, input.ndim)
    if not sizes:
        raise RuntimeError(_UNFLATTEN_EMPTY)
    size = input.shape[d]
    inferred = [i for i, s in enumerate(sizes) if s == -1]
    if len(inferred) > 1:
        raise RuntimeError(_UNFLATTEN_TWO_INFERRED.format(sizes=_sizes(sizes)))
    for i, s in enumerate(sizes):
        if s < -1:
            raise RuntimeError(_UNFLATTEN_NEGATIVE.format(size=s, index=i, sizes=_sizes(sizes)))
    known = math.prod(s for s in sizes if s != -1)
    if inferred:
        if known == 0:
            if size == 0:
                raise RuntimeError(_UNFLATTEN_AMBIGUOUS.format(sizes=_sizes(sizes)))
            raise RuntimeError(_UNFLATTEN_PRODUCT.format(sizes=_sizes(sizes), dim=d, size=size))
        if size % known:
            raise RuntimeError(_UNFLATTEN_PRODUCT.format(sizes=_sizes(sizes), dim=d, size=size))
        sizes[inferred[0]] = size // known
    elif known != size:
        raise RuntimeError(_UNFLATTEN_PRODUCT.format(sizes=_sizes(sizes), dim=d, size=size))
    shape = input.shape
    return input.reshape((*shape[:d], *sizes, *shape[d + 1 :]))
