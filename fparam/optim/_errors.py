"""The long error messages of ``fparam.optim``, kept in one place.

Where torch words a check (``Invalid learning rate: -1``), fparam keeps torch's words; the others
name the argument, key or parameter, what was given and what was expected.
"""

from __future__ import annotations

BAD_HYPERPARAMETER = "{where} must be a real number or a 1-element array of real numbers, got {got}"

BAD_HYPERPARAMETER_TUPLE = (
    "{where} must be a tuple of {n} real numbers or 1-element arrays (such as betas=(0.9, "
    "0.999)), got {got}"
)

BAD_HYPERPARAMETER_SIZE = "Tensor {name} must be 1-element (got {where} of shape {shape})"

GRAD_SHAPE = (
    "grads for '{key}' have shape {got}; the parameter has shape {expected}. fparam applies a "
    "gradient only to a parameter of exactly its shape (torch refuses `p.grad = g` of another "
    "size too), never a broadcast one."
)

GRAD_DTYPE = (
    "grads for '{key}' have dtype {got}; the parameter has dtype {expected}. Gradients must have "
    "their parameter's dtype (torch refuses `p.grad = g` of another dtype too): {hint}"
)

GRAD_NOT_ARRAY = "grads for '{key}' is {got}; expected an array of shape {shape} and dtype {dtype}"

SWAPPED_ARGUMENTS = (
    "the model passed to opt.step() has {what} at '{key}' where grads has an array: this looks "
    "like opt.step(grads, model). fparam's order is torch's reading, "
    "`model, opt = opt.step(model, grads)` (optax's `update` takes the grads first)."
)

LOAD_BAD_ENTRY = "loaded state dict: {where} is {got}; expected {expected}"

LOAD_UNKNOWN_STATE_KEY = (
    "loaded state dict: state[{index!r}] has key {key!r}; {cls} keeps only {known} per parameter "
    "(is this another optimizer's state_dict?)"
)

LOAD_MISSING_STATE_KEY = (
    "loaded state dict: state[{index!r}] has no {key!r}; {cls} keeps it for every parameter "
    "with state (the entry has keys {keys})"
)

LOAD_UNKNOWN_PARAMETER = (
    "loaded state dict: state has an entry for parameter {index!r}, which no parameter group "
    "lists (the groups list {listed})"
)

LOAD_BUFFER_SHAPE = (
    "loaded state dict: {key} for parameter {index} has shape {got}, expected {expected} "
    "(the shape of parameter {index})"
)

LOAD_BUFFER_DTYPE = (
    "loaded state dict: {key} for parameter {index} has dtype {got}; expected a real number "
    "dtype (it is cast to the parameter's {expected})"
)

LOAD_INSIDE_TRACE = (
    "cannot load_state_dict() into an optimizer inside a JAX transformation: the traced copy "
    "would be changed and the change lost when the trace ends. Load it outside, before the "
    "jitted step."
)

SCHEDULER_STEP_TRACED = (
    "{cls}.step() was called inside a JAX transformation (jit, scan, grad, ...) on a traced "
    "optimizer: it would advance the scheduler's epoch once, when the step is traced, and the "
    "compiled step would reuse that lr forever. Inside the jitted step write "
    "`opt = scheduler.apply(opt, epoch)` with `epoch` an argument of the jitted function (the "
    "lr is a leaf: nothing recompiles), or call `scheduler.step(opt)` outside the jitted step, "
    "between calls."
)
