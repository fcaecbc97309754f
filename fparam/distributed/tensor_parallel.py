"""Tensor parallelism by torch's parallel styles: ``parallelize_module`` with
``ColwiseParallel`` / ``RowwiseParallel`` per submodule, and ``HeadwiseParallel`` for
``nn.MultiheadAttention``.

A style says how a layer's *parameters* are split over the tensor-parallel mesh axis (Megatron's
scheme: a column-parallel ``Linear`` followed by a row-parallel one needs one all-reduce).
Activations follow inside ``jit``: JAX's partitioner propagates the parameters' shardings and
inserts the collectives, so torch's ``input_layouts`` / ``output_layouts`` / ``use_local_output``
have nothing to set and are not accepted.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, TypeVar

from jax.sharding import Mesh, PartitionSpec

from fparam._module import Module
from fparam.distributed import placement as _placement

__all__ = [
    "ColwiseParallel",
    "HeadwiseParallel",
    "ParallelStyle",
    "RowwiseParallel",
    "parallelize_module",
]

M = TypeVar("M", bound=Module)

_UNSUPPORTED = (
    "{style} places the parameters of {supported}; '{path}' is {cls}. Give its submodules "
    "styles, or place its parameters by key with fparam.distributed.distribute(model, mesh, "
    "plan)"
)
_NO_SUBMODULE = (
    "parallelize_module: plan key {pattern!r} matches no submodule; the submodules are: {names}"
)
_BAD_STYLE = (
    "parallelize_module: plan entry {pattern!r}: expected a ParallelStyle (ColwiseParallel(), "
    "RowwiseParallel(), HeadwiseParallel()), got {type}"
)
_WHICH_AXIS = (
    "parallelize_module: the mesh has axes {axes}; say which one is tensor-parallel with "
    "mesh_axis= (torch passes a 1-D sub-mesh; a JAX mesh keeps its axes and names one)"
)
_NO_MESH_AXIS = "parallelize_module: mesh_axis={axis!r} is not an axis of the mesh (axes: {axes})"
_HEADS_NOT_DIVISIBLE = (
    "HeadwiseParallel: '{path}' has {heads} heads, which do not divide over mesh axis "
    "{axis!r} of size {size}"
)


class ParallelStyle(abc.ABC):
    """How one layer's parameters split over the tensor-parallel axis."""

    @abc.abstractmethod
    def specs(self, module: Module, path: str, axis: str, mesh: Mesh) -> dict[str, PartitionSpec]:
        """``{parameter name in module: spec}`` for the parameters this style splits (any
        other array of the module is replicated over the axis)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _kind(module: Module) -> str:
    from fparam import nn

    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    return type(module).__name__


class ColwiseParallel(ParallelStyle):
    """Split the output features (torch's ``ColwiseParallel``).

    ``nn.Linear``: ``weight`` ``(out, in)`` by rows, ``bias`` ``(out,)`` likewise: each device
    computes a slice of the output features. ``nn.Embedding``: ``weight`` by its embedding
    dimension (columns), as torch does.
    """

    def specs(self, module, path, axis, mesh):  # type: ignore[no-untyped-def]
        kind = _kind(module)
        if kind == "linear":
            return {"weight": PartitionSpec(axis, None), "bias": PartitionSpec(axis)}
        if kind == "embedding":
            return {"weight": PartitionSpec(None, axis)}
        raise TypeError(
            _UNSUPPORTED.format(
                style="ColwiseParallel",
                supported="nn.Linear and nn.Embedding",
                path=path,
                cls=f"nn.{kind}",
            )
        )


class RowwiseParallel(ParallelStyle):
    """Split the input features (torch's ``RowwiseParallel``).

    ``nn.Linear``: ``weight`` ``(out, in)`` by columns, ``bias`` replicated (added once after
    the all-reduce of the partial products). ``nn.Embedding``: ``weight`` by rows (the
    vocabulary), as torch does.
    """

    def specs(self, module, path, axis, mesh):  # type: ignore[no-untyped-def]
        kind = _kind(module)
        if kind == "linear":
            return {"weight": PartitionSpec(None, axis), "bias": PartitionSpec()}
        if kind == "embedding":
            return {"weight": PartitionSpec(axis, None)}
        raise TypeError(
            _UNSUPPORTED.format(
                style="RowwiseParallel",
                supported="nn.Linear and nn.Embedding",
                path=path,
                cls=f"nn.{kind}",
            )
        )


class HeadwiseParallel(ParallelStyle):
    """Split ``nn.MultiheadAttention`` by heads (Megatron's attention; no torch counterpart
    for this module, whose projections are not separate ``Linear`` layers).

    The in-projections are split by rows, so each device holds whole heads: the packed
    ``in_proj_weight`` ``(3E, E)`` and ``in_proj_bias`` in ``3·H/n``-head blocks of its
    q | k | v rows (the forward's split into q, k and v moves the k and v heads to their
    devices), the separate ``q/k/v_proj_weight`` (with ``kdim``/``vdim``) in ``H/n`` heads
    each, ``bias_k``/``bias_v`` by heads; ``out_proj.weight`` by columns (row-parallel: each
    device's heads contribute a partial output, summed once), ``out_proj.bias`` replicated.
    The number of heads must divide by the axis size.
    """

    def specs(self, module, path, axis, mesh):  # type: ignore[no-untyped-def]
        from fparam import nn

        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                _UNSUPPORTED.format(
                    style="HeadwiseParallel",
                    supported="nn.MultiheadAttention",
                    path=path,
                    cls=f"nn.{type(module).__name__}",
                )
            )
        size = mesh.shape[axis]
        if module.num_heads % size:
            raise ValueError(
                _HEADS_NOT_DIVISIBLE.format(path=path, heads=module.num_heads, axis=axis, size=size)
            )
        rows = PartitionSpec(axis, None)
        return {
            "in_proj_weight": rows,
            "q_proj_weight": rows,
            "k_proj_weight": rows,
            "v_proj_weight": rows,
            "in_proj_bias": PartitionSpec(axis),
            "bias_k": PartitionSpec(None, None, axis),
            "bias_v": PartitionSpec(None, None, axis),
            "out_proj.weight": PartitionSpec(None, axis),
            "out_proj.bias": PartitionSpec(),
        }


def _tensor_axis(mesh: Mesh, mesh_axis: str | None) -> str:
    axes = tuple(mesh.shape)
    if mesh_axis is None:
        if len(axes) != 1:
            raise ValueError(_WHICH_AXIS.format(axes=axes))
        return axes[0]
    if mesh_axis not in mesh.shape:
        raise ValueError(_NO_MESH_AXIS.format(axis=mesh_axis, axes=axes))
    return mesh_axis


def parallelize_module(
    module: M,
    device_mesh: Mesh,
    parallelize_plan: ParallelStyle | Mapping[str, ParallelStyle],
    *,
    mesh_axis: str | None = None,
) -> M:
    """Apply tensor-parallel styles to submodules, in place (torch's ``parallelize_module``).

    Arguments:
        module: the model (modified in place).
        device_mesh: the mesh. torch passes the tensor-parallel 1-D sub-mesh; here the whole
            mesh is passed and ``mesh_axis`` names the tensor-parallel axis (needed when the
            mesh has more than one axis).
        parallelize_plan: a style for ``module`` itself, or ``{submodule name pattern:
            style}`` (names as ``named_modules()`` gives them; ``*`` matches one dotted
            component, ``**`` any number, as torch's wildcards), every match styled.
        mesh_axis: the tensor-parallel axis of ``device_mesh``.

    Returns:
        ``module``. Arrays the plan does not reach keep their placement if already on this
        mesh (so ``fully_shard`` may run before or after), else are replicated over it.

    Raises:
        ValueError: a pattern matches no submodule; a spec does not divide a parameter (the
            message names the key and shape); an unknown or ambiguous mesh axis.
        TypeError: a style applied to a module it cannot split.
    """
    _placement._check_module("parallelize_module", module)
    _placement._check_mesh("parallelize_module", device_mesh)
    axis = _tensor_axis(device_mesh, mesh_axis)
    if isinstance(parallelize_plan, ParallelStyle):
        parallelize_plan = {"": parallelize_plan}
    modules = dict(module.named_modules())
    plan: dict[str, Any] = {}
    for pattern, style in parallelize_plan.items():
        if not isinstance(style, ParallelStyle):
            raise TypeError(_BAD_STYLE.format(pattern=pattern, type=type(style).__name__))
        regex = _placement.compile_pattern(pattern)
        matches = [name for name in modules if regex.match(name)]
        if not matches:
            shown = ", ".join(repr(n) for n in modules if n) or "(none)"
            raise ValueError(_NO_SUBMODULE.format(pattern=pattern, names=shown))
        for name in matches:
            for leaf, spec in style.specs(
                modules[name], name or type(module).__name__, axis, device_mesh
            ).items():
                key = f"{name}.{leaf}" if name else leaf
                plan.setdefault(key, _Compose(spec))
    present = {key for key, *_ in _placement._arrays(module)}
    plan = {key: value for key, value in plan.items() if key in present}
    specs = _placement._plan_specs(module, device_mesh, plan, compose=True)
    _placement._place_in_place(module, "parallelize_module", device_mesh, specs)
    return module


class _Compose(_placement.Rule):
    """A style's spec merged with a placement already on the mesh (FSDP applied first keeps
    its axis on the dimensions the style leaves free)."""

    def __init__(self, spec: PartitionSpec) -> None:
        self.style_spec = spec

    def spec(self, key, shape, mesh, *, current=None, axes=None, owner=""):  # type: ignore[no-untyped-def]
        entries = _placement._entries(self.style_spec, len(shape))
        tensor = {a for e in entries for a in _placement._axis_tuple(e)}
        for dim, entry in enumerate(_placement._entries(current, len(shape))):
            kept = tuple(a for a in _placement._axis_tuple(entry) if a not in tensor)
            if not kept:
                continue
            joined = _placement._axis_tuple(entries[dim]) + kept
            entries[dim] = joined[0] if len(joined) == 1 else joined
        return PartitionSpec(*entries)

    def __repr__(self) -> str:
        return repr(self.style_spec)
