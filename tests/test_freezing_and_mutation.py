"""torch's freeze and re-initialisation idioms write through; mutations that a transformation
would lose raise; registration holes, all-or-nothing loading and pickling (issue #9)."""

from __future__ import annotations

import copy
import multiprocessing
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim
from fparam._module import write_back


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: jax.Array) -> jax.Array:
        return self.fc(self.backbone(x))


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))


def twins() -> tuple[Net, TorchNet]:
    torch.manual_seed(0)
    tmodel = TorchNet()
    model = Net()
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


def flags(model: nn.Module | torch.nn.Module) -> dict[str, bool]:
    return {k: p.requires_grad for k, p in model.named_parameters()}


FREEZE_IDIOMS = {
    "attribute on parameters()": lambda m: [
        setattr(p, "requires_grad", False) for p in m.backbone.parameters()
    ],
    "requires_grad_ on parameters()": lambda m: [
        p.requires_grad_(False) for p in m.backbone.parameters()
    ],
    "attribute on named_parameters()": lambda m: [
        setattr(p, "requires_grad", False) for n, p in m.named_parameters() if "backbone" in n
    ],
    "get_parameter": lambda m: [
        setattr(m.get_parameter(k), "requires_grad", False)
        for k in ("backbone.0.weight", "backbone.0.bias")
    ],
    "module requires_grad_": lambda m: m.backbone.requires_grad_(False),
}


@pytest.mark.parametrize("idiom", sorted(FREEZE_IDIOMS))
def test_freeze_idioms_write_through_and_train_like_torch(idiom: str) -> None:
    model, tmodel = twins()
    FREEZE_IDIOMS[idiom](model)
    FREEZE_IDIOMS[idiom](tmodel)
    assert flags(model) == flags(tmodel)
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.5, momentum=0.9)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    for _ in range(3):
        topt.zero_grad()
        tmodel(torch.tensor(x)).square().mean().backward()
        topt.step()
        grads = jax.grad(lambda m: jnp.mean(m(jnp.asarray(x)) ** 2))(model)
        model, opt = opt.step(model, grads)
    for key, value in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)


def test_freezing_before_building_the_optimizer_from_a_filter() -> None:
    model, tmodel = twins()
    for p in model.backbone.parameters():
        p.requires_grad = False
    for p in tmodel.backbone.parameters():
        p.requires_grad = False
    opt = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    topt = torch.optim.SGD([p for p in tmodel.parameters() if p.requires_grad], lr=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [
        len(g["params"]) for g in topt.param_groups
    ]


def test_data_assignment_on_a_handle_writes_through() -> None:
    model, tmodel = twins()
    for (_, p), (_, tp) in zip(model.named_parameters(), tmodel.named_parameters()):
        p.data = np.full(p.shape, 0.5, np.float32)
        tp.data = torch.full(tp.shape, 0.5)
    for key, value in tmodel.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value.numpy())


def test_a_replaced_parameters_old_handle_no_longer_writes() -> None:
    model = Net()
    old = model.get_parameter("fc.bias")
    model.fc.bias = nn.Parameter(jnp.ones((2,)))
    old.data = jnp.zeros((2,))
    old.requires_grad = False
    np.testing.assert_array_equal(model.fc.bias, np.ones(2))
    assert model.get_parameter("fc.bias").requires_grad


def test_a_user_parameter_object_writes_through_after_assignment() -> None:
    model, p = nn.Module(), nn.Parameter(jnp.ones((2,)))
    model.w = p
    p.requires_grad = False
    assert not model.get_parameter("w").requires_grad
    tm, tp = torch.nn.Module(), torch.nn.Parameter(torch.ones(2))
    tm.w = tp
    tp.requires_grad = False
    assert not tm.w.requires_grad


def test_handle_writes_are_validated_like_torch() -> None:
    model = Net()
    handle = model.get_parameter("fc.weight")
    before = np.asarray(model.fc.weight)
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        handle.requires_grad = "no"
    with pytest.raises(TypeError, match="expects an array"):
        handle.data = "zeros"
    with pytest.raises(RuntimeError, match="floating point"):
        handle.data = np.ones((2, 4), np.int32)
    with pytest.raises(AttributeError, match="read-only"):
        handle.uid = 3
    np.testing.assert_array_equal(model.fc.weight, before)
    assert model.get_parameter("fc.weight").requires_grad
    tp = torch.nn.Parameter(torch.ones(2, 4))
    with pytest.raises(RuntimeError, match="floating point"):
        tp.data = torch.ones(2, 4, dtype=torch.int32)
        tp.requires_grad_(True)


def test_handle_writes_inside_a_transformation_raise() -> None:
    model = Net()

    def freeze_inside(m: Net) -> jax.Array:
        m.get_parameter("fc.weight").requires_grad = False
        return m(jnp.ones((1, 3))).sum()

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        jax.jit(freeze_inside)(model)
    assert model.get_parameter("fc.weight").requires_grad


def weights_init(m: nn.Module) -> None:
    """The DCGAN example's initialiser, with torch's statement form."""
    if isinstance(m, nn.Linear):
        write_back(m.weight, nn.init.normal_(m.weight, 0.0, 0.02))
        write_back(m.bias, nn.init.zeros_(m.bias))


def test_in_place_initialisation_as_a_statement_inside_apply() -> None:
    model = Net()
    model.apply(weights_init)
    np.testing.assert_array_equal(model.fc.bias, np.zeros(2))
    assert float(jnp.std(model.backbone[0].weight)) < 0.1
    # The same on a model returned by a jitted function (a copy JAX made).
    returned = jax.jit(lambda m: m)(Net())
    returned.apply(weights_init)
    np.testing.assert_array_equal(returned.backbone[0].bias, np.zeros(4))
    # An array of no module is left alone, and the optimizer built earlier still steps it.
    assert write_back(jnp.ones(3), jnp.zeros(3)) is False


# ------------------------------------------------------------------------- lost mutations


def test_mutating_under_vmap_with_unmapped_module_raises() -> None:
    model = Net()

    def forward(m: Net, x: jax.Array) -> jax.Array:
        m.eval()
        return m(x[None])[0]

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        jax.vmap(forward, in_axes=(None, 0))(model, jnp.ones((2, 3)))
    assert model.training


def test_mutating_a_leafless_child_inside_jit_raises() -> None:
    model = Net()

    def forward(m: Net) -> jax.Array:
        m.backbone[1].eval()
        return m(jnp.ones((1, 3))).sum()

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        jax.jit(forward)(model)
    assert model.backbone[1].training


def test_a_model_captured_by_closure_cannot_be_mutated_in_a_trace() -> None:
    model = Net()

    def step(x: jax.Array) -> jax.Array:
        model.fc.bias = nn.Parameter(x)
        return x

    with pytest.raises(RuntimeError, match="by closure"):
        jax.jit(step)(jnp.ones((2,)))
    with pytest.raises(RuntimeError, match="by closure"):
        jax.lax.scan(lambda c, x: (step(x), None), jnp.zeros((2,)), jnp.ones((3, 2)))
    assert isinstance(model.fc.bias, jax.Array) and not isinstance(model.fc.bias, jax.core.Tracer)


def test_building_and_changing_a_module_inside_a_trace_is_fine() -> None:
    def build(x: jax.Array) -> jax.Array:
        m = Net()
        m.eval()
        m.fc.bias = nn.Parameter(x)
        return m(jnp.ones((1, 3)))

    assert jax.jit(build)(jnp.ones((2,))).shape == (1, 2)
    shapes = jax.eval_shape(lambda: Net())
    assert shapes.fc.weight.shape == (2, 4)


# ----------------------------------------------------------------------- registration holes


@pytest.mark.parametrize("name", ["a.b", ""])
@pytest.mark.parametrize("kind", ["parameter", "buffer", "module"])
def test_setattr_with_a_dotted_or_empty_name_is_key_error(name: str, kind: str) -> None:
    value = {
        "parameter": lambda: nn.Parameter(jnp.ones(1)),
        "buffer": lambda: nn.Buffer(jnp.ones(1)),
        "module": lambda: nn.Linear(1, 1),
    }[kind]()
    model = nn.Module()
    with pytest.raises(KeyError):
        setattr(model, name, value)
    assert list(model.state_dict()) == [] and list(model.children()) == []
    if kind != "module":  # torch registers such a module (and cannot load its state_dict)
        tvalue = {
            "parameter": lambda: torch.nn.Parameter(torch.ones(1)),
            "buffer": lambda: torch.nn.Buffer(torch.ones(1)),
        }[kind]()
        with pytest.raises(KeyError):
            setattr(torch.nn.Module(), name, tvalue)


class EarlyAttribute(nn.Module):
    def __init__(self) -> None:
        self.width = 3  # before super().__init__(), as torch allows
        super().__init__()
        self.w = nn.Parameter(jnp.ones((self.width,)))

    def forward(self, x: jax.Array) -> jax.Array:
        return x * self.width


def test_a_plain_attribute_set_before_super_init_survives_copies() -> None:
    model = EarlyAttribute()
    assert jax.jit(lambda m: m.width * m.w)(model).shape == (3,)
    assert jax.tree.map(lambda x: x, model).width == 3


def test_load_state_dict_assign_refuses_integer_values_for_trainable_parameters() -> None:
    model, tmodel = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    bad = {"weight": np.ones((2, 2), np.int64), "bias": np.zeros(2, np.float32)}
    with pytest.raises(RuntimeError, match='"weight" has dtype int'):
        model.load_state_dict(bad, assign=True)
    with pytest.raises(RuntimeError, match="floating point"):
        tmodel.load_state_dict({k: torch.tensor(v) for k, v in bad.items()}, assign=True)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


BAD_VALUES = {
    "string array": np.array([["a", "b"], ["c", "d"]]),
    "object array": np.ones((2, 2), object),
    "float64 overflow": np.full((2, 2), 1e300),
    "float64 underflow": np.full((2, 2), 1e-310),
    "datetime": np.zeros((2, 2), "datetime64[s]"),
}


@pytest.mark.parametrize("what", sorted(BAD_VALUES))
def test_load_state_dict_converts_everything_before_writing(what: str) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    state = {k: np.full(v.shape, 7.0, np.float32) for k, v in before.items()}
    state["1.weight"] = BAD_VALUES[what]  # after three good keys
    with pytest.raises(RuntimeError, match=r'"1\.weight"'):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_float64_that_fits_loads_with_rounding_as_torch() -> None:
    model, tmodel = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = {"weight": np.full((2, 2), 0.1), "bias": np.array([1e-30, -3.5])}
    model.load_state_dict(state)
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    for key, value in tmodel.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value.numpy())


# ------------------------------------------------------------------------------ pickling


def pickled_models() -> dict[str, nn.Module]:
    return {
        "ReLU": nn.ReLU(),
        "one-child Sequential": nn.Sequential(nn.Linear(2, 3)),
        "empty Module": nn.Module(),
        "Net": Net(),
        "returned by jit": jax.jit(lambda m: m)(Net()),
        "early attribute": EarlyAttribute(),
    }


@pytest.mark.parametrize("name", sorted(pickled_models()))
def test_models_pickle_and_deepcopy(name: str) -> None:
    model = pickled_models()[name]
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert jax.tree.structure(clone) == jax.tree.structure(model)
        for a, b in zip(jax.tree.leaves(clone), jax.tree.leaves(model)):
            np.testing.assert_array_equal(a, b)
        assert [k for k, _ in clone.named_parameters()] == [k for k, _ in model.named_parameters()]
        # The clone is a model of its own: its handles write to it alone.
        for p in clone.parameters():
            p.requires_grad = False
        assert all(p.requires_grad for p in model.parameters())


def test_an_optimizer_and_model_pickle_and_keep_training() -> None:
    model = Net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    grads = jax.tree.map(jnp.ones_like, model)
    model, opt = jax.jit(lambda m, o, g: o.step(m, g))(model, opt, grads)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    a, _ = opt.step(model, grads)
    b, _ = opt2.step(model2, grads)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _total(model: nn.Module) -> float:
    return float(sum(jnp.sum(leaf) for leaf in jax.tree.leaves(model)))


def test_models_cross_a_process_boundary() -> None:
    model = Net()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        total = pool.apply(_total, (model,))
    assert total == pytest.approx(_total(model), rel=1e-6)


def test_manual_seed_is_unchanged_by_this_module() -> None:
    fparam.manual_seed(3)
    a = Net()
    fparam.manual_seed(3)
    b = Net()
    np.testing.assert_array_equal(a.fc.weight, b.fc.weight)


def test_a_freeze_written_on_the_array_survives_load_state_dict_and_reset() -> None:
    """torch's fine-tuning order: freeze, then load the checkpoint, then build the optimizer."""
    import torch

    from fparam import nn as fnn

    for replace in (
        lambda m: m.load_state_dict(fnn.Linear(2, 3).state_dict()),
        lambda m: m.reset_parameters(),
        lambda m: setattr(next(iter(m.parameters())), "data", jnp.zeros((3, 2))),
    ):
        model = fnn.Linear(2, 3)
        model.bias.requires_grad = False  # written on the jax.Array that `model.bias` reads
        replace(model)
        assert [p.requires_grad for p in model.parameters()] == [True, False]
    twin = torch.nn.Linear(2, 3)
    twin.bias.requires_grad = False
    twin.load_state_dict(torch.nn.Linear(2, 3).state_dict())
    assert [p.requires_grad for p in twin.parameters()] == [True, False]
