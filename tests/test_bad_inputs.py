"""Bad inputs to the public API: each gives a clear error, of torch's type, naming the argument.

One test per bad input. Each case runs torch on the same bad input where torch raises (at
construction, or at the first call where torch checks only then) and asserts that fparam raises
the same exception type, that fparam's message names the culprit, and, for in-place methods,
that the object is unchanged afterwards. Where fparam deliberately differs from torch (it
refuses something torch accepts, or raises earlier), the case says so and why.

Grow this module with the library: a new layer or function gets its bad inputs here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from fparam.nn import functional as F

tnn = torch.nn
TF = torch.nn.functional

_X = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
_X4 = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
_Y = np.array([0, 2])


class Case(NamedTuple):
    """``ours()`` must raise what ``theirs()`` raises (or ``expected`` where torch does not
    raise, with the reason in ``deviation``), with ``names`` in the message."""

    ours: Callable[[], Any]
    theirs: Callable[[], Any] | None
    names: tuple[str, ...]
    expected: type[Exception] | None = None
    deviation: str = ""


def _call(make: Callable[[], Any], *args: Any) -> Callable[[], Any]:
    """Build, then call: for options torch checks only in forward."""
    return lambda: make()(*args)


_T = (torch.from_numpy(_X),)
_TY = (torch.from_numpy(_X), torch.from_numpy(_Y))
_FY = (_X, _Y.astype(np.int32))

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- Linear: sizes
    "linear_in_float": Case(
        lambda: nn.Linear(2.5, 3), lambda: tnn.Linear(2.5, 3), ("in_features",)
    ),
    "linear_in_integral_float": Case(
        lambda: nn.Linear(3.0, 3), lambda: tnn.Linear(3.0, 3), ("in_features",)
    ),
    "linear_out_float": Case(
        lambda: nn.Linear(3, 2.5), lambda: tnn.Linear(3, 2.5), ("out_features",)
    ),
    "linear_in_negative": Case(
        lambda: nn.Linear(-1, 3), lambda: tnn.Linear(-1, 3), ("in_features", "-1")
    ),
    "linear_out_negative": Case(
        lambda: nn.Linear(3, -2), lambda: tnn.Linear(3, -2), ("out_features", "-2")
    ),
    "linear_in_none": Case(
        lambda: nn.Linear(None, 3), lambda: tnn.Linear(None, 3), ("in_features",)
    ),
    "linear_in_str": Case(lambda: nn.Linear("3", 3), lambda: tnn.Linear("3", 3), ("in_features",)),
    "linear_out_bool": Case(
        lambda: nn.Linear(3, True), lambda: tnn.Linear(3, True), ("out_features",)
    ),
    "linear_in_bool": Case(
        lambda: nn.Linear(True, 3),
        None,
        ("in_features",),
        TypeError,
        "torch accepts a bool in_features (and refuses a bool out_features); fparam refuses both",
    ),
    # ---------------------------------------------------------------- Linear: dtype/device/key
    "linear_dtype_int": Case(
        lambda: nn.Linear(3, 4, dtype=jnp.int32),
        lambda: tnn.Linear(3, 4, dtype=torch.int32),
        ("dtype", "int32", "floating"),
    ),
    "linear_dtype_torch_int": Case(
        lambda: nn.Linear(3, 4, dtype=torch.int64),
        lambda: tnn.Linear(3, 4, dtype=torch.int64),
        ("dtype", "int64"),
    ),
    "linear_dtype_bool": Case(
        lambda: nn.Linear(3, 4, dtype=bool),
        lambda: tnn.Linear(3, 4, dtype=torch.bool),
        ("dtype",),
    ),
    "linear_dtype_not_a_dtype": Case(
        lambda: nn.Linear(3, 4, dtype="floaty"),
        lambda: tnn.Linear(3, 4, dtype="floaty"),
        ("dtype", "floaty"),
    ),
    "linear_dtype_float64_without_x64": Case(
        lambda: nn.Linear(3, 4, dtype=torch.float64),
        None,
        ("dtype=float64", "jax_enable_x64"),
        TypeError,
        "torch makes float64 weights; JAX without 64-bit mode would silently make float32",
    ),
    "linear_device_unknown": Case(
        lambda: nn.Linear(3, 4, device="xyz"),
        lambda: tnn.Linear(3, 4, device="xyz"),
        ("device", "xyz"),
    ),
    "linear_device_index_out_of_range": Case(
        lambda: nn.Linear(3, 4, device=7),
        lambda: tnn.Linear(3, 4, device=7),
        ("device", "7"),
    ),
    "linear_device_object": Case(
        lambda: nn.Linear(3, 4, device=object()),
        lambda: tnn.Linear(3, 4, device=object()),
        ("device",),
    ),
    "linear_key_int": Case(
        lambda: nn.Linear(3, 4, key=42),
        None,
        ("key", "jax.random.key(42)"),
        TypeError,
        "torch layers take no key",
    ),
    "linear_key_str": Case(
        lambda: nn.Linear(3, 4, key="seed"), None, ("key",), TypeError, "torch layers take no key"
    ),
    "linear_key_float_array": Case(
        lambda: nn.Linear(3, 4, key=np.ones(2, np.float32)),
        None,
        ("key",),
        TypeError,
        "torch layers take no key",
    ),
    # ---------------------------------------------------------------- Conv
    "conv_in_negative": Case(
        lambda: nn.Conv2d(-1, 2, 3), lambda: tnn.Conv2d(-1, 2, 3), ("in_channels",)
    ),
    "conv_in_none": Case(
        lambda: nn.Conv2d(None, 2, 3), lambda: tnn.Conv2d(None, 2, 3), ("in_channels",)
    ),
    "conv_kernel_float": Case(
        lambda: nn.Conv2d(2, 2, 2.5), lambda: tnn.Conv2d(2, 2, 2.5), ("kernel_size",)
    ),
    "conv_kernel_negative": Case(
        lambda: nn.Conv2d(2, 2, -1), lambda: tnn.Conv2d(2, 2, -1), ("kernel",)
    ),
    "conv_kernel_none": Case(
        lambda: nn.Conv2d(2, 2, None), lambda: tnn.Conv2d(2, 2, None), ("kernel_size",)
    ),
    "conv_groups_zero": Case(
        lambda: nn.Conv2d(2, 2, 3, groups=0), lambda: tnn.Conv2d(2, 2, 3, groups=0), ("groups",)
    ),
    "conv_groups_none": Case(
        lambda: nn.Conv2d(2, 2, 3, groups=None),
        lambda: tnn.Conv2d(2, 2, 3, groups=None),
        ("groups",),
    ),
    "conv_out_str": Case(
        lambda: nn.Conv1d(2, "2", 3), lambda: tnn.Conv1d(2, "2", 3), ("out_channels",)
    ),
    "conv_stride_float": Case(
        lambda: nn.Conv2d(2, 2, 3, stride=1.5),
        _call(lambda: tnn.Conv2d(2, 2, 3, stride=1.5), torch.from_numpy(_X4)),
        ("stride",),
    ),
    "conv_dtype_int": Case(
        lambda: nn.Conv2d(2, 2, 3, dtype=torch.int32),
        lambda: tnn.Conv2d(2, 2, 3, dtype=torch.int32),
        ("dtype",),
    ),
    "conv_device_unknown": Case(
        lambda: nn.Conv1d(2, 2, 3, device="xyz"),
        lambda: tnn.Conv1d(2, 2, 3, device="xyz"),
        ("device",),
    ),
    "conv_key_int": Case(
        lambda: nn.ConvTranspose2d(2, 2, 3, key=0),
        None,
        ("key", "jax.random.key(0)"),
        TypeError,
        "torch layers take no key",
    ),
    "conv_transpose_output_size_float": Case(
        _call(lambda: nn.ConvTranspose2d(2, 2, 3, stride=2), _X4, (9.5, 9)),
        _call(lambda: tnn.ConvTranspose2d(2, 2, 3, stride=2), torch.from_numpy(_X4), (9.5, 9)),
        ("output_size", "float"),
    ),
    "conv_transpose_output_size_integral_float": Case(
        _call(lambda: nn.ConvTranspose2d(2, 2, 3, stride=2), _X4, [9.0, 9.0]),
        _call(lambda: tnn.ConvTranspose2d(2, 2, 3, stride=2), torch.from_numpy(_X4), [9.0, 9.0]),
        ("output_size",),
    ),
    # ---------------------------------------------------------------- activations (torch: forward)
    "leaky_relu_slope_str": Case(
        _call(lambda: nn.LeakyReLU("a"), _X),
        _call(lambda: tnn.LeakyReLU("a"), *_T),
        ("negative_slope", "str"),
    ),
    "leaky_relu_slope_none": Case(
        _call(lambda: nn.LeakyReLU(None), _X),
        _call(lambda: tnn.LeakyReLU(None), *_T),
        ("negative_slope",),
    ),
    "leaky_relu_slope_list": Case(
        _call(lambda: nn.LeakyReLU([0.1]), _X),
        _call(lambda: tnn.LeakyReLU([0.1]), *_T),
        ("negative_slope",),
    ),
    "leaky_relu_slope_complex": Case(
        _call(lambda: nn.LeakyReLU(1 + 2j), _X),
        _call(lambda: tnn.LeakyReLU(1 + 2j), *_T),
        ("negative_slope",),
    ),
    "elu_alpha_str": Case(
        _call(lambda: nn.ELU("a"), _X), _call(lambda: tnn.ELU("a"), *_T), ("alpha",)
    ),
    "gelu_approximate_float": Case(
        _call(lambda: nn.GELU(1.5), _X), _call(lambda: tnn.GELU(1.5), *_T), ("approximate",)
    ),
    "gelu_approximate_bad_str": Case(
        _call(lambda: nn.GELU("Tanh"), _X), _call(lambda: tnn.GELU("Tanh"), *_T), ("approximate",)
    ),
    "softmax_dim_str": Case(
        _call(lambda: nn.Softmax("a"), _X), _call(lambda: tnn.Softmax("a"), *_T), ("dim",)
    ),
    "softmax_dim_float": Case(
        _call(lambda: nn.Softmax(1.5), _X), _call(lambda: tnn.Softmax(1.5), *_T), ("dim",)
    ),
    "log_softmax_dim_bool": Case(
        _call(lambda: nn.LogSoftmax(True), _X), _call(lambda: tnn.LogSoftmax(True), *_T), ("dim",)
    ),
    "softmax_dim_out_of_range": Case(
        _call(lambda: nn.Softmax(5), _X), _call(lambda: tnn.Softmax(5), *_T), ("5",)
    ),
    # ---------------------------------------------------------------- Flatten / Unflatten
    "flatten_start_str": Case(
        _call(lambda: nn.Flatten("a"), _X), _call(lambda: tnn.Flatten("a"), *_T), ("start_dim",)
    ),
    "flatten_end_float": Case(
        _call(lambda: nn.Flatten(0, 1.5), _X),
        _call(lambda: tnn.Flatten(0, 1.5), *_T),
        ("end_dim",),
    ),
    "flatten_start_bool": Case(
        _call(lambda: nn.Flatten(True), _X), _call(lambda: tnn.Flatten(True), *_T), ("start_dim",)
    ),
    "unflatten_dim_float": Case(
        _call(lambda: nn.Unflatten(1.5, (1, 3)), _X),
        _call(lambda: tnn.Unflatten(1.5, (1, 3)), *_T),
        ("dim",),
    ),
    "unflatten_dim_bool": Case(
        _call(lambda: nn.Unflatten(True, (1, 3)), _X),
        _call(lambda: tnn.Unflatten(True, (1, 3)), *_T),
        ("dim",),
    ),
    "unflatten_size_float": Case(
        lambda: nn.Unflatten(1, (1.0, 3)), lambda: tnn.Unflatten(1, (1.0, 3)), ("unflattened_size",)
    ),
    "unflatten_size_int": Case(
        lambda: nn.Unflatten(1, 3), lambda: tnn.Unflatten(1, 3), ("unflattened_size",)
    ),
    "unflatten_size_bool": Case(
        _call(lambda: nn.Unflatten(1, (True, 3)), _X),
        _call(lambda: tnn.Unflatten(1, (True, 3)), *_T),
        ("unflattened_size", "bool"),
    ),
    # ---------------------------------------------------------------- losses (torch: forward)
    "cross_entropy_ignore_index_float": Case(
        _call(lambda: nn.CrossEntropyLoss(ignore_index=1.5), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(ignore_index=1.5), *_TY),
        ("ignore_index",),
    ),
    "cross_entropy_ignore_index_str": Case(
        _call(lambda: nn.CrossEntropyLoss(ignore_index="a"), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(ignore_index="a"), *_TY),
        ("ignore_index",),
    ),
    "cross_entropy_ignore_index_bool": Case(
        _call(lambda: nn.CrossEntropyLoss(ignore_index=True), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(ignore_index=True), *_TY),
        ("ignore_index",),
    ),
    "cross_entropy_label_smoothing_str": Case(
        _call(lambda: nn.CrossEntropyLoss(label_smoothing="a"), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(label_smoothing="a"), *_TY),
        ("label_smoothing",),
    ),
    "cross_entropy_label_smoothing_none": Case(
        _call(lambda: nn.CrossEntropyLoss(label_smoothing=None), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(label_smoothing=None), *_TY),
        ("label_smoothing",),
    ),
    "cross_entropy_reduction_none": Case(
        _call(lambda: nn.CrossEntropyLoss(reduction=None), *_FY),
        _call(lambda: tnn.CrossEntropyLoss(reduction=None), *_TY),
        ("reduction",),
    ),
    "nll_ignore_index_float": Case(
        _call(lambda: nn.NLLLoss(ignore_index=1.5), *_FY),
        _call(lambda: tnn.NLLLoss(ignore_index=1.5), *_TY),
        ("ignore_index",),
    ),
    "mse_reduction_int": Case(
        _call(lambda: nn.MSELoss(reduction=1), _X, _X),
        _call(lambda: tnn.MSELoss(reduction=1), *_T, *_T),
        ("reduction",),
    ),
    "cross_entropy_weight_str": Case(
        lambda: nn.CrossEntropyLoss(weight="a"),
        lambda: tnn.CrossEntropyLoss(weight="a"),
        ("weight",),
    ),
    "cross_entropy_weight_list": Case(
        lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0]),
        lambda: tnn.CrossEntropyLoss(weight=[1.0, 2.0]),
        ("weight",),
    ),
    "bce_logits_pos_weight_str": Case(
        lambda: nn.BCEWithLogitsLoss(pos_weight="a"),
        lambda: tnn.BCEWithLogitsLoss(pos_weight="a"),
        ("pos_weight",),
    ),
    # ---------------------------------------------------------------- nn.functional scalars
    "f_leaky_relu_slope_str": Case(
        lambda: F.leaky_relu(_X, "a"), lambda: TF.leaky_relu(*_T, "a"), ("negative_slope",)
    ),
    "f_elu_alpha_none": Case(lambda: F.elu(_X, None), lambda: TF.elu(*_T, None), ("alpha",)),
    "f_gelu_approximate_int": Case(
        lambda: F.gelu(_X, approximate=0), lambda: TF.gelu(*_T, approximate=0), ("approximate",)
    ),
    "f_softmax_dim_str": Case(lambda: F.softmax(_X, "a"), lambda: TF.softmax(*_T, "a"), ("dim",)),
    "f_log_softmax_dim_float": Case(
        lambda: F.log_softmax(_X, 1.5), lambda: TF.log_softmax(*_T, 1.5), ("dim",)
    ),
    "f_flatten_start_str": Case(
        lambda: F.flatten(_X, "a"), lambda: torch.flatten(*_T, "a"), ("start_dim",)
    ),
    "f_unflatten_size_float": Case(
        lambda: F.unflatten(_X, 1, (1.0, 3)),
        lambda: torch.unflatten(*_T, 1, (1.0, 3)),
        ("sizes",),
    ),
    "f_cross_entropy_ignore_index_float": Case(
        lambda: F.cross_entropy(*_FY, ignore_index=2.5),
        lambda: TF.cross_entropy(*_TY, ignore_index=2.5),
        ("ignore_index",),
    ),
    "f_nll_loss_ignore_index_str": Case(
        lambda: F.nll_loss(*_FY, ignore_index="a"),
        lambda: TF.nll_loss(*_TY, ignore_index="a"),
        ("ignore_index",),
    ),
    "f_bce_logits_pos_weight_str": Case(
        lambda: F.binary_cross_entropy_with_logits(_X, _X, pos_weight="a"),
        lambda: TF.binary_cross_entropy_with_logits(*_T, *_T, pos_weight="a"),
        ("pos_weight",),
    ),
    "f_pad_value_str": Case(
        lambda: F.pad(_X4, (1, 1), "constant", "a"),
        lambda: TF.pad(torch.from_numpy(_X4), (1, 1), "constant", "a"),
        ("value",),
    ),
    "f_pad_pad_none": Case(
        lambda: F.pad(_X4, None), lambda: TF.pad(torch.from_numpy(_X4), None), ("pad",)
    ),
    "f_pad_pad_int": Case(
        lambda: F.pad(_X4, 1), lambda: TF.pad(torch.from_numpy(_X4), 1), ("pad",)
    ),
    "f_linear_bias_str": Case(
        lambda: F.linear(_X, np.ones((4, 3), np.float32), "a"),
        lambda: TF.linear(*_T, torch.ones(4, 3), "a"),
        ("bias",),
    ),
    "f_linear_weight_none": Case(
        lambda: F.linear(_X, None), lambda: TF.linear(*_T, None), ("weight",)
    ),
    "f_relu_input_str": Case(lambda: F.relu("a"), lambda: TF.relu("a"), ("input",)),
    "f_sigmoid_input_none": Case(lambda: F.sigmoid(None), lambda: torch.sigmoid(None), ("input",)),
    "f_softmax_dtype_bad": Case(
        lambda: F.softmax(_X, 1, dtype="floaty"),
        lambda: TF.softmax(*_T, 1, dtype="floaty"),
        ("dtype", "floaty"),
    ),
    "f_cross_entropy_input_none": Case(
        lambda: F.cross_entropy(None, _Y), lambda: TF.cross_entropy(None, _TY[1]), ("input",)
    ),
    "f_flatten_input_str": Case(lambda: F.flatten("a"), lambda: torch.flatten("a"), ("input",)),
    "f_mse_target_str": Case(
        lambda: F.mse_loss(_X, "a"),
        None,
        ("target", "str"),
        TypeError,
        "torch fails inside (AttributeError: 'str' object has no attribute 'size')",
    ),
    "f_bce_weight_str": Case(
        lambda: F.binary_cross_entropy(np.abs(_X) / 4, np.abs(_X) / 4, weight="a"),
        None,
        ("weight", "str"),
        TypeError,
        "torch fails inside (AttributeError: 'str' object has no attribute 'size')",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str) -> None:
    case = CASES[name]
    if case.theirs is not None:
        with pytest.raises(Exception) as theirs:
            case.theirs()
        expected = type(theirs.value)
    else:
        assert case.expected is not None and case.deviation
        expected = case.expected
    with pytest.raises(Exception) as ours:
        case.ours()
    assert type(ours.value) is expected, f"torch/expected {expected.__name__}, got {ours.value!r}"
    for text in case.names:
        assert text in str(ours.value), (text, str(ours.value))


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float32, jnp.float32),
        (torch.float16, jnp.float16),
        (torch.bfloat16, jnp.bfloat16),
        ("float16", jnp.float16),
        (np.float32, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
        (np.dtype("float16"), jnp.float16),
        (None, jnp.float32),
    ],
    ids=str,
)
def test_what_a_torch_user_passes_as_dtype_is_accepted(dtype: Any, expected: Any) -> None:
    for layer in (nn.Linear(3, 2, dtype=dtype), nn.Conv1d(2, 2, 3, dtype=dtype)):
        assert layer.weight.dtype == expected and layer.bias.dtype == expected


def test_float64_is_accepted_with_jax_64_bit_mode() -> None:
    with jax.enable_x64(True):
        layer = nn.Linear(3, 2, dtype=torch.float64)
        assert layer.weight.dtype == jnp.float64


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cpu", jax.devices("cpu")[0]),
        ("cpu:0", jax.devices("cpu")[0]),
        (torch.device("cpu"), jax.devices("cpu")[0]),
        (0, jax.devices()[0]),  # torch: accelerator 0; fparam: JAX's default backend, device 0
        (jax.devices("cpu")[0], jax.devices("cpu")[0]),
    ],
    ids=["cpu", "cpu:0", "torch_device", "index", "jax_device"],
)
def test_what_a_torch_user_passes_as_device_is_accepted(device: Any, expected: Any) -> None:
    layer = nn.Linear(3, 2, device=device)
    assert layer.weight.devices() == {expected} and layer.bias.devices() == {expected}
    conv = nn.ConvTranspose1d(2, 2, 3, device=device)
    assert conv.weight.devices() == {expected}


def test_a_sharding_is_accepted_as_device() -> None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    layer = nn.Linear(3, 2, device=sharding)
    assert layer.weight.sharding == sharding


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the message on a CPU-only JAX")
def test_cuda_without_a_gpu_names_the_device() -> None:
    # torch raises AssertionError ("Torch not compiled with CUDA enabled"); a RuntimeError that
    # names the device and the backend JAX has is what fparam raises for every missing device.
    with pytest.raises(RuntimeError, match=r"device='cuda:0'.*no gpu backend"):
        nn.Linear(3, 2, device="cuda:0")


@pytest.mark.parametrize(
    "key", [jax.random.key(3), jax.random.PRNGKey(3)], ids=["typed_key", "legacy_prngkey"]
)
def test_jax_keys_are_accepted(key: jax.Array) -> None:
    a = nn.Linear(3, 2, key=key)
    b = nn.Linear(3, 2, key=key)
    np.testing.assert_array_equal(np.asarray(a.weight), np.asarray(b.weight))


def test_numpy_integer_sizes_become_python_ints() -> None:
    layer = nn.Linear(np.int64(3), np.int32(2))
    assert type(layer.in_features) is int and type(layer.out_features) is int
    assert layer.weight.shape == (2, 3)
    assert repr(layer) == repr(tnn.Linear(np.int64(3), np.int32(2)))


def test_a_bad_argument_does_not_advance_the_default_key_stream() -> None:
    fparam.manual_seed(5)
    expected = np.asarray(nn.Linear(3, 2).weight)
    fparam.manual_seed(5)
    for bad in (dict(in_features=-1), dict(dtype=jnp.int32), dict(device="xyz"), dict(key=1)):
        with pytest.raises((TypeError, RuntimeError)):
            nn.Linear(**{"in_features": 3, "out_features": 2, **bad})
    np.testing.assert_array_equal(np.asarray(nn.Linear(3, 2).weight), expected)


# --------------------------------------------------------------------------- containers


def _plist_state(pl: Any) -> Any:
    return [(n, p.requires_grad, tuple(p.shape)) for n, p in pl.named_parameters()], len(pl)


@pytest.mark.parametrize(
    ("name", "ours", "theirs", "names"),
    [
        (
            "parameterlist_append_int_tensor",
            lambda c: c.append(torch.arange(3)),
            lambda c: c.append(torch.arange(3)),
            ("floating point",),
        ),
        (
            "parameterlist_extend_not_iterable",
            lambda c: c.extend(3),
            lambda c: c.extend(3),
            ("iterable", "int"),
        ),
        (
            "parameterlist_setitem_plain_over_parameter",
            lambda c: c.__setitem__(0, "x"),
            lambda c: c.__setitem__(0, "x"),
            ("parameter '0'", "str"),
        ),
        (
            "parameterlist_setitem_out_of_range",
            lambda c: c.__setitem__(5, jnp.ones(1)),
            lambda c: c.__setitem__(5, torch.ones(1)),
            ("5",),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parameterlist_bad_inputs_leave_it_unchanged(
    name: str, ours: Callable[[Any], Any], theirs: Callable[[Any], Any], names: tuple[str, ...]
) -> None:
    t = tnn.ParameterList([torch.ones(2)])
    f = nn.ParameterList([jnp.ones(2)])
    with pytest.raises(Exception) as t_info:
        theirs(t)
    with pytest.raises(Exception) as f_info:
        ours(f)
    assert type(f_info.value) is type(t_info.value)
    for text in names:
        assert text in str(f_info.value)
    assert _plist_state(f) == ([("0", True, (2,))], 1)


def test_parameterdict_bad_value_leaves_it_unchanged() -> None:
    t = tnn.ParameterDict({"a": torch.ones(1)})
    f = nn.ParameterDict({"a": jnp.ones(1)})
    with pytest.raises(Exception) as t_info:
        t["a"] = 3
    with pytest.raises(Exception) as f_info:
        f["a"] = 3
    assert type(f_info.value) is type(t_info.value) is TypeError
    assert "parameter 'a'" in str(f_info.value)
    with pytest.raises(RuntimeError, match="floating point"):
        f.update([("b", jnp.ones(1)), ("c", torch.arange(2))])
    assert list(f.keys()) == ["a"] and [n for n, _ in f.named_parameters()] == ["a"]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: nn.ModuleList().append(3), lambda: tnn.ModuleList().append(3)),
        (lambda: nn.Sequential(3), lambda: tnn.Sequential(3)),
        (lambda: nn.ModuleDict({"a": 3}), lambda: tnn.ModuleDict({"a": 3})),
        (lambda: nn.ModuleDict().update(3), lambda: tnn.ModuleDict().update(3)),
    ],
    ids=["modulelist_append", "sequential", "moduledict", "moduledict_update"],
)
def test_module_containers_refuse_non_modules_like_torch(
    ours: Callable[[], Any], theirs: Callable[[], Any]
) -> None:
    with pytest.raises(Exception) as t_info:
        theirs()
    with pytest.raises(Exception) as f_info:
        ours()
    assert type(f_info.value) is type(t_info.value)
    assert "int" in str(f_info.value)
