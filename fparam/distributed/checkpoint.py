"""Sharded checkpoints: every process writes the pieces it owns, every device reads its slice.

What ``torch.distributed.checkpoint`` (DCP) does for torch, for ``jax.Array`` state:
:func:`save_sharded` writes a *directory*, one safetensors file per process holding only the
pieces of data that process owns, plus ``index.json`` (written by process 0) that records each
array's global shape, dtype, and which file holds which slice. Nothing is gathered: a piece is
copied from the device that holds it to its process's file, and each distinct piece is written
exactly once (by the first device holding it in the sharding's device order: JAX's
``replica_id == 0`` shard; a replicated array is written once, not once per device).
:func:`load_sharded` builds each array with ``jax.make_array_from_callback``: every device
reads only the stored pieces that overlap its own slice (memory-mapped), so a checkpoint saved
as FSDP on 8 devices loads as tensor parallel, on 1 device, or on another process count.

**Layout** of a checkpoint directory::

    index.json                              process 0, written last (atomically)
    process-00000-of-00002.safetensors      the pieces process 0 owns
    process-00001-of-00002.safetensors      the pieces process 1 owns

Each process file is an ordinary fparam safetensors file (:mod:`fparam.serialization`:
atomic write, CRC-32 per piece), its tensors named ``key[start:stop,...]``, so any safetensors
reader can inspect it. ``index.json`` is ``{"crc32": ..., "checkpoint": {...}}``; the checkpoint
holds ``tensors`` (per key: ``dtype``, ``shape``, ``pieces``: ``{"file", "name", "box"}`` with
``box`` one ``[start, stop)`` per axis) and either ``order`` (a flat module ``state_dict()``) or
``structure`` (nested state, as :func:`fparam.save` keeps it). The index is written only after
every process has written its file, and the previous index is removed before any file is
replaced, so a directory with an index is a complete checkpoint; a save that died half way
leaves no index and loads as an error, never as a mix of two steps.

**Many processes** (``jax.distributed.initialize``): every process calls :func:`save_sharded`
with the same state (as with any multi-controller JAX program) and the same directory, on a
filesystem all processes see. The processes agree three times (before writing, after writing,
after the index), through small ``jax.experimental.multihost_utils`` collectives; on CPU these
run over gloo, JAX's default CPU collectives since 0.4.3x (``jax_cpu_collectives_implementation``).
A process whose write fails raises its error; the others raise a :class:`CheckpointError`
saying which process failed. With one process there is no collective at all.

:func:`fparam.save` in a multi-process job writes one file, from process 0, of state every
process holds in full (replicated or local arrays); other processes wait for it and then
return. An array split across processes is refused with a pointer here: ``fparam.save`` never
gathers.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam import serialization as _ser
from fparam.serialization import CheckpointError

__all__ = ["INDEX_NAME", "load_sharded", "save_sharded"]

#: The name of a sharded checkpoint's index file.
INDEX_NAME = "index.json"
_FORMAT = "fparam.sharded"
_VERSION = 1
_FILE_NAME = re.compile(r"process-([0-9]{5,})-of-([0-9]{5,})\.safetensors")

Box = tuple[tuple[int, int], ...]

SAVE_SPLIT_ACROSS_PROCESSES = (
    "{path}: cannot save '{key}' with fparam.save: it is sharded across processes (process "
    "{process} holds {held} of its {total} elements), and fparam.save writes one file from "
    "process 0 without gathering. Save the state with "
    "fparam.distributed.save_sharded(state, directory) (each process writes the pieces it "
    "holds; load with fparam.distributed.load_sharded), or with orbax (docs/checkpoints-sharded.md)"
)
PEER_FAILED = (
    "{path}: the checkpoint was not written: process(es) {failed} failed (their own error says why)"
)
BAD_LIKE = (
    "{where}: like must be a Module, an optimizer, or a state dict / tree of arrays (or "
    "jax.ShapeDtypeStruct) carrying shardings, got {got}"
)
BAD_SHARDINGS = (
    "{where}: shardings must be a jax.sharding.Sharding, or a dict (by state_dict key, or "
    "nested like the saved state) of them, got {got}"
)
BAD_SHARDING = "{where}: shardings['{key}'] must be a jax.sharding.Sharding or None, got {got}"
UNKNOWN_SHARDING_KEYS = (
    "{where}: shardings names {unknown}, which the checkpoint does not hold (it holds {known})"
)
SHAPE_MISMATCH = (
    "{where}: size mismatch for {key}: copying a param with shape {stored} from checkpoint, "
    "the shape in like is {expected}."
)
CANNOT_PLACE = "{where}: cannot place '{key}' of shape {shape} with {sharding}: {error}"


# --------------------------------------------------------------------------- processes


def _all_ok(ok: bool) -> list[int]:
    """The processes whose ``ok`` was false (every process calls this: it is a collective)."""
    if jax.process_count() == 1:
        return [] if ok else [0]
    from jax.experimental import multihost_utils

    flags = np.asarray(multihost_utils.process_allgather(np.array([ok], np.int32)))
    return [int(i) for i in np.flatnonzero(flags.reshape(-1) == 0)]


def _save_from_process_zero(state: Any, path: Path) -> None:
    """``fparam.save`` in a multi-process job: process 0 writes, every process returns after.

    Every process checks the state first (the same state: the same errors everywhere), so a
    state that cannot be saved raises on every process and nobody waits.
    """
    tensors: dict[str, Any] = {}
    _ser._split(state, "", tensors, path, 0, _keep_array)
    for key, value in tensors.items():
        if (
            isinstance(value, jax.Array)
            and not value.is_fully_addressable
            and not value.is_fully_replicated
        ):
            mine = {_box(s.index, tuple(value.shape)) for s in value.addressable_shards}
            held = sum(_volume(box) for box in mine)  # distinct elements, not replicas
            raise CheckpointError(
                SAVE_SPLIT_ACROSS_PROCESSES.format(
                    path=path, key=key, process=jax.process_index(), held=held, total=value.size
                )
            )
    error: BaseException | None = None
    if jax.process_index() == 0:
        try:
            _ser._save_file(state, path)
        except Exception as caught:  # reported to the others before it is raised here
            error = caught
    failed = _all_ok(error is None)
    if error is not None:
        raise error
    if failed:
        raise CheckpointError(PEER_FAILED.format(path=path, failed=failed))


# --------------------------------------------------------------------------- pieces


def _keep_array(value: Any, key: str, path: Path) -> Any:
    """A ``jax.Array`` as it is (its pieces are written where they live); anything else as
    the NumPy array ``fparam.save`` would write."""
    if isinstance(value, jax.core.Tracer):
        raise CheckpointError(f"{path}: cannot save '{key}': it is a traced value (inside jit)")
    if isinstance(value, jax.Array):
        try:
            dtype = np.dtype(value.dtype)
        except TypeError:  # a typed PRNG key array, say
            dtype = None
        if dtype not in _ser.SUPPORTED_DTYPES:
            supported = ", ".join(str(d) for d in _ser.SUPPORTED_DTYPES)
            raise CheckpointError(
                f"{path}: cannot save '{key}' of dtype {value.dtype}: a checkpoint holds "
                f"{supported} (cast it first, e.g. to float32)"
            )
        return value
    return _ser._to_numpy(value, key, path)


def _box(index: tuple[slice, ...], shape: tuple[int, ...]) -> Box:
    """A shard's index (slices) as ``((start, stop), ...)`` in global coordinates."""
    out = []
    for s, n in zip(index, shape):
        start, stop, step = s.indices(n)
        if step != 1:  # pragma: no cover - shardings slice contiguously
            raise ValueError(f"strided shard index {index}")
        out.append((start, max(start, stop)))
    return tuple(out)


def _pieces(value: Any) -> list[tuple[Box, Any]]:
    """The distinct pieces of ``value``, each with the device that writes it (None: a host
    array, written by process 0). The writer is the first device holding the piece in the
    sharding's device order, which every process computes alike, with no communication.
    In a multi-process job an array on one process's devices only is written like a host array
    (each process may hold its own copy: process 0's is the one stored)."""
    shape = tuple(value.shape)
    if not isinstance(value, jax.Array) or (jax.process_count() > 1 and value.is_fully_addressable):
        # A host array, or one on this process's devices only (each process has its own,
        # as after the same seeded init everywhere): one value of the job, written by process 0.
        return [(tuple((0, n) for n in shape), None)]
    owners: dict[Box, Any] = {}
    for device, index in value.sharding.devices_indices_map(shape).items():
        owners.setdefault(_box(index, shape), device)
    return list(owners.items())


def _piece_name(key: str, box: Box) -> str:
    return f"{key}[{','.join(f'{a}:{b}' for a, b in box)}]"


def _file_name(process: int, count: int) -> str:
    return f"process-{process:05d}-of-{count:05d}.safetensors"


def _piece_data(value: Any, name: str, device: Any, path: Path) -> np.ndarray:
    if device is None:
        return _ser._to_numpy(value, name, path)
    for shard in value.addressable_shards:
        if shard.device == device:  # a device-to-host copy of this piece only
            return _ser._to_numpy(shard.data, name, path)
    raise AssertionError(f"no local shard on {device}")  # pragma: no cover - by construction


def _index_bytes(body: Mapping[str, Any]) -> bytes:
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, allow_nan=True)
    crc = f"{zlib.crc32(text.encode('utf-8')):08x}"
    return json.dumps({"crc32": crc, "checkpoint": body}, ensure_ascii=False).encode("utf-8")


def save_sharded(obj: Any, directory: str | os.PathLike[str]) -> None:
    """Write a sharded checkpoint: each process writes only the pieces it owns; no gather.

    The counterpart of ``torch.distributed.checkpoint.save(state_dict, checkpoint_id=dir)``.
    In a multi-process job every process calls it with the same state and directory.

    Arguments:
        obj: a Module or optimizer (saved through its ``state_dict()``), a module
            ``state_dict()``, an optimizer ``state_dict()``, or any dict/list nesting of arrays
            and plain values (what :func:`fparam.save` accepts). ``jax.Array`` leaves are
            written piece by piece from the devices that hold them (one writer per distinct
            piece); NumPy arrays and torch tensors are written whole by process 0.
        directory: created if missing (with its parents, as torch's DCP does). A checkpoint
            already there is replaced: its index is removed first, so an interrupted save
            leaves no index.

    Raises:
        CheckpointError: a value that cannot be stored (see :mod:`fparam.serialization`), or
            another process failed to write its file.
    """
    directory = Path(directory)
    state = _ser._state_of(obj)
    tensors: dict[str, Any] = {}
    flat = isinstance(state, Mapping) and all(
        isinstance(k, str) and _ser._is_tensor(v) for k, v in state.items()
    )
    body: dict[str, Any] = {"format": _FORMAT, "version": _VERSION}
    if flat:
        for key, value in state.items():
            _ser._check_key(key, directory)
            tensors[key] = _keep_array(value, key, directory)
        body["order"] = list(tensors)
    else:
        body["structure"] = _ser._split(state, "", tensors, directory, 0, _keep_array)
    _ser._dumps(body.get("structure"), directory)  # refuse what JSON cannot hold, up front

    process, count = jax.process_index(), jax.process_count()
    entries: dict[str, Any] = {}
    mine: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        pieces = []
        for box, device in _pieces(value):
            owner = 0 if device is None else device.process_index
            name = _piece_name(key, box)
            pieces.append({"file": _file_name(owner, count), "name": name, "box": box})
            if owner == process:
                mine[name] = _piece_data(value, name, device, directory)
        dtype = np.dtype(value.dtype)
        entries[key] = {
            "dtype": _ser.SUPPORTED_DTYPES[dtype],
            "shape": list(value.shape),
            "pieces": pieces,
        }
    body["processes"] = count
    body["tensors"] = entries
    index = _index_bytes(json.loads(json.dumps(body)))  # boxes as lists, as they read back

    error: BaseException | None = None
    if process == 0:
        try:
            directory.mkdir(parents=True, exist_ok=True)  # as torch's FileSystemWriter does
            (directory / INDEX_NAME).unlink(missing_ok=True)
        except Exception as caught:  # reported to the others before it is raised here
            error = caught
    # Nobody replaces a file before the old index is gone (and the directory exists).
    failed = _all_ok(error is None)
    if error is not None:
        raise error
    if failed:
        raise CheckpointError(PEER_FAILED.format(path=directory, failed=failed))

    if mine:
        try:
            _ser._save_file(mine, directory / _file_name(process, count))
        except Exception as caught:
            error = caught
    failed = _all_ok(error is None)
    if error is None and not failed and process == 0:
        try:
            _ser._write_atomic(directory / INDEX_NAME, [index])
            used = {p["file"] for e in entries.values() for p in e["pieces"]}
            for entry in os.scandir(directory):  # files of an earlier save by more processes
                if _FILE_NAME.fullmatch(entry.name) and entry.name not in used:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        except Exception as caught:
            error = caught
    failed = failed or _all_ok(error is None)
    if error is not None:
        raise error
    if failed:
        raise CheckpointError(PEER_FAILED.format(path=directory, failed=failed))


# --------------------------------------------------------------------------- reading


def _corrupt(where: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{where}: corrupt sharded checkpoint index: {what}")


def _read_index(directory: Path) -> dict[str, Any]:
    """The index's checkpoint body, checked for everything loading relies on."""
    path = directory / INDEX_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"no sharded checkpoint at {directory} (not a directory)")
    if not path.exists():
        raise CheckpointError(
            f"{directory}: no {INDEX_NAME}: not a sharded checkpoint, or a save that did not "
            "finish (the index is written last)"
        )
    fd = _ser._open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(_ser._MAX_HEADER + 1)
    if len(text) > _ser._MAX_HEADER:
        raise _corrupt(path, "larger than 100 MB")
    outer = _ser._loads(text, path, "index")
    if not (isinstance(outer, dict) and set(outer) == {"crc32", "checkpoint"}):
        raise _corrupt(path, "not an fparam sharded checkpoint index")
    body = outer["checkpoint"]
    if not isinstance(body, dict) or not isinstance(outer["crc32"], str):
        raise _corrupt(path, "not an fparam sharded checkpoint index")
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, allow_nan=True)
    if f"{zlib.crc32(canonical.encode('utf-8')):08x}" != outer["crc32"]:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: the index does not match its checksum (it was "
            "damaged or edited after it was written)"
        )
    if body.get("format") != _FORMAT or body.get("version") != _VERSION:
        raise CheckpointError(
            f"{path}: format {body.get('format')!r} version {body.get('version')!r}; this "
            f"fparam reads {_FORMAT!r} version {_VERSION}"
        )
    tensors = body.get("tensors")
    if not isinstance(tensors, dict):
        raise _corrupt(path, "no tensor table")
    for key, entry in tensors.items():
        _check_entry(path, key, entry)
    return body


def _check_entry(path: Path, key: str, entry: Any) -> None:
    if not (
        isinstance(entry, dict)
        and entry.get("dtype") in _ser._CODES
        and isinstance(entry.get("shape"), list)
        and all(type(n) is int and n >= 0 for n in entry["shape"])
        and isinstance(entry.get("pieces"), list)
    ):
        raise _corrupt(path, f"entry for '{key}'")
    shape = entry["shape"]
    boxes = []
    for piece in entry["pieces"]:
        if not (
            isinstance(piece, dict)
            and isinstance(piece.get("file"), str)
            and _FILE_NAME.fullmatch(piece["file"])
            and isinstance(piece.get("name"), str)
            and isinstance(piece.get("box"), list)
            and len(piece["box"]) == len(shape)
            and all(
                isinstance(b, list) and len(b) == 2 and all(type(v) is int for v in b)
                for b in piece["box"]
            )
            and all(0 <= a <= b <= n for (a, b), n in zip(piece["box"], shape))
        ):
            raise _corrupt(path, f"piece {_ser._short(piece)} of '{key}'")
        boxes.append(tuple(tuple(b) for b in piece["box"]))
    # The pieces must tile the array: no overlap, nothing missing.
    total = sum(_volume(b) for b in boxes)
    overlap = any(_volume(_intersect(a, b)) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    if overlap or total != int(np.prod(shape, dtype=np.int64)):
        raise _corrupt(path, f"the pieces of '{key}' do not cover its shape {tuple(shape)}")


def _volume(box: Box) -> int:
    n = 1
    for a, b in box:
        n *= max(0, b - a)
    return n


def _intersect(x: Box, y: Box) -> Box:
    return tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(x, y))


class _Reader:
    """Memory-mapped piece files of one load; each piece verified (CRC-32) when first read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, tuple[mmap.mmap, dict[str, Any], dict[str, str] | None, int]] = {}
        self.pieces: dict[tuple[str, str], np.ndarray] = {}

    def _file(self, name: str) -> tuple[mmap.mmap, dict[str, Any], dict[str, str] | None, int]:
        if name not in self.files:
            path = self.directory / name
            header = _ser._read_header(path)
            checksums = _ser._verify_metadata(header, path)
            fd = _ser._open_regular(path)
            try:
                with os.fdopen(os.dup(fd), "rb") as handle:
                    length = int.from_bytes(handle.read(8), "little")
                mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            self.files[name] = (mapped, header, checksums, 8 + length)
        return self.files[name]

    def piece(self, file: str, name: str, code: str, box: Box) -> np.ndarray:
        """The stored piece ``name`` of ``file``: a read-only view of the mapped file."""
        if (file, name) in self.pieces:
            return self.pieces[(file, name)]
        mapped, header, checksums, base = self._file(file)
        path = self.directory / file
        shape = [b - a for a, b in box]
        entry = header.get(name)
        if entry is None or entry["dtype"] != code or entry["shape"] != shape:
            raise CheckpointError(
                f"{path}: corrupt checkpoint: piece '{name}' is missing or not the "
                f"{code} {tuple(shape)} the index records"
            )
        dtype = _ser._CODES[code]
        start, stop = entry["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if stop - start != count * dtype.itemsize or base + stop > len(mapped):
            raise CheckpointError(f"{path}: corrupt checkpoint: piece '{name}' has bad offsets")
        array = np.frombuffer(mapped, dtype, count, base + start).reshape(shape)
        if checksums is not None and (
            _ser._crc(name, code, shape, _ser._bytes_of(array)) != checksums.get(name)
        ):
            raise CheckpointError(
                f"{path}: corrupt checkpoint: piece '{name}' does not match its checksum "
                "(its data or its header entry was damaged after it was written)"
            )
        self.pieces[(file, name)] = array
        return array

    def read(self, entry: Mapping[str, Any], box: Box) -> np.ndarray:
        """The slice ``box`` of one array, assembled from the stored pieces it overlaps."""
        dtype = _ser._CODES[entry["dtype"]]
        out = np.empty([b - a for a, b in box], dtype)
        if out.size == 0:
            return out
        for piece in entry["pieces"]:
            stored = tuple(tuple(b) for b in piece["box"])
            common = _intersect(box, stored)
            if not _volume(common):
                continue
            data = self.piece(piece["file"], piece["name"], entry["dtype"], stored)
            source = tuple(slice(a - s, b - s) for (a, b), (s, _) in zip(common, stored))
            target = tuple(slice(a - s, b - s) for (a, b), (s, _) in zip(common, box))
            out[target] = data[source]
        return out

    def close(self) -> None:
        self.pieces.clear()
        for mapped, *_ in self.files.values():
            with contextlib.suppress(BufferError):  # a view still alive: the GC closes it
                mapped.close()
        self.files.clear()


def _flatten(tree: Any, prefix: str, out: dict[str, Any], is_leaf: Any, depth: int = 0) -> None:
    """``tree``'s leaves by the dotted keys ``fparam.save`` gives them."""
    if is_leaf(tree) or depth > _ser.MAX_DEPTH:
        out[prefix] = tree
    elif isinstance(tree, Mapping):
        for k, v in tree.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, is_leaf, depth + 1)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out, is_leaf, depth + 1)
    else:
        out[prefix] = tree


def _like_targets(like: Any, tensors: Mapping[str, Any], where: Path) -> dict[str, Any]:
    from fparam._module import Module
    from fparam.optim.optimizer import Optimizer

    if not isinstance(like, (Module, Optimizer, Mapping, list, tuple)):
        raise TypeError(BAD_LIKE.format(where=where, got=type(like).__name__))

    leaves: dict[str, Any] = {}
    _flatten(_ser._state_of(like), "", leaves, lambda x: hasattr(x, "shape"))
    targets: dict[str, Any] = {}
    for key, leaf in leaves.items():
        if key not in tensors or not hasattr(leaf, "shape"):
            continue
        stored = tuple(tensors[key]["shape"])
        if tuple(leaf.shape) != stored:
            raise CheckpointError(
                SHAPE_MISMATCH.format(
                    where=where, key=key, stored=stored, expected=tuple(leaf.shape)
                )
            )
        if isinstance(leaf, jax.Array) and not leaf.committed:
            # No placement chosen: load as fparam.load does (uncommitted), so that
            # load_state_dict leaves the module's arrays uncommitted too.
            continue
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, jax.sharding.Sharding):
            targets[key] = sharding
    if isinstance(like, Optimizer):
        # A fresh optimizer has no state yet (torch creates it at the first step): its state
        # goes where the optimizer would create it, with its parameter's sharding.
        from fparam.optim.optimizer import _replicated

        handles = [p for group in like.param_groups for p in group["params"]]
        for key, entry in tensors.items():
            match = re.fullmatch(r"state\.([0-9]+)\..+", key)
            if key in targets or match is None or int(match.group(1)) >= len(handles):
                continue
            handle = handles[int(match.group(1))]
            sharding = getattr(handle.data, "sharding", None)
            if sharding is None:
                continue
            if tuple(entry["shape"]) == tuple(handle.shape):
                targets[key] = sharding
            elif not entry["shape"]:
                replicated = _replicated([handle])
                if replicated is not None:
                    targets[key] = replicated
    return targets


def _targets(tensors: Mapping[str, Any], like: Any, shardings: Any, where: Path) -> dict[str, Any]:
    """The sharding of each key to load (keys without one load as ``fparam.load`` would)."""
    targets = {} if like is None else _like_targets(like, tensors, where)
    if isinstance(shardings, jax.sharding.Sharding):
        targets.update(dict.fromkeys(tensors, shardings))
    elif shardings is not None:
        if not isinstance(shardings, (Mapping, list, tuple)):
            raise TypeError(BAD_SHARDINGS.format(where=where, got=type(shardings).__name__))
        given: dict[str, Any] = {}
        _flatten(shardings, "", given, lambda x: isinstance(x, jax.sharding.Sharding))
        unknown = [k for k in given if k not in tensors]
        if unknown:
            known = list(tensors)
            more = ", ..." if len(known) > 8 else ""
            raise CheckpointError(
                UNKNOWN_SHARDING_KEYS.format(
                    where=where,
                    unknown=unknown[:8],
                    known=", ".join(known[:8]) + more,
                )
            )
        for key, sharding in given.items():
            if sharding is None:
                continue
            if not isinstance(sharding, jax.sharding.Sharding):
                raise TypeError(
                    BAD_SHARDING.format(where=where, key=key, got=type(sharding).__name__)
                )
            targets[key] = sharding
    if jax.process_count() > 1:
        # Without a placement, an array goes everywhere (replicated over all devices): a
        # process-local array would not be one value of the job.
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
        everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        for key in tensors:
            targets.setdefault(key, everywhere)
    return targets


def _load_arrays(
    reader: _Reader, tensors: Mapping[str, Any], targets: Mapping[str, Any], where: Path
) -> dict[str, jax.Array]:
    arrays: dict[str, jax.Array] = {}
    for key, entry in tensors.items():
        shape = tuple(entry["shape"])
        sharding = targets.get(key)
        if sharding is None:
            whole = reader.read(entry, tuple((0, n) for n in shape))
            arrays[key] = jnp.asarray(_ser._narrowed(whole, key, where))
            continue
        cache: dict[Box, np.ndarray] = {}

        def slice_of(index: Any, entry: Any = entry, key: str = key, cache: Any = cache) -> Any:
            box = _box(index, tuple(entry["shape"]))
            if box not in cache:  # replicated targets ask for one slice on several devices
                cache[box] = _ser._narrowed(reader.read(entry, box), key, where)
            return cache[box]

        try:
            arrays[key] = jax.make_array_from_callback(shape, sharding, slice_of)
        except CheckpointError:
            raise
        except (ValueError, TypeError) as error:
            raise CheckpointError(
                CANNOT_PLACE.format(
                    where=where, key=key, shape=shape, sharding=sharding, error=error
                )
            ) from None
    return arrays


def load_sharded(
    directory: str | os.PathLike[str], *, like: Any = None, shardings: Any = None
) -> Any:
    """Read a checkpoint :func:`save_sharded` wrote; each device reads only its own slice.

    The counterpart of ``torch.distributed.checkpoint.load``; here the result is returned
    (pass it to ``model.load_state_dict`` / ``optimizer.load_state_dict``, which keep its
    sharding when the model is placed the same way). The target placement may differ from the
    one saved: FSDP on 8 devices loads as tensor parallel or on one device; each device reads
    the stored pieces that overlap its slice and nothing else (memory-mapped, each piece
    checked against its CRC-32 the first time it is read).

    Arguments:
        directory: the checkpoint directory (with its ``index.json``).
        like: optional; what the state will be loaded into: a Module, an optimizer (a fresh
            one too: state it has not created yet goes where it would create it, with its
            parameter's sharding), or a state dict / tree whose arrays (or
            ``jax.ShapeDtypeStruct`` leaves) carry the target shardings. Keys the checkpoint
            lacks are ignored; a shape that differs is an error (torch's size-mismatch words).
        shardings: optional; one ``jax.sharding.Sharding`` for every array, or a dict (flat by
            ``state_dict`` key, or nested like the saved state) of shardings (``None``: as if
            absent). It wins over ``like``.

    Returns:
        What :func:`fparam.load` returns for the same state: an ``OrderedDict`` of
        ``jax.Array`` for a module ``state_dict()``, the nested structure for an optimizer's.
        Arrays with a target sharding are committed to it. Without one they are, with one
        process, uncommitted on the default device (as ``fparam.load`` gives them), and with
        several, replicated over all devices.

    Raises:
        FileNotFoundError: no directory.
        CheckpointError: no index (not a checkpoint, or an unfinished save), a corrupt index or
            piece (checksums), a shape in ``like`` that differs from the checkpoint's, keys in
            ``shardings`` the checkpoint lacks, a sharding that cannot place its array, or a
            64-bit value that would not survive the narrowing to 32 bits.
    """
    directory = Path(directory)
    body = _read_index(directory)
    tensors: dict[str, Any] = body["tensors"]
    targets = _targets(tensors, like, shardings, directory)
    reader = _Reader(directory)
    try:
        arrays = _load_arrays(reader, tensors, targets, directory)
    finally:
        reader.close()
    if "order" in body:
        order = body["order"]
        if not isinstance(order, list) or sorted(order) != sorted(tensors):
            raise _corrupt(directory / INDEX_NAME, "the key order does not list its tensors")
        return OrderedDict((key, arrays[key]) for key in order)
    if "structure" not in body:
        raise _corrupt(directory / INDEX_NAME, "neither a key order nor a structure")
    return _ser._rebuild_checked(body["structure"], arrays, directory / INDEX_NAME)


def _load_file_placed(
    path: Path,
    header: Mapping[str, Any],
    checksums: Mapping[str, str] | None,
    like: Any,
    shardings: Any,
) -> dict[str, jax.Array]:
    """``fparam.load(path, like=..., shardings=...)``: one file read as one piece per tensor,
    each device reading its slice of it."""
    tensors = {
        key: {
            "dtype": entry["dtype"],
            "shape": entry["shape"],
            "pieces": [{"file": path.name, "name": key, "box": [[0, n] for n in entry["shape"]]}],
        }
        for key, entry in header.items()
        if key != _ser._RESERVED_KEY
    }
    targets = _targets(tensors, like, shardings, path)
    reader = _Reader(path.parent)
    try:
        return _load_arrays(reader, tensors, targets, path)
    finally:
        reader.close()
