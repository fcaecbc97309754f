"""``torch.nn.utils``: gradient clipping and parameter/vector conversion, as pure functions, and
``nn.utils.rnn`` (packed and padded sequences).

fparam gradients are values (``fparam.grad`` / ``jax.grad`` return them), never stored on the
parameters, so the functions that torch runs in place on ``p.grad`` take the gradients and
return the clipped ones: ``grads, norm = clip_grad_norm_(grads, max_norm)``. They work on any
pytree of gradients (a module-shaped gradient, a list, a dict) and inside ``jit``.
"""

# torch.nn.utils.rnn: packed and padded sequences (fparam.nn.utils.rnn.pack_padded_sequence, ...).
from fparam.nn.utils import rnn
from fparam.nn.utils.clip_grad import (
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)
from fparam.nn.utils.convert_parameters import parameters_to_vector, vector_to_parameters

__all__ = [
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "parameters_to_vector",
    "rnn",
    "vector_to_parameters",
]
