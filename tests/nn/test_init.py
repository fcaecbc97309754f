"""fparam.nn.init against torch.nn.init: gains, fans, bounds, distribution moments, errors.

Random values are never compared bit for bit (different generators): each initializer is checked
for shape, dtype and bounds, and its sample moments on 10^6 draws against torch's formula (and
against torch's own sample).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam.nn import init

# 10^6 draws: the sample mean is within 5 standard errors (5 * std / 1000) of the true mean, and
# the sample std within 5 * sqrt(Var(s^2))/(2 sigma^2) relative: 0.36% for a normal, 0.19% for a
# uniform, 0.3% for the truncated normal below. Measured worst relative std error over this
# file: 0.12%; we allow 0.5%.
BIG = (1000, 250, 2, 2)  # fan_in = 1000, fan_out = 4000, 10^6 elements
N = math.prod(BIG)
STD_RTOL = 5e-3


def _key(i: int = 0) -> jax.Array:
    return jax.random.key(i)


def _check_moments(sample, mean: float, std: float) -> None:
    sample = np.asarray(sample, np.float64)
    assert abs(sample.mean() - mean) < 5 * std / math.sqrt(sample.size)
    assert sample.std() == pytest.approx(std, rel=STD_RTOL)


# --------------------------------------------------------------------------------------------
# calculate_gain / fans


NONLINEARITIES = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_calculate_gain_equals_torch(nonlinearity):
    expected = torch.nn.init.calculate_gain(nonlinearity)
    got = init.calculate_gain(nonlinearity)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("param", [None, 0.2, 0, 1, 0.5, -3.0, math.sqrt(5)])
def test_calculate_gain_leaky_relu_slopes(param):
    assert init.calculate_gain("leaky_relu", param) == torch.nn.init.calculate_gain(
        "leaky_relu", param
    )


@pytest.mark.parametrize(("nonlinearity", "param"), [("softmax", None), ("leaky_relu", True)])
def test_calculate_gain_errors(nonlinearity, param):
    with pytest.raises(ValueError) as theirs:
        torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError) as ours:
        init.calculate_gain(nonlinearity, param)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="negative_slope abc not a valid number"):
        init.calculate_gain("leaky_relu", "abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(3, 4), (5, 4, 3, 3), (2, 3, 4, 5, 6), (4, 0), (0, 3, 2)])
def test_fans_equal_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(shape) == expected
    assert init._calculate_fan_in_and_fan_out(jnp.zeros(shape)) == expected


@pytest.mark.parametrize("shape", [(), (3,)])
def test_fans_need_two_dims(shape):
    with pytest.raises(ValueError) as theirs:
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError) as ours:
        init._calculate_fan_in_and_fan_out(shape)
    assert str(ours.value) == str(theirs.value)
    assert "Fan in and fan out can not be computed" in str(ours.value)


def test_default_uniform_bound_is_torch_linear_bound():
    assert init.default_uniform_bound(0) == 0
    assert init.default_uniform_bound(16) == 0.25
    # kaiming_uniform_(w, a=sqrt(5)) has bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
    fan_in = 37
    gain = init.calculate_gain("leaky_relu", math.sqrt(5))
    assert gain * math.sqrt(3 / fan_in) == pytest.approx(init.default_uniform_bound(fan_in))
    w = init.kaiming_uniform_((5, fan_in), a=math.sqrt(5), key=_key())
    assert float(jnp.max(jnp.abs(w))) <= init.default_uniform_bound(fan_in)


# --------------------------------------------------------------------------------------------
# Calling convention: arrays, shapes, dtypes, keys


def test_calling_convention():
    w = jnp.ones((3, 4), jnp.bfloat16)
    out = init.normal_(w, key=_key())
    assert out.shape == (3, 4) and out.dtype == jnp.bfloat16
    assert not np.array_equal(np.asarray(out, np.float32), np.ones((3, 4)))  # a new array
    np.testing.assert_array_equal(w, jnp.ones((3, 4), jnp.bfloat16))  # input untouched
    assert init.normal_((3, 4), key=_key()).dtype == jnp.float32
    assert init.normal_(w, key=_key(), dtype=jnp.float32).dtype == jnp.float32
    assert init.uniform_(jax.ShapeDtypeStruct((3, 4), jnp.float32), key=_key()).shape == (3, 4)
    assert init.uniform_(np.zeros((3, 4), np.float32), key=_key()).shape == (3, 4)
    # Same key, same values; a legacy uint32 key works too.
    np.testing.assert_array_equal(
        init.xavier_uniform_((3, 4), key=_key(3)), init.xavier_uniform_((3, 4), key=_key(3))
    )
    assert init.kaiming_normal_((3, 4), key=jax.random.PRNGKey(0)).shape == (3, 4)
    with pytest.raises(TypeError, match="floating dtype"):
        init.uniform_(jnp.zeros((2, 2), jnp.int32), key=_key())


def test_default_key_stream():
    fparam.manual_seed(7)
    a1, a2 = init.normal_((8,)), init.normal_((8,))
    fparam.manual_seed(7)
    b1 = init.normal_((8,))
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a1, a2)


def test_initializers_under_jit():
    @jax.jit
    def make(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return (
            init.kaiming_uniform_((6, 5), a=math.sqrt(5), key=k1),
            init.trunc_normal_((6, 5), std=0.02, key=k2),
            init.orthogonal_((6, 5), key=k3),
        )

    w, t, q = make(_key(1))
    assert w.shape == t.shape == q.shape == (6, 5)
    np.testing.assert_allclose(q.T @ q, np.eye(5), atol=1e-5)


@pytest.mark.parametrize(
    ("fn", "val"), [(init.zeros_, 0.0), (init.ones_, 1.0), (init.constant_, 0.3)]
)
def test_constant_fills(fn, val):
    args = (val,) if fn is init.constant_ else ()
    out = fn(jnp.empty((2, 3), jnp.float16), *args)
    assert out.dtype == jnp.float16
    expected = torch.empty(2, 3, dtype=torch.float16)
    getattr(torch.nn.init, fn.__name__)(expected, *args)
    np.testing.assert_array_equal(np.asarray(out, np.float32), expected.float().numpy())
    assert fn((2,), *args, dtype=jnp.int32).dtype == jnp.int32


# --------------------------------------------------------------------------------------------
# Distributions: bounds and moments on 10^6 draws


def _torch_sample(name: str, *args, **kwargs) -> np.ndarray:
    t = torch.empty(BIG)
    getattr(torch.nn.init, name)(t, *args, **kwargs)
    return t.numpy()


def test_uniform():
    a, b = -0.5, 1.5
    x = init.uniform_(BIG, a, b, key=_key())
    assert x.shape == BIG and x.dtype == jnp.float32
    assert float(x.min()) >= a and float(x.max()) < b
    _check_moments(x, (a + b) / 2, (b - a) / math.sqrt(12))
    _check_moments(_torch_sample("uniform_", a, b), (a + b) / 2, (b - a) / math.sqrt(12))


def test_normal():
    x = init.normal_(BIG, 0.5, 2.0, key=_key())
    _check_moments(x, 0.5, 2.0)
    _check_moments(_torch_sample("normal_", 0.5, 2.0), 0.5, 2.0)


def _truncnorm_moments(mean, std, a, b):
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    z = cdf(beta) - cdf(alpha)
    m = (pdf(alpha) - pdf(beta)) / z
    var = 1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - m * m
    return mean + std * m, std * math.sqrt(var)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"),
    [(0.0, 1.0, -2.0, 2.0), (1.0, 0.5, 0.0, 1.5), (0.0, 0.02, -0.04, 0.04)],
)
def test_trunc_normal(mean, std, a, b):
    x = init.trunc_normal_(BIG, mean, std, a, b, key=_key())
    assert float(x.min()) >= a and float(x.max()) <= b
    expected = _truncnorm_moments(mean, std, a, b)
    _check_moments(x, *expected)
    _check_moments(_torch_sample("trunc_normal_", mean, std, a, b), *expected)


def test_trunc_normal_warns_like_torch():
    with pytest.warns(UserWarning, match="mean is more than 2 std from"):
        torch.nn.init.trunc_normal_(torch.empty(3), mean=10.0)
    with pytest.warns(UserWarning, match=r"mean is more than 2 std from \[a, b\]"):
        init.trunc_normal_((3,), mean=10.0, key=_key())


@pytest.mark.parametrize("gain", [1.0, init.calculate_gain("relu")])
def test_xavier(gain):
    fan_in, fan_out = 1000, 4000
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    x = init.xavier_uniform_(BIG, gain, key=_key())
    assert float(jnp.max(jnp.abs(x))) <= bound
    _check_moments(x, 0.0, std)
    _check_moments(_torch_sample("xavier_uniform_", gain), 0.0, std)
    x = init.xavier_normal_(BIG, gain=gain, key=_key(1))
    _check_moments(x, 0.0, std)
    _check_moments(_torch_sample("xavier_normal_", gain), 0.0, std)


@pytest.mark.parametrize(
    ("a", "mode", "nonlinearity"),
    [
        (0, "fan_in", "leaky_relu"),
        (math.sqrt(5), "fan_in", "leaky_relu"),
        (0, "fan_out", "relu"),
        (0.2, "FAN_OUT", "leaky_relu"),
        (0, "fan_in", "tanh"),
    ],
)
def test_kaiming(a, mode, nonlinearity):
    fan = 1000 if mode.lower() == "fan_in" else 4000
    std = init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    kw = {"a": a, "mode": mode, "nonlinearity": nonlinearity}
    x = init.kaiming_uniform_(BIG, key=_key(), **kw)
    assert float(jnp.max(jnp.abs(x))) <= math.sqrt(3.0) * std
    _check_moments(x, 0.0, std)
    _check_moments(_torch_sample("kaiming_uniform_", **kw), 0.0, std)
    x = init.kaiming_normal_(BIG, key=_key(1), **kw)
    _check_moments(x, 0.0, std)
    _check_moments(_torch_sample("kaiming_normal_", **kw), 0.0, std)


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_edge_cases(name):
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        getattr(torch.nn.init, name)(torch.empty(0, 3))
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        out = getattr(init, name)((0, 3), key=_key())
    assert out.shape == (0, 3)
    with pytest.raises(ValueError) as theirs:
        getattr(torch.nn.init, name)(torch.empty(3, 4), mode="fan_avg")
    with pytest.raises(ValueError) as ours:
        getattr(init, name)((3, 4), mode="fan_avg", key=_key())
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="Fan in and fan out can not be computed"):
        getattr(init, name)((3,), key=_key())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(init, name)((3, 4), key=_key())


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 3, 2, 2)])
def test_orthogonal(shape):
    gain = 2.0
    q = init.orthogonal_(shape, gain=gain, key=_key())
    assert q.shape == shape and q.dtype == jnp.float32
    rows, cols = shape[0], math.prod(shape[1:])
    flat = np.asarray(q, np.float64).reshape(rows, cols)
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=2e-5)
    t = torch.empty(shape)
    torch.nn.init.orthogonal_(t, gain=gain)
    t_flat = t.numpy().astype(np.float64).reshape(rows, cols)
    t_gram = t_flat @ t_flat.T if rows <= cols else t_flat.T @ t_flat
    np.testing.assert_allclose(gram, t_gram, atol=2e-5)
    assert init.orthogonal_(jnp.zeros(shape, jnp.bfloat16), key=_key()).dtype == jnp.bfloat16


def test_orthogonal_is_haar_distributed():
    # With the sign correction, entries of a random orthogonal matrix have mean 0 and variance
    # 1/n; without it the diagonal would be biased positive.
    n, draws = 4, 500
    qs = jax.vmap(lambda k: init.orthogonal_((n, n), key=k))(jax.random.split(_key(), draws))
    diag = np.asarray(qs)[:, np.arange(n), np.arange(n)]
    assert abs(diag.mean()) < 5 * math.sqrt(1 / n) / math.sqrt(diag.size)
    assert diag.var() == pytest.approx(1 / n, rel=0.2)  # 2000 entries: ~3% standard error


def test_orthogonal_errors():
    with pytest.raises(ValueError) as theirs:
        torch.nn.init.orthogonal_(torch.empty(3))
    with pytest.raises(ValueError) as ours:
        init.orthogonal_((3,), key=_key())
    assert str(ours.value) == str(theirs.value)
    assert init.orthogonal_((0, 3), key=_key()).shape == (0, 3)
