"""Containers: ``Sequential``, ``ModuleList``, ``ModuleDict``, ``ParameterList``, ``ParameterDict``.

They mirror ``torch/nn/modules/container.py`` (names, orders, key numbering and errors; see §2 of
the reference). Every mutating method works in place at the Python level, during construction
and at top level, and is all-or-nothing: a bad item leaves the container as it was.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from typing import Any, TypeVar, overload

import jax
import numpy as np

from fparam._module import Buffer, Module, Parameter, _torch_to_numpy, _typename

__all__ = ["ModuleDict", "ModuleList", "ParameterDict", "ParameterList", "Sequential"]

_T = TypeVar("_T")


def _index_in_range(idx: Any, size: int) -> int:
    """``operator.index(idx)`` wrapped into ``[0, size)``, or torch's IndexError."""
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range")
    return idx % size if size else idx


def _check_module(module: Any) -> None:
    if not isinstance(module, Module) and module is not None:
        raise TypeError(f"{_typename(module)} is not a Module subclass")


class Sequential(Module):
    """Modules called in order, like ``torch.nn.Sequential``.

    ``Sequential(m0, m1, ...)`` names the children ``'0', '1', ...``; ``Sequential(OrderedDict)``
    uses the dict's keys. Integer indexing is positional; a slice returns a new ``Sequential``
    of the same modules that keeps their original keys.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def _renumber(self, modules: Iterable[Module | None]) -> None:
        self._replace_children([(str(i), m) for i, m in enumerate(modules)])

    @overload
    def __getitem__(self, idx: slice) -> Sequential: ...
    @overload
    def __getitem__(self, idx: int) -> Module: ...
    def __getitem__(self, idx: Any) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return self.__class__(OrderedDict(items[idx]))
        return items[_index_in_range(idx, len(items))][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        keys = list(self._modules)
        setattr(self, keys[_index_in_range(idx, len(keys))], module)

    def __delitem__(self, idx: int | slice) -> None:
        with self._transaction():
            keys = list(self._modules)
            doomed = (
                keys[idx] if isinstance(idx, slice) else [keys[_index_in_range(idx, len(keys))]]
            )
            for key in doomed:
                delattr(self, key)
            # torch renumbers after a deletion, named Sequentials included.
            self._renumber(self._modules.values())

    def __len__(self) -> int:
        return len(self._fp_layout.modules)

    def __iter__(self) -> Iterator[Module]:
        d = self.__dict__
        return iter([d[name] for name in self._fp_layout.modules])

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError(
                "add operator supports only objects of Sequential class, "
                f"but {type(other)} is given."
            )
        ret = Sequential()
        for layer in chain(self, other):
            ret.append(layer)
        return ret

    def __iadd__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError(
                "add operator supports only objects of Sequential class, "
                f"but {type(other)} is given."
            )
        with self._transaction():
            offset = len(self)
            for i, module in enumerate(other):
                self.add_module(str(i + offset), module)
        return self

    def _repeated(self, factor: Any) -> list[Module]:
        if not isinstance(factor, int):
            raise TypeError(f"unsupported operand type(s) for *: {type(self)} and {type(factor)}")
        if factor <= 0:
            raise ValueError(f"Non-positive multiplication factor {factor} for {type(self)}")
        return list(self) * factor

    def __mul__(self, other: int) -> Sequential:
        # torch repeats the same module objects, i.e. shared weights; fparam refuses sharing,
        # so any factor above 1 raises the sharing error from add_module.
        return Sequential(*self._repeated(other))

    __rmul__ = __mul__

    def __imul__(self, other: int) -> Sequential:
        modules = self._repeated(other)
        with self._transaction():
            for i, module in enumerate(modules[len(self) :], start=len(self)):
                self.add_module(str(i), module)
        return self

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end under key ``str(len(self))``; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Insert ``module`` before position ``index`` (negative counts from the end)."""
        if not isinstance(module, Module):
            raise AssertionError(f"module should be of type: {Module}")
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"Index out of range: {index}")
        if index < 0:
            index += n
        modules = list(self)
        modules.insert(index, module)
        self._renumber(modules)
        return self

    def extend(self, sequential: Iterable[Module]) -> Sequential:
        """Append every module of ``sequential``; returns self."""
        with self._transaction():
            for layer in sequential:
                self.append(layer)
        return self

    def pop(self, key: int | slice) -> Any:
        """Remove and return the module(s) at ``key``; the rest are renumbered."""
        value = self[key]
        del self[key]
        return value

    def forward(self, input: Any) -> Any:
        """Feed ``input`` through every module in order (an empty Sequential returns it)."""
        for module in self:
            input = module(input)
        return input


class ModuleList(Module):
    """A list of modules, like ``torch.nn.ModuleList``: keys ``'0'..'n-1'``, no forward."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self += modules

    def _renumber(self, modules: Iterable[Module | None]) -> None:
        self._replace_children([(str(i), m) for i, m in enumerate(modules)])

    def _get_abs_string_index(self, idx: Any) -> str:
        return str(_index_in_range(idx, len(self)))

    @overload
    def __getitem__(self, idx: slice) -> ModuleList: ...
    @overload
    def __getitem__(self, idx: int) -> Module: ...
    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return self.__class__(list(self)[idx])
        return self.__dict__[self._get_abs_string_index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, self._get_abs_string_index(idx), module)

    def __delitem__(self, idx: int | slice) -> None:
        with self._transaction():
            if isinstance(idx, slice):
                for k in range(len(self))[idx]:
                    delattr(self, str(k))
            else:
                delattr(self, self._get_abs_string_index(idx))
            self._renumber(self._modules.values())

    def __len__(self) -> int:
        return len(self._fp_layout.modules)

    def __iter__(self) -> Iterator[Module]:
        d = self.__dict__
        return iter([d[name] for name in self._fp_layout.modules])

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        combined = ModuleList()
        for i, module in enumerate(chain(self, other)):
            combined.add_module(str(i), module)
        return combined

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before ``index``.

        torch 2.13 neither type-checks nor handles negative indices here (it corrupts the list);
        fparam checks both, as ``Sequential.insert`` does.
        """
        _check_module(module)
        n = len(self)
        index = operator.index(index)
        if not -n <= index <= n:
            raise IndexError(f"Index out of range: {index}")
        if index < 0:
            index += n
        modules = list(self)
        modules.insert(index, module)
        self._renumber(modules)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def pop(self, key: int | slice) -> Any:
        """Remove and return the module(s) at ``key``; the rest are renumbered."""
        value = self[key]
        del self[key]
        return value

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of an iterable; returns self."""
        if not isinstance(modules, Iterable):
            raise TypeError(
                "ModuleList.extend should be called with an iterable, but got "
                + type(modules).__name__
            )
        with self._transaction():
            offset = len(self)
            for i, module in enumerate(modules):
                self.add_module(str(offset + i), module)
        return self

    def __repr__(self) -> str:
        # torch compresses runs of identical reprs: "(0-1): 2 x Linear(...)".
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        lines = []
        start = 0
        for end in range(1, len(reprs) + 1):
            if end < len(reprs) and reprs[end] == reprs[start]:
                continue
            body = _indent(reprs[start])
            if end - start == 1:
                lines.append(f"({start}): {body}")
            else:
                lines.append(f"({start}-{end - 1}): {end - start} x {body}")
            start = end
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


def _indent(text: str) -> str:
    first, *rest = text.split("\n")
    return "\n".join([first, *("  " + line for line in rest)])


class ModuleDict(Module):
    """An ordered dict of modules, like ``torch.nn.ModuleDict`` (insertion order kept)."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        modules = self._modules
        if key not in modules:
            raise KeyError(key)
        return modules[key]  # type: ignore[return-value]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self._fp_layout.modules:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._fp_layout.modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._fp_layout.modules)

    def __contains__(self, key: object) -> bool:
        return key in self._fp_layout.modules

    def clear(self) -> None:
        """Remove every module."""
        self._replace_children([])

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        value = self[key]
        del self[key]
        return value

    def keys(self) -> Iterable[str]:
        """The keys, in insertion order."""
        return self._modules.keys()

    def items(self) -> Iterable[tuple[str, Module]]:
        """``(key, module)`` pairs, in insertion order."""
        return self._modules.items()  # type: ignore[return-value]

    def values(self) -> Iterable[Module]:
        """The modules, in insertion order."""
        return self._modules.values()  # type: ignore[return-value]

    def update(self, modules: Any) -> None:
        """Add from a mapping (order kept, plain dicts too) or an iterable of pairs."""
        if not isinstance(modules, Iterable):
            raise TypeError(
                "ModuleDict.update should be called with an iterable of key/value pairs, "
                "but got " + type(modules).__name__
            )
        pairs = _pairs(modules, "ModuleDict", sort_plain_mappings=False)
        with self._transaction():
            for key, module in pairs:
                self[key] = module


def _pairs(values: Any, owner: str, sort_plain_mappings: bool) -> list[tuple[Any, Any]]:
    """Validate an update argument as torch does and return its (key, value) pairs."""
    if isinstance(values, (OrderedDict, ModuleDict, ParameterDict)):
        return list(values.items())
    if isinstance(values, Mapping):
        items = list(values.items())
        return sorted(items) if sort_plain_mappings else items
    pairs = []
    for j, item in enumerate(values):
        if not isinstance(item, Iterable):
            raise TypeError(
                f"{owner} update sequence element #{j} should be Iterable; is" + type(item).__name__
            )
        item = tuple(item)
        if len(item) != 2:
            raise ValueError(
                f"{owner} update sequence element #{j} has length {len(item)}; 2 is required"
            )
        pairs.append(item)
    return pairs


def _is_torch(value: Any, module: str, name: str) -> bool:
    """Whether ``value`` is an instance of torch's ``module.name`` (torch is never imported)."""
    return any(c.__name__ == name and c.__module__ == module for c in type(value).__mro__)


def _as_parameter(value: Any) -> Any:
    """What torch's parameter containers store for ``value``, on every add path.

    torch wraps any tensor in a ``Parameter`` (a ``Parameter`` keeps its ``requires_grad``; a
    plain tensor or a ``Buffer`` gets ``requires_grad=True``, whatever its own flag) and keeps
    other objects as plain entries. fparam does the same with torch tensors and with its own
    arrays (JAX and NumPy), which play the tensor's part. An integer array raises torch's
    ``RuntimeError`` (it cannot require gradients).
    """
    if isinstance(value, Buffer):
        return Parameter(value.data)
    if isinstance(value, (jax.Array, np.ndarray)):
        return Parameter(value)
    if _is_torch(value, "torch", "Tensor"):
        frozen = _is_torch(value, "torch.nn.parameter", "Parameter") and not value.requires_grad
        # A copy: the container must not share memory with the torch tensor.
        return Parameter(np.array(_torch_to_numpy(value), copy=True), requires_grad=not frozen)
    return value


class ParameterList(Module):
    """A list of parameters, like ``torch.nn.ParameterList``.

    Arrays and torch tensors are turned into ``Parameter``s (a torch ``Parameter`` keeps its
    ``requires_grad``); other objects are kept as plain (static) entries,
    counted by ``len`` but not parameters. Indexing returns arrays, as reading any parameter
    attribute does.
    """

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        self._size = 0
        if values is not None:
            self += values

    def _get_abs_string_index(self, idx: Any) -> str:
        return str(_index_in_range(idx, len(self)))

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            out = self.__class__()
            for i in range(*idx.indices(len(self))):
                out.append(self._entry(str(i)))
            return out
        return self.__dict__[self._get_abs_string_index(idx)]

    def _entry(self, key: str) -> Any:
        """The stored object at ``key``: a Parameter handle for parameters, else the object."""
        if self._fp_layout.kind(key) == "param":
            return self._param_handle(key)
        return self.__dict__[key]

    def __setitem__(self, idx: int, param: Any) -> None:
        setattr(self, self._get_abs_string_index(idx), _as_parameter(param))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        return iter(self[i] for i in range(len(self)))

    def __iadd__(self, parameters: Iterable[Any]) -> ParameterList:
        return self.extend(parameters)

    def __dir__(self) -> list[str]:
        return [key for key in super().__dir__() if not key.isdigit()]

    def append(self, value: Any) -> ParameterList:
        """Add ``value`` at the end (an array becomes a Parameter); returns self."""
        value = _as_parameter(value)
        with self._transaction():
            new_idx = len(self)
            self._size = new_idx + 1
            setattr(self, str(new_idx), value)
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        """Append every item of an iterable (not an array); returns self."""
        if not isinstance(values, Iterable) or isinstance(values, (jax.Array, np.ndarray)):
            raise TypeError(
                "ParameterList.extend should be called with an iterable, but got "
                + type(values).__name__
            )
        with self._transaction():
            for value in values:
                self.append(value)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ParameterList should not be called.")

    def extra_repr(self) -> str:
        lines = []
        for k in range(len(self)):
            value = self._entry(str(k))
            if isinstance(value, Parameter):
                size = "x".join(str(s) for s in value.shape)
                lines.append(f"  ({k}): Parameter containing: [{value.dtype} of size {size}]")
            else:
                lines.append(f"  ({k}): Object of type: {type(value).__name__}")
        return "\n".join(lines)


class ParameterDict(Module):
    """An ordered dict of parameters, like ``torch.nn.ParameterDict``.

    Arrays and torch tensors become ``Parameter``s (a torch ``Parameter`` keeps its
    ``requires_grad``); other objects are kept as plain entries. Built from a plain
    ``dict``, the keys are inserted in sorted order (torch's rule); from an ``OrderedDict``,
    another ``ParameterDict`` or an iterable of pairs, in the given order. A missing key raises
    an error that is both a ``KeyError`` and torch's ``AttributeError``.
    """

    def __init__(self, parameters: Any = None) -> None:
        super().__init__()
        self._keys: tuple[str, ...] = ()
        if parameters is not None:
            self.update(parameters)

    def _key_to_attr(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(
                "Index given to ParameterDict cannot be used as a key as it is not a string "
                f"(type is '{type(key).__name__}')."
            )
        return key

    def __getitem__(self, key: str) -> Any:
        attr = self._key_to_attr(key)
        if attr not in self._keys:
            raise _MissingKey(f"'{type(self).__name__}' object has no attribute '{key}'")
        return self.__dict__[attr]

    def __setitem__(self, key: str, value: Any) -> None:
        attr = self._key_to_attr(key)
        value = _as_parameter(value)
        with self._transaction():
            if attr not in self._keys:
                if hasattr(self, attr) or "." in attr or attr == "":
                    # The same checks register_parameter makes, for non-array entries too.
                    self._check_new_name(attr, "parameter", "param")
                self._keys = (*self._keys, attr)
            setattr(self, attr, value)

    def __delitem__(self, key: str) -> None:
        self[key]  # raises for a missing key
        with self._transaction():
            self._keys = tuple(k for k in self._keys if k != key)
            delattr(self, key)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def _entries(self) -> list[tuple[str, Any]]:
        params = dict(self._fp_layout.params)
        out = []
        for key in self._keys:
            value = self.__dict__[key]
            if key in params and value is not None:
                value = self._param_handle(key)
            out.append((key, value))
        return out

    def copy(self) -> ParameterDict:
        """A new ParameterDict with the same entries, in order."""
        return ParameterDict(OrderedDict(self._entries()))

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``self[key]`` if present, else set it to ``default`` and return that."""
        if key not in self:
            self[key] = default
        return self[key]

    def clear(self) -> None:
        """Remove every entry."""
        with self._transaction():
            for key in self._keys:
                delattr(self, key)
            self._keys = ()

    def pop(self, key: str) -> Any:
        """Remove ``key`` and return its value."""
        value = self[key]
        del self[key]
        return value

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last inserted ``(key, value)`` pair."""
        if not self._keys:
            raise KeyError("popitem(): dictionary is empty")
        key = self._keys[-1]
        return key, self.pop(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` if present, else ``default``."""
        return self[key] if key in self else default  # noqa: SIM401 (this *is* get)

    def fromkeys(self, keys: Iterable[str], default: Any = None) -> ParameterDict:
        """A new ParameterDict with ``keys`` all set to ``default``."""
        return ParameterDict((k, default) for k in keys)

    def keys(self) -> Iterable[str]:
        """The keys, in order."""
        return list(self._keys)

    def items(self) -> Iterable[tuple[str, Any]]:
        """``(key, value)`` pairs, in order."""
        return [(k, self[k]) for k in self._keys]

    def values(self) -> Iterable[Any]:
        """The values, in order."""
        return [self[k] for k in self._keys]

    def update(self, parameters: Any) -> None:
        """Add from a mapping or an iterable of pairs (a plain dict's keys are sorted)."""
        if not isinstance(parameters, Iterable):
            raise TypeError(
                "ParametersDict.update should be called with an iterable of key/value pairs, "
                "but got " + type(parameters).__name__
            )
        if isinstance(parameters, ParameterDict):
            pairs = parameters._entries()
        else:
            pairs = _pairs(parameters, "ParameterDict", sort_plain_mappings=True)
        with self._transaction():
            for key, value in pairs:
                self[key] = value

    def __or__(self, other: ParameterDict) -> ParameterDict:
        copy = self.copy()
        copy.update(other)
        return copy

    def __ror__(self, other: ParameterDict) -> ParameterDict:
        copy = other.copy()
        copy.update(self)
        return copy

    def __ior__(self, other: ParameterDict) -> ParameterDict:
        self.update(other)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ParameterDict should not be called.")

    def extra_repr(self) -> str:
        lines = []
        for key, value in self._entries():
            if isinstance(value, Parameter):
                size = "x".join(str(s) for s in value.shape)
                lines.append(f"  ({key}): Parameter containing: [{value.dtype} of size {size}]")
            else:
                lines.append(f"  ({key}): Object of type: {type(value).__name__}")
        return "\n".join(lines)


class _MissingKey(KeyError, AttributeError):
    """A missing ParameterDict key: torch raises AttributeError, Python users expect KeyError."""

    def __str__(self) -> str:
        return str(self.args[0])
