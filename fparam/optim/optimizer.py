"""The optimizer base: torch's parameter groups, as a JAX pytree.

An optimizer is a value. ``opt.step(model, grads)`` returns ``(new_model, new_opt)`` and never
mutates its arguments, so it works inside ``jax.jit`` and ``jax.lax.scan``. Hyperparameters are
pytree leaves (changing ``opt.param_groups[0]['lr']``, even to a JAX array, never recompiles;
neither does ``load_state_dict``); which parameters belong to which group is static.

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
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import numpy as np

from fparam import _convert
from fparam._module import (
    Module,
    Parameter,
    _is_tracer,
    _join,
    _roots,
    _torch_to_numpy,
    _typename,
    _unflatten,
)
from fparam.optim._checks import check_optimizer_state
from fparam.optim._errors import (
    BAD_HYPERPARAMETER,
    BAD_HYPERPARAMETER_SIZE,
    BAD_HYPERPARAMETER_TUPLE,
    GRAD_DTYPE,
    GRAD_NOT_ARRAY,
    GRAD_SHAPE,
    LOAD_BAD_ENTRY,
    LOAD_INSIDE_TRACE,
    SWAPPED_ARGUMENTS,
)

__all__ = ["Optimizer"]


# How a packed hyperparameter reads back outside a trace: code 0 is a Python number; code i > 0
# is a 0-d JAX array of _KIND_DTYPES[i] (torch's tensor lr). The codes travel in the packed
# vector next to the values, not in the pytree structure: a new kind of value is data, so
# ``group['lr'] = jnp.asarray(0.01)`` never retraces a jitted step.
_KIND_DTYPES: tuple[Any, ...] = (
    None,
    *(
        np.dtype(name)
        for name in (
            "float32", "float64", "float16", "int8", "int16", "int32", "int64",
            "uint8", "uint16", "uint32", "uint64", "bool",
        )
    ),
    np.dtype(jax.numpy.bfloat16),
)  # fmt: skip
_KIND_CODES = {dtype: code for code, dtype in enumerate(_KIND_DTYPES) if dtype is not None}


def _kind_code(value: Any) -> int:
    """The read-back code of ``value`` (see ``_KIND_DTYPES``).

    A concrete JAX array the user gave comes back as a 0-d array of its own dtype; a Python or
    NumPy number, or a value traced under ``jit`` (a schedule's), comes back as a number.
    """
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        return _KIND_CODES[np.dtype(value.dtype)]
    return 0


def _check_hyperparameter(name: str, value: Any, where: str, arity: int | None = None) -> Any:
    """``value`` if it can be packed as hyperparameter ``name``, else a clear error.

    A number (not complex) or a 1-element real array (NumPy, JAX, traced, or a torch tensor,
    which becomes a JAX array, read without importing torch). ``where`` names it in errors
    (``lr``, ``param_groups[1]['lr']``). Signs are not checked here: torch checks them only
    in the constructor. With ``arity`` (Adam's ``betas``: 2), a tuple or list of that many
    such values, returned as a tuple.
    """
    if arity is not None:
        if not isinstance(value, tuple | list) or len(value) != arity:
            got = f"{_typename(value)} {value!r}"[:200]
            raise TypeError(BAD_HYPERPARAMETER_TUPLE.format(where=where, n=arity, got=got))
        return tuple(
            _check_hyperparameter(f"{name}[{i}]", v, f"{where}[{i}]") for i, v in enumerate(value)
        )
    if isinstance(value, bool | int | float) and not isinstance(value, complex):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = jax.numpy.array(_torch_to_numpy(value), copy=True)
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        dtype = np.dtype(value.dtype)
        if dtype in _KIND_CODES:  # the real dtypes (bfloat16's kind is 'V')
            if value.size != 1:
                raise ValueError(
                    BAD_HYPERPARAMETER_SIZE.format(name=name, where=where, shape=tuple(value.shape))
                )
            # A NumPy 1-element array packs on the host next to Python numbers: make it 0-d.
            return value if isinstance(value, jax.Array) else np.asarray(value).reshape(())
        got = f"an array of dtype {dtype}"
    else:
        got = f"{_typename(value)} {value!r}"[:200]
    raise TypeError(BAD_HYPERPARAMETER.format(where=where, got=got))


class _Lazy:
    """The placeholder of a packed hyperparameter not read yet (see ``ParamGroup``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<packed>"


_LAZY = _Lazy()
_HOST_NUMBER = (int, float, np.ndarray, np.generic)


Slot = int | tuple[int, ...]  # where a packed value is; a tuple for a tuple option (betas)


def _positions(slot: Slot) -> tuple[int, ...]:
    return (slot,) if isinstance(slot, int) else slot


def _read_packed(
    packed: Any, slots: dict[str, Slot], n_hyper: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The values of ``slots`` in the packed vector, each read back as its code says, and
    (inside a trace) their residuals (see ``_residual``).

    Inside a trace each is an index of the traced vector; outside, one device-to-host copy
    and Python numbers that print as the user wrote them (the shortest decimal), or 0-d arrays
    of the dtype the user gave.
    """
    if isinstance(packed, jax.core.Tracer):

        def at(slot: Slot, offset: int) -> Any:
            if isinstance(slot, int):
                return packed[offset + slot]
            return tuple(packed[offset + i] for i in slot)

        values = {k: at(i, 0) for k, i in slots.items()}
        return values, {k: at(i, 2 * n_hyper) for k, i in slots.items()}
    host = np.asarray(packed)
    listed = host.tolist()

    def read(i: int) -> Any:
        code = int(listed[n_hyper + i])
        if code == 0:
            return _shortest(listed[i], host.dtype.char)
        return jax.numpy.asarray(host[i], _KIND_DTYPES[code])

    return {k: read(i) if isinstance(i, int) else tuple(map(read, i)) for k, i in slots.items()}, {}


def _residual(value: Any, dtype: Any) -> float:
    """What packing a host number in ``dtype`` loses: ``value - dtype(value)`` (0 for arrays).

    Under ``jit`` a hyperparameter is read from the packed float32 vector: beta2 = 0.999 is
    0.99900001287. torch computes ``1 - beta2`` in double (0.001, then float32 in the kernel);
    1 minus the float32 value is 0.00099998713, 1.3e-5 off. ``one_minus`` adds the residual
    back, so a traced step computes torch's ``1 - beta`` to float32 rounding.
    """
    if isinstance(value, _HOST_NUMBER) and not isinstance(value, bool):
        exact = np.float64(np.asarray(value, np.float64))
        return float(exact - np.float64(np.asarray(exact, dtype)))
    return 0.0


def one_minus(group: Any, key: str, index: int | None = None) -> Any:
    """``1 - group[key]`` (``group[key][index]`` for a tuple option), as torch computes it:
    in double from the number the user gave, also inside a jitted step (see ``_residual``)."""
    value = group[key]
    residual = group.residuals.get(key)
    if index is not None:
        value = value[index]
        residual = None if residual is None else residual[index]
    if residual is None:
        return 1 - value
    return (1 - value) - residual


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
    (``group['lr'] = 0.01``, or a JAX array: torch's tensor lr) changes the next step without
    recompiling. A new value of a packed hyperparameter marks the group ``values_changed``
    (the optimizer packs again); any other change marks it ``dirty`` (the optimizer also
    recomputes its pytree structure).

    Setting a value on the optimizer that a jitted step *received* (a traced copy) changes that
    copy only: it is kept if the step returns the optimizer (``scheduler.apply(opt, epoch)``
    does exactly this), and lost otherwise, as any change to a traced value is.

    The hyperparameters travel packed in one vector leaf; a group rebuilt from the pytree
    reads them from that vector on first access (``lazy``), all at once.
    """

    params_key: _ParamsKey | None = None
    dirty: bool = False
    values_changed: bool = False
    lazy: tuple[Any, dict[str, Slot], int] | None = None
    packed_keys: frozenset[str] = frozenset()  # the keys the optimizer's structure packs
    written: frozenset[str] = frozenset()  # the keys set on this group object (not read back)
    # The optimizer's branch outcomes for this group during a step (see Optimizer._facts).
    facts: dict[str, bool | None] = {}  # noqa: RUF012 - replaced, never mutated
    # Inside a trace: what packing lost of each value read from the packed vector (one_minus).
    residuals: dict[str, Any] = {}  # noqa: RUF012 - replaced, never mutated

    def _fill(self) -> None:
        lazy = self.lazy
        if lazy is not None:
            self.lazy = None
            values, self.residuals = _read_packed(*lazy)
            dict.update(self, values)

    def _changed(self, keys: Any) -> None:
        self.dirty = True

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
        self.written = self.written | {key}
        if key in self.residuals:  # the new value is what the user wrote: nothing lost
            self.residuals = {k: v for k, v in self.residuals.items() if k != key}
        if key in self.packed_keys:
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
        self.written = self.written | set(new)
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
        self.residuals = {}
        super().clear()
        self.dirty = True

    def copy_clean(self) -> ParamGroup:
        """A copy for a new optimizer value, with the same cached identity and dirtiness."""
        copy = ParamGroup(self)  # placeholders included: the copy reads the same vector
        copy.params_key = self.params_key
        copy.dirty = self.dirty
        copy.values_changed = self.values_changed
        copy.packed_keys = self.packed_keys
        copy.lazy = self.lazy
        copy.written = self.written
        copy.residuals = self.residuals
        return copy


class _OptimizerLayout:
    """An optimizer's pytree structure: hashed once, compared by identity first.

    The leaves are one vector packing the hyperparameters (the defaults', then each group's:
    ``n_hyper`` values), then how each reads back (``n_hyper`` codes, see ``_KIND_DTYPES``),
    then what packing lost of each (``n_hyper`` residuals, see ``_residual``),
    then the subclass's small per-parameter state from ``state_start`` on (e.g. SGD's
    "momentum buffer initialised" flags), then the subclass's array state (e.g. the buffers).
    One vector, because every leaf is an input and an output of a jitted step, and each costs
    dispatch time (benchmarks/README.md). ``templates`` are the groups as dicts with every
    static option in torch's key order and a placeholder where a packed value goes;
    unflattening copies them. ``slots`` say where each packed value is.
    """

    __slots__ = (
        "cache",
        "default_slots",
        "defaults",
        "extras",
        "facts",
        "hash",
        "key",
        "n_hyper",
        "n_packed",
        "placement",
        "state_start",
        "templates",
    )

    def __init__(
        self,
        cls: type,
        groups: list[ParamGroup],
        defaults: ParamGroup,
        extras: Any,
        facts: tuple[Any, ...] = (),
        placement: Any = None,
    ):
        hyper = cls.hyperparameters  # type: ignore[attr-defined]
        arity = cls.tuple_hyperparameters  # type: ignore[attr-defined]
        position = 0

        def take(key: str) -> Slot:
            nonlocal position
            n = arity.get(key)
            slot: Slot = position if n is None else tuple(range(position, position + n))
            position += 1 if n is None else n
            return slot

        statics = []
        self.templates = []
        self.defaults = {}
        self.default_slots = {}
        for k in dict.keys(defaults):
            if k in hyper:
                self.defaults[k] = _LAZY
                self.default_slots[k] = take(k)
            else:
                self.defaults[k] = dict.__getitem__(defaults, k)
        for g in groups:
            params_key = _ParamsKey.of(g)
            items: list[tuple[str, Any]] = []
            template: dict[str, Any] = {}
            slots: dict[str, Slot] = {}
            for k in dict.keys(g):
                if k in hyper:
                    items.append((k, None))
                    template[k] = _LAZY
                    slots[k] = take(k)
                elif k == "params":
                    items.append((k, params_key))
                    template[k] = params_key.handles
                else:
                    v = dict.__getitem__(g, k)
                    items.append((k, tuple(v) if isinstance(v, list) else v))
                    template[k] = v
            statics.append(tuple(items))
            self.templates.append((template, params_key, slots))
        self.n_hyper = position
        self.state_start = 3 * position  # values, read-back codes, residuals
        self.n_packed = self.state_start + cls._packed_state_size(groups, extras)  # type: ignore[attr-defined]
        self.extras = extras
        self.facts = facts
        # None unless a parameter spans several devices or the state has its own sharding
        # (see ``Optimizer._placement_key``): single-device programs keep their structure.
        self.placement = placement
        self.key = (
            cls,
            tuple(statics),
            tuple((k, None if v is _LAZY else v) for k, v in self.defaults.items()),
            extras,
            facts,
            placement,
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
    and the state hooks (``_packed_state``, ``_state_leaves``, ``_set_state``,
    ``_loaded_state``).

    What never retraces a jitted step: a new hyperparameter value, of any kind (a Python
    number, a NumPy number, a JAX array: how each reads back travels in the packed leaf),
    and ``load_state_dict`` of a state with the same options and the same momentum groups
    (the optimizer's own, or torch's from a run whose parameters stepped together). What does:
    a new static option (``nesterov``, a new key), a group given momentum buffers for the
    first time, and, once, a step or a loaded state in which some parameters of a group have
    stepped and others not (their per-parameter scalars then differ: see
    ``sgd.initial_classes``).

    Inside a trace: the optimizer a jitted step receives is a traced copy. ``step`` returns a
    new one; setting ``opt.param_groups[i]['lr']`` on the copy is kept exactly when the step
    returns that optimizer (``scheduler.apply(opt, epoch)`` is the functional spelling), and
    is lost otherwise, like any change to a traced value (fparam cannot tell whether it will
    be returned, so it does not refuse it). ``load_state_dict`` and ``scheduler.step`` refuse
    to run there.

    Leaves have names (``jax.tree_util.tree_flatten_with_path``): ``.hyperparameters`` (the
    packed vector), then ``.state['<state_dict key>']['<torch's state name>']``
    (``.state['0.weight']['exp_avg']``). Placement: state is created with its parameter's
    sharding; when parameters span several devices, or after
    ``fparam.distributed.shard_optimizer_state`` (ZeRO), the optimizer keeps every leaf where
    it belongs through steps, ``load_state_dict``, new values and ``copy.deepcopy`` (see
    "placement" below). The shardings recorded are those the parameters had when the
    optimizer was built.
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()
    # Hyperparameters that are tuples of numbers, with their length (Adam's betas: 2).
    tuple_hyperparameters: ClassVar[dict[str, int]] = {}
    # Hyperparameters torch tests in Python (``if weight_decay != 0:``; lerp's ``|weight| <
    # 0.5``), with the test. Their values stay leaves, but each test's outcome is structure
    # (``_facts``), so the compiled update has torch's branch instead of a select in every
    # parameter's update.
    branch_tests: ClassVar[dict[str, Callable[[Any], bool]]] = {}

    defaults: ParamGroup
    param_groups: list[ParamGroup]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Keys only for the with-path flatten (``tree_flatten_with_path``, ``tree_map_with_path``,
        # checkpointers); ``jit``'s keyless flatten stays ``_tree_flatten``.
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten
        )

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
                item = _shape_handle(
                    item.uid, item.requires_grad, item.shape, item.dtype, _placement(item.data)
                )
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
        for key in self.hyperparameters:
            if key in group:  # numbers only: a string lr would fail at the first step
                self._checked_value(group, key, len(self.param_groups))
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
                    if values_changed and self.branch_tests and self._facts() != layout.facts:
                        pass  # a value crossed zero: a new structure (below)
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
        facts = self._facts()
        layout = _OptimizerLayout(
            type(self), groups, defaults, self._static_extras(), facts, self._placement_key()
        )
        d["_fp_facts"] = facts
        defaults.packed_keys = frozenset(layout.default_slots)
        for g, (_, _, slots) in zip(groups, layout.templates):
            g.packed_keys = frozenset(slots)
        for g in (defaults, *groups):
            g.dirty = g.values_changed = False
        self._remember_layout(layout)
        return layout

    def _facts(self) -> tuple[tuple[bool | None, ...], ...]:
        """Per group, for each of ``branch_tests``: its outcome on the value (True, False), or
        None when only the running program knows (a JAX array, or a value set inside a trace:
        the update then selects at run time, as before).

        A host number or a JAX array set on the host decides; a value not set since it came out
        of the packed vector (a placeholder, or a traced read) keeps the outcome it was packed
        with, so a jitted loop never waits for the device here. A new value whose outcome
        differs (weight decay from 0 to 0.1) is a new structure (one new trace); any other new
        value is not.
        """
        tests = self.branch_tests
        if not tests:
            return ()
        keys = tuple(tests)
        previous = self.__dict__.get("_fp_facts", ())
        facts = []
        for gi, group in enumerate(self.param_groups):
            old = previous[gi] if gi < len(previous) else (None,) * len(keys)
            row: list[bool | None] = []
            for j, key in enumerate(keys):
                value = dict.get(group, key, _LAZY)
                parts = value if isinstance(value, tuple) else (value,)
                if all(isinstance(v, _HOST_NUMBER) for v in parts) or (
                    key in group.written and not any(map(_is_tracer, parts))
                ):  # a number, or a JAX array the user set (one scalar copy to the host)
                    row.append(bool(tests[key](value)))
                elif value is _LAZY or key not in group.written:
                    row.append(old[j])
                else:
                    row.append(None)
            facts.append(tuple(row))
        return tuple(facts)

    def _remember_layout(self, layout: _OptimizerLayout) -> None:
        self.__dict__["_fp_layout"] = (layout, tuple(map(id, self.param_groups)))

    def _remember_stepped_layout(self, layout: _OptimizerLayout) -> None:
        """After a step: remember ``layout``, with the subclass's new state structure if the
        step changed it (a class of parameters split, see ``sgd.initial_classes``). The
        hyperparameters keep their places, so the packed vector keeps them as they are (with
        how each reads back and what packing lost of each); only its state part is redone."""
        extras, facts = self._static_extras(), self._facts()
        if extras != layout.extras or facts != layout.facts:
            layout = _OptimizerLayout(
                type(self), self.param_groups, self.defaults, extras, facts, layout.placement
            )
        self.__dict__["_fp_facts"] = facts
        self._remember_layout(layout)

    def _slot_owners(self, layout: _OptimizerLayout) -> list[tuple[ParamGroup, dict[str, Slot]]]:
        """The defaults and each group, with where their hyperparameters are packed."""
        owners = [(self.defaults, layout.default_slots)]
        owners.extend((g, t[2]) for g, t in zip(self.param_groups, layout.templates))
        return owners

    def _hyper_values(self, layout: _OptimizerLayout) -> list[Any]:
        """Every packed hyperparameter's value, in slot order, checked (a group's value may
        have been set to anything since: ``group['lr'] = 'x'`` fails here, named)."""
        values: list[Any] = []
        for owner, (g, slots) in enumerate(self._slot_owners(layout)):
            for k, slot in slots.items():
                value = self._checked_value(g, k, owner - 1)
                values.extend((value,) if isinstance(slot, int) else value)
        return values

    def _checked_value(self, group: ParamGroup, key: str, group_index: int) -> Any:
        where = f"defaults[{key!r}]" if group_index < 0 else f"param_groups[{group_index}][{key!r}]"
        value = _check_hyperparameter(key, group[key], where, self.tuple_hyperparameters.get(key))
        if value is not dict.__getitem__(group, key):  # a torch tensor, now a JAX array
            dict.__setitem__(group, key, value)
        return value

    def _pack(self, layout: _OptimizerLayout) -> Any:
        """The packed vector, kept on the optimizer until a value or the state changes.

        When only the state changed (a step), the previous vector's hyperparameters are kept;
        when only hyperparameters changed (``group['lr'] = x``), its state part is.

        Always a JAX array: a jitted step returns one, so a NumPy vector on the first call
        would give ``jit`` a second signature (a second cache entry) on the second call.
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
        if isinstance(new, np.ndarray):
            rule = self.__dict__.get("_fp_state_sharding")
            placement = canonical_sharding(
                rule.replicated()
                if rule is not None
                else _replicated(p for g in self.param_groups for p in g["params"]),
                1,
            )
            new = jax.device_put(new, placement) if placement is not None else jax.device_put(new)
        d["_fp_packed"] = new
        d.pop("_fp_stale", None)
        return new

    def _repack_state(self, layout: _OptimizerLayout, packed: Any) -> Any:
        state = self._packed_state(layout)
        if state is None:
            return packed
        dtype = packed.dtype
        if isinstance(packed, np.ndarray) and isinstance(state, np.ndarray):
            return np.concatenate([packed[: layout.state_start], state.astype(dtype)])
        jnp = jax.numpy
        if packed.shape[0] != layout.n_packed:  # the state's structure changed
            return jnp.concatenate([packed[: layout.state_start], jnp.asarray(state, dtype)])
        return jax.lax.dynamic_update_slice(
            jnp.asarray(packed), jnp.asarray(state, dtype), (layout.state_start,)
        )

    def _repack_written_on_host(self, layout: _OptimizerLayout, packed: Any) -> Any:
        """A host copy of ``packed`` with the new hyperparameter values, or None if one is an
        array or traced. Only the groups read since unflattening can hold new values; the
        others are still placeholders for what ``packed`` holds, and are not read (reading
        them would wait for the step that made ``packed``)."""
        if isinstance(packed, jax.core.Tracer):
            return None
        written: list[tuple[int, Any]] = []
        for owner, (g, slots) in enumerate(self._slot_owners(layout)):
            if g.lazy is None:
                for k, slot in slots.items():
                    value = self._checked_value(g, k, owner - 1)
                    values = (value,) if isinstance(slot, int) else value
                    written.extend(zip(_positions(slot), values))
        if not all(isinstance(v, _HOST_NUMBER) for _, v in written):
            return None
        new = np.array(packed)
        n = layout.n_hyper
        for i, v in written:
            new[i] = v
            new[n + i] = 0  # a host number reads back as a number
            new[2 * n + i] = _residual(v, new.dtype)
        return new

    def _pack_all(self, layout: _OptimizerLayout) -> Any:
        """The packed vector from the values (built on the host unless a value is a JAX
        array or traced)."""
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        values = self._hyper_values(layout)
        codes = np.asarray([_kind_code(v) for v in values], dtype).reshape(layout.n_hyper)
        residuals = np.asarray([_residual(v, dtype) for v in values], dtype)
        residuals = residuals.reshape(layout.n_hyper)
        state = self._packed_state(layout)
        if all(isinstance(v, _HOST_NUMBER) for v in values) and isinstance(
            state, np.ndarray | None
        ):
            packed = np.asarray(values, dtype).reshape(layout.n_hyper)
            host = [packed, codes, residuals]
            if state is not None:
                host.append(state.astype(dtype))
            return np.concatenate(host)
        jnp = jax.numpy
        parts = [jnp.reshape(jnp.asarray(v, dtype), (1,)) for v in values]
        parts.append(jnp.asarray(codes))
        parts.append(jnp.asarray(residuals))
        if state is not None:
            parts.append(jnp.asarray(state, dtype))
        return jnp.concatenate(parts)

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
        if layout.placement is not None:
            leaves = self._conform(layout, leaves)
        return leaves, layout

    def _static_extras(self) -> Any:
        """Hashable structure a subclass adds to the pytree's auxiliary data."""
        return None

    def _state_owners(
        self, layout: _OptimizerLayout, leaves: list[Any]
    ) -> list[tuple[Parameter | None, str]]:
        """For each state leaf (``_state_leaves`` order; ``leaves`` are those leaves): the
        parameter handle it belongs to and its name under that parameter (``['exp_avg']``), or
        ``None`` and its name on the optimizer (``opt_state[0].count``). Read from ``layout``
        (and the leaves' shapes) only: it runs on an optimizer that was never materialised."""
        return []

    def _tree_flatten_with_keys(self) -> tuple[list[tuple[Any, Any]], _OptimizerLayout]:
        """The flatten with tree paths that say what each leaf is: ``.hyperparameters`` (the
        packed vector: hyperparameters and per-parameter scalars such as step counts), then
        ``.state['0.weight']['exp_avg']`` (the parameter's ``state_dict`` key and torch's state
        name). The names are computed once per structure."""
        leaves, layout = self._tree_flatten()
        keys = layout.cache.get("leaf_keys")
        if keys is None:
            keys = layout.cache["leaf_keys"] = _leaf_keys(
                layout, self._state_owners(layout, list(leaves[1:]))
            )
        return list(zip(keys, leaves)), layout

    # ---------------------------------------------------------------- placement
    #
    # State is born with its parameter's sharding (``zeros_like_param``, ``loaded_buffer``).
    # When a parameter spans several devices, or the state has a sharding of its own
    # (``fparam.distributed.shard_optimizer_state``: ZeRO), the layout records where every
    # leaf belongs (``placement``, static and hashable), and the optimizer keeps it: concrete
    # state is moved there when it is flattened (``_conform``), and a step constrains its new
    # parameters and state there (``_keep_placement``), so that a jitted step returns them as
    # it received them instead of as the SPMD partitioner's propagation would choose.

    def _placement_key(self) -> Any:
        """``(state rule or None, each parameter's multi-device sharding or None)``, or None
        when there is nothing to keep (one device: the programs are exactly as before)."""
        rule = self.__dict__.get("_fp_state_sharding")
        shardings = tuple(
            _spread(getattr(p.data, "sharding", None))
            for g in self.param_groups
            for p in g["params"]
        )
        if rule is None and all(s is None for s in shardings):
            return None
        return (rule, shardings)

    def _targets(self, layout: _OptimizerLayout, leaves: list[Any]) -> list[Any]:
        """Where each leaf belongs (None: wherever it is), once per structure."""
        targets = layout.cache.get("targets")
        if targets is not None:
            return targets  # type: ignore[no-any-return]
        rule, shardings = layout.placement
        handles = [p for _, key, _ in layout.templates for p in key.handles]
        of = {p.uid: s for p, s in zip(handles, shardings)}
        mesh = (
            rule.mesh
            if rule is not None
            else next(
                (s.mesh for s in shardings if isinstance(s, jax.sharding.NamedSharding)), None
            )
        )
        replicated = (
            None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        )
        targets = [canonical_sharding(replicated, 1)]
        for (handle, _), leaf in zip(self._state_owners(layout, leaves[1:]), leaves[1:]):
            shape = tuple(leaf.shape)
            param = of.get(handle.uid) if handle is not None else None
            if rule is not None:
                target = rule.state_sharding(shape, param)
            elif handle is not None and param is not None and shape == tuple(handle.shape):
                target = param
            else:
                target = replicated if shape == () else None
            targets.append(canonical_sharding(target, len(shape)))
        layout.cache["targets"] = targets
        return targets

    def _param_targets(self, layout: _OptimizerLayout) -> dict[int, Any]:
        """Where each parameter's new value belongs: its own sharding (with a state rule, a
        parameter not placed on several devices is replicated over the rule's mesh)."""
        targets = layout.cache.get("param_targets")
        if targets is None:
            rule, shardings = layout.placement
            handles = [p for _, key, _ in layout.templates for p in key.handles]
            targets = layout.cache["param_targets"] = {
                p.uid: canonical_sharding(
                    s if s is not None or rule is None else rule.replicated(), len(p.shape)
                )
                for p, s in zip(handles, shardings)
            }
        return targets  # type: ignore[no-any-return]

    def _conform(self, layout: _OptimizerLayout, leaves: list[Any]) -> list[Any]:
        """Concrete leaves moved where ``layout.placement`` says (and kept there)."""
        targets = self._targets(layout, leaves)
        moved = False
        new = list(leaves)
        for i, (leaf, target) in enumerate(zip(leaves, targets)):
            if (
                target is not None
                and isinstance(leaf, jax.Array)
                and not _is_tracer(leaf)
                and not leaf.sharding.is_equivalent_to(target, leaf.ndim)
            ):
                new[i] = _convert.put(leaf, target)
                moved = True
        if moved:
            self._set_state(layout, new[0], new[1:])
            self.__dict__["_fp_packed"] = new[0]
        return new

    def _keep_placement(self, placement: Any, new_values: dict[int, Any]) -> dict[int, Any]:
        """After ``_update``: the new state (in place) and the new parameter values constrained
        to where they belong; returns the new values."""
        leaves, layout = self._tree_flatten()
        targets = self._targets(layout, leaves)
        leaves = [x if t is None else _constrain(x, t) for x, t in zip(leaves, targets)]
        self._set_state(layout, leaves[0], leaves[1:])
        self.__dict__["_fp_packed"] = leaves[0]
        self.__dict__.pop("_fp_stale", None)
        params = self._param_targets(layout)
        return {
            uid: v if params.get(uid) is None else _constrain(v, params[uid])
            for uid, v in new_values.items()
        }

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
        defaults.lazy = (packed, layout.default_slots, layout.n_hyper)
        defaults.packed_keys = frozenset(layout.default_slots)
        groups = []
        for template, params_key, slots in layout.templates:
            group = ParamGroup(template)
            group.params_key = params_key
            group.packed_keys = frozenset(slots)
            if slots:
                group.lazy = (packed, slots, layout.n_hyper)
            groups.append(group)
        d["defaults"] = defaults
        d["param_groups"] = groups
        d["_fp_packed"] = packed
        self._set_state(layout, packed, leaves[1:])
        d["_fp_facts"] = layout.facts
        if layout.placement is not None and layout.placement[0] is not None:
            d["_fp_state_sharding"] = layout.placement[0]
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

        Checked when the step is traced (free at run time): each gradient has exactly its
        parameter's shape and dtype (a broadcasting or an integer gradient raises, naming the
        parameter's key), and a swapped call, ``opt.step(grads, model)``, raises where it can
        be seen: when the "model" has ``None`` where the "grads" have an array (the gradients
        of ``fparam.grad`` / ``fparam.value_and_grad`` are ``None`` at every frozen parameter,
        buffer and empty slot) or holds ``jax.grad``'s ``float0`` gradients of integer leaves.
        Gradients from ``jax.grad`` of a model with only trainable float leaves have the
        model's exact structure, shapes and dtypes: that swap cannot be told apart.
        """
        self._check_not_swapped(model, grads)
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
                    self._check_gradient(place[1], value, grad)  # type: ignore[index]
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
        placement = new_opt._layout().placement
        if placement is not None:
            new_values = new_opt._keep_placement(placement, new_values)

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

    @staticmethod
    def _check_gradient(key: str, param: Any, grad: Any) -> None:
        """``grad`` has exactly ``param``'s shape and dtype (known at trace time: free under
        ``jit``); ``key`` is the parameter's ``state_dict()`` key, for the message."""
        if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
            raise TypeError(
                GRAD_NOT_ARRAY.format(
                    key=key, got=_typename(grad), shape=tuple(param.shape), dtype=param.dtype
                )
            )
        if tuple(grad.shape) != tuple(param.shape):
            raise RuntimeError(
                GRAD_SHAPE.format(key=key, got=tuple(grad.shape), expected=tuple(param.shape))
            )
        if grad.dtype != param.dtype:
            hint = (
                "an integer or boolean gradient is not a gradient (jax.grad gives float0 there)"
                if not jax.numpy.issubdtype(grad.dtype, jax.numpy.inexact)
                else f"cast it with g.astype({param.dtype})"
            )
            raise RuntimeError(
                GRAD_DTYPE.format(key=key, got=grad.dtype, expected=param.dtype, hint=hint)
            )

    @staticmethod
    def _check_not_swapped(model: Any, grads: Any) -> None:
        """Refuse ``opt.step(grads, model)`` where the swap shows (see ``step``)."""

        def is_leaf(x: Any) -> bool:
            return x is None

        model_leaves = jax.tree.leaves(model, is_leaf=is_leaf)
        grad_leaves = jax.tree.leaves(grads, is_leaf=is_leaf)
        if len(model_leaves) != len(grad_leaves):
            return  # not the same structure: step() says so, with the path
        float0 = jax.dtypes.float0
        for i, (leaf, grad) in enumerate(zip(model_leaves, grad_leaves)):
            if leaf is None and grad is not None:
                what = "None"
            elif getattr(leaf, "dtype", None) == float0:
                what = "a float0 array (jax.grad's gradient of an integer leaf)"
            else:
                continue
            path = jax.tree_util.tree_flatten_with_path(model, is_leaf=is_leaf)[0][i][0]
            key = jax.tree_util.keystr(path, simple=True, separator=".")
            raise ValueError(SWAPPED_ARGUMENTS.format(what=what, key=key or "<root>"))

    # ---------------------------------------------------------------- torch's state_dict

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load torch's layout (this class's or torch's ``state_dict()``), in place.

        As torch: the number of groups and each group's size must match; parameters are
        matched by position; group options are taken from the saved dict (options it lacks
        come from the defaults, ``param_names`` from the current group). Unlike torch, every
        value is checked and converted first (a hyperparameter must be a number or a 1-element
        array; a state value an array of its parameter's shape) and the optimizer changes only
        when all of it loads: on error it is unchanged and the message names the group index,
        the key or the parameter index. The groups keep their current key order (torch puts
        ``'params'`` last), so loading a state of the same structure, even the optimizer's own,
        never makes a jitted step retrace.
        """
        if any(_is_tracer(leaf) for leaf in jax.tree.leaves(self)):
            raise RuntimeError(LOAD_INSIDE_TRACE)
        cls = type(self).__name__
        check_optimizer_state(state_dict, cls)
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, list | tuple):
            raise ValueError(
                LOAD_BAD_ENTRY.format(
                    where="'param_groups'", got=_typename(saved_groups), expected="a list of dicts"
                )
            )
        for gi, saved in enumerate(saved_groups):
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), list | tuple):
                raise ValueError(
                    LOAD_BAD_ENTRY.format(
                        where=f"param_groups[{gi}]",
                        got=f"a dict with keys {_some_keys(saved)}"
                        if isinstance(saved, Mapping)
                        else _typename(saved),
                        expected="a dict whose 'params' is a list of parameter indices",
                    )
                )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(
            len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups)
        ):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise ValueError(
                LOAD_BAD_ENTRY.format(
                    where="'state'",
                    got=_typename(state),
                    expected="a dict {parameter index: {name: value}}",
                )
            )
        new_groups = [
            self._loaded_group(gi, group, saved)
            for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups))
        ]
        where = {
            saved_id: (gi, pi)
            for gi, saved in enumerate(saved_groups)
            for pi, saved_id in enumerate(saved["params"])
        }
        commit = self._loaded_state(state, where, new_groups)
        # Everything is checked and converted: nothing below can fail.
        self.param_groups = new_groups
        commit()
        self._state_changed()
        if self._layout().placement is not None:
            self._tree_flatten()  # the new state placed as the optimizer's placement says

    def _loaded_group(self, gi: int, group: ParamGroup, saved: Mapping[str, Any]) -> ParamGroup:
        """The new group ``gi`` from its saved options, every value checked (nothing set)."""
        values: dict[str, Any] = {}
        for key, value in saved.items():
            if key == "params":
                continue
            where = f"param_groups[{gi}][{key!r}]"
            if key in self.hyperparameters:
                value = _check_hyperparameter(
                    key, value, where, self.tuple_hyperparameters.get(key)
                )
            else:
                try:  # a static option is structure: it must hash
                    hash(tuple(value) if isinstance(value, list) else value)
                except TypeError:
                    raise ValueError(
                        LOAD_BAD_ENTRY.format(
                            where=where,
                            got=f"{_typename(value)} {value!r}"[:200],
                            expected="a hashable option (a number, string, bool or None)",
                        )
                    ) from None
            values[key] = value
        for key, value in self.defaults.items():  # an older checkpoint lacks some keys
            values.setdefault(key, value)
        values["params"] = group["params"]
        if "param_names" in group:
            values.setdefault("param_names", group["param_names"])
        # The current key order first: the same options give the same pytree structure.
        new = ParamGroup()
        for key in [*(k for k in dict.keys(group) if k in values), *values]:
            if key not in new:
                dict.__setitem__(new, key, values[key])
        new.dirty = True
        return new

    def _loaded_state(
        self,
        state: Mapping[Any, Any],
        where: dict[Any, tuple[int, int]],
        groups: list[ParamGroup],
    ) -> Callable[[], None]:
        """Check and convert the saved per-parameter ``state`` (``where`` maps a saved index
        to ``(group index, index in group)``); return what installs it, which cannot fail."""
        if state:
            raise ValueError(f"{type(self).__name__} has no per-parameter state to load")
        return lambda: None

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


def nonzero(value: Any) -> bool:
    """torch's ``if value != 0:`` on a host hyperparameter (a NaN is nonzero)."""
    return bool(np.asarray(value) != 0)


def small_lerp_weight(betas: Any) -> bool:
    """Whether ``exp_avg.lerp_(grad, 1 - beta1)`` takes torch's small-weight formula."""
    return bool(abs(1 - np.float64(np.asarray(betas[0]))) < 0.5)


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


def _some_keys(mapping: Mapping[Any, Any]) -> str:
    keys = list(mapping)
    return repr(keys[:6])[:-1] + (", ...]" if len(keys) > 6 else "]")


def _shape_handle(
    uid: int, requires_grad: bool, shape: Any, dtype: Any, sharding: Any = None
) -> Parameter:
    struct = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    return Parameter._handle(struct, requires_grad, uid)


def _placement(array: Any) -> Any:
    """The sharding of a parameter placed explicitly (committed), else None: optimizer state is
    born where its parameter lives (DESIGN.md, rule 11), so a jitted step sees the same input
    placement on its first call as on every later one."""
    if isinstance(array, jax.Array) and not _is_tracer(array) and array.committed:
        return array.sharding
    return None


def zeros_like_param(handle: Parameter, fill_value: float = 0) -> jax.Array:
    """Zeros (or ``fill_value``: Adagrad's initial accumulator) of a parameter's shape and
    dtype, on its placement; made on the host, so creating optimizer state compiles nothing."""
    zeros = np.full(handle.shape, fill_value, handle.dtype)
    sharding = getattr(handle.data, "sharding", None)
    return jax.device_put(zeros, sharding) if sharding is not None else jax.device_put(zeros)


def _replicated(handles: Any) -> Any:
    """Where the packed hyperparameters go: replicated over the first placed parameter's devices
    (None when no parameter was placed explicitly)."""
    for handle in handles:
        sharding = getattr(handle.data, "sharding", None)
        if sharding is not None:
            if isinstance(sharding, jax.sharding.NamedSharding):
                return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            devices = sorted(sharding.device_set, key=lambda d: d.id)
            if len(devices) == 1:
                return jax.sharding.SingleDeviceSharding(devices[0])
            return None
    return None


def _spread(sharding: Any) -> Any:
    """``sharding`` if it spans several devices (a mesh placement to keep), else None."""
    if isinstance(sharding, jax.sharding.Sharding) and len(sharding.device_set) > 1:
        return sharding
    return None


def _explicit(mesh: Any) -> bool:
    """Whether ``mesh`` has ``Explicit`` axes (shardings are then part of the array types)."""
    explicit = jax.sharding.AxisType.Explicit
    return any(t == explicit for t in getattr(mesh, "axis_types", ()))


def canonical_sharding(sharding: Any, ndim: int) -> Any:
    """``sharding`` spelled as a jitted step returns it, so that an array placed with it and
    the same array returned by the step are the same input signature for ``jit``: on an
    ``Auto`` mesh without trailing ``None``s (``P('data')``), on an ``Explicit`` one with an
    entry per dimension (``P('data', None)``). Other shardings are returned as they are."""
    if not isinstance(sharding, jax.sharding.NamedSharding) or len(sharding.spec) > ndim:
        return sharding
    entries = list(sharding.spec)
    if _explicit(sharding.mesh):
        entries += [None] * (ndim - len(entries))
    else:
        while entries and entries[-1] is None:
            entries.pop()
    if tuple(entries) == tuple(sharding.spec):
        return sharding
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*entries))


def _constrain(x: Any, sharding: Any) -> Any:
    """``x`` placed as ``sharding``: a constraint for the SPMD partitioner, or a reshard on a
    mesh with ``Explicit`` axes (where the sharding is part of the type and a constraint would
    not change it)."""
    if _explicit(getattr(sharding, "mesh", None)):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def _leaf_keys(
    layout: _OptimizerLayout, owners: list[tuple[Parameter | None, str]]
) -> list[jax.tree_util.GetAttrKey]:
    """The tree-path keys of an optimizer's leaves (see ``Optimizer._tree_flatten_with_keys``).

    One key per leaf (a pytree node gives each child one key, and the keyless flatten must stay
    flat), spelled so that ``keystr`` reads as nested attributes and dict keys would. A
    parameter is named by its ``state_dict`` key; over several models by the model's index
    and the key (``state[1]['fc.weight']``); when it was never in a module, by its index in
    the optimizer's ``state_dict()`` (``state['#3']``).
    """
    handles = [p for _, params_key, _ in layout.templates for p in params_key.handles]
    index = {p.uid: i for i, p in enumerate(handles)}
    several = any(p._place is not None and p._place[0] > 0 for p in handles)

    def label(handle: Parameter) -> str:
        place = handle._place
        if place is None:
            return f"[{'#' + str(index.get(handle.uid, handle.uid))!r}]"
        return f"[{place[0]}][{place[1]!r}]" if several else f"[{place[1]!r}]"

    keys = [jax.tree_util.GetAttrKey("hyperparameters")]
    for handle, name in owners:
        keys.append(
            jax.tree_util.GetAttrKey(name if handle is None else f"state{label(handle)}{name}")
        )
    return keys


def _scalar(value: Any) -> Any:
    """A hyperparameter leaf as a Python number for state_dict / repr.

    A float32 leaf reads back as the shortest decimal that rounds to it (0.1, not
    0.10000000149011612), which is the number the user wrote.
    """
    if isinstance(value, tuple):  # betas
        return tuple(map(_scalar, value))
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
