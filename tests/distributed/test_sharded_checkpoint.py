"""Checkpoints of sharded models: ``fparam.distributed.save_sharded`` / ``load_sharded``,
``fparam.save`` / ``fparam.load`` under a mesh and in a two-process job, and orbax.

The multi-device checks run in child processes (``_devices.run_script``): one with 8 simulated
devices, and one job of two processes with 4 devices each (``jax.distributed.initialize`` over a
localhost coordinator; JAX runs CPU collectives over gloo). The error paths run here, on one
device.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fparam
from fparam import nn
from fparam.distributed import checkpoint as ckpt
from fparam.distributed import load_sharded, save_sharded
from fparam.serialization import CheckpointError

from ._devices import PRELUDE, ROOT, environment, run_script

# Shared by both children: a small model with a conv, linears, a BatchNorm (an int buffer) and
# the placements a torch user knows, as sharding rules keyed by state_dict key.
COMMON = """
import json, os, re, time
from pathlib import Path
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding
import fparam, fparam.distributed
from fparam import nn, optim
from fparam import serialization as ser
from fparam.distributed import checkpoint as ckpt

AUTO = jax.sharding.AxisType.Auto


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)

    def forward(self, x):
        x = jax.nn.relu(self.bn(self.conv(x))).mean(axis=(2, 3))
        return self.fc2(jax.nn.relu(self.fc1(x)))


def key_of(path):
    return jax.tree_util.keystr(path, simple=True, separator=".")


def fsdp(axis, size):
    # ZeRO-3 / fully_shard: the first axis that divides over `axis`, else replicated.
    def spec(key, shape):
        for i, n in enumerate(shape):
            if n % size == 0:
                return P(*([None] * i), axis)
        return P()
    return spec


def tp(key, shape):
    # ColwiseParallel fc1, RowwiseParallel fc2, the rest replicated.
    if key.startswith("fc1."):
        return P("model") if key.endswith("bias") else P("model", None)
    if key == "fc2.weight":
        return P(None, "model")
    return P()


def two_d(key, shape):
    spec = tp(key, shape)
    if spec != P() or not shape or shape[0] % 2:
        return spec
    return P("data")


def place(tree, mesh, rule):
    # From the host: each device receives its slice (no resharding program to compile).
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jax.device_put(np.asarray(x), NamedSharding(mesh, rule(key_of(p), x.shape))),
        tree,
    )


def randomized(model, seed):
    # Every entry drawn on the host (running stats and num_batches_tracked off their init).
    rng = np.random.default_rng(seed)
    model.load_state_dict({
        k: (rng.normal(size=v.shape) if v.dtype.kind == "f" else rng.integers(1, 9, v.shape))
        .astype(v.dtype)
        for k, v in model.state_dict().items()
    })
    return model


def same_sharding(a, b):
    return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def shards(a):
    return [(s.device.id, s.index, np.asarray(s.data)) for s in a.addressable_shards]


def assert_same(a, b, key):
    # Same global placement and, shard by shard, the same values (no fetch of a global array:
    # this also runs where an array spans processes).
    assert same_sharding(a, b), (key, a.sharding, b.sharding)
    for (da, ia, xa), (db, ib, xb) in zip(shards(a), shards(b)):
        assert da == db and ia == ib and np.array_equal(xa, xb), key


def pieces_written(directory):
    # Every piece stored, over all files: (key, box) -> bytes.
    out = {}
    for name in os.listdir(directory):
        if name.endswith(".safetensors"):
            with open(os.path.join(directory, name), "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            for piece, entry in header.items():
                if piece != "__metadata__":
                    assert piece not in out, piece
                    out[piece] = entry["data_offsets"][1] - entry["data_offsets"][0]
    return out
"""


def test_sharded_checkpoints_on_8_devices(tmp_path: Path) -> None:
    run_script(
        f"ROOT_PATH = {str(tmp_path)!r}\n"
        + COMMON
        + """
import orbax.checkpoint as ocp

root = Path(ROOT_PATH)
devices = jax.devices()
mesh1 = jax.make_mesh((8,), ("data",), axis_types=(AUTO,))
mesh2 = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AUTO, AUTO))
layouts = {
    "dp": (mesh1, lambda k, s: P()),
    "fsdp": (mesh1, fsdp("data", 8)),
    "tp": (mesh2, tp),
    "2d": (mesh2, two_d),
}
base = randomized(Net(), 0)
reference = {k: np.asarray(v) for k, v in base.state_dict().items()}

# Record what the reader is asked for: each device must ask for its own slice only.
requests = []
read = ckpt._Reader.read
ckpt._Reader.read = lambda self, entry, box: (requests.append(box), read(self, entry, box))[1]

names = list(layouts)
for i, name in enumerate(names):
    mesh, rule = layouts[name]
    model = place(base, mesh, rule)
    directory = root / name
    # A module's state_dict() (the flat case) for half the layouts, the module for the rest.
    fparam.distributed.save_sharded(model.state_dict() if i % 2 else model, directory)
    # One writer per piece: every distinct shard once, a replicated array once, no more.
    written = pieces_written(directory)
    expected = {}
    for key, value in model.state_dict().items():
        for box, device in ckpt._pieces(value):
            expected[ckpt._piece_name(key, box)] = int(np.prod([b - a for a, b in box])) * value.dtype.itemsize
    assert written == expected, (name, sorted(set(written) ^ set(expected)))
    if name == "dp":
        assert len(written) == len(reference)  # replicated: each array is one piece, once

    # Load into every layout (resharding), each device reading its slice only.
    for other in names:
        target = place(base, *layouts[other])
        requests.clear()
        loaded = fparam.distributed.load_sharded(directory, like=target)
        assert list(loaded) == list(reference), list(loaded)
        for key, value in loaded.items():
            assert_same(value, target.state_dict()[key], (name, other, key))
            assert np.array_equal(np.asarray(value), reference[key]), (name, other, key)
        sizes = {tuple(b - a for a, b in box) for box in requests}
        full = {tuple(v.shape) for v in reference.values() if v.ndim}
        shard_shapes = {s.data.shape for v in target.state_dict().values() for s in v.addressable_shards}
        assert sizes <= shard_shapes, (name, other, sizes - shard_shapes)
        if other == "fsdp":  # sharded targets never ask for a whole array
            assert not sizes & (full - shard_shapes), (name, other)

# load_state_dict keeps the sharding and moves nothing through the host or device 0.
target = place(Net(), *layouts["2d"])
loaded = fparam.distributed.load_sharded(root / "fsdp", like=target)
with jax.transfer_guard_device_to_host("disallow"), jax.transfer_guard_device_to_device("disallow"):
    target.load_state_dict(loaded)
for key, value in target.state_dict().items():
    assert_same(value, loaded[key], key)
    assert np.array_equal(np.asarray(value), reference[key]), key

# One device, and no placement (as fparam.load gives it: uncommitted).
one = fparam.distributed.load_sharded(root / "fsdp", shardings=SingleDeviceSharding(devices[5]))
assert all(v.sharding == SingleDeviceSharding(devices[5]) for v in one.values())
free = fparam.distributed.load_sharded(root / "2d")
assert all(not v.committed and np.array_equal(v, reference[k]) for k, v in free.items())
# shardings by key (flat), winning over like; keys without one follow like.
mixed = fparam.distributed.load_sharded(
    root / "tp", like=place(base, *layouts["fsdp"]),
    shardings={"fc1.weight": NamedSharding(mesh1, P(None, "data"))},
)
assert mixed["fc1.weight"].sharding.spec == P(None, "data")
assert mixed["conv.weight"].sharding.spec == P("data")

# Optimizer state (nested): saved as FSDP, loaded into a fresh optimizer over a TP model; its
# state is born where the optimizer would create it (its parameter's sharding).
def grads_like(model, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jax.device_put(rng.normal(size=a.shape).astype(np.float32), a.sharding)
        if jnp.issubdtype(a.dtype, jnp.floating) else a,
        model,
    )

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
train = jax.jit(lambda m, o, g: o.step(m, g), compiler_options=FAST)
model = place(base, *layouts["fsdp"])
opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
for step in range(2):
    model, opt = train(model, opt, grads_like(model, step))
fparam.distributed.save_sharded(opt.state_dict(), root / "opt")
fparam.distributed.save_sharded(model, root / "model")

model_b = place(Net(), *layouts["tp"])
model_b.load_state_dict(fparam.distributed.load_sharded(root / "model", like=model_b))
opt_b = optim.Adam(model_b.parameters(), lr=0.5)
state = fparam.distributed.load_sharded(root / "opt", like=opt_b)
saved = opt.state_dict()
assert state["param_groups"] == saved["param_groups"]
params_b = {k: p.data for k, p in model_b.named_parameters()}
for i, (key, _) in enumerate(model.named_parameters()):
    for name, value in state["state"][i].items():
        assert np.array_equal(value, saved["state"][i][name]), (key, name)
        if value.ndim:
            assert same_sharding(value, params_b[key]), (key, name, value.sharding)
opt_b.load_state_dict(state)
for i, (key, _) in enumerate(model.named_parameters()):
    for name, value in opt_b.state_dict()["state"][i].items():
        assert np.array_equal(value, saved["state"][i][name]), (key, name)
        if value.ndim:
            assert same_sharding(value, params_b[key]), (key, name)
g = grads_like(model, 7)
model, opt = train(model, opt, g)
model_b, opt_b = train(model_b, opt_b, jax.tree.map(lambda a, b: jax.device_put(a, b.sharding), g, model_b))
for key, value in model.state_dict().items():
    np.testing.assert_allclose(model_b.state_dict()[key], value, rtol=1e-6, atol=1e-6, err_msg=key)

# fparam.save writes one file; fparam.load(like=/shardings=) reads each device's slice of it.
fsdp_model = place(base, *layouts["fsdp"])
fparam.save(fsdp_model, root / "one.safetensors")
for other in names:
    target = place(base, *layouts[other])
    requests.clear()
    loaded = fparam.load(root / "one.safetensors", like=target)
    for key, value in loaded.items():
        assert_same(value, target.state_dict()[key], (other, key))
        assert np.array_equal(np.asarray(value), reference[key])
    shard_shapes = {s.data.shape for v in target.state_dict().values() for s in v.addressable_shards}
    assert {tuple(b - a for a, b in box) for box in requests} <= shard_shapes, other
replicated = NamedSharding(mesh1, P())
assert all(v.sharding == replicated for v in fparam.load(root / "one.safetensors", shardings=replicated).values())
ostate = fparam.load(root / "one.safetensors")  # unchanged without like/shardings
assert all(not v.committed for v in ostate.values())
ckpt._Reader.read = read

# orbax: fparam models and optimizers are pytrees; restore into a TP abstract target (the
# TP model and optimizer of above: the structure of the saved ones, placed differently).
target_model, target_opt = model_b, opt_b
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(root / "orbax", {"model": model, "optim": opt})
checkpointer.wait_until_finished()
abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"model": target_model, "optim": target_opt})
restored = checkpointer.restore(root / "orbax", abstract)
assert type(restored["model"]) is Net and type(restored["optim"]) is optim.Adam
for (path, got), want, like in zip(
    jax.tree_util.tree_flatten_with_path(restored)[0],
    jax.tree.leaves({"model": model, "optim": opt}),
    jax.tree.leaves({"model": target_model, "optim": target_opt}),
):
    assert got.sharding == like.sharding, (jax.tree_util.keystr(path), got.sharding, like.sharding)
    assert np.array_equal(got, want), jax.tree_util.keystr(path)
assert restored["optim"].param_groups[0]["lr"] == opt.param_groups[0]["lr"]
# ...and the other way: a state_dict through orbax, then load_state_dict.
checkpointer.save(root / "orbax_sd", model.state_dict())
checkpointer.wait_until_finished()
abstract_sd = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_model.state_dict())
target_model.load_state_dict(checkpointer.restore(root / "orbax_sd", abstract_sd))
for key, value in model.state_dict().items():
    assert_same(target_model.state_dict()[key], place(model, *layouts["tp"]).state_dict()[key], key)
checkpointer.close()

# The documentation's examples run (8 devices).
import re as _re
text = Path("docs/checkpoints-sharded.md").read_text()
blocks = _re.findall(r"```python\\n(.*?)\\n```", text, _re.S)
assert blocks
os.chdir(root)
namespace = {"__name__": "__docs__"}
for block in blocks:
    if "jax.distributed.initialize" not in block:  # the launch block runs in the 2-process test
        exec(block, namespace)
print("ok")
""",
        devices=8,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def run_processes(
    source: str, *, processes: int = 2, devices: int = 4, timeout: float = 180
) -> list[str]:
    """Run ``source`` as one JAX job of ``processes`` local processes with ``devices`` CPU
    devices each (``jax.distributed.initialize`` over a localhost coordinator); return each
    process's stdout. ``PROCESS_ID`` is defined in the script."""
    port = _free_port()
    children = []
    for i in range(processes):
        code = (
            PRELUDE + f"jax.distributed.initialize(coordinator_address='localhost:{port}', "
            f"num_processes={processes}, process_id={i})\nPROCESS_ID = {i}\n"
            + textwrap.dedent(source)
        )
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment(devices),
                cwd=ROOT,
            )
        )
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=timeout))
    finally:
        for child in children:  # one that failed leaves the others waiting at a barrier
            if child.poll() is None:
                child.kill()
                child.communicate()
    failed = [
        f"process {i} (exit {child.returncode}):\n{err[-4000:]}\n--- stdout ---\n{out[-1000:]}"
        for i, (child, (out, err)) in enumerate(zip(children, outputs))
        if child.returncode != 0
    ]
    if failed:
        raise AssertionError("\n".join(failed))
    return [out for out, _ in outputs]


def test_two_processes_save_and_load_their_own_pieces(tmp_path: Path) -> None:
    outputs = run_processes(
        f"ROOT_PATH = {str(tmp_path)!r}\n"
        + COMMON
        + """
import orbax.checkpoint as ocp

root = Path(ROOT_PATH)
assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
mesh1 = jax.make_mesh((8,), ("data",), axis_types=(AUTO,))
mesh2 = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AUTO, AUTO))
base = randomized(Net(), 0)  # the same values in both processes (host draws, one seed)
reference = {k: np.asarray(v) for k, v in base.state_dict().items()}
model = place(base, mesh1, fsdp("data", 8))
assert not model.fc1.weight.is_fully_addressable

# Each process writes exactly the pieces on its own devices; process 0 the index.
fparam.distributed.save_sharded(model, root / "fsdp")
names = sorted(os.listdir(root / "fsdp"))
assert names == ["index.json", "process-00000-of-00002.safetensors", "process-00001-of-00002.safetensors"], names
mine = root / "fsdp" / f"process-{PROCESS_ID:05d}-of-00002.safetensors"
with open(mine, "rb") as f:
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
expected = {
    ckpt._piece_name(key, box)
    for key, value in model.state_dict().items()
    for box, device in ckpt._pieces(value)
    if device.process_index == PROCESS_ID
}
assert set(header) - {"__metadata__"} == expected, sorted(set(header) ^ expected)

# 2-D (FSDP x TP): pieces replicated across the processes are written once, in one file.
two = place(base, mesh2, two_d)
fparam.distributed.save_sharded(two, root / "2d")
expected = {
    ckpt._piece_name(key, box): ckpt._volume(box) * value.dtype.itemsize
    for key, value in two.state_dict().items()
    for box, _ in ckpt._pieces(value)
}
assert pieces_written(root / "2d") == expected  # (it refuses a piece stored twice)

# Loaded back in the same job: as saved, and resharded to tensor parallel across processes.
for mesh, rule in ((mesh1, fsdp("data", 8)), (mesh2, tp), (mesh2, two_d)):
    target = place(randomized(Net(), 1), mesh, rule)
    loaded = fparam.distributed.load_sharded(root / "fsdp", like=target)
    for key, value in loaded.items():
        assert_same(value, place(base, mesh, rule).state_dict()[key], key)
        for _, index, data in shards(value):
            assert np.array_equal(data, reference[key][index]), key
target.load_state_dict(loaded)  # keeps the 2-D placement
for key, value in target.state_dict().items():
    assert_same(value, loaded[key], key)
# No target: replicated over all 8 devices of the job.
everywhere = fparam.distributed.load_sharded(root / "fsdp")
for key, value in everywhere.items():
    assert value.is_fully_replicated and len(value.sharding.device_set) == 8, key
    assert all(np.array_equal(data, reference[key]) for _, _, data in shards(value)), key

# Arrays on one process's devices only (each process its own copy) are written by process 0.
local = {"w": model.fc1.weight, "local": jnp.arange(3.0) + PROCESS_ID}
fparam.distributed.save_sharded(local, root / "local")
index = json.loads((root / "local" / "index.json").read_text())["checkpoint"]
assert [p["file"] for p in index["tensors"]["local"]["pieces"]] == ["process-00000-of-00002.safetensors"]
back = fparam.distributed.load_sharded(root / "local")
assert all(np.array_equal(data, np.arange(3.0)) for _, _, data in shards(back["local"]))

# fparam.save: an array split across processes is refused on every process (nobody waits)...
try:
    fparam.save(model, root / "split.safetensors")
    raise AssertionError("fparam.save wrote an array split across processes")
except ser.CheckpointError as error:
    message = str(error)
    assert "cannot save 'conv.weight' with fparam.save" in message, message
    assert f"process {PROCESS_ID} holds 36 of its 72 elements" in message, message
    assert "fparam.distributed.save_sharded(state, directory)" in message, message
assert not (root / "split.safetensors").exists()
# ...and a replicated model is written once, by process 0, and is there when save returns.
calls = []
write = ser._save_file
ser._save_file = lambda state, path: (calls.append(path), write(state, path))
fparam.save(place(base, mesh1, lambda k, s: P()), root / "replicated.safetensors")
ser._save_file = write
assert len(calls) == (1 if PROCESS_ID == 0 else 0), calls
back = fparam.load(root / "replicated.safetensors")
assert all(np.array_equal(back[k], v) for k, v in reference.items())
# fparam.load(like=) of that file: each process reads its devices' slices.
loaded = fparam.load(root / "replicated.safetensors", like=model)
for key, value in loaded.items():
    assert_same(value, model.state_dict()[key], key)

# A process that fails to write makes every process raise (none waits forever), and the
# directory is left without an index.
def fail_in(process):
    def failing(state, path):
        if PROCESS_ID == process:
            raise OSError(f"disk full on process {process}")
        return write(state, path)  # the real writer, kept above
    return failing

ser._save_file = fail_in(1)
try:
    fparam.distributed.save_sharded(model, root / "fails")
    raise AssertionError("save_sharded returned after a failed write")
except (OSError, ser.CheckpointError) as error:
    expected = "disk full on process 1" if PROCESS_ID == 1 else "process(es) [1] failed"
    assert expected in str(error), error
ser._save_file = fail_in(0)
try:
    fparam.save(place(base, mesh1, lambda k, s: P()), root / "fails.safetensors")
    raise AssertionError("fparam.save returned after a failed write")
except (OSError, ser.CheckpointError) as error:
    expected = "disk full on process 0" if PROCESS_ID == 0 else "process(es) [0] failed"
    assert expected in str(error), error
ser._save_file = write
assert not (root / "fails" / "index.json").exists()
assert not (root / "fails.safetensors").exists()

# orbax, the documented multi-host path: every process saves its shards, restore resharded.
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(root / "orbax", {"model": model})
checkpointer.wait_until_finished()
target = place(Net(), mesh2, two_d)
abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"model": target})
restored = checkpointer.restore(root / "orbax", abstract)["model"]
for key, value in restored.state_dict().items():
    assert same_sharding(value, target.state_dict()[key]), key
    for _, index, data in shards(value):
        assert np.array_equal(data, reference[key][index]), key
checkpointer.close()
print("ok", PROCESS_ID)
""",
    )
    assert [out.strip().splitlines()[-1] for out in outputs] == ["ok 0", "ok 1"]


# --------------------------------------------------------------------------- one device


def _state() -> dict:
    return {
        "w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4),
        "scalar": jnp.asarray(2.5, jnp.bfloat16),
        "empty": jnp.zeros((0, 3), jnp.int32),
        "mask": np.array([True, False]),
    }


def test_one_device_round_trip_of_module_and_nested_state(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    save_sharded(model, tmp_path / "model")
    loaded = load_sharded(tmp_path / "model")
    assert list(loaded) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
        assert not loaded[key].committed  # no placement asked: as fparam.load gives it
    nested = {"state": {0: _state()}, "param_groups": [{"lr": 0.1, "params": [0], "n": None}]}
    save_sharded(nested, tmp_path / "nested")
    back = load_sharded(tmp_path / "nested")
    assert back["param_groups"] == nested["param_groups"]
    for key, value in nested["state"][0].items():
        got = back["state"][0][key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert np.array_equal(np.asarray(got), np.asarray(value)), key
    device = jax.devices()[0]
    single = jax.sharding.SingleDeviceSharding(device)
    # Targets as a tree nested like the saved state, and as jax.ShapeDtypeStruct leaves.
    back = load_sharded(tmp_path / "nested", shardings={"state": {0: {"w": single}}})
    assert back["state"][0]["w"].committed and not back["state"][0]["scalar"].committed
    struct = jax.ShapeDtypeStruct((3, 4), jnp.float32, sharding=single)
    back = load_sharded(tmp_path / "nested", like={"state": {0: {"w": struct}}})
    assert back["state"][0]["w"].committed and not back["state"][0]["scalar"].committed
    placed = load_sharded(tmp_path / "model", shardings=jax.sharding.SingleDeviceSharding(device))
    assert all(v.committed for v in placed.values())
    model.load_state_dict(placed)
    fparam.save(model, tmp_path / "m.safetensors")
    placed = fparam.load(tmp_path / "m.safetensors", like=model)
    assert list(placed) == list(model.state_dict())


def test_damaged_or_incomplete_checkpoints_are_errors(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    save_sharded(_state(), directory)
    piece_file = directory / "process-00000-of-00001.safetensors"
    good = piece_file.read_bytes()
    length = int.from_bytes(good[:8], "little")
    start = json.loads(good[8 : 8 + length])["w[0:3,0:4]"]["data_offsets"][0]
    damaged = bytearray(good)
    damaged[8 + length + start + 5] ^= 0x10  # inside the float data of "w"
    piece_file.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=r"piece 'w\[0:3,0:4\]' does not match its checksum"):
        load_sharded(directory)
    piece_file.write_bytes(good)

    index = directory / "index.json"
    text = index.read_text()
    index.write_text(text.replace('"shape": [3, 4]', '"shape": [4, 3]'))
    with pytest.raises(CheckpointError, match="the index does not match its checksum"):
        load_sharded(directory)
    # An index edited with its checksum recomputed is still checked: files stay in the directory.
    body = json.loads(text)["checkpoint"]
    body["tensors"]["w"]["pieces"][0]["file"] = "../process-00000-of-00001.safetensors"
    index.write_bytes(ckpt._index_bytes(body))
    with pytest.raises(CheckpointError, match="corrupt sharded checkpoint index: piece"):
        load_sharded(directory)
    body["tensors"]["w"]["pieces"][0]["file"] = "process-00000-of-00001.safetensors"
    body["tensors"]["w"]["pieces"][0]["box"] = [[0, 2], [0, 4]]
    index.write_bytes(ckpt._index_bytes(body))
    with pytest.raises(CheckpointError, match=r"pieces of 'w' do not cover its shape \(3, 4\)"):
        load_sharded(directory)
    index.unlink()  # what a save that died before its index leaves
    with pytest.raises(CheckpointError, match=r"no index\.json"):
        load_sharded(directory)
    with pytest.raises(FileNotFoundError, match="no sharded checkpoint"):
        load_sharded(tmp_path / "absent")


def test_refused_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    save_sharded(_state(), directory)
    stale = directory / "process-00001-of-00002.safetensors"  # from an earlier 2-process save
    stale.write_bytes(b"old")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(CheckpointError, match=r"cannot save 'z' of dtype complex128"):
        save_sharded({"w": jnp.ones(3), "z": np.ones(2, np.complex128)}, directory)
    with pytest.raises(CheckpointError, match=r"cannot save 'k' of dtype key<fry>"):
        save_sharded({"k": jax.random.key(0)}, directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    save_sharded(_state(), directory)  # a finished save removes files its index does not use
    assert sorted(p.name for p in directory.iterdir()) == [
        "index.json",
        "process-00000-of-00001.safetensors",
    ]


def _one_file(tmp_path: Path) -> Path:
    fparam.save({"w": jnp.zeros((3, 4))}, tmp_path / "one.safetensors")
    return tmp_path / "one.safetensors"


def test_targets_that_do_not_fit_are_errors(tmp_path: Path) -> None:
    save_sharded(_state(), tmp_path / "ckpt")
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(CheckpointError, match=r"shardings names \['v'\], which the checkpoint"):
        load_sharded(tmp_path / "ckpt", shardings={"v": device})
    with pytest.raises(TypeError, match=r"shardings\['w'\] must be a jax.sharding.Sharding"):
        load_sharded(tmp_path / "ckpt", shardings={"w": "cpu"})
    with pytest.raises(TypeError, match=r"shardings must be a jax.sharding.Sharding, .* got str"):
        load_sharded(tmp_path / "ckpt", shardings="cpu")
    with pytest.raises(TypeError, match=r"like must be a Module, an optimizer, .* got int"):
        fparam.load(_one_file(tmp_path), like=3)
    with pytest.raises(
        CheckpointError, match=r"size mismatch for w: .* shape \(3, 4\) .* \(4, 3\)"
    ):
        load_sharded(tmp_path / "ckpt", like={"w": jnp.zeros((4, 3))})
    got = load_sharded(tmp_path / "ckpt", like={"w": jax.device_put(jnp.zeros((3, 4)), device)})
    assert got["w"].committed and not got["scalar"].committed
    got = load_sharded(
        tmp_path / "ckpt", like={"w": jnp.zeros((3, 4))}
    )  # uncommitted: no placement
    assert not got["w"].committed
    save_sharded({"big": np.array([1e300])}, tmp_path / "f64")
    with pytest.raises(CheckpointError, match=r"jax_enable_x64"):
        load_sharded(tmp_path / "f64", shardings=device)
