"""Module-level parity of ``nn.Flatten`` and ``nn.Unflatten`` with torch: shapes and values over
several shapes and dims, reprs, and torch's exception types for bad arguments.

Reshapes are exact, so values are compared bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn

_RNG = np.random.default_rng(0)
X4 = _RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
X3 = X4[0]


def _both(module_args, x, cls="Flatten"):
    m = getattr(nn, cls)(*module_args)
    ref = getattr(torch.nn, cls)(*module_args)
    return m(jnp.asarray(x)), ref(torch.tensor(x)), m, ref


FLATTEN_CASES = [
    ((), X4),  # default start_dim=1, end_dim=-1: (2,3,4,5) -> (2,60)
    ((0,), X4),
    ((0, -1), X3),
    ((1, 2), X4),
    ((-3, -2), X4),
    ((2, 2), X4),  # a single dim: no-op
    ((-1,), X4),
    ((0, 0), X4[0, 0, 0]),  # 1-D
    ((0, -1), np.float32(2.5)),  # 0-d gives a 1-element 1-D array
    ((), np.zeros((3, 0, 2), np.float32)),  # empty
]


@pytest.mark.parametrize(
    ("args", "x"), FLATTEN_CASES, ids=[f"{a}-{np.shape(x)}" for a, x in FLATTEN_CASES]
)
def test_flatten_matches_torch(args, x):
    y, ty, m, ref = _both(args, np.asarray(x))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    assert repr(m) == repr(ref)
    assert (m.start_dim, m.end_dim) == (ref.start_dim, ref.end_dim)


UNFLATTEN_CASES = [
    ((1, (5, 1)), X3[:, 0, :]),  # (3,5) -> (3,5,1)
    ((1, (2, 2, 15)), X4.reshape(2, 60)),
    ((1, (3, 4, 5)), X4.reshape(2, 60)),
    ((-1, (5, 1)), X4),
    ((-1, (-1, 5)), X4.reshape(2, 60)),  # -1 inferred
    ((0, (1, 2, -1)), X4),
    ((-4, (2, 1)), X4),
    ((2, [2, -1]), X4),  # a list works as in torch
    ((0, (4,)), X3.reshape(4, 15)[:, 0]),  # 1-D input, a single size
    ((1, (0, 3)), np.zeros((2, 0, 3), np.float32)),  # empty
]


@pytest.mark.parametrize(
    ("args", "x"), UNFLATTEN_CASES, ids=[f"{a}-{np.shape(x)}" for a, x in UNFLATTEN_CASES]
)
def test_unflatten_matches_torch(args, x):
    y, ty, m, ref = _both(args, x, "Unflatten")
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    assert m.dim == ref.dim
    assert tuple(m.unflattened_size) == tuple(ref.unflattened_size)
    if isinstance(args[1], tuple):
        assert repr(m) == repr(ref)


def test_reprs():
    assert repr(nn.Flatten()) == repr(torch.nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    assert repr(nn.Flatten(0, 2)) == "Flatten(start_dim=0, end_dim=2)"
    assert (
        repr(nn.Unflatten(1, (2, 3)))
        == repr(torch.nn.Unflatten(1, (2, 3)))
        == "Unflatten(dim=1, unflattened_size=(2, 3))"
    )
    # Divergence: fparam keeps the sizes as a tuple (static data must be hashable), so a list
    # prints as a tuple; torch prints what it was given ([2, -1], torch.Size([2, 3])).
    assert repr(nn.Unflatten(-1, [2, -1])) == "Unflatten(dim=-1, unflattened_size=(2, -1))"
    assert repr(torch.nn.Unflatten(-1, [2, -1])) == "Unflatten(dim=-1, unflattened_size=[2, -1])"
    assert repr(nn.Unflatten(1, torch.Size([2, 3]))) == "Unflatten(dim=1, unflattened_size=(2, 3))"


def test_no_parameters_and_a_static_pytree():
    for m in (nn.Flatten(), nn.Unflatten(1, (3, 4, 5))):
        assert list(m.parameters()) == [] and list(m.state_dict()) == []
        assert jax.tree.leaves(m) == []


def test_under_jit_and_grad_in_a_round_trip():
    model = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, 4, 5)))
    y = jax.jit(lambda mod, x: mod(x))(model, X4)
    np.testing.assert_array_equal(np.asarray(y), X4)
    g = jax.grad(lambda x: (model(x) * 2).sum())(jnp.asarray(X4))
    np.testing.assert_array_equal(np.asarray(g), np.full(X4.shape, 2, np.float32))


# --------------------------------------------------------------------------------------------
# Errors: the same exception type as torch (messages too, where torch's is a clean one)

FORWARD_ERRORS = [
    ("Flatten", (2, 1), X3),  # start after end
    ("Flatten", (3,), X3),  # start out of range
    ("Flatten", (0, 5), X3),  # end out of range
    ("Flatten", (-4,), X3),
    ("Unflatten", (1, (2, 3)), X3),  # does not multiply up
    ("Unflatten", (3, (1, 3)), X3),  # dim out of range
    ("Unflatten", (-4, (3, 1)), X3),
    ("Unflatten", (1, ()), X3),  # empty sizes
    ("Unflatten", (1, (-1, -1)), X3),  # two inferred
    ("Unflatten", (1, (-2, 3)), X3),  # negative size
    ("Unflatten", (1, (-1, 3)), X3[:, :2]),  # 2 not divisible by 3
]


@pytest.mark.parametrize(
    ("cls", "args", "x"),
    FORWARD_ERRORS,
    ids=[f"{c}{a}-{np.shape(x)}" for c, a, x in FORWARD_ERRORS],
)
def test_forward_errors_match_torch(cls, args, x):
    with pytest.raises(Exception) as theirs:
        getattr(torch.nn, cls)(*args)(torch.tensor(x))
    with pytest.raises(Exception) as ours:
        getattr(nn, cls)(*args)(x)
    assert type(ours.value) is type(theirs.value)
    assert type(ours.value) in (IndexError, RuntimeError)
    # torch wraps some unflatten messages with a C++ backtrace; compare its first lines.
    ours_msg, theirs_msg = str(ours.value), str(theirs.value)
    if "unexpected error" in theirs_msg:
        detail = theirs_msg.splitlines()[1]
        assert ours_msg.startswith(f"unflatten: {detail}")
    else:
        assert ours_msg == theirs_msg


def test_unflatten_zero_dim_input():
    # Divergence: torch wraps the dim error in a RuntimeError ("unflatten got an unexpected
    # error: ..."); fparam raises the IndexError with the same message.
    with pytest.raises(RuntimeError, match="Dimension specified as 0 but tensor has no dim"):
        torch.nn.Unflatten(0, (1,))(torch.tensor(1.0))
    with pytest.raises(IndexError, match=r"^Dimension specified as 0 but tensor has no dim"):
        nn.Unflatten(0, (1,))(np.float32(1.0))


@pytest.mark.parametrize(
    "sizes",
    [5, None, "ab", (2.0, 3), (2, 3.0), [2, "3"]],
    ids=["int", "None", "str", "float0", "float1", "str1"],
)
def test_unflatten_bad_sizes_raise_type_error_at_construction_like_torch(sizes):
    with pytest.raises(TypeError) as theirs:
        torch.nn.Unflatten(1, sizes)
    with pytest.raises(TypeError) as ours:
        nn.Unflatten(1, sizes)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("dim", [1.0, "a", None])
def test_unflatten_bad_dim_raises_type_error(dim):
    # torch constructs and raises TypeError in forward (``unflatten(): argument 'dim' must be
    # int``); fparam raises the same type earlier, at construction (allowed, §7.6).
    with pytest.raises(TypeError):
        torch.nn.Unflatten(dim, (2, 2))(torch.zeros(2, 4))
    with pytest.raises(TypeError):
        nn.Unflatten(dim, (2, 2))(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("start_dim", [1.5, "a"])
def test_flatten_bad_dim_type_raises_type_error_at_call_like_torch(start_dim):
    m, ref = nn.Flatten(start_dim), torch.nn.Flatten(start_dim)
    assert repr(m) == repr(ref)
    with pytest.raises(TypeError):
        ref(torch.zeros(2, 4))
    with pytest.raises(TypeError):
        m(np.zeros((2, 4), np.float32))
