"""Placement plans, parallel styles, sharded initialisation (fparam.distributed, issue #14).

Pattern and type checks run here on a one-device mesh; everything that needs several devices
runs in one child process with 8 simulated CPU devices.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from fparam import distributed as dist
from fparam import nn
from fparam.distributed.placement import compile_pattern
from tests.distributed._devices import run_script


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        ("*.weight", ["0.weight", "fc.weight"], ["weight", "a.b.weight", "0.bias"]),
        ("**.weight", ["weight", "0.weight", "a.b.weight"], ["0.weightx", "0.bias"]),
        (
            "layers.*.fc?.weight",
            ["layers.3.fc1.weight"],
            ["layers.3.fc10.weight", "layers.fc1.weight"],
        ),
        (
            "encoder.**",
            ["encoder.0.weight", "encoder.a.b.c"],
            ["encoderx.weight", "decoder.encoder.w"],
        ),
        ("**", ["weight", "a.b"], []),
        ("a[0].w", ["a[0].w"], ["a0.w"]),
    ],
)
def test_patterns_match_dotted_components(pattern, hits, misses) -> None:
    regex = compile_pattern(pattern)
    assert [k for k in hits if regex.match(k)] == hits
    assert [k for k in misses if regex.match(k)] == []


def _mesh():
    return jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_plan_errors_name_what_is_wrong() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    mesh = _mesh()
    with pytest.raises(ValueError, match=r"'3\.weight' matches no key.*0\.weight, 0\.bias"):
        dist.plan_shardings(model, mesh, {"3.weight": P("data")})
    with pytest.raises(ValueError, match=r"'0\.weight' of shape \(6, 4\).*3 entries.*2 dimension"):
        dist.plan_shardings(model, mesh, {"0.weight": P("data", None, None)})
    with pytest.raises(ValueError, match=r"mesh axis 'model', but the mesh has axes \('data',\)"):
        dist.plan_shardings(model, mesh, {"*.bias": P("model")})
    with pytest.raises(ValueError, match="uses mesh axis 'data' twice"):
        dist.plan_shardings(model, mesh, {"0.weight": P("data", "data")})
    with pytest.raises(
        ValueError, match=r"'0\.weight' is never used.*\(0\.weight\).*earlier pattern '\*\.weight'"
    ):
        dist.plan_shardings(model, mesh, {"*.weight": P(), "0.weight": P("data")})
    with pytest.raises(TypeError, match=r"plan entry '0\.weight'.*got str"):
        dist.plan_shardings(model, mesh, {"0.weight": "data"})
    with pytest.raises(TypeError, match="plan keys must be str"):
        dist.plan_shardings(model, mesh, {0: P()})
    with pytest.raises(TypeError, match=r"callable returned tuple"):
        dist.plan_shardings(model, mesh, {"0.weight": lambda key, shape, mesh: ("data",)})
    with pytest.raises(TypeError, match=r"expected a jax\.sharding\.Mesh"):
        dist.distribute(model, "cpu", {})
    with pytest.raises(TypeError, match=r"expected an fparam nn\.Module"):
        dist.fully_shard({"w": np.ones(2)}, mesh=mesh)
    with pytest.raises(
        TypeError,
        match=r"ColwiseParallel places the parameters of nn.Linear and nn.Embedding; '1' is nn.ReLU",
    ):
        dist.parallelize_module(model, mesh, {"1": dist.ColwiseParallel()})
    with pytest.raises(
        ValueError, match=r"key '9' matches no submodule; the submodules are: '0', '1', '2'"
    ):
        dist.parallelize_module(model, mesh, {"9": dist.ColwiseParallel()})
    with pytest.raises(ValueError, match="mesh_axis='model' is not an axis"):
        dist.parallelize_module(model, mesh, {"0": dist.ColwiseParallel()}, mesh_axis="model")


def test_plan_tree_has_the_models_structure_and_first_match_wins() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    mesh = _mesh()
    tree = dist.plan_shardings(
        model, mesh, {"0.weight": P(None, "data"), "*.weight": P("data"), "1.running_*": P("data")}
    )
    assert jax.tree.structure(tree) == jax.tree.structure(model)
    specs = {
        jax.tree_util.keystr(p, simple=True, separator="."): s.spec
        for p, s in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    assert specs == {
        "0.weight": P(None, "data"),
        "0.bias": P(),
        "1.weight": P("data"),
        "1.bias": P(),
        "1.running_mean": P("data"),
        "1.running_var": P("data"),
        "1.num_batches_tracked": P(),
    }
    # a tree built from one instance places another of the same architecture
    other = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    placed = jax.device_put(other, tree)
    assert placed[0].weight.sharding == tree[0].weight
    np.testing.assert_array_equal(np.asarray(placed[0].weight), np.asarray(other[0].weight))
    # abstract models (jax.eval_shape of a constructor) take a plan the same way
    abstract = jax.eval_shape(lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)))
    assert jax.tree.leaves(dist.plan_shardings(abstract, mesh, {"0.weight": P(None, "data")}))[
        0
    ].spec == P(None, "data")


SCRIPT = """
import math
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import fparam
from fparam import nn, optim
from fparam import distributed as dist

mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

def specs(model):
    return {k: v.sharding.spec for k, v in model.state_dict().items()}

def net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 32),
        nn.ReLU(), nn.Linear(32, 10))

# --- distribute by plan: in place, unmatched replicated, all or nothing
m = net()
before = {k: np.asarray(v) for k, v in m.state_dict().items()}
weight_before = m[3].weight
try:
    dist.distribute(m, mesh, {"3.weight": P("model"), "5.weight": P("data")})
    raise AssertionError("expected ValueError")
except ValueError as e:
    assert "'5.weight' of shape (10, 32): dimension 0 (size 10) does not divide over mesh axes ('data',) (together 4 devices)" in str(e), e
assert m[3].weight is weight_before  # nothing moved
out = dist.distribute(m, mesh, {"3.weight": P("model"), "*.weight": dist.ShardFirstDivisible("data")})
assert out is m
assert specs(m) == {"0.weight": P("data"), "0.bias": P(), "3.weight": P("model"),
                    "3.bias": P(), "5.weight": P(None, "data"), "5.bias": P()}, specs(m)
for k, v in m.state_dict().items():
    np.testing.assert_array_equal(np.asarray(v), before[k])
    assert v.sharding.mesh == mesh
print("distribute ok")

# --- TP styles then FSDP compose (2-D); FSDP first then TP composes too
for order in ("tp-first", "fsdp-first"):
    m = net()
    tp = lambda: dist.parallelize_module(
        m, mesh, {"3": dist.ColwiseParallel(), "5": dist.RowwiseParallel()}, mesh_axis="model")
    fs = lambda: dist.fully_shard(m, mesh=mesh, axis="data")
    (tp(), fs()) if order == "tp-first" else (fs(), tp())
    s = specs(m)
    # TP keeps the rows on 'model'; FSDP takes the next free dimension, or joins the rows
    assert s["3.weight"] == (P("model", "data") if order == "tp-first" else P(("model", "data"))), (order, s)
    assert "model" in str(s["5.weight"][1]), (order, s)
    assert s["5.bias"] == P(), (order, s)  # 10 does not divide by 4: replicated
print("compose ok")

# --- styles: Embedding, MHA by heads; errors
emb = nn.Embedding(16, 8)
dist.parallelize_module(emb, mesh, dist.RowwiseParallel(), mesh_axis="model")
assert emb.weight.sharding.spec == P("model")
dist.parallelize_module(emb, mesh, dist.ColwiseParallel(), mesh_axis="model")
assert emb.weight.sharding.spec == P(None, "model")
try:
    dist.parallelize_module(nn.MultiheadAttention(9, 3), mesh, dist.HeadwiseParallel(), mesh_axis="model")
    raise AssertionError
except ValueError as e:
    assert "has 3 heads, which do not divide over mesh axis 'model' of size 2" in str(e), e
try:
    dist.parallelize_module(net(), mesh, {"3": dist.ColwiseParallel()})
    raise AssertionError
except ValueError as e:
    assert "say which one is tensor-parallel with mesh_axis=" in str(e), e
print("styles ok")

# --- the issue's own complaint: device= with a 2-D spec (bias takes the leading entries)
lin = nn.Linear(16, 8, device=NamedSharding(mesh, P("model", None)))
assert (lin.weight.sharding.spec, lin.bias.sharding.spec) == (P("model", None), P("model")), lin
lin = nn.Linear(16, 8, device=NamedSharding(mesh, P(None, "model")))
assert (lin.weight.sharding.spec, lin.bias.sharding.spec) == (P(None, "model"), P(None))
conv = nn.Conv2d(4, 8, 3, device=NamedSharding(mesh, P("data", None, None, None)))
assert conv.bias.sharding.spec == P("data"), conv.bias.sharding
print("device ok")

# --- per-parameter annotations (Logical rules)
class Block(nn.Module):
    partition_axes = {"up": ("embed", "mlp"), "down": ("mlp", "embed")}
    def __init__(self):
        super().__init__()
        self.up = nn.Parameter(jnp.ones((8, 16)))
        self.down = nn.Parameter(jnp.ones((16, 8)))
        self.scale = nn.Parameter(jnp.ones((8,)))
    def forward(self, x):
        return jax.nn.relu(x @ self.up) @ self.down * self.scale
b = dist.distribute(Block(), mesh, {"**": dist.Logical({"mlp": "model", "embed": None})})
assert specs(b) == {"up": P(None, "model"), "down": P("model"), "scale": P()}, specs(b)
try:
    dist.distribute(Block(), mesh, {"**": dist.Logical({"mlp": "model"})})
    raise AssertionError
except ValueError as e:
    assert "'up': logical axis 'embed' (from Block.partition_axes) has no rule" in str(e), e
print("logical ok")

# --- sharded initialisation: placed as planned, torch's distribution, never whole on a device
plan = {"3.weight": P("model", "data"), "**.weight": dist.ShardFirstDivisible("data")}
fparam.manual_seed(3)
s = dist.sharded_init(net, mesh, plan)
assert specs(s)["3.weight"] == P("model", "data") and specs(s)["0.weight"] == P("data")
bound = 1 / math.sqrt(128)
w = np.asarray(s[3].weight)
assert abs(w).max() <= bound and abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound, w.std()
big = lambda: nn.Linear(1024, 1024)
tree = dist.plan_shardings(jax.eval_shape(big), mesh, {"weight": P("model", "data")})
def scoped():
    with fparam.rng(jax.random.key(0)):
        return big()
stats = jax.jit(scoped, out_shardings=tree).lower().compile().memory_analysis()
full = 1024 * 1024 * 4
if stats is not None:
    assert stats.output_size_in_bytes < full / 4, stats
    # measured: 1.6 MB of temporaries (random bits and their conversion, per slice) for a 4 MB
    # weight; a device drawing the whole weight would need more than 4 MB
    assert stats.temp_size_in_bytes < full / 2, stats
fparam.manual_seed(3)
again = dist.sharded_init(net, mesh, plan)
np.testing.assert_array_equal(np.asarray(again[3].weight), w)
print("init ok")

# --- #13: MultiheadAttention by heads under a TP plan trains like one device
mha = nn.MultiheadAttention(16, 4, batch_first=True, key=jax.random.key(0))
ref = nn.MultiheadAttention(16, 4, batch_first=True)
ref.load_state_dict(mha.state_dict())
dist.parallelize_module(mha, mesh, dist.HeadwiseParallel(), mesh_axis="model")
assert specs(mha) == {"in_proj_weight": P("model"), "in_proj_bias": P("model"),
                      "out_proj.weight": P(None, "model"), "out_proj.bias": P()}, specs(mha)
q = jax.random.normal(jax.random.key(1), (4, 5, 16))
def loss(m, q):
    out, w = m(q, q, q)
    return jnp.sum(out ** 2) + jnp.sum(w * jnp.arange(5.0)[None, None, :])
results = []
for model in (ref, mha):
    # SGD: the k part of in_proj_bias has an exactly-zero gradient in theory (softmax ignores a
    # per-query constant), so its computed gradient is rounding noise that Adam would normalise
    # into visible, order-dependent updates
    opt = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    @jax.jit
    def step(m, opt, q):
        value, g = fparam.value_and_grad(loss)(m, q)
        m, opt = opt.step(m, g)
        return m, opt, value
    values = []
    for _ in range(3):
        model, opt, value = step(model, opt, q)
        values.append(float(value))
    results.append((model, values))
np.testing.assert_allclose(results[1][1], results[0][1], rtol=2e-6)
for k, v in results[0][0].state_dict().items():
    np.testing.assert_allclose(np.asarray(results[1][0].state_dict()[k]), np.asarray(v),
                               rtol=1e-5, atol=1e-6, err_msg=k)
assert specs(results[1][0]) == specs(mha)
adam = optim.Adam(mha.parameters(), lr=1e-2)
grads = jax.jit(fparam.grad(loss))(mha, q)
stepped, adam = jax.jit(lambda m, o, g: o.step(m, g))(mha, adam, grads)
assert specs(stepped) == specs(mha)
for path, leaf in jax.tree_util.tree_flatten_with_path(adam)[0][1:]:
    assert leaf.sharding.mesh == mesh, path
print("heads ok")

# --- sharding and spec trees drive jit(in/out_shardings, donation) and shard_map
data = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
crit = nn.CrossEntropyLoss()
x = jax.random.normal(jax.random.key(0), (16, 4))
y = jnp.arange(16) % 3
def fresh():
    fparam.manual_seed(5)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return m, optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
def spmd(m, opt, x, y):
    loss, g = fparam.value_and_grad(lambda m: crit(m(x), y))(m)
    m, opt = opt.step(m, g)
    return m, opt, loss
ref, ref_opt = fresh()
for _ in range(2):
    ref, ref_opt, ref_loss = jax.jit(spmd)(ref, ref_opt, x, y)
m, opt = fresh()
dist.distribute(m, data, {"0.weight": dist.ShardFirstDivisible("data")})
opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
trees = dist.shardings((m, opt))
batch = NamedSharding(data, P("data"))
step = jax.jit(spmd, in_shardings=(*trees, batch, batch),
               out_shardings=(*trees, NamedSharding(data, P())), donate_argnums=(0, 1))
for _ in range(2):
    m, opt, loss = step(m, opt, x, y)
def local(m, opt, x, y):
    # replicated parameters' gradients are summed over the axis by shard_map's transpose,
    # so the loss is averaged first, as in any shard_map data-parallel step
    loss, g = fparam.value_and_grad(lambda m: jax.lax.pmean(crit(m(x), y), "data"))(m)
    m, opt = opt.step(m, g)
    return m, opt, loss
sm, sm_opt = fresh()
dist.distribute(sm, data)
sm_opt = optim.SGD(sm.parameters(), lr=0.1, momentum=0.9)
specs_in = (dist.partition_specs(sm), dist.partition_specs(sm_opt))
assert specs_in[0][0].weight == P() and jax.tree.structure(specs_in[0]) == jax.tree.structure(sm)
sm_step = jax.jit(jax.shard_map(local, mesh=data, in_specs=(*specs_in, P("data"), P("data")),
                                out_specs=(*specs_in, P())))
for _ in range(2):
    sm, sm_opt, sm_loss = sm_step(sm, sm_opt, x, y)
for got, got_opt in ((m, opt), (sm, sm_opt)):
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(np.asarray(got.state_dict()[k]), np.asarray(v), rtol=1e-6, atol=1e-7, err_msg=k)
    for a, b in zip(jax.tree.leaves(got_opt), jax.tree.leaves(ref_opt)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
assert jax.tree.leaves(dist.shardings(m)) == jax.tree.leaves(trees[0])
assert m[0].weight.sharding.spec == P("data")
np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
np.testing.assert_allclose(float(sm_loss), float(ref_loss), rtol=1e-6)
print("trees ok")
"""


def test_placement_on_eight_devices() -> None:
    out = run_script(SCRIPT, devices=8)
    assert out.split("\n")[:-1] == [
        "distribute ok",
        "compose ok",
        "styles ok",
        "device ok",
        "logical ok",
        "init ok",
        "heads ok",
        "trees ok",
    ], out


def test_one_device_mesh_trains_with_one_compile() -> None:
    """An axis of size 1 splits nothing: FSDP over it must not name it, or the step returns the
    other spelling of the same placement and compiles a second time."""
    import fparam
    from fparam import optim

    mesh = _mesh()
    model = dist.fully_shard(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), mesh=mesh)
    assert {v.sharding.spec for v in model.state_dict().values()} == {P()}
    opt = optim.Adam(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    x, y = np.ones((4, 4), np.float32), np.zeros(4, np.int32)

    @jax.jit
    def step(model, opt):
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        return (*opt.step(model, grads), loss)

    for _ in range(3):
        model, opt, _ = step(model, opt)
    assert step._cache_size() == 1


def test_rule_and_init_errors_name_what_is_wrong() -> None:
    mesh = _mesh()
    model = nn.Sequential(nn.Linear(4, 6))
    before = model[0].weight
    with pytest.raises(ValueError, match=r"'0\.weight' of shape \(6, 4\).*names mesh axis 'model'"):
        dist.distribute(model, mesh, {"**": dist.ShardFirstDivisible("model")})
    assert model[0].weight is before  # nothing moved

    class Odd(nn.Module):
        partition_axes: ClassVar[dict[str, tuple[str, ...]]] = {"w": ("embed",)}

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones((2, 3), np.float32))

    with pytest.raises(
        ValueError, match=r"Odd\.partition_axes gives \('embed',\) \(1 names\) for a 2-dimensional"
    ):
        dist.plan_shardings(Odd(), mesh, {"**": dist.Logical({"embed": "data"})})
    with pytest.raises(TypeError, match=r"sharded_init: expected an fparam nn\.Module, got dict"):
        dist.sharded_init(lambda: {"w": np.ones(2)}, mesh)
