"""The long error and warning messages of fparam's core, kept in one place.

Messages that mirror torch keep torch's wording (see ``torch-semantics.md``), with torch's type
names replaced by fparam's (``nn.Parameter`` for ``torch.nn.Parameter``, ``jax.Array`` for
``torch.FloatTensor``), so a PyTorch user recognises them and a test can compare substrings.
"""

from __future__ import annotations

TRACED_MUTATION = (
    "cannot {action} on a {cls} inside a JAX transformation (jit, grad, vmap, scan, ...): this "
    "module is the traced copy that the transformation made of its argument, so the change would "
    "be silently lost when the trace ends. Do it outside the transformation, or build the new "
    "module functionally and return it (for example `model, opt = opt.step(model, grads)`, or "
    "`jax.tree.map(...)` over the module)."
)

CAPTURED_MUTATION = (
    "cannot {action} on a {cls} inside a JAX transformation (jit, grad, vmap, scan, ...): the "
    "module was built outside the transformation and reached it by closure, so the change would "
    "happen once, at trace time (or leave traced arrays in your model after the trace). Pass "
    "the module as an argument and return the changed copy, or make the change outside the "
    "transformation."
)

BUFFER_UPDATE_LOST = (
    "a {cls} in training mode updated its buffers ({names}) inside a JAX transformation where "
    "the update cannot reach your model: the module is a copy made for the trace. Compute the "
    "loss with fparam.value_and_grad / fparam.grad (not jax.grad), which carry the new buffers "
    "into the model you pass them (return it, e.g. `model, opt = opt.step(model, grads)`); for "
    "a forward with no gradient use `out = fparam.stateful(fn)(model, x)` and return `model`; "
    "or call model.eval() first if the statistics should not change."
)

PLAIN_CONTAINER = (
    "cannot assign a plain {container} holding {what} as attribute '{name}': fparam (like torch) "
    "would not register what is inside it, so it would be silently left out of parameters(), "
    "state_dict() and training. Use {suggestion} instead."
)

TRACED_STATIC = (
    "cannot assign a traced array as plain attribute '{name}' of {cls}: plain arrays are static "
    "state, part of the tree structure and baked into compiled code. Register it as "
    "nn.Buffer(x) (state carried through the trace) or nn.Parameter(x) instead."
)

LARGE_STATIC_ARRAY = (
    "attribute '{name}' of {cls} is a plain array of {size}: plain arrays are static state, "
    "baked into every compiled function as a constant. For large state use "
    "nn.Buffer(x) (not trained, saved in state_dict) or nn.Parameter(x, requires_grad=False)."
)

SHARED_MODULE = (
    "{what} appears twice in one model (as '{first}' and as '{second}'). A module is a JAX "
    "pytree, so jax.jit and jax.grad would turn the two places into two independent copies and "
    "silently untie them. Use a distinct object for each place, or call the same module twice "
    "in forward()."
)

NOT_IN_TREE = "{what} is not part of this model: {detail}"

LOAD_NOT_ARRAY = (
    'While copying the parameter named "{key}", expected an array or array-like object from '
    "checkpoint but received {type}"
)

LOAD_ASSIGN_NOT_FLOAT = (
    'value for "{key}" has dtype {dtype}: with assign=True it would become a parameter that '
    "requires gradients, and only floating point and complex arrays can (cast it, or set "
    "requires_grad=False on the parameter first)"
)

LOAD_SIZE_MISMATCH = (
    "size mismatch for {key}: copying a param with shape {src} from checkpoint, the shape in "
    "current model is {dst}."
)

LAZY_UNBUILT = (
    "{cls} has uninitialized parameters or buffers ({names}) until its first call, and fparam "
    "cannot hand them out before they have a shape (an optimizer records each parameter's shape "
    "when it is built; torch's optimizer holds placeholders instead). Call the model once on an "
    "example input (or load_state_dict a checkpoint) first, then call {what}."
)
