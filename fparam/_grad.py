"""``fparam.grad`` / ``fparam.value_and_grad``: differentiate trainable Parameters only.

``jax.grad`` over a module differentiates every floating leaf, buffers and frozen parameters
included. These wrappers split the differentiated arguments into trainable parameters
(``requires_grad=True``; any floating array outside a module counts too) and everything else,
once per trace; the returned gradient has the argument's structure, with ``None`` where nothing
was differentiated, so ``opt.step`` skips those leaves exactly as torch skips ``grad is None``.

Buffers a forward changes (BatchNorm's running statistics) are carried out of the function into
the modules the wrapper was given (see ``fparam/_state.py``); :func:`stateful` does the same for
a forward that needs no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fparam import _state
from fparam._module import Module

__all__ = ["grad", "stateful", "trainable_mask", "value_and_grad"]


def _is_module(x: Any) -> bool:
    return isinstance(x, Module)


def trainable_mask(tree: Any) -> list[bool]:
    """One flag per leaf of ``jax.tree.leaves(tree)``: is it a trainable parameter?

    Inside modules, a leaf is trainable when it is a parameter with ``requires_grad`` and a
    floating dtype; buffers are not. Outside modules, floating arrays are trainable.
    """
    mask: list[bool] = []

    def visit_module(module: Module) -> None:
        d = module.__dict__
        layout = d["_fp_layout"]
        for name, requires_grad in layout.params:
            for leaf in jax.tree.leaves(d[name]):
                mask.append(requires_grad and jnp.issubdtype(leaf.dtype, jnp.inexact))
        for name, _ in layout.buffers:
            mask.extend(False for _ in jax.tree.leaves(d[name]))
        for name in layout.modules:
            if d[name] is not None:
                visit_module(d[name])

    for node in jax.tree.leaves(tree, is_leaf=_is_module):
        if isinstance(node, Module):
            visit_module(node)
        else:
            dtype = getattr(node, "dtype", None)
            mask.append(dtype is not None and bool(jnp.issubdtype(dtype, jnp.inexact)))
    return mask


def value_and_grad(
    fun: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., tuple[Any, Any]]:
    """Like ``jax.value_and_grad``, differentiating only the trainable parameters.

    Arguments:
        fun: the function to differentiate; it must return a scalar (or ``(scalar, aux)``
            with ``has_aux=True``).
        argnums: which positional argument(s) to differentiate (modules or pytrees).
        has_aux: as in ``jax.value_and_grad``.

    Returns:
        A function returning ``(value, grads)``: ``grads`` has the structure of the
        differentiated argument (a tuple of them for a sequence ``argnums``), with ``None``
        for every leaf that is not a trainable parameter.
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def wrapped(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        split = []
        for i in nums:
            leaves, treedef = jax.tree.flatten(args[i])
            mask = trainable_mask(args[i])
            split.append((leaves, treedef, mask))
        diff = [[x for x, m in zip(leaves, mask) if m] for leaves, _, mask in split]

        def inner(diff_leaves: list[list[Any]]) -> Any:
            new_args = list(args)
            for i, (leaves, treedef, mask), chosen in zip(nums, split, diff_leaves):
                it = iter(chosen)
                merged = [next(it) if m else x for x, m in zip(leaves, mask)]
                new_args[i] = jax.tree.unflatten(treedef, merged)
            out, changes = _state.run_collecting(
                _modules_of(new_args[i] for i in nums), lambda: fun(*new_args, **kwargs)
            )
            # Where each new buffer goes is static; the values leave as auxiliary output.
            places[:] = [[(i, n) for i, n, _ in updates] for updates in changes]
            values = [[v for _, _, v in updates] for updates in changes]
            if has_aux:
                value, aux = out
                return value, (aux, values)
            return out, values

        places: list[list[tuple[int, str]]] = []
        (value, aux_values), grads = jax.value_and_grad(inner, has_aux=True)(diff)
        if has_aux:
            aux, values = aux_values
            value = (value, aux)
        else:
            values = aux_values
        for module, where, new in zip(_modules_of(args[i] for i in nums), places, values):
            _state.apply_updates(module, [(i, n, v) for (i, n), v in zip(where, new)])
        out = []
        for (_, treedef, mask), g in zip(split, grads):
            it = iter(g)
            out.append(jax.tree.unflatten(treedef, [next(it) if m else None for m in mask]))
        return value, (out[0] if single else tuple(out))

    return wrapped


def _modules_of(trees: Any) -> list[Module]:
    """The modules in ``trees`` (each a module or a pytree holding modules), in leaf order."""
    return [
        node
        for tree in trees
        for node in jax.tree.leaves(tree, is_leaf=_is_module)
        if isinstance(node, Module)
    ]


def stateful(fun: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """Run ``fun`` so that the buffer updates its forwards make reach the modules given to it.

    The gradient-free counterpart of :func:`value_and_grad`'s state handling, for a forward
    that changes buffers inside ``jit`` (a BatchNorm recalibration pass)::

        @jax.jit
        def recalibrate(model, x):
            fparam.stateful(lambda m: m(x))(model)   # model.bn's running statistics change
            return model                             # and travel out with it

    Arguments:
        fun: the function to run.
        argnums: which positional argument(s) hold the modules whose buffers may change.

    Returns:
        A function with ``fun``'s signature and result; as a side effect, the module arguments
        hold the new buffers (in place eagerly, as torch does; on the trace's copy under
        ``jit``, so return it).
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    if not callable(fun):
        raise TypeError(f"stateful expects a function, got {type(fun).__name__}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in nums):
        raise TypeError(f"stateful's argnums must be ints, got {argnums!r}")

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if any(i >= len(args) or i < -len(args) for i in nums):
            raise ValueError(
                f"stateful(argnums={argnums!r}) needs the module argument(s) at those positions, "
                f"but the function got {len(args)} positional argument(s)"
            )
        given = _modules_of(args[i] for i in nums)
        copies = [jax.tree.map(lambda x: x, m) for m in given]
        new_args = list(args)
        it = iter(copies)
        for i in nums:
            new_args[i] = jax.tree.map(
                lambda node: next(it) if isinstance(node, Module) else node,
                args[i],
                is_leaf=_is_module,
            )
        out, changes = _state.run_collecting(copies, lambda: fun(*new_args, **kwargs))
        for module, updates in zip(given, changes):
            _state.apply_updates(module, updates)
        return out

    return wrapped


def grad(
    fun: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """Like ``jax.grad``, differentiating only the trainable parameters.

    See :func:`value_and_grad`; returns ``grads`` (or ``(grads, aux)`` with ``has_aux``).
    """
    vg = value_and_grad(fun, argnums, has_aux)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return wrapped
