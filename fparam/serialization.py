"""Checkpoints: ``fparam.save`` / ``fparam.load`` in the safetensors format, never pickle.

A module ``state_dict()`` is stored key for key, so the file is what torch's
``safetensors.torch.save_file(model.state_dict(), path)`` writes and loads into torch with
``safetensors.torch.load_file`` + ``load_state_dict``; a file torch wrote loads here the same
way. Nested state (an optimizer's ``state_dict()``: ``{'state': {0: {...}}, 'param_groups':
[...]}``) is flattened to dotted keys, and its skeleton (integer keys, lists, numbers, ``None``)
is kept as JSON in the file's metadata, so ``load`` rebuilds the same structure.

Writing is atomic: the file is written beside its destination, flushed to disk and renamed
over it, so a crash never leaves a half-written checkpoint under the real name. The file gets
the permissions a plain ``open(path, "wb")`` would give it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._module import _torch_to_numpy

__all__ = ["CheckpointError", "load", "save"]

_STRUCTURE_KEY = "fparam.structure"
_ORDER_KEY = "fparam.order"
_FORMAT_KEY = "format"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or written as asked."""


def _state_of(obj: Any) -> Any:
    """Modules and optimizers are saved through their ``state_dict()``."""
    from fparam._module import Module
    from fparam.optim.optimizer import Optimizer

    if isinstance(obj, Module):
        return obj.state_dict()
    if isinstance(obj, Optimizer):
        return obj.state_dict()  # type: ignore[attr-defined]
    return obj


def _is_tensor(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray)) or (
        hasattr(value, "detach") and hasattr(value, "shape")
    )


def _to_numpy(value: Any, key: str, path: Path) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        value = _torch_to_numpy(value)
    if isinstance(value, jax.core.Tracer):
        raise CheckpointError(f"{path}: cannot save '{key}': it is a traced value (inside jit)")
    array = np.asarray(value)
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array 1-d)
        array = np.ascontiguousarray(array)
    if array.dtype == object:
        raise CheckpointError(f"{path}: cannot save '{key}': dtype object is not an array")
    return array


def _split(obj: Any, prefix: str, tensors: dict[str, np.ndarray], path: Path) -> Any:
    """Move arrays out of ``obj`` into ``tensors``; return the JSON skeleton of what is left."""
    if _is_tensor(obj):
        key = prefix or "tensor"
        if key in tensors:
            raise CheckpointError(f"{path}: two entries flatten to the same key '{key}'")
        tensors[key] = _to_numpy(obj, key, path)
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(
                    f"{path}: cannot save key {k!r} of type {type(k).__name__}: keys must be "
                    "str or int"
                )
            child = f"{prefix}.{k}" if prefix else str(k)
            items.append([k, _split(v, child, tensors, path)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        return {
            "__list__" if isinstance(obj, list) else "__tuple__": [
                _split(v, f"{prefix}.{i}" if prefix else str(i), tensors, path)
                for i, v in enumerate(obj)
            ]
        }
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"__value__": obj}
    raise CheckpointError(
        f"{path}: cannot save '{prefix}' of type {type(obj).__name__}: checkpoints hold arrays, "
        "numbers, strings, None, and dicts/lists of them"
    )


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a state dict (or a Module / optimizer, through its ``state_dict()``) to ``path``.

    Arguments:
        obj: a module ``state_dict()`` (flat: its keys are the file's keys, as torch's
            ``safetensors.torch.save_file`` would write them), an optimizer ``state_dict()``,
            any dict/list nesting of arrays and plain values, or a Module / optimizer.
        path: destination; written atomically (temporary file, fsync, rename).

    Raises:
        CheckpointError: a value that cannot be stored, or keys that collide.
    """
    path = Path(path)
    obj = _state_of(obj)
    tensors: dict[str, np.ndarray] = {}
    flat_state = isinstance(obj, Mapping) and all(
        isinstance(k, str) and _is_tensor(v) for k, v in obj.items()
    )
    metadata = {_FORMAT_KEY: "np"}
    if flat_state:
        for key, value in obj.items():
            tensors[key] = _to_numpy(value, key, path)
        metadata[_ORDER_KEY] = json.dumps(list(tensors))
    else:
        skeleton = _split(obj, "", tensors, path)
        metadata[_STRUCTURE_KEY] = json.dumps(skeleton)

    from safetensors import SafetensorError
    from safetensors.numpy import save as serialize

    try:
        data = serialize(tensors, metadata=metadata)
    except SafetensorError as error:  # e.g. a dtype safetensors has no code for (strings)
        raise CheckpointError(f"{path}: cannot save: {error}") from error
    fd, tmp_name = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path``: ``(descriptor, name)``.

    Created with mode 0o666 less the umask, as ``open`` creates files (``tempfile.mkstemp``
    would make the checkpoint readable by its owner only).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # pragma: no cover - a 64-bit random name collided
            continue


def _to_jax(array: np.ndarray, key: str, path: Path) -> jax.Array:
    """``jnp.asarray``, refusing the silent wrap-around of 64-bit integers JAX cannot hold."""
    result = jnp.asarray(array)
    if (
        result.dtype != array.dtype
        and array.dtype.kind in "iu"
        and not np.array_equal(np.asarray(result), array)
    ):
        raise CheckpointError(
            f"{path}: '{key}' holds {array.dtype} values that do not fit {result.dtype}; "
            'enable 64-bit types (jax.config.update("jax_enable_x64", True)) to load it'
        )
    return result


def _rebuild(skeleton: Any, tensors: Mapping[str, Any], path: Path) -> Any:
    if not isinstance(skeleton, dict) or len(skeleton) != 1:
        raise CheckpointError(f"{path}: corrupt structure metadata")
    ((kind, body),) = skeleton.items()
    if kind == "__tensor__":
        if body not in tensors:
            raise CheckpointError(f"{path}: structure names tensor '{body}', which the file lacks")
        return tensors[body]
    if kind == "__dict__":
        return {k: _rebuild(v, tensors, path) for k, v in body}
    if kind == "__list__":
        return [_rebuild(v, tensors, path) for v in body]
    if kind == "__tuple__":
        return tuple(_rebuild(v, tensors, path) for v in body)
    if kind == "__value__":
        return body
    raise CheckpointError(f"{path}: corrupt structure metadata (unknown entry {kind!r})")


def load(path: str | os.PathLike[str]) -> Any:
    """Read what :func:`save` wrote (or any safetensors file, e.g. one torch wrote).

    Returns:
        For a flat file, an ``OrderedDict`` of ``jax.Array`` (in the saved order when fparam
        wrote it, else sorted by key), ready for
        ``module.load_state_dict``; for a nested one, the saved structure (dicts, lists, numbers)
        with ``jax.Array`` leaves, ready for ``optimizer.load_state_dict``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, corrupt or not a safetensors file. Nothing is
            unpickled, ever.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            keys = list(handle.keys())
            arrays = {key: handle.get_tensor(key) for key in keys}
    except Exception as error:  # safetensors raises its own error types for bad files
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({type(error).__name__}: {error})"
        ) from error
    order = keys
    if _ORDER_KEY in metadata:
        try:
            saved_order = json.loads(metadata[_ORDER_KEY])
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: corrupt key-order metadata ({error})") from error
        if sorted(saved_order) == sorted(keys):
            order = saved_order
    tensors = OrderedDict((key, _to_jax(arrays[key], key, path)) for key in order)
    structure = metadata.get(_STRUCTURE_KEY)
    if structure is None:
        return tensors
    try:
        skeleton = json.loads(structure)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: corrupt structure metadata ({error})") from error
    try:
        return _rebuild(skeleton, tensors, path)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as error:  # a malformed skeleton (unpacking, hashing)
        raise CheckpointError(f"{path}: corrupt structure metadata ({error})") from error
