"""fparam: PyTorch's nn.Parameter / nn.Module programming model, rebuilt functionally on JAX."""

from fparam import nn, optim
from fparam._grad import grad, stateful, value_and_grad
from fparam._module import Buffer, Module, Parameter
from fparam._random import manual_seed
from fparam.interop import from_torch
from fparam.serialization import load, save

__all__ = [
    "Buffer",
    "Module",
    "Parameter",
    "from_torch",
    "grad",
    "load",
    "manual_seed",
    "nn",
    "optim",
    "save",
    "stateful",
    "value_and_grad",
]

__version__ = "0.1.0"
