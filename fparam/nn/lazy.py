"""Lazy modules (``torch/nn/modules/lazy.py``): layers that take their input size from their
first call. ``LazyLinear``, ``LazyConv{1,2,3}d``, ``LazyConvTranspose{1,2,3}d``,
``LazyBatchNorm{1,2,3}d``, ``LazyInstanceNorm{1,2,3}d``.

Until its first call a lazy layer holds :class:`UninitializedParameter` /
:class:`UninitializedBuffer` placeholders (static data, so two unbuilt models of one
architecture still have equal tree structures). Its first *eager* call reads the size from the
input (``input.shape[-1]`` for ``LazyLinear``, the channel axis for the others, as torch),
draws torch's initial values exactly as the plain layer's constructor does (same
distributions, same key use: ``key=`` or fparam's default stream), and turns the module into
the plain layer in place (torch's ``cls_to_become``: afterwards ``type(m) is nn.Linear``;
training mode and hooks are kept). ``load_state_dict`` into an unbuilt lazy layer builds it
from the checkpoint's shapes.

What differs from torch, and why:

* The first call must be eager. Inside ``jit`` / ``grad`` / ``vmap`` / ``eval_shape`` the new
  parameters would be traced values, lost when the trace ends, so it raises and says to run
  one eager call first.
* ``parameters()``, ``buffers()``, ``state_dict()`` (and so building an optimizer) raise while
  a layer is unbuilt: an fparam optimizer records each parameter's shape when it is built, so
  torch's way (the optimizer holds placeholders that fill in later) cannot work.
* ``load_state_dict`` turns the layer into the plain one at once (torch waits for the next
  forward).
* ``UninitializedParameter`` is not a ``Parameter`` subclass: it is a placeholder, never a
  leaf, and ``isinstance(p, nn.Parameter)`` is false for it.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import numpy as np

from fparam._hooks import HOOKS, PRE_HOOKS
from fparam._module import Module, _note_owner
from fparam._trace import current_trace
from fparam.nn import _validation as V
from fparam.nn.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    _ConvNd,
)
from fparam.nn.linear import Linear
from fparam.nn.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    _NormBase,
)

__all__ = [
    "LazyBatchNorm1d",
    "LazyBatchNorm2d",
    "LazyBatchNorm3d",
    "LazyConv1d",
    "LazyConv2d",
    "LazyConv3d",
    "LazyConvTranspose1d",
    "LazyConvTranspose2d",
    "LazyConvTranspose3d",
    "LazyInstanceNorm1d",
    "LazyInstanceNorm2d",
    "LazyInstanceNorm3d",
    "LazyLinear",
    "UninitializedBuffer",
    "UninitializedParameter",
]

# torch's message for reading a placeholder's shape (and friends).
_NO_SHAPE = (
    "Can't access the {what} of an uninitialized parameter or buffer. This error usually happens "
    "in `load_state_dict` when trying to load an uninitialized parameter into an initialized "
    "one. Call `forward` to initialize the parameters before accessing their attributes."
)
_IN_TRACE = (
    "{cls} has not been built yet: it takes its input size from its first call, and that call "
    "is inside a JAX transformation (jit, grad, vmap, eval_shape, ...), where the parameters it "
    "would create are traced values lost when the trace ends. Call the model once eagerly "
    "first, outside any transformation (a batch of one is enough: "
    "`model(jnp.zeros((1, *example_shape)))`), or load a checkpoint with load_state_dict; "
    "then jit it. Or give the size and use nn.{plain} instead."
)
_CONV_RANK = (
    "Expected {unbatched}D (unbatched) or {batched}D (batched) input to {cls}, but got input of "
    "size: {shape}"
)


class _Uninitialized:
    """A placeholder for an array whose shape a lazy layer learns from its first input.

    Static data of the layer: compared by kind, dtype and device (hashable), never a leaf.
    """

    __slots__ = ("device", "dtype")

    _kind = ""

    def __init__(self, dtype: Any = None, device: Any = None) -> None:
        self.dtype = np.dtype(V.resolve_dtype(type(self).__name__, dtype))
        self.device = V.resolve_device(type(self).__name__, device)

    def _key(self) -> tuple[Any, ...]:
        return (type(self), self.dtype, self.device)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Uninitialized) and other._key() == self._key()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _fail(self, what: str) -> Any:
        raise RuntimeError(_NO_SHAPE.format(what=what))

    shape = property(lambda self: self._fail("shape"))
    ndim = property(lambda self: self._fail("ndim"))
    size = property(lambda self: self._fail("size"))

    def numel(self) -> int:
        return self._fail("numel")  # type: ignore[no-any-return]

    def _moved(self, device: Any, dtype: Any) -> _Uninitialized:
        new = object.__new__(type(self))
        new.dtype = self.dtype if dtype is None else np.dtype(dtype)
        new.device = self.device if device is None else device
        return new


class UninitializedParameter(_Uninitialized):
    """torch's ``UninitializedParameter``: a parameter whose shape is not known yet. Reading
    its shape raises torch's ``RuntimeError``; it becomes a ``Parameter`` at the first call."""

    requires_grad = True


class UninitializedBuffer(_Uninitialized):
    """torch's ``UninitializedBuffer``: a buffer whose shape is not known yet."""

    requires_grad = False


def _become(module: Module, built: Module) -> None:
    """Turn ``module`` into ``built`` in place (torch's ``cls_to_become``), keeping what the
    user set on the lazy layer: training mode and hooks."""
    d = module.__dict__
    kept = {k: d[k] for k in ("training", PRE_HOOKS, HOOKS) if k in d}
    new = dict(built.__dict__)
    new.pop("_fp_trace", None)
    if "_fp_trace" in d:
        new["_fp_trace"] = d["_fp_trace"]
    object.__setattr__(module, "__class__", type(built))
    object.__setattr__(module, "__dict__", new)
    for name, value in kept.items():
        if name not in new or new[name] is not value:
            module._set_static(name, value)
    layout = new["_fp_layout"]
    for name in layout.leaf_names[: len(layout.params) + len(layout.buffers)]:
        _note_owner(new[name], module, name)


class _LazyMixin(Module):
    """What every lazy layer shares: placeholders, the first call, and building."""

    cls_to_become: type[Module] = Module

    def _set_placeholders(
        self, names: Mapping[str, type[_Uninitialized]], dtype: Any, device: Any
    ) -> None:
        for name, kind in names.items():
            if name in self.__dict__:
                delattr(self, name)
            setattr(self, name, kind(dtype, device))

    def _lazy_setup(self, dtype: Any, device: Any, key: Any, names: tuple[str, ...]) -> None:
        self._fp_lazy = names
        self._fp_lazy_factory = (device, dtype)
        self._fp_lazy_key = key

    def has_uninitialized_params(self) -> bool:
        """Whether some parameter or buffer still waits for the first call (torch's name)."""
        return bool(self.__dict__.get("_fp_lazy"))

    def reset_parameters(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to reset before the first call (torch skips it too)."""

    def _size_from_input(self, input: Any) -> int:
        raise NotImplementedError

    def _size_from_shapes(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
        raise NotImplementedError

    def _build(self, size: int, device: Any, dtype: Any, key: Any) -> Module:
        raise NotImplementedError

    def _materialize(self, size: int) -> None:
        device, dtype = self._fp_lazy_factory
        _become(self, self._build(size, device, dtype, self._fp_lazy_key))

    def initialize_parameters(self, input: Any) -> None:
        """Build the layer from ``input``'s size (torch's name); eager only."""
        if current_trace() is not None:
            raise RuntimeError(
                _IN_TRACE.format(cls=type(self).__name__, plain=self.cls_to_become.__name__)
            )
        self._materialize(self._size_from_input(input) if self.has_uninitialized_params() else 0)

    def forward(self, input: Any, *args: Any, **kwargs: Any) -> Any:
        self.initialize_parameters(input)
        return self.forward(input, *args, **kwargs)  # the plain layer's forward now

    def _fp_load_shapes(self, state_dict: Mapping[str, Any], prefix: str) -> None:
        """Build from a checkpoint's shapes (``load_state_dict``), when it has them."""
        shapes = {
            name: tuple(np.shape(state_dict[prefix + name]))
            for name in self._fp_lazy
            if prefix + name in state_dict and hasattr(state_dict[prefix + name], "shape")
        }
        size = self._size_from_shapes(shapes) if shapes else None
        if size is not None:
            self._materialize(size)

    def _fp_convert_placeholders(
        self, device: Any, target: Callable[[Any], Any] | None
    ) -> list[Callable[[], None]]:
        """``.to()`` / ``.half()`` on an unbuilt layer: the placeholders and the dtype and
        device it will build with change, as torch's placeholders do."""
        old_device, old_dtype = self._fp_lazy_factory
        dtype = None if target is None else target(np.dtype(old_dtype))
        factory = (old_device if device is None else device, old_dtype if dtype is None else dtype)

        def apply() -> None:
            for name in self._fp_lazy:
                setattr(self, name, getattr(self, name)._moved(device, dtype))
            self._fp_lazy_factory = factory

        return [apply]


# --------------------------------------------------------------------------------------------
# Linear


class LazyLinear(_LazyMixin, Linear):
    """``nn.Linear`` whose ``in_features`` is ``input.shape[-1]`` of its first call, like
    ``torch.nn.LazyLinear``; then it is an ``nn.Linear``.

    Arguments:
        out_features: size of the last output dimension.
        bias: whether to learn an additive bias.
        device, dtype, key: as :class:`fparam.nn.Linear` (used when it is built).
    """

    cls_to_become = Linear

    def __init__(
        self,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        out_features = V.check_size("LazyLinear", "out_features", out_features)
        dtype = V.resolve_dtype("LazyLinear", dtype)
        device = V.resolve_device("LazyLinear", device)
        key = V.check_key("LazyLinear", key)
        Module.__init__(self)
        self.in_features = 0
        self.out_features = out_features
        names = {"weight": UninitializedParameter}
        if bias:
            names["bias"] = UninitializedParameter
        else:
            self.bias = None  # type: ignore[assignment]  # static, as torch's plain None
        self._set_placeholders(names, dtype, device)
        self._lazy_setup(dtype, device, key, tuple(names))

    def _size_from_input(self, input: Any) -> int:
        return int(np.shape(input)[-1])

    def _size_from_shapes(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
        weight = shapes.get("weight")
        return weight[1] if weight is not None and len(weight) == 2 else None

    def _build(self, size: int, device: Any, dtype: Any, key: Any) -> Module:
        return Linear(size, self.out_features, self.bias is not None, device, dtype, key=key)


# --------------------------------------------------------------------------------------------
# Convolutions


class _LazyConv(_LazyMixin, _ConvNd):
    def _lazy_conv_init(
        self,
        plain: type[_ConvNd],
        out_channels: int,
        kwargs: dict[str, Any],
        bias: bool,
        device: Any,
        dtype: Any,
        key: Any,
    ) -> None:
        name = type(self).__name__
        dtype = V.resolve_dtype(name, dtype)
        device = V.resolve_device(name, device)
        key = V.check_key(name, key)
        # torch's way: the plain layer with 0 input channels and no bias (its checks run),
        # then placeholders. Its empty weight is drawn on the host: no XLA work.
        with warnings.catch_warnings():  # "Initializing zero-element tensors is a no-op"
            warnings.simplefilter("ignore", UserWarning)
            plain.__init__(self, 0, out_channels, bias=False, dtype=dtype, **kwargs)  # type: ignore[misc]
        names = {"weight": UninitializedParameter}
        if bias:
            names["bias"] = UninitializedParameter
        else:
            delattr(self, "bias")
            self.bias = None  # type: ignore[assignment]  # static, as torch's plain None
        self._set_placeholders(names, dtype, device)
        self._lazy_setup(dtype, device, key, tuple(names))

    def _size_from_input(self, input: Any) -> int:
        shape = np.shape(input)
        unbatched = self._n + 1
        if len(shape) not in (unbatched, unbatched + 1):
            raise RuntimeError(
                _CONV_RANK.format(
                    unbatched=unbatched,
                    batched=unbatched + 1,
                    cls=type(self).__name__,
                    shape=tuple(shape),
                )
            )
        return int(shape[1] if len(shape) == unbatched + 1 else shape[0])

    def _size_from_shapes(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
        weight = shapes.get("weight")
        if weight is None or len(weight) != self._n + 2:
            return None
        return weight[0] if self.transposed else weight[1] * self.groups

    def _build(self, size: int, device: Any, dtype: Any, key: Any) -> Module:
        plain: Callable[..., Module] = self.cls_to_become
        common = dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=device,
            dtype=dtype,
            key=key,
        )
        if self.transposed:
            common["output_padding"] = self.output_padding
        return plain(size, self.out_channels, self.kernel_size, **common)


def _lazy_conv(plain: type[_ConvNd], transposed: bool) -> type[_LazyConv]:
    name = f"Lazy{plain.__name__}"

    if transposed:

        def __init__(
            self: _LazyConv,
            out_channels: int,
            kernel_size: Any,
            stride: Any = 1,
            padding: Any = 0,
            output_padding: Any = 0,
            groups: int = 1,
            bias: bool = True,
            dilation: Any = 1,
            padding_mode: str = "zeros",
            device: Any = None,
            dtype: Any = None,
            *,
            key: jax.Array | None = None,
        ) -> None:
            kwargs = dict(
                kernel_size=kernel_size,
                stride=stride,
                padding=padding,
                output_padding=output_padding,
                groups=groups,
                dilation=dilation,
                padding_mode=padding_mode,
            )
            self._lazy_conv_init(plain, out_channels, kwargs, bias, device, dtype, key)

    else:

        def __init__(  # type: ignore[misc]
            self: _LazyConv,
            out_channels: int,
            kernel_size: Any,
            stride: Any = 1,
            padding: Any = 0,
            dilation: Any = 1,
            groups: int = 1,
            bias: bool = True,
            padding_mode: str = "zeros",
            device: Any = None,
            dtype: Any = None,
            *,
            key: jax.Array | None = None,
        ) -> None:
            kwargs = dict(
                kernel_size=kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                padding_mode=padding_mode,
            )
            self._lazy_conv_init(plain, out_channels, kwargs, bias, device, dtype, key)

    axis = "input.shape[1]` (`input.shape[0]` unbatched)"
    doc = (
        f"``nn.{plain.__name__}`` whose ``in_channels`` is ``{axis[:-1]}`` of its first call, "
        f"like ``torch.nn.{name}``; then it is an ``nn.{plain.__name__}``.\n\n"
        f"    Arguments: those of :class:`fparam.nn.{plain.__name__}` without ``in_channels``."
    )
    namespace = {
        "__init__": __init__,
        "cls_to_become": plain,
        "__doc__": doc,
        "__module__": __name__,
    }
    return cast(type[_LazyConv], type(name, (_LazyConv, plain), namespace))


LazyConv1d = _lazy_conv(Conv1d, False)
LazyConv2d = _lazy_conv(Conv2d, False)
LazyConv3d = _lazy_conv(Conv3d, False)
LazyConvTranspose1d = _lazy_conv(ConvTranspose1d, True)
LazyConvTranspose2d = _lazy_conv(ConvTranspose2d, True)
LazyConvTranspose3d = _lazy_conv(ConvTranspose3d, True)


# --------------------------------------------------------------------------------------------
# Normalisation


class _LazyNorm(_LazyMixin, _NormBase):
    """torch's ``_LazyNormBase``: the same signature for batch and instance norms (so a
    ``LazyInstanceNorm`` defaults to ``affine=True, track_running_stats=True``, as torch's)."""

    def __init__(
        self,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        name = type(self).__name__
        dtype = V.resolve_dtype(name, dtype)
        device = V.resolve_device(name, device)
        _NormBase.__init__(self, 0, eps, momentum, False, False, device, dtype, bias=False)
        self.affine = affine
        self.track_running_stats = track_running_stats
        names: dict[str, type[_Uninitialized]] = {}
        if affine:
            names["weight"] = UninitializedParameter
            if bias:
                names["bias"] = UninitializedParameter
        if track_running_stats:
            names["running_mean"] = UninitializedBuffer
            names["running_var"] = UninitializedBuffer
        self._set_placeholders(names, dtype, device)
        self._lazy_setup(dtype, device, None, tuple(names))
        self._lazy_bias = bool(bias)

    def _size_from_input(self, input: Any) -> int:
        self._check_input_dim(types.SimpleNamespace(ndim=np.ndim(input)))  # type: ignore[arg-type]
        return int(np.shape(input)[1])  # torch reads axis 1 (also for unbatched input)

    def _size_from_shapes(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shape = shapes.get(name)
            if shape is not None and len(shape) == 1:
                return shape[0]
        return None

    def _build(self, size: int, device: Any, dtype: Any, key: Any) -> Module:
        plain: Callable[..., Module] = self.cls_to_become
        return plain(
            size,
            self.eps,
            self.momentum,
            self.affine,
            self.track_running_stats,
            device,
            dtype,
            bias=self._lazy_bias and self.affine,
        )


def _lazy_norm(plain: type[_NormBase]) -> type[_LazyNorm]:
    name = f"Lazy{plain.__name__}"
    doc = (
        f"``nn.{plain.__name__}`` whose ``num_features`` is ``input.shape[1]`` of its first "
        f"call, like ``torch.nn.{name}``; then it is an ``nn.{plain.__name__}``.\n\n"
        f"    Arguments: those of :class:`fparam.nn.{plain.__name__}` without ``num_features``, "
        "with torch's lazy defaults (``affine=True, track_running_stats=True``)."
    )
    namespace = {"cls_to_become": plain, "__doc__": doc, "__module__": __name__}
    return cast(type[_LazyNorm], type(name, (_LazyNorm, plain), namespace))


LazyBatchNorm1d = _lazy_norm(BatchNorm1d)
LazyBatchNorm2d = _lazy_norm(BatchNorm2d)
LazyBatchNorm3d = _lazy_norm(BatchNorm3d)
LazyInstanceNorm1d = _lazy_norm(InstanceNorm1d)
LazyInstanceNorm2d = _lazy_norm(InstanceNorm2d)
LazyInstanceNorm3d = _lazy_norm(InstanceNorm3d)
