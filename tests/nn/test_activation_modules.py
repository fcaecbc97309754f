"""Module-level parity of the activation layers with torch.nn's: constructor arguments, values
and gradients through the module, ``repr``, and no parameters or buffers.

The functions themselves are covered grid by grid in test_functional_activation.py.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn

# Tolerances at ~5x the largest errors measured over CASES below (jax 0.10.2, torch 2.13, CPU):
# values 1.1e-7 relative (9.5e-7 absolute, 1 ulp, for GELU at x=9), gradients 5.4e-7 absolute
# (GELU tanh; cotangents ~N(0,1)).
VAL = {"rtol": 5e-7, "atol": 5e-7}
GRAD = {"rtol": 1e-6, "atol": 2.5e-6}

# (class name, args, kwargs, torch's repr)
CASES = [
    ("ReLU", (), {}, "ReLU()"),
    ("ReLU", (), {"inplace": True}, "ReLU(inplace=True)"),
    ("LeakyReLU", (), {}, "LeakyReLU(negative_slope=0.01)"),
    ("LeakyReLU", (0.2,), {}, "LeakyReLU(negative_slope=0.2)"),
    ("LeakyReLU", (), {"negative_slope": 0.2, "inplace": True}, "LeakyReLU(negative_slope=0.2, inplace=True)"),
    ("ELU", (), {}, "ELU(alpha=1.0)"),
    ("ELU", (0.5, True), {}, "ELU(alpha=0.5, inplace=True)"),
    ("ELU", (), {"alpha": 2}, "ELU(alpha=2)"),
    ("GELU", (), {}, "GELU(approximate='none')"),
    ("GELU", (), {"approximate": "tanh"}, "GELU(approximate='tanh')"),
    ("SiLU", (), {}, "SiLU()"),
    ("SiLU", (), {"inplace": True}, "SiLU(inplace=True)"),
    ("Sigmoid", (), {}, "Sigmoid()"),
    ("Tanh", (), {}, "Tanh()"),
    ("Softmax", (), {"dim": 1}, "Softmax(dim=1)"),
    ("Softmax", (0,), {}, "Softmax(dim=0)"),
    ("Softmax", (-1,), {}, "Softmax(dim=-1)"),
    ("LogSoftmax", (), {"dim": 1}, "LogSoftmax(dim=1)"),
    ("LogSoftmax", (-2,), {}, "LogSoftmax(dim=-2)"),
]  # fmt: skip

IDS = [f"{name}{args}{kwargs}" for name, args, kwargs, _ in CASES]

# One input for every case (one shape, so each function compiles once): negative, positive,
# saturating values and exact zeros of both signs.
_X = (3 * np.random.default_rng(0).standard_normal((4, 6))).astype(np.float32)
_X.reshape(-1)[:5] = [0.0, -0.0, 9.0, -9.0, 0.0]
_COT = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)


@pytest.mark.parametrize(("name", "args", "kwargs", "expected_repr"), CASES, ids=IDS)
def test_module_matches_torch(name, args, kwargs, expected_repr):
    m = getattr(nn, name)(*args, **kwargs)
    ref = getattr(torch.nn, name)(*args, **kwargs)

    y, vjp = jax.vjp(m, jnp.asarray(_X))
    (g,) = vjp(jnp.asarray(_COT))
    # torch's inplace=True overwrites its input: give it a (differentiable) copy of the leaf.
    tx = torch.tensor(_X, requires_grad=True)
    ty = ref(tx.clone())
    ty.backward(torch.tensor(_COT))

    assert y.shape == tuple(ty.shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), **VAL)
    np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), **GRAD)

    assert repr(m) == repr(ref) == expected_repr
    assert list(m.named_parameters()) == [] == list(ref.named_parameters())
    assert list(m.named_buffers()) == [] == list(ref.named_buffers())
    assert list(m.state_dict()) == [] == list(ref.state_dict())
    # No leaves: constructor arguments are static, so the module is an empty pytree.
    assert jax.tree.leaves(m) == []
    # Attributes carry torch's names.
    for attr in ("inplace", "negative_slope", "alpha", "approximate", "dim"):
        if hasattr(ref, attr):
            assert getattr(m, attr) == getattr(ref, attr)


@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax"])
def test_softmax_default_dim_is_none_with_torch_warning(name):
    m, ref = getattr(nn, name)(), getattr(torch.nn, name)()
    assert repr(m) == repr(ref) == f"{name}(dim=None)"
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        y = m(_X)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ty = ref(torch.tensor(_X))
    # A 2-D input normalises over dim 1 under torch's legacy implicit rule.
    np.testing.assert_allclose(np.asarray(y), ty.numpy(), **VAL)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert [w.category for w in ours] == [w.category for w in theirs] == [UserWarning]


def test_modules_work_under_jit_and_in_a_sequential():
    model = nn.Sequential(nn.LeakyReLU(0.2), nn.GELU(approximate="tanh"), nn.Softmax(dim=1))
    ref = torch.nn.Sequential(
        torch.nn.LeakyReLU(0.2), torch.nn.GELU(approximate="tanh"), torch.nn.Softmax(dim=1)
    )
    y = jax.jit(lambda mod, x: mod(x))(model, _X)
    np.testing.assert_allclose(np.asarray(y), ref(torch.tensor(_X)).numpy(), **VAL)
    assert repr(model) == repr(ref)


def test_gelu_bad_approximate_fails_at_call_like_torch():
    m, ref = nn.GELU(approximate="bogus"), torch.nn.GELU(approximate="bogus")
    assert repr(m) == repr(ref)
    with pytest.raises(RuntimeError) as theirs:
        ref(torch.tensor(_X))
    with pytest.raises(RuntimeError) as ours:
        m(_X)
    assert str(ours.value) == str(theirs.value)


def test_softmax_bad_dim_raises_index_error_like_torch():
    with pytest.raises(IndexError) as theirs:
        torch.nn.Softmax(dim=2)(torch.tensor(_X))
    with pytest.raises(IndexError) as ours:
        nn.Softmax(dim=2)(_X)
    assert str(ours.value) == str(theirs.value)
