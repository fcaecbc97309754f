"""Padding layers (``torch/nn/modules/padding.py``): ``ZeroPad``, ``ConstantPad``,
``ReflectionPad``, ``ReplicationPad`` and ``CircularPad``, each in 1, 2 and 3 dimensions.

Each layer stores torch's ``padding`` tuple and calls ``fparam.nn.functional.pad``, which holds
the maths and the input checks (ranks, sizes, negative pads). As in torch:

* ``padding`` is an int (the same pad on every side of the last 1, 2 or 3 dims) or a sequence
  ``(left, right[, top, bottom[, front, back]])`` kept **as given** (torch's ``_pair`` /
  ``_quadruple`` / ``_ntuple(6)`` do not check its length), so ``ZeroPad2d((1, 2))`` pads only the
  last dim. Negative pads crop.
* ``ConstantPad*d`` and ``ZeroPad*d`` accept any input rank that ``pad`` does (the pad may not be
  longer than twice the rank); ``ReflectionPad*d`` / ``ReplicationPad*d`` need the ``pad``-mode
  ranks (``(C, *spatial)`` or ``(N, C, *spatial)``, from the padding's length); ``CircularPad*d``
  first checks the rank itself (``ValueError: expected 3D or 4D input (got 2D input)``).
* ``extra_repr`` is torch's: ``(1, 1, 2, 0)``, or ``padding=(1, 1), value=3.5`` for
  ``ConstantPad*d``.

Differences (errors raised earlier than torch raises them): a padding element that is not an int
(``TypeError``) or a padding of odd length (``RuntimeError: Padding length must be divisible by
2``) fails at construction; torch fails in ``forward``. Sizes are stored as Python ints.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from fparam._module import Module
from fparam.nn import _validation as V
from fparam.nn import functional as F

__all__ = [
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
]

_NOT_INT = (
    "{cls}: padding must be an int or a sequence of ints, but got padding={value!r} "
    "(torch: pad(): argument 'pad' must be tuple of ints)"
)
_ODD_LENGTH = (
    "{cls}: Padding length must be divisible by 2, but got padding={value} ((left, right) pairs, "
    "the last dimension first)"
)
_CIRCULAR_RANK = "expected {unbatched}D or {batched}D input (got {rank}D input)"


def _index(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    return operator.index(value)


def _padding(cls: str, padding: Any, n: int) -> tuple[int, ...]:
    """torch's ``_ntuple(2 * n)``: an iterable is kept as it is, anything else repeated."""
    values = tuple(padding) if isinstance(padding, Iterable) else (padding,) * (2 * n)
    try:
        result = tuple(_index(v) for v in values)
    except TypeError:
        raise TypeError(_NOT_INT.format(cls=cls, value=padding)) from None
    if len(result) % 2:
        raise RuntimeError(_ODD_LENGTH.format(cls=cls, value=result))
    return result


class _PadNd(Module):
    """Base of the padding layers: ``padding`` (a tuple of ints), ``forward`` calls ``F.pad``."""

    _n: int = 0  # spatial dims padded by an int padding, set by each concrete class
    _mode: str = ""
    padding: tuple[int, ...]

    def __init__(self, padding: Any) -> None:
        padding = _padding(type(self).__name__, padding, self._n)
        super().__init__()
        self.padding = padding

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _CircularPadNd(_PadNd):
    _mode = "circular"

    def forward(self, input: jax.Array) -> jax.Array:
        V.check_array(f"{type(self).__name__}.forward()", "input", input)
        rank = jnp.ndim(input)
        if rank not in (self._n + 1, self._n + 2):
            raise ValueError(
                _CIRCULAR_RANK.format(unbatched=self._n + 1, batched=self._n + 2, rank=rank)
            )
        return super().forward(input)


class CircularPad1d(_CircularPadNd):
    """Pads the last dim by wrapping around, like ``torch.nn.CircularPad1d``.

    Arguments:
        padding: an int (both sides) or ``(left, right)``; a pad may be at most the dim's size.

    Input ``(C, W)`` or ``(N, C, W)``; output ``W + left + right`` wide.
    """

    _n = 1

    def __init__(self, padding: int | tuple[int, int]) -> None:
        super().__init__(padding)


class CircularPad2d(_CircularPadNd):
    """Pads the last two dims by wrapping around, like ``torch.nn.CircularPad2d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom)``.

    Input ``(C, H, W)`` or ``(N, C, H, W)``.
    """

    _n = 2

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class CircularPad3d(_CircularPadNd):
    """Pads the last three dims by wrapping around, like ``torch.nn.CircularPad3d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom, front, back)``.

    Input ``(C, D, H, W)`` or ``(N, C, D, H, W)``.
    """

    _n = 3

    def __init__(self, padding: int | tuple[int, int, int, int, int, int]) -> None:
        super().__init__(padding)


class _ConstantPadNd(_PadNd):
    _mode = "constant"
    value: float

    def __init__(self, padding: Any, value: float) -> None:
        if value is not None:
            V.check_number(type(self).__name__, "value", value)
        super().__init__(padding)
        self.value = value

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dim with ``value``, like ``torch.nn.ConstantPad1d``.

    Arguments:
        padding: an int (both sides) or ``(left, right)``; negative pads crop.
        value: the fill value (required, as in torch).

    Input: any array of rank >= 1 (the pad may not be longer than twice its rank).
    """

    _n = 1

    def __init__(self, padding: int | tuple[int, int], value: float) -> None:
        super().__init__(padding, value)


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dims with ``value``, like ``torch.nn.ConstantPad2d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom)``.
        value: the fill value.
    """

    _n = 2

    def __init__(self, padding: int | tuple[int, int, int, int], value: float) -> None:
        super().__init__(padding, value)


class ConstantPad3d(_ConstantPadNd):
    """Pads the last three dims with ``value``, like ``torch.nn.ConstantPad3d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom, front, back)``.
        value: the fill value.
    """

    _n = 3

    def __init__(self, padding: int | tuple[int, int, int, int, int, int], value: float) -> None:
        super().__init__(padding, value)


class ZeroPad1d(ConstantPad1d):
    """Pads the last dim with zeros, like ``torch.nn.ZeroPad1d`` (``value`` is ``0.0``).

    Arguments:
        padding: an int (both sides) or ``(left, right)``; negative pads crop.
    """

    def __init__(self, padding: int | tuple[int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dims with zeros, like ``torch.nn.ZeroPad2d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom)``.
    """

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad3d(ConstantPad3d):
    """Pads the last three dims with zeros, like ``torch.nn.ZeroPad3d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom, front, back)``.
    """

    def __init__(self, padding: int | tuple[int, int, int, int, int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ReflectionPadNd(_PadNd):
    _mode = "reflect"


class ReflectionPad1d(_ReflectionPadNd):
    """Pads the last dim with its mirror image (the edge not repeated), like
    ``torch.nn.ReflectionPad1d``.

    Arguments:
        padding: an int (both sides) or ``(left, right)``; each pad must be smaller than the dim.

    Input ``(C, W)`` or ``(N, C, W)``.
    """

    _n = 1

    def __init__(self, padding: int | tuple[int, int]) -> None:
        super().__init__(padding)


class ReflectionPad2d(_ReflectionPadNd):
    """Reflection padding of the last two dims, like ``torch.nn.ReflectionPad2d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom)``.

    Input ``(C, H, W)`` or ``(N, C, H, W)``.
    """

    _n = 2

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class ReflectionPad3d(_ReflectionPadNd):
    """Reflection padding of the last three dims, like ``torch.nn.ReflectionPad3d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom, front, back)``.

    Input ``(C, D, H, W)`` or ``(N, C, D, H, W)``.
    """

    _n = 3

    def __init__(self, padding: int | tuple[int, int, int, int, int, int]) -> None:
        super().__init__(padding)


class _ReplicationPadNd(_PadNd):
    _mode = "replicate"


class ReplicationPad1d(_ReplicationPadNd):
    """Pads the last dim by repeating its edge values, like ``torch.nn.ReplicationPad1d``.

    Arguments:
        padding: an int (both sides) or ``(left, right)``; any size.

    Input ``(C, W)`` or ``(N, C, W)``.
    """

    _n = 1

    def __init__(self, padding: int | tuple[int, int]) -> None:
        super().__init__(padding)


class ReplicationPad2d(_ReplicationPadNd):
    """Replication padding of the last two dims, like ``torch.nn.ReplicationPad2d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom)``.

    Input ``(C, H, W)`` or ``(N, C, H, W)``.
    """

    _n = 2

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class ReplicationPad3d(_ReplicationPadNd):
    """Replication padding of the last three dims, like ``torch.nn.ReplicationPad3d``.

    Arguments:
        padding: an int (every side) or ``(left, right, top, bottom, front, back)``.

    Input ``(C, D, H, W)`` or ``(N, C, D, H, W)``.
    """

    _n = 3

    def __init__(self, padding: int | tuple[int, int, int, int, int, int]) -> None:
        super().__init__(padding)
