"""ZeRO-1/2: optimizer state sharded over the data axis while the parameters stay replicated.

torch spells it ``ZeroRedundancyOptimizer(params, optimizer_class=Adam)`` (ZeRO-1) or FSDP's
``SHARD_GRAD_OP`` (ZeRO-2); a JAX user puts the optimizer state on a ``NamedSharding`` and
constrains a jitted step's outputs. In fparam it is one call on an optimizer of any kind::

    model = jax.device_put(model, NamedSharding(mesh, P()))     # plain data parallelism
    opt = optim.Adam(model.parameters(), lr=1e-3)
    fparam.distributed.shard_optimizer_state(opt, mesh, axis="data")

Each device then keeps ``1/n`` of every moment (``exp_avg``, ``momentum_buffer``, optax's
``mu``...). The optimizer records the placement in its pytree structure and keeps it: a jitted
``opt.step`` constrains the new state to it and the new parameters to their own sharding, so
the SPMD partitioner computes each slice of the update on the device that holds it and
all-gathers the new parameters (ZeRO-2's reduce-scatter of the gradients is what XLA makes of
that), and ``load_state_dict``, a new ``lr``, a scheduler, ``copy.deepcopy`` and state created
later (a momentum given to a group, ``amsgrad`` switched on) all land on the same placement.
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fparam._module import _is_tracer, _typename
from fparam.distributed.placement import ShardFirstDivisible
from fparam.optim.optimizer import Optimizer, canonical_sharding

__all__ = ["StateSharding", "shard_optimizer_state"]

_NOT_AN_OPTIMIZER = (
    "shard_optimizer_state() expects an fparam optimizer (optim.SGD, optim.Adam, optim.Optax, "
    "...), got {got}"
)
_NO_MESH = (
    "shard_optimizer_state(): no mesh given and none of the optimizer's parameters is placed on "
    "one (they carry no NamedSharding); pass mesh=, e.g. jax.make_mesh((8,), ('data',))"
)
_BAD_MESH = "shard_optimizer_state(): mesh must be a jax.sharding.Mesh, got {got}"
_NO_AXIS = (
    "shard_optimizer_state(): axis {axis!r} is not an axis of the mesh (its axes: {axes}); "
    "name the data-parallel axis, e.g. axis='data'"
)
_BAD_AXIS = "shard_optimizer_state(): axis must be a mesh axis name or a tuple of names, got {got}"
_IN_TRACE = (
    "shard_optimizer_state() moves the optimizer's arrays, so it runs outside jax.jit / "
    "jax.grad: call it once, after building the optimizer and before the training loop"
)
_BAD_MIN_SIZE = "shard_optimizer_state(): min_size must be an int >= 0, got {got}"

Opt = TypeVar("Opt", bound=Optimizer)


class StateSharding:
    """The rule an optimizer keeps for its state: shard over ``axis`` of ``mesh`` the first
    dimension of each state array that divides evenly, replicate the rest.

    A state array of a parameter already sharded over other axes (tensor parallelism) keeps
    those and adds ``axis`` to its first unsharded dimension that divides (else to the first
    sharded one that still divides); one already sharded over ``axis`` (FSDP) stays as it is.
    Arrays with fewer than ``min_size`` elements, scalars and dimensions that do not divide
    stay replicated. Hashable and compared by value: it is part of the optimizer's pytree
    structure, so a jitted step knows it at trace time.
    """

    __slots__ = ("axis", "hash", "mesh", "min_size")

    def __init__(self, mesh: Mesh, axis: str | tuple[str, ...], min_size: int = 0) -> None:
        self.mesh = mesh
        self.axis = axis
        self.min_size = min_size
        self.hash = hash((mesh, axis, min_size))

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, StateSharding)
            and (other.mesh, other.axis, other.min_size) == (self.mesh, self.axis, self.min_size)
        )

    def __repr__(self) -> str:
        extra = f", min_size={self.min_size}" if self.min_size else ""
        return f"StateSharding(axis={self.axis!r}, mesh axes={dict(self.mesh.shape)}{extra})"

    def replicated(self) -> NamedSharding:
        """Replicated over the mesh: where scalars and the packed hyperparameters go."""
        return NamedSharding(self.mesh, PartitionSpec())

    def spec(self, shape: tuple[int, ...], current: PartitionSpec | None = None) -> PartitionSpec:
        """The spec of a state array of ``shape`` whose parameter has spec ``current``."""
        rule = ShardFirstDivisible(self.axis, min_size=self.min_size)
        return rule.spec("optimizer state", shape, self.mesh, current=current)

    def state_sharding(self, shape: tuple[int, ...], param: Any) -> NamedSharding:
        """Where a state array of ``shape`` goes; ``param``: its parameter's sharding (None
        for state of the whole optimizer, or a parameter on one device)."""
        current = None
        if (
            isinstance(param, NamedSharding)
            and param.mesh == self.mesh
            and len(param.spec) <= len(shape)
        ):
            current = param.spec
        # Spelled as a jitted step returns it: the same input signature before and after.
        return canonical_sharding(NamedSharding(self.mesh, self.spec(shape, current)), len(shape))


def shard_optimizer_state(
    optimizer: Opt,
    mesh: Mesh | None = None,
    axis: str | tuple[str, ...] = "data",
    *,
    min_size: int = 0,
) -> Opt:
    """Shard ``optimizer``'s state over ``axis`` of ``mesh`` (ZeRO-1/2), in place.

    Every per-parameter state array (momentum buffers, Adam's moments, optax's per-parameter
    leaves) is sharded on its first dimension that divides by the axis size, or replicated
    when none does (see :class:`StateSharding`); the optimizer keeps that placement through
    jitted steps, ``load_state_dict``, new hyperparameter values, schedulers and
    ``copy.deepcopy``, and its steps return each parameter with the parameter's own sharding.

    Arguments:
        optimizer: any fparam optimizer, built over the (usually replicated) parameters.
        mesh: the ``jax.sharding.Mesh``; default: the mesh of the first parameter placed with
            a ``NamedSharding``.
        axis: the mesh axis (or tuple of axes) to shard over: the data-parallel one.
        min_size: state arrays with fewer elements stay replicated.

    Returns:
        ``optimizer`` itself (changed in place, as torch's optimizers are), for chaining:
        ``opt = shard_optimizer_state(optim.Adam(model.parameters()), mesh)``.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(_NOT_AN_OPTIMIZER.format(got=_typename(optimizer)))
    if any(_is_tracer(leaf) for leaf in jax.tree.leaves(optimizer)):
        raise RuntimeError(_IN_TRACE)
    groups = optimizer.param_groups  # an optimizer a jitted step returned: materialised here
    if mesh is None:
        found: Any = next(
            (
                sharding.mesh
                for group in groups
                for p in group["params"]
                if isinstance(sharding := getattr(p.data, "sharding", None), NamedSharding)
            ),
            None,
        )
        if found is None:
            raise ValueError(_NO_MESH)
        mesh = found
    if not isinstance(mesh, Mesh):
        raise TypeError(_BAD_MESH.format(got=_typename(mesh)))
    names = (axis,) if isinstance(axis, str) else axis
    if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(_BAD_AXIS.format(got=f"{_typename(axis)} {axis!r}"[:200]))
    for name in names:
        if name not in mesh.shape:
            raise ValueError(_NO_AXIS.format(axis=name, axes=tuple(mesh.shape)))
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise TypeError(_BAD_MIN_SIZE.format(got=f"{_typename(min_size)} {min_size!r}"[:200]))
    d = optimizer.__dict__
    d["_fp_state_sharding"] = StateSharding(mesh, axis, min_size)
    d.pop("_fp_layout", None)  # the placement is structure
    jax.tree.leaves(optimizer)  # flattening moves the state where the new structure says
    return optimizer
