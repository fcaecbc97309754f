"""``Parameter``, ``Buffer`` and ``Module``: torch's programming model as JAX pytrees.

How a module is stored
----------------------
Every value lives in the instance ``__dict__``, so reading ``self.weight`` is a plain attribute
lookup that returns a ``jax.Array`` (or a tracer): no ``__getattr__`` or ``__getattribute__`` on
the hot path. What each name *is* (parameter, buffer, child module or static value) is decided
when it is assigned and recorded in an immutable :class:`_Layout`, which is also the pytree's
auxiliary data. Flattening is one ``itemgetter`` call over ``__dict__``; unflattening copies a
prepared dict; neither classifies anything. Layouts hash once, on construction, and compare by
identity first, so JAX's cache lookup for an unchanged module is cheap.

Identity is not structure
-------------------------
Two models of one architecture (same classes, parameter names, ``requires_grad`` flags, static
values and training mode) have *equal* tree structures, so a jitted step compiles once for all
of them (a sweep, k-fold training, an EMA copy) and a tree of shardings built from one applies
to the other. Nothing that tells two such models apart may live in the layout: JAX's compile
cache hands back the *first* trace's output structure for every later call, so identity stored
there would come back stale, attached to the wrong model.

Identity therefore lives in two places outside the structure:

* **Parameter objects** (``nn.Parameter(x)`` and the handles ``parameters()`` yields) have a
  ``uid``; each module keeps ``{name: uid}`` of its own parameters in ``__dict__`` (never in the
  layout, so copies made by JAX start without it and draw fresh uids when first asked). It is
  what refuses the same parameter in two places of one model. A handle also remembers the
  module and name it came from, so ``p.requires_grad = False`` and ``p.data = x`` write through
  to the module, as they do in torch.
* **Optimizers** identify a parameter by its place: the root model it belongs to and its
  ``state_dict`` key there (resolved when the optimizer is built, through the parent links).
  That place is the same in every copy JAX makes, which is what an optimizer needs inside
  ``jit``; the price is that any model of the same architecture is "the same model" to an
  optimizer, as it is to optax.

Copies made by unflattening keep a weak link to their parent (one ``weakref`` per child
module), so a handle taken from ``model.fc`` of a model returned by ``jit`` still knows it lives
at ``fc`` of that model.
"""

from __future__ import annotations

import copy
import itertools
import operator
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _convert, _errors, _hooks
from fparam._dtypes import check_narrowing
from fparam._trace import current_trace as _current_trace

__all__ = ["Buffer", "Module", "Parameter", "StaticArrayWarning"]

T = TypeVar("T", bound="Module")

_PRE_HOOKS = _hooks.PRE_HOOKS
_HOOKS = _hooks.HOOKS

_LARGE_STATIC_BYTES = 1 << 20

_uid_lock = threading.Lock()
_uid_counter = itertools.count(1)


def _next_uid() -> int:
    with _uid_lock:
        return next(_uid_counter)


def _copied_uid(uid: int, memo: dict[Any, Any]) -> int:
    """The uid that ``copy.deepcopy`` gives a parameter: a fresh one, as torch's deepcopy makes
    new Parameter objects, and the same one for every copy made within one ``deepcopy`` call
    (so a copied ``(model, handles)`` pair still matches up)."""
    key = ("fparam.uid", uid)
    if key not in memo:
        memo[key] = _next_uid()
    return memo[key]  # type: ignore[no-any-return]


class StaticArrayWarning(UserWarning):
    """A large plain array was stored as static state (it is compiled in as a constant)."""


# --------------------------------------------------------------------------------------------
# Values


_ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)


def _is_array(value: Any) -> bool:
    return isinstance(value, _ARRAY_TYPES)


def _is_tracer(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _typename(value: Any) -> str:
    """torch.typename's counterpart: the name torch-style messages use for a value's type."""
    if isinstance(value, jax.Array):
        return "jax.Array"
    if isinstance(value, np.ndarray):
        return "numpy.ndarray"
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor's values as NumPy, bfloat16 included (``Tensor.numpy()`` refuses it).

    Reached only with a torch tensor in hand, so torch is already imported; fparam never
    imports it on its own.
    """
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        import torch

        return tensor.view(torch.int16).numpy().view(jnp.bfloat16)
    return tensor.numpy()


def _to_jax(data: Any, what: str) -> jax.Array:
    if isinstance(data, jax.Array):  # tracers included: kept as they are
        return data
    if isinstance(data, (Parameter, Buffer)):
        return data.data
    if isinstance(data, (np.ndarray, np.generic, int, float, complex, bool)):
        return jnp.asarray(data)
    if hasattr(data, "__array__"):
        if hasattr(data, "detach"):  # a torch tensor: read it without importing torch
            data = _torch_to_numpy(data)
        return jnp.asarray(np.asarray(data))
    raise TypeError(f"{what} expects an array (jax.Array, numpy array), got {_typename(data)}")


def _can_require_grad(array: Any) -> bool:
    return bool(jnp.issubdtype(array.dtype, jnp.inexact))


if TYPE_CHECKING:
    # For type checkers a Parameter is an array, so `self.weight = nn.Parameter(x)` types
    # `self.weight` as what reading it returns at run time: a jax.Array.
    _ParameterBase = jax.Array
else:
    _ParameterBase = object


class Parameter(_ParameterBase):
    """A differentiable leaf of a module, like ``torch.nn.Parameter``.

    Assigning one to a module attribute registers a parameter; reading the attribute back gives
    the plain ``jax.Array``. ``Module.parameters()`` yields ``Parameter`` handles, which carry
    ``requires_grad`` and the identity an optimizer uses; arithmetic on a handle gives arrays.

    Arguments:
        data: the initial value: a JAX or NumPy array, a scalar, or anything ``numpy.asarray``
            reads. ``None`` gives an empty float32 array of shape ``(0,)``, as in torch.
        requires_grad: whether optimizers and ``fparam.grad`` train it. Integer arrays cannot
            require gradients (torch raises the same ``RuntimeError``).
    """

    __slots__ = ("_name", "_owner", "_place", "data", "requires_grad", "uid")

    data: jax.Array
    requires_grad: bool
    uid: int
    # Where the handle came from: the owning module and the attribute name (None for a
    # parameter not assigned anywhere yet). Writes to `data` / `requires_grad` go through to
    # that module while it still holds this parameter. A strong reference, as a torch
    # Parameter keeps its storage: `SGD(Net().parameters())` must still find the model.
    _owner: Module | None
    _name: str | None
    # An optimizer's handles: (root index, state_dict key) in the optimizer's models.
    _place: tuple[int, str] | None

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        uid = data.uid if isinstance(data, Parameter) else _next_uid()
        array = jnp.zeros((0,), jnp.float32) if data is None else _to_jax(data, "Parameter")
        if requires_grad and not _can_require_grad(array):
            raise RuntimeError(
                "Only arrays of floating point and complex dtype can require gradients "
                f"(got dtype {array.dtype}); pass requires_grad=False"
            )
        _init_handle(self, array, bool(requires_grad), uid, None, None)

    @classmethod
    def _handle(
        cls,
        data: Any,
        requires_grad: bool,
        uid: int,
        owner: Module | None = None,
        name: str | None = None,
    ) -> Parameter:
        handle = object.__new__(cls)
        _init_handle(handle, data, requires_grad, uid, owner, name)
        return handle

    def _attached_owner(self) -> Module | None:
        """The module this parameter is still part of, or None (never assigned, or replaced)."""
        owner = self._owner
        if owner is None or self._name is None:
            return None
        d = owner.__dict__
        if d.get("_fp_uids", {}).get(self._name) != self.uid or d.get(self._name) is None:
            return None
        return owner

    def __setattr__(self, name: str, value: Any) -> None:
        # torch's freeze and re-initialisation idioms act on the module's parameter:
        # `p.requires_grad = False` and `p.data = x` on a handle from parameters().
        if name not in ("data", "requires_grad"):
            raise AttributeError(
                f"'Parameter' object attribute '{name}' is read-only (settable: data, "
                "requires_grad)"
            )
        owner = self._attached_owner()
        if name == "requires_grad":
            flag = _requires_grad_flag(value)
            if flag and not _can_require_grad(self.data):
                raise RuntimeError(
                    "only arrays of floating point and complex dtype can require gradients "
                    f"(this parameter has dtype {self.data.dtype})"
                )
            if owner is not None:
                owner._set_requires_grad(self._name, flag)  # type: ignore[arg-type]
            object.__setattr__(self, "requires_grad", flag)
        else:
            array = _to_jax(value, "Parameter.data")
            if owner is not None:
                owner._set_parameter_data(self._name, array)  # type: ignore[arg-type]
            object.__setattr__(self, "data", array)

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Set ``requires_grad`` in place (through to the owning module), as in torch."""
        self.requires_grad = requires_grad
        return self

    def __reduce__(self) -> Any:
        # A pickled handle travels without its owner (a weak reference cannot be pickled);
        # unpickled, it is a free parameter, as an unpickled torch tensor is.
        return (_restore_parameter, (self.data, self.requires_grad, self.uid, self._place))

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def numel(self) -> int:
        """Number of elements, as ``torch.Tensor.numel``."""
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[jax.Array]:
        # Iterable like a torch Parameter (over the first axis), so `isinstance(p, Iterable)`.
        return iter(self.data)

    def __array__(self, dtype: Any = None, context: None = None, copy: bool | None = None) -> Any:
        return np.asarray(self.data, dtype=dtype)

    def __neg__(self) -> jax.Array:
        return -self.data

    def __getitem__(self, index: Any) -> jax.Array:
        return self.data[index]

    def __jax_array__(self) -> jax.Array:
        return self.data

    def __repr__(self) -> str:
        suffix = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter containing:\n{self.data!r}{suffix}"

    def __deepcopy__(self, memo: dict[Any, Any]) -> Parameter:
        new = Parameter._handle(self.data, self.requires_grad, _copied_uid(self.uid, memo))
        object.__setattr__(new, "_place", self._place)
        return new


def _init_handle(
    handle: Parameter,
    data: Any,
    requires_grad: bool,
    uid: int,
    owner: Module | None,
    name: str | None,
) -> None:
    setattr_ = object.__setattr__
    setattr_(handle, "data", data)
    setattr_(handle, "requires_grad", requires_grad)
    setattr_(handle, "uid", uid)
    setattr_(handle, "_owner", owner)
    setattr_(handle, "_name", name)
    setattr_(handle, "_place", None)


def _restore_parameter(
    data: Any, requires_grad: bool, uid: int, place: tuple[int, str] | None
) -> Parameter:
    handle = Parameter._handle(data, requires_grad, uid)
    object.__setattr__(handle, "_place", place)
    return handle


def _requires_grad_flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"requires_grad must be a bool, got {_typename(value)}")
    return bool(value)


_Operator = Callable[[Parameter, Any], Any]


def _operators(name: str) -> tuple[_Operator, _Operator]:
    """``p <op> x`` and ``x <op> p`` on a Parameter handle: the same on its array (torch gives
    a plain Tensor back; fparam gives a jax.Array)."""
    op = getattr(operator, name)

    def forward(self: Parameter, other: Any) -> Any:
        return op(self.data, other.data if isinstance(other, Parameter) else other)

    def reflected(self: Parameter, other: Any) -> Any:
        return op(other, self.data)

    return forward, reflected


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul"):
    _forward, _reflected = _operators(_name)
    setattr(Parameter, f"__{_name}__", _forward)
    setattr(Parameter, f"__r{_name}__", _reflected)
for _name in ("lt", "le", "gt", "ge"):
    setattr(Parameter, f"__{_name}__", _operators(_name)[0])


class Buffer:
    """A state leaf of a module that is not trained, like ``torch.nn.Buffer``.

    Arguments:
        data: the value (JAX or NumPy array, or anything ``numpy.asarray`` reads).
        persistent: whether ``state_dict()`` saves it (``register_buffer``'s flag).
    """

    __slots__ = ("data", "persistent")

    def __init__(self, data: Any, *, persistent: bool = True) -> None:
        self.data = _to_jax(data, "Buffer")
        self.persistent = bool(persistent)

    def __repr__(self) -> str:
        return f"Buffer containing:\n{self.data!r}"


# --------------------------------------------------------------------------------------------
# Static values: hashable keys for the layout


class _ById:
    """Compares a value by identity: how static arrays and unhashable objects join a layout."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ById) and other.value is self.value


_SCALAR_TYPES = frozenset({int, float, bool, str, bytes, complex, type(None)})


def _static_key(value: Any) -> Any:
    cls = type(value)
    if cls in _SCALAR_TYPES:  # the common case, before the (slow) isinstance of jax.Array
        return cls, value
    if isinstance(value, (jax.Array, np.ndarray)):
        return _ById(value)
    if cls in (list, tuple):
        return cls, tuple(_static_key(item) for item in value)
    if cls in (dict, OrderedDict):
        return cls, tuple((k, _static_key(v)) for k, v in value.items())
    try:
        hash(value)
    except TypeError:
        return _ById(value)
    return cls, value


def _contained_kinds(value: Any, seen: set[int] | None = None) -> set[str]:
    """What a plain container holds that fparam would have to register: module/param/array."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return set()
    seen.add(id(value))
    items: Any
    if isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return set()
    kinds: set[str] = set()
    for item in items:
        if isinstance(item, Module):
            kinds.add("module")
        elif isinstance(item, Parameter):
            kinds.add("parameter")
        elif isinstance(item, (Buffer, jax.Array, np.ndarray)):
            kinds.add("array")
        else:
            kinds |= _contained_kinds(item, seen)
    return kinds


def _check_static(owner: Module, name: str, value: Any) -> None:
    cls = type(owner).__name__
    if _is_tracer(value):
        raise TypeError(_errors.TRACED_STATIC.format(name=name, cls=cls))
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        kinds = _contained_kinds(value)
        if kinds:
            mapping = isinstance(value, Mapping)
            if "module" in kinds:
                suggestion = "nn.ModuleDict" if mapping else "nn.ModuleList (or nn.Sequential)"
                what = "Modules"
            elif "parameter" in kinds:
                suggestion = "nn.ParameterDict" if mapping else "nn.ParameterList"
                what = "Parameters"
            else:
                what = "arrays"
                suggestion = (
                    "nn.ParameterDict / nn.ParameterList"
                    if mapping
                    else "nn.ParameterList (with requires_grad=False to freeze)"
                ) + ", or register each array with register_buffer()"
            raise TypeError(
                _errors.PLAIN_CONTAINER.format(
                    container=type(value).__name__, what=what, name=name, suggestion=suggestion
                )
            )
    if isinstance(value, (jax.Array, np.ndarray)) and value.nbytes > _LARGE_STATIC_BYTES:
        size = f"{value.nbytes / (1 << 20):.1f} MiB"
        warnings.warn(
            _errors.LARGE_STATIC_ARRAY.format(name=name, cls=cls, size=size),
            StaticArrayWarning,
            stacklevel=4,
        )


# --------------------------------------------------------------------------------------------
# Layout: the pytree auxiliary data


_INTERNAL = frozenset({"_fp_layout", "_fp_from_tree"})
# Per-object bookkeeping that deepcopy and pickle do not carry over: identities and weak links.
_NOT_PICKLED = frozenset({"_fp_uids", "_fp_parent", "_fp_trace"})
_NOT_COPIED = _NOT_PICKLED | {"_fp_layout"}


def _no_leaves(d: dict[str, Any]) -> tuple[Any, ...]:
    return ()


class _OneLeaf:
    """``itemgetter`` for one name, returning a 1-tuple (and picklable, unlike a lambda)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, d: dict[str, Any]) -> tuple[Any, ...]:
        return (d[self.name],)


class _Layout:
    """What each attribute of one module is. Immutable; replaced whenever a kind changes.

    ``params`` is ``((name, requires_grad), ...)``, ``buffers`` is ``((name, persistent),
    ...)``, ``modules`` is ``(name, ...)``, all in registration order; ``statics`` maps every
    other attribute to its value. Nothing in it tells two models of one architecture apart
    (see the module docstring).
    """

    __slots__ = (
        "base",
        "buffers",
        "cls",
        "getter",
        "hash",
        "key",
        "keys",
        "leaf_names",
        "modules",
        "params",
        "static_keys",
        "statics",
    )

    def __init__(
        self,
        cls: type,
        params: tuple[tuple[str, bool], ...],
        buffers: tuple[tuple[str, bool], ...],
        modules: tuple[str, ...],
        statics: dict[str, Any],
        known: dict[str, tuple[Any, Any]] | None = None,
    ) -> None:
        self.cls = cls
        self.params = params
        self.buffers = buffers
        self.modules = modules
        self.statics = statics
        names = tuple(p[0] for p in params) + tuple(b[0] for b in buffers) + modules
        self.leaf_names = names
        self.keys = tuple(jax.tree_util.GetAttrKey(n) for n in names)
        if not names:
            self.getter: Callable[[dict[str, Any]], tuple[Any, ...]] = _no_leaves
        elif len(names) == 1:
            self.getter = _OneLeaf(names[0])
        else:
            self.getter = operator.itemgetter(*names)
        # (value, key) per static; a replaced layout reuses the keys of unchanged values, so
        # building a module with many options stays linear in its attribute count.
        static_keys = {}
        for k, v in statics.items():
            entry = known.get(k) if known is not None else None
            static_keys[k] = entry if entry is not None and entry[0] is v else (v, _static_key(v))
        self.static_keys = static_keys
        self.key = (
            cls,
            params,
            buffers,
            modules,
            tuple((k, entry[1]) for k, entry in static_keys.items()),
        )
        self.hash = hash(self.key)
        # What an unflattened instance starts from; `_fp_from_tree` marks it as a copy made by
        # a transformation, which may not be mutated while it holds tracers.
        self.base = {**statics, "_fp_layout": self, "_fp_from_tree": True}

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return isinstance(other, _Layout) and self.hash == other.hash and self.key == other.key

    def __reduce__(self) -> Any:
        return (_Layout, (self.cls, self.params, self.buffers, self.modules, self.statics))

    def __repr__(self) -> str:
        names = ", ".join(self.leaf_names)
        return f"{self.cls.__name__}Layout({names})"

    def kind(self, name: str) -> str | None:
        for p in self.params:
            if p[0] == name:
                return "param"
        for b in self.buffers:
            if b[0] == name:
                return "buffer"
        if name in self.modules:
            return "module"
        return None

    def replace(
        self,
        *,
        params: tuple[tuple[str, bool], ...] | None = None,
        buffers: tuple[tuple[str, bool], ...] | None = None,
        modules: tuple[str, ...] | None = None,
        statics: dict[str, Any] | None = None,
    ) -> _Layout:
        return _Layout(
            self.cls,
            self.params if params is None else params,
            self.buffers if buffers is None else buffers,
            self.modules if modules is None else modules,
            self.statics if statics is None else statics,
            self.static_keys,
        )


# child -> the modules that have held it. Links are checked against the parent's current
# children when read (a replaced or deleted child just fails the check), so nothing needs to
# unlink; copies made by JAX's unflatten are not linked (they are not being built).
_PARENTS: weakref.WeakKeyDictionary[Module, weakref.WeakSet[Module]] = weakref.WeakKeyDictionary()


def _roots(module: Module) -> Iterator[tuple[Module, str]]:
    """Every root model ``module`` belongs to, with its dotted path there (``''`` if a root)."""
    holders = []
    parents = _PARENTS.get(module)
    candidates = list(parents or ())
    link = module.__dict__.get("_fp_parent")
    if not candidates and link is not None:
        parent = link()
        candidates = [] if parent is None else [parent]
    for parent in candidates:
        d = parent.__dict__
        layout = d.get("_fp_layout")
        names = [n for n in layout.modules if d[n] is module] if layout is not None else []
        if names:
            holders.append((parent, names[0]))
        elif parents:
            parents.discard(parent)
    if not holders:
        yield module, ""
        return
    for parent, name in holders:
        for root, path in _roots(parent):
            yield root, _join(path, name)


def _uids(module: Module) -> dict[str, int]:
    """``{name: uid}`` of the module's parameters; a copy made by JAX draws fresh ones once."""
    d = module.__dict__
    uids = d.get("_fp_uids")
    if uids is None:
        uids = d["_fp_uids"] = {}
    for name, _ in d["_fp_layout"].params:
        if name not in uids:
            uids[name] = _next_uid()
    return uids  # type: ignore[no-any-return]


# id(array) -> (array, module, name), all weak: which module slot a concrete parameter or buffer
# array currently fills, so that torch's in-place initialisation, `nn.init.normal_(m.weight)`
# as a statement, can write the new values into the module (see `write_back`).
_OWNERS: dict[int, tuple[weakref.ref[Any], weakref.ref[Module], str]] = {}


def _note_owner(value: Any, module: Module, name: str) -> None:
    if not isinstance(value, jax.Array) or _is_tracer(value):
        return
    key = id(value)
    try:
        ref = weakref.ref(value, lambda _, key=key: _OWNERS.pop(key, None))  # type: ignore[misc]
    except TypeError:  # pragma: no cover - an array type without weak references
        return
    _OWNERS[key] = (ref, weakref.ref(module), name)


def write_back(original: Any, new: jax.Array) -> bool:
    """Store ``new`` where ``original`` lives, as torch's in-place functions do; True if it did.

    ``original`` is a ``Parameter`` handle (from ``parameters()``: it writes through to its
    module) or the array a module attribute returned (``m.weight``): when that array is still
    the current value of a module's parameter or buffer, the module gets ``new`` in its place.
    Anything else (an array of no module, a traced value) is left alone.
    """
    if isinstance(original, Parameter):
        if original._attached_owner() is None:
            return False
        original.data = new
        return True
    entry = _OWNERS.get(id(original)) if isinstance(original, jax.Array) else None
    if entry is None:
        return False
    array_ref, module_ref, name = entry
    module = module_ref()
    if array_ref() is not original or module is None or module.__dict__.get(name) is not original:
        return False
    kind = module._fp_layout.kind(name)
    if kind == "param":
        module._set_parameter_data(name, _to_jax(new, name))
    elif kind == "buffer":
        module._check_mutable(f"set buffer '{name}'")
        module.__dict__[name] = array = _to_jax(new, name)
        _note_owner(array, module, name)
    else:
        return False
    return True


def _flatten(module: Module) -> tuple[tuple[Any, ...], _Layout]:
    d = module.__dict__
    layout = d["_fp_layout"]
    return layout.getter(d), layout


def _flatten_with_keys(module: Module) -> tuple[list[tuple[Any, Any]], _Layout]:
    d = module.__dict__
    layout = d["_fp_layout"]
    return [(k, d[n]) for k, n in zip(layout.keys, layout.leaf_names)], layout


def _unflatten(layout: _Layout, children: Any) -> Module:
    module: Module = object.__new__(layout.cls)
    d = layout.base.copy()
    d.update(zip(layout.leaf_names, children))
    object.__setattr__(module, "__dict__", d)
    if layout.modules:
        # A weak link up, so that a handle taken from a child of a copy knows its place
        # (see the module docstring); cheap, and no reference cycle.
        link = weakref.ref(module)
        for name in layout.modules:
            child = d[name]
            # Only copies get the link (a tree.map with is_leaf may put anything there).
            if isinstance(child, Module) and "_fp_from_tree" in child.__dict__:
                child.__dict__["_fp_parent"] = link
    return module


def _register_pytree(cls: type) -> None:
    jax.tree_util.register_pytree_with_keys(cls, _flatten_with_keys, _unflatten, _flatten)


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
            f"unexpected_keys={self.unexpected_keys})"
        )

    def __str__(self) -> str:
        return self.__repr__()


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    first = lines.pop(0)
    return first + "\n" + "\n".join(" " * spaces + line for line in lines)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# --------------------------------------------------------------------------------------------
# Module


class Module:
    """Base class of every layer, like ``torch.nn.Module``, and a JAX pytree.

    Subclasses call ``super().__init__()`` and then assign attributes as in torch:

    * ``nn.Parameter(x)``: a trainable leaf (in ``parameters()`` and ``state_dict()``);
    * ``nn.Buffer(x)`` or ``register_buffer``: a state leaf, not trained;
    * a ``Module``: a child;
    * anything else (a plain array, int, tuple, callable, the ``training`` flag): static state,
      part of the tree structure. A plain array is never trained or saved, exactly as a plain
      tensor attribute in torch.

    Reading a parameter or buffer attribute gives a ``jax.Array``. Subclasses are registered as
    pytrees automatically, so ``jax.jit``, ``jax.grad``, ``jax.vmap`` and ``jax.tree.map`` take
    modules directly; tree paths spell the ``state_dict()`` keys.
    """

    training: bool
    _fp_layout: _Layout

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_pytree(cls)

    def __init__(self) -> None:
        d = self.__dict__
        if "_fp_layout" in d:  # a second __init__ call re-initialises, as in torch
            d.clear()
        # Plain values set before super().__init__() (torch allows it) are static state like
        # any other: into the layout, or every copy JAX makes would lose them.
        early = {k: v for k, v in d.items() if not k.startswith("_fp_")}
        for name, value in early.items():
            _check_static(self, name, value)
        statics = {**early, "training": True}
        d["training"] = True
        d["_fp_layout"] = _Layout(type(self), (), (), (), statics)
        d["_fp_uids"] = {}
        trace = _current_trace()
        if trace is not None:
            d["_fp_trace"] = weakref.ref(trace)

    def __deepcopy__(self: T, memo: dict[Any, Any]) -> T:
        """An independent copy whose parameters get fresh uids, as torch's deepcopy makes new
        Parameter objects: ``ModuleList(copy.deepcopy(layer) for _ in range(n))`` works."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        d = self.__dict__
        copied = {k: copy.deepcopy(v, memo) for k, v in d.items() if k not in _NOT_COPIED}
        layout = d.get("_fp_layout")
        if layout is not None:
            copied["_fp_uids"] = {n: _copied_uid(u, memo) for n, u in _uids(self).items()}
            statics = {k: copied[k] for k in layout.statics}  # the same objects as in __dict__
            copied["_fp_layout"] = _Layout(
                layout.cls, layout.params, layout.buffers, layout.modules, statics
            )
            # A deep copy is a new model being built: mutable, and linked to its new parents.
            copied.pop("_fp_from_tree", None)
            for name in layout.modules:
                child = copied[name]
                if child is not None:
                    _PARENTS.setdefault(child, weakref.WeakSet()).add(new)
        trace = _current_trace()
        if trace is not None:
            copied["_fp_trace"] = weakref.ref(trace)
        object.__setattr__(new, "__dict__", copied)
        return new

    def __getstate__(self) -> dict[str, Any]:
        # Weak links cannot be pickled; identities are per process (an unpickled model has new
        # parameters, as torch's has new tensors).
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "__dict__", dict(state))
        layout = state.get("_fp_layout")
        if layout is not None:
            self.__dict__.pop("_fp_from_tree", None)
            for name in layout.modules:
                child = state[name]
                if child is not None:
                    _PARENTS.setdefault(child, weakref.WeakSet()).add(self)

    # ---------------------------------------------------------------- call

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses override it. ``module(x)`` calls it."""
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if _PRE_HOOKS in d or _HOOKS in d:
            return _hooks.call(self, args, kwargs)
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- hooks

    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> _hooks.RemovableHandle:
        """Call ``hook`` before every ``forward``, as torch does.

        ``hook(module, args) -> None or new args`` (a non-tuple result becomes a 1-tuple); with
        ``with_kwargs=True``, ``hook(module, args, kwargs) -> None or (new_args, new_kwargs)``.

        Arguments:
            hook: the callable.
            prepend: run it before the hooks already registered (else after them).
            with_kwargs: pass the keyword arguments too.

        Returns:
            A handle whose ``remove()`` unregisters it (also a context manager).

        The hook is static data of the module (see ``fparam/_hooks.py``): copies made by
        ``jit``, ``opt.step``, ``copy.deepcopy`` keep it, and it runs inside ``jit`` at trace
        time. Registering it inside a transformation raises, like any mutation there.
        """
        return _hooks.register(self, _hooks.PRE_HOOKS, hook, prepend, with_kwargs, False)

    def register_forward_hook(
        self,
        hook: Callable[..., Any],
        *,
        prepend: bool = False,
        with_kwargs: bool = False,
        always_call: bool = False,
    ) -> _hooks.RemovableHandle:
        """Call ``hook`` after every ``forward``, as torch does.

        ``hook(module, args, output) -> None or new output``; with ``with_kwargs=True``,
        ``hook(module, args, kwargs, output)``. ``args`` are the positional arguments
        ``forward`` received (after the pre-hooks).

        Arguments:
            hook: the callable.
            prepend: run it before the hooks already registered (else after them).
            with_kwargs: pass the keyword arguments too.
            always_call: run it even when ``forward`` (or an earlier hook) raises; its own
                exception is then turned into a warning and the first error re-raised.

        Returns:
            A handle whose ``remove()`` unregisters it (also a context manager).

        Stored and copied as :meth:`register_forward_pre_hook`'s hooks.
        """
        return _hooks.register(self, _hooks.HOOKS, hook, prepend, with_kwargs, always_call)

    @property
    def _forward_pre_hooks(self) -> OrderedDict[int, Callable[..., Any]]:
        return _hooks.as_dict(self, _hooks.PRE_HOOKS)

    @property
    def _forward_hooks(self) -> OrderedDict[int, Callable[..., Any]]:
        return _hooks.as_dict(self, _hooks.HOOKS)

    # ---------------------------------------------------------------- mutation guard

    def _check_mutable(self, action: str) -> None:
        """Refuse a mutation that the active JAX transformation would silently lose.

        Inside a trace, only a module built inside that same trace may change: the copy a
        transformation made of its argument (concrete leaves under ``vmap(in_axes=None)``,
        no leaves at all, or tracers) is thrown away when the trace ends, and a model captured
        by closure would change once, at trace time, or keep tracers after the trace.
        """
        trace = _current_trace()
        if trace is None:
            return
        d = self.__dict__
        created = d.get("_fp_trace")
        if created is not None and created() is trace:
            return
        message = _errors.TRACED_MUTATION if d.get("_fp_from_tree") else _errors.CAPTURED_MUTATION
        raise RuntimeError(message.format(action=action, cls=type(self).__name__))

    def _layout_or_raise(self, what: str) -> _Layout:
        layout = self.__dict__.get("_fp_layout")
        if layout is None:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")
        return layout

    def _commit(self, layout: _Layout, **values: Any) -> None:
        d = self.__dict__
        d.update(values)
        d["_fp_layout"] = layout
        for name, value in values.items():
            if layout.kind(name) in ("param", "buffer"):
                _note_owner(value, self, name)

    def _statics_without(self, layout: _Layout, name: str) -> dict[str, Any]:
        if name not in layout.statics:
            return layout.statics
        return {k: v for k, v in layout.statics.items() if k != name}

    def _remove_name(self, layout: _Layout, name: str) -> _Layout:
        """The layout without ``name``, whatever kind it was."""
        return layout.replace(
            params=tuple(p for p in layout.params if p[0] != name),
            buffers=tuple(b for b in layout.buffers if b[0] != name),
            modules=tuple(m for m in layout.modules if m != name),
            statics=self._statics_without(layout, name),
        )

    # ---------------------------------------------------------------- sharing checks

    def _subtree(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        d = self.__dict__
        for name in d["_fp_layout"].modules:
            child = d[name]
            if child is not None:
                yield from child._subtree(_join(prefix, name))

    def _check_no_sharing(self, name: str, value: Module | Parameter) -> None:
        """Refuse a second place for an object already in this tree (see SHARED_MODULE).

        The tree is every model this module belongs to: the check runs from each root that
        the parent links reach, so ``m.a.b = m.c`` is caught as well as ``m.b = m.c``.
        """
        for root, path in _roots(self):
            root._check_tree(self, path, name, value)

    def _check_tree(
        self, owner: Module, owner_path: str, name: str, value: Module | Parameter
    ) -> None:
        modules: dict[int, str] = {}
        uids: dict[int, str] = {}
        for path, module in self._subtree():
            modules[id(module)] = path
            d = module.__dict__
            module_uids = _uids(module)
            for pname, _ in d["_fp_layout"].params:
                if not (module is owner and pname == name) and d[pname] is not None:
                    uids[module_uids[pname]] = _join(path, pname)
        slot = _join(owner_path, name)
        if isinstance(value, Parameter):
            if value.uid in uids:
                raise ValueError(
                    _errors.SHARED_MODULE.format(
                        what="This nn.Parameter", first=uids[value.uid], second=slot
                    )
                )
            return
        replaced = owner.__dict__.get(name) if name in owner._fp_layout.modules else None
        if replaced is not None:
            for _, module in replaced._subtree():
                modules.pop(id(module), None)
            for _, module in replaced._subtree():
                for uid in _uids(module).values():
                    uids.pop(uid, None)
        for path, module in value._subtree(slot):
            if id(module) in modules:
                what = f"The {type(module).__name__} module"
                first = modules[id(module)] or "<root>"
                raise ValueError(_errors.SHARED_MODULE.format(what=what, first=first, second=path))
            modules[id(module)] = path
            d = module.__dict__
            module_uids = _uids(module)
            for pname, _ in d["_fp_layout"].params:
                if d[pname] is None:
                    continue
                uid = module_uids[pname]
                if uid in uids:
                    raise ValueError(
                        _errors.SHARED_MODULE.format(
                            what="An nn.Parameter", first=uids[uid], second=_join(path, pname)
                        )
                    )
                uids[uid] = _join(path, pname)

    # ---------------------------------------------------------------- registration

    def __setattr__(self, name: str, value: Any) -> None:
        layout = self.__dict__.get("_fp_layout")
        if layout is None:
            if isinstance(value, Parameter):
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            if isinstance(value, Module):
                raise AttributeError("cannot assign module before Module.__init__() call")
            if isinstance(value, Buffer):
                raise AttributeError("cannot assign buffer before Module.__init__() call")
            object.__setattr__(self, name, value)
            return
        kind = layout.kind(name)
        if isinstance(value, (Parameter, Module, Buffer)) and (not name or "." in name):
            # torch raises this for parameters and buffers; for modules it registers a name
            # its own load_state_dict cannot address, so fparam refuses that too.
            what = {Parameter: "parameter", Buffer: "buffer"}.get(type(value), "module")
            if not name:
                raise KeyError(f'{what} name can\'t be empty string ""')
            raise KeyError(f'{what} name can\'t contain "."')
        if isinstance(value, Parameter):
            self._set_parameter(name, value)
        elif kind == "param":
            if value is not None:
                raise TypeError(
                    f"cannot assign '{_typename(value)}' as parameter '{name}' "
                    "(nn.Parameter or None expected)"
                )
            self._set_parameter(name, None)
        elif isinstance(value, Module):
            self._set_module(name, value)
        elif kind == "module":
            if value is not None:
                raise TypeError(
                    f"cannot assign '{_typename(value)}' as child module '{name}' "
                    "(nn.Module or None expected)"
                )
            self._set_module(name, None)
        elif isinstance(value, Buffer) or kind == "buffer":
            if value is not None and not isinstance(value, Buffer) and not _is_array(value):
                raise TypeError(
                    f"cannot assign '{_typename(value)}' as buffer '{name}' "
                    "(nn.Buffer, array or None expected)"
                )
            if isinstance(value, Buffer):
                persistent = value.persistent
            else:
                persistent = next(b[1] for b in layout.buffers if b[0] == name)
            self.register_buffer(name, value, persistent=persistent)
        else:
            self._set_static(name, value)

    def _set_static(self, name: str, value: Any) -> None:
        descriptor = getattr(type(self), name, None)
        if hasattr(descriptor, "__set__"):  # a property: its setter stores what it needs
            object.__setattr__(self, name, value)
            return
        self._check_mutable(f"set attribute '{name}'")
        _check_static(self, name, value)
        layout = self._fp_layout
        if name in layout.statics:
            statics = dict(layout.statics)
            statics[name] = value
            new = layout.replace(statics=statics)
        else:
            new = self._remove_name(layout, name)
            new = new.replace(statics={**new.statics, name: value})
        self._commit(new, **{name: value})

    def _set_parameter(self, name: str, param: Parameter | None) -> None:
        layout = self._fp_layout
        self._check_mutable(f"set parameter '{name}'")
        if param is not None:
            self._check_no_sharing(name, param)
        requires_grad = param.requires_grad if param is not None else True
        entry = (name, requires_grad)
        if layout.kind(name) == "param":  # keep the position, as torch's ordered dict does
            params = tuple(entry if p[0] == name else p for p in layout.params)
            new = layout.replace(params=params)
        else:
            new = self._remove_name(layout, name)
            new = new.replace(params=(*new.params, entry))
        uids = _uids(self)
        self._commit(new, **{name: None if param is None else param.data})
        if param is None:
            uids.pop(name, None)
        else:
            uids[name] = param.uid
            # The assigned object now stands for this parameter: `p.requires_grad = False`
            # on it writes through, as on torch's Parameter.
            object.__setattr__(param, "_owner", self)
            object.__setattr__(param, "_name", name)

    def _set_requires_grad(self, name: str, requires_grad: bool) -> None:
        """A handle's ``requires_grad`` write (structure: the next jitted call retraces)."""
        self._check_mutable(f"set requires_grad of parameter '{name}'")
        layout = self._fp_layout
        params = tuple((n, requires_grad) if n == name else (n, rg) for n, rg in layout.params)
        self.__dict__["_fp_layout"] = layout.replace(params=params)

    def _set_parameter_data(self, name: str, array: jax.Array) -> None:
        """A handle's ``data`` write: the new array replaces the parameter's, in place."""
        self._check_mutable(f"set the data of parameter '{name}'")
        if _is_tracer(array):
            raise TypeError(_errors.TRACED_STATIC.format(name=name, cls=type(self).__name__))
        self._keep_array_flag(name)
        requires_grad = dict(self._fp_layout.params)[name]
        if requires_grad and not _can_require_grad(array):
            raise RuntimeError(
                "only arrays of floating point and complex dtype can require gradients "
                f"(parameter '{name}' would get dtype {array.dtype})"
            )
        self.__dict__[name] = array
        _note_owner(array, self, name)

    def _update_buffers(self, **values: Any) -> None:
        """Set buffers from a forward (BatchNorm's running statistics), as torch does in place;
        also parameters a forward changes outside autograd (``Embedding(max_norm=...)``).

        Eagerly, and on a module built inside the current trace: in place. On a copy that
        ``fparam.value_and_grad`` / ``fparam.grad`` / ``fparam.stateful`` are running: into
        the copy, and the wrapper carries the values out to the module it was given. Anywhere
        else inside a transformation the update would be lost: ``BufferUpdateError``.
        """
        from fparam import _state

        trace = _current_trace()
        d = self.__dict__
        if trace is not None:
            created = d.get("_fp_trace")
            mine = created is not None and created() is trace
            if not mine and not _state.is_collected(self):
                raise _state.BufferUpdateError(
                    _errors.BUFFER_UPDATE_LOST.format(
                        cls=type(self).__name__, names=", ".join(values)
                    )
                )
        layout = d["_fp_layout"]
        for name, value in values.items():
            # A parameter too: torch's Embedding(max_norm=...) renormalises its weight in place.
            if layout.kind(name) not in ("buffer", "param"):
                raise KeyError(f"'{name}' is not a buffer or parameter of {type(self).__name__}")
            d[name] = value
            if trace is None:
                _note_owner(value, self, name)

    def _write_buffer(self, name: str, value: Any) -> None:
        """Store a buffer value a collecting wrapper carried out of its trace (see _state)."""
        trace = _current_trace()
        d = self.__dict__
        if trace is not None and not d.get("_fp_from_tree"):
            created = d.get("_fp_trace")
            if created is None or created() is not trace:
                raise RuntimeError(
                    _errors.CAPTURED_MUTATION.format(
                        action=f"update buffer '{name}'", cls=type(self).__name__
                    )
                )
        d[name] = value
        if trace is None:
            _note_owner(value, self, name)

    def _param_handle(self, name: str) -> Parameter | None:
        """The ``Parameter`` handle of own parameter ``name`` (None when registered as None)."""
        d = self.__dict__
        value = d[name]
        if value is None:
            return None
        requires_grad = self._array_flag(name, value, dict(d["_fp_layout"].params)[name])
        return Parameter._handle(value, requires_grad, _uids(self)[name], self, name)

    def _keep_array_flag(self, name: str) -> None:
        """Before parameter ``name``'s array is replaced: move a ``requires_grad`` written on
        the old array into the module, or it would leave with the array (torch's
        ``m.fc.bias.requires_grad = False`` then ``m.load_state_dict(sd)`` keeps the freeze)."""
        layout = self.__dict__["_fp_layout"]
        if layout.kind(name) == "param" and self.__dict__.get(name) is not None:
            self._array_flag(name, self.__dict__[name], dict(layout.params)[name])

    def _array_flag(self, name: str, value: Any, requires_grad: bool) -> bool:
        """Honour torch's ``m.fc.weight.requires_grad = False`` written on the array itself.

        Reading ``m.fc.weight`` gives the stored ``jax.Array``, which accepts any attribute, so
        that line cannot be intercepted; fparam reads it back whenever it makes parameter
        handles (``parameters()``, building an optimizer) and moves it into the module.
        """
        flag = getattr(value, "requires_grad", None)
        if not isinstance(flag, bool) or flag == requires_grad or _current_trace() is not None:
            return requires_grad
        if flag and not _can_require_grad(value):
            return requires_grad
        self._set_requires_grad(name, flag)
        return flag

    def _set_module(self, name: str, module: Module | None) -> None:
        layout = self._fp_layout
        self._check_mutable(f"set child module '{name}'")
        if module is not None:
            if "_fp_layout" not in module.__dict__:
                raise AttributeError(
                    f"cannot assign module '{name}': its __init__ did not call super().__init__()"
                )
            self._check_no_sharing(name, module)
        if layout.kind(name) == "module":
            new = layout
        else:
            new = self._remove_name(layout, name)
            new = new.replace(modules=(*new.modules, name))
        self._commit(new, **{name: module})
        if module is not None:
            _PARENTS.setdefault(module, weakref.WeakSet()).add(self)

    def _check_new_name(self, name: Any, what: str, kind: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{what} name should be a string. Got {type(name).__name__}")
        if name == "":
            raise KeyError(f'{what} name can\'t be empty string ""')
        if "." in name:
            raise KeyError(f'{what} name can\'t contain "."')
        if hasattr(self, name) and self._fp_layout.kind(name) != kind:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter under ``name`` (``None`` registers an absent one, like ``bias=False``).

        Mirrors ``torch.nn.Module.register_parameter``: the same name checks, in the same order,
        with the same exception types.
        """
        self._layout_or_raise("parameter")
        self._check_new_name(name, "parameter", "param")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                "(nn.Parameter or None required)"
            )
        self._set_parameter(name, param)

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add a buffer: a state leaf that is not trained.

        Arguments:
            name: the attribute name.
            tensor: an array (or ``None``); NumPy input is converted to a ``jax.Array``.
            persistent: whether ``state_dict()`` includes it.
        """
        layout = self._layout_or_raise("buffer")
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError('buffer name can\'t contain "."')
        if name == "":
            raise KeyError('buffer name can\'t be empty string ""')
        if hasattr(self, name) and layout.kind(name) != "buffer":
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, (Buffer, Parameter, *_ARRAY_TYPES)):
            raise TypeError(
                f"cannot assign '{_typename(tensor)}' object to buffer '{name}' "
                "(array or None required)"
            )
        self._check_mutable(f"register buffer '{name}'")
        value = None if tensor is None else _to_jax(tensor, "Buffer")
        entry = (name, bool(persistent))
        if layout.kind(name) == "buffer":
            new = layout.replace(
                buffers=tuple(entry if b[0] == name else b for b in layout.buffers)
            )
        else:
            new = self._remove_name(layout, name)
            new = new.replace(buffers=(*new.buffers, entry))
        self._commit(new, **{name: value})

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module (``None`` registers an absent one that traversals skip)."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        layout = self._layout_or_raise("module")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {type(name).__name__}")
        if hasattr(self, name) and layout.kind(name) != "module":
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError('module name can\'t be empty string ""')
        self._set_module(name, module)

    register_module = add_module

    def _set_values(self, **values: Any) -> None:
        """Replace the arrays of existing parameters/buffers, keeping their kind and identity.

        What ``reset_parameters`` uses: torch re-initialises in place, so an optimizer built
        earlier still owns the parameters afterwards. A new value goes to the device or sharding
        of the committed array it replaces (DESIGN.md, rule 11).
        """
        self._check_mutable("reset parameter values")
        layout = self._fp_layout
        for name in values:
            if layout.kind(name) not in ("param", "buffer"):
                raise KeyError(f"'{name}' is not a parameter or buffer of {type(self).__name__}")
        for name, value in values.items():
            array = _to_jax(value, name)
            self._keep_array_flag(name)
            old = self.__dict__[name]
            if (
                isinstance(old, jax.Array)
                and not _is_tracer(old)
                and not _is_tracer(array)
                and old.committed
                and array.sharding != old.sharding
            ):
                array = _convert.put(array, old.sharding)
            self.__dict__[name] = array
            _note_owner(array, self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: every registered value lives in __dict__.
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        layout = self.__dict__.get("_fp_layout")
        if layout is None or (layout.kind(name) is None and name not in layout.statics):
            object.__delattr__(self, name)
            return
        self._check_mutable(f"delete attribute '{name}'")
        new = self._remove_name(layout, name)
        del self.__dict__[name]
        self.__dict__["_fp_layout"] = new

    def _replace_children(self, items: list[tuple[str, Module | None]]) -> None:
        """Swap the whole set of child modules (for containers that renumber their keys)."""
        layout = self._fp_layout
        self._check_mutable("rearrange child modules")
        with self._transaction():
            d = self.__dict__
            for name in layout.modules:
                del d[name]
            d["_fp_layout"] = layout.replace(modules=())
            for name, module in items:
                self._set_module(name, module)

    class _Transaction:
        """Restores a module's own state if a bulk operation fails: nothing is half-applied."""

        def __init__(self, module: Module) -> None:
            self.module = module

        def __enter__(self) -> None:
            self.saved = dict(self.module.__dict__)

        def __exit__(self, exc_type: Any, *rest: Any) -> None:
            if exc_type is not None:
                d = self.module.__dict__
                d.clear()
                d.update(self.saved)

    def _transaction(self) -> Module._Transaction:
        return Module._Transaction(self)

    # ---------------------------------------------------------------- torch-style views

    @property
    def _parameters(self) -> OrderedDict[str, Parameter | None]:
        return OrderedDict((n, self._param_handle(n)) for n, _ in self._fp_layout.params)

    @property
    def _buffers(self) -> OrderedDict[str, jax.Array | None]:
        d = self.__dict__
        return OrderedDict((n, d[n]) for n, _ in d["_fp_layout"].buffers)

    @property
    def _non_persistent_buffers_set(self) -> set[str]:
        return {n for n, persistent in self._fp_layout.buffers if not persistent}

    @property
    def _modules(self) -> OrderedDict[str, Module | None]:
        d = self.__dict__
        return OrderedDict((n, d[n]) for n in d["_fp_layout"].modules)

    # ---------------------------------------------------------------- traversal

    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Pre-order ``(name, module)`` pairs, the module itself first, as in torch."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        d = self.__dict__
        for name in d["_fp_layout"].modules:
            child = d[name]
            if child is not None:
                yield from child.named_modules(memo, _join(prefix, name), remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """Every module in the tree, pre-order, starting with this one."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct children with their names, in registration order, skipping ``None``."""
        seen: set[int] = set()
        d = self.__dict__
        for name in d["_fp_layout"].modules:
            child = d[name]
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        """Direct children, in registration order."""
        for _, child in self.named_children():
            yield child

    def _named_members(
        self,
        members: Callable[[Module], Iterator[tuple[str, Any, Any]]],
        prefix: str,
        recurse: bool,
        remove_duplicate: bool,
    ) -> Iterator[tuple[str, Any]]:
        seen: set[Any] = set()
        pairs = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in pairs:
            for name, identity, value in members(module):
                if remove_duplicate:
                    if identity in seen:
                        continue
                    seen.add(identity)
                yield _join(module_prefix, name), value

    @staticmethod
    def _own_parameters(module: Module) -> Iterator[tuple[str, Any, Parameter]]:
        d = module.__dict__
        if d.get("_fp_lazy"):
            _refuse_unbuilt(module, "parameters() / build the optimizer")
        uids = _uids(module)
        for name, requires_grad in d["_fp_layout"].params:
            value = d[name]
            if value is not None:
                uid = uids[name]
                requires_grad = module._array_flag(name, value, requires_grad)
                yield name, uid, Parameter._handle(value, requires_grad, uid, module, name)

    @staticmethod
    def _own_buffers(module: Module) -> Iterator[tuple[str, Any, jax.Array]]:
        d = module.__dict__
        if d.get("_fp_lazy"):
            _refuse_unbuilt(module, "buffers()")
        for name, _ in d["_fp_layout"].buffers:
            value = d[name]
            if value is not None:
                yield name, (id(module), name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs: each module's own parameters, then its children's.

        The order and names are torch's (§1.3 of the reference). Each ``Parameter`` handle
        holds the current array in ``.data`` and its ``requires_grad`` flag.
        """
        return self._named_members(self._own_parameters, prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The ``Parameter`` handles of ``named_parameters()``, a generator as in torch."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, jax.Array]]:
        """``(name, array)`` pairs for buffers (non-persistent ones included), torch's order."""
        return self._named_members(self._own_buffers, prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[jax.Array]:
        """The buffer arrays of ``named_buffers()``."""
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target: str) -> Module:
        """The module at the dotted path ``target`` (``''`` is this module), as in torch."""
        if target == "":
            return self
        module: Module = self
        for item in target.split("."):
            # torch's order: a missing attribute first, then one that is not a module.
            if not hasattr(module, item):
                raise AttributeError(f"{module._get_name()} has no attribute `{item}`")
            module = getattr(module, item)
            if not isinstance(module, Module):
                raise AttributeError(f"`{item}` is not an nn.Module")
        return module

    def _owner_and_name(self, target: str) -> tuple[Module, str]:
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if not hasattr(module, name):
            raise AttributeError(f"{module._get_name()} has no attribute `{name}`")
        return module, name

    def get_parameter(self, target: str) -> Parameter:
        """The ``Parameter`` handle at the dotted path ``target``."""
        module, name = self._owner_and_name(target)
        if module._fp_layout.kind(name) == "param":
            handle = module._param_handle(name)
            if handle is not None:
                return handle
        raise AttributeError(f"`{name}` is not an nn.Parameter")

    def get_buffer(self, target: str) -> jax.Array:
        """The buffer array at the dotted path ``target``."""
        module, name = self._owner_and_name(target)
        if module._fp_layout.kind(name) != "buffer":
            raise AttributeError(f"`{name}` is not a buffer")
        return module.__dict__[name]

    def apply(self: T, fn: Callable[[Module], Any]) -> T:
        """Call ``fn`` on every child (recursively) and then on this module; returns self.

        Inside ``fn``, torch's in-place initialisation works as a statement:
        ``nn.init.normal_(m.weight, 0.0, 0.02)`` re-initialises ``m.weight`` (outside
        transformations), whether the model was built here or returned by ``jit``.
        """
        for _, module in self.named_modules():
            d = module.__dict__
            layout = d["_fp_layout"]
            for name in layout.leaf_names[: len(layout.params) + len(layout.buffers)]:
                _note_owner(d[name], module, name)
        return self._apply_to_tree(fn)

    def _apply_to_tree(self: T, fn: Callable[[Module], Any]) -> T:
        for child in self.children():
            child._apply_to_tree(fn)
        fn(self)
        return self

    # ---------------------------------------------------------------- modes

    def train(self: T, mode: bool = True) -> T:
        """Set training mode on this module and every submodule, in place; returns self."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self._check_mutable("call train()/eval()")
        for module in self.modules():
            if module.__dict__["training"] is not mode:
                module._set_static("training", mode)
        return self

    def eval(self: T) -> T:
        """``train(False)``."""
        return self.train(False)

    def requires_grad_(self: T, requires_grad: bool = True) -> T:
        """Set ``requires_grad`` on every parameter in the tree, in place; returns self."""
        self._check_mutable("call requires_grad_()")
        for module in self.modules():
            d = module.__dict__
            layout = d["_fp_layout"]
            if requires_grad:
                for name, _ in layout.params:
                    if d[name] is not None and not _can_require_grad(d[name]):
                        raise RuntimeError(
                            "Only arrays of floating point and complex dtype can require "
                            f"gradients (parameter '{name}' has dtype {d[name].dtype})"
                        )
            params = tuple((n, bool(requires_grad)) for n, _ in layout.params)
            d["_fp_layout"] = layout.replace(params=params)
        return self

    # ---------------------------------------------------------------- device and dtype

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """Move and/or cast every parameter and buffer, in place; returns self (torch's
        ``Module.to``).

        Accepted as in torch: ``to(device=None, dtype=None, non_blocking=False)``,
        ``to(dtype)``, ``to(device)``, ``to(array)`` (its dtype and placement). A device is a
        ``jax.Device``, a ``jax.sharding.Sharding``, a torch-style string (``'cpu'``,
        ``'cuda'``, ``'cuda:1'``, ``'gpu'``, ``'tpu:0'``), a ``torch.device`` or an index.
        The dtype must be floating point or complex (``TypeError`` otherwise, as torch); only
        floating point and complex arrays are cast (integer buffers keep their dtype).
        ``non_blocking`` and ``memory_format`` are accepted and ignored.

        Raises:
            RuntimeError: no such device here (the message lists ``jax.devices()``).
            TypeError: a bad dtype, or a 64-bit dtype while ``jax_enable_x64`` is off.

        All or nothing: on error nothing changed. Parameters keep their identity (an optimizer
        built earlier still finds them by place), but an optimizer built before a dtype change
        refuses the model (its state has the old dtype): as torch advises, call ``.to()``
        before constructing optimizers. ``Parameter`` handles taken earlier keep the old
        arrays. Plain array attributes (static state) are not moved, as torch does not move
        plain tensor attributes.
        """
        device, dtype = _convert.parse_to(args, kwargs)
        target = None if dtype is None else _convert.inexact_only(dtype)
        _convert.convert(self, "to()", device, target)
        return self

    def cpu(self: T) -> T:
        """``to('cpu')``: every parameter and buffer on JAX's first CPU device; returns self."""
        _convert.convert(self, "cpu()", _convert.device_of("Module.cpu", "cpu"), None)
        return self

    def cuda(self: T, device: Any = None) -> T:
        """Every parameter and buffer on a GPU (``device``: an index, ``'cuda:1'``, a
        ``jax.Device``; ``None`` for the first), in place; returns self. A machine without a
        GPU raises ``RuntimeError`` naming the devices JAX has."""
        if device is None:
            device = "cuda"
        elif isinstance(device, (int, np.integer)) and not isinstance(device, bool):
            device = f"cuda:{int(device)}"
        _convert.convert(self, "cuda()", _convert.device_of("Module.cuda", device), None)
        return self

    def _cast_floating(self: T, method: str, dtype: Any) -> T:
        target = _convert.dtype_of(f"Module.{method}", dtype)
        _convert.convert(self, f"{method}()", None, _convert.floating_only(target))
        return self

    def float(self: T) -> T:
        """Floating point parameters and buffers to float32, in place; returns self."""
        return self._cast_floating("float", np.float32)

    def double(self: T) -> T:
        """Floating point parameters and buffers to float64, in place; returns self.

        Needs JAX's 64-bit mode (``jax.config.update('jax_enable_x64', True)``): without it
        ``TypeError``, rather than silently staying float32.
        """
        return self._cast_floating("double", np.float64)

    def half(self: T) -> T:
        """Floating point parameters and buffers to float16, in place; returns self."""
        return self._cast_floating("half", np.float16)

    def bfloat16(self: T) -> T:
        """Floating point parameters and buffers to bfloat16, in place; returns self."""
        return self._cast_floating("bfloat16", jnp.bfloat16)

    def type(self: T, dst_type: Any) -> T:
        """Every parameter and buffer, integer ones included, to ``dst_type``, in place; returns
        self (torch's ``Module.type``). A parameter that requires gradients cannot become an
        integer array (``RuntimeError``, as torch)."""
        target = _convert.dtype_of("Module.type", dst_type)
        _convert.convert(self, "type()", None, lambda current: target)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Does nothing: fparam keeps no ``.grad`` on parameters (gradients are values,
        returned by ``fparam.grad`` / ``jax.grad``), so there is nothing to reset. Kept so
        that ported training loops run unchanged."""

    def share_memory(self: T) -> T:
        """Does nothing and returns self: JAX arrays are immutable, so processes cannot share
        them for writing the way torch's shared-memory tensors are."""
        return self

    # ---------------------------------------------------------------- state dict

    def state_dict(
        self, *, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict[str, Any]:
        """Parameters and persistent buffers by torch key, in torch's order.

        Shared state is not deduplicated (fparam has none). The result carries torch's
        ``_metadata`` (``{path: {'version': 1}}``). Values are ``jax.Array``; with
        ``keep_vars=True`` parameters come as ``Parameter`` handles.
        """
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()  # type: ignore[attr-defined]
        metadata = getattr(destination, "_metadata", None)
        for path, module in self._subtree():
            module_prefix = prefix + (path + "." if path else "")
            if metadata is not None:
                metadata[module_prefix[:-1]] = {"version": 1}
            d = module.__dict__
            if d.get("_fp_lazy"):
                _refuse_unbuilt(module, "state_dict()")
            layout = d["_fp_layout"]
            for name, _ in layout.params:
                value = d[name]
                if value is not None:
                    if keep_vars:
                        value = module._param_handle(name)
                    destination[module_prefix + name] = value
            for name, persistent in layout.buffers:
                if persistent and d[name] is not None:
                    destination[module_prefix + name] = d[name]
        return destination

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        """Copy values into this module in place, by torch key; all or nothing.

        Arguments:
            state_dict: a mapping from keys to arrays: JAX or NumPy arrays, or torch tensors
                (anything ``numpy.asarray`` reads; torch is never imported).
            strict: whether missing and unexpected keys are errors (they are returned either
                way). Size mismatches and non-array values are errors even when not strict.
            assign: keep the incoming dtype instead of casting to the module's.

        Returns:
            ``(missing_keys, unexpected_keys)``, a named tuple as in torch.

        Raises:
            RuntimeError: torch's message (``Error(s) in loading state_dict for ...``). When it
                raises, the module is unchanged.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        self._check_mutable("call load_state_dict()")
        # Unbuilt lazy layers are built from the checkpoint's shapes first (torch does it in a
        # pre-hook); undone with everything else if the load fails.
        root_name = type(self).__name__  # a lazy root's own name, as torch reports it
        lazies = [(p, m) for p, m in self._subtree() if m.__dict__.get("_fp_lazy") is not None]
        saved = [(m, type(m), dict(m.__dict__)) for _, m in lazies]
        try:
            for path, module in lazies:
                module._fp_load_shapes(state_dict, path + "." if path else "")  # type: ignore[attr-defined]
            return self._load_state_dict(state_dict, strict, assign, root_name)
        except BaseException:
            for module, cls, state in saved:
                object.__setattr__(module, "__class__", cls)
                object.__setattr__(module, "__dict__", state)
            raise

    def _load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool, assign: bool, root_name: str
    ) -> _IncompatibleKeys:
        missing: list[str] = []
        unexpected: list[str] = []
        errors: list[str] = []
        staged: list[tuple[Module, str, Any]] = []

        def load(module: Module, local: dict[str, Any], prefix: str) -> None:
            d = module.__dict__
            layout = d["_fp_layout"]
            local_names = [n for n, _ in layout.params if d[n] is not None]
            local_names += [n for n, p in layout.buffers if p and d[n] is not None]
            # A lazy layer the checkpoint could not build: its placeholders are missing.
            missing.extend(prefix + n for n in d.get("_fp_lazy") or () if prefix + n not in local)
            for name in local_names:
                key = prefix + name
                if key not in local:
                    missing.append(key)
                    continue
                current = d[name]
                incoming = local[key]
                array = _checkpoint_array(incoming)
                if array is None:
                    errors.append(_errors.LOAD_NOT_ARRAY.format(key=key, type=type(incoming)))
                    continue
                if current.ndim == 0 and array.shape == (1,):
                    array = array[0]
                if array.shape != current.shape:
                    errors.append(
                        _errors.LOAD_SIZE_MISMATCH.format(
                            key=key, src=tuple(array.shape), dst=tuple(current.shape)
                        )
                    )
                    continue
                # Convert now, so that a value that cannot be read fails before anything is
                # written: all or nothing.
                problem, new = _converted(array, current, assign, key)
                trainable = dict(layout.params).get(name, False)
                if problem is None and assign and trainable and not _can_require_grad(new):
                    problem = _errors.LOAD_ASSIGN_NOT_FLOAT.format(key=key, dtype=new.dtype)
                if problem is not None:
                    errors.append(problem)
                    continue
                staged.append((module, name, new))
            # Collected whether strict or not, as torch does; only raising depends on `strict`.
            for key in local:
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                head = rest.split(".", 1)[0]
                if "." in rest:
                    if head not in layout.modules:
                        unexpected.append(key)
                elif rest not in local_names:
                    unexpected.append(key)
            for name in layout.modules:
                child = d[name]
                if child is not None:
                    child_prefix = prefix + name + "."
                    sub = {k: v for k, v in local.items() if k.startswith(child_prefix)}
                    load(child, sub, child_prefix)

        load(self, dict(state_dict), "")
        if strict:
            if unexpected:
                keys = ", ".join(f'"{k}"' for k in unexpected)
                errors.insert(0, f"Unexpected key(s) in state_dict: {keys}. ")
            if missing:
                keys = ", ".join(f'"{k}"' for k in missing)
                errors.insert(0, f"Missing key(s) in state_dict: {keys}. ")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {root_name}:\n\t" + "\n\t".join(errors)
            )
        for module, name, new in staged:
            module._keep_array_flag(name)
            module.__dict__[name] = new
            _note_owner(new, module, name)
        return _IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        """Extra text for ``repr`` (the layer's configuration); override in subclasses."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()
        ]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


_register_pytree(Module)


def _refuse_unbuilt(module: Module, what: str) -> None:
    names = ", ".join(module.__dict__["_fp_lazy"])
    raise RuntimeError(
        _errors.LAZY_UNBUILT.format(cls=type(module).__name__, names=names, what=what)
    )


def _converted(array: Any, current: Any, assign: bool, key: str) -> tuple[str | None, Any]:
    """``(problem, value)``: the checkpoint value as it will be stored (the module's dtype, or
    its own with ``assign``, and the module's placement), or a description of why it cannot be.
    """
    try:
        host = np.asarray(array) if not isinstance(array, jax.Array) else array
        # With assign the value keeps its dtype, as far as JAX can hold it (64-bit types off).
        target = jax.dtypes.canonicalize_dtype(host.dtype) if assign else current.dtype
        problem = check_narrowing(host, target, f'value for "{key}"')
        if problem is not None:
            return problem, None
        # A copy: the checkpoint's buffer (a torch tensor's numpy view, say) may change later.
        new = jnp.array(host, dtype=target, copy=True)
    except (TypeError, ValueError) as error:
        return f'value for "{key}" cannot be read as an array ({error})', None
    if isinstance(current, jax.Array) and current.committed:
        # Keep an explicit placement (a device or a sharding the user chose); an uncommitted
        # array stays uncommitted, so jit sees the same input placement.
        new = _convert.put(new, current.sharding)
    return None, new


def _checkpoint_array(value: Any) -> Any:
    """A checkpoint value as an array, or None when it is not array-like (torch's rule)."""
    if isinstance(value, Parameter):
        return value.data
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return value
    if hasattr(value, "__array__") and hasattr(value, "shape"):
        if hasattr(value, "detach"):  # a torch tensor, read without importing torch
            return _torch_to_numpy(value)
        return np.asarray(value)
    return None
