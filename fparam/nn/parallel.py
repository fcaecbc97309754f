"""``nn.DataParallel`` and ``nn.parallel.DistributedDataParallel``: torch's data-parallel
wrappers, as placements on a JAX mesh.

torch replicates the module on each device (or process), splits each batch, and all-reduces the
gradients in backward hooks. Under ``jax.jit`` the SPMD partitioner does all three from
placement alone: the wrapper puts every parameter and buffer replicated on a one-axis mesh
(``'data'``) and constrains each input's batch dimension to be split over it; the gradients of
replicated parameters then come out all-reduced, and BatchNorm statistics are those of the
global batch (what torch needs ``SyncBatchNorm`` for). The wrapped model keeps torch's
structure: its child is ``module``, so ``state_dict`` keys start with ``module.``, as a torch
checkpoint saved from a wrapped model has them.

The options that tune torch's communication (``bucket_cap_mb``, ``find_unused_parameters``,
``gradient_as_bucket_view``, ``static_graph``, ``broadcast_buffers``, ...) are accepted so that
ported code runs, and have no effect: XLA schedules the collectives of the compiled step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fparam._module import Module

__all__ = ["DataParallel", "DistributedDataParallel"]

_NOT_A_MODULE = "{cls}: expected an fparam nn.Module to wrap, got {type}"
_BAD_DIM = "{cls}: dim must be a non-negative int (the batch dimension), got {value!r}"
_BAD_DEVICE_IDS = (
    "{cls}: device_ids must be None or a sequence of device indices or jax.Devices of this "
    "process (jax.local_devices() has {count}), got {value!r}"
)
_PROCESS_GROUP = (
    "DistributedDataParallel: process_group={value!r}: fparam has no torch process groups; the "
    "job's devices (jax.devices(), across processes after jax.distributed.initialize) form the "
    "mesh, or pass device_mesh=jax.sharding.Mesh(...) with one axis"
)
_BAD_MESH = (
    "DistributedDataParallel: device_mesh must be a jax.sharding.Mesh with one axis (the data "
    "axis), got {value!r}"
)


def _devices(cls: str, device_ids: Any) -> list[Any]:
    local = jax.local_devices()
    if device_ids is None:
        return local
    if isinstance(device_ids, (str, bytes)) or not isinstance(device_ids, Sequence):
        raise TypeError(_BAD_DEVICE_IDS.format(cls=cls, count=len(local), value=device_ids))
    chosen = []
    for entry in device_ids:
        if isinstance(entry, jax.Device) and entry in local:
            chosen.append(entry)
        elif (
            isinstance(entry, (int, np.integer))
            and not isinstance(entry, bool)
            and 0 <= entry < len(local)
        ):
            chosen.append(local[int(entry)])
        else:
            raise ValueError(_BAD_DEVICE_IDS.format(cls=cls, count=len(local), value=device_ids))
    return chosen or local


class _BatchParallel(Module):
    """The shared shell: ``module`` replicated on ``mesh``, inputs split along ``dim``."""

    def _setup(self, cls: str, module: Any, mesh: Mesh, dim: Any) -> None:
        if not isinstance(module, Module):
            raise TypeError(_NOT_A_MODULE.format(cls=cls, type=type(module).__name__))
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 0:
            raise ValueError(_BAD_DIM.format(cls=cls, value=dim))
        from fparam.distributed import distribute

        distribute(module, mesh)
        self.module = module
        self.dim = int(dim)
        self.mesh = mesh

    def _split(self, value: Any) -> Any:
        """An input array with its batch dimension split over the mesh; other values, and
        arrays whose batch does not divide evenly over the devices (JAX splits evenly only),
        as they are: the result is the same, only less parallel."""
        if not isinstance(value, (jax.Array, np.ndarray)) or value.ndim <= self.dim:
            return value
        if value.shape[self.dim] % self.mesh.size:
            return value
        spec = PartitionSpec(*([None] * self.dim), self.mesh.axis_names[0])
        return jax.lax.with_sharding_constraint(value, NamedSharding(self.mesh, spec))

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """``module(*inputs, **kwargs)`` with every array input (also inside tuples, lists and
        dicts, as torch scatters them) split along ``dim`` over the devices."""
        inputs, kwargs = jax.tree.map(self._split, (inputs, kwargs))
        return self.module(*inputs, **kwargs)


class DataParallel(_BatchParallel):
    """torch's ``nn.DataParallel``: one process, the batch split over this process's devices.

    Arguments:
        module: the model; its parameters and buffers are replicated on the devices, in place.
        device_ids: indices into ``jax.local_devices()`` (or the devices themselves); default
            all of them.
        output_device: accepted for torch's signature; outputs stay where the computation
            leaves them (split along ``dim``; JAX gathers them when read).
        dim: the batch dimension of the inputs.

    The wrapped model is ``self.module``; ``state_dict`` keys start with ``module.``.
    """

    def __init__(
        self,
        module: Module,
        device_ids: Sequence[int | jax.Device] | None = None,
        output_device: int | jax.Device | None = None,
        dim: int = 0,
    ) -> None:
        super().__init__()
        devices = _devices("DataParallel", device_ids)
        self._setup("DataParallel", module, Mesh(np.array(devices), ("data",)), dim)


class DistributedDataParallel(_BatchParallel):
    """torch's ``nn.parallel.DistributedDataParallel``: the batch split over every device of
    the job, one process or many.

    In torch each process holds one replica and its own slice of the batch. In JAX one program
    spans the job: after ``jax.distributed.initialize()`` (torch's ``init_process_group``),
    ``jax.devices()`` lists every process's devices, and a jitted step over global arrays
    (``jax.make_array_from_process_local_data`` builds one from each process's local batch)
    runs on all of them. This wrapper replicates the module over that one-axis mesh and splits
    the inputs' batch dimension over it.

    Arguments:
        module: the model; its parameters and buffers are replicated on the mesh, in place.
        device_ids, output_device: accepted for torch's signature (in torch, the one GPU of this
            process); a JAX process drives all of its devices.
        dim: the batch dimension of the inputs.
        process_group: must be None (see ``device_mesh``).
        device_mesh: a one-axis ``jax.sharding.Mesh`` to use instead of all devices.
        broadcast_buffers, init_sync, bucket_cap_mb, find_unused_parameters, check_reduction,
        gradient_as_bucket_view, static_graph, delay_all_reduce_named_params,
        param_to_hook_all_reduce, mixed_precision, skip_all_reduce_unused_params,
        bucket_cap_mb_list, batched_grad_copy, forward_sync_buffers: accepted, no effect (XLA
            schedules the compiled step's collectives; replicated buffers are identical on
            every device by construction).
    """

    def __init__(
        self,
        module: Module,
        device_ids: Sequence[int | jax.Device] | None = None,
        output_device: int | jax.Device | None = None,
        dim: int = 0,
        broadcast_buffers: bool | None = None,
        init_sync: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        check_reduction: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
        delay_all_reduce_named_params: Any = None,
        param_to_hook_all_reduce: Any = None,
        mixed_precision: Any = None,
        device_mesh: Mesh | None = None,
        skip_all_reduce_unused_params: bool = False,
        bucket_cap_mb_list: list[int] | None = None,
        batched_grad_copy: bool = False,
        forward_sync_buffers: bool | None = None,
    ) -> None:
        super().__init__()
        if process_group is not None:
            raise TypeError(_PROCESS_GROUP.format(value=process_group))
        if device_mesh is None:
            device_mesh = Mesh(np.array(jax.devices()), ("data",))
        elif not isinstance(device_mesh, Mesh) or len(device_mesh.axis_names) != 1:
            raise TypeError(_BAD_MESH.format(value=device_mesh))
        self._setup("DistributedDataParallel", module, device_mesh, dim)
