"""Argument checks shared by every layer constructor and functional in ``fparam.nn``.

Each check names the argument, says what it got and what it expects, and raises the exception
type torch raises for the same bad value (torch raises some only in ``forward``; fparam's
constructors raise them at once, so a bad layer is never built). What torch users pass is
accepted: ``device='cpu'`` / ``'cuda:0'`` / a ``torch.device``, ``dtype=torch.float32``, NumPy
integers for sizes. torch is never imported: its dtypes and devices are read by name.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._random import HostKey

__all__ = [
    "check_array",
    "check_int",
    "check_key",
    "check_number",
    "check_optional_array",
    "check_optional_int",
    "check_size",
    "check_str_choice",
    "resolve_device",
    "resolve_dtype",
]

_NOT_INT = "{owner}: argument '{name}' must be int, not {type} (got {name}={value!r})"
_NEGATIVE = (
    "{owner}: argument '{name}' must be non-negative, got {name}={value} (torch: Trying to "
    "create tensor with negative dimension {value})"
)
_NOT_NUMBER = "{owner}: argument '{name}' must be a real number, not {type} (got {name}={value!r})"
_COMPLEX_NUMBER = (
    "{owner}: argument '{name}' must be a real number; {value!r} cannot be converted to float "
    "without overflow"
)
_NOT_STR = "{owner}: argument '{name}' must be str, not {type} (got {name}={value!r})"
_BAD_CHOICE = "{owner}: argument '{name}' must be one of {choices}, got {name}={value!r}"
_BAD_DTYPE = (
    "{owner}: argument 'dtype' must be a dtype (jnp.float32, 'float32', numpy.float32 or "
    "torch.float32), got {value!r}"
)
_NOT_FLOATING = (
    "{owner}: argument 'dtype' must be a floating point dtype, got dtype={dtype}: parameters "
    "are drawn from float distributions and require gradients (torch: Only Tensors of floating "
    "point and complex dtype can require gradients)"
)
_NO_X64 = (
    "{owner}: dtype={dtype} needs JAX's 64-bit mode, which is off, so JAX would silently make "
    "{canonical} arrays. Turn it on (jax.config.update('jax_enable_x64', True), or "
    "`with jax.enable_x64(True):`) or pass a 32-bit dtype"
)
_BAD_DEVICE_TYPE = (
    "{owner}: argument 'device' must be None, a jax.Device, a jax.sharding.Sharding, a torch-style "
    "string ('cpu', 'cuda', 'cuda:0', 'gpu', 'tpu:1') or a device index, got {type} {value!r}"
)
_NO_DEVICE = "{owner}: device={value!r}: {reason}"
_BAD_KEY = (
    "{owner}: argument 'key' must be a JAX random key (key=jax.random.key({example}) or "
    "jax.random.PRNGKey({example})), not {type} {value!r}"
)

# torch's device types, by the JAX platform that plays their part.
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "rocm": "gpu", "tpu": "tpu"}


def _typename(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def check_int(owner: str, name: str, value: Any) -> int:
    """``value`` as a Python int: an int or a NumPy integer, not a bool or a float.

    Raises:
        TypeError: anything else (torch's type for a non-int size or dim).
    """
    if isinstance(value, (bool, np.bool_, float, np.floating)):
        raise TypeError(_NOT_INT.format(owner=owner, name=name, type=_typename(value), value=value))
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            _NOT_INT.format(owner=owner, name=name, type=_typename(value), value=value)
        ) from None


def check_optional_int(owner: str, name: str, value: Any) -> int | None:
    """``None``, or :func:`check_int`."""
    return None if value is None else check_int(owner, name, value)


def check_size(owner: str, name: str, value: Any) -> int:
    """A size: :func:`check_int`, and ``RuntimeError`` when negative (torch's type)."""
    size = check_int(owner, name, value)
    if size < 0:
        raise RuntimeError(_NEGATIVE.format(owner=owner, name=name, value=size))
    return size


def check_number(owner: str, name: str, value: Any) -> Any:
    """A real scalar (bool, int, float, NumPy scalar, or a 0-d real array, traced or not).

    Raises:
        TypeError: not a number (torch's type: "must be Number").
        RuntimeError: a complex number (torch's type).
    """
    if isinstance(value, (complex, np.complexfloating)):
        raise RuntimeError(_COMPLEX_NUMBER.format(owner=owner, name=name, value=value))
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return value
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0:
        if jnp.issubdtype(value.dtype, jnp.complexfloating):
            raise RuntimeError(_COMPLEX_NUMBER.format(owner=owner, name=name, value=value))
        if jnp.issubdtype(value.dtype, jnp.number) or value.dtype == jnp.bool_:
            return value
    raise TypeError(_NOT_NUMBER.format(owner=owner, name=name, type=_typename(value), value=value))


def check_str_choice(
    owner: str, name: str, value: Any, choices: tuple[str, ...], error: type[Exception]
) -> str:
    """One of ``choices``: ``TypeError`` for a non-string, ``error`` for another string."""
    if not isinstance(value, str):
        raise TypeError(_NOT_STR.format(owner=owner, name=name, type=_typename(value), value=value))
    if value not in choices:
        raise error(_BAD_CHOICE.format(owner=owner, name=name, choices=choices, value=value))
    return value


def _torch_object(value: Any, name: str) -> bool:
    cls = type(value)
    return cls.__module__ == "torch" and cls.__name__ == name


def resolve_dtype(owner: str, dtype: Any, default: Any = jnp.float32) -> np.dtype[Any]:
    """The floating dtype a layer's parameters get.

    Arguments:
        owner: the layer, for messages.
        dtype: ``None`` (``default``), a NumPy/JAX dtype or scalar type, a dtype name, or a
            torch dtype (read by its name: ``torch.float32`` -> ``float32``).
        default: the dtype for ``None``.

    Raises:
        TypeError: not a dtype; or float64 while JAX's 64-bit mode is off (JAX would silently
            make float32 arrays).
        RuntimeError: not a floating dtype (torch raises this type for an int dtype).
    """
    if dtype is None:
        dtype = default
    elif _torch_object(dtype, "dtype"):
        dtype = str(dtype).removeprefix("torch.")
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(_BAD_DTYPE.format(owner=owner, value=dtype)) from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise RuntimeError(_NOT_FLOATING.format(owner=owner, dtype=resolved))
    canonical = jax.dtypes.canonicalize_dtype(resolved)
    if canonical != resolved:
        raise TypeError(_NO_X64.format(owner=owner, dtype=resolved, canonical=canonical))
    return resolved


def resolve_device(owner: str, device: Any) -> Any:
    """The JAX placement for a layer's parameters: ``None`` (JAX's default), a ``jax.Device``,
    a ``jax.sharding.Sharding``, or what a torch user writes (``'cpu'``, ``'cuda'``,
    ``'cuda:1'``, a ``torch.device``, an int index), mapped to the JAX device of that kind.

    Raises:
        TypeError: not a device description.
        RuntimeError: no such device on this machine (torch raises this type too).
    """
    if device is None or isinstance(device, (jax.Device, jax.sharding.Sharding)):
        return device
    if _torch_object(device, "device"):
        device = str(device)
    if isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_)):
        devices = jax.devices()
        if not 0 <= device < len(devices):
            reason = f"there are {len(devices)} {devices[0].platform} device(s)"
            raise RuntimeError(_NO_DEVICE.format(owner=owner, value=device, reason=reason))
        return devices[device]
    if not isinstance(device, str):
        raise TypeError(_BAD_DEVICE_TYPE.format(owner=owner, type=_typename(device), value=device))
    kind, _, index_text = device.partition(":")
    platform = _PLATFORMS.get(kind)
    if platform is None or (index_text and not index_text.isdigit()):
        raise RuntimeError(
            _NO_DEVICE.format(
                owner=owner, value=device, reason=f"expected one of {sorted(_PLATFORMS)}[:index]"
            )
        )
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        reason = f"JAX has no {platform} backend here (it has {jax.devices()[0].platform})"
        raise RuntimeError(_NO_DEVICE.format(owner=owner, value=device, reason=reason)) from None
    index = int(index_text) if index_text else 0
    if index >= len(devices):
        reason = f"there are {len(devices)} {platform} device(s)"
        raise RuntimeError(_NO_DEVICE.format(owner=owner, value=device, reason=reason))
    return devices[index]


def place(array: jax.Array, device: Any) -> jax.Array:
    """``array`` on ``device`` (a resolved device or sharding; ``None``: where it is).

    One ``device=`` serves all of a layer's arrays, as in torch, so a ``NamedSharding`` whose
    spec is longer than an array's rank applies its leading entries to it: with
    ``P('model', None)`` a ``Linear``'s weight is split by rows and its bias likewise, with
    ``P(None, 'model')`` the weight by columns and the bias replicated (the bias follows the
    weight's output dimension in every torch layer).
    """
    if device is None:
        return array
    if isinstance(device, jax.sharding.NamedSharding) and len(device.spec) > array.ndim:
        device = jax.sharding.NamedSharding(
            device.mesh,
            jax.sharding.PartitionSpec(*device.spec[: array.ndim]),
            memory_kind=device.memory_kind,
        )
    return jax.device_put(array, device)


def check_key(owner: str, key: Any) -> Any:
    """``None`` or a JAX key: a typed key (``jax.random.key``) or a legacy ``uint32[2]``
    ``PRNGKey``, traced or not; or a ``fparam._random.HostKey`` (what ``split_key`` hands out
    eagerly), so that a layer can pass its children keys split from its own.

    Raises:
        TypeError: anything else; an int seed gets the spelling to use (``jax.random.key(42)``).
    """
    if key is None or isinstance(key, HostKey):
        return key
    if isinstance(key, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    example = key if isinstance(key, int) and not isinstance(key, bool) else 0
    raise TypeError(_BAD_KEY.format(owner=owner, example=example, type=_typename(key), value=key))


_NOT_ARRAY = "{owner}: argument '{name}' must be an array, not {type} (got {name}={value!r})"


def check_optional_array(owner: str, name: str, value: Any) -> Any:
    """``None``, an array (JAX, NumPy, a torch tensor: anything with ``__array__``), or a
    (nested) list/tuple of numbers; returned unchanged.

    Raises:
        TypeError: anything else (torch's type: "must be Tensor").
    """
    if value is None or isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return value
    if isinstance(value, (bool, int, float, complex)):  # a scalar: JAX reads it as a 0-d array
        return value
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        array = np.asarray(value) if value else np.zeros((0,))
        if array.dtype.kind in "biuf":
            return value
    raise TypeError(_NOT_ARRAY.format(owner=owner, name=name, type=_typename(value), value=value))


def check_array(owner: str, name: str, value: Any) -> Any:
    """:func:`check_optional_array`, with ``None`` refused too (torch: "must be Tensor")."""
    if value is None:
        raise TypeError(_NOT_ARRAY.format(owner=owner, name=name, type="NoneType", value=value))
    return check_optional_array(owner, name, value)
