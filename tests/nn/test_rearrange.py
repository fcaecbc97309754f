"""Rearranging layers against torch 2.13: ``pixel_shuffle``, ``pixel_unshuffle``,
``channel_shuffle`` / ``native_channel_shuffle``, ``unfold`` and ``fold`` with their modules
(``PixelShuffle``, ``PixelUnshuffle``, ``ChannelShuffle``, ``Unfold``, ``Fold``): outputs, input
gradients, unbatched inputs, reprs, errors (type and message) and ``from_torch`` twins.

Grids are drawn by fixed-seed RNGs. ``unfold``/``fold`` cover kernel, dilation, padding and stride
per dim (ints and pairs), batched and unbatched.
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

# The shuffles and unfold copy values (exact); fold sums up to kh*kw overlapping values in
# another order than torch's col2im: max abs difference measured over the grid 4.8e-7.
ATOL = 2e-6
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _compare(fj: Callable, ft: Callable, x: np.ndarray, seed: int, atol: float = 0.0) -> None:
    """Output and input gradient against torch, through one jitted vjp."""
    tx = torch.tensor(x, requires_grad=True)
    ty = ft(tx)
    cot = _rand(np.random.default_rng(seed), tuple(ty.shape))
    (tg,) = torch.autograd.grad(ty, tx, torch.tensor(cot))

    @partial(jax.jit, compiler_options=_FAST_COMPILE)
    def value_and_vjp(x, g):
        y, vjp = jax.vjp(fj, x)
        return y, vjp(g)[0]

    y, g = value_and_vjp(x, cot)
    assert y.shape == tuple(ty.shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), rtol=0, atol=atol)
    np.testing.assert_allclose(np.asarray(g), tg.numpy(), rtol=0, atol=ATOL)


def _same_error(torch_call: Callable, fparam_call: Callable) -> None:
    with pytest.raises(Exception) as expected:
        torch_call()
    with pytest.raises(expected.type) as got:
        fparam_call()
    assert str(expected.value) in str(got.value), (str(expected.value), str(got.value))


# --------------------------------------------------------------------------------------------
# pixel_shuffle, pixel_unshuffle, channel_shuffle.
# --------------------------------------------------------------------------------------------


def _shuffle_grid(seed: int, count: int) -> list[tuple[str, int, tuple[int, ...]]]:
    r = random.Random(seed)
    cases = []
    for i in range(count):
        kind = ("pixel_shuffle", "pixel_unshuffle", "channel_shuffle")[i % 3]
        factor = r.randint(1, 3)
        lead = tuple(r.randint(1, 2) for _ in range(r.randint(0 if kind[0] == "p" else 1, 2)))
        if kind == "pixel_shuffle":
            shape = (*lead, r.randint(1, 2) * factor**2, r.randint(1, 3), r.randint(1, 3))
        elif kind == "pixel_unshuffle":
            shape = (*lead, r.randint(1, 2), r.randint(1, 2) * factor, r.randint(1, 3) * factor)
        else:
            rest = tuple(r.randint(1, 3) for _ in range(r.randint(1, 3)))
            shape = (lead[0], r.randint(1, 3) * factor, *rest)
        cases.append((kind, factor, shape))
    return cases


@pytest.mark.parametrize("case", range(12))
def test_shuffles_match_torch(case: int) -> None:
    kind, factor, shape = _shuffle_grid(3, 12)[case]
    x = _rand(np.random.default_rng(case), shape)
    module = {"pixel_shuffle": "PixelShuffle", "pixel_unshuffle": "PixelUnshuffle"}.get(
        kind, "ChannelShuffle"
    )
    t, m = getattr(torch.nn, module)(factor), getattr(nn, module)(factor)
    assert repr(m) == repr(t)
    # Through the module (whose forward is F.<kind>) against torch's function.
    _compare(m, lambda x: getattr(TF, kind)(x, factor), x, case)


def test_native_channel_shuffle_and_integer_inputs() -> None:
    x = np.arange(2 * 6 * 2, dtype=np.int32).reshape(2, 6, 2)
    tx = torch.tensor(x)
    for fj, ft in ((F.native_channel_shuffle, TF.native_channel_shuffle),
                   (F.channel_shuffle, TF.channel_shuffle)):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(fj(x, 3)), ft(tx, 3).numpy())
    np.testing.assert_array_equal(
        np.asarray(F.pixel_shuffle(x.reshape(1, 4, 3, 2), 2)),
        TF.pixel_shuffle(tx.reshape(1, 4, 3, 2), 2).numpy(),
    )
    assert F.pixel_unshuffle(x.reshape(6, 2, 2), 2).dtype == jnp.int32


SHUFFLE_ERRORS = [
    ("pixel_shuffle", (3, 3), 2),
    ("pixel_shuffle", (3,), 0),
    ("pixel_shuffle", (1, 3, 3, 3), -2),
    ("pixel_shuffle", (2, 6, 3, 3), 2),
    ("pixel_shuffle", (2, 8, 3, 3), 2.0),
    ("pixel_shuffle", (2, 8, 3, 3), True),
    ("pixel_unshuffle", (6, 4), 2),
    ("pixel_unshuffle", (2, 2, 6, 4), 0),
    ("pixel_unshuffle", (2, 2, 5, 4), 2),
    ("pixel_unshuffle", (2, 2, 6, 5), 2),
    ("pixel_unshuffle", (1, 3, 3, 3), 2),
    ("pixel_unshuffle", (2, 2, 6, 4), 2.0),
    ("channel_shuffle", (6, 3), 3),
    ("channel_shuffle", (6,), 0),
    ("channel_shuffle", (2, 6, 3, 3), 4),
    ("channel_shuffle", (2, 6, 3, 3), 0),
    ("channel_shuffle", (2, 6, 3, 3), -2),
    ("channel_shuffle", (2, 6, 3, 3), 2.0),
    ("native_channel_shuffle", (2, 6, 3, 3), 4),
    ("native_channel_shuffle", (6, 3), 2),
]


@pytest.mark.parametrize(("fn", "shape", "factor"), SHUFFLE_ERRORS)
def test_shuffle_errors_match_torch(fn: str, shape: tuple, factor: Any) -> None:
    x = np.zeros(shape, np.float32)
    _same_error(
        lambda: getattr(TF, fn)(torch.tensor(x), factor),
        lambda: jax.eval_shape(lambda x: getattr(F, fn)(x, factor), x),
    )


def test_shuffle_layers_check_their_factor_at_construction() -> None:
    """torch raises these in forward (same types and messages); fparam builds no bad layer."""
    x = torch.zeros(1, 4, 2, 2)
    for name, bad in (("PixelShuffle", 0), ("PixelUnshuffle", -1), ("ChannelShuffle", 0)):
        for value, error in ((bad, RuntimeError), (2.0, TypeError)):
            with pytest.raises(error) as expected:
                getattr(torch.nn, name)(value)(x)
            with pytest.raises(error) as got:
                getattr(nn, name)(value)
            assert str(expected.value) == str(got.value)


def test_channel_shuffle_reads_dim_1_as_channels_even_for_3d_inputs() -> None:
    # torch has no unbatched form: (4, 3, 3) is N=4, C=3, so groups=2 fails, groups=3 works.
    x = _rand(np.random.default_rng(0), (4, 3, 3))
    _same_error(
        lambda: torch.nn.ChannelShuffle(2)(torch.tensor(x)), lambda: nn.ChannelShuffle(2)(x)
    )
    np.testing.assert_array_equal(
        np.asarray(nn.ChannelShuffle(3)(x)), torch.nn.ChannelShuffle(3)(torch.tensor(x)).numpy()
    )


# --------------------------------------------------------------------------------------------
# unfold and fold.
# --------------------------------------------------------------------------------------------


def _pair_or_int(r: random.Random, lo: int, hi: int) -> Any:
    return r.randint(lo, hi) if r.random() < 0.4 else (r.randint(lo, hi), r.randint(lo, hi))


def _as_pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def _fold_grid(seed: int, count: int) -> list[dict[str, Any]]:
    r = random.Random(seed)
    cases: list[dict[str, Any]] = []
    while len(cases) < count:
        opts = {
            "kernel_size": _pair_or_int(r, 1, 3),
            "dilation": _pair_or_int(r, 1, 2),
            "padding": _pair_or_int(r, 0, 2),
            "stride": _pair_or_int(r, 1, 3),
        }
        size = (r.randint(1, 6), r.randint(1, 6))
        k, d, p, s = (_as_pair(opts[n]) for n in ("kernel_size", "dilation", "padding", "stride"))
        blocks = [(size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in (0, 1)]
        if min(blocks) < 1:
            continue
        batch = (r.randint(1, 2),) if r.random() < 0.6 else ()
        cases.append({"opts": opts, "size": size, "batch": batch, "blocks": blocks, "k": k})
    return cases


@pytest.mark.parametrize("case", range(12))
def test_unfold_and_fold_match_torch(case: int) -> None:
    c = _fold_grid(7, 12)[case]
    opts, batch, channels = c["opts"], c["batch"], 1 + case % 3
    x = _rand(np.random.default_rng(case), (*batch, channels, *c["size"]))
    t, m = torch.nn.Unfold(**opts), nn.Unfold(**opts)
    assert repr(m) == repr(t)
    _compare(m, lambda t: TF.unfold(t, **opts), x, case)  # m's forward is F.unfold

    # fold: the adjoint, from columns back to an image of the same size.
    kh, kw = c["k"]
    blocks = int(np.prod(c["blocks"]))
    cols = _rand(np.random.default_rng(case + 100), (*batch, channels * kh * kw, blocks))
    size: Any = c["size"] if case % 2 else c["size"][0]  # an int when square
    if not case % 2 and c["size"][0] != c["size"][1]:
        size = list(c["size"])
    t, m = torch.nn.Fold(size, **opts), nn.Fold(size, **opts)
    assert repr(m) == repr(t)
    _compare(m, lambda t: TF.fold(t, size, **opts), cols, case, ATOL)


def test_fold_grid_covers_overlap_gaps_and_padding() -> None:
    grid = _fold_grid(7, 12)
    strides = [_as_pair(c["opts"]["stride"]) for c in grid]
    assert any(s[0] < k[0] for s, k in zip(strides, (c["k"] for c in grid)))  # overlapping
    assert any(s[0] > k[0] for s, k in zip(strides, (c["k"] for c in grid)))  # gaps
    assert any(max(_as_pair(c["opts"]["padding"])) > 0 for c in grid)
    assert any(max(_as_pair(c["opts"]["dilation"])) > 1 for c in grid)
    assert any(c["batch"] == () for c in grid) and any(c["batch"] for c in grid)


UNFOLD_ERRORS = [
    ((5, 6), {"kernel_size": 2}),  # IndexError: torch reads input.size(2) first
    ((5,), {"kernel_size": 2}),
    ((), {"kernel_size": 2}),
    ((1, 3, 5, 6, 2), {"kernel_size": 2}),
    ((2, 3, 5, 6), {"kernel_size": 7}),
    ((2, 3, 5, 6), {"kernel_size": 0}),
    ((2, 3, 5, 6), {"kernel_size": (0, 2)}),
    ((2, 3, 5, 6), {"kernel_size": 0, "dilation": 0}),
    ((2, 3, 5, 6), {"kernel_size": 1, "dilation": 0, "padding": -1}),
    ((2, 3, 5, 6), {"kernel_size": 1, "padding": -1, "stride": 0}),
    ((2, 3, 5, 6), {"kernel_size": 2, "stride": 0}),
    ((2, 3, 5, 6), {"kernel_size": (1, 1, 1), "dilation": (1, 1, 1)}),
    ((2, 3, 5, 6), {"kernel_size": (2,)}),
    ((2, 3, 5, 6), {"kernel_size": 1, "dilation": (1, 1, 1)}),
    ((2, 3, 5, 6), {"kernel_size": 1, "stride": (1, 2, 3)}),
    ((2, 3, 5, 6), {"kernel_size": 2.0}),
    ((2, 3, 5, 6), {"kernel_size": "ab"}),
    ((2, 0, 5, 6), {"kernel_size": 2}),
    ((2, 3, 0, 6), {"kernel_size": 1, "padding": 1}),
    ((0, 5, 6), {"kernel_size": 2}),
]


@pytest.mark.parametrize(("shape", "opts"), UNFOLD_ERRORS)
def test_unfold_errors_match_torch(shape: tuple, opts: dict) -> None:
    x = np.zeros(shape, np.float32)
    _same_error(
        lambda: TF.unfold(torch.tensor(x), **opts),
        lambda: jax.eval_shape(lambda x: F.unfold(x, **opts), x),
    )


FOLD_ERRORS = [
    ((2, 12, 11), (4, 5), {"kernel_size": 2}),  # the sliding-block count
    ((12, 11), (4, 5), {"kernel_size": 2}),  # unbatched: torch still says dimension 2
    ((2, 12, 11), (4, 5), {"kernel_size": 2, "stride": 2, "padding": 1}),
    ((2, 11, 12), (4, 5), {"kernel_size": 2}),
    ((11, 12), (4, 5), {"kernel_size": 2}),
    ((2, 11, 11), (4, 5), {"kernel_size": 2}),  # channels first
    ((1, 2, 12, 12), (4, 5), {"kernel_size": 2}),
    ((12,), (4, 5), {"kernel_size": 2}),
    ((), (4, 5), {"kernel_size": 1}),
    ((2, 12, 0), (1, 1), {"kernel_size": 2}),
    ((2, 0, 12), (4, 5), {"kernel_size": 2}),
    ((2, 12, 12), (0, 5), {"kernel_size": 2}),
    ((2, 12, 12), (-1, 5), {"kernel_size": 2}),
    ((1, 1, 4), (0, 0), {"kernel_size": 1, "padding": 1}),  # output size not positive
    ((1, 1, 2), (-3, -2), {"kernel_size": 1}),  # blocks (-2, -1): count matches, too small
    ((2, 12, 12), (4, 5), {"kernel_size": 0, "stride": 0}),
    ((2, 12, 12), (4, 5), {"kernel_size": 1, "stride": 0, "dilation": 0}),
    ((2, 12, 12), (4, 5), {"kernel_size": 1, "dilation": 0, "padding": -1}),
    ((2, 12, 12), (4, 5, 1), {"kernel_size": (1, 1, 1)}),
    ((2, 12, 12), (4, 5), {"kernel_size": (1, 1, 1), "dilation": (1, 1, 1)}),
    ((2, 12, 12), (4, 5), {"kernel_size": 1, "padding": (1, 1, 1), "stride": (1, 1, 1)}),
    ((1, 1, 20), (4.0, 5), {"kernel_size": 1}),
]


@pytest.mark.parametrize(("shape", "size", "opts"), FOLD_ERRORS)
def test_fold_errors_match_torch(shape: tuple, size: Any, opts: dict) -> None:
    x = np.zeros(shape, np.float32)
    _same_error(
        lambda: TF.fold(torch.tensor(x), size, **opts),
        lambda: jax.eval_shape(lambda x: F.fold(x, size, **opts), x),
    )


def test_fold_and_unfold_refuse_integer_inputs_as_torch() -> None:
    x = np.zeros((1, 4, 4, 4), np.int32)
    for tcall, fcall in (
        (lambda: TF.unfold(torch.tensor(x).long(), 2), lambda: F.unfold(x, 2)),
        (lambda: TF.fold(torch.ones(1, 4, 1).long(), 2, 2), lambda: F.fold(x[:, :, :1, 0], 2, 2)),
    ):
        with pytest.raises(NotImplementedError):
            tcall()
        with pytest.raises(NotImplementedError, match="floating"):
            fcall()


def test_fold_and_unfold_layers_check_arguments_at_construction() -> None:
    """torch raises these only in forward (same types and messages)."""
    x = torch.zeros(1, 4, 4, 4)
    for build_t, build_f in (
        (lambda: torch.nn.Unfold(0), lambda: nn.Unfold(0)),
        (lambda: torch.nn.Unfold(2, padding=-1), lambda: nn.Unfold(2, padding=-1)),
        (lambda: torch.nn.Unfold((2, 2, 2)), lambda: nn.Unfold((2, 2, 2))),
        (lambda: torch.nn.Fold(4, 2, stride=0), lambda: nn.Fold(4, 2, stride=0)),
        (lambda: torch.nn.Fold(4.5, 2), lambda: nn.Fold(4.5, 2)),
    ):
        _same_error(lambda build=build_t: build()(x), build_f)


def test_fold_inverts_unfold_of_non_overlapping_blocks_under_jit_grad_and_vmap() -> None:
    x = _rand(np.random.default_rng(9), (3, 2, 6, 4))
    unfold, fold = nn.Unfold(2, stride=2), nn.Fold((6, 4), 2, stride=2)
    roundtrip = jax.jit(lambda x: fold(unfold(x)))
    np.testing.assert_array_equal(np.asarray(roundtrip(x)), x)
    g = jax.jit(jax.grad(lambda x: jnp.sum(fold(unfold(x)) ** 2)))(x)
    np.testing.assert_allclose(np.asarray(g), 2 * x, rtol=1e-6)
    per_sample = jax.jit(jax.vmap(unfold))(x)  # each (2, 6, 4) slice unbatched
    np.testing.assert_array_equal(np.asarray(per_sample), np.asarray(jax.jit(unfold)(x)))


def test_from_torch_twins_rearranging_layers() -> None:
    t = torch.nn.Sequential(
        torch.nn.PixelUnshuffle(2),
        torch.nn.ChannelShuffle(4),
        torch.nn.PixelShuffle(2),
        torch.nn.Unfold([2, 3], dilation=1, padding=(1, 0), stride=1),
        torch.nn.Fold(output_size=[4, 4], kernel_size=(2, 3), padding=(1, 0)),
    )
    m = fparam.from_torch(t)
    assert repr(m) == repr(t)
    assert [type(layer).__name__ for layer in m] == [type(layer).__name__ for layer in t]
    x = _rand(np.random.default_rng(8), (2, 2, 4, 4))
    with torch.no_grad():
        expected = t(torch.tensor(x)).numpy()
    y = jax.jit(lambda m, x: m(x))(m, x)  # (eagerly every op would compile on its own)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=ATOL)
