"""Parity of the regression, KL, margin, embedding, likelihood and CTC losses with torch 2.13:
values and input gradients for every reduction over randomized grids (fixed seeds), torch's
errors and warnings, the modules (repr, weight buffers, legacy arguments, from_torch twins),
and use under ``jax.jit`` + ``jax.grad`` (and ``vmap`` for CTC).

``nll_loss`` / ``cross_entropy`` (K-dim inputs, weights, ignore_index, all-ignored batches,
unbatched and probability targets) are covered by test_functional_loss.py.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fparam
from fparam import nn
from fparam.nn import functional as F

# Tolerances, float32 against torch's float32. Measured over the grids and the CTC grid (jax
# 0.10.2, torch 2.13, CPU): largest absolute error 1.5e-5 (on GaussianNLL gradients of ~1e3, its
# 1/var² terms), largest relative error 2.9e-5 on entries above 1e-3 in size (small entries,
# within atol); `atol` covers entries near 0, `rtol` the large ones.
VAL = {"rtol": 5e-6, "atol": 5e-6}
GRAD = {"rtol": 1e-5, "atol": 5e-6}
REDUCTIONS = ("none", "mean", "sum")


def _t(x):
    """A torch tensor from a NumPy array (class indices become int64, as torch wants)."""
    x = np.asarray(x)
    return torch.tensor(x.astype(np.int64) if x.dtype.kind in "iu" else x)


def _parity(ours, theirs, args, diff, rng, val=VAL, grad=GRAD):
    """``ours(*args)`` and its VJP against ``theirs(*torch args)`` with torch autograd.

    Eager (op-by-op) VJPs: on this CPU a compile per configuration costs ~10x more. jit + grad
    is checked per family further down.
    """
    tensors = [_t(a) for a in args]
    for i in diff:
        tensors[i].requires_grad_(True)
    expected = theirs(*tensors)
    cot = rng.standard_normal(tuple(expected.shape)).astype(np.float32)
    expected.backward(torch.tensor(cot))

    def call(*d):
        return ours(*[d[diff.index(i)] if i in diff else a for i, a in enumerate(args)])

    value, vjp = jax.vjp(call, *[jnp.asarray(args[i]) for i in diff])
    grads = vjp(jnp.asarray(cot))
    assert value.shape == tuple(expected.shape)
    np.testing.assert_allclose(np.asarray(value), expected.detach().numpy(), **val)
    for i, g in zip(diff, grads):
        want = tensors[i].grad
        want = np.zeros(args[i].shape, np.float32) if want is None else want.numpy()
        np.testing.assert_allclose(np.asarray(g), want, **grad)


def _r(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _sign(rng, *shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Randomized grids: each entry draws one configuration from its rng.


def _kl(rng):
    red = rng.choice([*REDUCTIONS, "batchmean"])
    log_target = bool(rng.integers(2))
    shape = (4, 5)
    x = np.log(rng.uniform(0.05, 1, shape)).astype(np.float32)
    t = rng.uniform(0.05, 1, shape).astype(np.float32)
    if log_target:
        t = np.log(t)
    kw = {"reduction": str(red), "log_target": log_target}
    return partial(F.kl_div, **kw), partial(TF.kl_div, **kw), [x, t], (0, 1)


def _smooth_l1(rng):
    kw = {"reduction": str(rng.choice(REDUCTIONS)), "beta": float(rng.choice([0.0, 0.3, 1.0, 2.5]))}
    shape = (4, 5)
    x, t = _r(rng, *shape), _r(rng, *shape)
    x.flat[0] = t.flat[0]  # a zero difference: torch's subgradient
    return partial(F.smooth_l1_loss, **kw), partial(TF.smooth_l1_loss, **kw), [x, t], (0, 1)


def _huber(rng):
    red, delta = str(rng.choice(REDUCTIONS)), float(rng.choice([0.2, 1.0, 3.0]))
    shape = (4, 5)
    args = [2 * _r(rng, *shape), _r(rng, *shape)]
    if rng.integers(2):
        args.append(rng.uniform(0, 2, shape).astype(np.float32))
        return (
            lambda a, b, w: F.huber_loss(a, b, red, delta, w),
            lambda a, b, w: TF.huber_loss(a, b, red, delta, w),
            args,
            (0, 1),
        )
    kw = {"reduction": red, "delta": delta}
    return partial(F.huber_loss, **kw), partial(TF.huber_loss, **kw), args, (0, 1)


def _soft_margin(rng):
    kw = {"reduction": str(rng.choice(REDUCTIONS))}
    shape = (4, 5)
    # torch's kernel does not differentiate the target.
    args = [3 * _r(rng, *shape), _sign(rng, *shape)]
    return partial(F.soft_margin_loss, **kw), partial(TF.soft_margin_loss, **kw), args, (0,)


def _multilabel_soft_margin(rng):
    red = str(rng.choice(REDUCTIONS))
    shape = (4, 5)
    x, t = _r(rng, *shape), (rng.random(shape) < 0.5).astype(np.float32)
    if rng.integers(2):
        w = rng.uniform(0, 2, shape[-1:]).astype(np.float32)
        return (
            lambda a, b, w: F.multilabel_soft_margin_loss(a, b, w, reduction=red),
            lambda a, b, w: TF.multilabel_soft_margin_loss(a, b, w, reduction=red),
            [x, t, w],
            (0, 1, 2),
        )
    kw = {"reduction": red}
    return (
        partial(F.multilabel_soft_margin_loss, **kw),
        partial(TF.multilabel_soft_margin_loss, **kw),
        [x, t],
        (0, 1),
    )


def _multilabel_margin(rng):
    kw = {"reduction": str(rng.choice(REDUCTIONS))}
    n, c = 4, 5
    t = rng.integers(-1, c, (n, c))  # -1 ends each list; repeated targets count twice
    x = np.round(_r(rng, n, c), 1)  # ties at the hinge (gradient 0 there)
    return (
        partial(F.multilabel_margin_loss, **kw),
        partial(TF.multilabel_margin_loss, **kw),
        [x, t],
        (0,),
    )


def _multi_margin(rng):
    red = str(rng.choice(REDUCTIONS))
    p, margin = int(rng.integers(1, 3)), float(rng.choice([0.5, 1.0, 2.0]))
    n, c = 4, 5
    x, t = np.round(_r(rng, n, c), 1), rng.integers(0, c, (n,))
    w = rng.uniform(0, 2, (c,)).astype(np.float32) if rng.integers(2) else None
    wt = None if w is None else torch.tensor(w)
    return (
        lambda a, b: F.multi_margin_loss(a, b, p, margin, w, reduction=red),
        lambda a, b: TF.multi_margin_loss(a, b, p, margin, wt, reduction=red),
        [x, t],
        (0,),
    )


def _margin_ranking(rng):
    red, margin = str(rng.choice(REDUCTIONS)), float(rng.choice([0.0, 0.5]))
    shapes = ((4, 3), (1, 3), (4, 1))
    a, b = np.round(_r(rng, *shapes[0]), 1), np.round(_r(rng, *shapes[1]), 1)
    t = _sign(rng, *shapes[2])
    return (
        lambda a, b, t: F.margin_ranking_loss(a, b, t, margin, reduction=red),
        lambda a, b, t: TF.margin_ranking_loss(a, b, t, margin, reduction=red),
        [a, b, t],
        (0, 1, 2),
    )


def _hinge_embedding(rng):
    red, margin = str(rng.choice(REDUCTIONS)), float(rng.choice([0.5, 1.0]))
    shape = (4, 5)
    x = np.abs(_r(rng, *shape))
    t = rng.choice(np.array([-1.0, 1.0, 0.0], np.float32), shape)  # 0: both terms, as torch
    return (
        lambda x, t: F.hinge_embedding_loss(x, t, margin, reduction=red),
        lambda x, t: TF.hinge_embedding_loss(x, t, margin, reduction=red),
        [x, t],
        (0,),
    )


def _cosine_embedding(rng):
    red, margin = str(rng.choice(REDUCTIONS)), float(rng.choice([0.0, 0.3, -0.5]))
    a, b = _r(rng, 4, 5), _r(rng, 1, 5)  # broadcast against each other
    t = rng.choice(np.array([-1.0, 1.0, 0.5], np.float32), (4,))
    return (
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin, reduction=red),
        lambda a, b, t: TF.cosine_embedding_loss(a, b, t, margin, reduction=red),
        [a, b, t],
        (0, 1),
    )


def _triplet(rng):
    red = str(rng.choice(REDUCTIONS))
    margin = float(rng.choice([0.5, 1.0, 3.0]))
    p = float(rng.choice([2.0, 1.0, 3.0, 1.5, math.inf, 0.0, -1.0]))
    eps, swap = float(rng.choice([1e-6, 0.1])), bool(rng.integers(2))
    shape = (4, 5)
    args = [_r(rng, *shape), _r(rng, *shape), _r(rng, *shape)]
    return (
        lambda a, b, c: F.triplet_margin_loss(a, b, c, margin, p, eps, swap, reduction=red),
        lambda a, b, c: TF.triplet_margin_loss(a, b, c, margin, p, eps, swap, reduction=red),
        args,
        (0, 1, 2),
    )


def _triplet_distance(rng):
    red, swap = str(rng.choice(REDUCTIONS)), bool(rng.integers(2))
    margin = float(rng.choice([0.5, 2.0]))
    custom = bool(rng.integers(2))
    ours_d = (lambda x, y: 1 - jnp.sum(x * y, -1)) if custom else None
    theirs_d = (lambda x, y: 1 - torch.sum(x * y, -1)) if custom else None
    args = [_r(rng, 4, 5), _r(rng, 4, 5), _r(rng, 4, 5)]
    kw = {"margin": margin, "swap": swap, "reduction": red}
    return (
        partial(F.triplet_margin_with_distance_loss, distance_function=ours_d, **kw),
        partial(TF.triplet_margin_with_distance_loss, distance_function=theirs_d, **kw),
        args,
        (0, 1, 2),
    )


def _poisson(rng):
    log_input, full = bool(rng.integers(2)), bool(rng.integers(2))
    kw = {"reduction": str(rng.choice(REDUCTIONS)), "eps": float(rng.choice([1e-8, 0.1]))}
    shape = (4, 5)
    x = _r(rng, *shape) if log_input else rng.uniform(0.1, 3, shape).astype(np.float32)
    t = rng.uniform(0.01, 5, shape).astype(np.float32)  # both sides of the Stirling mask t > 1
    return (
        lambda x, t: F.poisson_nll_loss(x, t, log_input, full, **kw),
        lambda x, t: TF.poisson_nll_loss(x, t, log_input, full, **kw),
        [x, t],
        (0, 1),
    )


def _gaussian(rng):
    red, full = str(rng.choice(REDUCTIONS)), bool(rng.integers(2))
    eps = float(rng.choice([1e-6, 0.3]))  # 0.3 clamps some variances (gradient passes through)
    shape = (4, 3, 2)
    var_shape = [(4, 3, 2), (4, 3), (4, 1, 2)][rng.integers(3)]
    args = [_r(rng, *shape), _r(rng, *shape), rng.uniform(0.05, 2, var_shape).astype(np.float32)]
    return (
        lambda x, t, v: F.gaussian_nll_loss(x, t, v, full, eps, red),
        lambda x, t, v: TF.gaussian_nll_loss(x, t, v, full, eps, red),
        args,
        (0, 1, 2),
    )


# Each grid keeps one shape (eager ops compile once per shape on this CPU); other ranks,
# unbatched and 0-d inputs are in the edge tests below.
GRIDS = {
    "kl_div": (_kl, 8),
    "smooth_l1_loss": (_smooth_l1, 6),
    "huber_loss": (_huber, 6),
    "soft_margin_loss": (_soft_margin, 4),
    "multilabel_soft_margin_loss": (_multilabel_soft_margin, 6),
    "multilabel_margin_loss": (_multilabel_margin, 6),
    "multi_margin_loss": (_multi_margin, 8),
    "margin_ranking_loss": (_margin_ranking, 4),
    "hinge_embedding_loss": (_hinge_embedding, 4),
    "cosine_embedding_loss": (_cosine_embedding, 6),
    "triplet_margin_loss": (_triplet, 10),
    "triplet_margin_with_distance_loss": (_triplet_distance, 4),
    "poisson_nll_loss": (_poisson, 6),
    "gaussian_nll_loss": (_gaussian, 8),
}


@pytest.mark.parametrize("name", list(GRIDS))
def test_grid_matches_torch(name):
    draw, count = GRIDS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning: tested below
        for _ in range(count):
            ours, theirs, args, diff = draw(rng)
            _parity(ours, theirs, args, diff, rng)


# --------------------------------------------------------------------------------------------
# Edge values


def test_kl_div_zero_targets_and_batchmean_corners():
    x = np.log(np.array([[0.2, 0.8], [0.5, 0.5]], np.float32))
    t = np.array([[0.0, 1.0], [0.3, 0.7]], np.float32)
    for red in ("none", "sum", "batchmean"):
        got = F.kl_div(x, t, reduction=red)
        np.testing.assert_allclose(got, TF.kl_div(_t(x), _t(t), reduction=red), **VAL)
    # 0-d input: 'batchmean' is the sum; an empty batch gives NaN as in torch.
    assert float(F.kl_div(np.float32(-1.0), np.float32(0.5), reduction="batchmean")) == float(
        TF.kl_div(torch.tensor(-1.0), torch.tensor(0.5), reduction="batchmean")
    )
    assert np.isnan(
        F.kl_div(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), reduction="batchmean")
    )


def test_soft_margin_is_finite_where_torch_overflows():
    x, t = np.array([-100.0, 100.0, 3.0], np.float32), np.array([1.0, -1.0, 1.0], np.float32)
    got = np.asarray(F.soft_margin_loss(x, t, reduction="none"))
    np.testing.assert_allclose(got, [100.0, 100.0, math.log1p(math.exp(-3.0))], rtol=1e-6)
    # torch gives inf for the first two and agrees on the last.
    np.testing.assert_allclose(
        got[2], TF.soft_margin_loss(_t(x), _t(t), reduction="none")[2], **VAL
    )


def test_gaussian_nll_float_var_and_clamp_gradient():
    rng = np.random.default_rng(3)
    x, t = _r(rng, 4, 3), _r(rng, 4, 3)
    np.testing.assert_allclose(
        F.gaussian_nll_loss(x, t, 0.5, True), TF.gaussian_nll_loss(_t(x), _t(t), 0.5, True), **VAL
    )
    # A variance below eps: torch uses eps, and its gradient still flows as if unclamped.
    v = np.full((4, 3), 1e-3, np.float32)
    tv = _t(v).requires_grad_(True)
    TF.gaussian_nll_loss(_t(x), _t(t), tv, eps=0.1).backward()
    g = jax.grad(lambda v: F.gaussian_nll_loss(x, t, v, eps=0.1))(v)
    np.testing.assert_allclose(g, tv.grad.numpy(), **GRAD)
    assert np.all(np.asarray(g) != 0)


def test_poisson_full_stirling_masks_small_targets():
    x = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    t = np.array([0.0, 1.0, 1.5, 4.0], np.float32)
    got = F.poisson_nll_loss(x, t, full=True, reduction="none")
    np.testing.assert_allclose(
        got, TF.poisson_nll_loss(_t(x), _t(t), full=True, reduction="none"), **VAL
    )
    # The target's gradient is finite at t = 0 (torch's is NaN there: 0 * log 0).
    g = jax.grad(lambda t: F.poisson_nll_loss(x, t, full=True))(t)
    assert np.all(np.isfinite(g))


def test_margin_losses_empty_batches():
    e = np.zeros((0, 4), np.float32)
    idx = np.zeros((0,), np.int32)
    assert F.multi_margin_loss(e, idx, reduction="none").shape == (0,)
    assert F.multilabel_margin_loss(e, np.zeros((0, 4), np.int32), reduction="none").shape == (0,)
    assert float(F.multilabel_margin_loss(e, np.zeros((0, 4), np.int32), reduction="sum")) == 0.0
    assert np.isnan(F.smooth_l1_loss(e, e))  # torch: nan


def test_zero_d_inputs_of_the_margin_losses():
    x = np.float32(0.3)
    for ours, theirs in (
        (F.multi_margin_loss(x, np.int32(0), reduction="none"), TF.multi_margin_loss(_t(x), torch.tensor(0), reduction="none")),
        (F.multi_margin_loss(x, np.array([0]), reduction="none"), TF.multi_margin_loss(_t(x), torch.tensor([0]), reduction="none")),
        (F.multilabel_margin_loss(x, np.int32(0), reduction="none"), TF.multilabel_margin_loss(_t(x), torch.tensor(0), reduction="none")),
        (F.triplet_margin_loss(x, x + 1, x - 2, reduction="none"), TF.triplet_margin_loss(_t(x), _t(x + 1), _t(x - 2), reduction="none")),
    ):  # fmt: skip
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours, theirs.numpy(), **VAL)


# --------------------------------------------------------------------------------------------
# Errors and warnings: the same exception type, and torch's message.


def _a(*shape, dtype=np.float32):
    return np.ones(shape, dtype)


def _i(*shape):
    return np.zeros(shape, np.int64)


ERRORS = [
    ("kl_div", (_a(3), _a(3)), {"reduction": "foo"}),
    ("kl_div", (_a(3, dtype=np.int64), _a(3)), {}),
    ("kl_div", (_a(3), _a(3, dtype=np.int64)), {}),
    ("kl_div", (_a(3), _a(4)), {"reduction": "sum"}),
    ("smooth_l1_loss", (_a(3), _a(3)), {"beta": -1.0}),
    ("smooth_l1_loss", (_a(3), _a(3)), {"reduction": "x"}),
    ("smooth_l1_loss", (_a(3, dtype=np.int64), _a(3, dtype=np.int64)), {}),
    ("smooth_l1_loss", (_a(3), _a(4)), {}),
    ("huber_loss", (_a(3), _a(3)), {"delta": 0.0}),
    ("huber_loss", (_a(3), _a(3)), {"reduction": "x"}),
    ("huber_loss", (_a(3), _a(3)), {"reduction": "x", "weight": _a(3)}),
    ("huber_loss", (_a(3), _a(3)), {"weight": _a(1)}),
    ("soft_margin_loss", (_a(3), _a(4)), {}),
    ("soft_margin_loss", (_a(4), _a(3, 4)), {}),
    ("soft_margin_loss", (_a(3), _a(3)), {"reduction": "x"}),
    ("soft_margin_loss", (_a(3, dtype=np.int64), _a(3, dtype=np.int64)), {}),
    ("multilabel_soft_margin_loss", (_a(), _a()), {}),
    ("multilabel_soft_margin_loss", (_a(2, 4), _a(2, 4)), {"reduction": "x"}),
    ("multilabel_soft_margin_loss", (_a(2, 3), _a(2, 3), _a(2)), {}),
    ("multilabel_margin_loss", (_a(2, 3, 4), _i(2, 3, 4)), {}),
    ("multilabel_margin_loss", (_a(2, 0), _i(2, 0)), {}),
    ("multilabel_margin_loss", (_a(2, 4), _i(2, 3)), {}),
    ("multilabel_margin_loss", (_a(4), _i(3)), {}),
    ("multilabel_margin_loss", (_a(2, 4), _a(2, 4)), {}),
    ("multilabel_margin_loss", (_a(2, 4), np.full((2, 4), 5)), {}),
    ("multilabel_margin_loss", (_a(2, 4), np.full((2, 4), -2)), {}),
    ("multilabel_margin_loss", (_a(2, 4, dtype=np.int64), _i(2, 4)), {}),
    ("multilabel_margin_loss", (_a(2, 4), _i(2, 4)), {"reduction": "x"}),
    ("multi_margin_loss", (_a(2, 4), _i(2)), {"p": 3}),
    ("multi_margin_loss", (_a(2, 4), _i(2)), {"weight": _a(2, 2)}),
    ("multi_margin_loss", (_a(2, 4), _i(2)), {"weight": _a(3)}),
    ("multi_margin_loss", (_a(2, 4), _i(2)), {"weight": _a(4, dtype=np.float64)}),
    ("multi_margin_loss", (_a(2, 3, 4), _i(2)), {}),
    ("multi_margin_loss", (_a(2, 0), _i(2)), {}),
    ("multi_margin_loss", (_a(2, 4), _i(3)), {}),
    ("multi_margin_loss", (_a(2, 4), _i(2, 1)), {}),
    ("multi_margin_loss", (_a(4), _i(2)), {}),
    ("multi_margin_loss", (_a(2, 4), _a(2)), {}),
    ("multi_margin_loss", (_a(2, 4), np.full((2,), 4)), {}),
    ("multi_margin_loss", (_a(2, 4, dtype=np.int64), _i(2)), {}),
    ("multi_margin_loss", (_a(2, 4), _i(2)), {"reduction": "x"}),
    ("margin_ranking_loss", (_a(3), _a(3), _a(1, 3)), {}),
    ("margin_ranking_loss", (_a(3), _a(4), _a(3)), {}),
    ("margin_ranking_loss", (_a(3), _a(3), _a(3)), {"reduction": "x"}),
    ("hinge_embedding_loss", (_a(3), _a(4)), {}),
    ("hinge_embedding_loss", (_a(3), _a(3)), {"reduction": "x"}),
    ("cosine_embedding_loss", (_a(3, 4), _a(3, 4), _a(3, 1)), {}),
    ("cosine_embedding_loss", (_a(4), _a(4), _a(3)), {}),
    ("cosine_embedding_loss", (_a(3, 4), _a(3, 4), _a()), {}),
    ("cosine_embedding_loss", (_a(2, 3, 4), _a(2, 3, 4), _a(2)), {}),
    ("cosine_embedding_loss", (_a(3, 4), _a(3, 4), _a(2)), {}),
    ("cosine_embedding_loss", (_a(3, 4), _a(3, 5), _a(3)), {}),
    ("cosine_embedding_loss", (_a(3, 4), _a(3, 4), _a(3)), {"reduction": "x"}),
    ("triplet_margin_loss", (_a(3, 4), _a(3, 4), _a(3, 4)), {"margin": 0.0}),
    ("triplet_margin_loss", (_a(3, 4), _a(4), _a(3, 4)), {}),
    ("triplet_margin_loss", (_a(3, 4), _a(3, 4), _a(3, 4)), {"reduction": "x"}),
    ("triplet_margin_with_distance_loss", (_a(3, 4), _a(3, 4), _a(3, 4)), {"margin": 0.0}),
    ("triplet_margin_with_distance_loss", (_a(3, 4), _a(4), _a(3, 4)), {}),
    ("triplet_margin_with_distance_loss", (_a(3, 4), _a(3, 4), _a(3, 4)), {"reduction": "x"}),
    ("poisson_nll_loss", (_a(3), _a(3)), {"reduction": "x"}),
    ("poisson_nll_loss", (_a(3), _a(4)), {}),
    ("gaussian_nll_loss", (_a(3), _a(3), -1.0), {}),
    ("gaussian_nll_loss", (_a(3), _a(3), -_a(3)), {}),
    ("gaussian_nll_loss", (_a(3, 4), _a(3, 4), _a(3, 2)), {}),
    ("gaussian_nll_loss", (_a(2, 3, 4), _a(2, 3, 4), _a(2, 1, 1)), {}),
    ("gaussian_nll_loss", (_a(3, 4), _a(3, 4), _a(4)), {}),
    ("gaussian_nll_loss", (_a(3, 4), _a(3, 4), _a(3, 4)), {"reduction": "x"}),
]


def _torch_kwargs(kwargs):
    return {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}


@pytest.mark.parametrize(
    ("name", "args", "kwargs"), ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)]
)
def test_errors_match_torch(name, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as theirs:
            getattr(TF, name)(
                *[_t(a) if isinstance(a, np.ndarray) else a for a in args], **_torch_kwargs(kwargs)
            )
        with pytest.raises(type(theirs.value)) as ours:
            getattr(F, name)(*args, **kwargs)
    want = str(theirs.value).split("\n")[0]
    assert str(ours.value) == want


def test_size_warnings_match_torch():
    x, t = _a(3, 1), _a(3)
    for name in ("smooth_l1_loss", "huber_loss"):
        with pytest.warns(UserWarning) as ours:
            getattr(F, name)(x, t)
        with pytest.warns(UserWarning) as theirs:
            getattr(TF, name)(_t(x), _t(t))
        assert str(ours[0].message) == str(theirs[0].message)
        assert ours[0].filename == __file__  # points at the caller
    for name in ("smooth_l1_loss", "huber_loss", "kl_div"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            getattr(F, name)(x, x, reduction="sum")


def test_kl_div_mean_warning_matches_torch():
    x = _a(2, 3)
    with pytest.warns(UserWarning) as ours:
        F.kl_div(x, x)
    with pytest.warns(UserWarning) as theirs:
        TF.kl_div(_t(x), _t(x))
    assert str(ours[0].message) == str(theirs[0].message)
    assert ours[0].filename == __file__


def test_value_checks_are_skipped_under_jit():
    """Concrete-only checks (negative var, out-of-range indices) do not break tracing."""
    x = _a(2, 4)
    out = jax.jit(lambda v: F.gaussian_nll_loss(x, x, v))(-_a(2, 4))
    assert np.isfinite(out)  # clamped to eps, as documented
    out = jax.jit(lambda t: F.multi_margin_loss(x, t))(np.array([0, 7], np.int32))
    assert np.isfinite(out)


# --------------------------------------------------------------------------------------------
# CTC


# One shape for the whole CTC grid, so that one compiled function serves every draw (lengths,
# targets, impossible alignments and empty targets all vary inside it).
_CTC_T, _CTC_N, _CTC_C, _CTC_S = 9, 4, 5, 4


@partial(jax.jit, static_argnums=(4,))
def _ctc_all_reductions(lp, targets, il, tl, zero_infinity, cot):
    """Each reduction's value and VJP (cotangent ``cot`` for 'none', 1 for the scalars)."""
    out = []
    for red in REDUCTIONS:
        value, vjp = jax.vjp(
            lambda a, red=red: F.ctc_loss(a, targets, il, tl, 0, red, zero_infinity), lp
        )
        out.append((value, vjp(cot if red == "none" else jnp.ones(()))[0]))
    return out


def _ctc_draw(rng):
    lp = np.asarray(jax.nn.log_softmax(2 * _r(rng, _CTC_T, _CTC_N, _CTC_C), axis=-1))
    targets = rng.integers(1, _CTC_C, (_CTC_N, _CTC_S))
    if rng.integers(2):
        targets[:, :] = targets[:, :1]  # repeated labels need a blank between them
    il = rng.integers(0, _CTC_T + 1, (_CTC_N,))
    tl = rng.integers(0, _CTC_S + 1, (_CTC_N,))
    return lp, targets, il, tl


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_grid_matches_torch_values_and_gradients(zero_infinity):
    """Under jit with traced lengths; every reduction; inputs of length 0, empty targets and
    impossible alignments (inf loss: NaN gradients as in torch, or zeros with zero_infinity)."""
    rng = np.random.default_rng(11 + zero_infinity)
    seen_inf = 0
    for _ in range(6):
        lp, targets, il, tl = _ctc_draw(rng)
        cot = _r(rng, _CTC_N)
        got = _ctc_all_reductions(lp, targets, il, tl, zero_infinity, cot)
        for red, (value, grad) in zip(REDUCTIONS, got):
            x = torch.tensor(lp, requires_grad=True)
            expected = TF.ctc_loss(x, _t(targets), _t(il), _t(tl), 0, red, zero_infinity)
            expected.backward(torch.tensor(cot) if red == "none" else None)
            np.testing.assert_allclose(value, expected.detach().numpy(), **VAL)
            np.testing.assert_allclose(grad, x.grad.numpy(), **GRAD)
            if red == "none":
                seen_inf += int(np.isinf(expected.detach().numpy()).sum())
    assert zero_infinity or seen_inf > 0  # the grid does reach impossible alignments


def test_ctc_other_blank_concatenated_targets_and_unbatched():
    rng = np.random.default_rng(6)
    lp = np.asarray(jax.nn.log_softmax(_r(rng, 7, 3, 4), axis=-1))
    targets = np.array([[0, 1, 1], [2, 0, 0], [1, 2, 0]])
    il, tl = [7, 5, 0], [3, 1, 0]
    cat = np.array([0, 1, 1, 2])
    x = torch.tensor(lp, requires_grad=True)
    expected = TF.ctc_loss(x, _t(cat), il, tl, blank=3, reduction="sum")
    expected.backward()
    for tg, lens in ((cat, tl), (targets, np.array(tl))):
        value, grad = jax.value_and_grad(
            lambda a, tg=tg, lens=lens: F.ctc_loss(a, tg, il, lens, blank=3, reduction="sum")
        )(lp)
        np.testing.assert_allclose(value, expected.detach().numpy(), **VAL)
        np.testing.assert_allclose(grad, x.grad.numpy(), **GRAD)
    # Unbatched (T, C): a 1-D target is the whole (concatenated) target; lengths as 0-d arrays,
    # 1-tuples, ints or JAX arrays; 'none' gives a scalar.
    tg = np.array([1, 2])
    want = TF.ctc_loss(_t(lp[:, 0]), _t(tg), torch.tensor(7), torch.tensor(2), reduction="none")
    for il1, tl1 in (
        (np.array(7), np.array(2)),
        ((7,), (2,)),
        (7, 2),
        (jnp.array([7]), jnp.array([2])),
    ):
        got = F.ctc_loss(lp[:, 0], tg, il1, tl1, reduction="none")
        assert got.shape == ()
        np.testing.assert_allclose(got, want, **VAL)
    # torch tensors as lengths (what a torch user passes).
    got = F.ctc_loss(lp, targets, torch.tensor(il), torch.tensor(tl), blank=3)
    np.testing.assert_allclose(
        got, TF.ctc_loss(_t(lp), _t(targets), _t(il), _t(tl), blank=3), **VAL
    )


def test_ctc_traced_concatenated_targets_and_vmap():
    rng = np.random.default_rng(7)
    lp = np.asarray(jax.nn.log_softmax(_r(rng, 8, 3, 5), axis=-1))
    targets = rng.integers(1, 5, (3, 4))
    il, tl = np.array([8, 6, 5], np.int32), np.array([4, 2, 3], np.int32)
    cat = np.concatenate([targets[b, : tl[b]] for b in range(3)])
    x = torch.tensor(lp, requires_grad=True)
    expected = TF.ctc_loss(x, _t(targets), _t(il), _t(tl))
    expected.backward()
    # With traced lengths, concatenated targets are gathered at traced offsets.
    value, grad = jax.jit(jax.value_and_grad(lambda lp, il, tl: F.ctc_loss(lp, cat, il, tl)))(
        lp, il, tl
    )
    np.testing.assert_allclose(value, expected.detach().numpy(), **VAL)
    np.testing.assert_allclose(grad, x.grad.numpy(), **GRAD)
    # vmap over unbatched problems equals the batched 'none' result.
    per = jax.vmap(
        lambda lp, tg, il, tl: F.ctc_loss(lp, tg, il[None], tl[None], reduction="none"),
        in_axes=(1, 0, 0, 0),
    )(lp, targets, il, tl)
    want = TF.ctc_loss(_t(lp), _t(targets), _t(il), _t(tl), reduction="none").numpy()
    np.testing.assert_allclose(per, want, **VAL)


CTC_ERRORS = [
    ((6, 2, 5), _i(2, 3), [6, 5], [3, 2], {"reduction": "x"}),
    ((6, 2, 5), _i(2, 3), np.array([6.0, 5.0]), np.array([3, 2]), {}),
    ((6, 2, 5), _i(2, 3), np.array([6, 5]), np.array([3.0, 2.0]), {}),
    ((6, 2, 5), _i(1), [6, 5], [3, 2], {}),
    ((6, 2, 5), _i(2, 3), [6, 5], [3, 2], {"blank": 5}),
    ((6, 2, 5), _i(2, 3), [6, 5], [3, 2], {"blank": -1}),
    ((6, 2, 5), _i(2, 3), [6, 5, 4], [3, 2], {}),
    ((6, 2, 5), _i(2, 3), [6, 5], [3], {}),
    ((6, 2, 5), _i(2, 3), [7, 5], [3, 2], {}),
    ((6, 2, 5), _i(2, 3), [-1, 5], [3, 2], {}),
    ((6, 2, 5), _i(2, 3), [6, 5], [-1, 2], {}),
    ((6, 2, 5), _i(2, 3), [6, 5], [4, 2], {}),
    ((6, 2, 5), _i(1, 3), [6, 5], [3, 2], {}),
    ((6, 2, 5), _i(1, 2, 3), [6, 5], [3, 2], {}),
    ((6, 2, 5), _i(4), [6, 5], [3, 2], {}),
    ((1, 6, 2, 5), _i(2, 3), [6, 5], [3, 2], {}),
    ((6,), _i(2, 3), [6, 5], [3, 2], {}),
]


@pytest.mark.parametrize(("shape", "targets", "il", "tl", "kwargs"), CTC_ERRORS)
def test_ctc_errors_match_torch(shape, targets, il, tl, kwargs):
    lp = np.zeros(shape, np.float32)
    conv = lambda v: _t(v) if isinstance(v, np.ndarray) else v  # noqa: E731
    with pytest.raises(Exception) as theirs:
        TF.ctc_loss(_t(lp), _t(targets), conv(il), conv(tl), **kwargs)
    with pytest.raises(type(theirs.value)) as ours:
        F.ctc_loss(lp, targets, il, tl, **kwargs)
    assert str(ours.value) == str(theirs.value).split("\n")[0]


def test_ctc_integer_log_probs_and_out_of_range_targets():
    with pytest.raises(NotImplementedError, match="ctc_loss_cpu"):
        F.ctc_loss(np.zeros((3, 1, 4), np.int32), _i(1, 1), [3], [1])
    with pytest.raises(IndexError, match="target value 7 is out of range for 4 classes"):
        F.ctc_loss(np.zeros((3, 1, 4), np.float32), np.array([[7]]), [3], [1])


# --------------------------------------------------------------------------------------------
# Modules


MODULES = [
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, "pair"),
    ("SmoothL1Loss", {"beta": 0.5, "reduction": "sum"}, "pair"),
    ("HuberLoss", {"delta": 0.5, "reduction": "none"}, "pair"),
    ("SoftMarginLoss", {}, "sign"),
    ("MultiLabelSoftMarginLoss", {"weight": np.array([1.0, 2.0, 0.5, 1.5], np.float32)}, "multilabel"),
    ("MultiLabelMarginLoss", {"reduction": "none"}, "labels"),
    ("MultiMarginLoss", {"p": 2, "margin": 0.5, "weight": np.array([1.0, 2.0, 0.5, 1.5], np.float32)}, "index"),
    ("MarginRankingLoss", {"margin": 0.2}, "triple_sign"),
    ("HingeEmbeddingLoss", {"margin": 2.0}, "sign"),
    ("CosineEmbeddingLoss", {"margin": 0.1, "reduction": "sum"}, "triple_row"),
    ("TripletMarginLoss", {"margin": 2.0, "p": 1.0, "swap": True}, "triple"),
    ("TripletMarginWithDistanceLoss", {"margin": 2.0, "swap": True}, "triple"),
    ("PoissonNLLLoss", {"log_input": False, "full": True, "eps": 1e-3}, "positive"),
    ("GaussianNLLLoss", {"full": True, "eps": 1e-3}, "gaussian"),
    ("CTCLoss", {"blank": 1, "zero_infinity": True}, "ctc"),
]  # fmt: skip


def _inputs(kind, rng):
    x, y = _r(rng, 3, 4), _r(rng, 3, 4)
    return {
        "pair": [np.log(np.abs(x) + 0.1), y],
        "sign": [x, _sign(rng, 3, 4)],
        "multilabel": [x, (y > 0).astype(np.float32)],
        "labels": [x, np.array([[1, 3, -1, 0], [0, 1, 2, 3], [-1, 0, 0, 0]])],
        "index": [x, np.array([3, 0, 1])],
        "triple_sign": [x, y, _sign(rng, 3, 4)],
        "triple_row": [x, y, np.array([1.0, -1.0, 1.0], np.float32)],
        "triple": [x, y, _r(rng, 3, 4)],
        "positive": [np.abs(x) + 0.1, np.abs(3 * y)],
        "gaussian": [x, y, np.abs(_r(rng, 3, 1))],
        "ctc": [np.asarray(jax.nn.log_softmax(_r(rng, 6, 2, 4), -1)), np.array([[2, 2], [3, 0]]), np.array([6, 2]), np.array([2, 2])],
    }[kind]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "kind"), MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_torch_and_from_torch_twins_it(name, kwargs, kind):
    rng = np.random.default_rng(len(name))
    ours = getattr(nn, name)(**kwargs)
    theirs = getattr(torch.nn, name)(**_torch_kwargs(kwargs))
    args = _inputs(kind, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = theirs(*[_t(a) for a in args])
        got = ours(*args)
    np.testing.assert_allclose(got, want.numpy(), **VAL)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())
    if name == "TripletMarginWithDistanceLoss":
        # torch holds a PairwiseDistance() child; fparam keeps None (the same default distance).
        assert repr(ours) == f"{name}()"
        return
    assert repr(ours) == repr(theirs) == f"{name}()"
    twin = fparam.from_torch(theirs)
    assert type(twin) is type(ours)
    for attr in ("reduction", "margin", "p", "eps", "swap", "beta", "delta", "log_target", "log_input", "full", "blank", "zero_infinity"):  # fmt: skip
        assert getattr(twin, attr, None) == getattr(theirs, attr, None)
    if name != "CTCLoss":  # (an eager CTC call compiles its scans again: the options suffice)
        np.testing.assert_allclose(twin(*args), want.numpy(), **VAL)


def test_weighted_loss_buffers_travel_with_a_model():
    crit = nn.MultiMarginLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    assert list(crit.state_dict()) == ["weight"]
    assert isinstance(crit.weight, jax.Array)
    crit.load_state_dict({"weight": np.array([3.0, 2.0, 1.0], np.float32)})
    np.testing.assert_array_equal(crit.weight, [3.0, 2.0, 1.0])
    leaves = jax.tree_util.tree_leaves(nn.MultiLabelSoftMarginLoss(weight=np.ones(3, np.float32)))
    assert len(leaves) == 1


@pytest.mark.parametrize(
    ("make", "exc"),
    [
        (lambda lib: lib.MultiMarginLoss(p=3), ValueError),
        (lambda lib: lib.MultiMarginLoss(weight=torch.ones(2, 2)), ValueError),
        (lambda lib: lib.TripletMarginLoss(margin=-1.0), ValueError),
        (lambda lib: lib.TripletMarginWithDistanceLoss(margin=0.0), ValueError),
        (lambda lib: lib.HuberLoss(delta="1"), TypeError),
    ],
)
def test_construction_errors_match_torch(make, exc):
    with pytest.raises(exc) as theirs:
        make(torch.nn)
    with pytest.raises(exc) as ours:
        make(nn)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", ["KLDivLoss", "SmoothL1Loss", "SoftMarginLoss", "MultiMarginLoss", "PoissonNLLLoss", "TripletMarginLoss"])  # fmt: skip
def test_legacy_size_average_and_reduce(name):
    for size_average, reduce in ((False, None), (None, False), (True, True)):
        with pytest.warns(UserWarning) as ours:
            crit = getattr(nn, name)(size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning) as theirs:
            ref = getattr(torch.nn, name)(size_average=size_average, reduce=reduce)
        assert crit.reduction == ref.reduction
        assert str(ours[0].message) == str(theirs[0].message)


def test_bad_reduction_fails_at_call_like_torch():
    x = _a(2, 4)
    crit = nn.SmoothL1Loss(reduction="avg")  # not validated at construction, as in torch
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        crit(x, x)
    with pytest.raises(ValueError, match="avg is not valid"):
        nn.GaussianNLLLoss(reduction="avg")(x, x, x)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        nn.CTCLoss(reduction="avg")(np.zeros((3, 1, 4), np.float32), _i(1, 1), [3], [1])


def test_jitted_train_step_through_new_losses():
    """jit + grad through a model and several of the new losses, against torch's SGD step."""
    rng = np.random.default_rng(12)
    x, y = _r(rng, 6, 4), np.array([0, 3, 1, 2, 2, 1])
    model, ref = nn.Linear(4, 4), torch.nn.Linear(4, 4)
    model.load_state_dict(ref.state_dict())
    crits = [nn.MultiMarginLoss(), nn.SmoothL1Loss(beta=0.5), nn.KLDivLoss(reduction="batchmean")]
    refs = [
        torch.nn.MultiMarginLoss(),
        torch.nn.SmoothL1Loss(beta=0.5),
        torch.nn.KLDivLoss(reduction="batchmean"),
    ]
    onehot = np.eye(4, dtype=np.float32)[y]

    def total(m, crits):
        out = m(x)
        return (
            crits[0](out, y) + crits[1](out, onehot) + crits[2](jax.nn.log_softmax(out, -1), onehot)
        )

    loss, grads = jax.jit(fparam.value_and_grad(total))(model, crits)
    out = ref(torch.tensor(x))
    want = refs[0](out, _t(y)) + refs[1](out, _t(onehot)) + refs[2](out.log_softmax(-1), _t(onehot))
    want.backward()
    np.testing.assert_allclose(loss, want.item(), **VAL)
    np.testing.assert_allclose(grads.weight, ref.weight.grad.numpy(), **GRAD)
    np.testing.assert_allclose(grads.bias, ref.bias.grad.numpy(), **GRAD)


def test_every_family_under_one_jit_and_grad():
    """The embedding, triplet, likelihood and remaining margin/regression losses, differentiated
    together under one ``jax.jit(jax.grad(...))``, against torch autograd."""
    rng = np.random.default_rng(13)
    a, b, c = _r(rng, 4, 5), _r(rng, 4, 5), _r(rng, 4, 5)
    sign, labels = (
        _sign(rng, 4),
        np.array([[1, 3, -1, 0, 0], [0, -1, 2, 2, 2], [4, 3, 2, 1, 0], [-1, 0, 0, 0, 0]]),
    )
    var = rng.uniform(0.1, 1, (4, 1)).astype(np.float32)

    pm, b01 = _sign(rng, 4, 5), (b > 0).astype(np.float32)

    def total(lib, a, b, c, sign, labels, var, counts, pm, b01):
        return (
            lib.triplet_margin_loss(a, b, c, 1.5, 2, 1e-6, True)
            + lib.triplet_margin_with_distance_loss(a, b, c, margin=0.5)
            + lib.cosine_embedding_loss(a, b, sign, 0.1)
            + lib.hinge_embedding_loss(a, pm, 0.5)
            + lib.margin_ranking_loss(a, b, pm, 0.2)
            + lib.soft_margin_loss(a, pm)
            + lib.multilabel_soft_margin_loss(a, b01)
            + lib.multilabel_margin_loss(a, labels)
            + lib.huber_loss(a, b, delta=0.5)
            + lib.poisson_nll_loss(a, counts, full=True)
            + lib.gaussian_nll_loss(a, b, var, full=True)
        )

    counts = np.abs(3 * c)
    grads = jax.jit(jax.grad(partial(total, F), argnums=(0, 1, 2)))(
        a, b, c, sign, labels, var, counts, pm, b01
    )
    ta, tb, tc = (_t(x).requires_grad_(True) for x in (a, b, c))
    total(TF, ta, tb, tc, _t(sign), _t(labels), _t(var), _t(counts), _t(pm), _t(b01)).backward()
    for got, want in zip(grads, (ta, tb, tc)):
        np.testing.assert_allclose(got, want.grad.numpy(), **GRAD)
