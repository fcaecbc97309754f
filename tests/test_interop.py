"""``fparam.from_torch``: the fparam twin of a torch model, built without a model definition."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn

tnn = torch.nn


def _normalised_repr(module: Any) -> str:
    """``repr`` with torch's dtype spellings in Parameter containers made fparam's.

    torch prints ``[torch.float32 of size 2]`` (ParameterList) and ``[torch.FloatTensor of
    size 2]`` (ParameterDict); fparam prints ``[float32 of size 2]`` for both.
    """
    text = repr(module).replace("torch.FloatTensor", "float32")
    return re.sub(r"\[torch\.(\w+) of size", r"[\1 of size", text)


def _assert_twin(twin: nn.Module, model: tnn.Module) -> None:
    """Same tree (names, classes, modes), same keys in order, same values, same repr."""
    assert isinstance(twin, nn.Module)
    assert [(n, type(m).__name__, m.training) for n, m in twin.named_modules()] == [
        (n, type(m).__name__, m.training) for n, m in model.named_modules()
    ]
    assert [(n, p.requires_grad) for n, p in twin.named_parameters()] == [
        (n, p.requires_grad) for n, p in model.named_parameters()
    ]
    assert list(twin.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        got = twin.state_dict()[key]
        assert got.shape == tuple(value.shape) and got.dtype == jnp.float32, key
        np.testing.assert_array_equal(np.asarray(got), value.numpy(), err_msg=key)
    assert _normalised_repr(twin) == _normalised_repr(model)


def _random(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- containers


def _container_model() -> tnn.Module:
    model = tnn.Sequential(
        OrderedDict(
            [
                ("encoder", tnn.Linear(4, 6)),
                ("act", tnn.LeakyReLU(0.2)),
                ("blocks", tnn.ModuleList([tnn.Linear(6, 6), tnn.Tanh()])),
                ("heads", tnn.ModuleDict({"zeta": tnn.Linear(6, 2), "alpha": tnn.Identity()})),
                (
                    "extra",
                    tnn.ParameterList(
                        [tnn.Parameter(torch.randn(2)), tnn.Parameter(torch.randn(3))]
                    ),
                ),
                ("scales", tnn.ParameterDict({"b": tnn.Parameter(torch.randn(1))})),
                ("inner", tnn.Sequential(tnn.Linear(6, 6), tnn.Sequential(tnn.GELU("tanh")))),
            ]
        )
    )
    model.scales["a"] = tnn.Parameter(torch.randn(2, 2))  # insertion order kept: b, a
    return model


def test_containers_copy_structure_keys_values_and_repr() -> None:
    model = _container_model()
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)
    assert isinstance(twin.blocks, nn.ModuleList) and isinstance(twin.heads, nn.ModuleDict)
    assert isinstance(twin.extra, nn.ParameterList) and isinstance(twin.scales, nn.ParameterDict)
    assert list(twin.heads.keys()) == ["zeta", "alpha"]
    assert list(twin.scales.keys()) == ["b", "a"]
    assert [n for n, _ in twin.named_children()] == [n for n, _ in model.named_children()]

    # The twin is a working fparam model: same output through the layers torch would call.
    x = _random(3, 4)
    h = torch.from_numpy(x)
    for layer in (model.encoder, model.act, model.blocks[0], model.blocks[1], model.inner):
        h = layer(h)
    expected = model.heads["zeta"](h).detach().numpy()
    got = twin.heads["zeta"](twin.inner(twin.blocks[1](twin.blocks[0](twin.act(twin.encoder(x))))))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-6)


def test_train_and_eval_modes_are_copied_per_submodule() -> None:
    model = _container_model()
    model.blocks.eval()  # blocks, blocks.0, blocks.1 in eval mode
    model.heads.zeta.eval()
    model.inner[1].eval()
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)
    assert twin.training and not twin.blocks.training and not twin.blocks[0].training
    assert twin.heads.training and not twin.heads["zeta"].training

    model.eval()
    assert all(not m.training for m in fparam.from_torch(model).modules())


def test_frozen_parameters_stay_frozen() -> None:
    model = _container_model()
    model.encoder.bias.requires_grad_(False)
    model.extra[1].requires_grad_(False)
    model.scales["a"].requires_grad_(False)
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)  # requires_grad compared per parameter
    frozen = [n for n, p in twin.named_parameters() if not p.requires_grad]
    assert frozen == ["encoder.bias", "extra.1", "scales.a"]


def test_a_root_parameter_of_a_parameter_container() -> None:
    model = tnn.ParameterList([tnn.Parameter(torch.ones(2), requires_grad=False)])
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)


# --------------------------------------------------------------------------- layers


_LAYERS: list[tuple[str, Callable[[], tnn.Module], tuple[int, ...]]] = [
    ("linear", lambda: tnn.Linear(5, 3), (2, 5)),
    ("linear_nobias", lambda: tnn.Linear(5, 3, bias=False), (2, 5)),
    (
        "conv1d",
        lambda: tnn.Conv1d(2, 4, 3, stride=2, padding=1, groups=2, padding_mode="circular"),
        (2, 2, 9),
    ),
    (
        "conv2d",
        lambda: tnn.Conv2d(
            2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), padding_mode="reflect"
        ),
        (1, 2, 6, 7),
    ),
    ("conv2d_same", lambda: tnn.Conv2d(2, 2, 3, padding="same", bias=False), (2, 5, 5)),
    ("conv3d", lambda: tnn.Conv3d(2, 2, 2, padding=1, padding_mode="replicate"), (1, 2, 3, 4, 4)),
    (
        "conv_transpose1d",
        lambda: tnn.ConvTranspose1d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 2, 5),
    ),
    (
        "conv_transpose2d",
        lambda: tnn.ConvTranspose2d(3, 2, (2, 3), stride=(2, 1), dilation=(1, 2), bias=False),
        (1, 3, 4, 4),
    ),
    ("conv_transpose3d", lambda: tnn.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 2, 3, 3)),
    ("relu", lambda: tnn.ReLU(inplace=True), (3, 4)),
    ("leaky_relu", lambda: tnn.LeakyReLU(0.3), (3, 4)),
    ("elu", lambda: tnn.ELU(alpha=0.7), (3, 4)),
    ("gelu", lambda: tnn.GELU(approximate="tanh"), (3, 4)),
    ("silu", lambda: tnn.SiLU(), (3, 4)),
    ("sigmoid", lambda: tnn.Sigmoid(), (3, 4)),
    ("tanh", lambda: tnn.Tanh(), (3, 4)),
    ("softmax", lambda: tnn.Softmax(dim=0), (3, 4)),
    ("log_softmax", lambda: tnn.LogSoftmax(dim=1), (3, 4)),
    ("identity", lambda: tnn.Identity(), (3, 4)),
    ("flatten", lambda: tnn.Flatten(0, 1), (2, 3, 4)),
    ("unflatten", lambda: tnn.Unflatten(1, (2, 3)), (2, 6, 2)),
]


@pytest.mark.parametrize(
    ("make", "shape"), [(m, s) for _, m, s in _LAYERS], ids=[n for n, *_ in _LAYERS]
)
def test_layers_copy_configuration_weights_and_outputs(
    make: Callable[[], tnn.Module], shape: tuple[int, ...]
) -> None:
    model = make()
    twin = fparam.from_torch(model)
    assert type(twin) is getattr(nn, type(model).__name__)
    _assert_twin(twin, model)
    x = _random(*shape)
    expected = model(torch.from_numpy(x.copy())).detach().numpy()
    got = np.asarray(twin(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_a_cnn_in_a_sequential() -> None:
    model = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2),
        tnn.ReLU(),
        tnn.ConvTranspose2d(4, 2, 2, stride=2),
        tnn.Flatten(),
        tnn.Linear(2 * 4 * 4, 3),
        tnn.LogSoftmax(dim=1),
    ).eval()
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)
    x = _random(2, 2, 4, 4)
    np.testing.assert_allclose(
        np.asarray(twin(x)), model(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-5
    )


# --------------------------------------------------------------------------- losses


def _loss_inputs(kind: str) -> tuple[Any, Any, Any, Any]:
    """``(fparam input, fparam target, torch input, torch target)`` for a (4, 3) problem."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    if kind == "index":
        y = np.array([0, 2, 1, 2])
        return x, y.astype(np.int32), torch.from_numpy(x), torch.from_numpy(y)
    if kind == "log_probs":
        x = np.asarray(torch.log_softmax(torch.from_numpy(x), 1))
        y = np.array([1, 1, 0, 2])
        return x, y.astype(np.int32), torch.from_numpy(x), torch.from_numpy(y)
    y = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    if kind == "probs":
        x = 1 / (1 + np.exp(-x))
    return x, y, torch.from_numpy(x), torch.from_numpy(y)


_W = torch.tensor([0.5, 2.0, 1.0])
_LOSSES: list[tuple[str, Callable[[], tnn.Module], str, list[str]]] = [
    (
        "cross_entropy",
        lambda: tnn.CrossEntropyLoss(weight=_W, ignore_index=1, label_smoothing=0.1),
        "index",
        ["weight"],
    ),
    ("cross_entropy_sum", lambda: tnn.CrossEntropyLoss(reduction="sum"), "index", []),
    ("nll", lambda: tnn.NLLLoss(weight=_W, reduction="none"), "log_probs", ["weight"]),
    ("bce", lambda: tnn.BCELoss(weight=_W), "probs", ["weight"]),
    (
        "bce_logits",
        lambda: tnn.BCEWithLogitsLoss(weight=_W, pos_weight=torch.tensor([1.0, 3.0, 0.2])),
        "real",
        ["weight", "pos_weight"],
    ),
    ("mse", lambda: tnn.MSELoss(reduction="sum"), "real", []),
    ("l1", lambda: tnn.L1Loss(), "real", []),
]


@pytest.mark.parametrize(
    ("make", "kind", "keys"), [(m, k, ks) for _, m, k, ks in _LOSSES], ids=[n for n, *_ in _LOSSES]
)
def test_losses_copy_options_and_weight_buffers(
    make: Callable[[], tnn.Module], kind: str, keys: list[str]
) -> None:
    model = make()
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)
    assert list(twin.state_dict()) == keys
    x, y, tx, ty = _loss_inputs(kind)
    np.testing.assert_allclose(np.asarray(twin(x, y)), model(tx, ty).numpy(), rtol=1e-6, atol=1e-6)


def test_a_loss_inside_a_model_gives_a_buffer_key() -> None:
    model = tnn.Sequential(OrderedDict(fc=tnn.Linear(3, 3), crit=tnn.CrossEntropyLoss(weight=_W)))
    twin = fparam.from_torch(model)
    _assert_twin(twin, model)
    assert list(twin.state_dict()) == ["fc.weight", "fc.bias", "crit.weight"]


# --------------------------------------------------------------------------- dtypes


def test_bfloat16_model_keeps_its_dtype() -> None:
    model = tnn.Linear(3, 2).to(torch.bfloat16)
    twin = fparam.from_torch(model)
    for key, value in model.state_dict().items():
        got = twin.state_dict()[key]
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(got, np.float32), value.float().numpy())


# --------------------------------------------------------------------------- refusals


class _Custom(tnn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _MyLinear(tnn.Linear):
    pass


def test_unsupported_classes_are_all_listed() -> None:
    model = tnn.Sequential(
        tnn.Linear(2, 2),
        _Custom(),
        tnn.ModuleList(
            [
                tnn.AdaptiveLogSoftmaxWithLoss(4, 6, [2]),
                tnn.CrossMapLRN2d(3),
                tnn.AdaptiveLogSoftmaxWithLoss(4, 6, [2]),
            ]
        ),
        tnn.ModuleDict({"x": _MyLinear(2, 2)}),
    )
    with pytest.raises(TypeError) as info:
        fparam.from_torch(model)
    message = str(info.value)
    for name in (
        f"{__name__}._Custom",
        f"{__name__}._MyLinear",
        "torch.nn.modules.adaptive.AdaptiveLogSoftmaxWithLoss",
        "torch.nn.modules.normalization.CrossMapLRN2d",
    ):
        assert name in message
    assert message.count("AdaptiveLogSoftmaxWithLoss") == 1  # each class once
    assert "Linear," not in message.replace("_MyLinear,", "")  # supported classes not listed


def test_a_custom_root_module_is_unsupported() -> None:
    class Net(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = tnn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(TypeError, match=r"test_a_custom_root_module_is_unsupported\.<locals>\.Net"):
        fparam.from_torch(Net())


@pytest.mark.parametrize(
    "value",
    [[tnn.Linear(2, 2)], nn.Linear(2, 2), torch.ones(2), np.ones(2), None],
    ids=["list", "fparam_module", "tensor", "ndarray", "none"],
)
def test_a_non_module_argument_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=r"from_torch expects a torch\.nn\.Module"):
        fparam.from_torch(value)


def test_shared_modules_and_parameters_are_refused() -> None:
    shared = tnn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"0 = 2"):
        fparam.from_torch(tnn.Sequential(shared, tnn.ReLU(), shared))
    tied = tnn.Sequential(tnn.Linear(2, 2), tnn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    with pytest.raises(ValueError, match=r"0\.weight = 1\.weight"):
        fparam.from_torch(tied)


def _assert_same_state(twin: nn.Module, model: tnn.Module) -> None:
    """Parameters, buffers (persistent or not), keys, values, dtypes, modes: all torch's."""
    assert [(n, p.requires_grad) for n, p in twin.named_parameters()] == [
        (n, p.requires_grad) for n, p in model.named_parameters()
    ]
    assert [n for n, _ in twin.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert list(twin.state_dict()) == list(model.state_dict())
    torch_values = dict(model.named_parameters()) | dict(model.named_buffers())
    fparam_values = dict(twin.named_parameters()) | dict(twin.named_buffers())
    for key, value in torch_values.items():
        got = np.asarray(fparam_values[key])
        want = value.detach().float().numpy() if value.dtype == torch.bfloat16 else value.detach()
        np.testing.assert_array_equal(got.astype(np.float32), np.asarray(want, np.float32), key)
        assert str(got.dtype) == str(value.dtype).replace("torch.", ""), key
    for (name, sub), (twin_name, twin_sub) in zip(
        model.named_modules(), twin.named_modules(), strict=True
    ):
        assert (name, type(sub).__name__, sub.training) == (
            twin_name,
            type(twin_sub).__name__,
            twin_sub.training,
        )
        assert sorted(sub._non_persistent_buffers_set) == sorted(
            twin_sub._non_persistent_buffers_set
        )


def _extra_buffer() -> tnn.Module:
    model = tnn.Linear(2, 2)
    model.register_buffer("running", torch.arange(2.0))
    return model


def _extra_non_persistent_buffer() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 2))
    model[0].register_buffer("scratch", torch.ones(2), persistent=False)
    return model


def _extra_frozen_parameter() -> tnn.Module:
    model = tnn.Conv1d(2, 2, 1)
    model.register_parameter("scale", tnn.Parameter(torch.full((1,), 3.0), requires_grad=False))
    return model


def _loss_weight_made_non_persistent() -> tnn.Module:
    model = tnn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]))
    model.register_buffer("weight", model.weight, persistent=False)
    return model


def _none_children() -> tnn.Module:
    model = tnn.Sequential(OrderedDict(fc=tnn.Linear(2, 2)))
    model.add_module("gap", None)
    return tnn.ModuleList([model, None, tnn.ModuleDict({"a": tnn.ReLU(), "b": None})])


def _bias_set_to_none() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 3), tnn.Conv1d(3, 2, 1))
    model[0].bias = None
    model[1].register_parameter("bias", None)
    return model


def _nested_frozen_containers() -> tnn.Module:
    frozen = tnn.ParameterList(
        [tnn.Parameter(torch.ones(2), requires_grad=False), tnn.Parameter(torch.zeros(1))]
    )
    return tnn.ModuleList(
        [tnn.ModuleDict({"inner": tnn.Sequential(tnn.Sequential(), frozen)}), tnn.Sequential()]
    )


def _plain_container_entries() -> tnn.Module:
    plist = tnn.ParameterList([tnn.Parameter(torch.ones(2)), "tag", None, 3])
    pdict = tnn.ParameterDict({"w": tnn.Parameter(torch.ones(1)), "n": 2.5, "z": None})
    return tnn.ModuleDict({"plist": plist, "pdict": pdict})


def _none_parameter_slot() -> tnn.Module:
    plist = tnn.ParameterList([tnn.Parameter(torch.ones(1)), tnn.Parameter(torch.ones(2))])
    plist[0] = None  # a registered parameter set to None: torch keeps the slot
    return plist


def _eval_submodules_half() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 3), tnn.ReLU(), tnn.Linear(3, 1)).half()
    model[1].eval()
    model[2].eval()
    return model


_SUPPORTED_ODD: list[tuple[str, Callable[[], tnn.Module]]] = [
    ("extra_buffer", _extra_buffer),
    ("extra_non_persistent_buffer", _extra_non_persistent_buffer),
    ("extra_frozen_parameter", _extra_frozen_parameter),
    ("loss_weight_made_non_persistent", _loss_weight_made_non_persistent),
    ("none_children", _none_children),
    ("bias_set_to_none", _bias_set_to_none),
    ("nested_frozen_containers", _nested_frozen_containers),
    ("plain_container_entries", _plain_container_entries),
    ("none_parameter_slot", _none_parameter_slot),
    ("eval_submodules_half", _eval_submodules_half),
    ("empty_sequential", tnn.Sequential),
    ("numpy_scalar_options", lambda: tnn.Sequential(tnn.LeakyReLU(np.float32(0.5)), tnn.ELU(1))),
]


@pytest.mark.parametrize("make", [m for _, m in _SUPPORTED_ODD], ids=[n for n, _ in _SUPPORTED_ODD])
def test_odd_but_valid_models_convert_exactly(make: Callable[[], tnn.Module]) -> None:
    model = make()
    twin = fparam.from_torch(model)
    _assert_same_state(twin, model)
    assert _normalised_repr(twin) == _normalised_repr(model)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: tnn.Unflatten(1, [2, 3]), (2, 6)),
        (lambda: tnn.Conv2d(np.int64(2), 2, np.int64(3), stride=np.int32(2)), (1, 2, 5, 5)),
    ],
    ids=["unflatten_list_size", "numpy_int_sizes"],
)
def test_numpy_and_list_spellings_convert(
    make: Callable[[], tnn.Module], shape: tuple[int, ...]
) -> None:
    """torch keeps NumPy ints and lists as given (its repr shows them); fparam stores Python
    ints and tuples. The configuration is the same, so the conversion goes through."""
    model = make()
    twin = fparam.from_torch(model)
    _assert_same_state(twin, model)
    x = _random(*shape)
    np.testing.assert_allclose(
        np.asarray(twin(x)), model(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-6
    )


def test_odd_models_compute_what_torch_computes() -> None:
    x = _random(3, 2)
    for model, call in [
        (_extra_buffer(), lambda m, v: m(v)),
        (_extra_non_persistent_buffer(), lambda m, v: m(v)),
        (_bias_set_to_none(), lambda m, v: m[1](m[0](v).T[None])),
        (tnn.Sequential(), lambda m, v: m(v)),
    ]:
        twin = fparam.from_torch(model)
        expected = call(model, torch.from_numpy(x)).detach().numpy()
        got = np.asarray(call(twin, jnp.asarray(x)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    model = _loss_weight_made_non_persistent()
    x, y, tx, ty = _loss_inputs("index")
    got = np.asarray(fparam.from_torch(model)(x, y))
    np.testing.assert_allclose(got, model(tx, ty).numpy(), rtol=1e-6, atol=1e-6)


def test_the_twin_does_not_share_memory_with_torch() -> None:
    model = _extra_buffer()
    twin = fparam.from_torch(model)
    with torch.no_grad():
        model.weight.add_(1.0)
        model.running.add_(1.0)
    assert not np.array_equal(np.asarray(twin.weight), model.weight.detach().numpy())
    assert not np.array_equal(np.asarray(twin.running), model.running.numpy())


def _with_forward_hook() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 2), tnn.ReLU())
    model[0].register_forward_hook(lambda module, args, out: out * 37)
    return model


def _with_pre_hook() -> tnn.Module:
    model = tnn.ModuleList([tnn.Linear(2, 2)])
    model.register_forward_pre_hook(lambda module, args: args)
    return model


def _with_backward_hook() -> tnn.Module:
    model = tnn.Sequential(OrderedDict(head=tnn.Linear(2, 2)))
    model.head.register_full_backward_hook(lambda module, gin, gout: None)
    return model


def _with_state_dict_hooks() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 2), tnn.Linear(2, 2))
    model[0].register_state_dict_post_hook(lambda module, sd, prefix, local: None)
    model[1].register_load_state_dict_post_hook(lambda module, keys: None)
    return model


def _with_weight_norm() -> tnn.Module:
    with pytest.warns(FutureWarning):
        layer = torch.nn.utils.weight_norm(tnn.Linear(2, 2))
    return tnn.Sequential(OrderedDict(fc=layer))


def _with_spectral_norm() -> tnn.Module:
    return tnn.ModuleDict({"sn": torch.nn.utils.spectral_norm(tnn.Linear(2, 2))})


def _with_parametrization() -> tnn.Module:
    model = tnn.Sequential(OrderedDict(fc=tnn.Linear(2, 2), act=tnn.Tanh()))
    torch.nn.utils.parametrizations.orthogonal(model.fc)
    return model


def _with_array_entry() -> tnn.Module:
    return tnn.Sequential(
        OrderedDict(p=tnn.ParameterDict({"w": tnn.Parameter(torch.ones(1)), "z": np.ones(2)}))
    )


def _with_module_entry() -> tnn.Module:
    return tnn.Sequential(tnn.ParameterList([tnn.Linear(2, 2)]))


def _with_changed_attribute() -> tnn.Module:
    model = tnn.Sequential(tnn.Linear(2, 3))
    model[0].in_features = 5
    return model


def _with_deleted_bias() -> tnn.Module:
    model = tnn.Sequential(tnn.ReLU(), tnn.Linear(2, 3))
    del model[1].bias
    return model


def _with_stale_padding() -> tnn.Module:
    model = tnn.Sequential(tnn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"))
    model[0].padding = (2,)  # torch's forward keeps padding with the stale (1, 1)
    return model


def _with_float64() -> tnn.Module:
    return tnn.Sequential(tnn.Linear(2, 3)).double()


_REFUSED: list[tuple[str, Callable[[], tnn.Module], list[str]]] = [
    ("forward_hook", _with_forward_hook, ["'0' (Linear): has a forward hook", "<lambda>"]),
    ("forward_pre_hook", _with_pre_hook, ["<root> (ModuleList): has a forward pre-hook"]),
    ("backward_hook", _with_backward_hook, ["'head' (Linear): has a backward hook"]),
    (
        "state_dict_hooks",
        _with_state_dict_hooks,
        ["'0' (Linear): has a state_dict hook", "'1' (Linear): has a load_state_dict post-hook"],
    ),
    ("weight_norm", _with_weight_norm, ["'fc' (Linear): has a forward pre-hook", "WeightNorm"]),
    (
        "spectral_norm",
        _with_spectral_norm,
        ["'sn' (Linear): has a forward pre-hook", "SpectralNorm object", "state_dict hook"],
    ),
    (
        "parametrization",
        _with_parametrization,
        ["'fc' (Linear): parametrized with torch.nn.utils.parametrize (weight: _Orthogonal)"],
    ),
    (
        "array_entry",
        _with_array_entry,
        ["'p' (ParameterDict): entry 'z' is a numpy.ndarray, not a Parameter"],
    ),
    (
        "module_entry",
        _with_module_entry,
        ["'0' (ParameterList): entry '0' is a torch.nn.modules.linear.Linear"],
    ),
    ("changed_attribute", _with_changed_attribute, ["'0.weight': torch's parameter has shape"]),
    ("deleted_bias", _with_deleted_bias, ["'1' (Linear): cannot be rebuilt", "bias"]),
    ("float64", _with_float64, ["'0.weight': torch's parameter is float64", "'0.bias'"]),
    (
        "stale_padding",
        _with_stale_padding,
        ["'0' (Conv1d): padding", "torch [1, 1], fparam [2, 2]"],
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"), [(m, e) for _, m, e in _REFUSED], ids=[n for n, *_ in _REFUSED]
)
def test_what_cannot_be_reproduced_is_a_type_error_naming_the_path(
    make: Callable[[], tnn.Module], expected: list[str]
) -> None:
    model = make()
    with pytest.raises(TypeError, match="from_torch cannot reproduce") as info:
        fparam.from_torch(model)
    for text in expected:
        assert text in str(info.value)


def test_a_forward_hook_would_have_changed_the_output() -> None:
    """The case the refusal exists for: torch's output with the hook is not the layers'."""
    model = _with_forward_hook()
    x = torch.from_numpy(_random(3, 2))
    hooked = model(x)
    without = model[1](torch.nn.functional.linear(x, model[0].weight, model[0].bias))
    assert not torch.allclose(hooked, without)
    with pytest.raises(TypeError, match=r"'0' \(Linear\): has a forward hook"):
        fparam.from_torch(model)


def test_a_global_hook_is_refused() -> None:
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: out)
    try:
        with pytest.raises(TypeError, match=r"<global>: a global forward hook"):
            fparam.from_torch(tnn.Linear(2, 2))
    finally:
        handle.remove()
    fparam.from_torch(tnn.Linear(2, 2))  # converts again once the hook is gone


def test_every_problem_is_listed_at_once() -> None:
    model = tnn.Sequential(
        _with_forward_hook(),
        _with_array_entry(),
        tnn.AdaptiveLogSoftmaxWithLoss(4, 6, [2]),
        _with_changed_attribute(),
    )
    with pytest.raises(TypeError) as info:
        fparam.from_torch(model)
    message = str(info.value)
    for text in [
        "torch.nn.modules.adaptive.AdaptiveLogSoftmaxWithLoss (at '2')",
        "'0.0' (Linear): has a forward hook",
        "'1.p' (ParameterDict): entry 'z'",
        "'3.0.weight': torch's parameter has shape (3, 2)",
    ]:
        assert text in message


# --------------------------------------------------------------------------- no torch import


def test_importing_fparam_does_not_import_torch() -> None:
    code = (
        "import sys, fparam, fparam.nn, fparam.optim, fparam.interop, fparam.serialization\n"
        "assert 'torch' not in sys.modules, 'fparam imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- from_torch(into=)


def _user_net(lib: Any, stride: int = 2, width: int = 4, scale_dtype: Any = None) -> Any:
    """The same user-defined class written for torch and for fparam (a port)."""
    array = torch if lib is tnn else jnp

    class Net(lib.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = lib.Conv2d(3, width, 3, stride=stride)
            self.bn = lib.BatchNorm2d(width)
            self.head = lib.Sequential(lib.Flatten(), lib.Linear(width, 2))
            self.scale = lib.Parameter(array.ones(2) if scale_dtype is None else scale_dtype)
            self.register_buffer("offset", array.zeros(2), persistent=False)

        def forward(self, x: Any) -> Any:
            features = self.bn(self.conv(x)).mean((2, 3), keepdims=True)
            return self.head(features) * self.scale[None] + self.offset[None]

    return Net()


def test_into_copies_a_user_defined_model_in_place() -> None:
    torch.manual_seed(0)
    model = _user_net(tnn)
    with torch.no_grad():
        model.offset.add_(torch.randn(2))  # non-persistent: not in state_dict, still copied
        model.scale.mul_(3)
    model.train()(torch.randn(4, 3, 9, 9))  # running statistics and the counter move
    mine = _user_net(nn)
    uids = [p.uid for p in mine.parameters()]
    assert fparam.from_torch(model, into=mine) is mine
    assert [p.uid for p in mine.parameters()] == uids  # in place, like load_state_dict
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(mine.state_dict()[key]), value.numpy())
    np.testing.assert_array_equal(np.asarray(mine.offset), model.offset.numpy())
    x = _random(2, 3, 9, 9)
    np.testing.assert_allclose(
        np.asarray(mine.eval()(x)), model.eval()(torch.from_numpy(x)).detach().numpy(), atol=1e-6
    )


def test_into_keeps_placement() -> None:
    import jax

    mine = _user_net(nn).to("cpu")
    fparam.from_torch(_user_net(tnn), into=mine)
    assert mine.conv.weight.committed and mine.bn.num_batches_tracked.committed
    assert mine.conv.weight.devices() == {jax.devices("cpu")[0]}


def test_into_lists_every_difference_and_changes_nothing() -> None:
    model = _user_net(tnn)
    model.head.add_module("extra", tnn.ReLU())
    model.register_buffer("count", torch.zeros(3))
    model.bn.register_buffer("num_batches_tracked", torch.tensor(3.5))  # float, not an int
    model.scale = tnn.Parameter(torch.ones(2, dtype=torch.float64))
    model.conv.register_forward_hook(lambda m, args, out: out)
    mine = _user_net(nn, stride=1, width=4)
    mine.register_buffer("offset", jnp.zeros(2))  # persistent here
    mine.head[1] = nn.Identity()
    mine.register_parameter("gain", nn.Parameter(jnp.ones(1)))
    before = {k: v for k, v in mine.state_dict().items()}
    with pytest.raises(TypeError) as info:
        fparam.from_torch(model, into=mine)
    message = str(info.value)
    for text in [
        "copied nothing",
        "'conv' (Conv2d): has a forward hook",
        "'conv' (Conv2d): configurations differ: torch 3, 4, kernel_size=(3, 3), "
        "stride=(2, 2), fparam 3, 4, kernel_size=(3, 3), stride=(1, 1)",
        "<root>: the fparam model has parameter 'gain', which the torch model lacks",
        "<root>: torch's buffer 'count' has no counterpart in the fparam model",
        "<root>: parameter 'scale' is float64 in torch, float32 in the fparam model",
        "<root>: buffer 'offset' is not persistent in torch but persistent in the fparam",
        "'head': torch's child module 'extra' has no counterpart",
        "'head.1': torch's Linear is a Identity in the fparam model",
        "'bn': buffer 'num_batches_tracked' is float32 in torch, int32",
    ]:
        assert text in message, text
    assert all(mine.state_dict()[k] is v for k, v in before.items())


def test_into_reports_shapes_and_none() -> None:
    model = _user_net(tnn, width=5)
    model.head[1].register_parameter("bias", None)
    with pytest.raises(TypeError) as info:
        fparam.from_torch(model, into=_user_net(nn))
    message = str(info.value)
    assert "'conv': parameter 'weight' has shape (5, 3, 3, 3) in torch, (4, 3, 3, 3)" in message
    assert "'head.1': parameter 'bias' is None in the torch model but not in the fparam" in message


def test_into_bad_arguments() -> None:
    import jax

    with pytest.raises(TypeError, match=r"into= expects an fparam nn\.Module, got dict"):
        fparam.from_torch(tnn.Linear(2, 2), into={})
    with pytest.raises(TypeError, match=r"from_torch expects a torch\.nn\.Module"):
        fparam.from_torch(nn.Linear(2, 2), into=nn.Linear(2, 2))
    model = tnn.Linear(2, 2)

    @jax.jit
    def inside(mine: nn.Module) -> nn.Module:
        return fparam.from_torch(model, into=mine)

    with pytest.raises(RuntimeError, match=r"cannot call from_torch\(\.\.\., into=\)"):
        inside(nn.Linear(2, 2))


def test_a_torch_hook_is_refused_with_the_fparam_spelling() -> None:
    """torch hooks get torch tensors: fparam does not carry them over, and says what to do."""
    with pytest.raises(TypeError) as info:
        fparam.from_torch(_with_forward_hook())
    assert "register an fparam version on the converted model" in str(info.value)
    assert "register_forward_hook" in str(info.value)


def test_an_unbuilt_torch_lazy_layer_is_refused_and_a_built_one_converts() -> None:
    model = tnn.Sequential(tnn.LazyLinear(3), tnn.ReLU())
    with pytest.raises(TypeError, match=r"'0' \(LazyLinear\): a torch lazy layer not built yet"):
        fparam.from_torch(model)
    x = _random(2, 5)
    expected = model(torch.from_numpy(x)).detach().numpy()
    twin = fparam.from_torch(model)
    assert type(twin[0]) is nn.Linear
    np.testing.assert_allclose(np.asarray(twin(x)), expected, rtol=1e-6, atol=1e-6)
