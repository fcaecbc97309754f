"""Casting checkpoint values to the dtype they will live in, without silent damage.

One policy for every path that narrows a value (``fparam.load`` when JAX runs without 64-bit
types, ``Module.load_state_dict`` casting to a parameter's dtype): integers must fit, and a float
must not turn from finite into infinite, or from nonzero into zero. Ordinary rounding is fine:
it is what a cast is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_narrowing"]


def check_narrowing(source: Any, target_dtype: Any, what: str) -> str | None:
    """Describe the damage casting ``source`` to ``target_dtype`` would do, or None if none.

    Arguments:
        source: the values as stored: a NumPy or JAX array (bfloat16 and other ml_dtypes
            included); a device array is read only when the cast could damage it.
        target_dtype: the dtype they are about to be cast to.
        what: how the message names the values (a key, a file and key).

    Returns:
        ``None`` when every value survives (integers in range; finite floats stay finite and
        nonzero floats stay nonzero; NaN and infinities are kept as they are), else a sentence
        naming ``what``, both dtypes and the first offending value.
    """
    target = np.dtype(target_dtype)
    if np.dtype(source.dtype) == target or source.size == 0:
        return None
    kind, target_kind = np.dtype(source.dtype).kind, target.kind
    if not (kind in "iu" and target_kind in "iu") and not (kind == "f" and target_kind in "fc"):
        return None
    source = np.asarray(source)  # only now: a device array is copied to the host just here
    if kind in "iu" and target_kind in "iu":
        info = np.iinfo(target)
        bad = (source < info.min) | (source > info.max)
    elif kind == "f" and target_kind in "fc" and source.dtype.itemsize > target.itemsize:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            cast = source.astype(target)
        bad = (np.isfinite(source) & ~np.isfinite(cast)) | ((source != 0) & (cast == 0))
    else:
        return None
    if not bad.any():
        return None
    first = source[bad].flat[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        becomes = np.asarray(first).astype(target).item()
    return (
        f"{what} holds {source.dtype} values that {target} cannot hold (e.g. {first.item()!r}, "
        f"which would become {becomes!r})"
    )
