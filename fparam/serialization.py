"""Checkpoints: ``fparam.save`` / ``fparam.load`` in the safetensors format, never pickle.

**Layout.** A safetensors file: 8 bytes (little-endian header length), a JSON header (one entry
per tensor, ``{"dtype", "shape", "data_offsets"}``, and ``"__metadata__"``, a str -> str map)
padded with spaces to a multiple of 8 bytes, then the raw little-endian tensor data. A module
``state_dict()`` is stored key for key, so the file holds what torch's
``safetensors.torch.save_file(model.state_dict(), path)`` would write and loads into torch with
``safetensors.torch.load_file`` + ``load_state_dict``; a file torch wrote loads here the same
way. fparam writes the bytes itself, deterministically: tensors sorted by item size (largest
first, so each is aligned to its item size) then by key, metadata keys sorted, so two saves of
the same state write the same bytes.

**Metadata keys** (all optional on load; files from other writers have none of them):

- ``format``: ``"np"`` (safetensors' convention).
- ``fparam.order``: a flat state's key order (JSON list), so ``load`` returns the keys in the
  order ``state_dict()`` gave them.
- ``fparam.structure``: nested state (an optimizer's ``state_dict()``: ``{'state': {0: {...}},
  'param_groups': [...]}``) is flattened to dotted tensor keys, and its skeleton (integer keys,
  lists, tuples, numbers, ``None``) is kept as JSON here, so ``load`` rebuilds the same
  structure. Nesting is limited to ``MAX_DEPTH`` levels on save and on load.
- ``fparam.crc32``: checksums, ``{"tensors": {key: crc}, "metadata": crc}``. Each tensor's
  CRC-32 covers its key, its dtype code, its shape and its raw bytes, so a flipped dtype in the
  header (``F32`` -> ``I32``: same size, garbage values) is caught, not only damaged data; the
  ``metadata`` one covers every other metadata entry. CRC-32 rather than a cryptographic hash:
  it guards against accidents (bit rot, a bad copy, a hand edit), not an adversary, and zlib's
  runs at ~1.9 GB/s here against ~0.5 GB/s for blake2b, so verifying costs little next to
  reading the file. A mismatch raises :class:`CheckpointError` naming the file and the key.
  A file without this entry (torch's, an older fparam's) loads unchecked; to edit a file's
  metadata by hand, drop the entry (an edit that keeps it is refused as corruption).

**What save refuses** (before the destination is touched, so a good checkpoint is never
replaced by a file ``load`` cannot read): dtypes outside ``SUPPORTED_DTYPES`` (float8, int4,
complex128, strings, objects), the reserved tensor key ``__metadata__``, keys that are not
valid UTF-8, keys that are not ``str`` (or ``int`` inside nested state), two entries that
flatten to one key, values that are not arrays, numbers, strings, ``None`` or containers of
them, and nesting deeper than ``MAX_DEPTH``.

**64-bit values.** The file keeps what it was given: float64 and int64 are stored as such
(torch reads them exactly). JAX holds them only with 64-bit types enabled; otherwise ``load``
narrows them to 32 bits, which is silent only while every value survives
(:func:`fparam._dtypes.check_narrowing`: rounding is fine; an int out of range, a finite float
that would become ``inf``, a nonzero one that would become ``0`` raise ``CheckpointError``
naming the file and the key, and say to ``jax.config.update("jax_enable_x64", True)``).

**Writing** is atomic: the data goes to a temporary file in the destination's directory,
is flushed to disk and renamed over the destination, so a crash never leaves a half-written
checkpoint under the real name. A destination that is a symbolic link (``latest.safetensors ->
ckpt-7.safetensors``) is written *through*: the link's target is replaced (atomically, the
temporary beside the target) and the link stays. An existing destination keeps its permission
bits (a ``0600`` checkpoint stays ``0600``); a new one gets what ``open(path, "wb")`` would give
(``0o666`` less the umask). Temporary names have a fixed length (``.fparam-<12 hex: the
destination's name>-<6 hex: host>-<pid>-<8 hex>.tmp``), so any legal file name can be a
destination. A save killed mid-write (``SIGKILL``, power loss) leaves its temporary behind; the
next save of the same destination removes those whose writer process (same host, by pid) is
gone. Temporaries of live writers, of other hosts and of other destinations are left alone
(a dead writer whose pid was reused looks alive: its temporary stays until the pid is free;
on Windows, where a pid cannot be probed safely, none is removed).

**Not regular files.** A directory, named pipe, socket or device as the path raises
``CheckpointError`` on load and on save; a named pipe is never opened (``stat`` first, then
``O_NONBLOCK`` and ``fstat``), so it cannot hang the reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._dtypes import check_narrowing
from fparam._module import _torch_to_numpy

__all__ = ["MAX_DEPTH", "SUPPORTED_DTYPES", "CheckpointError", "load", "save"]

_STRUCTURE_KEY = "fparam.structure"
_ORDER_KEY = "fparam.order"
_CHECKSUM_KEY = "fparam.crc32"
_FORMAT_KEY = "format"
_RESERVED_KEY = "__metadata__"  # the safetensors header's own entry

#: How deep nested state may go (dicts/lists inside each other). Real state dicts use 3-4.
MAX_DEPTH = 64

# safetensors' largest accepted header (100 MB); anything claiming more is not a checkpoint.
_MAX_HEADER = 100_000_000

#: The dtypes a checkpoint may hold: those safetensors' NumPy reader and JAX both handle,
#: with their codes in the file.
SUPPORTED_DTYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.int64): "I64",
    np.dtype(np.float16): "F16",
    np.dtype(jnp.bfloat16): "BF16",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.complex64): "C64",
}
_CODES = {code: dtype for dtype, code in SUPPORTED_DTYPES.items()}

_TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\.fparam-([0-9a-f]{12})-([0-9a-f]{6})-([0-9]+)-[0-9a-f]{8}\.tmp")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or written as asked."""


# --------------------------------------------------------------------------- what is saved


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


def _check_key(key: str, path: Path) -> None:
    if key == _RESERVED_KEY:
        raise CheckpointError(
            f"{path}: cannot save a tensor under the key '{_RESERVED_KEY}': the safetensors "
            "format reserves it for the file's metadata, so the file could not be read back"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CheckpointError(
            f"{path}: cannot save key {key!r}: it is not valid UTF-8 ({error.reason})"
        ) from None


def _to_numpy(value: Any, key: str, path: Path) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        value = _torch_to_numpy(value)
    if isinstance(value, jax.core.Tracer):
        raise CheckpointError(f"{path}: cannot save '{key}': it is a traced value (inside jit)")
    array = np.asarray(value)
    if array.dtype == object:
        raise CheckpointError(f"{path}: cannot save '{key}': dtype object is not an array")
    if array.dtype.byteorder == ">":  # the format is little-endian
        array = array.astype(array.dtype.newbyteorder("<"))
    if array.dtype not in SUPPORTED_DTYPES:
        supported = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise CheckpointError(
            f"{path}: cannot save '{key}' of dtype {array.dtype}: a checkpoint holds {supported} "
            f"(cast it first, e.g. to float32)"
        )
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array 1-d)
        array = np.ascontiguousarray(array)
    return array


def _split(
    obj: Any,
    prefix: str,
    tensors: dict[str, Any],
    path: Path,
    depth: int,
    convert: Any = None,
) -> Any:
    """Move arrays out of ``obj`` into ``tensors``; return the JSON skeleton of what is left.

    ``convert(value, key, path)`` makes the stored value (default: a NumPy array; the sharded
    checkpoint keeps ``jax.Array`` leaves as they are, to write their pieces).
    """
    convert = _to_numpy if convert is None else convert
    if depth > MAX_DEPTH:
        raise CheckpointError(
            f"{path}: cannot save '{prefix}': nested deeper than {MAX_DEPTH} levels "
            "(a container that holds itself?)"
        )
    if _is_tensor(obj):
        key = prefix or "tensor"
        _check_key(key, path)
        if key in tensors:
            raise CheckpointError(f"{path}: two entries flatten to the same key '{key}'")
        tensors[key] = convert(obj, key, path)
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
            items.append([k, _split(v, child, tensors, path, depth + 1, convert)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        return {
            "__list__" if isinstance(obj, list) else "__tuple__": [
                _split(v, f"{prefix}.{i}" if prefix else str(i), tensors, path, depth + 1, convert)
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


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """The raw bytes of a C-contiguous array, as a uint8 view (no copy; any dtype, 0-d too)."""
    return array.reshape(-1).view(np.uint8)


def _crc(key: str, code: str, shape: list[int], data: Any) -> str:
    descriptor = json.dumps([key, code, shape], ensure_ascii=False).encode("utf-8")
    return f"{zlib.crc32(data, zlib.crc32(descriptor)):08x}"


def _metadata_crc(metadata: Mapping[str, str]) -> str:
    others = sorted((k, v) for k, v in metadata.items() if k != _CHECKSUM_KEY)
    return f"{zlib.crc32(json.dumps(others, ensure_ascii=False).encode('utf-8')):08x}"


def _dumps(value: Any, path: Path) -> str:
    try:
        return json.dumps(value, allow_nan=True)
    except (ValueError, RecursionError) as error:  # e.g. an int of more than 4300 digits
        raise CheckpointError(f"{path}: cannot save the structure's values ({error})") from None


def _prepare(obj: Any, path: Path) -> tuple[bytes, list[tuple[str, np.ndarray]]]:
    """Validate ``obj`` and lay out the file: ``(header bytes, tensors in data order)``."""
    tensors: dict[str, np.ndarray] = {}
    metadata = {_FORMAT_KEY: "np"}
    flat_state = isinstance(obj, Mapping) and all(
        isinstance(k, str) and _is_tensor(v) for k, v in obj.items()
    )
    if flat_state:
        for key, value in obj.items():
            _check_key(key, path)
            tensors[key] = _to_numpy(value, key, path)
        metadata[_ORDER_KEY] = _dumps(list(tensors), path)
    else:
        try:
            skeleton = _split(obj, "", tensors, path, 0)
        except RecursionError:  # pragma: no cover - MAX_DEPTH is far below the recursion limit
            raise CheckpointError(f"{path}: cannot save: nested too deeply") from None
        metadata[_STRUCTURE_KEY] = _dumps(skeleton, path)

    ordered = sorted(tensors.items(), key=lambda item: (-item[1].dtype.itemsize, item[0]))
    entries: dict[str, Any] = {}
    checksums: dict[str, str] = {}
    offset = 0
    for key, array in ordered:
        code, shape = SUPPORTED_DTYPES[array.dtype], list(array.shape)
        entries[key] = {
            "dtype": code,
            "shape": shape,
            "data_offsets": [offset, offset + array.nbytes],
        }
        checksums[key] = _crc(key, code, shape, _bytes_of(array))
        offset += array.nbytes
    metadata[_CHECKSUM_KEY] = json.dumps(
        {"tensors": dict(sorted(checksums.items())), "metadata": _metadata_crc(metadata)}
    )
    header_dict = {_RESERVED_KEY: dict(sorted(metadata.items())), **entries}
    text = json.dumps(header_dict, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    header = len(text).to_bytes(8, "little") + text

    # Read the header back as load will: what load would refuse is refused now, before the
    # destination is touched.
    parsed = _parse_header(text, path, offset)
    _verify_metadata(parsed, path)
    if _STRUCTURE_KEY in metadata:
        skeleton = _loads(metadata[_STRUCTURE_KEY], path, "structure")
        _rebuild_checked(skeleton, dict.fromkeys(tensors), path)
    return header, ordered


# --------------------------------------------------------------------------- files


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _not_a_file(path: Path, mode: int, action: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: cannot {action} a checkpoint here: it is {_file_kind(mode)}, not a regular file"
    )


def _destination(path: Path) -> tuple[Path, int | None]:
    """Where the bytes go (a symlink's final target) and the mode to keep (None: a new file)."""
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {path}: no directory {target.parent}"
            ) from None
        return target, None
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_file(path, info.st_mode, "save")
    return target, stat.S_IMODE(info.st_mode)


def _host_tag() -> str:
    return hashlib.blake2b(socket.gethostname().encode("utf-8"), digest_size=3).hexdigest()


def _name_tag(target: Path) -> str:
    return hashlib.blake2b(os.fsencode(target.name), digest_size=6).hexdigest()


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) terminates on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporaries a killed save of ``target`` left (same host, writer gone)."""
    prefix = f".fparam-{_name_tag(target)}-"
    host = _host_tag()
    try:
        names = [e.name for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:  # pragma: no cover - an unreadable directory: nothing to clean
        return
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match is None or match.group(2) != host or _pid_alive(int(match.group(3))):
            continue
        with contextlib.suppress(OSError):  # another save may have removed it first
            (target.parent / name).unlink()


def _create_temp(target: Path, mode: int | None) -> tuple[int, Path]:
    """A new empty file beside ``target``: ``(descriptor, name)``.

    For a new destination it is created with mode 0o666 less the umask, as ``open`` creates
    files (``tempfile.mkstemp`` would make the checkpoint readable by its owner only); when
    replacing a file it starts owner-only and gets the old file's mode before the rename.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    stem = f".fparam-{_name_tag(target)}-{_host_tag()}-{os.getpid()}-"
    while True:
        name = target.with_name(f"{stem}{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            return os.open(name, flags, 0o666 if mode is None else 0o600), name
        except FileExistsError:  # pragma: no cover - a 32-bit random name collided
            continue
        except OSError as error:  # e.g. a read-only directory: name the destination
            raise type(error)(
                error.errno, f"cannot save to {target}: {error.strerror}", str(name)
            ) from error


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


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a state dict (or a Module / optimizer, through its ``state_dict()``) to ``path``.

    Arguments:
        obj: a module ``state_dict()`` (flat: its keys are the file's keys, as torch's
            ``safetensors.torch.save_file`` would write them), an optimizer ``state_dict()``,
            any dict/list nesting of arrays and plain values, or a Module / optimizer.
        path: destination; written atomically (temporary file, fsync, rename). A symbolic
            link is written through (its target is replaced); an existing file keeps its
            permission bits.

    In a multi-process job (``jax.distributed.initialize``) every process calls ``save`` and
    only process 0 writes (torch's "save on rank 0"; its values are the ones stored); the
    others return once the file is written. Arrays must be held in full by every process
    (replicated, or local): one sharded across processes is refused, never gathered; save
    it with :func:`fparam.distributed.save_sharded` (docs/checkpoints-sharded.md).

    Raises:
        CheckpointError: a value that cannot be stored or read back (see the module
            docstring), keys that collide, or a destination that is a directory, pipe or
            device. Raised before the destination is touched. In a multi-process job: an
            array sharded across processes, or process 0 failed to write.
        FileNotFoundError: the destination's directory does not exist.
    """
    path = Path(path)
    if jax.process_count() > 1:
        # One writer per file: process 0 writes what every process holds (see the function).
        from fparam.distributed.checkpoint import _save_from_process_zero

        _save_from_process_zero(_state_of(obj), path)
        return
    _save_file(_state_of(obj), path)


def _save_file(state: Any, path: Path) -> None:
    """Validate ``state`` and write it to ``path`` from this process, whatever the others do."""
    header, ordered = _prepare(state, path)
    _write_atomic(path, [header, *(_bytes_of(array).data for _, array in ordered)])


def _write_atomic(path: Path, chunks: Any) -> None:
    """Write ``chunks`` (bytes-like) to ``path`` atomically: temporary, fsync, rename."""
    target, mode = _destination(path)
    _remove_stale_temporaries(target)
    fd, tmp_name = _create_temp(target, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


# --------------------------------------------------------------------------- reading


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(Exception):
    pass


def _loads(text: str | bytes, path: Path, what: str) -> Any:
    """``json.loads`` whose every failure is a CheckpointError naming the file."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as error:
        raise CheckpointError(
            f"{path}: corrupt {what}: key {error.args[0]!r} appears twice"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt {what}: nested too deeply") from None
    except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise CheckpointError(f"{path}: corrupt {what} ({error})") from None


def _parse_header(text: bytes, path: Path, data_size: int) -> dict[str, Any]:
    """The header's JSON, checked for what load relies on (types, dtypes, bounds)."""
    header = _loads(text, path, "header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt header: not a JSON object")
    metadata = header.get(_RESERVED_KEY, {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: corrupt header: '{_RESERVED_KEY}' is not a str -> str map")
    for key, entry in header.items():
        if key == _RESERVED_KEY:
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(type(n) is int and n >= 0 for n in entry["shape"])
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(type(n) is int and 0 <= n <= data_size for n in entry["data_offsets"])
        ):
            raise CheckpointError(f"{path}: corrupt header entry for tensor '{key}'")
        if entry["dtype"] not in _CODES:
            raise CheckpointError(
                f"{path}: tensor '{key}' has dtype {entry['dtype']}, which fparam cannot load "
                f"(it reads {', '.join(_CODES)})"
            )
    return header


def _verify_metadata(header: Mapping[str, Any], path: Path) -> dict[str, str] | None:
    """The per-tensor checksums (None: the file has none), after checking the metadata's."""
    metadata = header.get(_RESERVED_KEY, {})
    if _CHECKSUM_KEY not in metadata:
        return None
    checksum = _loads(metadata[_CHECKSUM_KEY], path, "checksum metadata")
    if not (
        isinstance(checksum, dict)
        and isinstance(checksum.get("metadata"), str)
        and isinstance(checksum.get("tensors"), dict)
        and all(isinstance(v, str) for v in checksum["tensors"].values())
    ):
        raise CheckpointError(f"{path}: corrupt checksum metadata")
    if checksum["metadata"] != _metadata_crc(metadata):
        raise CheckpointError(
            f"{path}: corrupt checkpoint: the metadata does not match its checksum (the file "
            "was damaged or edited after it was written)"
        )
    tensors: dict[str, str] = checksum["tensors"]
    stored = set(header) - {_RESERVED_KEY}
    if set(tensors) != stored:
        missing = sorted(stored ^ set(tensors))
        raise CheckpointError(
            f"{path}: corrupt checkpoint: tensors {missing} do not match the checksummed list"
        )
    return tensors


def _open_regular(path: Path) -> int:
    """A read descriptor on ``path``, refusing anything that is not a regular file.

    ``stat`` first, so a named pipe is never opened; ``O_NONBLOCK`` and ``fstat`` after, so
    one swapped in between cannot block either.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_file(path, info.st_mode, "load")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # pragma: no cover - replaced between stat and open
        os.close(fd)
        raise _not_a_file(path, mode, "load")
    return fd


def _read_header(path: Path) -> dict[str, Any]:
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors checkpoint ({size} bytes)")
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, _MAX_HEADER):
            raise CheckpointError(
                f"{path}: not a safetensors checkpoint (header length {length}, file size {size})"
            )
        text = handle.read(length)
    return _parse_header(text, path, size - 8 - length)


def _narrowed(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``array`` in the dtype JAX holds it in, refusing a narrowing to 32 bits that would
    change values."""
    target = jax.dtypes.canonicalize_dtype(array.dtype)
    problem = check_narrowing(array, target, f"'{key}'")
    if problem is not None:
        raise CheckpointError(
            f"{path}: {problem}; enable 64-bit types "
            '(jax.config.update("jax_enable_x64", True)) to load it exactly'
        )
    return array if array.dtype == target else array.astype(target)


def _to_jax(array: np.ndarray, key: str, path: Path) -> jax.Array:
    """``jnp.asarray``, refusing a narrowing to 32 bits that would change values."""
    _narrowed(array, key, path)
    return jnp.asarray(array)


def _rebuild(node: Any, tensors: Mapping[str, Any], used: set[str], path: Path, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{path}: corrupt structure metadata: nested too deeply")
    if not isinstance(node, dict) or len(node) != 1:
        raise CheckpointError(f"{path}: corrupt structure metadata (entry {_short(node)})")
    ((kind, body),) = node.items()
    if kind == "__tensor__":
        if not isinstance(body, str) or body not in tensors:
            raise CheckpointError(
                f"{path}: structure names tensor {_short(body)}, which the file lacks"
            )
        if body in used:
            raise CheckpointError(f"{path}: corrupt structure metadata: tensor '{body}' used twice")
        used.add(body)
        return tensors[body]
    if kind == "__dict__":
        if not isinstance(body, list):
            raise CheckpointError(f"{path}: corrupt structure metadata ({kind} of {_short(body)})")
        result = {}
        for item in body:
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], (str, int))
                and not isinstance(item[0], bool)
            ):
                raise CheckpointError(f"{path}: corrupt structure metadata (item {_short(item)})")
            if item[0] in result:
                raise CheckpointError(
                    f"{path}: corrupt structure metadata: key {item[0]!r} appears twice"
                )
            result[item[0]] = _rebuild(item[1], tensors, used, path, depth + 1)
        return result
    if kind in ("__list__", "__tuple__"):
        if not isinstance(body, list):
            raise CheckpointError(f"{path}: corrupt structure metadata ({kind} of {_short(body)})")
        items = [_rebuild(v, tensors, used, path, depth + 1) for v in body]
        return items if kind == "__list__" else tuple(items)
    if kind == "__value__":
        if not (body is None or isinstance(body, (bool, int, float, str))):
            raise CheckpointError(f"{path}: corrupt structure metadata (value {_short(body)})")
        return body
    raise CheckpointError(f"{path}: corrupt structure metadata (unknown entry {_short(kind)})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rebuild_checked(skeleton: Any, tensors: Mapping[str, Any], path: Path) -> Any:
    used: set[str] = set()
    result = _rebuild(skeleton, tensors, used, path, 0)
    unused = [key for key in tensors if key not in used]
    if unused:
        raise CheckpointError(
            f"{path}: corrupt structure metadata: it does not mention tensors {unused[:5]}"
        )
    return result


def _read_tensors(path: Path, keys: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            if sorted(handle.keys()) != sorted(keys):  # pragma: no cover - changed under us
                raise CheckpointError(f"{path}: the file changed while it was read")
            for key in keys:
                yield key, handle.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as error:  # safetensors raises its own error types for bad files
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({type(error).__name__}: {error})"
        ) from error


def load(path: str | os.PathLike[str], *, like: Any = None, shardings: Any = None) -> Any:
    """Read what :func:`save` wrote (or any safetensors file, e.g. one torch wrote).

    Arguments:
        path: the file.
        like: optional; where each array goes, taken from what it will be loaded into: a
            Module, an optimizer, or a state dict / tree whose arrays (or
            ``jax.ShapeDtypeStruct`` leaves) carry shardings. Each device then receives only
            its own slice of the file (memory-mapped), so a model sharded over a mesh loads
            without passing through one device (each tensor's checksum is still verified, once
            per process, over the whole tensor). Keys the file lacks are ignored; a shape that
            differs from the file's is an error; an uncommitted array places nothing.
        shardings: optional; a ``jax.sharding.Sharding`` for every array, or a dict (flat by
            key, or nested like the saved state) of shardings; it wins over ``like``. See
            :func:`fparam.distributed.load_sharded`, which reads the same way from a
            directory of per-process files.

    Returns:
        For a flat file, an ``OrderedDict`` of ``jax.Array`` (in the saved order when fparam
        wrote it, else sorted by key), ready for
        ``module.load_state_dict``; for a nested one, the saved structure (dicts, lists, numbers)
        with ``jax.Array`` leaves, ready for ``optimizer.load_state_dict``. Arrays without a
        placement from ``like`` / ``shardings`` are uncommitted, on the default device.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the path is not a regular file; the file is truncated, corrupt (a
            checksum mismatch, malformed metadata) or not a safetensors file; a tensor has a
            dtype fparam cannot read; a 64-bit value would not survive the narrowing to 32 bits
            (see the module docstring); ``like`` / ``shardings`` do not fit the file. Nothing
            is unpickled, ever.
    """
    path = Path(path)
    header = _read_header(path)
    checksums = _verify_metadata(header, path)
    metadata: dict[str, str] = header.get(_RESERVED_KEY, {})
    keys = sorted(k for k in header if k != _RESERVED_KEY)

    order = keys
    if _ORDER_KEY in metadata:
        saved_order = _loads(metadata[_ORDER_KEY], path, "key-order metadata")
        if (
            not isinstance(saved_order, list)
            or not all(isinstance(k, str) for k in saved_order)
            or sorted(saved_order) != keys
        ):
            raise CheckpointError(
                f"{path}: corrupt key-order metadata: it does not list the file's tensors"
            )
        order = saved_order
    structure = metadata.get(_STRUCTURE_KEY)
    skeleton = None if structure is None else _loads(structure, path, "structure metadata")

    if like is not None or shardings is not None:
        from fparam.distributed.checkpoint import _load_file_placed

        placed = _load_file_placed(path, header, checksums, like, shardings)
        tensors = OrderedDict((key, placed[key]) for key in order)
    else:
        arrays: dict[str, np.ndarray] = {}
        for key, array in _read_tensors(path, keys):
            if checksums is not None:
                entry = header[key]
                if _crc(key, entry["dtype"], entry["shape"], _bytes_of(array)) != checksums[key]:
                    raise CheckpointError(
                        f"{path}: corrupt checkpoint: tensor '{key}' does not match its "
                        "checksum (its data or its header entry was damaged after it was written)"
                    )
            arrays[key] = array
        tensors = OrderedDict((key, _to_jax(arrays[key], key, path)) for key in order)
    if structure is None:
        return tensors
    return _rebuild_checked(skeleton, tensors, path)
