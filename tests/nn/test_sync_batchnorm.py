"""``nn.SyncBatchNorm`` on one device, against torch 2.13.

Without a process group (torch.distributed not initialised) torch's SyncBatchNorm is batch_norm
on its input, so each sampled configuration runs the normalisation tests' full comparison
(outputs, input and parameter gradients, running statistics over three jitted training steps,
eager steps, eval mode, reprs, state dicts both ways). Then torch's errors, the axis-name
reduction under a named ``vmap`` (the single-device form of ``shard_map``), and
``convert_sync_batchnorm`` against torch's conversion. Multi-device checks:
``tests/distributed/test_sync_batchnorm_devices.py``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from tests.nn.test_normalization import _norm_options, _parity, _sample

# Largest absolute errors measured below (values up to ~10): 9.5e-7 over the parity grid,
# 4.8e-7 under the named vmap, 1.5e-6 for the converted model; TOL as the normalisation tests.
TOL = {"rtol": 1e-5, "atol": 2e-5}
FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _sync_config(rng):
    rank = int(rng.integers(2, 6))  # 2D to 5D
    c = int(rng.integers(1, 4))
    n = int(rng.integers(2, 4))
    shape = (n, c, *(int(rng.integers(1, 4)) for _ in range(rank - 2)))
    return c, shape, _norm_options(rng, 0.6, 0.6)


# Six configurations (jitted training and eval steps each), drawn so that they cover ranks 2-5,
# momentum=None, affine=False, bias=False and track_running_stats=False.
_CONFIGS = _sample(_sync_config, 6, 2)


def test_the_grid_covers_the_options():
    ranks = {len(shape) for _, _, shape, _ in _CONFIGS}
    opts = [o for *_, o in _CONFIGS]
    assert ranks == {2, 3, 4, 5}
    assert any(o["momentum"] is None for o in opts)
    assert any(not o["affine"] for o in opts) and any(not o["track_running_stats"] for o in opts)


@pytest.mark.parametrize(("seed", "c", "shape", "opts"), _CONFIGS)
def test_matches_torch_sync_batch_norm(seed, c, shape, opts):
    _parity("SyncBatchNorm", (c,), opts, shape, seed)


def test_signature_state_dict_and_process_group():
    m = nn.SyncBatchNorm(4, 1e-3, None, True, True, "data", None, jnp.float32, bias=False)
    t = torch.nn.SyncBatchNorm(4, 1e-3, None, True, True, None, None, torch.float32, bias=False)
    assert repr(m) == repr(t)
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert m.process_group == "data"
    assert nn.SyncBatchNorm(2, process_group=["data", "model"]).process_group == ("data", "model")
    assert nn.SyncBatchNorm(2).process_group is None
    for bad in (3, (), ("data", 1)):
        with pytest.raises(TypeError, match="process_group must be None, a mesh axis name"):
            nn.SyncBatchNorm(2, process_group=bad)


@pytest.mark.parametrize(
    ("shape", "training"),
    [((3,), True), ((), True), ((3,), False), ((2, 0, 3), True), ((1, 3), True), ((1, 3, 1), True)],
)
def test_bad_inputs_raise_torch_errors(shape, training):
    t = torch.nn.SyncBatchNorm(3).train(training)
    m = nn.SyncBatchNorm(3).train(training)
    x = np.ones(shape, np.float32)
    with pytest.raises(Exception) as expected:
        t(torch.tensor(x))
    with pytest.raises(expected.type, match=re.escape(str(expected.value))):
        m(x)
    assert int(m.num_batches_tracked) == 0  # fparam leaves the module unchanged


def _stacked(rng, k, n, c, spatial):
    """``k`` shards of ``(n, c, *spatial)``, each with its own offset."""
    shift = np.arange(k, dtype=np.float32).reshape(k, 1, 1, *([1] * len(spatial)))
    return (rng.standard_normal((k, n, c, *spatial)) + 2 * shift).astype(np.float32)


def test_named_vmap_axis_gives_global_statistics_and_gradients():
    """``process_group`` names a ``vmap`` axis: the shards' statistics are combined with psum."""
    rng = np.random.default_rng(3)
    xs = _stacked(rng, 4, 2, 3, (5,))
    cot = rng.standard_normal(xs.shape).astype(np.float32)
    state = {
        "weight": rng.standard_normal(3).astype(np.float32),
        "bias": rng.standard_normal(3).astype(np.float32),
        "running_mean": rng.standard_normal(3).astype(np.float32),
        "running_var": rng.uniform(0.5, 2, 3).astype(np.float32),
        "num_batches_tracked": np.array(2),
    }

    def shard_loss(m, x, cot):
        return jnp.sum(m(x) * cot)

    @jax.jit
    def per_shard(m, xs, cot):  # (one compile: the FAST options barely shorten it)
        def one(m, x, c):
            value, (g_m, g_x) = fparam.value_and_grad(shard_loss, argnums=(0, 1))(m, x, c)
            return value, g_m, g_x, m

        # Each shard's parameter gradient is its part of the total (summed below, as DDP's
        # all-reduce does); the running statistics are global, the same on every shard.
        vmapped = jax.vmap(one, in_axes=(None, 0, 0), out_axes=(0, 0, 0, None), axis_name="shards")
        return vmapped(m, xs, cot)

    m = nn.SyncBatchNorm(3, momentum=None, process_group="shards")
    m.load_state_dict(state)
    _, g_m, g_x, m = per_shard(m, xs, cot)
    t = torch.nn.BatchNorm1d(3, momentum=None)  # torch's SyncBatchNorm over 4 ranks
    t.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    tx = torch.tensor(xs.reshape(8, 3, 5), requires_grad=True)
    t(tx).backward(torch.tensor(cot.reshape(8, 3, 5)))
    np.testing.assert_allclose(np.asarray(g_x).reshape(8, 3, 5), tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(g_m.weight).sum(0), t.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(g_m.bias).sum(0), t.bias.grad.numpy(), **TOL)
    for k, v in t.state_dict().items():
        np.testing.assert_allclose(np.asarray(m.state_dict()[k]), v.numpy(), **TOL, err_msg=k)
    # An unbound name (no such axis here) is ignored, as torch ignores process_group when
    # torch.distributed is not initialised: each shard normalises alone.
    alone = nn.SyncBatchNorm(3, track_running_stats=False, process_group="other")
    out = jax.jit(jax.vmap(alone), compiler_options=FAST)(xs)
    for x, y in zip(xs, np.asarray(out)):
        want = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
        np.testing.assert_allclose(y, want.numpy(), **TOL)


def test_functional_batch_norm_stats_with_axis_name():
    rng = np.random.default_rng(4)
    xs = _stacked(rng, 3, 1, 2, (2, 2))
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)

    def f(x, training=True):
        return nn.functional.batch_norm_stats(x, rm, rv, training=training, axis_name="i")

    synced = jax.vmap(f, axis_name="i", out_axes=(0, None, None))
    out, mean, var = jax.jit(synced, compiler_options=FAST)(xs)
    # torch updates its running statistics in place.
    t_mean, t_var = torch.tensor(rm), torch.tensor(rv)
    want = torch.nn.functional.batch_norm(
        torch.tensor(xs.reshape(3, 2, 2, 2)), t_mean, t_var, training=True
    )
    for a, b in zip((np.asarray(out).reshape(3, 2, 2, 2), mean, var), (want, t_mean, t_var)):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), **TOL)
    # One value per channel on each of three shards is three values: allowed (torch's count is
    # global when synchronising), unlike one shard's.
    ones = xs[:, :, :, :1, :1]
    jax.eval_shape(synced, ones)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.functional.batch_norm_stats(ones[0], rm, rv, training=True)
    # Eval mode never synchronises: no axis named "i" is needed.
    evaluated = jax.eval_shape(jax.vmap(lambda x: f(x, training=False)), xs)
    assert evaluated[0].shape == xs.shape


# --- convert_sync_batchnorm against torch's ---------------------------------------------------


def _net(lib):
    """The same model from ``torch.nn`` or ``fparam.nn`` (a custom block, containers, every
    batch-norm variant, frozen parameters set by the caller)."""

    class Block(lib.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib.Conv2d(3, 4, 1)
            self.norms = lib.ModuleList(
                [lib.BatchNorm2d(4, momentum=None), lib.BatchNorm2d(4, affine=False)]
            )

        def forward(self, x):
            return self.norms[1](self.norms[0](self.conv(x)))

    return lib.Sequential(
        lib.BatchNorm2d(3, bias=False),
        Block(),
        lib.ModuleDict({"a": lib.BatchNorm3d(4, track_running_stats=False)}),
        lib.BatchNorm1d(4, eps=1e-3).eval(),
        lib.SyncBatchNorm(4),
        lib.LayerNorm(4),
    )


def _twins():
    t, m = _net(torch.nn), _net(nn)
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
        for name, b in t.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.tensor(rng.uniform(0.5, 2, tuple(b.shape))))
            elif name.endswith("running_mean"):
                b.copy_(torch.tensor(rng.standard_normal(tuple(b.shape))))
            else:
                b.fill_(3)
    m.load_state_dict(t.state_dict())
    for model in (t, m):
        model.get_parameter("1.conv.bias").requires_grad = False
        model.get_parameter("1.norms.0.weight").requires_grad = False
    return t, m


def _describe(model):
    return (
        [(name, type(mod).__name__, mod.training) for name, mod in model.named_modules()],
        [(name, p.requires_grad) for name, p in model.named_parameters()],
        list(model.state_dict()),
        repr(model),
    )


def test_convert_sync_batchnorm_matches_torch():
    t, m = _twins()
    uids = [p.uid for p in m.parameters()]
    t_out = torch.nn.SyncBatchNorm.convert_sync_batchnorm(t)
    m_out = nn.SyncBatchNorm.convert_sync_batchnorm(m, process_group="data")
    assert t_out is t and m_out is m
    assert _describe(m) == _describe(t)
    assert sum(isinstance(mod, nn.SyncBatchNorm) for mod in m.modules()) == 6
    assert all(
        mod.process_group == "data" for mod in m.modules() if isinstance(mod, nn.SyncBatchNorm)
    )
    sd = m.state_dict()
    for k, v in t.state_dict().items():
        assert sd[k].dtype == jnp.asarray(v.numpy()).dtype, k
        np.testing.assert_array_equal(np.asarray(sd[k]), v.numpy(), err_msg=k)
    # The same parameters (the identity an optimizer built before the conversion knows).
    assert [p.uid for p in m.parameters()] == uids
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 4)).astype(np.float32)

    def head(model, x):
        y = model[1](model[0](x))
        return model[2]["a"](y[:, :, None]), model

    forward = jax.jit(lambda m, x: fparam.stateful(head)(m, x), compiler_options=FAST)
    y, m = forward(m, x)
    with torch.no_grad():
        ty, _ = head(t, torch.tensor(x))
    np.testing.assert_allclose(np.asarray(y), ty.numpy(), **TOL)
    sd = m.state_dict()
    for k, v in t.state_dict().items():
        np.testing.assert_allclose(np.asarray(sd[k]), v.numpy(), **TOL, err_msg=k)


def test_convert_a_batch_norm_layer_returns_a_new_layer():
    for make in (nn.BatchNorm1d, nn.SyncBatchNorm):
        bn = make(3, momentum=0.3, affine=False)
        bn.eval()
        out = nn.SyncBatchNorm.convert_sync_batchnorm(bn, ("data", "model"))
        assert out is not bn and type(out) is nn.SyncBatchNorm
        assert out.process_group == ("data", "model") and not out.training
        assert repr(out) == repr(torch.nn.SyncBatchNorm(3, momentum=0.3, affine=False))
    other = nn.LayerNorm(3)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(other) is other
    with pytest.raises(RuntimeError, match=r"LazyBatchNorm2d has uninitialized .*convert_sync"):
        nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.LazyBatchNorm2d()))
    with pytest.raises(TypeError, match="process_group"):
        nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3), process_group=0)


def test_from_torch_twins_sync_batch_norm():
    t = torch.nn.Sequential(
        torch.nn.SyncBatchNorm(3, momentum=None, bias=False),
        torch.nn.SyncBatchNorm(3, affine=False, track_running_stats=False),
    )
    with torch.no_grad():
        t(torch.randn(4, 3, 5))
    m = fparam.from_torch(t)
    assert repr(m) == repr(t)
    assert type(m[0]) is nn.SyncBatchNorm and m[0].process_group is None
    # An eager training-mode forward: the running statistics change in place, as torch's.
    x = np.random.default_rng(9).standard_normal((4, 3, 5)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(m(x)), t(torch.tensor(x)).numpy(), **TOL)
    for k, v in t.state_dict().items():
        np.testing.assert_allclose(np.asarray(m.state_dict()[k]), v.numpy(), **TOL, err_msg=k)
