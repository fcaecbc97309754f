"""fparam's default key stream, key scopes, and the keys and samplers construction draws from.

Forward-time randomness (DESIGN.md, rule 10)
--------------------------------------------
A layer that draws in ``forward`` (Dropout) and user code (``fparam.next_key()``, what a torch
user's ``torch.randn_like(x)`` becomes) take keys from `next_key`:

* inside ``with fparam.rng(key):`` the n-th draw of the block is
  ``jax.random.fold_in(key, n)``, eagerly and under ``jit`` alike (the count is kept in Python,
  so it is part of the trace); blocks nest, the innermost wins;
* eagerly with no block open, the next key of the default stream (torch's global generator);
* inside a transformation with no block open, or with one opened *outside* the transformation
  (its key would be a constant of the compiled code: the same numbers at every call),
  `RandomnessError`. Pass a key into the jitted function and open the block inside it.

A loop body traced once (``lax.scan``, ``fori_loop``) makes the same draws at every iteration
from the same key: fold the iteration into the key there (``fparam.rng(fold_in(key, i))``).

The default stream
------------------
It mirrors torch's global generator: ``fparam.manual_seed(seed)`` restarts it, every layer built
without ``key=`` takes the next key from it, and an explicit ``key=`` always wins. Like torch's
generator it is **one stream for the whole process**: seeding in one thread seeds it for every
thread, and concurrent draws (a lock guards the counter) never hand out the same key twice, so
an ensemble built in a thread pool gets distinct weights. Which model gets which key then
depends on the threads' interleaving, as it does in torch; built sequentially, the models are
reproducible.

The n-th key of the stream is ``jax.random.fold_in(jax.random.key(seed), n)``, bit for bit, but
it is computed on the host (threefry2x32 on Python ints, see `_threefry2x32`): JAX's own
``key``/``fold_in``/``split`` are compiled operations, and compiling them made the first layer
of a process cost ~0.2 s. When the default PRNG implementation is not threefry2x32
(``jax_default_prng_impl``), JAX's functions are called instead.

Construction-time randomness
----------------------------
Layers draw their initial values through `init_key` (the given key, else the next stream key),
`split_key` and `host_generator`, never through `next_key` directly. This path stays valid
**inside traces**: ``jax.eval_shape(lambda: Net())`` (abstract construction: shapes and dtypes,
no arrays), ``jax.jit`` or ``jax.vmap`` over keys. ``next_key`` is the *forward-time* entry point
(what a torch user's ``torch.randn_like`` becomes); under issue 10 it will raise inside a trace
when no key is in scope, so construction must not depend on it being permissive there.
Under ``jit`` a layer built without ``key=`` takes its stream key at trace time (a constant of
the compiled function, as the stream advances only in Python); pass ``key=`` to vary it per
call. Eagerly `init_key`/`split_key` hand out `HostKey`s (two Python ints) rather than JAX keys,
so a layer's construction dispatches no JAX operation for its keys; `resolve_key` is the
variant for user modules that want a JAX key.

How values are drawn (see ``fparam.nn.init``): eagerly, a concrete key seeds a NumPy generator
(PCG64 through a ``SeedSequence`` of the key's words), the values are drawn on the host and
moved to the device in one transfer, and nothing is compiled. Inside a trace, or with a traced
key, the draw is ``jax.random``'s, so it traces (and shards) like any JAX code. Both draw the
same distributions, but **not the same numbers**: a key gives one set of values eagerly and
another under ``jit``/``vmap``. Drawing JAX's exact threefry bits on the host was measured and
rejected: 0.33 s for the 11.7 M values of a ResNet-18 (vs 0.035 s for PCG64), which alone
exceeds the 0.3 s budget of building such a model.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import numpy as np

from fparam._trace import in_trace

__all__ = [
    "HostKey",
    "as_jax_key",
    "host_generator",
    "in_trace",
    "init_key",
    "key_words",
    "manual_seed",
    "next_key",
    "resolve_key",
    "rng",
    "split_key",
]


class RandomnessError(RuntimeError):
    """A random draw inside a transformation with no key in scope."""


_NO_KEY_IN_TRACE = (
    "a random draw ({what}) inside a JAX transformation (jit, grad, vmap, scan, ...) needs a "
    "key in scope: pass a key into the transformed function and draw inside "
    "`with fparam.rng(key):` (for example `jax.random.fold_in(key, step)` per training step), "
    "or give the function key=... . Without one, the same random numbers would be compiled "
    "into every call."
)
_SCOPE_OUTSIDE_TRACE = (
    "a random draw ({what}) inside a JAX transformation found a `fparam.rng(key)` block opened "
    "outside it: its key would be a constant of the compiled code, giving the same random "
    "numbers at every call. Pass the key into the transformed function and open the block "
    "inside it."
)

_DEFAULT_SEED = 0
_MASK32 = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# Threefry2x32 on the host: JAX's key operations without compiling them

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(key: tuple[int, int], x0: int, x1: int) -> tuple[int, int]:
    """The threefry2x32 block (20 rounds) that JAX's key functions are built on, on Python ints."""
    k0, k1 = key
    ks = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA)
    x0 = (x0 + ks[0]) & _MASK32
    x1 = (x1 + ks[1]) & _MASK32
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = (x0 + x1) & _MASK32
            x1 = ((x1 << r) | (x1 >> (32 - r))) & _MASK32
            x1 ^= x0
        x0 = (x0 + ks[(group + 1) % 3]) & _MASK32
        x1 = (x1 + ks[(group + 2) % 3] + group + 1) & _MASK32
    return x0, x1


def _flag(name: str) -> Any:
    """The current value of a JAX config flag (read at each call: flags can change)."""
    return getattr(jax.config, name)


def _seed_words(seed: int) -> tuple[int, int]:
    """The words of ``jax.random.key(seed)``: the low 32 bits, and the high ones under x64."""
    high = (seed >> 32) & _MASK32 if _flag("jax_enable_x64") else 0
    return high, seed & _MASK32


def _fold_in_words(key: tuple[int, int], data: int) -> tuple[int, int]:
    """``jax.random.fold_in``: threefry of the counter pair ``(0, data)``."""
    return _threefry2x32(key, 0, data & _MASK32)


def _split_words(key: tuple[int, int], num: int) -> list[tuple[int, int]]:
    """``jax.random.split(key, num)`` in either setting of ``jax_threefry_partitionable``."""
    if _flag("jax_threefry_partitionable"):
        # Key i is threefry of the 64-bit counter i, as (high, low) words.
        return [_threefry2x32(key, i >> 32, i & _MASK32) for i in range(num)]
    # The original scheme hashes iota(2 * num) in two halves and reshapes to (num, 2).
    pairs = [_threefry2x32(key, i, num + i) for i in range(num)]
    flat = [p[0] for p in pairs] + [p[1] for p in pairs]
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(num)]


def _default_impl_is_threefry() -> bool:
    return _flag("jax_default_prng_impl") == "threefry2x32"


def _wrap(words: tuple[int, int], legacy: bool = False) -> jax.Array:
    data = np.array(words, dtype=np.uint32)
    if legacy:
        return jax.device_put(data)
    # A NumPy array is accepted (and wrapping it compiles nothing); the stubs say jax.Array.
    return jax.random.wrap_key_data(data, impl="threefry2x32")  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class HostKey:
    """A concrete threefry key kept as two Python ints between the steps of a construction.

    Wrapping words into a JAX key and reading them back each dispatch a JAX operation
    (~0.5 ms); a layer's construction (stream key, split, two draws) needs none of it. Only
    `init_key` and `split_key` make these, only outside traces, and only fparam's own
    initialisers consume them; `as_jax_key` turns one into the JAX key it stands for.
    """

    words: tuple[int, int]
    legacy: bool = False


def as_jax_key(key: Any) -> Any:
    """The JAX key a `HostKey` stands for; any other key unchanged."""
    return _wrap(key.words, key.legacy) if isinstance(key, HostKey) else key


# --------------------------------------------------------------------------------------------
# Inspecting keys


def _is_threefry(key: Any) -> bool:
    if isinstance(key, HostKey):
        return True
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return key.shape == (2,) and key.dtype == np.uint32


def key_words(key: Any) -> np.ndarray | None:
    """The uint32 words of a concrete key (new-style or legacy), or None for a traced one.

    Reading them compiles nothing: ``jax.random.key_data`` of a concrete key is a view.
    """
    if isinstance(key, HostKey):
        return np.array(key.words, dtype=np.uint32)
    if isinstance(key, jax.core.Tracer):
        return None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key), dtype=np.uint32).reshape(-1)
    return np.asarray(key, dtype=np.uint32).reshape(-1)


def host_generator(key: Any) -> np.random.Generator | None:
    """A NumPy generator determined by ``key``'s data, or None when values must be traced.

    None inside a trace (the draw must then be ``jax.random``'s, so that ``eval_shape``
    allocates nothing and ``jit``/``vmap`` trace) and for a traced key. The key's words
    (and its PRNG implementation, so that keys of two implementations with equal words give
    different streams) seed a ``SeedSequence``, which feeds PCG64.
    """
    if in_trace():
        return None
    if isinstance(key, HostKey):
        entropy = list(key.words)
    else:
        words = key_words(key)
        if words is None:
            return None
        entropy = [int(w) for w in words]
    if not isinstance(key, HostKey) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
        if impl != "threefry2x32":
            entropy.extend(impl.encode())
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


# --------------------------------------------------------------------------------------------
# The default stream


class _KeyStream:
    """One process-wide stream, as torch's default generator: a seed and a counter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seed = _DEFAULT_SEED
        self.counter = 0

    def take(self) -> tuple[int, int]:
        """The seed and a counter value no other call gets (until the next `manual_seed`)."""
        with self.lock:
            seed, counter = self.seed, self.counter
            self.counter += 1
        return seed, counter

    def reset(self, seed: int) -> None:
        with self.lock:
            self.seed = seed
            self.counter = 0


_stream = _KeyStream()


def stream_position() -> tuple[int, int]:
    """Where the default stream stands: ``(seed, counter)``."""
    with _stream.lock:
        return _stream.seed, _stream.counter


def rewind_stream(position: tuple[int, int]) -> None:
    """Put the default stream back at ``position`` (from `stream_position`), so that a
    construction traced twice (abstractly, then for real) draws the same keys both times."""
    with _stream.lock:
        _stream.seed, _stream.counter = position


def manual_seed(seed: int) -> None:
    """Reset the default key stream, like ``torch.manual_seed``, for every thread.

    Arguments:
        seed: any Python int; the stream restarts from it. Keys are those of
            ``jax.random.key(seed)``, which uses the low 32 bits of the seed (64 under x64).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"manual_seed expects an int seed, got {type(seed).__name__}")
    _stream.reset(seed)


def _stream_key(seed: int, counter: int) -> jax.Array:
    if _default_impl_is_threefry():
        return _wrap(_fold_in_words(_seed_words(seed), counter))
    return jax.random.fold_in(jax.random.key(seed), counter)


class _Scopes(threading.local):
    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # [key, draws so far, opened inside a trace]


_scopes = _Scopes()


@contextmanager
def rng(key: Any) -> Iterator[None]:
    """Draw the randomness of the block from ``key``: trace-safe, nestable.

    Inside the block, the n-th call of `next_key` (each Dropout forward in training mode makes
    one) returns ``jax.random.fold_in(key, n)``, the same keys eagerly and under ``jit``, so a
    jitted step takes a fresh key each call::

        @jax.jit
        def train_step(model, opt, x, y, key):
            with fparam.rng(key):
                loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
            ...

    Arguments:
        key: a JAX key (``jax.random.key`` or a legacy ``PRNGKey``), concrete or traced;
            ``jax.vmap`` over keys gives each member its own draws.
    """
    _check_key(key, "fparam.rng")
    _scopes.stack.append([key, 0, in_trace()])
    try:
        yield
    finally:
        _scopes.stack.pop()


def _check_key(key: Any, what: str) -> None:
    if isinstance(key, HostKey):
        return
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    legacy = dtype == np.uint32 and getattr(key, "shape", ())[-1:] == (2,)
    if not (typed or legacy):
        raise TypeError(
            f"{what} expects a JAX key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
            + (
                f"an array of dtype {dtype} and shape {key.shape}"
                if dtype is not None
                else type(key).__name__
            )
        )


def next_key(what: str = "fparam.next_key()") -> jax.Array:
    """A fresh key for a random draw in ``forward``: from the innermost `rng` block, else
    (eagerly only) from the default stream.

    Eagerly with no block open, the n-th key after ``manual_seed(s)`` is
    ``jax.random.fold_in(jax.random.key(s), n)``, as torch's layers draw from its global
    generator. Layer construction uses `init_key` instead.

    Arguments:
        what: how an error names the draw (a layer's name).

    Raises:
        RandomnessError: inside a transformation with no `rng` block open in it.
    """
    tracing = in_trace()
    if _scopes.stack:
        scope = _scopes.stack[-1]
        key, count, opened_in_trace = scope
        if tracing and not opened_in_trace and not isinstance(key, jax.core.Tracer):
            raise RandomnessError(_SCOPE_OUTSIDE_TRACE.format(what=what))
        scope[1] = count + 1
        return jax.random.fold_in(as_jax_key(key), count)
    if tracing:
        raise RandomnessError(_NO_KEY_IN_TRACE.format(what=what))
    return _stream_key(*_stream.take())


def init_key(key: Any = None) -> Any:
    """The key a layer's construction draws from: ``key`` when given, else the next stream key.

    Valid inside traces (``jax.eval_shape``, ``jit``, ``vmap``): there the stream key is a
    constant of the trace (a JAX key), and the stream still moves on by one. Eagerly the
    stream key comes as a `HostKey`, which fparam's initialisers and `split_key` accept.

    Arguments:
        key: a JAX key (new-style ``jax.random.key`` or legacy ``PRNGKey``), or None.
    """
    if key is not None:
        return key
    seed, counter = _stream.take()
    if not in_trace() and _default_impl_is_threefry():
        return HostKey(_fold_in_words(_seed_words(seed), counter))
    return _stream_key(seed, counter)


def resolve_key(key: jax.Array | None, what: str = "a layer's forward") -> jax.Array:
    """``key`` when given, else `next_key` (a key in scope, or the default stream eagerly).

    What a functional with a ``key=`` argument calls (``F.dropout``); construction-time code
    uses `init_key`, which stays valid inside traces.
    """
    if key is None:
        return next_key(what)
    _check_key(key, what)
    return key


def split_key(key: Any, num: int = 2) -> list[Any]:
    """``list(jax.random.split(key, num))``, computed on the host for a concrete threefry key.

    The keys are bit-identical to ``jax.random.split``'s and come as `HostKey`s (for fparam's
    initialisers, see `as_jax_key`); inside a trace, a traced key or another PRNG
    implementation goes through ``jax.random.split``.

    Arguments:
        key: a JAX key (new-style or legacy ``uint32[2]``) or a `HostKey`.
        num: how many keys.
    """
    if not in_trace() and not isinstance(key, jax.core.Tracer) and _is_threefry(key):
        if isinstance(key, HostKey):
            pair, legacy = key.words, key.legacy
        else:
            words = key_words(key)
            assert words is not None
            pair = (int(words[0]), int(words[1]))
            legacy = not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        return [HostKey(w, legacy) for w in _split_words(pair, num)]
    return list(jax.random.split(as_jax_key(key), num))
