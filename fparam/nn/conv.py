"""Convolution layers (``torch/nn/modules/conv.py``): ``Conv{1,2,3}d``, ``ConvTranspose{1,2,3}d``.

Each layer is a thin shell over ``fparam.nn.functional``: the constructor stores torch's
attributes and draws torch's default initial values, and ``forward`` calls
``conv_padding_mode_forward`` / ``conv_transpose{n}d``, which hold the maths and the checks.

Constructor signatures, positional orders, attribute values, parameter shapes, ``extra_repr`` and
the constructor errors (types, messages and order) are torch's (``torch-semantics.md`` §3).
Differences, all of them errors raised earlier than torch raises them:

* torch validates some settings only in ``forward`` (non-positive stride, kernel size or
  dilation, negative padding or output padding, tuples of the wrong length, non-integer sizes);
  fparam raises the same exception type with torch's message at construction, prefixed by the
  layer's configuration.
* ``ConvTranspose*`` rejects a string ``padding`` at construction (``TypeError``); torch turns
  ``'same'`` into ``('s', 'a', 'm', 'e')`` and fails in ``forward``.
* sizes are stored as Python ints (torch keeps NumPy integers as they are).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import jax
import numpy as np

from fparam import _random
from fparam._module import Module, Parameter
from fparam.nn import _validation as V
from fparam.nn import functional as F
from fparam.nn import init
from fparam.nn.functional import conv as conv_f

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
]

# torch's messages (§3.2), then fparam's own for the checks torch leaves to forward.
_GROUPS_POSITIVE = "groups must be a positive integer"
_IN_DIVISIBLE = "in_channels must be divisible by groups"
_OUT_DIVISIBLE = "out_channels must be divisible by groups"
_PADDING_STRINGS = {"same", "valid"}
_PADDING_MODES = {"zeros", "reflect", "replicate", "circular"}
_INVALID_PADDING_STRING = "Invalid padding string {padding!r}, should be one of {valid}"
_SAME_STRIDED = "padding='same' is not supported for strided convolutions"
_INVALID_PADDING_MODE = "padding_mode must be one of {valid}, but got padding_mode='{mode}'"
_TRANSPOSE_PADDING_MODE = 'Only "zeros" padding mode is supported for {cls}'
_TRANSPOSE_FORWARD_PADDING_MODE = "Only `zeros` padding mode is supported for {cls}"
_TRANSPOSE_STRING_PADDING = (
    "{cls} does not support string padding (got padding={padding!r}): pass an int or a tuple "
    "of {n} ints (torch accepts the string here and fails in forward)"
)
_CONFIG = "{config}: {problem}"
_NOT_INT = "{name} must be an int or a sequence of ints, but got {name}={value!r}"
_CHANNELS_NOT_INT = "{name} must be an int, but got {name}={value!r}"
_NEGATIVE_CHANNELS = "{name} must be non-negative, but got {name}={value}"
_KERNEL_LENGTH = "kernel_size must be an int or a sequence of {n} ints, but got kernel_size={value}"
_TUPLE_LENGTH = (
    "expected {name} to be a single integer value or a list of {n} values to match the "
    "convolution dimensions, but got {name}={value}"
)
_MODE_PADDING_LENGTH = (
    "padding_mode={mode!r} pads each spatial dim with F.pad, so padding must be an int or a "
    "sequence of {n} ints, but got padding={value}"
)
_NOT_AN_ARRAY = "{cls}.forward(): argument 'input' must be an array, not {type}"
_REWORDED = (RuntimeError, ValueError, TypeError, NotImplementedError)
_IN_FORWARD = "{message}\n(in {layer}, called on an input of shape {shape})"


def _index(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    return operator.index(value)


def _ntuple(value: Any, n: int) -> tuple[Any, ...]:
    """torch's ``_single/_pair/_triple``: an iterable becomes a tuple as it is (its length is
    checked later), anything else is repeated ``n`` times."""
    if isinstance(value, Iterable):
        return tuple(value)
    return (value,) * n


class _ConvNd(Module):
    """Base of the convolution layers, like torch's ``_ConvNd`` (same arguments, normalised).

    Attributes (all torch's): ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``,
    ``padding`` (a tuple, or ``'same'``/``'valid'``), ``dilation``, ``transposed``,
    ``output_padding``, ``groups``, ``padding_mode``, ``_reversed_padding_repeated_twice``,
    and the parameters ``weight`` and ``bias`` (``None`` with ``bias=False``).
    """

    _n: int = 0  # the number of spatial dimensions, set by each concrete class

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str | tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int
    padding_mode: str
    _reversed_padding_repeated_twice: list[int] | tuple[int, ...]
    weight: jax.Array
    bias: jax.Array | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: str | tuple[int, ...],
        dilation: tuple[int, ...],
        transposed: bool,
        output_padding: tuple[int, ...],
        groups: int,
        bias: bool,
        padding_mode: str,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        name = type(self).__name__
        dtype = V.resolve_dtype(name, dtype)
        device = V.resolve_device(name, device)
        key = V.check_key(name, key)
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, numbers.Real):  # torch: an unnamed TypeError from `%`
                V.check_int(name, arg, value)
        if not isinstance(groups, numbers.Real):  # torch: an unnamed TypeError from `<=`
            V.check_int(name, "groups", groups)
        super().__init__()
        # torch's checks, in torch's order (§3.2).
        if transposed and padding_mode != "zeros":
            raise ValueError(_TRANSPOSE_PADDING_MODE.format(cls=name))
        if groups <= 0:
            raise ValueError(_GROUPS_POSITIVE)
        if in_channels % groups != 0:
            raise ValueError(_IN_DIVISIBLE)
        if out_channels % groups != 0:
            raise ValueError(_OUT_DIVISIBLE)
        if isinstance(padding, str):
            if transposed:
                raise TypeError(
                    _TRANSPOSE_STRING_PADDING.format(cls=name, padding=padding, n=len(kernel_size))
                )
            if padding not in _PADDING_STRINGS:
                raise ValueError(
                    _INVALID_PADDING_STRING.format(padding=padding, valid=_PADDING_STRINGS)
                )
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError(_SAME_STRIDED)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(_INVALID_PADDING_MODE.format(valid=_PADDING_MODES, mode=padding_mode))

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = output_padding
        self.groups = groups
        self.padding_mode = padding_mode
        # What torch checks only in forward, checked now; sizes become Python ints.
        self._check_config(bias)
        if isinstance(self.padding, str):
            # torch keeps a list here, and a tuple for explicit padding.
            pads = conv_f.reversed_padding_repeated_twice(
                self.padding, self.kernel_size, self.dilation
            )
            self._reversed_padding_repeated_twice = list(pads)
        else:
            self._reversed_padding_repeated_twice = tuple(
                p for p in reversed(self.padding) for _ in range(2)
            )

        if transposed:
            shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        shapes: dict[str, tuple[int, ...]] = {"weight": shape}
        if bias:
            shapes["bias"] = (self.out_channels,)
        values = self._initial_values(key, shapes, dtype)
        self.weight = Parameter(V.place(values["weight"], device))
        if bias:
            self.bias = Parameter(V.place(values["bias"], device))
        else:
            self.register_parameter("bias", None)

    # ---------------------------------------------------------------- construction checks

    def _config(self, bias: bool) -> str:
        """torch's ``extra_repr`` (shown in ``repr`` and in this layer's error messages)."""
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
        s += f"stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not bias:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _check_config(self, bias: bool) -> None:
        n = self._n
        config = f"{type(self).__name__}({self._config(bias)})"

        def fail(exc: type[Exception], problem: str) -> NoReturn:
            raise exc(_CONFIG.format(config=config, problem=problem))

        for name in ("in_channels", "out_channels", "groups"):
            value = getattr(self, name)
            try:
                value = _index(value)
            except TypeError:
                fail(TypeError, _CHANNELS_NOT_INT.format(name=name, value=value))
            if value < 0:
                fail(RuntimeError, _NEGATIVE_CHANNELS.format(name=name, value=value))
            setattr(self, name, value)
        names = ["kernel_size", "stride", "dilation", "output_padding"]
        if not isinstance(self.padding, str):
            names.append("padding")
        for name in names:
            value = getattr(self, name)
            try:
                ints = tuple(_index(v) for v in value)
            except TypeError:
                fail(TypeError, _NOT_INT.format(name=name, value=value))
            listed = list(ints)
            if name == "kernel_size":
                if len(ints) != n:
                    fail(RuntimeError, _KERNEL_LENGTH.format(n=n, value=listed))
                if any(k <= 0 for k in ints):
                    fields = conv_f._fields(kernel=ints)
                    fail(RuntimeError, conv_f._ZERO_KERNEL.format(fields=fields))
            elif len(ints) not in (1, n):
                fail(RuntimeError, _TUPLE_LENGTH.format(name=name, n=n, value=listed))
            setattr(self, name, ints)
        if any(s <= 0 for s in self.stride):
            fail(RuntimeError, conv_f._NONPOSITIVE_STRIDE)
        if any(d <= 0 for d in self.dilation):
            expanded = list(self.dilation * (n // len(self.dilation)))
            fail(RuntimeError, conv_f._NONPOSITIVE_DILATION.format(fields=expanded))
        if any(op < 0 for op in self.output_padding):
            fail(RuntimeError, conv_f._NEGATIVE_OUTPUT_PADDING)
        if not isinstance(self.padding, str):
            if self.padding_mode == "zeros":
                # Other modes pad with F.pad first, where a negative pad crops (as in torch).
                if any(p < 0 for p in self.padding):
                    fail(RuntimeError, conv_f._NEGATIVE_PADDING)
            elif len(self.padding) != n:
                # torch's F.pad then gets 2 pads for a multi-dim conv and cannot apply them.
                fail(
                    NotImplementedError,
                    _MODE_PADDING_LENGTH.format(
                        mode=self.padding_mode, n=n, value=list(self.padding)
                    ),
                )

    # ---------------------------------------------------------------- parameters

    def _initial_values(
        self, key: jax.Array | None, shapes: dict[str, tuple[int, ...]], dtype: Any
    ) -> dict[str, jax.Array]:
        """torch's default draw: weight first, then bias, from two halves of ``key``."""
        weight_key, bias_key = _random.split_key(_random.init_key(key))
        weight = jax.ShapeDtypeStruct(shapes["weight"], dtype)
        values = {"weight": init.kaiming_uniform_(weight, a=math.sqrt(5), key=weight_key)}
        if "bias" in shapes:
            fan_in, _ = init._calculate_fan_in_and_fan_out(weight)  # from the stored layout
            bound = init.default_uniform_bound(fan_in)
            bias = jax.ShapeDtypeStruct(shapes["bias"], dtype)
            values["bias"] = init.uniform_(bias, -bound, bound, key=bias_key)
        return values

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's default initial values again (in place; parameters keep identity).

        ``weight ~ kaiming_uniform(a=√5)``, i.e. ``U(-1/√fan_in, 1/√fan_in)``, and ``bias`` from
        the same ``U(-1/√fan_in, 1/√fan_in)``, with ``fan_in = weight.shape[1] * prod(k)`` from
        the stored weight shape (``out_channels/groups * prod(k)`` for ``ConvTranspose*``).
        The new values stay on the device (or sharding) of the old ones.

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shapes: dict[str, tuple[int, ...]] = {"weight": self.weight.shape}
        if self.bias is not None:
            shapes["bias"] = self.bias.shape
        values = self._initial_values(key, shapes, self.weight.dtype)
        self._set_values(**values)

    # ---------------------------------------------------------------- forward helpers

    def _check_input(self, input: Any) -> None:
        if not (
            isinstance(input, (jax.Array, np.ndarray, np.generic)) or hasattr(input, "__array__")
        ):
            raise TypeError(
                _NOT_AN_ARRAY.format(cls=type(self).__name__, type=type(input).__name__)
            )

    def _in_forward(self, error: Exception, input: Any) -> Exception:
        """``error`` again, its message naming this layer and the input shape."""
        if type(error) not in _REWORDED:
            return error
        message = _IN_FORWARD.format(message=error, layer=repr(self), shape=tuple(np.shape(input)))
        return type(error)(message).with_traceback(error.__traceback__)

    def extra_repr(self) -> str:
        return self._config(self.bias is not None)


class _ConvForward(_ConvNd):
    def forward(self, input: jax.Array) -> jax.Array:
        """Convolve ``input``: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.

        Non-``'zeros'`` padding modes pad with ``F.pad`` first, as torch does.
        """
        self._check_input(input)
        try:
            return conv_f.conv_padding_mode_forward(
                input,
                self.weight,
                self.bias,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
                self.padding_mode,
            )
        except (RuntimeError, ValueError, TypeError) as error:
            raise self._in_forward(error, input) from None


class _ConvTransposeForward(_ConvNd):
    def forward(self, input: jax.Array, output_size: Sequence[int] | None = None) -> jax.Array:
        """Transposed convolution of ``input`` (``(N, C_in, *spatial)`` or unbatched).

        Arguments:
            input: the input array.
            output_size: optional requested output size: the spatial sizes, or the full output
                shape (leading entries ignored). Each must lie in ``[min, min + stride - 1]``;
                it then replaces the layer's ``output_padding`` (torch's rule, §3.9).
        """
        n = self._n
        name = type(self).__name__
        if self.padding_mode != "zeros":
            raise ValueError(_TRANSPOSE_FORWARD_PADDING_MODE.format(cls=name))
        self._check_input(input)
        conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
        try:
            output_padding = conv_f.conv_transpose_output_padding(
                np.shape(input),
                output_size,
                self.stride,
                self.padding,  # type: ignore[arg-type]  # never a string here
                self.kernel_size,
                self.dilation,
                n,
                self.output_padding,
            )
            return conv(
                input,
                self.weight,
                self.bias,
                self.stride,
                self.padding,  # type: ignore[arg-type]
                output_padding,
                self.groups,
                self.dilation,
            )
        except (RuntimeError, ValueError, TypeError) as error:
            raise self._in_forward(error, input) from None


class Conv1d(_ConvForward):
    """1-D convolution (cross-correlation) over ``(N, C_in, L)`` or ``(C_in, L)``, like
    ``torch.nn.Conv1d``.

    Arguments:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 1-tuple.
        stride: int or 1-tuple (default 1).
        padding: int or 1-tuple, ``'valid'`` or ``'same'`` (stride 1 only; default 0).
        dilation: int or 1-tuple (default 1).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_out, C_in/groups, k)``, ``bias`` ``(C_out,)``, both initialised
    ``U(-1/√fan_in, 1/√fan_in)`` with ``fan_in = C_in/groups * k``.
    """

    _n = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 1),
            _ntuple(stride, 1),
            padding if isinstance(padding, str) else _ntuple(padding, 1),
            _ntuple(dilation, 1),
            False,
            (0,),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )


class Conv2d(_ConvForward):
    """2-D convolution (cross-correlation) over ``(N, C_in, H, W)`` or ``(C_in, H, W)``, like
    ``torch.nn.Conv2d``.

    Arguments:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 2-tuple.
        stride: int or 2-tuple (default 1).
        padding: int or 2-tuple, ``'valid'`` or ``'same'`` (stride 1 only; default 0).
        dilation: int or 2-tuple (default 1).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_out, C_in/groups, kH, kW)`` (OIHW), ``bias`` ``(C_out,)``, both
    initialised ``U(-1/√fan_in, 1/√fan_in)`` with ``fan_in = C_in/groups * kH * kW``.
    """

    _n = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 2),
            _ntuple(stride, 2),
            padding if isinstance(padding, str) else _ntuple(padding, 2),
            _ntuple(dilation, 2),
            False,
            (0, 0),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )


class Conv3d(_ConvForward):
    """3-D convolution (cross-correlation) over ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``,
    like ``torch.nn.Conv3d``.

    Arguments:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 3-tuple.
        stride: int or 3-tuple (default 1).
        padding: int or 3-tuple, ``'valid'`` or ``'same'`` (stride 1 only; default 0).
        dilation: int or 3-tuple (default 1).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_out, C_in/groups, kD, kH, kW)`` (OIDHW), ``bias`` ``(C_out,)``,
    both initialised ``U(-1/√fan_in, 1/√fan_in)`` with ``fan_in = C_in/groups * kD * kH * kW``.
    """

    _n = 3

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 3),
            _ntuple(stride, 3),
            padding if isinstance(padding, str) else _ntuple(padding, 3),
            _ntuple(dilation, 3),
            False,
            (0, 0, 0),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )


class ConvTranspose1d(_ConvTransposeForward):
    """1-D transposed convolution over ``(N, C_in, L)`` or ``(C_in, L)``, like
    ``torch.nn.ConvTranspose1d`` (the gradient of ``Conv1d`` with respect to its input).

    Arguments (torch's positional order, which differs from ``Conv1d``'s):
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 1-tuple.
        stride: int or 1-tuple (default 1).
        padding: int or 1-tuple: ``dilation * (k - 1) - padding`` zeros pad each side (default 0).
        output_padding: int or 1-tuple added to the high side of the output; smaller than the
            stride or the dilation (default 0).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        dilation: int or 1-tuple (default 1).
        padding_mode: only ``'zeros'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_in, C_out/groups, k)``, ``bias`` ``(C_out,)``, both initialised
    ``U(-1/√fan_in, 1/√fan_in)`` with torch's ``fan_in = C_out/groups * k``.
    """

    _n = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 1),
            _ntuple(stride, 1),
            padding if isinstance(padding, str) else _ntuple(padding, 1),
            _ntuple(dilation, 1),
            True,
            _ntuple(output_padding, 1),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )


class ConvTranspose2d(_ConvTransposeForward):
    """2-D transposed convolution over ``(N, C_in, H, W)`` or ``(C_in, H, W)``, like
    ``torch.nn.ConvTranspose2d`` (the gradient of ``Conv2d`` with respect to its input).

    Arguments (torch's positional order, which differs from ``Conv2d``'s):
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 2-tuple.
        stride: int or 2-tuple (default 1).
        padding: int or 2-tuple: ``dilation * (k - 1) - padding`` zeros pad each side (default 0).
        output_padding: int or 2-tuple added to the high side of the output; smaller than the
            stride or the dilation (default 0).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        dilation: int or 2-tuple (default 1).
        padding_mode: only ``'zeros'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_in, C_out/groups, kH, kW)``, ``bias`` ``(C_out,)``, both
    initialised ``U(-1/√fan_in, 1/√fan_in)`` with torch's ``fan_in = C_out/groups * kH * kW``.
    """

    _n = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 2),
            _ntuple(stride, 2),
            padding if isinstance(padding, str) else _ntuple(padding, 2),
            _ntuple(dilation, 2),
            True,
            _ntuple(output_padding, 2),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )


class ConvTranspose3d(_ConvTransposeForward):
    """3-D transposed convolution over ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``, like
    ``torch.nn.ConvTranspose3d`` (the gradient of ``Conv3d`` with respect to its input).

    Arguments (torch's positional order, which differs from ``Conv3d``'s):
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or 3-tuple.
        stride: int or 3-tuple (default 1).
        padding: int or 3-tuple: ``dilation * (k - 1) - padding`` zeros pad each side (default 0).
        output_padding: int or 3-tuple added to the high side of the output; smaller than the
            stride or the dilation (default 0).
        groups: blocked connections; divides ``in_channels`` and ``out_channels`` (default 1).
        bias: whether to learn a bias (``False`` registers ``bias`` as ``None``).
        dilation: int or 3-tuple (default 1).
        padding_mode: only ``'zeros'``.
        device: a JAX device or sharding for the parameters, or torch's spelling (``'cpu'``,
            ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default): a NumPy/JAX dtype, its name, or a
            torch dtype.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None`` draws
            from fparam's default stream.

    Parameters: ``weight`` ``(C_in, C_out/groups, kD, kH, kW)``, ``bias`` ``(C_out,)``, both
    initialised ``U(-1/√fan_in, 1/√fan_in)`` with torch's ``fan_in = C_out/groups * prod(k)``.
    """

    _n = 3

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _ntuple(kernel_size, 3),
            _ntuple(stride, 3),
            padding if isinstance(padding, str) else _ntuple(padding, 3),
            _ntuple(dilation, 3),
            True,
            _ntuple(output_padding, 3),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            key=key,
        )
