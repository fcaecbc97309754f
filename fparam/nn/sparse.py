"""``Embedding`` and ``EmbeddingBag`` (``torch/nn/modules/sparse.py``).

Both hold one parameter, ``weight`` ``(num_embeddings, embedding_dim)``, drawn from ``N(0, 1)``
as torch does (on the host: building one compiles nothing), with the ``padding_idx`` row zeroed.

``max_norm``: torch renormalises the looked-up rows of ``weight`` in place during the forward,
outside autograd. fparam does the same, through the path BatchNorm's running statistics take
(DESIGN.md, rule 9): eagerly the module's ``weight`` changes in place; inside
``fparam.value_and_grad`` / ``fparam.grad`` / ``fparam.stateful`` the new weight is carried out
to the module they were given (so ``opt.step(model, grads)`` starts from the renormalised
weight, as torch's optimizer does). Anywhere else inside a trace (a plain ``jax.grad``, a
forward directly under ``jax.jit``) the update would be lost, so the forward raises
``BufferUpdateError`` saying what to write instead. The output and the gradients are torch's in
every case.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from fparam import _random, _state
from fparam._module import Module, Parameter, _is_tracer, _to_jax
from fparam.nn import _validation as V
from fparam.nn import init
from fparam.nn.functional import sparse as S

__all__ = ["Embedding", "EmbeddingBag"]

_WEIGHT_SHAPE = "Shape of weight does not match num_embeddings and embedding_dim"
_PRETRAINED_2D = "Embeddings parameter is expected to be 2-dimensional"
_RENORM_LOST = (
    "{cls}(max_norm={max_norm}) renormalises the looked-up rows of its weight in place (as "
    "torch does), but this forward runs inside a JAX transformation where the new weight cannot "
    "reach your model: the module is a copy made for the trace. Compute the loss with "
    "fparam.value_and_grad / fparam.grad (not jax.grad), which carry the new weight into the "
    "model you pass them (return it, e.g. `model, opt = opt.step(model, grads)`); for a forward "
    "with no gradient use `out = fparam.stateful(fn)(model, x)` and return `model`; or build "
    "the layer with max_norm=None and renormalise yourself."
)


def _initial_weight(
    key: Any, shape: tuple[int, int], dtype: Any, padding_idx: int | None
) -> jax.Array:
    """``N(0, 1)`` with the ``padding_idx`` row zeroed, as torch's ``reset_parameters``."""
    spec = jax.ShapeDtypeStruct(shape, dtype)
    weight = init.normal_(spec, key=_random.init_key(key))
    if padding_idx is None:
        return weight
    if _is_tracer(weight):
        return weight.at[padding_idx].set(0)
    # Zero the row on the host: `.at[].set` would compile a scatter for every new shape.
    host = np.array(weight)
    host[padding_idx] = 0
    return jax.device_put(host, weight.sharding)


def _given_weight(weight: Any, shape: tuple[int, int]) -> jax.Array:
    array = _to_jax(weight, "_weight")
    if tuple(array.shape) != shape:
        raise AssertionError(_WEIGHT_SHAPE)
    return array


class _EmbeddingBase(Module):
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    max_norm: float | None

    def _build_weight(
        self, owner: str, _weight: Any, requires_grad: bool, device: Any, dtype: Any, key: Any
    ) -> None:
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            dtype = V.resolve_dtype(owner, dtype)
            device = V.resolve_device(owner, device)
            weight = _initial_weight(key, shape, dtype, self.padding_idx)
            weight = V.place(weight, device)
        else:
            weight = _given_weight(_weight, shape)
        self.weight = Parameter(weight, requires_grad=requires_grad)

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw ``N(0, 1)`` again and zero the ``padding_idx`` row (in place; ``weight`` keeps
        its identity and device).

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shape = (self.num_embeddings, self.embedding_dim)
        self._set_values(weight=_initial_weight(key, shape, self.weight.dtype, self.padding_idx))

    def _store_renormed(self, new_weight: jax.Array | None) -> None:
        if new_weight is None:
            return
        try:
            self._update_buffers(weight=new_weight)
        except _state.BufferUpdateError:
            raise _state.BufferUpdateError(
                _RENORM_LOST.format(cls=type(self).__name__, max_norm=self.max_norm)
            ) from None


class Embedding(_EmbeddingBase):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``, like
    ``torch.nn.Embedding``.

    Arguments:
        num_embeddings: the number of rows.
        embedding_dim: the size of each row.
        padding_idx: a row that starts at zero and never receives a gradient (negative counts
            from the end; ``AssertionError`` outside the table, as torch).
        max_norm: renormalise each looked-up row whose ``norm_type``-norm exceeds it, in the
            weight itself (see the module docstring for how that works under JAX).
        norm_type: the p of the p-norm for ``max_norm`` (default 2).
        scale_grad_by_freq: divide each row's gradient by its index's count in the batch.
        sparse: accepted for torch compatibility; the gradient is dense in JAX.
        _weight: an initial ``(num_embeddings, embedding_dim)`` table (torch's private
            argument, used by ``from_pretrained``).
        _freeze: make ``weight`` a frozen parameter (``requires_grad=False``).
        device, dtype: placement and floating dtype of ``weight`` (see :class:`Linear`).
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    ``forward(input)``: integer indices of any shape -> ``input.shape + (embedding_dim,)``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Any = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        num_embeddings = V.check_size("Embedding", "num_embeddings", num_embeddings)
        embedding_dim = V.check_size("Embedding", "embedding_dim", embedding_dim)
        key = V.check_key("Embedding", key)
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = S._padding_idx(padding_idx, num_embeddings, S._PADDING_RANGE)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self._build_weight("Embedding", _weight, not _freeze, device, dtype, key)
        self.sparse = sparse

    def forward(self, input: jax.Array) -> jax.Array:
        input = S._indices("embedding", input)
        S._check_range(input, self.num_embeddings)
        out, new_weight = S._embedding(
            input,
            self.weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            bool(self.scale_grad_by_freq),
        )
        self._store_renormed(new_weight)
        return out

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        """An ``Embedding`` holding ``embeddings`` (2-D: rows are the table's entries), like
        torch's; ``freeze=True`` makes ``weight`` a frozen parameter (``requires_grad=False``).
        The ``padding_idx`` row is kept as given (not zeroed), as torch.
        """
        array = _to_jax(embeddings, "Embedding.from_pretrained")
        if array.ndim != 2:
            raise AssertionError(_PRETRAINED_2D)
        rows, cols = array.shape
        return cls(
            num_embeddings=rows,
            embedding_dim=cols,
            _weight=array,
            _freeze=freeze,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
        )


class EmbeddingBag(_EmbeddingBase):
    """Sums, means or maxima of bags of embeddings, like ``torch.nn.EmbeddingBag``.

    Arguments: as :class:`Embedding` (no ``_freeze``), and
        mode: ``'sum'``, ``'mean'`` (default) or ``'max'``.
        include_last_offset: ``offsets`` has one more entry, the end of the last bag.

    ``forward(input, offsets=None, per_sample_weights=None)``: a 2-D ``input`` ``(B, N)`` is
    ``B`` bags of ``N`` indices; a 1-D ``input`` is split into bags at ``offsets``; see
    :func:`fparam.nn.functional.embedding_bag`. Returns ``(B, embedding_dim)``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: Any = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        num_embeddings = V.check_size("EmbeddingBag", "num_embeddings", num_embeddings)
        embedding_dim = V.check_size("EmbeddingBag", "embedding_dim", embedding_dim)
        key = V.check_key("EmbeddingBag", key)
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.padding_idx = S._padding_idx(padding_idx, num_embeddings, S._BAG_PADDING_RANGE)
        self._build_weight("EmbeddingBag", _weight, True, device, dtype, key)
        self.mode = mode
        self.sparse = sparse
        self.include_last_offset = include_last_offset

    def forward(
        self,
        input: jax.Array,
        offsets: jax.Array | None = None,
        per_sample_weights: jax.Array | None = None,
    ) -> jax.Array:
        out, new_weight = S._embedding_bag(
            input,
            self.weight,
            offsets,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.mode,
            self.sparse,
            per_sample_weights,
            self.include_last_offset,
            self.padding_idx,
        )
        self._store_renormed(new_weight)
        return out

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings!r}, {self.embedding_dim!r}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm!r}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type!r}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq!r}"
        s += f", mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx!r}"
        return s

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> EmbeddingBag:
        """An ``EmbeddingBag`` holding ``embeddings`` (2-D), like torch's; ``freeze=True``
        makes ``weight`` a frozen parameter."""
        array = _to_jax(embeddings, "EmbeddingBag.from_pretrained")
        if array.ndim != 2:
            raise AssertionError(_PRETRAINED_2D)
        rows, cols = array.shape
        bag = cls(
            num_embeddings=rows,
            embedding_dim=cols,
            _weight=array,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            mode=mode,
            sparse=sparse,
            include_last_offset=include_last_offset,
            padding_idx=padding_idx,
        )
        bag.weight = Parameter(bag.weight, requires_grad=not freeze)
        return bag
