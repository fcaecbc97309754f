"""``fparam.from_torch``: the fparam twin of a torch module, weights included.

torch is imported only inside :func:`from_torch`; the rest of fparam never imports it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fparam._module import Module, Parameter
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

_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict")


def _is_torch_builtin(m: Any) -> bool:
    return type(m).__module__.startswith("torch.nn.modules")


def _unsupported(module: Any) -> list[str]:
    names = set()
    for sub in module.modules():
        name = type(sub).__name__
        if not _is_torch_builtin(sub) or (name not in _BUILDERS and name not in _CONTAINERS):
            names.add(f"{type(sub).__module__}.{type(sub).__qualname__}")
    return sorted(names)


def _shared(module: Any) -> list[str]:
    """The paths under which one torch module or parameter object appears more than once."""
    paths: dict[int, list[str]] = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        paths.setdefault(id(sub), []).append(name or "<root>")
    for name, param in module.named_parameters(remove_duplicate=False):
        paths.setdefault(id(param), []).append(name)
    return [" = ".join(group) for group in paths.values() if len(group) > 1]


def _convert(nn: Any, m: Any) -> Module:
    name = type(m).__name__
    if name == "Sequential":
        return nn.Sequential(OrderedDict((k, _convert(nn, c)) for k, c in m.named_children()))
    if name == "ModuleList":
        return nn.ModuleList([_convert(nn, c) for c in m])
    if name == "ModuleDict":
        return nn.ModuleDict(OrderedDict((k, _convert(nn, c)) for k, c in m.items()))
    if name in ("ParameterList", "ParameterDict"):
        values = [(k, _torch_to_numpy(p)) for k, p in m.named_parameters(recurse=False)]
        if name == "ParameterList":
            return nn.ParameterList([v for _, v in values])
        return nn.ParameterDict(OrderedDict(values))
    return _BUILDERS[name](nn, m)


def from_torch(module: Any) -> Module:
    """Build the fparam twin of a torch module made of layers fparam has, with its weights.

    Arguments:
        module: a ``torch.nn.Module`` built from torch's containers (``Sequential``,
            ``ModuleList``, ``ModuleDict``, ``ParameterList``, ``ParameterDict``) and the
            layers fparam mirrors (``Linear``, ``Conv*``, ``ConvTranspose*``, activations,
            ``Flatten``, losses, ...).

    Returns:
        The fparam module: same structure and keys, its ``state_dict()`` equal to the torch
        one (loaded through ``load_state_dict``), in the same train/eval mode.

    Raises:
        TypeError: ``module`` is not a torch module, or contains classes fparam cannot build
            (custom subclasses with their own ``forward`` among them); the message lists them all.
        ValueError: ``module`` uses one module or parameter object in two places (tied
            weights), which an fparam model cannot hold.
    """
    import torch

    from fparam import nn

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    missing = _unsupported(module)
    if missing:
        raise TypeError(
            "from_torch cannot build these classes, which fparam does not have (define the "
            "model with fparam.nn and load the torch state_dict instead): " + ", ".join(missing)
        )
    shared = _shared(module)
    if shared:
        raise ValueError(
            "from_torch cannot copy shared (tied) modules or parameters: an fparam model holds "
            "each in one place only (call a module twice in forward instead): " + "; ".join(shared)
        )
    twin = _convert(nn, module)
    twin.load_state_dict(
        {k: _torch_to_numpy(v) for k, v in module.state_dict().items()}, assign=True
    )
    for name, param in module.named_parameters():
        if not param.requires_grad:  # a frozen torch parameter stays frozen
            owner_name, _, leaf = name.rpartition(".")
            owner = twin.get_submodule(owner_name)
            owner.register_parameter(leaf, Parameter(getattr(owner, leaf), requires_grad=False))
    for (_, sub), (_, twin_sub) in zip(module.named_modules(), twin.named_modules()):
        if sub.training != twin_sub.training:
            twin_sub._set_static("training", sub.training)
    return twin
