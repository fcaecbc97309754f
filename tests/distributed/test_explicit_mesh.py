"""Layers on meshes whose axes are ``Explicit`` (``jax.make_mesh``'s default in current JAX).

One child with 8 simulated devices places ten layers (each with an SGD-momentum or Adam
optimizer) by ``jax.device_put`` with hand-built ``NamedSharding`` trees: data parallel (DP),
fully sharded (FSDP: dim 0 of each parameter over ``'data'``), tensor parallel (TP: dim 0 over
``'model'``, column parallel) and row parallel (in-features over ``'model'``, with the input's
features), on a ``('data', 'model')`` mesh of shape (4, 2) and a ``('data',)`` mesh of 8.
All layers of one placement run in one jitted train step (loss, ``fparam.value_and_grad``,
``opt.step``), compared with the same step on one device: losses, outputs, gradients, updated
parameters and BatchNorm statistics, and the shardings of outputs, gradients and parameters.
Four more layers (Bilinear, GroupNorm, PReLU, GRU) run under FSDP; the (8,) mesh runs without
``jax.set_mesh`` (the arrays' types carry the mesh). On an Auto mesh the traced programs hold
no resharding at all: the plain path is untouched.
"""

from __future__ import annotations

from tests.distributed._devices import run_script

SCRIPT = r"""
import contextlib
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import fparam
from fparam import nn, optim

LABELS = np.random.default_rng(1).integers(0, 8, 8)
CLASS_WEIGHTS = jnp.linspace(0.5, 1.5, 8)
FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
rng = np.random.default_rng(0)

def normal(*shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)

fparam.manual_seed(0)
# name: (layer, input, call, is the input's dim 1 its feature dim for row parallelism)
LAYERS = {
    "Linear": (nn.Linear(6, 8), normal(8, 6), lambda m, x: m(x)),
    "Conv1d": (nn.Conv1d(4, 8, 3), normal(8, 4, 7), lambda m, x: m(x)),
    "Conv2d": (nn.Conv2d(4, 8, 3, padding=1), normal(8, 4, 5, 5), lambda m, x: m(x)),
    "ConvTranspose2d": (
        nn.ConvTranspose2d(8, 4, 3, stride=2), normal(8, 8, 3, 3), lambda m, x: m(x)
    ),
    "Embedding": (
        nn.Embedding(16, 6), jnp.asarray(rng.integers(0, 16, (8, 3))), lambda m, x: m(x)
    ),
    "LayerNorm": (nn.LayerNorm(8), normal(8, 3, 8), lambda m, x: m(x)),
    "BatchNorm2d": (nn.BatchNorm2d(8), normal(8, 8, 3, 3), lambda m, x: m(x)),
    "MultiheadAttention": (
        nn.MultiheadAttention(8, 2, batch_first=True),
        normal(8, 5, 8),
        lambda m, x: m(x, x, x)[0],
    ),
    "TransformerEncoderLayer": (
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        normal(8, 5, 8),
        lambda m, x: m(x),
    ),
    "LSTM": (nn.LSTM(4, 8, batch_first=True), normal(8, 5, 4), lambda m, x: m(x)[0]),
}
NAMES = list(LAYERS)
# More layers whose functions have an Explicit-mesh path, checked under FSDP only.
EXTRA = {
    "Bilinear": (nn.Bilinear(4, 6, 8), (normal(8, 4), normal(8, 6)), lambda m, x: m(*x)),
    "GroupNorm": (nn.GroupNorm(2, 8), normal(8, 8, 3), lambda m, x: m(x)),
    "PReLU": (nn.PReLU(8), normal(8, 8, 3), lambda m, x: m(x)),
    "GRU": (nn.GRU(4, 8, batch_first=True), normal(8, 5, 4), lambda m, x: m(x)[0]),
}
LAYERS.update(EXTRA)
ALL = list(LAYERS)
# Row parallelism: the input's features and the weight's in-features over 'model'.
ROW = {"Linear": (P("data", "model"), P(None, "model")), "Conv2d": (P("data", "model"), P(None, "model"))}


# Output shardings under TP (dim 0 of every parameter over 'model'), where the features are
# sharded: a weight's out-dim over 'model' shards them (Linear, Conv*, MultiheadAttention's
# out_proj); elsewhere outputs keep the input's sharding: ('data',) on the batch. A transposed
# conv's dim 0 is its in-channels (a sharded contraction: summed) and an embedding's is the
# vocabulary.
TP_OUT = {
    "Linear": ("data", "model"),
    "Conv1d": ("data", "model"),
    "Conv2d": ("data", "model"),
    "MultiheadAttention": ("data", None, "model"),
    "TransformerEncoderLayer": ("data", None, "model"),
}
# Adam divides by the gradient's scale, so a gradient that is zero up to rounding (the key
# bias of attention) moves by lr: SGD there.
ADAM = {"Linear", "Conv1d", "ConvTranspose2d", "Embedding", "LayerNorm", "LSTM", "GRU", "PReLU"}


def optimizers(names, models):
    return tuple(
        optim.Adam(m.parameters(), lr=0.01) if name in ADAM
        else optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for name, m in zip(names, models)
    )


def step(names, models, opts, xs):
    # One train step per layer: output, loss, gradients, updated layer.
    outs, losses, grads, news = [], [], [], []
    for name, m, opt, x in zip(names, models, opts, xs):
        call = LAYERS[name][2]

        def loss(m):
            y = call(m, x)
            value = jnp.sum(jnp.sin(y) * y)
            if name == "Linear":  # a class-dim gather on logits that TP shards over 'model'
                value = value + nn.functional.cross_entropy(y, LABELS, weight=CLASS_WEIGHTS)
            return value, y

        (value, y), g = fparam.value_and_grad(loss, has_aux=True)(m)
        m2, _ = opt.step(m, g)
        outs.append(y), losses.append(value), grads.append(g), news.append(m2)
    return outs, losses, grads, news


train_step = jax.jit(step, static_argnums=0, compiler_options=FAST)
models = tuple(LAYERS[n][0] for n in ALL)
inputs = tuple(LAYERS[n][1] for n in ALL)
reference = train_step(tuple(ALL), models, optimizers(ALL, models), inputs)
reference = dict(zip(ALL, zip(*jax.device_get(reference))))
# Placed from host copies: a device_put from one device to a sharding compiles a program.
on_host = dict(zip(ALL, zip(jax.device_get(models), jax.device_get(inputs))))


def spec_for(kind, name, leaf, mesh):
    size = dict(zip(mesh.axis_names, mesh.axis_sizes))
    if kind == "row":
        return ROW[name][1] if leaf.ndim >= 2 else P()
    axis = {"fsdp": "data", "tp": "model"}.get(kind)
    if axis is None or leaf.ndim == 0 or leaf.shape[0] % size[axis]:
        return P()
    return P(axis)


def leaf_spec(x):
    spec = tuple(x.sharding.spec)
    spec = spec + (None,) * (x.ndim - len(spec))
    while spec and spec[-1] is None:
        spec = spec[:-1]
    return spec


def close(a, b, what, tol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    err = np.max(np.abs(a - b) / (1 + np.abs(b))) if a.size else 0.0
    assert err < tol, f"{what}: relative error {err:.2e}"
    return err


worst = 0.0
for shape, axes, kinds in (
    ((4, 2), ("data", "model"), ("fsdp", "tp", "row")),
    ((8,), ("data",), ("dp",)),
):
    mesh = jax.make_mesh(shape, axes, axis_types=(AxisType.Explicit,) * len(axes))
    # The (8,) mesh runs without jax.set_mesh: the arrays' types carry it.
    with jax.set_mesh(mesh) if len(shape) == 2 else contextlib.nullcontext():
        for kind in kinds:
            names = {"row": tuple(ROW), "fsdp": tuple(ALL)}.get(kind, tuple(NAMES))
            placed, placed_x = [], []
            for name in names:
                m, x = on_host[name]
                tree = jax.tree.map(lambda p: NamedSharding(mesh, spec_for(kind, name, p, mesh)), m)
                placed.append(jax.device_put(m, tree))
                xspec = ROW[name][0] if kind == "row" else P("data")
                placed_x.append(jax.device_put(x, NamedSharding(mesh, xspec)))
            got = train_step(names, tuple(placed), optimizers(names, placed), tuple(placed_x))
            host = jax.device_get(got)
            for name, m, out, value, grads, new_m, h in zip(names, placed, *got, zip(*host)):
                tag = f"{name} {kind} mesh {shape}"
                h_out, h_value, h_grads, h_new = h
                r_out, r_value, r_grads, r_new = reference[name]
                worst = max(worst, close(h_value, r_value, tag + " loss"))
                worst = max(worst, close(h_out, r_out, tag + " output"))
                # The batch keeps the input's sharding.
                assert leaf_spec(out)[:1] == ("data",), (tag, out.sharding.spec)
                for key, _ in m.named_parameters():
                    p, g, new = (getattr_path(t, key) for t in (m, grads, new_m))
                    for what, a, b in (("grad", h_grads, r_grads), ("step", h_new, r_new)):
                        a, b = getattr_path(a, key), getattr_path(b, key)
                        worst = max(worst, close(a, b, f"{tag} {what} {key}"))
                    # Gradients and updated parameters keep the parameter's sharding.
                    assert leaf_spec(g) == leaf_spec(p), (tag, key, g.sharding.spec, p.sharding.spec)
                    assert leaf_spec(new) == leaf_spec(p), (tag, key, new.sharding.spec)
                for key, _ in m.named_buffers():
                    b, new = getattr_path(m, key), getattr_path(new_m, key)
                    a, r = getattr_path(h_new, key), getattr_path(r_new, key)
                    worst = max(worst, close(a, r, f"{tag} buffer {key}"))
                    assert leaf_spec(new) == leaf_spec(b), (tag, key, new.sharding.spec)
                # The rule of fparam.nn.functional._sharding on the feature dim: the weight's
                # out-dim sharding (TP), gathered when the batch uses the axis (FSDP), summed
                # over a sharded contraction (row parallel).
                want = ("data",)
                if kind == "tp":
                    want = TP_OUT.get(name, want)
                assert leaf_spec(out) == want, (tag, out.sharding.spec)
print(f"worst relative error {worst:.2e}")

# On an Auto mesh the layers run their plain code: no reshard, no Auto-mode region.
auto = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
with jax.set_mesh(auto):
    for name, m, x in zip(ALL, models, inputs):
        m.eval()
        text = str(jax.make_jaxpr(lambda m, x: LAYERS[name][2](m, x))(m, x))
        assert "reshard" not in text and "mesh_cast" not in text, name
"""

HELPERS = r"""
def getattr_path(module, key):
    for part in key.split("."):
        module = getattr(module, part)
    return module
"""


def test_layers_on_explicit_meshes_match_one_device() -> None:
    out = run_script(HELPERS + SCRIPT, devices=8)
    assert "worst relative error" in out
