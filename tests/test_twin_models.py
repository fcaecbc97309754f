"""Torch models and their fparam twins, written the same way, load, predict and train alike.

Each model class is defined once, in ``define(nn)``, and built twice: with ``torch.nn`` and with
``fparam.nn``. The class bodies are therefore identical; only the ``nn`` namespace and the random
initialisation differ, and the twin takes the torch model's ``state_dict()`` as it is (torch
tensors straight into ``load_state_dict``). Both are then trained on the same batches with SGD
(momentum, Nesterov, weight decay): torch with ``zero_grad / backward / step``, fparam with a
jitted ``value_and_grad`` + ``opt.step``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
import pytest
import torch

import fparam
from fparam import nn as fnn
from fparam import optim

_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_STEPS = 25
_CHECK_EVERY = 5
_SGD = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}

# Tolerances: measured on this suite's CPU, then set with 4-30x headroom (float32 rounding
# differs between XLA's and torch's kernels; a real bug is orders of magnitude larger).
# * forward outputs on the same weights: max |Δ| 1.5e-8 (CNN, Net1d) to 3.0e-8 (MLP, Net3d);
# * parameters (|p| <= 0.45) during 25 SGD steps, as momentum accumulates the differences:
#   max |Δ| 6.0e-8 (MLP, Net1d), 7.3e-8 (CNN), 3.7e-8 (Net3d);
# * momentum buffers (|m| <= 0.85) after 25 steps: max |Δ| 2.1e-7 (CNN), 1.2e-7 (MLP, Net1d);
# * losses: max relative difference 2.5e-7.
_FORWARD_ATOL = 1e-6
_TRAIN_ATOL = 1e-6
_MOMENTUM_ATOL = 2e-6
_LOSS_RTOL = 2e-6


def define(nn: Any) -> SimpleNamespace:
    """The model classes, written once against ``nn`` (``torch.nn`` or ``fparam.nn``)."""

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 16)
            self.act = nn.Tanh()
            self.fc2 = nn.Linear(16, 16, bias=False)
            self.out = nn.Sequential(nn.GELU(), nn.Linear(16, 3))

        def forward(self, x):
            return self.out(self.fc2(self.act(self.fc1(x))))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(2, 4, 3, stride=2, padding=1),  # (2, 8, 8) -> (4, 4, 4)
                nn.ReLU(),
                nn.Conv2d(4, 8, 3, padding=1, groups=2),  # grouped, same size
                nn.LeakyReLU(0.1),
                nn.ConvTranspose2d(8, 4, 2, stride=2),  # -> (4, 8, 8)
                nn.ELU(),
            )
            self.flatten = nn.Flatten()
            self.head = nn.Linear(4 * 8 * 8, 5)

        def forward(self, x):
            return self.head(self.flatten(self.features(x)))

    class Net1d(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(3, 6, 3, stride=2, padding=1, padding_mode="reflect")
            self.conv2 = nn.Conv1d(6, 6, 3, dilation=2, groups=3, bias=False)
            self.act = nn.SiLU()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4, 4))

        def forward(self, x):  # (3, 16) -> (6, 8) -> (6, 4)
            return self.head(self.act(self.conv2(self.act(self.conv1(x)))))

    class Net3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(2, 3, 2, stride=(1, 2, 2))
            self.up = nn.ConvTranspose3d(3, 2, (1, 2, 2), stride=(1, 2, 2))
            self.act = nn.Tanh()

        def forward(self, x):  # (2, 3, 4, 4) -> (3, 2, 2, 2) -> (2, 2, 4, 4)
            return self.up(self.act(self.conv(x)))

    return SimpleNamespace(MLP=MLP, CNN=CNN, Net1d=Net1d, Net3d=Net3d)


TORCH = define(torch.nn)
FPARAM = define(fnn)


def _regression(rng: np.random.Generator, x_shape: tuple[int, ...], y_shape: tuple[int, ...]):
    x = rng.standard_normal((_STEPS, *x_shape)).astype(np.float32)
    y = rng.standard_normal((_STEPS, *y_shape)).astype(np.float32)
    return x, y, y, "MSELoss"


def _classification(rng: np.random.Generator, x_shape: tuple[int, ...], classes: int):
    x = rng.standard_normal((_STEPS, *x_shape)).astype(np.float32)
    y = rng.integers(0, classes, (_STEPS, x_shape[0]))
    return x, y.astype(np.int64), y.astype(np.int32), "CrossEntropyLoss"


# name -> batches for every step: (x, torch targets, fparam targets, loss class name)
_DATA: dict[str, Callable[[np.random.Generator], tuple[Any, ...]]] = {
    "MLP": lambda rng: _regression(rng, (8, 6), (8, 3)),
    "CNN": lambda rng: _classification(rng, (4, 2, 8, 8), 5),
    "Net1d": lambda rng: _classification(rng, (4, 3, 16), 4),
    "Net3d": lambda rng: _regression(rng, (2, 2, 3, 4, 4), (2, 2, 2, 4, 4)),
}


def _make_step(criterion: Any) -> Callable[..., Any]:
    """The jitted training step; it also returns the model's output before the update."""

    def loss_and_output(model: Any, x: Any, y: Any) -> Any:
        output = model(x)
        return criterion(output, y), output

    def step(model: Any, opt: Any, x: Any, y: Any) -> Any:
        (loss, output), grads = fparam.value_and_grad(loss_and_output, has_aux=True)(model, x, y)
        model, opt = opt.step(model, grads)
        return model, opt, loss, output

    return jax.jit(step, compiler_options=_FAST_COMPILE)


def _assert_params_close(model: Any, torch_model: torch.nn.Module, step: int) -> None:
    got = dict(model.named_parameters())
    for name, expected in torch_model.named_parameters():
        np.testing.assert_allclose(
            np.asarray(got[name]),
            expected.detach().numpy(),
            rtol=0,
            atol=_TRAIN_ATOL,
            err_msg=f"{name} after {step} steps",
        )


@pytest.mark.parametrize("name", list(_DATA))
def test_twin_loads_predicts_and_trains_like_torch(name: str) -> None:
    torch.manual_seed(1)
    fparam.manual_seed(2)  # another seed: the twin's own initialisation must not matter
    torch_model = getattr(TORCH, name)()
    model = getattr(FPARAM, name)()

    # Same names, same order, same repr.
    assert [n for n, _ in model.named_parameters()] == [
        n for n, _ in torch_model.named_parameters()
    ]
    assert list(model.state_dict()) == list(torch_model.state_dict())
    assert [n for n, _ in model.named_modules()] == [n for n, _ in torch_model.named_modules()]
    assert repr(model) == repr(torch_model)

    # torch's state_dict loads as it is: torch tensors, no conversion.
    result = model.load_state_dict(torch_model.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(model.state_dict()[key]), value.numpy())

    xs, torch_ys, ys, loss_name = _DATA[name](np.random.default_rng(3))
    torch_criterion = getattr(torch.nn, loss_name)()
    torch_opt = torch.optim.SGD(torch_model.parameters(), **_SGD)
    opt = optim.SGD(model.parameters(), **_SGD)
    step = _make_step(getattr(fnn, loss_name)())  # one compilation: forward and training
    for i in range(_STEPS):
        torch_opt.zero_grad()
        torch_output = torch_model(torch.from_numpy(xs[i]))
        torch_loss = torch_criterion(torch_output, torch.from_numpy(torch_ys[i]))
        torch_loss.backward()
        torch_opt.step()
        model, opt, loss, output = step(model, opt, xs[i], ys[i])
        if i == 0:  # the same weights give the same outputs
            assert output.shape == torch_output.shape
            np.testing.assert_allclose(
                np.asarray(output), torch_output.detach().numpy(), rtol=0, atol=_FORWARD_ATOL
            )
        np.testing.assert_allclose(float(loss), torch_loss.item(), rtol=_LOSS_RTOL)
        if (i + 1) % _CHECK_EVERY == 0:
            _assert_params_close(model, torch_model, i + 1)

    # The optimizers agree too: same layout, momentum buffers close.
    state, torch_state = opt.state_dict(), torch_opt.state_dict()
    assert list(state["state"]) == list(torch_state["state"])
    for index, entry in torch_state["state"].items():
        np.testing.assert_allclose(
            np.asarray(state["state"][index]["momentum_buffer"]),
            entry["momentum_buffer"].numpy(),
            rtol=0,
            atol=_MOMENTUM_ATOL,
        )
    assert list(model.state_dict()) == list(torch_model.state_dict())
