"""Forward hooks and forward pre-hooks, with torch's calling conventions.

How hooks are stored
--------------------
A module's hooks are static data: ``_fp_forward_pre_hooks`` and ``_fp_forward_hooks`` are
tuples of :class:`_Hook` entries (an id, the callable and its flags), immutable and hashable,
kept in the module's layout like any other static attribute. So every copy of the module that
JAX makes (``jit`` outputs, ``opt.step``'s new model, ``jax.tree.map``), ``copy.deepcopy`` and
``load_state_dict`` keep them, and a jitted function sees them when it traces. Registering or
removing a hook changes the tree structure: the next jitted call traces again, once. A module
with no hooks holds neither attribute, so hooks never tell two hook-free models apart.

Hooks run where ``forward`` runs: eagerly on arrays, inside ``jit`` on tracers (once, at trace
time; a jitted function returns what a hook collected by returning it).
"""

from __future__ import annotations

import itertools
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from fparam._module import Module

__all__ = ["RemovableHandle"]

PRE_HOOKS = "_fp_forward_pre_hooks"
HOOKS = "_fp_forward_hooks"

_BAD_PRE_HOOK_RESULT = (
    "forward pre-hook must return None or a tuple of (new_args, new_kwargs), but got {result}."
)
_NOT_CALLABLE = "{method}: hook must be callable, got {type}"
_ALWAYS_CALL_FAILED = (
    "module forward hook with ``always_call=True`` raised an exception that was silenced as "
    "another error was raised in forward: {error}"
)

_id_lock = threading.Lock()
_ids = itertools.count()


def _next_id() -> int:
    with _id_lock:
        return next(_ids)


class _Hook(NamedTuple):
    """One registered hook: static data, hashed by its id and the callable's identity."""

    id: int
    fn: Callable[..., Any]
    with_kwargs: bool
    always_call: bool


class RemovableHandle:
    """What ``register_forward_hook`` / ``register_forward_pre_hook`` return, like torch's
    ``torch.utils.hooks.RemovableHandle``: ``remove()`` takes the hook off, and ``with handle:``
    removes it when the block ends.

    The handle knows the module it was registered on. A copy of that module (the model a
    jitted step returned, a deep copy) carries the hook too; ``remove(model)`` takes it off
    every module of ``model``'s tree as well, so ``handle.remove(model)`` after a training loop
    removes it from the model in hand.
    """

    __slots__ = ("__weakref__", "_module", "id")

    def __init__(self, module: Module, hook_id: int) -> None:
        self._module = weakref.ref(module)
        self.id = hook_id

    def remove(self, *models: Module) -> None:
        """Remove the hook from the module it was registered on (and from every module in the
        trees of ``models``); a hook already removed is ignored, as in torch."""
        targets = [m for m in (self._module(),) if m is not None]
        for model in models:
            targets.extend(model.modules())
        for module in targets:
            _remove(module, self.id)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<RemovableHandle id={self.id}>"


def register(
    module: Module, kind: str, hook: Any, prepend: bool, with_kwargs: bool, always_call: bool
) -> RemovableHandle:
    method = "register_forward_pre_hook" if kind == PRE_HOOKS else "register_forward_hook"
    if not callable(hook):
        raise TypeError(_NOT_CALLABLE.format(method=method, type=type(hook).__name__))
    module._check_mutable(f"call {method}()")
    entry = _Hook(_next_id(), hook, bool(with_kwargs), bool(always_call))
    current: tuple[_Hook, ...] = module.__dict__.get(kind, ())
    module._set_static(kind, (entry, *current) if prepend else (*current, entry))
    return RemovableHandle(module, entry.id)


def _remove(module: Module, hook_id: int) -> None:
    d = module.__dict__
    for kind in (PRE_HOOKS, HOOKS):
        current = d.get(kind)
        if current is None or all(h.id != hook_id for h in current):
            continue
        module._check_mutable("remove a hook")
        kept = tuple(h for h in current if h.id != hook_id)
        if kept:
            module._set_static(kind, kept)
        else:  # no hooks left: the structure of a module that never had any
            delattr(module, kind)


def as_dict(module: Module, kind: str) -> OrderedDict[int, Callable[..., Any]]:
    """torch's ``module._forward_hooks`` view: ``{id: hook}`` in calling order."""
    return OrderedDict((h.id, h.fn) for h in module.__dict__.get(kind, ()))


def call(module: Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``module(*args, **kwargs)`` with its hooks, exactly as torch's ``Module._call_impl``."""
    d = module.__dict__
    result = None
    called: set[int] = set()
    try:
        for hook in d.get(PRE_HOOKS, ()):
            if hook.with_kwargs:
                new = hook.fn(module, args, kwargs)
                if new is not None:
                    if isinstance(new, tuple) and len(new) == 2:
                        args, kwargs = new
                    else:
                        raise RuntimeError(_BAD_PRE_HOOK_RESULT.format(result=new))
            else:
                new = hook.fn(module, args)
                if new is not None:
                    args = new if isinstance(new, tuple) else (new,)
        result = module.forward(*args, **kwargs)
        for hook in d.get(HOOKS, ()):
            if hook.always_call:
                called.add(hook.id)
            if hook.with_kwargs:
                new = hook.fn(module, args, kwargs, result)
            else:
                new = hook.fn(module, args, result)
            if new is not None:
                result = new
        return result
    except Exception:
        for hook in d.get(HOOKS, ()):
            if not hook.always_call or hook.id in called:
                continue
            try:
                if hook.with_kwargs:
                    new = hook.fn(module, args, kwargs, result)
                else:
                    new = hook.fn(module, args, result)
                if new is not None:
                    result = new
            except Exception as error:
                warnings.warn(_ALWAYS_CALL_FAILED.format(error=error), stacklevel=3)
        raise
