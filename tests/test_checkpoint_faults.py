"""Checkpoint faults (issues #9 and #15): each bad file or destination is refused, by name.

Every test asserts the exception type, that the message names the culprit (file, key), and that
nothing changed: the destination's bytes, mode and kind, the directory listing, the optimizer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import fparam
from fparam import nn, optim
from fparam._dtypes import check_narrowing
from fparam.serialization import MAX_DEPTH, SUPPORTED_DTYPES, CheckpointError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX files and processes")


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    """What must not change: the file's bytes, its mode, and its directory's listing."""
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode), _files(path.parent)


def _good(path: Path) -> tuple[bytes, int, list[str]]:
    fparam.save({"w": np.arange(4, dtype=np.float32)}, path)
    return _snapshot(path)


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), 8 + length


def _with_header(data: bytes, header: dict[str, Any]) -> bytes:
    """``data`` with its header replaced (same data section)."""
    _, start = _header(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[start:]


def _raw_file(path: Path, header_text: bytes, data: bytes = b"") -> None:
    path.write_bytes(len(header_text).to_bytes(8, "little") + header_text + data)


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expire(*args: Any) -> None:
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


# --------------------------------------------------------------------------- #9 item 3


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"__metadata__": np.ones(2, np.float32)}, r"key '__metadata__'.*reserves"),
        (
            {"__metadata__": np.ones(2, np.float32), "step": 3},  # nested state, top level
            r"key '__metadata__'.*reserves",
        ),
        ({"f8": np.ones(2, ml_dtypes.float8_e4m3fn)}, r"'f8' of dtype float8_e4m3fn"),
        ({"s": {"f8": np.ones(2, ml_dtypes.float8_e5m2)}}, r"'s\.f8' of dtype float8_e5m2"),
        ({"c": np.ones(2, np.complex128)}, r"'c' of dtype complex128"),
        ({"i4": np.ones(2, ml_dtypes.int4)}, r"'i4' of dtype int4"),
        ({"u": np.array(["text"])}, r"'u' of dtype <U4"),
        ({"\ud800": np.ones(1, np.float32)}, r"not valid UTF-8"),
        ({"a": {(1, 2): 3}}, r"key \(1, 2\) of type tuple"),
        ({None: np.ones(1)}, r"key None of type NoneType"),
        ({"n": 10**5000}, r"cannot save the structure"),
    ],
    ids=[
        "metadata_flat",
        "metadata_nested",
        "float8",
        "nested_float8",
        "complex128",
        "int4",
        "str_array",
        "surrogate_key",
        "tuple_key",
        "none_key",
        "huge_int",
    ],
)
def test_save_refuses_what_load_cannot_read_before_touching_the_file(
    tmp_path: Path, obj: Any, match: str
) -> None:
    path = tmp_path / "good.safetensors"
    before = _good(path)
    with pytest.raises(CheckpointError, match=match) as info:
        fparam.save(obj, path)
    assert str(path) in str(info.value)
    assert _snapshot(path) == before  # the good checkpoint is intact, no temporary left
    np.testing.assert_array_equal(np.asarray(fparam.load(path)["w"]), np.arange(4))


def test_a_dict_named_metadata_without_tensors_round_trips(tmp_path: Path) -> None:
    # Only a *tensor* key collides with the header's entry; nested plain values do not.
    obj = {"__metadata__": {"format": "pt", "n": [1, None]}, "w": {"a": jnp.ones(2)}}
    fparam.save(obj, tmp_path / "m.safetensors")
    loaded = fparam.load(tmp_path / "m.safetensors")
    assert loaded["__metadata__"] == obj["__metadata__"]
    np.testing.assert_array_equal(np.asarray(loaded["w"]["a"]), np.ones(2))


def _all_dtypes() -> list[Any]:
    numpy = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64]
    numpy += [np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128]
    numpy += [np.longdouble, np.clongdouble, np.str_, np.bytes_, np.datetime64, np.timedelta64]
    names = [n for n in dir(ml_dtypes) if n.startswith(("float", "int", "uint", "bfloat"))]
    return numpy + [getattr(ml_dtypes, n) for n in sorted(names) if not n.endswith("info")]


@pytest.mark.parametrize("dtype", _all_dtypes(), ids=lambda d: np.dtype(d).name)
def test_every_dtype_round_trips_or_is_refused(tmp_path: Path, dtype: Any) -> None:
    path = tmp_path / "d.safetensors"
    before = _good(path)
    try:
        values = np.arange(6).reshape(2, 3).astype(dtype)
    except (TypeError, ValueError):
        values = np.zeros((2, 3), dtype)
    if np.dtype(dtype) in SUPPORTED_DTYPES:
        fparam.save({"v": values}, path)
        loaded = fparam.load(path)["v"]  # 64-bit types arrive as 32-bit ones (x64 is off)
        assert loaded.dtype == jax.dtypes.canonicalize_dtype(values.dtype)
        np.testing.assert_array_equal(np.asarray(loaded), values)
        # fparam's file is torch's too.
        expected = torch.from_numpy(
            values.astype(np.float32) if dtype is ml_dtypes.bfloat16 else values
        )
        got = safetensors.torch.load_file(path)["v"]
        torch.testing.assert_close(got.float() if dtype is ml_dtypes.bfloat16 else got, expected)
    else:
        with pytest.raises(CheckpointError, match=rf"'v' of dtype {re.escape(str(values.dtype))}"):
            fparam.save({"v": values}, path)
        assert _snapshot(path) == before


def test_a_torch_file_of_a_dtype_fparam_cannot_read_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file(
        {"ok": torch.ones(2), "f8": torch.ones(2, dtype=torch.float8_e4m3fn)}, path
    )
    data = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"t\.safetensors: tensor 'f8' has dtype F8_E4M3"):
        fparam.load(path)
    assert path.read_bytes() == data


# --------------------------------------------------------------------------- #9 item 4


@pytest.mark.parametrize(
    ("value", "becomes"), [(1e300, "inf"), (-1e300, "-inf"), (1e-310, "0.0"), (-5e-324, "-0.0")]
)
@pytest.mark.parametrize("writer", ["fparam", "torch"])
def test_float64_values_float32_cannot_hold_are_refused(
    tmp_path: Path, value: float, becomes: str, writer: str
) -> None:
    assert not jax.config.jax_enable_x64  # the suite runs in 32-bit mode
    values = np.array([0.5, value, np.nan], np.float64)
    path = tmp_path / "f64.safetensors"
    if writer == "fparam":
        fparam.save({"ok": np.ones(2), "big": values}, path)
    else:
        safetensors.torch.save_file({"ok": torch.ones(2), "big": torch.from_numpy(values)}, path)
    data = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        fparam.load(path)
    message = str(info.value)
    assert str(path) in message and "'big'" in message
    assert f"would become {becomes}" in message
    assert 'jax.config.update("jax_enable_x64", True)' in message
    assert path.read_bytes() == data


def test_float64_values_that_only_round_load_as_float32(tmp_path: Path) -> None:
    values = np.array([0.1, 1e30, -np.inf, np.nan, 0.0, 1e-40], np.float64)
    torch_path = tmp_path / "t.safetensors"
    safetensors.torch.save_file({"v": torch.from_numpy(values)}, torch_path)
    loaded = fparam.load(torch_path)["v"]
    assert loaded.dtype == jnp.float32
    # What torch itself gives for the same narrowing.
    expected = torch.from_numpy(values).to(torch.float32).numpy()
    np.testing.assert_array_equal(np.asarray(loaded), expected)


def test_64_bit_values_load_exactly_with_x64(tmp_path: Path) -> None:
    path = tmp_path / "exact.safetensors"
    floats = np.array([1e300, 1e-310, 0.1, -np.inf], np.float64)
    ints = np.array([2**62 + 1, -(2**63)], np.int64)
    fparam.save({"f": floats, "i": ints}, path)
    result = _run(
        f"""
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np, fparam
        inf = float("inf")
        loaded = fparam.load({str(path)!r})
        assert loaded["f"].dtype == np.float64 and loaded["i"].dtype == np.int64
        np.testing.assert_array_equal(np.asarray(loaded["f"]), {floats.tolist()!r})
        assert np.asarray(loaded["i"]).tolist() == {ints.tolist()!r}
        print("exact")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exact"


def test_check_narrowing_contract() -> None:
    f64 = np.array([1.0, 1e300], np.float64)
    assert check_narrowing(f64, np.float64, "'x'") is None  # same dtype
    assert check_narrowing(np.array([0.1, np.nan, np.inf]), np.float32, "'x'") is None
    assert check_narrowing(np.array([0.5, 2.0]), jnp.bfloat16, "'x'") is None
    message = check_narrowing(f64, np.float32, "'x'")
    assert (
        message
        == "'x' holds float64 values that float32 cannot hold: 1e+300 would become inf (1 of 2 values)"
    )
    assert "would become 0.0" in str(check_narrowing(np.array([1e-8]), np.float16, "'h'"))
    assert "would become inf" in str(check_narrowing(np.array([1e39]), jnp.bfloat16, "'b'"))
    assert "would become nan" in str(
        check_narrowing(np.array([1e4]), ml_dtypes.float8_e4m3fn, "'e'")
    )
    assert "2147483648" in str(check_narrowing(np.array([2**31], np.int64), np.int32, "'i'"))
    assert "-1" in str(check_narrowing(np.array([-1], np.int32), np.uint8, "'u'"))
    assert check_narrowing(np.array([2**63 - 1], np.int64), np.uint64, "'u'") is None
    assert "nan" in str(check_narrowing(np.array([np.nan], np.float32), np.int32, "'n'"))
    assert check_narrowing(np.array([2.7, -2.7], np.float32), np.int8, "'t'") is None  # truncation
    assert "2" in str(check_narrowing(np.array([0, 1, 2]), np.bool_, "'b'"))
    assert "imaginary" in str(check_narrowing(np.array([1j]), np.float32, "'c'"))
    assert check_narrowing(np.array([1 + 0j]), np.float32, "'c'") is None
    assert "inf" in str(check_narrowing(np.array([1e300 + 0j]), np.complex64, "'c'"))
    assert "not numbers" in str(check_narrowing(np.array(["a"]), np.float32, "'s'"))
    assert check_narrowing(np.zeros(0), np.int8, "'e'") is None


# --------------------------------------------------------------------------- #9 item 8


@posix_only
def test_overwriting_keeps_the_destination_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret.safetensors"
    _good(path)
    os.chmod(path, 0o600)
    fparam.save({"v": np.ones(3, np.float32)}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(fparam.load(path)) == ["v"]
    os.chmod(path, 0o640)
    fparam.save({"v": np.zeros(3, np.float32)}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _files(tmp_path) == ["secret.safetensors"]


@posix_only
def test_a_symlinked_destination_is_written_through(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    target = runs / "ckpt-7.safetensors"
    _good(target)
    os.chmod(target, 0o600)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(os.path.relpath(target, tmp_path))
    fparam.save({"new": np.full(2, 7.0, np.float32)}, link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert list(fparam.load(target)) == ["new"]  # the target got the data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _files(runs) == ["ckpt-7.safetensors"] and _files(tmp_path) == [
        "latest.safetensors",
        "runs",
    ]

    dangling = tmp_path / "next.safetensors"
    dangling.symlink_to("runs/ckpt-8.safetensors")  # open(path, "wb") would create the target
    fparam.save({"w": np.ones(1, np.float32)}, dangling)
    assert dangling.is_symlink() and list(fparam.load(runs / "ckpt-8.safetensors")) == ["w"]


def test_a_250_character_name_saves(tmp_path: Path) -> None:
    path = tmp_path / ("c" * 238 + ".safetensors")
    assert len(path.name) == 250
    fparam.save({"w": np.ones(2, np.float32)}, path)
    fparam.save({"w": np.zeros(2, np.float32)}, path)  # and overwrites
    np.testing.assert_array_equal(np.asarray(fparam.load(path)["w"]), np.zeros(2))
    assert _files(tmp_path) == [path.name]


def test_a_missing_directory_names_the_destination(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "c.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(f"cannot save to {path}")):
        fparam.save({"w": np.ones(1, np.float32)}, path)
    assert _files(tmp_path) == []


def test_a_read_only_directory_names_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.safetensors"
    before = _good(path)
    real_open = os.open

    def read_only(name: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:  # what a directory without write permission answers
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(PermissionError, match=re.escape(f"cannot save to {path}")):
        fparam.save({"v": np.ones(1, np.float32)}, path)
    monkeypatch.undo()
    assert _snapshot(path) == before


# --------------------------------------------------------------------------- #15: checksums


def test_a_dtype_flipped_in_the_header_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "flip.safetensors"
    fparam.save({"a": np.ones(3, np.float32), "w": np.linspace(0, 1, 8, dtype=np.float32)}, path)
    data = path.read_bytes()
    header, _ = _header(data)
    header["w"]["dtype"] = "I32"  # same size: without a checksum this loads garbage
    flipped = _with_header(data, header)
    path.write_bytes(flipped)
    with pytest.raises(
        CheckpointError, match=r"flip\.safetensors: .*tensor 'w' does not match its checksum"
    ):
        fparam.load(path)
    assert path.read_bytes() == flipped
    # The same flip in a file torch wrote (no checksum) is beyond detection: documented limit.
    torch_path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, torch_path)
    torch_header, _ = _header(torch_path.read_bytes())
    assert "fparam.crc32" not in torch_header.get("__metadata__", {})
    assert fparam.load(torch_path)["w"].dtype == jnp.float32


def test_damaged_data_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "rot.safetensors"
    fparam.save({"a": np.ones(3, np.float32), "b": np.zeros(5, np.float32)}, path)
    data = bytearray(path.read_bytes())
    header, start = _header(bytes(data))
    data[start + header["b"]["data_offsets"][0] + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"rot\.safetensors: .*tensor 'b' does not match"):
        fparam.load(path)


def test_every_single_bit_flip_is_caught_or_harmless(tmp_path: Path) -> None:
    """Each byte of a small checkpoint, one random bit flipped: a CheckpointError, or the same
    values. Only two places may be hit harmlessly: the header's padding (a space JSON still
    reads as white space) and the name of the checksum entry itself (the file then reads as
    one without a checksum; the single flip spent there left the data intact)."""
    path = tmp_path / "bits.safetensors"
    state = {"state": {0: {"momentum_buffer": np.arange(3, dtype=np.float32)}}, "lr": 0.5}
    fparam.save(state, path)
    good = path.read_bytes()
    _, start = _header(good)
    padding = {i for i in range(start) if good[i:start] == b" " * (start - i)}
    name = good.index(b'"fparam.crc32"')
    allowed = padding | set(range(name + 1, name + len(b'"fparam.crc32"') - 1))
    rng = np.random.default_rng(0)
    harmless = set()
    for position in range(len(good)):
        data = bytearray(good)
        data[position] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        try:
            loaded = fparam.load(path)
        except CheckpointError as error:
            assert "bits.safetensors" in str(error)
            continue
        harmless.add(position)
        assert loaded["lr"] == 0.5
        np.testing.assert_array_equal(
            np.asarray(loaded["state"][0]["momentum_buffer"]), np.arange(3)
        )
    assert harmless <= allowed, sorted(harmless - allowed)


def test_edited_metadata_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "meta.safetensors"
    fparam.save({"lr": 0.1, "w": np.ones(2, np.float32)}, path)
    data = path.read_bytes()
    header, _ = _header(data)
    header["__metadata__"]["fparam.structure"] = header["__metadata__"]["fparam.structure"].replace(
        "0.1", "0.9"
    )
    path.write_bytes(_with_header(data, header))
    with pytest.raises(
        CheckpointError, match=r"meta\.safetensors: .*metadata does not match its checksum"
    ):
        fparam.load(path)


def test_checksummed_files_load_in_torch_and_torch_files_load_here(tmp_path: Path) -> None:
    model, opt = _trained_sgd()
    fparam.save(model, tmp_path / "m.safetensors")
    fparam.save(opt, tmp_path / "o.safetensors")
    twin = torch.nn.Sequential(torch.nn.Linear(3, 2))
    twin.load_state_dict(safetensors.torch.load_file(tmp_path / "m.safetensors"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[key].numpy(), np.asarray(value))
    buffers = safetensors.torch.load_file(tmp_path / "o.safetensors")  # dotted keys
    for index, entry in opt.state_dict()["state"].items():
        got = buffers[f"state.{index}.momentum_buffer"].numpy()
        np.testing.assert_array_equal(got, np.asarray(entry["momentum_buffer"]))
    safetensors.torch.save_file(twin.state_dict(), tmp_path / "t.safetensors")
    fresh = nn.Sequential(nn.Linear(3, 2))
    fresh.load_state_dict(fparam.load(tmp_path / "t.safetensors"))
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(np.asarray(fresh.state_dict()[key]), value.numpy())


def test_big_endian_arrays_are_stored_little_endian(tmp_path: Path) -> None:
    values = np.arange(6, dtype=">f4").reshape(2, 3)
    path = tmp_path / "be.safetensors"
    fparam.save({"v": values}, path)
    np.testing.assert_array_equal(np.asarray(fparam.load(path)["v"]), values)
    np.testing.assert_array_equal(safetensors.torch.load_file(path)["v"].numpy(), values)


# --------------------------------------------------------------------------- #15: optimizer files


def _trained_sgd() -> tuple[nn.Module, optim.SGD]:
    model = nn.Sequential(nn.Linear(3, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    grads = jax.tree.map(jnp.ones_like, model)
    model, opt = opt.step(model, grads)
    return model, opt


def _opt_state(opt: optim.SGD) -> str:
    state = opt.state_dict()
    return repr(jax.tree.map(lambda a: np.asarray(a).tolist(), state))


@pytest.mark.parametrize("case", ["model_file", "no_state", "no_groups"])
def test_an_optimizer_refuses_a_file_without_its_state(tmp_path: Path, case: str) -> None:
    model, opt = _trained_sgd()
    path = tmp_path / "x.safetensors"
    if case == "model_file":
        fparam.save(model, path)
    else:
        saved = dict(opt.state_dict())
        del saved["state" if case == "no_state" else "param_groups"]
        fparam.save(saved, path)
    loaded = fparam.load(path)
    before = _opt_state(opt)
    with pytest.raises(KeyError) as info:
        opt.load_state_dict(loaded)
    message = str(info.value)
    missing = {
        "model_file": "'state' and no 'param_groups'",
        "no_state": "'state'",
        "no_groups": "'param_groups'",
    }
    assert "SGD.load_state_dict() expected an optimizer state_dict" in message
    assert f"no {missing[case]} entry" in message
    if case == "model_file":
        assert "a model state_dict (2 arrays, keys ['0.weight', '0.bias'])" in message
    assert _opt_state(opt) == before
    # torch raises KeyError for the same inputs.
    twin_model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    twin = torch.optim.SGD(twin_model.parameters(), lr=0.1, momentum=0.9)
    torch_input: dict[str, Any] = dict(twin.state_dict())
    if case == "model_file":
        torch_input = dict(twin_model.state_dict())
    else:
        del torch_input["state" if case == "no_state" else "param_groups"]
    with pytest.raises(KeyError):
        twin.load_state_dict(torch_input)


def test_an_optimizer_refuses_a_list(tmp_path: Path) -> None:
    _, opt = _trained_sgd()
    before = _opt_state(opt)
    with pytest.raises(TypeError, match=r"got a list of 2 items"):
        opt.load_state_dict([1, 2])  # type: ignore[arg-type]
    assert _opt_state(opt) == before


# --------------------------------------------------------------------------- #15: not files


@posix_only
@pytest.mark.parametrize("action", ["load", "save"])
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path, action: str) -> None:
    pipe = tmp_path / "pipe.safetensors"
    os.mkfifo(pipe)
    with (
        _deadline(20),
        pytest.raises(CheckpointError, match=rf"pipe\.safetensors: cannot {action} .*a named pipe"),
    ):
        if action == "load":
            fparam.load(pipe)
        else:
            fparam.save({"w": np.ones(1, np.float32)}, pipe)
    assert stat.S_ISFIFO(pipe.stat().st_mode) and _files(tmp_path) == ["pipe.safetensors"]


@pytest.mark.parametrize("action", ["load", "save"])
def test_a_directory_is_refused(tmp_path: Path, action: str) -> None:
    directory = tmp_path / "ckpt.safetensors"
    directory.mkdir()
    with pytest.raises(CheckpointError, match=rf"ckpt\.safetensors: cannot {action} .*a directory"):
        if action == "load":
            fparam.load(directory)
        else:
            fparam.save({"w": np.ones(1, np.float32)}, directory)
    assert (
        directory.is_dir() and _files(directory) == [] and _files(tmp_path) == ["ckpt.safetensors"]
    )


@posix_only
@pytest.mark.parametrize("action", ["load", "save"])
@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_refused(action: str, device: str) -> None:
    with (
        _deadline(20),
        pytest.raises(CheckpointError, match=rf"{device}: cannot {action} .*a character device"),
    ):
        if action == "load":
            fparam.load(device)
        else:
            fparam.save({"w": np.ones(1, np.float32)}, device)
    assert stat.S_ISCHR(os.stat(device).st_mode)


@posix_only
def test_a_symlink_to_a_pipe_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.safetensors").symlink_to("pipe")
    with _deadline(20):
        for action in (lambda p: fparam.load(p), lambda p: fparam.save({"w": np.ones(1)}, p)):
            with pytest.raises(CheckpointError, match="a named pipe"):
                action(tmp_path / "link.safetensors")


# --------------------------------------------------------------------------- #15: hand-edited metadata


def _with_structure(
    path: Path, structure: str, tensors: dict[str, np.ndarray] | None = None
) -> None:
    """A file with the given skeleton and no checksum (as a hand edit that drops it would be)."""
    safetensors.numpy.save_file(
        tensors if tensors is not None else {"w": np.ones(2, np.float32)},
        path,
        metadata={"fparam.structure": structure},
    )


_BAD_STRUCTURES = {
    "not_json": "{not json",
    "list": "[1, 2]",
    "number": "5",
    "null": "null",
    "two_kinds": '{"__dict__": [], "__list__": []}',
    "dict_body_int": '{"__dict__": 5}',
    "dict_body_dict": '{"__dict__": {"a": 1}}',
    "dict_item_short": '{"__dict__": [["a"]]}',
    "dict_item_not_list": '{"__dict__": ["a"]}',
    "dict_key_list": '{"__dict__": [[["a"], {"__value__": 1}]]}',
    "dict_key_float": '{"__dict__": [[1.5, {"__value__": 1}]]}',
    "dict_key_bool": '{"__dict__": [[true, {"__value__": 1}]]}',
    "dict_key_twice": '{"__dict__": [["a", {"__value__": 1}], ["a", {"__value__": 2}]]}',
    "json_key_twice": '{"__value__": 1, "__value__": 2}',
    "list_body_int": '{"__list__": 3}',
    "tuple_body_str": '{"__tuple__": "ab"}',
    "value_list": '{"__value__": [1, 2]}',
    "value_dict": '{"__value__": {"a": 1}}',
    "tensor_int": '{"__tensor__": 3}',
    "tensor_list": '{"__tensor__": ["w"]}',
    "tensor_absent": '{"__tensor__": "absent"}',
    "tensor_twice": '{"__list__": [{"__tensor__": "w"}, {"__tensor__": "w"}]}',
    "tensor_unused": '{"__value__": 1}',
    "unknown_kind": '{"__what__": 1}',
    "huge_int": '{"__value__": ' + "9" * 5000 + "}",
    "deep_json": '{"__list__": [' * 100_000 + "]}" * 100_000,
    "deep_structure": '{"__list__": [' * (MAX_DEPTH + 5)
    + '{"__tensor__": "w"}'
    + "]}" * (MAX_DEPTH + 5),
    "bad_utf8_escape": '{"__value__": "\\ud800\\u"}',
}


@pytest.mark.parametrize("structure", list(_BAD_STRUCTURES.values()), ids=list(_BAD_STRUCTURES))
def test_hand_edited_structure_is_a_checkpoint_error(tmp_path: Path, structure: str) -> None:
    path = tmp_path / "edited.safetensors"
    _with_structure(path, structure)
    data = path.read_bytes()
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        fparam.load(path)
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    "order",
    ["[", '"w"', '["w", "w"]', '["x"]', "[1]", '{"w": 1}', "[]"],
)
def test_hand_edited_key_order_is_a_checkpoint_error(tmp_path: Path, order: str) -> None:
    path = tmp_path / "order.safetensors"
    safetensors.numpy.save_file(
        {"w": np.ones(1, np.float32)}, path, metadata={"fparam.order": order}
    )
    with pytest.raises(CheckpointError, match=r"order\.safetensors: corrupt key-order"):
        fparam.load(path)


@pytest.mark.parametrize(
    "checksum",
    [
        "{",
        "[]",
        '{"tensors": {}}',
        '{"tensors": [], "metadata": "0"}',
        '{"tensors": {"w": 1}, "metadata": "0"}',
    ],
)
def test_hand_edited_checksum_is_a_checkpoint_error(tmp_path: Path, checksum: str) -> None:
    path = tmp_path / "crc.safetensors"
    safetensors.numpy.save_file(
        {"w": np.ones(1, np.float32)}, path, metadata={"fparam.crc32": checksum}
    )
    with pytest.raises(CheckpointError, match=r"crc\.safetensors: corrupt"):
        fparam.load(path)


_BAD_HEADERS = {
    "duplicate_tensor": b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    "metadata_not_map": b'{"__metadata__":[1],"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    "metadata_int_value": b'{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    "entry_not_map": b'{"w":5}',
    "shape_negative": b'{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
    "shape_float": b'{"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
    "offsets_str": b'{"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}',
    "offsets_huge": b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,' + b"9" * 40 + b"]}}",
    "dtype_unknown": b'{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}}',
    "dtype_int": b'{"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}',
    "size_mismatch": b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "not_utf8": b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
}


@pytest.mark.parametrize("header", list(_BAD_HEADERS.values()), ids=list(_BAD_HEADERS))
def test_hand_edited_header_is_a_checkpoint_error(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "header.safetensors"
    _raw_file(path, header, b"\x00" * 4)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        fparam.load(path)


def _mutations(node: Any, rng: np.random.Generator) -> Any:
    """A random edit somewhere in a JSON value: a wrong type, a deletion, an extra item."""
    replacements = [None, 0, -1, 1.5, "x", [], {}, [[]], {"__tensor__": "w"}, True, 10**30]
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = list(node)[int(rng.integers(len(node)))]
        out = dict(node)
        if rng.random() < 0.15:
            del out[key]
        else:
            out[key] = _mutations(node[key], rng)
        return out
    if isinstance(node, list) and node and rng.random() < 0.7:
        index = int(rng.integers(len(node)))
        out = list(node)
        choice = rng.random()
        if choice < 0.15:
            del out[index]
        elif choice < 0.3:
            out.append(out[index])
        else:
            out[index] = _mutations(node[index], rng)
        return out
    return replacements[int(rng.integers(len(replacements)))]


def test_fuzzed_structure_metadata_never_escapes_as_another_error(tmp_path: Path) -> None:
    _, opt = _trained_sgd()
    path = tmp_path / "fuzz.safetensors"
    fparam.save(opt, path)
    header, _ = _header(path.read_bytes())
    skeleton = json.loads(header["__metadata__"]["fparam.structure"])
    tensors = {k: v for k, v in safetensors.numpy.load_file(path).items()}
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(300):
        _with_structure(path, json.dumps(_mutations(skeleton, rng)), tensors)
        try:
            fparam.load(path)
        except CheckpointError as error:
            assert "fuzz.safetensors" in str(error)
            outcomes["error"] += 1
        else:  # a still well-formed skeleton (a number changed, an entry dropped)
            outcomes["loaded"] += 1
    assert outcomes["error"] > 100 and outcomes["loaded"] > 10, outcomes


# --------------------------------------------------------------------------- #15: stale temporaries


@posix_only
def test_a_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    big = np.arange(1 << 18, dtype=np.float32)  # 1 MiB
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, time, numpy as np, fparam
                os.fsync = lambda fd: (print("written", flush=True), time.sleep(600))
                fparam.save({{"w": np.arange(1 << 18, dtype=np.float32)}}, {str(path)!r})
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
    finally:
        writer.kill()
        writer.wait()
    (stale,) = _files(tmp_path)
    assert (tmp_path / stale).stat().st_size >= big.nbytes  # as large as the checkpoint
    assert not path.exists()

    # Temporaries that must survive: a live writer's, another destination's, another host's.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tag = stale.split("-")[1]
        host = stale.split("-")[2]
        keep = [
            f".fparam-{tag}-{host}-{live.pid}-0123abcd.tmp",
            f".fparam-{'0' * 12}-{host}-{writer.pid}-0123abcd.tmp",
            f".fparam-{tag}-{'f' * 6 if host != 'f' * 6 else 'e' * 6}-{writer.pid}-0123abcd.tmp",
        ]
        for name in keep:
            (tmp_path / name).write_bytes(b"partial")
        fparam.save({"w": big}, path)
        assert _files(tmp_path) == sorted(["ckpt.safetensors", *keep])
    finally:
        live.kill()
        live.wait()
    np.testing.assert_array_equal(np.asarray(fparam.load(path)["w"]), big)


def test_temporary_names_have_a_fixed_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(source: Any, destination: Any) -> None:
        seen.append(Path(source).name)
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    for name in ("a", "b" * 200):
        fparam.save({"w": np.ones(1, np.float32)}, tmp_path / name)
    assert len(seen) == 2 and len(seen[0]) == len(seen[1]) <= 64, seen


# --------------------------------------------------------------------------- #15: same bytes


def test_two_saves_of_the_same_state_write_the_same_bytes(tmp_path: Path) -> None:
    model, opt = _trained_sgd()
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 3, "note": "é"}
    for i in range(2):
        fparam.save(model, tmp_path / f"m{i}")
        fparam.save(opt, tmp_path / f"o{i}")
        fparam.save(state, tmp_path / f"s{i}")
    for stem in "mos":
        assert (tmp_path / f"{stem}0").read_bytes() == (tmp_path / f"{stem}1").read_bytes(), stem
    fparam.save(model.state_dict(), tmp_path / "sd")
    assert (tmp_path / "sd").read_bytes() == (tmp_path / "m0").read_bytes()

    # And in another process, with another hash seed.
    arrays = {k: np.asarray(v).tolist() for k, v in model.state_dict().items()}
    result = _run(
        f"""
        import numpy as np, fparam
        fparam.save({{k: np.asarray(v, np.float32) for k, v in {arrays!r}.items()}}, {str(tmp_path / "m2")!r})
        """,
        PYTHONHASHSEED="123",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m2").read_bytes() == (tmp_path / "m0").read_bytes()


def test_concurrent_saves_of_one_destination_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    errors: list[BaseException] = []

    def write(value: float) -> None:
        try:
            for _ in range(5):
                fparam.save({"w": np.full(1000, value, np.float32)}, path)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(float(i),)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    values = np.asarray(fparam.load(path)["w"])
    assert values.min() == values.max() and _files(tmp_path) == ["c.safetensors"]


def test_crc_is_over_descriptor_and_bytes(tmp_path: Path) -> None:
    """The stored checksum is what the module docstring says: CRC-32 of [key, dtype, shape]
    as JSON, continued over the raw bytes (so other tools can verify a file)."""
    path = tmp_path / "doc.safetensors"
    values = np.arange(5, dtype=np.float32)
    fparam.save({"w": values}, path)
    header, _ = _header(path.read_bytes())
    crcs = json.loads(header["__metadata__"]["fparam.crc32"])
    start = zlib.crc32(json.dumps(["w", "F32", [5]]).encode())
    assert crcs["tensors"] == {"w": f"{zlib.crc32(values.tobytes(), start):08x}"}
