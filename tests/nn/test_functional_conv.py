"""Parity of ``fparam.nn.functional.conv`` with ``torch.nn.functional``: values, gradients, errors.

Every configuration runs the same inputs through torch (the oracle) and fparam and compares the
outputs and the gradients with respect to input, weight and bias (``jax.vjp`` against
``torch.autograd`` with the same random cotangent).
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
TF = torch.nn.functional

from fparam.nn.functional import conv as F  # noqa: E402

# Compilation dominates this file's run time: one program per configuration (value and all
# gradients together; eager op-by-op dispatch of the backward pass is slower still). LLVM's
# optimisation level 0 halves the compile time; it changes no result here (the measured errors
# below are the same with and without it), since the convolutions are library calls and the
# HLO graph is unchanged. test_jit_matches_eager checks the default compile path too.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}

# Float32 tolerance, from measurement: over every value and gradient compared in this file (the
# random grid, the golden table, the output_size cases), the max abs error against torch on CPU
# was 9.5e-7 for values and 3.8e-6 for gradients, at magnitudes up to ~31. ATOL is ~2.5x that.
# pad moves values without arithmetic, so its values must match exactly.
ATOL = 1e-5
RTOL = 1e-6


# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------


def _rand(rng: np.random.Generator, shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(dtype)


def _check_parity(
    fj: Callable[..., jax.Array],
    ft: Callable[..., Any],
    arrays: Sequence[np.ndarray | None],
    *,
    atol: float = ATOL,
    rtol: float = RTOL,
    grad_atol: float | None = None,
    grads: bool = True,
    seed: int = 0,
) -> None:
    """Compare fj and ft on ``arrays`` (None entries pass through): values, then gradients.

    ``grad_atol`` defaults to ``atol``; ``grads=False`` compares the forward values only.
    """
    present = [i for i, a in enumerate(arrays) if a is not None]

    def fill(values: Sequence[Any], none: Any) -> list[Any]:
        out: list[Any] = [none] * len(arrays)
        for i, v in zip(present, values):
            out[i] = v
        return out

    tensors = [torch.tensor(arrays[i], requires_grad=grads) for i in present]
    yt = ft(*fill(tensors, None))
    # NumPy arguments go straight into the jitted function: jnp.asarray on a NumPy array
    # compiles a small program per shape, which would double this file's run time.
    xs = [arrays[i] for i in present]
    if grads:
        cotangent = _rand(np.random.default_rng(seed + 1), yt.shape, arrays[0].dtype)
        grads_t = torch.autograd.grad(yt, tensors, torch.tensor(cotangent), allow_unused=True)

        @partial(jax.jit, compiler_options=_FAST_COMPILE)
        def value_and_vjp(xs: list[jax.Array], g: jax.Array) -> tuple[jax.Array, Any]:
            y, vjp = jax.vjp(lambda *a: fj(*fill(a, None)), *xs)
            return y, vjp(g)

        yj, grads_j = value_and_vjp(xs, cotangent)
    else:
        forward = jax.jit(lambda xs: fj(*fill(xs, None)), compiler_options=_FAST_COMPILE)
        yj, grads_j, grads_t = forward(xs), (), ()
    assert yj.shape == tuple(yt.shape)
    assert yj.dtype == jax.dtypes.canonicalize_dtype(arrays[0].dtype)
    np.testing.assert_allclose(np.asarray(yj), yt.detach().numpy(), atol=atol, rtol=rtol)
    grad_atol = atol if grad_atol is None else grad_atol
    for gj, gt in zip(grads_j, grads_t):
        expected = np.zeros(gj.shape, gj.dtype) if gt is None else gt.numpy()
        np.testing.assert_allclose(np.asarray(gj), expected, atol=grad_atol, rtol=rtol)


def _abstract(shape: Sequence[int]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)


def _maybe_int(r: random.Random, values: tuple[int, ...]) -> int | tuple[int, ...]:
    """Pass equal per-dim values as a plain int half of the time."""
    if len(set(values)) == 1 and r.random() < 0.5:
        return values[0]
    return values


# --------------------------------------------------------------------------------------------
# Randomised grid: conv{1,2,3}d and conv_transpose{1,2,3}d.
# --------------------------------------------------------------------------------------------


def _conv_configs(n: int, transposed: bool, count: int, seed: int) -> list[dict[str, Any]]:
    r = random.Random(seed)
    configs: list[dict[str, Any]] = []
    while len(configs) < count:
        groups = r.choice([1, 1, 2, 3])
        if r.random() < 0.25:  # depthwise (channel multiplier 1 or 2)
            groups, cin_g, cout_g = r.choice([2, 3, 4]), 1, r.choice([1, 2])
        else:
            cin_g, cout_g = r.choice([1, 2]), r.choice([1, 2, 3])
        kmax = 3 if n < 3 else 2
        k = tuple(r.randint(1, kmax + (n == 1)) for _ in range(n))
        stride = tuple(r.randint(1, 3) for _ in range(n))
        dilation = tuple(r.randint(1, 2) for _ in range(n))
        cfg: dict[str, Any] = {
            "n": n,
            "transposed": transposed,
            "groups": groups,
            "cin_g": cin_g,
            "cout_g": cout_g,
            "k": k,
            "bias": r.random() < 0.7,
            "batch": r.choice([None, 1, 2]),
            "dilation": _maybe_int(r, dilation),
        }
        if transposed:
            pads = tuple(r.randint(0, 2) for _ in range(n))
            outp = tuple(
                r.randint(0, max(s, d) - 1) if r.random() < 0.5 else 0
                for s, d in zip(stride, dilation)
            )
            sizes = tuple(r.randint(1, 5 if n < 3 else 3) for _ in range(n))
            out = F.conv_transpose_output_size(sizes, k, stride, pads, outp, dilation)
            if min(out) < 1:
                continue
            cfg.update(
                stride=_maybe_int(r, stride),
                padding=_maybe_int(r, pads),
                output_padding=_maybe_int(r, outp),
            )
        else:
            # every padding kind in turn; the first 'same' is asymmetric (odd total in dim 0)
            kind = ("same", "tuple", "int", "valid", "same")[len(configs) % 5]
            if kind == "same":
                stride = (1,) * n
                if len(configs) % 5 == 0:
                    k = (r.choice([2, 4] if n == 1 else [2]), *k[1:])
                    dilation = (r.choice([1, 3] if n < 3 else [1]), *dilation[1:])
                    cfg.update(k=k, dilation=_maybe_int(r, dilation))
                pads = None
                padding: Any = "same"
            elif kind == "valid":
                pads = (0,) * n
                padding = "valid"
            else:
                pads = tuple(r.randint(0, 2) for _ in range(n))
                padding = pads if kind == "tuple" else pads[0]
                pads = (pads[0],) * n if kind == "int" else pads
            cfg.update(stride=_maybe_int(r, stride), padding=padding)
            extra = 5 if n < 3 else 2
            sizes = tuple(
                max(d * (kk - 1) + 1 - (2 * p if pads else 0), 1) + r.randint(0, extra)
                for kk, d, p in zip(k, dilation, pads or (0,) * n)
            )
        cfg["sizes"] = sizes
        configs.append(cfg)
    return configs


def _conv_id(cfg: dict[str, Any]) -> str:
    kind = "T" if cfg["transposed"] else "C"
    keys = ["groups", "cin_g", "cout_g", "k", "stride", "padding", "dilation", "sizes", "batch"]
    if cfg["transposed"]:
        keys.append("output_padding")
    return f"{kind}{cfg['n']}d-" + "-".join(f"{key}={cfg[key]}" for key in keys)


CONV_CONFIGS = [
    cfg
    for i, (n, transposed) in enumerate(itertools.product((1, 2, 3), (False, True)))
    for cfg in _conv_configs(n, transposed, 5, seed=100 + i)
]


def _conv_arrays(cfg: dict[str, Any], seed: int) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    g, cin_g, cout_g = cfg["groups"], cfg["cin_g"], cfg["cout_g"]
    cin, cout = g * cin_g, g * cout_g
    lead = (cin,) if cfg["batch"] is None else (cfg["batch"], cin)
    x = _rand(rng, lead + cfg["sizes"])
    if cfg["transposed"]:
        w = _rand(rng, (cin, cout_g, *cfg["k"]))
    else:
        w = _rand(rng, (cout, cin_g, *cfg["k"]))
    b = _rand(rng, (cout,)) if cfg["bias"] else None
    return [x, w, b]


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_conv_id)
def test_conv_matches_torch(cfg: dict[str, Any]) -> None:
    n = cfg["n"]
    if cfg["transposed"]:
        keys = ("stride", "padding", "output_padding", "groups", "dilation")
        kwargs = {k: cfg[k] for k in keys}
        fj = partial(getattr(F, f"conv_transpose{n}d"), **kwargs)
        ft = partial(getattr(TF, f"conv_transpose{n}d"), **kwargs)
    else:
        kwargs = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
        fj = partial(getattr(F, f"conv{n}d"), **kwargs)
        ft = partial(getattr(TF, f"conv{n}d"), **kwargs)
    _check_parity(fj, ft, _conv_arrays(cfg, seed=zlib.crc32(_conv_id(cfg).encode())))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_transposed_positional_order(n: int) -> None:
    """(input, weight, bias, stride, padding, output_padding, groups, dilation), as torch."""
    rng = np.random.default_rng(n)
    x, w, b = _rand(rng, (1, 4) + (3,) * n), _rand(rng, (4, 3) + (2,) * n), _rand(rng, (6,))
    args = (2, 1, 1, 2, 2)  # stride 2, padding 1, output_padding 1, groups 2, dilation 2
    fj = getattr(F, f"conv_transpose{n}d")
    ft = getattr(TF, f"conv_transpose{n}d")
    _check_parity(lambda x, w, b: fj(x, w, b, *args), lambda x, w, b: ft(x, w, b, *args), [x, w, b])


def test_asymmetric_same_padding() -> None:
    """'same' with an odd total puts the extra pad on the high side (k=4 -> (1, 2))."""
    x = np.arange(5, dtype=np.float32)[None]
    w = np.zeros((1, 1, 4), np.float32)
    w[0, 0, 0] = 1.0  # picks x_pad[i], i.e. x[i - 1] with left pad 1
    y = F.conv1d(x, w, padding="same")
    np.testing.assert_array_equal(np.asarray(y), [[0, 0, 1, 2, 3]])
    assert F.reversed_padding_repeated_twice("same", (3, 4), (1, 3)) == (4, 5, 1, 1)
    assert F.reversed_padding_repeated_twice("valid", (3, 4)) == (0, 0, 0, 0)
    assert F.reversed_padding_repeated_twice((1, 2), (3, 3)) == (2, 2, 1, 1)


def test_cross_correlation_no_flip() -> None:
    y = F.conv1d(jnp.arange(5.0).reshape(1, 1, 5), jnp.array([[[1.0, 0.0, -1.0]]]))
    np.testing.assert_array_equal(np.asarray(y), [[[-2.0, -2.0, -2.0]]])


# --------------------------------------------------------------------------------------------
# torch's own module tests (§3.10), through torch modules with the same weights.
# --------------------------------------------------------------------------------------------

GOLDEN = [
    # (torch module, positional args, kwargs, input shape, expected output shape)
    ("Conv1d", (4, 5, 3), {}, (2, 4, 10), (2, 5, 8)),
    ("Conv1d", (4, 5, 3, 2), {}, (2, 4, 10), (2, 5, 4)),
    ("Conv1d", (4, 5, 3, 1, 1), {}, (2, 4, 10), (2, 5, 10)),
    ("Conv1d", (4, 4, 5, 1, 2), {}, (1, 4, 1), (1, 4, 1)),
    ("Conv1d", (4, 5, 3), {}, (0, 4, 10), (0, 5, 8)),
    ("Conv1d", (4, 5, 3), {"dilation": 2}, (2, 4, 10), (2, 5, 6)),
    ("Conv1d", (4, 6, 3), {"groups": 2}, (2, 4, 6), (2, 6, 4)),
    ("Conv1d", (4, 5, 4), {"padding": "same"}, (2, 4, 10), (2, 5, 10)),
    ("Conv1d", (4, 5, 4), {"padding": "same", "dilation": 2}, (2, 4, 10), (2, 5, 10)),
    (
        "ConvTranspose1d",
        (3, 4, 3),
        {"stride": 3, "padding": 1, "output_padding": 1},
        (1, 3, 7),
        (1, 4, 20),
    ),
    ("ConvTranspose1d", (3, 4, 3, 2, 1, 1, 1, False), {}, (1, 3, 6), (1, 4, 12)),
    ("ConvTranspose1d", (3, 4, 3, 2, 1, 1, 1, True, 2), {}, (1, 3, 6), (1, 4, 14)),
    (
        "ConvTranspose1d",
        (4, 6, 3),
        {"stride": 3, "padding": 1, "output_padding": 1, "groups": 2},
        (2, 4, 7),
        (2, 6, 20),
    ),
    ("Conv2d", (3, 4, (3, 2)), {}, (2, 3, 7, 5), (2, 4, 5, 4)),
    ("Conv2d", (3, 4, (3, 3), (2, 2)), {}, (2, 3, 6, 6), (2, 4, 2, 2)),
    ("Conv2d", (3, 4, (3, 3), (2, 2), (1, 1)), {}, (2, 3, 6, 6), (2, 4, 3, 3)),
    ("Conv2d", (3, 2, (3, 3), (2, 2), (1, 1), (2, 2)), {}, (2, 3, 8, 8), (2, 2, 3, 3)),
    ("Conv2d", (4, 6, (3, 2)), {"groups": 2}, (2, 4, 6, 5), (2, 6, 4, 4)),
    ("Conv2d", (2, 4, (3, 4)), {"padding": "valid"}, (2, 2, 6, 5), (2, 4, 4, 2)),
    ("Conv2d", (2, 4, (3, 4)), {"padding": "same"}, (2, 2, 6, 5), (2, 4, 6, 5)),
    ("Conv2d", (2, 4, (3, 4)), {"padding": "same", "dilation": 2}, (2, 2, 6, 5), (2, 4, 6, 5)),
    ("ConvTranspose2d", (3, 4, 3, (3, 2), 1, (1, 1)), {}, (1, 3, 7, 6), (1, 4, 20, 12)),
    (
        "ConvTranspose2d",
        (3, 4, 3, (2, 3), 1, (1, 1), 1, False, (2, 2)),
        {},
        (1, 3, 6, 7),
        (1, 4, 14, 22),
    ),
    ("ConvTranspose2d", (3, 4, 3, (2, 3), 1, (1, 1), 1, False), {}, (1, 3, 6, 7), (1, 4, 12, 20)),
    ("ConvTranspose2d", (2, 4, (2, 3)), {"groups": 2}, (1, 2, 4, 5), (1, 4, 5, 7)),
    ("Conv2d", (4, 8, 3), {"groups": 4}, (2, 4, 6, 6), (2, 8, 4, 4)),
    ("Conv2d", (4, 4, (2, 2)), {"dilation": 2, "groups": 4}, (2, 4, 5, 5), (2, 4, 3, 3)),
    ("Conv3d", (2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4), (1, 3, 3, 3, 3)),
    ("Conv3d", (3, 4, 2, 2, 1), {}, (2, 3, 5, 5, 5), (2, 4, 3, 3, 3)),
    ("Conv3d", (2, 4, 3), {"groups": 2}, (1, 2, 4, 5, 4), (1, 4, 2, 3, 2)),
    ("Conv3d", (3, 4, 2), {"dilation": 2, "stride": 2}, (2, 3, 5, 5, 5), (2, 4, 2, 2, 2)),
    ("Conv3d", (3, 4, (2, 3, 4)), {"padding": "valid"}, (2, 3, 6, 5, 4), (2, 4, 5, 3, 1)),
    (
        "Conv3d",
        (3, 4, (2, 3, 4)),
        {"padding": "same", "dilation": 2},
        (2, 3, 6, 5, 4),
        (2, 4, 6, 5, 4),
    ),
    ("ConvTranspose3d", (2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4), (1, 3, 5, 7, 5)),
    (
        "ConvTranspose3d",
        (2, 3, (2, 3, 2), 1, 0, 0, 1, True, (2, 2, 2)),
        {},
        (1, 2, 4, 5, 4),
        (1, 3, 6, 9, 6),
    ),
    # Unbatched inputs.
    ("Conv2d", (4, 6, 3), {}, (4, 8, 8), (6, 6, 6)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "groups": 2}, (4, 3, 3), (6, 7, 7)),
]
# padding_mode rows (the module pads with F.pad, then convolves with padding 0), plus 'same' with
# an asymmetric split and every non-zeros mode, and an unbatched input per mode.
for _mode in ("zeros", "reflect", "replicate", "circular"):
    GOLDEN += [
        ("Conv1d", (2, 3, 3, 2, (1,), 1, 1, True, _mode), {}, (2, 2, 4), (2, 3, 2)),
        ("Conv2d", (2, 3, 3, 2, (1, 2), 1, 1, True, _mode), {}, (2, 2, 4, 4), (2, 3, 2, 3)),
        (
            "Conv2d",
            (2, 4, (3, 4)),
            {"padding": "same", "padding_mode": _mode},
            (2, 2, 6, 5),
            (2, 4, 6, 5),
        ),
        (
            "Conv1d",
            (2, 4, 4),
            {"padding": "same", "dilation": 3, "padding_mode": _mode},
            (2, 11),
            (4, 11),
        ),
    ]
    if _mode != "reflect":  # reflect needs pad < size; torch's table leaves this row out too
        GOLDEN.append(
            (
                "Conv3d",
                (2, 3, 3, 2, (1, 2, 3), 1, 1, True, _mode),
                {},
                (2, 2, 4, 4, 4),
                (2, 3, 2, 3, 4),
            )
        )


@pytest.mark.parametrize(("cls", "args", "kwargs", "in_shape", "out_shape"), GOLDEN)
def test_golden_module_configs(
    cls: str, args: tuple, kwargs: dict, in_shape: tuple, out_shape: tuple
) -> None:
    m = getattr(torch.nn, cls)(*args, **kwargs)
    w = m.weight.detach().numpy()
    b = None if m.bias is None else m.bias.detach().numpy()
    x = _rand(np.random.default_rng(len(GOLDEN)), in_shape)
    if cls.startswith("ConvTranspose"):
        fn = getattr(F, f"conv_transpose{cls[-2]}d")
        fj = partial(fn, stride=m.stride, padding=m.padding, output_padding=m.output_padding)
        fj = partial(fj, groups=m.groups, dilation=m.dilation)
    else:
        fj = partial(
            F.conv_padding_mode_forward,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            padding_mode=m.padding_mode,
        )
        # The helper pads exactly as torch's module does.
        assert F.reversed_padding_repeated_twice(m.padding, m.kernel_size, m.dilation) == tuple(
            m._reversed_padding_repeated_twice
        )

    def ft(x: Any, w: Any, b: Any) -> Any:
        params = {"weight": w} if b is None else {"weight": w, "bias": b}
        return torch.func.functional_call(m, params, (x,))

    # Values only: gradients are covered by the random grid and the pad tests, and each
    # gradient check costs a compilation.
    _check_parity(fj, ft, [x, w, b], grads=False)
    assert tuple(m(torch.tensor(x)).shape) == out_shape


# --------------------------------------------------------------------------------------------
# Output sizes and ConvTranspose's output_size= handling.
# --------------------------------------------------------------------------------------------


def test_output_size_formulas_exhaustive_1d() -> None:
    """§3.8's exhaustive 1-D check, against the shapes torch computes."""
    for length, k, s, p, d in itertools.product(
        (5, 8, 11), range(1, 5), range(1, 4), range(3), (1, 2)
    ):
        x = torch.zeros(1, 1, length)
        w = torch.zeros(1, 1, k)
        if length + 2 * p >= d * (k - 1) + 1:
            expected = TF.conv1d(x, w, None, s, p, d).shape[-1]
            assert F.conv_output_size((length,), k, s, p, d) == (expected,)
        for op in range(max(s, d)):
            expected = (
                TF.conv_transpose1d(x, w, None, s, p, op, 1, d).shape[-1]
                if ((length - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
                else None
            )
            if expected is not None:
                assert F.conv_transpose_output_size((length,), k, s, p, op, d) == (expected,)
    assert F.conv_output_size((6, 5), (3, 4), padding="same", dilation=2) == (6, 5)
    assert F.conv_output_size((6, 5), (3, 4), padding="valid") == (4, 2)


_OUTPUT_SIZE_CASES = [
    # (spatial dims, input shape, module args, module kwargs, output_size)
    (2, (1, 1, 4, 4), (1, 1, 3), {"stride": 2, "padding": 1}, None),
    (2, (1, 1, 4, 4), (1, 1, 3), {"stride": 2, "padding": 1}, [8, 8]),
    (2, (1, 1, 4, 4), (1, 1, 3), {"stride": 2, "padding": 1}, (1, 1, 8, 7)),
    (2, (1, 1, 4, 4), (1, 1, 3), {"stride": 2, "padding": 1, "output_padding": 1}, [7, 7]),
    (2, (1, 4, 4), (1, 1, 3), {"stride": 2, "padding": 1}, (5, 8, 7)),  # unbatched, 3 entries
    (2, (1, 3, 6, 6), (3, 4, 3, 3, 0, 2), {}, [20, 18]),
    (2, (1, 2, 3, 3), (2, 2, 3), {"stride": 3, "dilation": 2, "groups": 2}, [11, 13]),
    (1, (2, 5), (2, 3, 2), {"stride": 4, "padding": 1}, [17]),
    (3, (1, 2, 2, 3, 2), (2, 1, 3), {"stride": (2, 1, 3), "padding": (0, 1, 1)}, [5, 3, 6]),
    (3, (1, 2, 2, 3, 2), (2, 1, 3), {"stride": (2, 1, 3), "padding": (0, 1, 1)}, [1, 2, 6, 3, 5]),
]


@pytest.mark.parametrize(("n", "in_shape", "args", "kwargs", "output_size"), _OUTPUT_SIZE_CASES)
def test_conv_transpose_output_size_matches_module(
    n: int, in_shape: tuple, args: tuple, kwargs: dict, output_size: Any
) -> None:
    m = getattr(torch.nn, f"ConvTranspose{n}d")(*args, **kwargs)
    x = _rand(np.random.default_rng(0), in_shape)
    op = F.conv_transpose_output_padding(
        in_shape, output_size, m.stride, m.padding, m.kernel_size, m.dilation, n, m.output_padding
    )
    assert list(op) == list(
        m._output_padding(
            torch.tensor(x), output_size, m.stride, m.padding, m.kernel_size, n, m.dilation
        )
    )
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    fn = getattr(F, f"conv_transpose{n}d")
    y = jax.jit(fn, static_argnums=(3, 4, 5, 6, 7), compiler_options=_FAST_COMPILE)(
        x, w, b, m.stride, m.padding, op, m.groups, m.dilation
    )
    expected = m(torch.tensor(x), output_size=output_size).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), expected, atol=ATOL, rtol=RTOL)


def test_conv_transpose_output_size_round_trip() -> None:
    """``t_conv(conv(i), output_size=i.shape)`` restores the spatial size, as in torch's test."""
    for k, s, p, d in itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (1, 2)):
        size = 9
        if size + 2 * p < d * (k - 1) + 1:
            continue
        down = F.conv_output_size((size,), k, s, p, d)
        op = F.conv_transpose_output_padding((1, 1, *down), (1, 1, size), s, p, k, d, 1)
        assert F.conv_transpose_output_size(down, k, s, p, op, d) == (size,)


@pytest.mark.parametrize(
    ("in_shape", "output_size"),
    [
        ((1, 1, 4, 4), [9, 9]),
        ((1, 1, 4, 4), [6, 7]),
        ((1, 1, 4, 4), [1]),
        ((1, 4, 4), [1, 1, 8, 8]),
    ],
)
def test_conv_transpose_output_size_errors(in_shape: tuple, output_size: list) -> None:
    m = torch.nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)
    with pytest.raises(ValueError) as expected:
        m(torch.zeros(in_shape), output_size=output_size)
    with pytest.raises(ValueError) as got:
        F.conv_transpose_output_padding(in_shape, output_size, 2, 1, 3, 1, 2)
    # Same message, except that fparam prints the spatial input size as a tuple.
    head = str(expected.value).split(" (for an input")[0]
    assert str(got.value).startswith(head)


# --------------------------------------------------------------------------------------------
# pad.
# --------------------------------------------------------------------------------------------


def _pad_cases() -> list[tuple[tuple[int, ...], tuple[int, ...], str]]:
    cases: list[tuple[tuple[int, ...], tuple[int, ...], str]] = []
    r = random.Random(7)
    for mode in ("constant", "reflect", "replicate", "circular"):
        for k in (1, 2, 3):
            for batched in (False, True):
                shape = tuple(r.randint(2, 4) for _ in range(k + 1 + batched))
                # pads from -1 up to the dim size (reflect refuses the size itself: an error case)
                pads = [r.randint(-1, shape[-1 - i // 2]) for i in range(2 * k)]
                cases.append((shape, tuple(pads), mode))
    # constant mode pads any number of leading dims too, and crops with negative pads
    cases += [
        ((2, 3), (1, 2, 0, 1), "constant"),
        ((3,), (-1, 2), "constant"),
        ((2, 4), (-2, -2), "constant"),
    ]
    cases += [
        ((1, 1, 4), (-3, 2), "reflect"),
        ((1, 1, 4), (2, -3), "replicate"),
        ((1, 1, 4), (3, 3), "replicate"),
    ]
    cases += [
        ((1, 2, 4), (-2, 2), "circular"),
        ((1, 1, 4), (4, 4), "circular"),
        ((1, 1, 4), (-4, 0), "circular"),
    ]
    # 2-D and 3-D padding may crop a dim to size 0 (1-D padding may not, see PAD_ERRORS)
    cases += [
        ((1, 2, 2), (-1, -1, 0, 0), "reflect"),
        ((1, 2, 2, 2), (0, 0, 0, 0, -1, -1), "replicate"),
    ]
    return cases


def _valid_circular(shape: Sequence[int], pads: Sequence[int]) -> bool:
    """torch reads uninitialised memory when a pad exceeds the size left after cropping."""
    for i in range(len(pads) // 2):
        lo, hi = pads[2 * i], pads[2 * i + 1]
        left = shape[-1 - i] - max(-lo, 0) - max(-hi, 0)
        if left < 0 or lo > left or hi > left:
            return False
    return True


@pytest.mark.parametrize(("shape", "pads", "mode"), _pad_cases())
def test_pad_matches_torch(shape: tuple, pads: tuple, mode: str) -> None:
    if mode == "circular" and not _valid_circular(shape, pads):
        pytest.skip("torch's result is undefined here; fparam raises (see test_pad_errors)")
    x = _rand(np.random.default_rng(sum(shape)), shape)
    value = 1.5 if mode == "constant" else 0.0
    try:
        TF.pad(torch.tensor(x), pads, mode=mode, value=value)
    except Exception as error:  # an invalid random case: fparam must refuse it the same way
        with pytest.raises(type(error)):
            F.pad(x, pads, mode=mode, value=value)
        return
    _check_parity(
        lambda x: F.pad(x, pads, mode=mode, value=value),
        lambda x: TF.pad(x, pads, mode=mode, value=value),
        [x],
        atol=0,
        rtol=0,
        grad_atol=ATOL,  # gradients sum the reflected/replicated copies in another order
    )


def test_pad_keeps_integer_dtype() -> None:
    x = np.arange(4, dtype=np.int32).reshape(1, 1, 4)
    for mode, value in (("constant", 1.5), ("reflect", 0), ("replicate", 0), ("circular", 0)):
        expected = TF.pad(torch.tensor(x), (1, 2), mode=mode, value=value).numpy()
        y = F.pad(x, (1, 2), mode=mode, value=value)
        assert y.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(y), expected)


# --------------------------------------------------------------------------------------------
# Errors: the same exception type as torch for the same bad input.
# --------------------------------------------------------------------------------------------

# (function, input shape, weight shape, bias shape or None, kwargs, substring of fparam's message)
CONV_ERRORS: list[tuple[str, tuple, tuple, tuple | None, dict, str]] = [
    (
        "conv2d",
        (8, 8),
        (6, 3, 3, 3),
        None,
        {},
        "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [8, 8]",
    ),
    ("conv2d", (1, 1, 8, 8, 8), (6, 3, 3, 3), None, {}, "input to conv2d"),
    (
        "conv1d",
        (4,),
        (1, 4, 3),
        None,
        {},
        "Expected 2D (unbatched) or 3D (batched) input to conv1d",
    ),
    ("conv3d", (1, 2, 3, 4, 5, 6), (1, 2, 3, 3, 3), None, {}, "input to conv3d"),
    ("conv_transpose2d", (4, 4), (4, 3, 3, 3), None, {}, "input to conv_transpose2d"),
    ("conv_transpose1d", (1, 1, 4, 4), (1, 3, 3), None, {}, "input to conv_transpose1d"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 4, 3, 3),
        None,
        {},
        "Given groups=1, weight of size [6, 4, 3, 3], expected input[2, 3, 8, 8] to have 4 channels, but got 3 channels instead",
    ),
    ("conv2d", (3, 8, 8), (6, 4, 3, 3), None, {}, "expected input[1, 3, 8, 8] to have 4 channels"),
    (
        "conv2d",
        (1, 6, 5, 5),
        (6, 2, 3, 3),
        None,
        {"groups": 2},
        "Given groups=2, weight of size [6, 2, 3, 3], expected input[1, 6, 5, 5] to have 4 channels, but got 6 channels instead",
    ),
    (
        "conv_transpose2d",
        (2, 3, 8, 8),
        (4, 6, 3, 3),
        None,
        {},
        "Given transposed=1, weight of size [4, 6, 3, 3], expected input[2, 3, 8, 8] to have 4 channels, but got 3 channels instead",
    ),
    (
        "conv2d",
        (2, 3, 2, 2),
        (6, 3, 3, 3),
        None,
        {},
        "Calculated padded input size per channel: (2 x 2). Kernel size: (3 x 3). Kernel size can't be greater than actual input size",
    ),
    ("conv1d", (2, 3, 4), (6, 3, 10), None, {}, "input size per channel: (4). Kernel size: (10)"),
    ("conv2d", (2, 3, 4, 4), (6, 3, 3, 3), None, {"dilation": 2}, "Kernel size: (5 x 5)"),
    (
        "conv2d",
        (1, 3, 0, 5),
        (2, 3, 2, 4),
        None,
        {"padding": "same"},
        "(1 x 8). Kernel size: (2 x 4)",
    ),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"stride": 0},
        "non-positive stride is not supported",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"stride": (1, -1)}, "non-positive stride"),
    ("conv_transpose2d", (2, 4, 4, 4), (4, 3, 3, 3), None, {"stride": 0}, "non-positive stride"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"padding": -1},
        "negative padding is not supported",
    ),
    ("conv_transpose2d", (2, 4, 4, 4), (4, 3, 3, 3), None, {"padding": -1}, "negative padding"),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3, 3),
        None,
        {"output_padding": -1},
        "negative output_padding",
    ),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"dilation": 0},
        "dilation should be greater than zero",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"dilation": (1, -1)}, "dilation"),
    ("conv_transpose2d", (2, 4, 4, 4), (4, 3, 3, 3), None, {"dilation": (0, 1)}, "dilation"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"groups": 0},
        "non-positive groups is not supported",
    ),
    ("conv_transpose2d", (2, 4, 4, 4), (4, 3, 3, 3), None, {"groups": 0}, "non-positive groups"),
    (
        "conv2d",
        (2, 4, 8, 8),
        (5, 2, 3, 3),
        None,
        {"groups": 2},
        "expected weight to be divisible by 2",
    ),
    ("conv_transpose2d", (2, 3, 8, 8), (3, 6, 3, 3), None, {"groups": 2}, "divisible by 2"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (0, 3, 3, 3),
        None,
        {},
        "expected weight to be at least 1 at dimension 0",
    ),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"stride": (1, 1, 1)},
        "expected stride to be a single integer value or a list of 2 values to match the convolution dimensions, but got stride=[1, 1, 1]",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"padding": (1, 1, 1)}, "list of 2 values"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"dilation": (1, 1, 1)}, "list of 2 values"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"stride": ()}, "but got stride=[]"),
    ("conv1d", (1, 1, 5), (1, 1, 3), None, {"stride": (1, 1)}, "list of 1 values"),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3, 3),
        None,
        {"output_padding": (1, 1, 1)},
        "output_padding",
    ),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"padding": "same", "stride": 2},
        "padding='same' is not supported for strided convolutions",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"padding": "same", "stride": (1, 2)}, "strided"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        None,
        {"padding": "full"},
        "Invalid padding string: 'full'",
    ),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3, 3),
        None,
        {"padding": "same"},
        "must be tuple of ints",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"stride": 1.0}, "must be tuple of ints"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"stride": True}, "must be tuple of ints"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), None, {"groups": 1.0}, "argument 'groups' must be int"),
    (
        "conv2d",
        (2, 3, 8, 8),
        (6, 3, 3, 3),
        (5,),
        {},
        "Given weight of size [6, 3, 3, 3], expected bias to be 1-dimensional with 6 elements, but got bias of size [5] instead",
    ),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3), (6, 1), {}, "bias of size [6, 1]"),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3, 3),
        (4,),
        {},
        "Given transposed=1, weight of size [4, 3, 3, 3], expected bias",
    ),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3, 3),
        None,
        {"stride": 2, "output_padding": 2},
        "output padding must be smaller than either stride or dilation, but got output_padding_height: 2 output_padding_width: 2 "
        "stride_height: 2 stride_width: 2 dilation_height: 1 dilation_width: 1",
    ),
    (
        "conv_transpose1d",
        (1, 4, 4),
        (4, 3, 3),
        None,
        {"output_padding": 1},
        "output_padding_width: 1 stride_width: 1",
    ),
    (
        "conv_transpose3d",
        (1, 4, 4, 4, 4),
        (4, 3, 3, 3, 3),
        None,
        {"output_padding": 1},
        "output_padding_depth: 1",
    ),
    (
        "conv_transpose2d",
        (1, 4, 1, 2),
        (4, 3, 3, 3),
        None,
        {"padding": (0, 5)},
        "Given input size per channel: (1 x 2). Calculated output size per channel: (3 x -6). Output size is too small",
    ),
    (
        "conv_transpose2d",
        (1, 4, 1, 2),
        (4, 3, 3, 3),
        None,
        {"padding": (0, 2)},
        "(3 x 0). Output size is too small",
    ),
    (
        "conv2d",
        (2, 3, 0, 8),
        (6, 3, 3, 3),
        None,
        {"padding": 2},
        "Only zero batch or zero channel inputs are supported",
    ),
    ("conv_transpose2d", (2, 4, 0, 4), (4, 3, 3, 3), None, {}, "Only zero batch or zero channel"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 0, 0), None, {}, "kernel size should be greater than zero"),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 0, 0),
        None,
        {},
        "kernel size should be greater than zero",
    ),
    # Weight of the wrong rank: torch reports a stride-length mismatch, fparam names the weight.
    ("conv2d", (2, 3, 8, 8), (6, 3, 3), None, {}, "Expected 4D weight for conv2d"),
    ("conv2d", (2, 3, 8, 8), (6, 3, 3, 3, 3), None, {}, "Expected 4D weight for conv2d"),
    (
        "conv_transpose2d",
        (2, 4, 4, 4),
        (4, 3, 3),
        None,
        {},
        "Expected 4D weight for conv_transpose2d",
    ),
]


@pytest.mark.parametrize(("fn", "x_shape", "w_shape", "b_shape", "kwargs", "message"), CONV_ERRORS)
def test_conv_errors_match_torch(
    fn: str, x_shape: tuple, w_shape: tuple, b_shape: tuple | None, kwargs: dict, message: str
) -> None:
    def call(mod: Any, zeros: Callable[[tuple], Any]) -> Any:
        bias = None if b_shape is None else zeros(b_shape)
        return getattr(mod, fn)(zeros(x_shape), zeros(w_shape), bias, **kwargs)

    with pytest.raises(Exception) as expected:
        call(TF, lambda s: torch.zeros(s))
    # Validation runs at trace time, on shapes alone: abstract inputs are enough.
    x, w = _abstract(x_shape), _abstract(w_shape)
    b = None if b_shape is None else _abstract(b_shape)
    with pytest.raises(expected.type) as got:
        jax.eval_shape(partial(getattr(F, fn), **kwargs), x, w, b)
    assert message in str(got.value)


def test_dtype_mismatch_is_runtime_error() -> None:
    for kwargs in ({"w": torch.float64}, {"b": torch.float64}):
        x = torch.zeros(1, 3, 5, 5)
        w = torch.zeros(2, 3, 3, 3, dtype=kwargs.get("w", torch.float32))
        b = torch.zeros(2, dtype=kwargs.get("b", torch.float32))
        with pytest.raises(RuntimeError):
            TF.conv2d(x, w, b)
        with jax.enable_x64(True), pytest.raises(RuntimeError, match="should be the same"):
            F.conv2d(jnp.asarray(x.numpy()), jnp.asarray(w.numpy()), jnp.asarray(b.numpy()))


# (input shape, pad, mode, value, substring of fparam's message)
PAD_ERRORS: list[tuple[tuple, tuple, str, float, str]] = [
    ((1, 1, 4), (1,), "constant", 0.0, "Padding length must be divisible by 2"),
    ((1, 1, 4), (1, 1, 1), "reflect", 0.0, "Padding length must be divisible by 2"),
    (
        (),
        (1, 1),
        "constant",
        0.0,
        "Padding length should be less than or equal to two times the input dimension but got padding length 2 and input of dimension 0",
    ),
    ((2, 2), (1, 1, 1, 1, 1, 1), "constant", 0.0, "padding length 6 and input of dimension 2"),
    ((1, 1, 4), (-3, -2), "constant", 0.0, "negative"),
    ((1, 1, 4), (1, 1), "foo", 0.0, "Unrecognised padding mode foo"),
    ((1, 1, 4), (1, 1), "reflect", 2.0, 'Padding mode "reflect" doesn\'t take in value argument'),
    ((1, 1, 4), (1, 1), "circular", 2.0, "doesn't take in value argument"),
    ((4,), (1, 2), "reflect", 0.0, "Padding size 2 is not supported for 1D input tensor."),
    ((1, 1, 4), (1,) * 6, "replicate", 0.0, "Padding size 6 is not supported for 3D input tensor."),
    (
        (1, 1, 2, 2, 2),
        (1, 1),
        "circular",
        0.0,
        "Padding size 2 is not supported for 5D input tensor.",
    ),
    ((1, 1, 4), (), "reflect", 0.0, "Padding size 0 is not supported"),
    (
        (1, 1, 4),
        (5, 5),
        "reflect",
        0.0,
        "Argument #4: Padding size should be less than the corresponding input dimension, but got: padding (5, 5) at dimension 2 of input [1, 1, 4]",
    ),
    ((1, 1, 4), (4, 1), "reflect", 0.0, "padding (4, 1) at dimension 2"),
    ((1, 1, 2, 3, 4), (0, 0, 3, 0, 0, 0), "reflect", 0.0, "Argument #6"),
    ((1, 1, 2, 3, 4), (0, 0, 0, 0, 2, 0), "reflect", 0.0, "Argument #8"),
    ((1, 1, 4), (-4, 0), "reflect", 0.0, "input (W: 4) is too small. Calculated output W: 0"),
    ((1, 1, 4), (-5, 1), "replicate", 0.0, "too small"),
    ((1, 3, 3), (-2, -2, -2, -2), "replicate", 0.0, "too small"),
    ((1, 0, 4), (1, 1), "reflect", 0.0, "with possibly 0 batch size and other non-zero dimensions"),
    (
        (1, 1, 0),
        (1, 1),
        "replicate",
        0.0,
        "other non-zero dimensions for input, but got: [1, 1, 0]",
    ),
    ((0, 4), (1, 1), "replicate", 0.0, "other non-zero dimensions"),
    ((1, 1, 4), (5, 5), "circular", 0.0, "Padding value causes wrapping around more than once."),
    ((1, 1, 2, 3, 4), (0, 0, 0, 0, 3, 0), "circular", 0.0, "wrapping around more than once"),
    ((1, 1, 0), (1, 1), "circular", 0.0, "wrapping around more than once"),
    (
        (1, 1, 4),
        (-3, -2),
        "circular",
        0.0,
        "Negative padding value is resulting in an empty dimension",
    ),
    ((1, 1, 4), (1.0, 1.0), "constant", 0.0, "must be tuple of ints"),
]


@pytest.mark.parametrize(("shape", "pads", "mode", "value", "message"), PAD_ERRORS)
def test_pad_errors_match_torch(
    shape: tuple, pads: tuple, mode: str, value: float, message: str
) -> None:
    with pytest.raises(Exception) as expected:
        TF.pad(torch.zeros(shape), pads, mode=mode, value=value)
    with pytest.raises(expected.type) as got:
        jax.eval_shape(partial(F.pad, pad=pads, mode=mode, value=value), _abstract(shape))
    assert message in str(got.value)


def test_circular_pad_beyond_the_cropped_size_raises() -> None:
    """torch returns uninitialised memory (or a RuntimeError) here; fparam always raises."""
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        jax.eval_shape(partial(F.pad, pad=(2, -3), mode="circular"), _abstract((1, 1, 4)))
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        jax.eval_shape(partial(F.pad, pad=(-4, 1), mode="circular"), _abstract((1, 1, 4)))


# --------------------------------------------------------------------------------------------
# JAX transformations and dtypes.
# --------------------------------------------------------------------------------------------


def test_jit_matches_eager_and_validates_at_trace_time() -> None:
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, (2, 4, 7, 6)), _rand(rng, (6, 2, 2, 3)), _rand(rng, (6,))
    f = partial(F.conv2d, padding="same", dilation=(2, 1), groups=2)
    np.testing.assert_allclose(
        np.asarray(jax.jit(f)(x, w, b)), np.asarray(f(x, w, b)), rtol=1e-6, atol=1e-6
    )
    wt = _rand(rng, (4, 3, 3, 3))
    g = partial(F.conv_transpose2d, stride=2, padding=1, output_padding=1, groups=2)
    np.testing.assert_allclose(
        np.asarray(jax.jit(g)(x, wt)), np.asarray(g(x, wt)), rtol=1e-6, atol=1e-6
    )
    p = partial(F.pad, pad=(1, 2, 2, 1), mode="reflect")
    np.testing.assert_array_equal(np.asarray(jax.jit(p)(x)), np.asarray(p(x)))
    with pytest.raises(RuntimeError, match="strided"):
        jax.jit(partial(F.conv2d, padding="same", stride=2))(x, w[:, :4])


def test_vmap_over_unbatched_equals_batched() -> None:
    rng = np.random.default_rng(4)
    x, w = _rand(rng, (3, 2, 6, 5)), _rand(rng, (4, 2, 3, 2))
    batched = F.conv2d(x, w, padding=1, stride=(2, 1))
    mapped = jax.vmap(lambda xi: F.conv2d(xi, w, padding=1, stride=(2, 1)))(x)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(batched), rtol=1e-6, atol=1e-6)
    wt = _rand(rng, (2, 3, 3, 3))
    mapped_t = jax.vmap(lambda xi: F.conv_transpose2d(xi, wt, stride=2))(x)
    np.testing.assert_allclose(
        np.asarray(mapped_t), np.asarray(F.conv_transpose2d(x, wt, stride=2)), rtol=1e-6, atol=1e-6
    )


def test_float64_exact_with_x64() -> None:
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        x, w, b = (_rand(rng, s, np.float64) for s in ((2, 4, 6, 5), (6, 2, 3, 2), (6,)))
        kw = {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1), "groups": 2}
        _check_parity(
            partial(F.conv2d, **kw), partial(TF.conv2d, **kw), [x, w, b], atol=1e-12, rtol=1e-12
        )
        wt = _rand(rng, (4, 3, 3, 2), np.float64)
        kt = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
        _check_parity(
            partial(F.conv_transpose2d, **kt),
            partial(TF.conv_transpose2d, **kt),
            [x, wt, b],
            atol=1e-12,
            rtol=1e-12,
        )
        _check_parity(
            lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"),
            lambda x: TF.pad(x, (1, 2, 2, 1), mode="reflect"),
            [x],
            atol=0,
            rtol=0,
            grad_atol=1e-15,
        )


def test_bfloat16_keeps_dtype() -> None:
    rng = np.random.default_rng(6)
    x, w = _rand(rng, (2, 8, 6, 6)), _rand(rng, (4, 8, 3, 3))
    y = F.conv2d(jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16), padding=1)
    assert y.dtype == jnp.bfloat16
    expected = TF.conv2d(torch.tensor(x).bfloat16(), torch.tensor(w).bfloat16(), padding=1)
    # Both accumulate in float32 and round once; they may differ by one bfloat16 ulp (|y| < 32).
    np.testing.assert_allclose(np.asarray(y, np.float32), expected.float().numpy(), atol=0.125)
