"""nn.DataParallel and nn.parallel.DistributedDataParallel (issue #14): torch's structure and
errors here; data parallelism over 8 simulated devices in a child process."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from tests.distributed._devices import run_script


def _torch_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("wrapper", ["DataParallel", "DistributedDataParallel"])
def test_wrapped_model_has_torchs_keys_repr_and_outputs(wrapper) -> None:
    reference = torch.nn.DataParallel(_torch_net())
    cls = nn.DataParallel if wrapper == "DataParallel" else nn.parallel.DistributedDataParallel
    model = cls(_net())
    model.load_state_dict(reference.state_dict())  # a checkpoint saved from a wrapped model
    assert list(model.state_dict()) == list(reference.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    if wrapper == "DataParallel":
        assert repr(model) == repr(reference)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)
    # the BatchNorm running statistics moved as torch's did
    for key, value in reference.state_dict().items():
        np.testing.assert_allclose(
            np.asarray(model.state_dict()[key]), value.numpy(), rtol=1e-6, atol=1e-7, err_msg=key
        )


def test_from_torch_twins_a_data_parallel_model() -> None:
    reference = torch.nn.DataParallel(_torch_net())
    twin = fparam.from_torch(reference)
    assert isinstance(twin, nn.DataParallel)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    reference.eval()
    twin.eval()
    np.testing.assert_allclose(
        np.asarray(twin(x)), reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_bad_arguments_say_what_was_expected() -> None:
    with pytest.raises(
        TypeError, match=r"DataParallel: expected an fparam nn\.Module to wrap, got Linear"
    ):
        nn.DataParallel(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dim must be a non-negative int"):
        nn.DataParallel(nn.Linear(2, 2), dim=-1)
    with pytest.raises(ValueError, match=r"device_ids must be None or a sequence.*has 1.*\[3\]"):
        nn.DataParallel(nn.Linear(2, 2), device_ids=[3])
    with pytest.raises(TypeError, match="fparam has no torch process groups"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2), process_group="gloo")
    with pytest.raises(TypeError, match=r"device_mesh must be a jax\.sharding\.Mesh with one axis"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2), device_mesh="data")
    assert nn.DataParallel(nn.Linear(2, 2), device_ids=[jax.devices()[0]]).mesh.size == 1


SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P
import fparam
from fparam import nn, optim

def net():
    fparam.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

crit = nn.CrossEntropyLoss()
x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
y = np.arange(16) % 3

@jax.jit
def step(model, opt, x, y):
    loss, grads = fparam.value_and_grad(lambda m: crit(m(x), y))(model)
    model, opt = opt.step(model, grads)
    return model, opt, loss

def train(model):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        model, opt, loss = step(model, opt, x, y)
    return model, float(loss)

ref, ref_loss = train(net())
for wrap in (nn.DataParallel, nn.parallel.DistributedDataParallel):
    model = wrap(net())
    assert model.mesh.size == 8
    for key, value in model.state_dict().items():
        assert value.sharding.is_fully_replicated and len(value.sharding.device_set) == 8, key
    out = jax.jit(lambda m, x: m(x))(model.eval(), x)
    assert out.sharding.spec == P("data"), out.sharding  # the batch was split over the devices
    model.train()
    trained, loss = train(model)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for key, value in ref.state_dict().items():
        got = trained.state_dict()["module." + key]
        assert got.sharding.is_fully_replicated and len(got.sharding.device_set) == 8, key
        # BatchNorm statistics of the global batch, as one device computes them
        np.testing.assert_allclose(np.asarray(got), np.asarray(value), rtol=1e-5, atol=1e-6, err_msg=key)
    # a batch that does not divide over 8 devices runs unsplit, with the same result
    np.testing.assert_allclose(np.asarray(jax.jit(lambda m, x: m(x))(trained.eval(), x[:6])),
                               np.asarray(ref.eval()(x[:6])), rtol=1e-5, atol=1e-6)
    ref.train()
    print(wrap.__name__, "ok")
"""


def test_data_parallel_on_eight_devices_trains_as_one() -> None:
    out = run_script(SCRIPT, devices=8)
    assert out.split() == ["DataParallel", "ok", "DistributedDataParallel", "ok"], out
