"""Distances, norms, ``Bilinear`` and ``Softmax2d`` against torch 2.13: ``cosine_similarity``,
``pairwise_distance``, ``pdist``, ``normalize``, ``bilinear`` and the modules
``CosineSimilarity``, ``PairwiseDistance``, ``Bilinear`` (parameter gradients too) and
``Softmax2d``: outputs, input gradients, unbatched / broadcast inputs, reprs, torch's errors and
``from_torch`` twins. Grids come from fixed-seed RNGs and cover every p-norm order torch treats
specially (0, 1, 2, inf, -inf) plus fractional and negative orders.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fparam
from fparam import nn
from fparam.nn import functional as F

# Measured over these grids (float32, CPU, recording |fparam - torch| at every comparison):
# max abs error 1.9e-6 at magnitudes up to ~26 (normalize), 9.5e-7 for Bilinear's parameter
# gradients; where a zero vector makes the gradient ~1/eps (up to 1e12), the error stays at a
# relative 1e-7, which rtol carries. Tolerances: ~5x the absolute maximum.
TOL = {"rtol": 1e-5, "atol": 1e-5}
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _compare(fj: Callable, ft: Callable, xs: list[np.ndarray], seed: int) -> None:
    """Output and the gradients of every input against torch, through one jitted vjp."""
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = ft(*txs)
    cot = _rand(np.random.default_rng(seed), tuple(ty.shape))
    tgs = torch.autograd.grad(ty, txs, torch.tensor(cot), allow_unused=True)  # None for p=0

    @partial(jax.jit, compiler_options=_FAST_COMPILE)
    def value_and_vjp(xs, g):
        y, vjp = jax.vjp(fj, *xs)
        return y, vjp(g)

    y, gs = value_and_vjp(xs, cot)
    assert y.shape == tuple(ty.shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), **TOL)
    for g, tg, x in zip(gs, tgs, xs):
        expected = np.zeros_like(x) if tg is None else tg.numpy()
        np.testing.assert_allclose(np.asarray(g), expected, **TOL)


def _same_error(torch_call: Callable, fparam_call: Callable) -> None:
    with pytest.raises(Exception) as expected:
        torch_call()
    with pytest.raises(expected.type) as got:
        fparam_call()
    assert str(expected.value) in str(got.value), (str(expected.value), str(got.value))


def _broadcast_pair(r: random.Random, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    full = tuple(r.randint(1, 4) for _ in range(rank))
    a = tuple(1 if r.random() < 0.2 else s for s in full)
    b = tuple(1 if r.random() < 0.2 else s for s in full)
    return a, b[r.randint(0, min(1, rank)) :]  # sometimes a lower rank


P_VALUES = [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, 0.0, -1.0, 1.5]


@pytest.mark.parametrize("case", range(8))
def test_cosine_similarity_matches_torch(case: int) -> None:
    r = random.Random(case)
    rank = r.randint(1, 4)
    a, b = _broadcast_pair(r, rank)
    dim = r.randint(-rank, rank - 1)
    eps = (1e-8, 0.5)[case % 2]  # 0.5: the clamp is active for some rows
    rng = np.random.default_rng(case)
    x1, x2 = _rand(rng, a), _rand(rng, b)
    if case % 3 == 0:
        x1[..., :1] = 0.0  # zero vectors somewhere along dim: gradient 0, not NaN
    _compare(
        lambda u, v: F.cosine_similarity(u, v, dim, eps),
        lambda u, v: TF.cosine_similarity(u, v, dim, eps),
        [x1, x2],
        case,
    )
    if case < 3:  # the module's forward is F.cosine_similarity
        _compare(nn.CosineSimilarity(dim, eps), torch.nn.CosineSimilarity(dim, eps), [x1, x2], case)


@pytest.mark.parametrize("case", range(9))
def test_pairwise_distance_matches_torch(case: int) -> None:
    r = random.Random(100 + case)
    p = P_VALUES[case % len(P_VALUES)]
    rank = r.randint(1, 3)
    a, b = _broadcast_pair(r, rank)
    keepdim, eps = r.random() < 0.5, (1e-6, 0.0, 0.1)[case % 3]
    rng = np.random.default_rng(case)
    x1, x2 = _rand(rng, a), _rand(rng, b)
    args = (p, eps, keepdim)
    _compare(
        lambda u, v: F.pairwise_distance(u, v, *args),
        lambda u, v: TF.pairwise_distance(u, v, *args),
        [x1, x2],
        case,
    )
    t, m = torch.nn.PairwiseDistance(*args), nn.PairwiseDistance(*args)
    assert repr(m) == repr(t) and m.norm == t.norm
    if case < 3:  # the module's forward is F.pairwise_distance
        _compare(m, t, [x1, x2], case)


def test_pairwise_distance_zero_rank_and_zero_difference() -> None:
    x1 = np.float32(2.0)
    _compare(
        lambda u, v: F.pairwise_distance(u, v),
        TF.pairwise_distance,
        [np.array(x1), np.array(np.float32(3.0))],
        0,
    )
    same = _rand(np.random.default_rng(1), (3, 4))
    for p in (2.0, 3.0, math.inf):  # eps=0 and x1 == x2: a zero norm has gradient 0
        _compare(
            lambda u, v, p=p: F.pairwise_distance(u, v, p, 0.0),
            lambda u, v, p=p: TF.pairwise_distance(u, v, p, 0.0),
            [same, same.copy()],
            1,
        )


@pytest.mark.parametrize("case", range(8))
def test_pdist_matches_torch(case: int) -> None:
    p = (2.0, 1.0, 3.0, 0.5, math.inf, 0.0, 1.5, 2.0)[case]
    n = (4, 3, 5, 2, 4, 3, 1, 0)[case]
    x = _rand(np.random.default_rng(case), (n, 1 + case % 3))
    if case == 0:
        x[1] = x[0]  # a zero distance: gradient 0
    if n < 2:
        y = F.pdist(x, p)
        assert y.shape == tuple(TF.pdist(torch.tensor(x), p).shape) == (0,)
        return
    _compare(lambda u: F.pdist(u, p), lambda u: TF.pdist(u, p), [x], case)


@pytest.mark.parametrize("case", range(9))
def test_normalize_matches_torch(case: int) -> None:
    r = random.Random(200 + case)
    p = P_VALUES[case % len(P_VALUES)]
    rank = r.randint(1, 4)
    shape = tuple(r.randint(1, 4) for _ in range(rank))
    dim = r.randint(-rank, rank - 1)
    eps = (1e-12, 0.5)[case % 2]
    x = _rand(np.random.default_rng(case), shape)
    _compare(
        lambda u: F.normalize(u, p, dim, eps), lambda u: TF.normalize(u, p, dim, eps), [x], case
    )


def test_normalize_zero_rank_and_zero_vectors() -> None:
    _compare(
        lambda u: F.normalize(u, dim=0),
        lambda u: TF.normalize(u, dim=0),
        [np.array(np.float32(-3.0))],
        0,
    )
    x = np.zeros((3, 4), np.float32)
    x[1] = 1.0
    _compare(F.normalize, TF.normalize, [x], 1)


DISTANCE_ERRORS = [
    (lambda f: f.cosine_similarity(np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32)), None),
    (lambda f: f.cosine_similarity(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32), dim=2), None),
    (lambda f: f.cosine_similarity(np.zeros(4, np.float32), np.zeros(4, np.float32)), None),
    (lambda f: f.cosine_similarity(np.ones((2, 3), np.int64), np.ones((2, 3), np.int64)), None),
    (lambda f: f.cosine_similarity(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), 1.0), None),
    (lambda f: f.cosine_similarity(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), eps=-1.0), None),
    (lambda f: f.pairwise_distance(np.zeros((3, 4), np.float32), np.zeros((3, 5), np.float32)), None),
    (lambda f: f.pairwise_distance(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32), "a"), None),
    (lambda f: f.pdist(np.zeros((2, 4, 3), np.float32)), None),
    (lambda f: f.pdist(np.zeros(4, np.float32)), None),
    (lambda f: f.pdist(np.ones((3, 2), np.int64)), None),
    (lambda f: f.pdist(np.zeros((4, 3), np.float32), -1.0), None),
    (lambda f: f.pdist(np.zeros((4, 3), np.float32), "a"), None),
    (lambda f: f.normalize(np.zeros(4, np.float32)), None),
    (lambda f: f.normalize(np.zeros((3, 4), np.float32), dim=3), None),
    (lambda f: f.normalize(np.ones((3, 4), np.int64)), None),
]  # fmt: skip


def _torch_args(f: Any) -> Any:
    """The torch functional namespace with NumPy arrays turned into tensors."""

    class Wrapped:
        def __getattr__(self, name: str) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                args = tuple(torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args)
                return getattr(f, name)(*args, **kwargs)

            return call

    return Wrapped()


@pytest.mark.parametrize("case", range(len(DISTANCE_ERRORS)))
def test_distance_errors_match_torch(case: int) -> None:
    call, _ = DISTANCE_ERRORS[case]
    _same_error(lambda: call(_torch_args(TF)), lambda: call(F))


def test_integer_inputs_join_a_float_input_as_in_torch() -> None:
    ints = np.arange(6, dtype=np.int32).reshape(2, 3)
    floats = _rand(np.random.default_rng(3), (2, 3))
    expected = TF.cosine_similarity(torch.tensor(ints).long(), torch.tensor(floats)).numpy()
    got = jax.jit(F.cosine_similarity)(ints, floats)  # (eagerly every op compiles on its own)
    np.testing.assert_allclose(np.asarray(got), expected, **TOL)
    expected = TF.pairwise_distance(torch.tensor(ints).long(), torch.tensor(ints + 1).long())
    got = jax.jit(F.pairwise_distance)(ints, ints + 1)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), **TOL)


# --------------------------------------------------------------------------------------------
# Bilinear.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(6))
def test_bilinear_matches_torch_with_parameter_gradients(case: int) -> None:
    r = random.Random(300 + case)
    in1, in2, out = r.randint(1, 4), r.randint(0, 4), r.randint(0, 3)
    bias = case % 3 != 2
    lead = tuple(r.randint(1, 3) for _ in range(case % 3))  # () is a 1-D pair: unbatched
    rng = np.random.default_rng(case)
    x1, x2 = _rand(rng, (*lead, in1)), _rand(rng, (*lead, in2))
    t = torch.nn.Bilinear(in1, in2, out, bias=bias)
    m = nn.Bilinear(in1, in2, out, bias=bias)
    assert repr(m) == repr(t)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in t.named_parameters()
    ]
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.tensor(_rand(rng, tuple(p.shape))))
    m.load_state_dict(t.state_dict())

    tx1, tx2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ty = t(tx1, tx2)
    cot = _rand(rng, tuple(ty.shape))
    ty.backward(torch.tensor(cot))

    @jax.jit
    def step(m, x1, x2):
        def loss(m, x1, x2):
            y = m(x1, x2)
            return jnp.sum(y * cot), y

        return fparam.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(m, x1, x2)

    (_, y), (g_m, g1, g2) = step(m, x1, x2)
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(g1), tx1.grad.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(g2), tx2.grad.numpy(), **TOL)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(np.asarray(getattr(g_m, name)), p.grad.numpy(), **TOL)


def test_bilinear_initialisation_bounds_and_spread() -> None:
    layer = nn.Bilinear(16, 5, 200, key=jax.random.key(0))  # 16000 weights
    bound = 1 / math.sqrt(16)  # torch: 1/sqrt(weight.size(1)) for weight and bias
    w, b = np.asarray(layer.weight), np.asarray(layer.bias)
    assert layer.weight.dtype == jnp.float32 and w.shape == (200, 16, 5) and b.shape == (200,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.min() < -0.99 * bound and w.max() > 0.99 * bound
    assert abs(w.var() - bound**2 / 3) < 0.05 * bound**2 / 3  # U(-b, b) has variance b²/3
    assert b.min() < -0.8 * bound and b.max() > 0.8 * bound
    before = w.copy()
    layer.reset_parameters(key=jax.random.key(1))
    assert not np.array_equal(np.asarray(layer.weight), before)
    assert np.abs(np.asarray(layer.weight)).max() <= bound


BILINEAR_ERRORS = [
    ((3, 4), (5,), (6, 4, 5), None),
    ((3, 4), (2, 5), (6, 4, 5), None),
    ((3, 1, 4), (1, 2, 5), (6, 4, 5), None),
    ((3, 3), (3, 5), (6, 4, 5), None),
    ((3, 4), (3, 3), (6, 4, 5), None),
    ((3, 4), (3, 5), (6, 4, 5), (5,)),
    ((), (), (6, 1, 1), None),
]


@pytest.mark.parametrize(("a", "b", "w", "bias"), BILINEAR_ERRORS)
def test_bilinear_errors_match_torch(a: tuple, b: tuple, w: tuple, bias: Any) -> None:
    arrays = [np.zeros(s, np.float32) for s in (a, b, w)] + (
        [] if bias is None else [np.zeros(bias, np.float32)]
    )
    _same_error(
        lambda: TF.bilinear(*(torch.tensor(x) for x in arrays)),
        lambda: jax.eval_shape(F.bilinear, *arrays),
    )


def test_bilinear_dtype_and_constructor_errors_match_torch() -> None:
    x = np.zeros((3, 4), np.float32)
    _same_error(
        lambda: TF.bilinear(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(6, 4, 5).half()),
        lambda: F.bilinear(x, np.zeros((3, 5), np.float32), np.zeros((6, 4, 5), np.float16)),
    )
    _same_error(lambda: torch.nn.Bilinear(0, 3, 4), lambda: nn.Bilinear(0, 3, 4))
    with pytest.raises(RuntimeError):
        torch.nn.Bilinear(-1, 3, 4)
    with pytest.raises(RuntimeError, match="in1_features"):
        nn.Bilinear(-1, 3, 4)
    with pytest.raises(TypeError, match="out_features"):
        nn.Bilinear(2, 3, 4.0)
    with pytest.raises(RuntimeError, match="weight must be 3-D"):
        F.bilinear(x, np.zeros((3, 5), np.float32), np.zeros((4, 5), np.float32))


# --------------------------------------------------------------------------------------------
# Softmax2d and the twins.
# --------------------------------------------------------------------------------------------


def test_softmax2d_matches_torch_batched_and_unbatched() -> None:
    for shape in ((2, 3, 4, 5), (3, 2, 2)):
        x = _rand(np.random.default_rng(len(shape)), shape)
        _compare(nn.Softmax2d(), torch.nn.Softmax2d(), [x], len(shape))
    for shape in ((3, 4), (1, 2, 3, 4, 5)):
        x = np.zeros(shape, np.float32)
        _same_error(
            lambda x=x: torch.nn.Softmax2d()(torch.tensor(x)), lambda x=x: nn.Softmax2d()(x)
        )
    assert repr(nn.Softmax2d()) == repr(torch.nn.Softmax2d()) == "Softmax2d()"


def test_from_torch_twins_distance_layers_bilinear_and_softmax2d() -> None:
    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cos = torch.nn.CosineSimilarity(dim=-1, eps=1e-4)
            self.dist = torch.nn.PairwiseDistance(p=3.0, eps=1e-5, keepdim=True)
            self.bil = torch.nn.Bilinear(4, 4, 3, bias=False)
            self.soft = torch.nn.Softmax2d()

    t = Pair()
    parts = torch.nn.ModuleDict(dict(t.named_children()))
    m = fparam.from_torch(parts)
    assert repr(m) == repr(parts)
    assert list(m.state_dict()) == list(parts.state_dict())
    rng = np.random.default_rng(4)
    x1, x2 = _rand(rng, (2, 4)), _rand(rng, (2, 4))
    img = _rand(rng, (2, 3, 2, 2))
    with torch.no_grad():
        for name, args in (
            ("cos", (x1, x2)),
            ("dist", (x1, x2)),
            ("bil", (x1, x2)),
            ("soft", (img,)),
        ):
            expected = parts[name](*(torch.tensor(a) for a in args)).numpy()
            got = jax.jit(lambda m, *a: m(*a))(m[name], *args)
            np.testing.assert_allclose(np.asarray(got), expected, **TOL)
