"""Module, Parameter and Buffer: registration (§1.2), traversal (§1.3, §1.6) and repr, with torch as the oracle.

Every torch-defined behaviour is checked by building the same model (or making the same mistake) in
torch and in fparam and comparing names, orders, exception types and message substrings.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from fparam import nn

# --------------------------------------------------------------------------------------------
# Twin models: the same class bodies, built once over torch.nn and once over fparam.nn


def _torch_array(*shape: int) -> torch.Tensor:
    return torch.arange(float(np.prod(shape, dtype=int))).reshape(shape)


def _fp_array(*shape: int) -> jax.Array:
    return jnp.arange(float(np.prod(shape, dtype=int))).reshape(shape)


def _make(tnn, arr):
    class Lin(tnn.Module):
        def __init__(self, i, o, bias=True):
            super().__init__()
            self.weight = tnn.Parameter(arr(o, i))
            if bias:
                self.bias = tnn.Parameter(arr(o))
            else:
                self.register_parameter("bias", None)

        def forward(self, x):
            return x @ self.weight.T

    class Act(tnn.Module):
        def __init__(self, k=0):
            super().__init__()
            self.k = k

        def forward(self, x):
            return x

        def extra_repr(self):
            return f"k={self.k}"

    class Multi(tnn.Module):
        def extra_repr(self):
            return "first line\nsecond line"

    class Norm(tnn.Module):
        def __init__(self):
            super().__init__()
            self.scale = tnn.Parameter(arr(2))
            self.register_buffer("running", arr(2))
            self.register_buffer("count", arr(1), persistent=False)

    class Net(tnn.Module):
        """§1.3/§1.4's example: root params registered around a child, buffers of both kinds."""

        def __init__(self):
            super().__init__()
            self.b = tnn.Parameter(arr(2))
            self.features = tnn.Sequential(Lin(3, 4), Act(), Lin(4, 4, bias=False))
            self.a = tnn.Parameter(arr(3))
            self.register_buffer("running", arr(4))
            self.register_buffer("tmp", arr(2), persistent=False)
            self.plain = arr(2)
            self.register_parameter("none_p", None)
            self.register_buffer("none_b", None)
            self.fc = Lin(4, 2)
            self.add_module("empty", None)
            self.norm = Norm()

    class Empty(tnn.Module):
        pass

    return SimpleNamespace(
        nn=tnn, arr=arr, Lin=Lin, Act=Act, Multi=Multi, Norm=Norm, Net=Net, Empty=Empty
    )


T = _make(torch.nn, _torch_array)
F = _make(nn, _fp_array)


def same_error(torch_call, fp_call, *substrings):
    """Both calls raise; the exception types are identical; each substring is in both messages."""
    with pytest.raises(Exception) as t_info:
        torch_call()
    with pytest.raises(Exception) as f_info:
        fp_call()
    t_exc, f_exc = t_info.value, f_info.value
    assert type(f_exc) is type(t_exc), f"torch raised {t_exc!r}, fparam raised {f_exc!r}"
    for s in substrings:
        assert s in str(t_exc), (s, str(t_exc))
        assert s in str(f_exc), (s, str(f_exc))
    return t_exc, f_exc


def names(pairs):
    return [name for name, _ in pairs]


def both(fn):
    """Run ``fn(lib)`` for torch and for fparam; return both results."""
    return fn(T), fn(F)


# --------------------------------------------------------------------------------------------
# Parameter


def test_parameter_none_is_empty_float32_and_requires_grad():
    t, f = torch.nn.Parameter(), nn.Parameter()
    assert tuple(f.shape) == tuple(t.shape) == (0,)
    assert f.dtype == jnp.float32
    assert f.requires_grad is True and t.requires_grad is True


def test_parameter_int_dtype_requires_grad_is_runtime_error():
    same_error(
        lambda: torch.nn.Parameter(torch.arange(3)),
        lambda: nn.Parameter(jnp.arange(3)),
        "floating point and complex dtype can require gradients",
    )
    p = nn.Parameter(jnp.arange(3), requires_grad=False)
    assert p.requires_grad is False and p.dtype == jnp.int32


def test_parameter_arithmetic_gives_arrays_and_numpy_input_is_converted():
    p = nn.Parameter(np.ones((2, 2), np.float32))
    assert isinstance(p.data, jax.Array)
    for out in (p * 2, 2 * p, p + p, p @ p, -p, p[0]):
        assert isinstance(out, jax.Array) and not isinstance(out, nn.Parameter)
    assert "Parameter containing:" in repr(p)


def test_reading_a_parameter_or_buffer_attribute_gives_a_jax_array():
    m = F.Norm()
    m.register_buffer("from_numpy", np.zeros(3, np.float32))
    for name in ("scale", "running", "count", "from_numpy"):
        value = getattr(m, name)
        assert type(value) is not nn.Parameter and isinstance(value, jax.Array), name
    assert jnp.sin(m.scale).shape == (2,)


# --------------------------------------------------------------------------------------------
# §1.2 registration: the dispatch order of __setattr__


def _param_names(m):
    return names(m.named_parameters())


def _buffer_names(m):
    return names(m.named_buffers())


def _child_names(m):
    return names(m.named_children())


def _kinds(m):
    return _param_names(m), _buffer_names(m), _child_names(m), list(m.state_dict())


def test_parameter_over_plain_array_attribute_converts_it():
    def build(L):
        m = L.Empty()
        m.x = L.arr(2)
        before = _kinds(m)
        m.x = L.nn.Parameter(L.arr(2))
        return before, _kinds(m)

    t, f = both(build)
    assert t == f == (([], [], [], []), (["x"], [], [], ["x"]))


_KINDS = ["param", "buffer", "buffer_obj", "module", "plain", "none"]


def _value(L, kind):
    if kind == "param":
        return L.nn.Parameter(L.arr(2))
    if kind == "module":
        return L.Act()
    if kind == "buffer_obj":
        return L.nn.Buffer(L.arr(2), persistent=False)
    if kind == "none":
        return None
    return L.arr(2)


@pytest.mark.parametrize("old", ["param", "buffer", "buffer_obj", "module", "plain"])
@pytest.mark.parametrize("new", _KINDS)
def test_every_kind_change_on_reassignment_matches_torch(old, new):
    """Assign one kind of value over a name holding another: same outcome as torch's dispatch."""

    def run(L):
        m = L.Empty()
        m.first = L.nn.Parameter(L.arr(1))
        if old == "buffer":
            m.register_buffer("x", L.arr(2))
        else:
            m.x = _value(L, old)
        m.last = L.nn.Parameter(L.arr(1))
        try:
            if new == "buffer":
                m.register_buffer("x", L.arr(3))
            else:
                m.x = _value(L, new)
        except Exception as exc:
            return type(exc), _kinds(m)
        return _kinds(m), list(m._parameters), list(m._buffers), list(m._modules)

    t, f = both(run)
    assert f == t


def test_param_name_accepts_only_parameter_or_none():
    tm, fm = T.Lin(2, 2), F.Lin(2, 2)
    same_error(
        lambda: setattr(tm, "weight", torch.zeros(2, 2)),
        lambda: setattr(fm, "weight", jnp.zeros((2, 2))),
        "as parameter 'weight'",
        "or None expected",
    )
    same_error(
        lambda: setattr(tm, "weight", T.Empty()),
        lambda: setattr(fm, "weight", F.Empty()),
        "Empty' as parameter 'weight'",
    )
    same_error(
        lambda: setattr(tm, "weight", 3), lambda: setattr(fm, "weight", 3), "'int' as parameter"
    )
    # None is stored as an absent parameter: the key stays, traversals skip it.
    tm.weight = None
    fm.weight = None
    assert _param_names(fm) == _param_names(tm) == ["bias"]
    assert list(fm._parameters) == list(tm._parameters) == ["weight", "bias"]
    assert fm.weight is None


def test_module_name_accepts_only_module_or_none():
    tm, fm = T.Net(), F.Net()
    same_error(
        lambda: setattr(tm, "fc", torch.zeros(2)),
        lambda: setattr(fm, "fc", jnp.zeros(2)),
        "as child module 'fc'",
        "or None expected",
    )
    same_error(
        lambda: setattr(tm, "fc", "x"), lambda: setattr(fm, "fc", "x"), "'str' as child module 'fc'"
    )
    tm.fc = None
    fm.fc = None
    assert _child_names(fm) == _child_names(tm)
    assert list(fm._modules) == list(tm._modules)
    assert fm.fc is None


def test_buffer_assignment_keeps_or_changes_persistence():
    def run(L):
        m = L.Empty()
        m.register_buffer("p", L.arr(2))
        m.register_buffer("q", L.arr(2), persistent=False)
        m.b = L.nn.Buffer(L.arr(2), persistent=False)
        steps = [list(m.state_dict())]
        m.q = L.arr(3)  # plain array over a buffer: stays a buffer, keeps non-persistence
        steps.append(list(m.state_dict()))
        m.q = L.nn.Buffer(L.arr(3))  # a Buffer object brings its own persistence
        steps.append(list(m.state_dict()))
        m.register_buffer(
            "p", L.arr(2), persistent=False
        )  # re-register: changes it, keeps position
        steps.append(list(m.state_dict()))
        m.b = None  # None over a non-persistent buffer: still a (None) buffer
        steps.append((_buffer_names(m), list(m._buffers)))
        m.b = L.arr(1)  # and it is still non-persistent
        steps.append((_buffer_names(m), list(m.state_dict())))
        return steps

    t, f = both(run)
    assert f == t
    assert t[0] == ["p"] and t[2] == ["p", "q"] and t[3] == ["q"]


def test_non_array_over_buffer_name_is_type_error():
    tm, fm = T.Norm(), F.Norm()
    same_error(
        lambda: setattr(tm, "running", 3),
        lambda: setattr(fm, "running", 3),
        "'int' as buffer 'running'",
    )


def test_buffer_non_persistent_del_and_state_dict():
    """torch's test_buffer_not_persistent / _del / _overwrite / _load."""

    def run(L):
        m = L.Empty()
        m.register_buffer("buf", L.arr(2), persistent=False)
        out = [len(list(m.buffers())), len(m.state_dict())]
        m.load_state_dict(m.state_dict())
        del m.buf
        out += [len(list(m.buffers())), len(m.state_dict())]
        m.register_buffer("buf", L.arr(2), persistent=False)
        m.register_buffer("buf", L.arr(2))
        out += [len(list(m.buffers())), len(m.state_dict())]
        return out

    t, f = both(run)
    assert f == t == [1, 0, 0, 0, 1, 1]


# --------------------------------------------------------------------------------------------
# register_parameter / register_buffer / add_module: name checks with torch's exception types


def _register(L, method, name, kind=None):
    m = L.Norm()
    if method == "register_parameter":
        value = L.nn.Parameter(L.arr(2)) if kind is None else kind(L)
        return lambda: m.register_parameter(name, value)
    if method == "register_buffer":
        value = L.arr(2) if kind is None else kind(L)
        return lambda: m.register_buffer(name, value)
    value = L.Empty() if kind is None else kind(L)
    return lambda: m.add_module(name, value)


@pytest.mark.parametrize("method", ["register_parameter", "register_buffer", "add_module"])
@pytest.mark.parametrize(
    "name,substring",
    [
        (1, "name should be a string. Got int"),
        ("a.b", "name can\\'t contain"),  # str(KeyError) is the repr of its message
        ("", "name can\\'t be empty string"),
        ("training", "attribute 'training' already exists"),
        ("forward", "attribute 'forward' already exists"),
    ],
)
def test_registration_name_checks_match_torch(method, name, substring):
    same_error(_register(T, method, name), _register(F, method, name), substring)


@pytest.mark.parametrize(
    "method,name",
    [
        ("register_parameter", "running"),  # a buffer name
        ("register_buffer", "scale"),  # a parameter name
        ("add_module", "scale"),
        ("add_module", "running"),
    ],
)
def test_registration_over_another_kind_is_key_error(method, name):
    same_error(
        _register(T, method, name), _register(F, method, name), f"attribute '{name}' already exists"
    )


@pytest.mark.parametrize(
    "method,bad,substring",
    [
        ("register_parameter", lambda L: L.arr(2), "object to parameter 'x'"),
        ("register_parameter", lambda L: 3, "'int' object to parameter 'x'"),
        ("register_buffer", lambda L: 3, "'int' object to buffer 'x'"),
        ("register_buffer", lambda L: "s", "'str' object to buffer 'x'"),
        ("add_module", lambda L: 3, "int is not a Module subclass"),
        ("add_module", lambda L: L.arr(2), "is not a Module subclass"),
    ],
)
def test_registration_value_checks_match_torch(method, bad, substring):
    same_error(_register(T, method, "x", bad), _register(F, method, "x", bad), substring)


def test_add_module_checks_the_value_before_the_name():
    same_error(
        _register(T, "add_module", 1, lambda L: 3),
        _register(F, "add_module", 1, lambda L: 3),
        "int is not a Module subclass",
    )


def test_reregistering_the_same_name_is_allowed_and_keeps_the_kind():
    def run(L):
        m = L.Norm()
        m.register_parameter("scale", L.nn.Parameter(L.arr(5)))
        m.register_buffer("running", L.arr(7))
        m.add_module("c", L.Empty())
        m.add_module("c", L.Act())
        return _kinds(m), tuple(m.scale.shape), tuple(m.running.shape), type(m.c).__name__

    t, f = both(run)
    assert f == t


def test_register_none_values():
    def run(L):
        m = L.Empty()
        m.register_parameter("p", None)
        m.register_buffer("b", None)
        m.add_module("c", None)
        return (
            list(m._parameters),
            list(m._buffers),
            list(m._modules),
            _kinds(m),
            m.p is None and m.b is None and m.c is None,
        )

    t, f = both(run)
    assert f == t


@pytest.mark.parametrize(
    "what", ["parameter", "module", "buffer", "register_parameter", "register_buffer", "add_module"]
)
def test_assignment_before_super_init_is_attribute_error(what):
    def make(L):
        class Early(L.nn.Module):
            def __init__(self):
                if what == "parameter":
                    self.p = L.nn.Parameter(L.arr(2))
                elif what == "module":
                    self.c = L.Empty()
                elif what == "buffer":
                    self.b = L.nn.Buffer(L.arr(2))
                elif what == "register_parameter":
                    self.register_parameter("p", L.nn.Parameter(L.arr(2)))
                elif what == "register_buffer":
                    self.register_buffer("b", L.arr(2))
                else:
                    self.add_module("c", L.Empty())
                super().__init__()

        return Early

    t_cls, f_cls = make(T), make(F)
    substring = {"parameter": "cannot assign parameters before Module.__init__() call"}.get(
        what, ""
    )
    if what in ("module", "buffer", "register_parameter", "register_buffer"):
        substring = "before Module.__init__() call"
    same_error(t_cls, f_cls, substring)


def test_plain_values_before_super_init_are_fine():
    def make(L):
        class Early(L.nn.Module):
            def __init__(self):
                self.n = 3
                self.plain = L.arr(2)
                super().__init__()
                self.p = L.nn.Parameter(L.arr(2))

        return Early()

    t, f = both(make)
    assert _param_names(f) == _param_names(t) == ["p"]
    assert f.n == 3


def test_getattr_message_is_torchs():
    t_exc, f_exc = same_error(lambda: T.Net().nonexistent, lambda: F.Net().nonexistent)
    assert str(f_exc) == str(t_exc) == "'Net' object has no attribute 'nonexistent'"


@pytest.mark.parametrize("name", ["a", "running", "tmp", "fc", "plain", "none_p", "empty"])
def test_delattr_removes_every_kind(name):
    def run(L):
        m = L.Net()
        delattr(m, name)
        return _kinds(m), list(m._parameters), list(m._buffers), list(m._modules), hasattr(m, name)

    t, f = both(run)
    assert f == t
    assert t[-1] is False


def test_delattr_of_a_missing_name_is_attribute_error():
    same_error(lambda: delattr(T.Net(), "zz"), lambda: delattr(F.Net(), "zz"), "zz")


def test_keys_keep_position_on_reassignment_and_move_to_the_end_after_del():
    def run(L):
        m = L.Empty()
        m.a = L.nn.Parameter(L.arr(1))
        m.b = L.nn.Parameter(L.arr(1))
        m.register_buffer("x", L.arr(1))
        m.register_buffer("y", L.arr(1))
        m.c1 = L.Empty()
        m.c2 = L.Act()
        m.a = L.nn.Parameter(L.arr(2))
        m.x = L.arr(2)
        m.c1 = L.Act()
        out = [_param_names(m), _buffer_names(m), _child_names(m), list(m.state_dict())]
        del m.a
        m.a = L.nn.Parameter(L.arr(1))
        del m.x
        m.register_buffer("x", L.arr(1))
        del m.c1
        m.c1 = L.Empty()
        out += [_param_names(m), _buffer_names(m), _child_names(m), list(m.state_dict())]
        return out

    t, f = both(run)
    assert f == t
    assert t[0] == ["a", "b"] and t[4] == ["b", "a"]


def test_plain_attributes_are_not_registered():
    """§1.7: a plain array attribute is neither a parameter nor a buffer nor saved."""

    def run(L):
        m = L.Empty()
        m.w1 = L.nn.Parameter(L.arr(2, 2))
        m.w2 = L.arr(2, 2)
        m.n = 3
        return _kinds(m)

    t, f = both(run)
    assert f == t == (["w1"], [], [], ["w1"])


# --------------------------------------------------------------------------------------------
# §1.3 traversal, compared with the same model in torch


def test_named_parameters_order_prefix_and_recurse():
    tm, fm = T.Net(), F.Net()
    expected = [
        "b",
        "a",
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "fc.weight",
        "fc.bias",
        "norm.scale",
    ]
    assert _param_names(fm) == _param_names(tm) == expected
    for kwargs in ({"prefix": "root"}, {"recurse": False}, {"prefix": "root", "recurse": False}):
        assert names(fm.named_parameters(**kwargs)) == names(tm.named_parameters(**kwargs)), kwargs
    params = fm.parameters()
    assert iter(params) is params  # a generator, as in torch
    assert all(isinstance(p, nn.Parameter) for p in params)
    assert [p.shape for p in fm.parameters()] == [tuple(p.shape) for p in tm.parameters()]


def test_named_buffers_include_non_persistent():
    tm, fm = T.Net(), F.Net()
    assert (
        _buffer_names(fm) == _buffer_names(tm) == ["running", "tmp", "norm.running", "norm.count"]
    )
    for kwargs in ({"prefix": "m"}, {"recurse": False}):
        assert names(fm.named_buffers(**kwargs)) == names(tm.named_buffers(**kwargs))
    assert [b.shape for b in fm.buffers()] == [tuple(b.shape) for b in tm.buffers()]
    assert all(isinstance(b, jax.Array) for b in fm.buffers())


def test_children_and_modules():
    tm, fm = T.Net(), F.Net()

    def cls_names(mods):
        return [type(m).__name__ for m in mods]

    assert _child_names(fm) == _child_names(tm) == ["features", "fc", "norm"]
    assert cls_names(fm.children()) == cls_names(tm.children())
    assert cls_names(fm.modules()) == cls_names(tm.modules())
    assert names(fm.named_modules()) == names(tm.named_modules())
    assert names(fm.named_modules(prefix="root")) == names(tm.named_modules(prefix="root"))
    assert names(fm.named_modules())[:5] == [
        "",
        "features",
        "features.0",
        "features.1",
        "features.2",
    ]
    assert next(fm.named_modules())[1] is fm


def test_get_submodule_parameter_buffer():
    tm, fm = T.Net(), F.Net()
    assert fm.get_submodule("") is fm
    assert fm.get_submodule("features.0") is fm.features[0]
    assert type(fm.get_submodule("features.1")).__name__ == "Act"
    p = fm.get_parameter("features.0.weight")
    assert isinstance(p, nn.Parameter) and p.shape == (4, 3) and p.requires_grad
    np.testing.assert_array_equal(p.data, fm.features[0].weight)
    np.testing.assert_array_equal(fm.get_buffer("norm.running"), fm.norm.running)
    np.testing.assert_array_equal(fm.get_buffer("tmp"), fm.tmp)
    assert fm.get_buffer("none_b") is None and tm.get_buffer("none_b") is None
    for target in ["features.9", "a", "empty", "features.0.weight", "nope.x", "a.x", "fc.zz"]:
        t_exc, f_exc = same_error(
            lambda t=target: tm.get_submodule(t), lambda t=target: fm.get_submodule(t)
        )
        assert str(f_exc) == str(t_exc), target
    for target in ["fc", "zz", "running", "none_p", "features.9.weight", "plain"]:
        t_exc, f_exc = same_error(
            lambda t=target: tm.get_parameter(t), lambda t=target: fm.get_parameter(t)
        )
        assert str(f_exc) == str(t_exc), target
    for target in ["fc", "zz", "a", "norm.scale", "plain"]:
        t_exc, f_exc = same_error(
            lambda t=target: tm.get_buffer(t), lambda t=target: fm.get_buffer(t)
        )
        assert str(f_exc) == str(t_exc), target


def test_apply_is_post_order_and_returns_self():
    def run(L):
        m = L.Net()
        seen = []
        out = m.apply(lambda mod: seen.append(type(mod).__name__))
        return seen, out is m

    t, f = both(run)
    assert f == t
    assert t[0][-1] == "Net" and t[0][:4] == ["Lin", "Act", "Lin", "Sequential"]


def test_train_eval_recursive_and_return_self():
    def run(L):
        m = L.Net()
        flags = [[mod.training for mod in m.modules()]]
        assert m.eval() is m
        flags.append([mod.training for mod in m.modules()])
        m.extra = L.Empty()  # a child added after eval() keeps its own flag
        flags.append([mod.training for mod in m.modules()])
        assert m.features.train() is m.features
        flags.append([mod.training for mod in m.modules()])
        assert m.train(False) is m
        flags.append([mod.training for mod in m.modules()])
        return flags

    t, f = both(run)
    assert f == t
    assert not any(t[1]) and t[2][-1] is True


@pytest.mark.parametrize("mode", [1, 0, "True", None])
def test_train_non_bool_is_value_error(mode):
    t_exc, f_exc = same_error(lambda: T.Net().train(mode), lambda: F.Net().train(mode))
    assert str(f_exc) == str(t_exc) == "training mode is expected to be boolean"


def test_requires_grad_():
    def run(L):
        m = L.Net()
        out = [m.requires_grad_(False) is m, [p.requires_grad for p in m.parameters()]]
        m.features.requires_grad_()
        out.append([p.requires_grad for p in m.parameters()])
        return out

    t, f = both(run)
    assert f == t
    assert t[1] == [False] * 8


def test_requires_grad_on_integer_parameter_is_runtime_error():
    def build(L, arr):
        m = L.Empty()
        m.i = L.nn.Parameter(arr, requires_grad=False)
        return lambda: m.requires_grad_(True)

    same_error(build(T, torch.arange(3)), build(F, jnp.arange(3)), "floating point")


def test_missing_forward_is_not_implemented_error():
    t_exc, f_exc = same_error(lambda: T.Empty()(1), lambda: F.Empty()(1))
    assert str(f_exc) == str(t_exc) == 'Module [Empty] is missing the required "forward" function'
    t_exc, f_exc = same_error(lambda: torch.nn.ModuleList()(1), lambda: nn.ModuleList()(1))
    assert str(f_exc) == str(t_exc)


def test_call_forwards_args_and_kwargs():
    class Add(nn.Module):
        def forward(self, x, y=0, *, z=0):
            return x + y + z

    assert Add()(1, 2, z=3) == 6
    assert Add()(1, y=5) == 6


def test_second_init_call_resets_the_module():
    m = F.Norm()
    m.extra = nn.Parameter(jnp.ones(1))
    nn.Module.__init__(m)
    assert list(m.state_dict()) == [] and m.training is True


# --------------------------------------------------------------------------------------------
# repr


def _repr_model(L):
    nn_ = L.nn
    m = L.Empty()
    m.seq = nn_.Sequential(
        L.Act(1),
        nn_.Sequential(L.Act(2), L.Multi()),
        nn_.ModuleList([L.Act(3), L.Act(3), L.Act(4), L.Act(3)]),
        nn_.ModuleDict(OrderedDict([("z", L.Act(5)), ("a", nn_.Sequential())])),
    )
    m.named = nn_.Sequential(OrderedDict([("conv", L.Act(6)), ("act", L.Multi())]))
    m.empty_list = nn_.ModuleList()
    m.nested = nn_.ModuleList([nn_.Sequential(L.Act(7)), nn_.Sequential(L.Act(7)), L.Empty()])
    m.add_module("nothing", None)
    m.multi = L.Multi()
    return m


def test_repr_matches_torch_for_nested_containers():
    t, f = both(_repr_model)
    assert repr(f) == repr(t)
    assert "(0-1): 2 x Act(k=3)" in repr(f)


def test_repr_of_leaf_modules_matches_torch():
    for build in (
        lambda L: L.Act(3),
        lambda L: L.Multi(),
        lambda L: L.Empty(),
        lambda L: L.nn.Sequential(),
    ):
        t, f = both(build)
        assert repr(f) == repr(t)
