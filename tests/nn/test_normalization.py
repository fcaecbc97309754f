"""Normalisation layers against torch 2.13: outputs, gradients, running statistics, state dicts,
reprs, errors, and the buffer-update rules under JAX transformations.

Every layer runs over 12-16 configurations drawn from its option grid by a fixed-seed RNG. Each
configuration: torch's weights (randomised) and running statistics load into the fparam twin
as a torch ``state_dict`` (int64 ``num_batches_tracked`` included); three training-mode steps
compare outputs, input and parameter gradients; the running statistics are then compared, two
more eager training-mode calls are compared, eval-mode outputs and gradients are compared, and
fparam's ``state_dict`` loads back into torch.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim
from fparam._state import BufferUpdateError
from fparam.nn import functional as F

# Largest absolute errors measured over the grids below (jax CPU vs torch 2.13 CPU, float32):
# outputs and gradients 3.3e-6 (values up to ~10), running statistics 2.4e-7; one outlier, the
# input gradient of a BatchNorm1d over a (2, C) batch, 1.1e-5: with two values per channel that
# gradient is pure cancellation in both libraries. Tolerances: about 2x the outlier.
TOL = {"rtol": 1e-5, "atol": 2e-5}


def _np(x):
    return np.asarray(x)


@jax.jit
def _train_step(m, x, cot):
    """Output, module-shaped and input gradients, and the module with its new buffers."""

    def loss(m, x):
        y = m(x)
        return jnp.sum(y * cot), y

    (_, y), (g_m, g_x) = fparam.value_and_grad(loss, argnums=(0, 1), has_aux=True)(m, x)
    return m, y, g_m, g_x


def _torch_step(t, x, cot):
    t.zero_grad()
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    ty.backward(torch.tensor(cot))
    return ty.detach().numpy(), tx.grad.numpy()


def _compare_step(t, m, x, cot):
    m, y, g_m, g_x = _train_step(m, x, cot)
    ty, tgx = _torch_step(t, x, cot)
    np.testing.assert_allclose(_np(y), ty, **TOL)
    np.testing.assert_allclose(_np(g_x), tgx, **TOL)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(_np(getattr(g_m, name)), p.grad.numpy(), **TOL, err_msg=name)
    return m


def _compare_state(t, m):
    sd = m.state_dict()
    tsd = t.state_dict()
    assert list(sd) == list(tsd)
    for k, v in tsd.items():
        np.testing.assert_allclose(_np(sd[k]), v.numpy(), **TOL, err_msg=k)


def _randomise(t, rng):
    """Random affine parameters and running statistics, so that loading them matters."""
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
        if getattr(t, "running_mean", None) is not None:
            t.running_mean.copy_(torch.tensor(rng.standard_normal(t.running_mean.shape)))
            t.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, t.running_var.shape)))
            t.num_batches_tracked.fill_(int(rng.integers(0, 5)))


def _parity(cls_name, args, opts, shape, seed, train_steps=3, scale=1.0):
    """The full comparison of one configuration (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = getattr(torch.nn, cls_name)(*args, **opts)
    m = getattr(nn, cls_name)(*args, **opts)
    assert repr(m) == repr(t)
    _randomise(t, rng)
    result = m.load_state_dict(t.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    _compare_state(t, m)

    def draw():
        x = (rng.standard_normal(shape) * scale + rng.standard_normal()).astype(np.float32)
        return x, rng.standard_normal(shape).astype(np.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InstanceNorm's channel-count warning, on both sides
        for _ in range(train_steps):
            m = _compare_step(t, m, *draw())
        _compare_state(t, m)
        # Eager training-mode calls update in place (checked on a quarter of the stateful
        # configurations: each new shape compiles every eager op, ~3 s of CPU).
        eager = any(True for _ in m.buffers()) and seed % 4 == 0
        for _ in range(2 if eager else 0):
            x, _ = draw()
            y = m(x)
            with torch.no_grad():
                ty = t(torch.tensor(x))
            np.testing.assert_allclose(_np(y), ty.numpy(), **TOL)
        _compare_state(t, m)
        t.eval()
        m.eval()
        _compare_step(t, m, *draw())
        _compare_state(t, m)
    # fparam's state dict loads into torch (the int32 count into torch's int64 included).
    back = getattr(torch.nn, cls_name)(*args, **opts)
    sd = m.state_dict()
    back.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    for k, v in back.state_dict().items():
        assert v.dtype == t.state_dict()[k].dtype
        np.testing.assert_array_equal(v.numpy(), _np(sd[k]), err_msg=k)


def _sample(grid_fn, n, seed):
    rng = np.random.default_rng(seed)
    return [(i, *grid_fn(rng)) for i in range(n)]


def _norm_options(rng, affine_p, track_p):
    return dict(
        eps=float(rng.choice([1e-5, 1e-3])),
        momentum=[0.1, 0.3, None][int(rng.integers(0, 3))],
        affine=bool(rng.random() < affine_p),
        track_running_stats=bool(rng.random() < track_p),
        bias=bool(rng.random() < 0.8),
    )


def _bn_config(rng):
    d = int(rng.integers(1, 4))
    c = int(rng.integers(2, 5))
    n = int(rng.integers(2, 4))
    if d == 1:
        spatial = () if rng.random() < 0.5 else (int(rng.integers(1, 5)),)
    else:
        spatial = tuple(int(rng.integers(1, 4)) for _ in range(d))
    return f"BatchNorm{d}d", c, (n, c, *spatial), _norm_options(rng, 0.7, 0.7)


@pytest.mark.parametrize(("seed", "name", "c", "shape", "opts"), _sample(_bn_config, 16, 10))
def test_batch_norm_matches_torch(seed, name, c, shape, opts):
    _parity(name, (c,), opts, shape, seed)


def _in_config(rng):
    d = int(rng.integers(1, 4))
    c = int(rng.integers(2, 5))
    spatial = tuple(int(rng.integers(2, 4)) for _ in range(d))
    batched = rng.random() < 0.75
    shape = (int(rng.integers(1, 4)), c, *spatial) if batched else (c, *spatial)
    return f"InstanceNorm{d}d", c, shape, _norm_options(rng, 0.5, 0.5)


@pytest.mark.parametrize(("seed", "name", "c", "shape", "opts"), _sample(_in_config, 16, 11))
def test_instance_norm_matches_torch(seed, name, c, shape, opts):
    # momentum=None: torch's InstanceNorm passes 0.0, the running statistics never move.
    _parity(name, (c,), opts, shape, seed)


def _gn_config(rng):
    groups = int(rng.integers(1, 4))
    c = groups * int(rng.integers(1, 3))
    # At least 3 values per group: the input gradient of a 1- or 2-value group is pure
    # cancellation noise (torch's own is ~1e-4 off the exact value there).
    spatial = tuple(int(rng.integers(3, 5)) for _ in range(int(rng.integers(1, 3))))
    shape = (int(rng.integers(1, 4)), c, *spatial)
    opts = dict(
        eps=float(rng.choice([1e-5, 1e-3])),
        affine=bool(rng.random() < 0.7),
        bias=bool(rng.random() < 0.8),
    )
    return (groups, c), shape, opts


@pytest.mark.parametrize(("seed", "args", "shape", "opts"), _sample(_gn_config, 12, 12))
def test_group_norm_matches_torch(seed, args, shape, opts):
    _parity("GroupNorm", args, opts, shape, seed, train_steps=1)


def _ln_config(rng):
    lead = tuple(int(rng.integers(1, 4)) for _ in range(int(rng.integers(0, 3))))
    norm = tuple(int(rng.integers(2, 5)) for _ in range(int(rng.integers(1, 3))))
    arg = norm[0] if len(norm) == 1 and rng.random() < 0.5 else list(norm)
    opts = dict(
        eps=float(rng.choice([1e-5, 1e-3])),
        elementwise_affine=bool(rng.random() < 0.7),
        bias=bool(rng.random() < 0.8),
    )
    return (arg,), (*lead, *norm), opts


@pytest.mark.parametrize(("seed", "args", "shape", "opts"), _sample(_ln_config, 12, 13))
def test_layer_norm_matches_torch(seed, args, shape, opts):
    _parity("LayerNorm", args, opts, shape, seed, train_steps=1)


def _rms_config(rng):
    args, shape, opts = _ln_config(rng)
    del opts["bias"]
    opts["eps"] = [None, 1e-5, 1e-3][int(rng.integers(0, 3))]
    return args, shape, opts


@pytest.mark.parametrize(("seed", "args", "shape", "opts"), _sample(_rms_config, 12, 14))
def test_rms_norm_matches_torch(seed, args, shape, opts):
    _parity("RMSNorm", args, opts, shape, seed, train_steps=1)


def _lrn_config(rng):
    c = int(rng.integers(1, 6))
    spatial = tuple(int(rng.integers(1, 4)) for _ in range(int(rng.integers(1, 4))))
    opts = dict(
        alpha=float(rng.choice([1e-4, 0.1, 1.0])),
        beta=float(rng.choice([0.75, 0.5, 1.3])),
        k=float(rng.choice([1.0, 2.0])),
    )
    return (int(rng.integers(1, 5)),), (int(rng.integers(1, 3)), c, *spatial), opts


@pytest.mark.parametrize(("seed", "args", "shape", "opts"), _sample(_lrn_config, 12, 15))
def test_local_response_norm_matches_torch(seed, args, shape, opts):
    _parity("LocalResponseNorm", args, opts, shape, seed, train_steps=1, scale=3.0)


# --- The jitted train step: running statistics travel out through fparam.value_and_grad ---------


def _twin_cnn():
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.0),  # the model; p=0 so that torch's mask is known
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 5 * 5, 3),
    )
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.0),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )
    m.load_state_dict(t.state_dict())
    return t, m


def test_jitted_train_step_carries_running_stats_like_torch():
    t, m = _twin_cnn()
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)

    @jax.jit
    def train_step(m, opt, x, y):
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(m)
        m, opt = opt.step(m, grads)
        return m, opt, loss

    rng = np.random.default_rng(0)
    for _ in range(6):
        x = rng.standard_normal((8, 1, 5, 5)).astype(np.float32) * 2 + 0.5
        y = rng.integers(0, 3, 8)
        m, opt, loss = train_step(m, opt, x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(t(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    assert int(m[1].num_batches_tracked) == 6
    sd = m.state_dict()
    for k, v in t.state_dict().items():
        np.testing.assert_allclose(_np(sd[k]), v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    m.eval()
    t.eval()
    x = rng.standard_normal((4, 1, 5, 5)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            _np(jax.jit(lambda m, x: m(x))(m, x)), t(torch.tensor(x)).numpy(), **TOL
        )


def test_stateful_recalibration_under_jit_matches_torch():
    t, m = _twin_cnn()

    @jax.jit
    def recalibrate(m, x):
        fparam.stateful(lambda m: m(x))(m)
        return m

    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
        m = recalibrate(m, x)
        with torch.no_grad():
            t(torch.tensor(x))
    _compare_state(t[1], m[1])
    assert int(m[1].num_batches_tracked) == 3


# --- Lost updates raise --------------------------------------------------------------------------


def test_train_mode_forward_directly_under_jit_raises():
    bn = nn.BatchNorm2d(3)
    x = np.ones((2, 3, 2, 2), np.float32)
    before = {k: _np(v) for k, v in bn.state_dict().items()}
    with pytest.raises(BufferUpdateError, match=r"BatchNorm2d.*fparam\.stateful"):
        jax.jit(lambda m, x: m(x))(bn, x)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(_np(v), before[k])
    # What does not change buffers runs: eval mode, and a layer that tracks no statistics.
    bn.eval()
    jax.jit(lambda m, x: m(x))(bn, x)
    untracked = nn.BatchNorm2d(3, track_running_stats=False)
    y = jax.jit(lambda m, x: m(x))(untracked, x)
    ty = torch.nn.BatchNorm2d(3, track_running_stats=False)(torch.tensor(x))
    np.testing.assert_allclose(_np(y), ty.detach().numpy(), **TOL)


def test_train_mode_forward_under_jax_grad_raises():
    bn = nn.BatchNorm1d(3)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    # Differentiating the input: the module is a trace copy, the update would be lost.
    with pytest.raises(BufferUpdateError, match=r"BatchNorm1d.*fparam\.value_and_grad"):
        jax.grad(lambda x, m: jnp.sum(m(x) ** 2))(x, bn)
    # Differentiating the module: JAX refuses the integer num_batches_tracked leaf first (its
    # own TypeError names allow_int); with allow_int=True the forward raises ours.
    with pytest.raises(TypeError, match="int"):
        jax.grad(lambda m: jnp.sum(m(x) ** 2))(bn)
    with pytest.raises(BufferUpdateError, match="BatchNorm1d"):
        jax.grad(lambda m: jnp.sum(m(x) ** 2), allow_int=True)(bn)
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_array_equal(_np(bn.running_mean), np.zeros(3, np.float32))


def test_instance_norm_tracking_under_jit_raises_and_value_and_grad_carries():
    m = nn.InstanceNorm1d(2, track_running_stats=True)
    t = torch.nn.InstanceNorm1d(2, track_running_stats=True)
    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    with pytest.raises(BufferUpdateError, match="InstanceNorm1d"):
        jax.jit(lambda m, x: m(x))(m, x)
    m, _, _, _ = _train_step(m, x, np.ones_like(x))
    t(torch.tensor(x))
    _compare_state(t, m)


# --- Functional forms ----------------------------------------------------------------------------


def test_batch_norm_stats_cumulative_average_and_eval():
    rng = np.random.default_rng(3)
    t = torch.nn.BatchNorm1d(3, momentum=None)
    m = nn.BatchNorm1d(3, momentum=None)
    for _ in range(4):
        x = rng.standard_normal((5, 3)).astype(np.float32) * 3
        m(x)
        t(torch.tensor(x))
    _compare_state(t, m)
    assert m.num_batches_tracked.dtype == jax.dtypes.canonicalize_dtype(jnp.int64)
    # The functional form: pure, eval mode with running estimates.
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    rm, rv = np.float32([0.5, -1, 2]), np.float32([1, 2, 0.5])
    w, b = np.float32([1, 2, 3]), np.float32([0, 1, -1])
    y = F.batch_norm(x, rm, rv, w, b, training=False)
    ty = torch.nn.functional.batch_norm(*map(torch.tensor, (x, rm, rv, w, b)), training=False)
    np.testing.assert_allclose(_np(y), ty.numpy(), **TOL)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.3)
    y, new_mean, new_var = F.batch_norm_stats(x, rm, rv, training=True, momentum=0.3)
    np.testing.assert_allclose(_np(y), ty.numpy(), **TOL)
    np.testing.assert_allclose(_np(new_mean), trm.numpy(), **TOL)
    np.testing.assert_allclose(_np(new_var), trv.numpy(), **TOL)
    np.testing.assert_array_equal(rm, np.float32([0.5, -1, 2]))  # the inputs are untouched


def test_functionals_match_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    tf = torch.nn.functional
    tx, tw, tb = torch.tensor(x), torch.tensor(w), torch.tensor(b)
    cases = [
        (F.instance_norm(x, weight=w, bias=b), tf.instance_norm(tx, weight=tw, bias=tb)),
        (F.group_norm(x, 2, w, b, 1e-3), tf.group_norm(tx, 2, tw, tb, 1e-3)),
        (F.layer_norm(x, (4, 3)), tf.layer_norm(tx, (4, 3))),
        (F.layer_norm(x, 3, eps=0.1), tf.layer_norm(tx, (3,), eps=0.1)),
        (F.rms_norm(x, [3]), tf.rms_norm(tx, [3])),
        (F.local_response_norm(x, 3, 0.5), tf.local_response_norm(tx, 3, 0.5)),
    ]
    for ours, theirs in cases:
        np.testing.assert_allclose(_np(ours), theirs.numpy(), **TOL)


# --- Construction, resets, interop ---------------------------------------------------------------


def test_reset_parameters_and_running_stats():
    m = nn.BatchNorm1d(3)
    x = np.float32([[1, 2, 3], [4, 6, 9]])
    m(x)
    m.load_state_dict(
        {"weight": np.float32([2, 2, 2]), "bias": np.float32([1, 1, 1])}, strict=False
    )
    assert int(m.num_batches_tracked) == 1
    m.reset_running_stats()
    np.testing.assert_array_equal(_np(m.running_mean), np.zeros(3))
    np.testing.assert_array_equal(_np(m.running_var), np.ones(3))
    assert int(m.num_batches_tracked) == 0
    np.testing.assert_array_equal(_np(m.weight), np.full(3, 2))  # not a parameter reset
    m(x)
    m.reset_parameters()
    t = torch.nn.BatchNorm1d(3)
    _compare_state(t, m)
    for cls, args in [("LayerNorm", ([2, 3],)), ("GroupNorm", (2, 4)), ("RMSNorm", (5,))]:
        m = getattr(nn, cls)(*args)
        m.load_state_dict({k: np.full(v.shape, 7, np.float32) for k, v in m.state_dict().items()})
        m.reset_parameters()
        _compare_state(getattr(torch.nn, cls)(*args), m)


def test_construction_dtype_device_and_none_registrations():
    m = nn.BatchNorm2d(3, dtype=jnp.float16, device=jax.devices("cpu")[0])
    assert m.weight.dtype == m.running_mean.dtype == jnp.float16
    assert m.running_var.devices() == {jax.devices("cpu")[0]}
    m = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    t = torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert m.weight is None and m.bias is None and m.running_mean is None
    assert m.num_batches_tracked is None
    assert list(m.state_dict()) == list(t.state_dict()) == []
    assert list(nn.InstanceNorm3d(2).state_dict()) == []
    assert list(nn.LayerNorm(3, bias=False).state_dict()) == ["weight"]
    assert list(nn.RMSNorm(3, elementwise_affine=False).state_dict()) == []
    assert nn.LayerNorm(np.int64(3)).normalized_shape == (3,)


def test_from_torch_builds_norm_twins():
    t = torch.nn.Sequential(
        torch.nn.BatchNorm1d(4, momentum=None),
        torch.nn.LayerNorm(4, bias=False),
        torch.nn.GroupNorm(2, 4, affine=False),
        torch.nn.RMSNorm([4], eps=1e-3),
        torch.nn.Dropout(0.0),
    )
    t2 = torch.nn.Sequential(
        torch.nn.InstanceNorm1d(4, affine=True, track_running_stats=True),
        torch.nn.LocalResponseNorm(2),
        torch.nn.Dropout1d(0.0),
        torch.nn.AlphaDropout(0.0),
        torch.nn.FeatureAlphaDropout(0.0),
    )
    with torch.no_grad():
        t(torch.randn(5, 4))
        t2(torch.randn(3, 4, 5))
    for tm, shape in ((t, (5, 4)), (t2.eval(), (3, 4, 5))):
        m = fparam.from_torch(tm)
        assert repr(m) == repr(tm)
        _compare_state(tm, m)
        x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(_np(m(x)), tm(torch.tensor(x)).numpy(), **TOL)
        assert m.training == tm.training


# --- Bad inputs: torch's exception types and messages, the module unchanged ----------------------

_BAD = [
    # (name, fparam module factory, torch module factory, input shape, training, match)
    (
        "bn1d rank",
        lambda: nn.BatchNorm1d(3),
        lambda: torch.nn.BatchNorm1d(3),
        (2, 3, 4, 5),
        True,
        r"expected 2D or 3D input \(got 4D input\)",
    ),
    (
        "bn2d rank",
        lambda: nn.BatchNorm2d(3),
        lambda: torch.nn.BatchNorm2d(3),
        (2, 3, 4),
        True,
        r"expected 4D input \(got 3D input\)",
    ),
    (
        "bn3d rank",
        lambda: nn.BatchNorm3d(3),
        lambda: torch.nn.BatchNorm3d(3),
        (2, 3, 4),
        False,
        r"expected 5D input \(got 3D input\)",
    ),
    (
        "bn channels",
        lambda: nn.BatchNorm1d(3),
        lambda: torch.nn.BatchNorm1d(3),
        (2, 4),
        True,
        "running_mean should contain 4 elements not 3",
    ),
    (
        "bn channels eval",
        lambda: nn.BatchNorm1d(3).eval(),
        lambda: torch.nn.BatchNorm1d(3).eval(),
        (2, 4),
        False,
        "running_mean should contain 4 elements not 3",
    ),
    (
        "bn weight",
        lambda: nn.BatchNorm1d(3, track_running_stats=False),
        lambda: torch.nn.BatchNorm1d(3, track_running_stats=False),
        (2, 4),
        True,
        "weight should contain 4 elements not 3",
    ),
    (
        "bn batch of one",
        lambda: nn.BatchNorm1d(3),
        lambda: torch.nn.BatchNorm1d(3),
        (1, 3),
        True,
        r"Expected more than 1 value per channel when training, got input size torch.Size\(\[1, 3\]\)",
    ),
    (
        "bn2d batch of one",
        lambda: nn.BatchNorm2d(3),
        lambda: torch.nn.BatchNorm2d(3),
        (1, 3, 1, 1),
        True,
        "Expected more than 1 value per channel when training",
    ),
    (
        "in rank",
        lambda: nn.InstanceNorm2d(3),
        lambda: torch.nn.InstanceNorm2d(3),
        (2, 3),
        True,
        r"expected 3D or 4D input \(got 2D input\)",
    ),
    (
        "in affine channels",
        lambda: nn.InstanceNorm1d(3, affine=True),
        lambda: torch.nn.InstanceNorm1d(3, affine=True),
        (2, 4, 5),
        True,
        r"expected input's size at dim=1 to match num_features \(3\), but got: 4",
    ),
    (
        "in spatial of one",
        lambda: nn.InstanceNorm1d(3),
        lambda: torch.nn.InstanceNorm1d(3),
        (2, 3, 1),
        True,
        "Expected more than 1 spatial element when training",
    ),
    (
        "in tracked channels",
        lambda: nn.InstanceNorm1d(3, track_running_stats=True),
        lambda: torch.nn.InstanceNorm1d(3, track_running_stats=True),
        (2, 4, 5),
        True,
        "running_mean should contain 8 elements not 6",
    ),
    (
        "gn channels",
        lambda: nn.GroupNorm(2, 4),
        lambda: torch.nn.GroupNorm(2, 4),
        (2, 3, 5),
        True,
        r"divisible by num_groups, but got input of shape \[2, 3, 5\] and num_groups=2",
    ),
    (
        "gn rank",
        lambda: nn.GroupNorm(2, 4),
        lambda: torch.nn.GroupNorm(2, 4),
        (4,),
        True,
        "Expected at least 2 dimensions for input tensor but received 1",
    ),
    (
        "gn weight",
        lambda: nn.GroupNorm(1, 4),
        lambda: torch.nn.GroupNorm(1, 4),
        (2, 2, 3),
        True,
        r"Expected weight to be a vector of size equal to the number of channels in input, but got "
        r"weight of shape \[4\] and input of shape \[2, 2, 3\]",
    ),
    (
        "ln shape",
        lambda: nn.LayerNorm(4),
        lambda: torch.nn.LayerNorm(4),
        (2, 3),
        True,
        r"Given normalized_shape=\[4\], expected input with shape \[\*, 4\], but got input of "
        r"size\[2, 3\]",
    ),
    (
        "rms shape",
        lambda: nn.RMSNorm([3, 4]),
        lambda: torch.nn.RMSNorm([3, 4]),
        (4,),
        True,
        "Input tensor must have at least 2 dimensions, but got 1",
    ),
    (
        "lrn rank",
        lambda: nn.LocalResponseNorm(2),
        lambda: torch.nn.LocalResponseNorm(2),
        (2, 3),
        True,
        "Expected 3D or higher dimensionality input",
    ),
]


@pytest.mark.parametrize(
    ("make", "make_torch", "shape", "training", "match"),
    [case[1:] for case in _BAD],
    ids=[case[0] for case in _BAD],
)
@pytest.mark.filterwarnings("ignore:input's size at dim")  # InstanceNorm with affine=False
def test_bad_inputs_raise_torch_errors(make, make_torch, shape, training, match):
    x = np.ones(shape, np.float32)
    x[..., 0] = 2  # some spread, so only the checked condition fails
    t = make_torch().train(training)
    with pytest.raises(Exception) as torch_error:
        t(torch.tensor(x))
    m = make().train(training)
    before = {k: _np(v) for k, v in m.state_dict().items()}
    with pytest.raises(torch_error.type, match=match):
        m(x)
    assert {k: _np(v).tolist() for k, v in m.state_dict().items()} == {
        k: v.tolist() for k, v in before.items()
    }


def test_functional_bad_arguments_raise_torch_errors():
    x = np.ones((2, 3), np.float32)
    z3, o3 = np.zeros(3, np.float32), np.ones(3, np.float32)
    tx, tz3, to3 = torch.tensor(x), torch.zeros(3), torch.ones(3)
    tf = torch.nn.functional
    cases = [
        (
            lambda: F.batch_norm(x, None, None),
            lambda: tf.batch_norm(tx, None, None),
            "running_mean must be defined in evaluation mode",
        ),
        (
            lambda: F.batch_norm(x, z3, None, training=True),
            lambda: tf.batch_norm(tx, tz3, None, training=True),
            "running_mean and running_var must either both be None or neither be None",
        ),
        (
            lambda: F.batch_norm(x, z3, o3, training=True, eps=0.0),
            lambda: tf.batch_norm(tx, tz3, to3, training=True, eps=0.0),
            "batch_norm eps must be positive during training, but got 0",
        ),
        (
            lambda: F.batch_norm(x, z3, o3, None, np.ones(6, np.float32), training=True),
            lambda: tf.batch_norm(tx, tz3, to3, None, torch.ones(6), training=True),
            "bias should contain 3 elements not 6",
        ),
        (
            lambda: F.instance_norm(x[..., None], use_input_stats=False),
            lambda: tf.instance_norm(tx[..., None], use_input_stats=False),
            "Expected running_mean and running_var to be defined when use_input_stats is false",
        ),
        (
            lambda: F.layer_norm(x, ()),
            lambda: tf.layer_norm(tx, ()),
            "Expected normalized_shape to be at least 1-dimensional",
        ),
        (
            lambda: F.layer_norm(x, 3, np.ones(4, np.float32)),
            lambda: tf.layer_norm(tx, (3,), torch.ones(4)),
            r"Expected weight to be of same shape as normalized_shape, but got weight of shape "
            r"\[4\] and normalized_shape = \[3\]",
        ),
        (
            lambda: F.layer_norm(x, 3, None, np.ones(4, np.float32)),
            lambda: tf.layer_norm(tx, (3,), None, torch.ones(4)),
            "Expected bias to be of same shape",
        ),
    ]
    for ours, theirs, match in cases:
        with pytest.raises(Exception) as torch_error:
            theirs()
        with pytest.raises(torch_error.type, match=match):
            ours()
    with pytest.raises(
        ValueError, match=r"num_channels \(4\) must be divisible by num_groups \(3\)"
    ):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError):
        torch.nn.GroupNorm(3, 4)


def test_instance_norm_channel_warning_and_unbatched():
    m, t = nn.InstanceNorm1d(3), torch.nn.InstanceNorm1d(3)
    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    with pytest.warns(UserWarning, match="input's size at dim=0 does not match num_features"):
        y = m(x)
    with pytest.warns(UserWarning, match="does not match num_features"):
        ty = t(torch.tensor(x))
    np.testing.assert_allclose(_np(y), ty.numpy(), **TOL)


def test_half_input_with_float32_parameters_as_torch():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5)).astype(np.float16)
    tx = torch.tensor(x)
    for cls, args in [("BatchNorm1d", (4,)), ("GroupNorm", (2, 4)), ("LayerNorm", (5,))]:
        t, m = getattr(torch.nn, cls)(*args), getattr(nn, cls)(*args)
        m.load_state_dict(t.state_dict())
        y = m(x)
        with torch.no_grad():
            ty = t(tx)
        assert y.dtype == jnp.float16 and ty.dtype == torch.float16
        np.testing.assert_allclose(_np(y).astype(np.float32), ty.float().numpy(), atol=2e-3)
        _compare_state(t, m)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        F.layer_norm(x.astype(np.float32), 5, jnp.ones(5, jnp.float16))
