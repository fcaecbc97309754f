"""fparam: PyTorch's nn.Parameter / nn.Module programming model, rebuilt functionally on JAX."""

from fparam import distributed, nn, optim
from fparam._grad import grad, stateful, value_and_grad
from fparam._module import Buffer, Module, Parameter
from fparam._random import RandomnessError, manual_seed, next_key, rng
from fparam._state import BufferUpdateError
from fparam.interop import from_torch
from fparam.serialization import load, save

__all__ = [
    "Buffer",
    "BufferUpdateError",
    "Module",
    "Parameter",
    "RandomnessError",
    "distributed",
    "from_torch",
    "grad",
    "load",
    "manual_seed",
    "next_key",
    "nn",
    "optim",
    "rng",
    "save",
    "stateful",
    "value_and_grad",
]

__version__ = "0.1.0"
