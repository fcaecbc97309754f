"""``optim.Optax``: any optax ``GradientTransformation`` behind fparam's optimizer interface.

A JAX user brings optax; fparam's models have frozen parameters, buffers and ``None``
gradients (``fparam.grad``) that a bare ``optax.update`` over the whole model does not know
about (it would update buffers and frozen weights, or fail on the ``None``s). This wrapper
gives a transformation the same contract as ``optim.SGD``: built from ``model.parameters()``,
``new_model, new_opt = opt.step(model, grads)`` inside or outside ``jit``, only trainable
parameters that received a gradient change, and ``state_dict()`` / ``load_state_dict()`` /
``fparam.save`` resume it.

fparam never imports optax: anything with optax's ``init(params)`` and
``update(updates, state, params)`` works.

What optax decides and fparam keeps: the transformation sees the optimizer's parameters as a
list in ``parameters()`` order. A parameter without a gradient in a step (``None``, or
frozen) is given a zero gradient for the transformation's state (optax has no notion of a
skipped leaf: Adam's moments of that parameter decay) and is left unchanged. Learning-rate
changes go through optax (a schedule as ``learning_rate``, or
``optax.inject_hyperparameters``, whose values are leaves of the state: changing them never
recompiles); fparam's ``lr_scheduler`` classes drive fparam's own optimizers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._module import Parameter, _typename
from fparam.optim._errors import LOAD_BAD_ENTRY
from fparam.optim.optimizer import Optimizer, _OptimizerLayout

__all__ = ["Optax"]

_NOT_A_TRANSFORMATION = (
    "Optax() expects an optax GradientTransformation (an object with init(params) and "
    "update(updates, state, params), e.g. optax.adamw(1e-3)), got {got}"
)
_STATE_MISMATCH = (
    "Optax.load_state_dict(): the saved optax state does not match this transformation's: "
    "{problem}. Build the optimizer with the same transformation (and the same parameters) "
    "as the one that saved it."
)


def _values_by_uid(params: Any) -> dict[int, Any]:
    """The arrays of the parameters in an optimizer's ``params`` argument, by identity."""
    items = params if isinstance(params, list) else [params]
    values = {}
    for item in items:
        group = item["params"] if isinstance(item, dict) else [item]
        group = [group] if isinstance(group, Parameter) else list(group)
        for entry in group:
            handle = entry[1] if isinstance(entry, tuple) else entry  # named_parameters()
            if isinstance(handle, Parameter):
                values[handle.uid] = handle.data
    return values


def _path_names(tree: Any) -> list[str]:
    """The leaves' tree paths (``0.mu.1``), the names the state is saved under."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in paths]


def _shape(leaf: Any) -> tuple[int, ...]:
    """A leaf's shape: an array's, a ``jax.ShapeDtypeStruct``'s, or a Python number's."""
    shape = getattr(leaf, "shape", None)
    return tuple(np.shape(leaf) if shape is None else shape)


class Optax(Optimizer):
    """An optax transformation as an fparam optimizer (see the module docstring).

    Arguments:
        transformation: an ``optax.GradientTransformation`` (``optax.adamw(1e-3)``,
            ``optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))``, ...).
        params: ``model.parameters()`` (or ``named_parameters()``, or torch-style group dicts:
            the groups only say which parameters belong to the optimizer; optax's options are
            the transformation's).

    The state is created at construction from the parameters' current values, with their
    placement (optax's ``zeros_like`` keeps a sharding).
    """

    def __init__(self, transformation: Any, params: Any) -> None:
        if not (
            callable(getattr(transformation, "init", None))
            and callable(getattr(transformation, "update", None))
        ):
            raise TypeError(_NOT_A_TRANSFORMATION.format(got=_typename(transformation)))
        object.__setattr__(self, "transformation", transformation)
        params = list(params) if not isinstance(params, Parameter) else params
        values = _values_by_uid(params)
        super().__init__(params, {})
        # The optimizer keeps shapes, not the model's arrays; optax's init gets the values.
        self.opt_state = transformation.init(
            [values[p.uid] for g in self.param_groups for p in g["params"]]
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; after construction, refused (the optax state covers a fixed list)."""
        if "opt_state" in self.__dict__:
            raise ValueError(
                "Optax.add_param_group(): the optax state was built for the constructor's "
                "parameters; build a new Optax optimizer over all of them instead"
            )
        super().add_param_group(param_group)

    # ------------------------------------------------------------ pytree

    def _static_extras(self) -> Any:
        return (self.transformation, jax.tree.structure(self.opt_state))

    def _state_leaves(self, layout: _OptimizerLayout) -> list[Any]:
        return jax.tree.leaves(self.opt_state)

    def _state_owners(
        self, layout: _OptimizerLayout, leaves: list[Any]
    ) -> list[tuple[Parameter | None, str]]:
        """Optax's own tree paths: a leaf of a per-parameter list (``mu``, ``nu``: optax
        mirrors the parameter list it was given) under its parameter, with the list index left
        out (``state['0.weight'][0].mu``); any other leaf under ``opt_state``
        (``opt_state[0].count``)."""
        handles = [p for _, params_key, _ in layout.templates for p in params_key.handles]
        shapes = [tuple(p.shape) for p in handles]
        _, treedef = layout.extras

        def mirrors(node: Any) -> bool:
            return (
                isinstance(node, list)
                and len(node) == len(shapes)
                and all(
                    all(_shape(leaf) == shape for leaf in jax.tree.leaves(item))
                    for item, shape in zip(node, shapes)
                )
            )

        keystr = jax.tree_util.keystr
        owners: list[tuple[Parameter | None, str]] = []
        tree = jax.tree.unflatten(treedef, leaves)
        for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=mirrors)[0]:
            if not mirrors(node):
                owners.append((None, "opt_state" + keystr(path)))
                continue
            for handle, item in zip(handles, node):
                for subpath, _ in jax.tree_util.tree_flatten_with_path(item)[0]:
                    owners.append((handle, keystr(path) + keystr(subpath)))
        return owners

    def _set_state(self, layout: _OptimizerLayout, packed: Any, leaves: list[Any]) -> None:
        transformation, treedef = layout.extras
        object.__setattr__(self, "transformation", transformation)
        self.__dict__["opt_state"] = jax.tree.unflatten(treedef, leaves)

    # ------------------------------------------------------------ stepping

    def _update(
        self, updates: dict[int, tuple[Any, Any]], slots: dict[int, tuple[int, int]]
    ) -> tuple[Optax, dict[int, Any]]:
        handles = [p for g in self.param_groups for p in g["params"]]
        params, grads = [], []
        for handle in handles:
            if handle.uid in updates:
                value, grad = updates[handle.uid]
            else:  # no gradient this step: zeros for optax, and the update is dropped
                value = grad = jnp.zeros(handle.shape, handle.dtype)
            params.append(value)
            grads.append(grad)
        deltas, new_state = self.transformation.update(grads, self.opt_state, params)
        new_values = {
            h.uid: jnp.asarray(p + d).astype(p.dtype)  # optax.apply_updates
            for h, p, d in zip(handles, params, deltas)
            if h.uid in updates
        }
        layout = self._layout()
        new = object.__new__(Optax)
        new.__dict__.update(self.__dict__)
        new.__dict__["opt_state"] = new_state
        new.param_groups = [g.copy_clean() for g in self.param_groups]
        new._remember_layout(layout)
        return new, new_values

    # ------------------------------------------------------------ saving

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {'optax': {tree path: array}}, 'param_groups': [...]}``.

        The optax state's leaves under their tree paths (``0.mu.1``: the first transform's
        ``mu`` of the second parameter), the groups as torch numbers them.
        """
        groups = []
        index = 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(entry)
        leaves = jax.tree.leaves(self.opt_state)
        named = dict(zip(_path_names(self.opt_state), leaves))
        return {"state": {"optax": named}, "param_groups": groups}

    def _loaded_state(
        self, state: Mapping[Any, Any], where: dict[Any, tuple[int, int]], groups: list[Any]
    ) -> Callable[[], None]:
        """Check the saved leaves against the current state (names, shapes, dtypes) and
        return what installs them, on the current leaves' placement."""
        if set(state) != {"optax"} or not isinstance(state["optax"], Mapping):
            raise ValueError(
                LOAD_BAD_ENTRY.format(
                    where="'state'",
                    got=f"a dict with keys {sorted(map(str, state))[:5]}",
                    expected="{'optax': {tree path: array}} (an Optax optimizer's state_dict)",
                )
            )
        saved = state["optax"]
        current = jax.tree.leaves(self.opt_state)
        names = _path_names(self.opt_state)
        missing = [n for n in names if n not in saved]
        extra = [n for n in saved if n not in names]
        if missing or extra:
            raise ValueError(
                _STATE_MISMATCH.format(problem=f"missing {missing[:5]}, unexpected {extra[:5]}")
            )
        new_leaves = []
        for name, leaf in zip(names, current):
            value = np.asarray(saved[name])
            if value.shape != tuple(np.shape(leaf)):
                raise ValueError(
                    _STATE_MISMATCH.format(
                        problem=f"{name!r} has shape {value.shape}, expected {np.shape(leaf)}"
                    )
                )
            dtype = np.dtype(jnp.asarray(leaf).dtype)
            if value.dtype != dtype and not np.can_cast(value.dtype, dtype, "same_kind"):
                raise ValueError(
                    _STATE_MISMATCH.format(
                        problem=f"{name!r} has dtype {value.dtype}, expected {dtype}"
                    )
                )
            array = jnp.asarray(value, dtype)
            sharding = getattr(leaf, "sharding", None)
            new_leaves.append(jax.device_put(array, sharding) if sharding is not None else array)
        treedef = jax.tree.structure(self.opt_state)

        def commit() -> None:
            self.__dict__["opt_state"] = jax.tree.unflatten(treedef, new_leaves)

        return commit

    def __repr__(self) -> str:
        n = sum(len(g["params"]) for g in self.param_groups)
        return f"Optax({self.transformation!r}, {n} parameters)"
