"""fparam's default key stream: JAX's keys bit for bit, computed without compiling, one stream
for every thread (as torch's global generator)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

import fparam
from fparam import _random, nn


@contextmanager
def count_compiles() -> Iterator[list[int]]:
    count = [0]

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.endswith("backend_compile_duration"):
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


def _data(key: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(_random.as_jax_key(key)))


SEEDS = [0, 7, -1, 2**31, 2**32 + 5, -(2**40) + 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_keys_are_jax_fold_in_of_the_seed_key(seed: int) -> None:
    fparam.manual_seed(seed)
    ours = [_data(_random.next_key()) for _ in range(3)]
    theirs = [_data(jax.random.fold_in(jax.random.key(seed), n)) for n in range(3)]
    np.testing.assert_array_equal(np.stack(ours), np.stack(theirs))


def test_stream_keys_under_x64_use_the_high_seed_bits() -> None:
    seed = 2**40 + 3
    with jax.enable_x64(True):
        fparam.manual_seed(seed)
        ours = _data(_random.next_key())
        theirs = _data(jax.random.fold_in(jax.random.key(seed), 0))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("num", [2, 3])
def test_split_key_is_jax_split(partitionable: bool, num: int) -> None:
    previous = jax.config.jax_threefry_partitionable  # type: ignore[attr-defined]
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        for key in (jax.random.key(11), jax.random.fold_in(jax.random.key(3), 2**31 + 1)):
            ours = np.stack([_data(k) for k in _random.split_key(key, num)])
            np.testing.assert_array_equal(ours, _data(jax.random.split(key, num)))
        legacy = jax.random.PRNGKey(11)
        split = [_random.as_jax_key(k) for k in _random.split_key(legacy, num)]
        assert all(k.dtype == np.uint32 and k.shape == (2,) for k in split)
        np.testing.assert_array_equal(np.stack(split), np.asarray(jax.random.split(legacy, num)))
        # A split of a split (what a layer given a split key does) is JAX's too.
        inner = _random.split_key(_random.split_key(key, num)[1], 2)
        np.testing.assert_array_equal(
            np.stack([_data(k) for k in inner]),
            _data(jax.random.split(jax.random.split(key, num)[1])),
        )
    finally:
        jax.config.update("jax_threefry_partitionable", previous)


def test_stream_and_split_compile_nothing() -> None:
    key = jax.random.key(1)
    with count_compiles() as count:
        fparam.manual_seed(123)
        keys = [_random.next_key() for _ in range(3)] + _random.split_key(key, 5)
        _random.init_key()
        [_data(k) for k in keys]
    assert count[0] == 0


def test_explicit_key_wins_and_init_key_draws_from_the_stream() -> None:
    explicit = jax.random.key(4)
    assert _random.init_key(explicit) is explicit
    assert _random.resolve_key(explicit) is explicit
    fparam.manual_seed(5)
    first = _data(_random.init_key())
    fparam.manual_seed(5)
    np.testing.assert_array_equal(first, _data(_random.next_key()))
    fparam.manual_seed(5)
    np.testing.assert_array_equal(first, _data(_random.resolve_key(None)))
    assert isinstance(_random.resolve_key(None), jax.Array)  # user code gets a JAX key


def test_init_key_works_under_eval_shape() -> None:
    fparam.manual_seed(2)
    out = jax.eval_shape(lambda: jax.random.uniform(_random.init_key(), (3,)))
    assert out.shape == (3,)


# --------------------------------------------------------------------------------------------
# Threads: one stream for the process


def test_manual_seed_in_one_thread_seeds_every_thread() -> None:
    fparam.manual_seed(0)
    worker = threading.Thread(target=fparam.manual_seed, args=(31,))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(
        _data(_random.next_key()), _data(jax.random.fold_in(jax.random.key(31), 0))
    )
    fparam.manual_seed(31)
    with ThreadPoolExecutor(1) as pool:
        in_thread = pool.submit(lambda: _data(_random.next_key())).result()
    np.testing.assert_array_equal(in_thread, _data(jax.random.fold_in(jax.random.key(31), 0)))


def _weights(models: list[nn.Linear]) -> set[bytes]:
    return {np.asarray(m.weight).tobytes() + np.asarray(m.bias).tobytes() for m in models}


def test_models_built_in_threads_get_distinct_reproducible_weights() -> None:
    count = 16
    fparam.manual_seed(8)
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda _: nn.Linear(6, 5), range(count)))
    weights = _weights(threaded)
    assert len(weights) == count  # distinct: the threads did not all start at one seed
    # Each model drew one key, so the set of models is the stream's first `count` keys,
    # whatever the interleaving: the same set as building them one after the other.
    fparam.manual_seed(8)
    assert _weights([nn.Linear(6, 5) for _ in range(count)]) == weights
    fparam.manual_seed(8)
    assert _weights([nn.Linear(6, 5) for _ in range(count)]) == weights  # reproducible
    fparam.manual_seed(9)
    assert _weights([nn.Linear(6, 5) for _ in range(count)]).isdisjoint(weights)


def test_concurrent_draws_never_share_a_key() -> None:
    threads, per_thread = 8, 150
    fparam.manual_seed(77)
    barrier = threading.Barrier(threads)

    def draw(_: int) -> list[bytes]:
        barrier.wait()  # start together, so that the draws do race
        return [_data(_random.next_key()).tobytes() for _ in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        drawn = [k for keys in pool.map(draw, range(threads)) for k in keys]
    assert len(set(drawn)) == threads * per_thread
    # ... and they are exactly the stream's first keys: no counter value lost or repeated.
    fparam.manual_seed(77)
    sequential = {_data(_random.next_key()).tobytes() for _ in range(threads * per_thread)}
    assert set(drawn) == sequential


# ------------------------------------------------------------------ forward-time key scopes


def _draw() -> jax.Array:
    return jax.random.uniform(fparam.next_key(), (4,))


def test_a_scope_gives_the_same_draws_eagerly_and_under_jit() -> None:
    key = jax.random.key(7)
    with fparam.rng(key):
        eager = [_draw(), _draw()]

    @jax.jit
    def traced(k: jax.Array) -> list[jax.Array]:
        with fparam.rng(k):
            return [_draw(), _draw()]

    for a, b in zip(eager, traced(key)):
        np.testing.assert_array_equal(a, b)
    expected = jax.random.uniform(jax.random.fold_in(key, 1), (4,))
    np.testing.assert_array_equal(eager[1], expected)
    assert not np.array_equal(eager[0], eager[1])
    other = traced(jax.random.key(8))
    assert not np.array_equal(other[0], eager[0])


def test_scopes_nest_and_the_innermost_wins() -> None:
    outer, inner = jax.random.key(1), jax.random.key(2)
    with fparam.rng(outer):
        a = _draw()
        with fparam.rng(inner):
            b = _draw()
        c = _draw()
    np.testing.assert_array_equal(b, jax.random.uniform(jax.random.fold_in(inner, 0), (4,)))
    np.testing.assert_array_equal(c, jax.random.uniform(jax.random.fold_in(outer, 1), (4,)))
    assert not np.array_equal(a, c)


def test_a_draw_in_a_trace_without_a_key_raises() -> None:
    with pytest.raises(fparam.RandomnessError, match=r"with fparam.rng\(key\)"):
        jax.jit(lambda x: x + _draw())(jnp.zeros(4))
    with fparam.rng(jax.random.key(0)), pytest.raises(fparam.RandomnessError, match="outside"):
        jax.jit(lambda x: x + _draw())(jnp.zeros(4))
    eager = _draw()  # eagerly, the default stream, as torch's global generator
    assert eager.shape == (4,)


def test_vmap_over_keys_gives_independent_draws() -> None:
    keys = jax.random.split(jax.random.key(3), 5)

    def one(k: jax.Array) -> jax.Array:
        with fparam.rng(k):
            return _draw()

    draws = np.asarray(jax.vmap(one)(keys))
    assert len({row.tobytes() for row in draws}) == 5
    np.testing.assert_array_equal(draws[2], one(keys[2]))


@pytest.mark.parametrize("bad", [42, "key", np.zeros(3, np.float32), None])
def test_a_scope_needs_a_jax_key(bad: object) -> None:
    with pytest.raises(TypeError, match="expects a JAX key"), fparam.rng(bad):
        pass
    with pytest.raises(TypeError, match="expects a JAX key"):
        _random.resolve_key(bad if bad is not None else 42)
