"""Output shardings for layers on a mesh whose axes are ``Explicit``.

On an ``Auto`` mesh (and on one device) JAX's partitioner chooses every intermediate sharding,
and the functions in ``fparam.nn.functional`` run their plain code: nothing here is called.
On an ``Explicit`` mesh (``jax.make_mesh``'s default axis type in current JAX, under
``jax.set_mesh``) every array's sharding is part of its type, and JAX refuses a ``dot_general``,
convolution, gather or reshape whose result sharding it cannot infer. A layer then chooses its
output sharding by one rule, the one ``DistributedDataParallel``, ``fully_shard`` and
``ColwiseParallel`` / ``RowwiseParallel`` users expect:

- **batch dims keep the input's sharding** (data parallelism: a batch sharded over ``'data'``
  gives outputs sharded over ``'data'``);
- **the feature dim takes the weight's output-dim sharding** (tensor / column parallelism: a
  ``Linear`` weight sharded over ``'model'`` on its ``out_features`` dim gives features sharded
  over ``'model'``), **unless that mesh axis is already used by the input's other dims**: then
  the weight is gathered over that axis before use (``jax.sharding.reshard``: FSDP / ZeRO-3
  semantics; a weight sharded over ``'data'`` like the batch is all-gathered for the forward and
  its gradient is reduce-scattered back to the weight's sharding);
- **a contraction over a sharded dim** (row parallelism: input features and the weight's
  ``in_features`` both over ``'model'``) gives an unsharded, summed (all-reduced) feature dim;
- **elementwise parameters follow the input** (a norm's affine weight and bias, a PReLU
  slope): they are resharded like the input's matching dims, so the output keeps the input's
  sharding.

Parameters keep their own sharding: only the copy used inside the forward is resharded, so the
gradient (JAX transposes ``reshard``) and every optimizer state come out placed like the
parameter. ``linear`` states the rule to JAX directly (``out_sharding``). Layers whose bodies
hold reshapes, gathers, scans or custom derivatives (convolutions, ``embedding``, attention,
recurrences, ``bilinear``, ``group_norm``) apply the rule to their weights and their outputs
and run the body with the mesh axes in ``Auto`` mode (``jax.sharding.auto_axes``), so that
JAX's partitioner places the intermediates as it does on an ``Auto`` mesh. Two refinements:
a convolution's spatial dims come out unsharded (an input sharded there is gathered), and a
recurrence's features come out unsharded (its hidden state feeds the next step whole).

The check for an Explicit mesh runs once per trace; on an Auto mesh or one device the traced
program is the same as without this module (``tests/distributed/test_explicit_mesh.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

import jax
from jax.sharding import PartitionSpec as P

__all__ = [
    "Entry",
    "against",
    "explicit_mesh",
    "gather_used",
    "in_auto",
    "reshard",
    "spec",
    "used_axes",
    "within",
    "without",
]

# One dim of a PartitionSpec: None (replicated), a mesh axis name, or a tuple of names.
Entry = Any


def explicit_mesh(*arrays: Any) -> Any:
    """The abstract mesh when it has an ``Explicit`` axis (the current mesh, else the mesh of
    the first array whose type carries one); ``None`` otherwise: the caller runs its plain path.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty:
        return mesh if mesh.explicit_axes else None
    for x in arrays:
        if x is None:
            continue
        sharding = getattr(jax.typeof(x), "sharding", None)
        own = getattr(sharding, "mesh", None)
        if own is not None and not own.empty and own.explicit_axes:
            return own
    return None


def within(mesh: Any) -> contextlib.AbstractContextManager[Any]:
    """Make ``mesh`` the current abstract mesh where none is set (an explicitly sharded array
    passed to ``jit`` outside ``jax.set_mesh``), so that bare PartitionSpecs resolve."""
    if jax.sharding.get_abstract_mesh().empty:
        return jax.sharding.use_abstract_mesh(mesh)
    return contextlib.nullcontext()


def spec(x: jax.Array) -> tuple[Entry, ...]:
    """``x``'s PartitionSpec as one entry per dim (missing trailing entries are ``None``)."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    entries = tuple(getattr(sharding, "spec", ()) or ())
    return entries + (None,) * (x.ndim - len(entries))


def _axes(entry: Entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def used_axes(entries: Iterable[Entry]) -> frozenset[str]:
    """The mesh axes that some of ``entries`` shard over."""
    return frozenset(a for entry in entries for a in _axes(entry))


def without(entry: Entry, used: Iterable[str]) -> Entry:
    """``entry`` with the mesh axes in ``used`` removed (``None`` when nothing is left)."""
    used = frozenset(used)
    kept = tuple(a for a in _axes(entry) if a not in used)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else kept


def reshard(x: jax.Array, target: Sequence[Entry]) -> jax.Array:
    """``x`` resharded to ``target`` (one entry per dim); ``x`` itself when already there."""
    target = tuple(target)
    if spec(x) == target:
        return x
    return jax.sharding.reshard(x, P(*target))


@overload
def gather_used(w: jax.Array, used: Iterable[str]) -> jax.Array: ...
@overload
def gather_used(w: None, used: Iterable[str]) -> None: ...
@overload
def gather_used(w: jax.Array | None, used: Iterable[str]) -> jax.Array | None: ...
def gather_used(w: jax.Array | None, used: Iterable[str]) -> jax.Array | None:
    """A weight with the mesh axes in ``used`` (the input's batch axes) gathered: FSDP."""
    if w is None:
        return None
    return reshard(w, [without(e, used) for e in spec(w)])


def against(v: jax.Array, x: jax.Array) -> jax.Array:
    """A parameter or statistic ``v`` of ``x``'s rank, placed to broadcast against ``x``
    elementwise (a norm's affine weight, a PReLU slope): it takes ``x``'s sharding on each dim
    where it has more than one element (a local slice where ``x`` is sharded, a gather where
    ``x`` is not), so the result keeps ``x``'s sharding. ``v`` itself on an Auto mesh or one
    device.
    """
    mesh = explicit_mesh(x, v)
    if mesh is None:
        return v
    with within(mesh):
        return reshard(v, [e if n > 1 else None for e, n in zip(spec(x), v.shape)])


def in_auto(fn: Callable[..., Any], out_specs: Any, *args: Any) -> Any:
    """``fn(*args)`` with the mesh axes in ``Auto`` mode, its outputs resharded to
    ``out_specs`` (a tree of PartitionSpecs, ``None`` for a ``None`` output).

    ``args`` are pytrees of arrays (and ``None``); static arguments belong in ``fn``'s closure.
    """
    return jax.sharding.auto_axes(fn, out_sharding=out_specs)(*args)
