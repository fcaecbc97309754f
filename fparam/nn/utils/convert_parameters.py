"""``parameters_to_vector`` / ``vector_to_parameters`` (torch's ``convert_parameters``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fparam._module import Module, Parameter

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _arrays(parameters: Any) -> list[Any]:
    if isinstance(parameters, Module):
        raise TypeError(
            "parameters_to_vector() expects an iterable of parameters (model.parameters()), "
            "got a Module"
        )
    return [p.data if isinstance(p, Parameter) else p for p in parameters]


def parameters_to_vector(parameters: Any) -> jax.Array:
    """The parameters, flattened and concatenated in order (torch's ``parameters_to_vector``).

    Arguments:
        parameters: an iterable of parameters (``model.parameters()``) or arrays; works
            inside ``jit`` (the handles of a traced model hold traced arrays).

    Returns:
        A 1-D array.
    """
    return jnp.concatenate([jnp.ravel(a) for a in _arrays(parameters)])


def vector_to_parameters(vec: Any, parameters: Any) -> Any:
    """Copy consecutive slices of ``vec`` into the parameters (torch's ``vector_to_parameters``).

    Arguments:
        vec: a 1-D array with at least as many elements as the parameters hold.
        parameters: ``model.parameters()`` handles: each one's ``data`` is set in place (it
            writes through to its module, as torch's ``param.data = ...``), at top level only
            (a traced module refuses the write). Inside ``jit``, pass the module itself
            instead: a new module with its trainable parameters taken from ``vec``, in
            ``parameters()`` order, is returned.

    Returns:
        ``None`` for handles (as torch); the new module when given a module.
    """
    if not isinstance(vec, jax.Array | jnp.ndarray) or getattr(vec, "ndim", None) is None:
        raise TypeError(f"expected an array, but got: {type(vec).__name__}")
    if isinstance(parameters, Module):
        return _module_from_vector(vec, parameters)
    pointer = 0
    handles = list(parameters)
    _check_length(vec, handles)
    pieces = []
    for p in handles:
        shape = tuple(p.shape)
        n = int(p.size)
        pieces.append(jnp.reshape(vec[pointer : pointer + n], shape).astype(p.dtype))
        pointer += n
    for p, piece in zip(handles, pieces):  # all converted first: nothing half-applied
        p.data = piece
    return None


def _check_length(vec: Any, params: list[Any]) -> None:
    needed = sum(int(p.size) for p in params)
    if vec.ndim != 1 or vec.size < needed:
        raise RuntimeError(
            f"vector_to_parameters(): the parameters hold {needed} elements, the vector has "
            f"shape {tuple(vec.shape)} (expected a 1-D array of at least {needed})"
        )


def _module_from_vector(vec: Any, module: Module) -> Module:
    """``module`` with its parameters (``parameters()`` order, frozen ones included, as
    ``parameters_to_vector(module.parameters())`` lays them out) read from ``vec``."""
    named = list(module.named_parameters())
    _check_length(vec, [p for _, p in named])
    values = {}
    pointer = 0
    for name, p in named:
        n = int(p.size)
        values[name] = jnp.reshape(vec[pointer : pointer + n], p.shape).astype(p.dtype)
        pointer += n
    leaves, treedef = jax.tree_util.tree_flatten_with_path(module)
    # Tree paths spell the state_dict keys (DESIGN rule 3).
    keys = [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in leaves]
    return jax.tree.unflatten(treedef, [values.get(k, x) for k, (_, x) in zip(keys, leaves)])
