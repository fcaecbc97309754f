"""Forward hooks and pre-hooks: torch's calling conventions, order and removal, and hooks that
survive jit, copies, optimizer steps and state_dict round trips."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim


def _block(lib):
    class Block(lib.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = lib.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = lib.BatchNorm2d(c)
            self.conv2 = lib.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = lib.BatchNorm2d(c)
            self.relu = lib.ReLU()

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + x)

    class ResNetish(lib.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.Conv2d(3, 4, 3, stride=2, padding=1)
            self.layer1 = lib.Sequential(Block(4), Block(4))
            self.fc = lib.Linear(4, 5)

        def forward(self, x, scale=1.0):
            x = self.layer1(self.stem(x))
            return self.fc(x.mean((2, 3)) * scale)

    return ResNetish


def _models():
    t = _block(torch.nn)().eval()
    m = _block(nn)().eval()
    m.load_state_dict(t.state_dict())
    return t, m


X = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
NAMES = ["stem", "layer1.0", "layer1.1.bn2", "fc"]


def _register(model, names, make_hook, **kw):
    return [model.get_submodule(n).register_forward_hook(make_hook(n), **kw) for n in names]


def test_feature_extraction_matches_torch_eagerly_and_from_jit():
    t, m = _models()
    theirs, mine = {}, {}
    _register(t, NAMES, lambda n: lambda mod, args, out: theirs.__setitem__(n, out.detach()))
    _register(m, NAMES, lambda n: lambda mod, args, out: mine.__setitem__(n, out))
    t(torch.from_numpy(X))
    m(X)
    assert list(mine) == list(theirs) == NAMES
    for n in NAMES:
        np.testing.assert_allclose(mine[n], theirs[n].numpy(), rtol=1e-5, atol=1e-5)

    @jax.jit
    def features(model, x):
        mine.clear()
        out = model(x)
        return out, dict(mine)  # what the hooks collected while tracing, returned as outputs

    for _ in range(2):  # the second call runs the compiled program: no hook runs, same values
        _, feats = features(m, X)
        for n in NAMES:
            np.testing.assert_allclose(feats[n], theirs[n].numpy(), rtol=1e-5, atol=1e-5)
    assert features._cache_size() == 1


def test_output_replacement_and_pre_hook_argument_replacement_match_torch():
    t, m = _models()
    for model in (t, m):
        model.fc.register_forward_hook(lambda mod, args, out: out * 2 + 1)
        model.stem.register_forward_pre_hook(lambda mod, args: args[0] * 0.5)  # not a tuple
        model.layer1.register_forward_pre_hook(lambda mod, args: (args[0] + 1,))
    np.testing.assert_allclose(m(X), t(torch.from_numpy(X)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_order_prepend_and_arguments_match_torch():
    def record(lib_log, tag, kind):
        if kind == "pre":
            return lambda mod, args: lib_log.append((tag, type(mod).__name__, len(args)))
        if kind == "pre_kw":
            return lambda mod, args, kwargs: lib_log.append((tag, sorted(kwargs), len(args)))
        if kind == "post":
            return lambda mod, args, out: lib_log.append((tag, tuple(out.shape)))
        return lambda mod, args, kwargs, out: lib_log.append((tag, sorted(kwargs), out.shape[-1]))

    logs = []
    for model in _models():
        log = []
        model.register_forward_hook(record(log, "post-a", "post"))
        model.register_forward_pre_hook(record(log, "pre-a", "pre"))
        model.register_forward_pre_hook(record(log, "pre-b", "pre_kw"), with_kwargs=True)
        model.register_forward_pre_hook(record(log, "pre-c", "pre"), prepend=True)
        model.register_forward_hook(record(log, "post-b", "post_kw"), with_kwargs=True)
        model.register_forward_hook(record(log, "post-c", "post"), prepend=True)
        x = torch.from_numpy(X) if isinstance(model, torch.nn.Module) else X
        model(x, scale=2.0)
        logs.append(log)
    assert logs[0] == logs[1]
    assert [entry[0] for entry in logs[1]] == [
        "pre-c",
        "pre-a",
        "pre-b",
        "post-c",
        "post-a",
        "post-b",
    ]


def test_with_kwargs_hooks_can_replace_args_and_kwargs_like_torch():
    outs = []
    for model in _models():
        model.register_forward_pre_hook(
            lambda mod, args, kwargs: (args, {**kwargs, "scale": 3.0}), with_kwargs=True
        )
        model.register_forward_hook(
            lambda mod, args, kwargs, out: out + kwargs["scale"], with_kwargs=True
        )
        x = torch.from_numpy(X) if isinstance(model, torch.nn.Module) else X
        out = model(x)
        outs.append(out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_bad_pre_hook_result_raises_torchs_error():
    messages = []
    for model in _models():
        model.register_forward_pre_hook(lambda mod, args, kwargs: 3, with_kwargs=True)
        x = torch.from_numpy(X) if isinstance(model, torch.nn.Module) else X
        with pytest.raises(RuntimeError) as info:
            model(x)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_always_call_runs_when_forward_raises_like_torch():
    results = []
    for lib in (torch.nn, nn):
        lin = lib.Linear(3, 2)
        log = []
        lin.register_forward_hook(lambda mod, args, out, log=log: log.append(("plain", out)))
        lin.register_forward_hook(
            lambda mod, args, out, log=log: log.append(("always", out)), always_call=True
        )

        def fails(mod, args, out):
            raise KeyError("hook failed")

        lin.register_forward_hook(fails, always_call=True)
        x = torch.ones(4, 5) if lib is torch.nn else jnp.ones((4, 5))  # wrong size: forward fails
        with (
            pytest.warns(UserWarning, match="always_call=True.*hook failed"),
            pytest.raises(Exception) as info,
        ):
            lin(x)
        results.append((type(info.value), log))
    assert results[0][0] is results[1][0] is RuntimeError
    assert results[0][1] == results[1][1] == [("always", None)]


def test_removal_and_handles():
    for model in _models():
        log = []
        handle = model.fc.register_forward_hook(lambda mod, args, out, log=log: log.append(1))
        x = torch.from_numpy(X) if isinstance(model, torch.nn.Module) else X
        with model.stem.register_forward_hook(lambda mod, args, out, log=log: log.append(2)):
            model(x)
        model(x)
        handle.remove()
        handle.remove()  # twice: ignored, as torch
        model(x)
        assert log == [2, 1, 1]
        assert not model.fc._forward_hooks and not model.stem._forward_hooks


def _mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_hooks_survive_jit_copies_steps_and_state_dict_and_do_not_split_structures():
    m = _mlp()
    plain = copy.deepcopy(m)
    handle = m[2].register_forward_hook(lambda mod, args, out: out * 0)
    assert jax.tree.structure(m) != jax.tree.structure(plain)

    @jax.jit
    def identity(model):
        return model

    x = jnp.asarray(X[:, 0, 0, :3])
    copies = {
        "jit": identity(m),
        "unflatten": jax.tree.unflatten(*reversed(jax.tree.flatten(m))),
        "deepcopy": copy.deepcopy(m),
        "tree.map": jax.tree.map(lambda a: a, m),
    }
    opt = optim.SGD(m.parameters(), lr=0.1)
    _, grads = fparam.value_and_grad(lambda model: model(x).sum())(m)
    copies["opt.step"], _ = opt.step(m, grads)
    loaded = copy.deepcopy(m)
    loaded.load_state_dict(plain.state_dict())
    copies["load_state_dict"] = loaded
    for name, c in copies.items():
        assert np.all(np.asarray(c.eval()(x)) == 0), name
        assert list(c[2]._forward_hooks) == [handle.id], name
    handle.remove(*copies.values())
    assert all(not c[2]._forward_hooks for c in copies.values())
    assert jax.tree.structure(m) == jax.tree.structure(plain)  # no hooks: same structure


def test_registering_retraces_once_and_inside_a_trace_raises():
    m = _mlp().eval()
    traces = []

    @jax.jit
    def f(model, x):
        traces.append(1)
        return model(x)

    x = X[:, 0, 0, :3]
    f(m, x)
    h = m[2].register_forward_hook(lambda mod, args, out: out + 1)
    f(m, x)
    f(m, x)
    h.remove()
    f(m, x)
    assert len(traces) == 2  # the hook-free structure is cached: removing does not retrace

    @jax.jit
    def register_inside(model):
        model.register_forward_hook(lambda *a: None)
        return model

    with pytest.raises(RuntimeError, match=r"register_forward_hook\(\)"):
        register_inside(m)
    with pytest.raises(TypeError, match="must be callable"):
        m.register_forward_pre_hook(3)


def test_hooks_run_under_grad_and_vmap():
    m = _mlp().eval()
    m[2].register_forward_hook(lambda mod, args, out: out * 2)
    x = jnp.asarray(X[:, 0, 0, :3])
    g = jax.jit(fparam.grad(lambda model: model(x).sum()))(m)
    g_plain = jax.jit(fparam.grad(lambda model: model[2].forward(model[1](model[0](x))).sum()))(m)
    np.testing.assert_allclose(g[2].bias, 2 * g_plain[2].bias, rtol=1e-6)
    out = jax.jit(jax.vmap(lambda xi: m(xi[None])[0]))(x)
    np.testing.assert_allclose(out, m(x), rtol=1e-5, atol=1e-5)
