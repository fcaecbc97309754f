"""Layers, containers, losses and initialisers with torch.nn's names and behaviour."""

from fparam._module import Buffer, Module, Parameter, StaticArrayWarning
from fparam.nn import functional
from fparam.nn.containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential

__all__ = [
    "Buffer",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "Sequential",
    "StaticArrayWarning",
    "functional",
]
