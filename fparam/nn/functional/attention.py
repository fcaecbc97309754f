"""Attention: ``scaled_dot_product_attention`` and ``multi_head_attention_forward``, torch 2.13's
formulas, shapes, mask rules, warnings and errors.

Which computation runs (``scaled_dot_product_attention``)
--------------------------------------------------------
* **Fused path**, ``jax.nn.dot_product_attention``: taken when the call has no dropout
  (``dropout_p == 0``), the value's head size equals the key's (JAX's function needs
  ``value.shape == key.shape``), key and value have the same number of heads, and the inputs
  are float32/float64 or an ``implementation`` is named (see half precision below), and, with
  ``implementation=None``, the default backend is not the CPU (XLA has no fused attention there,
  and JAX's function measured slower than the explicit path in a Transformer layer's train step:
  benchmarks/transformer_step.py; ``implementation='xla'`` still takes it). Leading batch
  dims are broadcast and flattened into JAX's single batch axis, heads become JAX's ``N`` axis
  (``enable_gqa``, and a single key/value head broadcast over the query heads, map to JAX's
  grouped-query attention: query head ``n`` reads key/value head ``n // (Hq // Hk)``, which is
  torch's ``repeat_interleave``). A bool ``attn_mask`` is passed as JAX's ``mask`` (``True`` =
  attend in both libraries), a float one as its ``bias``, ``is_causal`` as its ``is_causal``
  (a top-left aligned lower triangle for ``L != S`` in both). With ``implementation=None`` JAX
  picks its XLA lowering (the only choice today on CPU, and JAX's default on GPU too);
  ``implementation='cudnn'`` asks JAX for cuDNN's fused kernel on an NVIDIA GPU (half
  precision only; JAX raises for what cuDNN cannot do).
* **Explicit path** (``matmul`` / ``softmax`` / ``matmul``, torch's "math" reference): every
  other call (dropout, ``Ev != E``, key and value with different head counts under
  ``enable_gqa``, float16/bfloat16 inputs with ``implementation=None``).

Both paths give torch's CPU results, including for a query row whose every key is masked out:
torch 2.13 returns **zeros** there (its ``_safe_softmax``), where a plain softmax gives NaN and
JAX's function gives the mean of the values. Such rows are detected from the mask (static shape,
traced values) and zeroed; their gradients are zero, as in torch.

Half precision: torch's math path keeps float32 intermediates, and so does the explicit path
(measured: the same largest error against a float64 reference as torch, bfloat16 and float16).
JAX's XLA lowering rounds the probabilities to the input dtype before the value product (about
15% more error in bfloat16), and it is the same XLA computation as the explicit path, so with
``implementation=None`` half-precision calls take the explicit path; naming ``'xla'`` or
``'cudnn'`` takes the fused path (JAX 0.10's ``'xla'`` cannot compile float16 on CPU: its
``F16_F16_F32`` dot precision is refused there).

``multi_head_attention_forward`` follows torch's function line for line: the need-weights branch
computes the weights itself with a plain softmax (a fully masked row is NaN there, as in torch),
the other branch calls ``scaled_dot_product_attention``.

Keys: dropout draws from ``rng=`` (keyword only: torch's second positional parameter is already
named ``key``), else from fparam's key stream (``fparam.rng`` scope under a transformation).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from fparam._random import resolve_key
from fparam.nn import _validation as V
from fparam.nn.functional import _sharding as S
from fparam.nn.functional.dropout import dropout as _dropout
from fparam.nn.functional.linear import linear

__all__ = ["multi_head_attention_forward", "scaled_dot_product_attention"]

# --------------------------------------------------------------------------------------------
# Messages (torch's text where torch has one; the argument named where it does not)

_SDPA = "scaled_dot_product_attention()"
_SDPA_RANK = (
    "Expected query, key, and value to all be  at least 2 dimensional, but got query.dim: {q} "
    "key.dim: {k} and value.dim: {v} instead."
)
_SDPA_DTYPES = (
    "Expected query, key, and value to have the same dtype, but got query.dtype: {q} key.dtype: "
    "{k} and value.dtype: {v} instead."
)
_SDPA_NOT_FLOAT = (
    "scaled_dot_product_attention(): expected floating-point query, key and value, got {dtype}"
)
_SDPA_MASK_DTYPE = (
    "Expected attn_mask dtype to be bool or float or to match query dtype, but got "
    "attn_mask.dtype: {m} and  query.dtype: {q} instead."
)
_SDPA_CAUSAL_AND_MASK = (
    "_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True"
)
_SDPA_GQA = (
    "Number of heads in key and value must divide the number of heads in query "
    "(enable_gqa=True): got query heads {hq}, key heads {hk}, value heads {hv}"
)
_SDPA_GQA_RANK = (
    "scaled_dot_product_attention(): enable_gqa=True needs a heads dimension (-3) on query, key "
    "and value, got query.dim: {q} key.dim: {k} and value.dim: {v}"
)
_SDPA_EMBED = (
    "scaled_dot_product_attention(): query and key must have the same embedding size (last "
    "dim), got query of shape {q} and key of shape {k}"
)
_SDPA_SEQ = (
    "scaled_dot_product_attention(): key and value must have the same sequence length (dim -2), "
    "got key of shape {k} and value of shape {v}"
)
_SDPA_BATCH = (
    "scaled_dot_product_attention(): the batch dimensions of {a} {sa} and {b} {sb} do not "
    "broadcast: the size of tensor a ({x}) must match the size of tensor b ({y}) at "
    "non-singleton dimension {dim}"
)
_SDPA_MASK_SHAPE = (
    "scaled_dot_product_attention(): attn_mask of shape {m} does not broadcast to the attention "
    "weights' shape {w} (batch..., L, S)"
)
_DROPOUT_P = "dropout probability has to be between 0 and 1, but got {p}"
_BAD_IMPLEMENTATION = (
    "scaled_dot_product_attention(): implementation must be None, 'xla' or 'cudnn', got {value!r}"
)
_CUDNN_UNFUSED = (
    "scaled_dot_product_attention(): implementation='cudnn' needs a call the fused path takes "
    "(no dropout, value head size == key head size, as many key as value heads, no broadcast "
    "of the value's batch dims); this call takes the explicit path"
)

_MHA_Q_RANK = "query should be unbatched 2D or batched 3D tensor but received {ndim}-D query tensor"
_MHA_KV_BATCHED = (
    "For batched (3-D) `query`, expected `key` and `value` to be 3-D but found {k}-D and {v}-D "
    "tensors respectively"
)
_MHA_KPM_BATCHED = (
    "For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D but found "
    "{ndim}-D tensor instead"
)
_MHA_MASK_BATCHED = (
    "For batched (3-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
    "{ndim}-D tensor instead"
)
_MHA_KV_UNBATCHED = (
    "For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but found {k}-D and "
    "{v}-D tensors respectively"
)
_MHA_KPM_UNBATCHED = (
    "For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or 1-D but found "
    "{ndim}-D tensor instead"
)
_MHA_MASK_UNBATCHED = (
    "For unbatched (2-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
    "{ndim}-D tensor instead"
)
_MHA_MASK_UNBATCHED_3D = "Expected `attn_mask` shape to be {want} but got {got}"
_MASK_TYPE = "only bool and floating types of {name} are supported"
_MASK_MISMATCH = (
    "Support for mismatched {name} and {other} is deprecated. Use same type for both instead."
)
_NEED_MASK_FOR_CAUSAL = (
    "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
    "`generate_square_subsequent_mask` to create this mask."
)
_EMBED_CHECK = "was expecting embedding dimension of {want}, but got {got}"
_EMBED_DIVISIBLE = "embed_dim {embed_dim} not divisible by num_heads {num_heads}"
_KV_SEQ_BATCH = "key's sequence and batch dims {k} do not match value's {v}"
_KV_SHAPE = "key shape {k} does not match value shape {v}"
_NO_IN_PROJ = "use_separate_proj_weight is False but in_proj_weight is None"
_NO_SEPARATE = "use_separate_proj_weight is True but {name} is None"
_PROJ_SHAPE = "expecting {what} weights shape of {want}, but got {got}"
_PROJ_BIAS_SHAPE = "expecting {what} bias shape of {want}, but got {got}"
_MASK_2D = "The shape of the 2D attn_mask is {got}, but should be {want}."
_MASK_3D = "The shape of the 3D attn_mask is {got}, but should be {want}."
_BIAS_STATIC = "bias cannot be added to static {what}."
_BIAS_KV_PAIR = "bias_{a} is set but bias_{b} is None"
_STATIC_SIZE = "expecting static_{kv}.size({dim}) of {want}, but got {got}"
_KPM_SHAPE = "Expected key_padded_mask.shape[{dim}] to be {want}, but got {got}"


def _shape(x: Any) -> str:
    """A shape as torch prints it: ``torch.Size([2, 3])``."""
    return f"torch.Size([{', '.join(str(s) for s in x)}])"


def _broadcast_batch(
    a: tuple[int, ...], b: tuple[int, ...], names: tuple[str, str], shapes: tuple[Any, Any]
) -> tuple[int, ...]:
    """NumPy broadcasting of two batch shapes, with a message naming both arguments."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(
                _SDPA_BATCH.format(
                    a=names[0], sa=shapes[0], b=names[1], sb=shapes[1], x=x, y=y, dim=i
                )
            )
        out.append(y if x == 1 else x)
    return tuple(out)


def _mask_fits(mask: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether ``mask`` broadcasts *to* ``target`` (torch adds the mask in place)."""
    if len(mask) > len(target):
        return False
    return all(m in (1, t) for m, t in zip(mask[::-1], target[::-1]))


def _lift(x: jax.Array, ndim: int) -> jax.Array:
    """``x`` with leading unit dims up to ``ndim`` (NumPy's implicit rank promotion, spelled)."""
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def _check_dropout_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise RuntimeError(_DROPOUT_P.format(p=p))


def _dead_rows(mask: jax.Array) -> jax.Array:
    """``True`` for the query rows a mask fully excludes: all ``False`` (bool) or all ``-inf``."""
    if mask.dtype == jnp.bool_:
        return ~jnp.any(mask, axis=-1, keepdims=True)
    return jnp.all(mask == -jnp.inf, axis=-1, keepdims=True)


def scaled_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    attn_mask: jax.Array | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
    rng: jax.Array | None = None,
    implementation: Literal["xla", "cudnn"] | None = None,
) -> jax.Array:
    """``softmax(query @ key^T * scale + mask) @ value``, like
    ``torch.nn.functional.scaled_dot_product_attention`` (torch 2.13).

    Shapes, broadcasting and errors are torch's: ``query (*, Hq, L, E)``, ``key (*, H, S, E)``,
    ``value (*, H, S, Ev)``; any number of leading batch dims (broadcast between the three), or
    none (``(L, E)``). A bool ``attn_mask`` keeps the ``True`` positions; a float one (the
    query's dtype) is added to the scores; either broadcasts to ``(*, Hq, L, S)``. A query row
    with every key masked out gives zeros (torch's CPU result), with zero gradients. As
    documented by torch, ``attn_mask`` together with ``is_causal=True`` raises (torch's no-grad
    CPU kernel happens to accept it). See the module docstring for which lowering runs when.

    **Arguments:**

    - `query`, `key`, `value`: floating arrays of one dtype.
    - `attn_mask`: optional bool or float mask, broadcastable to the attention weights.
    - `dropout_p`: dropout probability on the attention weights, applied whenever it is > 0
      (as torch: pass ``0.0`` in eval mode).
    - `is_causal`: a top-left aligned lower-triangular mask (query ``i`` sees keys ``j <= i``).
    - `scale`: the score factor; ``None`` means ``1 / sqrt(E)``. Keyword-only, as
      ``enable_gqa`` (torch's positional parameters stop at ``is_causal``).
    - `enable_gqa`: grouped-query attention: key/value heads are repeated
      (``repeat_interleave``) to the query's head count, which they must divide.
    - `rng`: a JAX key for dropout (torch's ``key`` is the key *tensor*); ``None`` draws from
      fparam's key stream (``with fparam.rng(key):`` under ``jit``).
    - `implementation`: fparam's addition, passed to ``jax.nn.dot_product_attention`` on the
      fused path: ``None`` (JAX's choice, XLA), ``'xla'`` or ``'cudnn'``.

    **Returns:**

    An array ``(*, Hq, L, Ev)`` in the inputs' dtype.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        V.check_array(_SDPA, name, x)
    V.check_optional_array(_SDPA, "attn_mask", attn_mask)
    if implementation not in (None, "xla", "cudnn"):
        raise ValueError(_BAD_IMPLEMENTATION.format(value=implementation))
    q, k, v = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise RuntimeError(_SDPA_RANK.format(q=q.ndim, k=k.ndim, v=v.ndim))
    if not (q.dtype == k.dtype == v.dtype):
        raise RuntimeError(_SDPA_DTYPES.format(q=q.dtype, k=k.dtype, v=v.dtype))
    if not jnp.issubdtype(q.dtype, jnp.floating):
        raise RuntimeError(_SDPA_NOT_FLOAT.format(dtype=q.dtype))
    mask = None if attn_mask is None else jnp.asarray(attn_mask)
    if mask is not None and mask.dtype != jnp.bool_ and mask.dtype != q.dtype:
        raise RuntimeError(_SDPA_MASK_DTYPE.format(m=mask.dtype, q=q.dtype))
    if is_causal and mask is not None:
        raise RuntimeError(_SDPA_CAUSAL_AND_MASK)
    _check_dropout_p(dropout_p)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if k.shape[-1] != E:
        raise RuntimeError(_SDPA_EMBED.format(q=_shape(q.shape), k=_shape(k.shape)))
    if v.shape[-2] != S:
        raise RuntimeError(_SDPA_SEQ.format(k=_shape(k.shape), v=_shape(v.shape)))
    hq = hk = hv = 1
    if enable_gqa:
        if min(q.ndim, k.ndim, v.ndim) < 3:
            raise IndexError(_SDPA_GQA_RANK.format(q=q.ndim, k=k.ndim, v=v.ndim))
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        if hk == 0 or hv == 0 or hq % hk or hq % hv:
            raise RuntimeError(_SDPA_GQA.format(hq=hq, hk=hk, hv=hv))
    # The batch dims after the key/value heads are repeated to the query's head count.
    qb, kb, vb = q.shape[:-2], k.shape[:-2], v.shape[:-2]
    if enable_gqa:
        kb, vb = (*kb[:-1], hq), (*vb[:-1], hq)
    names = ("query", "key")
    wb = _broadcast_batch(qb, kb, names, (_shape(q.shape), _shape(k.shape)))
    ob = _broadcast_batch(wb, vb, ("query @ key", "value"), (_shape(wb), _shape(v.shape)))
    weights_shape = (*wb, L, S)
    if mask is not None and not _mask_fits(mask.shape, weights_shape):
        raise RuntimeError(_SDPA_MASK_SHAPE.format(m=_shape(mask.shape), w=_shape(weights_shape)))
    scale_value = 1.0 / math.sqrt(E) if scale is None else scale

    fused = (
        dropout_p == 0.0
        and v.shape[-1] == E
        and wb == ob
        and (not enable_gqa or hk == hv)
        and E > 0
        and S > 0
        and (implementation is not None or jnp.finfo(q.dtype).bits >= 32)
        and (implementation is not None or jax.default_backend() != "cpu")
    )
    if not fused:
        if implementation == "cudnn":
            raise ValueError(_CUDNN_UNFUSED)
        return _sdpa_explicit(q, k, v, mask, dropout_p, is_causal, scale_value, enable_gqa, rng)
    return _sdpa_fused(q, k, v, mask, is_causal, scale_value, wb, enable_gqa, implementation)


def _sdpa_explicit(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None,
    dropout_p: float,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    rng: jax.Array | None,
) -> jax.Array:
    """torch's math reference, with float32 intermediates for half-precision inputs."""
    dtype = q.dtype
    acc = jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else dtype
    q, k, v = q.astype(acc), k.astype(acc), v.astype(acc)
    if enable_gqa:
        hq = q.shape[-3]
        k = jnp.repeat(k, hq // k.shape[-3], axis=-3)
        v = jnp.repeat(v, hq // v.shape[-3], axis=-3)
    # Batch dims broadcast as torch's matmul does; ranks are lifted explicitly (fparam runs
    # under jax_numpy_rank_promotion='raise').
    nd = max(q.ndim, k.ndim, v.ndim)
    q, k, v = _lift(q, nd), _lift(k, nd), _lift(v, nd)
    scores = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) * jnp.asarray(scale, acc)
    L, S = scores.shape[-2:]
    neg_inf = jnp.asarray(-jnp.inf, acc)
    if is_causal:
        causal = jnp.arange(L)[:, None] >= jnp.arange(S)[None, :]
        scores = jnp.where(_lift(causal, nd), scores, neg_inf)
    if mask is not None:
        if mask.dtype == jnp.bool_:
            scores = jnp.where(_lift(mask, nd), scores, neg_inf)
        else:
            scores = scores + _lift(mask, nd).astype(acc)
    # torch's _safe_softmax: a row of -inf gives zeros. The row is replaced before the softmax
    # so that neither its value nor its gradient is NaN.
    dead = jnp.all(scores == neg_inf, axis=-1, keepdims=True)
    weights = jax.nn.softmax(jnp.where(dead, jnp.zeros((), acc), scores), axis=-1)
    weights = jnp.where(dead, jnp.zeros((), acc), weights)
    if dropout_p > 0.0:
        drop_key = None
        if dropout_p < 1.0:
            drop_key = resolve_key(rng, "F.scaled_dot_product_attention with dropout_p > 0")
        weights = _dropout(weights, dropout_p, True, key=drop_key)
    return jnp.matmul(weights, v).astype(dtype)


def _sdpa_fused(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None,
    is_causal: bool,
    scale: float,
    wb: tuple[int, ...],
    enable_gqa: bool,
    implementation: Literal["xla", "cudnn"] | None,
) -> jax.Array:
    """``jax.nn.dot_product_attention`` on torch's layout (see the module docstring)."""
    L, E = q.shape[-2:]
    S = k.shape[-2]
    unbatched = len(wb) == 0
    if unbatched:
        wb = (1,)
    lead, hq = wb[:-1], wb[-1]
    # Key/value heads: kept as JAX's grouped heads when they are fewer (GQA, or one head
    # broadcast over the query's), else broadcast to the query's.
    hk = k.shape[-3] if k.ndim >= 3 else 1
    grouped = (enable_gqa or hk == 1) and hk == (v.shape[-3] if v.ndim >= 3 else 1)
    hkv = hk if grouped else hq
    batch = math.prod(lead)

    def to_jax(x: jax.Array, heads: int, length: int) -> jax.Array:
        x = jnp.broadcast_to(x, (*lead, heads, length, E))
        return jnp.swapaxes(x.reshape(batch, heads, length, E), 1, 2)

    qj, kj, vj = to_jax(q, hq, L), to_jax(k, hkv, S), to_jax(v, hkv, S)
    bias = jmask = dead = None
    if mask is not None:
        m = mask.reshape((1,) * (len(wb) + 2 - mask.ndim) + mask.shape)
        dead = _dead_rows(m)
        if m.dtype != jnp.bool_:
            m = jnp.where(dead, jnp.zeros((), m.dtype), m)
        mlead = m.shape[:-3]
        if all(s == 1 for s in mlead):
            m = m.reshape((1, *m.shape[-3:]))
        else:
            m = jnp.broadcast_to(m, lead + m.shape[-3:]).reshape((batch, *m.shape[-3:]))
        if m.dtype == jnp.bool_:
            jmask = m
        else:
            bias = m
    # JAX's function promotes half-precision logits with jnp.promote_types, which fails under
    # jax_numpy_dtype_promotion='strict' (what fparam's tests and careful users run).
    with jax.numpy_dtype_promotion("standard"):
        out = jax.nn.dot_product_attention(
            qj,
            kj,
            vj,
            bias=bias,
            mask=jmask,
            scale=scale,
            is_causal=is_causal,
            implementation=implementation,
        )
    out = jnp.swapaxes(out, 1, 2).reshape((*lead, hq, L, E))
    if unbatched:
        out = out[0]
    if dead is not None:
        out = jnp.where(dead[0] if unbatched else dead, jnp.zeros((), out.dtype), out)
    return out


# --------------------------------------------------------------------------------------------
# multi_head_attention_forward


def _canonical_mask(
    mask: jax.Array | None,
    mask_name: str,
    other_type: Any,
    other_name: str,
    target_type: Any,
    check_other: bool = True,
    stacklevel: int = 3,
) -> jax.Array | None:
    """torch's ``F._canonical_mask``: a bool mask becomes a float mask of ``-inf`` / ``0``."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    is_float = jnp.issubdtype(mask.dtype, jnp.floating)
    if mask.dtype != jnp.bool_ and not is_float:
        raise AssertionError(_MASK_TYPE.format(name=mask_name))
    if check_other and other_type is not None and mask.dtype != other_type:
        warnings.warn(
            _MASK_MISMATCH.format(name=mask_name, other=other_name), stacklevel=stacklevel
        )
    if not is_float:
        mask = jnp.where(mask, jnp.asarray(-jnp.inf, target_type), jnp.zeros((), target_type))
    return mask


def _none_or_dtype(x: jax.Array | None) -> Any:
    return None if x is None else jnp.asarray(x).dtype


def _mha_shape_check(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    key_padding_mask: jax.Array | None,
    attn_mask: jax.Array | None,
    num_heads: int,
) -> bool:
    """torch's ``_mha_shape_check``: whether the input is batched, or its AssertionError."""
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise AssertionError(_MHA_KV_BATCHED.format(k=key.ndim, v=value.ndim))
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise AssertionError(_MHA_KPM_BATCHED.format(ndim=key_padding_mask.ndim))
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise AssertionError(_MHA_MASK_BATCHED.format(ndim=attn_mask.ndim))
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise AssertionError(_MHA_KV_UNBATCHED.format(k=key.ndim, v=value.ndim))
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise AssertionError(_MHA_KPM_UNBATCHED.format(ndim=key_padding_mask.ndim))
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise AssertionError(_MHA_MASK_UNBATCHED.format(ndim=attn_mask.ndim))
            if attn_mask.ndim == 3:
                want = (num_heads, query.shape[0], key.shape[0])
                if tuple(attn_mask.shape) != want:
                    raise AssertionError(
                        _MHA_MASK_UNBATCHED_3D.format(want=want, got=_shape(attn_mask.shape))
                    )
        return False
    raise AssertionError(_MHA_Q_RANK.format(ndim=query.ndim))


def _in_projection_packed(
    q: jax.Array, k: jax.Array, v: jax.Array, w: jax.Array, b: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """torch's packed in-projection: one matmul for self-attention (``q is k is v``), two for
    encoder-decoder attention (``k is v``), else three."""
    E = q.shape[-1]
    if k is v:
        if q is k:
            proj = linear(q, w, b)
            return proj[..., :E], proj[..., E : 2 * E], proj[..., 2 * E :]
        b_q = b_kv = None
        if b is not None:
            b_q, b_kv = b[:E], b[E:]
        q_proj = linear(q, w[:E], b_q)
        kv_proj = linear(k, w[E:], b_kv)
        return q_proj, kv_proj[..., :E], kv_proj[..., E:]
    ws = jnp.split(w, 3)
    bs: list[jax.Array | None] = [None] * 3 if b is None else list(jnp.split(b, 3))
    return linear(q, ws[0], bs[0]), linear(k, ws[1], bs[1]), linear(v, ws[2], bs[2])


def _in_projection(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    w_q: jax.Array,
    w_k: jax.Array,
    w_v: jax.Array,
    b_q: jax.Array | None,
    b_k: jax.Array | None,
    b_v: jax.Array | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """torch's separate in-projection, with its shape assertions."""
    Eq, Ek, Ev = q.shape[-1], k.shape[-1], v.shape[-1]
    for what, w, want in (
        ("query", w_q, (Eq, Eq)),
        ("key", w_k, (Eq, Ek)),
        ("value", w_v, (Eq, Ev)),
    ):
        if tuple(w.shape) != want:
            raise AssertionError(_PROJ_SHAPE.format(what=what, want=want, got=_shape(w.shape)))
    for what, b in (("query", b_q), ("key", b_k), ("value", b_v)):
        if b is not None and tuple(b.shape) != (Eq,):
            raise AssertionError(
                _PROJ_BIAS_SHAPE.format(what=what, want=(Eq,), got=_shape(b.shape))
            )
    return linear(q, w_q, b_q), linear(k, w_k, b_k), linear(v, w_v, b_v)


def _pad_last(mask: jax.Array) -> jax.Array:
    """``F.pad(mask, (0, 1))``: one more (zero: attend) key column."""
    return jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


def multi_head_attention_forward(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: jax.Array | None,
    in_proj_bias: jax.Array | None,
    bias_k: jax.Array | None,
    bias_v: jax.Array | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: jax.Array,
    out_proj_bias: jax.Array | None,
    training: bool = True,
    key_padding_mask: jax.Array | None = None,
    need_weights: bool = True,
    attn_mask: jax.Array | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: jax.Array | None = None,
    k_proj_weight: jax.Array | None = None,
    v_proj_weight: jax.Array | None = None,
    static_k: jax.Array | None = None,
    static_v: jax.Array | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    *,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """The forward of ``nn.MultiheadAttention``, like
    ``torch.nn.functional.multi_head_attention_forward`` (same arguments, same order).

    Inputs are sequence-first: ``query (L, N, E)``, ``key (S, N, Ek)``, ``value (S, N, Ev)``, or
    unbatched ``(L, E)`` / ``(S, Ek)`` / ``(S, Ev)``. torch's rules are kept: bool masks become
    ``-inf`` float masks (``True`` = masked out), a ``key_padding_mask`` whose dtype differs from
    ``attn_mask``'s warns; ``attn_mask`` is ``(L, S)`` or ``(N * num_heads, L, S)``;
    ``key_padding_mask`` ``(N, S)`` or ``(S,)``; ``bias_k``/``bias_v`` append one key/value,
    ``add_zero_attn`` one zero key/value (masks padded to match); ``is_causal`` is a hint that
    needs ``attn_mask`` and only replaces it when ``need_weights=False`` and there is no
    ``key_padding_mask`` (then the causal mask is used, whatever ``attn_mask`` holds, as in
    torch). With ``need_weights=True`` the weights are computed here with a plain softmax (a row
    with every key masked is NaN, as in torch); otherwise ``scaled_dot_product_attention`` runs
    (such a row is zero there, as in torch). Dropout (``dropout_p`` in training mode) draws from
    ``rng=``, else fparam's key stream.

    **Returns:**

    ``(attn_output, attn_weights)``: ``(L, N, E)`` (or ``(L, E)``), and the weights
    ``(N, L, S)`` averaged over heads (``(N, num_heads, L, S)`` with
    ``average_attn_weights=False``; no ``N`` unbatched), or ``None`` when
    ``need_weights=False``.
    """
    fn = "multi_head_attention_forward()"
    for name, x in (("query", query), ("key", key), ("value", value)):
        V.check_array(fn, name, x)
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    mesh = S.explicit_mesh(query, key, value)
    if mesh is not None:
        arrays = {
            "query": query,
            "key": None if key is query else key,
            "value": None if value is key else value,
            "in_proj_weight": in_proj_weight,
            "in_proj_bias": in_proj_bias,
            "bias_k": bias_k,
            "bias_v": bias_v,
            "out_proj_weight": out_proj_weight,
            "out_proj_bias": out_proj_bias,
            "key_padding_mask": key_padding_mask,
            "attn_mask": attn_mask,
            "q_proj_weight": q_proj_weight,
            "k_proj_weight": k_proj_weight,
            "v_proj_weight": v_proj_weight,
            "static_k": static_k,
            "static_v": static_v,
            "rng": rng,
        }
        options = {
            "embed_dim_to_check": embed_dim_to_check,
            "num_heads": num_heads,
            "add_zero_attn": add_zero_attn,
            "dropout_p": dropout_p,
            "training": training,
            "need_weights": need_weights,
            "use_separate_proj_weight": use_separate_proj_weight,
            "average_attn_weights": average_attn_weights,
            "is_causal": is_causal,
        }
        with S.within(mesh):
            return _explicit_mha(arrays, options)
    kpm = None if key_padding_mask is None else jnp.asarray(key_padding_mask)
    mask = None if attn_mask is None else jnp.asarray(attn_mask)
    is_batched = _mha_shape_check(query, key, value, kpm, mask, num_heads)
    if not is_batched:
        same_qk, same_kv = query is key, key is value
        query = query[:, None]
        key = query if same_qk else key[:, None]
        value = key if same_kv else value[:, None]
        if kpm is not None:
            kpm = kpm[None]
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]

    kpm = _canonical_mask(kpm, "key_padding_mask", _none_or_dtype(mask), "attn_mask", query.dtype)
    if is_causal and mask is None:
        raise RuntimeError(_NEED_MASK_FOR_CAUSAL)
    if is_causal and kpm is None and not need_weights:
        # The hint alone drives SDPA's causal mask.
        mask = None
    else:
        mask = _canonical_mask(mask, "attn_mask", None, "", query.dtype, check_other=False)
        if kpm is not None:
            is_causal = False

    if embed_dim != embed_dim_to_check:
        raise AssertionError(_EMBED_CHECK.format(want=embed_dim_to_check, got=embed_dim))
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(_EMBED_DIVISIBLE.format(embed_dim=embed_dim, num_heads=num_heads))
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(
                _KV_SEQ_BATCH.format(k=_shape(key.shape[:2]), v=_shape(value.shape[:2]))
            )
    elif key.shape != value.shape:
        raise AssertionError(_KV_SHAPE.format(k=_shape(key.shape), v=_shape(value.shape)))

    if not use_separate_proj_weight:
        if in_proj_weight is None:
            raise AssertionError(_NO_IN_PROJ)
        b = None if in_proj_bias is None else jnp.asarray(in_proj_bias)
        q, k, v = _in_projection_packed(query, key, value, jnp.asarray(in_proj_weight), b)
    else:
        for name, w in (
            ("q_proj_weight", q_proj_weight),
            ("k_proj_weight", k_proj_weight),
            ("v_proj_weight", v_proj_weight),
        ):
            if w is None:
                raise AssertionError(_NO_SEPARATE.format(name=name))
        assert q_proj_weight is not None and k_proj_weight is not None
        assert v_proj_weight is not None
        if in_proj_bias is None:
            b_q = b_k = b_v = None
        else:
            b_q, b_k, b_v = jnp.split(jnp.asarray(in_proj_bias), 3)
        q, k, v = _in_projection(
            query,
            key,
            value,
            jnp.asarray(q_proj_weight),
            jnp.asarray(k_proj_weight),
            jnp.asarray(v_proj_weight),
            b_q,
            b_k,
            b_v,
        )

    if mask is not None:
        if mask.ndim == 2:
            if tuple(mask.shape) != (tgt_len, src_len):
                raise RuntimeError(_MASK_2D.format(got=_shape(mask.shape), want=(tgt_len, src_len)))
            mask = mask[None]
        elif mask.ndim == 3:
            want = (bsz * num_heads, tgt_len, src_len)
            if tuple(mask.shape) != want:
                raise RuntimeError(_MASK_3D.format(got=_shape(mask.shape), want=want))
        else:
            raise RuntimeError(f"attn_mask's dimension {mask.ndim} is not supported")

    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError(_BIAS_STATIC.format(what="key"))
        if static_v is not None:
            raise AssertionError(_BIAS_STATIC.format(what="value"))
        bk, bv = jnp.asarray(bias_k), jnp.asarray(bias_v)
        k = jnp.concatenate([k, jnp.tile(bk, (1, bsz, 1))])
        v = jnp.concatenate([v, jnp.tile(bv, (1, bsz, 1))])
        if mask is not None:
            mask = _pad_last(mask)
        if kpm is not None:
            kpm = _pad_last(kpm)
    elif bias_k is not None:
        raise AssertionError(_BIAS_KV_PAIR.format(a="k", b="v"))
    elif bias_v is not None:
        raise AssertionError(_BIAS_KV_PAIR.format(a="v", b="k"))

    q = jnp.swapaxes(q.reshape(tgt_len, bsz * num_heads, head_dim), 0, 1)
    for kv, static in (("k", static_k), ("v", static_v)):
        if static is None:
            continue
        static = jnp.asarray(static)
        if static.shape[0] != bsz * num_heads:
            raise AssertionError(
                _STATIC_SIZE.format(kv=kv, dim=0, want=bsz * num_heads, got=static.shape[0])
            )
        if static.shape[2] != head_dim:
            raise AssertionError(
                _STATIC_SIZE.format(kv=kv, dim=2, want=head_dim, got=static.shape[2])
            )
    if static_k is None:
        k = jnp.swapaxes(k.reshape(k.shape[0], bsz * num_heads, head_dim), 0, 1)
    else:
        k = jnp.asarray(static_k)
    if static_v is None:
        v = jnp.swapaxes(v.reshape(v.shape[0], bsz * num_heads, head_dim), 0, 1)
    else:
        v = jnp.asarray(static_v)

    if add_zero_attn:
        k = jnp.concatenate([k, jnp.zeros((bsz * num_heads, 1, head_dim), k.dtype)], axis=1)
        v = jnp.concatenate([v, jnp.zeros((bsz * num_heads, 1, head_dim), v.dtype)], axis=1)
        if mask is not None:
            mask = _pad_last(mask)
        if kpm is not None:
            kpm = _pad_last(kpm)

    src_len = k.shape[1]
    if kpm is not None:
        for dim, size in ((0, bsz), (1, src_len)):
            if kpm.shape[dim] != size:
                raise AssertionError(_KPM_SHAPE.format(dim=dim, want=size, got=kpm.shape[dim]))
        kpm = jnp.broadcast_to(kpm.reshape(bsz, 1, 1, src_len), (bsz, num_heads, 1, src_len))
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        mask = kpm if mask is None else mask + kpm

    if not training:
        dropout_p = 0.0

    if need_weights:
        E = q.shape[-1]
        q_scaled = q * math.sqrt(1.0 / float(E))
        scores = jnp.matmul(q_scaled, jnp.swapaxes(k, -2, -1))
        if mask is not None:
            scores = mask + scores
        weights = jax.nn.softmax(scores, axis=-1)
        if dropout_p > 0.0:
            drop_key = None
            if dropout_p < 1.0:
                drop_key = resolve_key(rng, "nn.MultiheadAttention with dropout in training mode")
            weights = _dropout(weights, dropout_p, True, key=drop_key)
        out = jnp.matmul(weights, v)
        out = jnp.swapaxes(out, 0, 1).reshape(tgt_len * bsz, embed_dim)
        out = linear(out, jnp.asarray(out_proj_weight), _optional(out_proj_bias))
        out = out.reshape(tgt_len, bsz, out.shape[1])
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(axis=1)
        if not is_batched:
            out, weights = out[:, 0], weights[0]
        return out, weights

    if mask is not None:
        if mask.shape[0] == 1 and mask.ndim == 3:
            mask = mask[None]
        else:
            mask = mask.reshape(bsz, num_heads, -1, src_len)
    q = q.reshape(bsz, num_heads, tgt_len, head_dim)
    k = k.reshape(bsz, num_heads, src_len, head_dim)
    v = v.reshape(bsz, num_heads, src_len, head_dim)
    drop_key = None
    if 0.0 < dropout_p < 1.0:
        drop_key = resolve_key(rng, "nn.MultiheadAttention with dropout in training mode")
    out = scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, rng=drop_key)
    out = jnp.transpose(out, (2, 0, 1, 3)).reshape(bsz * tgt_len, embed_dim)
    out = linear(out, jnp.asarray(out_proj_weight), _optional(out_proj_bias))
    out = out.reshape(tgt_len, bsz, out.shape[1])
    if not is_batched:
        out = out[:, 0]
    return out, None


def _explicit_mha(
    arrays: dict[str, Any], options: dict[str, Any]
) -> tuple[jax.Array, jax.Array | None]:
    """``multi_head_attention_forward`` on an Explicit mesh, by the rule of ``_sharding``.

    The output keeps the query's sequence and batch sharding and takes ``out_proj_weight``'s
    dim-0 sharding on its features, less the axes the inputs use; the attention weights keep
    the query's batch and sequence sharding. Weights sharded over the inputs' axes are gathered
    first (FSDP); the head reshapes and matmuls run with the axes in Auto mode. ``key is query``
    and ``value is key`` are kept inside, so self-attention stays one packed projection.
    """
    query = arrays["query"]
    inputs = [a for a in (query, arrays["key"], arrays["value"]) if a is not None]
    used = S.used_axes(e for x in inputs for e in S.spec(x))
    gathered = dict(arrays)
    for name in ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"):
        gathered[name] = S.gather_used(_optional(arrays[name]), used)
    for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
        gathered[name] = S.gather_used(_optional(arrays[name]), used)
    qs = S.spec(query)
    out_w = _optional(gathered["out_proj_weight"])
    feature = None if out_w is None or out_w.ndim != 2 else S.without(S.spec(out_w)[0], used)
    if query.ndim == 3:
        length, batch = qs[0], qs[1]
        out = P(length, batch, feature)
        averaged = options["average_attn_weights"]
        weights = P(batch, length, None) if averaged else P(batch, None, length, None)
    else:
        out = P(qs[0], feature)
        weights = P(qs[0], None) if options["average_attn_weights"] else P(None, qs[0], None)
    weights_spec = weights if options["need_weights"] else None

    def body(a: dict[str, Any]) -> tuple[jax.Array, jax.Array | None]:
        q = a["query"]
        k = q if a["key"] is None else a["key"]
        v = k if a["value"] is None else a["value"]
        rest = {n: x for n, x in a.items() if n not in ("query", "key", "value")}
        return multi_head_attention_forward(q, k, v, **rest, **options)

    return S.in_auto(body, (out, weights_spec), gathered)


def _optional(x: jax.Array | None) -> jax.Array | None:
    return None if x is None else jnp.asarray(x)
