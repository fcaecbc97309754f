"""What ``Module.to`` / ``.cuda()`` / ``.half()`` / ``.type()`` do: read torch's arguments, then
cast and move every parameter and buffer of a module tree, all or nothing.

torch's rules (``Module._apply`` and its callers):

* ``to(dtype)`` accepts only floating point and complex dtypes (``TypeError`` otherwise) and
  casts only the floating point and complex parameters and buffers; integer buffers
  (``num_batches_tracked``) keep their dtype.
* ``float()`` / ``double()`` / ``half()`` / ``bfloat16()`` cast only floating point ones
  (complex ones too are left alone).
* ``type(dst_type)`` casts every parameter and buffer, integer ones included.
* plain array attributes are static state, not tensors torch would move: left alone.

fparam checks everything first and writes only when every array converted: a device that does
not exist, a 64-bit dtype while JAX's 64-bit mode is off (JAX would silently make 32-bit
arrays), or a parameter that requires gradients turned into integers raise before anything
changes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from fparam._module import Module

_TO_NOT_FLOATING = (
    "nn.Module.to only accepts floating point or complex dtypes, but got desired dtype={dtype}"
)
_TO_ARGUMENTS = (
    "{method}: expected to(device=None, dtype=None, non_blocking=False), to(dtype, "
    "non_blocking=False) or to(array, non_blocking=False), got {got}"
)
_NO_SUCH_DEVICE = "{message}. The devices JAX has here: jax.devices() = {devices}"
_INT_REQUIRES_GRAD = (
    "data set to a tensor that requires gradients must be floating point or complex dtype: "
    "{method} would make parameter '{name}' {dtype} while it requires gradients (freeze it "
    "first: requires_grad_(False))"
)
_NO_X64 = (
    "{method}: dtype={dtype} needs JAX's 64-bit mode, which is off, so JAX would silently make "
    "{canonical} arrays. Turn it on (jax.config.update('jax_enable_x64', True)) before "
    "converting the model"
)
_COMPLEX_TO_REAL = "Casting complex values to real discards the imaginary part"
_BAD_DTYPE = (
    "{method}: expected a dtype (jnp.float16, 'float16', numpy.float16 or torch.float16), "
    "got {type} {value!r}"
)

# torch's device type names (the first part of "cuda:0"), see nn/_validation.py.
_DEVICE_KINDS = ("cpu", "cuda", "gpu", "rocm", "tpu", "mps", "xpu", "meta")


def _is_torch(value: Any, name: str) -> bool:
    cls = type(value)
    return cls.__module__ == "torch" and cls.__name__ == name


def _typename(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def dtype_of(method: str, value: Any) -> np.dtype[Any]:
    """A dtype argument (NumPy/JAX dtype or scalar type, its name, or a torch dtype read by its
    name) as a NumPy dtype JAX can hold as it is."""
    if _is_torch(value, "dtype"):
        value = str(value).removeprefix("torch.")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(
            _BAD_DTYPE.format(method=method, type=_typename(value), value=value)
        ) from None
    canonical = jax.dtypes.canonicalize_dtype(dtype)
    if canonical != dtype:
        raise TypeError(_NO_X64.format(method=method, dtype=dtype, canonical=canonical))
    return dtype


def _looks_like_dtype(value: Any) -> bool:
    if _is_torch(value, "dtype") or isinstance(value, np.dtype):
        return True
    if isinstance(value, type):
        return issubclass(value, np.generic) or hasattr(value, "dtype")
    if isinstance(value, str) and value.partition(":")[0] not in _DEVICE_KINDS:
        try:
            np.dtype(value)
        except TypeError:
            return False  # read as a device, whose message lists the device names
        return True
    return False


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray)) or (
        hasattr(value, "dtype") and hasattr(value, "shape") and hasattr(value, "device")
    )


def device_of(method: str, device: Any) -> Any:
    """A device argument as a ``jax.Device`` or ``jax.sharding.Sharding`` (``None`` stays)."""
    from fparam.nn import _validation as V

    if _is_torch(device, "device"):
        device = str(device)
    try:
        return V.resolve_device(method, device)
    except RuntimeError as error:
        raise RuntimeError(_NO_SUCH_DEVICE.format(message=error, devices=jax.devices())) from None


def _array_placement(array: Any) -> Any:
    if isinstance(array, jax.Array):
        return array.sharding
    if _is_torch(array, "Tensor"):
        return str(array.device)
    return None  # a NumPy array lives on the host: keep the model where it is


def parse_to(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    method: str = "Module.to",
    any_dtype: bool = False,
) -> tuple[Any, Any]:
    """torch's ``Module.to`` overloads as ``(device, dtype)`` (each ``None`` to keep), checked.

    ``non_blocking`` is accepted and ignored (JAX transfers are asynchronous anyway), and so is
    ``memory_format`` (XLA picks memory layouts itself). ``any_dtype``: accept integer and bool
    dtypes too (``Tensor.to`` does; ``Module.to`` does not).
    """
    kwargs = dict(kwargs)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(_TO_ARGUMENTS.format(method=method, got=f"keywords {sorted(kwargs)}"))
    rest = list(args)
    if rest and _is_array(rest[0]) and not _looks_like_dtype(rest[0]):
        array = rest.pop(0)
        device, dtype = _array_placement(array), array.dtype
    elif rest and _looks_like_dtype(rest[0]):
        dtype = rest.pop(0)
    elif rest:
        device = rest.pop(0)
        if rest and not isinstance(rest[0], bool):
            dtype = rest.pop(0)
    if rest and isinstance(rest[0], bool):  # non_blocking
        rest.pop(0)
    if rest:
        raise TypeError(
            _TO_ARGUMENTS.format(method=method, got=f"positional arguments {list(args)!r}")
        )
    if dtype is not None:
        dtype = dtype_of(method, dtype)
        if not any_dtype and not jnp.issubdtype(dtype, jnp.inexact):
            shown = f"torch.{dtype}" if args and _is_torch(args[0], "dtype") else dtype
            raise TypeError(_TO_NOT_FLOATING.format(dtype=shown))
    return device_of(method, device), dtype


def floating_only(dtype: Any) -> Callable[[Any], Any]:
    """``float()``/``half()``'s rule: cast floating point arrays only."""
    return lambda current: dtype if jnp.issubdtype(current, jnp.floating) else None


def inexact_only(dtype: Any) -> Callable[[Any], Any]:
    """``to(dtype)``'s rule: cast floating point and complex arrays."""
    return lambda current: dtype if jnp.issubdtype(current, jnp.inexact) else None


def put(array: Any, sharding: Any) -> Any:
    """``jax.device_put(array, sharding)`` that compiles nothing.

    An array held whole on one device and split over several goes through the host, where JAX
    splits it for nothing; split on the device, it would compile a slicing program per shape
    and placement (0.3-0.5 s each on CPU: a loaded checkpoint of a 20-parameter model paid
    seconds). Everything else is ``device_put`` as is.
    """
    if (
        isinstance(array, jax.Array)
        and isinstance(sharding, jax.sharding.Sharding)
        and len(array.sharding.device_set) == 1
        and len(sharding.device_set) > 1
        and not sharding.is_fully_replicated
        and not isinstance(array, jax.core.Tracer)
    ):
        array = np.asarray(array)
    return jax.device_put(array, sharding)


def convert(module: Module, method: str, device: Any, target: Callable[[Any], Any] | None) -> None:
    """Move every parameter and buffer of ``module``'s tree to ``device`` (``None``: stay) and
    cast it to ``target(its dtype)`` (``None``: keep), in place; all or nothing."""
    from fparam._module import _note_owner

    writes: list[Callable[[], None]] = []

    def write(sub: Module, name: str, new: Any) -> None:
        sub.__dict__[name] = new
        _note_owner(new, sub, name)

    for path, sub in module.named_modules():
        sub._check_mutable(f"call {method}")
        d = sub.__dict__
        layout = d["_fp_layout"]
        trainable = dict(layout.params)
        for name in layout.leaf_names[: len(layout.params) + len(layout.buffers)]:
            array = d[name]
            if array is None:
                continue
            dtype = None if target is None else target(array.dtype)
            if dtype is not None and dtype == array.dtype:
                dtype = None
            if dtype is not None and trainable.get(name) and not jnp.issubdtype(dtype, jnp.inexact):
                key = f"{path}.{name}" if path else name
                raise RuntimeError(
                    _INT_REQUIRES_GRAD.format(method=method, name=key, dtype=np.dtype(dtype))
                )
            if device is None and dtype is None:
                continue
            new = array if device is None else jax.device_put(array, device)
            if dtype is not None:
                if jnp.iscomplexobj(new) and not jnp.issubdtype(dtype, jnp.complexfloating):
                    warnings.warn(_COMPLEX_TO_REAL, UserWarning, stacklevel=3)
                    new = jnp.real(new)
                new = new.astype(dtype)
            writes.append(functools.partial(write, sub, name, new))
        # A lazy module's placeholders take the new device and dtype too (fparam/nn/lazy.py).
        placeholders = getattr(sub, "_fp_convert_placeholders", None)
        if placeholders is not None:
            writes.extend(placeholders(device, target))
    for apply in writes:
        apply()
