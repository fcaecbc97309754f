"""Dropout layers and functionals against torch 2.13.

Masks cannot match torch's bit for bit (different generators), so they are compared through
what torch defines: the kept fraction (within a binomial bound for a fixed key), the values a
kept or dropped element takes (read off torch's own output), the shape of the mask (element-
or channel-wise), eval-mode identity, torch's rank rules, warnings and errors. Keys: the same key
gives the same mask, different keys different masks, ``jax.vmap`` over keys independent ones.
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
from fparam import nn
from fparam.nn import functional as F

KEY = jax.random.key(0)


def _np(x):
    return np.asarray(x)


def _binomial_ok(kept: int, n: int, q: float) -> bool:
    """Kept count within 5 standard deviations of ``n * q`` (false failure rate < 1e-6)."""
    return abs(kept - n * q) <= 5 * math.sqrt(n * q * (1 - q)) + 1


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics_and_scaling(p):
    x = np.ones((100, 60), np.float32)
    y = _np(jax.jit(lambda x, k: F.dropout(x, p, key=k))(x, KEY))
    kept = y != 0
    assert _binomial_ok(int(kept.sum()), x.size, 1 - p)
    # The scale of a kept value is torch's, to the last bit.
    ty = torch.nn.functional.dropout(torch.tensor(x), p).numpy()
    assert set(np.unique(y[kept])) == set(np.unique(ty[ty != 0]))
    # Gradient: the mask scaled, like torch's.
    g = jax.grad(lambda x: jnp.sum(F.dropout(x, p, key=KEY)))(jnp.asarray(x))
    np.testing.assert_array_equal(_np(g), y)


def test_keys_determinism_and_vmap():
    x = jnp.ones((8, 16))
    f = jax.jit(lambda k: F.dropout(x, 0.5, key=k))
    a, b = f(KEY), f(KEY)
    np.testing.assert_array_equal(_np(a), _np(b))
    c = f(jax.random.key(1))
    assert not np.array_equal(_np(a), _np(c))
    keys = jax.random.split(KEY, 6)
    stacked = _np(jax.vmap(f)(keys))
    for i in range(6):
        np.testing.assert_array_equal(stacked[i], _np(f(keys[i])))
    assert len({m.tobytes() for m in stacked}) == 6  # independent masks
    legacy = _np(F.dropout(x, 0.5, key=jax.random.PRNGKey(0)))  # old-style keys too
    assert set(np.unique(legacy)) <= {0.0, 2.0}


def test_module_eager_draws_from_the_default_stream():
    x = jnp.ones((20, 20))
    drop = nn.Dropout(0.3)
    fparam.manual_seed(5)
    a = _np(drop(x))
    b = _np(drop(x))
    fparam.manual_seed(5)
    np.testing.assert_array_equal(_np(drop(x)), a)
    assert not np.array_equal(a, b)
    # A key in scope wins over the stream, and gives the same mask eagerly and under jit.
    with fparam.rng(KEY):
        eager = _np(drop(x))

    def traced(m, x, k):
        with fparam.rng(k):
            return m(x)

    np.testing.assert_array_equal(eager, _np(jax.jit(traced)(drop, x, KEY)))
    np.testing.assert_array_equal(eager, _np(F.dropout(x, 0.3, key=jax.random.fold_in(KEY, 0))))
    # Inside jit with no key in scope: an error, never one mask compiled into every call.
    with pytest.raises(fparam.RandomnessError, match="Dropout"):
        jax.jit(lambda m, x: m(x))(drop, x)


@pytest.mark.parametrize(
    "cls", ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]
)
def test_modules_repr_state_eval_identity_and_p_check(cls):
    m, t = getattr(nn, cls)(0.2, True), getattr(torch.nn, cls)(0.2, True)
    assert repr(m) == repr(t)
    assert repr(getattr(nn, cls)()) == repr(getattr(torch.nn, cls)())
    assert m.state_dict() == {} and list(t.state_dict()) == []
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 2)).astype(np.float32)
    m.eval()
    if cls == "Dropout1d":
        x = x[0, 0]
    elif cls == "Dropout2d":
        x = x[..., 0]
    # Eval mode draws no key: it works under jit with none in scope.
    np.testing.assert_array_equal(_np(jax.jit(lambda m, x: m(x))(m, x)), x)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError) as theirs:
            getattr(torch.nn, cls)(p)
        with pytest.raises(
            ValueError, match=f"dropout probability has to be between 0 and 1, but got {p}"
        ):
            getattr(nn, cls)(p)
        assert str(theirs.value) == f"dropout probability has to be between 0 and 1, but got {p}"


@pytest.mark.parametrize(
    "name",
    ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"],
)
def test_functional_p_check_identity_and_extremes(name):
    ours, theirs = getattr(F, name), getattr(torch.nn.functional, name)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    x3 = x[0]
    shape_x = x3 if name == "dropout1d" else x
    for p in (-0.5, 1.01):
        with pytest.raises(ValueError) as their_error:
            theirs(torch.tensor(shape_x), p, True)
        with pytest.raises(ValueError) as our_error:
            ours(shape_x, p, True)
        assert str(our_error.value) == str(their_error.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout3d's rank warning for a 4-D input, as torch
        np.testing.assert_array_equal(_np(ours(shape_x, 0.5, False)), shape_x)
        np.testing.assert_array_equal(_np(ours(shape_x, 0.0, True)), shape_x)
        y1 = _np(ours(shape_x, 1.0, True))
        ty1 = theirs(torch.tensor(shape_x), 1.0, True).numpy()
    np.testing.assert_array_equal(y1, ty1)  # all zeros, as torch


def test_p_one_keeps_nan_like_torch():
    x = np.float32([np.nan, 1.0, -np.inf])
    np.testing.assert_array_equal(
        _np(F.dropout(x, 1.0)), torch.nn.functional.dropout(torch.tensor(x), 1.0).numpy()
    )


def _channels_all_or_nothing(y, batch_axes):
    """Per (sample, channel): all zero or all kept. Returns the kept flags."""
    flat = y.reshape(*y.shape[:batch_axes], -1)
    kept = (flat != 0).all(-1)
    dropped = (flat == 0).all(-1)
    assert (kept | dropped).all()
    return kept


@pytest.mark.parametrize(
    ("name", "shape", "channel_axes"),
    [
        ("dropout1d", (40, 30, 3), 2),
        ("dropout1d", (30, 3), 1),  # unbatched (C, L)
        ("dropout2d", (40, 30, 2, 2), 2),
        ("dropout3d", (20, 30, 2, 1, 2), 2),
        ("dropout3d", (30, 2, 1, 2), 1),  # unbatched (C, D, H, W)
    ],
)
def test_channelwise_masks(name, shape, channel_axes):
    p = 0.4
    x = np.ones(shape, np.float32)
    y = _np(getattr(F, name)(x, p, key=KEY))
    kept = _channels_all_or_nothing(y, channel_axes)
    assert _binomial_ok(int(kept.sum()), kept.size, 1 - p)
    assert set(np.unique(y)) == {0.0, np.float32(1) / np.float32(1 - p)}
    m = getattr(nn, name.capitalize())(p)  # Dropout1d, ...
    with fparam.rng(KEY):
        from_module = _np(m(x))
    np.testing.assert_array_equal(
        from_module, _np(getattr(F, name)(x, p, key=jax.random.fold_in(KEY, 0)))
    )


def test_dropout_rank_rules_and_warnings_as_torch():
    tf = torch.nn.functional
    for shape in [(3,), (2, 3, 4, 5)]:
        x = np.ones(shape, np.float32)
        with pytest.raises(RuntimeError) as theirs:
            tf.dropout1d(torch.tensor(x), 0.5)
        with pytest.raises(RuntimeError) as ours:
            F.dropout1d(x, 0.5, key=KEY)
        assert str(ours.value) == str(theirs.value)
    x3 = np.ones((2, 3, 4), np.float32)
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        y = _np(F.dropout2d(x3, 0.5, key=KEY))
    _channels_all_or_nothing(y, 2)  # read as (N, C, L)
    for shape in [(2, 3), (3,)]:
        with warnings.catch_warnings(record=True) as theirs_w:
            warnings.simplefilter("always")
            try:
                tf.dropout2d(torch.ones(shape), 0.5)
                their_error = None
            except RuntimeError as e:
                their_error = e
        with warnings.catch_warnings(record=True) as ours_w:
            warnings.simplefilter("always")
            try:
                F.dropout2d(np.ones(shape, np.float32), 0.5, key=KEY)
                our_error = None
            except RuntimeError as e:
                our_error = e
        assert [str(w.message) for w in ours_w] == [str(w.message) for w in theirs_w]
        assert (our_error is None) == (their_error is None)
        if our_error is not None:
            assert str(our_error) == str(their_error)
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout3d"):
        y = _np(F.dropout3d(np.ones((30, 3), np.float32), 0.5, key=KEY))
    _channels_all_or_nothing(y[None], 2)  # unbatched: one draw per row
    with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
        F.feature_alpha_dropout(np.ones(3, np.float32), 0.5, True, key=KEY)
    with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
        tf.feature_alpha_dropout(torch.ones(3), 0.5, True)


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_alpha_dropout_values_and_statistics_as_torch(p):
    tf = torch.nn.functional
    # torch's two affine maps, read off its output: kept(x) = a x + c, dropped = d (< 0 < c).
    zeros = tf.alpha_dropout(torch.zeros(4000), p, True).numpy()
    ones = tf.alpha_dropout(torch.ones(4000), p, True).numpy()
    c, d = float(zeros.max()), float(zeros.min())
    a = float(ones.max()) - c
    x = np.random.default_rng(2).standard_normal((200, 100)).astype(np.float32)
    y = _np(F.alpha_dropout(x, p, True, key=KEY))
    dropped = np.isclose(y, d, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + c, rtol=1e-5, atol=1e-5)
    assert _binomial_ok(int((~dropped).sum()), x.size, 1 - p)
    # Self-normalising: zero mean and unit variance are kept (N(0, 1) in, 20000 values).
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05
    # Feature variant: one draw per (sample, channel), the same two values.
    yf = _np(F.feature_alpha_dropout(np.zeros((50, 40, 3), np.float32), p, True, key=KEY))
    rows = np.unique(yf.reshape(50 * 40, 3), axis=0)
    assert rows.shape[0] == 2 and (rows[:, :1] == rows).all()
    np.testing.assert_allclose(np.sort(rows[:, 0]), [d, c], rtol=1e-6)


def test_alpha_modules_delegate():
    p = 0.3
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    first = jax.random.fold_in(KEY, 0)  # the first draw in a `fparam.rng(KEY)` block
    m = nn.AlphaDropout(p)
    with fparam.rng(KEY):
        out = _np(m(x))
    np.testing.assert_array_equal(out, _np(F.alpha_dropout(x, p, True, key=first)))
    f = nn.FeatureAlphaDropout(p)
    with fparam.rng(KEY):
        out = _np(f(x))
    np.testing.assert_array_equal(out, _np(F.feature_alpha_dropout(x, p, True, key=first)))
    np.testing.assert_array_equal(_np(m.eval()(x)), x)
    # torch's functional defaults: training=False for the alpha variants (identity).
    np.testing.assert_array_equal(_np(F.alpha_dropout(x, p)), x)
    np.testing.assert_array_equal(_np(F.feature_alpha_dropout(x, p)), x)


def test_dropout_in_a_model_under_value_and_grad_with_key():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    drop = nn.Dropout(0.5)
    x = jnp.ones((3, 4))

    @jax.jit
    def loss_and_grad(model, key):
        with fparam.rng(key):
            return fparam.value_and_grad(lambda m: jnp.sum(drop(m(x))))(model)

    (l1, g1), (l2, g2) = loss_and_grad(model, KEY), loss_and_grad(model, KEY)
    assert float(l1) == float(l2)
    np.testing.assert_array_equal(_np(g1[0].weight), _np(g2[0].weight))
    l3, _ = loss_and_grad(model, jax.random.key(7))
    assert float(l3) != float(l1)
