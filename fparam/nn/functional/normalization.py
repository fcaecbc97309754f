"""Normalisation functions with torch's formulas, checks and error messages.

``batch_norm`` and ``instance_norm`` are pure: JAX arrays cannot be updated in place, so the new
running statistics torch writes into ``running_mean``/``running_var`` come back from
``batch_norm_stats`` / ``instance_norm_stats`` (what the modules use), and the modules store them
with ``Module._update_buffers``.

torch's formulas: the batch statistics normalise with the *biased* variance; the running estimate
takes the *unbiased* one (``n / (n - 1)``), ``new = (1 - momentum) * old + momentum * batch``.

``batch_norm_stats(..., axis_name=...)`` is ``SyncBatchNorm``'s path inside ``jax.shard_map``
(or a named ``vmap``): the per-channel sums are ``lax.psum``-ed over the named mesh axes and
``n`` counts the values of every shard, so each shard normalises with the global statistics.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fparam.nn.functional import _sharding as S

__all__ = [
    "batch_norm",
    "batch_norm_stats",
    "group_norm",
    "instance_norm",
    "instance_norm_stats",
    "layer_norm",
    "local_response_norm",
    "rms_norm",
]

# A mesh axis name, or a tuple of them, as `lax.psum` takes.
AxisName = Hashable

# torch's messages (torch/nn/functional.py and ATen's Normalization.cpp, layer_norm.h, group_norm.cpp).
_BATCH_OF_ONE = "Expected more than 1 value per channel when training, got input size {size}"
_SPATIAL_OF_ONE = "Expected more than 1 spatial element when training, got input size {size}"
_EPS_TRAINING = "batch_norm eps must be positive during training, but got {eps}"
_EPS_NEGATIVE = "batch_norm eps must be non-negative, but got {eps}"
_NUMEL = "{name} should contain {want} elements not {got}"
_EVAL_UNDEFINED = "{name} must be defined in evaluation mode"
_HALF_DEFINED = "running_mean and running_var must either both be None or neither be None"
_INSTANCE_EVAL = "Expected running_mean and running_var to be defined when use_input_stats is false"
_MIXED_DTYPE = (
    "mixed dtype (CPU): all inputs must share same datatype. ({name} has dtype {got}, the input "
    "{want})"
)
_NORMALIZED_EMPTY = (
    "Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one "
    "element, but got normalized_shape = {shape}"
)
_NORMALIZED_AFFINE = (
    "Expected {name} to be of same shape as normalized_shape, but got {name} of shape {got} and "
    "normalized_shape = {shape}"
)
_NORMALIZED_INPUT = (
    "Given normalized_shape={shape}, expected input with shape [*, {tail}], but got input of "
    "size{size}"
)
# torch's rms_norm spells the expected shape without the comma ("[*4]").
_RMS_INPUT = (
    "Given normalized_shape={shape}, expected input with shape [*{tail}], but got input of "
    "size{size}"
)
_RMS_RANK = "Input tensor must have at least {want} dimensions, but got {ndim}"
_GROUP_RANK = "Expected at least 2 dimensions for input tensor but received {ndim}"
_GROUP_DIVISIBLE = (
    "Expected number of channels in input to be divisible by num_groups, but got input of shape "
    "{size} and num_groups={groups}"
)
_GROUP_AFFINE = (
    "Expected {name} to be a vector of size equal to the number of channels in input, but got "
    "{name} of shape {got} and input of shape {size}"
)
_GROUP_COUNT = "num_groups must be a positive integer, got {groups}"
_LRN_RANK = "Expected 3D or higher dimensionality input (got {ndim} dimensions)"


def _list(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _torch_size(shape: Sequence[int]) -> str:
    return "torch.Size(" + _list(shape) + ")"


_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _check_dtype(name: str, value: jax.Array | None, input: jax.Array) -> None:
    # torch's mixed precision: a float16/bfloat16 input with float32 parameters and statistics.
    if value is None or value.dtype == input.dtype:
        return
    if input.dtype in _HALF and value.dtype == jnp.float32:
        return
    raise RuntimeError(_MIXED_DTYPE.format(name=name, got=value.dtype, want=input.dtype))


def _compute_input(input: jax.Array, *values: jax.Array | None) -> jax.Array:
    """``input`` in float32 when it is 16-bit and the parameters are float32 (torch computes
    in float32 then, and returns the input's dtype)."""
    if input.dtype in _HALF and any(v is not None and v.dtype == jnp.float32 for v in values):
        return input.astype(jnp.float32)
    return input


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """``(1, C, 1, ...)``: per-channel vectors broadcast without implicit rank promotion."""
    return (1, channels) + (1,) * (ndim - 2)


def _verify_batch_size(shape: Sequence[int], shards: int = 1) -> None:
    # Synchronised (torch's SyncBatchNorm), the count is over every shard's values.
    size = shape[0] * math.prod(shape[2:])
    if size * shards == 1:
        raise ValueError(_BATCH_OF_ONE.format(size=_torch_size(shape)))


def _check_batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None,
    bias: jax.Array | None,
    training: bool,
    eps: float,
    shards: int = 1,
) -> None:
    if training:
        _verify_batch_size(input.shape, shards)
    if training and eps <= 0.0:
        raise ValueError(_EPS_TRAINING.format(eps=eps))
    if eps < 0.0:
        raise ValueError(_EPS_NEGATIVE.format(eps=eps))
    if (running_mean is None) != (running_var is None) and training:
        raise ValueError(_HALF_DEFINED)
    if not training:
        for name, value in (("running_mean", running_mean), ("running_var", running_var)):
            if value is None:
                raise RuntimeError(_EVAL_UNDEFINED.format(name=name))
    # torch counts channels as size(1), and 0 for a 1-D input.
    channels = input.shape[1] if input.ndim > 1 else 0
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if value is not None and value.size != channels:
            raise RuntimeError(_NUMEL.format(name=name, want=channels, got=value.size))
        _check_dtype(name, value, input)


def _normalize(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    weight: jax.Array | None,
    bias: jax.Array | None,
    eps: float,
    shape: tuple[int, ...],
) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * weight + bias``; every vector reshaped to ``shape``."""
    mean, var = S.against(mean, x), S.against(var, x)
    invstd = lax.rsqrt(var + jnp.asarray(eps, var.dtype))
    out = (x - mean) * invstd
    if weight is not None:
        out = out * S.against(weight.reshape(shape), x)
    if bias is not None:
        out = out + S.against(bias.reshape(shape), x)
    return out


def _batch_mean(
    x: jax.Array, axes: tuple[int, ...], axis_name: AxisName | None, n: int
) -> jax.Array:
    """Per-channel mean over ``axes`` (``keepdims``); with ``axis_name``, over every shard too:
    the shards' sums added by ``lax.psum``, divided by the global count ``n`` (static: the
    shards of a ``shard_map`` have equal shapes)."""
    if axis_name is None:
        return jnp.mean(x, axis=axes, keepdims=True)
    return lax.psum(jnp.sum(x, axis=axes, keepdims=True), axis_name) / n


def _batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None,
    bias: jax.Array | None,
    training: bool,
    momentum: float | jax.Array,
    eps: float,
    axis_name: AxisName | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    input = jnp.asarray(input)
    # Statistics are synchronised only in training mode (torch's SyncBatchNorm: `need_sync`).
    axis_name = axis_name if training else None
    shards = 1 if axis_name is None else lax.axis_size(axis_name)
    _check_batch_norm(input, running_mean, running_var, weight, bias, training, eps, shards)
    dtype = input.dtype
    input = _compute_input(input, running_mean, running_var, weight, bias)
    channels = input.shape[1] if input.ndim > 1 else 1
    shape = _channel_shape(input.ndim, channels) if input.ndim > 1 else (1,)
    if not training:
        assert running_mean is not None and running_var is not None
        out = _normalize(
            input, running_mean.reshape(shape), running_var.reshape(shape), weight, bias, eps, shape
        )
        return out.astype(dtype), running_mean, running_var
    axes = tuple(i for i in range(input.ndim) if i != 1)
    n = input.size // max(channels, 1) * shards
    mean = _batch_mean(input, axes, axis_name, n)
    var = _batch_mean(jnp.square(input - mean), axes, axis_name, n)
    out = _normalize(input, mean, var, weight, bias, eps, shape).astype(dtype)
    if running_mean is None or running_var is None:
        return out, running_mean, running_var
    m = jnp.asarray(momentum, running_mean.dtype)
    unbiased = (var.reshape(running_var.shape) * (n / (n - 1))).astype(running_var.dtype)
    batch_mean = mean.reshape(running_mean.shape).astype(running_mean.dtype)
    new_mean = (1 - m) * running_mean + m * lax.stop_gradient(batch_mean)
    new_var = (1 - m) * running_var + m * lax.stop_gradient(unbiased)
    return out, new_mean, new_var


def batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> jax.Array:
    """Batch normalisation, like ``torch.nn.functional.batch_norm`` (the output only).

    Normalises each channel (axis 1) over every other axis. In training mode with the batch
    statistics (biased variance), otherwise with ``running_mean``/``running_var``. torch also
    updates the running statistics in place in training mode; JAX arrays are immutable, so
    :func:`batch_norm_stats` returns them instead.

    **Arguments:**

    - `input`: array ``(N, C, *)``.
    - `running_mean`, `running_var`: ``(C,)`` arrays, or ``None`` (required in eval mode).
    - `weight`, `bias`: optional ``(C,)`` affine parameters.
    - `training`: use batch statistics (torch's ``training`` argument).
    - `momentum`: factor of the running-statistics update (see :func:`batch_norm_stats`).
    - `eps`: added to the variance; must be positive in training mode.

    **Returns:**

    The normalised array, shaped and typed like ``input``.

    **Raises:** torch's errors: ``ValueError`` for a training batch with one value per channel
    (``Expected more than 1 value per channel when training, got input size ...``) and a bad
    ``eps``; ``RuntimeError`` for a vector of the wrong size
    (``running_mean should contain 3 elements not 4``) or missing running statistics in eval mode.
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_stats(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float | jax.Array = 0.1,
    eps: float = 1e-5,
    *,
    axis_name: AxisName | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """:func:`batch_norm` that also returns the running statistics torch would leave behind.

    In training mode with running statistics: ``new_mean = (1 - momentum) * running_mean +
    momentum * batch_mean`` and ``new_var = (1 - momentum) * running_var + momentum *
    batch_var * n / (n - 1)`` (the unbiased variance, ``n`` values per channel), computed without
    gradient (torch's buffers are not differentiable). ``momentum`` may be an array (BatchNorm's
    cumulative average with ``momentum=None`` passes ``1 / num_batches_tracked``). Otherwise the
    given statistics come back unchanged.

    ``axis_name`` (fparam's addition, what ``nn.SyncBatchNorm`` passes): in training mode inside
    ``jax.shard_map`` (or a ``vmap`` with that ``axis_name``), the mesh axis name or tuple of
    names over which the batch is split. Mean and variance are then those of the global batch
    (per-channel sums ``lax.psum``-ed, divided by the count of all shards), the unbiased
    running variance uses that global count, and the gradients flow through the collectives,
    as torch's ``SyncBatchNorm`` under DDP. Eval mode never synchronises (as torch).

    **Returns:**

    ``(output, new_running_mean, new_running_var)``.
    """
    return _batch_norm(
        input, running_mean, running_var, weight, bias, training, momentum, eps, axis_name
    )


def _instance_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None,
    bias: jax.Array | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    input = jnp.asarray(input)
    if use_input_stats and math.prod(input.shape[2:]) == 1:
        raise ValueError(_SPATIAL_OF_ONE.format(size=_torch_size(input.shape)))
    if not use_input_stats and (running_mean is None or running_var is None):
        raise RuntimeError(_INSTANCE_EVAL)
    if input.ndim < 2:
        # torch reaches batch_norm with a (1, N*C) view of nothing it can normalise.
        raise RuntimeError(
            f"instance_norm expects an input with at least 2 dimensions, got {input.ndim}D"
        )
    n, c = input.shape[:2]
    # torch runs batch_norm on a (1, N*C, *) view, each vector repeated N times: its sizes too.
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if value is not None and value.size * n != n * c:
            raise RuntimeError(_NUMEL.format(name=name, want=n * c, got=value.size * n))
        _check_dtype(name, value, input)
    if eps < 0.0 or (use_input_stats and eps <= 0.0):
        raise ValueError((_EPS_TRAINING if use_input_stats else _EPS_NEGATIVE).format(eps=eps))
    shape = _channel_shape(input.ndim, c)
    dtype = input.dtype
    input = _compute_input(input, running_mean, running_var, weight, bias)
    if not use_input_stats:
        assert running_mean is not None and running_var is not None
        out = _normalize(
            input, running_mean.reshape(shape), running_var.reshape(shape), weight, bias, eps, shape
        )
        return out.astype(dtype), running_mean, running_var
    axes = tuple(range(2, input.ndim))
    mean = jnp.mean(input, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(input - mean), axis=axes, keepdims=True)
    out = _normalize(input, mean, var, weight, bias, eps, shape).astype(dtype)
    if running_mean is None or running_var is None:
        return out, running_mean, running_var
    spatial = math.prod(input.shape[2:])
    m = jnp.asarray(momentum, running_mean.dtype)
    # Each of the N copies is updated, then torch averages them: the batch mean of the
    # per-instance statistics.
    batch_mean = jnp.mean(mean.reshape(n, c), axis=0).astype(running_mean.dtype)
    batch_var = (jnp.mean(var.reshape(n, c), axis=0) * (spatial / (spatial - 1))).astype(
        running_var.dtype
    )
    new_mean = (1 - m) * running_mean + m * lax.stop_gradient(
        batch_mean.reshape(running_mean.shape)
    )
    new_var = (1 - m) * running_var + m * lax.stop_gradient(batch_var.reshape(running_var.shape))
    return out, new_mean, new_var


def instance_norm(
    input: jax.Array,
    running_mean: jax.Array | None = None,
    running_var: jax.Array | None = None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> jax.Array:
    """Instance normalisation, like ``torch.nn.functional.instance_norm`` (the output only).

    Normalises each ``(sample, channel)`` over the spatial axes with its own statistics (biased
    variance) when ``use_input_stats``, else with ``running_mean``/``running_var``.
    :func:`instance_norm_stats` also returns the running statistics torch updates in place.

    **Arguments:**

    - `input`: array ``(N, C, *)`` with more than one spatial element when ``use_input_stats``.
    - `running_mean`, `running_var`: optional ``(C,)`` arrays (required without input stats).
    - `weight`, `bias`: optional ``(C,)`` affine parameters.
    - `use_input_stats`, `momentum`, `eps`: as torch.

    **Returns:**

    The normalised array, shaped and typed like ``input``.
    """
    return _instance_norm(
        input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps
    )[0]


def instance_norm_stats(
    input: jax.Array,
    running_mean: jax.Array | None = None,
    running_var: jax.Array | None = None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """:func:`instance_norm` and the running statistics torch would leave behind.

    With ``use_input_stats`` and running statistics given, torch updates them with the batch
    average of the per-instance means and unbiased variances (``momentum`` as in batch norm).

    **Returns:**

    ``(output, new_running_mean, new_running_var)``.
    """
    return _instance_norm(
        input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps
    )


def _normalized_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


def _check_normalized(
    input: jax.Array,
    shape: tuple[int, ...],
    affine: Sequence[tuple[str, jax.Array | None]],
    message: str,
) -> None:
    if not shape:
        raise RuntimeError(_NORMALIZED_EMPTY.format(shape=_list(shape)))
    for name, value in affine:
        if value is not None and tuple(value.shape) != shape:
            raise RuntimeError(
                _NORMALIZED_AFFINE.format(name=name, got=_list(value.shape), shape=_list(shape))
            )
    if input.ndim < len(shape) or tuple(input.shape[input.ndim - len(shape) :]) != shape:
        raise RuntimeError(
            message.format(
                shape=_list(shape),
                tail=", ".join(str(s) for s in shape),
                size=_list(input.shape),
            )
        )
    for name, value in affine:
        _check_dtype(name, value, input)


def layer_norm(
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Layer normalisation, like ``torch.nn.functional.layer_norm``.

    Normalises over the last ``len(normalized_shape)`` axes (biased variance), then applies the
    elementwise ``weight``/``bias`` of shape ``normalized_shape``.

    **Arguments:**

    - `input`: array ``(*, *normalized_shape)``.
    - `normalized_shape`: an int or a sequence of ints (at least one).
    - `weight`, `bias`: optional arrays of shape ``normalized_shape``.
    - `eps`: added to the variance.

    **Returns:**

    The normalised array, shaped and typed like ``input``. torch's ``RuntimeError`` for a
    mismatched shape (``Given normalized_shape=[4], expected input with shape [*, 4], ...``).
    """
    input = jnp.asarray(input)
    shape = _normalized_shape(normalized_shape)
    _check_normalized(input, shape, (("weight", weight), ("bias", bias)), _NORMALIZED_INPUT)
    dtype = input.dtype
    x = _compute_input(input, weight, bias)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    full = (1,) * (x.ndim - len(shape)) + shape
    return _normalize(x, mean, var, weight, bias, eps, full).astype(dtype)


def rms_norm(
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    eps: float | None = None,
) -> jax.Array:
    """Root-mean-square normalisation, like ``torch.nn.functional.rms_norm``.

    ``input / sqrt(mean(input**2) + eps) * weight`` over the last ``len(normalized_shape)`` axes.

    **Arguments:**

    - `input`: array ``(*, *normalized_shape)``.
    - `normalized_shape`: an int or a sequence of ints.
    - `weight`: optional array of shape ``normalized_shape``.
    - `eps`: ``None`` uses ``finfo(input.dtype).eps``, as torch.

    **Returns:**

    The normalised array, shaped and typed like ``input``.
    """
    input = jnp.asarray(input)
    shape = _normalized_shape(normalized_shape)
    if input.ndim < len(shape):
        raise ValueError(_RMS_RANK.format(want=len(shape), ndim=input.ndim))
    # torch's rms_norm accepts any weight dtype and computes in the promoted one.
    _check_normalized(input, shape, (), _RMS_INPUT)
    if weight is not None and tuple(weight.shape) != shape:
        raise RuntimeError(
            _NORMALIZED_AFFINE.format(name="weight", got=_list(weight.shape), shape=_list(shape))
        )
    if weight is not None and weight.dtype != input.dtype:
        dtype = jnp.promote_types(input.dtype, weight.dtype)
        input, weight = input.astype(dtype), weight.astype(dtype)
    if eps is None:
        eps = float(jnp.finfo(input.dtype).eps)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    ms = jnp.mean(jnp.square(input), axis=axes, keepdims=True)
    out = input * lax.rsqrt(ms + jnp.asarray(eps, ms.dtype))
    if weight is not None:
        out = out * S.against(weight.reshape((1,) * (input.ndim - len(shape)) + shape), input)
    return out


def group_norm(
    input: jax.Array,
    num_groups: int,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Group normalisation, like ``torch.nn.functional.group_norm``.

    Splits the channels (axis 1) into ``num_groups`` groups and normalises each
    ``(sample, group)`` over its channels and spatial axes (biased variance), then applies the
    per-channel ``weight``/``bias``.

    **Arguments:**

    - `input`: array ``(N, C, *)`` with ``C`` divisible by ``num_groups``.
    - `num_groups`: a positive int.
    - `weight`, `bias`: optional ``(C,)`` arrays.
    - `eps`: added to the variance.

    **Returns:**

    The normalised array, shaped and typed like ``input``.
    """
    input = jnp.asarray(input)
    if not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(_GROUP_COUNT.format(groups=num_groups))
    if input.ndim < 2:
        raise RuntimeError(_GROUP_RANK.format(ndim=input.ndim))
    n, c = input.shape[:2]
    _verify_batch_size([n * c // num_groups, num_groups, *input.shape[2:]])
    if c % num_groups != 0:
        raise RuntimeError(_GROUP_DIVISIBLE.format(size=_list(input.shape), groups=num_groups))
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and (value.ndim != 1 or value.shape[0] != c):
            raise RuntimeError(
                _GROUP_AFFINE.format(name=name, got=_list(value.shape), size=_list(input.shape))
            )
        _check_dtype(name, value, input)
    mesh = S.explicit_mesh(input)
    if mesh is not None:
        # The grouping reshape mixes channels and positions: it runs with the axes in Auto
        # mode, and the output keeps the input's sharding (the rule of _sharding).
        with S.within(mesh):
            xs = S.spec(input)
            return S.in_auto(
                lambda x, w, b: group_norm(x, num_groups, w, b, eps),
                jax.sharding.PartitionSpec(*xs),
                input,
                S.gather_used(weight, S.used_axes(xs)),
                S.gather_used(bias, S.used_axes(xs)),
            )
    dtype = input.dtype
    input = _compute_input(input, weight, bias)
    grouped = input.reshape(n, num_groups, -1)
    mean = jnp.mean(grouped, axis=2, keepdims=True)
    var = jnp.mean(jnp.square(grouped - mean), axis=2, keepdims=True)
    out = ((grouped - mean) * lax.rsqrt(var + jnp.asarray(eps, var.dtype))).reshape(input.shape)
    shape = _channel_shape(input.ndim, c)
    if weight is not None:
        out = out * S.against(weight.reshape(shape), out)
    if bias is not None:
        out = out + S.against(bias.reshape(shape), out)
    return out.astype(dtype)


def local_response_norm(
    input: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """Local response normalisation across channels, like ``torch.nn.functional.local_response_norm``.

    ``input / (k + alpha * avg(input**2 over a window of `size` channels)) ** beta``, the window
    zero-padded by ``size // 2`` channels before and ``(size - 1) // 2`` after, the average
    always divided by ``size`` (torch's ``avg_pool`` over the explicitly padded squares).

    **Arguments:**

    - `input`: array ``(N, C, *)`` with at least 3 dimensions.
    - `size`: number of neighbouring channels.
    - `alpha`, `beta`, `k`: as torch.

    **Returns:**

    An array shaped and typed like ``input``.
    """
    input = jnp.asarray(input)
    if input.ndim < 3:
        raise ValueError(_LRN_RANK.format(ndim=input.ndim))
    if input.size == 0:
        return input
    square = jnp.square(input)
    padding = ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (input.ndim - 2)
    padded = jnp.pad(square, padding)
    # A sum of `size` shifted slices: small windows, and differentiable in every mode.
    c = input.shape[1]
    summed = padded[:, 0:c]
    for i in range(1, size):
        summed = summed + padded[:, i : i + c]
    div = summed / jnp.asarray(size, input.dtype)
    div = (div * jnp.asarray(alpha, input.dtype) + jnp.asarray(k, input.dtype)) ** jnp.asarray(
        beta, input.dtype
    )
    return input / div
