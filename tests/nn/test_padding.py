"""Padding against torch 2.13: ``F.pad`` in every mode and rank with negative pads, and the
fifteen padding layers (``ZeroPad``, ``ConstantPad``, ``ReflectionPad``, ``ReplicationPad``,
``CircularPad`` in 1, 2, 3 dims): outputs, input gradients, unbatched inputs, reprs, errors and
``from_torch`` twins.

The grids are drawn by fixed-seed RNGs: each configuration is a mode, a rank, a shape and pads
from ``-(size + 1)`` to ``size + 1``, so most of torch's size limits are crossed; torch decides
whether a configuration is valid, and fparam must then agree (same output, same gradient) or
refuse it the same way (same exception type, torch's message).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fparam
from fparam import nn
from fparam.nn import functional as F

# pad copies values, so outputs must match exactly; gradients sum reflected/replicated copies in
# another order than torch (max abs difference measured over the grids: 4.8e-7).
GRAD_ATOL = 2e-6
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
MODES = ("constant", "reflect", "replicate", "circular")


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _compare(fj: Callable, ft: Callable, x: np.ndarray, seed: int) -> None:
    """Same output (exactly) and input gradient as torch, through one jitted vjp."""
    tx = torch.tensor(x, requires_grad=True)
    ty = ft(tx)
    cot = _rand(np.random.default_rng(seed), tuple(ty.shape))
    (tg,) = torch.autograd.grad(ty, tx, torch.tensor(cot), allow_unused=True)

    @partial(jax.jit, compiler_options=_FAST_COMPILE)
    def value_and_vjp(x, g):
        y, vjp = jax.vjp(fj, x)
        return y, vjp(g)[0]

    y, g = value_and_vjp(x, cot)
    assert y.shape == tuple(ty.shape) and y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), ty.detach().numpy())
    expected = np.zeros_like(x) if tg is None else tg.numpy()
    np.testing.assert_allclose(np.asarray(g), expected, rtol=0, atol=GRAD_ATOL)


def _same_error(torch_call: Callable, fparam_call: Callable) -> None:
    """torch raises; fparam raises the same type, with torch's message (normalised below)."""
    with pytest.raises(Exception) as expected:
        torch_call()
    with pytest.raises(expected.type) as got:
        fparam_call()
    theirs = str(expected.value).split("\n")[0]
    # torch's replicate-2d message has a stray space ("W: 3 )"); where torch's kernel trips over
    # a negative size ("Trying to create tensor..." or "numel: integer multiplication overflow"
    # depending on the path), fparam always says "Trying to create tensor with negative ...".
    theirs = theirs.replace(" )", ")")
    if theirs.startswith("numel: integer multiplication overflow"):
        theirs = "Trying to create tensor with negative dimension"
    assert theirs in str(got.value), (theirs, str(got.value))


def _circular_defined(shape: tuple[int, ...], pads: list[int]) -> bool:
    """torch reads uninitialised memory when a circular pad exceeds the size left after
    cropping (fparam raises there; see test_functional_conv.py)."""
    for i in range(len(pads) // 2):
        if i >= len(shape):
            return True
        lo, hi = pads[2 * i], pads[2 * i + 1]
        left = shape[-1 - i] - max(-lo, 0) - max(-hi, 0)
        if left < 0 or lo > left or hi > left:
            return False
    return True


def _pad_grid(seed: int, count: int) -> list[tuple[str, tuple[int, ...], list[int]]]:
    r = random.Random(seed)
    cases: list[tuple[str, tuple[int, ...], list[int]]] = []
    while len(cases) < count:
        mode = MODES[len(cases) % 4]
        if mode == "constant":
            ndim = r.randint(0, 5)
            k = r.randint(0, min(ndim, 4))
        else:
            k = r.randint(1, 3)
            ndim = k + r.choice([1, 2]) if r.random() < 0.9 else r.randint(0, 6)
        shape = tuple(r.randint(1, 4) for _ in range(ndim))
        pads: list[int] = []
        for i in range(k):
            size = shape[-1 - i] if i < ndim else 3
            pads += [r.randint(-size - 1, size + 1), r.randint(-size - 1, size + 1)]
        if mode == "circular" and not _circular_defined(shape, pads):
            continue
        cases.append((mode, shape, pads))
    return cases


@pytest.mark.parametrize("case", range(36))
def test_pad_matches_torch_on_a_random_grid(case: int) -> None:
    mode, shape, pads = _pad_grid(11, 36)[case]
    value = 1.5 if mode == "constant" else None
    x = _rand(np.random.default_rng(case), shape)
    try:
        TF.pad(torch.tensor(x), pads, mode=mode, value=value)
    except Exception:
        _same_error(
            lambda: TF.pad(torch.tensor(x), pads, mode=mode, value=value),
            lambda: jax.eval_shape(partial(F.pad, pad=pads, mode=mode, value=value), x),
        )
        return
    _compare(lambda t: F.pad(t, pads, mode, value), lambda t: TF.pad(t, pads, mode, value), x, case)


def test_pad_grid_covers_valid_and_invalid_cases_of_every_mode() -> None:
    """The random grid above is not all errors (or all successes) for any mode."""
    outcomes: dict[str, set[bool]] = {m: set() for m in MODES}
    for mode, shape, pads in _pad_grid(11, 36):
        try:
            TF.pad(torch.zeros(shape), pads, mode=mode)
            outcomes[mode].add(True)
        except Exception:
            outcomes[mode].add(False)
    assert all(o == {True, False} for o in outcomes.values()), outcomes


# torch's size rules for negative pads (constant crops first; reflect/replicate need one padded
# dim of size >= 1 and no negative one), each checked as value + gradient or as the same error.
NEGATIVE_PAD_EDGES = [
    ("constant", (1,), [2, -2]),  # torch narrows by 2 first: refused
    ("constant", (2,), [-3, 1]),
    ("constant", (2,), [-2, 2]),  # crops to 0, then pads: fine
    ("constant", (2,), [-1, -1]),
    ("reflect", (1, 3, 3), [-3, 0, 0, 0]),  # W 0, H 3: fine
    ("reflect", (1, 3, 3), [-3, 0, -3, 0]),  # both 0: too small
    ("reflect", (1, 3, 3), [-4, 0, 0, 0]),  # W -1
    ("replicate", (1, 3, 3, 3), [-3, 0, -3, 0, 0, 0]),
    ("replicate", (1, 3, 3, 3), [-3, 0, -3, 0, -3, 0]),
    ("replicate", (1, 3, 3, 3), [0, 0, 0, 0, -4, 0]),
    ("replicate", (2, 3), [-3, 0]),  # 1-d padding needs >= 1
    ("circular", (1, 2, 4), [-2, 2]),
]


@pytest.mark.parametrize(("mode", "shape", "pads"), NEGATIVE_PAD_EDGES)
def test_negative_pad_size_rules_match_torch(mode: str, shape: tuple, pads: list) -> None:
    x = _rand(np.random.default_rng(0), shape)
    try:
        TF.pad(torch.tensor(x), pads, mode=mode)
    except Exception:
        _same_error(
            lambda: TF.pad(torch.tensor(x), pads, mode=mode),
            lambda: jax.eval_shape(partial(F.pad, pad=pads, mode=mode), x),
        )
        return
    y = F.pad(x, pads, mode)
    np.testing.assert_array_equal(np.asarray(y), TF.pad(torch.tensor(x), pads, mode=mode).numpy())


def test_pad_default_value_is_none_as_in_torch() -> None:
    import inspect

    assert inspect.signature(F.pad).parameters["value"].default is None
    x = _rand(np.random.default_rng(1), (2, 3))
    np.testing.assert_array_equal(np.asarray(F.pad(x, (1, 1))), TF.pad(torch.tensor(x), (1, 1)))
    assert fparam.nn.functional.conv.pad is F.pad  # the old import path still works


# --------------------------------------------------------------------------------------------
# The layers.
# --------------------------------------------------------------------------------------------

FAMILIES = ("ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad", "CircularPad")


def _layer_grid(seed: int, count: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    r = random.Random(seed)
    cases: list[tuple[str, Any, tuple[int, ...]]] = []
    while len(cases) < count:
        family = FAMILIES[len(cases) % 5]
        n = len(cases) // 5 % 3 + 1  # every class within the first 15 cases
        batched = r.random() < 0.6
        shape = (2,) * batched + (r.randint(1, 3),) + tuple(r.randint(2, 4) for _ in range(n))
        limit = min(shape[-n:]) - 1  # keeps reflect valid; negative pads crop
        if r.random() < 0.3:
            padding: Any = r.randint(0, limit)
        else:
            padding = tuple(r.randint(-1, limit) for _ in range(2 * n))
            if family == "CircularPad":
                padding = tuple(max(p, 0) for p in padding)
        cases.append((f"{family}{n}d", padding, shape))
    return cases


def _build(name: str, padding: Any, lib: Any) -> Any:
    if name.startswith("ConstantPad"):
        return getattr(lib, name)(padding, 2.5)
    return getattr(lib, name)(padding)


@pytest.mark.parametrize("case", range(20))
def test_padding_layers_match_torch(case: int) -> None:
    name, padding, shape = _layer_grid(5, 20)[case]
    t = _build(name, padding, torch.nn)
    m = _build(name, padding, nn)
    assert repr(m) == repr(t)
    assert m.padding == t.padding
    assert list(m.state_dict()) == [] and list(m.named_parameters()) == []
    x = _rand(np.random.default_rng(case), shape)
    _compare(m, t, x, case)


def test_every_padding_layer_class_is_in_the_grid() -> None:
    names = {name for name, _, _ in _layer_grid(5, 20)}
    assert names == {f"{family}{n}d" for family in FAMILIES for n in (1, 2, 3)}


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("ZeroPad2d", (1,)),
        ("ZeroPad2d", ([1, 2, 0, 1],)),
        ("ZeroPad3d", (np.int64(2),)),
        ("ConstantPad1d", (2, 3)),
        ("ConstantPad3d", ((1, 0, 0, 1, 2, 2), -1.5)),
        ("ReflectionPad1d", ((3, 1),)),
        ("ReplicationPad3d", (1,)),
        ("CircularPad2d", ((1, 2, 0, 3),)),
    ],
)
def test_padding_attribute_and_repr_match_torch(name: str, args: tuple) -> None:
    t, m = getattr(torch.nn, name)(*args), getattr(nn, name)(*args)
    assert repr(m) == repr(t).replace("np.int64(2)", "2")
    assert m.padding == tuple(int(p) for p in t.padding)
    if name.startswith(("Constant", "Zero")):
        assert m.value == t.value


def test_a_short_padding_tuple_pads_only_the_last_dims_as_in_torch() -> None:
    # torch's _quadruple keeps a 2-tuple as it is: ZeroPad2d((1, 2)) pads only the width, and
    # a non-constant layer then takes the ranks of a 1-d pad.
    for name, shape in (("ZeroPad2d", (1, 2, 3, 4)), ("ReflectionPad2d", (2, 3, 4))):
        x = _rand(np.random.default_rng(2), shape)
        t, m = getattr(torch.nn, name)((1, 2)), getattr(nn, name)((1, 2))
        np.testing.assert_array_equal(np.asarray(m(x)), t(torch.tensor(x)).numpy())
        assert m(x).shape == (*shape[:-1], shape[-1] + 3)


# (layer, input shape): torch's forward raises; fparam the same type with torch's message.
FORWARD_ERRORS = [
    ("CircularPad1d", (4,)),
    ("CircularPad2d", (1, 2, 3, 4, 5)),
    ("CircularPad3d", (2, 3, 4)),
    ("ReflectionPad2d", (4, 4)),
    ("ReflectionPad1d", (1, 2, 2, 5)),
    ("ReplicationPad3d", (2, 2, 2, 2, 2, 2)),
    ("ReflectionPad1d", (1, 2, 2)),  # pad 2 >= size 2
    ("ConstantPad2d", (5,)),  # the pad is longer than twice the rank
    ("ZeroPad3d", (4, 4)),
    ("ReplicationPad2d", (1, 0, 4, 4)),  # empty channel dim
]


@pytest.mark.parametrize(("name", "shape"), FORWARD_ERRORS)
def test_padding_layer_forward_errors_match_torch(name: str, shape: tuple) -> None:
    t, m = _build(name, 2, torch.nn), _build(name, 2, nn)
    x = np.zeros(shape, np.float32)
    _same_error(lambda: t(torch.tensor(x)), lambda: jax.eval_shape(m, x))


def test_padding_layer_bad_arguments_fail_at_construction() -> None:
    """torch fails in forward (same types); fparam refuses to build the layer."""
    x = torch.zeros(1, 1, 4, 4)
    for bad, error in (((1, 2, 3), RuntimeError), (1.5, TypeError), ((1, "a"), TypeError)):
        with pytest.raises(error):
            torch.nn.ZeroPad2d(bad)(x)
        with pytest.raises(error, match=r"ZeroPad2d: (P|p)adding"):
            nn.ZeroPad2d(bad)
    with pytest.raises(TypeError):
        torch.nn.ConstantPad1d(1, "a")(x)
    with pytest.raises(TypeError, match="ConstantPad1d: argument 'value'"):
        nn.ConstantPad1d(1, "a")
    with pytest.raises(TypeError):
        nn.ConstantPad1d(1)  # value is required, as in torch


def test_padding_layers_under_jit_grad_and_vmap() -> None:
    layer = nn.ReflectionPad2d((1, 0, 2, 1))
    x = _rand(np.random.default_rng(4), (3, 2, 4, 5))
    loss = lambda m, x: jnp.sum(m(x) ** 2)  # noqa: E731
    g = jax.jit(jax.grad(loss, argnums=1))(layer, x)
    tx = torch.tensor(x, requires_grad=True)
    (torch.nn.ReflectionPad2d((1, 0, 2, 1))(tx) ** 2).sum().backward()
    np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), rtol=1e-6, atol=GRAD_ATOL)
    batched = jax.vmap(layer)(x)  # each (2, 4, 5) slice as an unbatched input
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(layer(x)))


@pytest.mark.parametrize("family", FAMILIES)
def test_from_torch_twins_padding_layers(family: str) -> None:
    for n in (1, 2, 3):
        t = _build(f"{family}{n}d", (1, 0, 2, 1, 1, 2)[: 2 * n], torch.nn)
        m = fparam.from_torch(torch.nn.Sequential(t))[0]
        assert type(m) is getattr(nn, f"{family}{n}d") and repr(m) == repr(t)
        x = _rand(np.random.default_rng(n), (2, 3, 4, 5)[: n + 1])
        with torch.no_grad():
            np.testing.assert_array_equal(np.asarray(m(x)), t(torch.tensor(x)).numpy())
