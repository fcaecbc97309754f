"""``torch.nn.utils.rnn``: packed and padded batches of variable-length sequences.

torch's layout, values and errors: ``pack_padded_sequence(x, lengths).data`` holds the same rows
in the same (time-major) order as torch's, ``batch_sizes`` / ``sorted_indices`` /
``unsorted_indices`` are the same integers (as NumPy ``int64`` arrays, where torch has CPU
``int64`` tensors), ``pad_packed_sequence`` gives the same padded array and lengths, and
gradients flow through every function (each is one gather or pad, with indices computed on the
host).

**Lengths are static.** The lengths of the sequences fix the shapes: a packed batch holds
``sum(lengths)`` rows and ``pad_packed_sequence`` returns ``max(lengths)`` steps. JAX compiles
one program per shape, so lengths must be concrete host values: a Python list, a NumPy array,
a concrete ``jax.Array`` or a CPU torch tensor, and not a traced array inside ``jax.jit``. A
``PackedSequence`` is a pytree whose only leaf is ``data``; ``batch_sizes``,
``sorted_indices`` and ``unsorted_indices`` are part of its static tree structure, so a packed
batch passes in and out of ``jax.jit`` / ``jax.grad`` / ``jax.lax.scan`` with its layout
known at trace time, and ``pad_packed_sequence`` / ``unpack_sequence`` work on it inside
``jit``. A jitted function compiles once per distinct layout (as it does per distinct shape):
bucket the lengths, or keep a fixed padded length and a mask.

**What a mask expresses and what it cannot.** With static lengths every torch feature here is
a static gather, so packing, padding and their gradients match torch exactly. What cannot be
expressed is data-dependent *shapes*:

* lengths computed inside ``jit`` (traced) cannot decide how many rows ``.data`` has. The
  functions that need lengths raise a ``jax.errors.ConcretizationTypeError`` (a ``TypeError``)
  that says so. Instead pass the lengths as a static argument
  (``jax.jit(f, static_argnames="lengths")`` with a tuple), or keep the batch padded and use
  the traced lengths as data: mask the loss with ``jnp.arange(T)[:, None] < lengths[None, :]``,
  and read a unidirectional recurrent layer's result at each sequence's last step
  (``out[lengths - 1, jnp.arange(B)]``: a forward recurrence's output at step ``t`` does not
  depend on the padding after it). A reverse direction's ``h_n`` does depend on the padding:
  that needs static lengths.
* a ``PackedSequence`` cannot be built inside ``jit`` from traced ``batch_sizes`` (the same
  error).

Where torch reads past the end of its input (a length larger than the padded length ``T``,
which torch 2.13 does not check and packs from memory beyond the input), fparam raises a
``RuntimeError`` instead.

``sorted_indices`` follow torch's ``torch.sort(lengths, descending=True)`` on CPU, including
its order among equal lengths (torch's sort is not stable above 16 sequences; this module
replays its algorithm on the host), so ``.data`` matches torch row for row also with
``enforce_sorted=False`` and tied lengths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _convert

__all__ = [
    "PackedSequence",
    "invert_permutation",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]

# torch's messages (ATen's PackedSequence.cpp / PadSequence, torch/nn/utils/rnn.py), and
# fparam's where torch has none.
_EMPTY = "Cannot pack empty tensors."
_LENGTHS_RANK = "'lengths' argument should be a 1D CPU int64 tensor, but got {rank}D {what}"
_LENGTHS_COUNT = (
    "Expected `len(lengths)` to be equal to batch_size, but got {got} (batch_size={batch})"
)
_LENGTHS_POSITIVE = (
    "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0"
)
_LENGTHS_UNSORTED = (
    "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. You can "
    "pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to sidestep this "
    "requirement if you do not need ONNX exportability."
)
_LENGTHS_TOO_LONG = (
    "pack_padded_sequence: a length ({length}) is larger than the padded length of the input "
    "(T={steps}, input.shape={shape} with batch_first={batch_first}); every length must be at "
    "most T (torch does not check this and reads past the end of the input)"
)
_INPUT_RANK = (
    "pack_padded_sequence: input must have at least 2 dimensions ({layout} x *), but got a "
    "{rank}-D input of shape {shape}"
)
_TOTAL_LENGTH = (
    "Expected total_length to be at least the length of the longest sequence in input, but got "
    "total_length={total} and max sequence length being {longest}"
)
_NOT_PACKED = "{fn}: expected a PackedSequence, but got {type}"
_EMPTY_LIST = "received an empty list of sequences"
_NOT_ITERABLE = "pad_sequence: Expected iterable for input sequences, but got arg of type: {type}"
_PADDING_SIDE = "Expected padding_side to be one of left or right, but got {side}."
_SEQUENCE_RANK = (
    "pad_sequence: expected every sequence to have at least 1 dimension (L x *), but "
    "sequences[{index}] is 0-dimensional"
)
_TRAILING = (
    "pad_sequence: every sequence must have the trailing dimensions of sequences[0] {first}, "
    "but sequences[{index}] has shape {shape}"
)
_UNPAD_COUNT = (
    "unpad_sequence: expected one length per sequence, but got {got} lengths for {batch} sequences"
)
_BATCH_SIZES = (
    "PackedSequence: batch_sizes must be a 1-D sequence of non-increasing positive ints (the "
    "number of sequences at each step), but got {got}"
)
_DATA_ROWS = (
    "PackedSequence: batch_sizes sum to {total} rows, but data has shape {shape}. Instances of "
    "PackedSequence should be built by pack_padded_sequence or pack_sequence."
)
_TRACED = (
    "{fn}: {what} must be concrete (a Python list, a NumPy array, a concrete jax.Array or a CPU "
    "torch tensor) because it fixes the shapes of the result, but got a traced array inside a "
    "JAX transformation. Compute the lengths outside jit and pass them as a static argument "
    "(for example `jax.jit(f, static_argnames='lengths')` with a tuple of ints), or keep the "
    "batch padded and carry a mask (`jnp.arange(T)[:, None] < lengths[None, :]`) instead of "
    "packing it."
)


class _PackedSequenceFields(NamedTuple):
    data: jax.Array
    batch_sizes: np.ndarray
    sorted_indices: np.ndarray | None
    unsorted_indices: np.ndarray | None


class PackedSequence(_PackedSequenceFields):
    """torch's ``PackedSequence``: the rows of a batch of sequences, time step by time step.

    A named tuple ``(data, batch_sizes, sorted_indices, unsorted_indices)`` as in torch, and a
    JAX pytree whose only leaf is ``data`` (the other three fields are static, part of its tree
    structure: see the module docstring), so it passes through ``jax.jit``, ``jax.grad`` and
    ``jax.lax.scan`` and the recurrent layers accept it.

    Arguments:
        data: ``(sum(lengths), *)``: step 0 of every sequence (longest first), then step 1 of
            every sequence that has one, and so on.
        batch_sizes: how many sequences have each step (host ints, non-increasing).
        sorted_indices: the batch order ``data`` uses (``input[:, sorted_indices]`` was
            packed), or ``None`` when the batch was packed in its own order.
        unsorted_indices: the inverse permutation (computed from ``sorted_indices`` when not
            given).

    Build one with :func:`pack_padded_sequence` or :func:`pack_sequence` (torch's advice too).
    ``batch_sizes``, ``sorted_indices`` and ``unsorted_indices`` read back as NumPy ``int64``
    arrays (torch: CPU ``int64`` tensors).
    """

    def __new__(
        cls,
        data: Any,
        batch_sizes: Any = None,
        sorted_indices: Any = None,
        unsorted_indices: Any = None,
    ) -> PackedSequence:
        if batch_sizes is None:
            # torch's PackedSequence((data, batch_sizes), sorted_indices) spelling.
            if not (isinstance(data, list | tuple) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        sizes = _host_ints("PackedSequence", "batch_sizes", batch_sizes)
        if sizes.ndim != 1 or (sizes <= 0).any() or (np.diff(sizes) > 0).any():
            raise ValueError(_BATCH_SIZES.format(got=sizes.tolist()))
        if sorted_indices is not None:
            sorted_indices = _host_ints("PackedSequence", "sorted_indices", sorted_indices)
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        else:
            unsorted_indices = _host_ints("PackedSequence", "unsorted_indices", unsorted_indices)
        if not isinstance(data, jax.Array):
            data = jnp.asarray(data)
        if data.ndim < 1 or data.shape[0] != sizes.sum():
            raise ValueError(_DATA_ROWS.format(total=int(sizes.sum()), shape=tuple(data.shape)))
        return _make(data, _Layout.of(sizes, sorted_indices, unsorted_indices))

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """``data`` cast and/or moved, as torch's ``PackedSequence.to`` (``Tensor.to``'s
        arguments: a dtype, a device (a ``jax.Device``, a sharding, ``'cpu'``, ``'cuda'``,
        ...), both, or an array to match); ``self`` when nothing changes. The index fields are
        host arrays and stay as they are (torch keeps ``batch_sizes`` on the CPU too)."""
        device, dtype = _convert.parse_to(args, kwargs, method="PackedSequence.to", any_dtype=True)
        data = self.data
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        if device is not None:
            data = jax.device_put(data, device)
        if data is self.data:
            return self
        return self._replace(data=data)

    def float(self) -> PackedSequence:
        """``to(float32)``."""
        return self.to(jnp.float32)

    def double(self) -> PackedSequence:
        """``to(float64)`` (needs ``jax_enable_x64``)."""
        return self.to(np.float64)

    def half(self) -> PackedSequence:
        """``to(float16)``."""
        return self.to(jnp.float16)

    def long(self) -> PackedSequence:
        """``to(int64)`` (needs ``jax_enable_x64``)."""
        return self.to(np.int64)

    def int(self) -> PackedSequence:
        """``to(int32)``."""
        return self.to(jnp.int32)

    def short(self) -> PackedSequence:
        """``to(int16)``."""
        return self.to(jnp.int16)

    def char(self) -> PackedSequence:
        """``to(int8)``."""
        return self.to(jnp.int8)

    def byte(self) -> PackedSequence:
        """``to(uint8)``."""
        return self.to(jnp.uint8)


class _Layout:
    """The static part of a ``PackedSequence``: hashable (by value) pytree aux data holding the
    read-only host arrays, so unflattening rebuilds no array."""

    __slots__ = ("arrays", "key")

    def __init__(self, arrays: tuple[np.ndarray, np.ndarray | None, np.ndarray | None]):
        self.arrays = arrays
        self.key = tuple(None if a is None else tuple(a.tolist()) for a in arrays)

    @classmethod
    def of(cls, *arrays: np.ndarray | None) -> _Layout:
        frozen = []
        for a in arrays:
            if a is not None:
                a = np.array(a, dtype=np.int64)
                a.flags.writeable = False
            frozen.append(a)
        return cls((frozen[0], frozen[1], frozen[2]))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Layout) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"_Layout(batch_sizes={list(self.key[0] or ())}, sorted_indices={self.key[1]})"


def _make(data: Any, layout: _Layout) -> PackedSequence:
    # tuple.__new__ skips PackedSequence.__new__'s checks: JAX unflattens with placeholder leaves.
    seq = tuple.__new__(PackedSequence, (data, *layout.arrays))
    seq.__dict__["_layout"] = layout  # so that flattening does not rebuild it
    return seq


def _layout(seq: PackedSequence) -> _Layout:
    layout = seq.__dict__.get("_layout")
    if layout is None:  # built by _replace / _make, which bypass _make above
        layout = _Layout((seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices))
    return layout


def _unflatten(layout: _Layout, children: Sequence[Any]) -> PackedSequence:
    return _make(children[0], layout)


jax.tree_util.register_pytree_with_keys(
    PackedSequence,
    lambda seq: (((jax.tree_util.GetAttrKey("data"), seq.data),), _layout(seq)),
    _unflatten,  # type: ignore[arg-type]
    lambda seq: ((seq.data,), _layout(seq)),
)


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _host_ints(fn: str, what: str, value: Any) -> np.ndarray:
    """``value`` as a host ``int64`` array (floats truncate, as torch's ``.to(int64)``)."""
    if _is_traced(value):
        raise jax.errors.ConcretizationTypeError(value, _TRACED.format(fn=fn, what=what))
    if isinstance(value, list | tuple) and any(_is_traced(v) for v in value):
        traced = next(v for v in value if _is_traced(v))
        raise jax.errors.ConcretizationTypeError(traced, _TRACED.format(fn=fn, what=what))
    return np.asarray(value).astype(np.int64)


def invert_permutation(permutation: Any) -> Any:
    """The inverse of ``permutation`` (``None`` stays ``None``), as torch's
    ``invert_permutation``: ``out[permutation[i]] = i``. A NumPy array for a host permutation, a
    ``jax.Array`` for a JAX one (traced ones too)."""
    if permutation is None:
        return None
    if isinstance(permutation, jax.Array):
        return (
            jnp.zeros_like(permutation)
            .at[permutation]
            .set(jnp.arange(permutation.size, dtype=permutation.dtype))
        )
    permutation = np.asarray(permutation)
    out = np.empty_like(permutation)
    out[permutation] = np.arange(permutation.size, dtype=permutation.dtype)
    return out


def _torch_sort_descending(values: np.ndarray) -> np.ndarray:
    """The indices ``torch.sort(values, descending=True)`` returns on CPU.

    torch sorts (value, index) pairs with ``std::sort`` comparing values only; that sort is not
    stable, so among equal lengths its order is libstdc++'s introsort's, replayed here (a stable
    sort gives the same order when there are no ties or at most 16 values, where introsort is a
    plain insertion sort).
    """
    n = len(values)
    if n <= 16 or len(np.unique(values)) == n:
        return np.argsort(-values, kind="stable")
    v = values.tolist()
    a = list(range(n))

    def comp(i: int, j: int) -> bool:
        return v[i] > v[j]

    def push_heap(first: int, hole: int, top: int, value: int) -> None:
        parent = (hole - 1) // 2
        while hole > top and comp(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        a[first + hole] = value

    def adjust_heap(first: int, hole: int, length: int, value: int) -> None:
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if comp(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        push_heap(first, hole, top, value)

    def heap_sort(first: int, last: int) -> None:  # std::__partial_sort(first, last, last)
        length = last - first
        if length >= 2:
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, a[first + parent])
                if parent == 0:
                    break
                parent -= 1
        while last - first > 1:
            last -= 1
            value = a[last]
            a[last] = a[first]
            adjust_heap(first, 0, last - first, value)

    def partition_pivot(first: int, last: int) -> int:
        mid = first + (last - first) // 2
        x, y, z = first + 1, mid, last - 1
        if comp(a[x], a[y]):
            m = y if comp(a[y], a[z]) else (z if comp(a[x], a[z]) else x)
        elif comp(a[x], a[z]):
            m = x
        else:
            m = z if comp(a[y], a[z]) else y
        a[first], a[m] = a[m], a[first]
        lo, hi, pivot = first + 1, last, a[first]
        while True:
            while comp(a[lo], pivot):
                lo += 1
            hi -= 1
            while comp(pivot, a[hi]):
                hi -= 1
            if not lo < hi:
                return lo
            a[lo], a[hi] = a[hi], a[lo]
            lo += 1

    def introsort(first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            cut = partition_pivot(first, last)
            introsort(cut, last, depth)
            last = cut

    def linear_insert(i: int) -> None:
        value = a[i]
        while comp(value, a[i - 1]):
            a[i] = a[i - 1]
            i -= 1
        a[i] = value

    introsort(0, n, 2 * (n.bit_length() - 1))
    for i in range(1, n):  # __final_insertion_sort: guarded for the first 16, then unguarded
        if i < 16 and comp(a[i], a[0]):
            value = a[i]
            a[1 : i + 1] = a[0:i]
            a[0] = value
        else:
            linear_insert(i)
    return np.asarray(a, dtype=np.int64)


def _batch_sizes(sorted_lengths: np.ndarray) -> np.ndarray:
    steps = np.arange(int(sorted_lengths[0]))
    return (sorted_lengths[None, :] > steps[:, None]).sum(1).astype(np.int64)


def _packed_rows(batch_sizes: np.ndarray, sorted_indices: np.ndarray | None) -> tuple[Any, Any]:
    """(step, batch index) of each row of ``data``, in packed order: the static gather that
    packs a time-major padded batch (``padded[steps, batch]``)."""
    batch = int(batch_sizes[0]) if batch_sizes.size else 0
    steps, slots = np.nonzero(np.arange(batch)[None, :] < batch_sizes[:, None])
    rows = slots if sorted_indices is None else sorted_indices[slots]
    return steps.astype(np.int32), rows.astype(np.int32)


def pack_padded_sequence(
    input: Any,
    lengths: Any,
    batch_first: bool = False,
    enforce_sorted: bool = True,
) -> PackedSequence:
    """Pack a padded batch of variable-length sequences (torch's ``pack_padded_sequence``).

    Arguments:
        input: ``(T, B, *)``, or ``(B, T, *)`` with ``batch_first=True``; any dtype.
        lengths: the ``B`` lengths, concrete (a list, NumPy array, concrete ``jax.Array`` or
            CPU torch tensor; not a traced array: see the module docstring).
        batch_first: the layout of ``input``.
        enforce_sorted: when ``True``, ``lengths`` must be non-increasing (torch's error
            otherwise); when ``False`` the batch is sorted by length (torch's order) and
            ``sorted_indices`` records it.

    Returns:
        A :class:`PackedSequence` whose ``data`` has torch's rows in torch's order, with
        ``batch_sizes`` and the index fields as host ``int64`` arrays. Steps of a sequence past
        its length are dropped (they get zero gradient).

    Raises:
        RuntimeError: torch's errors (empty input, ``len(lengths) != B``, a length ``<= 0``,
            unsorted lengths with ``enforce_sorted=True``), and a length larger than ``T``.
        IndexError: ``input`` with fewer than 2 dimensions.
        jax.errors.ConcretizationTypeError: traced ``lengths``.
    """
    lengths = _host_ints("pack_padded_sequence", "lengths", lengths)
    if lengths.ndim != 1:
        raise RuntimeError(_LENGTHS_RANK.format(rank=lengths.ndim, what=f"shape {lengths.shape}"))
    x = input if isinstance(input, jax.Array) else jnp.asarray(input)
    if x.ndim < 2:
        layout = "B x T" if batch_first else "T x B"
        raise IndexError(_INPUT_RANK.format(layout=layout, rank=x.ndim, shape=tuple(x.shape)))
    sorted_indices = None
    if not enforce_sorted:
        sorted_indices = _torch_sort_descending(lengths)
        lengths = lengths[sorted_indices]
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    if x.size == 0:
        raise RuntimeError(_EMPTY)
    if lengths.shape[0] != batch:
        raise RuntimeError(_LENGTHS_COUNT.format(got=lengths.shape[0], batch=batch))
    if lengths[-1] <= 0:
        raise RuntimeError(_LENGTHS_POSITIVE)
    if (np.diff(lengths) > 0).any():
        raise RuntimeError(_LENGTHS_UNSORTED)
    if lengths[0] > steps:
        raise RuntimeError(
            _LENGTHS_TOO_LONG.format(
                length=int(lengths[0]), steps=steps, shape=tuple(x.shape), batch_first=batch_first
            )
        )
    batch_sizes = _batch_sizes(lengths)
    t, b = _packed_rows(batch_sizes, sorted_indices)
    data = x[b, t] if batch_first else x[t, b]
    return _make(data, _Layout.of(batch_sizes, sorted_indices, invert_permutation(sorted_indices)))


def _check_packed(fn: str, sequence: Any) -> PackedSequence:
    if not isinstance(sequence, PackedSequence):
        raise TypeError(_NOT_PACKED.format(fn=fn, type=type(sequence).__name__))
    return sequence


def _sorted_lengths(batch_sizes: np.ndarray) -> np.ndarray:
    """The lengths, longest first, that ``batch_sizes`` describes."""
    batch = int(batch_sizes[0]) if batch_sizes.size else 0
    return (batch_sizes[None, :] > np.arange(batch)[:, None]).sum(1).astype(np.int64)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: Any = 0.0,
    total_length: int | None = None,
) -> tuple[jax.Array, np.ndarray]:
    """Pad a packed batch back into one array (torch's ``pad_packed_sequence``).

    Arguments:
        sequence: a :class:`PackedSequence` (also a traced one inside ``jit``: its layout is
            static).
        batch_first: return ``(B, T, *)`` instead of ``(T, B, *)``.
        padding_value: the value of the steps past each sequence's length (cast to
            ``data``'s dtype, as torch).
        total_length: pad to this many steps instead of the longest length (a Python int).

    Returns:
        ``(padded, lengths)``: the padded batch in the order the batch had before packing, and
        the lengths in that order as a host NumPy ``int64`` array (torch: a CPU ``int64``
        tensor), concrete even inside ``jit``.

    Raises:
        ValueError: ``total_length`` shorter than the longest sequence (torch's message).
        TypeError: ``sequence`` is not a PackedSequence.
    """
    sequence = _check_packed("pad_packed_sequence", sequence)
    batch_sizes = sequence.batch_sizes
    steps = len(batch_sizes)
    if total_length is not None:
        total_length = int(_host_ints("pad_packed_sequence", "total_length", total_length))
        if total_length < steps:
            raise ValueError(_TOTAL_LENGTH.format(total=total_length, longest=steps))
        steps = total_length
    sorted_lengths = _sorted_lengths(batch_sizes)
    batch = len(sorted_lengths)
    # Output (t, j) reads row offsets[t] + s of data, where s is j's place in the sorted batch;
    # a step past the sequence's length reads the padding row appended at index len(data).
    slot = np.arange(batch) if sequence.unsorted_indices is None else sequence.unsorted_indices
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])[:-1]
    offsets = np.concatenate([offsets, np.zeros(steps - len(batch_sizes), np.int64)])
    t = np.arange(steps)[:, None]
    valid = t < sorted_lengths[slot][None, :]
    data = sequence.data
    index = np.where(valid, offsets[:, None] + slot[None, :], data.shape[0]).astype(np.int32)
    if batch_first:
        index = index.T
    fill = jnp.full((1, *data.shape[1:]), padding_value, dtype=data.dtype)
    padded = jnp.concatenate([data, fill])[index]
    return padded, sorted_lengths[slot]


def pad_sequence(
    sequences: Any,
    batch_first: bool = False,
    padding_value: Any = 0.0,
    padding_side: str = "right",
) -> jax.Array:
    """Stack variable-length sequences into one padded array (torch's ``pad_sequence``).

    Arguments:
        sequences: an iterable of ``(L_i, *)`` arrays with the same trailing dimensions (an
            array is read as the sequence of its rows, as torch reads a tensor).
        batch_first: return ``(B, T, *)`` instead of ``(T, B, *)``; ``T = max(L_i)``.
        padding_value: the value of the padded steps.
        padding_side: ``'right'`` (pad after each sequence) or ``'left'``.

    Returns:
        The padded batch, in the dtype of ``sequences[0]`` (the others are cast, as torch).

    Raises:
        RuntimeError: torch's errors (not an iterable, an empty list, a bad ``padding_side``),
            a 0-dimensional sequence, or trailing dimensions that differ from the first
            sequence's.
    """
    if padding_side not in ("left", "right"):
        raise RuntimeError(_PADDING_SIDE.format(side=padding_side))
    if not isinstance(sequences, Iterable):
        raise RuntimeError(_NOT_ITERABLE.format(type=type(sequences)))
    seqs = [s if isinstance(s, jax.Array) else jnp.asarray(s) for s in sequences]
    if not seqs:
        raise RuntimeError(_EMPTY_LIST)
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise RuntimeError(_SEQUENCE_RANK.format(index=i))
        if s.shape[1:] != seqs[0].shape[1:]:
            raise RuntimeError(
                _TRAILING.format(first=tuple(seqs[0].shape[1:]), index=i, shape=tuple(s.shape))
            )
    dtype = seqs[0].dtype
    sizes = np.array([s.shape[0] for s in seqs])
    longest = int(sizes.max())
    # One gather from all the rows and a padding row (fewer ops to compile than a pad each):
    # position (t, b) reads row starts[b] + t - gap[b], or the padding row.
    starts = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    gap = longest - sizes if padding_side == "left" else np.zeros_like(sizes)
    t = np.arange(longest)[:, None] - gap[None, :]
    valid = (t >= 0) & (t < sizes[None, :])
    index = np.where(valid, starts[None, :] + t, sizes.sum()).astype(np.int32)
    fill = jnp.full((1, *seqs[0].shape[1:]), padding_value, dtype=dtype)
    rows = jnp.concatenate([*(s.astype(dtype) for s in seqs), fill])
    return rows[index.T if batch_first else index]


def unpad_sequence(
    padded_sequences: Any,
    lengths: Any,
    batch_first: bool = False,
) -> list[jax.Array]:
    """Split a right-padded batch into its sequences (torch's ``unpad_sequence``).

    Arguments:
        padded_sequences: ``(T, B, *)``, or ``(B, T, *)`` with ``batch_first=True``.
        lengths: the ``B`` lengths, concrete (see the module docstring); a length past ``T``
            keeps all ``T`` steps and one ``<= 0`` gives an empty sequence, as torch's mask.
        batch_first: the layout of ``padded_sequences``.

    Returns:
        A list of ``B`` arrays of shape ``(L_i, *)``. Unlike torch's, ``padded_sequences`` is
        left as it was (torch transposes it in place when ``batch_first=False``).

    Raises:
        ValueError: not one length per sequence.
        jax.errors.ConcretizationTypeError: traced ``lengths``.
    """
    lengths = _host_ints("unpad_sequence", "lengths", lengths).reshape(-1)
    x = (
        padded_sequences
        if isinstance(padded_sequences, jax.Array)
        else jnp.asarray(padded_sequences)
    )
    if not batch_first:
        x = jnp.swapaxes(x, 0, 1)
    if len(lengths) != x.shape[0]:
        raise ValueError(_UNPAD_COUNT.format(got=len(lengths), batch=x.shape[0]))
    steps = x.shape[1]
    return [x[b, : int(np.clip(n, 0, steps))] for b, n in enumerate(lengths)]


def pack_sequence(sequences: Sequence[Any], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of variable-length sequences (torch's ``pack_sequence``:
    ``pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)``).

    Arguments:
        sequences: ``(L_i, *)`` arrays; longest first unless ``enforce_sorted=False``.
        enforce_sorted: as in :func:`pack_padded_sequence`.

    Returns:
        A :class:`PackedSequence`.
    """
    padded = pad_sequence(sequences)
    lengths = [jnp.shape(s)[0] for s in sequences]
    return pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[jax.Array]:
    """The sequences of a packed batch, in the order they had before packing (torch's
    ``unpack_sequence``): a list of ``(L_i, *)`` arrays."""
    packed = _check_packed("unpack_sequence", packed_sequences)
    batch_sizes = packed.batch_sizes
    sorted_lengths = _sorted_lengths(batch_sizes)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])[:-1]
    order = (
        np.arange(len(sorted_lengths))
        if packed.unsorted_indices is None
        else packed.unsorted_indices
    )
    # One gather of every sequence's rows, one after the other, then one split.
    rows = np.concatenate([offsets[: sorted_lengths[slot]] + slot for slot in order])
    sizes = np.cumsum(sorted_lengths[order])[:-1]
    return jnp.split(packed.data[rows.astype(np.int32)], sizes.tolist())


# The recurrent layers' side of packing (nn.RNN / nn.LSTM / nn.GRU accept a PackedSequence).
# A layer runs its time loop (lax.scan) over a padded, time-major batch with a mask, and packs
# its output again with the input's layout:
#
#     padded, lengths = _padded_from_packed(sequence)    # (T, B, *), (B,) host int64
#     mask = np.arange(padded.shape[0])[:, None] < lengths[None, :]   # (T, B), static
#     ... scan over padded; where mask[t, b] is False the state of b does not change ...
#     output = _packed_from_padded(out_padded, sequence)  # PackedSequence, same layout
#
# Both sides are in the batch's ORIGINAL order (the order before pack_padded_sequence sorted
# it), which is also the order of torch's h_0 / h_n for packed input (torch permutes h_0 by
# sorted_indices and h_n back by unsorted_indices), so a layer uses h_0 as given and returns h_n
# as computed, with no permutation. A reverse direction reads each sequence from its own last
# step: scan t = T-1 .. 0 keeping the initial state while t >= lengths[b]. The padded steps of
# ``out_padded`` are ignored (zero gradient) and ``output.data`` has torch's row order.


def _padded_from_packed(sequence: PackedSequence) -> tuple[jax.Array, np.ndarray]:
    """``(padded, lengths)``: ``padded`` is ``(T, B, *)`` time-major with zeros past each length,
    ``T = len(batch_sizes)``, in the batch's original order; ``lengths`` ``(B,)`` host ``int64``
    in the same order. Exactly ``pad_packed_sequence(sequence)``; see the comment above."""
    return pad_packed_sequence(sequence)


def _packed_from_padded(padded: jax.Array, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (``(T, B, *)`` time-major, original batch order, ``T >=
    len(like.batch_sizes)``; steps past each length ignored) with the layout of ``like``: the
    same ``batch_sizes``, ``sorted_indices`` and ``unsorted_indices``."""
    like = _check_packed("_packed_from_padded", like)
    t, b = _packed_rows(like.batch_sizes, like.sorted_indices)
    return _make(padded[t, b], _layout(like))
