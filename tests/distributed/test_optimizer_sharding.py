"""Optimizer state on a mesh: born with its parameter's sharding, kept, and ZeRO-sharded.

On 8 simulated devices (one child process: ``_devices.run_script``):

* every optimizer (torch's nine and ``optim.Optax``) over a model whose parameters are
  replicated (data parallel), sharded on dim 0 (FSDP) and on dim 1 (tensor parallel) creates
  each state array with its parameter's sharding, and keeps it through jitted steps, a new
  ``lr`` and a scheduler (no new compile), ``load_state_dict`` (its own state_dict, and torch's
  format with NumPy arrays) and ``copy.deepcopy``. Leaves are matched to their parameters by
  their tree paths (``.state['0.weight']['exp_avg']``).
* ``fparam.distributed.shard_optimizer_state`` (ZeRO-1/2): replicated parameters, state sharded
  over ``data``; 5 jitted steps of Adam, SGD(momentum) and optax's Adam equal the one-device
  run, the state keeps ``P('data')`` through everything above, and the parameters stay
  replicated; also on a mesh with ``Explicit`` axes.
"""

from __future__ import annotations

from tests.distributed._devices import run_script

SCRIPT = r"""
import copy, re
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P, AxisType
import fparam
from fparam import nn, optim
from fparam.distributed import shard_optimizer_state

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
STATE = re.compile(r"^\.state\['([^']+)'\]")


def make(seed=0):
    fparam.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5))


def loss(m, x):
    return jnp.mean(m(x) ** 2)


def step(m, opt, x):
    return opt.step(m, fparam.grad(loss)(m, x))


def fresh():
    # A new function each time: jit's cache (and _cache_size) is per function.
    return jax.jit(lambda m, opt, x: step(m, opt, x), compiler_options=FAST)


def key_of(path):
    return jax.tree_util.keystr(path, simple=True, separator=".")


def place(m, specs, mesh):
    return jax.device_put(
        m, jax.tree_util.tree_map_with_path(lambda p, _: NamedSharding(mesh, specs[key_of(p)]), m)
    )


def check(opt, expect, where):
    # expect(key, shape) -> the NamedSharding a state leaf of that parameter must have.
    n = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0][1:]:
        match = STATE.match(jax.tree_util.keystr(path))
        if match is None:  # optax's count
            assert leaf.sharding.is_fully_replicated, (where, path)
            continue
        want = expect(match.group(1), leaf.shape)
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
            where, jax.tree_util.keystr(path), leaf.sharding, want)
        n += 1
    assert n > 0, where


def numpy_state_dict(opt):
    sd = opt.state_dict()
    state = {i: {k: np.asarray(v) for k, v in s.items()} for i, s in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def torch_format(opt):
    # What torch's state_dict() holds, as NumPy: int keys, every state value an array.
    sd = numpy_state_dict(opt)
    if "optax" in sd["state"]:
        return sd
    return {"state": {int(i): s for i, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


rng = np.random.default_rng(0)
xs = [jnp.asarray(rng.normal(size=(16, 8)), jnp.float32) for _ in range(5)]

# ---------------------------------------------------------------- state follows its parameter
mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
SPECS = {"0.weight": P("data"), "0.bias": P("data"), "2.weight": P(None, "model"),
         "2.bias": P(), "4.weight": P(), "4.bias": P()}
OPTIMIZERS = {
    "SGD": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    "Adam": lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
    "AdamW": lambda p: optim.AdamW(p, lr=0.01),
    "RMSprop": lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "Adagrad": lambda p: optim.Adagrad(p, lr=0.1),
    "Adadelta": lambda p: optim.Adadelta(p),
    "Adamax": lambda p: optim.Adamax(p),
    "NAdam": lambda p: optim.NAdam(p),
    "RAdam": lambda p: optim.RAdam(p),
    "Optax": lambda p: optim.Optax(optax.adam(1e-2), p),
}
xd = jax.device_put(xs[0], NamedSharding(mesh, P("data")))
# All ten optimizers step in one jitted program (one compile).
ms, opts, schedulers = [], [], []
for name, build in OPTIMIZERS.items():
    m = place(make(), SPECS, mesh)
    ms.append(m)
    opts.append(build(m.parameters()))
    # Built before the loop, as in torch (it adds 'initial_lr' to the groups: structure).
    schedulers.append(None if name == "Optax" else optim.lr_scheduler.StepLR(opts[-1], 1, 0.5))
own = lambda key, shape: NamedSharding(mesh, SPECS[key])


def check_all(where):
    for name, opt in zip(OPTIMIZERS, opts):
        check(opt, own, f"{name}: {where}")


def step_all():
    global ms, opts
    with jax.numpy_dtype_promotion("standard"):  # optax's own promotion
        ms, opts = jitted(ms, opts, xd)


jitted = jax.jit(lambda ms, opts, x: tuple(map(list, zip(*(step(m, o, x) for m, o in zip(ms, opts))))),
                 compiler_options=FAST)
check_all("built")
step_all()
step_all()
check_all("jitted steps")
for m in ms:
    for k, leaf in jax.tree_util.tree_flatten_with_path(m)[0]:
        assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, SPECS[key_of(k)]), leaf.ndim)
for opt in opts[:-1]:  # optax's lr lives in the transformation
    opt.param_groups[0]["lr"] = 0.005
step_all()
opts = [opt if s is None else s.step(opt) for opt, s in zip(opts, schedulers)]
step_all()
check_all("lr and scheduler")
for opt in opts:
    opt.load_state_dict(numpy_state_dict(opt))
check_all("load_state_dict")
step_all()
for opt in opts:
    opt.load_state_dict(torch_format(opt))
check_all("torch-format load_state_dict")
opts = copy.deepcopy(opts)
check_all("deepcopy")
step_all()
check_all("step after all")
assert jitted._cache_size() == 1, jitted._cache_size()

# ---------------------------------------------------------------- ZeRO-1/2
def zero(shape):
    # The first dimension divisible by 8 sharded over 'data'; nothing divides: replicated.
    for d, n in enumerate(shape):
        if n % 8 == 0:
            return P(*([None] * d), "data")
    return P()


def pair():
    def steps(ms, os, x):
        with jax.numpy_dtype_promotion("standard"):  # optax's own promotion
            return tuple(map(list, zip(*(step(m, o, x) for m, o in zip(ms, os)))))

    return jax.jit(steps, compiler_options=FAST)


errors = {}
builds = [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.01),
          lambda p: optim.Optax(optax.adam(1e-2), p)]
# The one-device run.
m1 = [make(1) for _ in builds]
o1 = [build(m.parameters()) for build, m in zip(builds, m1)]
for o in o1[:2]:
    optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)  # as the sharded ones below
one = pair()
for x in xs:
    m1, o1 = one(m1, o1, x)
for axis_type in (AxisType.Auto, AxisType.Explicit):
    mesh8 = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    data = lambda x: jax.device_put(x, NamedSharding(mesh8, P("data")))
    # On an Explicit mesh a jitted step returns P(None, None), not P(): placed so, the
    # second call has the first one's input signature.
    replicate = lambda m: jax.device_put(m, jax.tree.map(
        lambda x: NamedSharding(mesh8, P(*[None] * x.ndim) if axis_type == AxisType.Explicit
                                else P()), m))
    mz = [replicate(make(1)) for _ in builds]
    oz = [shard_optimizer_state(build(m.parameters()), mesh8, axis="data")
          for build, m in zip(builds, mz)]
    schedulers = [optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in oz[:2]]
    expect = lambda key, shape: NamedSharding(mesh8, zero(shape))

    def check_zero(where):
        for o in oz:
            check(o, expect, f"ZeRO {type(o).__name__} {axis_type}: {where}")
        for m in mz:
            assert all(p.sharding.is_fully_replicated for p in jax.tree.leaves(m)), where

    check_zero("sharded")
    jitted = pair()
    for x in xs:
        mz, oz = jitted(mz, oz, data(x))
    check_zero("5 jitted steps")
    err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0))  # on the host: no compiles
              for a, b in zip(jax.tree.leaves((m1, o1)), jax.tree.leaves((mz, oz))))
    errors[str(axis_type)] = err
    assert err < 1e-6, (axis_type, err)  # measured: 6e-8
    for o in oz[:2]:
        o.param_groups[0]["lr"] = 0.02
    mz, oz = jitted(mz, oz, data(xs[0]))
    oz = [s.step(o) for s, o in zip(schedulers, oz[:2])] + oz[2:]
    for o in oz:
        o.load_state_dict(torch_format(o))
    check_zero("lr, scheduler, torch-format load_state_dict")
    oz = copy.deepcopy(oz)
    mz, oz = jitted(mz, oz, data(xs[1]))
    check_zero("after all")
    assert jitted._cache_size() == 1, (axis_type, jitted._cache_size())

# A parameter sharded over 'model' (tensor parallel) keeps that and adds 'data'; over 'data'
# (FSDP) it stays as it is; the packed vector is replicated.
m = place(make(), SPECS, mesh)
opt = shard_optimizer_state(optim.Adam(m.parameters()), axis="data")  # the parameters' mesh
specs = {jax.tree_util.keystr(p): l.sharding.spec for p, l in jax.tree_util.tree_flatten_with_path(opt)[0]}
assert specs[".hyperparameters"] == P()
assert specs[".state['0.weight']['exp_avg']"] == P("data"), specs
assert specs[".state['2.weight']['exp_avg']"] == P("data", "model"), specs
assert specs[".state['4.bias']['exp_avg']"] == P(), specs  # 5 does not divide by 4
print("max ZeRO error vs one device:", errors)
"""


def test_optimizer_state_placement_and_zero_on_8_devices() -> None:
    out = run_script(SCRIPT, devices=8)
    assert "max ZeRO error" in out


def test_shard_optimizer_state_refuses_bad_arguments_clearly() -> None:
    import jax
    import jax.numpy as jnp
    import pytest

    from fparam import nn, optim
    from fparam.distributed import shard_optimizer_state

    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    m = nn.Linear(2, 2, key=jax.random.key(0))
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    # One device, no sharding asked for: the pytree structure records no placement, so
    # single-device programs are compiled exactly as before.
    assert jax.tree.structure(opt).node_data()[1].placement is None
    with pytest.raises(TypeError, match=r"expects an fparam optimizer.*got dict"):
        shard_optimizer_state({}, mesh)  # type: ignore[type-var]
    with pytest.raises(ValueError, match=r"axis 'batch' is not an axis of the mesh.*'data'"):
        shard_optimizer_state(opt, mesh, axis="batch")
    with pytest.raises(TypeError, match=r"axis must be a mesh axis name.*got int 0"):
        shard_optimizer_state(opt, mesh, axis=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mesh must be a jax.sharding.Mesh, got str"):
        shard_optimizer_state(opt, "data")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no mesh given.*pass mesh="):
        shard_optimizer_state(opt)
    with pytest.raises(TypeError, match=r"min_size must be an int >= 0, got int -1"):
        shard_optimizer_state(opt, mesh, min_size=-1)
    with pytest.raises(RuntimeError, match=r"outside jax.jit"):
        jax.jit(lambda o: shard_optimizer_state(o, mesh))(opt)
    assert shard_optimizer_state(opt, mesh) is opt
    assert jax.tree.structure(opt).node_data()[1].placement is not None
    grads = jax.tree.map(jnp.ones_like, m)
    _, opt2 = opt.step(m, grads)  # an eager step on the one-device mesh
    assert jax.tree.structure(opt2) == jax.tree.structure(opt)


def test_state_sharding_rule_shards_the_first_dimension_that_divides() -> None:
    from jax.sharding import AbstractMesh
    from jax.sharding import PartitionSpec as P

    from fparam.distributed import StateSharding

    mesh = AbstractMesh((4, 2), ("data", "model"))
    rule = StateSharding(mesh, "data")
    assert rule.spec((16, 8)) == P("data", None)
    assert rule.spec((5, 16)) == P(None, "data")  # 5 does not divide by 4
    assert rule.spec((5,)) == P(None)
    assert rule.spec(()) == P()
    # Tensor parallel: 'model' kept, 'data' added to the first unsharded dimension that divides.
    assert rule.spec((8, 6), P(None, "model")) == P("data", "model")
    assert rule.spec((6, 8), P("model")) == P("model", "data")
    # Only the sharded dimension divides: 'data' joins it.
    assert rule.spec((8, 3), P("model")) == P(("model", "data"), None)
    assert rule.spec((8, 6), P("data")) == P("data", None)  # FSDP: already over 'data'
    assert StateSharding(mesh, "data", 100).spec((8, 8)) == P(None, None)  # min_size
    assert StateSharding(mesh, ("data", "model")).spec((5, 16)) == P(None, ("data", "model"))
    assert rule == StateSharding(mesh, "data") and hash(rule) == hash(StateSharding(mesh, "data"))
    assert rule != StateSharding(mesh, "model")
