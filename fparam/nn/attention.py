"""``MultiheadAttention`` (``torch/nn/modules/activation.py``): a shell over
``F.multi_head_attention_forward``, with torch's parameters, initialisation and state_dict.

torch's "fast path" (``torch._native_multi_head_attention``, an inference-only kernel with the
same numerics) has no counterpart: every call runs the functional, which gives its outputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fparam import _random
from fparam._module import Module, Parameter
from fparam.nn import _validation as V
from fparam.nn import init
from fparam.nn.functional.attention import _canonical_mask, _none_or_dtype
from fparam.nn.functional.attention import multi_head_attention_forward as _mha_forward
from fparam.nn.linear import Linear

__all__ = ["MultiheadAttention", "NonDynamicallyQuantizableLinear"]

_SIZES = (
    "embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
    "num_heads={num_heads} instead"
)
_DIVISIBLE = "embed_dim must be divisible by num_heads"


class NonDynamicallyQuantizableLinear(Linear):
    """``torch.nn.modules.linear.NonDynamicallyQuantizableLinear``: a ``Linear`` under another
    class name (torch uses it for ``MultiheadAttention.out_proj``; the name shows in reprs)."""


class MultiheadAttention(Module):
    """Multi-head attention, like ``torch.nn.MultiheadAttention`` (same constructor, forward,
    parameters, initial distributions and ``state_dict`` keys in the same order).

    Arguments:
        embed_dim: model size ``E`` (> 0), split over the heads.
        num_heads: number of heads (> 0, dividing ``embed_dim``).
        dropout: dropout probability on the attention weights (training mode only).
        bias: in- and out-projection biases (``in_proj_bias``, ``out_proj.bias``).
        add_bias_kv: learn ``bias_k``/``bias_v`` ``(1, 1, E)``, appended to keys and values.
        add_zero_attn: append a zero key and value.
        kdim, vdim: key and value feature sizes (``None``: ``embed_dim``). When both equal
            ``embed_dim`` the projections are packed in ``in_proj_weight (3E, E)``; otherwise
            ``q_proj_weight (E, E)``, ``k_proj_weight (E, kdim)``, ``v_proj_weight (E, vdim)``
            (and ``in_proj_weight`` is registered as ``None``, as in torch).
        batch_first: inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.
        device, dtype: as for ``Linear``.
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    Initial values are torch's: ``xavier_uniform_`` in-projection weights, zero biases,
    ``xavier_normal_`` ``bias_k``/``bias_v``, and ``out_proj.weight`` from ``Linear``'s default.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(output, weights or None)`` as torch
    (see ``fparam.nn.functional.multi_head_attention_forward``). Dropout in training mode draws
    from fparam's key stream: under ``jit`` open ``with fparam.rng(key):`` around the call.

    Raises:
        ValueError: ``embed_dim`` or ``num_heads`` not positive (torch's message).
        AssertionError: ``embed_dim`` not divisible by ``num_heads`` (torch's type).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        owner = "MultiheadAttention"
        embed_dim = V.check_int(owner, "embed_dim", embed_dim)
        num_heads = V.check_int(owner, "num_heads", num_heads)
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(_SIZES.format(embed_dim=embed_dim, num_heads=num_heads))
        kdim = V.check_optional_int(owner, "kdim", kdim)
        vdim = V.check_optional_int(owner, "vdim", vdim)
        dtype = V.resolve_dtype(owner, dtype)
        device = V.resolve_device(owner, device)
        key = V.check_key(owner, key)
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != self.embed_dim:
            raise AssertionError(_DIVISIBLE)
        out_key, own_key = _random.split_key(_random.init_key(key))
        values = self._initial_values(own_key, bias, add_bias_kv, dtype)
        # Registration order is torch's: it fixes named_parameters() and state_dict() order.
        if not self._qkv_same_embed_dim:
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                setattr(self, name, Parameter(V.place(values[name], device)))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(V.place(values["in_proj_weight"], device))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        if bias:
            self.in_proj_bias = Parameter(V.place(values["in_proj_bias"], device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(
            embed_dim, embed_dim, bias=bias, device=device, dtype=dtype, key=out_key
        )
        if bias:
            self.out_proj._set_values(bias=values["out_proj.bias"])
        self.bias_k: Parameter | None
        self.bias_v: Parameter | None
        if add_bias_kv:
            self.bias_k = Parameter(V.place(values["bias_k"], device))
            self.bias_v = Parameter(V.place(values["bias_v"], device))
        else:
            self.bias_k = None
            self.bias_v = None
        self.add_zero_attn = add_zero_attn

    def _initial_values(
        self, key: Any, bias: bool, add_bias_kv: bool, dtype: Any
    ) -> dict[str, jax.Array]:
        """torch's ``_reset_parameters``, drawn on the host (no compilation)."""
        E = self.embed_dim
        keys = _random.split_key(key, 5)
        values: dict[str, jax.Array] = {}
        if self._qkv_same_embed_dim:
            spec = jax.ShapeDtypeStruct((3 * E, E), dtype)
            values["in_proj_weight"] = init.xavier_uniform_(spec, key=keys[0])
        else:
            shapes = {
                "q_proj_weight": (E, E),
                "k_proj_weight": (E, self.kdim),
                "v_proj_weight": (E, self.vdim),
            }
            for i, (name, shape) in enumerate(shapes.items()):
                spec = jax.ShapeDtypeStruct(shape, dtype)
                values[name] = init.xavier_uniform_(spec, key=keys[i])
        if bias:
            values["in_proj_bias"] = init.constant_((3 * E,), 0.0, dtype=dtype)
            values["out_proj.bias"] = init.constant_((E,), 0.0, dtype=dtype)
        if add_bias_kv:
            spec = jax.ShapeDtypeStruct((1, 1, E), dtype)
            values["bias_k"] = init.xavier_normal_(spec, key=keys[3])
            values["bias_v"] = init.xavier_normal_(spec, key=keys[4])
        return values

    def _reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's initial values again for the in-projection, its bias, ``out_proj.bias``
        and ``bias_k``/``bias_v`` (in place; ``out_proj.weight`` is kept, as in torch).

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        dtype = self.out_proj.weight.dtype
        values = self._initial_values(
            _random.init_key(key), self.in_proj_bias is not None, self.bias_k is not None, dtype
        )
        out_bias = values.pop("out_proj.bias", None)
        self._set_values(**values)
        if out_bias is not None:
            self.out_proj._set_values(bias=out_bias)

    def forward(
        self,
        query: jax.Array,
        key: jax.Array,
        value: jax.Array,
        key_padding_mask: jax.Array | None = None,
        need_weights: bool = True,
        attn_mask: jax.Array | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        is_batched = query.ndim == 3
        # torch canonicalises (and warns about mismatched mask types) here, before the
        # functional does it again on masks that are then both float.
        key_padding_mask = _canonical_mask(
            key_padding_mask,
            "key_padding_mask",
            _none_or_dtype(attn_mask),
            "attn_mask",
            query.dtype,
        )
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype, False)
        if self.batch_first and is_batched:
            # Keep torch's identities (self-attention: one projection matmul).
            if key is value:
                if query is key:
                    query = key = value = jnp.swapaxes(query, 0, 1)
                else:
                    query, key = jnp.swapaxes(query, 0, 1), jnp.swapaxes(key, 0, 1)
                    value = key
            else:
                query, key, value = (jnp.swapaxes(x, 0, 1) for x in (query, key, value))
        separate = not self._qkv_same_embed_dim
        out, weights = _mha_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            self.out_proj.weight,
            self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            use_separate_proj_weight=separate,
            q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight,
            v_proj_weight=self.v_proj_weight,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if self.batch_first and is_batched:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
