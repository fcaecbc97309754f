"""Modules as JAX pytrees: transformations, tree paths, static state, fparam.grad, mutation
guards, the refusal of shared objects, the key stream and deepcopy."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fparam
from fparam import _random, nn


def expand(v, x):
    """``v`` with leading unit axes up to ``x``'s rank (the suite forbids implicit rank promotion)."""
    return jnp.reshape(v, (1,) * (x.ndim - v.ndim) + v.shape)


class Lin(nn.Module):
    def __init__(self, i, o, *, key=None):
        super().__init__()
        wkey, bkey = jax.random.split(_random.resolve_key(key))
        bound = 1.0 / np.sqrt(i)
        self.weight = nn.Parameter(jax.random.uniform(wkey, (o, i), minval=-bound, maxval=bound))
        self.bias = nn.Parameter(jax.random.uniform(bkey, (o,), minval=-bound, maxval=bound))

    def forward(self, x):
        return x @ self.weight.T + expand(self.bias, x)


class Tanh(nn.Module):
    def forward(self, x):
        return jnp.tanh(x)


class MLP(nn.Module):
    def __init__(self, *, key=None):
        super().__init__()
        k1, k2 = jax.random.split(_random.resolve_key(key))
        self.body = nn.Sequential(Lin(3, 8, key=k1), Tanh(), Lin(8, 2, key=k2))
        self.register_buffer("scale", jnp.ones(2))
        self.mask = np.array([1.0, 0.5], np.float32)  # static state

    def forward(self, x):
        out = self.body(x)
        return out * expand(self.scale, out) * expand(self.mask, out)


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def sgd(model, grads, lr=0.1):
    return jax.tree.map(lambda p, g: p - lr * g, model, grads)


def data(n=16, seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, 3)), jax.random.normal(ky, (n, 2))


def leaf_paths(tree):
    """The tree paths of the leaves, spelled as state_dict keys (see test_tree_paths...)."""
    return [
        jax.tree_util.keystr(path, simple=True, separator=".")
        for path, _ in jax.tree_util.tree_leaves_with_path(tree)
    ]


def assert_trees_equal(a, b):
    assert leaf_paths(a) == leaf_paths(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------------------------
# Transformations


def test_jit_matches_eager():
    m = MLP(key=jax.random.key(0))
    x, _ = data()
    np.testing.assert_allclose(jax.jit(lambda m, x: m(x))(m, x), m(x), rtol=1e-6, atol=1e-6)


def test_jax_grad_gives_a_module_shaped_gradient():
    m = MLP(key=jax.random.key(0))
    x, y = data()
    g = jax.grad(mse)(m, x, y)
    assert type(g) is MLP and type(g.body) is nn.Sequential and type(g.body[0]) is Lin
    assert g.body[0].weight.shape == (8, 3) and g.scale.shape == (2,)
    assert g.mask is m.mask  # static state is carried as it is, never differentiated
    assert leaf_paths(g) == leaf_paths(m)
    eps = 1e-3
    bumped = jax.tree.map(lambda p: p, m)
    bumped.body[2].bias = nn.Parameter(m.body[2].bias.at[0].add(eps))
    numeric = (mse(bumped, x, y) - mse(m, x, y)) / eps
    np.testing.assert_allclose(g.body[2].bias[0], numeric, rtol=2e-2, atol=1e-4)


def test_value_and_grad():
    m = MLP(key=jax.random.key(0))
    x, y = data()
    value, g = jax.value_and_grad(mse)(m, x, y)
    np.testing.assert_allclose(value, mse(m, x, y), rtol=1e-6)
    assert_trees_equal(g, jax.grad(mse)(m, x, y))


def test_vmap_constructs_an_ensemble_and_maps_over_inputs():
    keys = jax.random.split(jax.random.key(1), 4)
    ensemble = jax.vmap(lambda k: MLP(key=k))(keys)
    assert type(ensemble) is MLP
    assert ensemble.body[0].weight.shape == (4, 8, 3) and ensemble.scale.shape == (4, 2)
    assert leaf_paths(ensemble) == leaf_paths(MLP(key=keys[0]))
    x, _ = data(5)
    out = jax.vmap(lambda m: m(x))(ensemble)
    assert out.shape == (4, 5, 2)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(out[i], MLP(key=k)(x), rtol=1e-5, atol=1e-6)
    single = MLP(key=keys[0])
    per_example = jax.vmap(single, in_axes=0)(x)
    np.testing.assert_allclose(per_example, single(x), rtol=1e-6, atol=1e-6)
    xs = jax.random.normal(jax.random.key(2), (4, 5, 3))
    paired = jax.vmap(lambda m, x: m(x))(ensemble, xs)
    np.testing.assert_allclose(paired[2], MLP(key=keys[2])(xs[2]), rtol=1e-5, atol=1e-6)


def test_scan_a_train_step_over_batches():
    m = MLP(key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(3), (5, 8, 3))
    ys = jax.random.normal(jax.random.key(4), (5, 8, 2))

    def step(model, batch):
        x, y = batch
        loss, grads = jax.value_and_grad(mse)(model, x, y)
        return sgd(model, grads), loss

    final, losses = jax.lax.scan(step, m, (xs, ys))
    looped = m
    for i in range(5):
        looped, loss = step(looped, (xs[i], ys[i]))
        np.testing.assert_allclose(losses[i], loss, rtol=1e-5)
    assert type(final) is MLP
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(looped)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_tree_map_and_device_put():
    m = MLP(key=jax.random.key(0))
    zeros = jax.tree.map(jnp.zeros_like, m)
    assert type(zeros) is MLP and zeros.mask is m.mask
    assert all(float(jnp.abs(leaf).sum()) == 0.0 for leaf in jax.tree.leaves(zeros))
    assert zeros.eval() is zeros and zeros.training is False  # a mapped copy is an ordinary module
    assert m.training is True
    device = jax.devices()[0]
    moved = jax.device_put(m, device)
    assert type(moved) is MLP and jax.tree.structure(moved) == jax.tree.structure(m)
    assert all(leaf.devices() == {device} for leaf in jax.tree.leaves(moved))
    assert_trees_equal(moved, m)


# --------------------------------------------------------------------------------------------
# Tree paths


class Everything(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(jnp.ones(2))
        self.seq = nn.Sequential(Lin(2, 2, key=jax.random.key(0)), Tanh())
        self.named = nn.Sequential(OrderedDict(fc=Lin(2, 2, key=jax.random.key(1))))
        self.layers = nn.ModuleList(
            [nn.ModuleDict({"b": Lin(2, 1, key=jax.random.key(2)), "a": Tanh()})]
        )
        self.plist = nn.ParameterList([jnp.ones(1), "not an array", jnp.ones(2)])
        self.pdict = nn.ParameterDict({"z": jnp.ones(1), "a": jnp.ones(1)})
        self.register_buffer("running", jnp.zeros(2))
        self.register_buffer("scratch", jnp.zeros(2), persistent=False)
        self.register_parameter("absent", None)
        self.add_module("nothing", None)
        self.static = jnp.ones(3)


def test_tree_paths_spell_the_state_dict_keys():
    """Convention: every level of a module contributes a ``GetAttrKey(name)``, so
    ``keystr(path, simple=True, separator='.')`` is the dotted ``state_dict`` key. The leaves
    are the state_dict entries in state_dict order, plus non-persistent buffers (state that is
    carried but not saved); None entries and static arrays are not leaves."""
    m = Everything()
    paths = leaf_paths(m)
    sd = list(m.state_dict())
    assert [p for p in paths if p in sd] == sd
    assert [p for p in paths if p not in sd] == ["scratch"]
    assert sd == [
        "w",
        "running",
        "seq.0.weight",
        "seq.0.bias",
        "named.fc.weight",
        "named.fc.bias",
        "layers.0.b.weight",
        "layers.0.b.bias",
        "plist.0",
        "plist.2",
        "pdict.a",
        "pdict.z",
    ]
    for path, leaf in jax.tree_util.tree_leaves_with_path(m):
        assert all(isinstance(k, jax.tree_util.GetAttrKey) for k in path)
        key = jax.tree_util.keystr(path, simple=True, separator=".")
        assert leaf is (m.state_dict()[key] if key in sd else m.scratch)


def test_tree_paths_of_a_model_without_extras_equal_named_parameters():
    m = MLP(key=jax.random.key(0))
    assert leaf_paths(m) == ["scale", *(n for n, _ in m.body.named_parameters(prefix="body"))]
    assert leaf_paths(m) == list(m.state_dict())


# --------------------------------------------------------------------------------------------
# Plain arrays are static state


class Seed(nn.Module):
    """DESIGN.md's seed program: a Parameter and a plain array."""

    def __init__(self):
        super().__init__()
        self.weights1 = nn.Parameter(jax.random.normal(jax.random.key(0), (2, 2)))
        self.weights2 = jax.random.normal(jax.random.key(1), (2, 2))  # plain array: static

    def forward(self, x):
        return x @ self.weights1 @ self.weights2


def test_plain_array_is_not_a_leaf_not_trained_not_saved():
    m = Seed()
    assert [n for n, _ in m.named_parameters()] == ["weights1"]
    assert list(m.state_dict()) == ["weights1"] and list(m.buffers()) == []
    assert leaf_paths(m) == ["weights1"]
    x = jnp.ones((4, 2))
    g = jax.grad(lambda m: m(x).sum())(m)
    assert g.weights2 is m.weights2
    assert fparam.grad(lambda m: m(x).sum())(m).weights2 is m.weights2


def test_jit_does_not_retrace_while_static_array_unchanged_and_does_when_replaced():
    m = Seed()
    traces = []

    @jax.jit
    def f(m, x):
        traces.append(None)
        return m(x)

    x = jnp.ones((3, 2))
    for _ in range(10):
        f(m, x)
    assert len(traces) == 1
    m.weights2 = m.weights2  # the same object again: same tree structure
    m.load_state_dict({"weights1": np.ones((2, 2), np.float32)})  # new values, same structure
    f(m, x)
    f(jax.tree.map(lambda a: a + 1, m), x)
    assert len(traces) == 1
    old = m.weights2
    m.weights2 = jnp.array(old)  # equal values, a different object: a new constant
    out = f(m, x)
    assert len(traces) == 2
    np.testing.assert_allclose(out, m(x), rtol=1e-6)
    m.weights2 = old * 2
    np.testing.assert_allclose(f(m, x), m(x), rtol=1e-6)
    assert len(traces) == 3


def test_large_static_array_warns():
    m = nn.Module()
    with pytest.warns(nn.StaticArrayWarning, match=r"nn\.Buffer"):
        m.big = jnp.zeros((513, 513), jnp.float32)  # just over 1 MiB
    with pytest.warns(nn.StaticArrayWarning, match="big_np"):
        m.big_np = np.zeros((1 << 18) + 1, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.small = jnp.zeros((256, 256), jnp.float32)  # 256 KiB: fine
        m.register_buffer("big_buffer", jnp.zeros((600, 600), jnp.float32))
        m.big_param = nn.Parameter(jnp.zeros((600, 600)), requires_grad=False)


@pytest.mark.parametrize(
    "value,suggestion",
    [
        (lambda: [Tanh()], "nn.ModuleList"),
        (lambda: (Tanh(), Tanh()), "nn.ModuleList"),
        (lambda: {"a": Tanh()}, "nn.ModuleDict"),
        (lambda: [nn.Parameter(jnp.ones(1))], "nn.ParameterList"),
        (lambda: {"a": nn.Parameter(jnp.ones(1))}, "nn.ParameterDict"),
        (lambda: [jnp.ones(1), jnp.ones(2)], "nn.ParameterList"),
        (lambda: (np.ones(1),), "nn.ParameterList"),
        (lambda: {"a": jnp.ones(1)}, "nn.ParameterDict"),
        (lambda: [[1, 2], [jnp.ones(1)]], "nn.ParameterList"),
        (lambda: [{"deep": Tanh()}], "nn.ModuleList"),
    ],
)
def test_plain_containers_holding_state_are_refused(value, suggestion):
    m = nn.Module()
    with pytest.raises(TypeError, match="attr") as info:
        m.attr = value()
    assert suggestion in str(info.value)
    assert not hasattr(m, "attr")


def test_plain_containers_of_python_values_are_static():
    m = Seed()
    m.sizes = [1, 2, 3]
    m.config = {"act": "tanh", "dims": (2, 2)}
    traces = []

    @jax.jit
    def f(m):
        traces.append(None)
        return m.weights1 * m.sizes[1]

    f(m)
    f(m)
    assert len(traces) == 1 and leaf_paths(m) == ["weights1"]
    m.sizes = [1, 2, 3]  # an equal list: equal structure, no retrace
    f(m)
    assert len(traces) == 1
    m.sizes = [1, 5, 3]
    np.testing.assert_allclose(f(m), m.weights1 * 5)
    assert len(traces) == 2


# --------------------------------------------------------------------------------------------
# fparam.grad / fparam.value_and_grad


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(jnp.array([1.0, 2.0]))
        self.frozen = nn.Parameter(jnp.array([3.0, 4.0]), requires_grad=False)
        self.register_buffer("buf", jnp.array([0.5, 0.5]))
        self.register_buffer("steps", jnp.array(3))
        self.counts = nn.Parameter(jnp.array([1, 2]), requires_grad=False)
        self.child = Lin(2, 1, key=jax.random.key(0))
        self.child.bias = nn.Parameter(self.child.bias, requires_grad=False)

    def forward(self, x):
        steps, counts = self.steps.astype(x.dtype), self.counts.astype(x.dtype)
        h = x * expand(self.w * self.frozen * self.buf * steps + counts, x)
        return self.child(h)


def _loss(m, x):
    return jnp.sum(m(x) ** 2)


def test_fparam_grad_differentiates_only_trainable_parameters():
    m = Mixed()
    x = jnp.array([[1.0, -1.0], [0.5, 2.0]])
    with pytest.raises(TypeError):
        jax.grad(_loss)(m, x)  # plain jax.grad refuses the integer leaves
    g = fparam.grad(_loss)(m, x)
    assert type(g) is Mixed and type(g.child) is Lin
    assert g.frozen is None and g.buf is None and g.steps is None and g.counts is None
    assert g.child.bias is None
    assert isinstance(g.w, jax.Array) and isinstance(g.child.weight, jax.Array)

    def loss_of(w, cw):
        mm = copy.deepcopy(m)
        mm.w = nn.Parameter(w)
        mm.child.weight = nn.Parameter(cw)
        return _loss(mm, x)

    gw, gcw = jax.grad(loss_of, argnums=(0, 1))(m.w, m.child.weight)
    np.testing.assert_allclose(g.w, gw, rtol=1e-6)
    np.testing.assert_allclose(g.child.weight, gcw, rtol=1e-6)
    # Leaves of the gradient: only the trainable parameters.
    assert leaf_paths(g) == ["w", "child.weight"]


def test_fparam_grad_follows_requires_grad_changes():
    m = Mixed()
    x = jnp.ones((1, 2))
    m.requires_grad_(False)
    m.child.requires_grad_(True)
    g = fparam.grad(_loss)(m, x)
    assert (
        g.w is None and g.child.bias is not None and leaf_paths(g) == ["child.weight", "child.bias"]
    )


def test_fparam_value_and_grad_has_aux_and_argnums():
    m = Mixed()
    x = jnp.array([[1.0, -1.0]])

    def loss_aux(m, x):
        out = m(x)
        return jnp.sum(out**2), {"out": out}

    (value, aux), g = fparam.value_and_grad(loss_aux, has_aux=True)(m, x)
    np.testing.assert_allclose(value, _loss(m, x), rtol=1e-6)
    np.testing.assert_allclose(aux["out"], m(x), rtol=1e-6)
    assert g.frozen is None
    g2, aux2 = fparam.grad(loss_aux, has_aux=True)(m, x)
    assert_trees_equal(g2, g)
    np.testing.assert_allclose(aux2["out"], aux["out"])

    value, (gm, gx) = fparam.value_and_grad(_loss, argnums=(0, 1))(m, x)
    assert gm.counts is None and gm.w.shape == (2,)
    np.testing.assert_allclose(gx, jax.grad(_loss, argnums=1)(m, x), rtol=1e-6)
    gx_only = fparam.grad(_loss, argnums=1)(m, x)
    np.testing.assert_allclose(gx_only, gx, rtol=1e-6)
    gm2, gm1 = fparam.grad(lambda a, b, x: _loss(a, x) + 2 * _loss(b, x), argnums=(1, 0))(
        m, Mixed(), x
    )
    np.testing.assert_allclose(gm2.w, 2 * gm1.w, rtol=1e-6)


def test_fparam_grad_under_jit():
    m = Mixed()
    x = jnp.ones((2, 2))
    g = jax.jit(fparam.grad(_loss))(m, x)
    assert g.frozen is None
    np.testing.assert_allclose(g.w, fparam.grad(_loss)(m, x).w, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Mutation inside a transformation


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: setattr(m, "weights1", nn.Parameter(m.weights1 * 2)),
        lambda m: setattr(m, "weights1", None),
        lambda m: setattr(m, "note", 3),
        lambda m: m.eval(),
        lambda m: m.train(),
        lambda m: m.requires_grad_(False),
        lambda m: m.load_state_dict({"weights1": jnp.zeros((2, 2))}),
        lambda m: m.register_buffer("b", m.weights1),
        lambda m: m.add_module("c", Tanh()),
        lambda m: delattr(m, "weights2"),
    ],
)
@pytest.mark.parametrize("transform", ["jit", "grad", "vmap"])
def test_mutating_the_traced_argument_raises(mutate, transform):
    m = Seed()

    def f(m):
        mutate(m)
        return jnp.sum(m(jnp.ones((1, 2))))

    if transform == "jit":
        run = jax.jit(f)
    elif transform == "grad":
        run = jax.grad(f)
    else:
        m = jax.vmap(lambda _: Seed())(jnp.arange(2))
        run = jax.vmap(f)
    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        run(m)
    assert m.training is True and list(m.state_dict()) == ["weights1"]


def test_mutating_a_submodule_of_the_traced_argument_raises():
    @jax.jit
    def f(m):
        m.body[0].weight = nn.Parameter(m.body[0].weight)
        return m.body[0].weight

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        f(MLP(key=jax.random.key(0)))


def test_building_a_fresh_module_inside_jit_is_fine():
    @jax.jit
    def make(key, scale):
        m = MLP(key=key)
        m.register_buffer("scale", jnp.full((2,), scale))
        m.eval()
        m.extra = nn.Parameter(m.body[0].bias * 2)
        return m

    m = make(jax.random.key(0), 3.0)
    assert type(m) is MLP and m.training is False
    np.testing.assert_allclose(m.scale, [3.0, 3.0])
    eager = MLP(key=jax.random.key(0))
    np.testing.assert_allclose(m.body[0].weight, eager.body[0].weight, rtol=1e-6)
    assert next(iter(m.state_dict())) == "extra"  # own parameters come before children's


def test_a_tracer_as_plain_attribute_is_refused():
    @jax.jit
    def f(x):
        m = nn.Module()
        m.plain = x
        return x

    with pytest.raises(TypeError, match=r"nn\.Buffer"):
        f(jnp.ones(2))


# --------------------------------------------------------------------------------------------
# Weight tying is refused; one module in two different trees is fine


def test_same_module_twice_in_one_tree_is_refused():
    lin = Lin(2, 2, key=jax.random.key(0))
    m = nn.Module()
    m.a = lin
    with pytest.raises(ValueError, match=r"'a' and as 'b'"):
        m.b = lin
    wrapper = nn.Module()
    wrapper.inner = nn.Module()
    wrapper.inner.deep = lin  # fine: a different tree so far
    with pytest.raises(ValueError, match=r"'a' and as 'w.inner.deep'"):
        m.w = wrapper
    with pytest.raises(ValueError, match=r"'0' and as '1'"):
        nn.Sequential(lin, lin)
    lst = nn.ModuleList([lin])
    with pytest.raises(ValueError, match=r"'0' and as '1'"):
        lst.append(lin)
    seq = nn.Sequential(lin, Tanh())
    with pytest.raises(ValueError, match="appears twice"):
        seq * 2
    with pytest.raises(ValueError, match="appears twice"):
        lin.me = lin  # checked from every model lin belongs to (seq, lst, m, wrapper)
    solo = Lin(2, 2, key=jax.random.key(1))
    with pytest.raises(ValueError, match=r"as '<root>' and as 'me'"):
        solo.me = solo
    assert [n for n, _ in m.named_children()] == ["a"] and len(lst) == 1


def test_same_parameter_in_two_modules_of_one_tree_is_refused():
    p = nn.Parameter(jnp.ones(2))
    a, b = nn.Module(), nn.Module()
    a.w = p
    b.v = p  # fine: a different tree
    m = nn.Module()
    m.a = a
    with pytest.raises(ValueError, match=r"'a\.w' and as 'b\.v'"):
        m.b = b
    with pytest.raises(ValueError, match=r"'a\.w' and as 'direct'"):
        m.direct = p
    handle = next(m.parameters())
    with pytest.raises(ValueError, match="appears twice"):
        m.again = handle
    # replacing a parameter by itself is not sharing
    a.w = p
    assert [n for n, _ in m.named_parameters()] == ["a.w"]


def test_sharing_created_inside_an_attached_child_is_refused():
    lin = Lin(2, 2, key=jax.random.key(0))
    m = nn.Module()
    m.a = lin
    m.w = nn.Module()
    with pytest.raises(ValueError, match=r"appears twice in one model \(as 'a' and as 'w.inner'\)"):
        m.w.inner = lin
    m.w.layers = nn.ModuleList()
    with pytest.raises(ValueError, match=r"as 'a' and as 'w.layers.0'"):
        m.w.layers.append(lin)
    handle = next(lin.parameters())
    with pytest.raises(ValueError, match=r"as 'a.weight' and as 'w.p'"):
        m.w.p = handle
    # a module that left the tree no longer counts
    m.a = None
    m.w.inner = lin
    assert [n for n, _ in m.named_parameters()] == ["w.inner.weight", "w.inner.bias"]


def test_replacing_a_child_by_a_tree_holding_it_again_is_fine():
    lin = Lin(2, 2, key=jax.random.key(0))
    m = nn.Module()
    m.a = lin
    m.a = nn.Sequential(lin)  # the old child goes away, so lin is in one place
    assert [n for n, _ in m.named_parameters()] == ["a.0.weight", "a.0.bias"]


def test_one_module_in_two_different_trees_is_fine():
    seq = nn.Sequential(Lin(3, 4, key=jax.random.key(0)), Tanh(), Lin(4, 2, key=jax.random.key(1)))
    tail = seq[1:]
    assert tail[1] is seq[2]
    x = jnp.ones((2, 3))
    f = jax.jit(lambda s, x: s(x))
    np.testing.assert_allclose(f(seq, x), f(tail, f(seq[:1], x)), rtol=1e-6)
    other = nn.ModuleList([seq[0]])
    assert [n for n, _ in other.named_parameters()] == ["0.weight", "0.bias"]


# --------------------------------------------------------------------------------------------
# Key stream


def _key_data(key):
    return np.asarray(jax.random.key_data(key))


def test_manual_seed_makes_the_key_stream_reproducible():
    fparam.manual_seed(7)
    first = [_key_data(_random.next_key()) for _ in range(3)]
    fparam.manual_seed(7)
    again = [_key_data(_random.next_key()) for _ in range(3)]
    fparam.manual_seed(8)
    other = _key_data(_random.next_key())
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other)
    explicit = jax.random.key(7)
    assert _random.resolve_key(explicit) is explicit
    assert not np.array_equal(_key_data(explicit), first[0])
    with pytest.raises(TypeError):
        fparam.manual_seed(1.5)


def test_seeded_construction_is_reproducible_and_an_explicit_key_differs():
    fparam.manual_seed(3)
    a = MLP()
    fparam.manual_seed(3)
    b = MLP()
    assert_trees_equal(a, b)
    c = MLP()
    explicit = MLP(key=jax.random.key(3))
    assert not np.array_equal(a.body[0].weight, c.body[0].weight)
    assert not np.array_equal(a.body[0].weight, explicit.body[0].weight)


# --------------------------------------------------------------------------------------------
# Training


def test_jitted_train_step_traces_once_over_20_steps():
    m = MLP(key=jax.random.key(0))
    x, y = data(32)
    traces = []

    @jax.jit
    def train_step(model, x, y):
        traces.append(None)
        loss, grads = jax.value_and_grad(mse)(model, x, y)
        return sgd(model, grads), loss

    losses = []
    for _ in range(20):
        m, loss = train_step(m, x, y)
        losses.append(float(loss))
    assert len(traces) == 1
    assert losses[-1] < losses[0]
    assert type(m) is MLP and m.mask is not None


def test_seed_program_trains_weights1_only():
    """DESIGN.md: weights1 trains under jit + grad; the plain array weights2 never changes."""
    m = Seed()
    w1, w2 = m.weights1, m.weights2
    x = jax.random.normal(jax.random.key(5), (100, 2, 2))
    y = jax.random.randint(jax.random.key(6), (100, 2), 0, 2)
    traces = []

    def criterion(logits, y):  # cross entropy over axis 1, as torch's CrossEntropyLoss
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None, :], axis=1))

    @jax.jit
    def train_step(m, x, y):
        traces.append(None)
        loss, grads = jax.value_and_grad(lambda m: criterion(m(x), y))(m)
        return jax.tree.map(lambda p, g: p - 0.5 * g, m, grads), loss

    losses = []
    for _ in range(5):
        m, loss = train_step(m, x, y)
        losses.append(float(loss))
    assert len(traces) == 1
    assert m.weights2 is w2
    assert not np.allclose(m.weights1, w1)
    assert losses[-1] < losses[0]
    assert [n for n, _ in m.named_parameters()] == ["weights1"]


# --------------------------------------------------------------------------------------------
# deepcopy


def test_deepcopy_gives_an_equal_but_independent_module():
    m = MLP(key=jax.random.key(0))
    m.body[0].bias = nn.Parameter(m.body[0].bias, requires_grad=False)
    m2 = copy.deepcopy(m)
    assert type(m2) is MLP and m2.body is not m.body and m2.body[0] is not m.body[0]
    assert list(m2.state_dict()) == list(m.state_dict())
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        np.testing.assert_array_equal(a, b)
    assert [p.requires_grad for p in m2.parameters()] == [p.requires_grad for p in m.parameters()]
    np.testing.assert_array_equal(m2.mask, m.mask)
    m2.load_state_dict({k: np.zeros(v.shape, np.float32) for k, v in m2.state_dict().items()})
    m2.eval()
    assert m.training is True and float(jnp.abs(m.body[0].weight).sum()) > 0
    x = jnp.ones((1, 3))
    np.testing.assert_allclose(jax.jit(lambda m: m(x))(m2), np.zeros((1, 2)))


def test_deepcopy_gives_fresh_parameters_like_torch():
    """torch's clone idiom (nn.TransformerEncoder's _get_clones): deep copies are new Parameters."""
    layer = Lin(2, 2, key=jax.random.key(0))
    clones = nn.ModuleList([copy.deepcopy(layer) for _ in range(3)])
    uids = [p.uid for p in clones.parameters()]
    assert len(set(uids)) == 6 and not set(uids) & {p.uid for p in layer.parameters()}
    # One deepcopy call maps each parameter consistently, as torch's memo keeps identities.
    copied, handles = copy.deepcopy((clones, list(clones.parameters())))
    assert [p.uid for p in copied.parameters()] == [h.uid for h in handles]
    assert not set(uids) & {h.uid for h in handles}
