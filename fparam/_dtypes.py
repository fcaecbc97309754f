"""Casts that lose values: one policy for every place fparam narrows what a user gave it.

A checkpoint value can reach a dtype narrower than the one it was saved in: ``fparam.load``
turns a float64 / int64 array into JAX's 32-bit default when 64-bit types are off, and
``Module.load_state_dict`` casts each value to the dtype of the parameter it replaces. Rounding
is expected there (torch's ``copy_`` rounds too); a value that changes *class* is not: a finite
float that becomes ``inf``, a nonzero one that becomes ``0``, an integer that wraps around. Those
are what :func:`check_narrowing` reports, so every caller refuses the same things in the same
words.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["check_narrowing"]


def _kind(dtype: np.dtype) -> str:
    """numpy's kind letter, also for ml_dtypes' floats (bfloat16, float8: numpy says ``'V'``)."""
    if dtype.kind in "biufc":
        return dtype.kind
    if jnp.issubdtype(dtype, jnp.floating):
        return "f"
    if jnp.issubdtype(dtype, jnp.integer):  # ml_dtypes' int4 and friends
        return "i" if jnp.issubdtype(dtype, jnp.signedinteger) else "u"
    return "?"


def _int_bounds(dtype: np.dtype) -> tuple[int, int]:
    info = jnp.iinfo(dtype)
    return int(info.min), int(info.max)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # Overflow and invalid casts are what the caller is looking for: no warning for them.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return values.astype(dtype)


def _float_losses(source: np.ndarray, cast: np.ndarray) -> np.ndarray:
    """Where a real value changed class: finite -> inf/NaN, nonzero -> zero."""
    wide_source = _cast(source, np.dtype(np.float64)) if _kind(source.dtype) == "f" else source
    wide_cast = _cast(cast, np.dtype(np.float64))
    with np.errstate(all="ignore"):
        overflow = np.isfinite(wide_source) & ~np.isfinite(wide_cast)
        underflow = (wide_source != 0) & (wide_cast == 0)
    return np.asarray(overflow | underflow)


def _describe(
    what: str,
    source: np.ndarray,
    target: np.ndarray | None,
    dtype: np.dtype,
    bad: np.ndarray,
    note: str = "",
) -> str:
    flat = np.flatnonzero(bad)
    index = int(flat[0])
    value = source.reshape(-1)[index].item()
    example = f"{value!r}"
    if target is not None:
        example += f" would become {target.reshape(-1)[index].item()!r}"
    example += note
    return (
        f"{what} holds {source.dtype} values that {dtype} cannot hold: {example} "
        f"({flat.size} of {source.size} values)"
    )


def check_narrowing(source: Any, target_dtype: Any, what: str) -> str | None:
    """Say whether casting ``source`` to ``target_dtype`` would change a value beyond rounding.

    Arguments:
        source: the values as given (a NumPy array, or anything ``np.asarray`` reads).
        target_dtype: the dtype they are about to be cast to (NumPy, JAX or ml_dtypes dtype).
        what: how the caller names the values in an error, e.g. ``"'fc.weight'"``; it starts
            the returned description.

    Returns:
        ``None`` when every value survives the cast: equal dtypes, a widening cast, an empty
        array, or a narrowing that only rounds. Otherwise one line for an error message, e.g.
        ``"'w' holds float64 values that float32 cannot hold: 1e+300 would become inf (1 of 4
        values)"``; the caller adds where the values came from and what to do.

    Reported (the value would change class, silently):
        * to a float (float16, bfloat16, float32, float8...): a finite value that becomes
          ``inf`` or NaN (overflow), a nonzero value that becomes ``0`` (underflow). ``NaN``
          stays ``NaN`` and ``inf`` stays ``inf``: not reported.
        * to an integer: a value outside the target's range (it would wrap around), and from a
          float, ``NaN`` or ``inf``.
        * to ``bool``: a value other than 0 and 1.
        * complex to real: a nonzero imaginary part (it would be dropped). Complex to complex
          checks the real and imaginary parts as floats.
        * a source that is not numbers at all (strings, objects): always reported.

    Not reported (what torch's ``Tensor.copy_`` also does without a word): rounding to the
    nearest representable value (``0.1`` in float32, a large int64 in float32) and the
    truncation of a float's fractional part on the way to an integer.

    Cost: nothing when the dtypes are equal; otherwise one cast and a few comparisons over
    ``source`` on the host.
    """
    dtype = np.dtype(target_dtype)
    given = getattr(source, "dtype", None)
    if given is not None and np.dtype(given) == dtype:
        return None  # before np.asarray: a device array is not copied to the host for nothing
    source = np.asarray(source)
    if source.dtype == dtype or source.size == 0:
        return None
    src_kind, dst_kind = _kind(source.dtype), _kind(dtype)
    if src_kind == "?":
        return f"{what} holds {source.dtype} values, not numbers"
    if dst_kind == "?":
        return f"{what} cannot be cast to {dtype}, which is not a numeric dtype"

    if src_kind == "c" and dst_kind != "c":
        imaginary = np.asarray(source.imag != 0)
        if imaginary.any():
            return _describe(what, source, None, dtype, imaginary, " has a nonzero imaginary part")
        source = source.real
        src_kind = _kind(source.dtype)

    if dst_kind == "b":
        with np.errstate(all="ignore"):
            bad = np.asarray((source != 0) & (source != 1))
        return _describe(what, source, None, dtype, bad) if bad.any() else None

    if dst_kind in "iu":
        low, high = _int_bounds(dtype)
        if src_kind == "b":
            return None
        if src_kind in "iu":
            src_low, src_high = _int_bounds(source.dtype)
            if int(source.min()) >= low and int(source.max()) <= high:
                return None
            # Bounds clipped to the source's range, so the comparison stays in its dtype.
            lo = np.asarray(max(low, src_low), source.dtype)
            hi = np.asarray(min(high, src_high), source.dtype)
            bad = np.asarray((source < lo) | (source > hi))
            return _describe(what, source, _cast(source, dtype), dtype, bad)
        wide = _cast(source, np.dtype(np.float64))
        with np.errstate(all="ignore"):
            whole = np.trunc(wide)
            # high + 1 is a power of two, exact in float64 (high itself may not be).
            bad = np.asarray(~((whole >= low) & (whole < float(high + 1))))
        return _describe(what, source, _cast(source, dtype), dtype, bad) if bad.any() else None

    if dst_kind == "c":
        part = np.dtype(jnp.finfo(dtype).dtype)
        if src_kind == "c":
            bad = _float_losses(source.real, _cast(source.real, part)) | _float_losses(
                source.imag, _cast(source.imag, part)
            )
        else:
            bad = _float_losses(source, _cast(source, part))
        return _describe(what, source, _cast(source, dtype), dtype, bad) if bad.any() else None

    cast = _cast(source, dtype)  # to a real float
    bad = _float_losses(source, cast)
    return _describe(what, source, cast, dtype, bad) if bad.any() else None
