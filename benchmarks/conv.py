"""Convolutions: fparam against raw ``jax.lax.conv_general_dilated`` and torch eager.

Two workloads, all contenders starting from the same weights:

  (a) forward + backward (gradients of ``mean(y**2)`` with respect to the weight, the bias and
      the input) of each conv class at a mid size: Conv1d/2d/3d and ConvTranspose1d/2d/3d;
  (b) a full train step (forward, backward, momentum SGD) of the CNN
      ``Conv2d(1,32,3,p=1)-ReLU-Conv2d(32,64,3,s=2,p=1)-ReLU-Conv2d(64,64,3,s=2,p=1)-ReLU-
      Flatten-Linear(3136,10)`` with cross-entropy, batch 64, 28x28 inputs.

"raw JAX" is the same computation written by hand on a dict of arrays: ``lax.conv_general_dilated``
in NCHW/OIHW for a conv, the dilated-input conv with the kernel flipped and its in/out axes
swapped for a transposed conv, and a ``jax.tree.map`` momentum update. "torch eager" runs with
torch's default intra-op threads and again with one thread (on a small shared machine torch's
OpenMP pool can lose more to waiting than it gains). The runs are interleaved and the median of
the repeats is reported, so machine noise hits every contender alike. Each table also says
whether fparam's compiled program is identical to raw JAX's (names and metadata aside), or at
least has the same convolution and dot instructions.

``--investigate`` measures what could make XLA's CPU convolutions faster while staying exact to
torch (see benchmarks/README.md): other layouts and lowerings of the same conv (compared as
compiled programs, and timed where they differ), XLA CPU flags (each in its own worker process,
run in turn), and one core against one core.

Run: ``python benchmarks/conv.py [--steps 10] [--repeats 9] [--only layers|cnn] [--investigate]``
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure
from jax import lax

import fparam
from fparam import nn, optim

LR, MOMENTUM = 0.01, 0.9
SPATIAL = "DHW"

try:
    import torch
except ImportError:  # the benchmark runs without torch; its rows are left out
    torch = None


# --------------------------------------------------------------------------------- raw JAX


def _specs(n: int) -> tuple[str, str, str]:
    spatial = SPATIAL[3 - n :]
    return "NC" + spatial, "OI" + spatial, "NC" + spatial


def raw_conv(x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int) -> jax.Array:
    n = x.ndim - 2
    y = lax.conv_general_dilated(
        x, w, (stride,) * n, [(padding, padding)] * n, dimension_numbers=_specs(n)
    )
    return y + b.reshape((1, -1) + (1,) * n)


def raw_conv_transpose(
    x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int
) -> jax.Array:
    """The gradient of a conv with respect to its input: dilate the input, flip the kernel."""
    n = x.ndim - 2
    w = jnp.flip(jnp.swapaxes(w, 0, 1), axis=tuple(range(2, n + 2)))
    pads = [(k - 1 - padding, k - 1 - padding) for k in w.shape[2:]]
    y = lax.conv_general_dilated(
        x, w, (1,) * n, pads, lhs_dilation=(stride,) * n, dimension_numbers=_specs(n)
    )
    return y + b.reshape((1, -1) + (1,) * n)


def log_softmax_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# --------------------------------------------------------------------------------- workloads

# (class, args, kwargs, input shape): mid sizes, ~0.3-1 GFLOP per forward.
LAYERS = [
    ("Conv1d", (64, 64, 5), {"padding": 2}, (16, 64, 1024)),
    ("Conv2d", (32, 64, 3), {"padding": 1}, (16, 32, 32, 32)),
    ("Conv3d", (16, 32, 3), {"padding": 1}, (8, 16, 16, 16, 16)),
    ("ConvTranspose1d", (64, 64, 4), {"stride": 2, "padding": 1}, (16, 64, 512)),
    ("ConvTranspose2d", (64, 32, 4), {"stride": 2, "padding": 1}, (16, 64, 16, 16)),
    ("ConvTranspose3d", (32, 16, 4), {"stride": 2, "padding": 1}, (8, 32, 8, 8, 8)),
]


def _torch_copy(module: Any, fparam_module: nn.Module) -> Any:
    """A torch module holding ``fparam_module``'s weights (torch's state_dict keys are ours)."""
    sd = {k: torch.from_numpy(np.array(v)) for k, v in fparam_module.state_dict().items()}
    module.load_state_dict(sd)
    return module


def layer_workload(cls: str, args: tuple, kwargs: dict, shape: tuple) -> dict[str, Any]:
    fparam.manual_seed(0)
    layer = getattr(nn, cls)(*args, **kwargs)
    x = jax.random.normal(jax.random.key(1), shape)
    stride, padding = kwargs.get("stride", 1), kwargs.get("padding", 0)
    raw = raw_conv_transpose if cls.startswith("ConvTranspose") else raw_conv

    def fparam_loss(layer: nn.Module, x: jax.Array) -> jax.Array:
        return jnp.mean(layer(x) ** 2)

    def raw_forward(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return raw(x, p["weight"], p["bias"], stride, padding)

    def raw_loss(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return jnp.mean(raw_forward(p, x) ** 2)

    kw = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    out = dict(
        name=f"{cls}({', '.join(map(str, args))}, {kw}) on {shape}",
        fparam_args=(layer, x),
        fparam_step=jax.jit(jax.value_and_grad(fparam_loss, argnums=(0, 1))),
        fparam_out=lambda: layer(x),
        raw_args=({"weight": layer.weight, "bias": layer.bias}, x),
        raw_step=jax.jit(jax.value_and_grad(raw_loss, argnums=(0, 1))),
        raw_out=lambda: raw_forward({"weight": layer.weight, "bias": layer.bias}, x),
        torch=None,
    )
    if torch is not None:
        t_layer = _torch_copy(getattr(torch.nn, cls)(*args, **kwargs), layer)
        t_x = torch.from_numpy(np.array(x)).requires_grad_(True)

        def torch_step() -> Any:
            t_layer.zero_grad()
            t_x.grad = None
            loss = t_layer(t_x).pow(2).mean()
            loss.backward()
            return loss

        out["torch"] = torch_step
        out["torch_out"] = lambda: t_layer(t_x).detach().numpy()
    return out


def make_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3136, 10),
    )


CNN_CONVS = (("0", 1), ("2", 2), ("4", 2))  # (Sequential index, stride), padding 1 everywhere


def cnn_raw_forward(
    p: dict[str, jax.Array], x: jax.Array, conv: Callable[..., jax.Array] | None = None
) -> jax.Array:
    """The CNN by hand on its state_dict; ``conv(x, w, b, stride, padding)`` defaults to NCHW."""
    conv = raw_conv if conv is None else conv
    h = x
    for i, stride in CNN_CONVS:
        h = jax.nn.relu(conv(h, p[f"{i}.weight"], p[f"{i}.bias"], stride, 1))
    h = h.reshape(h.shape[0], -1)
    return h @ p["7.weight"].T + p["7.bias"]


def cnn_data(batch: int = 64) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(2), (batch, 1, 28, 28))
    y = jax.random.randint(jax.random.key(3), (batch,), 0, 10)
    return x, y


def make_raw_train_step(forward: Callable[..., jax.Array]) -> Callable[..., Any]:
    @jax.jit
    def step(params: Any, bufs: Any, lr: Any, momentum: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda p: log_softmax_ce(forward(p, x), y))(params)
        bufs = jax.tree.map(lambda b, g: momentum * b + g, bufs, grads)
        params = jax.tree.map(lambda p, b: p - lr * b, params, bufs)
        return params, bufs, loss

    return step


def cnn_runners() -> tuple[dict[str, Callable[[int], Any]], dict[str, Any]]:
    """Train-step runners for fparam, raw JAX and torch, plus what the checks need."""
    fparam.manual_seed(0)
    model = make_cnn()
    x, y = cnn_data()
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    @jax.jit
    def fparam_step(model: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    params = dict(model.state_dict())
    raw_step = make_raw_train_step(cnn_raw_forward)
    f_state: list[Any] = [model, opt]
    r_state: list[Any] = [params, jax.tree.map(jnp.zeros_like, params)]

    def run_fparam(n: int) -> Any:
        model, opt = f_state
        for _ in range(n):
            model, opt, loss = fparam_step(model, opt, x, y)
        f_state[:] = [model, opt]
        return jax.block_until_ready(loss)

    def run_raw(n: int) -> Any:
        p, b = r_state
        for _ in range(n):
            p, b, loss = raw_step(p, b, LR, MOMENTUM, x, y)
        r_state[:] = [p, b]
        return jax.block_until_ready(loss)

    runners = {"fparam": run_fparam, "raw JAX": run_raw}
    info: dict[str, Any] = dict(
        fparam_lowered=lambda: fparam_step.lower(model, opt, x, y),
        raw_lowered=lambda: raw_step.lower(params, r_state[1], LR, MOMENTUM, x, y),
        model=model,
        params=params,
        x=x,
        y=y,
    )
    if torch is not None:
        t_model = _torch_copy(make_torch_cnn(), model)
        t_opt = torch.optim.SGD(t_model.parameters(), lr=LR, momentum=MOMENTUM)
        t_criterion = torch.nn.CrossEntropyLoss()
        t_x, t_y = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()

        def run_torch(n: int) -> Any:
            for _ in range(n):
                t_opt.zero_grad()
                loss = t_criterion(t_model(t_x), t_y)
                loss.backward()
                t_opt.step()
            return loss.item()

        runners.update(torch_runners(run_torch))
        info["torch_grads"] = lambda: torch_cnn_grads(model, x, y)
    return runners, info


def make_torch_cnn() -> Any:
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(1, 32, 3, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(32, 64, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(64, 64, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(3136, 10),
    )


def torch_cnn_grads(model: nn.Module, x: jax.Array, y: jax.Array) -> dict[str, np.ndarray]:
    """The oracle: torch's loss gradients for the CNN's initial weights."""
    t_model = _torch_copy(make_torch_cnn(), model)
    loss = torch.nn.functional.cross_entropy(
        t_model(torch.from_numpy(np.array(x))), torch.from_numpy(np.array(y)).long()
    )
    loss.backward()
    return {k: p.grad.numpy() for k, p in t_model.named_parameters()}


def torch_runners(run: Callable[[int], Any]) -> dict[str, Callable[[int], Any]]:
    """torch with its default intra-op threads, and (when that is more than one) one thread."""
    default = torch.get_num_threads()
    out = {f"torch eager ({default} thr)": run}
    if default > 1:

        def run_one(n: int) -> Any:
            torch.set_num_threads(1)
            try:
                return run(n)
            finally:
                torch.set_num_threads(default)

        out["torch eager (1 thr)"] = run_one
    return out


# --------------------------------------------------------------------------------- comparing programs


_INSTR = re.compile(r"= (\w+\[[\d,]*\])(?:\{[^}]*\})? (convolution|dot)\(")


def heavy_ops(compiled_text: str) -> collections.Counter:
    """The convolution and dot instructions of a compiled program, by opcode and shape."""
    return collections.Counter(_INSTR.findall(compiled_text))


def normalized_hlo(compiled_text: str) -> list[str]:
    """A compiled program's instructions with names, metadata and debug info stripped."""
    text = re.sub(r", metadata=\{[^}]*\}", "", compiled_text)
    text = re.sub(r"stack_frame_id=\d+", "", text)
    text = re.sub(r"%[\w.\-]+", "%v", text)
    # instructions only: computation headers carry numbered names, the debug tables no values
    return sorted(line.strip() for line in text.splitlines() if "%v = " in line)


def compare_programs(fparam_lowered: Any, raw_lowered: Any) -> str:
    """'identical', 'same conv/dot ops' (the heavy work matches) or 'differs'."""
    a, b = fparam_lowered.compile().as_text(), raw_lowered.compile().as_text()
    if normalized_hlo(a) == normalized_hlo(b):
        return "identical"
    return "same conv/dot ops" if heavy_ops(a) == heavy_ops(b) else "differs"


def print_table(title: str, medians: dict[str, float], extra: str = "") -> None:
    base = medians["raw JAX"]
    print(f"\n{title}")
    width = max(22, *map(len, medians))
    print(f"  {'':{width}s} {'ms/step':>9s} {'/ raw JAX':>10s}   {extra}")
    for name, t in medians.items():
        print(f"  {name:{width}s} {t * 1e3:9.2f} {t / base:10.2f}")


def run_layers(steps: int, repeats: int) -> list[tuple[str, dict[str, float]]]:
    results = []
    for spec in LAYERS:
        w = layer_workload(*spec)

        def runner(step: Callable, args: tuple) -> Callable[[int], Any]:
            def run(n: int) -> Any:
                for _ in range(n):
                    out = step(*args)
                return jax.block_until_ready(out)

            return run

        runners = {
            "fparam": runner(w["fparam_step"], w["fparam_args"]),
            "raw JAX": runner(w["raw_step"], w["raw_args"]),
        }
        same = compare_programs(
            w["fparam_step"].lower(*w["fparam_args"]), w["raw_step"].lower(*w["raw_args"])
        )
        diff = float(jnp.max(jnp.abs(w["fparam_out"]() - w["raw_out"]())))
        note = f"compiled program vs raw: {same}; max |y - raw| {diff:.1e}"
        if w["torch"] is not None:
            runners.update(torch_runners(lambda n, step=w["torch"]: [step() for _ in range(n)]))
            diff_t = float(np.max(np.abs(np.asarray(w["fparam_out"]()) - w["torch_out"]())))
            note += f", |y - torch| {diff_t:.1e}"
        medians = measure(runners, steps, repeats)
        print_table(w["name"], medians, note)
        results.append((w["name"], medians))
    return results


def run_cnn(steps: int, repeats: int) -> tuple[str, dict[str, float]]:
    runners, info = cnn_runners()
    same = compare_programs(info["fparam_lowered"](), info["raw_lowered"]())
    medians = measure(runners, steps, repeats)
    name = "(b) CNN train step, batch 64, 28x28"
    print_table(name, medians, f"compiled program vs raw: {same}")
    return name, medians


# --------------------------------------------------------------------------------- investigation
#
# Alternatives to fparam's lowering (one lax.conv_general_dilated in NCHW/OIHW per conv), as
# local functions: each has torch's conv semantics (cross-correlation, symmetric padding p).


def conv_nhwc(x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int) -> jax.Array:
    """NHWC/HWIO inside, NCHW/OIHW at the boundary (explicit transposes)."""
    h = jnp.transpose(x, (0, 2, 3, 1))
    y = lax.conv_general_dilated(
        h,
        jnp.transpose(w, (2, 3, 1, 0)),
        (stride, stride),
        [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return jnp.transpose(y + b, (0, 3, 1, 2))


def conv_general_padding(x, w, b, stride, padding):
    y = lax.conv_with_general_padding(x, w, (stride, stride), [(padding, padding)] * 2, None, None)
    return y + b[None, :, None, None]


def conv_keyword(**kwargs: Any) -> Callable[..., jax.Array]:
    """``raw_conv`` with extra ``conv_general_dilated`` keywords (precision, element type)."""

    def conv(x, w, b, stride, padding):
        y = lax.conv_general_dilated(
            x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_specs(2), **kwargs
        )
        return y + b[None, :, None, None]

    return conv


def conv_space_to_depth(x, w, b, stride, padding):
    """A strided conv as a stride-1 conv on the space-to-depth input (kernel split by phase).

    Per dim, tap ``k`` reads ``x_pad[o*s + k] = X[k % s][o + k // s]`` with ``X[r][j] =
    x_pad[j*s + r]``, so phases become input channels and the kernel shrinks to
    ``ceil(k / s)``. Its input gradient is a stride-1 conv, not a dilated-input one.
    """
    if stride == 1:
        return raw_conv(x, w, b, stride, padding)
    s = stride
    n, c, height, width = x.shape
    o, _, kh, kw = w.shape
    m_h, m_w = (kh - 1) // s, (kw - 1) // s
    out_h = (height + 2 * padding - kh) // s + 1
    out_w = (width + 2 * padding - kw) // s + 1
    j_h, j_w = out_h + m_h, out_w + m_w
    zero = jnp.zeros((), x.dtype)
    cfg = [(0, 0, 0), (0, 0, 0)]
    cfg += [(padding, j * s - size - padding, 0) for j, size in ((j_h, height), (j_w, width))]
    xs = lax.pad(x, zero, cfg).reshape(n, c, j_h, s, j_w, s).transpose(0, 1, 3, 5, 2, 4)
    wcfg = [(0, 0, 0), (0, 0, 0), (0, (m_h + 1) * s - kh, 0), (0, (m_w + 1) * s - kw, 0)]
    ws = lax.pad(w, zero, wcfg).reshape(o, c, m_h + 1, s, m_w + 1, s).transpose(0, 1, 3, 5, 2, 4)
    y = lax.conv_general_dilated(
        xs.reshape(n, c * s * s, j_h, j_w),
        ws.reshape(o, c * s * s, m_h + 1, m_w + 1),
        (1, 1),
        [(0, 0), (0, 0)],
        dimension_numbers=_specs(2),
    )
    return y + b[None, :, None, None]


def conv_im2col(x, w, b, stride, padding):
    """Patches by strided slices, then one matmul (XLA's dot instead of its conv)."""
    n, c, height, width = x.shape
    o, _, kh, kw = w.shape
    xp = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    cols = [
        lax.slice(
            xp,
            (0, 0, i, j),
            (n, c, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1),
            (1, 1, stride, stride),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    y = jnp.einsum("nckhw,ock->nohw", jnp.stack(cols, axis=2), w.reshape(o, c, kh * kw))
    return y + b[None, :, None, None]


def _max_grad_error(forward: Callable[..., jax.Array], info: dict[str, Any]) -> float:
    grads = jax.jit(
        jax.grad(lambda p: log_softmax_ce(forward(p, info["x"]), info["y"])),
    )(info["params"])
    expected = info["torch_grads"]()
    return max(float(np.max(np.abs(np.asarray(grads[k]) - expected[k]))) for k in expected)


def investigate_lowerings(steps: int, repeats: int) -> None:
    """Same CNN step, other ways to write its convs: compiled program identical? else timed."""
    runners, info = cnn_runners()
    params, x, y = info["params"], info["x"], info["y"]
    bufs = jax.tree.map(jnp.zeros_like, params)

    def program(forward: Callable[..., jax.Array]) -> list[str]:
        step = make_raw_train_step(forward)
        return normalized_hlo(step.lower(params, bufs, LR, MOMENTUM, x, y).compile().as_text())

    variants: dict[str, Callable[..., jax.Array]] = {
        "NHWC/HWIO inside, transposes at the boundary": conv_nhwc,
        "lax.conv_with_general_padding": conv_general_padding,
        "preferred_element_type=float32": conv_keyword(preferred_element_type=jnp.float32),
        "precision=HIGHEST": conv_keyword(precision=lax.Precision.HIGHEST),
        "precision=DEFAULT": conv_keyword(precision=lax.Precision.DEFAULT),
        "space-to-depth for strided convs": conv_space_to_depth,
        "im2col + dot": conv_im2col,
    }
    base = program(cnn_raw_forward)
    print("\n[investigate] other lowerings of the CNN's convs (raw JAX train step)")
    if torch is not None:
        print(
            f"  max |grad - torch grad|, NCHW lax (fparam's): {_max_grad_error(cnn_raw_forward, info):.1e}"
        )
    timed: dict[str, Callable[[int], Any]] = {"raw JAX": runners["raw JAX"]}
    for name, conv in variants.items():
        forward = lambda p, x, conv=conv: cnn_raw_forward(p, x, conv)  # noqa: E731
        same = program(forward) == base
        err = f", max |grad - torch grad| {_max_grad_error(forward, info):.1e}" if torch else ""
        print(f"  {name:46s} compiled program identical: {'yes' if same else 'no'}{err}")
        if not same:
            step = make_raw_train_step(forward)
            state = [params, bufs]

            def run(n: int, step: Callable = step, state: list = state) -> Any:
                p, b = state
                for _ in range(n):
                    p, b, loss = step(p, b, LR, MOMENTUM, x, y)
                state[:] = [p, b]
                return jax.block_until_ready(loss)

            timed[name] = run
    for precision in ("highest", "bfloat16"):
        with jax.default_matmul_precision(precision):
            same = program(cnn_raw_forward) == base
        name = f"jax.default_matmul_precision({precision!r})"
        print(f"  {name:46s} compiled program identical: {'yes' if same else 'no'}")
    if len(timed) > 1:
        print_table("  timed (those whose program differs)", measure(timed, steps, repeats))


# XLA CPU flags of this jaxlib (from XLA_FLAGS=--help), each in its own worker process.
FLAG_VARIANTS = {
    "default (YNNPACK convs)": "",
    "Eigen convs (ynn -individual_convolution)": (
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
    ),
    "no YNNPACK (convs, dots, reduces)": (
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot,-reduce"
    ),
    "--xla_cpu_use_xnnpack=false": "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_multi_thread_eigen=false": "--xla_cpu_multi_thread_eigen=false",
    "opt preset FAST_RUNTIME": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    "oneDNN dots (use_onednn, fusion dot)": (
        "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot"
    ),
}


def worker(kind: str, cpus: str | None) -> None:
    """Serve ``--investigate``: build one contender, then run N steps per line read."""
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    if kind.startswith("torch"):
        torch.set_num_threads(int(kind.split(":")[1]))
    runners, _ = cnn_runners()
    run = runners[f"torch eager ({torch.get_num_threads()} thr)" if kind != "jax" else "fparam"]
    run(2)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        wall, cpu = time.perf_counter(), time.process_time()
        run(n)
        print((time.perf_counter() - wall) / n, (time.process_time() - cpu) / n, flush=True)


def run_workers(configs: dict[str, tuple[str, str, str | None]], steps: int, repeats: int) -> None:
    """Worker processes, one per config, run in turn (never two at once); medians."""
    procs = {}
    for name, (kind, flags, cpus) in configs.items():
        cmd = [sys.executable, __file__, "--worker", kind] + (["--cpus", cpus] if cpus else [])
        env = dict(os.environ, XLA_FLAGS=flags)
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
    alive = {}
    for name, proc in procs.items():
        if proc.stdout.readline().strip() == "ready":
            alive[name] = proc
        else:
            error = [line for line in proc.stderr.read().splitlines() if line.strip()]
            print(f"  {name:44s} failed: {error[-1][:90] if error else proc.wait()}")
    wall: dict[str, list[float]] = {k: [] for k in alive}
    cpu: dict[str, list[float]] = {k: [] for k in alive}
    for r in range(repeats):
        for name in list(alive) if r % 2 == 0 else list(alive)[::-1]:
            alive[name].stdin.write(f"{steps}\n")
            alive[name].stdin.flush()
            w, c = map(float, alive[name].stdout.readline().split())
            wall[name].append(w)
            cpu[name].append(c)
    for proc in alive.values():
        proc.stdin.close()
        proc.wait()
    first = next(iter(alive))
    base_w, base_c = statistics.median(wall[first]), statistics.median(cpu[first])
    print(f"  {'':44s} {'wall ms':>8s} {'ratio':>6s} {'cpu ms':>8s} {'ratio':>6s}")
    for name in alive:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:44s} {w * 1e3:8.1f} {w / base_w:6.2f} {c * 1e3:8.1f} {c / base_c:6.2f}")


def investigate_flags(steps: int, repeats: int) -> None:
    print("\n[investigate] XLA CPU flags, fparam CNN train step (one process per flag set)")
    run_workers({k: ("jax", v, None) for k, v in FLAG_VARIANTS.items()}, steps, repeats)
    if torch is None:
        return
    print("\n[investigate] one core each (cpu ms: process CPU time, robust to sharing the core)")
    run_workers(
        {
            "fparam, 1 core": ("jax", "", "0"),
            "fparam, Eigen convs, 1 core": ("jax", FLAG_VARIANTS[list(FLAG_VARIANTS)[1]], "0"),
            "torch eager, 1 thread, 1 core": ("torch:1", "", "0"),
            f"fparam, {os.cpu_count()} cores": ("jax", "", None),
            f"torch eager, {torch.get_num_threads()} threads": (
                f"torch:{torch.get_num_threads()}",
                "",
                None,
            ),
        },
        steps,
        repeats,
    )


# --------------------------------------------------------------------------------- main


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]}, {len(names)} cpus" if names else "unknown cpu"
    except OSError:
        return "unknown cpu"


def main(
    steps: int = 10, repeats: int = 9, only: str | None = None, investigate: bool = False
) -> list[tuple[str, dict[str, float]]]:
    t_info = f"; torch {torch.__version__}, {torch.get_num_threads()} threads" if torch else ""
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({cpu_model()}){t_info}; "
        f"{steps} steps x {repeats} repeats"
    )
    results = []
    if only in (None, "layers"):
        print("\n(a) forward + backward (grads of weight, bias and input)")
        results += run_layers(steps, repeats)
    if only in (None, "cnn"):
        results.append(run_cnn(steps, repeats))
    if investigate:
        investigate_lowerings(steps, repeats)
        investigate_flags(steps, repeats)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", choices=["layers", "cnn"])
    parser.add_argument("--investigate", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.cpus)
    else:
        main(args.steps, args.repeats, args.only, args.investigate)
