"""``nn.utils.rnn``: packing and padding variable-length sequences against torch.nn.utils.rnn."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.utils.rnn as trnn

from fparam.nn.utils import rnn


def _lengths(rng: np.random.Generator, batch: int, steps: int, sort: bool) -> list[int]:
    # Few distinct values, so that batches over 16 have ties (torch's unstable sort order).
    pool = rng.choice(np.arange(1, steps + 1), size=min(steps, 3), replace=False)
    lengths = rng.choice(pool, size=batch)
    lengths[rng.integers(batch)] = steps if rng.random() < 0.5 else lengths.max()
    return sorted(lengths.tolist(), reverse=True) if sort else lengths.tolist()


def _grid() -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(0)
    out = []
    for seed in range(12):
        batch = int(rng.choice([1, 3, 5, 17, 20]))
        steps = int(rng.integers(1, 7))
        features = [(), (3,), (2, 2)][seed % 3]
        batch_first = bool(rng.random() < 0.5)
        enforce_sorted = bool(rng.random() < 0.4)
        padding_value = float(rng.choice([0.0, -1.5, 7.0]))
        extra = [None, 0, 2][int(rng.integers(3))]
        out.append(
            (seed, batch, steps, features, batch_first, enforce_sorted, padding_value, extra)
        )
    return out


def _assert_same_packed(ours: rnn.PackedSequence, theirs: Any) -> None:
    np.testing.assert_array_equal(np.asarray(ours.data), theirs.data.numpy())
    np.testing.assert_array_equal(ours.batch_sizes, theirs.batch_sizes.numpy())
    for mine, torch_field in [
        (ours.sorted_indices, theirs.sorted_indices),
        (ours.unsorted_indices, theirs.unsorted_indices),
    ]:
        if torch_field is None:
            assert mine is None
        else:
            np.testing.assert_array_equal(mine, torch_field.numpy())


@pytest.mark.parametrize(
    (
        "seed",
        "batch",
        "steps",
        "features",
        "batch_first",
        "enforce_sorted",
        "padding_value",
        "extra",
    ),
    _grid(),
)
def test_pack_and_pad_match_torch(
    seed, batch, steps, features, batch_first, enforce_sorted, padding_value, extra
):
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng, batch, steps, sort=enforce_sorted)
    shape = (batch, steps, *features) if batch_first else (steps, batch, *features)
    x = rng.normal(size=shape).astype(np.float32)
    # lengths as a list, a NumPy array and a torch tensor (torch's CPU tensor spelling).
    given = [lengths, np.asarray(lengths), torch.tensor(lengths)][seed % 3]
    total = None if extra is None else max(lengths) + extra

    @jax.jit  # one compile per configuration (the lengths are host values, closed over)
    def ours(x):
        packed = rnn.pack_padded_sequence(x, given, batch_first, enforce_sorted)
        padded, out_lengths = rnn.pad_packed_sequence(packed, batch_first, padding_value, total)
        sequences = rnn.unpack_sequence(packed)
        repacked = rnn.pack_sequence(sequences, enforce_sorted)
        assert repacked.batch_sizes.tolist() == packed.batch_sizes.tolist()
        assert out_lengths.dtype == np.int64 and out_lengths.tolist() == lengths
        return packed, padded, sequences, repacked.data

    packed, padded, sequences, repacked = ours(x)
    tpacked = trnn.pack_padded_sequence(torch.tensor(x), lengths, batch_first, enforce_sorted)
    _assert_same_packed(packed, tpacked)
    assert packed.batch_sizes.dtype == np.int64
    tpadded, tlengths = trnn.pad_packed_sequence(tpacked, batch_first, padding_value, total)
    np.testing.assert_array_equal(np.asarray(padded), tpadded.numpy())
    np.testing.assert_array_equal(tlengths.numpy(), lengths)
    tsequences = trnn.unpack_sequence(tpacked)
    assert len(sequences) == len(tsequences)
    for mine, theirs in zip(sequences, tsequences, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), theirs.numpy())
    # pack_sequence on the same sequences gives torch's packing of them.
    np.testing.assert_array_equal(
        np.asarray(repacked), trnn.pack_sequence(tsequences, enforce_sorted).data.numpy()
    )
    # Eagerly too (a few configurations: each eager op compiles for its shapes).
    if seed == 0:
        _assert_same_packed(
            rnn.pack_padded_sequence(x, given, batch_first, enforce_sorted), tpacked
        )


PAD_GRID = [
    (seed, batch_first, side, value, dtype)
    for seed, (batch_first, side, value, dtype) in enumerate(
        [
            (False, "right", 0.0, np.float32),
            (True, "right", -2.0, np.float32),
            (False, "left", 3.5, np.float32),
            (True, "left", 1.0, np.int32),
        ]
    )
]


@pytest.mark.parametrize(("seed", "batch_first", "side", "value", "dtype"), PAD_GRID)
def test_pad_and_unpad_sequence_match_torch(seed, batch_first, side, value, dtype):
    rng = np.random.default_rng(seed)
    trailing = [(), (2,), (2, 3)][seed % 3]
    sequences = [
        (rng.normal(size=(n, *trailing)) * 4).astype(dtype) for n in rng.integers(1, 6, size=4)
    ]
    lengths = [len(s) for s in sequences]

    @jax.jit
    def ours(sequences):
        padded = rnn.pad_sequence(sequences, batch_first, value, side)
        return padded, rnn.unpad_sequence(padded, lengths, batch_first)

    got, back = ours(sequences)
    want = trnn.pad_sequence([torch.tensor(s) for s in sequences], batch_first, value, side)
    assert got.dtype == want.numpy().dtype
    np.testing.assert_array_equal(np.asarray(got), want.numpy())
    if side == "right":
        tback = trnn.unpad_sequence(want.clone(), torch.tensor(lengths), batch_first)
        for mine, theirs in zip(back, tback, strict=True):
            np.testing.assert_array_equal(np.asarray(mine), theirs.numpy())


def test_pad_sequence_of_one_array_and_mixed_dtypes_follow_torch():
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    # An array is the sequence of its rows, as torch iterates a tensor.
    np.testing.assert_array_equal(
        np.asarray(rnn.pad_sequence(rows)), trnn.pad_sequence(torch.tensor(rows)).numpy()
    )
    # The first sequence's dtype wins.
    mixed = [np.ones((2, 2), np.float32), np.full((1, 2), 2.5, np.float16)]
    got = rnn.pad_sequence(mixed)
    want = trnn.pad_sequence([torch.tensor(m) for m in mixed])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(got), want.numpy())


def test_gradients_through_pack_and_pad_match_torch():
    rng = np.random.default_rng(3)
    lengths = [2, 5, 3, 5]
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)  # batch_first, T = 6 > max length
    w_packed = rng.normal(size=(sum(lengths), 3)).astype(np.float32)
    w_padded = rng.normal(size=(4, 7, 3)).astype(np.float32)

    def ours(x):
        packed = rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        padded, _ = rnn.pad_packed_sequence(packed, True, padding_value=0.5, total_length=7)
        return jnp.sum(packed.data**2 * w_packed) + jnp.sum(jnp.tanh(padded) * w_padded)

    tx = torch.tensor(x, requires_grad=True)
    tpacked = trnn.pack_padded_sequence(tx, lengths, batch_first=True, enforce_sorted=False)
    tpadded, _ = trnn.pad_packed_sequence(tpacked, True, padding_value=0.5, total_length=7)
    tloss = (tpacked.data**2 * torch.tensor(w_packed)).sum() + (
        torch.tanh(tpadded) * torch.tensor(w_padded)
    ).sum()
    tloss.backward()
    loss, grad = jax.jit(jax.value_and_grad(ours))(jnp.asarray(x))
    np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), tx.grad.numpy(), rtol=1e-5, atol=1e-6)

    # pad_sequence / pack_sequence / unpack_sequence: gradients reach each sequence.
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (3, 1, 4)]
    w = rng.normal(size=(8, 2)).astype(np.float32)

    def ours_seq(seqs):
        packed = rnn.pack_sequence(seqs, enforce_sorted=False)
        back = rnn.unpack_sequence(packed)
        return jnp.sum(packed.data * w) + sum(jnp.sum(b**3) for b in back)

    tseqs = [torch.tensor(s, requires_grad=True) for s in seqs]
    tpacked = trnn.pack_sequence(tseqs, enforce_sorted=False)
    tloss = (tpacked.data * torch.tensor(w)).sum() + sum(
        (b**3).sum() for b in trnn.unpack_sequence(tpacked)
    )
    tloss.backward()
    grads = jax.jit(jax.grad(ours_seq))([jnp.asarray(s) for s in seqs])
    for g, t in zip(grads, tseqs, strict=True):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_packed_sequence_is_a_pytree_with_a_static_layout():
    x = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    packed = rnn.pack_padded_sequence(x, [2, 4, 1], enforce_sorted=False)
    leaves, _ = jax.tree_util.tree_flatten_with_path(packed)
    assert [jax.tree_util.keystr(p) for p, _ in leaves] == [".data"]
    traces = []

    @jax.jit
    def step(packed, scale):
        padded, lengths = rnn.pad_packed_sequence(packed, batch_first=True)
        traces.append(lengths)  # the layout is static inside jit: host ints here
        return packed._replace(data=packed.data * scale), padded

    out, padded = step(packed, 2.0)
    step(rnn.pack_padded_sequence(x + 1, [2, 4, 1], enforce_sorted=False), 3.0)
    assert len(traces) == 1  # same layout, new data: no retrace
    assert isinstance(traces[0], np.ndarray) and traces[0].tolist() == [2, 4, 1]
    step(rnn.pack_padded_sequence(x, [3, 4, 1], enforce_sorted=False), 2.0)
    assert len(traces) == 2  # a new layout is a new shape: one retrace
    assert isinstance(out, rnn.PackedSequence)
    np.testing.assert_array_equal(out.batch_sizes, [3, 2, 1, 1])
    np.testing.assert_array_equal(out.sorted_indices, [1, 0, 2])
    np.testing.assert_array_equal(np.asarray(out.data), 2 * np.asarray(packed.data))
    want, _ = trnn.pad_packed_sequence(
        trnn.pack_padded_sequence(torch.tensor(x), [2, 4, 1], enforce_sorted=False), True
    )
    np.testing.assert_array_equal(np.asarray(padded), want.numpy())

    # A named tuple, as torch's.
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    assert data is packed.data and batch_sizes is packed.batch_sizes
    assert sorted_indices is packed.sorted_indices and packed._fields[1] == "batch_sizes"
    np.testing.assert_array_equal(unsorted_indices, [1, 0, 2])
    # Packing inside jit with host lengths, and under vmap.
    jitted = jax.jit(lambda x: rnn.pack_padded_sequence(x, [4, 2, 1]).data)(x)
    np.testing.assert_array_equal(
        np.asarray(jitted), np.asarray(rnn.pack_padded_sequence(x, [4, 2, 1]).data)
    )
    stacked = np.stack([x, -x])
    batched = jax.vmap(lambda x: rnn.pack_padded_sequence(x, [4, 2, 1]).data)(stacked)
    np.testing.assert_array_equal(np.asarray(batched[1]), -np.asarray(jitted))


def test_traced_lengths_raise_and_static_lengths_work():
    x = jnp.ones((4, 2, 3))

    def f(x, lengths):
        return rnn.pack_padded_sequence(x, lengths).data.sum()

    with pytest.raises(jax.errors.ConcretizationTypeError, match="lengths must be concrete"):
        jax.jit(f)(x, jnp.array([4, 2]))
    with pytest.raises(TypeError, match="static_argnames"):
        jax.jit(f)(x, [jnp.array(4), 2])
    assert float(jax.jit(f, static_argnames="lengths")(x, lengths=(4, 2))) == 18.0
    with pytest.raises(jax.errors.ConcretizationTypeError, match="lengths must be concrete"):
        jax.jit(lambda p, n: rnn.unpad_sequence(p, n))(x, jnp.array([1, 2]))
    with pytest.raises(jax.errors.ConcretizationTypeError, match="batch_sizes must be concrete"):
        jax.jit(lambda d, b: rnn.PackedSequence(d, b).data)(jnp.ones((3, 1)), jnp.array([2, 1]))


def _raises_like_torch(ours: Any, theirs: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as expected:
        theirs()
    with pytest.raises(exc) as got:
        ours()
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    ("lengths", "enforce_sorted"),
    [
        ([2, 3, 1], True),
        ([3, 0, 0], True),
        ([3, 2, 0], False),
        ([3, 2], True),
        ([3, 2, 1, 1], True),
    ],
    ids=["unsorted", "zero", "zero-unsorted", "too-few", "too-many"],
)
def test_pack_errors_are_torchs(lengths, enforce_sorted):
    x = np.zeros((4, 3, 2), np.float32)
    _raises_like_torch(
        lambda: rnn.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted),
        lambda: trnn.pack_padded_sequence(torch.tensor(x), lengths, enforce_sorted=enforce_sorted),
        RuntimeError,
    )


def test_other_errors():
    x = np.zeros((4, 3, 2), np.float32)
    # torch 2.13 does not check this and packs memory past the end of the input.
    with pytest.raises(RuntimeError, match=r"a length \(5\) is larger than the padded length"):
        rnn.pack_padded_sequence(x, [5, 3, 1])
    with pytest.raises(RuntimeError, match=r"a length \(5\) is larger"):
        rnn.pack_padded_sequence(x.transpose(1, 0, 2), [1, 5, 3], True, enforce_sorted=False)
    _raises_like_torch(
        lambda: rnn.pack_padded_sequence(np.zeros((4, 0, 2)), []),
        lambda: trnn.pack_padded_sequence(torch.zeros(4, 0, 2), []),
        RuntimeError,
    )
    with pytest.raises(RuntimeError, match="'lengths' argument should be a 1D"):
        rnn.pack_padded_sequence(x, [[3, 2, 1]])
    with pytest.raises(IndexError, match="at least 2 dimensions"):
        rnn.pack_padded_sequence(np.zeros(4), [3])
    packed = rnn.pack_padded_sequence(x, [3, 2, 1])
    tpacked = trnn.pack_padded_sequence(torch.tensor(x), [3, 2, 1])
    _raises_like_torch(
        lambda: rnn.pad_packed_sequence(packed, total_length=2),
        lambda: trnn.pad_packed_sequence(tpacked, total_length=2),
        ValueError,
    )
    with pytest.raises(TypeError, match="expected a PackedSequence, but got ndarray"):
        rnn.pad_packed_sequence(x)
    seqs = [np.ones((2, 3)), np.ones((3, 2))]
    for ours, theirs in [
        (lambda: rnn.pad_sequence([]), lambda: trnn.pad_sequence([])),
        (lambda: rnn.pad_sequence(5), lambda: trnn.pad_sequence(5)),
        (
            lambda: rnn.pad_sequence([np.ones(2)], padding_side="middle"),
            lambda: trnn.pad_sequence([torch.ones(2)], padding_side="middle"),
        ),
        (lambda: rnn.pack_sequence([]), lambda: trnn.pack_sequence([])),
        (
            lambda: rnn.pack_sequence([np.ones(2), np.ones(3)]),
            lambda: trnn.pack_sequence([torch.ones(2), torch.ones(3)]),
        ),
    ]:
        _raises_like_torch(ours, theirs, RuntimeError)
    with pytest.raises(RuntimeError, match=r"sequences\[1\] has shape \(3, 2\)"):
        rnn.pad_sequence(seqs)
    with pytest.raises(RuntimeError, match=r"sequences\[0\] is 0-dimensional"):
        rnn.pad_sequence([np.float32(1.0)])
    with pytest.raises(ValueError, match="got 2 lengths for 3 sequences"):
        rnn.unpad_sequence(x, [1, 2])
    with pytest.raises(ValueError, match="batch_sizes sum to 3 rows, but data has shape"):
        rnn.PackedSequence(np.ones((4, 2)), [2, 1])
    with pytest.raises(ValueError, match="non-increasing positive ints"):
        rnn.PackedSequence(np.ones((3, 2)), [1, 2])


def test_packed_sequence_construction_methods_and_invert_permutation():
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    a = rnn.PackedSequence(data, [2, 1], [1, 0])
    b = rnn.PackedSequence((data, np.array([2, 1])), sorted_indices=np.array([1, 0]))
    t = torch.nn.utils.rnn.PackedSequence(
        torch.tensor(data), torch.tensor([2, 1]), torch.tensor([1, 0])
    )
    # A torch PackedSequence converts field by field (torch tensors read as arrays).
    for p in (a, b, rnn.PackedSequence(*t)):
        _assert_same_packed(p, t)
    half = a.to(jnp.float16)
    assert half.data.dtype == jnp.float16 and half.batch_sizes is a.batch_sizes
    assert a.byte().data.dtype == jnp.uint8
    assert a.to(jnp.float32) is a  # nothing to change: self, as torch
    on_cpu = a.to("cpu", torch.float16)
    assert on_cpu.data.dtype == jnp.float16 and on_cpu.data.devices() == {jax.devices("cpu")[0]}
    assert a.half().float().data.dtype == jnp.float32
    perm = np.array([3, 0, 2, 1])
    want = trnn.invert_permutation(torch.tensor(perm)).numpy()
    np.testing.assert_array_equal(rnn.invert_permutation(perm), want)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(rnn.invert_permutation)(jnp.asarray(perm))), want
    )
    assert rnn.invert_permutation(None) is None


def test_rnn_layer_helpers_round_trip():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 4, 3)).astype(np.float32)
    lengths = [2, 5, 1, 5]
    packed = rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    padded, got_lengths = rnn._padded_from_packed(packed)
    np.testing.assert_array_equal(got_lengths, lengths)  # the batch's original order
    mask = np.arange(5)[:, None] < got_lengths[None, :]
    np.testing.assert_array_equal(np.asarray(padded), np.where(mask[..., None], x, 0))
    # An "RNN" that maps each step: its packed output has the input's layout and torch's rows.
    out = rnn._packed_from_padded(jnp.tanh(padded) * 2, packed)
    want = trnn.pack_padded_sequence(torch.tanh(torch.tensor(x)) * 2, lengths, enforce_sorted=False)
    assert out.sorted_indices is packed.sorted_indices
    np.testing.assert_array_equal(out.batch_sizes, want.batch_sizes.numpy())
    np.testing.assert_allclose(np.asarray(out.data), want.data.numpy(), rtol=1e-6)
