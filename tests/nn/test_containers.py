"""Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict (§2), each against torch.

Every scenario runs the same operations on torch's container and on fparam's, recording after
each step the keys (or the exception type), and compares the two records. Messages are compared
by substring where torch and fparam name types differently.
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


def _make(tnn, arr):
    class Lin(tnn.Module):
        def __init__(self, i=2, o=2):
            super().__init__()
            self.weight = tnn.Parameter(arr(o, i))
            self.bias = tnn.Parameter(arr(o))

        def forward(self, x):
            return x @ self.weight.T + self.bias

    class Act(tnn.Module):
        def __init__(self, k=0):
            super().__init__()
            self.k = k

        def forward(self, x):
            return x * 2

        def extra_repr(self):
            return f"k={self.k}"

    return SimpleNamespace(nn=tnn, arr=arr, Lin=Lin, Act=Act)


T = _make(torch.nn, lambda *s: torch.randn(s))
F = _make(nn, lambda *s: jnp.ones(s, jnp.float32))


def both(fn):
    return fn(T), fn(F)


def attempt(fn):
    """The result of ``fn()``, or the type of what it raised."""
    try:
        return fn()
    except Exception as exc:
        return type(exc)


def same_error(torch_call, fp_call, *substrings):
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


def keys(m):
    return list(m._modules)


def pnames(m):
    return [n for n, _ in m.named_parameters()]


def tags(modules):
    """A container's children by class name and k (what identifies them across libraries)."""
    return [None if m is None else (type(m).__name__, getattr(m, "k", None)) for m in modules]


def acts(L, n):
    return [L.Act(i) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Sequential


def test_sequential_constructor():
    def run(L):
        plain = L.nn.Sequential(L.Lin(), L.Act(), L.Lin())
        named = L.nn.Sequential(OrderedDict([("conv", L.Lin()), ("act", L.Act())]))
        nested = L.nn.Sequential(L.nn.Sequential(L.Lin(), L.Act()), L.Lin())
        with_none = L.nn.Sequential(None)
        return (
            keys(plain),
            pnames(plain),
            keys(named),
            pnames(named),
            pnames(nested),
            keys(with_none),
            len(with_none),
        )

    t, f = both(run)
    assert f == t
    assert t[1] == ["0.weight", "0.bias", "2.weight", "2.bias"] and t[3] == [
        "conv.weight",
        "conv.bias",
    ]


@pytest.mark.parametrize(
    "args,substring",
    [
        (lambda L: ({"a": L.Act()},), "dict is not a Module subclass"),
        (lambda L: ([L.Act()],), "list is not a Module subclass"),
        (lambda L: (L.Act(), 3), "int is not a Module subclass"),
        (lambda L: (OrderedDict([(1, L.Act())]),), "module name should be a string. Got int"),
        (lambda L: (OrderedDict([("a.b", L.Act())]),), "can\\'t contain"),
    ],
)
def test_sequential_constructor_errors(args, substring):
    same_error(lambda: T.nn.Sequential(*args(T)), lambda: F.nn.Sequential(*args(F)), substring)


def test_sequential_integer_indexing_is_positional():
    def run(L):
        s = L.nn.Sequential(*acts(L, 3))
        od = L.nn.Sequential(OrderedDict([("a", L.Act(10)), ("b", L.Act(11))]))
        return [
            tags([s[0], s[2], s[-1], s[-3], s[np.int64(1)], od[0], od[-1]]),
            attempt(lambda: s[3]),
            attempt(lambda: s[-4]),
            attempt(lambda: s["0"]),
            attempt(lambda: s[1.0]),
        ]

    t, f = both(run)
    assert f == t
    assert t[1:] == [IndexError, IndexError, TypeError, TypeError]
    assert tags([nn.Sequential(*acts(F, 3))[jnp.array(1)]]) == tags(
        [T.nn.Sequential(*acts(T, 3))[torch.tensor(1)]]
    )
    same_error(
        lambda: T.nn.Sequential(T.Act())[3],
        lambda: F.nn.Sequential(F.Act())[3],
        "index 3 is out of range",
    )


@pytest.mark.parametrize(
    "index",
    [slice(1, None), slice(None, None, 2), slice(None, None, -1), slice(5, 9), slice(-2, None)],
)
def test_sequential_slices_keep_the_original_keys(index):
    def run(L):
        s = L.nn.Sequential(*acts(L, 4))
        od = L.nn.Sequential(OrderedDict([("conv", L.Lin()), ("act", L.Act()), ("fc", L.Lin())]))
        part, od_part = s[index], od[index]
        return type(part).__name__, keys(part), tags(part), keys(od_part), pnames(od_part)

    t, f = both(run)
    assert f == t


def test_sequential_slice_is_a_new_tree_over_the_same_modules():
    s = nn.Sequential(F.Lin(), F.Act(), F.Lin())
    tail = s[1:]
    assert tail[1] is s[2]
    assert pnames(tail) == ["2.weight", "2.bias"]


def test_sequential_setitem():
    def run(L):
        s = L.nn.Sequential(*acts(L, 3))
        s[1] = L.Act(10)
        s[-1] = L.Act(11)
        od = L.nn.Sequential(OrderedDict([("a", L.Act(0)), ("b", L.Act(1))]))
        od[1] = L.Act(12)
        return (
            keys(s),
            tags(s),
            keys(od),
            tags(od),
            attempt(lambda: s.__setitem__(3, L.Act())),
            tags(s),
        )

    t, f = both(run)
    assert f == t
    s_t, s_f = T.nn.Sequential(T.Act()), F.nn.Sequential(F.Act())
    same_error(
        lambda: s_t.__setitem__(0, 3), lambda: s_f.__setitem__(0, 3), "'int' as child module '0'"
    )


@pytest.mark.parametrize("index", [0, -1, 2, slice(1, 3), slice(None, None, 2), slice(None)])
def test_sequential_delitem_renumbers(index):
    def run(L):
        s = L.nn.Sequential(*acts(L, 4))
        del s[index]
        od = L.nn.Sequential(
            OrderedDict([("a", L.Act(0)), ("b", L.Lin()), ("c", L.Act(2)), ("d", L.Act(3))])
        )
        del od[index]
        return keys(s), tags(s), keys(od), tags(od), pnames(od)

    t, f = both(run)
    assert f == t


def test_sequential_delitem_out_of_range():
    same_error(
        lambda: T.nn.Sequential(T.Act()).__delitem__(1),
        lambda: F.nn.Sequential(F.Act()).__delitem__(1),
        "index 1 is out of range",
    )


def test_sequential_append_insert_extend_pop():
    def run(L):
        s = L.nn.Sequential(*acts(L, 2))
        out = [s.append(L.Act(2)) is s, keys(s)]
        od = L.nn.Sequential(OrderedDict([("a", L.Act(0)), ("b", L.Act(1))]))
        od.append(L.Act(2))
        out.append(keys(od))
        out += [s.insert(1, L.Act(10)) is s, keys(s), tags(s)]
        s.insert(-1, L.Act(11))
        s.insert(len(s), L.Act(12))
        s.insert(-len(s), L.Act(13))
        out += [keys(s), tags(s)]
        out += [s.extend([L.Act(20), L.Act(21)]) is s, keys(s), tags(s)]
        s.extend(L.nn.Sequential(L.Act(22)))
        out.append(tags(s))
        popped = s.pop(1)
        out += [tags([popped]), keys(s), tags(s)]
        popped = s.pop(-1)
        out += [tags([popped]), keys(s)]
        return out

    t, f = both(run)
    assert f == t


def test_sequential_append_and_insert_errors():
    s_t, s_f = T.nn.Sequential(*acts(T, 3)), F.nn.Sequential(*acts(F, 3))
    same_error(lambda: s_t.append(3), lambda: s_f.append(3), "int is not a Module subclass")
    _, f_exc = same_error(
        lambda: s_t.insert(0, [T.Act()]),
        lambda: s_f.insert(0, [F.Act()]),
        "module should be of type",
    )
    assert isinstance(f_exc, AssertionError)
    for index in (99, -5, 4):
        same_error(
            lambda i=index: s_t.insert(i, T.Act()),
            lambda i=index: s_f.insert(i, F.Act()),
            f"Index out of range: {index}",
        )
    assert keys(s_f) == keys(s_t) == ["0", "1", "2"]


def test_sequential_add_and_iadd():
    def run(L):
        a = L.nn.Sequential(L.Act(0), L.Act(1))
        b = L.nn.Sequential(OrderedDict([("x", L.Act(2))]))
        c = a + b
        out = [type(c).__name__, keys(c), tags(c), keys(a)]
        a += L.nn.Sequential(L.Act(3), L.Act(4))
        out += [keys(a), tags(a)]
        return out

    t, f = both(run)
    assert f == t
    for op in ("__add__", "__iadd__"):
        t_exc, f_exc = same_error(
            lambda o=op: getattr(T.nn.Sequential(), o)([T.Act()]),
            lambda o=op: getattr(F.nn.Sequential(), o)([F.Act()]),
        )
        assert (
            str(f_exc)
            == str(t_exc)
            == "add operator supports only objects of Sequential class, but <class 'list'> is given."
        )


def test_sequential_mul_errors_and_factor_one():
    def run(L):
        s = L.nn.Sequential(L.Act(0), L.Act(1))
        once, ronce = s * 1, 1 * s
        return (
            keys(once),
            tags(once),
            keys(ronce),
            attempt(lambda: s * 0),
            attempt(lambda: s * "a"),
            attempt(lambda: s * 1.5),
        )

    t, f = both(run)
    assert f == t
    same_error(
        lambda: T.nn.Sequential() * 0,
        lambda: F.nn.Sequential() * 0,
        "Non-positive multiplication factor 0",
    )
    same_error(
        lambda: T.nn.Sequential() * "a",
        lambda: F.nn.Sequential() * "a",
        "unsupported operand type(s) for *",
    )


def test_sequential_repetition_is_refused_because_it_would_share_modules():
    """torch's `seq * 2` repeats the same module objects (tied weights); fparam refuses sharing."""
    s = nn.Sequential(F.Lin(), F.Act())
    for op in (lambda: s * 2, lambda: 3 * s, lambda: s + s):
        with pytest.raises(ValueError, match="appears twice in one model"):
            op()
    with pytest.raises(ValueError, match=r"'0'.*'2'"):
        s.__imul__(2)
    assert keys(s) == ["0", "1"]  # all or none


def test_sequential_forward():
    def run(L, x):
        s = L.nn.Sequential(L.Act(), L.Act())
        return np.asarray(s(x)), np.asarray(L.nn.Sequential()(x))

    t, f = run(T, torch.ones(2)), run(F, jnp.ones(2))
    np.testing.assert_array_equal(f[0], t[0])
    np.testing.assert_array_equal(f[1], t[1])


# --------------------------------------------------------------------------------------------
# ModuleList


def test_modulelist_constructor():
    def run(L):
        lst = L.nn.ModuleList([L.Lin(), L.Act(), L.Lin()])
        from_seq = L.nn.ModuleList(L.nn.Sequential(L.Act(0), L.Act(1)))
        from_gen = L.nn.ModuleList(L.Act(i) for i in range(3))
        return keys(lst), pnames(lst), keys(from_seq), tags(from_gen), len(L.nn.ModuleList())

    t, f = both(run)
    assert f == t
    assert t[1] == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize(
    "arg,substring",
    [
        (lambda L: 3, "ModuleList.extend should be called with an iterable, but got int"),
        (lambda L: L.Act(), "ModuleList.extend should be called with an iterable, but got Act"),
        (lambda L: [3], "int is not a Module subclass"),
    ],
)
def test_modulelist_constructor_errors(arg, substring):
    same_error(lambda: T.nn.ModuleList(arg(T)), lambda: F.nn.ModuleList(arg(F)), substring)


def test_modulelist_indexing_and_slicing_renumbers():
    def run(L):
        lst = L.nn.ModuleList(acts(L, 4))
        out = [tags([lst[0], lst[-1], lst[np.int64(2)]])]
        for index in (slice(1, None), slice(None, None, -1), slice(None, None, 2)):
            part = lst[index]
            out += [type(part).__name__, keys(part), tags(part)]
        out += [attempt(lambda: lst[4]), attempt(lambda: lst[-5]), attempt(lambda: lst["0"])]
        return out

    t, f = both(run)
    assert f == t
    same_error(
        lambda: T.nn.ModuleList(acts(T, 2))[5],
        lambda: F.nn.ModuleList(acts(F, 2))[5],
        "index 5 is out of range",
    )


def test_modulelist_mutation():
    def run(L):
        lst = L.nn.ModuleList(acts(L, 4))
        lst[-1] = L.Act(10)
        lst[0] = L.Act(11)
        out = [keys(lst), tags(lst)]
        del lst[1]
        out += [keys(lst), tags(lst)]
        del lst[::2]
        out += [keys(lst), tags(lst)]
        lst.insert(0, L.Act(12))
        lst.insert(len(lst), L.Act(13))
        lst.insert(1, L.Act(14))
        out += [keys(lst), tags(lst)]
        out += [tags([lst.pop(1)]), keys(lst), tags(lst)]
        out += [lst.append(L.Act(15)) is lst, keys(lst)]
        out += [lst.extend([L.Act(16)]) is lst, keys(lst), tags(lst)]
        return out

    t, f = both(run)
    assert f == t


def test_modulelist_mutation_errors():
    lt, lf = T.nn.ModuleList(acts(T, 2)), F.nn.ModuleList(acts(F, 2))
    same_error(
        lambda: lt.__setitem__(5, T.Act()),
        lambda: lf.__setitem__(5, F.Act()),
        "index 5 is out of range",
    )
    same_error(
        lambda: lt.__setitem__(0, 3), lambda: lf.__setitem__(0, 3), "'int' as child module '0'"
    )
    same_error(lambda: lt.append(3), lambda: lf.append(3), "int is not a Module subclass")
    same_error(lambda: lt.__iadd__(T.Act()), lambda: lf.__iadd__(F.Act()), "but got Act")
    same_error(lambda: lt.extend(3), lambda: lf.extend(3), "but got int")
    assert keys(lf) == keys(lt) == ["0", "1"]


def test_modulelist_insert_fixes_torchs_bugs():
    """torch 2.13 corrupts the list on insert(-1, m) and stores non-modules; fparam does neither."""
    lst = nn.ModuleList(acts(F, 3))
    lst.insert(-1, F.Act(10))
    assert tags(lst) == [("Act", 0), ("Act", 1), ("Act", 10), ("Act", 2)]
    assert keys(lst) == ["0", "1", "2", "3"]
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        lst.insert(0, 3)
    with pytest.raises(IndexError):
        lst.insert(99, F.Act())
    assert len(lst) == 4


def test_modulelist_add_iadd_and_call():
    def run(L):
        a = L.nn.ModuleList(acts(L, 2))
        c = a + [L.Act(5)]  # noqa: RUF005 (ModuleList.__add__ under test)
        out = [type(c).__name__, keys(c), tags(c), keys(a)]
        a += [L.Act(6), L.Act(7)]
        out += [keys(a), tags(a)]
        return out

    t, f = both(run)
    assert f == t
    t_exc, f_exc = same_error(lambda: T.nn.ModuleList()(1), lambda: F.nn.ModuleList()(1))
    assert isinstance(f_exc, NotImplementedError)
    assert (
        str(f_exc) == str(t_exc) == 'Module [ModuleList] is missing the required "forward" function'
    )


def test_modulelist_repr_compresses_repeats():
    def build(L):
        return L.nn.ModuleList(
            [
                L.Act(1),
                L.Act(1),
                L.Act(2),
                L.nn.Sequential(L.Act(3)),
                L.nn.Sequential(L.Act(3)),
                L.Act(1),
            ]
        )

    t, f = both(build)
    assert repr(f) == repr(t)
    assert "(0-1): 2 x Act(k=1)" in repr(f) and "(3-4): 2 x Sequential(" in repr(f)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList()) == "ModuleList()"


# --------------------------------------------------------------------------------------------
# ModuleDict


def test_moduledict_update_keeps_order():
    def run(L):
        md = L.nn.ModuleDict({"b": L.Lin(), "a": L.Act(0)})
        out = [keys(md), pnames(md)]
        md.update([("z", L.Act(1)), ("c", L.Act(2))])
        md.update(OrderedDict([("y", L.Act(3)), ("b", L.Act(4))]))
        md.update(L.nn.ModuleDict({"x": L.Act(5)}))
        out += [keys(md), tags(md.values())]
        return out

    t, f = both(run)
    assert f == t
    assert t[0] == ["b", "a"] and t[1] == ["b.weight", "b.bias"]


@pytest.mark.parametrize(
    "bad,substring",
    [
        (
            lambda L: 1,
            "ModuleDict.update should be called with an iterable of key/value pairs, but got int",
        ),
        (lambda L: [1], "ModuleDict update sequence element #0 should be Iterable; isint"),
        (
            lambda L: [("a", L.Act(), 3)],
            "ModuleDict update sequence element #0 has length 3; 2 is required",
        ),
        (lambda L: [("a", L.Act()), ("b",)], "element #1 has length 1; 2 is required"),
        (lambda L: {"training": L.Act()}, "already exists"),
        (lambda L: {"parameters": L.Act()}, "already exists"),
        (lambda L: {"a.b": L.Act()}, "can\\'t contain"),
        (lambda L: {"a": 3}, "int is not a Module subclass"),
        (lambda L: [(1, L.Act())], "module name should be a string. Got int"),
    ],
)
def test_moduledict_update_errors(bad, substring):
    same_error(
        lambda: T.nn.ModuleDict().update(bad(T)),
        lambda: F.nn.ModuleDict().update(bad(F)),
        substring,
    )
    same_error(lambda: T.nn.ModuleDict(bad(T)), lambda: F.nn.ModuleDict(bad(F)), substring)


def test_moduledict_dict_api():
    def run(L):
        md = L.nn.ModuleDict([("b", L.Act(0)), ("a", L.Act(1)), ("c", L.Act(2))])
        out = [
            list(md.keys()),
            [k for k, _ in md.items()],
            tags(md.values()),
            list(md),
            len(md),
            "a" in md,
            "zz" in md,
        ]
        out += [tags([md["a"]]), attempt(lambda: md["zz"])]
        md["d"] = L.Act(3)
        md["b"] = L.Act(4)  # replacing keeps the position
        out += [keys(md), tags(md.values())]
        out += [tags([md.pop("a")]), keys(md), attempt(lambda: md.pop("a"))]
        del md["c"]
        out += [keys(md), attempt(lambda: md.__delitem__("c"))]
        md.clear()
        out += [keys(md), len(md)]
        md["e"] = L.Act(5)
        out.append(keys(md))
        return out

    t, f = both(run)
    assert f == t
    same_error(lambda: T.nn.ModuleDict()["zzz"], lambda: F.nn.ModuleDict()["zzz"], "zzz")
    md_t, md_f = T.nn.ModuleDict(), F.nn.ModuleDict()
    same_error(
        lambda: md_t.__setitem__(1, T.Act()),
        lambda: md_f.__setitem__(1, F.Act()),
        "module name should be a string. Got int",
    )
    same_error(
        lambda: md_t.__setitem__("training", T.Act()),
        lambda: md_f.__setitem__("training", F.Act()),
        "already exists",
    )
    same_error(lambda: md_t(1), lambda: md_f(1), "missing the required")


@pytest.mark.parametrize(
    "bad",
    [
        lambda: [("x", F.Act()), ("y", F.Act()), 3],  # a malformed 3rd element
        lambda: [("x", F.Act()), ("y", F.Act()), ("z", 3)],  # a 3rd value that is no module
        lambda: [("x", F.Act()), ("y", F.Act()), ("a.b", F.Act())],  # a 3rd key that is refused
        lambda: OrderedDict([("x", F.Act()), ("a", F.Act()), ("training", F.Act())]),
    ],
)
def test_moduledict_update_is_all_or_none(bad):
    """torch applies the elements before the bad one; fparam deliberately leaves the dict as it was."""
    md = nn.ModuleDict({"a": F.Act(0), "b": F.Lin()})
    before = (keys(md), tags(md.values()))
    with pytest.raises((TypeError, ValueError, KeyError)):
        md.update(bad())
    assert (keys(md), tags(md.values())) == before
    assert pnames(md) == ["b.weight", "b.bias"]


def test_bulk_operations_of_lists_are_all_or_none():
    lst = nn.ModuleList(acts(F, 2))
    with pytest.raises(TypeError):
        lst.extend([F.Act(), F.Act(), 3])
    assert keys(lst) == ["0", "1"]
    s = nn.Sequential(*acts(F, 2))
    with pytest.raises(TypeError):
        s.extend([F.Act(), 3])
    with pytest.raises(ValueError, match="appears twice"):
        s += nn.Sequential(F.Act(), s[0])  # the 2nd would tie s[0] to itself
    with pytest.raises(IndexError):
        del s[5]
    assert keys(s) == ["0", "1"] and tags(s) == [("Act", 0), ("Act", 1)]
    pl = nn.ParameterList([jnp.ones(2)])
    with pytest.raises(RuntimeError):
        pl.extend([jnp.ones(2), jnp.arange(3)])  # the int array cannot require gradients
    assert len(pl) == 1 and pnames(pl) == ["0"]
    pd = nn.ParameterDict({"a": jnp.ones(1)})
    with pytest.raises(KeyError):
        pd.update([("b", jnp.ones(1)), ("c.d", jnp.ones(1))])
    assert list(pd.keys()) == ["a"] and pnames(pd) == ["a"]


# --------------------------------------------------------------------------------------------
# ParameterList


def test_parameterlist_converts_arrays_and_keeps_other_objects():
    def run(L):
        pl = L.nn.ParameterList([L.arr(2, 3), L.nn.Parameter(L.arr(1)), "hello", L.arr(4)])
        out = [len(pl), pnames(pl), list(pl.state_dict()), [type(v).__name__ == "str" for v in pl]]
        out += [pl.append(L.arr(1)) is pl, pl.extend([L.arr(1), 7]) is pl, len(pl), pnames(pl)]
        wrapper = L.nn.Module()
        wrapper.params = pl
        out.append(pnames(wrapper))
        return out

    t, f = both(run)
    assert f == t
    assert t[1] == ["0", "1", "3"]
    pl = nn.ParameterList([np.ones(2, np.float32), jnp.zeros(3)])
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in pl.parameters())
    assert isinstance(pl[0], jax.Array) and not isinstance(pl[0], nn.Parameter)
    assert pl[2 - 3].shape == (3,)


def test_parameterlist_int_array_cannot_become_a_parameter():
    same_error(
        lambda: T.nn.ParameterList([torch.arange(3)]),
        lambda: F.nn.ParameterList([jnp.arange(3)]),
        "floating point",
    )


def test_parameterlist_indexing_slicing_setitem():
    def run(L):
        pl = L.nn.ParameterList([L.arr(1), L.arr(2), "s", L.arr(3)])
        out = []
        for index in (slice(1, None), slice(None, None, -1), slice(None, None, 2)):
            part = pl[index]
            out += [
                type(part).__name__,
                len(part),
                pnames(part),
                [tuple(getattr(v, "shape", ())) for v in part],
            ]
        out += [
            tuple(pl[-1].shape),
            tuple(pl[np.int64(1)].shape),
            attempt(lambda: pl[10]),
            attempt(lambda: pl[-5]),
        ]
        pl[0] = L.arr(5)
        pl[-1] = L.nn.Parameter(L.arr(6))
        out += [pnames(pl), tuple(pl[0].shape), tuple(pl[3].shape)]
        out.append(attempt(lambda: pl.__setitem__(0, "str over a parameter")))
        return out

    t, f = both(run)
    assert f == t
    same_error(
        lambda: T.nn.ParameterList()[10],
        lambda: F.nn.ParameterList()[10],
        "index 10 is out of range",
    )


@pytest.mark.parametrize(
    "bad,substring",
    [
        (lambda L: L.arr(2), "ParameterList.extend should be called with an iterable, but got "),
        (lambda L: 3, "ParameterList.extend should be called with an iterable, but got int"),
    ],
)
def test_parameterlist_extend_errors(bad, substring):
    same_error(lambda: T.nn.ParameterList(bad(T)), lambda: F.nn.ParameterList(bad(F)), substring)
    same_error(
        lambda: T.nn.ParameterList().extend(bad(T)),
        lambda: F.nn.ParameterList().extend(bad(F)),
        substring,
    )


def test_parameterlist_call_and_repr():
    t_exc, f_exc = same_error(lambda: T.nn.ParameterList()(1), lambda: F.nn.ParameterList()(1))
    assert str(f_exc) == str(t_exc) == "ParameterList should not be called."
    t = torch.nn.ParameterList([torch.zeros(2, 3), torch.zeros(1), "hello"])
    f = nn.ParameterList([jnp.zeros((2, 3)), jnp.zeros(1), "hello"])
    assert repr(f) == repr(t).replace("torch.float32", "float32")
    assert repr(nn.ParameterList()) == repr(torch.nn.ParameterList()) == "ParameterList()"


# --------------------------------------------------------------------------------------------
# ParameterDict


def test_parameterdict_ordering():
    def run(L):
        plain = L.nn.ParameterDict({"z": L.arr(1), "a": L.arr(2), "m": "obj"})
        ordered = L.nn.ParameterDict(OrderedDict([("z", L.arr(1)), ("a", L.arr(2))]))
        pairs = L.nn.ParameterDict([("z", L.arr(1)), ("a", L.arr(2))])
        copied = L.nn.ParameterDict(ordered)
        wrapper = L.nn.Module()
        wrapper.pd = plain
        return (
            list(plain.keys()),
            pnames(plain),
            list(ordered),
            list(pairs),
            list(copied),
            pnames(wrapper),
        )

    t, f = both(run)
    assert f == t
    assert t[0] == ["a", "m", "z"] and t[2] == ["z", "a"]


@pytest.mark.parametrize(
    "bad,substring",
    [
        (
            lambda L: 1,
            "ParametersDict.update should be called with an iterable of key/value pairs, but got int",
        ),
        (lambda L: [1], "ParameterDict update sequence element #0 should be Iterable; isint"),
        (
            lambda L: [("a",)],
            "ParameterDict update sequence element #0 has length 1; 2 is required",
        ),
        (lambda L: L.arr(10, 10), "element #0 has length 10; 2 is required"),
        (lambda L: L.nn.Parameter(L.arr(10, 10)), "element #0 has length 10; 2 is required"),
        (lambda L: {"a.b": L.arr(1)}, "can\\'t contain"),
        (lambda L: OrderedDict([(1, L.arr(1))]), "as it is not a string (type is 'int')"),
    ],
)
def test_parameterdict_update_errors(bad, substring):
    same_error(
        lambda: T.nn.ParameterDict().update(bad(T)),
        lambda: F.nn.ParameterDict().update(bad(F)),
        substring,
    )


def test_parameterdict_key_errors():
    pt, pf = T.nn.ParameterDict({"a": T.arr(1)}), F.nn.ParameterDict({"a": F.arr(1)})
    same_error(
        lambda: pt.__setitem__(1, T.arr(1)),
        lambda: pf.__setitem__(1, F.arr(1)),
        "Index given to ParameterDict cannot be used as a key",
    )
    same_error(lambda: pt[1], lambda: pf[1], "(type is 'int')")
    same_error(
        lambda: pt.__setitem__("a.b", T.arr(1)),
        lambda: pf.__setitem__("a.b", F.arr(1)),
        "can\\'t contain",
    )
    same_error(
        lambda: pt.__setitem__("parameters", T.arr(1)),
        lambda: pf.__setitem__("parameters", F.arr(1)),
        "already exists",
    )
    # torch 2.13 silently replaces the `training` flag by a parameter here; fparam refuses.
    with pytest.raises(KeyError, match="already exists"):
        pf["training"] = F.arr(1)
    assert pf.training is True
    assert list(pf.keys()) == ["a"]  # torch leaves the bad keys in its key list; fparam does not
    # A missing key: torch raises AttributeError, Python's dict protocol expects KeyError: both.
    with pytest.raises(AttributeError) as t_info:
        pt["zz"]
    with pytest.raises(AttributeError) as f_info:
        pf["zz"]
    assert isinstance(f_info.value, KeyError)
    assert str(f_info.value) == str(t_info.value) == "'ParameterDict' object has no attribute 'zz'"
    with pytest.raises(KeyError):
        pf.pop("zz")
    with pytest.raises(KeyError):
        del pf["zz"]


def test_parameterdict_dict_api():
    def run(L):
        pd = L.nn.ParameterDict(OrderedDict([("b", L.arr(1)), ("a", L.arr(2)), ("c", "obj")]))
        shape = lambda v: tuple(v.shape) if hasattr(v, "shape") else v  # noqa: E731
        out = [
            list(pd),
            list(reversed(pd)),
            len(pd),
            "a" in pd,
            "zz" in pd,
            shape(pd["a"]),
            pd["c"],
        ]
        out += [shape(pd.get("a")), pd.get("zz", 5), pd.get("zz")]
        out += [[k for k, _ in pd.items()], [shape(v) for v in pd.values()]]
        out += [shape(pd.setdefault("a", L.arr(9))), shape(pd.setdefault("d", L.arr(4))), list(pd)]
        out += [shape(pd.pop("b")), list(pd), pnames(pd)]
        k, v = pd.popitem()
        out += [k, shape(v), list(pd)]
        copy = pd.copy()
        copy["e"] = L.arr(5)
        out += [type(copy).__name__, list(copy), list(pd), pnames(copy)]
        fresh = pd.fromkeys(["x", "y"], L.arr(3))
        out += [list(fresh), pnames(fresh)]
        other = L.nn.ParameterDict(OrderedDict([("a", L.arr(7)), ("z", L.arr(8))]))
        union = pd | other
        out += [list(union), shape(union["a"]), list(pd)]
        pd |= other
        out += [list(pd), shape(pd["a"])]
        pd.clear()
        out += [list(pd), len(pd), pnames(pd), attempt(pd.popitem)]
        return out

    t, f = both(run)
    assert f == t


def test_parameterdict_entries_become_parameters():
    pd = nn.ParameterDict(
        {
            "w": np.ones(2, np.float32),
            "o": "obj",
            "p": nn.Parameter(jnp.ones(1), requires_grad=False),
        }
    )
    assert pnames(pd) == ["p", "w"]
    assert [p.requires_grad for p in pd.parameters()] == [False, True]
    assert isinstance(pd["w"], jax.Array) and not isinstance(pd["w"], nn.Parameter)
    assert list(pd.state_dict()) == ["p", "w"]


def test_parameterdict_call():
    t_exc, f_exc = same_error(lambda: T.nn.ParameterDict()(1), lambda: F.nn.ParameterDict()(1))
    assert str(f_exc) == str(t_exc) == "ParameterDict should not be called."


# --------------------------------------------------------------------------------------------
# What the parameter containers store for each kind of value, against torch 2.13.
#
# torch wraps a torch tensor into a Parameter (requires_grad=True, whatever the tensor's flag;
# a Parameter keeps its own) and keeps other objects as plain entries. fparam does the same for
# torch tensors, and treats its own arrays (JAX, NumPy) as torch treats tensors: torch's side of
# those cases is run with the equivalent torch tensor.

_VALUES = {
    "tensor": lambda: (torch.arange(2.0), torch.arange(2.0)),
    "tensor_requires_grad": lambda: (
        torch.ones(2, requires_grad=True),
        torch.ones(2, requires_grad=True),
    ),
    "tensor_requires_grad_false": lambda: (torch.ones(2), torch.ones(2)),
    "torch_parameter": lambda: (
        torch.nn.Parameter(torch.ones(3)),
        torch.nn.Parameter(torch.ones(3)),
    ),
    "torch_parameter_frozen": lambda: (
        torch.nn.Parameter(torch.ones(3), requires_grad=False),
        torch.nn.Parameter(torch.ones(3), requires_grad=False),
    ),
    "torch_buffer": lambda: (torch.nn.Buffer(torch.ones(2)), torch.nn.Buffer(torch.ones(2))),
    "jax_array": lambda: (torch.ones(2), jnp.ones(2)),
    "numpy_array": lambda: (torch.ones(2), np.ones(2, np.float32)),
    "int": lambda: (3, 3),
    "str": lambda: ("tag", "tag"),
    "none": lambda: (None, None),
}

_LIST_ADDS = {
    "constructor": lambda P, v: P([v]),
    "append": lambda P, v: P().append(v),
    "extend": lambda P, v: P().extend([v]),
    "iadd": lambda P, v: P().__iadd__([v]),
    "setitem_over_plain_entry": lambda P, v: _set(P(["old"]), 0, v),
}

_DICT_ADDS = {
    "constructor": lambda P, v: P({"a": v}),
    "setitem": lambda P, v: _set(P(), "a", v),
    "update_pairs": lambda P, v: _update(P(), [("a", v)]),
    "update_ordered": lambda P, v: _update(P(), OrderedDict(a=v)),
    "setdefault": lambda P, v: _setdefault(P(), "a", v),
}


def _set(container, key, value):
    container[key] = value
    return container


def _update(container, values):
    container.update(values)
    return container


def _setdefault(container, key, value):
    container.setdefault(key, value)
    return container


def _stored(container):
    """What a user can observe: parameters (name, requires_grad, shape), state_dict keys,
    length, and whether each entry is a parameter or a plain object (and which)."""
    params = [(n, p.requires_grad, tuple(p.shape)) for n, p in container.named_parameters()]
    names = list(container) if hasattr(container, "keys") else range(len(container))
    entries = []
    for key in names:
        value = container[key]
        if isinstance(value, (torch.Tensor, jax.Array)):
            entries.append("array")
        else:
            entries.append(value)
    return params, list(container.state_dict()), len(container), entries


@pytest.mark.parametrize("value", list(_VALUES))
@pytest.mark.parametrize("add", list(_LIST_ADDS))
def test_parameterlist_stores_each_kind_of_value_as_torch(add, value):
    t_value, f_value = _VALUES[value]()
    t = _LIST_ADDS[add](torch.nn.ParameterList, t_value)
    f = _LIST_ADDS[add](nn.ParameterList, f_value)
    assert _stored(f) == _stored(t)


@pytest.mark.parametrize("value", list(_VALUES))
@pytest.mark.parametrize("add", list(_DICT_ADDS))
def test_parameterdict_stores_each_kind_of_value_as_torch(add, value):
    t_value, f_value = _VALUES[value]()
    t = _DICT_ADDS[add](torch.nn.ParameterDict, t_value)
    f = _DICT_ADDS[add](nn.ParameterDict, f_value)
    assert _stored(f) == _stored(t)


def test_a_torch_tensor_in_a_container_is_saved_and_copied():
    source = torch.arange(3.0)
    pl = nn.ParameterList([source])
    pd = nn.ParameterDict({"w": torch.nn.Parameter(torch.ones(2), requires_grad=False)})
    np.testing.assert_array_equal(np.asarray(pl.state_dict()["0"]), [0.0, 1.0, 2.0])
    assert [(n, p.requires_grad) for n, p in pd.named_parameters()] == [("w", False)]
    source.add_(1.0)  # the container holds a copy, not a view of torch's memory
    np.testing.assert_array_equal(np.asarray(pl[0]), [0.0, 1.0, 2.0])


@pytest.mark.parametrize("value", ["int", "str"])
def test_a_plain_object_over_a_parameter_slot_is_refused_as_torch(value):
    t_value, f_value = _VALUES[value]()
    t = torch.nn.ParameterList([torch.ones(1)])
    f = nn.ParameterList([jnp.ones(1)])
    _, f_exc = same_error(lambda: _set(t, 0, t_value), lambda: _set(f, 0, f_value))
    assert "parameter '0'" in str(f_exc)
    assert _stored(f) == _stored(t)  # unchanged


def test_an_int_torch_tensor_cannot_become_a_parameter_and_changes_nothing():
    t = torch.nn.ParameterList([torch.ones(1)])
    f = nn.ParameterList([jnp.ones(1)])
    same_error(
        lambda: t.extend([torch.ones(2), torch.arange(3)]),
        lambda: f.extend([torch.ones(2), torch.arange(3)]),
        "floating point",
    )
    assert len(f) == 1 and pnames(f) == ["0"]  # all-or-nothing (torch keeps the first one)
    td = torch.nn.ParameterDict()
    fd = nn.ParameterDict()
    same_error(lambda: _set(td, "a", torch.arange(2)), lambda: _set(fd, "a", torch.arange(2)))
    assert list(fd.keys()) == []  # torch is left with a key 'a' that has no value
    assert list(td.keys()) == ["a"]
