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
        out, idx, grad = _torch_run(getattr(TF, name.format(n=n)), x, g, **call)
        expected.append((out, idx, grad))
        cases.append((n, call, x, g))

    def fn(x: jax.Array, n: int, **kwargs: Any) -> Any:
        return getattr(F, name.format(n=n))(x, **kwargs)

    results = _fparam_run_grid(fn, cases)
    for (n, call, x, _), (out, idx, grad), (e_out, e_idx, e_grad) in zip(cases, results, expected):
        label = f"{name.format(n=n)} {x.shape} {call}"
        assert out.shape == e_out.shape, label
        assert out.dtype == jnp.float32, label
        if exact:
            _exact(out, e_out, label)
        else:
            _close(out, e_out, label)
        # An input in several windows sums its gradients in another order than torch.
        _close(grad, e_grad, label + " (gradient)")
        if indices:
            assert idx is not None and e_idx is not None
            _exact(idx, e_idx, label + " (indices)")


def _fparam_run_grid(
    fn: Callable[..., Any], cases: list[tuple[int, dict[str, Any], np.ndarray, np.ndarray]]
) -> list[Any]:
    def all_cases(xs: list[jax.Array], gs: list[jax.Array]) -> list[Any]:
        results = []
        for (n, kwargs, _, _), x, g in zip(cases, xs, gs):

            def value(x: jax.Array, n: int = n, kwargs: dict[str, Any] = kwargs) -> Any:
                result = fn(x, n, **kwargs)
                return result if isinstance(result, tuple) else (result, None)

            out, vjp, idx = jax.vjp(value, x, has_aux=True)
            results.append((out, idx, vjp(g)[0]))
        return results

    compiled = jax.jit(all_cases, compiler_options=_FAST_COMPILE)
    return compiled([c[2] for c in cases], [c[3] for c in cases])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Parity grids.
# --------------------------------------------------------------------------------------------


def test_max_pool_grid_values_indices_and_tie_gradients() -> None:
    grid = _grid(0, 30, lambda rng, n: _draw_window(rng, n, dilated=True), "max_pool{n}d")
    _parity(grid, "max_pool{n}d", indices=True, exact=True)


def test_avg_pool_grid() -> None:
    def draw(rng: np.random.Generator, n: int) -> dict[str, Any]:
        kwargs = _draw_window(rng, n, dilated=False)
        kwargs["count_include_pad"] = bool(rng.random() < 0.5)
        if n > 1 and rng.random() < 0.3:
            kwargs["divisor_override"] = int(rng.integers(1, 5))
        return kwargs

    _parity(_grid(1, 30, draw, "avg_pool{n}d"), "avg_pool{n}d", indices=False, exact=False)


def _draw_adaptive(rng: np.random.Generator, n: int) -> dict[str, Any]:
    sizes = [int(s) for s in rng.integers(1, 6, n)]
    output: Any = tuple(None if rng.random() < 0.15 else s for s in sizes)
    if n == 1 or rng.random() < 0.2:
        output = sizes[0] if rng.random() < 0.5 else (sizes[0],) * n
    return {"output_size": output}


def test_adaptive_max_pool_grid() -> None:
    grid = _grid(2, 30, _draw_adaptive, "adaptive_max_pool{n}d")
    _parity(grid, "adaptive_max_pool{n}d", indices=True, exact=True)


def test_adaptive_avg_pool_grid() -> None:
    grid = _grid(3, 30, _draw_adaptive, "adaptive_avg_pool{n}d")
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
    for values, kwargs in cases:
        g = np.arange(1.0, 1 + F.max_pool2d(values, **kwargs).size, dtype=np.float32)
        g = g.reshape(F.max_pool2d(values, **kwargs).shape)
        e_out, e_idx, e_grad = _torch_run(TF.max_pool2d, values, g, return_indices=True, **kwargs)
        out, idx = F.max_pool2d(values, return_indices=True, **kwargs)
        grad = jax.vjp(partial(F.max_pool2d, **kwargs), jnp.asarray(values))[1](g)[0]
        _exact(out, e_out, str(kwargs))
        _exact(idx, e_idx, str(kwargs))
        _exact(grad, e_grad, str(kwargs))
    e_out, e_idx, e_grad = _torch_run(
        TF.adaptive_max_pool2d,
        x,
        np.ones((1, 1, 3, 3), np.float32),
        output_size=3,
        return_indices=True,
    )
    out, idx = F.adaptive_max_pool2d(x, 3, return_indices=True)
    grad = jax.grad(lambda v: F.adaptive_max_pool2d(v, 3).sum())(jnp.asarray(x))
    _exact(out, e_out)
    _exact(idx, e_idx)
    _exact(grad, e_grad)


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
]


@pytest.mark.parametrize(("cls", "args", "kwargs", "shape"), MODULE_CASES)
def test_module_matches_torch_and_twins(
    cls: str, args: tuple[Any, ...], kwargs: dict[str, Any], shape: tuple[int, ...]
) -> None:
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    m = getattr(nn, cls)(*args, **kwargs)
    twin = fparam.from_torch(tm)
    assert type(twin) is type(m)
    assert repr(m) == repr(tm) == repr(twin)
    for name in ("kernel_size", "stride", "padding", "dilation", "output_size", "ceil_mode"):
        if hasattr(tm, name):
            assert getattr(m, name) == getattr(tm, name), name
    assert list(m.state_dict()) == list(tm.state_dict()) == []
    x = np.random.default_rng(0).integers(0, 4, shape).astype(np.float32)
    expected = tm(torch.tensor(x))
    for layer in (m, twin):
        got = layer(x)
        if isinstance(expected, tuple):
            _close(got[0], expected[0].numpy())
            _exact(got[1], expected[1].numpy())
        else:
            _close(got, expected.numpy())


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
    for layer in layers:
        # vmap over unbatched (C, H, W) inputs equals the batched call.
        _close(jax.vmap(layer)(x), layer(x))
    # Second order: the custom derivative of max pooling is itself differentiable. The loss is
    # quadratic in the selected elements, so its Hessian applied to x is its gradient at x.
    grad_fn = jax.grad(lambda v: jnp.sum(F.max_pool2d(v, 3, 2, 1) ** 2))
    hvp = jax.jvp(grad_fn, (x,), (x,))[1]
    _close(hvp, grad_fn(x))
    assert float(jnp.abs(hvp).sum()) > 0
