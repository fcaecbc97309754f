"""``F.interpolate`` (and its aliases), ``F.grid_sample``, ``F.affine_grid`` and the ``Upsample``
modules against torch.

Parity cases are sampled from fixed-seed grids (modes x ranks x sizes up and down x integer and
fractional scales x ``align_corners`` x ``recompute_scale_factor`` x ``antialias``); each compares
the values and the input gradient (and the grid's / theta's) with ``torch.autograd`` under the
same random cotangent. fparam's side runs as one jitted program of ``jax.vjp`` per test, so the
functions are exercised under ``jit`` and reverse-mode differentiation.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fparam
from fparam import nn
from fparam.nn import functional as F
from fparam.nn.functional import sampling

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# Float32 tolerance, measured against torch's CPU kernels over the grids below: values differ by
# at most 2.0e-6 (magnitudes up to 3.4), input gradients by 2.6e-6 (magnitudes up to 9.1), grid
# gradients by 5.8e-6 (magnitudes up to 13.6): both sides sum the same products in other orders.
# Each comparison allows ATOL + SCALED * max|expected|, about 3x the measured error.
ATOL = 3e-6
SCALED = 1e-6
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _assert_close(actual: Any, expected: Any, label: str = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (label, actual.shape, expected.shape)
    tolerance = ATOL + SCALED * float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance, err_msg=label)


# --- interpolate: the randomized parity grid ---------------------------------------------------

_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5, "lanczos": 4}
_SCALES = [0.5, 0.6, 0.75, 1.0, 1.3, 1.7, 2.0, 2.3, 3.0]


def _interpolate_cases(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    modes = ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area"]
    modes += ["bilinear-aa", "bicubic-aa", "lanczos"]
    cases = []
    for i in range(count):
        mode = modes[i % len(modes)]  # every mode appears
        antialias = mode.endswith("-aa") or mode == "lanczos"
        mode = mode.removesuffix("-aa")
        rank = _RANK.get(mode, rng.choice([3, 4, 5]))
        spatial = [rng.randint(1, 7) for _ in range(rank - 2)]
        kw: dict[str, Any] = dict(mode=mode, antialias=antialias)
        if mode not in ("nearest", "nearest-exact", "area", "lanczos"):
            kw["align_corners"] = rng.choice([False, True])
        how = rng.choice(["size", "scale", "recompute"])
        if how == "size":
            kw["size"] = [rng.randint(1, 11) for _ in spatial]
        else:
            scales = [rng.choice(_SCALES) for _ in spatial]
            scales = [s if int(n * s) >= 1 else 1.0 for n, s in zip(spatial, scales)]
            kw["scale_factor"] = scales[0] if rank == 3 else tuple(scales)
            if how == "recompute":
                kw["recompute_scale_factor"] = True
        cases.append(dict(shape=(2, 3, *spatial), kw=kw))
    return cases


def _torch_interpolate(x: Any, kw: dict[str, Any]) -> Any:
    """torch's result; for antialiased outputs one pixel wide, torch's result on the transposed
    problem: torch 2.13's CPU antialiased kernel copies the first output row into every row when
    the output width is 1 (a torch bug; the transposed problem and every other width agree)."""
    if kw.get("mode", "nearest") == "nearest" and x.ndim != 4:
        return _torch_nearest_by_gather(x, kw)
    if kw.get("antialias") and "scale_factor" in kw and not kw.get("recompute_scale_factor"):
        scales = kw["scale_factor"]
        scales = scales if isinstance(scales, tuple) else (scales,) * (x.ndim - 2)
        if any(int(n * s) == n and s != 1 for n, s in zip(x.shape[2:], scales)):
            return _torch_by_forward_matrix(x, kw)
    y = TF.interpolate(x, **kw)
    if kw.get("antialias") and y.shape[-1] == 1:
        swapped = dict(kw)
        for key in ("size", "scale_factor"):
            if isinstance(kw.get(key), (list, tuple)):
                swapped[key] = type(kw[key])(kw[key][::-1])
        y = TF.interpolate(x.transpose(2, 3), **swapped).transpose(2, 3)
    return y


def _torch_by_forward_matrix(x: Any, kw: dict[str, Any]) -> Any:
    """torch's antialiased forward as the linear map it is (run on every basis image, float64).

    Its forward skips an axis whose size does not change, but its backward resamples that axis
    with ``1 / scale_factor`` (e.g. ``scale_factor=1.3`` on 3 pixels): the backward is not the
    gradient of the forward there. fparam's gradient is the forward's; so is this oracle's.
    """
    n = x[0, 0].numel()
    basis = torch.eye(n, dtype=torch.float64).reshape((n, 1, *x.shape[2:]))
    columns = TF.interpolate(basis, **kw)[:, 0].to(x.dtype)  # (n, *out)
    return torch.tensordot(x.flatten(2), columns, dims=([2], [0]))


def _torch_nearest_by_gather(x: Any, kw: dict[str, Any]) -> Any:
    """torch's 1-d and 3-d ``nearest``, as a gather by the pixels its forward reads.

    Its backward kernels copy an axis whose size is unchanged and halve indices for a doubled
    axis whatever the scale_factor (``nearest_idx``), while these forward kernels use
    ``floor(i / scale_factor)``: with ``scale_factor=1.3`` on 3 pixels the forward reads
    ``[0, 0, 1]`` and the backward sends gradients to ``[0, 1, 2]``. fparam's gradient is the
    gradient of the forward; this oracle gives torch's forward with that gradient.
    """
    positions = torch.arange(x[0, 0].numel(), dtype=torch.float64).reshape((1, 1, *x.shape[2:]))
    index = TF.interpolate(positions, **kw).long()
    flat = x.flatten(2)[:, :, index.flatten()]
    return flat.reshape((*x.shape[:2], *index.shape[2:]))


def _torch_vjp(fn: Callable[..., Any], arrays: list[np.ndarray], seed: int) -> tuple[Any, ...]:
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    cotangent = np.random.default_rng(seed).standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.tensor(cotangent))
    return y.detach().numpy(), cotangent, [t.grad.numpy() for t in tensors]


def _run_parity(
    fparam_fns: list[Callable[..., Any]],
    torch_fns: list[Callable[..., Any]],
    inputs: list[list[np.ndarray]],
    labels: list[str],
) -> None:
    """All fparam vjps in one jitted program, each against torch's value and gradients."""
    expected = [_torch_vjp(t, a, i) for i, (t, a) in enumerate(zip(torch_fns, inputs))]

    @jax.jit
    def run(arrays: list[list[jax.Array]], cotangents: list[jax.Array]) -> list[Any]:
        out = []
        for fn, args, ct in zip(fparam_fns, arrays, cotangents):
            y, vjp = jax.vjp(fn, *args)
            out.append((y, vjp(ct)))
        return out

    run = jax.jit(run.__wrapped__, compiler_options=_FAST_COMPILE)
    got = run(inputs, [e[1] for e in expected])
    for (y, grads), (ty, _, tgrads), label in zip(got, expected, labels):
        _assert_close(y, ty, f"{label}: value")
        for k, (g, tg) in enumerate(zip(grads, tgrads)):
            _assert_close(g, tg, f"{label}: gradient of argument {k}")


def test_interpolate_matches_torch_values_and_input_gradients() -> None:
    cases = _interpolate_cases(36, 0)
    rng = np.random.default_rng(100)
    inputs = [[rng.standard_normal(c["shape"]).astype(np.float32)] for c in cases]
    fparam_fns = [lambda x, kw=c["kw"]: F.interpolate(x, **kw) for c in cases]
    torch_fns = [lambda x, kw=c["kw"]: _torch_interpolate(x, kw) for c in cases]
    _run_parity(fparam_fns, torch_fns, inputs, [f"{c['shape']} {c['kw']}" for c in cases])


def test_interpolate_chosen_cases() -> None:
    """torch's quirks, each named: 1/scale_factor as the source step (1.7, 0.6), an unchanged
    axis copied even with a scale, OpenCV's ``nearest``, whole-number zooms (repeat / stride),
    the big-table path, unbatched-rank 3-D inputs, float64."""
    cases = [
        ((1, 2, 5, 7), dict(scale_factor=1.7, mode="bilinear")),
        ((1, 2, 5, 7), dict(scale_factor=0.6, mode="bilinear")),
        ((1, 2, 5, 7), dict(scale_factor=1.7, mode="bicubic", align_corners=False)),
        ((1, 2, 5, 7), dict(scale_factor=0.6, mode="nearest")),
        ((1, 2, 5, 7), dict(scale_factor=1.7, mode="nearest-exact")),
        ((1, 2, 3, 4), dict(scale_factor=1.3, mode="nearest")),  # 3 -> 3, yet floor(i / 1.3)
        ((1, 2, 3, 4), dict(scale_factor=1.3, mode="bilinear")),  # 3 -> 3: a copy
        ((1, 2, 3, 4), dict(scale_factor=1.3, mode="bicubic", antialias=True)),
        ((1, 2, 4, 6), dict(scale_factor=2.0, mode="nearest")),  # repeat
        ((1, 2, 8, 9), dict(scale_factor=0.5, mode="nearest")),  # stride
        ((1, 2, 8, 9), dict(size=(2, 3), mode="nearest-exact")),  # stride from an offset
        ((2, 3, 6), dict(size=4, mode="area")),
        ((1, 1, 9, 6), dict(size=(4, 1), mode="bicubic", antialias=True)),  # torch's width-1 bug
        ((1, 2, 5, 7), dict(size=(7, 5), mode="bilinear", align_corners=True)),
    ]
    rng = np.random.default_rng(7)
    inputs = [[rng.standard_normal(shape).astype(np.float32)] for shape, _ in cases]
    fparam_fns = [lambda x, kw=kw: F.interpolate(x, **kw) for _, kw in cases]
    torch_fns = [lambda x, kw=kw: _torch_interpolate(x, kw) for _, kw in cases]
    _run_parity(fparam_fns, torch_fns, inputs, [f"{s} {kw}" for s, kw in cases])


def test_interpolate_gathers_beyond_the_dense_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables too big for one matrix are applied as weighted gathers: same values and grads."""
    monkeypatch.setattr(sampling, "_DENSE_MAX", 0)
    cases = [
        ((1, 2, 5, 7), dict(scale_factor=1.7, mode="bilinear", align_corners=True)),
        ((1, 2, 9, 4), dict(size=(4, 6), mode="bicubic")),
        ((1, 2, 9, 8), dict(size=(4, 3), mode="bilinear", antialias=True)),
        ((1, 2, 7, 3, 4), dict(size=(3, 5, 2), mode="area")),
    ]
    rng = np.random.default_rng(8)
    inputs = [[rng.standard_normal(shape).astype(np.float32)] for shape, _ in cases]
    fparam_fns = [lambda x, kw=kw: F.interpolate(x, **kw) for _, kw in cases]
    torch_fns = [lambda x, kw=kw: TF.interpolate(x, **kw) for _, kw in cases]
    _run_parity(fparam_fns, torch_fns, inputs, [f"{s} {kw}" for s, kw in cases])


def test_interpolate_float64_half_and_empty_batch() -> None:
    x = np.random.default_rng(9).standard_normal((2, 3, 5, 4))
    with jax.enable_x64(True):
        y = F.interpolate(jnp.asarray(x), scale_factor=1.7, mode="bicubic")
        assert y.dtype == jnp.float64
        expected = TF.interpolate(torch.tensor(x), scale_factor=1.7, mode="bicubic").numpy()
        np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=1e-12)
    half = F.interpolate(jnp.asarray(x, jnp.float16), size=(3, 7), mode="bilinear")
    assert half.dtype == jnp.float16
    t_half = TF.interpolate(torch.tensor(x).half(), size=(3, 7), mode="bilinear")
    np.testing.assert_allclose(np.asarray(half, np.float32), t_half.float().numpy(), atol=4e-3)
    assert F.interpolate(jnp.zeros((0, 2, 3, 3)), size=5).shape == (0, 2, 5, 5)
    assert F.interpolate(jnp.zeros((1, 2, 3, 3)), size=0, mode="area").shape == (1, 2, 0, 0)


def test_interpolate_under_vmap_and_jit_with_static_options() -> None:
    x = jax.random.normal(jax.random.key(0), (4, 1, 2, 5, 6))
    resize = jax.jit(jax.vmap(lambda v: F.interpolate(v, size=(3, 8), mode="bilinear")))
    y = resize(x)
    expected = TF.interpolate(torch.tensor(np.asarray(x[:, 0])), size=(3, 8), mode="bilinear")
    _assert_close(y[:, 0], expected.numpy())


# --- grid_sample, affine_grid -------------------------------------------------------------------


def _grid_cases(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    combos = [
        (rank, mode, pad)
        for rank in (4, 5)
        for mode in ("bilinear", "nearest", "bicubic")
        for pad in ("zeros", "border", "reflection")
        if not (rank == 5 and mode == "bicubic")
    ]
    for i in range(count):
        rank, mode, pad = combos[i % len(combos)]
        spatial = [rng.randint(1, 5) for _ in range(rank - 2)]
        out = [rng.randint(1, 4) for _ in range(rank - 2)]
        kw = dict(mode=mode, padding_mode=pad, align_corners=rng.choice([False, True]))
        cases.append(dict(shape=(2, 3, *spatial), grid=(2, *out, rank - 2), kw=kw))
    return cases


def test_grid_sample_matches_torch_values_and_gradients() -> None:
    """Input and grid gradients too; grid points in [-1.6, 1.6], so every padding mode acts."""
    cases = _grid_cases(15, 0)
    rng = np.random.default_rng(11)
    inputs = [
        [
            rng.standard_normal(c["shape"]).astype(np.float32),
            rng.uniform(-1.6, 1.6, c["grid"]).astype(np.float32),
        ]
        for c in cases
    ]
    fparam_fns = [lambda x, g, kw=c["kw"]: F.grid_sample(x, g, **kw) for c in cases]
    torch_fns = [lambda x, g, kw=c["kw"]: TF.grid_sample(x, g, **kw) for c in cases]
    _run_parity(fparam_fns, torch_fns, inputs, [f"{c['shape']} {c['kw']}" for c in cases])


@pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid")
def test_affine_grid_matches_torch_and_feeds_grid_sample() -> None:
    cases = [
        ((2, 3, 4, 5), False),
        ((2, 3, 4, 5), True),
        ((1, 2, 3, 4, 2), False),
        ((1, 2, 3, 4, 2), True),
        ((2, 1, 1, 3), True),  # unit size with align_corners: torch warns, still a grid
    ]
    rng = np.random.default_rng(12)
    inputs = [
        [rng.standard_normal((s[0], len(s) - 2, len(s) - 1)).astype(np.float32)] for s, _ in cases
    ]
    fparam_fns = [lambda t, s=s, ac=ac: F.affine_grid(t, s, align_corners=ac) for s, ac in cases]
    torch_fns = [
        lambda t, s=s, ac=ac: TF.affine_grid(t, list(s), align_corners=ac) for s, ac in cases
    ]
    _run_parity(fparam_fns, torch_fns, inputs, [f"{s} {ac}" for s, ac in cases])

    # A rotation warp, differentiated through both functions with respect to the angle.
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)

    def warp(angle: Any, x: Any, lib: Any) -> Any:
        c, s = lib.cos(angle), lib.sin(angle)
        zero = angle * 0
        theta = lib.stack([lib.stack([c, -s, zero]), lib.stack([s, c, zero])])[None]
        if lib is jnp:
            grid = F.affine_grid(theta, (1, 2, 5, 5), align_corners=False)
            return F.grid_sample(x, grid, align_corners=False).sum()
        grid = TF.affine_grid(theta, [1, 2, 5, 5], align_corners=False)
        return TF.grid_sample(x, grid, align_corners=False).sum()

    value, grad = jax.jit(jax.value_and_grad(warp), static_argnums=2)(0.3, jnp.asarray(x), jnp)
    angle = torch.tensor(0.3, requires_grad=True)
    t_value = warp(angle, torch.tensor(x), torch)
    t_value.backward()
    _assert_close(value, t_value.item())
    _assert_close(grad, angle.grad.item())


# --- errors and warnings ------------------------------------------------------------------------

_X4 = np.zeros((1, 2, 4, 5), np.float32)
_X3 = np.zeros((1, 2, 4), np.float32)
_X5 = np.zeros((1, 1, 2, 3, 4), np.float32)
_G4 = np.zeros((1, 2, 2, 2), np.float32)

# (fparam call, torch call): both must raise the same type with the same message.
_SAME_ERRORS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("align_corners with nearest", lambda f, x: f.interpolate(x(_X4), 3, align_corners=True)),
    (
        "align_corners with area",
        lambda f, x: f.interpolate(x(_X4), 3, mode="area", align_corners=False),
    ),
    ("both", lambda f, x: f.interpolate(x(_X4), size=3, scale_factor=2.0)),
    ("neither", lambda f, x: f.interpolate(x(_X4))),
    ("size length", lambda f, x: f.interpolate(x(_X4), size=(3, 3, 3))),
    ("size list length", lambda f, x: f.interpolate(x(_X4), size=[3])),
    ("size floats", lambda f, x: f.interpolate(x(_X4), size=(3.0, 3))),
    ("scale length", lambda f, x: f.interpolate(x(_X4), scale_factor=(2.0,))),
    ("recompute with size", lambda f, x: f.interpolate(x(_X4), 3, recompute_scale_factor=True)),
    ("antialias nearest", lambda f, x: f.interpolate(x(_X4), 3, antialias=True)),
    ("antialias linear", lambda f, x: f.interpolate(x(_X3), 3, mode="linear", antialias=True)),
    ("antialias area", lambda f, x: f.interpolate(x(_X4), 2, mode="area", antialias=True)),
    ("bilinear 3d", lambda f, x: f.interpolate(x(_X3), 3, mode="bilinear")),
    ("trilinear 3d", lambda f, x: f.interpolate(x(_X3), 3, mode="trilinear")),
    ("linear 4d", lambda f, x: f.interpolate(x(_X4), 3, mode="linear")),
    ("trilinear 4d", lambda f, x: f.interpolate(x(_X4), 3, mode="trilinear")),
    ("linear 5d", lambda f, x: f.interpolate(x(_X5), 3, mode="linear")),
    ("bilinear 5d", lambda f, x: f.interpolate(x(_X5), 3, mode="bilinear")),
    ("bicubic 3d", lambda f, x: f.interpolate(x(_X3), 3, mode="bicubic")),
    ("bicubic 5d", lambda f, x: f.interpolate(x(_X5), 3, mode="bicubic")),
    ("unknown mode", lambda f, x: f.interpolate(x(_X4), 3, mode="foo")),
    ("rank 2", lambda f, x: f.interpolate(x(np.zeros((2, 3), np.float32)), 3)),
    ("lanczos no antialias", lambda f, x: f.interpolate(x(_X4), 3, mode="lanczos")),
    (
        "lanczos align_corners",
        lambda f, x: f.interpolate(x(_X4), 3, mode="lanczos", align_corners=True, antialias=True),
    ),
    ("size 0", lambda f, x: f.interpolate(x(_X4), size=0)),
    ("size 0 linear 1d", lambda f, x: f.interpolate(x(_X3), size=0, mode="linear")),
    ("size negative 3d", lambda f, x: f.interpolate(x(_X5), size=(1, -1, 2))),
    ("scale too small", lambda f, x: f.interpolate(x(_X4), scale_factor=0.1, mode="bicubic")),
    ("scale negative", lambda f, x: f.interpolate(x(_X4), scale_factor=-2.0)),
    ("empty input", lambda f, x: f.interpolate(x(np.zeros((1, 2, 0, 3), np.float32)), 3)),
    ("zero channels", lambda f, x: f.interpolate(x(np.zeros((1, 0, 3, 3), np.float32)), 2)),
    (
        "zero channels linear",
        lambda f, x: f.interpolate(x(np.zeros((2, 0, 3), np.float32)), 2, mode="linear"),
    ),
    ("area negative", lambda f, x: f.interpolate(x(_X4), size=(-1, 2), mode="area")),
    ("area negative 1d", lambda f, x: f.interpolate(x(_X3), size=-2, mode="area")),
    (
        "area empty 1d",
        lambda f, x: f.interpolate(x(np.zeros((1, 2, 0), np.float32)), 2, mode="area"),
    ),
    (
        "area empty 3d",
        lambda f, x: f.interpolate(x(np.zeros((1, 2, 0, 1, 1), np.float32)), 2, mode="area"),
    ),
    ("grid mode", lambda f, x: f.grid_sample(x(_X4), x(_G4), mode="foo")),
    ("grid padding", lambda f, x: f.grid_sample(x(_X4), x(_G4), padding_mode="foo")),
    (
        "grid batch",
        lambda f, x: f.grid_sample(
            x(_X4), x(np.zeros((2, 2, 2, 2), np.float32)), align_corners=False
        ),
    ),
    (
        "grid last axis",
        lambda f, x: f.grid_sample(
            x(_X4), x(np.zeros((1, 2, 2, 3), np.float32)), align_corners=False
        ),
    ),
    (
        "grid last axis 3d input",
        lambda f, x: f.grid_sample(x(_X3), x(np.zeros((1, 2, 2), np.float32)), align_corners=False),
    ),
    (
        "grid rank",
        lambda f, x: f.grid_sample(
            x(_X4), x(np.zeros((1, 2, 2, 2, 2), np.float32)), align_corners=False
        ),
    ),
    (
        "grid bicubic 5d",
        lambda f, x: f.grid_sample(
            x(_X5), x(np.zeros((1, 2, 2, 2, 3), np.float32)), "bicubic", align_corners=False
        ),
    ),
    (
        "grid empty input",
        lambda f, x: f.grid_sample(
            x(np.zeros((1, 1, 0, 3), np.float32)), x(_G4), align_corners=False
        ),
    ),
    (
        "size 3d",
        lambda f, x: f.affine_grid(
            x(np.ones((1, 2, 3), np.float32)), [1, 1, 2], align_corners=False
        ),
    ),
    (
        "size zero",
        lambda f, x: f.affine_grid(
            x(np.ones((1, 2, 3), np.float32)), [1, 1, 0, 2], align_corners=False
        ),
    ),
    (
        "size zero tuple",
        lambda f, x: f.affine_grid(
            x(np.ones((1, 2, 3), np.float32)), (1, 0, 2, 2), align_corners=True
        ),
    ),
]


def _jnp(a: np.ndarray) -> Any:
    return jnp.asarray(a)


@pytest.mark.parametrize("name, call", _SAME_ERRORS, ids=[n for n, _ in _SAME_ERRORS])
def test_errors_match_torch(name: str, call: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(Exception) as t_err:
        call(TF, torch.tensor)
    with pytest.raises(t_err.type, match="^" + re.escape(str(t_err.value)) + "$"):
        call(F, _jnp)


@pytest.mark.parametrize(
    "call, error, match",
    [
        # torch's argument parser rejects these with a long signature listing.
        (lambda: F.interpolate(jnp.zeros((1, 1, 3, 3)), size=3.0), TypeError, "size"),
        (lambda: F.interpolate(jnp.zeros((1, 1, 3, 3)), size=(True, 2)), TypeError, "size"),
        (
            lambda: F.interpolate(jnp.zeros((1, 1, 3, 3)), scale_factor="a"),
            TypeError,
            "scale_factor",
        ),
        (
            lambda: F.interpolate(jnp.zeros((1, 1, 3, 3)), 2, mode="bilinear", align_corners=1),
            TypeError,
            "align_corners",
        ),
        # torch: NotImplementedError "... not implemented for 'Long'".
        (
            lambda: F.interpolate(jnp.ones((1, 1, 3, 3), jnp.int32), 4, mode="bilinear"),
            NotImplementedError,
            "floating-point",
        ),
        # torch: RuntimeError "expected scalar type Float but found Double".
        (
            lambda: F.grid_sample(
                jnp.zeros((1, 1, 3, 3)), jnp.zeros((1, 2, 2, 2), jnp.float16), align_corners=True
            ),
            RuntimeError,
            "same dtype",
        ),
        # torch: the bmm's "Expected size for first two dimensions of batch2 tensor ..."
        (
            lambda: F.affine_grid(jnp.ones((2, 2, 3)), [1, 1, 3, 2], align_corners=False),
            RuntimeError,
            "batch2",
        ),
        (lambda: F.interpolate([[1.0]], 3), TypeError, "'input' must be an array"),
        # torch spells the dtype torch.int64.
        (
            lambda: F.affine_grid(
                jnp.ones((1, 2, 3), jnp.int32), [1, 1, 2, 2], align_corners=False
            ),
            ValueError,
            "^Expected theta to have floating point type, but got int32$",
        ),
    ],
)
def test_errors_that_name_the_argument(call: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_nearest_modes_accept_integer_inputs() -> None:
    x = np.arange(12, dtype=np.int32).reshape(1, 1, 3, 4)
    y = F.interpolate(jnp.asarray(x), scale_factor=1.7, mode="nearest")
    expected = TF.interpolate(torch.tensor(x, dtype=torch.uint8), scale_factor=1.7, mode="nearest")
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(y), expected.numpy())


def test_deprecated_aliases_and_default_align_corners_warn_as_torch() -> None:
    x = np.random.default_rng(3).standard_normal((1, 2, 3, 4)).astype(np.float32)
    for name, kw in [
        ("upsample", dict(scale_factor=2, mode="bilinear")),
        ("upsample_nearest", dict(scale_factor=2)),
        ("upsample_bilinear", dict(size=(5, 6))),
    ]:
        with pytest.warns(UserWarning) as got:
            y = getattr(F, name)(jnp.asarray(x), **kw)
        with pytest.warns(UserWarning) as expected:
            ty = getattr(TF, name)(torch.tensor(x), **kw)
        assert [str(w.message) for w in got] == [str(w.message) for w in expected]
        _assert_close(y, ty.numpy(), name)
    theta = np.eye(2, 3, dtype=np.float32)[None]
    with pytest.warns(UserWarning) as got:
        grid = F.affine_grid(jnp.asarray(theta), (1, 2, 3, 4))
        F.grid_sample(jnp.asarray(x), grid)
    with pytest.warns(UserWarning) as expected:
        t_grid = TF.affine_grid(torch.tensor(theta), [1, 2, 3, 4])
        TF.grid_sample(torch.tensor(x), t_grid)
    assert [str(w.message) for w in got] == [str(w.message) for w in expected]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.grid_sample(jnp.asarray(x), grid, align_corners=False)


# --- modules ------------------------------------------------------------------------------------

_MODULES: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[int, ...]]] = [
    ("Upsample", (), dict(scale_factor=2), (2, 3, 4, 5)),
    ("Upsample", (), dict(size=(3, 7), mode="bilinear"), (2, 3, 4, 5)),
    ("Upsample", (), dict(size=[6, 2, 3], mode="trilinear", align_corners=True), (1, 2, 3, 4, 5)),
    ("Upsample", (), dict(scale_factor=(1.7, 0.6), mode="bicubic"), (1, 2, 5, 6)),
    ("Upsample", (None, 1.7, "linear", False, True), {}, (2, 3, 5)),
    ("Upsample", (), dict(scale_factor=0.5, mode="area"), (1, 2, 6, 4)),
    ("UpsamplingNearest2d", (), dict(scale_factor=3), (1, 2, 3, 4)),
    ("UpsamplingNearest2d", (5,), {}, (1, 2, 3, 4)),
    ("UpsamplingBilinear2d", (), dict(scale_factor=2), (1, 2, 3, 4)),
    ("UpsamplingBilinear2d", ((4, 7),), {}, (1, 2, 3, 4)),
]


@pytest.mark.parametrize("cls, args, kwargs, shape", _MODULES)
def test_modules_match_torch_and_twin_through_from_torch(
    cls: str, args: tuple[Any, ...], kwargs: dict[str, Any], shape: tuple[int, ...]
) -> None:
    m = getattr(nn, cls)(*args, **kwargs)
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(m) == repr(tm)
    assert m.extra_repr() == tm.extra_repr()
    for attr in ("name", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"):
        assert getattr(m, attr) == getattr(tm, attr), attr
    assert list(m.state_dict()) == list(tm.state_dict()) == []
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's UpsamplingNearest2d/Bilinear2d deprecation
        expected = tm(torch.tensor(x)).numpy()
    _assert_close(m(jnp.asarray(x)), expected, cls)
    twin = fparam.from_torch(torch.nn.Sequential(tm))
    assert repr(twin) == repr(torch.nn.Sequential(tm))
    _assert_close(twin(jnp.asarray(x)), expected, f"{cls} twin")


def test_module_errors_come_at_forward_as_torch() -> None:
    m = nn.Upsample(size=3, mode="bilinear")
    t = torch.nn.Upsample(size=3, mode="bilinear")
    with pytest.raises(NotImplementedError) as t_err:
        t(torch.zeros(1, 2, 4))
    with pytest.raises(NotImplementedError, match="^" + re.escape(str(t_err.value)) + "$"):
        m(jnp.zeros((1, 2, 4)))
    assert nn.Upsample(scale_factor=0).scale_factor is None  # torch: falsy becomes None
