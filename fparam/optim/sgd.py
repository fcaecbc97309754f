"""``optim.SGD``: torch's stochastic gradient descent, step for step, as a pytree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _convert
from fparam._module import _is_tracer, _torch_to_numpy, _typename
from fparam.optim._errors import (
    LOAD_BAD_ENTRY,
    LOAD_BUFFER_DTYPE,
    LOAD_BUFFER_SHAPE,
    LOAD_UNKNOWN_PARAMETER,
    LOAD_UNKNOWN_STATE_KEY,
)
from fparam.optim.optimizer import (
    Optimizer,
    ParamGroup,
    _check_hyperparameter,
    _scalar,
    nonzero,
    zeros_like_param,
)

__all__ = ["SGD"]


def _select(condition_value: Any, then: Callable[[], Any], otherwise: Any) -> Any:
    """``then()`` where ``condition_value != 0``, else ``otherwise``.

    A Python number decides in Python (no extra work in the compiled step); an array or tracer
    (a hyperparameter leaf under ``jit``) decides elementwise, which keeps torch's branches
    exact whatever value the leaf takes later.
    """
    if isinstance(condition_value, (int, float)):
        return then() if condition_value != 0 else otherwise
    return jnp.where(condition_value != 0, then(), otherwise)


def _as_dtype(value: Any, dtype: Any) -> Any:
    """A hyperparameter in a parameter's dtype, as a Python scalar is in torch (and in JAX).

    A Python number stays one (JAX's weak typing does the same); an array leaf (a jitted
    step's, or a tensor lr) or a NumPy scalar (``np.float64`` is a ``float``, but a strongly
    typed one for JAX) is cast, so a bfloat16 parameter stays bfloat16.
    """
    if type(value) in (int, float, bool):
        return value
    return jnp.asarray(value, dtype)


def _single_tensor_sgd(
    param: Any,
    grad: Any,
    buf: Any,
    first: Any,
    group: ParamGroup,
    keys: tuple[str, ...],
    nonzero: dict[str, bool | None],
) -> tuple[Any, Any]:
    """torch's ``_single_tensor_sgd`` for one parameter: ``(new_param, new_buffer)``.

    ``buf`` is None for a group without momentum buffers; ``first`` flags a buffer that has
    not been initialised yet (torch's ``momentum_buffer is None``; a buffer starts as zeros).
    ``nonzero`` says for momentum, dampening and weight decay whether the value is nonzero, as
    torch's ``if weight_decay != 0:`` decides in Python (None: known at run time only, then a
    select keeps torch's branch whatever the value).
    """
    lr, momentum, dampening, weight_decay = (_as_dtype(group[k], param.dtype) for k in keys)
    g = -grad if group["maximize"] else grad
    if nonzero["weight_decay"] is None:
        g = _select(weight_decay, lambda: g + weight_decay * param, g)
    elif nonzero["weight_decay"]:
        g = g + weight_decay * param
    # The results keep the parameter's dtype whatever the hyperparameters' kinds (torch's
    # in-place update keeps a bfloat16 parameter bfloat16).
    if buf is None or nonzero["momentum"] is False:
        return (param - lr * g).astype(param.dtype), buf
    if nonzero["momentum"] is None:
        new_buf = _select(
            momentum, lambda: jnp.where(first, g, momentum * buf + (1 - dampening) * g), buf
        ).astype(buf.dtype)
        if group["nesterov"]:
            g = _select(momentum, lambda: g + momentum * new_buf, g)
        else:
            g = _select(momentum, lambda: new_buf, g)
        return (param - lr * g).astype(param.dtype), new_buf
    # Momentum is on. torch's first step (buf = g) is the same expression with the buffer's
    # zeros weighted 0 and g weighted 1: per-class scalars, so every parameter's update is
    # raw JAX's ``momentum * buf + g`` (exact: 0 * 0 + g is g).
    keep = jnp.where(first, 0, momentum)
    if nonzero["dampening"] is False:
        new_buf = keep * buf + g
    else:
        new_buf = keep * buf + jnp.where(first, 1, 1 - dampening) * g
    new_buf = new_buf.astype(buf.dtype)
    g = g + momentum * new_buf if group["nesterov"] else new_buf
    return (param - lr * g).astype(param.dtype), new_buf


# A group's per-parameter scalar state (SGD's "buffer initialised" flags, Adam's step counts)
# is kept once per *class*: parameters whose state has been the same all along (they start
# alike and have stepped together) share one packed value. Each parameter's update then reads
# the same slice of the packed vector as its classmates, the per-parameter computations are
# identical, and XLA compiles one kernel per parameter shape instead of one per parameter (a
# different slice per parameter made a 24-layer MLP's step compile 3-4x longer,
# benchmarks/README.md). The classes are static structure: a tuple giving each parameter's
# row, numbered in order of first appearance. They start as "trainable" and "frozen" (a frozen
# parameter never steps), and a step in which only some of a class have a gradient splits it
# (a new structure: the next call of a jitted step traces once more).


def _numbered(keys: Any) -> tuple[int, ...]:
    """Each key's class: equal keys share one, numbered in order of first appearance."""
    seen: dict[Any, int] = {}
    return tuple(seen.setdefault(key, len(seen)) for key in keys)


def initial_classes(handles: Any) -> tuple[int, ...]:
    """The classes of a group's fresh state: trainable and frozen parameters apart."""
    return _numbered(p.requires_grad for p in handles)


def refine_classes(
    classes: tuple[int, ...], stepped: np.ndarray
) -> tuple[tuple[int, ...], np.ndarray | None, np.ndarray]:
    """The classes after a step in which the parameters ``stepped`` have a gradient.

    Returns ``(new_classes, take, row_stepped)``: ``take`` gives each new row's old row (None
    when the rows are unchanged), ``row_stepped`` whether each new row's parameters step.
    """
    keys = list(zip(classes, map(bool, stepped)))
    rows = list(dict.fromkeys(keys))
    index = {key: i for i, key in enumerate(rows)}
    take = np.asarray([c for c, _ in rows])
    unchanged = len(rows) == max(classes) + 1  # every class stepped or rested as a whole
    return (
        tuple(index[key] for key in keys),
        None if unchanged else take,
        np.asarray([s for _, s in rows]),
    )


def classes_of(values: np.ndarray, current: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """Loaded per-parameter state ``values`` as ``(classes, rows)``: the ``current`` classes,
    split where the values differ within one (so loading a state whose parameters stepped
    together, such as the optimizer's own, keeps the structure: no new trace)."""
    classes = _numbered((c, np.asarray(v).tobytes()) for c, v in zip(current, values))
    first = [classes.index(c) for c in range(max(classes) + 1)]
    return classes, values[first]


def _concrete(value: Any) -> float:
    """A checked hyperparameter as a float for a sign check (a traced one passes: nan)."""
    return float("nan") if _is_tracer(value) else float(np.asarray(value).reshape(()))


class _PackedFlags(dict):  # type: ignore[type-arg]
    """SGD's "buffer initialised" flags per momentum group, read from the packed vector when
    first needed (a step or ``state_dict``), so that reading an optimizer's groups does not
    wait for the step that produced it."""

    # A class default: unpickling sets the items before the instance's attributes.
    source: tuple[Any, dict[int, Any]] | None = None

    def __init__(self, packed: Any, spans: dict[int, Any]) -> None:
        super().__init__(dict.fromkeys(spans))
        self.source = (packed, spans)

    def _fill(self) -> None:
        if self.source is not None:
            packed, spans = self.source
            self.source = None
            # Outside a trace, one host copy: the flags are then NumPy, free to read.
            host = packed if isinstance(packed, jax.core.Tracer) else np.asarray(packed)
            dict.update(self, {gi: self._read(host, span) for gi, span in spans.items()})

    @staticmethod
    def _read(host: Any, span: tuple[int, ...]) -> Any:
        return host[span[0] : span[1]] != 0

    def __getitem__(self, key: int) -> Any:
        self._fill()
        return dict.__getitem__(self, key)

    def __iter__(self) -> Any:  # overridden so that dict(flags) reads through __getitem__
        return dict.__iter__(self)

    def __setitem__(self, key: int, value: Any) -> None:
        self._fill()
        dict.__setitem__(self, key, value)

    def values(self) -> Any:
        self._fill()
        return dict.values(self)

    def items(self) -> Any:
        self._fill()
        return dict.items(self)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, exactly ``torch.optim.SGD``.

    Per parameter with a gradient (torch's single-tensor reference)::

        g = -grad if maximize else grad
        if weight_decay != 0: g = g + weight_decay * p
        if momentum != 0:
            buf = g on the first step, else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    Arguments:
        params: ``model.parameters()``, ``model.named_parameters()``, or a list of group dicts
            (``{'params': ..., 'lr': ...}``) with per-group options.
        lr, momentum, dampening, weight_decay: float options; pytree leaves, so changing
            ``opt.param_groups[i]['lr']`` between steps never recompiles.
        nesterov, maximize: change the computation (static).
        foreach, differentiable, fused: accepted for torch compatibility; recorded only.

    ``opt.step(model, grads)`` returns ``(new_model, new_opt)``. Momentum buffers exist for the
    groups created with ``momentum != 0`` (or given one later, as a Python or NumPy number,
    outside ``jit``), and start with torch's first-step rule. A group created with momentum 0
    and given a *JAX array* momentum later keeps stepping without momentum: reading the array
    would block on the device at every step.
    """

    hyperparameters = ("lr", "momentum", "dampening", "weight_decay")
    branch_tests = {"momentum": nonzero, "dampening": nonzero, "weight_decay": nonzero}  # noqa: RUF012

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        # torch's checks, in torch's order and words; before each sign, the value must be a
        # real number or a 1-element array (torch's own comparison errors say neither which
        # argument nor what is expected).
        if isinstance(lr, (jax.Array, np.ndarray)) and lr.size != 1:
            raise ValueError("Tensor lr must be 1-element")
        lr = _check_hyperparameter("lr", lr, "lr")
        if _concrete(lr) < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        momentum = _check_hyperparameter("momentum", momentum, "momentum")
        if _concrete(momentum) < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        weight_decay = _check_hyperparameter("weight_decay", weight_decay, "weight_decay")
        if _concrete(weight_decay) < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        dampening = _check_hyperparameter("dampening", dampening, "dampening")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if isinstance(lr, (jax.Array, np.ndarray)):
            lr = jnp.reshape(jnp.asarray(lr), ())
        # uid -> momentum buffer; group index -> bool vector "buffer initialised" (torch creates
        # the buffer lazily on a parameter's first step; fparam allocates it and flags it). The
        # flags travel in the optimizer's packed vector, after the hyperparameters: one flag for
        # each class of parameters (see ``initial_classes``); ``_classes`` says whose is whose.
        self._momentum: dict[int, jax.Array] = {}
        self._initialized: dict[int, Any] = {}
        self._classes: dict[int, tuple[int, ...]] = {}
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- state

    def _init_group_state(self, group: ParamGroup) -> None:
        momentum = group["momentum"]
        if _is_tracer(momentum) or momentum != 0:
            self._allocate(len(self.param_groups) - 1)

    def _allocate(self, group_index: int) -> None:
        self.__dict__.pop("_fp_layout", None)  # the set of momentum groups is structure
        params = self.param_groups[group_index]["params"]
        for p in params:
            self._momentum[p.uid] = zeros_like_param(p)
        classes = self._classes[group_index] = initial_classes(params)
        self._initialized[group_index] = np.zeros((max(classes) + 1,), bool)
        self._state_changed()

    def _ensure_state(self) -> None:
        # A group built with momentum 0 and given a momentum later (torch allows it) needs
        # buffers; only a Python or NumPy number can be inspected without a device round trip.
        for gi, group in enumerate(self.param_groups):
            momentum = group["momentum"]
            if (
                gi not in self._initialized
                and isinstance(momentum, int | float | np.ndarray | np.generic)
                and momentum != 0
            ):
                self._allocate(gi)

    def _before_flatten(self) -> None:
        self._ensure_state()

    def _buffer_uids(self, layout: Any) -> list[int]:
        """The uids of the momentum buffers, in leaf order (computed once per structure)."""
        uids = layout.cache.get("buffer_uids")
        if uids is None:
            uids = layout.cache["buffer_uids"] = [
                p.uid for gi, _ in layout.extras for p in layout.templates[gi][1].handles
            ]
        return uids

    def _flag_spans(self, layout: Any) -> dict[int, tuple[int, int]]:
        """Where each momentum group's flags are in the packed vector (once per structure)."""
        spans = layout.cache.get("flag_spans")
        if spans is None:
            spans = {}
            start = layout.state_start
            for gi, classes in layout.extras:
                stop = start + max(classes) + 1
                spans[gi] = (start, stop)
                start = stop
            layout.cache["flag_spans"] = spans
        return spans

    @classmethod
    def _packed_state_size(cls, groups: list[ParamGroup], extras: Any) -> int:
        return sum(max(classes) + 1 for _, classes in extras)

    def _packed_state(self, layout: Any) -> Any:
        flags = [self._initialized[gi] for gi, _ in layout.extras]
        if not flags:
            return None
        if all(isinstance(f, np.ndarray) for f in flags):
            return np.concatenate(flags)
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        return jnp.concatenate([jnp.asarray(f, dtype) for f in flags])

    def _state_leaves(self, layout: Any) -> list[Any]:
        momentum = self._momentum
        return [momentum[uid] for uid in self._buffer_uids(layout)]

    def _state_owners(self, layout: Any, leaves: list[Any]) -> list[tuple[Any, str]]:
        return [
            (p, "['momentum_buffer']")
            for gi, _ in layout.extras
            for p in layout.templates[gi][1].handles
        ]

    def _static_extras(self) -> Any:
        # (group index, its parameters' classes) for each group with momentum buffers.
        return tuple((gi, self._classes[gi]) for gi in sorted(self._initialized))

    def _set_state(self, layout: Any, packed: Any, leaves: list[Any]) -> None:
        self._momentum = dict(zip(self._buffer_uids(layout), leaves))
        self._initialized = _PackedFlags(packed, self._flag_spans(layout))
        self._classes = dict(layout.extras)

    # ---------------------------------------------------------------- the update

    def _update(
        self, updates: dict[int, tuple[Any, Any]], slots: dict[int, tuple[int, int]]
    ) -> tuple[SGD, dict[int, Any]]:
        for gi, group in enumerate(self.param_groups):  # an eager step reads them unpacked
            for key in self.hyperparameters:
                self._checked_value(group, key, gi)
        self._ensure_state()
        new_values: dict[int, Any] = {}
        momentum_buffers = dict(self._momentum)
        initialized = dict(self._initialized)
        classes = dict(self._classes)
        facts = self._facts()
        for gi, group in enumerate(self.param_groups):
            known = dict(zip(self.branch_tests, facts[gi]))
            has_buffers = gi in initialized
            handles = group["params"]
            stepped = np.asarray([p.uid in updates for p in handles], bool)
            if has_buffers:
                classes[gi], take, row_stepped = refine_classes(classes[gi], stepped)
                flags = initialized[gi] if take is None else initialized[gi][take]
            for pi, handle in enumerate(handles):
                if not stepped[pi]:
                    continue
                param, grad = updates[handle.uid]
                buf = first = None
                if has_buffers:
                    buf = momentum_buffers[handle.uid]
                    first = ~flags[classes[gi][pi]]
                new_values[handle.uid], new_buf = _single_tensor_sgd(
                    param, grad, buf, first, group, self.hyperparameters, known
                )
                if has_buffers:
                    momentum_buffers[handle.uid] = new_buf
            if has_buffers and stepped.any() and known["momentum"] is not False:
                momentum = 1 if known["momentum"] else group["momentum"]
                now = _select(
                    momentum, partial(jnp.asarray, row_stepped), np.zeros_like(row_stepped)
                )
                initialized[gi] = flags | now
        layout = self._layout()
        new = object.__new__(SGD)
        new.__dict__.update(self.__dict__)
        new.param_groups = [g.copy_clean() for g in self.param_groups]
        new._momentum = momentum_buffers
        new._initialized = initialized
        new._classes = classes
        new._remember_stepped_layout(layout)
        new._state_changed()
        return new, new_values

    # ---------------------------------------------------------------- torch's state_dict

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{'state': {index: {'momentum_buffer': array}}, 'param_groups': [...]}``.

        Parameters are numbered in group order across groups; only parameters whose momentum
        buffer has been initialised appear in ``'state'``.
        """
        state: dict[int, dict[str, Any]] = {}
        groups = []
        index = 0
        for gi, group in enumerate(self.param_groups):
            packed = {k: _scalar(v) for k, v in group.items() if k != "params"}
            ids = list(range(index, index + len(group["params"])))
            packed["params"] = ids
            groups.append(packed)
            if gi in self._initialized:
                flags = np.asarray(self._initialized[gi])[list(self._classes[gi])]
                for pi, handle in enumerate(group["params"]):
                    if flags[pi]:
                        state[ids[pi]] = {"momentum_buffer": self._momentum[handle.uid]}
            index += len(ids)
        return {"state": state, "param_groups": groups}

    def _loaded_state(
        self,
        state: Mapping[Any, Any],
        where: dict[Any, tuple[int, int]],
        groups: list[ParamGroup],
    ) -> Callable[[], None]:
        """Check and convert every saved momentum buffer; return what installs them.

        As torch: a ``'momentum_buffer'`` of ``None`` (what torch writes for a parameter whose
        buffer was never created) and an empty entry ``{}`` load as "no buffer yet", so the
        parameter's next step is a first step (buffer = gradient). Buffers are cast to their
        parameter's dtype. Unlike torch, another key (another optimizer's state) is refused.
        """
        buffers: dict[int, jax.Array] = {}
        flags: dict[int, np.ndarray] = {}
        for saved_id, entry in state.items():
            if saved_id not in where:
                raise ValueError(
                    LOAD_UNKNOWN_PARAMETER.format(index=saved_id, listed=_id_ranges(where))
                )
            gi, pi = where[saved_id]
            handle = self.param_groups[gi]["params"][pi]
            if not isinstance(entry, Mapping):
                raise ValueError(
                    LOAD_BAD_ENTRY.format(
                        where=f"state[{saved_id!r}]",
                        got=_typename(entry),
                        expected="a dict such as {'momentum_buffer': array}",
                    )
                )
            for key in entry:
                if key != "momentum_buffer":
                    raise ValueError(
                        LOAD_UNKNOWN_STATE_KEY.format(
                            index=saved_id, key=key, cls="SGD", known="'momentum_buffer'"
                        )
                    )
            value = entry.get("momentum_buffer")
            if value is None:
                continue
            buffers[handle.uid] = loaded_buffer(value, "momentum_buffer", saved_id, handle)
            flags.setdefault(gi, np.zeros((len(self.param_groups[gi]["params"]),), bool))
            flags[gi][pi] = True

        def commit() -> None:
            current = self._classes
            self._momentum = {}
            self._initialized = {}
            self._classes = {}
            for gi, group in enumerate(groups):
                momentum = group["momentum"]
                if gi in flags or _is_tracer(momentum) or momentum != 0:
                    self._allocate(gi)
            self._momentum.update(buffers)
            for gi, group_flags in flags.items():
                self._classes[gi], self._initialized[gi] = classes_of(
                    group_flags, current.get(gi) or self._classes[gi]
                )

        return commit


def loaded_buffer(value: Any, key: str, saved_id: Any, handle: Any) -> jax.Array:
    """A saved per-parameter array (``state[saved_id][key]``) checked against its parameter
    ``handle`` (a real dtype, the parameter's shape), as an array of the parameter's dtype on
    its placement. A copy: ``jnp.asarray(numpy, dtype=...)`` may alias the host buffer (a torch
    tensor's memory), which would then change under the caller's feet."""
    array = _checkpoint_array(value, f"state[{saved_id!r}][{key!r}]")
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
        raise TypeError(
            LOAD_BUFFER_DTYPE.format(
                key=key, index=saved_id, got=array.dtype, expected=handle.dtype
            )
        )
    if tuple(array.shape) != tuple(handle.shape):
        raise ValueError(
            LOAD_BUFFER_SHAPE.format(
                key=key, index=saved_id, got=tuple(array.shape), expected=tuple(handle.shape)
            )
        )
    buffer = jnp.array(array, dtype=handle.dtype, copy=True)
    sharding = getattr(handle.data, "sharding", None)  # the parameter's placement
    return buffer if sharding is None else _convert.put(buffer, sharding)


def _checkpoint_array(value: Any, where: str) -> Any:
    """A saved array (NumPy, JAX, a torch tensor read without importing torch, or nested
    lists) as a NumPy or JAX array, or a clear error naming ``where``."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return _torch_to_numpy(value)
    if isinstance(value, jax.Array):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise TypeError(
            LOAD_BAD_ENTRY.format(
                where=where, got=f"{_typename(value)} ({error})", expected="an array"
            )
        ) from None
    return array


def _id_ranges(where: dict[Any, tuple[int, int]]) -> str:
    ids = list(where)
    return repr(ids) if len(ids) <= 8 else f"{ids[:8]!r}[:-1], ... ({len(ids)} in all)]"
