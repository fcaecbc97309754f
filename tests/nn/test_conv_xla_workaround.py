"""Convolutions whose derivatives used to abort XLA's compiler, against torch.

XLA's convolution operand swap builds an invalid convolution from some of the convs JAX derives
from strided or dilated ones, and the check that catches it aborts the whole process (see
``_ConvWindow`` in ``fparam/nn/functional/conv.py``). Every 2-D and 3-D configuration below
aborted before fparam steered around it; the 1-D ones never did (the swap needs a second
spatial dim) but take the same workaround path. The fparam side runs in a child process, so
an abort fails the test, naming its configuration, instead of killing the pytest worker; this
process compares what the child computed with torch: values, the gradients with respect to
input, weight and bias, the forward-mode derivative, and the gradient of a gradient penalty.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from fparam.nn.functional import conv as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# Float32 tolerance as in test_conv.py: ATOL + SCALED * max|expected| per array. Measured here:
# at most 2.3e-5 for a first derivative of magnitude 47 (a bias gradient, the sum of ~2000
# products) and 1.2e-4 for a second derivative of magnitude 390; each within half its tolerance.
ATOL = 3e-6
SCALED = 1e-6

# (name, function, input shape, weight shape, keyword arguments); "vmap": True maps the
# function over unbatched inputs. The comments say which derivative aborted (or the value).
CASES: list[tuple[str, str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    # the input gradient: kernel 2, stride 2, padding 1 on an even size (the width here)
    ("conv2d-input-grad", "conv2d", (1, 1, 6, 8), (1, 1, 3, 2), {"stride": (3, 2), "padding": 1}),
    ("conv2d-height-1", "conv2d", (2, 3, 1, 6), (4, 3, 2, 2), {"stride": 2, "padding": 1}),
    ("conv2d-unbatched", "conv2d", (3, 1, 6), (4, 3, 2, 2), {"stride": 2, "padding": 1}),
    (
        "conv2d-vmap",
        "conv2d",
        (2, 3, 1, 6),
        (4, 3, 2, 2),
        {"stride": 2, "padding": 1, "vmap": True},
    ),
    (
        "conv3d-input-grad",
        "conv3d",
        (1, 2, 3, 6, 8),
        (2, 2, 2, 3, 2),
        {"stride": (1, 3, 2), "padding": (0, 1, 1)},
    ),
    # second derivatives: stride 1, dilation 2, padding 1, output size 2 (the height here)
    (
        "conv2d-second-order",
        "conv2d",
        (1, 1, 4, 8),
        (1, 1, 3, 2),
        {"padding": (1, 0), "dilation": (2, 1)},
    ),
    # the value (a dilated-input conv) and forward mode of the transposed convs
    (
        "conv_transpose2d-value",
        "conv_transpose2d",
        (1, 1, 2, 6),
        (1, 1, 3, 2),
        {"stride": (1, 2), "padding": (0, 1)},
    ),
    (
        "conv_transpose2d-forward-mode",
        "conv_transpose2d",
        (1, 1, 2, 5),
        (1, 2, 4, 1),
        {"padding": 1, "dilation": (2, 1)},
    ),
    (
        "conv_transpose2d-output-padding",
        "conv_transpose2d",
        (2, 1, 4, 2),
        (1, 1, 3, 3),
        {"stride": (3, 1), "padding": (3, 1), "output_padding": (1, 0), "dilation": (3, 2)},
    ),
    (
        "conv_transpose3d-forward-mode",
        "conv_transpose3d",
        (1, 1, 3, 2, 6),
        (1, 1, 2, 3, 2),
        {"stride": (2, 1, 2), "padding": (0, 0, 1)},
    ),
    (
        "conv_transpose3d-second-order",
        "conv_transpose3d",
        (1, 1, 8, 2, 8),
        (1, 2, 4, 4, 2),
        {"stride": (1, 1, 2), "padding": (0, 1, 1), "dilation": (2, 2, 1)},
    ),
    # 1-D: never aborted, same workaround
    ("conv1d", "conv1d", (2, 3, 8), (4, 3, 2), {"stride": 2, "padding": 1}),
    ("conv_transpose1d", "conv_transpose1d", (2, 3, 4), (3, 2, 2), {"stride": 2, "padding": 1}),
]


def _inputs(case_index: int) -> dict[str, np.ndarray]:
    """Input, weight, bias, output cotangent and the tangents of input, weight and bias."""
    _, fn, x_shape, w_shape, kwargs = CASES[case_index]
    rng = np.random.default_rng(case_index)
    transposed = fn.startswith("conv_transpose")
    out_channels = w_shape[1] * kwargs.get("groups", 1) if transposed else w_shape[0]
    arrays = {"x": x_shape, "w": w_shape, "b": (out_channels,)}
    values = {k: rng.standard_normal(s).astype(np.float32) for k, s in arrays.items()}
    y_shape = jax.eval_shape(lambda x, w, b: _call(F, fn, kwargs, x, w, b), *values.values()).shape
    values["g"] = rng.standard_normal(y_shape).astype(np.float32)
    values.update({"t" + k: rng.standard_normal(s).astype(np.float32) for k, s in arrays.items()})
    return values


def _call(functional: Any, fn: str, kwargs: dict[str, Any], x: Any, w: Any, b: Any) -> Any:
    """``fn`` of ``functional`` (fparam's or torch's), mapped over unbatched inputs for "vmap"."""
    kw = {k: v for k, v in kwargs.items() if k != "vmap"}
    if kwargs.get("vmap") and functional is F:
        return jax.vmap(lambda xi: getattr(F, fn)(xi, w, b, **kw))(x)
    return getattr(functional, fn)(x, w, b, **kw)


def _child(in_path: str, out_path: str) -> None:
    """The child process: fparam's outputs for every case, saved to ``out_path``.

    Self-contained, as its source runs in a fresh interpreter (no torch: it imports slowly).
    Prints each case's name before compiling it, so that an abort names the case.
    """
    import json
    from functools import partial

    import jax
    import jax.numpy as jnp
    import numpy as np

    from fparam.nn.functional import conv as F

    data = np.load(in_path)
    cases = json.loads(str(data["cases"]))
    results = {}
    for i, name, fn, kwargs in cases:
        print(name, flush=True)
        kw = {k: v for k, v in kwargs.items() if k != "vmap"}
        f = partial(getattr(F, fn), **kw)
        if kwargs.get("vmap"):
            f = jax.vmap(f, in_axes=(0, None, None))

        def outputs(x, w, b, g, tx, tw, tb, f=f):
            y, vjp = jax.vjp(f, x, w, b)
            _, ty = jax.jvp(f, (x, w, b), (tx, tw, tb))

            def penalty(x, w, b):  # a gradient penalty: the first gradients' squared norm
                return sum(jnp.sum(t * t) for t in jax.vjp(f, x, w, b)[1](g))

            return (y, *vjp(g), ty, *jax.grad(penalty, argnums=(0, 1, 2))(x, w, b))

        program = jax.jit(outputs, compiler_options={"xla_backend_optimization_level": 0})
        values = program(*(data[f"{i}.{k}"] for k in ("x", "w", "b", "g", "tx", "tw", "tb")))
        for j, value in enumerate(values):
            results[f"{i}.{j}"] = np.asarray(value)
    np.savez(out_path, **results)


def _torch_outputs(case_index: int, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What the child computes, by torch: value, vjp, jvp, then the penalty's gradients."""
    _, fn, _, _, kwargs = CASES[case_index]
    x, w, b = (torch.tensor(arrays[k], requires_grad=True) for k in ("x", "w", "b"))

    def f(x: Any, w: Any, b: Any) -> Any:
        return _call(TF, fn, kwargs, x, w, b)

    y = f(x, w, b)
    first = torch.autograd.grad(y, (x, w, b), torch.tensor(arrays["g"]), create_graph=True)
    penalty = sum((t * t).sum() for t in first)
    # the penalty does not depend on the bias: its gradient there is zero
    second = torch.autograd.grad(penalty, (x, w, b), materialize_grads=True)
    primals = tuple(torch.tensor(arrays[k]) for k in ("x", "w", "b"))
    tangents = tuple(torch.tensor(arrays[k]) for k in ("tx", "tw", "tb"))
    _, ty = torch.func.jvp(f, primals, tangents)
    return [t.detach().numpy() for t in (y, *first, ty, *second)]


OUTPUT_NAMES = ("value", "grad input", "grad weight", "grad bias", "jvp")
OUTPUT_NAMES += tuple(f"penalty {n}" for n in ("grad input", "grad weight", "grad bias"))


def _run_child(tmp_path: Path, case_indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Run ``_child`` on the cases in a fresh interpreter; fail the test if it aborts."""
    arrays = {f"{i}.{k}": v for i in case_indices for k, v in _inputs(i).items()}
    cases = [[i, CASES[i][0], CASES[i][1], CASES[i][4]] for i in case_indices]
    in_path, out_path = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(in_path, cases=json.dumps(cases), **arrays)
    code = textwrap.dedent(inspect.getsource(_child))
    code += f"\n_child({str(in_path)!r}, {str(out_path)!r})\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        printed = done.stdout.split()
        failed = printed[-1] if printed else "(before the first case)"
        reason = [line for line in done.stderr.splitlines() if "Check failed" in line]
        pytest.fail(
            f"the child process died (exit code {done.returncode}) compiling {failed}: "
            + (reason[0] if reason else done.stderr[-2000:])
        )
    with np.load(out_path) as results:
        return {k: results[k] for k in results.files}


def test_previously_aborting_configs_match_torch(tmp_path: Path) -> None:
    indices = range(len(CASES))
    results = _run_child(tmp_path, indices)
    for i in indices:
        expected = _torch_outputs(i, _inputs(i))
        for j, (name, want) in enumerate(zip(OUTPUT_NAMES, expected)):
            got = results[f"{i}.{j}"]
            assert got.shape == want.shape, (CASES[i][0], name)
            tolerance = ATOL + SCALED * float(np.abs(want).max(initial=0.0))
            np.testing.assert_allclose(
                got, want, rtol=0, atol=tolerance, err_msg=f"{CASES[i][0]}: {name}"
            )


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation"),
    [
        (4, 2, 2, 1, 1),  # input gradient: kernel 2, stride 2, padding 1, even size
        (32, 2, 2, 1, 1),
        (4, 3, 1, 1, 2),  # second order: stride 1, dilation 2, padding 1, output size 2
        (2, 4, 2, 3, 1),  # second order: the weight gradient of the input gradient
    ],
)
def test_window_model_flags_the_aborting_dims(
    size: int, kernel: int, stride: int, padding: int, dilation: int
) -> None:
    window = F._ConvWindow(size, kernel, stride, (padding, padding), 1, dilation)
    assert window.derivatives_break_operand_swap()
    # with the padding applied to the input beforehand, no derivative has the bad window
    unpadded = F._ConvWindow(size + 2 * padding, kernel, stride, (0, 0), 1, dilation)
    assert not unpadded.derivatives_break_operand_swap()


@pytest.mark.parametrize(
    ("fn", "x_shape", "w_shape", "kwargs"),
    [  # benchmarks/conv.py's layers and CNN convs, and one with an odd size
        ("conv1d", (16, 64, 1024), (64, 64, 5), {"padding": 2}),
        ("conv2d", (16, 32, 32, 32), (64, 32, 3, 3), {"padding": 1}),
        ("conv2d", (64, 32, 28, 28), (64, 32, 3, 3), {"stride": 2, "padding": 1}),
        ("conv2d", (64, 32, 27, 27), (64, 32, 3, 3), {"stride": 2, "padding": 1}),
        ("conv3d", (8, 16, 16, 16, 16), (32, 16, 3, 3, 3), {"padding": 1}),
        ("conv_transpose1d", (16, 64, 512), (64, 64, 4), {"stride": 2, "padding": 1}),
        ("conv_transpose2d", (16, 64, 16, 16), (64, 32, 4, 4), {"stride": 2, "padding": 1}),
        ("conv_transpose3d", (8, 32, 8, 8, 8), (32, 16, 4, 4, 4), {"stride": 2, "padding": 1}),
    ],
)
def test_common_configs_keep_their_programs(
    monkeypatch: pytest.MonkeyPatch,
    fn: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    kwargs: dict[str, Any],
) -> None:
    """Unaffected configurations trace to the same program as without the workaround."""
    abstract = [jax.ShapeDtypeStruct(s, np.float32) for s in (x_shape, w_shape, x_shape)]

    def derivatives(x: Any, w: Any, tx: Any) -> Any:
        def loss(x: Any, w: Any) -> Any:
            return (getattr(F, fn)(x, w, None, **kwargs) ** 2).sum()

        return jax.grad(loss, argnums=(0, 1))(x, w), jax.jvp(loss, (x, w), (tx, w))

    program = str(jax.make_jaxpr(derivatives)(*abstract))
    monkeypatch.setattr(F._ConvWindow, "derivatives_break_operand_swap", lambda *_: False)
    assert str(jax.make_jaxpr(derivatives)(*abstract)) == program
