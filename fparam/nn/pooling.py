"""Pooling layers (``torch/nn/modules/pooling.py``): thin modules over ``nn.functional``.

Constructor signatures, stored attributes (torch keeps ``MaxPool2d``'s and ``AvgPool2d``'s
sizes as given, and ``AvgPool1d``'s / ``MaxUnpool*``'s as tuples), ``extra_repr`` and forward
behaviour are torch's. Pooling layers have no parameters or buffers.

One difference: torch checks kernel sizes, strides, paddings and dilations only in ``forward``;
fparam raises the same exception type with torch's message at construction as well, so a bad
layer is never built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from fparam._module import Module
from fparam.nn import functional as F
from fparam.nn.functional import pooling as pool_f

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
]


def _ntuple(value: Any, n: int) -> tuple[Any, ...]:
    """torch's ``_single/_pair/_triple``."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * n


class _MaxPoolNd(Module):
    """Base of ``MaxPool{1,2,3}d``: torch's attributes, kept as given."""

    _n = 0

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode
        pool_f._PoolSpec(
            type(self).__name__, self._n, kernel_size, self.stride, padding, dilation, ceil_mode
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


_MAX_DOC = """Max pooling over {what}, like ``torch.nn.{cls}``.

    **Arguments:**

    - `kernel_size`: the window, an int or a tuple of {n} ints.
    - `stride`: the step (default ``kernel_size``).
    - `padding`: implicit ``-inf`` padding on both sides, at most half the effective kernel.
    - `dilation`: the spacing of a window's elements.
    - `return_indices`: ``forward`` also returns the flat index of each maximum in its
      ``(N, C)`` plane (for :class:`MaxUnpool{n}d`; ``int32`` unless JAX's 64-bit mode is on).
    - `ceil_mode`: round the output size up.

    ``forward(input)`` takes ``{shapes}``; see :func:`fparam.nn.functional.max_pool{n}d`
    (ties and NaN pick the element torch picks, in the output, the indices and the gradient).
    """


class MaxPool1d(_MaxPoolNd):
    __doc__ = _MAX_DOC.format(
        what="the last dim", cls="MaxPool1d", n=1, shapes="(N, C, L) or (C, L)"
    )
    _n = 1

    def forward(self, input: jax.Array) -> Any:
        return F.max_pool1d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class MaxPool2d(_MaxPoolNd):
    __doc__ = _MAX_DOC.format(
        what="the last two dims", cls="MaxPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )
    _n = 2

    def forward(self, input: jax.Array) -> Any:
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class MaxPool3d(_MaxPoolNd):
    __doc__ = _MAX_DOC.format(
        what="the last three dims",
        cls="MaxPool3d",
        n=3,
        shapes="(N, C, D, H, W) or (C, D, H, W)",
    )
    _n = 3

    def forward(self, input: jax.Array) -> Any:
        return F.max_pool3d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class _AvgPoolNd(Module):
    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """Average pooling over the last dim of ``(N, C, L)`` or ``(C, L)``, like
    ``torch.nn.AvgPool1d`` (sizes stored as 1-tuples, as torch does; no ``divisor_override``).

    **Arguments:**

    - `kernel_size`, `stride` (default ``kernel_size``), `padding` (zeros, at most half the
      kernel): ints or 1-tuples.
    - `ceil_mode`: round the output size up.
    - `count_include_pad`: count padding in each window's divisor.

    See :func:`fparam.nn.functional.avg_pool1d`.
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1)
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1)
        self.padding = _ntuple(padding, 1)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        pool_f._PoolSpec("AvgPool1d", 1, self.kernel_size, self.stride, self.padding, 1, ceil_mode)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.avg_pool1d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )


class _AvgPool23d(_AvgPoolNd):
    _n = 0

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        pool_f._PoolSpec(
            type(self).__name__, self._n, kernel_size, self.stride, padding, 1, ceil_mode
        )
        if divisor_override is not None:
            value = pool_f._as_int(divisor_override, type(self).__name__, "divisor_override")
            if value == 0:
                raise RuntimeError(
                    pool_f._DIVISOR_ZERO.format(fn=type(self).__name__, value=divisor_override)
                )


_AVG_DOC = """Average pooling over {what}, like ``torch.nn.{cls}``.

    **Arguments:**

    - `kernel_size`, `stride` (default ``kernel_size``), `padding` (zeros, at most half the
      kernel): an int or a tuple of {n} ints.
    - `ceil_mode`: round the output size up.
    - `count_include_pad`: count padding in each window's divisor (torch's default).
    - `divisor_override`: divide every window's sum by this non-zero int instead.

    ``forward(input)`` takes ``{shapes}``; see :func:`fparam.nn.functional.avg_pool{n}d`.
    """


class AvgPool2d(_AvgPool23d):
    __doc__ = _AVG_DOC.format(
        what="the last two dims", cls="AvgPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )
    _n = 2

    def forward(self, input: jax.Array) -> jax.Array:
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AvgPool3d(_AvgPool23d):
    __doc__ = _AVG_DOC.format(
        what="the last three dims",
        cls="AvgPool3d",
        n=3,
        shapes="(N, C, D, H, W) or (C, D, H, W)",
    )
    _n = 3

    def forward(self, input: jax.Array) -> jax.Array:
        return F.avg_pool3d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class _AdaptiveAvgPoolNd(Module):
    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


_ADAPTIVE_AVG_DOC = """Average pooling to a fixed output size, like ``torch.nn.{cls}``.

    **Arguments:**

    - `output_size`: an int, or a tuple of {n} ints or ``None`` (``None`` keeps that input
      size).

    ``forward(input)`` takes ``{shapes}``; see
    :func:`fparam.nn.functional.adaptive_avg_pool{n}d`.
    """


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    __doc__ = _ADAPTIVE_AVG_DOC.format(cls="AdaptiveAvgPool1d", n=1, shapes="(N, C, L) or (C, L)")

    def forward(self, input: jax.Array) -> jax.Array:
        return F.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    __doc__ = _ADAPTIVE_AVG_DOC.format(
        cls="AdaptiveAvgPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )

    def forward(self, input: jax.Array) -> jax.Array:
        return F.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    __doc__ = _ADAPTIVE_AVG_DOC.format(
        cls="AdaptiveAvgPool3d", n=3, shapes="(N, C, D, H, W) or (C, D, H, W)"
    )

    def forward(self, input: jax.Array) -> jax.Array:
        return F.adaptive_avg_pool3d(input, self.output_size)


class _AdaptiveMaxPoolNd(Module):
    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


_ADAPTIVE_MAX_DOC = """Max pooling to a fixed output size, like ``torch.nn.{cls}``.

    **Arguments:**

    - `output_size`: an int, or a tuple of {n} ints or ``None`` (``None`` keeps that input
      size).
    - `return_indices`: ``forward`` also returns the flat index of each maximum in its
      ``(N, C)`` plane (``int32`` unless JAX's 64-bit mode is on).

    ``forward(input)`` takes ``{shapes}``; see
    :func:`fparam.nn.functional.adaptive_max_pool{n}d`.
    """


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    __doc__ = _ADAPTIVE_MAX_DOC.format(cls="AdaptiveMaxPool1d", n=1, shapes="(N, C, L) or (C, L)")

    def forward(self, input: jax.Array) -> Any:
        return F.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    __doc__ = _ADAPTIVE_MAX_DOC.format(
        cls="AdaptiveMaxPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )

    def forward(self, input: jax.Array) -> Any:
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    __doc__ = _ADAPTIVE_MAX_DOC.format(
        cls="AdaptiveMaxPool3d", n=3, shapes="(N, C, D, H, W) or (C, D, H, W)"
    )

    def forward(self, input: jax.Array) -> Any:
        return F.adaptive_max_pool3d(input, self.output_size, self.return_indices)


class _LPPoolNd(Module):
    _n = 0

    def __init__(
        self, norm_type: float, kernel_size: Any, stride: Any = None, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode
        stride_or_kernel = kernel_size if stride is None else stride
        pool_f._PoolSpec(
            type(self).__name__, self._n, kernel_size, stride_or_kernel, 0, 1, ceil_mode
        )

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"ceil_mode={self.ceil_mode}"
        )


_LP_DOC = """Power-average pooling over {what}, like ``torch.nn.{cls}``.

    **Arguments:**

    - `norm_type`: the power ``p`` (``inf`` gives max pooling of ``|x|``).
    - `kernel_size`, `stride` (``None``: ``kernel_size``; kept as ``None`` in the repr, as
      torch): an int or a tuple of {n} ints.
    - `ceil_mode`: round the output size up.

    ``forward(input)`` takes ``{shapes}``; see :func:`fparam.nn.functional.lp_pool{n}d`.
    """


class LPPool1d(_LPPoolNd):
    __doc__ = _LP_DOC.format(what="the last dim", cls="LPPool1d", n=1, shapes="(N, C, L) or (C, L)")
    _n = 1

    def forward(self, input: jax.Array) -> jax.Array:
        return F.lp_pool1d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class LPPool2d(_LPPoolNd):
    __doc__ = _LP_DOC.format(
        what="the last two dims", cls="LPPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )
    _n = 2

    def forward(self, input: jax.Array) -> jax.Array:
        return F.lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class LPPool3d(_LPPoolNd):
    __doc__ = _LP_DOC.format(
        what="the last three dims",
        cls="LPPool3d",
        n=3,
        shapes="(N, C, D, H, W) or (C, D, H, W)",
    )
    _n = 3

    def forward(self, input: jax.Array) -> jax.Array:
        return F.lp_pool3d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class _MaxUnpoolNd(Module):
    _n = 0

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, self._n)
        self.stride = _ntuple(stride if (stride is not None) else kernel_size, self._n)
        self.padding = _ntuple(padding, self._n)
        name = type(self).__name__
        for arg in ("kernel_size", "stride", "padding"):
            pool_f._ntuple(getattr(self, arg), self._n, name, arg)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(
        self, input: jax.Array, indices: jax.Array, output_size: Sequence[int] | None = None
    ) -> jax.Array:
        unpool = getattr(F, f"max_unpool{self._n}d")
        result: jax.Array = unpool(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )
        return result


_UNPOOL_DOC = """The partial inverse of :class:`MaxPool{n}d`, like ``torch.nn.{cls}``.

    **Arguments:**

    - `kernel_size`, `stride` (default ``kernel_size``), `padding`: the pooling's (stored as
      {n}-tuples, as torch).

    ``forward(input, indices, output_size=None)``: ``input`` ``{shapes}`` and the indices
    ``MaxPool{n}d(..., return_indices=True)`` returned; see
    :func:`fparam.nn.functional.max_unpool{n}d`.
    """


class MaxUnpool1d(_MaxUnpoolNd):
    __doc__ = _UNPOOL_DOC.format(cls="MaxUnpool1d", n=1, shapes="(N, C, L) or (C, L)")
    _n = 1


class MaxUnpool2d(_MaxUnpoolNd):
    __doc__ = _UNPOOL_DOC.format(cls="MaxUnpool2d", n=2, shapes="(N, C, H, W) or (C, H, W)")
    _n = 2


class MaxUnpool3d(_MaxUnpoolNd):
    __doc__ = _UNPOOL_DOC.format(cls="MaxUnpool3d", n=3, shapes="(N, C, D, H, W) or (C, D, H, W)")
    _n = 3


_FRACTIONAL_NO_SIZE = "{cls} requires specifying either an output size, or a pooling ratio"
_FRACTIONAL_BOTH = "only one of output_size and output_ratio may be specified"
_FRACTIONAL_RATIO = "output_ratio must be between 0 and 1 (got {ratio})"


class _FractionalMaxPoolNd(Module):
    _n = 0

    def __init__(
        self,
        kernel_size: Any,
        output_size: Any = None,
        output_ratio: Any = None,
        return_indices: bool = False,
        _random_samples: Any = None,
    ) -> None:
        super().__init__()
        n = self._n
        self.kernel_size = _ntuple(kernel_size, n)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = _ntuple(output_size, n) if output_size is not None else None
        self.output_ratio = _ntuple(output_ratio, n) if output_ratio is not None else None
        if output_size is None and output_ratio is None:
            raise ValueError(_FRACTIONAL_NO_SIZE.format(cls=type(self).__name__))
        if output_size is not None and output_ratio is not None:
            raise ValueError(_FRACTIONAL_BOTH)
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(_FRACTIONAL_RATIO.format(ratio=output_ratio))

    def forward(self, input: jax.Array, *, key: jax.Array | None = None) -> Any:
        pool = getattr(F, f"fractional_max_pool{self._n}d")
        return pool(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
            key=key,
        )


_FRACTIONAL_DOC = """Fractional max pooling, like ``torch.nn.{cls}``: windows of
    ``kernel_size`` at pseudo-random starts, drawn per ``(N, C)`` plane at every call.

    **Arguments:**

    - `kernel_size`: an int or a tuple of {n} ints.
    - `output_size`: the output's spatial size; or
    - `output_ratio`: in ``(0, 1)`` (exactly one of the two, ``ValueError`` otherwise).
    - `return_indices`: ``forward`` also returns the flat index of each maximum.
    - `_random_samples`: fixed ``(N, C, {n})`` samples (torch's; a buffer, as there).

    ``forward(input, *, key=None)`` takes ``{shapes}``. The samples come from ``key``, else
    fparam's key stream (``with fparam.rng(key):`` under ``jit``; the default stream eagerly),
    as dropout's do; they are not torch's numbers. See
    :func:`fparam.nn.functional.fractional_max_pool{n}d`.
    """


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    __doc__ = _FRACTIONAL_DOC.format(
        cls="FractionalMaxPool2d", n=2, shapes="(N, C, H, W) or (C, H, W)"
    )
    _n = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    __doc__ = _FRACTIONAL_DOC.format(
        cls="FractionalMaxPool3d", n=3, shapes="(N, C, T, H, W) or (C, T, H, W)"
    )
    _n = 3
