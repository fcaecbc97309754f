"""``nn.Conv{1,2,3}d`` / ``nn.ConvTranspose{1,2,3}d`` against torch's modules.

Each parity case builds the torch layer, copies its weights into the fparam layer through
``load_state_dict``, and compares the forward values and the gradients with respect to the
input, the weight and the bias (``jax.vjp`` against ``torch.autograd`` with the same random
cotangent). The rest checks what a torch user sees: constructor signatures and validation,
attributes, parameter names and shapes, ``repr``, default initialisation, errors, and the
conv tests of torch's own suite (``test/nn/test_convolution.py``, ``common_nn``).
"""

from __future__ import annotations

import itertools
import math
import random
import re
import zlib
from collections.abc import Callable, Sequence
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
pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
    pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op:UserWarning"),
]

# Float32 tolerance, from measurement against torch on CPU (every value and gradient compared
# with torch in this file: random grid, torch's module tests, oddities; run one layer per
# program and all layers in one program, which compiles differently). Torch and XLA sum in
# different orders, so the error grows with what is summed. Values: max abs error 3.6e-7 at
# magnitudes up to 2.7. Gradients: 9.5e-7 for a bias gradient of magnitude 0.8 (a sum of 72
# N(0,1) terms, with cancellation), and 7.5e-6 for weight gradients of 3-d layers at magnitudes
# up to 36 (2e-7 of the array's largest entry, 1-2 float32 ulps). Each comparison allows
# ATOL + SCALED * max|expected|, about 3x both.
ATOL = 3e-6
SCALED = 1e-6


def _assert_close(actual: Any, expected: Any, label: str = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    tolerance = ATOL + SCALED * float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance, err_msg=label)


# Compilation dominates this file's run time, so each test compiles its layers together in one
# program. LLVM's optimisation level 0 shortens compilation; the errors measured above are with
# it (the convolutions are library calls either way).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}

CLASSES = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def _dims(cls: str) -> int:
    return int(cls[-2])


def _abstract(cls: str, *args: Any, **kwargs: Any) -> Any:
    """The fparam layer, built under ``jax.eval_shape``: its parameters are shapes only.

    Tests that overwrite or ignore the initial values build layers this way: it draws nothing,
    so it costs no RNG compilation (one per new size bucket); the real draw is tested in the
    initialisation tests.
    """
    return jax.eval_shape(lambda: getattr(nn, cls)(*args, **kwargs))


def _shape_of(layer: Any, shape: Sequence[int], dtype: Any = jnp.float32, **kwargs: Any) -> Any:
    """``jax.eval_shape`` of ``layer(x, **kwargs)``: the layer goes in as an argument, so an
    abstract layer works too."""
    x = jax.ShapeDtypeStruct(tuple(shape), dtype)
    return jax.eval_shape(lambda layer, x: layer(x, **kwargs), layer, x)


def _loaded(cls: str, args: Sequence[Any], kwargs: dict[str, Any], state: dict[str, Any]) -> Any:
    """An abstract fparam layer with the values of ``state`` (a NumPy state_dict)."""
    layer = _abstract(cls, *args, **kwargs)
    layer.load_state_dict(state, assign=True)
    return layer


def _run(layer: Any, x: jax.Array, cotangent: jax.Array, output_size: Any) -> tuple[Any, ...]:
    def forward(layer: Any, x: jax.Array) -> jax.Array:
        return layer(x) if output_size is None else layer(x, output_size=output_size)

    y, vjp = jax.vjp(forward, layer, x)
    grad_layer, grad_x = vjp(cotangent)
    return y, grad_x, grad_layer.weight, grad_layer.bias


@partial(jax.jit, static_argnames=("output_sizes",), compiler_options=_FAST_COMPILE)
def _values_and_grads(
    layers: list[Any], xs: list[Any], cotangents: list[Any], output_sizes: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """``layer(x)`` and the gradients w.r.t. ``x``, ``layer.weight`` and ``layer.bias``, for
    several layers in one program: one compilation per test instead of one per layer (3x
    faster here). NumPy arguments go straight in: converting them first compiles per shape."""
    return [_run(*args) for args in zip(layers, xs, cotangents, output_sizes)]


@partial(jax.jit, static_argnames=("output_sizes",), compiler_options=_FAST_COMPILE)
def _values(layers: list[Any], xs: list[Any], output_sizes: tuple[Any, ...]) -> list[jax.Array]:
    """``layer(x)`` for several layers in one program (forward only)."""
    return [
        layer(x) if size is None else layer(x, output_size=size)
        for layer, x, size in zip(layers, xs, output_sizes)
    ]


def _torch_value_and_grads(
    layer: Any, x: np.ndarray, cotangent_seed: int, output_size: Any, grads: bool
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    xt = torch.tensor(x, requires_grad=grads)
    kwargs = {} if output_size is None else {"output_size": output_size}
    with torch.set_grad_enabled(grads):
        yt = layer(xt, **kwargs)
    if not grads:
        return yt.numpy(), None, []
    cotangent = np.random.default_rng(cotangent_seed).standard_normal(tuple(yt.shape))
    cotangent = cotangent.astype(np.float32)
    leaves = [xt, layer.weight] + ([layer.bias] if layer.bias is not None else [])
    grads_t = torch.autograd.grad(yt, leaves, torch.tensor(cotangent))
    return yt.detach().numpy(), cotangent, [g.numpy() for g in grads_t]


Case = tuple[str, str, tuple, dict, tuple, Any]  # label, class, args, kwargs, input, output_size


def _check_parity(cases: Sequence[Case], *, grads: bool = True) -> None:
    """torch vs fparam for each case: same weights (through load_state_dict), same input, same
    cotangent; values, and gradients w.r.t. input, weight and bias, must agree."""
    layers, xs, cotangents, expected = [], [], [], []
    for label, cls, args, kwargs, shape, output_size in cases:
        seed = zlib.crc32(label.encode())
        layer_t = getattr(torch.nn, cls)(*args, **kwargs)
        state = {k: v.detach().numpy() for k, v in layer_t.state_dict().items()}
        layers.append(_loaded(cls, args, kwargs, state))
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        yt, cotangent, grads_t = _torch_value_and_grads(layer_t, x, seed + 1, output_size, grads)
        xs.append(x)
        cotangents.append(cotangent)
        expected.append((yt, grads_t, layer_t.bias is None))
    sizes = tuple(None if c[5] is None else tuple(c[5]) for c in cases)
    if grads:
        results = _values_and_grads(layers, xs, cotangents, sizes)
    else:
        results = [(y, None, None, None) for y in _values(layers, xs, sizes)]
    for case, (yt, grads_t, no_bias), (yj, gx, gw, gb) in zip(cases, expected, results):
        label = _describe(case)
        assert yj.shape == yt.shape, label
        assert yj.dtype == jnp.float32, label
        _assert_close(yj, yt, label)
        if grads:
            assert (gb is None) == no_bias, label
            grads_j = [gx, gw] + ([] if no_bias else [gb])
            for gj, gt in zip(grads_j, grads_t, strict=True):
                _assert_close(gj, gt, label)


def _describe(case: Case) -> str:
    label, cls, args, kwargs, shape, output_size = case
    text = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    out = "" if output_size is None else f", output_size={output_size}"
    return f"{label}: {cls}({text}) on input {shape}{out}"


# --------------------------------------------------------------------------------------------
# Randomised grid: every class, groups (depthwise too), strides, dilations, every padding kind
# and mode, output_padding, output_size=, unbatched inputs.
# --------------------------------------------------------------------------------------------


def _maybe_int(r: random.Random, values: tuple[int, ...]) -> int | tuple[int, ...]:
    if len(set(values)) == 1 and r.random() < 0.5:
        return values[0]
    return values


def _grid(cls: str, count: int, seed: int) -> list[Case]:
    n, transposed = _dims(cls), cls.startswith("ConvTranspose")
    r = random.Random(seed)
    cases: list[Case] = []
    while len(cases) < count:
        i = len(cases)
        if r.random() < 0.25:  # depthwise, channel multiplier 1 or 2
            groups = r.choice([2, 3])
            cin, cout = groups, groups * r.choice([1, 2])
        else:
            groups = r.choice([1, 1, 2, 3])
            cin, cout = groups * r.choice([1, 2]), groups * r.choice([1, 2, 3])
        kmax = 3 if n < 3 else 2
        k = tuple(r.randint(1, kmax) for _ in range(n))
        stride = tuple(r.randint(1, 3) for _ in range(n))
        dilation = tuple(r.randint(1, 2) for _ in range(n))
        kwargs: dict[str, Any] = {"groups": groups, "bias": r.random() < 0.7}
        output_size: Any = None
        smax = 4 if n < 3 else 2
        if transposed:
            pads = tuple(r.randint(0, 2) for _ in range(n))
            outp = tuple(r.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
            sizes = tuple(r.randint(1, smax) for _ in range(n))
            low = F.conv.conv_transpose_output_size(sizes, k, stride, pads, 0, dilation)
            if min(low) < 1:
                continue
            kwargs.update(
                stride=_maybe_int(r, stride),
                padding=_maybe_int(r, pads),
                output_padding=_maybe_int(r, outp),
                dilation=_maybe_int(r, dilation),
            )
            if i % 3 == 1:  # output_size= (spatial only, or the full shape), within range
                output_size = [lo + r.randint(0, s - 1) for lo, s in zip(low, stride)]
        else:
            kind = ("same", "tuple", "int", "valid")[i % 4]
            modes = ("zeros", "reflect", "replicate", "circular")
            kwargs["padding_mode"] = modes[(i + seed) % 4]  # a different pairing per class
            if kind == "same":
                stride = (1,) * n
                pads = tuple(d * (kk - 1) - d * (kk - 1) // 2 for kk, d in zip(k, dilation))
                padding: Any = "same"
            elif kind == "valid":
                pads, padding = (0,) * n, "valid"
            else:
                pads = tuple(r.randint(0, 2) for _ in range(n))
                if kind == "int":
                    pads = (pads[0],) * n
                padding = pads[0] if kind == "int" else pads
            kwargs.update(stride=_maybe_int(r, stride), padding=padding)
            kwargs["dilation"] = _maybe_int(r, dilation)
            # large enough for the kernel, and for reflect padding (pad < size)
            sizes = tuple(
                max(d * (kk - 1) + 1 - 2 * p, p + 1, 1) + r.randint(0, smax - 1)
                for kk, d, p in zip(k, dilation, pads)
            )
        batched = r.random() < 0.7
        shape = ((r.choice([1, 2]), cin) if batched else (cin,)) + sizes
        if output_size is not None and r.random() < 0.5:
            output_size = [*shape[:-n], *output_size]  # leading entries are dropped unchecked
            output_size[-n - 1] = cout
        args = (cin, cout, _maybe_int(r, k))
        cases.append((f"grid-{cls}-{i}", cls, args, kwargs, shape, output_size))
    return cases


GRID = {cls: _grid(cls, 6, seed=40 + i) for i, cls in enumerate(CLASSES)}


@pytest.mark.parametrize("cls", CLASSES)
def test_matches_torch(cls: str) -> None:
    _check_parity(GRID[cls])


def test_grid_covers_every_option() -> None:
    grid = [case[1:] for cases in GRID.values() for case in cases]
    convs = [c for c in grid if not c[0].startswith("ConvT")]
    assert {c[2]["padding_mode"] for c in convs} == {"zeros", "reflect", "replicate", "circular"}
    assert {"same", "valid"} <= {c[2]["padding"] for c in convs if isinstance(c[2]["padding"], str)}
    assert any(c[2]["groups"] > 1 and c[1][0] == c[2]["groups"] for c in grid)  # depthwise
    assert any(len(c[3]) == _dims(c[0]) + 1 for c in grid)  # unbatched
    assert any(c[4] is not None and len(c[4]) > _dims(c[0]) for c in grid)  # full output_size
    assert any(c[4] is not None and len(c[4]) == _dims(c[0]) for c in grid)
    transposed = [c for c in grid if c[0].startswith("ConvT")]
    assert any(c[2]["output_padding"] not in (0, (0,) * _dims(c[0])) for c in transposed)
    assert {c[2]["bias"] for c in grid} == {True, False}


# --------------------------------------------------------------------------------------------
# torch's own module tests: the Conv entries of common_nn.get_new_module_tests() + module_tests
# (torch 2.13; Conv2d_groups_thnn, a duplicate of Conv2d_groups, left out).
# --------------------------------------------------------------------------------------------

COMMON_NN = [
    ("Conv1d", "Conv1d", (4, 5, 3), {}, (2, 4, 10)),
    ("Conv1d_stride", "Conv1d", (4, 5, 3), {"stride": 2}, (2, 4, 10)),
    ("Conv1d_pad1", "Conv1d", (4, 5, 3), {"padding": 1}, (2, 4, 10)),
    ("Conv1d_pad2", "Conv1d", (4, 5, 5), {"padding": 2}, (2, 4, 10)),
    ("Conv1d_pad1size1", "Conv1d", (4, 4, 3), {"padding": 1}, (1, 4, 1)),
    ("Conv1d_pad2size1", "Conv1d", (4, 4, 5), {"padding": 2}, (1, 4, 1)),
    ("Conv1d_zero_batch", "Conv1d", (4, 5, 3), {}, (0, 4, 10)),
    ("Conv1d_dilated", "Conv1d", (4, 5, 3), {"dilation": 2}, (2, 4, 10)),
    ("Conv1d_groups", "Conv1d", (4, 6, 3), {"groups": 2}, (2, 4, 6)),
    ("Conv1d_pad_valid", "Conv1d", (4, 5, 3), {"padding": "valid"}, (2, 4, 10)),
    ("Conv1d_pad_same", "Conv1d", (4, 5, 3), {"padding": "same"}, (2, 4, 10)),
    ("Conv1d_pad_same2", "Conv1d", (4, 5, 4), {"padding": "same"}, (2, 4, 10)),
    (
        "Conv1d_pad_same_dilated",
        "Conv1d",
        (4, 5, 4),
        {"padding": "same", "dilation": 2},
        (2, 4, 10),
    ),
    ("ConvTranspose1d", "ConvTranspose1d", (3, 4, 3, 3, 1, 1), {}, (1, 3, 7)),
    ("ConvTranspose1d_no_bias", "ConvTranspose1d", (3, 4, 3, 2, 1, 1, 1, False), {}, (1, 3, 6)),
    ("ConvTranspose1d_dilated", "ConvTranspose1d", (3, 4, 3, 2, 1, 1, 1, True, 2), {}, (1, 3, 6)),
    (
        "ConvTranspose1d_groups",
        "ConvTranspose1d",
        (4, 6, 3),
        {"stride": 3, "padding": 1, "output_padding": 1, "groups": 2},
        (2, 4, 7),
    ),
    ("Conv2d", "Conv2d", (3, 4, (3, 2)), {}, (2, 3, 7, 5)),
    ("Conv2d_strided", "Conv2d", (3, 4, (3, 3), (2, 2)), {}, (2, 3, 6, 6)),
    ("Conv2d_padding", "Conv2d", (3, 4, (3, 3), (2, 2), (1, 1)), {}, (2, 3, 6, 6)),
    ("Conv2d_dilated", "Conv2d", (3, 2, (3, 3), (2, 2), (1, 1), (2, 2)), {}, (2, 3, 8, 8)),
    ("Conv2d_no_bias", "Conv2d", (3, 4, (3, 2), 1, 0, 1, 1, False), {}, (2, 3, 6, 5)),
    ("Conv2d_zero_batch", "Conv2d", (3, 4, (3, 2)), {}, (0, 3, 7, 5)),
    ("Conv2d_groups", "Conv2d", (4, 6, (3, 2)), {"groups": 2}, (2, 4, 6, 5)),
    ("Conv2d_pad_valid", "Conv2d", (2, 4, (3, 4)), {"padding": "valid"}, (2, 2, 6, 5)),
    ("Conv2d_pad_same", "Conv2d", (2, 4, (3, 4)), {"padding": "same"}, (2, 2, 6, 5)),
    (
        "Conv2d_pad_same_dilated",
        "Conv2d",
        (2, 4, (3, 4)),
        {"padding": "same", "dilation": 2},
        (2, 2, 6, 5),
    ),
    ("ConvTranspose2d", "ConvTranspose2d", (3, 4, 3, (3, 2), 1, (1, 1)), {}, (1, 3, 7, 6)),
    (
        "ConvTranspose2d_dilated",
        "ConvTranspose2d",
        (3, 4, 3, (2, 3), 1, (1, 1), 1, False, (2, 2)),
        {},
        (1, 3, 6, 7),
    ),
    (
        "ConvTranspose2d_no_bias",
        "ConvTranspose2d",
        (3, 4, 3, (2, 3), 1, (1, 1), 1, False),
        {},
        (1, 3, 6, 7),
    ),
    ("ConvTranspose2d_groups", "ConvTranspose2d", (2, 4, (2, 3)), {"groups": 2}, (1, 2, 4, 5)),
    ("Conv2d_depthwise", "Conv2d", (4, 4, (3, 3)), {"groups": 4}, (2, 4, 6, 6)),
    ("Conv2d_depthwise_with_multiplier", "Conv2d", (4, 8, (3, 3)), {"groups": 4}, (2, 4, 6, 6)),
    (
        "Conv2d_depthwise_strided",
        "Conv2d",
        (4, 4, (3, 3)),
        {"stride": (2, 2), "groups": 4},
        (2, 4, 6, 6),
    ),
    (
        "Conv2d_depthwise_padded",
        "Conv2d",
        (4, 4, (3, 3)),
        {"padding": (1, 1), "groups": 4},
        (2, 4, 6, 6),
    ),
    (
        "Conv2d_depthwise_dilated",
        "Conv2d",
        (4, 4, (2, 2)),
        {"dilation": (2, 2), "groups": 4},
        (2, 4, 5, 5),
    ),
    ("Conv3d", "Conv3d", (2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4)),
    ("Conv3d_no_bias", "Conv3d", (2, 3, (2, 3, 4), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5)),
    ("Conv3d_1x1x1_no_bias", "Conv3d", (2, 3, (1, 1, 1), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5)),
    ("Conv3d_stride", "Conv3d", (3, 4, 2, 2), {}, (2, 3, 5, 5, 5)),
    ("Conv3d_stride_padding", "Conv3d", (3, 4, 2, 2, 1), {}, (2, 3, 5, 5, 5)),
    ("Conv3d_zero_batch", "Conv3d", (3, 4, (2, 3, 4)), {}, (0, 3, 3, 4, 5)),
    ("Conv3d_groups", "Conv3d", (2, 4, 3), {"groups": 2}, (1, 2, 4, 5, 4)),
    ("Conv3d_dilated", "Conv3d", (3, 4, 2), {"dilation": 2}, (2, 3, 5, 5, 5)),
    ("Conv3d_dilated_strided", "Conv3d", (3, 4, 2), {"dilation": 2, "stride": 2}, (2, 3, 5, 5, 5)),
    ("Conv3d_pad_valid", "Conv3d", (3, 4, (2, 3, 4)), {"padding": "valid"}, (2, 3, 6, 5, 4)),
    ("Conv3d_pad_same", "Conv3d", (3, 4, (2, 3, 4)), {"padding": "same"}, (2, 3, 6, 5, 4)),
    (
        "Conv3d_pad_same_dilated",
        "Conv3d",
        (3, 4, (2, 3, 4)),
        {"padding": "same", "dilation": 2},
        (2, 3, 6, 5, 4),
    ),
    ("ConvTranspose3d", "ConvTranspose3d", (2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4)),
    (
        "ConvTranspose3d_dilated",
        "ConvTranspose3d",
        (2, 3, (2, 3, 2), 1, 0, 0, 1, True, (2, 2, 2)),
        {},
        (1, 2, 4, 5, 4),
    ),
] + [
    (f"Conv{n}d_{mode}_stride2_pad2", f"Conv{n}d", args, {}, shape)
    for mode in ("reflect", "circular", "replicate", "zeros")
    for n, args, shape in [
        (1, (2, 3, 3, 2, (1,), 1, 1, True, mode), (2, 2, 4)),
        (2, (2, 3, 3, 2, (1, 2), 1, 1, True, mode), (2, 2, 4, 4)),
        (3, (2, 3, 3, 2, (1, 2, 3), 1, 1, True, mode), (2, 2, 4, 4, 4)),
    ]
    if not (n == 3 and mode == "reflect")  # torch's table has no 3-d reflect entry
]


@pytest.mark.parametrize("cls", CLASSES)
def test_common_nn_module_tests(cls: str) -> None:
    """Output shapes and values of torch's own module tests, class by class. (Forward only: the
    random grid and the oddities check gradients; this table adds no new gradient path.)"""
    cases = [(*case, None) for case in COMMON_NN if case[1] == cls]
    assert len(cases) >= 2
    _check_parity(cases, grads=False)


def test_common_nn_table_is_complete() -> None:
    assert len(COMMON_NN) == 61  # torch's 62 entries less the duplicate Conv2d_groups_thnn


# Configurations torch accepts although they look wrong: fparam must accept them too.
ODDITIES: list[tuple[str, tuple, dict, tuple]] = [
    ("Conv2d", (1, 2, 3), {"stride": (2,)}, (1, 1, 8, 7)),  # 1-tuples broadcast
    ("Conv2d", (1, 2, 3), {"padding": (1,), "dilation": [2]}, (1, 1, 7, 8)),
    ("Conv2d", (1, 1, 3), {"padding": -1, "padding_mode": "reflect"}, (1, 1, 8, 8)),  # crops
    ("Conv1d", (1, 1, 3), {"padding": -1, "padding_mode": "replicate"}, (1, 1, 8)),
    ("Conv1d", (1, 1, 3), {"padding": 3, "padding_mode": "replicate"}, (1, 1, 2)),
    ("Conv2d", (2, 2, 3), {"padding": 2, "padding_mode": "circular"}, (2, 2, 2)),  # pad = size
    ("ConvTranspose2d", (1, 1, 3), {"stride": 2, "output_padding": (1,)}, (1, 1, 4, 3)),
    ("ConvTranspose1d", (1, 1, 3), {"output_padding": 1, "dilation": 2}, (1, 1, 4)),  # op < d
]


def test_torch_oddities_match() -> None:
    _check_parity([(f"oddity-{i}", *case, None) for i, case in enumerate(ODDITIES)])


# --------------------------------------------------------------------------------------------
# Signatures, attributes, parameters, state_dict, repr.
# --------------------------------------------------------------------------------------------

ATTRIBUTES = [
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "transposed",
    "output_padding",
    "groups",
    "padding_mode",
    "_reversed_padding_repeated_twice",
]

CONSTRUCTIONS = [
    ("Conv1d", (4, 6, 3), {}),
    ("Conv2d", (4, 6, 3), {"groups": 2}),
    ("Conv3d", (4, 6, 3), {"groups": 2, "bias": False}),
    ("Conv2d", (2, 4, 3, 2, 1, 2, 2, False), {}),  # stride, padding, dilation, groups, bias
    ("Conv2d", (2, 4, (3, 4)), {"padding": "same", "dilation": (1, 3)}),
    ("Conv2d", (2, 4, [3, 4]), {"padding": "valid", "padding_mode": "reflect"}),
    ("Conv3d", (2, 4, 3), {"padding": (1, 2, 0), "padding_mode": "circular"}),
    ("Conv1d", (2, 4, 3), {"stride": [2], "padding": 1, "padding_mode": "replicate"}),
    ("Conv2d", (2, 4, 3), {"stride": (2,), "padding": (1,)}),
    ("Conv2d", (4, 8, 3), {"groups": 4}),  # depthwise
    ("ConvTranspose1d", (4, 6, 3), {"groups": 2}),
    ("ConvTranspose2d", (2, 4, 3, 2, 1, 1, 2, False, 2), {}),  # ..., output_padding, groups,
    ("ConvTranspose3d", (2, 4, 3, 2, 1, 1, 2, False, 2), {}),  # bias, dilation
    ("ConvTranspose2d", (4, 8, 3), {"groups": 4, "output_padding": (0, 1), "stride": 2}),
    ("ConvTranspose3d", (2, 3, (2, 3, 2)), {"dilation": 2}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), CONSTRUCTIONS)
def test_attributes_parameters_and_repr_match_torch(cls: str, args: tuple, kwargs: dict) -> None:
    layer_t = getattr(torch.nn, cls)(*args, **kwargs)
    layer_f = _abstract(cls, *args, **kwargs)
    for name in ATTRIBUTES:
        expected, got = getattr(layer_t, name), getattr(layer_f, name)
        assert got == expected, name
        assert type(got) is type(expected), name
    assert repr(layer_f) == repr(layer_t)
    named_t = [(k, tuple(v.shape)) for k, v in layer_t.named_parameters()]
    assert [(k, v.shape) for k, v in layer_f.named_parameters()] == named_t
    assert list(layer_f.state_dict()) == list(layer_t.state_dict())
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(layer_f)[0]]
    assert paths == [(jax.tree_util.GetAttrKey(k),) for k in layer_t.state_dict()]
    assert (layer_f.bias is None) == (layer_t.bias is None)
    if layer_t.bias is None:  # a bias key is unexpected, as in torch
        state = {"weight": layer_t.weight.detach().numpy(), "bias": np.zeros(1, np.float32)}
        with pytest.raises(RuntimeError, match="Unexpected key"):
            layer_f.load_state_dict(state)


def test_positional_orders_differ_like_torch() -> None:
    conv = _abstract("Conv2d", 2, 4, 3, 2, 1, 2, 2, False)
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((2, 2), (1, 1), (2, 2), 2)
    assert conv.bias is None
    t = _abstract("ConvTranspose2d", 2, 4, 3, 2, 1, 1, 2, False, 2)
    assert (t.stride, t.padding, t.output_padding, t.groups) == ((2, 2), (1, 1), (1, 1), 2)
    assert t.bias is None and t.dilation == (2, 2)
    assert repr(t) == (
        "ConvTranspose2d(2, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "dilation=(2, 2), output_padding=(1, 1), groups=2, bias=False)"
    )
    assert repr(_abstract("Conv2d", 4, 6, 3)) == "Conv2d(4, 6, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(_abstract("Conv1d", 2, 4, 3, padding="valid")) == (
        "Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding=valid)"
    )
    # sizes are stored as Python ints (torch would keep NumPy integers)
    assert type(_abstract("Conv1d", 2, 4, np.int64(3)).kernel_size[0]) is int


@pytest.mark.parametrize(
    ("cls", "weight"),
    [
        ("Conv1d", (6, 2, 3)),
        ("Conv2d", (6, 2, 3, 3)),
        ("Conv3d", (6, 2, 3, 3, 3)),
        ("ConvTranspose1d", (4, 3, 3)),
        ("ConvTranspose2d", (4, 3, 3, 3)),
        ("ConvTranspose3d", (4, 3, 3, 3, 3)),
    ],
)
def test_parameter_shapes(cls: str, weight: tuple[int, ...]) -> None:
    layer = _abstract(cls, 4, 6, 3, groups=2)
    assert layer.weight.shape == weight and layer.bias.shape == (6,)
    assert layer.weight.dtype == jnp.float32 and layer.bias.dtype == jnp.float32
    assert _abstract("Conv2d", 4, 8, 3, groups=4).weight.shape == (8, 1, 3, 3)
    assert _abstract("ConvTranspose2d", 4, 8, 3, groups=4).weight.shape == (4, 2, 3, 3)


def test_exports_dtype_and_device() -> None:
    for cls in CLASSES:
        assert cls in nn.__all__ and getattr(fparam.nn, cls).__module__ == "fparam.nn.conv"
    layer = _abstract("Conv2d", 2, 3, 3, dtype=jnp.bfloat16)
    assert layer.weight.dtype == jnp.bfloat16 and layer.bias.dtype == jnp.bfloat16
    y = _shape_of(layer, (1, 2, 5, 5), jnp.bfloat16)
    assert y.dtype == jnp.bfloat16 and y.shape == (1, 3, 3, 3)


# --------------------------------------------------------------------------------------------
# Default initialisation (bounds and shapes: JAX's random numbers are not torch's).
# --------------------------------------------------------------------------------------------

INIT_CASES = [
    ("Conv1d", (4, 6, 5), {}, 20),
    ("Conv2d", (4, 6, 3), {}, 36),
    ("Conv2d", (4, 6, 3), {"groups": 2}, 18),
    ("Conv3d", (2, 4, (2, 3, 4)), {}, 48),
    ("ConvTranspose1d", (4, 6, 5), {}, 30),
    ("ConvTranspose2d", (4, 6, 3), {}, 54),  # dim 1 of the weight is out/groups
    ("ConvTranspose2d", (4, 6, 3), {"groups": 2}, 27),
    ("ConvTranspose3d", (4, 2, 3), {}, 54),
]


def test_default_init_bounds() -> None:
    layers = [
        getattr(nn, c)(*a, **kw, key=jax.random.key(i))
        for i, (c, a, kw, _) in enumerate(INIT_CASES)
    ]
    for (cls, args, kwargs, fan_in), layer in zip(INIT_CASES, layers):
        torch_layer = getattr(torch.nn, cls)(*args, **kwargs)
        assert torch.nn.init._calculate_fan_in_and_fan_out(torch_layer.weight)[0] == fan_in
        assert layer.weight.shape == tuple(torch_layer.weight.shape)
        bound = 1 / math.sqrt(fan_in)
        for value in (layer.weight, layer.bias):
            v = np.asarray(value)
            assert v.dtype == np.float32
            assert np.abs(v).max() <= bound, cls
            assert v.std() > 0  # drawn, not constant
        # spread over the whole interval: the bound is the right one, not a smaller one
        assert np.abs(np.asarray(layer.weight)).max() > 0.7 * bound


def test_init_eager_keys_and_manual_seed() -> None:
    key = jax.random.key(3)
    a, b = nn.Conv2d(3, 4, 3, key=key), nn.Conv2d(3, 4, 3, key=key)
    bound = 1 / math.sqrt(27)
    assert np.abs(np.asarray(a.weight)).max() <= bound
    assert np.abs(np.asarray(a.bias)).max() <= bound
    np.testing.assert_array_equal(np.asarray(a.weight), np.asarray(b.weight))
    np.testing.assert_array_equal(np.asarray(a.bias), np.asarray(b.bias))
    c = nn.Conv2d(3, 4, 3, key=jax.random.key(4))
    assert not np.array_equal(np.asarray(a.weight), np.asarray(c.weight))

    def build() -> list[Any]:
        return [nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 3, 3)]

    fparam.manual_seed(11)
    first = build()
    fparam.manual_seed(11)
    second = build()
    for x, y in zip(first, second):
        for name in ("weight", "bias"):
            np.testing.assert_array_equal(np.asarray(getattr(x, name)), getattr(y, name))
    third = build()  # the stream moves on
    assert not np.array_equal(np.asarray(third[0].weight), np.asarray(first[0].weight))
    # the transposed weight has the same shape, and torch's fan_in = out/groups * k*k = 27
    assert first[1].weight.shape == (4, 3, 3, 3)
    assert np.abs(np.asarray(first[1].bias)).max() <= bound


def test_reset_parameters_keeps_identity_and_placement() -> None:
    layer = nn.Conv2d(3, 4, 3, key=jax.random.key(0))
    uids = {name: p.uid for name, p in layer.named_parameters()}
    before = np.asarray(layer.weight)
    layer.reset_parameters(key=jax.random.key(1))
    assert {name: p.uid for name, p in layer.named_parameters()} == uids
    assert not np.array_equal(np.asarray(layer.weight), before)
    layer.reset_parameters(key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(layer.weight), before)
    no_bias = nn.ConvTranspose2d(4, 3, 3, bias=False)
    no_bias.reset_parameters()
    assert no_bias.bias is None and [n for n, _ in no_bias.named_parameters()] == ["weight"]
    device = jax.devices()[-1]
    placed = nn.Conv2d(3, 4, 3, device=device)
    assert placed.weight.devices() == {device} and placed.bias.devices() == {device}
    placed.reset_parameters()
    assert placed.weight.devices() == {device}


# --------------------------------------------------------------------------------------------
# Constructor validation (torch's order, types and messages) and errors torch defers to forward.
# --------------------------------------------------------------------------------------------


def _error(make: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as info:  # any type: the tests compare it with torch's
        make()
    return info.value


@pytest.mark.parametrize(
    ("cls", "args", "kwargs"),
    [
        ("Conv1d", (1, 1), {"kernel_size": 3, "dilation": 2, "stride": 2, "groups": 0}),
        ("Conv2d", (1, 1), {"kernel_size": 3, "dilation": 2, "stride": 2, "groups": -1}),
        ("Conv3d", (1, 1), {"kernel_size": 3, "dilation": 2, "stride": 2, "groups": -2}),
        ("Conv2d", (3, 4, 3), {"groups": 2}),
        ("Conv2d", (4, 3, 3), {"groups": 2}),
        ("ConvTranspose2d", (3, 4, 3), {"groups": 2}),
        ("Conv2d", (3, 3, 3), {"groups": 0, "padding": "foo"}),  # groups first
        ("Conv2d", (4, 4, 3), {"groups": 2, "padding": "full", "padding_mode": "bad"}),
        ("Conv1d", (3, 33, 10), {"padding": "foo"}),
        ("Conv1d", (3, 33, 10), {"padding": "same", "stride": 2}),
        ("Conv2d", (3, 3, 3), {"padding": "same", "stride": (1, 2), "padding_mode": "bad"}),
        ("Conv2d", (3, 3, 3), {"padding": "valid", "padding_mode": "xyz"}),
        ("Conv2d", (3, 3, 3), {"padding_mode": 3}),
        ("ConvTranspose2d", (3, 3, 3), {"padding_mode": "reflect", "groups": 0}),  # mode first
        ("ConvTranspose1d", (3, 3, 3), {"padding_mode": "circular"}),
    ],
)
def test_constructor_errors_match_torch(cls: str, args: tuple, kwargs: dict) -> None:
    expected = _error(lambda: getattr(torch.nn, cls)(*args, **kwargs))
    got = _error(lambda: getattr(nn, cls)(*args, **kwargs))
    assert type(got) is type(expected) is ValueError
    assert _sets_sorted(str(got)) == _sets_sorted(str(expected))


def _sets_sorted(message: str) -> str:
    """The message with each printed set's items sorted: set order varies between runs."""
    return re.sub(
        r"\{([^}]*)\}", lambda m: "{" + ", ".join(sorted(m[1].split(", "))) + "}", message
    )


def test_valid_padding_with_stride_is_fine() -> None:
    assert _abstract("Conv2d", 1, 1, 3, stride=2, padding="valid").padding == "valid"


DEFERRED = [
    # (layer, input shape): torch constructs these and fails in forward (or at construction)
    (("Conv2d", (1, 1, 3), {"stride": 0}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 3), {"stride": (1, -1)}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 3), {"padding": -1}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 3), {"dilation": 0}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 0), {}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, -1), {}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, (3, 3, 3)), {}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, (3,)), {}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 3), {"stride": ()}), (1, 1, 8, 8)),
    (("Conv1d", (1, 1, 3), {"dilation": (1, 1)}), (1, 1, 8)),
    (("Conv3d", (1, 1, 3), {"padding": (1, 1)}), (1, 1, 4, 4, 4)),
    (("Conv2d", (1, 1, 3), {"padding": (1,), "padding_mode": "reflect"}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 3), {"stride": 1.5}), (1, 1, 8, 8)),
    (("Conv2d", (1, 1, 2.5), {}), (1, 1, 8, 8)),
    (("Conv2d", (2, 2, 3), {"groups": 2.0}), (1, 2, 8, 8)),
    (("Conv2d", (1, 0, 3), {}), (1, 1, 8, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 0}), (1, 1, 8, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"padding": -1}), (1, 1, 8, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"output_padding": -1}), (1, 1, 8, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2, "output_padding": (1, 1, 1)}), (1, 1, 8, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"output_padding": 1}), (1, 1, 8, 8)),  # op >= max(s, d)
    (("ConvTranspose1d", (1, 1, 3), {"stride": 2, "output_padding": 2}), (1, 1, 8)),
    (("ConvTranspose2d", (1, 1, 0), {}), (1, 1, 8, 8)),
    (("ConvTranspose3d", (1, 1, 3), {"dilation": 0}), (1, 1, 4, 4, 4)),
    (("ConvTranspose2d", (1, 1, 3), {"padding": "same"}), (1, 1, 8, 8)),  # divergence: ctor
    (("ConvTranspose1d", (1, 1, 3), {"padding": "valid"}), (1, 1, 8)),
    (("ConvTranspose2d", (1, 1, 3), {"padding": 4}), (1, 1, 2, 2)),  # output too small
]


@pytest.mark.parametrize(("layer", "shape"), DEFERRED, ids=[repr(c[0]) for c in DEFERRED])
def test_deferred_errors_same_type_as_torch(layer: tuple, shape: tuple) -> None:
    """torch raises these in forward; fparam may raise them at construction (same type)."""
    cls, args, kwargs = layer

    def torch_side() -> None:
        getattr(torch.nn, cls)(*args, **kwargs)(torch.zeros(shape))

    def fparam_side() -> None:
        def build_and_call(x: jax.Array) -> jax.Array:
            return getattr(nn, cls)(*args, **kwargs)(x)

        jax.eval_shape(build_and_call, jax.ShapeDtypeStruct(shape, jnp.float32))

    expected, got = _error(torch_side), _error(fparam_side)
    assert type(got) is type(expected), (got, expected)
    # the message names the layer: its configuration at construction, or the layer in forward
    assert str(got).startswith(cls) or f"(in {cls}(" in str(got), str(got)


def test_construction_errors_name_the_configuration() -> None:
    with pytest.raises(RuntimeError) as info:
        nn.Conv2d(1, 1, 3, stride=0)
    assert str(info.value) == (
        "Conv2d(1, 1, kernel_size=(3, 3), stride=(0, 0)): non-positive stride is not supported"
    )
    with pytest.raises(RuntimeError, match=r"but got kernel_height: 0 kernel_width: 0$"):
        nn.Conv2d(1, 1, 0)
    with pytest.raises(RuntimeError, match=r"dilation should be greater than zero, but got \[0, 0"):
        nn.Conv2d(1, 1, 3, dilation=0)
    with pytest.raises(RuntimeError, match="negative padding is not supported"):
        nn.Conv1d(1, 1, 3, padding=-1)
    with pytest.raises(TypeError, match="ConvTranspose2d does not support string padding"):
        nn.ConvTranspose2d(1, 1, 3, padding="same")


# --------------------------------------------------------------------------------------------
# Forward errors: torch's messages, plus the layer and the input shape.
# --------------------------------------------------------------------------------------------

FORWARD_ERRORS = [
    (("Conv2d", (4, 6, 3), {}), (2, 3, 8, 8), None),
    (("Conv2d", (4, 6, 3), {}), (3, 8, 8), None),  # unbatched: the message shows [1, 3, 8, 8]
    (("Conv2d", (4, 6, 3), {"groups": 2}), (1, 6, 5, 5), None),
    (("ConvTranspose2d", (4, 6, 3), {}), (2, 3, 8, 8), None),
    (("Conv2d", (4, 6, 3), {}), (8, 8), None),
    (("Conv1d", (4, 6, 3), {}), (2, 4, 5, 5), None),
    (("ConvTranspose3d", (1, 1, 3), {}), (1, 4, 4), None),
    (("Conv2d", (1, 1, 3), {}), (1, 1, 2, 2), None),
    (("Conv1d", (1, 1, 5), {"dilation": 2, "padding": 1}), (1, 1, 4), None),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2, "padding": 4}), (1, 1, 1, 2), None),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2, "output_padding": 2}), (1, 1, 4, 4), None),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2, "padding": 1}), (1, 1, 4, 4), [9, 9]),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2, "padding": 1}), (1, 1, 4, 4), [8]),
    (("ConvTranspose2d", (1, 1, 3), {"stride": 2}), (1, 4, 4), [1, 1, 9, 9]),
    (("Conv1d", (1, 1, 3), {"padding": 5, "padding_mode": "reflect"}), (1, 1, 4), None),
    (("Conv1d", (1, 1, 3), {"padding": 5, "padding_mode": "circular"}), (1, 1, 4), None),
]


@pytest.mark.parametrize(("layer", "shape", "output_size"), FORWARD_ERRORS)
def test_forward_errors_match_torch(layer: tuple, shape: tuple, output_size: Any) -> None:
    cls, args, kwargs = layer
    layer_t = getattr(torch.nn, cls)(*args, **kwargs)
    layer_f = _abstract(cls, *args, **kwargs)
    kw = {} if output_size is None else {"output_size": output_size}
    expected = _error(lambda: layer_t(torch.zeros(shape), **kw))
    got = _error(lambda: _shape_of(layer_f, shape, **kw))
    assert type(got) is type(expected)
    # torch prints the input size as torch.Size([4, 4]); fparam as a tuple.
    torch_message = str(expected).replace("torch.Size([4, 4])", "(4, 4)")
    assert str(got).startswith(torch_message.splitlines()[0])
    assert f"(in {layer_f!r}, called on an input of shape {shape})" in str(got)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_conv_modules_raise_error_on_incorrect_input_size(dtype: Any) -> None:
    modules = [
        _abstract(cls, 3, 8, 3, dtype=dtype)
        for cls in (
            "Conv1d",
            "ConvTranspose1d",
            "Conv2d",
            "ConvTranspose2d",
            "Conv3d",
            "ConvTranspose3d",
        )
    ]
    invalid_input_dims = [(1, 4), (1, 4), (2, 5), (2, 5), (3, 6), (3, 6)]
    for invalid_dims, module in zip(invalid_input_dims, modules):
        for dims in invalid_dims:
            with pytest.raises(RuntimeError, match="input to conv"):
                _shape_of(module, (3,) * dims, dtype)


def test_conv2d_missing_argument() -> None:
    with pytest.raises(TypeError):
        _abstract("Conv2d", 3, 3, 3)(None)
    with pytest.raises(TypeError):
        _abstract("ConvTranspose2d", 3, 3, 3)(None)


def test_transposed_padding_mode_changed_after_construction() -> None:
    layer = _abstract("ConvTranspose2d", 1, 1, 3)
    layer.padding_mode = "reflect"
    with pytest.raises(ValueError, match="Only `zeros` padding mode is supported"):
        _shape_of(layer, (1, 1, 4, 4))


# --------------------------------------------------------------------------------------------
# test/nn/test_convolution.py
# --------------------------------------------------------------------------------------------


def _random_layer(rng: np.random.Generator, cls: str, *args: Any, **kwargs: Any) -> Any:
    layer = _abstract(cls, *args, **kwargs)
    state = {
        k: rng.standard_normal(v.shape).astype(np.float32) for k, v in layer.state_dict().items()
    }
    layer.load_state_dict(state, assign=True)
    return layer


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_module_same_padding(n: int) -> None:
    """Module vs functional for 'same' (asymmetric too), and 'same' with a padding_mode equals
    F.pad + a 'valid' conv (test_Conv{1,2,3}d_module_same_padding)."""
    cls, conv = f"Conv{n}d", getattr(F, f"conv{n}d")
    rng = np.random.default_rng(n)
    x = rng.random((1, 1, *(9, 8, 7)[:n])).astype(np.float32)
    kernel = (4, 3, 2)[:n]  # an even size: asymmetric padding
    dilation = 2 if n == 1 else (1, 2, 3)[:n]
    modes = ("reflect", "replicate", "circular")
    modules = [
        _random_layer(rng, cls, 1, 1, kernel, padding="same"),
        _random_layer(rng, cls, 1, 1, 3, padding="same", dilation=dilation),
        *(_random_layer(rng, cls, 1, 1, kernel, padding="same", padding_mode=m) for m in modes),
    ]

    def both(modules: list[Any], x: jax.Array) -> tuple[list[jax.Array], list[jax.Array]]:
        first, dilated, *with_modes = modules
        expected = [
            conv(x, first.weight, first.bias, padding="same"),
            conv(x, dilated.weight, dilated.bias, padding="same", dilation=dilation),
        ]
        for m in with_modes:
            padded = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            expected.append(conv(padded, m.weight, m.bias, padding="valid"))
        return [m(x) for m in modules], expected

    got, expected = jax.jit(both, compiler_options=_FAST_COMPILE)(modules, x)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == x.shape
        _assert_close(g, e)
    assert list(modules[2]._reversed_padding_repeated_twice) == list(
        F.conv.reversed_padding_repeated_twice("same", kernel)
    )
    with pytest.raises(ValueError, match="Invalid padding string"):
        getattr(nn, cls)(3, 33, 10, padding="foo")
    with pytest.raises(ValueError, match="padding='same'"):
        getattr(nn, cls)(3, 33, 10, padding="same", stride=2)


def test_conv_transpose2d_output_size() -> None:
    m = _abstract("ConvTranspose2d", 3, 4, 3, 3, 0, 2)
    for h, w in itertools.product(range(15, 22), repeat=2):
        if 18 <= h <= 20 and 18 <= w <= 20:
            output = _shape_of(m, (2, 3, 6, 6), output_size=(h, w))
            assert output.shape[2:] == (h, w)
        else:
            with pytest.raises(ValueError, match="requested an output size of"):
                _shape_of(m, (2, 3, 6, 6), output_size=(h, w))


def test_conv_transpose2d_output_size_downsample_upsample() -> None:
    r = random.Random(0)
    for _ in range(20):
        k, s, p, d = r.randint(1, 3), r.randint(1, 3), r.randint(0, 1), r.randint(1, 2)
        size = r.randint(d * (k - 1) + 1, 9)
        conv = _abstract("Conv2d", 1, 1, k, s, p, d)
        t_conv = _abstract("ConvTranspose2d", 1, 1, k, s, p, dilation=d)

        def round_trip(layers: Any, x: jax.Array) -> jax.Array:
            conv, t_conv = layers
            return t_conv(conv(x), output_size=x.shape)

        x = jax.ShapeDtypeStruct((1, 1, size, size + 1), jnp.float32)
        assert jax.eval_shape(round_trip, (conv, t_conv), x).shape == x.shape


def test_conv_transpose3d_correct_output_size() -> None:
    m = _abstract("ConvTranspose3d", 2, 2, 2)
    assert _shape_of(m, (1, 2, 1, 1, 1), output_size=(1, 2, 2, 2, 2)).shape == (1, 2, 2, 2, 2)


def test_conv_transpose_output_size_examples() -> None:
    m = _abstract("ConvTranspose2d", 1, 1, 3, stride=2, padding=1, output_padding=1)
    assert _shape_of(m, (1, 1, 4, 4)).shape == (1, 1, 8, 8)
    # output_size replaces the layer's own output_padding
    assert _shape_of(m, (1, 1, 4, 4), output_size=[7, 7]).shape == (1, 1, 7, 7)
    assert _shape_of(m, (1, 1, 4, 4), output_size=(9, 9, 8, 7)).shape == (1, 1, 8, 7)
    assert _shape_of(m, (1, 4, 4), output_size=(1, 8, 7)).shape == (1, 8, 7)


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "shape"),
    [
        ("Conv2d", (4, 4, 3), {"groups": 2, "bias": False}, (2, 4, 6, 6)),  # _groups_nobias
        ("Conv2d", (4, 8, 3), {"groups": 2, "bias": False}, (2, 4, 6, 6)),  # _nobias_v2
        ("Conv3d", (4, 4, 3), {"groups": 2, "bias": False}, (2, 4, 4, 4, 4)),
        ("Conv3d", (4, 4, 3), {"groups": 2}, (2, 4, 4, 4, 4)),  # _groups_wbias
        ("ConvTranspose2d", (4, 6, 3), {"groups": 2, "stride": 2}, (2, 4, 3, 3)),
    ],
)
def test_groups_equal_per_group_convs(cls: str, args: tuple, kwargs: dict, shape: tuple) -> None:
    """A grouped conv is the concatenation of per-group convs: values and gradients
    (test_Conv2d_groups_nobias, _nobias_v2, test_Conv3d_groups_nobias, _wbias)."""
    groups = kwargs["groups"]
    rng = np.random.default_rng(0)
    layer = _random_layer(rng, cls, *args, **kwargs)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(_shape_of(layer, shape).shape).astype(np.float32)
    cin, cout = args[0] // groups, args[1] // groups
    rows = cin if "Transpose" in cls else cout  # the weight's dim 0 holds these channels
    part_kwargs = {k: v for k, v in kwargs.items() if k != "groups"}
    parts, xs, gs = [], [], []
    for i in range(groups):
        state = {"weight": np.asarray(layer.weight)[i * rows : (i + 1) * rows]}
        if layer.bias is not None:
            state["bias"] = np.asarray(layer.bias)[i * cout : (i + 1) * cout]
        parts.append(_loaded(cls, (cin, cout, *args[2:]), part_kwargs, state))
        xs.append(x[:, i * cin : (i + 1) * cin])
        gs.append(g[:, i * cout : (i + 1) * cout])
    results = _values_and_grads([layer, *parts], [x, *xs], [g, *gs], (None,) * (groups + 1))
    (value, gx, gw, gb), per_group = results[0], results[1:]
    _assert_close(value, np.concatenate([r[0] for r in per_group], 1))
    _assert_close(gx, np.concatenate([r[1] for r in per_group], 1))
    _assert_close(gw, np.concatenate([r[2] for r in per_group], 0))
    if gb is not None:
        _assert_close(gb, np.concatenate([r[3] for r in per_group], 0))


# --------------------------------------------------------------------------------------------
# Pytree behaviour and from_torch.
# --------------------------------------------------------------------------------------------


def test_jit_grad_and_update_do_not_retrace() -> None:
    layer = _random_layer(
        np.random.default_rng(0), "Conv1d", 2, 3, 3, padding="same", padding_mode="circular"
    )
    traces = []

    def loss(layer: Any, x: jax.Array) -> jax.Array:
        traces.append(None)
        return jnp.sum(layer(x) ** 2)

    step = jax.jit(fparam.grad(loss), compiler_options=_FAST_COMPILE)
    x = np.ones((1, 2, 5), np.float32)
    grads = step(layer, x)
    assert isinstance(grads, nn.Conv1d)
    assert grads.weight.shape == layer.weight.shape and grads.bias.shape == (3,)
    updated = jax.tree.map(lambda p, g: p - 0.1 * g, layer, grads)
    step(updated, x)
    assert len(traces) == 1
    assert repr(updated) == repr(layer)


def test_from_torch_small_cnn() -> None:
    tnn = torch.nn
    model = tnn.Sequential(
        tnn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        tnn.ReLU(),
        tnn.ConvTranspose2d(4, 3, 3, stride=2, output_padding=1),
        tnn.ReLU(),
        tnn.Conv2d(3, 4, 3, stride=2, bias=False),
    )
    twin = fparam.from_torch(model)
    assert repr(twin) == repr(model)
    assert list(twin.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(twin.state_dict()[k]), v.numpy())
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    expected = model(torch.tensor(x)).detach().numpy()
    got = jax.jit(lambda m, x: m(x), compiler_options=_FAST_COMPILE)(twin, x)
    assert got.shape == expected.shape == (2, 4, 5, 5)
    _assert_close(got, expected)
