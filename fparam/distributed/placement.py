"""Placing a model on a mesh: plans keyed by ``state_dict`` key, rules, annotations, sharded
initialisation, and the sharding trees ``jit`` and ``shard_map`` take.

A **plan** maps ``state_dict``-key patterns to placements, first match wins::

    plan = {
        "features.*.weight": P("model", None),   # a PartitionSpec, as written
        "classifier.**": ShardFirstDivisible("data"),   # a rule (FSDP / ZeRO-3)
        "**": Replicate(),                       # everything else (also the default)
    }
    fparam.distributed.distribute(model, mesh, plan)   # in place, returns the model

In a pattern ``*`` matches one dotted component (``layers.*.fc1.weight``), ``**`` any number of
them (also none), ``?`` one character; everything else is literal. A pattern that matches no key
is an error (a typo would otherwise silently replicate). Keys are the model's tree paths, which
are its ``state_dict`` keys plus its non-persistent buffers.

A placement is a ``PartitionSpec``, a :class:`Rule` (:class:`Replicate`,
:class:`ShardFirstDivisible`, :class:`Logical` for annotations layer authors write in
``partition_axes``), or a callable ``(key, shape, mesh) -> PartitionSpec``. Every resulting spec
is checked against the parameter's shape: an error names the key, the shape, the dimension and
the mesh axes that do not divide it.

Activations need no plan: inside ``jit`` JAX's partitioner propagates the parameters' and the
inputs' shardings through the computation (torch's parallel styles' ``input_layouts`` /
``output_layouts`` have no counterpart to set).
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fparam import _convert
from fparam._module import Module, _note_owner

__all__ = [
    "Logical",
    "Placement",
    "Replicate",
    "Rule",
    "ShardFirstDivisible",
    "distribute",
    "fully_shard",
    "partition_specs",
    "plan_shardings",
    "sharded_init",
    "shardings",
]

M = TypeVar("M", bound=Module)

_NOT_A_MODULE = "{function}: expected an fparam nn.Module, got {type}"
_NOT_A_MESH = "{function}: expected a jax.sharding.Mesh, got {type}"
_NO_MATCH = (
    "plan pattern {pattern!r} matches no key of the model (a typo would silently leave those "
    "parameters replicated). The keys are: {keys}"
)
_SHADOWED = (
    "plan pattern {pattern!r} is never used: the keys it matches ({keys}) are taken by the "
    "earlier pattern {earlier!r} (first match wins: put the more specific pattern first)"
)
_BAD_PATTERN = "plan keys must be str patterns, got {type}: {pattern!r}"
_BAD_PLACEMENT = (
    "plan entry {pattern!r}: expected a PartitionSpec, a fparam.distributed Rule or a callable "
    "(key, shape, mesh) -> PartitionSpec, got {type}: {value!r}"
)
_CALLABLE_RESULT = (
    "plan entry {pattern!r} for '{key}': the callable returned {type} ({value!r}); "
    "expected a PartitionSpec"
)
_TOO_LONG = (
    "'{key}' of shape {shape}: {spec} has {n} entries but the array has {ndim} dimension(s) "
    "({source})"
)
_NO_AXIS = "'{key}' of shape {shape}: {spec} names mesh axis {axis!r}, but the mesh has axes {axes} ({source})"
_AXIS_TWICE = "'{key}' of shape {shape}: {spec} uses mesh axis {axis!r} twice ({source})"
_NOT_DIVISIBLE = (
    "'{key}' of shape {shape}: dimension {dim} (size {size}) does not divide over mesh axes "
    "{axes} (together {count} devices) ({source})"
)
_UNKNOWN_LOGICAL = (
    "'{key}': logical axis {name!r} (from {owner}.partition_axes) has no rule; the rules "
    "name {known}. Map it to a mesh axis, or to None to replicate it"
)
_AXES_LENGTH = (
    "'{key}' of shape {shape}: {owner}.partition_axes gives {axes} ({n} names) for a "
    "{ndim}-dimensional array"
)
_NOT_NAMED = (
    "partition_specs: the leaf at {path} is placed by {sharding}, which has no PartitionSpec; "
    "place the tree on a mesh first (fparam.distributed.distribute or jax.device_put with "
    "NamedSharding)"
)

# --------------------------------------------------------------------------------------------
# Rules


class Rule(abc.ABC):
    """A placement decided per array from its key, shape and the mesh (and its module's
    ``partition_axes`` annotation, for :class:`Logical`)."""

    @abc.abstractmethod
    def spec(
        self,
        key: str,
        shape: tuple[int, ...],
        mesh: Mesh,
        *,
        current: PartitionSpec | None = None,
        axes: tuple[str | None, ...] | None = None,
        owner: str = "",
    ) -> PartitionSpec:
        """The ``PartitionSpec`` for the array at ``key``.

        Arguments:
            key: the array's ``state_dict`` key.
            shape: its shape.
            mesh: the mesh it is placed on.
            current: its present spec when it already lives on ``mesh`` (rules that add an
                axis, such as :class:`ShardFirstDivisible`, keep what is there).
            axes: the logical axis names its module's ``partition_axes`` gives it, if any.
            owner: the module class's name, for messages.
        """


class Replicate(Rule):
    """A full copy on every device of the mesh (DTensor's ``Replicate()``)."""

    def spec(self, key, shape, mesh, *, current=None, axes=None, owner=""):  # type: ignore[no-untyped-def]
        return PartitionSpec()

    def __repr__(self) -> str:
        return "Replicate()"


class ShardFirstDivisible(Rule):
    """Shard over ``axis`` the first dimension that divides evenly; replicate when none does.

    What FSDP (torch's ``fully_shard``) and ZeRO-3 do with parameters: each device keeps a
    slice, and the partitioner gathers a parameter where a computation needs it whole. A
    dimension already sharded over other axes is skipped in favour of an unsharded one; when
    only sharded ones divide, the axis is added to the first of them that still divides. A mesh
    axis of size 1 splits nothing and is not named (on a one-device mesh everything is ``P()``).

    Arguments:
        axis: a mesh axis name, or a tuple of names sharding together.
        min_size: arrays with fewer elements stay replicated (a bias of 8 floats costs more to
            gather than to keep). Default 0: every divisible array is sharded.
    """

    def __init__(self, axis: str | tuple[str, ...] = "data", *, min_size: int = 0) -> None:
        self.axis = axis
        self.min_size = int(min_size)

    def spec(self, key, shape, mesh, *, current=None, axes=None, owner=""):  # type: ignore[no-untyped-def]
        names = _axis_tuple(self.axis)
        for name in names:
            if name not in mesh.shape:
                raise ValueError(
                    _NO_AXIS.format(
                        key=key,
                        shape=shape,
                        spec=repr(self),
                        axis=name,
                        axes=tuple(mesh.shape),
                        source=repr(self),
                    )
                )
        entries = _entries(current, len(shape))
        used = {a for entry in entries for a in _axis_tuple(entry)}
        # An axis of size 1 splits nothing; naming it would only make two spellings of one
        # placement, and a jitted step returns the other one (a second compile).
        names = tuple(n for n in names if n not in used and mesh.shape[n] > 1)
        if not names or math.prod(shape) < self.min_size:
            return PartitionSpec(*entries)
        count = math.prod(mesh.shape[n] for n in names)
        unsharded = [d for d, entry in enumerate(entries) if entry is None]
        sharded = [d for d, entry in enumerate(entries) if entry is not None]
        for dim in unsharded + sharded:
            have = math.prod(mesh.shape[n] for n in _axis_tuple(entries[dim]))
            if shape[dim] % (have * count) == 0:
                joined = _axis_tuple(entries[dim]) + names
                entries[dim] = joined[0] if len(joined) == 1 else joined
                return PartitionSpec(*entries)
        return PartitionSpec(*entries)

    def __repr__(self) -> str:
        extra = f", min_size={self.min_size}" if self.min_size else ""
        return f"ShardFirstDivisible({self.axis!r}{extra})"


class Logical(Rule):
    """Place arrays by the logical axis names their layer declares (Flax/MaxText's logical
    axis rules).

    A layer author names each parameter's dimensions once, in the class::

        class MLPBlock(nn.Module):
            partition_axes = {"up": ("embed", "mlp"), "down": ("mlp", "embed")}

    and a program maps names to mesh axes: ``Logical({"mlp": "model", "embed": None})``. A
    dimension whose name maps to ``None`` is replicated; an array whose module declares no
    names is replicated.

    Arguments:
        rules: logical name -> mesh axis name, tuple of names, or ``None``.
    """

    def __init__(self, rules: Mapping[str, str | tuple[str, ...] | None]) -> None:
        self.rules = dict(rules)

    def spec(self, key, shape, mesh, *, current=None, axes=None, owner=""):  # type: ignore[no-untyped-def]
        if axes is None:
            return PartitionSpec()
        if len(axes) != len(shape):
            raise ValueError(
                _AXES_LENGTH.format(
                    key=key, shape=shape, owner=owner, axes=axes, n=len(axes), ndim=len(shape)
                )
            )
        entries: list[Any] = []
        for name in axes:
            if name is None:
                entries.append(None)
                continue
            if name not in self.rules:
                raise ValueError(
                    _UNKNOWN_LOGICAL.format(
                        key=key, name=name, owner=owner, known=sorted(self.rules)
                    )
                )
            entries.append(self.rules[name])
        return PartitionSpec(*entries)

    def __repr__(self) -> str:
        return f"Logical({self.rules!r})"


Placement = PartitionSpec | Rule | Callable[[str, tuple[int, ...], Mesh], PartitionSpec]


# --------------------------------------------------------------------------------------------
# Patterns and specs


def _axis_tuple(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def _entries(spec: PartitionSpec | None, ndim: int) -> list[Any]:
    entries = list(spec) if spec is not None else []
    return entries[:ndim] + [None] * (ndim - len(entries))


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A plan pattern as a regular expression over dotted keys (``*``: one component, ``**``:
    any number of them, ``?``: one character)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**.", i):
            out.append(r"(?:[^.]*\.)*")
            i += 3
        elif pattern.startswith(".**", i) and i + 3 == len(pattern):
            out.append(r"(?:\..*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_spec(
    key: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh, source: str
) -> PartitionSpec:
    """``spec`` if it can place an array of ``shape`` on ``mesh``; else ``ValueError`` naming
    the key, the shape and what does not fit (``source``: where the spec came from)."""
    fields = dict(key=key, shape=tuple(shape), spec=spec, source=source)
    if len(spec) > len(shape):
        raise ValueError(_TOO_LONG.format(n=len(spec), ndim=len(shape), **fields))
    seen: set[str] = set()
    for dim, entry in enumerate(spec):
        names = _axis_tuple(entry)
        for name in names:
            if name not in mesh.shape:
                raise ValueError(_NO_AXIS.format(axis=name, axes=tuple(mesh.shape), **fields))
            if name in seen:
                raise ValueError(_AXIS_TWICE.format(axis=name, **fields))
            seen.add(name)
        count = math.prod(mesh.shape[n] for n in names)
        if names and shape[dim] % count:
            raise ValueError(
                _NOT_DIVISIBLE.format(dim=dim, size=shape[dim], axes=names, count=count, **fields)
            )
    return spec


def _check_mesh(function: str, mesh: Any) -> None:
    if not isinstance(mesh, Mesh):
        raise TypeError(_NOT_A_MESH.format(function=function, type=type(mesh).__name__))


def _check_module(function: str, module: Any) -> None:
    if not isinstance(module, Module):
        raise TypeError(_NOT_A_MODULE.format(function=function, type=type(module).__name__))


def _arrays(model: Module) -> list[tuple[str, Module, str, Any]]:
    """``(key, owning module, attribute name, array)`` for every parameter and buffer, in
    ``state_dict`` order (non-persistent buffers included)."""
    found = []
    for path, sub in model.named_modules(remove_duplicate=False):
        d = sub.__dict__
        layout = d["_fp_layout"]
        for name in layout.leaf_names[: len(layout.params) + len(layout.buffers)]:
            if d[name] is not None:
                found.append((f"{path}.{name}" if path else name, sub, name, d[name]))
    return found


def _annotation(module: Module, name: str) -> tuple[str | None, ...] | None:
    axes = getattr(module, "partition_axes", None)
    if not axes:
        return None
    value = axes.get(name)
    return None if value is None else tuple(value)


def _resolve(
    placement: Any,
    pattern: str,
    key: str,
    module: Module,
    name: str,
    shape: tuple[int, ...],
    mesh: Mesh,
    current: PartitionSpec | None,
) -> PartitionSpec:
    source = f"plan entry {pattern!r} -> {placement!r}"
    if isinstance(placement, PartitionSpec):
        spec = placement
    elif isinstance(placement, Rule):
        spec = placement.spec(
            key,
            shape,
            mesh,
            current=current,
            axes=_annotation(module, name),
            owner=type(module).__name__,
        )
    elif callable(placement):
        spec = placement(key, shape, mesh)
        if not isinstance(spec, PartitionSpec):
            raise TypeError(
                _CALLABLE_RESULT.format(
                    pattern=pattern, key=key, type=type(spec).__name__, value=spec
                )
            )
    else:
        raise TypeError(
            _BAD_PLACEMENT.format(pattern=pattern, type=type(placement).__name__, value=placement)
        )
    return check_spec(key, shape, spec, mesh, source)


def _compiled_plan(plan: Mapping[str, Any]) -> list[tuple[str, re.Pattern[str], Any]]:
    if not isinstance(plan, Mapping):
        raise TypeError(
            f"a plan must be a mapping of key patterns to placements, got {type(plan).__name__}"
        )
    compiled = []
    for pattern, placement in plan.items():
        if not isinstance(pattern, str):
            raise TypeError(_BAD_PATTERN.format(type=type(pattern).__name__, pattern=pattern))
        if not isinstance(placement, PartitionSpec | Rule) and not callable(placement):
            raise TypeError(
                _BAD_PLACEMENT.format(
                    pattern=pattern, type=type(placement).__name__, value=placement
                )
            )
        compiled.append((pattern, compile_pattern(pattern), placement))
    return compiled


def _current_spec(array: Any, mesh: Mesh) -> PartitionSpec | None:
    sharding = getattr(array, "sharding", None)
    if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
        return sharding.spec
    return None


def _canonical(spec: PartitionSpec, ndim: int, mesh: Mesh) -> PartitionSpec:
    """``spec`` in the form a jitted step returns an output whose placement it derived
    (``P('data')``, not ``P('data', None)``, on an ``Auto`` mesh; one entry per dimension on an
    ``Explicit`` one). Placing an array in another spelling of the same placement would make the
    step's outputs differ from its inputs, and the next call would compile again."""
    from fparam.optim.optimizer import canonical_sharding

    return canonical_sharding(NamedSharding(mesh, PartitionSpec(*_entries(spec, ndim))), ndim).spec


def _plan_specs(
    model: Module, mesh: Mesh, plan: Mapping[str, Any], *, compose: bool
) -> dict[str, PartitionSpec]:
    """key -> checked spec for every array of ``model`` (unmatched: replicated, or kept as it
    is when ``compose`` and it already lives on ``mesh``)."""
    compiled = _compiled_plan(plan)
    arrays = _arrays(model)
    used = [False] * len(compiled)
    specs: dict[str, PartitionSpec] = {}
    for key, module, name, array in arrays:
        current = _current_spec(array, mesh) if compose else None
        shape = tuple(array.shape)
        for index, (pattern, regex, placement) in enumerate(compiled):
            if regex.match(key):
                used[index] = True
                spec = _resolve(placement, pattern, key, module, name, shape, mesh, current)
                break
        else:
            spec = current if current is not None else PartitionSpec()
        specs[key] = _canonical(spec, len(shape), mesh)
    for (pattern, regex, _), hit in zip(compiled, used):
        if hit:
            continue
        keys = [key for key, *_ in arrays]
        shadowed = [key for key in keys if regex.match(key)]
        if shadowed:
            earlier = next(p for p, r, _ in compiled if r.match(shadowed[0]))
            raise ValueError(
                _SHADOWED.format(pattern=pattern, keys=", ".join(shadowed[:10]), earlier=earlier)
            )
        shown = ", ".join(keys[:40]) + (f", ... ({len(keys)} in all)" if len(keys) > 40 else "")
        raise ValueError(_NO_MATCH.format(pattern=pattern, keys=shown))
    return specs


def _tree_of(model: Any, mesh: Mesh, specs: Mapping[str, PartitionSpec]) -> Any:
    def sharding(path: Any, _: Any) -> NamedSharding:
        return NamedSharding(mesh, specs[jax.tree_util.keystr(path, simple=True, separator=".")])

    return jax.tree_util.tree_map_with_path(sharding, model)


# --------------------------------------------------------------------------------------------
# Public API


def plan_shardings(model: Module, mesh: Mesh, plan: Mapping[str, Any] | None = None) -> Any:
    """The placement a plan gives each array of ``model``, as a tree of ``NamedSharding``.

    The tree has the model's structure, so it is what ``jax.device_put(model, tree)`` and
    ``jax.jit(..., in_shardings=..., out_shardings=...)`` take. ``model`` may be abstract (the
    ``jax.eval_shape`` of a constructor): nothing is placed or computed.

    Arguments:
        model: the module (or its abstract twin).
        mesh: the mesh to place on.
        plan: ``{key pattern: placement}``, first match wins; unmatched arrays replicated.

    Returns:
        A tree like ``model`` whose leaves are ``NamedSharding``.

    Raises:
        ValueError: a pattern matches no key, or a spec does not fit an array (the message
            names the key, its shape, and the dimension and mesh axes that do not divide).
        TypeError: a plan entry is not a spec, rule or callable.
    """
    _check_module("plan_shardings", model)
    _check_mesh("plan_shardings", mesh)
    return _tree_of(model, mesh, _plan_specs(model, mesh, plan or {}, compose=False))


def _place_in_place(
    model: Module, function: str, mesh: Mesh, specs: Mapping[str, PartitionSpec]
) -> None:
    """Put every array of ``model`` at its spec, in place; all or nothing."""
    writes = []
    for key, module, name, array in _arrays(model):
        module._check_mutable(f"call fparam.distributed.{function}")
        target = NamedSharding(mesh, specs[key])
        if getattr(array, "sharding", None) != target:
            writes.append((module, name, target, array))
    placed = [(module, name, _convert.put(array, target)) for module, name, target, array in writes]
    for module, name, new in placed:
        module.__dict__[name] = new
        _note_owner(new, module, name)


def distribute(model: M, mesh: Mesh, plan: Mapping[str, Any] | None = None) -> M:
    """Place every parameter and buffer of ``model`` on ``mesh`` by ``plan``, in place.

    torch's ``distribute_module`` / DTensor ``distribute_tensor`` for a whole model: arrays a
    plan entry matches get its placement, every other array is replicated over the mesh.
    Placement is then kept by everything fparam does (``load_state_dict``,
    ``reset_parameters``, optimizers built afterwards create their state with it).

    Arguments:
        model: the module to place (modified in place).
        mesh: a ``jax.sharding.Mesh``.
        plan: ``{key pattern: PartitionSpec | Rule | callable}``, first match wins.

    Returns:
        ``model``.

    Raises:
        ValueError, TypeError: as :func:`plan_shardings`; on error nothing was moved.
    """
    _check_module("distribute", model)
    _check_mesh("distribute", mesh)
    specs = _plan_specs(model, mesh, plan or {}, compose=False)
    _place_in_place(model, "distribute", mesh, specs)
    return model


def fully_shard(
    module: M, *, mesh: Mesh, axis: str | tuple[str, ...] = "data", min_size: int = 0
) -> M:
    """Shard every parameter and buffer of ``module`` over ``axis`` (FSDP / ZeRO-3), in place.

    torch's ``fully_shard`` (FSDP2): each array is split along its first dimension that
    divides by the axis size (a tensor-parallel placement made earlier is kept; the axis is
    added to it), and replicated where none divides. Inside a jitted step JAX's partitioner
    gathers each parameter where a computation needs it and reduce-scatters its gradient, as
    FSDP's hooks do. Arrays of other submodules are untouched, so ``fully_shard`` can be applied
    per block, as in torch.

    Arguments:
        module: the module whose arrays to shard (modified in place).
        mesh: the mesh.
        axis: the mesh axis (or axes) to shard over.
        min_size: arrays with fewer elements stay as they are.

    Returns:
        ``module``.
    """
    _check_module("fully_shard", module)
    _check_mesh("fully_shard", mesh)
    plan = {"**": ShardFirstDivisible(axis, min_size=min_size)}
    specs = _plan_specs(module, mesh, plan, compose=True)
    _place_in_place(module, "fully_shard", mesh, specs)
    return module


def sharded_init(build: Callable[[], M], mesh: Mesh, plan: Mapping[str, Any] | None = None) -> M:
    """Construct a model directly in its sharded placement, never whole on one device.

    ``build`` (a constructor call, ``lambda: Net(10)``) is first traced abstractly
    (``jax.eval_shape``) to learn the arrays' shapes and the plan's placement, then run inside
    one ``jit`` whose outputs carry those shardings: each device draws only its own slices
    (JAX's partitionable random numbers), so a model larger than one device's memory can be
    built. The draws follow torch's distributions and fparam's default stream
    (``fparam.manual_seed(s)`` before the call makes it repeatable), but they are made by
    ``jax.random`` inside the trace, so the values differ from an eager construction's (as a
    GPU-initialised torch model differs from a CPU-initialised one): load a checkpoint to
    reproduce exact values.

    Arguments:
        build: a function of no arguments returning the module.
        mesh: the mesh.
        plan: as for :func:`distribute`.

    Returns:
        The placed module.
    """
    from fparam import _random

    _check_mesh("sharded_init", mesh)
    start = _random.stream_position()
    abstract = jax.eval_shape(build)
    _check_module("sharded_init", abstract)
    tree = plan_shardings(abstract, mesh, plan)
    _random.rewind_stream(start)
    return jax.jit(build, out_shardings=tree)()


def shardings(tree: Any) -> Any:
    """The placement of every array of ``tree`` (a model, an optimizer, a tuple of them), as a
    tree of the same structure: what ``jit(in_shardings=..., out_shardings=...)`` takes to
    keep a step's outputs where its inputs are."""
    return jax.tree.map(lambda leaf: leaf.sharding, tree)


def partition_specs(tree: Any) -> Any:
    """The ``PartitionSpec`` of every array of ``tree``, as a tree of the same structure:
    what ``jax.shard_map(..., in_specs=..., out_specs=...)`` takes.

    Raises:
        TypeError: an array is not placed by a ``NamedSharding`` (it names the leaf).
    """

    def spec(path: Any, leaf: Any) -> PartitionSpec:
        sharding = leaf.sharding
        if not isinstance(sharding, NamedSharding):
            raise TypeError(_NOT_NAMED.format(path=jax.tree_util.keystr(path), sharding=sharding))
        return sharding.spec

    return jax.tree_util.tree_map_with_path(spec, tree)
