"""Module-level parity of ``nn.Linear`` and ``nn.Identity`` with torch.

``nn.functional.linear`` is covered in test_functional_activation.py; this file checks what the
module adds: parameter registration and names, ``state_dict``/``load_state_dict``, ``repr``,
the default initialisation and its keys, ``reset_parameters`` and module-shaped gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

# Tolerances at ~5x the largest errors measured over GRID (jax 0.10.2, torch 2.13, CPU):
# float32 outputs 1.2e-7 and gradients 4.8e-7 absolute (|values| <= ~3); float64 8.9e-16.
F32 = {"rtol": 1e-6, "atol": 2.5e-6}
F64 = {"rtol": 1e-14, "atol": 5e-15}

# A randomized grid, fixed by its seed: (in_features, out_features, bias, leading input dims).
# Leading dims () give a 1-D input, (n,) a 2-D one and (a, b) a 3-D one. Sizes come from small
# sets because every new parameter shape costs a compile of JAX's random draw (~0.5 s of CPU);
# the other tests reuse them.
_rng = np.random.default_rng(1234)
GRID = [
    (int(_rng.choice([4, 5])), int(_rng.choice([3, 4])), bias, lead)
    for bias in (True, False)
    for lead in ((), (int(_rng.integers(1, 6)),), (2, int(_rng.integers(1, 4))))
]


def _torch_linear(in_f: int, out_f: int, bias: bool, dtype=torch.float32) -> torch.nn.Linear:
    return torch.nn.Linear(in_f, out_f, bias=bias, dtype=dtype)


@jax.jit
def _value_and_vjp(m, x, cot):
    """Output and module-shaped/input VJPs in one compiled call (eager VJPs compile op by op)."""
    y, vjp = jax.vjp(lambda mod, inp: mod(inp), m, x)
    return (y, *vjp(cot))


def _compare_with_torch(in_f, out_f, bias, lead, np_dtype, jnp_dtype, torch_dtype, tol):
    rng = np.random.default_rng(in_f * 100 + out_f * 10 + len(lead))
    ref = _torch_linear(in_f, out_f, bias, torch_dtype)
    m = nn.Linear(in_f, out_f, bias=bias, dtype=jnp_dtype)
    result = m.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []

    x = rng.standard_normal((*lead, in_f)).astype(np_dtype)
    cot = rng.standard_normal((*lead, out_f)).astype(np_dtype)
    y, g_mod, g_x = _value_and_vjp(m, x, cot)

    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(cot))

    assert y.shape == tuple(ty.shape) == (*lead, out_f)
    assert y.dtype == jnp_dtype
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(np.asarray(g_x), tx.grad.numpy(), **tol)
    # The gradient is module-shaped: a Linear whose fields are the gradients.
    assert isinstance(g_mod, nn.Linear)
    np.testing.assert_allclose(np.asarray(g_mod.weight), ref.weight.grad.numpy(), **tol)
    if bias:
        np.testing.assert_allclose(np.asarray(g_mod.bias), ref.bias.grad.numpy(), **tol)
    else:
        assert g_mod.bias is None


@pytest.mark.parametrize(("in_f", "out_f", "bias", "lead"), GRID)
def test_forward_and_gradients_match_torch_float32(in_f, out_f, bias, lead):
    _compare_with_torch(in_f, out_f, bias, lead, np.float32, jnp.float32, torch.float32, F32)


@pytest.mark.parametrize(("in_f", "out_f", "bias", "lead"), [GRID[1], GRID[5]])
def test_forward_and_gradients_match_torch_float64(in_f, out_f, bias, lead):
    if not hasattr(jax, "enable_x64"):  # pragma: no cover - older/newer JAX without the context
        pytest.skip("jax.enable_x64 context manager not available")
    with jax.enable_x64(True):
        _compare_with_torch(in_f, out_f, bias, lead, np.float64, jnp.float64, torch.float64, F64)


def test_jit_matches_eager():
    ref = _torch_linear(5, 3, True)
    m = nn.Linear(5, 3)
    m.load_state_dict(ref.state_dict())  # torch tensors load as they are
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    out = jax.jit(lambda mod, inp: mod(inp))(m, x)
    np.testing.assert_allclose(np.asarray(out), ref(torch.tensor(x)).detach().numpy(), **F32)


# --------------------------------------------------------------------------------------------
# Registration, names, state_dict, repr


@pytest.mark.parametrize("bias", [True, False])
def test_names_shapes_state_dict_and_repr_match_torch(bias):
    m, ref = nn.Linear(4, 3, bias=bias), _torch_linear(4, 3, bias)
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in ref.named_parameters()
    ]
    assert list(m.state_dict()) == list(ref.state_dict())
    assert list(m.named_buffers()) == [] == list(ref.named_buffers())
    assert repr(m) == repr(ref)
    assert (m.in_features, m.out_features) == (ref.in_features, ref.out_features)
    assert str(nn.Linear(4, 3)) == "Linear(in_features=4, out_features=3, bias=True)"


def test_bias_false_registers_none_and_bias_key_is_unexpected():
    m, ref = nn.Linear(4, 3, bias=False), _torch_linear(4, 3, False)
    assert m.bias is None and ref.bias is None
    assert "bias" in m._parameters and m._parameters["bias"] is None
    assert [n for n, _ in m.named_parameters()] == ["weight"]

    full = _torch_linear(4, 3, True).state_dict()
    with pytest.raises(RuntimeError) as theirs:
        ref.load_state_dict(full)
    with pytest.raises(RuntimeError) as ours:
        m.load_state_dict(full)
    assert 'Unexpected key(s) in state_dict: "bias"' in str(theirs.value)
    assert 'Unexpected key(s) in state_dict: "bias"' in str(ours.value)

    before = np.asarray(m.weight)
    loaded = m.load_state_dict(full, strict=False)
    expected = ref.load_state_dict(full, strict=False)
    assert (loaded.missing_keys, loaded.unexpected_keys) == (
        expected.missing_keys,
        expected.unexpected_keys,
    )
    assert not np.array_equal(before, np.asarray(m.weight))
    np.testing.assert_array_equal(np.asarray(m.weight), full["weight"].numpy())

    # The absent bias never becomes a leaf: nothing to differentiate or train.
    assert len(jax.tree.leaves(m)) == 1
    assert nn.Linear(4, 3, bias=False)(np.ones((2, 4), np.float32)).shape == (2, 3)


def test_load_state_dict_copies_torch_tensors():
    # JAX on CPU may wrap a NumPy buffer without copying, and np.asarray(tensor) shares the
    # tensor's storage: a loaded parameter must not change when torch updates in place.
    ref, m = _torch_linear(4, 3, True), nn.Linear(4, 3)
    m.load_state_dict(ref.state_dict())
    loaded = np.array(m.weight)
    with torch.no_grad():
        ref.weight.mul_(0)  # torch's optimizers update in place like this
    np.testing.assert_array_equal(np.asarray(m.weight), loaded)


def test_missing_bias_key_is_reported_like_torch():
    weight_only = {"weight": np.zeros((3, 4), np.float32)}
    m, ref = nn.Linear(4, 3), _torch_linear(4, 3, True)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "bias"'):
        m.load_state_dict(weight_only)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "bias"'):
        ref.load_state_dict({"weight": torch.zeros(3, 4)})


# --------------------------------------------------------------------------------------------
# Default initialisation, keys, seeding


def test_default_init_shapes_dtype_and_bounds():
    # The GRID's sizes: their random draws are already compiled by the parity tests.
    for in_f, out_f in sorted({(c[0], c[1]) for c in GRID} | {(4, 3), (5, 3)}):
        m = nn.Linear(in_f, out_f)
        bound = 1 / math.sqrt(in_f)
        assert m.weight.shape == (out_f, in_f) and m.bias.shape == (out_f,)
        assert m.weight.dtype == jnp.float32 and m.bias.dtype == jnp.float32
        # torch's kaiming_uniform_(a=√5) bound, gain·√(3/fan_in) = 1/√fan_in, and the bias's.
        assert np.abs(np.asarray(m.weight)).max() <= bound
        assert np.abs(np.asarray(m.bias)).max() <= bound


def test_default_init_is_roughly_uniform():
    # 4096 * 16 weights and 4096 biases: U(-b, b) has std b/√3 and equal quarter bins.
    m = nn.Linear(16, 4096, key=jax.random.key(7))
    bound = 1 / 4
    for values in (np.asarray(m.weight).ravel(), np.asarray(m.bias)):
        assert abs(values.mean()) < 0.03 * bound
        assert abs(values.std() - bound / math.sqrt(3)) < 0.03 * bound
        assert values.max() > 0.99 * bound and values.min() < -0.99 * bound
        quarters = np.histogram(values, bins=4, range=(-bound, bound))[0] / values.size
        np.testing.assert_allclose(quarters, 0.25, atol=0.03)


def test_zero_in_features_gives_zero_bias_like_torch():
    with pytest.warns(UserWarning, match="zero-element"):
        m = nn.Linear(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        ref = _torch_linear(0, 3, True)
    np.testing.assert_array_equal(np.asarray(m.bias), ref.bias.detach().numpy())
    out = m(np.ones((2, 0), np.float32))
    np.testing.assert_array_equal(np.asarray(out), np.zeros((2, 3), np.float32))


def test_key_determinism():
    a = nn.Linear(4, 3, key=jax.random.key(1))
    b = nn.Linear(4, 3, key=jax.random.key(1))
    c = nn.Linear(4, 3, key=jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a.weight), np.asarray(b.weight))
    np.testing.assert_array_equal(np.asarray(a.bias), np.asarray(b.bias))
    assert not np.any(np.asarray(a.weight) == np.asarray(c.weight))
    assert not np.any(np.asarray(a.bias) == np.asarray(c.bias))
    # Weight and bias are drawn from distinct subkeys.
    assert not np.array_equal(np.asarray(a.weight)[:, 0], np.asarray(a.bias))
    # Legacy uint32 keys are accepted too.
    legacy = nn.Linear(4, 3, key=jax.random.PRNGKey(1))
    assert legacy.weight.shape == (3, 4) and legacy.weight.dtype == jnp.float32


def test_manual_seed_reproducibility():
    fparam.manual_seed(3)
    a1, a2 = nn.Linear(4, 3), nn.Linear(4, 3)
    fparam.manual_seed(3)
    b1, b2 = nn.Linear(4, 3), nn.Linear(4, 3)
    np.testing.assert_array_equal(np.asarray(a1.weight), np.asarray(b1.weight))
    np.testing.assert_array_equal(np.asarray(a2.bias), np.asarray(b2.bias))
    # Successive layers draw different values from the stream; another seed gives others.
    assert not np.array_equal(np.asarray(a1.weight), np.asarray(a2.weight))
    fparam.manual_seed(4)
    assert not np.array_equal(np.asarray(nn.Linear(4, 3).weight), np.asarray(a1.weight))


def test_reset_parameters_keeps_parameter_identity():
    m = nn.Linear(4, 3)
    opt = optim.SGD(m.parameters(), lr=0.5)
    before = [np.asarray(p) for p in m.parameters()]
    m.reset_parameters()
    after = [np.asarray(p) for p in m.parameters()]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]

    # The optimizer built before the reset still owns the parameters.
    x = np.ones((2, 4), np.float32)
    grads = jax.grad(lambda mod: mod(x).sum())(m)
    new, _ = opt.step(m, grads)
    np.testing.assert_allclose(
        np.asarray(new.weight), after[0] - 0.5 * np.asarray(grads.weight), rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(new.bias), after[1] - 0.5 * np.asarray(grads.bias), rtol=1e-6
    )
    # An explicit key reproduces the constructor's draw.
    m.reset_parameters(key=jax.random.key(5))
    fresh = nn.Linear(4, 3, key=jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(m.weight), np.asarray(fresh.weight))
    np.testing.assert_array_equal(np.asarray(m.bias), np.asarray(fresh.bias))


def test_reset_parameters_without_bias():
    m = nn.Linear(4, 3, bias=False)
    before = np.asarray(m.weight)
    m.reset_parameters()
    assert m.bias is None and not np.array_equal(before, np.asarray(m.weight))


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "shape",
    [(2, 5), (5,), (2, 3, 5), ()],
    ids=["2d", "1d", "3d", "0d"],
)
def test_bad_input_shapes_raise_torch_errors(shape):
    ref = _torch_linear(4, 3, True)
    m = nn.Linear(4, 3)
    x = np.zeros(shape, np.float32)
    with pytest.raises(Exception) as theirs:
        ref(torch.tensor(x))
    with pytest.raises(Exception) as ours:
        m(x)
    assert type(ours.value) is type(theirs.value) is RuntimeError
    assert str(ours.value) == str(theirs.value)


def test_error_messages_spelled_out():
    m = nn.Linear(4, 3)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied \(2x5 and 4x3\)$"):  # fmt: skip
        m(np.zeros((2, 5), np.float32))
    with pytest.raises(RuntimeError, match=r"\(1x5 and 4x3\)"):
        m(np.zeros(5, np.float32))
    with pytest.raises(RuntimeError, match="at least 1D, but they are 0D and 2D"):
        m(np.float32(1.0))
    # Raised at trace time under jit as well.
    with pytest.raises(RuntimeError, match=r"\(2x5 and 4x3\)"):
        jax.jit(lambda mod, inp: mod(inp))(m, np.zeros((2, 5), np.float32))


def test_dtype_mismatch_raises_runtime_error_like_torch():
    # The wording differs from torch's ("mat1 and mat2 must have the same dtype, but got Int
    # and Float"); the type is the same.
    with pytest.raises(RuntimeError):
        _torch_linear(4, 3, True)(torch.ones(2, 4, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="same dtype"):
        nn.Linear(4, 3)(np.ones((2, 4), np.int32))


# --------------------------------------------------------------------------------------------
# Identity


def test_identity_passes_anything_and_accepts_any_arguments():
    for m, ref in [
        (nn.Identity(), torch.nn.Identity()),
        (nn.Identity(3, "x", foo=4, bar=None), torch.nn.Identity(3, "x", foo=4, bar=None)),
    ]:
        assert repr(m) == repr(ref) == "Identity()"
        assert list(m.parameters()) == [] and list(m.state_dict()) == []
        x = jnp.arange(6.0).reshape(2, 3)
        assert m(x) is x
        for value in (None, 5, "s", (1, [2]), {"a": x}):
            assert m(value) is value
        assert jax.jit(lambda mod, v: mod(v))(m, x).shape == (2, 3)
        g = jax.grad(lambda mod, v: mod(v).sum(), argnums=1)(m, x)
        np.testing.assert_array_equal(np.asarray(g), np.ones((2, 3), np.float32))
