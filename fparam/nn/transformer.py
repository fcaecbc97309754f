"""The Transformer family (``torch/nn/modules/transformer.py``): ``TransformerEncoderLayer``,
``TransformerDecoderLayer``, ``TransformerEncoder``, ``TransformerDecoder``, ``Transformer``.

Same constructor signatures, submodule names, ``state_dict`` keys and orders, masks and errors as
torch; the attention itself is :class:`fparam.nn.MultiheadAttention`. What differs, and why:

* ``is_causal=None`` (torch's "detect a causal mask") is read as ``False``: torch detects by
  comparing the mask's values with a causal mask, a host sync that cannot happen under ``jit``.
  The hint only lets torch pick a faster kernel; the mask is applied either way, so the outputs
  are the same.
* ``enable_nested_tensor``: JAX has no nested tensors. torch's nested path (eval mode, no
  autograd recording, batched ``batch_first`` input, a ``src_key_padding_mask`` and no ``mask``)
  returns exact zeros at the padded positions (before the final ``norm``); everywhere else it
  computes what the plain path computes. fparam's eval-mode ``TransformerEncoder`` does the same
  under the same conditions (with ``mask_check``, only when the padding is left-aligned, checked
  on device without a host sync), so its outputs equal torch's under ``torch.no_grad()`` /
  ``torch.inference_mode()``, the way eval-mode models are run. (torch with autograd recording
  skips the nested path and computes the padded positions too.)
* A ``TransformerDecoder`` (so also ``Transformer``) built from a ``TransformerDecoderLayer``
  whose ``activation`` is a module computes ReLU in every layer, as torch's does: torch's deep
  copy runs the layer's ``__setstate__``, which hides the module behind a plain ``F.relu``
  attribute. fparam does the same (checkpoints trained in torch expect it) and warns.
* Dropout draws keys from fparam's key stream (``fparam.manual_seed``) eagerly and from the key
  in scope (``with fparam.rng(key):``) under a transformation, as every fparam dropout.
* ``key=`` (keyword only) gives the initial values' key; without it layers draw from fparam's
  default stream, as torch's from its global generator.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam import _random
from fparam._module import Module, _note_owner
from fparam.nn import _validation as V
from fparam.nn import functional as F
from fparam.nn import init
from fparam.nn.activation import GELU, ReLU
from fparam.nn.attention import MultiheadAttention
from fparam.nn.containers import ModuleList
from fparam.nn.dropout import Dropout
from fparam.nn.functional.attention import _canonical_mask, _none_or_dtype
from fparam.nn.linear import Linear
from fparam.nn.normalization import LayerNorm

__all__ = [
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

# torch's messages (RuntimeError unless said otherwise).
_BAD_ACTIVATION = "activation should be relu/gelu, not {activation}"
_NOT_CALLABLE = (
    "{owner}: argument 'activation' must be 'relu', 'gelu' or a callable (a function or a "
    "module), got {type} (activation={value!r})"
)
_DECODER_COPY_RELU = (
    "TransformerDecoder: the layers' activation module {activation} is not what they compute: "
    "like torch's copies of a TransformerDecoderLayer, they apply F.relu (torch's "
    "__setstate__ hides an activation module when it deep-copies the layer). Pass "
    "activation='gelu' or a function to the layer to get another activation."
)
_BATCH_MISMATCH = "the batch number of src and tgt must be equal"
_FEATURE_MISMATCH = "the feature number of src and tgt must be equal to d_model"

_Activation = str | Callable[[jax.Array], jax.Array]


def _get_activation_fn(activation: str) -> Callable[[jax.Array], jax.Array]:
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise RuntimeError(_BAD_ACTIVATION.format(activation=activation))


def _activation(owner: str, activation: Any) -> Callable[[jax.Array], jax.Array]:
    if isinstance(activation, str):
        return _get_activation_fn(activation)
    if not callable(activation):
        raise TypeError(
            _NOT_CALLABLE.format(owner=owner, type=type(activation).__name__, value=activation)
        )
    return activation  # type: ignore[no-any-return]


def _sub_keys(owner: str, key: Any, num: int) -> list[Any]:
    """``num`` keys for the sublayers (split on the host: no compile), or ``None`` each."""
    key = V.check_key(owner, key)
    if key is None:
        return [None] * num
    return _random.split_key(key, num)


def _relu_or_gelu(activation: Any) -> int:
    """torch's ``activation_relu_or_gelu``: 1 for relu, 2 for gelu (function or module)."""
    if activation is F.relu or isinstance(activation, ReLU):
        return 1
    if activation is F.gelu or isinstance(activation, GELU):
        return 2
    return 0


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, like ``torch.nn.TransformerEncoderLayer``.

    ``x + dropout1(self_attn(x))`` then ``x + dropout2(linear2(dropout(activation(linear1(x)))))``,
    each followed by ``norm1`` / ``norm2`` (``norm_first=False``, the original Transformer) or
    applied to the normalised input (``norm_first=True``).

    Arguments:
        d_model: features of the input (``E``).
        nhead: attention heads (must divide ``d_model``).
        dim_feedforward: hidden size of the feed-forward network.
        dropout: drop probability of every dropout (attention weights included).
        activation: ``"relu"``, ``"gelu"`` (anything else: torch's ``RuntimeError``), or a
            callable: a function (static, like ``F.silu``) or a module (then a child named
            ``activation``, as in torch).
        layer_norm_eps: ``eps`` of both ``LayerNorm``.
        batch_first: inputs ``(N, S, E)`` instead of ``(S, N, E)``.
        norm_first: pre-norm instead of post-norm.
        bias: biases of the ``Linear`` and ``LayerNorm`` layers and of the attention.
        device, dtype: as :class:`fparam.nn.Linear`.
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: ``src`` is
    ``(S, E)`` (unbatched), ``(S, N, E)`` or ``(N, S, E)``; ``src_mask`` ``(S, S)`` or
    ``(N*nhead, S, S)``; ``src_key_padding_mask`` ``(N, S)`` (``(S,)`` unbatched). Bool masks
    are ``True`` where attention is *not* allowed; float masks are added to the scores.
    Returns an array shaped like ``src``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: _Activation = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__()
        activation = _activation("TransformerEncoderLayer", activation)
        k_attn, k1, k2 = _sub_keys("TransformerEncoderLayer", key, 3)
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(
            d_model,
            nhead,
            dropout=dropout,
            bias=bias,
            batch_first=batch_first,
            key=k_attn,
            **factory,
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, key=k1, **factory)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, key=k2, **factory)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation_relu_or_gelu = _relu_or_gelu(activation)
        self.activation = activation

    def forward(
        self,
        src: jax.Array,
        src_mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        is_causal: bool = False,
    ) -> jax.Array:
        src_key_padding_mask = _canonical_mask(
            src_key_padding_mask,
            "src_key_padding_mask",
            _none_or_dtype(src_mask),
            "src_mask",
            src.dtype,
        )
        src_mask = _canonical_mask(src_mask, "src_mask", None, "", src.dtype, check_other=False)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(
        self,
        x: jax.Array,
        attn_mask: jax.Array | None,
        key_padding_mask: jax.Array | None,
        is_causal: bool = False,
    ) -> jax.Array:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=bool(is_causal),
        )[0]
        return self.dropout1(x)  # type: ignore[no-any-return]

    def _ff_block(self, x: jax.Array) -> jax.Array:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)  # type: ignore[no-any-return]


class TransformerDecoderLayer(Module):
    """Self-attention, cross-attention over ``memory`` and a feed-forward network, like
    ``torch.nn.TransformerDecoderLayer`` (children ``self_attn``, ``multihead_attn``,
    ``linear1``, ``dropout``, ``linear2``, ``norm1..3``, ``dropout1..3``).

    Arguments: as :class:`TransformerEncoderLayer`.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``: ``tgt``
    ``(T, E)`` / ``(T, N, E)`` / ``(N, T, E)``, ``memory`` likewise with ``S``; ``tgt_mask``
    ``(T, T)``, ``memory_mask`` ``(T, S)``; key padding masks ``(N, T)`` and ``(N, S)``.
    Returns an array shaped like ``tgt``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: _Activation = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__()
        activation = _activation("TransformerDecoderLayer", activation)
        k_self, k_cross, k1, k2 = _sub_keys("TransformerDecoderLayer", key, 4)
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(
            d_model,
            nhead,
            dropout=dropout,
            batch_first=batch_first,
            bias=bias,
            key=k_self,
            **factory,
        )
        self.multihead_attn = MultiheadAttention(
            d_model,
            nhead,
            dropout=dropout,
            batch_first=batch_first,
            bias=bias,
            key=k_cross,
            **factory,
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, key=k1, **factory)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, key=k2, **factory)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = activation
        # What forward calls instead of `activation` when set (see TransformerDecoder).
        self._forward_activation: Callable[[jax.Array], jax.Array] | None = None

    def forward(
        self,
        tgt: jax.Array,
        memory: jax.Array,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(
                self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal
            )
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(
                x
                + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            )
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(
        self,
        x: jax.Array,
        attn_mask: jax.Array | None,
        key_padding_mask: jax.Array | None,
        is_causal: bool = False,
    ) -> jax.Array:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=bool(is_causal),
            need_weights=False,
        )[0]
        return self.dropout1(x)  # type: ignore[no-any-return]

    def _mha_block(
        self,
        x: jax.Array,
        mem: jax.Array,
        attn_mask: jax.Array | None,
        key_padding_mask: jax.Array | None,
        is_causal: bool = False,
    ) -> jax.Array:
        x = self.multihead_attn(
            x,
            mem,
            mem,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=bool(is_causal),
            need_weights=False,
        )[0]
        return self.dropout2(x)  # type: ignore[no-any-return]

    def _ff_block(self, x: jax.Array) -> jax.Array:
        activation = self._forward_activation or self.activation
        x = self.linear2(self.dropout(activation(self.linear1(x))))
        return self.dropout3(x)  # type: ignore[no-any-return]


def _clone(module: Module) -> Module:
    """``copy.deepcopy(module)`` with each array copied by ``device_put`` (a deep copy of a JAX
    array compiles a copy kernel per shape), each copy registered as its module's value."""
    memo: dict[int, Any] = {}
    for sub in module.modules():
        for value in sub.__dict__.values():
            if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
                memo[id(value)] = jax.device_put(value, value.sharding, may_alias=False)
    clone = copy.deepcopy(module, memo)
    for sub in clone.modules():
        for name, value in sub.__dict__.items():
            if isinstance(value, jax.Array):
                # So that `nn.init.normal_(encoder.layers[0].linear1.weight)` writes into
                # this copy, as torch's in-place initialisation does.
                _note_owner(value, sub, name)
    return clone


def _get_clones(module: Module, n: int) -> ModuleList:
    # torch deep-copies: every layer has its own parameters, equal at first.
    return ModuleList([_clone(module) for _ in range(n)])


def _why_not_nested(layer: Any) -> str:
    """torch's construction-time reasons for not taking the nested-tensor path ('' if none)."""
    if not isinstance(layer, TransformerEncoderLayer):
        return "encoder_layer was not TransformerEncoderLayer"
    attn = layer.self_attn
    if layer.norm_first:
        return "encoder_layer.norm_first was True"
    if not attn.batch_first:
        return "encoder_layer.self_attn.batch_first was not True"
    if not getattr(attn, "_qkv_same_embed_dim", True):
        return "encoder_layer.self_attn._qkv_same_embed_dim was not True"
    if attn.in_proj_bias is None:
        return "encoder_layer.self_attn was passed bias=False"
    if not layer.activation_relu_or_gelu:
        return "encoder_layer.activation_relu_or_gelu was not True"
    if layer.norm1.eps != layer.norm2.eps:
        return "encoder_layer.norm1.eps was not equal to encoder_layer.norm2.eps"
    if attn.num_heads % 2 == 1:
        return "encoder_layer.self_attn.num_heads is odd"
    return ""


class TransformerEncoder(Module):
    """A stack of ``num_layers`` deep copies of ``encoder_layer`` (``layers.0``, ``layers.1``,
    ...; each with its own parameters, equal to the given layer's at first, as in torch) and an
    optional final ``norm``, like ``torch.nn.TransformerEncoder``.

    Arguments:
        encoder_layer: the layer to copy (a :class:`TransformerEncoderLayer` or any module
            with its ``forward`` signature and a ``self_attn.batch_first``).
        num_layers: how many copies.
        norm: a module applied to the output (typically ``LayerNorm``), or ``None``.
        enable_nested_tensor: accepted as in torch; with it, eval-mode outputs at padded
            positions are zeros as torch's nested-tensor path gives them (see the module
            docstring for the exact conditions).
        mask_check: with ``enable_nested_tensor``, take that path only for left-aligned
            padding (torch's check; done on device here).

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``: as
    :meth:`TransformerEncoderLayer.forward`, through every layer, then ``norm``.
    """

    def __init__(
        self,
        encoder_layer: Module,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        num_layers = V.check_int("TransformerEncoder", "num_layers", num_layers)
        self.layers = _get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = enable_nested_tensor and not _why_not_nested(encoder_layer)
        self.mask_check = mask_check

    def forward(
        self,
        src: jax.Array,
        mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        is_causal: bool | None = None,
    ) -> jax.Array:
        src_key_padding_mask = _canonical_mask(
            src_key_padding_mask, "src_key_padding_mask", _none_or_dtype(mask), "mask", src.dtype
        )
        mask = _canonical_mask(mask, "mask", None, "", src.dtype, check_other=False)
        first = self.layers[0]
        nested = (
            self.use_nested_tensor
            and not first.training
            and src.ndim == 3
            and src_key_padding_mask is not None
            and mask is None
        )
        layer_padding = src_key_padding_mask
        padded: jax.Array | None = None
        if nested:
            assert src_key_padding_mask is not None
            # torch's nested tensor keeps the first `length` tokens of each sequence (their
            # number is the count of unpadded ones), drops the rest from attention, and pads
            # the output back with zeros.
            keep = src_key_padding_mask == 0
            lengths = keep.sum(axis=-1, keepdims=True)
            padded = jnp.arange(keep.shape[-1])[None, :] >= lengths
            if self.mask_check:
                # Left-aligned padding only; otherwise torch runs the plain path.
                aligned = jnp.all(keep[:, 1:] <= keep[:, :-1])
                padded = padded & aligned
            as_float = jnp.where(padded, jnp.asarray(-jnp.inf, src.dtype), 0).astype(src.dtype)
            if self.mask_check:
                layer_padding = jnp.where(aligned, as_float, src_key_padding_mask)
            else:
                layer_padding = as_float
        output = src
        for layer in self.layers:
            output = layer(
                output,
                src_mask=mask,
                is_causal=bool(is_causal),
                src_key_padding_mask=layer_padding,
            )
        if padded is not None:
            output = jnp.where(padded[..., None], jnp.zeros((), output.dtype), output)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(Module):
    """A stack of ``num_layers`` deep copies of ``decoder_layer`` and an optional final
    ``norm``, like ``torch.nn.TransformerDecoder``.

    Arguments:
        decoder_layer: the layer to copy (a :class:`TransformerDecoderLayer`).
        num_layers: how many copies.
        norm: a module applied to the output, or ``None``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``: as
    :meth:`TransformerDecoderLayer.forward`, through every layer, then ``norm``.
    """

    def __init__(self, decoder_layer: Module, num_layers: int, norm: Module | None = None) -> None:
        super().__init__()
        num_layers = V.check_int("TransformerDecoder", "num_layers", num_layers)
        self.layers = _get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        if isinstance(decoder_layer, TransformerDecoderLayer) and isinstance(
            decoder_layer.activation, Module
        ):
            # torch's deep copy of a TransformerDecoderLayer runs its __setstate__, which sets
            # a plain `activation = F.relu` attribute whenever the activation is a module (it
            # looks for the name in the instance dict only); that attribute hides the module in
            # forward, while the module stays a child (in the repr). So torch's copies compute
            # ReLU, and a checkpoint trained in torch expects it: the copies here do the same.
            warnings.warn(
                _DECODER_COPY_RELU.format(activation=decoder_layer.activation), stacklevel=2
            )
            for layer in self.layers:
                layer._set_static("_forward_activation", F.relu)

    def forward(
        self,
        tgt: jax.Array,
        memory: jax.Array,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        output = tgt
        for layer in self.layers:
            output = layer(
                output,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=memory_is_causal,
            )
        if self.norm is not None:
            output = self.norm(output)
        return output


def _square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> jax.Array:
    sz = V.check_size("generate_square_subsequent_mask", "sz", sz)
    dtype = V.resolve_dtype("generate_square_subsequent_mask", dtype)
    device = V.resolve_device("generate_square_subsequent_mask", device)
    # Built on the host: a fresh size compiles nothing.
    mask = np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1)
    return jax.device_put(mask, device)


class Transformer(Module):
    """The encoder-decoder Transformer of "Attention Is All You Need", like
    ``torch.nn.Transformer``: children ``encoder`` (a :class:`TransformerEncoder` with a final
    ``LayerNorm``) and ``decoder`` (a :class:`TransformerDecoder` with a final ``LayerNorm``).

    Arguments:
        d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
            norm_first, bias, device, dtype: as :class:`TransformerEncoderLayer`.
        num_encoder_layers, num_decoder_layers: layers of each stack.
        custom_encoder, custom_decoder: modules used instead of the default stacks.
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    Every parameter with more than one dimension (custom encoder and decoder included) is then
    drawn again from ``xavier_uniform_``, as torch's ``_reset_parameters`` does; biases keep
    their layers' initial values.

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)`` returns an array shaped
    like ``tgt``. torch's errors: "the batch number of src and tgt must be equal", "the
    feature number of src and tgt must be equal to d_model" (``RuntimeError``).
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: _Activation = F.relu,
        custom_encoder: Any | None = None,
        custom_decoder: Any | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__()
        k_enc, k_dec, k_reset = _sub_keys("Transformer", key, 3)
        factory = {"device": device, "dtype": dtype}
        layer_args = (
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
        )
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            encoder_layer = TransformerEncoderLayer(*layer_args, key=k_enc, **factory)
            encoder_norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers, encoder_norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            decoder_layer = TransformerDecoderLayer(*layer_args, key=k_dec, **factory)
            decoder_norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, decoder_norm)
        self._reset_parameters(k_reset)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(
        self,
        src: jax.Array,
        tgt: jax.Array,
        src_mask: jax.Array | None = None,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        is_batched = src.ndim == 3
        batch_axis = 0 if self.batch_first else 1
        if is_batched and src.shape[batch_axis] != tgt.shape[batch_axis]:
            raise RuntimeError(_BATCH_MISMATCH)
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(_FEATURE_MISMATCH)
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(  # type: ignore[no-any-return]
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(
        sz: int, device: Any = None, dtype: Any = None
    ) -> jax.Array:
        """torch's causal mask: ``(sz, sz)``, ``-inf`` above the diagonal and ``0.0`` elsewhere
        (float32 unless ``dtype`` says otherwise)."""
        return _square_subsequent_mask(sz, device=device, dtype=dtype)

    def _reset_parameters(self, key: Any = None) -> None:
        """``xavier_uniform_`` for every parameter with more than one dimension (host draws)."""
        targets = [(n, p) for n, p in self.named_parameters() if p.ndim > 1]
        keys = _random.split_key(_random.init_key(key), max(len(targets), 1))
        for (name, param), k in zip(targets, keys, strict=False):
            owner_path, _, leaf = name.rpartition(".")
            owner = self.get_submodule(owner_path) if owner_path else self
            value = init.xavier_uniform_(jax.ShapeDtypeStruct(param.shape, param.dtype), key=k)
            owner._set_values(**{leaf: value})
