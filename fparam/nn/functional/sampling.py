"""Resampling as pure JAX functions, with torch.nn.functional's semantics: ``interpolate`` (and
its deprecated aliases ``upsample``, ``upsample_nearest``, ``upsample_bilinear``),
``grid_sample`` and ``affine_grid``.

``interpolate`` is separable: each spatial axis is resampled on its own by a table of source
indices and weights that depends only on static sizes and options. The tables are computed with
NumPy at trace time, repeating ATen's CPU kernels' arithmetic in the same floating-point type
(float32 for float32 and half inputs, float64 for float64), so that the chosen source pixels are
torch's, including its quirks: ``nearest`` reads ``floor(i * scale)`` (OpenCV's rule), while
``nearest-exact`` reads ``floor((i + 0.5) * scale)``; a ``scale_factor`` given without
``recompute_scale_factor=True`` is used as ``1 / scale_factor`` for the source coordinates, not
the ratio of the integer sizes; an axis whose size does not change is copied, whatever the scale.
Antialiasing (``bilinear``, ``bicubic``, ``lanczos``) widens the filter by the downscaling
factor and normalises its weights, as torch and Pillow do (its cubic uses ``a = -0.5``, Pillow's,
against ``-0.75`` without antialiasing). ``area`` is adaptive average pooling.

A table is applied as one constant matrix product per axis (what ``jax.image.resize`` does) when
the matrix is small, and otherwise as a weighted sum of a few gathers; nearest modes gather, or
repeat / stride when the table is a whole-number zoom. Gradients are JAX's of those operations.

``grid_sample`` gathers the corner pixels of each sampling point (masked to zero outside the input
for ``padding_mode='zeros'``) and weights them; gradients flow to the input and to the grid.

Numerics: float32 results agree with torch's CPU kernels to a few ulps (they sum the same terms
in another order); see ``tests/nn/test_sampling.py`` for the measured errors.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "affine_grid",
    "grid_sample",
    "interpolate",
    "upsample",
    "upsample_bilinear",
    "upsample_nearest",
]

# --------------------------------------------------------------------------------------------
# Error messages (torch's wording: torch/nn/functional.py, ATen's UpSample.h, AdaptivePooling,
# GridSamplerUtils.h).
# --------------------------------------------------------------------------------------------

_ALIGN_CORNERS_MODE = (
    "align_corners option can only be set with the interpolating modes: "
    "linear | bilinear | bicubic | trilinear"
)
_SIZE_AND_SCALE = "only one of size or scale_factor should be defined"
_NO_SIZE_OR_SCALE = "either size or scale_factor should be defined"
_SIZE_LENGTH = (
    "Input and output must have the same number of spatial dimensions, but got input with "
    "spatial dimensions of {spatial} and output size of {size}. Please provide input tensor in "
    "(N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format."
)
_SIZE_TYPES = (
    "expected size to be one of int or Tuple[int] or Tuple[int, int] or Tuple[int, int, int], "
    "but got size with types {types}"
)
_SCALE_LENGTH = (
    "Input and scale_factor must have the same number of spatial dimensions, but got input with "
    "spatial dimensions of {spatial} and scale_factor of shape {scale}. Please provide input "
    "tensor in (N, C, d1, d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) format."
)
_SCALE_TYPES = (
    "interpolate(): argument 'scale_factor' must be a float or a tuple of floats, "
    "but got scale_factor={scale!r}"
)
_RECOMPUTE_WITH_SIZE = "recompute_scale_factor is not meaningful with an explicit size."
_ANTIALIAS = (
    "Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and requires a "
    "4-D tensor as input"
)
_MODE_RANK = "Got {rank}D input, but {mode} mode needs {needs}D input"
_UNSUPPORTED = (
    "Input Error: Only 3D, 4D and 5D input Tensors supported (got {rank}D) for the modes: "
    "nearest | linear | bilinear | bicubic | trilinear | lanczos | area | nearest-exact "
    "(got {mode})"
)
_LANCZOS_ALIGN = "Lanczos mode does not support align_corners=True"
_LANCZOS_ANTIALIAS = "Lanczos mode requires antialias=True"
_SIZES_POSITIVE = (
    "Input and output sizes should be greater than 0, but got input ({input}){sep}output ({output})"
)
_EMPTY_DATA = "Non-empty {rank}D data tensor expected but got a tensor with sizes {shape}"
_NOT_BOOL = "{fn}(): argument '{name}' must be bool, not {type} (got {name}={value!r})"
_NOT_FLOATING = (
    "{fn}(): mode={mode!r} needs a floating-point input, got dtype {dtype} (torch: "
    "not implemented for this dtype)"
)
_POOL_NEGATIVE = (
    "adaptive_avg_pool{n}d: elements of output_size must be greater than or equal to 0 but "
    "received {{{sizes}}}"
)
_POOL_EMPTY = (
    "adaptive_avg_pool{n}d(): Expected input to have non-zero size for non-batch dimensions, "
    "but input has sizes {shape} with dimension {dim} being empty"
)
_NOT_ARRAY = "{fn}(): argument '{name}' must be an array, not {type}"

_GRID_MODE = (
    "nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or 'bicubic', "
    "but got: '{mode}'"
)
_GRID_PADDING = (
    "nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
    "'reflection', but got: '{padding_mode}'"
)
_ALIGN_CORNERS_DEFAULT = (
    "Default grid_sample and affine_grid behavior has changed to align_corners=False since "
    "1.3.0. Please specify align_corners=True if the old behavior is desired. See the "
    "documentation of grid_sample for details."
)
_GRID_BATCH = (
    "grid_sampler(): expected grid and input to have same batch size, but got input with sizes "
    "{input} and grid with sizes {grid}"
)
_GRID_LAST = (
    "grid_sampler(): expected grid to have size {n} in last dimension, but got grid with sizes "
    "{grid}"
)
_GRID_EMPTY = (
    "grid_sampler(): expected input to have non-empty spatial dimensions, but input has sizes "
    "{input} with dimension {dim} being empty"
)
_GRID_RANK = (
    "grid_sampler(): expected {rank}D input and grid with same number of dimensions, but got "
    "input with sizes {input} and grid with sizes {grid}"
)
_GRID_BICUBIC = "grid_sampler(): bicubic interpolation only supports 4D input"
_GRID_DTYPE = (
    "grid_sampler(): expected input and grid to have the same dtype, but got input {input} and "
    "grid {grid} (torch: expected scalar type {input} but found {grid})"
)
_GRID_NOT_FLOATING = (
    "grid_sampler(): expected a floating-point input and grid, got dtype {dtype} (torch: not "
    "implemented for this dtype)"
)
_THETA_FLOATING = "Expected theta to have floating point type, but got {dtype}"
_THETA_SHAPE = (
    "Expected a batch of {n}D affine matrices of shape Nx{rows}x{cols} for size {size}. "
    "Got {shape}."
)
_AFFINE_SIZE = (
    "affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, respectively. "
    "Got size {size}."
)
_AFFINE_POSITIVE = "Expected non-zero, positive output size. Got {size}"
_AFFINE_UNIT = (
    "Since version 1.3.0, affine_grid behavior has changed for unit-size grids when "
    "align_corners=True. This is not an intended use case of affine_grid. See the "
    "documentation of affine_grid for details."
)
_AFFINE_BATCH = (
    "affine_grid(): theta holds {got} matrices but size asks for a batch of {want} (torch: "
    "Expected size for first two dimensions of batch2 tensor to be: [{want}, {rows}] but got: "
    "[{got}, {rows}].)"
)

_MODES = (
    "nearest",
    "linear",
    "bilinear",
    "bicubic",
    "trilinear",
    "lanczos",
    "area",
    "nearest-exact",
)
_RANK_OF_MODE = {"linear": 3, "bilinear": 4, "trilinear": 5}
_AXIS_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}

# A table is applied as a dense (in, out) matrix up to this many entries (4 MiB of float32), and
# as a weighted sum of gathers beyond: the matrix product does in*out multiply-adds per line, the
# gathers a few, but XLA's CPU gathers and their scatter-add gradients are slow at small sizes.
_DENSE_MAX = 1 << 20


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _typename(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _as_array(value: Any, fn: str, name: str) -> jax.Array:
    if isinstance(value, (jax.Array, np.ndarray)):
        return jnp.asarray(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return jnp.asarray(np.asarray(value))
    raise TypeError(_NOT_ARRAY.format(fn=fn, name=name, type=_typename(value)))


def _is_integer(value: Any) -> bool:
    """torch's ``_is_integer``: an int or NumPy integer (not a bool), or an integer 0-d array."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return (
        isinstance(value, (jax.Array, np.ndarray))
        and value.ndim == 0
        and jnp.issubdtype(value.dtype, jnp.integer)
        and not isinstance(value, jax.core.Tracer)
    )


def _check_bool(fn: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(_NOT_BOOL.format(fn=fn, name=name, type=_typename(value), value=value))
    return bool(value)


def _compute_dtype(dtype: Any) -> Any:
    """The type ATen computes in: float64 for float64, float32 for every narrower float."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


# --------------------------------------------------------------------------------------------
# Per-axis tables: ATen's index/weight computations (UpSample.h, UpSampleKernel.cpp,
# AdaptivePooling.h), in the same floating-point type.
# --------------------------------------------------------------------------------------------


class _Table(NamedTuple):
    """Output ``o`` reads ``sum_k weight[o, k] * x[src[o, k]]`` (``weight`` None: one tap)."""

    src: np.ndarray
    weight: np.ndarray | None


def _scales_value(scale: float | None, n_in: int, n_out: int, ct: Any) -> Any:
    """``compute_scales_value``: ``1 / scale_factor`` when one was given, else in / out."""
    if scale is not None and scale > 0:
        return ct(1.0 / scale)
    return ct(n_in) / ct(n_out)


def _area_scale(n_in: int, n_out: int, align_corners: bool, scale: float | None, ct: Any) -> Any:
    """``area_pixel_compute_scale``."""
    if align_corners:
        return ct(n_in - 1) / ct(n_out - 1) if n_out > 1 else ct(0)
    return _scales_value(scale, n_in, n_out, ct)


def _source_index(scale: Any, n_out: int, align_corners: bool, cubic: bool, ct: Any) -> np.ndarray:
    """``area_pixel_compute_source_index`` for every output index."""
    i = np.arange(n_out, dtype=ct)
    if align_corners:
        return scale * i
    src = scale * (i + ct(0.5)) - ct(0.5)
    return src if cubic else np.where(src < 0, ct(0), src)


def _nearest_table(
    n_in: int, n_out: int, scale: float | None, exact: bool, shortcuts: bool, ct: Any
) -> _Table:
    """``shortcuts``: ATen's ``nearest_idx`` copies an unchanged axis and doubles by ``i >> 1``
    whatever the scale; its 2-d forward kernel uses it, the 1-d and 3-d ones do not."""
    i = np.arange(n_out)
    if exact:
        # (int64 + 0.5) is a double in ATen, times the float scale, then floorf.
        src = np.floor(((i + 0.5) * np.float64(_scales_value(scale, n_in, n_out, ct))).astype(ct))
    elif shortcuts and n_out == n_in:
        src = i
    elif shortcuts and n_out == 2 * n_in:
        src = i >> 1
    else:
        src = np.floor(i.astype(ct) * _scales_value(scale, n_in, n_out, ct))
    return _Table(np.minimum(src.astype(np.int64), n_in - 1)[:, None], None)


def _linear_table(
    n_in: int, n_out: int, align_corners: bool, scale: float | None, ct: Any
) -> _Table:
    if n_in == n_out:
        return _Table(np.arange(n_out)[:, None], np.ones((n_out, 1), ct))
    ratio = _area_scale(n_in, n_out, align_corners, scale, ct)
    real = _source_index(ratio, n_out, align_corners, False, ct)
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    lam1 = np.clip(real - i0.astype(ct), ct(0), ct(1))
    i1 = i0 + (i0 < n_in - 1)
    return _Table(np.stack([i0, i1], 1), np.stack([ct(1) - lam1, lam1], 1))


def _cubic_coefficients(t: np.ndarray, ct: Any) -> np.ndarray:
    """``get_cubic_upsample_coefficients`` with A = -0.75."""
    a = ct(-0.75)

    def conv1(x: np.ndarray) -> np.ndarray:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def conv2(x: np.ndarray) -> np.ndarray:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    x2 = ct(1) - t
    return np.stack([conv2(t + ct(1)), conv1(t), conv1(x2), conv2(x2 + ct(1))], 1).astype(ct)


def _cubic_table(
    n_in: int, n_out: int, align_corners: bool, scale: float | None, ct: Any
) -> _Table:
    if n_in == n_out:
        return _Table(np.arange(n_out)[:, None], np.ones((n_out, 1), ct))
    ratio = _area_scale(n_in, n_out, align_corners, scale, ct)
    real = _source_index(ratio, n_out, align_corners, True, ct)
    i0 = np.floor(real).astype(np.int64)
    t = real - i0.astype(ct)
    index = np.clip(i0[:, None] + np.arange(-1, 3), 0, n_in - 1)
    return _Table(index, _cubic_coefficients(t, ct))


def _aa_linear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0).astype(x.dtype)


def _aa_cubic(x: np.ndarray) -> np.ndarray:
    a = x.dtype.type(-0.5)  # Pillow's cubic
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0)).astype(x.dtype)


def _aa_lanczos(x: np.ndarray) -> np.ndarray:
    """Lanczos-3: ``sinc(x) * sinc(x / 3)`` on ``|x| < 3``."""
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 3 * np.sin(np.pi * xd) * np.sin(np.pi * xd / 3) / (np.pi * np.pi * xd * xd)
    value = np.where(xd == 0, 1.0, np.where(np.abs(xd) < 3, value, 0.0))
    return value.astype(x.dtype)


_AA_FILTERS: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "bilinear": (2, _aa_linear),
    "bicubic": (4, _aa_cubic),
    "lanczos": (6, _aa_lanczos),
}


def _aa_table(
    n_in: int, n_out: int, align_corners: bool, scale: float | None, mode: str, ct: Any
) -> _Table:
    """``_compute_indices_min_size_weights_aa`` (the antialiased separable kernel)."""
    if n_in == n_out:  # ATen's separable kernel skips such an axis, whatever the scale
        return _Table(np.arange(n_out)[:, None], np.ones((n_out, 1), ct))
    interp_size, filter_fn = _AA_FILTERS[mode]
    s = _area_scale(n_in, n_out, align_corners, scale, ct)
    support = ct(interp_size * 0.5) * s if s >= 1.0 else ct(interp_size * 0.5)
    taps = math.ceil(float(support)) * 2 + 1
    invscale = ct(1.0 / float(s)) if s >= 1.0 else ct(1.0)
    i = np.arange(n_out)
    # ATen mixes float and double here: (i + 0.5) is double, the centre is stored as float.
    center = (np.float64(s) * (i + 0.5)).astype(ct)
    xmin = np.maximum(np.trunc(np.float64(center - support) + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(np.float64(center + support) + 0.5).astype(np.int64), n_in)
    xsize = np.clip(xmax - xmin, 0, taps)
    j = np.arange(taps)
    arg = (((j + xmin[:, None]).astype(ct) - center[:, None]).astype(np.float64) + 0.5) * invscale
    w = filter_fn(arg.astype(ct))
    w = np.where(j < xsize[:, None], w, ct(0))
    total = w.sum(1, keepdims=True, dtype=ct)
    w = np.where(total != 0, w / np.where(total != 0, total, ct(1)), w).astype(ct)
    index = np.minimum(xmin[:, None] + j, n_in - 1)
    return _Table(index, w)


def _area_table(n_in: int, n_out: int, ct: Any) -> _Table:
    """Adaptive average pooling: output ``o`` averages ``[floor(o*in/out), ceil((o+1)*in/out))``."""
    o = np.arange(n_out)
    start = (o * n_in) // n_out
    end = -((-(o + 1) * n_in) // n_out)
    taps = int((end - start).max(initial=1))
    j = np.arange(taps)
    inside = j < (end - start)[:, None]
    w = np.where(inside, (ct(1) / (end - start).astype(ct))[:, None], ct(0)).astype(ct)
    return _Table(np.minimum(start[:, None] + j, n_in - 1), w)


def _is_identity(table: _Table, n_in: int) -> bool:
    n_out = table.src.shape[0]
    if n_out != n_in:
        return False
    on_diagonal = table.src == np.arange(n_out)[:, None]
    if table.weight is None:
        return bool(on_diagonal.all())
    diagonal = np.where(on_diagonal, table.weight, 0).sum(1)
    return bool((diagonal == 1).all() and (table.weight[~on_diagonal] == 0).all())


def _dense(table: _Table, n_in: int, ct: Any) -> np.ndarray:
    """The table as an ``(in, out)`` matrix."""
    n_out, taps = table.src.shape
    weight = np.ones((n_out, taps), ct) if table.weight is None else table.weight
    matrix = np.zeros((n_in, n_out), ct)
    np.add.at(
        matrix, (table.src, np.broadcast_to(np.arange(n_out)[:, None], (n_out, taps))), weight
    )
    return matrix


def _apply_nearest(x: jax.Array, axis: int, index: np.ndarray, n_in: int) -> jax.Array:
    n_out = index.shape[0]
    if n_out % n_in == 0 and np.array_equal(index, np.arange(n_out) // (n_out // n_in)):
        return jnp.repeat(x, n_out // n_in, axis=axis)  # a broadcast: its gradient is a sum
    if n_out > 1:
        step = int(index[1] - index[0])
        if step > 0 and np.array_equal(index, index[0] + step * np.arange(n_out)):
            start = int(index[0])
            return lax.slice_in_dim(x, start, start + step * (n_out - 1) + 1, step, axis)
    return jnp.take(x, jnp.asarray(index, np.int32), axis=axis)


def _apply_table(x: jax.Array, axis: int, table: _Table, n_in: int) -> jax.Array:
    if _is_identity(table, n_in):
        return x
    if table.weight is None:
        return _apply_nearest(x, axis, table.src[:, 0], n_in)
    n_out, taps = table.src.shape
    ct = table.weight.dtype.type
    if n_in * n_out <= _DENSE_MAX:
        letters = list(range(x.ndim))
        out_letters = [x.ndim if d == axis else d for d in letters]
        matrix = jnp.asarray(_dense(table, n_in, ct))
        return jnp.einsum(
            x, letters, matrix, [axis, x.ndim], out_letters, precision=lax.Precision.HIGHEST
        )
    shape = [1] * x.ndim
    shape[axis] = n_out
    total = None
    for k in range(taps):
        term = jnp.take(x, jnp.asarray(table.src[:, k], np.int32), axis=axis)
        term = term * jnp.asarray(table.weight[:, k]).reshape(shape)
        total = term if total is None else total + term
    assert total is not None
    return total


# --------------------------------------------------------------------------------------------
# interpolate
# --------------------------------------------------------------------------------------------


def _output_size(
    input_shape: tuple[int, ...], size: Any, scale_factor: Any, recompute: Any
) -> tuple[list[int] | None, list[float] | None, bool]:
    """torch's size / scale_factor processing: ``(output_size, scale_factors, recompute)``."""
    dim = len(input_shape) - 2
    spatial = list(input_shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError(_SIZE_AND_SCALE)
    output_size: list[int] | None = None
    scale_factors: list[float] | None = None
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(_SIZE_LENGTH.format(spatial=spatial, size=size))
            if not all(_is_integer(s) for s in size):
                raise TypeError(_SIZE_TYPES.format(types=[type(s) for s in size]))
            output_size = [operator.index(s) for s in size]
        else:
            if not _is_integer(size):
                raise TypeError(_SIZE_TYPES.format(types=[type(size)]))
            output_size = [operator.index(size)] * dim
    elif scale_factor is not None:
        factors = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else None
        if factors is not None and len(factors) != dim:
            raise ValueError(_SCALE_LENGTH.format(spatial=spatial, scale=scale_factor))
        factors = [scale_factor] * dim if factors is None else factors
        for f in factors:
            if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, float, np.number)):
                raise TypeError(_SCALE_TYPES.format(scale=scale_factor))
        scale_factors = [float(f) for f in factors]
    else:
        raise ValueError(_NO_SIZE_OR_SCALE)
    if recompute is not None and recompute and size is not None:
        raise ValueError(_RECOMPUTE_WITH_SIZE)
    return output_size, scale_factors, bool(recompute)


def interpolate(
    input: jax.Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> jax.Array:
    """Resample ``input`` (``(N, C, *spatial)``, 1 to 3 spatial axes) to ``size`` or by
    ``scale_factor``: torch's ``F.interpolate``.

    Arguments:
        input: a batched array of rank 3, 4 or 5 (torch has no unbatched form here).
        size: the output's spatial size, an int for every axis or one per axis.
        scale_factor: a float for every axis or one per axis; the output size is
            ``floor(in * scale_factor)``. Exactly one of ``size`` and ``scale_factor``.
        mode: ``'nearest'`` (torch's legacy rule ``floor(i * in / out)``), ``'nearest-exact'``
            (pixel centres, as Pillow and scikit-image), ``'linear'`` (rank 3), ``'bilinear'``
            (rank 4), ``'bicubic'`` (rank 4, A = -0.75, borders clamped), ``'trilinear'``
            (rank 5), ``'area'`` (adaptive average pooling), ``'lanczos'`` (rank 4, needs
            ``antialias=True``).
        align_corners: for the interpolating modes, whether the corner pixels' centres (True)
            or their outer edges (False, the default) are aligned; must stay None otherwise.
        recompute_scale_factor: True computes the output size from ``scale_factor`` and then
            interpolates as if that size had been given; otherwise the given ``scale_factor``
            itself sets the source coordinates (``src = (dst + 0.5) / scale_factor - 0.5``).
        antialias: for ``'bilinear'``/``'bicubic'`` on rank-4 inputs, widen the filter when
            downsampling (torch's and Pillow's antialiasing).

    Returns:
        An array of ``input``'s dtype, shape ``(N, C, *output_size)``.

    Raises:
        ValueError, TypeError, NotImplementedError, RuntimeError: torch's, for the same bad
        arguments (wrong mode for the rank, both or neither of size and scale_factor,
        align_corners with a nearest mode, sizes below 1, ...).
    """
    fn = "interpolate"
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(_ALIGN_CORNERS_MODE)
    elif align_corners is None:
        align_corners = False
    x = _as_array(input, fn, "input")
    output_size, scale_factors, recompute = _output_size(
        x.shape, size, scale_factor, recompute_scale_factor
    )
    rank = x.ndim
    if mode == "area" and output_size is None:
        recompute = True
    if recompute:
        assert scale_factors is not None
        output_size = [int(n * s) for n, s in zip(x.shape[2:], scale_factors)]
        scale_factors = None
    antialias = _check_bool(fn, "antialias", antialias)
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and rank == 4):
        raise ValueError(_ANTIALIAS)
    if mode not in _MODES or not 3 <= rank <= 5:
        raise NotImplementedError(_UNSUPPORTED.format(rank=rank, mode=mode))
    if mode in _RANK_OF_MODE and rank != _RANK_OF_MODE[mode]:
        needs = _RANK_OF_MODE[mode]
        raise NotImplementedError(_MODE_RANK.format(rank=rank, mode=mode, needs=needs))
    if mode in ("bicubic", "lanczos") and rank != 4:
        raise NotImplementedError(_UNSUPPORTED.format(rank=rank, mode=mode))
    if align_corners is not None:
        align_corners = _check_bool(fn, "align_corners", align_corners)
    if mode == "lanczos":
        if align_corners:
            raise ValueError(_LANCZOS_ALIGN)
        if not antialias:
            raise ValueError(_LANCZOS_ANTIALIAS)
    in_sizes = [int(n) for n in x.shape[2:]]
    if output_size is None:
        assert scale_factors is not None
        output_size = [int(n * s) for n, s in zip(in_sizes, scale_factors)]
    if mode == "area":
        _check_adaptive_pool(x.shape, output_size)
    elif min(in_sizes) <= 0 or min(output_size) <= 0:
        names = _AXIS_NAMES[rank - 2]
        sep = " and " if rank == 3 else " "
        raise RuntimeError(
            _SIZES_POSITIVE.format(
                input=", ".join(f"{a}: {n}" for a, n in zip(names, in_sizes)),
                output=", ".join(f"{a}: {n}" for a, n in zip(names, output_size)),
                sep=sep,
            )
        )
    if mode != "area" and x.size == 0 and math.prod(x.shape[1:]) == 0:
        raise RuntimeError(_EMPTY_DATA.format(rank=rank, shape=_shape(x.shape)))
    nearest = mode in ("nearest", "nearest-exact")
    if not nearest and not jnp.issubdtype(x.dtype, jnp.floating):
        raise NotImplementedError(_NOT_FLOATING.format(fn=fn, mode=mode, dtype=x.dtype))
    ct = _compute_dtype(x.dtype) if not nearest else np.float32
    scales: list[float | None] = list(scale_factors) if scale_factors else [None] * (rank - 2)
    tables = []
    for n_in, n_out, s in zip(in_sizes, output_size, scales):
        if nearest:
            table = _nearest_table(n_in, n_out, s, mode == "nearest-exact", rank == 4, ct)
        elif mode == "area":
            table = _area_table(n_in, n_out, ct)
        elif antialias:
            table = _aa_table(n_in, n_out, bool(align_corners), s, mode, ct)
        elif mode == "bicubic":
            table = _cubic_table(n_in, n_out, bool(align_corners), s, ct)
        else:
            table = _linear_table(n_in, n_out, bool(align_corners), s, ct)
        tables.append(table)
    y = x if nearest else x.astype(ct)
    if any(n == 0 for n in output_size):
        return jnp.zeros(x.shape[:2] + tuple(output_size), x.dtype)
    for axis, (table, n_in) in enumerate(zip(tables, in_sizes), start=2):
        y = _apply_table(y, axis, table, n_in)
    return y.astype(x.dtype)


def _check_adaptive_pool(shape: tuple[int, ...], output_size: Sequence[int]) -> None:
    """adaptive_avg_pool{1,2,3}d's checks (the 1-d one runs as 2-d on an unsqueezed input)."""
    spatial = len(shape) - 2
    if spatial == 1:
        shape, output_size, n = (*shape[:2], 1, shape[2]), [1, *output_size], 2
    else:
        n = spatial
    if min(output_size) < 0:
        raise RuntimeError(_POOL_NEGATIVE.format(n=n, sizes=", ".join(str(s) for s in output_size)))
    for dim in range(len(shape) - n, len(shape)):
        if shape[dim] == 0:
            raise RuntimeError(_POOL_EMPTY.format(n=n, shape=_shape(shape), dim=dim))


def upsample(
    input: jax.Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> jax.Array:
    """Deprecated alias of :func:`interpolate` (torch's ``F.upsample``; warns as torch does)."""
    warnings.warn(
        "`nn.functional.upsample` is deprecated. Use `nn.functional.interpolate` instead.",
        stacklevel=2,
    )
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(
    input: jax.Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
) -> jax.Array:
    """Deprecated: ``interpolate(input, size, scale_factor, mode='nearest')`` (warns as torch)."""
    warnings.warn(
        "`nn.functional.upsample_nearest` is deprecated. Use `nn.functional.interpolate` instead.",
        stacklevel=2,
    )
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(
    input: jax.Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
) -> jax.Array:
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)`` (warns as torch)."""
    warnings.warn(
        "`nn.functional.upsample_bilinear` is deprecated. Use `nn.functional.interpolate` instead.",
        stacklevel=2,
    )
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# --------------------------------------------------------------------------------------------
# grid_sample, affine_grid
# --------------------------------------------------------------------------------------------


def _unnormalize(coord: jax.Array, size: int, align_corners: bool) -> jax.Array:
    """``grid_sampler_unnormalize``: [-1, 1] to pixel centres (True) or pixel edges (False)."""
    if align_corners:
        return ((coord + 1) / 2) * (size - 1)
    return ((coord + 1) * size - 1) / 2


def _clip(coord: jax.Array, size: int) -> jax.Array:
    # ATen's gradient is 0 at and beyond either end; jnp.clip would give 1/2 at the ends.
    limit = jnp.asarray(size - 1, coord.dtype)
    return jnp.where(coord <= 0, jnp.zeros_like(coord), jnp.where(coord >= limit, limit, coord))


def _reflect(coord: jax.Array, twice_low: int, twice_high: int) -> jax.Array:
    """``reflect_coordinates``: fold ``coord`` into ``[twice_low / 2, twice_high / 2]``."""
    if twice_low == twice_high:
        return jnp.zeros_like(coord)
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    shifted = coord - low
    folded = jnp.where(shifted < 0, -shifted, shifted)
    extra = jnp.fmod(folded, span)
    flips = jnp.floor(folded / span)
    return jnp.where(jnp.fmod(flips, 2) == 0, extra + low, span - extra + low)


def _pad_coordinates(coord: jax.Array, size: int, padding_mode: str, align_corners: bool) -> Any:
    """``compute_coordinates``: border clamps, reflection folds then clamps, zeros leaves."""
    if padding_mode == "border":
        return _clip(coord, size)
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        return _clip(coord, size)
    return coord


def _gather_corners(
    flat: jax.Array,
    sizes: Sequence[int],
    corners: Sequence[Sequence[jax.Array]],
    weights: Sequence[jax.Array | None],
) -> jax.Array:
    """``sum_k weights[k] * flat[n, c, corners[k]]`` in one gather; ``corners[k]`` holds an
    integer ``(N, P)`` coordinate per axis, and a corner outside the input reads 0 (after border
    or reflection padding only a zero-weight corner can be outside)."""
    linear = []
    inside = []
    for corner in corners:
        ok = jnp.ones(corner[0].shape, bool)
        index = jnp.zeros(corner[0].shape, jnp.int32)
        for coord, size in zip(corner, sizes):
            ok = ok & (coord >= 0) & (coord < size)
            index = index * size + jnp.clip(coord, 0, size - 1)
        linear.append(index)
        inside.append(ok)
    n, c, _ = flat.shape
    k, p = len(corners), linear[0].shape[1]
    stacked = jnp.concatenate(linear, axis=1)  # (N, K*P)
    values = jnp.take_along_axis(flat, stacked[:, None, :], axis=2).reshape(n, c, k, p)
    mask = jnp.stack(inside, axis=1)[:, None]  # (N, 1, K, P)
    values = jnp.where(mask, values, jnp.zeros((), flat.dtype))
    if weights[0] is None:
        return values[:, :, 0]
    w = jnp.stack([wk for wk in weights if wk is not None], axis=1)[:, None]
    return (values * w).sum(axis=2)


def grid_sample(
    input: jax.Array,
    grid: jax.Array,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> jax.Array:
    """Sample ``input`` at the normalised coordinates ``grid``: torch's ``F.grid_sample``.

    Arguments:
        input: ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        grid: ``(N, H_out, W_out, 2)`` or ``(N, D_out, H_out, W_out, 3)``, ``(x, y[, z])``
            in [-1, 1] (x indexes width), the input's dtype.
        mode: ``'bilinear'`` (trilinear for 5-D), ``'nearest'`` (round half to even), or
            ``'bicubic'`` (4-D only; A = -0.75, every tap padded by ``padding_mode``).
        padding_mode: ``'zeros'``, ``'border'`` or ``'reflection'`` for points outside.
        align_corners: True maps -1 and 1 to the corner pixels' centres, False (the default,
            with torch's warning when None) to their outer edges.

    Returns:
        ``(N, C, H_out, W_out)`` or ``(N, C, D_out, H_out, W_out)``; differentiable with respect
        to ``input`` and ``grid`` (the grid's gradient is zero for ``'nearest'``).
    """
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(_GRID_MODE.format(mode=mode))
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(_GRID_PADDING.format(padding_mode=padding_mode))
    if align_corners is None:
        warnings.warn(_ALIGN_CORNERS_DEFAULT, stacklevel=2)
        align_corners = False
    align_corners = _check_bool("grid_sample", "align_corners", align_corners)
    x = _as_array(input, "grid_sample", "input")
    g = _as_array(grid, "grid_sample", "grid")
    if x.ndim >= 1 and g.ndim >= 1 and x.shape[0] != g.shape[0]:
        raise RuntimeError(_GRID_BATCH.format(input=_shape(x.shape), grid=_shape(g.shape)))
    if g.ndim == 0 or g.shape[-1] != x.ndim - 2:
        raise RuntimeError(_GRID_LAST.format(n=x.ndim - 2, grid=_shape(g.shape)))
    for dim in range(2, x.ndim):
        if x.shape[dim] == 0:
            raise RuntimeError(_GRID_EMPTY.format(input=_shape(x.shape), dim=dim))
    rank = 4 if x.ndim == 4 else 5
    if x.ndim != rank or g.ndim != rank:
        raise RuntimeError(
            _GRID_RANK.format(rank=rank, input=_shape(x.shape), grid=_shape(g.shape))
        )
    if rank == 5 and mode == "bicubic":
        raise RuntimeError(_GRID_BICUBIC)
    if x.dtype != g.dtype:
        raise RuntimeError(_GRID_DTYPE.format(input=x.dtype, grid=g.dtype))
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise NotImplementedError(_GRID_NOT_FLOATING.format(dtype=x.dtype))

    n, c = x.shape[:2]
    sizes = [int(s) for s in x.shape[2:]]  # (H, W) or (D, H, W)
    out_spatial = g.shape[1:-1]
    ct = _compute_dtype(x.dtype)
    flat = x.astype(ct).reshape(n, c, -1)
    points = g.astype(ct).reshape(n, -1, rank - 2)
    # grid's last axis is (x, y[, z]): reversed against the input's (D,) H, W axes.
    coords = [_unnormalize(points[..., k], sizes[-1 - k], align_corners) for k in range(rank - 2)]
    coords = coords[::-1]

    corners: list[list[jax.Array]] = []
    weights: list[jax.Array | None] = []
    if mode == "bicubic":
        h, w = sizes
        iy, ix = coords
        y0, x0 = jnp.floor(iy), jnp.floor(ix)
        wy, wx = _cubic_weights(iy - y0), _cubic_weights(ix - x0)
        taps_y = [_pad_coordinates(y0 - 1 + i, h, padding_mode, align_corners) for i in range(4)]
        taps_x = [_pad_coordinates(x0 - 1 + j, w, padding_mode, align_corners) for j in range(4)]
        for ty, weight_y in zip(taps_y, wy):
            for tx, weight_x in zip(taps_x, wx):
                corners.append([lax.stop_gradient(t).astype(jnp.int32) for t in (ty, tx)])
                weights.append(weight_y * weight_x)
    else:
        coords = [
            _pad_coordinates(cd, s, padding_mode, align_corners) for cd, s in zip(coords, sizes)
        ]
        if mode == "nearest":
            corners.append([lax.stop_gradient(jnp.round(cd)).astype(jnp.int32) for cd in coords])
            weights.append(None)
        else:
            lows = [lax.stop_gradient(jnp.floor(cd)) for cd in coords]
            fracs = [cd - lo for cd, lo in zip(coords, lows)]
            for bits in np.ndindex(*([2] * (rank - 2))):
                factors = [frac if b else 1 - frac for b, frac in zip(bits, fracs)]
                weight = factors[0]
                for factor in factors[1:]:
                    weight = weight * factor
                corners.append([(lo + b).astype(jnp.int32) for b, lo in zip(bits, lows)])
                weights.append(weight)
    out = _gather_corners(flat, sizes, corners, weights)
    return out.reshape((n, c, *out_spatial)).astype(x.dtype)


def _cubic_weights(t: jax.Array) -> list[jax.Array]:
    """``get_cubic_upsample_coefficients`` (A = -0.75) of traced fractions ``t``."""
    a = -0.75

    def conv1(x: jax.Array) -> jax.Array:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def conv2(x: jax.Array) -> jax.Array:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [conv2(t + 1), conv1(t), conv1(1 - t), conv2(2 - t)]


def _linspace_from_neg_one(steps: int, align_corners: bool, ct: Any) -> np.ndarray:
    """ATen's ``linspace_from_neg_one`` (``torch.linspace``'s two-sided float arithmetic)."""
    if steps <= 1:
        return np.zeros((1,), ct)
    step = (ct(1) - ct(-1)) / ct(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    values = np.where(
        i < half, ct(-1) + step * i.astype(ct), ct(1) - step * (steps - i - 1).astype(ct)
    ).astype(ct)
    if not align_corners:
        values = (values * ct(steps - 1) / ct(steps)).astype(ct)
    return values


def affine_grid(
    theta: jax.Array, size: Sequence[int], align_corners: bool | None = None
) -> jax.Array:
    """The sampling grid of the affine maps ``theta`` for an output of ``size``: torch's
    ``F.affine_grid``.

    Arguments:
        theta: ``(N, 2, 3)`` for a 4-D ``size`` ``(N, C, H, W)``, or ``(N, 3, 4)`` for a 5-D
            ``size`` ``(N, C, D, H, W)``; floating point.
        size: the output size of the :func:`grid_sample` this grid feeds.
        align_corners: as in :func:`grid_sample` (None warns and means False, as torch).

    Returns:
        ``(N, H, W, 2)`` or ``(N, D, H, W, 3)``: ``theta @ (x, y[, z], 1)`` at every output
        pixel's normalised coordinates.
    """
    if align_corners is None:
        warnings.warn(_ALIGN_CORNERS_DEFAULT, stacklevel=2)
        align_corners = False
    align_corners = _check_bool("affine_grid", "align_corners", align_corners)
    t = _as_array(theta, "affine_grid", "theta")
    if not jnp.issubdtype(t.dtype, jnp.floating):
        raise ValueError(_THETA_FLOATING.format(dtype=t.dtype))
    shown = size
    size = [operator.index(s) for s in size]
    if len(size) in (4, 5):
        k = len(size) - 2
        if t.ndim != 3 or t.shape[-2] != k or t.shape[-1] != k + 1:
            raise ValueError(
                _THETA_SHAPE.format(n=k, rows=k, cols=k + 1, size=shown, shape=tuple(t.shape))
            )
        spatial = size[2:]
    else:
        raise NotImplementedError(_AFFINE_SIZE.format(size=shown))
    if align_corners and min(spatial) == 1:
        warnings.warn(_AFFINE_UNIT, stacklevel=2)
    elif min(size) <= 0:
        raise ValueError(_AFFINE_POSITIVE.format(size=shown))
    if t.shape[0] != size[0]:
        raise RuntimeError(_AFFINE_BATCH.format(got=t.shape[0], want=size[0], rows=k + 1))
    ct = _compute_dtype(t.dtype)
    axes = [_linspace_from_neg_one(s, align_corners, ct) for s in spatial]  # (D,) H, W
    mesh = np.meshgrid(*axes, indexing="ij")
    base = np.stack([*mesh[::-1], np.ones_like(mesh[0])], axis=-1)  # (x, y[, z], 1)
    grid = jnp.einsum(
        base.reshape(-1, k + 1),
        [0, 1],
        t.astype(ct),
        [2, 3, 1],
        [2, 0, 3],
        precision=lax.Precision.HIGHEST,
    )
    return grid.reshape((size[0], *spatial, k)).astype(t.dtype)
