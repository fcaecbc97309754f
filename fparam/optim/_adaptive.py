"""The base of the optimizers that keep torch's per-parameter ``state`` (Adam and its family).

torch creates a parameter's state (``step`` and arrays of the parameter's shape such as
``exp_avg``) at the parameter's first step with a gradient; Adagrad creates it in the
constructor. fparam allocates every array when a group is added (on the parameter's placement,
from the host: no compile) and keeps, per parameter, a "state exists" flag, the step count and
any other scalar (NAdam's ``mu_product``) in the optimizer's packed vector leaf, so a jitted step
has one leaf per state array and nothing else. Parameters whose scalars have been the same all
along share one row of them (see ``sgd.initial_classes``), so that their updates are the same
computation, compiled once per shape. ``state_dict()`` lists only the parameters whose
state exists, with torch's keys in torch's order; ``load_state_dict`` takes torch's.

A subclass is its constructor (torch's checks and defaults), ``_array_state`` (the array names
of a group, torch's order), ``_advance`` (the per-group scalar math: bias corrections and the
like, vectorised over the group's step counts) and ``_rule`` (torch's single-tensor update of
one parameter). The whole step is one XLA program, so ``foreach``, ``fused`` and ``capturable``
(which choose among torch's kernels and CUDA-graph support) change nothing: they are accepted
and recorded. ``differentiable=True`` asks torch to let autograd through the step; a fparam step
is a pure JAX function, always differentiable with ``jax.grad``, so it is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fparam._module import _is_tracer, _typename
from fparam.optim._errors import (
    LOAD_BAD_ENTRY,
    LOAD_MISSING_STATE_KEY,
    LOAD_UNKNOWN_PARAMETER,
    LOAD_UNKNOWN_STATE_KEY,
)
from fparam.optim.optimizer import (
    Optimizer,
    ParamGroup,
    _check_hyperparameter,
    _scalar,
    nonzero,
    one_minus,
    zeros_like_param,
)
from fparam.optim.sgd import (
    _as_dtype,
    _checkpoint_array,
    _concrete,
    _id_ranges,
    _PackedFlags,
    _select,
    classes_of,
    initial_classes,
    loaded_buffer,
    refine_classes,
)

__all__ = ["AdaptiveOptimizer", "bias_correction", "check_options", "lerp"]


# ------------------------------------------------------------------------------- shared math


def lerp(start: Any, end: Any, weight: Any, small: bool | None = None) -> Any:
    """torch's ``start.lerp_(end, weight)``: two formulas, chosen by ``|weight| < 0.5``.

    A Python weight chooses in Python, and so does ``small`` (the choice known from the
    host value, see ``Optimizer._facts``); otherwise elementwise.
    """
    if isinstance(weight, int | float):
        small = abs(weight) < 0.5
    if small is not None:
        if small:
            return start + weight * (end - start)
        return end - (end - start) * (1 - weight)
    small = start + weight * (end - start)
    large = end - (end - start) * (1 - weight)
    return jnp.where(jnp.abs(weight) < 0.5, small, large)


def bias_correction(one_minus_beta: Any, step: Any) -> Any:
    """``1 - beta ** step`` from ``1 - beta`` (torch's, computed in double, see ``one_minus``).

    As ``-expm1(step * log1p(-(1 - beta)))``: float32 keeps ~1e-7 relative accuracy where
    ``1 - beta ** step`` with beta2 = 0.999 in float32 would lose 1e-5.
    """
    return -jnp.expm1(step * jnp.log1p(-jnp.asarray(one_minus_beta, step.dtype)))


def decay_weights(param: Any, grad: Any, group: ParamGroup, decoupled: bool) -> tuple[Any, Any]:
    """torch's weight decay: ``param *= 1 - lr * wd`` (decoupled, AdamW) or ``grad += wd * param``,
    when ``weight_decay != 0``: decided in Python when the step knows (``group.facts``)."""
    weight_decay = _as_dtype(group["weight_decay"], param.dtype)
    known = group.facts.get("weight_decay")
    if known is False:
        return param, grad
    if decoupled:
        lr = _as_dtype(group["lr"], param.dtype)
        decayed = lambda: param * (1 - lr * weight_decay)  # noqa: E731
        return (decayed() if known else _select(weight_decay, decayed, param)), grad
    added = lambda: grad + weight_decay * param  # noqa: E731
    return param, added() if known else _select(weight_decay, added, grad)


def first_moment(exp_avg: Any, grad: Any, group: ParamGroup, dtype: Any) -> Any:
    """``exp_avg.lerp_(grad, 1 - beta1)`` as torch (its formula known from ``group.facts``)."""
    weight = _as_dtype(one_minus(group, "betas", 0), dtype)
    return lerp(exp_avg, grad, weight, group.facts.get("betas"))


def signed(grad: Any, group: ParamGroup) -> Any:
    return -grad if group["maximize"] else grad


# ------------------------------------------------------------------------------- constructors


def check_options(lr: Any, checks: list[tuple[str, Any, str]]) -> tuple[Any, dict[str, Any]]:
    """torch's constructor checks, in torch's order and words; returns ``(lr, values)``.

    ``checks`` are ``(name, value, rule)`` after ``lr``: rule ``">=0"`` (``0 <= value``),
    ``"[0,1]"`` (``0 <= value <= 1``: Adadelta's rho) or ``"betas"`` (a pair, each
    ``0 <= beta < 1``). Each value must first be a real number or a 1-element array (fparam's
    check, naming the argument); a traced value passes the range check.
    """
    if isinstance(lr, jax.Array | np.ndarray) and lr.size != 1:
        raise ValueError("Tensor lr must be 1-element")
    lr = _check_hyperparameter("lr", lr, "lr")
    if _concrete(lr) < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if isinstance(lr, jax.Array | np.ndarray):
        lr = jnp.reshape(jnp.asarray(lr), ())
    values: dict[str, Any] = {}
    for name, value, rule in checks:
        if rule == "betas":
            betas = _check_hyperparameter(name, value, name, 2)
            for i, beta in enumerate(betas):
                if not _is_tracer(beta) and not 0.0 <= _concrete(beta) < 1.0:
                    raise ValueError(f"Invalid beta parameter at index {i}: {value[i]}")
            values[name] = betas
            continue
        value = _check_hyperparameter(name, value, name)
        number = _concrete(value)
        if number < 0.0 or (rule == "[0,1]" and number > 1.0):
            raise ValueError(f"Invalid {'epsilon' if name == 'eps' else name} value: {value}")
        values[name] = value
    return lr, values


# ------------------------------------------------------------------------------- the base


class _Rows(_PackedFlags):
    """Each group's table of per-parameter scalars (``exists``, ``step``, ...), read from the
    packed vector when first needed (as SGD's flags), so that reading an optimizer's groups does
    not wait for the step that produced it."""

    @staticmethod
    def _read(host: Any, span: tuple[int, ...]) -> Any:
        start, stop, width = span
        return host[start:stop].reshape(-1, width)


class AdaptiveOptimizer(Optimizer):
    """An optimizer with torch's per-parameter ``state``: scalars and parameter-shaped arrays.

    Subclasses set ``hyperparameters`` (and ``tuple_hyperparameters``), ``scalar_state`` (the
    per-parameter scalars with their initial values, ``step`` first) and implement
    ``_array_state``, ``_advance`` and ``_rule``.
    """

    scalar_state: ClassVar[dict[str, float]] = {"step": 0.0}
    branch_tests: ClassVar[dict[str, Callable[[Any], bool]]] = {"weight_decay": nonzero}
    # The state keys in torch's state_dict order (scalars and arrays), per subclass.
    state_order: ClassVar[tuple[str, ...]] = ()

    _arrays: dict[int, dict[str, jax.Array]]
    _rows: Any  # group index -> (n_classes, 1 + len(scalar_state)) table: exists, scalars
    _classes: list[tuple[int, ...]]  # per group: each parameter's row in the table
    _keys: list[tuple[str, ...]]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._arrays = {}
        self._rows = {}
        self._keys = []
        self._classes = []
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- what a subclass says

    def _array_state(self, group: ParamGroup, current: tuple[str, ...] | None) -> tuple[str, ...]:
        """The names of a group's state arrays, in torch's order (``current``: the present
        ones, kept where the choice depends on a value that cannot be read without a sync)."""
        raise NotImplementedError

    def _initial_array(self, name: str, handle: Any) -> jax.Array:
        return zeros_like_param(handle)

    def _advance(
        self, group: ParamGroup, step: Any, scalars: dict[str, Any], stepped: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The group's scalar math, vectorised over its parameters: ``step`` is the new step
        count of each parameter, ``scalars`` the others (before the step), ``stepped`` a 0/1
        vector of the parameters with a gradient. Returns the new other scalars and the
        per-parameter coefficients ``_rule`` receives (each indexed by parameter)."""
        return {}, {}

    def _rule(
        self, param: Any, grad: Any, state: dict[str, Any], group: ParamGroup, c: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    # ---------------------------------------------------------------- state

    @property
    def _width(self) -> int:
        return 1 + len(self.scalar_state)

    def _fresh_rows(self, n: int, exists: bool) -> np.ndarray:
        rows = np.zeros((n, self._width), np.float64)
        rows[:, 0] = exists
        for j, initial in enumerate(self.scalar_state.values()):
            rows[:, 1 + j] = initial
        return rows

    def _init_group_state(self, group: ParamGroup) -> None:
        gi = len(self.param_groups) - 1
        keys = self._array_state(group, None)
        self._keys.append(keys)
        for p in group["params"]:
            self._arrays[p.uid] = {name: self._initial_array(name, p) for name in keys}
        self._classes.append(initial_classes(group["params"]))
        self._rows[gi] = self._fresh_rows(max(self._classes[gi]) + 1, False)
        self.__dict__.pop("_fp_layout", None)
        self._state_changed()

    def _ensure_state(self) -> None:
        # A static option changed since (amsgrad, centered; RMSprop's momentum set on the
        # host): allocate the arrays it needs. torch would fail with a KeyError instead.
        for gi, group in enumerate(self.param_groups):
            keys = self._array_state(group, self._keys[gi])
            if keys != self._keys[gi]:
                self._keys[gi] = keys
                self.__dict__.pop("_fp_layout", None)
                for p in group["params"]:
                    old = self._arrays[p.uid]
                    self._arrays[p.uid] = {
                        k: old[k] if k in old else self._initial_array(k, p) for k in keys
                    }

    def _before_flatten(self) -> None:
        self._ensure_state()

    def _static_extras(self) -> Any:
        # Per group: its array names and its parameters' classes (rows).
        return tuple(zip(self._keys, self._classes))

    @classmethod
    def _packed_state_size(cls, groups: list[ParamGroup], extras: Any) -> int:
        return sum(max(classes) + 1 for _, classes in extras) * (1 + len(cls.scalar_state))

    def _spans(self, layout: Any) -> dict[int, tuple[int, int, int]]:
        spans = layout.cache.get("row_spans")
        if spans is None:
            spans, start, width = {}, layout.state_start, self._width
            for gi, (_, classes) in enumerate(layout.extras):
                stop = start + (max(classes) + 1) * width
                spans[gi] = (start, stop, width)
                start = stop
            layout.cache["row_spans"] = spans
        return spans

    def _leaf_order(self, layout: Any) -> list[tuple[int, str]]:
        order = layout.cache.get("leaf_order")
        if order is None:
            order = layout.cache["leaf_order"] = [
                (p.uid, name)
                for (_, params_key, _), (keys, _) in zip(layout.templates, layout.extras)
                for p in params_key.handles
                for name in keys
            ]
        return order

    def _state_owners(self, layout: Any, leaves: list[Any]) -> list[tuple[Any, str]]:
        return [
            (p, f"[{name!r}]")
            for (_, params_key, _), (keys, _) in zip(layout.templates, layout.extras)
            for p in params_key.handles
            for name in keys
        ]

    def _packed_state(self, layout: Any) -> Any:
        rows = [self._rows[gi].reshape(-1) for gi in range(len(self.param_groups))]
        if all(isinstance(r, np.ndarray) for r in rows):
            return np.concatenate(rows)
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        return jnp.concatenate([jnp.asarray(r, dtype) for r in rows])

    def _state_leaves(self, layout: Any) -> list[Any]:
        arrays = self._arrays
        return [arrays[uid][name] for uid, name in self._leaf_order(layout)]

    def _set_state(self, layout: Any, packed: Any, leaves: list[Any]) -> None:
        arrays: dict[int, dict[str, Any]] = {}
        for (uid, name), leaf in zip(self._leaf_order(layout), leaves):
            arrays.setdefault(uid, {})[name] = leaf
        for _, params_key, _ in layout.templates:  # a group without arrays (none today)
            for p in params_key.handles:
                arrays.setdefault(p.uid, {})
        self._arrays = arrays
        self._keys = [keys for keys, _ in layout.extras]
        self._classes = [classes for _, classes in layout.extras]
        self._rows = _Rows(packed, self._spans(layout))

    # ---------------------------------------------------------------- the update

    def _update(
        self, updates: dict[int, tuple[Any, Any]], slots: dict[int, tuple[int, int]]
    ) -> tuple[AdaptiveOptimizer, dict[int, Any]]:
        for gi, group in enumerate(self.param_groups):  # an eager step reads them unpacked
            for key in self.hyperparameters:
                self._checked_value(group, key, gi)
        self._ensure_state()
        layout = self._layout()
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        arrays = dict(self._arrays)
        rows = dict(self._rows)
        all_classes = list(self._classes)
        new_values: dict[int, Any] = {}
        names = list(self.scalar_state)[1:]
        facts = self._facts()
        for gi, group in enumerate(self.param_groups):
            group.facts = dict(zip(self.branch_tests, facts[gi]))
            handles = group["params"]
            stepped = np.asarray([p.uid in updates for p in handles], np.float64)
            if not stepped.any():
                continue
            classes, take, row_stepped = refine_classes(all_classes[gi], stepped)
            all_classes[gi] = classes
            table = jnp.asarray(rows[gi] if take is None else rows[gi][take], dtype)
            step = table[:, 1] + row_stepped.astype(dtype)
            others = {name: table[:, 2 + j] for j, name in enumerate(names)}
            new_others, coefficients = self._advance(group, step, others, row_stepped)
            exists = jnp.maximum(table[:, 0], row_stepped.astype(dtype))
            columns = [exists, step, *(new_others.get(n, others[n]) for n in names)]
            rows[gi] = jnp.stack(columns, axis=1)
            for pi, handle in enumerate(handles):
                if not stepped[pi]:
                    continue
                param, grad = updates[handle.uid]
                c = {k: v[classes[pi]] for k, v in coefficients.items()}
                new_param, state = self._rule(param, grad, arrays[handle.uid], group, c)
                new_values[handle.uid] = new_param.astype(param.dtype)
                arrays[handle.uid] = {
                    k: v.astype(arrays[handle.uid][k].dtype) for k, v in state.items()
                }
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.param_groups = [g.copy_clean() for g in self.param_groups]
        new._arrays = arrays
        new._rows = rows
        new._keys = list(self._keys)
        new._classes = all_classes
        new._remember_stepped_layout(layout)
        new._state_changed()
        return new, new_values

    # ---------------------------------------------------------------- torch's state_dict

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{'state': {index: {'step': array, ...}}, 'param_groups': [...]}``.

        Parameters are numbered in group order across groups; a parameter appears in
        ``'state'`` once its state exists (after its first step with a gradient; Adagrad: from
        the constructor). ``step`` (and NAdam's ``mu_product``) are 0-d float32 arrays, as
        torch's are float32 tensors.
        """
        state: dict[int, dict[str, Any]] = {}
        groups = []
        index = 0
        names = list(self.scalar_state)
        for gi, group in enumerate(self.param_groups):
            packed = {k: _scalar(v) for k, v in group.items() if k != "params"}
            ids = list(range(index, index + len(group["params"])))
            packed["params"] = ids
            groups.append(packed)
            table = np.asarray(self._rows[gi])[list(self._classes[gi])]
            for pi, handle in enumerate(group["params"]):
                if table[pi, 0]:
                    entry = {
                        n: jnp.asarray(table[pi, 1 + j], jnp.float32) for j, n in enumerate(names)
                    }
                    entry.update(self._arrays[handle.uid])
                    state[ids[pi]] = {k: entry[k] for k in self.state_order if k in entry}
            index += len(ids)
        return {"state": state, "param_groups": groups}

    def _loaded_state(
        self,
        state: Mapping[Any, Any],
        where: dict[Any, tuple[int, int]],
        groups: list[ParamGroup],
    ) -> Callable[[], None]:
        """Check and convert every saved entry (torch's keys, each array of its parameter's
        shape); return what installs them. A parameter without an entry starts afresh, as in
        torch. Arrays are cast to the parameter's dtype; ``step`` may be a number or a 0-d
        array (older torch checkpoints hold a float)."""
        cls = type(self).__name__
        loaded: dict[int, dict[str, Any]] = {}
        scalars: dict[tuple[int, int], list[float]] = {}
        names = list(self.scalar_state)
        group_keys = [self._array_state(g, self._keys[gi]) for gi, g in enumerate(groups)]
        for saved_id, entry in state.items():
            if saved_id not in where:
                raise ValueError(
                    LOAD_UNKNOWN_PARAMETER.format(index=saved_id, listed=_id_ranges(where))
                )
            gi, pi = where[saved_id]
            handle = self.param_groups[gi]["params"][pi]
            keys = group_keys[gi]
            known = (*names, *keys)
            if not isinstance(entry, Mapping):
                raise ValueError(
                    LOAD_BAD_ENTRY.format(
                        where=f"state[{saved_id!r}]",
                        got=_typename(entry),
                        expected=f"a dict with keys {list(known)}",
                    )
                )
            if not entry:
                continue  # torch's "no state yet"
            for key in entry:
                if key not in known:
                    raise ValueError(
                        LOAD_UNKNOWN_STATE_KEY.format(
                            index=saved_id,
                            key=key,
                            cls=cls,
                            known=", ".join(repr(k) for k in known),
                        )
                    )
            for key in known:
                if key not in entry:
                    raise ValueError(
                        LOAD_MISSING_STATE_KEY.format(
                            index=saved_id, key=key, cls=cls, keys=list(entry)
                        )
                    )
            values = []
            for name in names:
                array = _checkpoint_array(entry[name], f"state[{saved_id!r}][{name!r}]")
                if np.size(array) != 1 or not jnp.issubdtype(array.dtype, jnp.number):
                    raise ValueError(
                        LOAD_BAD_ENTRY.format(
                            where=f"state[{saved_id!r}][{name!r}]",
                            got=f"an array of shape {tuple(np.shape(array))} and dtype "
                            f"{array.dtype}",
                            expected="a number or a 1-element array",
                        )
                    )
                values.append(float(np.asarray(array).reshape(())))
            scalars[(gi, pi)] = values
            arrays = {key: loaded_buffer(entry[key], key, saved_id, handle) for key in keys}
            loaded[handle.uid] = arrays

        def commit() -> None:
            self._arrays = {}
            self._rows = {}
            self._keys = []
            current, self._classes = self._classes, []
            self.__dict__.pop("_fp_layout", None)
            for gi, group in enumerate(groups):
                keys = group_keys[gi]
                self._keys.append(keys)
                table = self._fresh_rows(len(group["params"]), False)
                for pi, p in enumerate(group["params"]):
                    self._arrays[p.uid] = loaded.get(p.uid) or {
                        k: self._initial_array(k, p) for k in keys
                    }
                    if (gi, pi) in scalars:
                        table[pi, 0] = 1
                        table[pi, 1:] = scalars[(gi, pi)]
                classes, self._rows[gi] = classes_of(table, current[gi])
                self._classes.append(classes)
            self._state_changed()

        return commit
