"""``fparam.from_torch``: the fparam twin of a torch module, weights included.

torch is imported only inside :func:`from_torch`; the rest of fparam never imports it.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fparam._dtypes import check_narrowing
from fparam._module import Module, Parameter, _typename
from fparam.serialization import _torch_to_numpy

__all__ = ["from_torch"]


def _conv_kwargs(m: Any) -> dict[str, Any]:
    return dict(
        stride=m.stride,
        padding=m.padding,
        dilation=m.dilation,
        groups=m.groups,
        bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )


def _conv_transpose_kwargs(m: Any) -> dict[str, Any]:
    return dict(
        stride=m.stride,
        padding=m.padding,
        output_padding=m.output_padding,
        groups=m.groups,
        bias=m.bias is not None,
        dilation=m.dilation,
    )


def _weight(m: Any, name: str = "weight") -> Any:
    value = getattr(m, name, None)
    return None if value is None else _torch_to_numpy(value)


# torch class name -> how to build the fparam module from the torch one (children excluded).
_BUILDERS: dict[str, Callable[[Any, Any], Module]] = {
    "Linear": lambda nn, m: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    "Identity": lambda nn, m: nn.Identity(),
    "Flatten": lambda nn, m: nn.Flatten(m.start_dim, m.end_dim),
    "Unflatten": lambda nn, m: nn.Unflatten(m.dim, tuple(m.unflattened_size)),
    "ReLU": lambda nn, m: nn.ReLU(m.inplace),
    "LeakyReLU": lambda nn, m: nn.LeakyReLU(m.negative_slope, m.inplace),
    "ELU": lambda nn, m: nn.ELU(m.alpha, m.inplace),
    "GELU": lambda nn, m: nn.GELU(m.approximate),
    "SiLU": lambda nn, m: nn.SiLU(m.inplace),
    "Sigmoid": lambda nn, m: nn.Sigmoid(),
    "Tanh": lambda nn, m: nn.Tanh(),
    "Softmax": lambda nn, m: nn.Softmax(m.dim),
    "LogSoftmax": lambda nn, m: nn.LogSoftmax(m.dim),
    "CrossEntropyLoss": lambda nn, m: nn.CrossEntropyLoss(
        weight=_weight(m),
        ignore_index=m.ignore_index,
        reduction=m.reduction,
        label_smoothing=m.label_smoothing,
    ),
    "NLLLoss": lambda nn, m: nn.NLLLoss(
        weight=_weight(m), ignore_index=m.ignore_index, reduction=m.reduction
    ),
    "MSELoss": lambda nn, m: nn.MSELoss(reduction=m.reduction),
    "L1Loss": lambda nn, m: nn.L1Loss(reduction=m.reduction),
    "BCELoss": lambda nn, m: nn.BCELoss(weight=_weight(m), reduction=m.reduction),
    "BCEWithLogitsLoss": lambda nn, m: nn.BCEWithLogitsLoss(
        weight=_weight(m), reduction=m.reduction, pos_weight=_weight(m, "pos_weight")
    ),
}


def _build_conv(nn: Any, m: Any) -> Module:
    layer: Callable[..., Module] = getattr(nn, type(m).__name__)
    return layer(m.in_channels, m.out_channels, m.kernel_size, **_conv_kwargs(m))


def _build_conv_transpose(nn: Any, m: Any) -> Module:
    layer: Callable[..., Module] = getattr(nn, type(m).__name__)
    return layer(m.in_channels, m.out_channels, m.kernel_size, **_conv_transpose_kwargs(m))


for _n in (1, 2, 3):
    _BUILDERS[f"Conv{_n}d"] = _build_conv
    _BUILDERS[f"ConvTranspose{_n}d"] = _build_conv_transpose


def _build_norm(nn: Any, m: Any) -> Module:
    # torch keeps no `bias` flag: it shows as a bias registered as None under affine=True.
    layer: Callable[..., Module] = getattr(nn, type(m).__name__)
    return layer(
        m.num_features,
        m.eps,
        m.momentum,
        m.affine,
        m.track_running_stats,
        bias=m.bias is not None or not m.affine,
    )


for _n in (1, 2, 3):
    _BUILDERS[f"BatchNorm{_n}d"] = _build_norm
    _BUILDERS[f"InstanceNorm{_n}d"] = _build_norm
    _BUILDERS[f"Dropout{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(m.p, m.inplace)
# torch's process group (a set of ranks) has no fparam counterpart: the twin gets None, which
# outside jax.shard_map needs nothing more (convert_sync_batchnorm(twin, axis) names an axis).
_BUILDERS["SyncBatchNorm"] = _build_norm
_BUILDERS.update(
    {
        "GroupNorm": lambda nn, m: nn.GroupNorm(
            m.num_groups, m.num_channels, m.eps, m.affine, bias=m.bias is not None or not m.affine
        ),
        "LayerNorm": lambda nn, m: nn.LayerNorm(
            m.normalized_shape,
            m.eps,
            m.elementwise_affine,
            bias=m.bias is not None or not m.elementwise_affine,
        ),
        "RMSNorm": lambda nn, m: nn.RMSNorm(m.normalized_shape, m.eps, m.elementwise_affine),
        "LocalResponseNorm": lambda nn, m: nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k),
        "Dropout": lambda nn, m: nn.Dropout(m.p, m.inplace),
        "AlphaDropout": lambda nn, m: nn.AlphaDropout(m.p, m.inplace),
        "FeatureAlphaDropout": lambda nn, m: nn.FeatureAlphaDropout(m.p, m.inplace),
    }
)

# Padding, rearranging, distance layers and Bilinear.
for _n in (1, 2, 3):
    for _family in ("ZeroPad", "ReflectionPad", "ReplicationPad", "CircularPad"):
        _BUILDERS[f"{_family}{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(m.padding)
    _BUILDERS[f"ConstantPad{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(m.padding, m.value)
_BUILDERS.update(
    {
        "PixelShuffle": lambda nn, m: nn.PixelShuffle(m.upscale_factor),
        "PixelUnshuffle": lambda nn, m: nn.PixelUnshuffle(m.downscale_factor),
        "ChannelShuffle": lambda nn, m: nn.ChannelShuffle(m.groups),
        "Fold": lambda nn, m: nn.Fold(
            m.output_size, m.kernel_size, m.dilation, m.padding, m.stride
        ),
        "Unfold": lambda nn, m: nn.Unfold(m.kernel_size, m.dilation, m.padding, m.stride),
        "CosineSimilarity": lambda nn, m: nn.CosineSimilarity(m.dim, m.eps),
        "PairwiseDistance": lambda nn, m: nn.PairwiseDistance(m.norm, m.eps, m.keepdim),
        "Softmax2d": lambda nn, m: nn.Softmax2d(),
        "Bilinear": lambda nn, m: nn.Bilinear(
            m.in1_features, m.in2_features, m.out_features, bias=m.bias is not None
        ),
    }
)
for _n in (1, 2, 3):
    _BUILDERS[f"MaxPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode
    )
    _BUILDERS[f"AdaptiveAvgPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(m.output_size)
    _BUILDERS[f"AdaptiveMaxPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.output_size, m.return_indices
    )
_BUILDERS["AvgPool1d"] = lambda nn, m: nn.AvgPool1d(
    m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad
)
for _n in (2, 3):
    _BUILDERS[f"AvgPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
    )

for _n in (1, 2, 3):
    _BUILDERS[f"LPPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.norm_type, m.kernel_size, m.stride, m.ceil_mode
    )
    _BUILDERS[f"MaxUnpool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.kernel_size, m.stride, m.padding
    )
for _n in (2, 3):
    _BUILDERS[f"FractionalMaxPool{_n}d"] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.kernel_size,
        m.output_size,
        m.output_ratio,
        m.return_indices,
        _random_samples=None if m._random_samples is None else m._random_samples.detach().numpy(),
    )
_BUILDERS.update(
    {
        "Upsample": lambda nn, m: nn.Upsample(
            m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor
        ),
        "UpsamplingNearest2d": lambda nn, m: nn.UpsamplingNearest2d(m.size, m.scale_factor),
        "UpsamplingBilinear2d": lambda nn, m: nn.UpsamplingBilinear2d(m.size, m.scale_factor),
    }
)
_BUILDERS.update(
    {
        "ReLU6": lambda nn, m: nn.ReLU6(m.inplace),
        "Hardtanh": lambda nn, m: nn.Hardtanh(m.min_val, m.max_val, m.inplace),
        "Threshold": lambda nn, m: nn.Threshold(m.threshold, m.value, m.inplace),
        "RReLU": lambda nn, m: nn.RReLU(m.lower, m.upper, m.inplace),
        "SELU": lambda nn, m: nn.SELU(m.inplace),
        "CELU": lambda nn, m: nn.CELU(m.alpha, m.inplace),
        "GLU": lambda nn, m: nn.GLU(m.dim),
        "Hardswish": lambda nn, m: nn.Hardswish(m.inplace),
        "Hardsigmoid": lambda nn, m: nn.Hardsigmoid(m.inplace),
        "Mish": lambda nn, m: nn.Mish(m.inplace),
        "Hardshrink": lambda nn, m: nn.Hardshrink(m.lambd),
        "Softshrink": lambda nn, m: nn.Softshrink(m.lambd),
        "Softplus": lambda nn, m: nn.Softplus(m.beta, m.threshold),
        "Tanhshrink": lambda nn, m: nn.Tanhshrink(),
        "LogSigmoid": lambda nn, m: nn.LogSigmoid(),
        "Softsign": lambda nn, m: nn.Softsign(),
        "Softmin": lambda nn, m: nn.Softmin(m.dim),
        "PReLU": lambda nn, m: nn.PReLU(m.num_parameters, m.init),
        "Embedding": lambda nn, m: nn.Embedding(
            m.num_embeddings,
            m.embedding_dim,
            padding_idx=m.padding_idx,
            max_norm=m.max_norm,
            norm_type=m.norm_type,
            scale_grad_by_freq=m.scale_grad_by_freq,
            sparse=m.sparse,
        ),
        "EmbeddingBag": lambda nn, m: nn.EmbeddingBag(
            m.num_embeddings,
            m.embedding_dim,
            max_norm=m.max_norm,
            norm_type=m.norm_type,
            scale_grad_by_freq=m.scale_grad_by_freq,
            mode=m.mode,
            sparse=m.sparse,
            include_last_offset=m.include_last_offset,
            padding_idx=m.padding_idx,
        ),
    }
)


def _build_rnn(nn: Any, m: Any) -> Module:
    """An RNN/LSTM/GRU with torch's configuration; torch already warned about dropout with one
    layer when the torch module was built, so the twin does not warn again."""
    kwargs = {
        "num_layers": m.num_layers,
        "bias": m.bias,
        "batch_first": m.batch_first,
        "dropout": m.dropout,
        "bidirectional": m.bidirectional,
    }
    if type(m).__name__ == "RNN":
        kwargs["nonlinearity"] = m.nonlinearity
    elif type(m).__name__ == "LSTM":
        kwargs["proj_size"] = m.proj_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return getattr(nn, type(m).__name__)(m.input_size, m.hidden_size, **kwargs)


for _name in ("RNN", "LSTM", "GRU"):
    _BUILDERS[_name] = _build_rnn
_BUILDERS["RNNCell"] = lambda nn, m: nn.RNNCell(m.input_size, m.hidden_size, m.bias, m.nonlinearity)
for _name in ("LSTMCell", "GRUCell"):
    _BUILDERS[_name] = lambda nn, m: getattr(nn, type(m).__name__)(
        m.input_size, m.hidden_size, m.bias
    )

# Losses with constructor state. TripletMarginWithDistanceLoss has none: torch holds its
# distance function (a PairwiseDistance child by default, or a torch callable) which has no
# fparam twin.
_BUILDERS.update(
    {
        "KLDivLoss": lambda nn, m: nn.KLDivLoss(reduction=m.reduction, log_target=m.log_target),
        "SmoothL1Loss": lambda nn, m: nn.SmoothL1Loss(reduction=m.reduction, beta=m.beta),
        "HuberLoss": lambda nn, m: nn.HuberLoss(reduction=m.reduction, delta=m.delta),
        "SoftMarginLoss": lambda nn, m: nn.SoftMarginLoss(reduction=m.reduction),
        "MultiLabelSoftMarginLoss": lambda nn, m: nn.MultiLabelSoftMarginLoss(
            weight=_weight(m), reduction=m.reduction
        ),
        "MultiLabelMarginLoss": lambda nn, m: nn.MultiLabelMarginLoss(reduction=m.reduction),
        "MultiMarginLoss": lambda nn, m: nn.MultiMarginLoss(
            p=m.p, margin=m.margin, weight=_weight(m), reduction=m.reduction
        ),
        "MarginRankingLoss": lambda nn, m: nn.MarginRankingLoss(
            margin=m.margin, reduction=m.reduction
        ),
        "HingeEmbeddingLoss": lambda nn, m: nn.HingeEmbeddingLoss(
            margin=m.margin, reduction=m.reduction
        ),
        "CosineEmbeddingLoss": lambda nn, m: nn.CosineEmbeddingLoss(
            margin=m.margin, reduction=m.reduction
        ),
        "TripletMarginLoss": lambda nn, m: nn.TripletMarginLoss(
            margin=m.margin, p=m.p, eps=m.eps, swap=m.swap, reduction=m.reduction
        ),
        "PoissonNLLLoss": lambda nn, m: nn.PoissonNLLLoss(
            log_input=m.log_input, full=m.full, eps=m.eps, reduction=m.reduction
        ),
        "GaussianNLLLoss": lambda nn, m: nn.GaussianNLLLoss(
            full=m.full, eps=m.eps, reduction=m.reduction
        ),
        "CTCLoss": lambda nn, m: nn.CTCLoss(
            blank=m.blank, reduction=m.reduction, zero_infinity=m.zero_infinity
        ),
    }
)


def _torch_activation(m: Any) -> Any:
    """The fparam counterpart of a torch Transformer layer's ``activation``: torch's ``relu`` /
    ``gelu`` functions by name; a module is a child, converted with the others (a placeholder
    here)."""
    act = m.activation
    if hasattr(act, "_modules"):
        return "relu"
    name = getattr(act, "__name__", None)
    if getattr(act, "__module__", None) in ("torch.nn.functional", "torch._C._nn") and name in (
        "relu",
        "gelu",
    ):
        return name
    raise TypeError(
        f"activation {act!r} is a torch function fparam cannot carry over (only torch's "
        "F.relu / F.gelu, 'relu' / 'gelu', or an activation module convert)"
    )


def _layer_config(m: Any) -> dict[str, Any]:
    attn = m.self_attn
    return dict(
        d_model=attn.embed_dim,
        nhead=attn.num_heads,
        dim_feedforward=m.linear1.out_features,
        dropout=m.dropout.p,
        activation=_torch_activation(m),
        layer_norm_eps=m.norm1.eps,
        batch_first=attn.batch_first,
        norm_first=m.norm_first,
        bias=m.linear1.bias is not None,
    )


def _build_decoder_layer(nn: Any, m: Any, children: dict[str, Module | None]) -> Module:
    twin: Module = nn.TransformerDecoderLayer(**_layer_config(m))
    if "activation" in m._modules and "activation" in m.__dict__:
        # A copy made by torch's TransformerDecoder: a plain `activation` attribute (F.relu,
        # set by torch's __setstate__) hides the module child in forward.
        twin._set_static("_forward_activation", nn.functional.relu)
    return twin


def _build_transformer(nn: Any, m: Any, children: dict[str, Module | None]) -> Module:
    twin: Module = nn.Transformer(
        m.d_model,
        m.nhead,
        custom_encoder=children["encoder"],
        custom_decoder=children["decoder"],
        batch_first=m.batch_first,
    )
    return twin


def _first_layer(children: dict[str, Module | None]) -> Module:
    # The stack's layers are replaced by torch's converted ones: the copies made of the first
    # are placeholders.
    return children["layers"][0]  # type: ignore[index]


def _stack_norm(m: Any, children: dict[str, Module | None]) -> Module | None:
    if m.norm is not None and "norm" not in children:
        raise TypeError(f"norm {m.norm!r} is not a torch module: fparam cannot carry it over")
    return children.get("norm")


# torch class name -> how to build the fparam module from the torch one and its converted
# children (by name); the children are then set on it, replacing those it built itself.
_COMPOSITE_BUILDERS: dict[str, Callable[[Any, Any, dict[str, Module | None]], Module]] = {
    "TransformerEncoderLayer": lambda nn, m, c: nn.TransformerEncoderLayer(**_layer_config(m)),
    "TransformerDecoderLayer": _build_decoder_layer,
    "TransformerEncoder": lambda nn, m, c: nn.TransformerEncoder(
        _first_layer(c),
        m.num_layers,
        norm=_stack_norm(m, c),
        enable_nested_tensor=m.enable_nested_tensor,
        mask_check=getattr(m, "mask_check", True),
    ),
    "TransformerDecoder": lambda nn, m, c: nn.TransformerDecoder(
        _first_layer(c), m.num_layers, norm=_stack_norm(m, c)
    ),
    "Transformer": _build_transformer,
    "DataParallel": lambda nn, m, c: nn.DataParallel(c["module"], dim=getattr(m, "dim", 0)),
}

# Attention. MultiheadAttention builds its own out_proj child (_convert registers built
# children so that their state is copied and compared too).
_BUILDERS.update(
    {
        "MultiheadAttention": lambda nn, m: nn.MultiheadAttention(
            m.embed_dim,
            m.num_heads,
            m.dropout,
            bias=m.in_proj_bias is not None,
            add_bias_kv=m.bias_k is not None,
            add_zero_attn=m.add_zero_attn,
            kdim=m.kdim,
            vdim=m.vdim,
            batch_first=m.batch_first,
        ),
        "NonDynamicallyQuantizableLinear": lambda nn, m: _nondynamic_linear(m),
    }
)


def _nondynamic_linear(m: Any) -> Module:
    from fparam.nn.attention import NonDynamicallyQuantizableLinear

    return NonDynamicallyQuantizableLinear(m.in_features, m.out_features, bias=m.bias is not None)


_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict")

# What a torch module can carry that changes its outputs or its state_dict and that an fparam
# module has no counterpart for: (attribute, what to call it in the message).
_HOOKS = (
    ("_forward_pre_hooks", "forward pre-hook"),
    ("_forward_hooks", "forward hook"),
    ("_backward_pre_hooks", "backward pre-hook"),
    ("_backward_hooks", "backward hook"),
    ("_state_dict_pre_hooks", "state_dict pre-hook"),
    ("_state_dict_hooks", "state_dict hook"),
    ("_load_state_dict_pre_hooks", "load_state_dict pre-hook"),
    ("_load_state_dict_post_hooks", "load_state_dict post-hook"),
)
_GLOBAL_HOOKS = (
    ("_global_forward_pre_hooks", "global forward pre-hook"),
    ("_global_forward_hooks", "global forward hook"),
    ("_global_backward_pre_hooks", "global backward pre-hook"),
    ("_global_backward_hooks", "global backward hook"),
)
# Entries of a torch ParameterList/ParameterDict that are not Parameters and that fparam's
# containers keep exactly as torch does (plain, unsaved entries); anything else is refused.
_PLAIN_ENTRY_TYPES = (type(None), bool, int, float, complex, str)

_NOT_A_MODULE = "from_torch expects a torch.nn.Module, got {type}"
_CANNOT_REPRODUCE = (
    "from_torch cannot reproduce this torch model exactly, so it converted nothing. "
    "Each problem below names the module path ('<root>' is the model itself):\n  {problems}"
)
_UNSUPPORTED = (
    "classes fparam does not have (define the model with fparam.nn and load the torch "
    "state_dict instead): {classes}"
)
_HOOK = (
    "{path} ({cls}): has a {kind} {hook}: fparam does not copy torch hooks (a torch hook "
    "receives torch tensors and modules, so carried over it would compute something else or "
    "fail). Remove it (torch.nn.utils.remove_weight_norm / remove_spectral_norm for those) and, "
    "for a forward hook or pre-hook, register an fparam version on the converted model "
    "(register_forward_hook / register_forward_pre_hook, which get jax.Arrays)"
)
_GLOBAL_HOOK = (
    "<global>: a {kind} {hook} is registered for every torch module "
    "(torch.nn.modules.module.register_module_*_hook): remove it before converting"
)
_PARAMETRIZED = (
    "{path} ({cls}): parametrized with torch.nn.utils.parametrize ({names}): fparam has no "
    "parametrizations. Call torch.nn.utils.parametrize.remove_parametrizations(module, name) "
    "first (it bakes the current values in)"
)
_ENTRY = (
    "{path} ({cls}): entry {key!r} is a {type}, not a Parameter: torch keeps it as a plain "
    "entry, fparam would {fate}. Only Parameters and None/bool/int/float/str entries convert"
)
_LAZY = (
    "{path} ({cls}): a torch lazy layer not built yet has no weights to copy. Call the torch "
    "model once on an example input first (it then holds the plain layer), or use "
    "fparam.nn.{cls}"
)
_BUILD_FAILED = "{path} ({cls}): cannot be rebuilt from its attributes: {error}"
_SHAPE = (
    "{path}: torch's {kind} has shape {src}, but a {cls} with this configuration "
    "({config}) holds shape {dst} (an attribute was changed after construction?)"
)
_DTYPE = (
    "{path}: torch's {kind} is {src} but fparam can hold it only as {dst} (for float64 "
    "turn on JAX's 64-bit mode: jax.config.update('jax_enable_x64', True), or convert the torch "
    "model with .float() first)"
)
_REGISTER_FAILED = "{path}: cannot register torch's {kind} on the fparam {cls}: {error}"
_EXTRA_NAME = (
    "{path} ({cls}): the fparam layer has {kind} '{name}' that the torch module lacks (it was "
    "deleted or replaced after construction)"
)
_MISMATCH = "{path} ({cls}): {what} differ after conversion: torch {src}, fparam {dst}"

# from_torch(module, into=model)
_NOT_AN_FPARAM_MODULE = "from_torch: into= expects an fparam nn.Module, got {type}"
_CANNOT_LOAD = (
    "from_torch(..., into={cls}) found differences between the torch model and the fparam "
    "model, so it copied nothing. Each problem names the module path ('<root>' is the model "
    "itself):\n  {problems}"
)
_INTO_MISSING = "{path}: torch's {kind} '{name}' has no counterpart in the fparam model"
_INTO_EXTRA = "{path}: the fparam model has {kind} '{name}', which the torch model lacks"
_INTO_NONE = "{path}: {kind} '{name}' is None in the {none} model but not in the {other}"
_INTO_SHAPE = "{path}: {kind} '{name}' has shape {src} in torch, {dst} in the fparam model"
_INTO_DTYPE = "{path}: {kind} '{name}' is {src} in torch, {dst} in the fparam model"
_INTO_PERSISTENT = (
    "{path}: buffer '{name}' is {src} in torch but {dst} in the fparam model (state_dict keys "
    "would differ)"
)
_INTO_CLASS = "{path}: torch's {src} is a {dst} in the fparam model"
_INTO_CONFIG = "{path} ({cls}): configurations differ: torch {src}, fparam {dst}"


def _is_torch_builtin(m: Any) -> bool:
    return type(m).__module__.startswith(("torch.nn.modules", "torch.nn.parallel"))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _shown(path: str) -> str:
    return repr(path) if path else "<root>"


def _walk(module: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, module)`` for ``module`` and every registered child, ``None`` children
    included (torch's ``named_modules`` skips them; containers still hold them)."""
    yield path, module
    if module is None:
        return
    for name, child in module._modules.items():
        yield from _walk(child, _join(path, name))


def _hook_name(hook: Any) -> str:
    hook = getattr(hook, "hook", hook)  # torch wraps some hooks in a _WrappedHook
    if isinstance(hook, functools.partial):
        hook = hook.func
    if hasattr(hook, "__qualname__") and hasattr(hook, "__module__"):
        return f"{hook.__module__}.{hook.__qualname__}"
    return f"{type(hook).__module__}.{type(hook).__qualname__} object"


def _container_entries(m: Any) -> list[tuple[str, Any]]:
    """The entries of a torch ParameterList/ParameterDict, in order, whatever their kind."""
    if type(m).__name__ == "ParameterList":
        return [(str(i), getattr(m, str(i))) for i in range(len(m))]
    return [(key, m[key]) for key in m]


def _static_problems(torch: Any, module: Any) -> tuple[list[str], set[str]]:
    """What can be seen without building anything: unsupported classes, hooks,
    parametrizations and container entries. Also returns the paths whose subtree is skipped."""
    problems: list[str] = []
    skipped: set[str] = set()
    unsupported: dict[str, list[str]] = {}
    parametrize = torch.nn.utils.parametrize
    for attr, kind in _GLOBAL_HOOKS:
        for hook in getattr(torch.nn.modules.module, attr, {}).values():
            problems.append(_GLOBAL_HOOK.format(kind=kind, hook=_hook_name(hook)))
    for path, sub in _walk(module):
        if sub is None or any(path == s or path.startswith(s + ".") for s in skipped):
            continue
        cls = type(sub).__name__
        for attr, kind in _HOOKS:
            for hook in getattr(sub, attr, {}).values():
                problems.append(
                    _HOOK.format(path=_shown(path), cls=cls, kind=kind, hook=_hook_name(hook))
                )
                # weight_norm and friends also rename parameters: the hook says it all.
                skipped.add(path)
        if parametrize.is_parametrized(sub):
            names = ", ".join(
                f"{name}: " + ", ".join(type(p).__qualname__ for p in plist)
                for name, plist in sub.parametrizations.items()
            )
            base = type(sub).__bases__[0].__name__
            problems.append(_PARAMETRIZED.format(path=_shown(path), cls=base, names=names))
            skipped.add(path)
            continue
        if _is_torch_builtin(sub) and cls.startswith("Lazy"):
            problems.append(_LAZY.format(path=_shown(path), cls=cls))
            skipped.add(path)
            continue
        known = cls in _BUILDERS or cls in _COMPOSITE_BUILDERS or cls in _CONTAINERS
        if not _is_torch_builtin(sub) or not known:
            name = f"{type(sub).__module__}.{type(sub).__qualname__}"
            unsupported.setdefault(name, []).append(_shown(path))
            skipped.add(path)
            continue
        if cls in ("ParameterList", "ParameterDict"):
            for key, value in _container_entries(sub):
                if isinstance(value, (torch.nn.Parameter, _PLAIN_ENTRY_TYPES)):
                    continue
                if isinstance(value, torch.nn.Module):
                    fate = "hold it as a child module of a parameter container"
                elif hasattr(value, "__array__"):
                    fate = "turn it into a Parameter"
                else:
                    fate = "keep it, but cannot compare it with torch's"
                skipped.add(path)  # a module held as an entry: reported here, not as a child
                problems.append(
                    _ENTRY.format(
                        path=_shown(path), cls=cls, key=key, type=_typename(value), fate=fate
                    )
                )
    if unsupported:
        listed = ", ".join(
            f"{name} (at {', '.join(paths)})" for name, paths in sorted(unsupported.items())
        )
        problems.insert(0, _UNSUPPORTED.format(classes=listed))
    return problems, skipped


def _shared(module: Any) -> list[str]:
    """The paths under which one torch module or parameter object appears more than once."""
    paths: dict[int, list[str]] = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        paths.setdefault(id(sub), []).append(name or "<root>")
    for name, param in module.named_parameters(remove_duplicate=False):
        paths.setdefault(id(param), []).append(name)
    return [" = ".join(group) for group in paths.values() if len(group) > 1]


def _array(tensor: Any) -> np.ndarray:
    # A copy: the twin must not share memory with the torch model it came from.
    return np.array(_torch_to_numpy(tensor), copy=True)


def _entry(key: str, value: Any, none_slots: set[str]) -> Any:
    if key in none_slots:
        return Parameter(np.zeros((0,), np.float32))
    if value is None or not hasattr(value, "requires_grad"):
        return value
    return Parameter(_array(value), requires_grad=value.requires_grad)


def _convert(
    nn: Any, m: Any, path: str, skipped: set[str], built: dict[str, Module], problems: list[str]
) -> Module | None:
    """The fparam module for torch module ``m`` (``None`` for a ``None`` child or one that
    cannot be built, with the reason appended to ``problems``); ``built`` maps paths to it."""
    if m is None or path in skipped:
        return None
    name = type(m).__name__

    def children() -> list[tuple[str, Module | None]]:
        return [
            (k, _convert(nn, c, _join(path, k), skipped, built, problems))
            for k, c in m._modules.items()
        ]

    twin: Module | None
    if name == "Sequential":
        twin = nn.Sequential(OrderedDict(children()))
    elif name == "ModuleList":
        twin = nn.ModuleList([c for _, c in children()])
    elif name == "ModuleDict":
        twin = nn.ModuleDict(OrderedDict(children()))
    elif name in ("ParameterList", "ParameterDict"):
        none_slots = {k for k, v in m._parameters.items() if v is None}
        # A None *parameter* slot (torch: `plist[i] = None` over a Parameter) is built as a
        # Parameter here and set to None by _copy_state, as torch holds it.
        entries = [(k, _entry(k, v, none_slots)) for k, v in _container_entries(m)]
        if name == "ParameterList":
            twin = nn.ParameterList([v for _, v in entries])
        else:
            twin = nn.ParameterDict(OrderedDict(entries))
    elif name in _COMPOSITE_BUILDERS:
        kids = children()
        if any(v is None and m._modules[k] is not None for k, v in kids):
            return None  # a child could not be built: the problem is reported there
        try:
            twin = _COMPOSITE_BUILDERS[name](nn, m, dict(kids))
            for k, kid in kids:
                if twin._modules.get(k) is not kid:
                    setattr(twin, k, kid)
            for attr in ("use_nested_tensor", "activation_relu_or_gelu"):
                if hasattr(m, attr):
                    twin._set_static(attr, getattr(m, attr))
        except Exception as error:
            problems.append(
                _BUILD_FAILED.format(
                    path=_shown(path), cls=name, error=f"{type(error).__name__}: {error}"
                )
            )
            return None
    else:
        try:
            twin = _BUILDERS[name](nn, m)
        except Exception as error:
            problems.append(
                _BUILD_FAILED.format(
                    path=_shown(path), cls=name, error=f"{type(error).__name__}: {error}"
                )
            )
            return None
    built[path] = twin
    # A layer that builds its own children (MultiheadAttention's out_proj): they are the
    # twins of torch's children at the same paths.
    for sub_path, sub in twin.named_modules(prefix=path):
        built.setdefault(sub_path, sub)
    return twin


def _copy_state(torch_sub: Any, twin: Module, path: str, problems: list[str]) -> None:
    """Give ``twin`` torch's own parameters and buffers: values, dtypes, ``requires_grad``,
    persistence, and the ones registered on a built-in layer after construction."""
    cls = type(torch_sub).__name__
    config = torch_sub.extra_repr()
    registered: dict[str, dict[str, Any]] = {
        "parameter": dict(twin._parameters),
        "buffer": dict(twin._buffers),
    }
    torch_own: dict[str, dict[str, Any]] = {
        "parameter": dict(torch_sub._parameters),
        "buffer": dict(torch_sub._buffers),
    }
    for kind in ("parameter", "buffer"):
        for name in registered[kind]:
            if name not in torch_own[kind]:
                problems.append(
                    _EXTRA_NAME.format(path=_shown(path), cls=cls, kind=kind, name=name)
                )
        for name, value in torch_own[kind].items():
            array = None if value is None else _array(value)
            current = registered[kind].get(name)
            if array is not None and current is not None and current.shape != array.shape:
                problems.append(
                    _SHAPE.format(
                        path=_shown(_join(path, name)),
                        kind=kind,
                        src=tuple(array.shape),
                        cls=cls,
                        config=config,
                        dst=tuple(current.shape),
                    )
                )
                continue
            try:
                if kind == "parameter":
                    param = None if array is None else Parameter(array, value.requires_grad)
                    twin.register_parameter(name, param)
                else:
                    persistent = name not in torch_sub._non_persistent_buffers_set
                    twin.register_buffer(name, array, persistent=persistent)
            except Exception as error:
                problems.append(
                    _REGISTER_FAILED.format(
                        path=_shown(_join(path, name)),
                        kind=kind,
                        cls=cls,
                        error=f"{type(error).__name__}: {error}",
                    )
                )
                continue
            held = getattr(twin, name)
            # Integers that fit (torch's int64 num_batches_tracked in int32) are exact; any
            # other change of dtype (float64 as float32) is not a twin.
            exact_int = (
                array is not None
                and np.dtype(array.dtype).kind in "iu"
                and np.dtype(held.dtype).kind in "iu"
                and check_narrowing(array, held.dtype, name) is None
            )
            if array is not None and held.dtype != array.dtype and not exact_int:
                problems.append(
                    _DTYPE.format(
                        path=_shown(_join(path, name)),
                        kind=kind,
                        src=str(value.dtype).replace("torch.", ""),
                        dst=held.dtype,
                    )
                )
    if torch_sub.training != twin.training:
        twin._set_static("training", torch_sub.training)


def _spelling_free(config: str) -> str:
    """An ``extra_repr`` with the spellings that do not change behaviour made equal: NumPy
    scalars (``np.int64(3)``, which torch keeps) as plain numbers, lists as tuples."""
    config = re.sub(r"np\.\w+\(([^()]*)\)", r"\1", config)
    return re.sub(r",\)", ")", config.replace("[", "(").replace("]", ")"))


def _compare(torch_sub: Any, twin: Module, path: str, problems: list[str]) -> None:
    """What must agree between a torch module and its twin, checked after the copy."""
    cls = type(torch_sub).__name__

    def check(what: str, src: Any, dst: Any) -> None:
        if src != dst:
            problems.append(
                _MISMATCH.format(path=_shown(path), cls=cls, what=what, src=src, dst=dst)
            )

    check(
        "own parameters (name, requires_grad)",
        [(n, None if p is None else p.requires_grad) for n, p in torch_sub._parameters.items()],
        [(n, None if p is None else p.requires_grad) for n, p in twin._parameters.items()],
    )
    check("own buffers", list(torch_sub._buffers), list(twin._buffers))
    check(
        "non-persistent buffers",
        sorted(torch_sub._non_persistent_buffers_set),
        sorted(twin._non_persistent_buffers_set),
    )
    check("children", list(torch_sub._modules), list(twin._modules))
    if hasattr(torch_sub, "_reversed_padding_repeated_twice"):
        # What a padded conv's forward reads; torch computes it once, in __init__, so a padding
        # changed afterwards leaves it stale, and the twin (built from `padding`) would differ.
        check(
            "padding (_reversed_padding_repeated_twice)",
            [int(p) for p in torch_sub._reversed_padding_repeated_twice],
            [int(p) for p in twin._reversed_padding_repeated_twice],  # type: ignore[attr-defined]
        )
    if type(torch_sub).__name__ not in _CONTAINERS:
        check(
            "configurations (extra_repr)",
            _spelling_free(torch_sub.extra_repr()),
            _spelling_free(twin.extra_repr()),
        )


def _hook_problems(torch: Any, module: Any) -> list[str]:
    """The hooks and parametrizations of ``module``'s tree (and torch's global hooks)."""
    problems = [
        _GLOBAL_HOOK.format(kind=kind, hook=_hook_name(hook))
        for attr, kind in _GLOBAL_HOOKS
        for hook in getattr(torch.nn.modules.module, attr, {}).values()
    ]
    for path, sub in _walk(module):
        if sub is None:
            continue
        cls = type(sub).__name__
        for attr, kind in _HOOKS:
            for hook in getattr(sub, attr, {}).values():
                problems.append(
                    _HOOK.format(path=_shown(path), cls=cls, kind=kind, hook=_hook_name(hook))
                )
        if torch.nn.utils.parametrize.is_parametrized(sub):
            names = ", ".join(sub.parametrizations)
            base = type(sub).__bases__[0].__name__
            problems.append(_PARAMETRIZED.format(path=_shown(path), cls=base, names=names))
    return problems


def _dtype_problem(array: np.ndarray, current: Any) -> bool:
    """Whether torch's value cannot be held exactly with the fparam array's dtype: the dtypes
    must be equal, except integers that fit (torch's int64 counters in JAX's int32)."""
    if np.dtype(array.dtype) == np.dtype(current.dtype):
        return False
    both_int = np.dtype(array.dtype).kind in "iu" and np.dtype(current.dtype).kind in "iu"
    return not (both_int and check_narrowing(array, current.dtype, "value") is None)


def _match(
    torch_sub: Any,
    mine: Module,
    path: str,
    problems: list[str],
    staged: list[tuple[Module, str, Any]],
) -> None:
    """Compare one torch module with its fparam counterpart (recursively) and stage the copy."""
    from fparam._module import _converted

    shown = _shown(path)
    cls = type(torch_sub).__name__
    if _is_torch_builtin(torch_sub) and cls != type(mine).__name__:
        problems.append(_INTO_CLASS.format(path=shown, src=cls, dst=type(mine).__name__))
        return
    if cls not in _CONTAINERS:
        theirs, ours = (_spelling_free(torch_sub.extra_repr()), _spelling_free(mine.extra_repr()))
        if theirs != ours:
            problems.append(_INTO_CONFIG.format(path=shown, cls=cls, src=theirs, dst=ours))
    own: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "parameter": (dict(torch_sub._parameters), dict(mine._parameters)),
        "buffer": (dict(torch_sub._buffers), dict(mine._buffers)),
        "child module": (dict(torch_sub._modules), dict(mine._modules)),
    }
    for kind, (theirs_by_name, ours_by_name) in own.items():
        for name in ours_by_name:
            if name not in theirs_by_name:
                problems.append(_INTO_EXTRA.format(path=shown, kind=kind, name=name))
        for name, value in theirs_by_name.items():
            if name not in ours_by_name:
                problems.append(_INTO_MISSING.format(path=shown, kind=kind, name=name))
                continue
            current = ours_by_name[name]
            if (value is None) != (current is None):
                none, other = ("torch", "fparam") if value is None else ("fparam", "torch")
                problems.append(
                    _INTO_NONE.format(path=shown, kind=kind, name=name, none=none, other=other)
                )
                continue
            if value is None:
                continue
            if kind == "child module":
                _match(value, current, _join(path, name), problems, staged)
                continue
            if kind == "buffer":
                persistent = name not in torch_sub._non_persistent_buffers_set
                if persistent != (name not in mine._non_persistent_buffers_set):
                    src, dst = ("persistent", "not") if persistent else ("not persistent", "")
                    problems.append(
                        _INTO_PERSISTENT.format(
                            path=shown, name=name, src=src, dst=f"{dst} persistent".strip()
                        )
                    )
            array = _array(value)
            if tuple(array.shape) != tuple(current.shape):
                problems.append(
                    _INTO_SHAPE.format(
                        path=shown,
                        kind=kind,
                        name=name,
                        src=tuple(array.shape),
                        dst=tuple(current.shape),
                    )
                )
                continue
            if _dtype_problem(array, current):
                src = str(value.dtype).replace("torch.", "")
                problems.append(
                    _INTO_DTYPE.format(path=shown, kind=kind, name=name, src=src, dst=current.dtype)
                )
                continue
            problem, new = _converted(array, getattr(current, "data", current), False, name)
            if problem is not None:
                problems.append(f"{shown}: {problem}")
                continue
            staged.append((mine, name, new))


def _load_into(torch: Any, module: Any, into: Any) -> Module:
    """``from_torch(module, into=into)``: torch's values copied into ``into``, all or nothing."""
    from fparam._module import _note_owner

    if not isinstance(into, Module):
        raise TypeError(_NOT_AN_FPARAM_MODULE.format(type=_typename(into)))
    into._check_mutable("call from_torch(..., into=)")
    problems = _hook_problems(torch, module)
    shared = _shared(module)
    if shared:
        raise ValueError(
            "from_torch cannot copy shared (tied) modules or parameters: an fparam model holds "
            "each in one place only (call a module twice in forward instead): " + "; ".join(shared)
        )
    staged: list[tuple[Module, str, Any]] = []
    _match(module, into, "", problems, staged)
    if problems:
        raise TypeError(
            _CANNOT_LOAD.format(cls=type(into).__name__, problems="\n  ".join(problems))
        )
    for owner, name, new in staged:
        owner.__dict__[name] = new
        _note_owner(new, owner, name)
    return into


def from_torch(module: Any, into: Module | None = None) -> Module:
    """Build the fparam twin of a torch module made of layers fparam has, with its weights;
    or, with ``into=``, copy a torch model's weights into an fparam model you defined.

    Arguments:
        module: a ``torch.nn.Module`` built from torch's containers (``Sequential``,
            ``ModuleList``, ``ModuleDict``, ``ParameterList``, ``ParameterDict``) and the
            layers fparam mirrors (``Linear``, ``Conv*``, ``ConvTranspose*``, activations,
            ``Flatten``, losses, ...); with ``into=``, any torch module (your own classes
            included).
        into: an fparam model of the same architecture (the port of ``module``'s class).
            Every parameter and buffer (non-persistent ones included) is copied by name into
            it, in place, keeping its placement, as ``load_state_dict`` does; its
            ``requires_grad`` flags and train/eval modes are left as they are. Checked first,
            and reported together in one ``TypeError``: missing or extra child modules,
            parameters and buffers, ``None`` on one side only, shapes, dtypes (integers that
            fit excepted), persistence, the class of each torch built-in layer and every
            module's ``extra_repr`` (so ``Conv2d(stride=2)`` against ``Conv2d(stride=1)`` is
            caught), hooks and parametrizations on the torch side. All or nothing: when it
            raises, ``into`` is unchanged.

    Returns:
        ``into`` itself (updated) when given. Otherwise the fparam module: same structure (``None`` children included), same parameters and
        buffers with their values, dtypes, ``requires_grad`` and persistence (parameters and
        buffers registered on a built-in layer after construction included), the same
        ``state_dict()`` keys in the same order, and the same train/eval mode per module.
        Plain (unregistered) attributes added to a built-in layer are not copied: torch's
        ``forward`` does not read them.

    Raises:
        TypeError: ``module`` is not a torch module, or the conversion cannot reproduce it:
            classes fparam does not have (custom subclasses with their own ``forward`` among
            them), hooks (forward, backward, state_dict, load_state_dict, global), weight_norm /
            spectral_norm (hooks), ``torch.nn.utils.parametrize`` parametrizations, container
            entries that are neither Parameters nor plain scalars, layers whose attributes no
            longer match their weights, dtypes JAX cannot hold (float64 without 64-bit mode).
            The message lists every problem, each with its module path.
        ValueError: ``module`` uses one module or parameter object in two places (tied
            weights), which an fparam model cannot hold.
    """
    import torch

    from fparam import nn

    if not isinstance(module, torch.nn.Module):
        raise TypeError(_NOT_A_MODULE.format(type=type(module).__name__))
    if into is not None:
        return _load_into(torch, module, into)
    problems, skipped = _static_problems(torch, module)
    shared = _shared(module)
    if shared:
        raise ValueError(
            "from_torch cannot copy shared (tied) modules or parameters: an fparam model holds "
            "each in one place only (call a module twice in forward instead): " + "; ".join(shared)
        )
    built: dict[str, Module] = {}
    twin = _convert(nn, module, "", skipped, built, problems)
    for path, sub in _walk(module):
        if sub is not None and path in built:
            _copy_state(sub, built[path], path, problems)
    for path, sub in _walk(module):
        if sub is not None and path in built:
            _compare(sub, built[path], path, problems)
    if not problems and list(twin.state_dict()) != list(module.state_dict()):  # type: ignore[union-attr]
        problems.append(
            _MISMATCH.format(
                path="<root>",
                cls=type(module).__name__,
                what="state_dict keys",
                src=list(module.state_dict()),
                dst=list(twin.state_dict()),  # type: ignore[union-attr]
            )
        )
    if problems:
        raise TypeError(_CANNOT_REPRODUCE.format(problems="\n  ".join(problems)))
    assert twin is not None
    return twin
