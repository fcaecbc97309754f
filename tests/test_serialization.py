"""``fparam.save`` / ``fparam.load``: safetensors checkpoints, torch-compatible, never pickle."""

from __future__ import annotations

import math
import os
import pickle
import re
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import fparam
from fparam import nn, optim
from fparam.serialization import CheckpointError

_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}


# --------------------------------------------------------------------------- helpers


class Scaled(nn.Module):
    """A small model with a 0-d parameter and a buffer (both must round-trip exactly)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        self.scale = nn.Parameter(jnp.full((), 1.5, jnp.float32))
        self.register_buffer("offset", jnp.arange(3, dtype=jnp.float32))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.body(x) * self.scale + self.offset[None, :]


def _mse(output: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean((output - target) ** 2)


@jax.jit
def _train_step(model: Any, opt: Any, x: Any, y: Any) -> Any:
    loss, grads = fparam.value_and_grad(lambda m: _mse(m(x), y))(model)
    model, opt = opt.step(model, grads)
    return model, opt, loss


def _batches(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((5, 4)).astype(np.float32),
            rng.standard_normal((5, 3)).astype(np.float32),
        )
        for _ in range(n)
    ]


def _assert_same(got: Any, expected: Any, where: str = "root") -> None:
    """Equal structure (container kinds, key order and key types), values and dtypes."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), where
        assert list(got) == list(expected), where
        assert [type(k) for k in got] == [type(k) for k in expected], where
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected), where
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            _assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, (jax.Array, np.ndarray, torch.Tensor)):
        expected = expected.numpy() if isinstance(expected, torch.Tensor) else expected
        assert isinstance(got, jax.Array), where
        assert got.shape == expected.shape and got.dtype == expected.dtype, where
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=where)
    else:
        assert type(got) is type(expected), where
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got), where
        else:
            assert got == expected, where


def _trained(steps: int = 2) -> tuple[Scaled, optim.SGD]:
    model = Scaled()
    opt = optim.SGD(model.parameters(), **_SGD)
    for x, y in _batches(steps):
        model, opt, _ = _train_step(model, opt, x, y)
    return model, opt


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --------------------------------------------------------------------------- round trips


def test_module_state_dict_round_trip(tmp_path: Path) -> None:
    model = Scaled()
    path = tmp_path / "model.safetensors"
    fparam.save(model.state_dict(), path)
    loaded = fparam.load(path)
    assert isinstance(loaded, OrderedDict)
    _assert_same(loaded, dict(model.state_dict()))
    assert loaded["scale"].shape == ()  # a 0-d parameter stays 0-d

    fresh = Scaled()
    fresh.load_state_dict(loaded)
    _assert_same(dict(fresh.state_dict()), dict(model.state_dict()))


def test_optimizer_state_dict_round_trip(tmp_path: Path) -> None:
    model = Scaled()
    groups = [
        {"params": list(model.body.parameters()), "lr": 0.05},
        {"params": [model.get_parameter("scale")], "momentum": 0.5, "nesterov": False},
    ]
    opt = optim.SGD(groups, **_SGD)
    for x, y in _batches(2):
        model, opt, _ = _train_step(model, opt, x, y)
    state = opt.state_dict()
    # What must survive: int keys, lists of ints, None, bools, floats, nested dicts.
    assert list(state["state"]) == [0, 1, 2, 3, 4]
    assert state["param_groups"][0]["foreach"] is None
    assert state["param_groups"][1]["params"] == [4]

    path = tmp_path / "opt.safetensors"
    fparam.save(state, path)
    loaded = fparam.load(path)
    _assert_same(loaded, state)
    assert loaded["state"][4]["momentum_buffer"].shape == ()


def test_nested_values_round_trip(tmp_path: Path) -> None:
    obj = {
        "step": 7,
        "lr": 0.125,
        "nan": float("nan"),
        "inf": -float("inf"),
        "none": None,
        "flag": True,
        "name": "run-1",
        3: {0: [1, 2.5, None, "x"], 1: (jnp.ones((2, 2)), [jnp.zeros(())])},
        "arrays": {
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
            "i32": np.arange(4, dtype=np.int32),
            "u8": np.arange(5, dtype=np.uint8),
            "bool": np.array([True, False]),
            "bf16": jnp.arange(3, dtype=jnp.bfloat16),
            "scalar": np.array(2.5, np.float32),
            "empty": np.zeros((0, 3), np.float32),
        },
        "torch": torch.arange(3, dtype=torch.float32),
    }
    path = tmp_path / "nested.safetensors"
    fparam.save(obj, path)
    _assert_same(fparam.load(path), obj)


def test_numpy_scalars_are_saved_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "n.safetensors"
    fparam.save({"a": np.float32(0.5), "b": np.int64(3)}, path)
    _assert_same(fparam.load(path), {"a": 0.5, "b": 3})


def test_module_and_optimizer_objects_save_their_state_dict(tmp_path: Path) -> None:
    model, opt = _trained()
    fparam.save(model, tmp_path / "m.safetensors")
    fparam.save(opt, tmp_path / "o.safetensors")
    _assert_same(fparam.load(tmp_path / "m.safetensors"), dict(model.state_dict()))
    _assert_same(fparam.load(tmp_path / "o.safetensors"), opt.state_dict())


def test_key_order_is_preserved(tmp_path: Path) -> None:
    layers = OrderedDict(
        [("zeta", nn.Linear(2, 2)), ("10", nn.Tanh()), ("2", nn.Linear(2, 2)), ("a", nn.ReLU())]
    )
    model = nn.Sequential(layers)
    model.register_buffer("b_first", jnp.zeros(1))
    keys = list(model.state_dict())
    assert keys != sorted(keys)
    fparam.save(model, tmp_path / "m.safetensors")
    assert list(fparam.load(tmp_path / "m.safetensors")) == keys


def test_path_may_be_a_string(tmp_path: Path) -> None:
    fparam.save({"w": np.ones(2, np.float32)}, str(tmp_path / "s.safetensors"))
    _assert_same(fparam.load(str(tmp_path / "s.safetensors")), {"w": np.ones(2, np.float32)})


# --------------------------------------------------------------------------- torch interop


def _torch_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        OrderedDict(
            fc=torch.nn.Linear(4, 3),
            act=torch.nn.Tanh(),
            extra=torch.nn.ParameterDict({"t": torch.nn.Parameter(torch.tensor(0.25))}),
            crit=torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5])),
        )
    )


def _fparam_model() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            fc=nn.Linear(4, 3),
            act=nn.Tanh(),
            extra=nn.ParameterDict({"t": jnp.asarray(0.75, jnp.float32)}),
            crit=nn.CrossEntropyLoss(weight=jnp.asarray([0.5, 0.5, 3.0], jnp.float32)),
        )
    )


def test_fparam_file_loads_into_torch(tmp_path: Path) -> None:
    model = _fparam_model()
    path = tmp_path / "m.safetensors"
    fparam.save(model, path)
    torch_model = _torch_model()
    result = torch_model.load_state_dict(safetensors.torch.load_file(path))
    assert not result.missing_keys and not result.unexpected_keys
    assert list(torch_model.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        got = torch_model.state_dict()[key]
        assert tuple(got.shape) == value.shape  # the 0-d parameter included
        np.testing.assert_array_equal(got.numpy(), np.asarray(value))


def test_torch_file_loads_into_the_fparam_twin(tmp_path: Path) -> None:
    torch_model = _torch_model()
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file(torch_model.state_dict(), path)
    loaded = fparam.load(path)
    assert sorted(loaded) == sorted(torch_model.state_dict())  # torch's file: sorted keys
    model = _fparam_model()
    model.load_state_dict(loaded)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(model.state_dict()[key]), value.numpy())
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(model.fc(x)), torch_model.fc(torch.from_numpy(x)).detach().numpy(), atol=1e-6
    )


def test_torch_state_dicts_save_directly(tmp_path: Path) -> None:
    torch_model = _torch_model().to(torch.bfloat16)
    fparam.save(torch_model.state_dict(), tmp_path / "bf16.safetensors")
    loaded = fparam.load(tmp_path / "bf16.safetensors")
    assert all(v.dtype == jnp.bfloat16 for v in loaded.values())
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(loaded[key], np.float32), value.float().numpy())


# --------------------------------------------------------------------------- atomic writes


def _fail(*args: Any, **kwargs: Any) -> None:
    raise OSError("disk on fire")


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (os, "replace"),  # everything written, the rename fails
        (os, "fsync"),  # a failure mid-write
        (fparam.serialization, "_prepare"),  # the serializer fails before any file exists
    ],
)
def test_a_failed_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Any, name: str
) -> None:
    path = tmp_path / "ckpt.safetensors"
    fparam.save({"w": np.zeros(3, np.float32)}, path)
    before = path.read_bytes()
    listing = _files(tmp_path)
    monkeypatch.setattr(target, name, _fail)
    with pytest.raises(OSError, match="disk on fire"):
        fparam.save({"w": np.ones(3, np.float32), "v": np.ones(2, np.float32)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _files(tmp_path) == listing  # no temporary file left behind
    _assert_same(fparam.load(path), {"w": np.zeros(3, np.float32)})


def test_an_interrupted_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fparam.save({"w": np.ones(3, np.float32)}, tmp_path / "new.safetensors")
    assert _files(tmp_path) == []


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    fparam.save({"w": np.zeros(3, np.float32)}, path)
    fparam.save({"v": np.ones(2, np.int32)}, path)
    _assert_same(fparam.load(path), {"v": np.ones(2, np.int32)})
    assert _files(tmp_path) == ["ckpt.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_file_mode_is_what_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    fparam.save({"w": np.ones(1, np.float32)}, tmp_path / "c.safetensors")
    mode = stat.S_IMODE((tmp_path / "c.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


# --------------------------------------------------------------------------- bad files


def _good_bytes(tmp_path: Path) -> bytes:
    fparam.save({"w": np.arange(64, dtype=np.float32), "b": np.ones(4, np.float32)}, tmp_path / "g")
    return (tmp_path / "g").read_bytes()


@pytest.mark.parametrize("cut", ["empty", "in_length", "in_header", "in_data", "last_byte"])
def test_truncated_file(tmp_path: Path, cut: str) -> None:
    data = _good_bytes(tmp_path)
    header = 8 + int.from_bytes(data[:8], "little")
    size = {
        "empty": 0,
        "in_length": 4,
        "in_header": header // 2,
        "in_data": (header + len(data)) // 2,
        "last_byte": len(data) - 1,
    }[cut]
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[:size])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        fparam.load(path)


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(0).bytes(512),
        (16).to_bytes(8, "little") + b"this is not json",
        (2).to_bytes(8, "little") + b"[]",
    ],
    ids=["random", "header_not_json", "header_not_a_dict"],
)
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        fparam.load(path)


def _side_effect(marker: str) -> None:
    Path(marker).write_text("unpickled")


class _Payload:
    """Unpickling this object writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (_side_effect, (self.marker,))


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "pickle"])
def test_pickle_files_are_refused_and_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    marker = tmp_path / "marker"
    obj = {"w": torch.ones(2), "payload": _Payload(marker)}
    path = tmp_path / "model.pt"
    if writer == "torch_zip":
        torch.save(obj, path)
    elif writer == "torch_legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj))

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("fparam.load unpickled something")

    with monkeypatch.context() as patch:
        for name in ("load", "loads", "Unpickler"):
            patch.setattr(pickle, name, forbidden)
        patch.setattr(torch, "load", forbidden)
        with pytest.raises(CheckpointError, match=r"model\.pt"):
            fparam.load(path)
    assert not marker.exists()

    # The payload is live: an unpickler would have run it.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        fparam.load(path)


def test_a_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=str(tmp_path.name)):
        fparam.load(tmp_path)


@pytest.mark.parametrize(
    "structure",
    ["{not json", '{"__dict__": 5}', '{"__tensor__": "absent"}', '{"__what__": 1}', "[1, 2]"],
)
def test_corrupt_structure_metadata(tmp_path: Path, structure: str) -> None:
    path = tmp_path / "meta.safetensors"
    safetensors.numpy.save_file(
        {"w": np.ones(2, np.float32)}, path, metadata={"fparam.structure": structure}
    )
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        fparam.load(path)


def test_int64_values_jax_cannot_hold_are_refused(tmp_path: Path) -> None:
    if jax.config.jax_enable_x64:  # pragma: no cover - the suite runs in 32-bit mode
        pytest.skip("64-bit mode holds them")
    path = tmp_path / "ints.safetensors"
    fparam.save({"small": np.arange(3, dtype=np.int64)}, path)
    _assert_same(fparam.load(path), {"small": np.arange(3, dtype=np.int32)})
    fparam.save({"big": np.array([2**40], np.int64)}, path)
    with pytest.raises(CheckpointError, match=r"ints\.safetensors.*'big'.*jax_enable_x64"):
        fparam.load(path)


# --------------------------------------------------------------------------- values that can't be stored


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"w": _Opaque()}, r"'w' of type _Opaque"),
        ({"outer": {"inner": [1, _Opaque()]}}, r"'outer\.inner\.1' of type _Opaque"),
        ({(1, 2): np.ones(2)}, r"key \(1, 2\) of type tuple"),
        ({"a": {True: 1}}, r"key True of type bool"),
        ({1.5: np.ones(2)}, r"key 1.5 of type float"),
        ({"s": np.array(["text"])}, r"cannot save"),
        ({"o": np.array([None, 1], dtype=object)}, r"'o': dtype object"),
        ({"a": {"b": np.ones(1)}, "a.b": np.ones(1)}, r"same key 'a\.b'"),
    ],
    ids=[
        "object",
        "nested_object",
        "tuple_key",
        "bool_key",
        "float_key",
        "str_array",
        "obj_array",
        "colliding_keys",
    ],
)
def test_values_that_cannot_be_stored(tmp_path: Path, obj: Any, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    with pytest.raises(CheckpointError, match=match) as info:
        fparam.save(obj, path)
    assert "bad.safetensors" in str(info.value)
    assert _files(tmp_path) == []  # nothing written, not even a temporary file


def test_saving_a_traced_value_is_refused(tmp_path: Path) -> None:
    def inside(x: jax.Array) -> jax.Array:
        fparam.save({"x": x}, tmp_path / "traced.safetensors")
        return x

    with pytest.raises(CheckpointError, match="traced"):
        jax.jit(inside)(np.ones(2, np.float32))


# --------------------------------------------------------------------------- all or none


def test_key_mismatch_after_load_leaves_the_model_untouched(tmp_path: Path) -> None:
    other = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3), act=nn.Tanh()))
    fparam.save(other, tmp_path / "other.safetensors")
    model = _fparam_model()
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "extra\.t"'):
        model.load_state_dict(fparam.load(tmp_path / "other.safetensors"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), before[key])  # fc.* not loaded either


def test_shape_mismatch_after_load_leaves_the_model_untouched(tmp_path: Path) -> None:
    saved = _fparam_model()
    state = dict(saved.state_dict())
    state["crit.weight"] = jnp.ones(5, jnp.float32)  # the last key has the wrong shape
    fparam.save(state, tmp_path / "s.safetensors")
    model = _fparam_model()
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"size mismatch for crit\.weight"):
        model.load_state_dict(fparam.load(tmp_path / "s.safetensors"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), before[key])


def test_mismatched_optimizer_file_leaves_the_optimizer_untouched(tmp_path: Path) -> None:
    model, opt = _trained()
    other = optim.SGD(list(model.parameters())[:2], lr=0.5, momentum=0.9)
    fparam.save(other, tmp_path / "o.safetensors")
    before = opt.state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(fparam.load(tmp_path / "o.safetensors"))
    _assert_same(opt.state_dict(), before)


# --------------------------------------------------------------------------- exact resume


def test_exact_resume_through_files(tmp_path: Path) -> None:
    n, m = 4, 4
    batches = _batches(n + m)
    fparam.manual_seed(0)
    model = Scaled()
    opt = optim.SGD(model.parameters(), **_SGD)
    for x, y in batches[:n]:
        model, opt, _ = _train_step(model, opt, x, y)
    fparam.save(model, tmp_path / "model.safetensors")
    fparam.save(opt, tmp_path / "opt.safetensors")
    for x, y in batches[n:]:  # the uninterrupted run
        model, opt, _ = _train_step(model, opt, x, y)

    fparam.manual_seed(1)  # fresh objects: other initial values, other options
    resumed = Scaled()
    resumed_opt = optim.SGD(resumed.parameters(), lr=0.5, momentum=0.3)
    assert not np.array_equal(np.asarray(resumed.body[0].weight), np.asarray(model.body[0].weight))
    resumed.load_state_dict(fparam.load(tmp_path / "model.safetensors"))
    resumed_opt.load_state_dict(fparam.load(tmp_path / "opt.safetensors"))
    for x, y in batches[n:]:
        resumed, resumed_opt, _ = _train_step(resumed, resumed_opt, x, y)

    expected = model.state_dict()
    for key, value in resumed.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected[key]), err_msg=key)
    _assert_same(resumed_opt.state_dict(), opt.state_dict())


# Measured max |fparam - torch| after the 4 continued steps: 6.0e-8 over parameters and momentum
# buffers (|v| <= 0.7; float32 rounding in different kernels), so ~15x headroom.
_CROSS_ATOL = 1e-6


def test_resume_a_torch_run_in_fparam(tmp_path: Path) -> None:
    n, m = 3, 4
    batches = _batches(n + m, seed=1)
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    torch_opt = torch.optim.SGD(torch_model.parameters(), **_SGD)

    def torch_step(x: np.ndarray, y: np.ndarray) -> None:
        torch_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        torch_opt.step()

    for x, y in batches[:n]:
        torch_step(x, y)
    fparam.save(torch_model.state_dict(), tmp_path / "model.safetensors")
    fparam.save(torch_opt.state_dict(), tmp_path / "opt.safetensors")

    fparam.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = optim.SGD(model.parameters(), lr=1.0)
    model.load_state_dict(fparam.load(tmp_path / "model.safetensors"))
    opt.load_state_dict(fparam.load(tmp_path / "opt.safetensors"))
    assert opt.state_dict()["param_groups"] == torch_opt.state_dict()["param_groups"]

    for x, y in batches[n:]:
        torch_step(x, y)
        model, opt, _ = _train_step(model, opt, x, y)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_allclose(
            np.asarray(model.state_dict()[key]), value.numpy(), rtol=0, atol=_CROSS_ATOL
        )
    state = opt.state_dict()["state"]
    for index, entry in torch_opt.state_dict()["state"].items():
        np.testing.assert_allclose(
            np.asarray(state[index]["momentum_buffer"]),
            entry["momentum_buffer"].numpy(),
            rtol=0,
            atol=_CROSS_ATOL,
        )
