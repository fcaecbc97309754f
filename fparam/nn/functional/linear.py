"""``linear``: torch's affine map ``y = x @ W.T + b`` with torch's ``(out, in)`` weight layout."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from fparam.nn import _validation as V
from fparam.nn.functional import _sharding as S

__all__ = ["bilinear", "linear"]

_ZERO_DIM = "both arguments to linear need to be at least 1D, but they are {a}D and {b}D"
_SHAPES = "mat1 and mat2 shapes cannot be multiplied ({m}x{k} and {k2}x{n})"
_WEIGHT_RANK = "t() expects a tensor with <= 2 dimensions, but self is {ndim}D"
_BIAS_WITH_VECTOR = "mat2 must be a matrix, got 1-D tensor"
_VECTOR_SIZE = (
    "inconsistent tensor size, expected tensor [{a}] and src [{b}] to have the same number of "
    "elements, but got {a} and {b} elements respectively"
)
_DTYPES = "expected m1 and m2 to have the same dtype, but got: {a} != {b}"
_BIAS_DTYPE = "linear: bias has dtype {b}, but the input and weight have dtype {a}"
_BIAS_SHAPE = (
    "The expanded size of the tensor ({want}) must match the existing size ({have}) at "
    "non-singleton dimension {dim}.  Target sizes: {target}.  Tensor sizes: {sizes}"
)


def _sizes(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _broadcast_bias(bias: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``bias.expand(shape)`` with torch's error, without relying on implicit rank promotion."""
    if bias.ndim > len(shape):
        raise RuntimeError(
            f"linear: bias of shape {_sizes(bias.shape)} has more dimensions than the output "
            f"{_sizes(shape)}"
        )
    offset = len(shape) - bias.ndim
    for i, have in enumerate(bias.shape):
        want = shape[offset + i]
        if have not in (1, want):
            raise RuntimeError(
                _BIAS_SHAPE.format(
                    want=want,
                    have=have,
                    dim=offset + i,
                    target=_sizes(shape),
                    sizes=_sizes(bias.shape),
                )
            )
    return jnp.broadcast_to(bias, shape)


def linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """Apply ``y = input @ weight.T + bias``, like ``torch.nn.functional.linear``.

    Shapes and errors are torch's, checked at trace time from static shapes: the last axis of
    ``input`` is contracted with axis 1 of a ``(out_features, in_features)`` weight, any leading
    axes are kept (a 1-D input gives a 1-D output), and a mismatch raises
    ``RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x5 and 4x3)``, where ``2`` is the
    product of the leading axes (``1`` for a 1-D input). A 0-d argument raises
    ``RuntimeError: both arguments to linear need to be at least 1D, but they are 0D and 2D``.
    As in torch, a 1-D weight (without bias) gives a dot product over the last axis.

    The matmul runs at JAX's default precision (``jax.default_matmul_precision`` controls it;
    torch uses full float32 on CPU, and so does JAX on CPU).

    **Arguments:**

    - `input`: array of shape ``(*, in_features)``.
    - `weight`: array of shape ``(out_features, in_features)`` (torch's layout), same dtype.
    - `bias`: optional array broadcastable to ``(*, out_features)``, usually ``(out_features,)``.

    **Returns:**

    An array of shape ``(*, out_features)`` and the input's dtype.
    """
    V.check_array("linear()", "input", input)
    V.check_array("linear()", "weight", weight)
    V.check_optional_array("linear()", "bias", bias)
    input = jnp.asarray(input)
    weight = jnp.asarray(weight)
    if input.ndim == 0 or weight.ndim == 0:
        raise RuntimeError(_ZERO_DIM.format(a=input.ndim, b=weight.ndim))
    if weight.ndim > 2:
        raise RuntimeError(_WEIGHT_RANK.format(ndim=weight.ndim))
    if input.dtype != weight.dtype:
        raise RuntimeError(_DTYPES.format(a=input.dtype, b=weight.dtype))
    in_features = input.shape[-1]
    if weight.ndim == 1:
        if bias is not None:
            raise RuntimeError(_BIAS_WITH_VECTOR)
        if weight.shape[0] != in_features:
            raise RuntimeError(_VECTOR_SIZE.format(a=in_features, b=weight.shape[0]))
    else:
        out_features, w_in = weight.shape
        if w_in != in_features:
            rows = math.prod(input.shape[:-1])
            raise RuntimeError(_SHAPES.format(m=rows, k=in_features, k2=w_in, n=out_features))
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.dtype != input.dtype:
            raise RuntimeError(_BIAS_DTYPE.format(a=input.dtype, b=bias.dtype))
    mesh = S.explicit_mesh(input, weight, bias)
    if mesh is not None:
        with S.within(mesh):
            return _linear_explicit(input, weight, bias)
    if weight.ndim == 1:
        return jnp.matmul(input, weight)
    y = jnp.matmul(input, weight.T)
    if bias is None:
        return y
    return y + _broadcast_bias(bias, y.shape)


def _linear_explicit(input: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``linear`` on an Explicit mesh, by the rule of ``_sharding``: the batch dims keep the
    input's sharding, the weight's in-dim follows the input's features (a sharded contraction
    is summed: row parallel), its out-dim keeps its own sharding (column parallel) less the axes
    the input uses (gathered: FSDP)."""
    xs = S.spec(input)
    batch, contracted = xs[:-1], xs[-1]
    if weight.ndim == 1:
        w = S.reshard(weight, (contracted,))
        return jnp.matmul(input, w, out_sharding=P(*batch))
    feature = S.without(S.spec(weight)[0], S.used_axes(xs))
    w = S.reshard(weight, (feature, contracted))
    y = jnp.matmul(input, w.T, out_sharding=P(*batch, feature))
    if bias is None:
        return y
    tail = y.shape[y.ndim - bias.ndim :]
    if bias.ndim <= y.ndim and all(n in (1, m) for n, m in zip(bias.shape, tail)):
        ys = S.spec(y)[y.ndim - bias.ndim :]
        bias = S.reshard(bias, [e if n > 1 else None for e, n in zip(ys, bias.shape)])
    return y + _broadcast_bias(bias, y.shape)


# --------------------------------------------------------------------------------------------
# bilinear
# --------------------------------------------------------------------------------------------

_BILINEAR_DTYPES = "All tensors must have the same dtype, got {names}"
_BILINEAR_RANKS = "bilinear(): input dimensions do not match: got {a} and {b}"
_BILINEAR_BATCH = "bilinear(): input batch dimensions do not match at dim {dim}: got {a} and {b}"
_BILINEAR_SIZE = "bilinear(): {what} size does not match weight size: got {got} but expected {want}"
_BILINEAR_NO_DIMS = "Dimension specified as -1 but tensor has no dimensions"
_BILINEAR_WEIGHT_RANK = (
    "bilinear(): weight must be 3-D (out_features, in1_features, in2_features), but got weight "
    "of size {shape}"
)
_BILINEAR_BIAS_RANK = "bilinear(): bias must be 1-D (out_features,), but got bias of size {shape}"
# torch's C++ dtype names, as its bilinear message prints them.
_C_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half"}


def bilinear(
    input1: jax.Array, input2: jax.Array, weight: jax.Array, bias: jax.Array | None = None
) -> jax.Array:
    """``y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``, like
    ``torch.nn.functional.bilinear``.

    The inputs have the same rank and the same leading (batch) dims, no broadcasting (torch's
    rule); a 1-D pair gives a 1-D output. Checks and messages are torch's, in its order: dtypes,
    ranks, batch dims, then the feature sizes against the weight.

    **Arguments:**

    - `input1`: ``(*, in1_features)``.
    - `input2`: ``(*, in2_features)``, the same ``*``.
    - `weight`: ``(out_features, in1_features, in2_features)``.
    - `bias`: optional ``(out_features,)``.

    **Returns:**

    An array ``(*, out_features)`` in the inputs' dtype.
    """
    for name, value in (("input1", input1), ("input2", input2), ("weight", weight)):
        V.check_array("bilinear()", name, value)
    V.check_optional_array("bilinear()", "bias", bias)
    x1, x2, w = jnp.asarray(input1), jnp.asarray(input2), jnp.asarray(weight)
    b = None if bias is None else jnp.asarray(bias)
    named = [("input1", x1), ("input2", x2), ("weight", w)] + ([] if b is None else [("bias", b)])
    if len({a.dtype for _, a in named}) > 1:
        names = ", ".join(
            f"{n}: {_C_DTYPE_NAMES.get(a.dtype.name, a.dtype.name)}" for n, a in named
        )
        raise RuntimeError(_BILINEAR_DTYPES.format(names=names))
    if x1.ndim != x2.ndim:
        raise RuntimeError(_BILINEAR_RANKS.format(a=x1.ndim, b=x2.ndim))
    for i in range(x1.ndim - 1):
        if x1.shape[i] != x2.shape[i]:
            raise RuntimeError(_BILINEAR_BATCH.format(dim=i, a=x1.shape[i], b=x2.shape[i]))
    if x1.ndim == 0:
        raise IndexError(_BILINEAR_NO_DIMS)
    if w.ndim != 3:
        raise RuntimeError(_BILINEAR_WEIGHT_RANK.format(shape=_sizes(w.shape)))
    out, in1, in2 = w.shape
    if x1.shape[-1] != in1:
        raise RuntimeError(_BILINEAR_SIZE.format(what="input1", got=x1.shape[-1], want=in1))
    if x2.shape[-1] != in2:
        raise RuntimeError(_BILINEAR_SIZE.format(what="input2", got=x2.shape[-1], want=in2))
    if b is not None:
        if b.ndim != 1:
            raise RuntimeError(_BILINEAR_BIAS_RANK.format(shape=_sizes(b.shape)))
        if b.shape[0] != out:
            raise RuntimeError(_BILINEAR_SIZE.format(what="bias", got=b.shape[0], want=out))

    def body(x1: jax.Array, x2: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
        # (x1 W) first: (*, out, in2), then contracted with x2, as one einsum.
        y = jnp.einsum("...i,oij,...j->...o", x1, w, x2)
        return y if b is None else y + jnp.broadcast_to(b, y.shape)

    mesh = S.explicit_mesh(x1, x2, w, b)
    if mesh is None:
        return body(x1, x2, w, b)
    # The rule of _sharding, as for linear; the three-way contraction runs in Auto mode.
    with S.within(mesh):
        s1 = S.spec(x1)
        used = S.used_axes(s1) | S.used_axes(S.spec(x2))
        w = S.gather_used(w, used)
        feature = S.without(S.spec(w)[0], used)
        b = None if b is None else S.reshard(b, (feature,))
        return S.in_auto(body, P(*s1[:-1], feature), x1, x2, w, b)
