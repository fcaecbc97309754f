"""Module.to / cpu / cuda / float / double / half / bfloat16 / type / zero_grad / share_memory,
against torch's rules (which arrays are cast, what is returned, which errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

pytestmark = pytest.mark.filterwarnings("ignore:Casting complex values to real")


def _pair():
    """The same small model in torch and fparam, with an integer buffer and a complex one."""
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    t[2].register_buffer("phase", torch.ones(2, dtype=torch.complex64))
    m = fparam.from_torch(t)
    return t, m


def _dtypes(model):
    out = {k: str(v.dtype).removeprefix("torch.") for k, v in model.state_dict().items()}
    return {k: ("int64" if v == "int32" else v) for k, v in out.items()}  # int64 off in JAX


@pytest.mark.parametrize(
    "call",
    [
        lambda m, lib: m.half(),
        lambda m, lib: m.bfloat16(),
        lambda m, lib: m.float(),
        lambda m, lib: m.to(lib.float16),
        lambda m, lib: m.to(dtype=lib.bfloat16),
        lambda m, lib: m.to("cpu", lib.float16),
        lambda m, lib: m.to(device="cpu", dtype=lib.complex64, non_blocking=True),
        lambda m, lib: m.half().float(),
    ],
)
@pytest.mark.filterwarnings("ignore:Complex modules")
def test_casts_the_arrays_torch_casts_and_returns_self(call):
    t, m = _pair()
    assert call(m, jnp) is m
    call(t, torch)
    assert _dtypes(m) == _dtypes(t)
    for key, value in t.state_dict().items():
        got = np.asarray(m.state_dict()[key]).astype(np.complex128)
        np.testing.assert_array_equal(got, value.to(torch.complex128).numpy())


def test_type_casts_integer_buffers_too():
    t, m = _pair()
    t.requires_grad_(False)
    m.requires_grad_(False)
    assert m.type(jnp.float16) is m
    t.type(torch.float16)
    assert _dtypes(m) == _dtypes(t)
    assert m[1].num_batches_tracked.dtype == jnp.float16


def test_type_refuses_integer_parameters_that_require_grad_and_changes_nothing():
    t, m = _pair()
    with pytest.raises(RuntimeError, match="requires gradients must be floating point") as info:
        t.type(torch.int32)
    with pytest.raises(RuntimeError, match=str(info.value)[:40]) as mine:
        m.type(jnp.int32)
    assert "'0.weight'" in str(mine.value)
    assert m[0].weight.dtype == jnp.float32 and m[1].running_mean.dtype == jnp.float32


def test_to_refuses_integer_dtypes_like_torch():
    t, m = _pair()
    with pytest.raises(TypeError) as theirs:
        t.to(torch.int32)
    with pytest.raises(TypeError) as mine:
        m.to(torch.int32)
    assert str(mine.value) == str(theirs.value)
    with pytest.raises(TypeError, match="only accepts floating point or complex"):
        m.to(jnp.int8)


def test_double_without_x64_raises_instead_of_staying_float32():
    _, m = _pair()
    with pytest.raises(TypeError, match="jax_enable_x64"):
        m.double()
    with pytest.raises(TypeError, match="jax_enable_x64"):
        m.to(torch.float64)
    assert m[0].weight.dtype == jnp.float32


def test_double_with_x64():
    with jax.enable_x64(True):
        t, m = _pair()
        m.double()
        t.double()
        assert _dtypes(m) == {k: v.replace("int32", "int64") for k, v in _dtypes(t).items()}
        assert m[1].num_batches_tracked.dtype == jnp.int64


def test_devices():
    _, m = _pair()
    cpu = jax.devices("cpu")[0]
    for call in (
        lambda: m.to("cpu"),
        lambda: m.cpu(),
        lambda: m.to(cpu),
        lambda: m.to(torch.device("cpu")),
        lambda: m.to(jax.sharding.SingleDeviceSharding(cpu)),
        lambda: m.to(jax.device_put(jnp.zeros(1), cpu)),
    ):
        assert call() is m
        assert m[0].weight.devices() == {cpu} and m[0].weight.committed
        assert m[1].num_batches_tracked.committed


def test_device_index_and_gpu():
    _, m = _pair()
    assert m.to(0) is m
    assert m[0].weight.devices() == {jax.devices()[0]}
    if jax.default_backend() == "gpu":
        gpu = jax.devices("gpu")[0]
        assert m.cpu().cuda() is m
        assert m[0].weight.devices() == {gpu} and m[1].running_var.devices() == {gpu}
        m.to("cuda:0", jnp.bfloat16)
        assert m[0].weight.dtype == jnp.bfloat16 and m[0].weight.devices() == {gpu}


def test_to_an_array_takes_its_dtype():
    t, m = _pair()
    with pytest.warns(UserWarning, match="discards the imaginary part"):
        m.to(jnp.zeros(2, jnp.float16))
    t.to(torch.zeros(2, dtype=torch.float16))  # torch warns once per process
    assert _dtypes(m) == _dtypes(t)
    with pytest.raises(TypeError, match="floating point or complex"):
        m.to(np.zeros(2, np.int32))
    assert m.to(torch.zeros(2, dtype=torch.bfloat16)) is m  # a torch tensor: dtype and device
    assert m[0].weight.dtype == jnp.bfloat16 and m[0].weight.committed


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="needs a CPU-only machine")
@pytest.mark.parametrize("call", ["cuda", "to_cuda", "to_cpu7", "to_gpu2"])
def test_missing_devices_raise_naming_them_and_change_nothing(call):
    _, m = _pair()
    before = m[0].weight
    with pytest.raises(RuntimeError) as info:
        {
            "cuda": lambda: m.cuda(),
            "to_cuda": lambda: m.to("cuda:0", jnp.float16),
            "to_cpu7": lambda: m.to("cpu:7", jnp.float16),
            "to_gpu2": lambda: m.cuda(2),
        }[call]()
    message = str(info.value)
    assert "jax.devices() = [CpuDevice(id=0)]" in message
    assert ("cpu:7" if call == "to_cpu7" else "cuda") in message
    assert m[0].weight is before


def test_bad_arguments():
    _, m = _pair()
    with pytest.raises(TypeError, match="expected a dtype"):
        m.type("not a dtype")
    with pytest.raises(TypeError, match="keywords"):
        m.to(devices="cpu")
    with pytest.raises(TypeError, match="positional"):
        m.to("cpu", jnp.float16, True, 3)
    with pytest.raises(RuntimeError, match="expected one of"):
        m.to("cpux")


def test_nothing_is_half_applied_when_a_later_array_fails():
    _, m = _pair()
    m.requires_grad_(False)
    m[2].register_parameter("scale", nn.Parameter(jnp.ones(2)))
    m[2].register_buffer("flag", jnp.ones(2, jnp.int32))
    before = {k: v for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"'2\.scale'"):
        m.type(jnp.int32)
    assert all(m.state_dict()[k] is v for k, v in before.items())


def test_static_arrays_stay_and_identity_is_kept():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.table = jnp.ones(2)  # static state, like a plain tensor attribute in torch

    m = M()
    uids = [p.uid for p in m.parameters()]
    structure = jax.tree.structure(m)
    m.half()
    assert m.table.dtype == jnp.float32
    assert [p.uid for p in m.parameters()] == uids
    assert jax.tree.structure(m) == structure


def test_inside_a_trace_it_raises_the_mutation_error():
    _, m = _pair()

    @jax.jit
    def f(model):
        model.half()
        return model

    with pytest.raises(RuntimeError, match=r"cannot call half\(\)"):
        f(m)


def test_zero_grad_and_share_memory():
    _, m = _pair()
    assert m.zero_grad() is None
    assert m.zero_grad(set_to_none=False) is None
    assert m.share_memory() is m


def test_optimizer_built_before_a_move_still_steps_and_before_a_cast_refuses():
    m = nn.Linear(3, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    m.cpu()  # same dtype, same places: the optimizer still finds every parameter
    grads = jax.tree.map(jnp.ones_like, m)
    m2, opt = opt.step(m, grads)
    np.testing.assert_allclose(m2.bias, m.bias - 0.1)
    m.half()
    grads = jax.tree.map(jnp.ones_like, m)
    with pytest.raises(ValueError, match="shapes and dtypes"):
        opt.step(m, grads)
    opt = optim.SGD(m.parameters(), lr=0.1)  # torch's advice: build it after .to()
    m3, _ = opt.step(m, grads)
    assert m3.weight.dtype == jnp.float16
