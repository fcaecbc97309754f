"""Lazy modules against torch's: reprs before and after the first call, the class they become,
parameter shapes, initial distributions, outputs, load_state_dict, and fparam's refusals
(inside a trace, parameters() before the first call)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import monitoring

from fparam import nn, optim

# (class name, constructor args, kwargs, input shape)
CASES = [
    ("LazyLinear", (3,), {}, (2, 5)),
    ("LazyLinear", (4,), {"bias": False}, (7,)),
    ("LazyConv1d", (4, 3), {"stride": 2}, (2, 3, 9)),
    ("LazyConv2d", (4, 3), {"groups": 2, "padding": 1}, (1, 6, 5, 5)),
    ("LazyConv2d", (2, (1, 2)), {"bias": False, "padding_mode": "reflect"}, (3, 6, 5)),
    ("LazyConv3d", (2, 2), {"dilation": 1}, (1, 2, 3, 4, 4)),
    ("LazyConvTranspose1d", (4, 3), {"output_padding": 1, "stride": 2}, (2, 6, 5)),
    ("LazyConvTranspose2d", (4, 3), {"groups": 2}, (1, 6, 4, 4)),
    ("LazyConvTranspose3d", (2, 2), {"bias": False}, (2, 3, 3, 3)),
    ("LazyBatchNorm1d", (), {}, (4, 3)),
    ("LazyBatchNorm2d", (), {"momentum": None, "bias": False}, (2, 3, 4, 4)),
    ("LazyBatchNorm3d", (), {"affine": False}, (2, 2, 2, 3, 3)),
    ("LazyBatchNorm1d", (), {"affine": False, "track_running_stats": False}, (4, 3, 2)),
    ("LazyInstanceNorm1d", (), {}, (2, 3, 5)),
    ("LazyInstanceNorm2d", (), {"affine": False, "track_running_stats": False}, (3, 4, 4)),
    ("LazyInstanceNorm3d", (), {"eps": 1e-3}, (1, 2, 3, 3, 3)),
]


def _pair(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(torch.nn, name)(*args, **kwargs), getattr(nn, name)(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:input's size at dim=0 does not match num_features")
@pytest.mark.parametrize(("name", "args", "kwargs", "shape"), CASES)
def test_first_call_builds_what_torch_builds(name, args, kwargs, shape) -> None:
    theirs, mine = _pair(name, args, kwargs)
    assert repr(mine) == repr(theirs)
    assert mine.has_uninitialized_params() == theirs.has_uninitialized_params()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out_theirs = theirs(torch.from_numpy(x))
    # Compare outputs with torch's values loaded in: the build itself draws from fparam's stream.
    mine(x)
    assert type(mine).__name__ == type(theirs).__name__ == name.removeprefix("Lazy")
    assert type(mine) is getattr(nn, name.removeprefix("Lazy"))
    assert repr(mine) == repr(theirs)
    assert [(k, tuple(v.shape)) for k, v in mine.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    fresh = getattr(nn, name)(*args, **kwargs).train(theirs.training)
    with torch.no_grad():
        before = {k: v.clone() for k, v in theirs.state_dict().items()}
    fresh.load_state_dict(before)  # builds from the checkpoint's shapes
    assert type(fresh) is type(mine) or not mine.state_dict()  # nothing to build from
    out = fresh(x)
    assert type(fresh) is type(mine)
    np.testing.assert_allclose(np.asarray(out), out_theirs.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "args", "shape", "plain"),
    [
        ("LazyLinear", (64,), (2, 256), lambda key: nn.Linear(256, 64, key=key)),
        ("LazyConv2d", (32, 3), (1, 16, 5, 5), lambda key: nn.Conv2d(16, 32, 3, key=key)),
        (
            "LazyConvTranspose1d",
            (24, 5),
            (2, 8, 3),
            lambda key: nn.ConvTranspose1d(8, 24, 5, key=key),
        ),
    ],
)
def test_initial_values_are_the_plain_layers_and_torchs_distribution(
    name, args, shape, plain
) -> None:
    key = jax.random.key(3)
    mine = getattr(nn, name)(*args, key=key)
    mine(jnp.zeros(shape))
    expected = plain(key)
    for k, v in expected.state_dict().items():
        np.testing.assert_array_equal(mine.state_dict()[k], v)  # the same draw, same key
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args)
    theirs(torch.zeros(shape))
    for k, v in theirs.state_dict().items():
        ours, ref = np.asarray(mine.state_dict()[k]), v.numpy()
        bound = np.abs(ref).max()
        assert np.abs(ours).max() <= bound * 1.05  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        if ours.size >= 1000:  # the weights: moments of the same uniform
            assert abs(ours.std() - ref.std()) < 0.05 * ref.std()


def test_norm_initial_values_are_ones_and_zeros_like_torch() -> None:
    theirs, mine = _pair("LazyBatchNorm2d", (), {})
    theirs(torch.ones(2, 3, 2, 2))
    mine.eval()
    mine(jnp.ones((2, 3, 2, 2)))
    theirs_fresh = torch.nn.BatchNorm2d(3)
    for k, v in mine.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), theirs_fresh.state_dict()[k].numpy())


@contextmanager
def _count_compiles() -> Iterator[list[int]]:
    count = [0]

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.endswith("backend_compile_duration"):
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


def test_building_compiles_nothing() -> None:
    layers = [nn.LazyLinear(37), nn.LazyConv2d(11, 3), nn.LazyBatchNorm1d()]
    with _count_compiles() as count:
        layers[0].initialize_parameters(np.zeros((1, 53)))
        layers[1].initialize_parameters(np.zeros((1, 19, 7, 7)))
        layers[2].initialize_parameters(np.zeros((2, 43)))
    assert count[0] == 0
    assert [type(m) for m in layers] == [nn.Linear, nn.Conv2d, nn.BatchNorm1d]


@pytest.mark.parametrize("transform", ["jit", "grad", "eval_shape", "vmap"])
def test_first_call_inside_a_trace_says_to_call_it_eagerly(transform) -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU())
    x = jnp.ones((2, 5))
    run = {
        "jit": lambda: jax.jit(lambda m: m(x))(model),
        "grad": lambda: jax.grad(lambda x: model(x).sum())(x),
        "eval_shape": lambda: jax.eval_shape(model, x),
        "vmap": lambda: jax.vmap(model)(x),
    }[transform]
    with pytest.raises(RuntimeError, match=r"LazyLinear has not been built yet.*eagerly first"):
        run()
    assert type(model[0]) is nn.LazyLinear  # nothing changed
    model(x)  # one eager call, then every transformation works
    assert jax.jit(lambda m: m(x))(model).shape == (2, 3)


def test_parameters_and_state_dict_before_the_first_call_raise() -> None:
    model = nn.Sequential(nn.Linear(2, 5), nn.LazyLinear(3))
    assert torch.nn.LazyLinear(3).has_uninitialized_params()
    assert model[1].has_uninitialized_params()
    for call in (
        lambda: list(model.parameters()),
        lambda: model.state_dict(),
        lambda: list(model.buffers()),
        lambda: optim.SGD(model.parameters(), lr=0.1),
    ):
        with pytest.raises(RuntimeError, match=r"LazyLinear has uninitialized .*\(weight, bias\)"):
            call()
    with pytest.raises(RuntimeError, match="Can't access the shape of an uninitialized"):
        model[1].weight.shape  # noqa: B018
    model(jnp.ones((4, 2)))
    assert not hasattr(model[1], "has_uninitialized_params")  # a plain Linear now, as torch
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert [p.shape for p in opt.param_groups[0]["params"]] == [(5, 2), (5,), (3, 5), (3,)]


def test_placeholders_are_static_and_structures_agree() -> None:
    a, b = nn.LazyConv2d(4, 3), nn.LazyConv2d(4, 3)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.leaves(a) == []
    assert copy.deepcopy(a).weight == a.weight
    a(jnp.ones((1, 2, 5, 5)))
    assert jax.tree.structure(a) == jax.tree.structure(nn.Conv2d(2, 4, 3))


def test_training_mode_and_hooks_survive_becoming_the_plain_class() -> None:
    seen = []
    model = nn.LazyBatchNorm1d()
    model.eval()
    model.register_forward_hook(lambda m, args, out: seen.append(type(m).__name__))
    model(jnp.ones((4, 3)))
    assert type(model) is nn.BatchNorm1d and not model.training
    assert int(model.num_batches_tracked) == 0  # eval: no update, as torch
    assert seen == ["BatchNorm1d"]


def test_to_and_half_before_the_first_call_set_the_built_dtype() -> None:
    model = nn.LazyLinear(3)
    assert model.half() is model
    assert model.weight.dtype == jnp.float16
    model(jnp.ones((2, 4), jnp.float16))
    assert model.weight.dtype == model.bias.dtype == jnp.float16
    conv = nn.LazyConv1d(2, 3).to("cpu")
    conv(jnp.ones((1, 3, 5)))
    assert conv.weight.committed


def test_load_state_dict_builds_and_is_all_or_nothing() -> None:
    source = torch.nn.Linear(5, 3)
    model = nn.Sequential(nn.LazyLinear(3), nn.LazyLinear(2))
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict({"0.weight": source.weight, "0.bias": source.bias})
    message = str(info.value)
    assert 'Missing key(s) in state_dict: "1.weight", "1.bias"' in message
    assert type(model[0]) is nn.LazyLinear  # undone
    result = model.load_state_dict({"0.weight": source.weight, "0.bias": source.bias}, strict=False)
    assert result.missing_keys == ["1.weight", "1.bias"]
    assert type(model[0]) is nn.Linear and type(model[1]) is nn.LazyLinear
    np.testing.assert_array_equal(model[0].weight, source.weight.detach().numpy())
    bad = nn.LazyLinear(3)
    with pytest.raises(RuntimeError, match="Error\\(s\\) in loading state_dict for LazyLinear"):
        bad.load_state_dict({"weight": np.ones((3, 5)), "bias": np.ones(4)})
    assert type(bad) is nn.LazyLinear


def test_bad_inputs_match_torch() -> None:
    theirs, mine = _pair("LazyConv2d", (4, 3), {})
    with pytest.raises(RuntimeError) as expected:
        theirs(torch.ones(3, 5))
    with pytest.raises(RuntimeError) as got:
        mine(jnp.ones((3, 5)))
    assert str(got.value) == str(expected.value).replace("torch.Size([3, 5])", "(3, 5)")
    theirs, mine = _pair("LazyConv2d", (4, 3), {"groups": 2})
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        theirs(torch.ones(1, 3, 5, 5))
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        mine(jnp.ones((1, 3, 5, 5)))
    with pytest.raises(RuntimeError, match="must be non-negative"):
        nn.LazyLinear(-1)
    with pytest.raises(TypeError, match="random key"):
        nn.LazyLinear(2, key=3)
