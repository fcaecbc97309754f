"""Pooling layers and functions against torch's.

The parity grids draw configurations with fixed seeds (kernel, stride, padding, dilation,
ceil mode, divisor rules, batched or unbatched inputs of 1 to 3 spatial dims) and compare the
outputs, the indices and the input gradients (``jax.vjp`` against ``torch.autograd`` with the
same random cotangent). Max-pooling inputs hold small integers, so windows are full of ties:
torch's choice among equal elements (the first in row-major window order; the last NaN) must
be reproduced by the indices and by the gradient. Every configuration of a grid is compiled in
one program, as compilation dominates the run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fparam
from fparam import nn
from fparam.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# Max pooling copies elements: its values, indices and gradients are exact. Average pooling
# sums in another order than torch: measured max abs error 2.4e-7 on values of magnitude ~3,
# and the same on gradients; adaptive averaging (a matrix product for unequal windows) 4.8e-7.
ATOL = 2e-6
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _close(actual: Any, expected: Any, label: str = "", atol: float = ATOL) -> None:
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=0, atol=atol, err_msg=label
    )


def _exact(actual: Any, expected: Any, label: str = "") -> None:
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected), err_msg=label)


def _torch_run(
    fn: Callable[..., Any], x: np.ndarray, g: np.ndarray | None, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """torch's output, indices (when returned) and input gradient for cotangent ``g``."""
    tx = torch.tensor(x, requires_grad=g is not None)
    result = fn(tx, **kwargs)
    out, idx = result if isinstance(result, tuple) else (result, None)
    grad = None
    if g is not None:
        out.backward(torch.tensor(g))
        grad = tx.grad.numpy()
    return out.detach().numpy(), None if idx is None else idx.numpy(), grad


def _input(rng: np.random.Generator, shape: tuple[int, ...], ties: bool) -> np.ndarray:
    if ties:
        return rng.integers(0, 3, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _draw_window(rng: np.random.Generator, n: int, dilated: bool) -> dict[str, Any]:
    """A random kernel/stride/padding(/dilation)/ceil_mode with torch's padding limit."""
    kernel = tuple(int(k) for k in rng.integers(1, 4 if n < 3 else 3, n))
    stride = tuple(int(s) for s in rng.integers(1, 4, n))
    dilation = tuple(int(d) for d in rng.integers(1, 3, n)) if dilated else (1,) * n
    padding = tuple(
        int(rng.integers(0, ((k - 1) * d + 1) // 2 + 1)) for k, d in zip(kernel, dilation)
    )
    kwargs: dict[str, Any] = {
        "kernel_size": kernel if rng.random() < 0.7 else kernel[0],
        "stride": stride if rng.random() < 0.8 else None,
        "padding": padding if rng.random() < 0.7 else padding[0],
        "ceil_mode": bool(rng.random() < 0.5),
    }
    if isinstance(kwargs["padding"], int):
        limit = min(((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation))
        if isinstance(kwargs["kernel_size"], int):
            limit = min(((kernel[0] - 1) * d + 1) // 2 for d in dilation)
        kwargs["padding"] = min(kwargs["padding"], limit)
    if dilated:
        kwargs["dilation"] = dilation if rng.random() < 0.7 else dilation[0]
    return kwargs


def _input_shape(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    spatial = tuple(int(s) for s in rng.integers(3, 9 if n < 3 else 6, n))
    return (2, 3, *spatial) if rng.random() < 0.7 else (3, *spatial)


def _grid(
    seed: int, count: int, draw: Callable[[np.random.Generator, int], dict[str, Any]], torch_fn: str
) -> list[tuple[int, dict[str, Any], np.ndarray]]:
    """``count`` configurations torch accepts: (spatial dims, kwargs, input)."""
    rng = np.random.default_rng(seed)
    grid: list[tuple[int, dict[str, Any], np.ndarray]] = []
    while len(grid) < count:
        n = int(rng.integers(1, 4))
        kwargs = draw(rng, n)
        x = _input(rng, _input_shape(rng, n), ties=torch_fn.startswith(("max", "adaptive_max")))
        try:
            getattr(TF, torch_fn.format(n=n))(torch.tensor(x), **kwargs)
        except RuntimeError:
            continue  # output too small: drawn again
        grid.append((n, kwargs, x))
    return grid


def _parity(
    grid: list[tuple[int, dict[str, Any], np.ndarray]],
    name: str,
    indices: bool,
    exact: bool,
) -> None:
    rng = np.random.default_rng(1)
    cases = []
    expected = []
    for n, kwargs, x in grid:
        call = dict(kwargs, return_indices=True) if indices else dict(kwargs)
        out, _, _ = _torch_run(getattr(TF, name.format(n=n)), x, None, **call)
        g = rng.standard_normal(out.shape).astype(np.float32)
        expected.append(_torch_run(getattr(TF, name.format(n=n)), x, g, **call))
        cases.append((partial(getattr(F, name.format(n=n)), **call), x, g))
    for (fn, x, _), got, want in zip(cases, _fparam_run_grid(cases), expected):
        _compare(got, want, f"{fn.func.__name__} {x.shape} {fn.keywords}", exact)


def _compare(got: Any, want: Any, label: str, exact: bool) -> None:
    (out, idx, grad), (e_out, e_idx, e_grad) = got, want
    assert out.shape == e_out.shape, label
    assert out.dtype == e_out.dtype, label
    if exact:
        _exact(out, e_out, label)
    else:
        _close(out, e_out, label)
    # An input in several windows sums its gradients in another order than torch.
    _close(grad, e_grad, label + " (gradient)")
    if e_idx is not None:
        assert idx is not None
        _exact(idx, e_idx, label + " (indices)")


def _fparam_run_grid(cases: list[tuple[Callable[..., Any], np.ndarray, np.ndarray]]) -> list[Any]:
    """fparam's output, indices (or None) and input gradient for cotangent ``g`` of every
    ``(fn, x, g)``, in one compiled program."""

    def all_cases(xs: list[jax.Array], gs: list[jax.Array]) -> list[Any]:
        results = []
        for (fn, _, _), x, g in zip(cases, xs, gs):

            def value(x: jax.Array, fn: Callable[..., Any] = fn) -> Any:
                result = fn(x)
                return result if isinstance(result, tuple) else (result, None)

            out, vjp, idx = jax.vjp(value, x, has_aux=True)
            results.append((out, idx, vjp(g)[0]))
        return results

    compiled = jax.jit(all_cases, compiler_options=_FAST_COMPILE)
    return compiled([c[1] for c in cases], [c[2] for c in cases])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Parity grids.
# --------------------------------------------------------------------------------------------


def test_max_pool_grid_values_indices_and_tie_gradients() -> None:
    grid = _grid(0, 20, lambda rng, n: _draw_window(rng, n, dilated=True), "max_pool{n}d")
    _parity(grid, "max_pool{n}d", indices=True, exact=True)


def test_avg_pool_grid() -> None:
    def draw(rng: np.random.Generator, n: int) -> dict[str, Any]:
        kwargs = _draw_window(rng, n, dilated=False)
        kwargs["count_include_pad"] = bool(rng.random() < 0.5)
        if n > 1 and rng.random() < 0.3:
            kwargs["divisor_override"] = int(rng.integers(1, 5))
        return kwargs

    _parity(_grid(1, 16, draw, "avg_pool{n}d"), "avg_pool{n}d", indices=False, exact=False)


def _draw_adaptive(rng: np.random.Generator, n: int) -> dict[str, Any]:
    sizes = [int(s) for s in rng.integers(1, 6, n)]
    output: Any = tuple(None if rng.random() < 0.15 else s for s in sizes)
    if n == 1 or rng.random() < 0.2:
        output = sizes[0] if rng.random() < 0.5 else (sizes[0],) * n
    return {"output_size": output}


def test_adaptive_max_pool_grid() -> None:
    grid = _grid(2, 16, _draw_adaptive, "adaptive_max_pool{n}d")
    _parity(grid, "adaptive_max_pool{n}d", indices=True, exact=True)


def test_adaptive_avg_pool_grid() -> None:
    grid = _grid(3, 16, _draw_adaptive, "adaptive_avg_pool{n}d")
    _parity(grid, "adaptive_avg_pool{n}d", indices=False, exact=False)


def test_max_pool_nan_and_all_equal_windows() -> None:
    """NaN wins (the last NaN of a window), all-equal overlapping windows take their first
    element, and -inf inputs beside -inf padding take a real element, as in torch."""
    nan, inf = float("nan"), float("inf")
    x = np.array(
        [[[[1, nan, 3, nan], [2, 2, nan, 0], [-inf, -inf, 5, 5], [-inf, -inf, 5, 5]]]], np.float32
    )
    zeros = np.zeros((1, 2, 5, 5), np.float32)
    cases = [
        (x, dict(kernel_size=2)),
        (x, dict(kernel_size=3, stride=1, padding=1)),
        (x, dict(kernel_size=2, stride=1, ceil_mode=True)),
        (zeros, dict(kernel_size=3, stride=1, padding=1)),
        (zeros, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2))),
    ]
    fns: list[Callable[..., Any]] = [
        partial(F.max_pool2d, return_indices=True, **kwargs) for _, kwargs in cases
    ]
    fns.append(partial(F.adaptive_max_pool2d, output_size=3, return_indices=True))
    inputs = [values for values, _ in cases] + [x]
    run, expected = [], []
    for fn, values in zip(fns, inputs):
        shape = jax.eval_shape(fn, values)[0].shape
        g = np.arange(1.0, 1 + math.prod(shape), dtype=np.float32).reshape(shape)
        tfn = getattr(TF, fn.func.__name__)
        expected.append(_torch_run(tfn, values, g, **fn.keywords))
        run.append((fn, values, g))
    for (fn, values, _), got, want in zip(run, _fparam_run_grid(run), expected):
        _compare(got, want, f"{fn.keywords} on {values.shape}", exact=True)
        _exact(got[2], want[2], f"{fn.keywords} (gradient)")


def test_integer_max_pool_and_zero_batch() -> None:
    x = np.random.default_rng(0).integers(-5, 5, (2, 3, 6, 5)).astype(np.int32)
    e_out, e_idx, _ = _torch_run(
        TF.max_pool2d, x, None, kernel_size=3, stride=2, padding=1, return_indices=True
    )
    out, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert out.dtype == jnp.int32
    _exact(out, e_out)
    _exact(idx, e_idx)
    empty = np.zeros((0, 3, 6, 5), np.float32)
    assert F.max_pool2d(empty, 2).shape == TF.max_pool2d(torch.tensor(empty), 2).shape
    assert F.avg_pool2d(empty, 2).shape == (0, 3, 3, 2)
    assert F.adaptive_avg_pool2d(empty, 2).shape == (0, 3, 2, 2)
    zero_out = F.adaptive_max_pool2d(x.astype(np.float32), (0, 2), return_indices=True)
    assert zero_out[0].shape == zero_out[1].shape == (2, 3, 0, 2)


def test_half_precision_avg_pool() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float16)
    for fn, tfn, args in [
        (F.avg_pool2d, TF.avg_pool2d, (3, 2, 1)),
        (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, ((4, 5),)),
    ]:
        got = fn(x, *args)
        assert got.dtype == jnp.float16
        _close(
            np.asarray(got, np.float32),
            tfn(torch.tensor(x), *args).float().numpy(),
            atol=2e-3,
        )


# --------------------------------------------------------------------------------------------
# Errors: torch's exception type, with torch's wording in the message.
# --------------------------------------------------------------------------------------------

_X2 = np.zeros((2, 3, 5, 5), np.float32)
_X1 = np.zeros((2, 3, 5), np.float32)
_X3 = np.zeros((2, 3, 4, 4, 4), np.float32)

ERROR_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("max_pool2d", (_X2, 2), {"padding": 2}, "pad should be at most half of effective kernel"),
    ("max_pool2d", (_X2, 3), {"padding": 3, "dilation": 2}, "pad should be"),
    ("max_pool1d", (_X1, 3), {"padding": 2}, "half"),
    ("max_pool2d", (_X2, 6), {}, "Output size is too small"),
    ("max_pool3d", (_X3, 5), {}, "Output size is too small"),
    ("max_pool2d", (_X2, 0), {}, "zero"),
    ("max_pool2d", (_X2, 2), {"stride": 0}, "stride"),
    ("max_pool1d", (_X1, 2), {"padding": -1}, "non-negative"),
    ("max_pool2d", (_X2, 2), {"dilation": 0}, "dilation"),
    ("max_pool2d", (_X2[0, 0], 2), {}, "3D or 4D (batch mode)"),
    ("max_pool1d", (_X1[0, 0], 2), {}, "2D or 3D (batch mode)"),
    ("max_pool3d", (_X1, 2), {}, "4D or 5D (batch mode)"),
    ("max_pool2d", (_X2, (2, 2, 2)), {}, "kernel_size must either be a single int, or a tuple"),
    ("max_pool2d", (_X2, 2, (1, 1, 1)), {}, "stride must either be omitted, a single int"),
    ("max_pool2d", (_X2, 2.0), {}, "must be tuple of ints"),
    ("max_pool2d", (_X2, 2), {"ceil_mode": 1}, "must be bool"),
    ("avg_pool2d", (_X2, 2), {"padding": 2}, "pad should be at most half"),
    ("avg_pool2d", (_X2, 6), {}, "Output size is too small"),
    ("avg_pool1d", (_X1, 6), {}, "Output size is too small"),
    ("avg_pool2d", (_X2, 2), {"divisor_override": 0}, "divisor must be not zero"),
    ("avg_pool3d", (_X1, 2), {}, "4D or 5D (batch mode)"),
    ("avg_pool2d", (_X2.astype(np.int32), 2), {}, "not implemented for"),
    ("adaptive_avg_pool2d", (_X2[0, 0, 0], 2), {}, "Expected 3D or 4D tensor"),
    ("adaptive_max_pool3d", (_X2[0, 0], 2), {}, "Expected 4D or 5D tensor"),
    ("adaptive_avg_pool1d", (_X1[0, 0], 2), {}, "Expected 2 to 3 dimensions"),
    ("adaptive_avg_pool2d", (_X2, (2, 2, 2)), {}, "output_size must be 2"),
    ("adaptive_avg_pool1d", (_X1, (2, 2)), {}, "should contain one int"),
    ("adaptive_avg_pool2d", (_X2, (-1, 2)), {}, "greater than or equal to 0"),
    ("adaptive_max_pool2d", (np.zeros((2, 3, 0, 5), np.float32), 2), {}, "non-zero size"),
    ("adaptive_avg_pool2d", (_X2.astype(np.int32), 2), {}, "not implemented for"),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "phrase"), ERROR_CASES)
def test_errors_match_torch(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], phrase: str
) -> None:
    torch_args = tuple(torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args)
    with pytest.raises(Exception) as expected:
        getattr(TF, name)(*torch_args, **kwargs)
    with pytest.raises(expected.type, match=None) as got:
        getattr(F, name)(*args, **kwargs)
    assert phrase in str(expected.value), (phrase, str(expected.value))
    assert phrase in str(got.value), (phrase, str(got.value))


# --------------------------------------------------------------------------------------------
# Modules: attributes, repr, forward, from_torch twins.
# --------------------------------------------------------------------------------------------

MODULE_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[int, ...]]] = [
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}, (2, 3, 9)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 8)),
    ("MaxPool2d", ((3, 2), 1, 1), {"dilation": (1, 2), "ceil_mode": True}, (3, 7, 8)),
    ("MaxPool2d", (3, 2, 1), {"return_indices": True}, (2, 3, 7, 7)),
    ("MaxPool3d", (2,), {"stride": 1, "return_indices": True}, (2, 2, 4, 5, 4)),
    ("AvgPool1d", (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}, (2, 3, 8)),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1}, (3, 7, 7)),
    ("AvgPool2d", ((2, 3),), {"divisor_override": 4, "ceil_mode": True}, (2, 3, 7, 7)),
    ("AvgPool3d", (2,), {"padding": 1, "count_include_pad": False}, (2, 2, 4, 5, 4)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 9)),
    ("AdaptiveAvgPool2d", ((None, 3),), {}, (2, 3, 7, 8)),
    ("AdaptiveAvgPool2d", (1,), {}, (3, 7, 8)),
    ("AdaptiveAvgPool3d", ((2, 3, None),), {}, (2, 2, 5, 4, 3)),
    ("AdaptiveMaxPool1d", (4, True), {}, (2, 3, 9)),
    ("AdaptiveMaxPool2d", ((None, 3),), {}, (3, 7, 8)),
    ("AdaptiveMaxPool3d", (2,), {"return_indices": True}, (2, 2, 5, 4, 3)),
    ("LPPool1d", (2, 3), {"stride": 2, "ceil_mode": True}, (2, 3, 8)),
    ("LPPool2d", (1.5, (2, 3)), {}, (3, 7, 8)),
    ("LPPool3d", (3, 2), {"stride": (1, 2, 1)}, (2, 2, 4, 5, 4)),
]


def test_modules_match_torch_and_twin_from_torch() -> None:
    """Attributes, repr and state of each module equal torch's, ``from_torch`` builds the same
    module, and both compute torch's forward (all forwards in one compiled program)."""
    layers, twins, inputs, expected = [], [], [], []
    for cls, args, kwargs, shape in MODULE_CASES:
        tm = getattr(torch.nn, cls)(*args, **kwargs)
        m = getattr(nn, cls)(*args, **kwargs)
        twin = fparam.from_torch(tm)
        assert type(twin) is type(m), cls
        assert repr(m) == repr(tm) == repr(twin), cls
        for name in ("kernel_size", "stride", "padding", "dilation", "output_size", "ceil_mode"):
            if hasattr(tm, name):
                assert getattr(m, name) == getattr(tm, name) == getattr(twin, name), (cls, name)
        assert list(m.state_dict()) == list(tm.state_dict()) == []
        x = np.random.default_rng(len(layers)).integers(0, 4, shape).astype(np.float32)
        layers.append(m)
        twins.append(twin)
        inputs.append(x)
        expected.append(tm(torch.tensor(x)))

    forward = jax.jit(
        lambda layers, xs: [layer(x) for layer, x in zip(layers, xs)],
        compiler_options=_FAST_COMPILE,
    )
    for outputs in (forward(layers, inputs), forward(twins, inputs)):
        for (cls, *_), got, want in zip(MODULE_CASES, outputs, expected):
            if isinstance(want, tuple):
                _close(got[0], want[0].numpy(), cls)
                _exact(got[1], want[1].numpy(), cls)
            else:
                _close(got, want.numpy(), cls)


def test_module_constructor_errors_and_torch_attributes() -> None:
    assert nn.AvgPool1d(3).kernel_size == torch.nn.AvgPool1d(3).kernel_size == (3,)
    assert nn.MaxPool2d(2).stride == 2
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        nn.AvgPool2d(2, divisor_override=0)
    with pytest.raises(RuntimeError, match="kernel_size must either be a single int"):
        nn.MaxPool2d((2, 2, 2))


# --------------------------------------------------------------------------------------------
# Transformations.
# --------------------------------------------------------------------------------------------


def test_jit_grad_vmap_per_family() -> None:
    x = np.random.default_rng(0).integers(0, 3, (4, 3, 7, 6)).astype(np.float32)
    layers = [
        nn.MaxPool2d(3, 2, 1),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        nn.AdaptiveAvgPool2d((3, 4)),
        nn.AdaptiveMaxPool2d((4, None)),
    ]

    def loss(layers: list[Any], x: jax.Array) -> jax.Array:
        return sum((jnp.sum(layer(x) ** 2) for layer in layers), jnp.float32(0))

    grad = jax.jit(jax.grad(loss, argnums=1), compiler_options=_FAST_COMPILE)(layers, x)
    tx = torch.tensor(x, requires_grad=True)
    torch_layers = [
        torch.nn.MaxPool2d(3, 2, 1),
        torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        torch.nn.AdaptiveAvgPool2d((3, 4)),
        torch.nn.AdaptiveMaxPool2d((4, None)),
    ]
    sum((layer(tx) ** 2).sum() for layer in torch_layers).backward()
    _close(grad, tx.grad.numpy(), atol=1e-5)
    # vmap over unbatched (C, H, W) inputs equals the batched call.
    both = jax.jit(
        lambda layers, x: [(jax.vmap(layer)(x), layer(x)) for layer in layers],
        compiler_options=_FAST_COMPILE,
    )
    for mapped, batched in both(layers, x):
        _close(mapped, batched)
    # Second order: the custom derivative of max pooling is itself differentiable. The loss is
    # quadratic in the selected elements, so its Hessian applied to x is its gradient at x.
    grad_fn = jax.grad(lambda v: jnp.sum(F.max_pool2d(v, 3, 2, 1) ** 2))
    hvp, grad_at_x = jax.jit(
        lambda x: (jax.jvp(grad_fn, (x,), (x,))[1], grad_fn(x)), compiler_options=_FAST_COMPILE
    )(x)
    _close(hvp, grad_at_x)
    assert float(jnp.abs(hvp).sum()) > 0


# --------------------------------------------------------------------------------------------
# LPPool, MaxUnpool, FractionalMaxPool.
# --------------------------------------------------------------------------------------------


def test_lp_pool_grid() -> None:
    def draw(rng: np.random.Generator, n: int) -> dict[str, Any]:
        window = _draw_window(rng, n, dilated=False)
        norm = [1, 2, 3.0, 1.5, float("inf")][int(rng.integers(0, 5))]
        kernel = window["kernel_size"]
        if n == 1 and isinstance(kernel, tuple):
            kernel = kernel[0]  # lp_pool1d multiplies by kernel_size: an int, as in torch
        return {
            "norm_type": norm,
            "kernel_size": kernel,
            "stride": window["stride"],
            "ceil_mode": window["ceil_mode"],
        }

    grid = _grid(4, 10, draw, "lp_pool{n}d")
    # Positive inputs: a fractional power of a negative window sum is NaN in both.
    grid = [(n, kwargs, np.abs(x) + 0.1) for n, kwargs, x in grid]
    _parity(grid, "lp_pool{n}d", indices=False, exact=False)


def test_max_unpool_inverts_max_pool_like_torch() -> None:
    rng = np.random.default_rng(5)
    cases, expected = [], []
    for n, kwargs, shape, output_size in [
        (1, {"kernel_size": 2}, (2, 3, 8), None),
        (2, {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 7, 7), (7, 7)),
        (2, {"kernel_size": 2, "stride": 1}, (3, 5, 5), None),  # overlapping: repeated indices
        (3, {"kernel_size": 2}, (1, 2, 4, 5, 4), (2, 2, 5, 5, 4)),
    ]:
        x = rng.integers(0, 3, shape).astype(np.float32)
        t_out, t_idx = getattr(TF, f"max_pool{n}d")(torch.tensor(x), return_indices=True, **kwargs)
        args = dict(kwargs, output_size=output_size)
        unpooled = getattr(TF, f"max_unpool{n}d")(t_out, t_idx, **args)
        g = rng.standard_normal(tuple(unpooled.shape)).astype(np.float32)
        tv = t_out.detach().clone().requires_grad_(True)
        getattr(TF, f"max_unpool{n}d")(tv, t_idx, **args).backward(torch.tensor(g))
        expected.append((unpooled.numpy(), None, tv.grad.numpy()))
        idx = np.asarray(t_idx.numpy(), np.int32)
        fn = partial(getattr(F, f"max_unpool{n}d"), indices=idx, **args)
        cases.append((fn, t_out.numpy(), g))
        # The module, and the indices fparam's own max pooling returns, give the same.
        module = getattr(nn, f"MaxUnpool{n}d")(kwargs["kernel_size"], kwargs.get("stride"))
        tm = getattr(torch.nn, f"MaxUnpool{n}d")(kwargs["kernel_size"], kwargs.get("stride"))
        twin = fparam.from_torch(tm)
        assert repr(module) == repr(tm) == repr(twin)
        if "padding" not in kwargs:
            out, own_idx = getattr(F, f"max_pool{n}d")(x, return_indices=True, **kwargs)
            _close(module(out, own_idx, output_size), unpooled.numpy())
    for (fn, _, _), got, want in zip(cases, _fparam_run_grid(cases), expected):
        _compare(got, want, str(fn.keywords.keys()), exact=True)


def test_max_unpool_errors() -> None:
    x = np.ones((2, 3, 2, 2), np.float32)
    idx = np.zeros((2, 3, 2, 2), np.int32)
    for args, kwargs, error, phrase in [
        ((x, idx[:, :, :1], 2), {}, RuntimeError, "Expected shape of indices"),
        ((x, idx, 2), {"output_size": (7, 7)}, ValueError, "invalid output_size"),
        ((x, idx, 2), {"output_size": (5,)}, ValueError, "2 or 4 elements"),
        ((x, idx.astype(np.float32), 2), {}, RuntimeError, "indices should be"),
    ]:
        with pytest.raises(error, match=phrase):
            F.max_unpool2d(*args, **kwargs)
        torch_args = tuple(torch.tensor(a).long() if a is idx else a for a in args)
        torch_args = tuple(torch.tensor(a) if isinstance(a, np.ndarray) else a for a in torch_args)
        with pytest.raises(error):
            TF.max_unpool2d(*torch_args, **kwargs)


def test_fractional_max_pool_with_torchs_samples() -> None:
    rng = np.random.default_rng(6)
    cases, expected = [], []
    for n, kwargs, shape in [
        (2, {"kernel_size": 2, "output_size": 4}, (2, 3, 9, 9)),
        (2, {"kernel_size": (3, 2), "output_size": (4, 6)}, (2, 2, 9, 11)),
        (2, {"kernel_size": 2, "output_ratio": (0.5, 0.7)}, (3, 8, 10)),
        (2, {"kernel_size": 3, "output_size": 1}, (1, 2, 5, 5)),
        (3, {"kernel_size": 2, "output_size": (3, 4, 2)}, (2, 2, 6, 7, 5)),
        (3, {"kernel_size": (1, 2, 3), "output_ratio": 0.6}, (2, 5, 6, 7)),
    ]:
        x = rng.integers(0, 4, shape).astype(np.float32)
        batch = 1 if len(shape) == n + 1 else shape[0]
        samples = rng.random((batch, shape[-n - 1], n)).astype(np.float32)
        call = dict(kwargs, return_indices=True)
        tfn = getattr(TF, f"fractional_max_pool{n}d")
        out, _, _ = _torch_run(tfn, x, None, _random_samples=torch.tensor(samples), **call)
        g = rng.standard_normal(out.shape).astype(np.float32)
        expected.append(_torch_run(tfn, x, g, _random_samples=torch.tensor(samples), **call))
        fn = partial(getattr(F, f"fractional_max_pool{n}d"), _random_samples=samples, **call)
        cases.append((fn, x, g))
    for (fn, x, _), got, want in zip(cases, _fparam_run_grid(cases), expected):
        _compare(got, want, f"{fn.keywords} on {x.shape}", exact=True)


def test_fractional_max_pool_keys_and_module() -> None:
    x = np.random.default_rng(7).standard_normal((2, 3, 9, 9)).astype(np.float32)
    layer = nn.FractionalMaxPool2d(3, output_ratio=0.5)
    tm = torch.nn.FractionalMaxPool2d(3, output_ratio=0.5)
    assert repr(layer) == repr(tm) == repr(fparam.from_torch(tm)) == "FractionalMaxPool2d()"
    assert list(layer.state_dict()) == list(tm.state_dict()) == []
    key = jax.random.key(3)
    a, b = layer(x, key=key), layer(x, key=key)
    _exact(a, b)
    assert a.shape == (2, 3, 4, 4)
    # The samples come from the key: torch's formula on uniform(key, (N, C, 2)) samples.
    samples = jax.random.uniform(key, (2, 3, 2))
    _exact(a, F.fractional_max_pool2d(x, 3, output_ratio=0.5, _random_samples=samples))
    # Eagerly, successive calls draw fresh samples from the default stream (seeded).
    fparam.manual_seed(1)
    first = layer(x)
    fparam.manual_seed(1)
    _exact(layer(x), first)
    # Under jit, from the key in scope; with none, RandomnessError.
    step = jax.jit(lambda layer, x, k: _scoped(layer, x, k), compiler_options=_FAST_COMPILE)
    _exact(step(layer, x, key), _scoped(layer, x, key))
    with pytest.raises(fparam.RandomnessError):
        jax.jit(lambda x: layer(x))(x)
    # A module built with torch's samples keeps them as a buffer, as torch does.
    samples = torch.rand(2, 3, 2)
    tm = torch.nn.FractionalMaxPool2d(
        2, output_size=3, return_indices=True, _random_samples=samples
    )
    twin = fparam.from_torch(tm)
    assert list(twin.state_dict()) == ["_random_samples"]
    got, want = twin(x), tm(torch.tensor(x))
    _exact(got[0], want[0].numpy())
    _exact(got[1], want[1].numpy())
    tm3 = torch.nn.FractionalMaxPool3d(
        (2, 3, 2), output_ratio=0.5, _random_samples=torch.rand(1, 3, 3)
    )
    twin3 = fparam.from_torch(tm3)
    assert repr(twin3) == repr(tm3) and list(twin3.state_dict()) == ["_random_samples"]
    x3 = x[:1, :, :6]
    _exact(twin3(x3[..., None].repeat(4, -1)), tm3(torch.tensor(x3[..., None].repeat(4, -1))))
    for kwargs, phrase in [
        ({}, "requires specifying either an output size"),
        ({"output_size": 2, "output_ratio": 0.5}, "only one of"),
        ({"output_ratio": 1.5}, "between 0 and 1"),
    ]:
        with pytest.raises(ValueError, match=phrase):
            nn.FractionalMaxPool2d(2, **kwargs)
        with pytest.raises(ValueError, match=phrase):
            torch.nn.FractionalMaxPool2d(2, **kwargs)
    for args, kwargs, phrase in [
        ((x, 3), {"output_size": (7, 9)}, "too large relative to input"),
        ((x, 2), {}, "requires specifying either an output_size or an output_ratio"),
        ((x, 2), {"output_ratio": (0.5, 0.5, 0.5)}, "single Int or tuple of Ints"),
    ]:
        with pytest.raises(Exception) as want_error:
            TF.fractional_max_pool2d(torch.tensor(x), *args[1:], **kwargs)
        with pytest.raises(want_error.type, match=phrase):
            F.fractional_max_pool2d(*args, **kwargs, key=key)


def _scoped(layer: Any, x: Any, key: Any) -> Any:
    with fparam.rng(key):
        return layer(x)
