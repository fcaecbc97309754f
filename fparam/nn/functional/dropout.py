"""Dropout functions with torch's formulas, rank rules, warnings and errors.

Each takes an optional ``key=``; without it, the key comes from ``fparam._random.resolve_key``
(fparam's default stream eagerly, the key in scope of ``fparam.rng`` under a transformation).
No key is drawn when the function is the identity (eval mode, ``p == 0``, an empty input) or
zeroes everything (``p == 1``), as torch draws no random numbers then.

torch's rules (ATen ``Dropout.cpp``): kept values are scaled by ``1 / (1 - p)``; the feature
variants draw one Bernoulli per ``(sample, channel)``; alpha dropout sets dropped values to the
SELU saturation value and rescales to keep zero mean and unit variance.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp

from fparam._random import resolve_key

__all__ = [
    "alpha_dropout",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
]

_P_RANGE = "dropout probability has to be between 0 and 1, but got {p}"
_FEATURE_RANK = "Feature dropout requires at least 2 dimensions in the input"
_DROPOUT1D_RANK = (
    "dropout1d: Expected 2D or 3D input, but received a {ndim}D input. Note that dropout1d "
    "exists to provide channel-wise dropout on inputs with 1 spatial dimension, a channel "
    "dimension, and an optional batch dimension (i.e. 2D or 3D inputs)."
)
_DROPOUT2D_RANK = (
    "dropout2d: Received a {ndim}-D input to dropout2d, which is deprecated and will result in an "
    "error in a future release. To retain the behavior and silence this warning, please use "
    "dropout instead. Note that dropout2d exists to provide channel-wise dropout on inputs with "
    "2 spatial dimensions, a channel dimension, and an optional batch dimension (i.e. 3D or 4D "
    "inputs)."
)
_DROPOUT2D_3D = (
    "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
    "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
    "This behavior will change in a future release to interpret the input as one without a batch "
    "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
    "switch to using dropout1d instead."
)
_DROPOUT3D_RANK = (
    "dropout3d: Received a {ndim}-D input to dropout3d, which is deprecated and will result in an "
    "error in a future release. To retain the behavior and silence this warning, please use "
    "dropout instead. Note that dropout3d exists to provide channel-wise dropout on inputs with "
    "3 spatial dimensions, a channel dimension, and an optional batch dimension (i.e. 4D or 5D "
    "inputs)."
)

# SELU's saturation value -scale * alpha, as in ATen.
_ALPHA = 1.7580993408473766


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(_P_RANGE.format(p=p))


def _dropout(
    input: jax.Array, p: float, training: bool, feature: bool, alpha: bool, key: jax.Array | None
) -> jax.Array:
    """ATen's ``_dropout_impl``: the common body of every variant."""
    input = jnp.asarray(input)
    if feature and input.ndim < 2:
        raise RuntimeError(_FEATURE_RANK)
    if p == 0 or not training or input.size == 0:
        return input
    if p == 1:
        # torch multiplies by zero: a NaN or inf input stays NaN, as there.
        return input * jnp.zeros((), input.dtype)
    noise_shape = input.shape[:2] + (1,) * (input.ndim - 2) if feature else input.shape
    keep = jax.random.bernoulli(
        resolve_key(key, "a Dropout in training mode (F.dropout)"), 1.0 - p, noise_shape
    )
    noise = keep.astype(input.dtype)
    if not alpha:
        out = input * (noise / jnp.asarray(1.0 - p, input.dtype))
    else:
        a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
        b = (noise - 1) * jnp.asarray(_ALPHA * a, input.dtype) + jnp.asarray(
            _ALPHA * a * p, input.dtype
        )
        out = input * (noise * jnp.asarray(a, input.dtype)) + b
    return out


def dropout(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Like ``torch.nn.functional.dropout``; ``inplace`` is accepted and ignored (JAX arrays are
    immutable).

    **Arguments:**

    - `input`: any array.
    - `p`: drop probability in ``[0, 1]`` (``ValueError`` otherwise, as torch).
    - `training`: ``False`` returns ``input`` unchanged.
    - `key`: a JAX key; ``None`` draws one from fparam's key stream.

    **Returns:**

    An array shaped and typed like ``input``.
    """
    _check_p(p)
    return _dropout(input, p, training, feature=False, alpha=False, key=key)


def alpha_dropout(
    input: jax.Array,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Alpha dropout (for SELU networks), like ``torch.nn.functional.alpha_dropout``.

    A dropped element becomes ``-alpha' = -1.7581...`` before the affine correction ``a * x + b``
    that keeps zero mean and unit variance: with ``a = 1 / sqrt((alpha'^2 p + 1)(1 - p))``,
    kept values are ``a * x + alpha' a p`` and dropped ones ``-alpha' a (1 - p)``. Note torch's
    default ``training=False`` for this function.

    **Arguments:** as :func:`dropout`.

    **Returns:** an array shaped and typed like ``input``.
    """
    _check_p(p)
    return _dropout(input, p, training, feature=False, alpha=True, key=key)


def feature_alpha_dropout(
    input: jax.Array,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """:func:`alpha_dropout` with one draw per ``(sample, channel)``, like torch's
    ``feature_alpha_dropout`` (input of at least 2 dimensions; ``training=False`` by default).
    """
    _check_p(p)
    return _dropout(input, p, training, feature=True, alpha=True, key=key)


def dropout1d(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Channel-wise dropout for ``(N, C, L)`` or unbatched ``(C, L)`` inputs (torch's rules).

    Each whole channel is zeroed with probability ``p``; kept channels are scaled by
    ``1 / (1 - p)``. Any other rank raises torch's ``RuntimeError``.

    **Arguments:** as :func:`dropout`. **Returns:** an array shaped and typed like ``input``.
    """
    _check_p(p)
    input = jnp.asarray(input)
    if input.ndim not in (2, 3):
        raise RuntimeError(_DROPOUT1D_RANK.format(ndim=input.ndim))
    if input.ndim == 2:
        return _dropout(input[None], p, training, feature=True, alpha=False, key=key)[0]
    return _dropout(input, p, training, feature=True, alpha=False, key=key)


def dropout2d(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Channel-wise dropout for ``(N, C, H, W)`` inputs, like ``torch.nn.functional.dropout2d``.

    As in torch, a 3-D input is read as ``(N, C, L)`` (with torch's warning), and other ranks
    warn that they are deprecated (a 1-D input then fails: feature dropout needs two dimensions).

    **Arguments:** as :func:`dropout`. **Returns:** an array shaped and typed like ``input``.
    """
    _check_p(p)
    input = jnp.asarray(input)
    if input.ndim not in (3, 4):
        warnings.warn(_DROPOUT2D_RANK.format(ndim=input.ndim), stacklevel=2)
    if input.ndim == 3:
        warnings.warn(_DROPOUT2D_3D, stacklevel=2)
    return _dropout(input, p, training, feature=True, alpha=False, key=key)


def dropout3d(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Channel-wise dropout for ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` inputs.

    Like ``torch.nn.functional.dropout3d``: other ranks warn that they are deprecated, and any
    input that is not 5-D is treated as unbatched (a batch axis is added, then removed).

    **Arguments:** as :func:`dropout`. **Returns:** an array shaped and typed like ``input``.
    """
    _check_p(p)
    input = jnp.asarray(input)
    if input.ndim not in (4, 5):
        warnings.warn(_DROPOUT3D_RANK.format(ndim=input.ndim), stacklevel=2)
    if input.ndim != 5:
        return _dropout(input[None], p, training, feature=True, alpha=False, key=key)[0]
    return _dropout(input, p, training, feature=True, alpha=False, key=key)
