"""state_dict (§1.4) and load_state_dict (§1.5), compared with torch on twin models."""

from __future__ import annotations

import re
from collections import OrderedDict
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn


def _make(tnn, arr):
    class Lin(tnn.Module):
        def __init__(self, i, o, bias=True):
            super().__init__()
            self.weight = tnn.Parameter(arr(o, i))
            if bias:
                self.bias = tnn.Parameter(arr(o))
            else:
                self.register_parameter("bias", None)

    class Act(tnn.Module):
        pass

    class Norm(tnn.Module):
        def __init__(self, n=2):
            super().__init__()
            self.weight = tnn.Parameter(arr(n))
            self.register_buffer("running_mean", arr(n))
            self.register_buffer("count", arr(1), persistent=False)

    class Scalar(tnn.Module):
        def __init__(self):
            super().__init__()
            self.s = tnn.Parameter(arr())

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.b = tnn.Parameter(arr(2))
            self.features = tnn.Sequential(Lin(3, 4), Act(), Lin(4, 4, bias=False))
            self.a = tnn.Parameter(arr(3))
            self.register_buffer("running", arr(4))
            self.register_buffer("tmp", arr(2), persistent=False)
            self.plain = arr(2)
            self.register_parameter("none_p", None)
            self.register_buffer("none_b", None)
            self.fc = Lin(4, 2)
            self.add_module("empty", None)

    return SimpleNamespace(nn=tnn, arr=arr, Lin=Lin, Act=Act, Norm=Norm, Scalar=Scalar, Net=Net)


def _torch_rand(*shape):
    return torch.randn(shape)


def _fp_zeros(*shape):
    return jnp.zeros(shape, jnp.float32)


T = _make(torch.nn, _torch_rand)
F = _make(nn, _fp_zeros)


def seq(L):
    return L.nn.Sequential(L.Lin(2, 3), L.Act(), L.Lin(3, 3))


def assert_same_values(fp_module, torch_module):
    t_sd, f_sd = torch_module.state_dict(), fp_module.state_dict()
    assert list(f_sd) == list(t_sd)
    for key, value in t_sd.items():
        assert f_sd[key].dtype == jnp.float32, key
        np.testing.assert_array_equal(np.asarray(f_sd[key]), value.numpy(), err_msg=key)


def snapshot(module):
    return {k: np.array(v) for k, v in module.state_dict().items()}


def assert_unchanged(module, before):
    after = snapshot(module)
    assert list(after) == list(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def normalise(message: str) -> str:
    """torch's message with torch's type names spelled as fparam spells them."""
    message = re.sub(
        r"torch\.Size\(\[([^\]]*)\]\)",
        lambda m: str(tuple(int(x) for x in m.group(1).split(",") if x.strip())),
        message,
    )
    return message.replace(
        "expected torch.Tensor or Tensor-like object", "expected an array or array-like object"
    )


def same_error(torch_call, fp_call):
    with pytest.raises(Exception) as t_info:
        torch_call()
    with pytest.raises(Exception) as f_info:
        fp_call()
    assert type(f_info.value) is type(t_info.value), (t_info.value, f_info.value)
    return t_info.value, f_info.value


# --------------------------------------------------------------------------------------------
# state_dict


def test_state_dict_keys_and_order_match_torch():
    t, f = T.Net(), F.Net()
    expected = [
        "b",
        "a",
        "running",
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "fc.weight",
        "fc.bias",
    ]
    assert list(f.state_dict()) == list(t.state_dict()) == expected
    assert isinstance(f.state_dict(), OrderedDict)


def test_state_dict_prefix():
    t, f = T.Net(), F.Net()
    assert list(f.state_dict(prefix="m.")) == list(t.state_dict(prefix="m."))
    assert list(f.features.state_dict(prefix="x.")) == ["x.0.weight", "x.0.bias", "x.2.weight"]


def test_state_dict_values_and_keep_vars():
    t, f = T.Net(), F.Net()
    plain = f.state_dict()
    assert all(isinstance(v, jax.Array) and not isinstance(v, nn.Parameter) for v in plain.values())
    t_kept, f_kept = t.state_dict(keep_vars=True), f.state_dict(keep_vars=True)
    is_param = [isinstance(v, torch.nn.Parameter) for v in t_kept.values()]
    assert [isinstance(v, nn.Parameter) for v in f_kept.values()] == is_param
    assert is_param == [True, True, False, True, True, True, True, True]
    assert isinstance(f_kept["running"], jax.Array)
    assert f_kept["fc.weight"].requires_grad is True
    np.testing.assert_array_equal(f_kept["fc.weight"].data, f.fc.weight)


def test_state_dict_metadata_matches_torch():
    t, f = T.Net(), F.Net()
    for kwargs in ({}, {"prefix": "m."}):
        t_meta, f_meta = t.state_dict(**kwargs)._metadata, f.state_dict(**kwargs)._metadata
        assert list(f_meta.items()) == list(t_meta.items())
    assert f.state_dict()._metadata[""] == {"version": 1}


def test_state_dict_shape_dtype_of_parameters_from_a_plain_array_model():
    t, f = T.Scalar(), F.Scalar()
    assert list(f.state_dict()) == list(t.state_dict()) == ["s"]
    assert f.state_dict()["s"].shape == ()


# --------------------------------------------------------------------------------------------
# load_state_dict: what it accepts


def test_load_a_torch_state_dict_as_is():
    t, f = T.Net(), F.Net()
    result = f.load_state_dict(t.state_dict())
    assert_same_values(f, t)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == str(result) == "<All keys matched successfully>"
    assert isinstance(f.fc.weight, jax.Array)


@pytest.mark.parametrize(
    "convert",
    [lambda v: v.numpy(), lambda v: jnp.asarray(v.numpy()), lambda v: nn.Parameter(v.numpy())],
)
def test_load_numpy_and_jax_arrays(convert):
    t, f = T.Net(), F.Net()
    f.load_state_dict({k: convert(v) for k, v in t.state_dict().items()})
    assert_same_values(f, t)


def test_load_keeps_the_module_dtype():
    t, f = T.Lin(2, 3), F.Lin(2, 3)
    sd64 = {k: v.double() for k, v in t.state_dict().items()}
    t.load_state_dict(sd64)
    f.load_state_dict({k: v.numpy() for k, v in sd64.items()})
    assert t.weight.dtype == torch.float32
    assert f.weight.dtype == jnp.float32 and f.bias.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f.weight), sd64["weight"].numpy(), rtol=1e-7)


def test_load_assign_keeps_the_incoming_dtype():
    t, f = T.Lin(2, 3), F.Lin(2, 3)
    sd16 = {k: v.half() for k, v in t.state_dict().items()}
    t.load_state_dict(sd16, assign=True)
    f.load_state_dict({k: v.numpy() for k, v in sd16.items()}, assign=True)
    assert t.weight.dtype == torch.float16 and f.weight.dtype == jnp.float16


def test_load_zero_dim_parameter_from_shape_one():
    t, f = T.Scalar(), F.Scalar()
    t.load_state_dict({"s": torch.tensor([3.0])})
    f.load_state_dict({"s": np.array([3.0], np.float32)})
    assert f.s.shape == () and tuple(t.s.shape) == ()
    assert float(f.s) == t.s.item() == 3.0


def test_load_into_a_submodule():
    t, f = seq(T), seq(F)
    f[0].load_state_dict({k: v for k, v in t[0].state_dict().items()})
    np.testing.assert_array_equal(np.asarray(f[0].weight), t[0].weight.detach().numpy())


# --------------------------------------------------------------------------------------------
# load_state_dict: errors, messages and return values


def test_not_a_mapping_is_type_error():
    t_exc, f_exc = same_error(
        lambda: seq(T).load_state_dict([1, 2]), lambda: seq(F).load_state_dict([1, 2])
    )
    assert str(f_exc) == str(t_exc) == "Expected state_dict to be dict-like, got <class 'list'>."


def test_message_equals_torch_for_the_reference_example():
    """§1.5 step 4: missing first, then unexpected, then the size mismatch, each after a tab."""
    t, f = seq(T), seq(F)
    bad = t.state_dict()
    del bad["0.bias"]
    bad["zzz"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(5, 5)
    t_exc, f_exc = same_error(lambda: t.load_state_dict(bad), lambda: f.load_state_dict(bad))
    assert str(f_exc) == normalise(str(t_exc))
    assert str(f_exc) == (
        "Error(s) in loading state_dict for Sequential:\n"
        '\tMissing key(s) in state_dict: "0.bias". \n'
        '\tUnexpected key(s) in state_dict: "zzz". \n'
        "\tsize mismatch for 0.weight: copying a param with shape (5, 5) from checkpoint, "
        "the shape in current model is (3, 2)."
    )


def _bad(t):
    """§1.5's ordering example: 2.bias missing; extra, 5.weight, 0.foo inserted in that order."""
    bad = t.state_dict()
    del bad["2.bias"]
    bad["extra"] = torch.zeros(1)
    bad["0.foo"] = torch.zeros(1)
    bad["5.weight"] = torch.zeros(1)
    return bad


def test_unexpected_keys_follow_the_traversal_order():
    t, f = seq(T), seq(F)
    bad = _bad(t)
    t_exc, f_exc = same_error(lambda: t.load_state_dict(bad), lambda: f.load_state_dict(bad))
    assert str(f_exc) == normalise(str(t_exc))
    assert '"extra", "5.weight", "0.foo"' in str(f_exc)


def test_non_strict_returns_missing_and_unexpected_and_loads_the_rest():
    t, f = seq(T), seq(F)
    bad = _bad(t)
    t_result = t.load_state_dict(bad, strict=False)
    f_result = f.load_state_dict(bad, strict=False)
    assert f_result == t_result
    assert f_result.missing_keys == ["2.bias"]
    assert f_result.unexpected_keys == ["extra", "5.weight", "0.foo"]
    assert repr(f_result) == repr(t_result)
    for key in ("0.weight", "0.bias", "2.weight"):
        np.testing.assert_array_equal(np.asarray(f.state_dict()[key]), bad[key].numpy())
    np.testing.assert_array_equal(np.asarray(f[2].bias), np.zeros(3))


@pytest.mark.parametrize("strict", [True, False])
def test_size_mismatch_raises_even_non_strict(strict):
    t, f = seq(T), seq(F)
    bad = t.state_dict()
    bad["2.weight"] = torch.zeros(3, 4)
    t_exc, f_exc = same_error(
        lambda: t.load_state_dict(bad, strict=strict), lambda: f.load_state_dict(bad, strict=strict)
    )
    assert isinstance(f_exc, RuntimeError)
    assert str(f_exc) == normalise(str(t_exc))


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("value", [[1.0, 2.0, 3.0], (1.0,), 3.0, "abc"])
def test_non_array_value_raises_even_non_strict(strict, value):
    t, f = seq(T), seq(F)
    bad = t.state_dict()
    bad["0.bias"] = value
    t_exc, f_exc = same_error(
        lambda: t.load_state_dict(bad, strict=strict), lambda: f.load_state_dict(bad, strict=strict)
    )
    assert str(f_exc) == normalise(str(t_exc))
    assert 'While copying the parameter named "0.bias"' in str(f_exc)


def test_unregistered_names_are_unexpected_like_torch():
    """Non-persistent buffers, None params and plain array attributes are not loadable keys."""
    t, f = T.Net(), F.Net()
    sd = t.state_dict()
    for key in ("tmp", "none_p", "none_b", "plain", "empty.weight", "features.1.x"):
        sd[key] = torch.zeros(2)
    t_exc, f_exc = same_error(lambda: t.load_state_dict(sd), lambda: f.load_state_dict(sd))
    assert str(f_exc) == normalise(str(t_exc))
    sd = {k: v for k, v in sd.items() if not k.startswith("features.1")}
    assert f.load_state_dict(sd, strict=False) == t.load_state_dict(sd, strict=False)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda sd: sd.__setitem__("fc.bias", torch.zeros(7)),  # last key has the wrong size
        lambda sd: sd.__setitem__("fc.bias", [0.0, 1.0]),  # last key is not an array
        lambda sd: sd.pop("fc.bias"),  # strict: a missing key
        lambda sd: sd.__setitem__("zzz", torch.zeros(1)),  # strict: an unexpected key
    ],
)
def test_failed_load_changes_nothing(break_it):
    """All or none: torch copies the good keys before raising; fparam deliberately does not."""
    t, f = T.Net(), F.Net()
    before = snapshot(f)
    bad = t.state_dict()
    break_it(bad)
    with pytest.raises(RuntimeError):
        f.load_state_dict(bad)
    assert_unchanged(f, before)


def test_load_state_dict_port_of_torch_test():
    """torch's test_load_state_dict, with distinct modules where torch shares one."""

    def build(L):
        block = L.nn.Module()
        block.conv1 = L.Lin(3, 3)
        block.conv2 = L.Lin(3, 3, bias=False)
        net = L.nn.Module()
        net.linear1 = L.Lin(5, 5)
        net.linear2 = L.Lin(5, 5)
        net.bn = L.Norm(2)
        net.block = block
        net.add_module("empty", None)
        return net

    t, f = build(T), build(F)
    assert list(f.state_dict()) == list(t.state_dict())

    state_dict = t.state_dict()
    state_dict.update(
        {
            "linear1.weight": torch.ones(5, 5),
            "block.conv1.bias": torch.arange(1.0, 4.0),
            "bn.running_mean": torch.randn(2),
        }
    )
    result = f.load_state_dict(state_dict)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert "Incompatible" not in str(result)
    np.testing.assert_array_equal(np.asarray(f.linear1.weight), np.ones((5, 5)))
    np.testing.assert_array_equal(np.asarray(f.block.conv1.bias), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(
        np.asarray(f.bn.running_mean), state_dict["bn.running_mean"].numpy()
    )

    for extra in ("extra", "extra.param"):
        sd = t.state_dict()
        sd[extra] = torch.ones(5)
        same_error(lambda sd=sd: t.load_state_dict(sd), lambda sd=sd: f.load_state_dict(sd))
        t_res, f_res = t.load_state_dict(sd, strict=False), f.load_state_dict(sd, strict=False)
        assert f_res == t_res == ([], [extra])
        assert "Incompatible" in str(f_res)
    # A key under a child registered as None is silently ignored by torch, strict or not.
    sd = t.state_dict()
    sd["empty.param"] = torch.ones(5)
    assert f.load_state_dict(sd) == t.load_state_dict(sd) == ([], [])

    sd = t.state_dict()
    del sd["linear1.weight"]
    same_error(lambda: t.load_state_dict(sd), lambda: f.load_state_dict(sd))
    t_res, f_res = t.load_state_dict(sd, strict=False), f.load_state_dict(sd, strict=False)
    assert f_res == t_res == (["linear1.weight"], [])
    sd["extra.param"] = torch.ones(5)
    t_res, f_res = t.load_state_dict(sd, strict=False), f.load_state_dict(sd, strict=False)
    assert f_res == t_res == (["linear1.weight"], ["extra.param"])

    sd = t.state_dict()
    sd["bn.running_mean"] = torch.rand(14, 4)
    for strict in (True, False):
        same_error(
            lambda sd=sd, s=strict: t.load_state_dict(sd, strict=s),
            lambda sd=sd, s=strict: f.load_state_dict(sd, strict=s),
        )

    old = snapshot(f)
    partial = {
        "linear1.weight": torch.full((5, 5), 2.0),
        "block.conv1.bias": torch.arange(1.0, 4.0),
        "bn.running_mean": torch.randn(2),
        "nonexistent_key": torch.rand(3),
    }
    f.load_state_dict(partial, strict=False)
    new = snapshot(f)
    for key, value in partial.items():
        if key in new:
            np.testing.assert_array_equal(new[key], value.numpy())
    for key in old.keys() - partial.keys():
        np.testing.assert_array_equal(new[key], old[key])


def test_load_state_dict_keeps_buffers_non_persistent():
    """torch's test_buffer_not_persistent_load: a non-persistent buffer is neither saved nor loaded."""
    f = F.Norm()
    f.load_state_dict(f.state_dict())
    assert list(f.state_dict()) == ["weight", "running_mean"]
