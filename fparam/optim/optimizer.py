"""The optimizer base: torch's parameter groups, as a JAX pytree.

An optimizer is a value. ``opt.step(model, grads)`` returns ``(new_model, new_opt)`` and never
mutates its arguments, so it works inside ``jax.jit`` and ``jax.lax.scan``. Hyperparameters are
pytree leaves (changing ``opt.param_groups[0]['lr']`` never recompiles); which parameters belong
to which group is static.

An optimizer knows its parameters by their *place*: the model they belong to (the first, second,
... model the optimizer met) and their ``state_dict`` key there, found through the modules'
parent links when the optimizer is built (``optim.SGD(model.fc.parameters())`` records
``fc.weight`` and ``fc.bias`` of ``model``). torch knows them by object identity; fparam cannot,
because JAX hands ``step`` a new copy of the model at every call and reuses one compiled program
for every model of the same architecture (see ``fparam/_module.py``). A place is the same in all
of those copies, so ``step(model, grads)`` finds the parameters in any of them, and in any other
model of the same architecture (as an optax state applies to any matching tree). A model that
lacks one of the places, or holds an array of another shape or dtype there, is refused.
"""

from __future__ import annotations

import copy
import functools
import warnings
import weakref
from typing import Any, ClassVar

import jax
import numpy as np

from fparam._module import Module, Parameter, _join, _roots, _typename, _unflatten

__all__ = ["Optimizer"]


def _kind(value: Any) -> Any:
    """How a packed hyperparameter reads back: ``None`` for a number, else the array's dtype.

    A concrete JAX array the user gave (torch's tensor lr) comes back as a 0-d array of its own
    dtype; a Python or NumPy number, or a value traced under ``jit`` (a schedule's), comes back
    as a number. The kind is static structure, so it must not depend on whether a value
    happens to be traced.
    """
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        return value.dtype
    return None


class _Lazy:
    """The placeholder of a packed hyperparameter not read yet (see ``ParamGroup``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<packed>"


_LAZY = _Lazy()
_HOST_NUMBER = (int, float, np.ndarray, np.generic)
_NO_KINDS: dict[str, Any] = {}


def _read_packed(packed: Any, slots: dict[str, int], kinds: dict[str, Any]) -> dict[str, Any]:
    """The values of ``slots`` in the packed vector, each read back as its ``kinds`` says.

    Inside a trace each is an index of the traced vector; outside, one device-to-host copy
    and Python numbers that print as the user wrote them (the shortest decimal).
    """
    if isinstance(packed, jax.core.Tracer):
        return {
            k: packed[i] if kinds.get(k) is None else packed[i].astype(kinds[k])
            for k, i in slots.items()
        }
    host = np.asarray(packed)
    values = host.tolist()
    return {
        k: _shortest(values[i], host.dtype.char)
        if kinds.get(k) is None
        else jax.numpy.asarray(host[i], kinds[k])
        for k, i in slots.items()
    }


@functools.lru_cache(maxsize=1024)
def _shortest(value: float, dtype_char: str) -> float:
    """The shortest decimal that rounds to ``value`` in its dtype: the number the user wrote.

    0.1 packed in float32 reads back as 0.1, not 0.10000000149011612. Cached: a training loop
    reads the same few values at every step.
    """
    return float(str(np.dtype(dtype_char).type(value)))


class ParamGroup(dict):
    """One torch parameter group: a dict with ``'params'`` (Parameter handles) and options.

    Float options listed in the optimizer's ``hyperparameters`` are pytree leaves; setting one
    (``group['lr'] = 0.01``) changes the next step without recompiling. A new value of a
    packed hyperparameter marks the group ``values_changed`` (the optimizer packs again); any
    other change marks it ``dirty`` (the optimizer also recomputes its pytree structure).

    The hyperparameters travel packed in one vector leaf; a group rebuilt from the pytree
    reads them from that vector on first access (``lazy``), all at once. ``kinds`` remembers
    how each packed value reads back (see ``_kind``) until the key is set again.
    """

    params_key: _ParamsKey | None = None
    dirty: bool = False
    values_changed: bool = False
    lazy: tuple[Any, dict[str, int], dict[str, Any]] | None = None
    kinds: dict[str, Any] = _NO_KINDS
    packed_keys: frozenset[str] = frozenset()  # the keys the optimizer's structure packs

    def _fill(self) -> None:
        lazy = self.lazy
        if lazy is not None:
            self.lazy = None
            dict.update(self, _read_packed(*lazy))

    def _changed(self, keys: Any) -> None:
        self.dirty = True
        if self.kinds:
            self.kinds = {k: v for k, v in self.kinds.items() if k not in keys}

    def kind_of(self, key: str) -> Any:
        """How the value of ``key`` reads back after packing (see ``_kind``)."""
        kinds = self.kinds
        if key in kinds:
            return kinds[key]
        return _kind(dict.__getitem__(self, key))

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value is _LAZY:
            self._fill()
            value = dict.__getitem__(self, key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)

    def __iter__(self) -> Any:
        # Overriding __iter__ also makes dict(group) and {**group} read through __getitem__.
        self._fill()
        return super().__iter__()

    def values(self) -> Any:
        self._fill()
        return super().values()

    def items(self) -> Any:
        self._fill()
        return super().items()

    def __eq__(self, other: object) -> bool:
        self._fill()
        if isinstance(other, ParamGroup):
            other._fill()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._fill()
        return super().__repr__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._fill()
        return super().__reduce_ex__(protocol)

    def copy(self) -> dict[str, Any]:  # type: ignore[override]
        self._fill()
        return dict(self)

    def __setitem__(self, key: str, value: Any) -> None:
        self._fill()
        if key in self.packed_keys and _kind(value) == self.kind_of(key):
            super().__setitem__(key, value)
            self.values_changed = True  # same structure: only the packed vector is redone
        else:
            super().__setitem__(key, value)
            self._changed((key,))

    def __delitem__(self, key: str) -> None:
        self._fill()
        super().__delitem__(key)
        self._changed((key,))

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._fill()
        new = dict(*args, **kwargs)
        super().update(new)
        self._changed(new)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._fill()
        if key not in self:
            self._changed((key,))
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._fill()
        self._changed((key,))
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._fill()
        item = super().popitem()
        self._changed((item[0],))
        return item

    def clear(self) -> None:
        self.lazy = None
        super().clear()
        self.dirty = True
        self.kinds = _NO_KINDS

    def copy_clean(self) -> ParamGroup:
        """A copy for a new optimizer value, with the same cached identity and dirtiness."""
        copy = ParamGroup(self)  # placeholders included: the copy reads the same vector
        copy.params_key = self.params_key
        copy.dirty = self.dirty
        copy.values_changed = self.values_changed
        copy.packed_keys = self.packed_keys
        copy.lazy = self.lazy
        copy.kinds = self.kinds  # never mutated in place: shared safely
        return copy


class _OptimizerLayout:
    """An optimizer's pytree structure: hashed once, compared by identity first.

    The leaves are one vector packing the hyperparameters (the defaults', then each group's)
    followed by the subclass's small per-parameter state (``n_state`` values, e.g. SGD's
    "momentum buffer initialised" flags), then the subclass's array state (e.g. the buffers).
    One vector, because every leaf is an input and an output of a jitted step, and each costs
    dispatch time (benchmarks/README.md). ``templates`` are the groups as dicts with every
    static option in torch's key order and a placeholder where a packed value goes;
    unflattening copies them. ``slots`` say where each packed value is, ``kinds`` how it reads
    back.
    """

    __slots__ = (
        "cache",
        "default_kinds",
        "default_slots",
        "defaults",
        "extras",
        "hash",
        "key",
        "n_hyper",
        "n_packed",
        "templates",
    )

    def __init__(self, cls: type, groups: list[ParamGroup], defaults: ParamGroup, extras: Any):
        hyper = cls.hyperparameters  # type: ignore[attr-defined]
        statics = []
        self.templates = []
        position = 0
        self.defaults = {}
        self.default_slots = {}
        self.default_kinds = {}
        for k in dict.keys(defaults):
            if k in hyper:
                self.defaults[k] = _LAZY
                self.default_slots[k] = position
                position += 1
                kind = defaults.kind_of(k)
                if kind is not None:
                    self.default_kinds[k] = kind
            else:
                self.defaults[k] = dict.__getitem__(defaults, k)
        for g in groups:
            params_key = _ParamsKey.of(g)
            items: list[tuple[str, Any]] = []
            template: dict[str, Any] = {}
            slots: dict[str, int] = {}
            kinds: dict[str, Any] = {}
            for k in dict.keys(g):
                if k in hyper:
                    kind = g.kind_of(k)
                    items.append((k, kind))
                    template[k] = _LAZY
                    slots[k] = position
                    position += 1
                    if kind is not None:
                        kinds[k] = kind
                elif k == "params":
                    items.append((k, params_key))
                    template[k] = params_key.handles
                else:
                    v = dict.__getitem__(g, k)
                    items.append((k, tuple(v) if isinstance(v, list) else v))
                    template[k] = v
            statics.append(tuple(items))
            self.templates.append((template, params_key, slots, kinds or _NO_KINDS))
        self.n_hyper = position
        self.n_packed = position + cls._packed_state_size(groups, extras)  # type: ignore[attr-defined]
        self.extras = extras
        self.key = (
            cls,
            tuple(statics),
            tuple((k, None if v is _LAZY else v) for k, v in self.defaults.items()),
            tuple(self.default_kinds.items()),
            extras,
        )
        self.hash = hash(self.key)
        self.cache: dict[str, Any] = {}  # derived data subclasses compute once per structure

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, _OptimizerLayout)
            and other.hash == self.hash
            and other.key == self.key
        )


class _ParamsKey:
    """The static identity of a group's parameters, hashed once and shared by every copy."""

    __slots__ = ("handles", "hash", "key")

    def __init__(self, handles: list[Parameter]) -> None:
        self.handles = handles
        self.key = tuple((_place_key(p), p.requires_grad, tuple(p.shape), p.dtype) for p in handles)
        self.hash = hash(self.key)

    @classmethod
    def of(cls, group: ParamGroup) -> _ParamsKey:
        key = group.params_key
        if key is None or key.handles is not group["params"]:
            key = group.params_key = cls(group["params"])
        return key

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _ParamsKey) and other.key == self.key)


class Optimizer:
    """Base of fparam's optimizers (``torch.optim.Optimizer``'s constructor and groups).

    Subclasses set ``hyperparameters`` (the float options, packed into a pytree leaf; every
    other option is static structure, so changing it recompiles) and implement ``_update``
    and the state hooks (``_packed_state``, ``_state_leaves``, ``_set_state``).
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()

    defaults: ParamGroup
    param_groups: list[ParamGroup]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._tree_flatten, cls._tree_unflatten)

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        if isinstance(params, (jax.Array, Parameter)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters "
                f"or dicts, but got {_typename(params)}"
            )
        self.defaults = ParamGroup(defaults)
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---------------------------------------------------------------- groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (torch's checks: types, duplicates, names, defaults filled in)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        names: list[str] = []
        handles: list[Parameter] = []
        for item in params:
            if isinstance(item, tuple) and len(item) == 2:
                names.append(item[0])
                item = item[1]
            if isinstance(item, Parameter) and isinstance(item.data, jax.Array):
                # Keep shape, dtype and place, not the array: the optimizer must not pin the
                # weights. A parameter not in any module yet is placed when it is first needed.
                source = item
                item = _shape_handle(item.uid, item.requires_grad, item.shape, item.dtype)
                if not self._place(item, source):
                    self.__dict__.setdefault("_fp_unplaced", {})[item.uid] = source
            if not isinstance(item, Parameter):
                hint = (
                    " (pass model.parameters(): a plain array carries no identity to find it "
                    "in the model later)"
                    if isinstance(item, jax.Array)
                    else ""
                )
                raise TypeError(
                    "optimizer can only optimize Parameters, but one of the params is "
                    f"{_typename(item)}{hint}"
                )
            handles.append(item)
        if names and len(names) != len(handles):
            raise ValueError(
                "all optimizer params should be with/without names. Some param names are missing"
            )
        # torch's key order: the user's keys ('params' where the user put it), the names,
        # then the defaults not given; state_dict() and repr follow it.
        group = ParamGroup()
        for key, value in param_group.items():
            group[key] = handles if key == "params" else value
        if names:
            group["param_names"] = names
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        uids = [p.uid for p in handles]
        if len(set(uids)) != len(uids):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, "
                "this will cause an error; see github.com/pytorch/pytorch/issues/40967 for "
                "more information",
                stacklevel=3,
            )
        seen = {p.uid for g in self.param_groups for p in g["params"]}
        places = {p._place for g in self.param_groups for p in g["params"]} - {None}
        if seen & set(uids) or places & {p._place for p in handles}:
            raise ValueError("some parameters appear in more than one parameter group")
        self._validate_group(group)
        self.param_groups.append(group)
        self._init_group_state(group)

    def _place(self, handle: Parameter, source: Parameter) -> bool:
        """Record where ``source`` lives (root model, state_dict key) on ``handle``; False when
        it is not part of a module (yet)."""
        owner = source._attached_owner()
        if owner is None:
            return False
        found = list(_roots(owner))
        if len(found) > 1:
            models = ", ".join(
                f"{type(r).__name__} (as '{_join(p, source._name or '')}')" for r, p in found
            )
            raise ValueError(
                f"this parameter belongs to {len(found)} models: {models}. An optimizer steps "
                "the model passed to step(); build it from that model's parameters()."
            )
        root, path = found[0]
        roots: list[weakref.ref[Module]] = self.__dict__.setdefault("_fp_roots", [])
        index = next((i for i, ref in enumerate(roots) if ref() is root), len(roots))
        if index == len(roots):
            roots.append(weakref.ref(root))
        object.__setattr__(handle, "_place", (index, _join(path, source._name or "")))
        return True

    def _place_pending(self) -> None:
        """Place the parameters that were not in a module when the optimizer was built."""
        pending = self.__dict__.get("_fp_unplaced")
        if not pending:
            return
        for group in self.param_groups:
            for handle in group["params"]:
                source = pending.get(handle.uid)
                if source is not None and handle._place is None and self._place(handle, source):
                    del pending[handle.uid]
                    group.params_key = None  # the structure records places

    def _validate_group(self, group: ParamGroup) -> None:
        """Per-group checks of a subclass (torch validates only its defaults)."""

    def _init_group_state(self, group: ParamGroup) -> None:
        """Create a new group's state (e.g. momentum buffers)."""

    # ---------------------------------------------------------------- pytree
    #
    # A jitted training loop flattens the optimizer it passes in and unflattens the one it
    # gets back, every step. Unflattening is lazy (the leaves are only stored) and flattening
    # an optimizer nobody looked at returns the stored leaves, so the loop pays almost nothing
    # in Python. Reading any attribute builds the groups and state (``_materialize``).

    @classmethod
    def _packed_state_size(cls, groups: list[ParamGroup], extras: Any) -> int:
        """How many values of per-parameter state the subclass packs after the hyperparameters."""
        return 0

    def _packed_state(self, layout: _OptimizerLayout) -> Any:
        """The subclass's packed state: a 1-d array (NumPy where possible) of ``n_state`` values."""
        return None

    def _state_leaves(self, layout: _OptimizerLayout) -> list[Any]:
        return []

    def _set_state(self, layout: _OptimizerLayout, packed: Any, leaves: list[Any]) -> None:
        """Restore the subclass's state from the packed vector and the state leaves."""

    def _state_changed(self) -> None:
        """Note that the subclass's packed state changed: the packed vector must be redone."""
        self._mark_stale("state")

    def _mark_stale(self, part: str) -> None:
        d = self.__dict__
        d["_fp_stale"] = d.get("_fp_stale", frozenset()) | {part}

    def _before_flatten(self) -> None:
        """A subclass's lazy state creation, run before the structure is read."""

    def _layout(self) -> _OptimizerLayout:
        """The pytree structure, recomputed only after a group or the group list changed."""
        d = self.__dict__
        if d.get("_fp_unplaced"):
            self._place_pending()
            d.pop("_fp_layout", None)
        groups = self.param_groups
        defaults = self.defaults
        cached = d.get("_fp_layout")
        if cached is not None and type(defaults) is ParamGroup and not defaults.dirty:
            layout, ids = cached
            if ids == tuple(map(id, groups)):
                values_changed = defaults.values_changed
                for g in groups:
                    if type(g) is not ParamGroup or g.dirty:
                        break
                    values_changed |= g.values_changed
                else:
                    if values_changed:
                        self._mark_stale("hyper")
                        defaults.values_changed = False
                        for g in groups:
                            g.values_changed = False
                    return layout
        # The structure changed: pack everything again.
        d.pop("_fp_packed", None)
        d.pop("_fp_stale", None)
        for i, g in enumerate(groups):
            if type(g) is not ParamGroup:  # a plain dict put there by hand
                groups[i] = g = ParamGroup(g)
        if type(defaults) is not ParamGroup:
            self.defaults = defaults = ParamGroup(defaults)
        layout = _OptimizerLayout(type(self), groups, defaults, self._static_extras())
        defaults.packed_keys = frozenset(layout.default_slots)
        for g, (_, _, slots, _) in zip(groups, layout.templates):
            g.packed_keys = frozenset(slots)
        for g in (defaults, *groups):
            g.dirty = g.values_changed = False
        self._remember_layout(layout)
        return layout

    def _remember_layout(self, layout: _OptimizerLayout) -> None:
        self.__dict__["_fp_layout"] = (layout, tuple(map(id, self.param_groups)))

    def _slot_owners(self, layout: _OptimizerLayout) -> list[tuple[ParamGroup, dict[str, int]]]:
        """The defaults and each group, with where their hyperparameters are packed."""
        owners = [(self.defaults, layout.default_slots)]
        owners.extend((g, t[2]) for g, t in zip(self.param_groups, layout.templates))
        return owners

    def _hyper_values(self, layout: _OptimizerLayout) -> list[Any]:
        """Every packed hyperparameter's value, in slot order."""
        return [g[k] for g, slots in self._slot_owners(layout) for k in slots]

    def _pack(self, layout: _OptimizerLayout) -> Any:
        """The packed vector, kept on the optimizer until a value or the state changes.

        When only the state changed (a step), the previous vector's hyperparameters are kept;
        when only hyperparameters changed (``group['lr'] = x``), its state part is.
        """
        d = self.__dict__
        packed = d.get("_fp_packed")
        stale = d.get("_fp_stale", frozenset())
        if packed is not None and not stale:
            return packed
        new = None
        if packed is not None and stale == {"state"}:
            new = self._repack_state(layout, packed)
        elif packed is not None and stale == {"hyper"}:
            new = self._repack_written_on_host(layout, packed)
        if new is None:
            new = self._pack_all(layout)
        d["_fp_packed"] = new
        d.pop("_fp_stale", None)
        return new

    def _repack_state(self, layout: _OptimizerLayout, packed: Any) -> Any:
        state = self._packed_state(layout)
        if state is None:
            return packed
        dtype = packed.dtype
        if isinstance(packed, np.ndarray) and isinstance(state, np.ndarray):
            return np.concatenate([packed[: layout.n_hyper], state.astype(dtype)])
        jnp = jax.numpy
        return jax.lax.dynamic_update_slice(
            jnp.asarray(packed), jnp.asarray(state, dtype), (layout.n_hyper,)
        )

    def _repack_written_on_host(self, layout: _OptimizerLayout, packed: Any) -> Any:
        """A host copy of ``packed`` with the new hyperparameter values, or None if one is an
        array or traced. Only the groups read since unflattening can hold new values; the
        others are still placeholders for what ``packed`` holds, and are not read (reading
        them would wait for the step that made ``packed``)."""
        if isinstance(packed, jax.core.Tracer):
            return None
        written = [
            (i, dict.__getitem__(g, k))
            for g, slots in self._slot_owners(layout)
            if g.lazy is None
            for k, i in slots.items()
        ]
        if not all(isinstance(v, _HOST_NUMBER) for _, v in written):
            return None
        new = np.array(packed)
        for i, v in written:
            new[i] = v
        return new

    def _pack_all(self, layout: _OptimizerLayout) -> Any:
        """The packed vector from the values: on the host (a NumPy leaf, which ``jit`` takes
        faster than a new device array) unless a value is a JAX array or traced."""
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        values = self._hyper_values(layout)
        state = self._packed_state(layout)
        if all(isinstance(v, _HOST_NUMBER) for v in values) and isinstance(
            state, np.ndarray | None
        ):
            packed = np.asarray(values, dtype).reshape(layout.n_hyper)
            if state is not None:
                packed = np.concatenate([packed, state.astype(dtype)])
            return packed
        jnp = jax.numpy
        parts = [jnp.reshape(jnp.asarray(v, dtype), (1,)) for v in values]
        if state is not None:
            parts.append(jnp.asarray(state, dtype))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)

    def _tree_flatten(self) -> tuple[Any, _OptimizerLayout]:
        tree = self.__dict__.get("_fp_tree")
        if tree is not None:  # never looked at since unflattening: nothing can have changed
            leaves, layout = tree
            return leaves, layout
        self._before_flatten()
        layout = self._layout()
        # The defaults' hyperparameters are leaves too (packed): two optimizers that differ
        # only in their lr share compiled code.
        leaves = [self._pack(layout)]
        leaves.extend(self._state_leaves(layout))
        return leaves, layout

    def _static_extras(self) -> Any:
        """Hashable structure a subclass adds to the pytree's auxiliary data."""
        return None

    @classmethod
    def _tree_unflatten(cls, layout: _OptimizerLayout, leaves: Any) -> Optimizer:
        opt = object.__new__(cls)
        opt.__dict__["_fp_tree"] = (leaves, layout)
        return opt

    def _materialize(self) -> None:
        """Build the groups and the state of an optimizer made by unflattening."""
        d = self.__dict__
        leaves, layout = d.pop("_fp_tree")
        leaves = list(leaves)
        packed = leaves[0]
        defaults = ParamGroup(layout.defaults)
        defaults.lazy = (packed, layout.default_slots, layout.default_kinds)
        defaults.kinds = layout.default_kinds
        defaults.packed_keys = frozenset(layout.default_slots)
        groups = []
        for template, params_key, slots, kinds in layout.templates:
            group = ParamGroup(template)
            group.params_key = params_key
            group.kinds = kinds
            group.packed_keys = frozenset(slots)
            if slots:
                group.lazy = (packed, slots, kinds)
            groups.append(group)
        d["defaults"] = defaults
        d["param_groups"] = groups
        d["_fp_packed"] = packed
        self._set_state(layout, packed, leaves[1:])
        self._remember_layout(layout)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name missing from __dict__: an unflattened optimizer's fields.
        if "_fp_tree" not in self.__dict__ or name.startswith("__"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        self._materialize()
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_fp_tree" in self.__dict__:
            self._materialize()
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if "_fp_tree" in self.__dict__:
            self._materialize()
        object.__delattr__(self, name)

    def __getstate__(self) -> dict[str, Any]:
        if "_fp_tree" in self.__dict__:
            self._materialize()
        # Weak references to the models cannot be pickled; places are enough to step.
        return {k: v for k, v in self.__dict__.items() if k != "_fp_roots"}

    def __deepcopy__(self, memo: dict[int, Any]) -> Optimizer:
        """An independent optimizer for the same parameters.

        Unlike torch's (which copies the parameter tensors it points at, so the copy no longer
        steps the model), the copy keeps each parameter's identity: it steps the same model.
        """
        leaves, layout = self._tree_flatten()
        new = type(self)._tree_unflatten(layout, [copy.deepcopy(x, memo) for x in leaves])
        for group in new.param_groups:  # options such as 'param_names' must not be shared
            for key, value in group.items():
                if key != "params" and isinstance(value, list | dict):
                    dict.__setitem__(group, key, copy.deepcopy(value, memo))
        return new

    # ---------------------------------------------------------------- stepping

    def _slots(self) -> dict[int, tuple[int, int]]:
        """uid → (group index, index in group)."""
        return {
            p.uid: (gi, pi)
            for gi, g in enumerate(self.param_groups)
            for pi, p in enumerate(g["params"])
        }

    def _match_models(self, models: list[Any]) -> list[Any]:
        """The module of ``models`` standing for each of the optimizer's roots (None if absent).

        Positional when the counts agree (``step((gen, disc), ...)`` in the order the
        optimizer met them); otherwise, outside a transformation, by object identity.
        """
        n_roots = 1 + max(
            (p._place[0] for g in self.param_groups for p in g["params"] if p._place), default=0
        )
        if len(models) == n_roots:
            return list(models)
        refs = self.__dict__.get("_fp_roots") or []
        by_identity = []
        for ref in refs:
            root = ref()
            by_identity.append(next((m for m in models if m is root), None))
        if any(m is not None for m in by_identity):
            return by_identity
        return [*models[:n_roots], *([None] * (n_roots - len(models)))]

    def step(self, model: Any, grads: Any) -> tuple[Any, Optimizer]:
        """One optimization step: returns ``(new_model, new_optimizer)``.

        Arguments:
            model: the Module whose parameters built this optimizer (any copy of it, e.g. the
                one a jitted step returned, or another model of the same architecture), or a
                tuple/list of such modules when the parameters came from several, in the order
                the optimizer met them.
            grads: gradients with the structure of ``model`` (from ``jax.grad`` or
                ``fparam.grad``). A ``None`` gradient skips its parameter entirely, as torch
                skips ``p.grad is None``; frozen parameters (``requires_grad=False`` in the
                model) are never touched.

        Returns:
            The updated model (same structure) and the optimizer with its new state.
        """
        self._place_pending()
        slots = self._slots()
        models = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, Module))
        grad_models = jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, Module) or x is None)
        if len(models) != len(grad_models):
            raise ValueError(
                f"grads do not have the structure of the model: {len(models)} modules vs "
                f"{len(grad_models)} gradient entries"
            )
        grad_of = {id(m): g for m, g in zip(models, grad_models)}
        roots = self._match_models([m for m in models if isinstance(m, Module)])
        updates: dict[int, tuple[Any, Any]] = {}
        new_slot: dict[tuple[int, str], int] = {}  # (id(module), name) -> uid
        missing: list[str] = []
        for group in self.param_groups:
            for handle in group["params"]:
                place = handle._place
                root = roots[place[0]] if place is not None else None
                found = None if root is None else _locate(root, grad_of[id(root)], place[1])
                if found is None or not _same_kind(found[0].__dict__[found[2]], handle):
                    missing.append(place[1] if place is not None else "<not in any module>")
                    continue
                module, grad_module, name = found
                requires_grad = dict(module.__dict__["_fp_layout"].params)[name]
                value, grad = module.__dict__[name], grad_module.__dict__[name]
                if requires_grad and value is not None and grad is not None:
                    updates[handle.uid] = (value, grad)
                    new_slot[(id(module), name)] = handle.uid
        if missing:
            shown = ", ".join(f"'{k}'" for k in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"{len(missing)} of this optimizer's {len(slots)} parameters are not in the model "
                f"passed to step() ({shown}): pass the model (or a tuple of the models, in the "
                "order the optimizer met them) whose parameters built the optimizer, or a copy "
                "of it; an optimizer finds its parameters by their state_dict keys, shapes "
                "and dtypes."
            )
        new_opt, new_values = self._update(updates, slots)

        def rebuild(module: Module) -> Module:
            d = module.__dict__
            layout = d["_fp_layout"]
            key = id(module)
            children: list[Any] = []
            for n, _ in layout.params:
                uid = new_slot.get((key, n))
                children.append(d[n] if uid is None else new_values.get(uid, d[n]))
            children += [d[n] for n, _ in layout.buffers]
            children += [None if d[n] is None else rebuild(d[n]) for n in layout.modules]
            return _unflatten(layout, children)

        new_model = jax.tree.map(
            lambda m: rebuild(m) if isinstance(m, Module) else m,
            model,
            is_leaf=lambda x: isinstance(x, Module),
        )
        return new_model, new_opt

    def _update(
        self, updates: dict[int, tuple[Any, Any]], slots: dict[int, tuple[int, int]]
    ) -> tuple[Optimizer, dict[int, Any]]:
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op kept for ported training loops: fparam gradients are values, never stored."""

    # ---------------------------------------------------------------- repr

    def __repr__(self) -> str:
        text = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += "\n"
            text += f"Parameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    text += f"    {key}: {_scalar(group[key])}\n"
        return text + ")"


def _place_key(handle: Parameter) -> Any:
    """A handle's place as structure; a parameter not in a module yet is known by its uid."""
    return handle._place if handle._place is not None else ("unplaced", handle.uid)


def _same_kind(value: Any, handle: Parameter) -> bool:
    return (
        value is not None
        and tuple(value.shape) == tuple(handle.shape)
        and value.dtype == handle.dtype
    )


def _locate(module: Module, grad_module: Any, key: str) -> tuple[Module, Module, str] | None:
    """The module holding parameter ``key`` under ``module``, its gradient counterpart and the
    name; None when ``module`` has no parameter there. A gradient tree that does not follow
    the model along the way is an error."""
    *path, name = key.split(".")
    where = ""
    for step in [*path, None]:
        d = module.__dict__
        layout = d["_fp_layout"]
        if not isinstance(grad_module, Module) or (
            grad_module.__dict__["_fp_layout"].leaf_names != layout.leaf_names
        ):
            raise ValueError(
                f"grads do not have the structure of the model at '{where or '<root>'}': "
                f"expected a {type(module).__name__} with fields {layout.leaf_names}, got "
                f"{type(grad_module).__name__}"
            )
        if step is None:
            return (module, grad_module, name) if layout.kind(name) == "param" else None
        if step not in layout.modules or d[step] is None:
            return None
        module, grad_module = d[step], grad_module.__dict__[step]
        where = _join(where, step)
    return None  # pragma: no cover - the loop returns


def _shape_handle(uid: int, requires_grad: bool, shape: Any, dtype: Any) -> Parameter:
    return Parameter._handle(jax.ShapeDtypeStruct(shape, dtype), requires_grad, uid)


def _scalar(value: Any) -> Any:
    """A hyperparameter leaf as a Python number for state_dict / repr.

    A float32 leaf reads back as the shortest decimal that rounds to it (0.1, not
    0.10000000149011612), which is the number the user wrote.
    """
    if isinstance(value, jax.Array | np.ndarray | np.generic) and not isinstance(
        value, jax.core.Tracer
    ):
        array = np.asarray(value)
        if array.ndim != 0:
            return value
        if array.dtype.kind == "f":
            return float(str(array))
        return array.item()
    return value
