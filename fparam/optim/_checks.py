"""What an optimizer's ``load_state_dict`` accepts before it reads anything.

torch's ``Optimizer.load_state_dict`` indexes ``state_dict["state"]`` and
``state_dict["param_groups"]`` and fails with a bare ``KeyError('state')``. Worse, a loader
that treats a missing ``"state"`` as "no state yet" resumes with every momentum buffer reset,
silently. :func:`check_optimizer_state` refuses such a file up front, with the exception type
torch raises (``KeyError`` for a missing entry, ``TypeError`` for a value of the wrong type) and
a message that says what the file holds instead (:func:`describe_state`), e.g. a model's
``state_dict()`` given to ``opt.load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OptimizerStateKeyError", "check_optimizer_state", "describe_state"]


class OptimizerStateKeyError(KeyError):
    """A required entry of an optimizer ``state_dict`` is missing (torch raises ``KeyError``).

    Its ``str`` is the message itself (``KeyError`` would show the repr of the message).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _keys(mapping: Mapping[Any, Any], limit: int = 4) -> str:
    keys = [repr(k) for k in list(mapping)[:limit]]
    more = ", ..." if len(mapping) > limit else ""
    return f"[{', '.join(keys)}{more}]"


def describe_state(obj: Any) -> str:
    """Say in a few words what ``obj`` holds, for an error message about a wrong state dict.

    Arguments:
        obj: whatever was passed to ``load_state_dict`` (typically ``fparam.load(path)``).

    Returns:
        e.g. ``"a model state_dict (4 arrays, keys ['fc.weight', 'fc.bias', ...])"``,
        ``"an optimizer state_dict (1 parameter groups, 2 state entries)"``,
        ``"a mapping with keys ['param_groups']"``, ``"a list of 3 items"``.
    """
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty mapping"
        if "state" in obj and "param_groups" in obj:
            state, groups = obj["state"], obj["param_groups"]
            n_groups = len(groups) if isinstance(groups, (list, tuple)) else "?"
            n_state = len(state) if isinstance(state, Mapping) else "?"
            return f"an optimizer state_dict ({n_groups} parameter groups, {n_state} state entries)"
        if all(isinstance(k, str) for k in obj) and all(_is_array(v) for v in obj.values()):
            return f"a model state_dict ({len(obj)} arrays, keys {_keys(obj)})"
        return f"a mapping with keys {_keys(obj)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def check_optimizer_state(state_dict: Any, owner: str = "Optimizer") -> None:
    """Refuse what cannot be an optimizer ``state_dict()``; nothing is read or changed.

    Arguments:
        state_dict: what was passed to ``owner.load_state_dict``.
        owner: the optimizer's class name, for the message.

    Raises:
        TypeError: ``state_dict`` is not a mapping, or its ``"state"`` is not a mapping or its
            ``"param_groups"`` not a list (torch raises ``TypeError`` deeper down).
        OptimizerStateKeyError: (a ``KeyError``, as torch raises) ``"state"`` or
            ``"param_groups"`` is missing; the message says what the object holds instead.
    """
    expected = "an optimizer state_dict (a mapping with 'state' and 'param_groups')"
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"{owner}.load_state_dict() expected {expected}, got {describe_state(state_dict)}"
        )
    missing = [key for key in ("state", "param_groups") if key not in state_dict]
    if missing:
        raise OptimizerStateKeyError(
            f"{owner}.load_state_dict() expected {expected}, but it has no "
            f"{' and no '.join(repr(k) for k in missing)} entry: it is "
            f"{describe_state(state_dict)}. Loading it would reset the optimizer's state "
            "(momentum buffers) without a word, so it is refused; pass the optimizer's own "
            "checkpoint (fparam.save(opt, path) / opt.state_dict())."
        )
    if not isinstance(state_dict["state"], Mapping):
        raise TypeError(
            f"{owner}.load_state_dict(): 'state' must be a mapping from parameter index to "
            f"that parameter's state, got {describe_state(state_dict['state'])}"
        )
    if not isinstance(state_dict["param_groups"], (list, tuple)):
        raise TypeError(
            f"{owner}.load_state_dict(): 'param_groups' must be a list of groups, got "
            f"{describe_state(state_dict['param_groups'])}"
        )
