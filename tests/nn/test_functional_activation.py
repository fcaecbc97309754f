"""Parity of fparam.nn.functional's linear, activations, softmax and flatten with torch."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fparam.nn import functional as F

# Tolerances, float32 against torch's float32, set at ~4x the errors measured over every
# comparison in this file (jax 0.10.2, torch 2.13, CPU): values 5.0e-6 relative (where
# |torch| > 1e-2) and 2.6e-7 absolute elsewhere; gradients 1.4e-5 relative and 2.7e-7 absolute
# (the largest absolute error, 1.9e-6, is a linear weight gradient summed over 24 rows).
VAL = {"rtol": 2e-5, "atol": 1e-6}
GRAD = {"rtol": 5e-5, "atol": 1e-6}


def _inputs(rng: np.random.Generator, shape=(4, 6)) -> np.ndarray:
    """Normal values with exact zeros (the kinks) and saturating magnitudes mixed in."""
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    flat = x.reshape(-1)
    flat[:4] = [0.0, -0.0, 30.0, -30.0]
    return x


def _compare(fp_fn, torch_fn, arrays: list[np.ndarray], rng, val=VAL, grad=GRAD):
    """Values and VJPs (w.r.t. every array, random cotangent) against torch autograd."""
    value, vjp = jax.vjp(fp_fn, *[jnp.asarray(a) for a in arrays])
    cot = rng.standard_normal(value.shape).astype(np.float32)
    grads = vjp(jnp.asarray(cot))
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = torch_fn(*tensors)
    expected.backward(torch.tensor(cot))
    assert value.shape == tuple(expected.shape)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(value), expected.detach().numpy(), **val)
    for g, t in zip(grads, tensors):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), **grad)


# --------------------------------------------------------------------------------------------
# Elementwise activations

ACTIVATIONS = [
    ("relu", lambda x: F.relu(x), lambda x: TF.relu(x)),
    ("leaky_relu", lambda x: F.leaky_relu(x), lambda x: TF.leaky_relu(x)),
    ("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    ("elu", lambda x: F.elu(x), lambda x: TF.elu(x)),
    ("elu_0.5", lambda x: F.elu(x, alpha=0.5), lambda x: TF.elu(x, alpha=0.5)),
    ("gelu", lambda x: F.gelu(x), lambda x: TF.gelu(x)),
    ("gelu_none", lambda x: F.gelu(x, "none"), lambda x: TF.gelu(x, approximate="none")),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    ("silu", lambda x: F.silu(x), lambda x: TF.silu(x)),
    ("sigmoid", lambda x: F.sigmoid(x), lambda x: torch.sigmoid(x)),
    ("tanh", lambda x: F.tanh(x), lambda x: torch.tanh(x)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fp_fn", "torch_fn"), [a[1:] for a in ACTIVATIONS], ids=[a[0] for a in ACTIVATIONS]
)
def test_activation_matches_torch(fp_fn, torch_fn):
    rng = np.random.default_rng(0)
    _compare(fp_fn, torch_fn, [_inputs(rng)], rng)


def test_gelu_approximations_differ_and_bad_value_raises():
    x = jnp.linspace(-3, 3, 13)
    assert not np.allclose(F.gelu(x), F.gelu(x, approximate="tanh"), atol=1e-5)
    with pytest.raises(RuntimeError) as theirs:
        TF.gelu(torch.zeros(2), approximate="foo")
    with pytest.raises(RuntimeError) as ours:
        F.gelu(x, approximate="foo")
    assert str(ours.value) == str(theirs.value)


def test_activations_jit_and_keep_dtype():
    x = jnp.asarray(_inputs(np.random.default_rng(1)), jnp.bfloat16)
    for _, fp_fn, _ in ACTIVATIONS:
        out = jax.jit(fp_fn)(x)
        assert out.dtype == jnp.bfloat16 and out.shape == x.shape


# --------------------------------------------------------------------------------------------
# softmax / log_softmax


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_matches_torch_over_every_dim(name):
    rng = np.random.default_rng(2)
    for shape, dims in [((4, 6), (0, -1)), ((2, 3, 4), (0, 1, 2, -2))]:
        for dim in dims:
            _compare(
                lambda x, dim=dim: getattr(F, name)(x, dim),
                lambda x, dim=dim: getattr(TF, name)(x, dim),
                [_inputs(rng, shape)],
                rng,
            )


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_implicit_dim_and_dtype(name):
    rng = np.random.default_rng(3)
    for shape in [(), (6,), (4, 6), (2, 3, 4), (2, 3, 4, 2)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            expected = getattr(TF, name)(torch.tensor(x))
        with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
            out = getattr(F, name)(x)
        np.testing.assert_allclose(out, expected.numpy(), **VAL)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with jax.enable_x64(True):
        out = getattr(F, name)(x, 1, dtype=jnp.float64)
        assert out.dtype == jnp.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(F, name)(jnp.float32(2.0), 0).shape == ()
    with pytest.raises(IndexError) as theirs:
        getattr(TF, name)(torch.tensor(x), 2)
    with pytest.raises(IndexError) as ours:
        getattr(F, name)(x, 2)
    assert str(ours.value) == str(theirs.value)


# --------------------------------------------------------------------------------------------
# linear


@pytest.mark.parametrize("input_shape", [(5,), (2, 5), (2, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(input_shape, bias):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    arrays = [x, w]
    if bias:
        arrays.append(rng.standard_normal((3,)).astype(np.float32))
    _compare(F.linear, TF.linear, arrays, rng)


def test_linear_vector_weight_and_jit():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    w = rng.standard_normal((5,)).astype(np.float32)
    _compare(F.linear, TF.linear, [x, w], rng)
    w2 = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    np.testing.assert_allclose(jax.jit(F.linear)(x, w2, b), F.linear(x, w2, b), rtol=1e-6)
    out = jax.vmap(F.linear, in_axes=(0, None, None))(x, w2, b)
    np.testing.assert_allclose(out, F.linear(x, w2, b), rtol=1e-6)


def _f32(*shape):
    return np.zeros(shape, np.float32)


LINEAR_ERRORS = [
    ("mismatch", (_f32(2, 5), _f32(3, 4)), "mat1 and mat2 shapes cannot be multiplied (2x5 and 4x3)"),
    ("mismatch_1d", (_f32(5), _f32(3, 4)), "mat1 and mat2 shapes cannot be multiplied (1x5 and 4x3)"),
    ("mismatch_3d", (_f32(2, 3, 5), _f32(3, 4)), "mat1 and mat2 shapes cannot be multiplied (6x5 and 4x3)"),
    ("input_0d", (_f32(), _f32(3, 4)), "both arguments to linear need to be at least 1D, but they are 0D and 2D"),
    ("weight_0d", (_f32(2, 5), _f32()), "both arguments to linear need to be at least 1D, but they are 2D and 0D"),
    ("weight_3d", (_f32(2, 5), _f32(3, 5, 2)), "t() expects a tensor with <= 2 dimensions, but self is 3D"),
    ("vector_bias", (_f32(2, 5), _f32(5), _f32()), "mat2 must be a matrix, got 1-D tensor"),
    ("bias", (_f32(2, 5), _f32(3, 5), _f32(4)), "The expanded size of the tensor (3) must match the existing size (4) at non-singleton dimension 1"),
    ("dtype", (_f32(2, 5), np.zeros((3, 5), np.float16)), "expected m1 and m2 to have the same dtype"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in LINEAR_ERRORS], ids=[c[0] for c in LINEAR_ERRORS]
)
def test_linear_errors_match_torch(args, message):
    with pytest.raises(RuntimeError) as theirs:
        TF.linear(*[torch.tensor(a) for a in args])
    assert message in str(theirs.value)
    with pytest.raises(RuntimeError) as ours:
        F.linear(*args)
    assert message in str(ours.value)


# --------------------------------------------------------------------------------------------
# flatten / unflatten


def test_flatten_matches_torch():
    x = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    for start in range(-4, 4):
        for end in range(-4, 4):
            if (start % 4) > (end % 4):
                continue
            expected = torch.flatten(torch.tensor(x), start, end).numpy()
            np.testing.assert_array_equal(F.flatten(x, start, end), expected)
    np.testing.assert_array_equal(F.flatten(x), x.reshape(-1))
    assert F.flatten(np.float32(3.0)).shape == (1,)
    assert jax.jit(lambda x: F.flatten(x, 1))(x).shape == (2, 60)


def test_unflatten_matches_torch():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    for dim, sizes in [(1, (3, 4)), (-1, (2, -1, 3)), (0, (1, 2)), (1, (12,)), (1, (-1,))]:
        expected = torch.unflatten(torch.tensor(x), dim, sizes).numpy()
        np.testing.assert_array_equal(F.unflatten(x, dim, sizes), expected)


SHAPE_ERRORS = [
    ("flatten_dim", lambda m: m.flatten(_f32(2, 3, 4), 5), IndexError, "Dimension out of range (expected to be in range of [-3, 2], but got 5)"),
    ("flatten_0d", lambda m: m.flatten(_f32(), 1), IndexError, "Dimension out of range (expected to be in range of [-1, 0], but got 1)"),
    ("flatten_order", lambda m: m.flatten(_f32(2, 3, 4), 2, 1), RuntimeError, "flatten() has invalid args: start_dim cannot come after end_dim"),
    ("unflatten_product", lambda m: m.unflatten(_f32(2, 6), 1, (2, 4)), RuntimeError, "unflatten: Provided sizes [2, 4] don't multiply up to the size of dim 1 (6) in the input tensor"),
    ("unflatten_inferred", lambda m: m.unflatten(_f32(2, 6), 1, (5, -1)), RuntimeError, "Provided sizes [5, -1] don't multiply up to the size of dim 1 (6)"),
    ("unflatten_two_inferred", lambda m: m.unflatten(_f32(2, 6), 1, (-1, -1)), RuntimeError, "only one dimension can be inferred"),
    ("unflatten_empty", lambda m: m.unflatten(_f32(2, 6), 1, ()), RuntimeError, "unflatten: sizes must be non-empty"),
    ("unflatten_dim", lambda m: m.unflatten(_f32(2, 6), 3, (2, 3)), IndexError, "Dimension out of range (expected to be in range of [-2, 1], but got 3)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "exc", "message"), [c[1:] for c in SHAPE_ERRORS], ids=[c[0] for c in SHAPE_ERRORS]
)
def test_shape_errors_match_torch(call, exc, message):
    class _Torch:
        @staticmethod
        def flatten(x, *a):
            return torch.flatten(torch.tensor(x), *a)

        @staticmethod
        def unflatten(x, *a):
            return torch.unflatten(torch.tensor(x), *a)

    with pytest.raises(exc) as theirs:
        call(_Torch)
    assert message in str(theirs.value)
    with pytest.raises(exc) as ours:
        call(F)
    assert message in str(ours.value)
