"""Normalisation layers (``torch/nn/modules/batchnorm.py``, ``instancenorm.py``,
``normalization.py``): thin modules over ``nn.functional``.

``BatchNorm*`` (and ``InstanceNorm*`` with ``track_running_stats=True``) change their running
statistics in a training-mode forward. They do it through ``Module._update_buffers``: in place
eagerly, as torch does; carried out to the caller by ``fparam.value_and_grad`` / ``fparam.grad``
/ ``fparam.stateful`` under a transformation; ``BufferUpdateError`` wherever the change would be
lost (a plain ``jax.grad``, a train-mode forward directly under ``jax.jit``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fparam._module import Module, Parameter, _refuse_unbuilt
from fparam.nn import _validation as V
from fparam.nn import functional as F
from fparam.nn import init
from fparam.nn.functional.normalization import AxisName

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LocalResponseNorm",
    "RMSNorm",
    "SyncBatchNorm",
]

_RANK = "expected {ranks} input (got {ndim}D input)"
_INSTANCE_CHANNELS = (
    "expected input's size at dim={dim} to match num_features ({want}), but got: {got}."
)
_INSTANCE_CHANNELS_WARNING = (
    "input's size at dim={dim} does not match num_features. You can silence this warning by not "
    "passing in num_features, which is not used because affine=False"
)
_GROUPS_DIVIDE = "num_channels ({channels}) must be divisible by num_groups ({groups})"
# SyncBatchNorm: torch's two input checks, then fparam's process_group (a mesh axis name).
_SYNC_RANK = "expected at least 2D input (got {ndim}D input)"
_SYNC_CHANNELS = "SyncBatchNorm number of input channels should be non-zero"
_SYNC_GROUP_TYPE = (
    "SyncBatchNorm's process_group must be None, a mesh axis name (str) or a non-empty tuple "
    "of them (the axes inside jax.shard_map that split the batch), got {got!r}"
)
_SYNC_NO_GROUP = (
    "SyncBatchNorm with process_group=None is running inside jax.shard_map (manual mesh axes "
    "{axes}): there each device sees only its shard of the batch, so name the mesh axis (or "
    "tuple of axes) the batch is split over, e.g. SyncBatchNorm(..., process_group={example!r}) "
    "or nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group={example!r}). (Under plain "
    "jax.jit over a batch-sharded input no name is needed: the statistics are already global.)"
)
_SYNC_UNKNOWN_AXIS = (
    "SyncBatchNorm's process_group={group!r} names an axis the enclosing jax.shard_map does "
    "not have (manual mesh axes {axes}); pass the axis (or tuple of axes) the batch is split over"
)


def _register_affine(
    module: Module, shape: tuple[int, ...], weight: bool, bias: bool, dtype: Any, device: Any
) -> None:
    """torch's affine pair of the norm layers: ``weight`` (ones) and ``bias`` (zeros) of
    ``shape``, each registered as ``None`` when absent."""
    ones = Parameter(V.place(init.ones_(shape, dtype=dtype), device)) if weight else None
    zeros = Parameter(V.place(init.zeros_(shape, dtype=dtype), device)) if weight and bias else None
    module.register_parameter("weight", ones)
    module.register_parameter("bias", zeros)


def _reset_affine(module: Module) -> None:
    """``weight`` to ones and ``bias`` to zeros, in place (placement kept), as torch."""
    values = {
        name: fill(value.shape, dtype=value.dtype)
        for name, fill in (("weight", init.ones_), ("bias", init.zeros_))
        if (value := getattr(module, name, None)) is not None
    }
    module._set_values(**values)


def _count_dtype() -> Any:
    """torch's ``num_batches_tracked`` is int64; JAX gives int32 unless x64 is on."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


class _NormBase(Module):
    """Common base of the batch and instance norms, like torch's ``_NormBase``.

    Parameters ``weight`` (ones) and ``bias`` (zeros), shape ``(num_features,)``, when
    ``affine``; buffers ``running_mean`` (zeros), ``running_var`` (ones) and the count
    ``num_batches_tracked`` when ``track_running_stats``, else all registered as ``None``.
    """

    _ranks: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = jnp.float32 if dtype is None else dtype
        _register_affine(self, (num_features,), affine, bias, dtype, device)
        if track_running_stats:
            self.register_buffer(
                "running_mean", V.place(init.zeros_((num_features,), dtype=dtype), device)
            )
            self.register_buffer(
                "running_var", V.place(init.ones_((num_features,), dtype=dtype), device)
            )
            self.register_buffer(
                "num_batches_tracked", V.place(init.zeros_((), dtype=_count_dtype()), device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean to zeros, variance to ones, count to zero (in place, as torch)."""
        if self.track_running_stats and self.running_mean is not None:
            values = {
                "running_mean": init.zeros_(self.running_mean.shape, dtype=self.running_mean.dtype),
                "running_var": init.ones_(self.running_var.shape, dtype=self.running_var.dtype),
                "num_batches_tracked": init.zeros_(
                    self.num_batches_tracked.shape, dtype=self.num_batches_tracked.dtype
                ),
            }
            self._set_values(**values)

    def reset_parameters(self) -> None:
        """:meth:`reset_running_stats`, and ``weight`` to ones, ``bias`` to zeros."""
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input_dim(self, input: jax.Array) -> None:
        if input.ndim not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(_RANK.format(ranks=ranks, ndim=input.ndim))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class _BatchNorm(_NormBase):
    def _sync_axes(self) -> AxisName | None:
        """The mesh axes a training-mode forward reduces its statistics over (``None``: this
        device's batch, which under SPMD ``jit`` is already the global batch)."""
        return None

    def forward(self, input: jax.Array) -> jax.Array:
        input = jnp.asarray(input)
        self._check_input_dim(input)
        axis_name = self._sync_axes() if self.training else None
        factor: float | jax.Array = 0.0 if self.momentum is None else self.momentum
        update = self.training and self.track_running_stats and self.running_mean is not None
        count = None
        if update and self.num_batches_tracked is not None:
            count = self.num_batches_tracked + 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / count.astype(self.running_mean.dtype)
        # Batch statistics in training mode, and in eval mode without running estimates.
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        out, mean, var = F.batch_norm_stats(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
            axis_name=axis_name,
        )
        if update:
            # All checks passed: torch has already counted the batch when batch_norm raises,
            # fparam leaves the module unchanged.
            updates = {"running_mean": mean, "running_var": var}
            if count is not None:
                updates["num_batches_tracked"] = count
            self._update_buffers(**updates)
        return out


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` inputs, like ``torch.nn.BatchNorm1d``.

    Arguments:
        num_features: ``C``.
        eps: added to the variance.
        momentum: running-statistics factor; ``None`` keeps a cumulative average
            (factor ``1 / num_batches_tracked``).
        affine: learn ``weight`` (ones) and ``bias`` (zeros).
        track_running_stats: keep ``running_mean``/``running_var``/``num_batches_tracked`` and
            normalise with them in eval mode; ``False`` always uses batch statistics.
        device: a JAX device (or sharding) for the arrays; ``None`` for the default.
        dtype: floating dtype of parameters and running statistics (float32 by default).
        bias: with ``affine``, whether to learn ``bias``.

    A training-mode forward updates the running statistics (torch's formulas: unbiased variance
    in the estimate, biased in the normalisation) and adds one to ``num_batches_tracked``.
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)`` inputs, like ``torch.nn.BatchNorm2d``.

    Arguments as :class:`BatchNorm1d`.
    """

    _ranks = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation over ``(N, C, D, H, W)`` inputs, like ``torch.nn.BatchNorm3d``.

    Arguments as :class:`BatchNorm1d`.
    """

    _ranks = (5,)


def _axis_group(process_group: Any) -> AxisName | None:
    """``process_group`` as stored: ``None``, an axis name, or a tuple of names."""
    if process_group is None or isinstance(process_group, str):
        return process_group
    if (
        isinstance(process_group, (tuple, list))
        and process_group
        and all(isinstance(name, str) for name in process_group)
    ):
        return tuple(process_group)
    raise TypeError(_SYNC_GROUP_TYPE.format(got=process_group))


def _axis_bound(name: AxisName) -> bool:
    """Whether ``name`` (or every name of a tuple) is an axis of the enclosing ``shard_map`` or
    named ``vmap``."""
    try:
        lax.axis_size(name)
    except NameError:
        return False
    return True


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation with statistics over the global batch of a data-parallel step, like
    ``torch.nn.SyncBatchNorm``.

    Arguments:
        num_features: ``C`` of an ``(N, C, *)`` input (any rank from 2).
        eps, momentum, affine, track_running_stats, device, dtype, bias: as
            :class:`BatchNorm1d`.
        process_group: where torch names a process group, fparam names mesh axes: ``None``, an
            axis name, or a tuple of names, over which the batch is split *inside*
            ``jax.shard_map`` (or a ``jax.vmap`` with that ``axis_name``). There a
            training-mode forward adds each channel's sums over those axes (``lax.psum``), so
            every shard normalises with the mean and biased variance of the global batch, the
            running variance takes the unbiased variance with the global count, and gradients
            flow back through the collectives (torch's ``SyncBatchNorm`` under DDP). Outside
            ``shard_map`` a forward needs no name: eagerly or under ``jax.jit`` the array is the
            global batch whatever its sharding (JAX's partitioner inserts the reductions), and
            a name no enclosing transformation binds is ignored, as torch ignores
            ``process_group`` when ``torch.distributed`` is not initialised. ``None`` inside
            ``shard_map`` raises a ``ValueError`` naming the axes to choose from.

    Eval mode normalises with the running statistics and never synchronises (as torch); with
    ``track_running_stats=False`` it uses this shard's batch. The ``state_dict``, ``repr`` and
    errors are torch's: ``ValueError`` for an input below 2-D
    (``expected at least 2D input (got 1D input)``) or with no channels.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: AxisName | None = None,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        group = _axis_group(process_group)
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias
        )
        self.process_group = group

    def _check_input_dim(self, input: jax.Array) -> None:
        if input.ndim < 2:
            raise ValueError(_SYNC_RANK.format(ndim=input.ndim))
        if input.shape[1] == 0:
            raise ValueError(_SYNC_CHANNELS)

    def _sync_axes(self) -> AxisName | None:
        group = self.process_group
        manual = tuple(jax.sharding.get_abstract_mesh().manual_axes)
        if group is None:
            if manual:
                example = manual[0] if len(manual) == 1 else manual
                raise ValueError(_SYNC_NO_GROUP.format(axes=manual, example=example))
            return None
        if _axis_bound(group):
            return group
        if manual:
            raise ValueError(_SYNC_UNKNOWN_AXIS.format(group=group, axes=manual))
        return None

    @classmethod
    def convert_sync_batchnorm(
        cls, module: Module, process_group: AxisName | None = None
    ) -> Module:
        """Replace every ``BatchNorm*d`` in ``module`` (recursively) by a :class:`SyncBatchNorm`,
        like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``.

        Each replacement has the original's options and carries its parameters (the same
        parameters: ``requires_grad`` and the identity an optimizer knows them by),
        buffers and training flag.

        Arguments:
            module: a module tree, or a batch-norm layer.
            process_group: the mesh axis name(s) for every new layer (see the class).

        Returns:
            ``module``, changed in place; a new :class:`SyncBatchNorm` when ``module`` itself
            is a batch-norm layer.
        """
        group = _axis_group(process_group)
        output = module
        if isinstance(module, _BatchNorm):
            if module.__dict__.get("_fp_lazy"):
                _refuse_unbuilt(module, "convert_sync_batchnorm()")
            output = SyncBatchNorm(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                group,
                bias=module.bias is not None,
            )
            if module.affine:
                output.weight = module._param_handle("weight")
                output.bias = module._param_handle("bias")
            output.running_mean = module.running_mean
            output.running_var = module.running_var
            output.num_batches_tracked = module.num_batches_tracked
            output.training = module.training
        for name, child in list(module.named_children()):
            output.add_module(name, cls.convert_sync_batchnorm(child, group))
        return output


class _InstanceNorm(_NormBase):
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            device,
            dtype,
            bias=bias,
        )

    def forward(self, input: jax.Array) -> jax.Array:
        input = jnp.asarray(input)
        self._check_input_dim(input)
        unbatched_rank = self._ranks[0]
        feature_dim = input.ndim - unbatched_rank
        if input.shape[feature_dim] != self.num_features:
            if self.affine:
                raise ValueError(
                    _INSTANCE_CHANNELS.format(
                        dim=feature_dim, want=self.num_features, got=input.shape[feature_dim]
                    )
                )
            warnings.warn(_INSTANCE_CHANNELS_WARNING.format(dim=feature_dim), stacklevel=2)
        unbatched = input.ndim == unbatched_rank
        x = input[None] if unbatched else input
        use_input_stats = self.training or not self.track_running_stats
        out, mean, var = F.instance_norm_stats(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )
        if use_input_stats and self.running_mean is not None:
            # torch's instance_norm updates the statistics, never num_batches_tracked.
            self._update_buffers(running_mean=mean, running_var=var)
        return out[0] if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over ``(N, C, L)`` or unbatched ``(C, L)`` inputs, like
    ``torch.nn.InstanceNorm1d``.

    Arguments as :class:`BatchNorm1d`, with torch's defaults ``affine=False`` and
    ``track_running_stats=False``. With ``track_running_stats=True`` a training-mode forward
    updates the running statistics with the batch average of the per-instance statistics, and
    eval mode normalises with them.
    """

    _ranks = (2, 3)


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over ``(N, C, H, W)`` or ``(C, H, W)``; see :class:`InstanceNorm1d`."""

    _ranks = (3, 4)


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation over ``(N, C, D, H, W)`` or ``(C, D, H, W)``; see
    :class:`InstanceNorm1d`."""

    _ranks = (4, 5)


def _shape_tuple(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    if isinstance(normalized_shape, numbers.Integral):  # a NumPy integer
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes, like ``torch.nn.LayerNorm``.

    Arguments:
        normalized_shape: an int or a sequence of ints (stored as a tuple).
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (ones) and ``bias`` (zeros) of shape
            ``normalized_shape``.
        bias: with ``elementwise_affine``, whether to learn ``bias``.
        device, dtype: as :class:`fparam.nn.Linear`.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dtype = jnp.float32 if dtype is None else dtype
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, dtype, device)

    def reset_parameters(self) -> None:
        """``weight`` to ones and ``bias`` to zeros (in place, as torch)."""
        _reset_affine(self)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """Group normalisation, like ``torch.nn.GroupNorm``.

    Arguments:
        num_groups: groups the channels are split into (must divide ``num_channels``:
            ``ValueError`` otherwise, as torch).
        num_channels: ``C``.
        eps: added to the variance.
        affine: learn per-channel ``weight`` (ones) and ``bias`` (zeros).
        device, dtype: as :class:`fparam.nn.Linear`.
        bias: with ``affine``, whether to learn ``bias``.
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(_GROUPS_DIVIDE.format(channels=num_channels, groups=num_groups))
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        dtype = jnp.float32 if dtype is None else dtype
        _register_affine(self, (num_channels,), affine, bias, dtype, device)

    reset_parameters = LayerNorm.reset_parameters

    def forward(self, input: jax.Array) -> jax.Array:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(Module):
    """Root-mean-square normalisation, like ``torch.nn.RMSNorm``.

    Arguments:
        normalized_shape: an int or a sequence of ints (stored as a tuple).
        eps: ``None`` uses ``finfo(input.dtype).eps`` at each call, as torch.
        elementwise_affine: learn ``weight`` (ones) of shape ``normalized_shape``.
        device, dtype: as :class:`fparam.nn.Linear`.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dtype = jnp.float32 if dtype is None else dtype
        if elementwise_affine:
            self.weight = Parameter(V.place(init.ones_(self.normalized_shape, dtype=dtype), device))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        """``weight`` to ones (in place, as torch)."""
        _reset_affine(self)

    def forward(self, x: jax.Array) -> jax.Array:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class LocalResponseNorm(Module):
    """Local response normalisation across channels, like ``torch.nn.LocalResponseNorm``.

    Arguments:
        size: number of neighbouring channels.
        alpha, beta, k: as torch (``1e-4``, ``0.75``, ``1.0``).
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input: jax.Array) -> jax.Array:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
