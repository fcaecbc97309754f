"""The optimizer base: torch's parameter groups, as a JAX pytree.

An optimizer is a value. ``opt.step(model, grads)`` returns ``(new_model, new_opt)`` and never
mutates its arguments, so it works inside ``jax.jit`` and ``jax.lax.scan``. Hyperparameters are
pytree leaves (changing ``opt.param_groups[0]['lr']`` never recompiles); which parameters belong
to which group is static, recorded by each ``Parameter``'s ``uid`` (torch records it by object
identity).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import jax
import numpy as np

from fparam._module import Module, Parameter, _typename, _unflatten

__all__ = ["Optimizer"]


def _as_leaf(value: Any) -> Any:
    """A hyperparameter as a pytree leaf: a Python number becomes a strong ``dtype`` scalar.

    One leaf type whatever the user wrote (``0``, ``0.9``, a schedule's traced value, the
    array a jitted step returned), so changing a value never retraces. The group dict keeps
    the value as written, so ``repr`` and ``state_dict`` read as torch's.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return np.asarray(value, jax.dtypes.canonicalize_dtype(np.float64))
    return value


class _Lazy:
    """The placeholder of a packed hyperparameter not read yet (see ``ParamGroup``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<packed>"


_LAZY = _Lazy()


def _read_packed(packed: Any, slots: dict[str, int]) -> dict[str, Any]:
    """The values of ``slots`` in the packed hyperparameter vector.

    Inside a trace each is an index of the traced vector; outside, one device-to-host copy
    and Python numbers that print as the user wrote them (the shortest decimal).
    """
    if isinstance(packed, jax.core.Tracer):
        return {k: packed[i] for k, i in slots.items()}
    host = np.asarray(packed)
    return {k: float(str(host[i])) for k, i in slots.items()}


class ParamGroup(dict):
    """One torch parameter group: a dict with ``'params'`` (Parameter handles) and options.

    Float options listed in the optimizer's ``hyperparameters`` are pytree leaves; setting one
    (``group['lr'] = 0.01``) changes the next step without recompiling. Any change marks the
    group ``dirty``, so the optimizer recomputes its cached pytree structure once.

    Most hyperparameters travel packed in one vector leaf; a group rebuilt from the pytree
    reads them from that vector on first access (``lazy``), all at once.
    """

    params_key: _ParamsKey | None = None
    dirty: bool = False
    lazy: tuple[Any, dict[str, int]] | None = None

    def _fill(self) -> None:
        lazy = self.lazy
        if lazy is not None:
            self.lazy = None
            dict.update(self, _read_packed(*lazy))

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value is _LAZY:
            self._fill()
            value = dict.__getitem__(self, key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)

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
        super().__setitem__(key, value)
        self.dirty = True

    def __delitem__(self, key: str) -> None:
        self._fill()
        super().__delitem__(key)
        self.dirty = True

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._fill()
        super().update(*args, **kwargs)
        self.dirty = True

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._fill()
        self.dirty = True
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._fill()
        self.dirty = True
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._fill()
        self.dirty = True
        return super().popitem()

    def clear(self) -> None:
        self.lazy = None
        super().clear()
        self.dirty = True

    def copy_clean(self) -> ParamGroup:
        """A copy for a new optimizer value, with the same cached identity and dirtiness."""
        copy = ParamGroup(self)  # placeholders included: the copy reads the same vector
        copy.params_key = self.params_key
        copy.dirty = self.dirty
        copy.lazy = self.lazy
        return copy


class _OptimizerLayout:
    """An optimizer's pytree structure: hashed once, compared by identity first.

    The leaves are: one vector packing the hyperparameters (the defaults', then each group's,
    except the ``scalar_hyperparameters``), each group's scalar hyperparameters, then the
    subclass's state. ``templates`` are the groups as dicts with every static option in torch's
    key order, a placeholder where a packed value goes and ``None`` where a scalar leaf goes;
    unflattening copies them. ``slots`` say where each packed value is in the vector.
    """

    __slots__ = (
        "cache",
        "default_slots",
        "defaults",
        "extras",
        "hash",
        "key",
        "n_packed",
        "scalars",
        "templates",
    )

    def __init__(self, cls: type, groups: list[ParamGroup], defaults: dict[str, Any], extras: Any):
        hyper = cls.hyperparameters  # type: ignore[attr-defined]
        scalars = cls.scalar_hyperparameters  # type: ignore[attr-defined]
        statics = []
        self.templates = []
        self.scalars = scalars
        position = 0
        self.defaults = {}
        self.default_slots = {}
        for k in defaults:
            if k in hyper:
                self.defaults[k] = _LAZY
                self.default_slots[k] = position
                position += 1
            else:
                self.defaults[k] = dict.__getitem__(defaults, k)
        for g in groups:
            params_key = _ParamsKey.of(g)
            items: list[tuple[str, Any]] = []
            template: dict[str, Any] = {}
            slots: dict[str, int] = {}
            for k in g:
                if k in hyper:
                    items.append((k, None))
                    if k in scalars:
                        template[k] = None
                    else:
                        template[k] = _LAZY
                        slots[k] = position
                        position += 1
                elif k == "params":
                    items.append((k, params_key))
                    template[k] = params_key.handles
                else:
                    v = dict.__getitem__(g, k)
                    items.append((k, tuple(v) if isinstance(v, list) else v))
                    template[k] = v
            statics.append(tuple(items))
            self.templates.append((template, params_key, slots))
        self.n_packed = position
        self.extras = extras
        self.key = (
            cls,
            tuple(statics),
            tuple((k, None if v is _LAZY else v) for k, v in self.defaults.items()),
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
        self.key = tuple((p.uid, p.requires_grad, tuple(p.shape), p.dtype) for p in handles)
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

    Subclasses set ``hyperparameters`` (the float options that are pytree leaves) and
    ``static_options`` (the options that change the computation, hence the compiled code),
    and implement ``_update`` and the state hooks.
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()
    # The hyperparameters that are each a scalar leaf per group; the others (and all of the
    # defaults') are packed in one vector leaf, which a jitted step returns as one output.
    scalar_hyperparameters: ClassVar[tuple[str, ...]] = ()
    static_options: ClassVar[tuple[str, ...]] = ()

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
                # Keep shape and dtype, not the array: the optimizer must not pin the weights.
                item = _shape_handle(item.uid, item.requires_grad, item.shape, item.dtype)
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
        if seen & set(uids):
            raise ValueError("some parameters appear in more than one parameter group")
        self._validate_group(group)
        self.param_groups.append(group)
        self._init_group_state(group)

    def _validate_group(self, group: ParamGroup) -> None:
        """Per-group checks of a subclass (torch validates only its defaults)."""

    def _init_group_state(self, group: ParamGroup) -> None:
        """Create a new group's state (e.g. momentum buffers)."""

    # ---------------------------------------------------------------- pytree

    def _state_leaves(self, layout: _OptimizerLayout) -> list[Any]:
        return []

    def _set_state_leaves(self, layout: _OptimizerLayout, leaves: list[Any]) -> None:
        pass

    def _before_flatten(self) -> None:
        """A subclass's lazy state creation, run before the structure is read."""

    def _layout(self) -> _OptimizerLayout:
        """The pytree structure, recomputed only after a group or the group list changed."""
        groups = self.param_groups
        defaults = self.defaults
        cached = self.__dict__.get("_fp_layout")
        if cached is not None and type(defaults) is ParamGroup and not defaults.dirty:
            layout, ids = cached
            if ids == tuple(map(id, groups)):
                for g in groups:
                    if type(g) is not ParamGroup or g.dirty:
                        break
                else:
                    return layout
        self.__dict__.pop("_fp_packed", None)  # a value changed: pack again
        for i, g in enumerate(groups):
            if type(g) is not ParamGroup:  # a plain dict put there by hand
                groups[i] = g = ParamGroup(g)
            g.dirty = False
        if type(defaults) is not ParamGroup:
            self.defaults = defaults = ParamGroup(defaults)
        defaults.dirty = False
        layout = _OptimizerLayout(type(self), groups, defaults, self._static_extras())
        self._remember_layout(layout)
        return layout

    def _remember_layout(self, layout: _OptimizerLayout) -> None:
        self._fp_layout = (layout, tuple(map(id, self.param_groups)))

    def _pack(self, layout: _OptimizerLayout) -> Any:
        """The packed hyperparameter vector, kept on the optimizer until a value changes."""
        packed = self.__dict__.get("_fp_packed")
        if packed is not None:
            return packed
        values = [self.defaults[k] for k in layout.default_slots]
        for g, (_, _, slots) in zip(self.param_groups, layout.templates):
            values.extend([g[k] for k in slots])
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        if all(isinstance(v, int | float | np.ndarray | np.generic) for v in values):
            packed = jax.numpy.asarray(np.asarray(values, dtype).reshape(len(values)))
        else:  # a JAX array or a traced value among them
            packed = jax.numpy.stack(
                [jax.numpy.reshape(jax.numpy.asarray(v, dtype), ()) for v in values]
            ).reshape(len(values))
        self._fp_packed = packed
        return packed

    def _tree_flatten(self) -> tuple[list[Any], _OptimizerLayout]:
        self._before_flatten()
        layout = self._layout()
        # The defaults' hyperparameters are leaves too (packed): two optimizers that differ
        # only in their lr share compiled code.
        leaves = [self._pack(layout)]
        scalars = layout.scalars
        for g in self.param_groups:
            for k in scalars:
                leaves.append(_as_leaf(dict.__getitem__(g, k)))
        leaves.extend(self._state_leaves(layout))
        return leaves, layout

    def _static_extras(self) -> Any:
        """Hashable structure a subclass adds to the pytree's auxiliary data."""
        return None

    @classmethod
    def _tree_unflatten(cls, layout: _OptimizerLayout, leaves: Iterable[Any]) -> Optimizer:
        opt = object.__new__(cls)
        leaves = list(leaves)
        packed = leaves[0]
        scalars = layout.scalars
        n = len(scalars)
        defaults = ParamGroup(layout.defaults)
        defaults.lazy = (packed, layout.default_slots)
        groups = []
        start = 1
        for template, params_key, slots in layout.templates:
            group = ParamGroup(template)
            if n:
                dict.update(group, zip(scalars, leaves[start : start + n]))
                start += n
            group.params_key = params_key
            if slots:
                group.lazy = (packed, slots)
            groups.append(group)
        opt.defaults = defaults
        opt.param_groups = groups
        opt._fp_packed = packed
        opt._set_state_leaves(layout, leaves[start:])
        opt._remember_layout(layout)
        return opt

    # ---------------------------------------------------------------- stepping

    def _slots(self) -> dict[int, tuple[int, int]]:
        """uid → (group index, index in group)."""
        return {
            p.uid: (gi, pi)
            for gi, g in enumerate(self.param_groups)
            for pi, p in enumerate(g["params"])
        }

    def step(self, model: Any, grads: Any) -> tuple[Any, Optimizer]:
        """One optimization step: returns ``(new_model, new_optimizer)``.

        Arguments:
            model: a Module, or any pytree of Modules, holding this optimizer's parameters.
            grads: gradients with the structure of ``model`` (from ``jax.grad`` or
                ``fparam.grad``). A ``None`` gradient skips its parameter entirely, as torch
                skips ``p.grad is None``; frozen parameters (``requires_grad=False``) are never
                touched.

        Returns:
            The updated model (same structure) and the optimizer with its new state.
        """
        slots = self._slots()
        found: set[int] = set()
        updates: dict[int, tuple[Any, Any]] = {}

        def collect(module: Module, grad_module: Any, path: str) -> None:
            d = module.__dict__
            layout = d["_fp_layout"]
            if not isinstance(grad_module, Module) or (
                grad_module.__dict__["_fp_layout"].leaf_names != layout.leaf_names
            ):
                raise ValueError(
                    f"grads do not have the structure of the model at '{path or '<root>'}': "
                    f"expected a {type(module).__name__} with fields {layout.leaf_names}, got "
                    f"{type(grad_module).__name__}"
                )
            gd = grad_module.__dict__
            for name, requires_grad, uid in layout.params:
                if uid in slots:
                    found.add(uid)
                    if requires_grad and d[name] is not None and gd[name] is not None:
                        updates[uid] = (d[name], gd[name])
            for name in layout.modules:
                if d[name] is not None:
                    collect(d[name], gd[name], f"{path}.{name}" if path else name)

        models = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, Module))
        grad_models = jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, Module) or x is None)
        if len(models) != len(grad_models):
            raise ValueError(
                f"grads do not have the structure of the model: {len(models)} modules vs "
                f"{len(grad_models)} gradient entries"
            )
        for m, g in zip(models, grad_models):
            if isinstance(m, Module):
                collect(m, g, "")
        missing = set(slots) - found
        if missing:
            raise ValueError(
                f"{len(missing)} of this optimizer's {len(slots)} parameters are not in the model "
                "passed to step(): pass the model (or a tuple of the models) whose parameters "
                "built the optimizer, or a copy of it made by JAX (parameters keep their "
                "identity through jit, grad and tree.map); a module rebuilt from scratch has new "
                "parameters."
            )
        new_opt, new_values = self._update(updates, slots)

        def rebuild(module: Module) -> Module:
            d = module.__dict__
            layout = d["_fp_layout"]
            children: list[Any] = [new_values.get(uid, d[n]) for n, _, uid in layout.params]
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
