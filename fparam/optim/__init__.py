"""Functional, pytree optimizers with torch.optim's names and update rules."""

from fparam.optim import lr_scheduler
from fparam.optim.optimizer import Optimizer
from fparam.optim.sgd import SGD

__all__ = ["SGD", "Optimizer", "lr_scheduler"]
