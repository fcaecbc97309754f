"""``Identity``, ``Linear`` and ``Bilinear`` (``torch/nn/modules/linear.py``)."""

from __future__ import annotations

import math
from typing import Any

import jax

from fparam import _random
from fparam._module import Module, Parameter
from fparam.nn import _validation as V
from fparam.nn import functional as F
from fparam.nn import init

__all__ = ["Bilinear", "Identity", "Linear"]


class Identity(Module):
    """Returns its input unchanged; accepts and ignores any constructor arguments (as torch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


class Linear(Module):
    """``y = x @ weight.T + bias``, like ``torch.nn.Linear``.

    Arguments:
        in_features: size of the last input dimension.
        out_features: size of the last output dimension.
        bias: whether to learn an additive bias (``False`` registers ``bias`` as ``None``).
        device: where to place the parameters: a JAX device or sharding, or torch's spelling
            (``'cpu'``, ``'cuda'``, ``'cuda:0'``); ``None`` for JAX's default.
        dtype: floating parameter dtype (float32 by default, as in torch); a torch dtype
            (``torch.float16``), a NumPy/JAX dtype or a dtype name.
        key: JAX key for the initial values (``jax.random.key(0)``, not an int); ``None``
            draws from fparam's default stream.

    Sizes must be non-negative ints (``TypeError`` / ``RuntimeError`` otherwise, as in torch).

    Parameters ``weight`` ``(out_features, in_features)`` and ``bias`` ``(out_features,)`` start
    as torch's: both ``U(-1/√in_features, 1/√in_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        in_features = V.check_size("Linear", "in_features", in_features)
        out_features = V.check_size("Linear", "out_features", out_features)
        dtype = V.resolve_dtype("Linear", dtype)
        device = V.resolve_device("Linear", device)
        key = V.check_key("Linear", key)
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        shapes: dict[str, tuple[int, ...]] = {"weight": (out_features, in_features)}
        if bias:
            shapes["bias"] = (out_features,)
        values = self._initial_values(key, shapes, dtype)
        self.weight = Parameter(V.place(values["weight"], device))
        if bias:
            self.bias = Parameter(V.place(values["bias"], device))
        else:
            self.register_parameter("bias", None)

    def _initial_values(
        self, key: jax.Array | None, shapes: dict[str, tuple[int, ...]], dtype: Any
    ) -> dict[str, jax.Array]:
        weight_key, bias_key = _random.split_key(_random.init_key(key))
        spec = jax.ShapeDtypeStruct(shapes["weight"], dtype)
        values = {"weight": init.kaiming_uniform_(spec, a=math.sqrt(5), key=weight_key)}
        if "bias" in shapes:
            bound = init.default_uniform_bound(self.in_features)
            bias_spec = jax.ShapeDtypeStruct(shapes["bias"], dtype)
            values["bias"] = init.uniform_(bias_spec, -bound, bound, key=bias_key)
        return values

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's default initial values again (in place; parameters keep identity).

        The new values stay on the device (or sharding) of the old ones.

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shapes: dict[str, tuple[int, ...]] = {"weight": self.weight.shape}
        if self.bias is not None:
            shapes["bias"] = self.bias.shape
        self._set_values(**self._initial_values(key, shapes, self.weight.dtype))

    def forward(self, input: jax.Array) -> jax.Array:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


_BILINEAR_IN1 = "in1_features must be > 0, but got (in1_features={value})"


class Bilinear(Module):
    """``y = x1^T A x2 + b`` per output feature, like ``torch.nn.Bilinear``.

    Arguments:
        in1_features: size of the last dimension of the first input (> 0).
        in2_features: size of the last dimension of the second input.
        out_features: size of the last output dimension.
        bias: whether to learn an additive bias (``False`` registers ``bias`` as ``None``).
        device: where to place the parameters (as for ``Linear``).
        dtype: floating parameter dtype (float32 by default).
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    Parameters ``weight`` ``(out_features, in1_features, in2_features)`` and ``bias``
    ``(out_features,)`` start as torch's: both ``U(-1/√in1_features, 1/√in1_features)``.
    ``forward(input1, input2)`` calls ``F.bilinear``: ``(*, in1)`` and ``(*, in2)`` with the
    same ``*`` give ``(*, out_features)``.

    Raises:
        TypeError / RuntimeError: a size that is not a non-negative int (as in torch).
        ValueError: ``in1_features == 0`` (torch's message).
    """

    def __init__(
        self,
        in1_features: int,
        in2_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        in1_features = V.check_size("Bilinear", "in1_features", in1_features)
        in2_features = V.check_size("Bilinear", "in2_features", in2_features)
        out_features = V.check_size("Bilinear", "out_features", out_features)
        if in1_features == 0:
            raise ValueError(_BILINEAR_IN1.format(value=in1_features))
        dtype = V.resolve_dtype("Bilinear", dtype)
        device = V.resolve_device("Bilinear", device)
        key = V.check_key("Bilinear", key)
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        shapes: dict[str, tuple[int, ...]] = {"weight": (out_features, in1_features, in2_features)}
        if bias:
            shapes["bias"] = (out_features,)
        values = self._initial_values(key, shapes, dtype)
        self.weight = Parameter(V.place(values["weight"], device))
        if bias:
            self.bias = Parameter(V.place(values["bias"], device))
        else:
            self.register_parameter("bias", None)

    def _initial_values(
        self, key: jax.Array | None, shapes: dict[str, tuple[int, ...]], dtype: Any
    ) -> dict[str, jax.Array]:
        weight_key, bias_key = _random.split_key(_random.init_key(key))
        bound = init.default_uniform_bound(shapes["weight"][1])
        spec = jax.ShapeDtypeStruct(shapes["weight"], dtype)
        values = {"weight": init.uniform_(spec, -bound, bound, key=weight_key)}
        if "bias" in shapes:
            bias_spec = jax.ShapeDtypeStruct(shapes["bias"], dtype)
            values["bias"] = init.uniform_(bias_spec, -bound, bound, key=bias_key)
        return values

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's default initial values again (in place; parameters keep identity).

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shapes: dict[str, tuple[int, ...]] = {"weight": self.weight.shape}
        if self.bias is not None:
            shapes["bias"] = self.bias.shape
        self._set_values(**self._initial_values(key, shapes, self.weight.dtype))

    def forward(self, input1: jax.Array, input2: jax.Array) -> jax.Array:
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )
