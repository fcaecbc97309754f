"""Activations (``torch/nn/modules/activation.py``): thin modules over ``nn.functional``.

``inplace=`` is accepted for signature compatibility and shown in ``repr`` as in torch; JAX
arrays are immutable, so it changes nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax

from fparam._module import Module, Parameter
from fparam.nn import _validation as V
from fparam.nn import functional as F
from fparam.nn import init as _init

__all__ = ["ELU", "GELU", "LeakyReLU", "LogSoftmax", "ReLU", "SiLU", "Sigmoid", "Softmax", "Tanh"]
__all__ += [
    "CELU",
    "GLU",
    "SELU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LogSigmoid",
    "Mish",
    "PReLU",
    "RReLU",
    "ReLU6",
    "Softmin",
    "Softplus",
    "Softshrink",
    "Softsign",
    "Tanhshrink",
    "Threshold",
]

_MIN_VALUE_RENAMED = "keyword argument `min_value` is deprecated and renamed to `min_val`"
_MAX_VALUE_RENAMED = "keyword argument `max_value` is deprecated and renamed to `max_val`"
_HARDTANH_ORDER = "max_val ({max_val}) must be greater than min_val ({min_val})"


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class ReLU(Module):
    """``max(0, x)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.relu(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class LeakyReLU(Module):
    """``x if x >= 0 else negative_slope * x``."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"negative_slope={self.negative_slope}{inplace}"


class ELU(Module):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"alpha={self.alpha}{inplace}"


class GELU(Module):
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: jax.Array) -> jax.Array:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.silu(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.sigmoid(input)


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.tanh(input)


class Threshold(Module):
    """``x`` where ``x > threshold``, else ``value``, like ``torch.nn.Threshold``."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold = threshold
        self.value = value
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.threshold(input, self.threshold, self.value)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"threshold={self.threshold}, value={self.value}{inplace}"


class RReLU(Module):
    """Randomized leaky ReLU, like ``torch.nn.RReLU``.

    In training mode each non-positive element gets its own slope drawn from
    ``U(lower, upper)`` (from fparam's key stream eagerly, the key in scope of
    ``with fparam.rng(key):`` under a transformation); in eval mode the slope is
    ``(lower + upper) / 2``. Holds no random state (no ``state_dict`` entries), as in torch.
    """

    def __init__(
        self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False
    ) -> None:
        super().__init__()
        self.lower = lower
        self.upper = upper
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.rrelu(input, self.lower, self.upper, self.training)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"lower={self.lower}, upper={self.upper}{inplace}"


class Hardtanh(Module):
    """``clip(x, min_val, max_val)``, like ``torch.nn.Hardtanh`` (``AssertionError`` unless
    ``max_val > min_val``; the deprecated ``min_value`` / ``max_value`` keywords warn as torch)."""

    def __init__(
        self,
        min_val: float = -1.0,
        max_val: float = 1.0,
        inplace: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        super().__init__()
        if min_value is not None:
            warnings.warn(_MIN_VALUE_RENAMED, FutureWarning, stacklevel=2)
            min_val = min_value
        if max_value is not None:
            warnings.warn(_MAX_VALUE_RENAMED, FutureWarning, stacklevel=2)
            max_val = max_value
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace
        if self.max_val <= self.min_val:
            raise AssertionError(_HARDTANH_ORDER.format(max_val=max_val, min_val=min_val))

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"min_val={self.min_val}, max_val={self.max_val}{inplace}"


class ReLU6(Hardtanh):
    """``min(max(0, x), 6)``, like ``torch.nn.ReLU6`` (a ``Hardtanh(0, 6)``)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class _InplaceActivation(Module):
    """An activation whose only option is torch's no-op ``inplace=``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class SELU(_InplaceActivation):
    """Scaled ELU with torch's constants, like ``torch.nn.SELU``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.selu(input)


class Hardswish(Module):
    """``x * relu6(x + 3) / 6``, like ``torch.nn.Hardswish`` (whose repr, like torch's, does
    not show ``inplace``)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardswish(input)


class Hardsigmoid(Module):
    """``relu6(x + 3) / 6``, like ``torch.nn.Hardsigmoid`` (whose repr, like torch's, does not
    show ``inplace``)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardsigmoid(input)


class Mish(_InplaceActivation):
    """``x * tanh(softplus(x))``, like ``torch.nn.Mish``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.mish(input)


class CELU(Module):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``, like ``torch.nn.CELU``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.celu(input, self.alpha)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"alpha={self.alpha}{inplace}"


class GLU(Module):
    """Gated linear unit over ``dim``, like ``torch.nn.GLU``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Hardshrink(Module):
    """``x`` where ``|x| > lambd``, else 0, like ``torch.nn.Hardshrink``."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardshrink(input, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Module):
    """Soft thresholding by ``lambd``, like ``torch.nn.Softshrink``."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softshrink(input, self.lambd)

    def extra_repr(self) -> str:
        return str(self.lambd)


class Softplus(Module):
    """``log(1 + exp(beta * x)) / beta`` (linear above ``threshold``), like ``torch.nn.Softplus``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Tanhshrink(Module):
    """``x - tanh(x)``, like ``torch.nn.Tanhshrink`` (accepts and ignores arguments, as torch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: jax.Array) -> jax.Array:
        return F.tanhshrink(input)


class LogSigmoid(Module):
    """``log(sigmoid(x))``, like ``torch.nn.LogSigmoid``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: jax.Array) -> jax.Array:
        return F.logsigmoid(input)


class Softsign(Module):
    """``x / (1 + |x|)``, like ``torch.nn.Softsign``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softsign(input)


class Softmin(Module):
    """Softmin over ``dim`` (torch's legacy implicit dim when ``None``), like ``torch.nn.Softmin``."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softmin(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class PReLU(Module):
    """``x`` where ``x > 0``, else ``weight * x`` with learnt slopes, like ``torch.nn.PReLU``.

    Arguments:
        num_parameters: how many slopes: 1 (shared) or the number of input channels (axis 1).
        init: the initial value of every slope (default 0.25).
        device: where to place ``weight`` (see :class:`~fparam.nn.Linear`).
        dtype: floating dtype of ``weight`` (float32 by default).

    Parameter ``weight`` ``(num_parameters,)`` starts filled with ``init``, as in torch.
    """

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None
    ) -> None:
        num_parameters = V.check_size("PReLU", "num_parameters", num_parameters)
        V.check_number("PReLU", "init", init)
        dtype = V.resolve_dtype("PReLU", dtype)
        device = V.resolve_device("PReLU", device)
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        weight = _init.constant_(jax.ShapeDtypeStruct((num_parameters,), dtype), init)
        self.weight = Parameter(V.place(weight, device))

    def reset_parameters(self) -> None:
        """Fill ``weight`` with ``init`` again (in place; it keeps its device)."""
        self._set_values(weight=_init.constant_(self.weight, self.init))

    def forward(self, input: jax.Array) -> jax.Array:
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Softmax(Module):
    """Softmax over ``dim`` (torch's legacy implicit dim when ``None``)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax over ``dim`` (torch's legacy implicit dim when ``None``)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.log_softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


__all__ += ["Softmax2d"]

_SOFTMAX2D_RANK = "Softmax2d: expected input to be 3D or 4D, got {rank}D instead"


class Softmax2d(Module):
    """Softmax over the channels (dim -3) at every position, like ``torch.nn.Softmax2d``.

    Input ``(N, C, H, W)`` or unbatched ``(C, H, W)``; any other rank raises torch's
    ``ValueError``.
    """

    def forward(self, input: jax.Array) -> jax.Array:
        rank = jax.numpy.ndim(input)
        if rank not in (3, 4):
            raise ValueError(_SOFTMAX2D_RANK.format(rank=rank))
        return F.softmax(input, -3)
