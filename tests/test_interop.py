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
        tnn.ModuleList([tnn.GRU(2, 3), tnn.LSTM(2, 3), tnn.GRU(2, 3)]),
        tnn.ModuleDict({"x": _MyLinear(2, 2)}),
    )
    with pytest.raises(TypeError) as info:
        fparam.from_torch(model)
    message = str(info.value)
    for name in (
        f"{__name__}._Custom",
        f"{__name__}._MyLinear",
        "torch.nn.modules.rnn.GRU",
        "torch.nn.modules.rnn.LSTM",
    ):
        assert name in message
    assert message.count("GRU") == 1  # each class once
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


def test_extra_state_a_twin_cannot_hold_is_an_error() -> None:
    model = tnn.Linear(2, 2)
    model.register_buffer("running", torch.zeros(2))
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "running"'):
        fparam.from_torch(model)


# --------------------------------------------------------------------------- no torch import


def test_importing_fparam_does_not_import_torch() -> None:
    code = (
        "import sys, fparam, fparam.nn, fparam.optim, fparam.interop, fparam.serialization\n"
        "assert 'torch' not in sys.modules, 'fparam imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
