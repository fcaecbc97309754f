"""Real PyTorch programs and their fparam ports compute, differentiate and train alike.

``real_programs/torch_programs.py`` holds five programs as their authors wrote them in torch
(pytorch/examples' MNIST ``Net`` and DCGAN, LeNet-5, torchvision's ResNet-18, milesial's U-Net),
at reduced widths; ``real_programs/fparam_programs.py`` is the same file ported to fparam. The
first test checks that the port changed nothing but the imports and the tensor calls listed in
the porting guide. The others build each torch model, twin it in fparam with the torch weights,
and compare with torch: outputs in training and evaluation mode, the loss and its gradient for
every parameter (matched by ``state_dict`` name), then a few SGD steps (momentum 0.9), torch's
``zero_grad / backward / step`` against the README's jitted ``fparam.value_and_grad`` +
``opt.step``, on the same batches: parameters, BatchNorm running statistics and batch counters
at the end.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

_HERE = Path(__file__).resolve().parent / "real_programs"
# Compile time dominates this file. ("xla_cpu_use_fusion_emitters": False would cut it further,
# threefold, but it gave U-Net wrong max-pool gradients with the MaxPool2d of fparam.nn.)
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_STEPS = 3
_SGD = {"lr": 0.01, "momentum": 0.9}

# Tolerances (float32; XLA's and torch's kernels round differently): the largest differences
# measured over the programs below (ResNet-18 largest, then U-Net), with 5-30x headroom; a
# porting bug is orders of magnitude larger.
# * outputs, training and evaluation mode: 8.5e-6 (others <= 1.5e-6);
# * gradients, relative to the parameter's largest gradient entry: 8.9e-6 (others <= 4.2e-6);
# * losses, relative: 5.1e-7;
# * after the SGD steps: parameters 3.1e-7, running statistics 1.1e-6 (others <= 6e-8).
_OUT_ATOL = 5e-5
_GRAD_RTOL = 5e-5  # relative to the largest gradient entry of the same parameter
_STATE_ATOL = 1e-5
_LOSS_RTOL = 5e-6


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"real_programs_{name}", _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


T = _load("torch_programs")
P = _load("fparam_programs")

# The lines a port may change: torch's imports, and section 3 of docs/porting-from-pytorch.md.
_IMPORTS = {
    "import torch",
    "import torch.nn as nn",
    "import torch.nn.functional as F",
    "import jax.numpy as jnp",
    "from fparam import nn",
    "from fparam.nn import functional as F",
}
_REWRITES = {
    "torch.flatten(x, 1)": "F.flatten(x, 1)",
    "x.view(x.size(0), -1)": "x.reshape(x.shape[0], -1)",
    "output.view(-1, 1)": "output.reshape(-1, 1)",
    "x2.size()[2] - x1.size()[2]": "x2.shape[2] - x1.shape[2]",
    "x2.size()[3] - x1.size()[3]": "x2.shape[3] - x1.shape[3]",
    "torch.cat([x2, x1], dim=1)": "jnp.concatenate([x2, x1], axis=1)",
}


def _code(path: Path) -> list[str]:
    """The file's lines after its module docstring."""
    text = path.read_text()
    assert text.startswith('"""')
    return text[text.index('"""', 3) + 3 :].strip("\n").splitlines()


def test_the_port_changes_only_imports_and_tensor_calls() -> None:
    torch_lines, port_lines = (
        _code(_HERE / "torch_programs.py"),
        _code(_HERE / "fparam_programs.py"),
    )
    removed, added = [], []
    for line in difflib.ndiff(torch_lines, port_lines):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    rewritten = []
    for line in removed:
        if line.strip() in _IMPORTS or not line.strip():
            continue
        new = line
        for old, replacement in _REWRITES.items():
            new = new.replace(old, replacement)
        assert new != line, f"the port changed a line outside the rewrite table: {line!r}"
        rewritten.append(new)
    assert [a for a in added if a.strip() and a.strip() not in _IMPORTS] == rewritten
    assert not any("torch" in line for line in port_lines)
    assert len(rewritten) == 7  # every rewrite in the table is used (output.view: one line)


def _twin(torch_model: torch.nn.Module, model: nn.Module) -> nn.Module:
    """``model`` holding the torch model's weights and buffers: ``fparam.from_torch(into=)``."""
    assert [n for n, _ in model.named_parameters()] == [
        n for n, _ in torch_model.named_parameters()
    ]
    assert [n for n, _ in model.named_buffers()] == [n for n, _ in torch_model.named_buffers()]
    assert repr(model) == repr(torch_model)
    twin = fparam.from_torch(torch_model, into=model)
    assert twin is model
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(twin.state_dict()[key]), value.numpy())
    return twin


def _assert_close(got: Any, expected: torch.Tensor, atol: float, what: str) -> None:
    expected = expected.detach().numpy()
    got = np.asarray(got)
    assert got.shape == expected.shape, what
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=what)


def _assert_grads_close(grads: nn.Module, torch_model: torch.nn.Module, what: str) -> None:
    got = dict(grads.named_parameters())
    expected = {n: p.grad for n, p in torch_model.named_parameters()}
    assert list(got) == list(expected)
    for name, g in expected.items():
        scale = float(g.abs().max())
        assert scale > 0, f"{what}: torch's gradient of {name} is zero, the test cannot see it"
        _assert_close(got[name], g, _GRAD_RTOL * scale, f"{what}: gradient of {name}")


def _assert_state_close(model: nn.Module, torch_model: torch.nn.Module, what: str) -> None:
    """Every state_dict entry: parameters, running statistics, num_batches_tracked."""
    got = model.state_dict()
    assert list(got) == list(torch_model.state_dict())
    for name, expected in torch_model.state_dict().items():
        if expected.dtype == torch.int64:
            assert int(got[name]) == int(expected), f"{what}: {name}"
        else:
            _assert_close(got[name], expected, _STATE_ATOL, f"{what}: {name}")


@dataclass(frozen=True)
class Program:
    build: Callable[[Any], Any]  # the programs' module (torch or fparam) -> a model
    batch: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]  # (x, target)
    loss: str  # the torch.nn.functional / fparam.nn.functional loss the program trains with
    dropout: bool = False  # training-mode outputs are random: compare in evaluation mode


def _images(shape: tuple[int, ...], classes: int, target_shape: tuple[int, ...]):
    def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal(shape).astype(np.float32)
        return x, rng.integers(0, classes, target_shape)

    return batch


PROGRAMS = {
    "mnist_net": Program(
        lambda m: m.Net(), _images((4, 1, 28, 28), 10, (4,)), "nll_loss", dropout=True
    ),
    "lenet5": Program(lambda m: m.LeNet5(), _images((4, 1, 28, 28), 10, (4,)), "cross_entropy"),
    # Batch 16: layer4 works at 1x1, so its BatchNorms normalise over the batch alone, and a
    # small batch amplifies float32 rounding (outputs after 3 steps differ by 0.5 at batch 4,
    # 3e-5 at batch 8, 8e-6 at batch 16).
    "resnet18": Program(
        lambda m: m.resnet18(num_classes=10, width=16),
        _images((16, 3, 32, 32), 10, (16,)),
        "cross_entropy",
    ),
    # 18x18: the second pooling floors 9 to 4, so Up pads the upsampled 8x8 to 9x9 (F.pad).
    "unet": Program(
        lambda m: m.UNet(1, 3, width=8), _images((2, 1, 18, 18), 3, (2, 18, 18)), "cross_entropy"
    ),
}


def _train_step(loss: Callable[..., Any]) -> Callable[..., Any]:
    """The README's step; it also returns the output and the gradients it stepped with."""

    def loss_and_output(model, x, y):
        output = model(x)
        return loss(output, y), output

    def step(model, opt, x, y):
        (value, output), grads = fparam.value_and_grad(loss_and_output, has_aux=True)(model, x, y)
        model, opt = opt.step(model, grads)
        return model, opt, value, output, grads

    return jax.jit(step, compiler_options=_FAST_COMPILE)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_port_predicts_differentiates_and_trains_like_torch(name: str) -> None:
    program = PROGRAMS[name]
    torch.manual_seed(0)
    fparam.manual_seed(1)  # another seed: the port's own initialisation must not matter
    torch_model = program.build(T)
    model = _twin(torch_model, program.build(P))
    torch_loss = getattr(torch.nn.functional, program.loss)
    step = _train_step(getattr(nn.functional, program.loss))
    predict = jax.jit(lambda m, x: m(x), compiler_options=_FAST_COMPILE)
    rng = np.random.default_rng(0)
    batches = [program.batch(rng) for _ in range(_STEPS)]

    def compare_eval(what: str) -> None:
        torch_model.eval()
        model.eval()
        x = batches[0][0]
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(x))
        _assert_close(predict(model, x), expected, _OUT_ATOL, f"{what}, evaluation mode")
        if not program.dropout:
            torch_model.train()
            model.train()

    compare_eval("before training")
    # With Dropout, train in evaluation mode (no masks); the masks are checked on their own.
    torch_opt = torch.optim.SGD(torch_model.parameters(), **_SGD)
    opt = optim.SGD(model.parameters(), **_SGD)
    for i, (x, y) in enumerate(batches):
        torch_opt.zero_grad()
        torch_output = torch_model(torch.from_numpy(x))
        torch_value = torch_loss(torch_output, torch.from_numpy(y))
        torch_value.backward()
        model, opt, value, output, grads = step(model, opt, x, y.astype(np.int32))
        np.testing.assert_allclose(float(value), torch_value.item(), rtol=_LOSS_RTOL)
        if i == 0:
            _assert_close(output, torch_output, _OUT_ATOL, "first step's output")
            _assert_grads_close(grads, torch_model, "first step")
        torch_opt.step()
    _assert_state_close(model, torch_model, f"after {_STEPS} steps")
    compare_eval(f"after {_STEPS} steps")


def test_dropout_in_training_mode_draws_masks_from_the_key_in_scope() -> None:
    """MNIST Net in training mode (the parity test above trains it in evaluation mode):
    log-probabilities, other than evaluation mode's, the same for the same key, new for a new
    key; eagerly, the default stream draws the masks."""
    torch.manual_seed(0)
    model = _twin(T.Net(), P.Net())
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    forward = jax.jit(_forward_with_key, compiler_options=_FAST_COMPILE)
    out = np.asarray(forward(model, x, jax.random.key(0)))
    assert out.shape == (4, 10)
    np.testing.assert_allclose(np.asarray(jax.nn.logsumexp(out, axis=1)), 0.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(forward(model, x, jax.random.key(0))), out)
    assert not np.allclose(np.asarray(forward(model, x, jax.random.key(1))), out)
    model.eval()
    assert not np.allclose(np.asarray(forward(model, x, jax.random.key(0))), out)


def _forward_with_key(model: nn.Module, x: Any, key: jax.Array) -> jax.Array:
    with fparam.rng(key):
        return model(x)


def _dcgan_step() -> Callable[..., Any]:
    """One iteration of pytorch/examples' DCGAN loop, in the README's jitted form."""
    criterion = nn.BCELoss()

    def step(netG, netD, optimizerG, optimizerD, real, noise):
        real_label = jnp.ones(real.shape[0])
        fake_label = jnp.zeros(real.shape[0])

        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z))). torch computes `fake`
        # once and backpropagates errG through it in (2); here (2) runs G again to
        # differentiate it, so this run must not count the batch in G's running statistics:
        # it runs on a copy of G that is dropped.
        fake = fparam.stateful(lambda g: g(noise))(jax.tree.map(lambda a: a, netG))

        def d_loss(netD):
            output_real = netD(real)
            output_fake = netD(jax.lax.stop_gradient(fake))
            errD = criterion(output_real, real_label) + criterion(output_fake, fake_label)
            return errD, (output_real.mean(), output_fake.mean())

        (errD, (D_x, D_G_z1)), gradsD = fparam.value_and_grad(d_loss, has_aux=True)(netD)
        netD, optimizerD = optimizerD.step(netD, gradsD)

        # (2) Update G network: maximize log(D(G(z))). D runs in training mode on the fake
        # batch, so its statistics move too: netD is differentiated (and returned) for that.
        def g_loss(netG, netD):
            output = netD(netG(noise))
            return criterion(output, real_label), output.mean()

        (errG, D_G_z2), (gradsG, _) = fparam.value_and_grad(g_loss, argnums=(0, 1), has_aux=True)(
            netG, netD
        )
        netG, optimizerG = optimizerG.step(netG, gradsG)
        stats = (errD, errG, D_x, D_G_z1, D_G_z2)
        return netG, netD, optimizerG, optimizerD, stats, (gradsG, gradsD)

    return jax.jit(step, compiler_options=_FAST_COMPILE)


def _init_draws(model: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The convolution weights, the BatchNorm weights and the BatchNorm biases, flattened."""
    convs, scales, shifts = [], [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            convs.append(np.asarray(m.weight).ravel())
        elif isinstance(m, nn.BatchNorm2d):
            scales.append(np.asarray(m.weight))
            shifts.append(np.asarray(m.bias))
    return np.concatenate(convs), np.concatenate(scales), np.concatenate(shifts)


def test_dcgan_port_trains_like_torch() -> None:
    torch.manual_seed(0)
    fparam.manual_seed(1)
    torch_G, torch_D = T.Generator(), T.Discriminator()
    torch_G.apply(T.weights_init)
    torch_D.apply(T.weights_init)
    netG, netD = P.Generator(), P.Discriminator()
    netG.apply(P.weights_init)  # the statement form of nn.init writes into the modules
    netD.apply(P.weights_init)
    for model in (netG, netD):  # DCGAN's initialisation, not the layers' defaults
        convs, scales, shifts = _init_draws(model)
        assert 0.017 < convs.std() < 0.023 and abs(convs.mean()) < 0.003  # N(0, 0.02)
        assert 0.005 < scales.std() < 0.04 and abs(scales.mean() - 1) < 0.02  # N(1, 0.02)
        assert not shifts.any()
    netG, netD = _twin(torch_G, netG), _twin(torch_D, netD)

    criterion = torch.nn.BCELoss()
    optimizerG = torch.optim.SGD(torch_G.parameters(), **_SGD)
    optimizerD = torch.optim.SGD(torch_D.parameters(), **_SGD)
    optG, optD = optim.SGD(netG.parameters(), **_SGD), optim.SGD(netD.parameters(), **_SGD)
    step = _dcgan_step()
    rng = np.random.default_rng(0)
    for i in range(_STEPS):
        real = np.tanh(rng.standard_normal((8, 1, 16, 16))).astype(np.float32)
        noise = rng.standard_normal((8, T.nz, 1, 1)).astype(np.float32)
        netG, netD, optG, optD, stats, (gradsG, gradsD) = step(netG, netD, optG, optD, real, noise)

        # pytorch/examples' loop, as written there.
        torch_D.zero_grad()
        real_cpu = torch.from_numpy(real)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), 1.0)
        output = torch_D(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        fake = torch_G(torch.from_numpy(noise))
        label.fill_(0.0)
        output = torch_D(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        if i == 0:
            _assert_grads_close(gradsD, torch_D, "first step, D")
        optimizerD.step()
        torch_G.zero_grad()
        label.fill_(1.0)
        output = torch_D(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        if i == 0:
            _assert_grads_close(gradsG, torch_G, "first step, G")
        optimizerG.step()
        expected = (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)
        np.testing.assert_allclose(np.array(stats), expected, rtol=_LOSS_RTOL)

    _assert_state_close(netG, torch_G, f"G after {_STEPS} steps")
    _assert_state_close(netD, torch_D, f"D after {_STEPS} steps")
    assert int(netD.main[3].num_batches_tracked) == 3 * _STEPS  # real, fake for D, fake for G
    assert int(netG.main[1].num_batches_tracked) == _STEPS
    noise = rng.standard_normal((8, T.nz, 1, 1)).astype(np.float32)
    for torch_model, model, x in [(torch_G, netG, noise), (torch_D, netD, real)]:
        torch_model.eval()
        model.eval()
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(x))
        got = jax.jit(lambda m, x: m(x), compiler_options=_FAST_COMPILE)(model, x)
        _assert_close(got, expected, _OUT_ATOL, f"{type(model).__name__}, evaluation mode")
