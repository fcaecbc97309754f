"""Building layers: no compilation, abstract construction, pinned values, torch's distributions.

Eagerly, initial values are drawn on the host from the key's data (``fparam._random``), so a
fresh shape costs no XLA compilation; under ``jax.eval_shape`` nothing is drawn or allocated.
The distributions are checked against torch's defaults with fixed seeds: bounds, moments, and
a Kolmogorov-Smirnov statistic against the exact uniform CDF and against torch's own sample.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import monitoring
from scipy import stats

import fparam
from fparam import nn
from fparam.nn import init


@contextmanager
def count_compiles() -> Iterator[list[int]]:
    """Counts XLA backend compilations in the block (JAX's monitoring events)."""
    count = [0]

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.endswith("backend_compile_duration"):
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


def test_compile_counter_sees_a_compile() -> None:
    """The counter used below does count compilations (else the no-compile tests prove nothing)."""
    with count_compiles() as count:
        jax.jit(lambda x: x * 3 + 1)(jnp.zeros((3, 7, 11)))
    assert count[0] >= 1


# Odd sizes that no other test builds: a compilation per new shape would show up here.
def _keys(key: jax.Array | None) -> list[Any]:
    return [None] * 8 if key is None else list(jax.random.split(key, 8))


def _model(keys: list[Any], dtype: Any = None) -> nn.Module:
    kw = {} if dtype is None else {"dtype": dtype}
    return nn.Sequential(
        nn.Conv1d(3, 5, 3, key=keys[0], **kw),
        nn.Conv2d(5, 7, (2, 3), groups=1, key=keys[1], **kw),
        nn.Conv3d(2, 4, 3, bias=False, key=keys[2], **kw),
        nn.ConvTranspose1d(3, 6, 5, groups=3, key=keys[3], **kw),
        nn.ConvTranspose2d(4, 9, 3, stride=2, key=keys[4], **kw),
        nn.ConvTranspose3d(2, 3, 2, key=keys[5], **kw),
        nn.ModuleList([nn.Linear(13, 17, key=keys[6], **kw), nn.ReLU()]),
        nn.Linear(19, 23, bias=False, key=keys[7], **kw),
        # The normalisation and dropout layers: ones, zeros and counters, no random numbers.
        nn.BatchNorm1d(29, **kw),
        nn.BatchNorm2d(31, momentum=None, **kw),
        nn.BatchNorm3d(37, affine=False, **kw),
        nn.SyncBatchNorm(67, momentum=None, process_group="data", **kw),
        nn.InstanceNorm2d(41, affine=True, track_running_stats=True, **kw),
        nn.GroupNorm(3, 39, **kw),
        nn.LayerNorm((43, 2), **kw),
        nn.RMSNorm(47, **kw),
        nn.LocalResponseNorm(3),
        nn.Dropout(0.3),
        nn.Dropout2d(0.1),
        nn.Bilinear(5, 7, 3, key=keys[6], **kw),  # (shares Linear's key: any key will do)
        nn.Embedding(53, 7, padding_idx=3, **kw),
        nn.EmbeddingBag(59, 5, padding_idx=-1, **kw),
        nn.PReLU(61, **kw),
        nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, **kw),
        nn.GRU(4, 3, batch_first=True, **kw),
        nn.RNN(2, 3, nonlinearity="relu", bias=False, **kw),
        nn.LSTMCell(3, 4, **kw),
        nn.GRUCell(3, 4, **kw),
        nn.RNNCell(3, 4, **kw),
        nn.MultiheadAttention(12, 3, add_bias_kv=True, kdim=5, vdim=7, key=keys[2], **kw),
        # Layers, deep copies of a layer, and a xavier_uniform_ reset of every matrix.
        nn.Transformer(10, 2, 1, 1, 14, key=keys[3], **kw),
    )


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("keyed", [False, True])
def test_eager_construction_compiles_nothing(keyed: bool, dtype: Any) -> None:
    keys = _keys(jax.random.key(5) if keyed else None)  # JAX's key() and split() compile
    with count_compiles() as count:
        model = _model(keys, dtype)
        jax.block_until_ready(list(model.parameters()))
    assert count[0] == 0
    expected = jnp.float32 if dtype is None else dtype
    assert all(p.dtype == expected for p in model.parameters())


def test_initializers_compile_nothing() -> None:
    key = jax.random.key(0)
    shape = (11, 7, 3)
    calls: list[Callable[[], jax.Array]] = [
        lambda: init.uniform_(shape, -2, 3, key=key),
        lambda: init.normal_(shape, 1, 2, key=key),
        lambda: init.trunc_normal_(shape, std=0.02, a=-0.03, b=0.04, key=key),
        lambda: init.xavier_uniform_(shape, key=key),
        lambda: init.xavier_normal_(shape, key=key),
        lambda: init.kaiming_uniform_(shape, key=key),
        lambda: init.kaiming_normal_(shape, key=key),
        lambda: init.orthogonal_(shape, key=key),
        lambda: init.zeros_(shape),
        lambda: init.ones_(shape, dtype=jnp.bfloat16),
        lambda: init.constant_(shape, 0.5),
        lambda: init.uniform_(shape),  # the default stream
    ]
    with count_compiles() as count:
        out = [call() for call in calls]
        jax.block_until_ready(out)
    assert count[0] == 0
    assert all(isinstance(x, jax.Array) and x.shape == shape for x in out)


# --------------------------------------------------------------------------------------------
# Abstract construction


def _specs(model: Any) -> list[tuple[str, tuple[int, ...], Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(model)[0]
    return [(jax.tree_util.keystr(path), tuple(x.shape), x.dtype) for path, x in leaves]


@pytest.mark.parametrize("keyed", [False, True])
def test_eval_shape_builds_shapes_only_and_allocates_nothing(keyed: bool) -> None:
    keys = _keys(jax.random.key(2) if keyed else None)

    def build() -> nn.Module:
        big = nn.Linear(2048, 2048, key=keys[0])  # 16 MiB
        return nn.Sequential(_model(keys), big)

    live_before = {id(x) for x in jax.live_arrays()}
    tracemalloc.start()
    try:
        abstract = jax.eval_shape(build)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    new = [x for x in jax.live_arrays() if id(x) not in live_before]
    assert sum(x.nbytes for x in new) < 1024, [x.shape for x in new]
    # The host never held the 16 MiB weight either. (What it holds is the trace's Python
    # objects: 2.0 MiB for the model before the Transformer joined it, 2.6 MiB since.)
    assert peak < 4 * 2**20, peak
    leaves = jax.tree.leaves(abstract)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)

    eager = build()
    assert _specs(abstract) == _specs(eager)
    assert [n for n, _ in abstract.named_parameters()] == [n for n, _ in eager.named_parameters()]


def test_construction_under_jit_and_vmap_draws_with_jax_random() -> None:
    keys = jax.random.split(jax.random.key(3), 4)
    # One jit around the vmap: an eager vmap would dispatch (and compile) op by op.
    ensemble = jax.jit(jax.vmap(lambda k: nn.Linear(30, 40, key=k)))(keys)
    assert ensemble.weight.shape == (4, 40, 30)
    bound = 1 / math.sqrt(30)
    w = np.asarray(ensemble.weight)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert len({w[i].tobytes() for i in range(4)}) == 4
    b = np.asarray(ensemble.bias)
    assert b.shape == (4, 40) and np.abs(b).max() <= bound
    # (Compiling a construction costs seconds on 2 cores: one jitted build covers the traced path.)


# --------------------------------------------------------------------------------------------
# Pinned values: a fixed seed or key gives these numbers (NumPy's PCG64 stream, seeded by a
# SeedSequence of the key's words; NumPy keeps that stream stable across releases).


def test_pinned_values_from_the_default_stream_and_from_a_key() -> None:
    fparam.manual_seed(0)
    linear = nn.Linear(3, 2)
    expected_w = [[-0.24895957, 0.34070534, -0.47317424], [-0.36128122, 0.47189748, -0.27479425]]
    np.testing.assert_array_equal(np.asarray(linear.weight), np.float32(expected_w))
    np.testing.assert_array_equal(np.asarray(linear.bias), np.float32([0.24847513, 0.00742352]))

    conv = nn.Conv2d(1, 2, 2, key=jax.random.key(42))
    expected_c = [-0.22217757, 0.4908175, -0.25595635, 0.044343114]
    np.testing.assert_array_equal(np.asarray(conv.weight).ravel()[:4], np.float32(expected_c))
    np.testing.assert_array_equal(np.asarray(conv.bias), np.float32([-0.18026322, -0.11028659]))

    normal = init.normal_((4,), key=jax.random.key(1))
    expected_n = [0.45598465, -2.1591032, -2.129957, -0.765699]
    np.testing.assert_array_equal(np.asarray(normal), np.float32(expected_n))

    # Rebuilding with the same seed or key gives the same values; reset_parameters too.
    fparam.manual_seed(0)
    np.testing.assert_array_equal(np.asarray(nn.Linear(3, 2).weight), np.float32(expected_w))
    conv.reset_parameters(key=jax.random.key(42))
    np.testing.assert_array_equal(np.asarray(conv.weight).ravel()[:4], np.float32(expected_c))


def test_legacy_and_new_style_keys_with_equal_words_agree() -> None:
    new = nn.Linear(5, 4, key=jax.random.key(9))
    legacy = nn.Linear(5, 4, key=jax.random.PRNGKey(9))
    np.testing.assert_array_equal(np.asarray(new.weight), np.asarray(legacy.weight))
    np.testing.assert_array_equal(np.asarray(new.bias), np.asarray(legacy.bias))


# --------------------------------------------------------------------------------------------
# torch's distributions

# (class, args, kwargs): about 2^17 weights each, sizes torch and fparam both build in ~10 ms.
LAYERS = [
    ("Linear", (384, 320), {}),
    ("Conv1d", (64, 256, 8), {}),
    ("Conv2d", (32, 256, (4, 4)), {"groups": 2}),
    ("ConvTranspose2d", (256, 32, 4), {}),
    ("ConvTranspose3d", (64, 64, 2), {"groups": 4}),
]


def _ks_uniform(sample: np.ndarray, bound: float) -> float:
    return float(stats.kstest(sample, stats.uniform(loc=-bound, scale=2 * bound).cdf).statistic)


@pytest.mark.parametrize(("cls", "args", "kwargs"), LAYERS, ids=[c[0] for c in LAYERS])
def test_default_init_matches_torch_distribution(cls: str, args: tuple, kwargs: dict) -> None:
    torch.manual_seed(0)
    theirs = getattr(torch.nn, cls)(*args, **kwargs)
    ours = getattr(nn, cls)(*args, **kwargs, key=jax.random.key(0))
    fan_in = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)[0]
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=√5) and the bias: both U(±1/√fan_in)
    for name in ("weight", "bias"):
        t = getattr(theirs, name).detach().numpy().ravel().astype(np.float64)
        o = np.asarray(getattr(ours, name)).ravel().astype(np.float64)
        assert getattr(ours, name).shape == tuple(getattr(theirs, name).shape)
        assert getattr(ours, name).dtype == jnp.float32
        n = o.size
        # Range: within the bound, and reaching close to it (the expected gap is 2b/(n+1)).
        assert np.abs(o).max() <= bound
        assert o.min() < -bound * (1 - 20 / n) and o.max() > bound * (1 - 20 / n)
        # Moments of U(-b, b): mean 0 (sd b/√(3n)), variance b²/3 (sd of the sample var is
        # b²·√(4/45n)); 5 standard errors.
        assert abs(o.mean()) < 5 * bound / math.sqrt(3 * n)
        assert abs(o.var() - bound**2 / 3) < 5 * bound**2 * math.sqrt(4 / (45 * n))
        # Kolmogorov-Smirnov against the exact CDF, and against torch's own sample: the
        # critical values at α = 0.001 are 1.95/√n and 1.95·√(2/n).
        assert _ks_uniform(o, bound) < 1.95 / math.sqrt(n)
        assert stats.ks_2samp(o, t).statistic < 1.95 * math.sqrt(2 / n)
        # torch's own sample passes the same check (the test is not looser than torch needs).
        assert _ks_uniform(t, bound) < 1.95 / math.sqrt(n)


def test_bias_bound_uses_torchs_fan_in_for_transposed_convs() -> None:
    # ConvTranspose's "fan_in" is out/groups * prod(k) (torch's quirk), not in * prod(k).
    layer = nn.ConvTranspose2d(1, 64, 3, key=jax.random.key(1))
    bound = 1 / math.sqrt(64 * 9)
    b = np.asarray(layer.bias)
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.8 * bound
