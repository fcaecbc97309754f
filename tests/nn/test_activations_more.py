"""Parity with torch of the activations beyond ReLU/ELU/GELU/...: ReLU6 ... Softsign, PReLU,
RReLU, GLU, Softmin, gumbel_softmax and the in-place spellings (functions and modules).

Values and gradients are compared with torch autograd on random inputs that include each
function's kinks (the boundaries where torch's backward picks a side), and error types and
messages with torch's for bad arguments.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fparam
from fparam import nn
from fparam.nn import functional as F

# float32 against torch's float32; measured maxima over this file (jax 0.10, torch 2.13, CPU):
# values 2.4e-7 relative, gradients 4.8e-7 relative; tolerances leave ~4x margin and more.
VAL = {"rtol": 2e-6, "atol": 1e-6}
GRAD = {"rtol": 5e-6, "atol": 1e-6}


def _inputs(rng: np.random.Generator, kinks: list[float], shape=(5, 6)) -> np.ndarray:
    """Normal values (scale 4) with the kinks placed at the front, and 0 and -0."""
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    flat = x.reshape(-1)
    points = [0.0, -0.0, 30.0, -30.0, *kinks]
    flat[: len(points)] = points
    return x


def _compare(fp_fn, torch_fn, arrays, rng, val=VAL, grad=GRAD):
    """Values and VJPs w.r.t. every array (random cotangent) against torch autograd."""
    arrays = [jnp.asarray(a) for a in arrays]
    shape = jax.eval_shape(fp_fn, *arrays).shape
    cot = rng.standard_normal(shape).astype(np.float32)

    @jax.jit  # one compile per configuration, not one per primitive
    def run(c, *xs):
        value, vjp = jax.vjp(fp_fn, *xs)
        return value, vjp(c)

    value, grads = run(jnp.asarray(cot), *arrays)
    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in arrays]
    expected = torch_fn(*tensors)
    expected.backward(torch.tensor(cot))
    assert value.shape == tuple(expected.shape)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(value), expected.detach().numpy(), **val)
    for g, t in zip(grads, tensors):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), **grad)


# (id, fparam, torch, the kinks of that configuration)
ELEMENTWISE = [
    ("relu6", lambda x: F.relu6(x), lambda x: TF.relu6(x), [6.0, 0.0]),
    ("hardtanh", lambda x: F.hardtanh(x), lambda x: TF.hardtanh(x), [-1.0, 1.0]),
    ("hardtanh_-2_3", lambda x: F.hardtanh(x, -2.0, 3.0), lambda x: TF.hardtanh(x, -2.0, 3.0), [-2.0, 3.0]),
    ("selu", lambda x: F.selu(x), lambda x: TF.selu(x), []),
    ("celu", lambda x: F.celu(x), lambda x: TF.celu(x), []),
    ("celu_0.7", lambda x: F.celu(x, 0.7), lambda x: TF.celu(x, 0.7), []),
    ("hardswish", lambda x: F.hardswish(x), lambda x: TF.hardswish(x), [-3.0, 3.0]),
    ("hardsigmoid", lambda x: F.hardsigmoid(x), lambda x: TF.hardsigmoid(x), [-3.0, 3.0]),
    ("hardshrink", lambda x: F.hardshrink(x), lambda x: TF.hardshrink(x), [0.5, -0.5]),
    ("hardshrink_2", lambda x: F.hardshrink(x, 2.0), lambda x: TF.hardshrink(x, 2.0), [2.0, -2.0]),
    ("softshrink", lambda x: F.softshrink(x), lambda x: TF.softshrink(x), [0.5, -0.5]),
    ("softshrink_1.5", lambda x: F.softshrink(x, 1.5), lambda x: TF.softshrink(x, 1.5), [1.5, -1.5]),
    ("tanhshrink", lambda x: F.tanhshrink(x), lambda x: TF.tanhshrink(x), []),
    ("threshold", lambda x: F.threshold(x, 0.5, -2.0), lambda x: TF.threshold(x, 0.5, -2.0), [0.5]),
    ("threshold_neg", lambda x: F.threshold(x, -1.0, 7.0), lambda x: TF.threshold(x, -1.0, 7.0), [-1.0]),
    ("logsigmoid", lambda x: F.logsigmoid(x), lambda x: TF.logsigmoid(x), []),
    ("mish", lambda x: F.mish(x), lambda x: TF.mish(x), []),
    ("softplus", lambda x: F.softplus(x), lambda x: TF.softplus(x), [20.0]),
    ("softplus_b2_t5", lambda x: F.softplus(x, 2.0, 5.0), lambda x: TF.softplus(x, 2.0, 5.0), [2.5, 2.4999998]),
    ("softplus_b0.5", lambda x: F.softplus(x, beta=0.5), lambda x: TF.softplus(x, beta=0.5), [40.0]),
    ("softsign", lambda x: F.softsign(x), lambda x: TF.softsign(x), []),
    ("rrelu_eval", lambda x: F.rrelu(x), lambda x: TF.rrelu(x), []),
    ("rrelu_eval_0.1_0.6", lambda x: F.rrelu(x, 0.1, 0.6), lambda x: TF.rrelu(x, 0.1, 0.6), []),
    ("relu_", lambda x: F.relu_(x), lambda x: TF.relu(x), []),
    ("elu_", lambda x: F.elu_(x, 0.3), lambda x: TF.elu(x, 0.3), []),
    ("leaky_relu_", lambda x: F.leaky_relu_(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), []),
    ("hardtanh_", lambda x: F.hardtanh_(x, -0.5, 2.0), lambda x: TF.hardtanh(x, -0.5, 2.0), [-0.5, 2.0]),
    ("celu_", lambda x: F.celu_(x, 2.0), lambda x: TF.celu(x, 2.0), []),
    ("rrelu_", lambda x: F.rrelu_(x, 0.2, 0.4), lambda x: TF.rrelu(x, 0.2, 0.4), []),
    ("threshold_", lambda x: F.threshold_(x, 1.0, 3.0), lambda x: TF.threshold(x, 1.0, 3.0), [1.0]),
]  # fmt: skip


@functools.cache
def _elementwise_results() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(input, cotangent, value, input gradient) of every ELEMENTWISE entry, from one jitted
    program (one compile for the whole table instead of one per entry)."""
    rng = np.random.default_rng(0)
    xs = [_inputs(rng, kinks) for *_, kinks in ELEMENTWISE]
    cots = [rng.standard_normal(x.shape).astype(np.float32) for x in xs]

    @jax.jit
    def run(xs, cots):
        out = []
        for (_, fn, _, _), x, c in zip(ELEMENTWISE, xs, cots):
            value, vjp = jax.vjp(fn, x)
            out.append((value, vjp(c)[0]))
        return out

    results = run([jnp.asarray(x) for x in xs], [jnp.asarray(c) for c in cots])
    return [(x, c, np.asarray(v), np.asarray(g)) for x, c, (v, g) in zip(xs, cots, results)]


@pytest.mark.parametrize("i", range(len(ELEMENTWISE)), ids=[a[0] for a in ELEMENTWISE])
def test_elementwise_matches_torch_values_and_gradients_at_kinks(i):
    x, cot, value, grad = _elementwise_results()[i]
    t = torch.tensor(x, requires_grad=True)
    expected = ELEMENTWISE[i][2](t)
    expected.backward(torch.tensor(cot))
    assert value.dtype == np.float32
    np.testing.assert_allclose(value, expected.detach().numpy(), **VAL)
    np.testing.assert_allclose(grad, t.grad.numpy(), **GRAD)


def test_kink_gradients_are_torchs_side():
    """The boundary gradients spelled out (what the grid above checks against torch)."""
    g = jax.jit(jax.vmap(jax.grad(F.relu6)))(jnp.array([0.0, 6.0, 3.0]))
    assert g.tolist() == [0.0, 0.0, 1.0]
    g = jax.jit(jax.vmap(jax.grad(F.hardswish)))(jnp.array([-3.0, 3.0]))
    assert g.tolist() == [0.0, 1.0]
    g = jax.jit(jax.vmap(jax.grad(F.hardsigmoid)))(jnp.array([-3.0, 3.0]))
    assert g.tolist() == [0.0, 0.0]
    g = jax.jit(jax.vmap(jax.grad(lambda x: F.hardshrink(x, 0.5))))(jnp.array([-0.5, 0.5, 0.6]))
    assert g.tolist() == [0.0, 0.0, 1.0]
    g = jax.jit(jax.vmap(jax.grad(lambda x: F.threshold(x, 1.0, 0.0))))(jnp.array([1.0, 1.5]))
    assert g.tolist() == [0.0, 1.0]
    # softplus: at beta * x == threshold the soft branch (sigmoid(threshold)), above it 1.
    g = jax.jit(jax.vmap(jax.grad(lambda x: F.softplus(x, 2.0, 5.0))))(jnp.array([2.5, 2.6]))
    np.testing.assert_allclose(g, [jax.nn.sigmoid(5.0), 1.0], rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_prelu_matches_torch_input_and_weight_gradients(seed):
    rng = np.random.default_rng(seed)
    ndim = [0, 1, 2, 3, 4, 2][seed]
    channels = int(rng.integers(2, 5))
    shape = tuple(int(rng.integers(1, 4)) for _ in range(ndim))
    if ndim >= 2:
        shape = (shape[0], channels, *shape[2:])
    shared = seed in (0, 1, 5) or ndim < 2
    weight = rng.uniform(-1, 1, (1 if shared else channels,)).astype(np.float32)
    x = _inputs(rng, [], shape) if ndim and np.prod(shape) >= 4 else rng.standard_normal(shape)
    _compare(F.prelu, TF.prelu, [np.asarray(x, np.float32), weight], rng)


def test_glu_matches_torch_on_each_axis():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 2)).astype(np.float32)
    for dim in (-3, -2, -1, 0, 1, 2):
        _compare(lambda a, d=dim: F.glu(a, d), lambda a, d=dim: TF.glu(a, d), [x], rng)


SOFTMIN_CASES = [(None, 0), (None, 1), (None, 2), (None, 3), (0, 1), (-1, 2), (1, 3), (0, 3)]


@pytest.mark.parametrize(("dim", "ndim"), SOFTMIN_CASES)
def test_softmin_matches_torch_with_the_legacy_dim_rule(dim, ndim):
    rng = np.random.default_rng(ndim)
    x = rng.standard_normal((3, 4, 2)[:ndim]).astype(np.float32)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        _compare(lambda a: F.softmin(a, dim), lambda a: TF.softmin(a, dim), [x], rng)
    messages = [str(w.message) for w in ours if "Implicit dimension" in str(w.message)]
    if dim is None:
        assert any("softmin" in m for m in messages)
    else:
        assert not messages


def test_rrelu_training_draws_one_slope_per_negative_element():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((100, 50)).astype(np.float32))
    key = jax.random.key(3)

    @jax.jit
    def run(a, k):
        value, vjp = jax.vjp(lambda v: F.rrelu(v, 0.1, 0.3, training=True, key=k), a)
        return value, vjp(jnp.ones_like(a))[0]

    out, grad = run(x, key)
    pos = np.asarray(x) > 0
    np.testing.assert_array_equal(np.asarray(out)[pos], np.asarray(x)[pos])
    slope = np.asarray(out)[~pos] / np.asarray(x)[~pos]
    assert slope.min() >= 0.1 - 1e-6 and slope.max() <= 0.3 + 1e-6
    # Uniform on [0.1, 0.3]: mean 0.2, std 0.0577 (about 2500 draws -> standard error 1.2e-3).
    assert abs(slope.mean() - 0.2) < 5e-3 and abs(slope.std() - 0.2 / np.sqrt(12)) < 5e-3
    np.testing.assert_allclose(np.asarray(grad)[~pos], slope, rtol=1e-5)  # torch's noise
    np.testing.assert_array_equal(np.asarray(grad)[pos], 1.0)
    # The stream and `fparam.rng` give keys as for dropout: the same eagerly and under jit.

    def draw(v, k):
        with fparam.rng(k):
            return F.rrelu(v, training=True)

    a = jax.jit(draw)(x, jax.random.key(1))
    b = draw(x, jax.random.key(1))
    np.testing.assert_array_equal(a, b)


def test_rrelu_module_follows_training_flag_and_holds_no_state():
    m = nn.RReLU(0.1, 0.5)
    t = torch.nn.RReLU(0.1, 0.5)
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    assert m.state_dict() == {} and repr(m) == repr(t)
    m.eval()
    t.eval()
    np.testing.assert_allclose(m(jnp.asarray(x)), t(torch.tensor(x)).numpy(), **VAL)
    m.train()
    out = np.asarray(m(jnp.asarray(x)))
    neg = x <= 0
    ratio = out[neg] / x[neg]
    assert ((ratio >= 0.1 - 1e-6) & (ratio <= 0.5 + 1e-6)).all() and len(set(ratio)) > 1
    with pytest.raises(RuntimeError, match="key"):  # no key in scope inside a trace
        jax.jit(lambda mod, v: mod(v))(m, jnp.asarray(x))


def test_gumbel_softmax_is_torchs_formula_on_the_same_noise():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    cots = rng.standard_normal((2, 4, 5)).astype(np.float32)
    configs = ((False, 1.0, -1), (True, 0.5, 0))

    @jax.jit  # one compile: the noise, and both configurations' values and gradients
    def run(a, key):
        out = []
        for (hard, tau, dim), c in zip(configs, cots):
            fn = functools.partial(F.gumbel_softmax, tau=tau, hard=hard, dim=dim, key=key)
            value, vjp = jax.vjp(fn, a)
            out.append((value, vjp(c)[0]))
        return jax.random.gumbel(key, a.shape, jnp.float32), out

    noise, results = run(jnp.asarray(logits), jax.random.key(7))
    for (hard, tau, dim), c, (value, grad) in zip(configs, cots, results):
        t = torch.tensor(logits, requires_grad=True)
        y = ((t + torch.tensor(np.asarray(noise))) / tau).softmax(dim)
        if hard:
            index = y.max(dim, keepdim=True)[1]
            y = torch.zeros_like(t).scatter_(dim, index, 1.0) - y.detach() + y
        y.backward(torch.tensor(c))
        np.testing.assert_allclose(value, y.detach().numpy(), **VAL)
        np.testing.assert_allclose(grad, t.grad.numpy(), **GRAD)
    hard = np.asarray(results[1][0])
    assert set(np.unique(hard).tolist()) == {0.0, 1.0} and (hard.sum(0) == 1).all()
    with pytest.warns(UserWarning, match="`eps` parameter is deprecated"):
        jax.eval_shape(lambda a: F.gumbel_softmax(a, eps=1e-3, key=jax.random.key(0)), logits)


# One configuration per class, off its defaults where it has options (the defaults' reprs are
# the same code path).
MODULES = [
    ("ReLU6", {"inplace": True}), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5, "inplace": True}),
    ("SELU", {}), ("CELU", {"alpha": 0.5, "inplace": True}), ("GLU", {"dim": 0}),
    ("Hardswish", {}), ("Hardsigmoid", {"inplace": True}), ("Hardshrink", {"lambd": 1.25}),
    ("Softshrink", {}), ("Tanhshrink", {}), ("Threshold", {"threshold": -1, "value": 2, "inplace": True}),
    ("Softmin", {"dim": 1}), ("LogSigmoid", {}), ("Mish", {"inplace": True}),
    ("Softplus", {"beta": 2, "threshold": 3.5}), ("Softsign", {}),
    ("PReLU", {"num_parameters": 4, "init": -0.5}), ("RReLU", {"lower": 0.2, "upper": 0.25, "inplace": True}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs"), MODULES, ids=[f"{n}{k}" for n, k in MODULES])
def test_module_repr_state_and_eval_output_match_torch(name, kwargs):
    m = getattr(nn, name)(**kwargs)
    t = getattr(torch.nn, name)(**kwargs)
    m.eval()
    t.eval()
    assert repr(m) == repr(t)
    assert list(m.state_dict()) == list(t.state_dict())
    for a, b in zip(m.state_dict().values(), t.state_dict().values()):
        np.testing.assert_array_equal(np.asarray(a), b.numpy())
    x = _inputs(np.random.default_rng(0), [], (2, 4, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Softmin's implicit dim
        np.testing.assert_allclose(m(jnp.asarray(x)), t(torch.tensor(x)).detach().numpy(), **VAL)
    twin = fparam.from_torch(t)
    assert type(twin) is type(m) and repr(twin) == repr(t)


def test_prelu_module_gradient_and_load_state_dict():
    t = torch.nn.PReLU(3)
    with torch.no_grad():
        t.weight.copy_(torch.tensor([0.1, -0.2, 0.7]))
    m = nn.PReLU(3)
    m.load_state_dict(t.state_dict())
    x = _inputs(np.random.default_rng(2), [], (2, 3, 4))
    loss = fparam.grad(lambda mod: (mod(jnp.asarray(x)) ** 2).sum())
    g = jax.jit(loss)(m)
    tx = torch.tensor(x)
    (t(tx) ** 2).sum().backward()
    np.testing.assert_allclose(g.weight, t.weight.grad.numpy(), **GRAD)
    m.weight = nn.Parameter(jnp.zeros(3))
    m.reset_parameters()
    np.testing.assert_array_equal(m.weight, np.full(3, 0.25, np.float32))
    assert m.weight.dtype == jnp.float32


def test_jit_and_grad_through_a_stack_of_the_new_layers():
    model = nn.Sequential(
        nn.Hardtanh(-2.0, 2.0), nn.ReLU6(), nn.CELU(0.5), nn.Softplus(2.0), nn.PReLU(),
        nn.Hardswish(), nn.Mish(), nn.GLU(1), nn.Softsign(), nn.Softmin(1),
    )  # fmt: skip
    t = torch.nn.Sequential(
        torch.nn.Hardtanh(-2.0, 2.0), torch.nn.ReLU6(), torch.nn.CELU(0.5), torch.nn.Softplus(2.0),
        torch.nn.PReLU(), torch.nn.Hardswish(), torch.nn.Mish(), torch.nn.GLU(1),
        torch.nn.Softsign(), torch.nn.Softmin(1),
    )  # fmt: skip
    x = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)

    @jax.jit
    def step(m, v):
        return fparam.value_and_grad(lambda mod: (mod(v) * jnp.arange(4.0)[None]).sum())(m)

    value, grads = step(model, jnp.asarray(x))
    tv = (t(torch.tensor(x)) * torch.arange(4.0)).sum()
    tv.backward()
    np.testing.assert_allclose(value, tv.item(), rtol=1e-5)
    np.testing.assert_allclose(grads[4].weight, t[4].weight.grad.numpy(), rtol=1e-4, atol=1e-7)


def _same_error(ours, theirs, exc=None):
    with pytest.raises(Exception) as t:
        theirs()
    with pytest.raises(type(t.value) if exc is None else exc) as o:
        ours()
    assert str(o.value) == str(t.value), (str(o.value), str(t.value))


def test_bad_arguments_raise_torchs_errors():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    j, t = jnp.asarray(x), torch.tensor(x)
    _same_error(lambda: F.hardtanh(j, 2.0, 1.0), lambda: TF.hardtanh(t, 2.0, 1.0))
    _same_error(lambda: nn.Hardtanh(1.0, 1.0), lambda: torch.nn.Hardtanh(1.0, 1.0))
    _same_error(lambda: F.celu(j, 0.0), lambda: TF.celu(t, 0.0))
    _same_error(lambda: F.glu(j), lambda: TF.glu(t))
    _same_error(lambda: F.glu(j[0, 0]), lambda: TF.glu(t[0, 0]))
    _same_error(lambda: F.softshrink(j, -1.0), lambda: TF.softshrink(t, -1.0))
    _same_error(
        lambda: F.rrelu(j, 0.5, 0.1, training=True, key=jax.random.key(0)),
        lambda: TF.rrelu(t, 0.5, 0.1, training=True),
    )
    _same_error(lambda: F.prelu(j, jnp.ones(2)), lambda: TF.prelu(t, torch.ones(2)))
    _same_error(lambda: F.prelu(j[0], jnp.ones(3)), lambda: TF.prelu(t[0], torch.ones(3)))
    _same_error(lambda: F.prelu(j[0, 0], jnp.ones(2)), lambda: TF.prelu(t[0, 0], torch.ones(2)))
    with pytest.raises(IndexError):
        F.glu(j, 2)
    with pytest.raises(NotImplementedError, match="hardswish"):
        F.hardswish(jnp.arange(3))
    with pytest.raises(TypeError, match="lambd"):
        F.hardshrink(j, "0.5")
    with pytest.warns(FutureWarning, match="min_value"):
        assert nn.Hardtanh(min_value=-3.0).min_val == -3.0
