"""Functional, pytree optimizers with torch.optim's names and update rules."""

from fparam import _torch_names
from fparam.optim import lr_scheduler
from fparam.optim.optax_adapter import Optax
from fparam.optim.optimizer import Optimizer
from fparam.optim.sgd import SGD

__all__ = ["SGD", "Optax", "Optimizer", "lr_scheduler"]

# Python calls this only for a name the module does not define: a torch name says "not yet".
__getattr__ = _torch_names.missing_attribute_hook(__name__, "torch.optim", _torch_names.OPTIM)

from fparam.optim.adadelta import Adadelta
from fparam.optim.adagrad import Adagrad
from fparam.optim.adam import Adam, AdamW
from fparam.optim.adamax import Adamax
from fparam.optim.nadam import NAdam
from fparam.optim.radam import RAdam
from fparam.optim.rmsprop import RMSprop

__all__ += ["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop"]
