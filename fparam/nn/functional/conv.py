"""Convolutions as pure JAX functions, with torch.nn.functional's semantics.

Everything here mirrors ``torch.nn.functional`` (see ``reference/torch-semantics.md`` §3): the
signatures (including ``conv_transpose*``'s positional order), the NC[D]HW input and OI[D]HW /
``(in, out/groups, *k)`` weight layouts, unbatched inputs, ``'same'``/``'valid'`` padding, the
output sizes and the error conditions, raised with torch's exception types and messages.

All shape logic runs in Python on static shapes, so every function works under ``jax.jit``,
``jax.grad`` and ``jax.vmap``, and all validation happens at trace time. The maths is one
``jax.lax.conv_general_dilated`` call per convolution; a transposed convolution is the dilated-input
convolution with the kernel flipped and its in/out axes swapped per group. A few rare
configurations pad separately from the convolution, as an XLA bug would otherwise abort the
process compiling their derivatives (see ``_ConvWindow``).

Numerics: ``precision`` is left to JAX's default (``jax.default_matmul_precision``), which is full
float32 on CPU (measured against torch: max abs error ~1e-6 on values, ~4e-6 on gradients, at
magnitudes up to ~30). JAX documents that its GPU default may use TF32 for float32, as torch's
``torch.backends.cudnn.allow_tf32 = True`` default does for convolutions; wrap the call in
``jax.default_matmul_precision("float32")`` for full float32 there. Half-precision inputs
accumulate in float32 and round once, as torch does on CPU.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.sharding import PartitionSpec as P

from fparam.nn.functional import _sharding as S
from fparam.nn.functional.padding import pad

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_output_size",
    "conv_padding_mode_forward",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_transpose_output_padding",
    "conv_transpose_output_size",
    "pad",
    "reversed_padding_repeated_twice",
]

IntOrTuple = int | Sequence[int]
Padding = int | Sequence[int] | str

# --------------------------------------------------------------------------------------------
# Error messages (torch's wording, §3.5-3.9 of the reference).
# --------------------------------------------------------------------------------------------

_INPUT_RANK = (
    "Expected {unbatched}D (unbatched) or {batched}D (batched) input to {fn}, "
    "but got input of size: {shape}"
)
_WEIGHT_RANK = "Expected {rank}D weight for {fn} ({layout}), but got weight of size {shape}"
_NOT_INT = (
    "{fn}(): argument '{name}' must be tuple of ints, but found element of type {type} at pos {pos}"
)
_STRING_NOT_ALLOWED = "{fn}(): argument '{name}' must be tuple of ints, not str"
_NOT_SCALAR_INT = "{fn}(): argument '{name}' must be int, not {type}"
_TUPLE_LENGTH = (
    "expected {name} to be a single integer value or a list of {n} values to match the "
    "convolution dimensions, but got {name}={value}"
)
_INVALID_PADDING_STRING = "Invalid padding string: {padding!r}"
_SAME_STRIDED = "padding='same' is not supported for strided convolutions"
_NONPOSITIVE_GROUPS = "non-positive groups is not supported"
_NEGATIVE_PADDING = "negative padding is not supported"
_NEGATIVE_OUTPUT_PADDING = "negative output_padding is not supported"
_NONPOSITIVE_STRIDE = "non-positive stride is not supported"
_NONPOSITIVE_DILATION = "dilation should be greater than zero, but got {fields}"
_GROUPS_WEIGHT_MIN = (
    "Given groups={groups}, expected weight to be at least {groups} at dimension 0, "
    "but got weight of size {weight} instead"
)
_GROUPS_WEIGHT_DIVISIBLE = (
    "Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
    "but got weight of size {weight} instead"
)
_CHANNELS = (
    "Given {given}, weight of size {weight}, expected input{input} to have {expected} channels, "
    "but got {got} channels instead"
)
_BIAS = (
    "Given {given}weight of size {weight}, expected bias to be 1-dimensional with {expected} "
    "elements, but got bias of size {bias} instead"
)
_ZERO_KERNEL = "kernel size should be greater than zero, but got {fields}"
_KERNEL_TOO_BIG = (
    "Calculated padded input size per channel: ({padded}). Kernel size: ({kernel}). "
    "Kernel size can't be greater than actual input size"
)
_ZERO_SPATIAL = "Only zero batch or zero channel inputs are supported, but got input shape: {shape}"
_OUTPUT_PADDING_TOO_BIG = (
    "output padding must be smaller than either stride or dilation, but got {fields}"
)
_OUTPUT_TOO_SMALL = (
    "Given input size per channel: ({input}). Calculated output size per channel: ({output}). "
    "Output size is too small"
)
_DTYPE_MISMATCH = "Input type ({input}) and {what} type ({other}) should be the same"
_OUTPUT_SIZE_NOT_INT = (
    "output_size must be a sequence of ints, but found element of type {type} at pos {pos}"
)
_OUTPUT_SIZE_LENGTH = (
    "ConvTranspose{n}D: for {rank}D input, output_size must have {n} or {full} elements (got {got})"
)
_OUTPUT_SIZE_RANGE = (
    "requested an output size of {requested}, but valid sizes range from {min} to {max} "
    "(for an input of {input})"
)

_DIM_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}
_LAYOUTS = {1: "OIW", 2: "OIHW", 3: "OIDHW"}


def _shape(shape: Sequence[int]) -> str:
    """Format a shape as torch prints ``tensor.sizes()``: ``[2, 3, 8, 8]``."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _by_x(values: Sequence[int]) -> str:
    """Format per-dimension sizes as torch's conv messages do: ``2 x 2``."""
    return " x ".join(str(int(v)) for v in values)


def _fields(**named: Sequence[int]) -> str:
    """Format ``output_padding_height: 2 output_padding_width: 2 ...`` like ATen's checks."""
    parts: list[str] = []
    for prefix, values in named.items():
        names = _DIM_NAMES[len(values)]
        parts.extend(f"{prefix}_{dim}: {int(v)}" for dim, v in zip(names, values))
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Argument normalisation.
# --------------------------------------------------------------------------------------------


def _as_int(value: Any, fn: str, name: str, pos: int) -> int:
    if isinstance(value, bool):
        raise TypeError(_NOT_INT.format(fn=fn, name=name, type="bool", pos=pos))
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            _NOT_INT.format(fn=fn, name=name, type=type(value).__name__, pos=pos)
        ) from None


def _as_groups(groups: Any, fn: str) -> int:
    if isinstance(groups, bool) or not hasattr(groups, "__index__"):
        raise TypeError(_NOT_SCALAR_INT.format(fn=fn, name="groups", type=type(groups).__name__))
    return operator.index(groups)


def _ntuple(value: Any, n: int, fn: str, name: str) -> tuple[int, ...]:
    """torch's ``expand_param_if_needed``: an int or a 1-sequence broadcasts, else length ``n``."""
    if isinstance(value, str):
        raise TypeError(_STRING_NOT_ALLOWED.format(fn=fn, name=name))
    if not isinstance(value, Sequence):
        return (_as_int(value, fn, name, 0),) * n
    values = tuple(_as_int(v, fn, name, i) for i, v in enumerate(value))
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise RuntimeError(_TUPLE_LENGTH.format(name=name, n=n, value=list(values)))
    return values


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """torch's 'same': total ``d*(k-1)``, ``left = total // 2``, the odd extra on the right."""
    pads = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def _explicit_padding(padding: Padding, n: int, fn: str) -> list[tuple[int, int]] | str:
    """Return ``[(lo, hi), ...]`` per spatial dim, or the (validated) padding string."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise RuntimeError(_INVALID_PADDING_STRING.format(padding=padding))
        return padding
    return [(p, p) for p in _ntuple(padding, n, fn, "padding")]


# --------------------------------------------------------------------------------------------
# Output sizes.
# --------------------------------------------------------------------------------------------


def conv_output_size(
    input_size: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
) -> tuple[int, ...]:
    """Spatial output size of ``conv{1,2,3}d`` (torch's formula, §3.8).

    Arguments:
        input_size: the spatial sizes ``(L,)``, ``(H, W)`` or ``(D, H, W)``.
        kernel_size, stride, dilation: ints or per-dimension tuples.
        padding: int, tuple, ``'same'`` or ``'valid'``.

    Returns:
        ``floor((L + 2p - d*(k-1) - 1) / s) + 1`` per dimension (``L`` for ``'same'``). The result
        may be zero or negative: this helper does not validate, the conv functions do.
    """
    n = len(input_size)
    fn = "conv_output_size"
    kernel = _ntuple(kernel_size, n, fn, "kernel_size")
    strides = _ntuple(stride, n, fn, "stride")
    dilations = _ntuple(dilation, n, fn, "dilation")
    if padding == "same":
        pads = _same_padding(kernel, dilations)
    elif padding == "valid":
        pads = [(0, 0)] * n
    else:
        pads = [(p, p) for p in _ntuple(padding, n, fn, "padding")]
    return tuple(
        (size + lo + hi - d * (k - 1) - 1) // s + 1
        for size, (lo, hi), k, s, d in zip(input_size, pads, kernel, strides, dilations)
    )


def conv_transpose_output_size(
    input_size: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> tuple[int, ...]:
    """Spatial output size of ``conv_transpose{1,2,3}d`` (torch's formula, §3.8).

    Arguments:
        input_size: the spatial sizes ``(L,)``, ``(H, W)`` or ``(D, H, W)``.
        kernel_size, stride, padding, output_padding, dilation: ints or per-dimension tuples.

    Returns:
        ``(L - 1)*s - 2p + d*(k-1) + output_padding + 1`` per dimension (not validated).
    """
    n = len(input_size)
    fn = "conv_transpose_output_size"
    kernel = _ntuple(kernel_size, n, fn, "kernel_size")
    strides = _ntuple(stride, n, fn, "stride")
    pads = _ntuple(padding, n, fn, "padding")
    out_pads = _ntuple(output_padding, n, fn, "output_padding")
    dilations = _ntuple(dilation, n, fn, "dilation")
    return tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        for size, k, s, p, op, d in zip(input_size, kernel, strides, pads, out_pads, dilations)
    )


def conv_transpose_output_padding(
    input_shape: Sequence[int],
    output_size: Sequence[int] | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple,
    num_spatial_dims: int,
    output_padding: IntOrTuple = 0,
) -> tuple[int, ...]:
    """The ``output_padding`` a ``ConvTranspose*`` module uses for ``forward(x, output_size)``.

    Mirrors torch's ``_ConvTransposeNd._output_padding`` (§3.9): with ``output_size=None`` the
    module's own ``output_padding`` is returned. Otherwise ``output_size`` may hold the spatial
    sizes only, or the full output shape (its leading batch/channel entries are dropped
    unchecked), and each spatial size must lie in ``[min, min + stride - 1]`` where ``min`` is the
    output size with no output padding; the module's ``output_padding`` is then ignored.

    Arguments:
        input_shape: the shape of the input, batched ``(N, C, *spatial)`` or unbatched.
        output_size: ``None``, the requested spatial sizes, or the full requested output shape.
        stride, padding, kernel_size, dilation: the module's ints or tuples.
        num_spatial_dims: 1, 2 or 3.
        output_padding: the module's ``output_padding``, returned when ``output_size`` is None.

    Returns:
        A tuple of ``num_spatial_dims`` output paddings.

    Raises:
        ValueError: when ``output_size`` has the wrong length or a size outside the valid range.
    """
    n = num_spatial_dims
    fn = f"ConvTranspose{n}d"
    if output_size is None:
        return _ntuple(output_padding, n, fn, "output_padding")
    rank = len(input_shape)
    num_non_spatial = 2 if rank == n + 2 else 1
    requested = list(output_size)
    if len(requested) == num_non_spatial + n:
        requested = requested[num_non_spatial:]
    if len(requested) != n:
        raise ValueError(
            _OUTPUT_SIZE_LENGTH.format(n=n, rank=rank, full=num_non_spatial + n, got=len(requested))
        )
    for pos, size in enumerate(requested):
        try:
            requested[pos] = operator.index(size)
        except TypeError:  # torch's TypeError; int() would silently truncate 9.5 to 9
            raise TypeError(
                _OUTPUT_SIZE_NOT_INT.format(type=type(size).__name__, pos=pos)
            ) from None
    spatial = tuple(int(s) for s in input_shape[rank - n :])
    min_sizes = list(conv_transpose_output_size(spatial, kernel_size, stride, padding, 0, dilation))
    max_sizes = [m + s - 1 for m, s in zip(min_sizes, _ntuple(stride, n, fn, "stride"))]
    for size, lo, hi in zip(requested, min_sizes, max_sizes):
        if size < lo or size > hi:
            raise ValueError(
                _OUTPUT_SIZE_RANGE.format(
                    requested=requested, min=min_sizes, max=max_sizes, input=spatial
                )
            )
    return tuple(size - lo for size, lo in zip(requested, min_sizes))


def reversed_padding_repeated_twice(
    padding: Padding, kernel_size: Sequence[int], dilation: IntOrTuple = 1
) -> tuple[int, ...]:
    """A conv module's padding in ``pad`` order: ``(lo_last, hi_last, ..., lo_first, hi_first)``.

    This is torch's ``_ConvNd._reversed_padding_repeated_twice``, used with ``padding_mode !=
    'zeros'``. ``'valid'`` gives zeros; ``'same'`` gives torch's asymmetric split (the odd extra on
    the high side).

    Arguments:
        padding: int, tuple, ``'same'`` or ``'valid'``.
        kernel_size: the module's kernel size tuple (its length is the number of spatial dims).
        dilation: the module's dilation.
    """
    n = len(kernel_size)
    fn = "reversed_padding_repeated_twice"
    if padding == "valid":
        pairs = [(0, 0)] * n
    elif padding == "same":
        pairs = _same_padding(kernel_size, _ntuple(dilation, n, fn, "dilation"))
    else:
        pairs = [(p, p) for p in _ntuple(padding, n, fn, "padding")]
    return tuple(v for pair in reversed(pairs) for v in pair)


# --------------------------------------------------------------------------------------------
# Validation shared by the convolutions.
# --------------------------------------------------------------------------------------------


def _batched(x: jax.Array, n: int, fn: str) -> tuple[jax.Array, bool]:
    """Check the rank of ``x`` and add a batch axis to an unbatched input."""
    if x.ndim not in (n + 1, n + 2):
        raise RuntimeError(
            _INPUT_RANK.format(unbatched=n + 1, batched=n + 2, fn=fn, shape=_shape(x.shape))
        )
    if x.ndim == n + 1:
        return x[None], True
    return x, False


def _check_weight_rank(weight: jax.Array, n: int, fn: str) -> None:
    if weight.ndim != n + 2:
        layout = _LAYOUTS[n] if not fn.startswith("conv_transpose") else "in, out/groups, *k"
        raise RuntimeError(
            _WEIGHT_RANK.format(rank=n + 2, fn=fn, layout=layout, shape=_shape(weight.shape))
        )


def _check_common(
    groups: int,
    pads: Sequence[tuple[int, int]],
    stride: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int] | None = None,
) -> None:
    if groups <= 0:
        raise RuntimeError(_NONPOSITIVE_GROUPS)
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise RuntimeError(_NEGATIVE_PADDING)
    if output_padding is not None and any(op < 0 for op in output_padding):
        raise RuntimeError(_NEGATIVE_OUTPUT_PADDING)
    if any(s <= 0 for s in stride):
        raise RuntimeError(_NONPOSITIVE_STRIDE)
    if any(d <= 0 for d in dilation):
        raise RuntimeError(_NONPOSITIVE_DILATION.format(fields=_fields(dilation=dilation)))


def _check_weight_groups(weight: jax.Array, groups: int) -> None:
    if weight.shape[0] < groups:
        raise RuntimeError(_GROUPS_WEIGHT_MIN.format(groups=groups, weight=_shape(weight.shape)))
    if weight.shape[0] % groups:
        raise RuntimeError(
            _GROUPS_WEIGHT_DIVISIBLE.format(groups=groups, weight=_shape(weight.shape))
        )


def _check_bias(bias: jax.Array | None, expected: int, weight: jax.Array, given: str) -> None:
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != expected):
        raise RuntimeError(
            _BIAS.format(
                given=given,
                weight=_shape(weight.shape),
                expected=expected,
                bias=_shape(bias.shape),
            )
        )


def _check_kernel_positive(kernel: Sequence[int]) -> None:
    if any(k <= 0 for k in kernel):
        raise RuntimeError(_ZERO_KERNEL.format(fields=_fields(kernel=kernel)))


def _check_nonempty_spatial(x: jax.Array) -> None:
    if x.shape[0] != 0 and x.shape[1] != 0 and any(s == 0 for s in x.shape[2:]):
        raise RuntimeError(_ZERO_SPATIAL.format(shape=_shape(x.shape)))


def _check_dtypes(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> None:
    if weight.dtype != x.dtype:
        raise RuntimeError(_DTYPE_MISMATCH.format(input=x.dtype, what="weight", other=weight.dtype))
    if bias is not None and bias.dtype != x.dtype:
        raise RuntimeError(_DTYPE_MISMATCH.format(input=x.dtype, what="bias", other=bias.dtype))


def _dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """NC[D]HW input and output, OI[D]HW kernel: every array already in torch's layout."""
    spec = tuple(range(n + 2))
    return lax.ConvDimensionNumbers(lhs_spec=spec, rhs_spec=spec, out_spec=spec)


def _add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    if bias is None:
        return y
    return y + bias.reshape((1, bias.shape[0]) + (1,) * (y.ndim - 2))


# --------------------------------------------------------------------------------------------
# Steering clear of an XLA bug: the convolution operand swap.
# --------------------------------------------------------------------------------------------
#
# XLA's algebraic simplifier swaps an ungrouped convolution's input and kernel when that makes
# the kernel smaller (SwapConvolutionOperandsIfBeneficial in
# xla/hlo/transforms/simplifiers/conv_operand_swapper.cc). It copies unchanged every spatial dim
# whose window looks like a "group" dim (no padding, reversal or window dilation; base dilation =
# window size = window stride + 1) without checking that the new kernel, the old input, has the
# window's size there. When it does not, the swapped convolution is invalid and compilation
# aborts the process ("Check failed ... Window dimensions do not match RHS shape"), with no
# Python exception to catch.
#
# A plain conv never looks like that, but the convs JAX derives from a strided or dilated one
# can, and so can a transposed conv's dilated-input conv: e.g. the input gradient of a dim with
# kernel 2, stride 2, padding 1 and an even input size (jax.grad of conv2d on 6x8 with kernel
# (3, 2), stride (3, 2), padding 1 aborts; so does conv_transpose2d's value for the same dim), or
# the input gradient of the weight gradient of a dim with stride 1, dilation 2, padding 1 and
# output size 2 (second derivatives of conv2d, forward mode of conv_transpose2d). Each such dim
# is padded in the conv; padding the input beforehand instead (or, for the dilated-input conv,
# adding one more zero each side and cropping the result) computes the same sums with windows
# XLA handles, up to four transposes deep (checked for all sizes < 40, kernels <= 7, strides
# <= 5, paddings <= 5, dilations <= 4). _ConvWindow follows JAX's transpose rules for
# conv_general_dilated (jax/_src/lax/convolution.py) to find those dims. 1-D convs never abort
# (a swap needs a second dim to gain from) nor do grouped ones (XLA swaps none), but they take
# the same path: it is exact, and rare.


def _dilated(size: int, dilation: int) -> int:
    return 0 if size == 0 else (size - 1) * dilation + 1


class _ConvWindow(NamedTuple):
    """One spatial dim of a ``lax.conv_general_dilated``: operand sizes, window, dilations."""

    lhs_size: int
    rhs_size: int
    stride: int
    padding: tuple[int, int]
    lhs_dilation: int
    rhs_dilation: int

    def output_size(self) -> int:
        lo, hi = self.padding
        span = _dilated(self.lhs_size, self.lhs_dilation) + lo + hi
        return (span - _dilated(self.rhs_size, self.rhs_dilation)) // self.stride + 1

    def lhs_transpose(self) -> _ConvWindow:
        """The conv JAX transposes this one into w.r.t. its lhs (the input gradient)."""
        out = self.output_size()
        rhs_extent = _dilated(self.rhs_size, self.rhs_dilation)
        before = rhs_extent - self.padding[0] - 1
        after = (
            _dilated(self.lhs_size, self.lhs_dilation)
            + rhs_extent
            - 1
            - _dilated(out, self.stride)
            - before
        )
        return _ConvWindow(
            out, self.rhs_size, self.lhs_dilation, (before, after), self.stride, self.rhs_dilation
        )

    def rhs_transpose(self) -> _ConvWindow:
        """The conv JAX transposes this one into w.r.t. its rhs (the kernel gradient)."""
        out = self.output_size()
        after = (
            _dilated(out, self.stride)
            - _dilated(self.lhs_size, self.lhs_dilation)
            + _dilated(self.rhs_size, self.rhs_dilation)
            - self.padding[0]
            - 1
        )
        return _ConvWindow(
            self.lhs_size,
            out,
            self.rhs_dilation,
            (self.padding[0], after),
            self.lhs_dilation,
            self.stride,
        )

    def breaks_operand_swap(self) -> bool:
        """Whether XLA's operand swap copies this dim unchanged though the sizes differ."""
        copied = (
            self.padding == (0, 0)
            and self.rhs_dilation == 1
            and self.lhs_dilation == self.rhs_size
            and self.stride == self.rhs_size - 1
        )
        return copied and self.lhs_size != self.rhs_size

    def derivatives_break_operand_swap(self, order: int = 4) -> bool:
        """Whether the operand swap breaks this conv or one JAX derives from it in ``order`` steps.

        Each step is a transpose (reverse mode); forward mode adds none. Four covers second
        derivatives of ``conv_transpose*``, whose first derivatives are already up to three
        transposes of the strided conv (see _conv_transpose_jvp).
        """
        if self.breaks_operand_swap():
            return True
        return order > 0 and any(
            w.derivatives_break_operand_swap(order - 1)
            for w in (self.lhs_transpose(), self.rhs_transpose())
        )


def _strided_conv(
    x: jax.Array,
    weight: jax.Array,
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilations: Sequence[int],
    groups: int,
) -> jax.Array:
    """``lax.conv_general_dilated`` in torch's layout, with derivatives XLA can compile.

    Where a dim's derivatives would abort XLA (see _ConvWindow), its zero padding is applied
    to the input beforehand instead of inside the conv: the same sums, and the derivative convs
    then have windows XLA handles. Every other configuration is the plain conv.
    """
    n = x.ndim - 2
    outside = [
        _ConvWindow(size, k, s, pad, 1, d).derivatives_break_operand_swap()
        for size, k, s, pad, d in zip(x.shape[2:], weight.shape[2:], strides, pads, dilations)
    ]
    if any(outside):
        widths = [(lo, hi, 0) if out else (0, 0, 0) for (lo, hi), out in zip(pads, outside)]
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *widths])
        pads = [(0, 0) if out else pad for pad, out in zip(pads, outside)]
    return lax.conv_general_dilated(
        x,
        weight,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilations,
        dimension_numbers=_dimension_numbers(n),
        feature_group_count=groups,
    )


# --------------------------------------------------------------------------------------------
# Convolutions.
# --------------------------------------------------------------------------------------------


def _conv(
    n: int,
    input: Any,
    weight: Any,
    bias: Any,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: int,
) -> jax.Array:
    fn = f"conv{n}d"
    x, unbatched = _batched(jnp.asarray(input), n, fn)
    weight = jnp.asarray(weight)
    bias = None if bias is None else jnp.asarray(bias)
    _check_weight_rank(weight, n, fn)
    strides = _ntuple(stride, n, fn, "stride")
    dilations = _ntuple(dilation, n, fn, "dilation")
    groups = _as_groups(groups, fn)
    kernel = tuple(int(k) for k in weight.shape[2:])
    explicit = _explicit_padding(padding, n, fn)
    _check_common(groups, [] if isinstance(explicit, str) else explicit, strides, dilations)
    if isinstance(explicit, list):
        pads = explicit
    elif explicit == "same":
        if any(s != 1 for s in strides):
            raise RuntimeError(_SAME_STRIDED)
        pads = _same_padding(kernel, dilations)
    else:
        pads = [(0, 0)] * n
    _check_weight_groups(weight, groups)
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(
            _CHANNELS.format(
                given=f"groups={groups}",
                weight=_shape(weight.shape),
                input=_shape(x.shape),
                expected=weight.shape[1] * groups,
                got=x.shape[1],
            )
        )
    _check_bias(bias, weight.shape[0], weight, "")
    _check_kernel_positive(kernel)
    padded = [size + lo + hi for size, (lo, hi) in zip(x.shape[2:], pads)]
    dilated = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    if any(p < k for p, k in zip(padded, dilated)):
        raise RuntimeError(_KERNEL_TOO_BIG.format(padded=_by_x(padded), kernel=_by_x(dilated)))
    _check_nonempty_spatial(x)
    _check_dtypes(x, weight, bias)

    def body(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
        if n == 3:
            y = _conv3d_as_2d(x, weight, strides, pads, dilations, groups)
        else:
            y = _strided_conv(x, weight, strides, pads, dilations, groups)
        return _add_bias(y, bias)

    mesh = S.explicit_mesh(x, weight, bias)
    if mesh is None:
        y = body(x, weight, bias)
    else:
        with S.within(mesh):
            y = _explicit_conv(body, x, weight, bias, out_dim=0)
    return y[0] if unbatched else y


def _explicit_conv(
    body: Any, x: jax.Array, weight: jax.Array, bias: jax.Array | None, out_dim: int | None
) -> jax.Array:
    """A convolution on an Explicit mesh, by the rule of ``_sharding``.

    The batch dim keeps the input's sharding; the output channels take the weight's sharding on
    ``out_dim`` (0 for OI[D]HW, 1 for an ungrouped transposed conv; None: unsharded) less the
    axes the input uses (gathered first: FSDP); a sharded input-channel contraction is summed.
    Spatial dims come out unsharded. The convolution itself runs with the axes in Auto mode.
    """
    xs = S.spec(x)
    used = S.used_axes(xs)
    w = S.gather_used(weight, S.used_axes(xs[:1] + xs[2:]))
    feature = None if out_dim is None else S.without(S.spec(w)[out_dim], used)
    b = None if bias is None else S.reshard(bias, (feature,))
    out = P(xs[0], feature, *(None,) * (x.ndim - 2))
    return S.in_auto(body, out, x, w, b)


def _conv3d_as_2d(x, weight, strides, pads, dilations, groups):
    """A 3-D conv as one 2-D conv: each output plane's kD input planes stacked as channels.

    XLA:CPU runs 2-D convs (and their gradients) on YNNPACK but 3-D ones on a slow generic
    path; this costs kD times the input's memory and sums the same products.
    """
    n_, c, _, h, w = x.shape
    o, c_g, k_d = weight.shape[:3]
    (s_d, s_h, s_w), (d_d, d_h, d_w) = strides, dilations
    xp = lax.pad(
        x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), (*pads[0], 0), (0, 0, 0), (0, 0, 0)]
    )
    d_out = (xp.shape[2] - d_d * (k_d - 1) - 1) // s_d + 1
    planes = [
        lax.slice_in_dim(xp, k * d_d, k * d_d + (d_out - 1) * s_d + 1, s_d, axis=2)
        for k in range(k_d)
    ]
    stacked = jnp.stack(planes, axis=3)  # (N, C, D_out, kD, H, W)
    stacked = stacked.transpose(0, 2, 1, 3, 4, 5).reshape(n_ * d_out, c * k_d, h, w)
    y = _strided_conv(
        stacked,
        weight.reshape(o, c_g * k_d, *weight.shape[3:]),
        (s_h, s_w),
        pads[1:],
        (d_h, d_w),
        groups,
    )
    return y.reshape(n_, d_out, o, *y.shape[2:]).transpose(0, 2, 1, 3, 4)


def _conv_transpose_phases(x, weight, strides, pads, out_pads, dilations, groups, out):
    """A strided transposed conv as one stride-1 conv with one kernel per output phase.

    Per dim, tap ``k`` lands at ``t = k*d = m*s + r``: output phase ``r``, input offset ``m``.
    The stride-1 conv makes all ``s**n`` phases as channels; depth-to-space interleaves them
    and the padding is cropped. No dilated input, so no zeros are multiplied.
    """
    n = x.ndim - 2
    batch, sizes = x.shape[0], x.shape[2:]
    c_in, c_out_g = weight.shape[:2]
    kernel, c_in_g, c_out = weight.shape[2:], c_in // groups, c_out_g * groups
    offsets = [(d * (k - 1)) // s for k, d, s in zip(kernel, dilations, strides)]
    phases_out = [-(-(o + p) // s) for o, p, s in zip(out, pads, strides)]
    zero = jnp.zeros((), weight.dtype)
    w = lax.pad(
        weight,
        zero,
        [(0, 0, 0)] * 2
        + [
            (0, (m + 1) * s - (d * (k - 1) + 1), d - 1)
            for k, d, s, m in zip(kernel, dilations, strides, offsets)
        ],
    )
    shape = [groups, c_in_g, c_out_g]
    for m, s in zip(offsets, strides):
        shape += [m + 1, s]
    w = w.reshape(shape)
    for i, m in enumerate(offsets):  # correlation form: offset m becomes tap M - m
        w = jnp.take(w, jnp.arange(m, -1, -1), axis=3 + 2 * i)
    perm = [0, 2] + [4 + 2 * i for i in range(n)] + [1] + [3 + 2 * i for i in range(n)]
    w = w.transpose(perm).reshape([c_out * math.prod(strides), c_in_g] + [m + 1 for m in offsets])
    z = lax.conv_general_dilated(
        x,
        w,
        (1,) * n,
        [(m, a - size) for m, a, size in zip(offsets, phases_out, sizes)],
        dimension_numbers=_dimension_numbers(n),
        feature_group_count=groups,
    )
    z = z.reshape([batch, c_out, *strides, *phases_out])
    perm = [0, 1]
    for i in range(n):
        perm += [2 + n + i, 2 + i]
    z = z.transpose(perm).reshape([batch, c_out] + [a * s for a, s in zip(phases_out, strides)])
    return lax.slice(z, [0, 0, *pads], [batch, c_out] + [p + o for p, o in zip(pads, out)])


def _conv_transpose(
    n: int,
    input: Any,
    weight: Any,
    bias: Any,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> jax.Array:
    fn = f"conv_transpose{n}d"
    x, unbatched = _batched(jnp.asarray(input), n, fn)
    weight = jnp.asarray(weight)
    bias = None if bias is None else jnp.asarray(bias)
    _check_weight_rank(weight, n, fn)
    strides = _ntuple(stride, n, fn, "stride")
    pads = _ntuple(padding, n, fn, "padding")
    out_pads = _ntuple(output_padding, n, fn, "output_padding")
    dilations = _ntuple(dilation, n, fn, "dilation")
    groups = _as_groups(groups, fn)
    kernel = tuple(int(k) for k in weight.shape[2:])
    _check_common(groups, [(p, p) for p in pads], strides, dilations, out_pads)
    _check_weight_groups(weight, groups)
    c_in, c_out = weight.shape[0], weight.shape[1] * groups
    if x.shape[1] != c_in:
        raise RuntimeError(
            _CHANNELS.format(
                given="transposed=1",
                weight=_shape(weight.shape),
                input=_shape(x.shape),
                expected=c_in,
                got=x.shape[1],
            )
        )
    _check_bias(bias, c_out, weight, "transposed=1, ")
    _check_kernel_positive(kernel)
    _check_nonempty_spatial(x)
    if any(op >= max(s, d) for op, s, d in zip(out_pads, strides, dilations)):
        raise RuntimeError(
            _OUTPUT_PADDING_TOO_BIG.format(
                fields=_fields(output_padding=out_pads, stride=strides, dilation=dilations)
            )
        )
    out = conv_transpose_output_size(x.shape[2:], kernel, strides, pads, out_pads, dilations)
    if any(o < 1 for o in out):
        raise RuntimeError(_OUTPUT_TOO_SMALL.format(input=_by_x(x.shape[2:]), output=_by_x(out)))
    _check_dtypes(x, weight, bias)

    def body(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
        if all(op < s for op, s in zip(out_pads, strides)):
            y = _conv_transpose_fast_grads(
                x, weight, tuple(strides), tuple(pads), tuple(out_pads), tuple(dilations), groups
            )
        else:  # output_padding >= stride (allowed when dilation > it): not a conv's input grad
            y = _conv_transpose_direct(x, weight, strides, pads, out_pads, dilations, groups)
        return _add_bias(y, bias)

    mesh = S.explicit_mesh(x, weight, bias)
    if mesh is None:
        y = body(x, weight, bias)
    else:
        # With groups, output channel g * C_out/G + j is not weight dim 1's index j.
        with S.within(mesh):
            y = _explicit_conv(body, x, weight, bias, out_dim=1 if groups == 1 else None)
    return y[0] if unbatched else y


def _conv_transpose_direct(x, weight, strides, pads, out_pads, dilations, groups):
    """The transposed conv as one convolution (no bias), for the forward value."""
    n = x.ndim - 2
    kernel = weight.shape[2:]
    if n == 3 and any(s > 1 for s in strides):
        out = conv_transpose_output_size(x.shape[2:], kernel, strides, pads, out_pads, dilations)
        return _conv_transpose_phases(x, weight, strides, pads, out_pads, dilations, groups, out)
    # The transposed conv is the gradient of a conv w.r.t. its input: a stride-1 conv over the
    # input dilated by `stride`, with each group's kernel flipped and its in/out axes swapped,
    # (in, out/G, *k) -> (G, in/G, out/G, *k) -> (G, out/G, in/G, *k) -> (out, in/G, *k).
    c_in_g, c_out_g = weight.shape[0] // groups, weight.shape[1]
    c_out = c_out_g * groups
    w = weight.reshape((groups, c_in_g, c_out_g, *kernel))
    w = jnp.swapaxes(w, 1, 2).reshape((c_out, c_in_g, *kernel))
    w = lax.rev(w, tuple(range(2, n + 2)))
    edge = [d * (k - 1) - p for k, d, p in zip(kernel, dilations, pads)]
    # Where XLA would abort on this conv or its derivatives (see _ConvWindow), one more zero
    # each side of the dim gives windows XLA handles; the two extra outputs are cropped.
    out = conv_transpose_output_size(x.shape[2:], kernel, strides, pads, out_pads, dilations)
    extra = [
        int(_ConvWindow(size, k, 1, (e, e + op), s, d).derivatives_break_operand_swap())
        for size, k, s, e, op, d in zip(x.shape[2:], kernel, strides, edge, out_pads, dilations)
    ]
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(1,) * n,
        padding=[(e + m, e + op + m) for e, op, m in zip(edge, out_pads, extra)],
        lhs_dilation=strides,
        rhs_dilation=dilations,
        dimension_numbers=_dimension_numbers(n),
        feature_group_count=groups,
    )
    if any(extra):
        y = lax.slice(y, [0, 0, *extra], [*y.shape[:2], *(m + o for m, o in zip(extra, out))])
    return y


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_transpose_fast_grads(x, weight, strides, pads, out_pads, dilations, groups):
    """``_conv_transpose_direct`` with derivatives that XLA:CPU runs on its fast conv paths.

    The transposed conv is ``u -> conv(u, weight)``'s transpose. Differentiating the direct
    form makes XLA emit a weight gradient with a reversed, dilated window (its slow generic
    loop: ~10x torch). Here the tangents are written as transposes of the strided conv and of
    that conv's weight gradient, so reverse mode transposes them back to exactly those two
    ops (both on YNNPACK); forward mode still works. Same products, summed in another order.
    """
    return _conv_transpose_direct(x, weight, strides, pads, out_pads, dilations, groups)


def _conv_transpose_jvp(strides, pads, out_pads, dilations, groups, primals, tangents):
    x, weight = primals
    tx, tw = tangents
    y = _conv_transpose_direct(x, weight, strides, pads, out_pads, dilations, groups)
    n = x.ndim - 2

    def conv(u, w):  # the strided conv whose input gradient this transposed conv is
        if n == 3:
            return _conv3d_as_2d(u, w, strides, [(p, p) for p in pads], dilations, groups)
        return _strided_conv(u, w, strides, [(p, p) for p in pads], dilations, groups)

    def weight_grad(c):  # the strided conv's weight gradient at output gradient c
        return jax.vjp(lambda w: conv(c, w), weight)[1](x)[0]

    y_struct = jax.ShapeDtypeStruct(y.shape, y.dtype)
    dy = jnp.zeros_like(y)
    if not isinstance(tx, SymbolicZero):  # skip the work for an input that is not perturbed
        dy = dy + jax.linear_transpose(lambda u: conv(u, weight), y_struct)(tx)[0]
    if not isinstance(tw, SymbolicZero):
        dy = dy + jax.linear_transpose(weight_grad, y_struct)(tw)[0]
    return y, dy


_conv_transpose_fast_grads.defjvp(_conv_transpose_jvp, symbolic_zeros=True)


def conv1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """Applies a 1-D convolution (cross-correlation) over an input, like ``F.conv1d``.

    Arguments:
        input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
        weight: ``(C_out, C_in / groups, k)`` (OIW).
        bias: optional ``(C_out,)``.
        stride: int or 1-tuple, every entry positive.
        padding: int or 1-tuple (the same zero padding on both sides of each dim), ``'valid'``
            (none) or ``'same'`` (output size = input size; total ``dilation*(k-1)`` split with the
            odd extra on the high side, as torch does; only with stride 1).
        dilation: int or 1-tuple, every entry positive.
        groups: splits the input and output channels into ``groups`` contiguous blocks.

    Returns:
        ``(N, C_out, L_out)``, unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, a kernel larger than the padded input, non-positive stride, dilation
            or groups, negative padding, wrong tuple lengths, a bias of the wrong size,
            mismatched dtypes, or ``'same'`` with a stride.
        TypeError: for non-integer stride, padding, dilation or groups.
    """
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """Applies a 2-D convolution (cross-correlation) over an input, like ``F.conv2d``.

    Arguments:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kH, kW)`` (OIHW).
        bias: optional ``(C_out,)``.
        stride: int or 2-tuple, every entry positive.
        padding: int or 2-tuple (the same zero padding on both sides of each dim), ``'valid'``
            (none) or ``'same'`` (output size = input size; total ``dilation*(k-1)`` split with the
            odd extra on the high side, as torch does; only with stride 1).
        dilation: int or 2-tuple, every entry positive.
        groups: splits the input and output channels into ``groups`` contiguous blocks.

    Returns:
        ``(N, C_out, H_out, W_out)``, unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, a kernel larger than the padded input, non-positive stride, dilation
            or groups, negative padding, wrong tuple lengths, a bias of the wrong size,
            mismatched dtypes, or ``'same'`` with a stride.
        TypeError: for non-integer stride, padding, dilation or groups.
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """Applies a 3-D convolution (cross-correlation) over an input, like ``F.conv3d``.

    Arguments:
        input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``.
        weight: ``(C_out, C_in / groups, kD, kH, kW)`` (OIDHW).
        bias: optional ``(C_out,)``.
        stride: int or 3-tuple, every entry positive.
        padding: int or 3-tuple (the same zero padding on both sides of each dim), ``'valid'``
            (none) or ``'same'`` (output size = input size; total ``dilation*(k-1)`` split with the
            odd extra on the high side, as torch does; only with stride 1).
        dilation: int or 3-tuple, every entry positive.
        groups: splits the input and output channels into ``groups`` contiguous blocks.

    Returns:
        ``(N, C_out, D_out, H_out, W_out)``, unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, a kernel larger than the padded input, non-positive stride, dilation
            or groups, negative padding, wrong tuple lengths, a bias of the wrong size,
            mismatched dtypes, or ``'same'`` with a stride.
        TypeError: for non-integer stride, padding, dilation or groups.
    """
    return _conv(3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """Applies a 1-D transposed convolution, like ``F.conv_transpose1d``.

    It is the gradient of ``conv1d`` with respect to its input, for the same weight, stride,
    padding, dilation and groups, with ``output_padding`` extra rows/columns at the high end.

    Arguments:
        input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
        weight: ``(C_in, C_out / groups, k)`` (torch's transposed layout).
        bias: optional ``(C_out,)``.
        stride, padding, output_padding, dilation: ints or 1-tuples; torch's positional order
            ``(input, weight, bias, stride, padding, output_padding, groups, dilation)``.
            Each ``output_padding`` must be smaller than the stride or the dilation.
        groups: number of blocked connections from input to output channels.

    Returns:
        ``(N, C_out, L_out)`` with ``L_out = (L - 1)*s - 2p + d*(k-1) + output_padding + 1``,
        unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, non-positive stride, dilation or groups, negative padding, an
            ``output_padding`` too large, an output size below 1, wrong tuple lengths, a bias
            of the wrong size or mismatched dtypes.
        TypeError: for non-integer (including string) padding and the like.
    """
    return _conv_transpose(
        1, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """Applies a 2-D transposed convolution, like ``F.conv_transpose2d``.

    It is the gradient of ``conv2d`` with respect to its input, for the same weight, stride,
    padding, dilation and groups, with ``output_padding`` extra rows/columns at the high end.

    Arguments:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_in, C_out / groups, kH, kW)`` (torch's transposed layout).
        bias: optional ``(C_out,)``.
        stride, padding, output_padding, dilation: ints or 2-tuples; torch's positional order
            ``(input, weight, bias, stride, padding, output_padding, groups, dilation)``.
            Each ``output_padding`` must be smaller than the stride or the dilation.
        groups: number of blocked connections from input to output channels.

    Returns:
        ``(N, C_out, H_out, W_out)`` with ``L_out = (L - 1)*s - 2p + d*(k-1) + output_padding + 1``,
        unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, non-positive stride, dilation or groups, negative padding, an
            ``output_padding`` too large, an output size below 1, wrong tuple lengths, a bias
            of the wrong size or mismatched dtypes.
        TypeError: for non-integer (including string) padding and the like.
    """
    return _conv_transpose(
        2, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose3d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """Applies a 3-D transposed convolution, like ``F.conv_transpose3d``.

    It is the gradient of ``conv3d`` with respect to its input, for the same weight, stride,
    padding, dilation and groups, with ``output_padding`` extra rows/columns at the high end.

    Arguments:
        input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``.
        weight: ``(C_in, C_out / groups, kD, kH, kW)`` (torch's transposed layout).
        bias: optional ``(C_out,)``.
        stride, padding, output_padding, dilation: ints or 3-tuples; torch's positional order
            ``(input, weight, bias, stride, padding, output_padding, groups, dilation)``.
            Each ``output_padding`` must be smaller than the stride or the dilation.
        groups: number of blocked connections from input to output channels.

    Returns:
        ``(N, C_out, D_out, H_out, W_out)`` with ``L_out = (L - 1)*s - 2p + d*(k-1) + output_padding + 1``,
        unbatched when the input is, in the input's dtype.

    Raises:
        RuntimeError: with torch's message, for a wrong input rank, a channel count that does not
            match ``weight``, non-positive stride, dilation or groups, negative padding, an
            ``output_padding`` too large, an output size below 1, wrong tuple lengths, a bias
            of the wrong size or mismatched dtypes.
        TypeError: for non-integer (including string) padding and the like.
    """
    return _conv_transpose(
        3, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_padding_mode_forward(
    input: Any,
    weight: Any,
    bias: Any,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str,
) -> jax.Array:
    """The forward of ``nn.Conv{1,2,3}d``, including its ``padding_mode``.

    With ``padding_mode='zeros'`` this is ``conv{n}d(input, weight, bias, stride, padding,
    dilation, groups)``. Otherwise, as torch does (§3.7), the input is first padded with
    ``pad(input, reversed_padding_repeated_twice(padding, k, dilation), mode=padding_mode)``
    (asymmetric for ``'same'``) and then convolved with padding 0.

    Arguments:
        input, weight, bias, stride, padding, dilation, groups: as for ``conv{n}d``; the number
            of spatial dims ``n`` is ``weight.ndim - 2``.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.

    Returns:
        The convolution's output, as ``conv{n}d``.
    """
    weight = jnp.asarray(weight)
    n = weight.ndim - 2
    if n not in (1, 2, 3):
        raise RuntimeError(
            _WEIGHT_RANK.format(
                rank="3D, 4D or 5", fn="a convolution", layout="OI[D]HW", shape=_shape(weight.shape)
            )
        )
    conv = (conv1d, conv2d, conv3d)[n - 1]
    if padding_mode == "zeros":
        return conv(input, weight, bias, stride, padding, dilation, groups)
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise RuntimeError(_INVALID_PADDING_STRING.format(padding=padding))
    pads = reversed_padding_repeated_twice(padding, weight.shape[2:], dilation)
    return conv(pad(input, pads, mode=padding_mode), weight, bias, stride, 0, dilation, groups)
