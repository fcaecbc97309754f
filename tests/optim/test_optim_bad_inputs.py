"""Bad inputs to the optimizers and schedulers: each raises the exception type torch raises (where
torch raises one), with a message that names the culprit, and leaves the object unchanged.

Grows with the library: a new check gets its case here.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim
from fparam.optim import lr_scheduler

# ------------------------------------------------------------------------------- helpers


class Net(nn.Module):
    """A Linear with a frozen parameter, a float buffer and an int buffer beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.scale = nn.Parameter(jnp.ones((2,)), requires_grad=False)
        self.register_buffer("shift", jnp.zeros((2,)))
        self.register_buffer("count", jnp.zeros((), jnp.int32))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.fc(x) * self.scale[None, :] + self.shift[None, :]


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)


def snapshot(opt: optim.Optimizer) -> Any:
    """Everything observable: repr, state_dict (groups and buffers), structure, packed leaf."""
    sd = opt.state_dict()
    buffers = {i: np.array(s["momentum_buffer"]) for i, s in sd["state"].items()}
    leaves, treedef = jax.tree.flatten(opt)
    return repr(opt), sd["param_groups"], buffers, treedef, [np.array(x) for x in leaves]


def assert_unchanged(opt: optim.Optimizer, before: Any) -> None:
    now = snapshot(opt)
    assert now[0] == before[0]
    assert now[1] == before[1]
    assert sorted(now[2]) == sorted(before[2])
    for k, v in before[2].items():
        np.testing.assert_array_equal(now[2][k], v)
    assert now[3] == before[3]
    assert len(now[4]) == len(before[4])
    for a, b in zip(now[4], before[4]):
        np.testing.assert_array_equal(a, b)


def trained_pair() -> tuple[Net, optim.SGD, torch.optim.SGD]:
    """An fparam SGD (two groups, momentum) after two steps, and a torch SGD of the same shape."""
    fparam.manual_seed(0)
    m = Net()
    opt = optim.SGD(
        [
            {"params": [m.get_parameter("fc.weight")]},
            {"params": [m.get_parameter("fc.bias")], "lr": 0.01},
        ],
        lr=0.1,
        momentum=0.9,
    )
    grads = fparam.grad(lambda m: m(jnp.ones((4, 3))).sum())(m)
    for _ in range(2):
        m, opt = opt.step(m, grads)
    t = TorchNet()
    topt = torch.optim.SGD(
        [{"params": [t.fc.weight]}, {"params": [t.fc.bias], "lr": 0.01}], lr=0.1, momentum=0.9
    )
    return m, opt, topt


def good_state(opt: optim.SGD) -> dict[str, Any]:
    return copy.deepcopy(opt.state_dict())


# ------------------------------------------------------------------------------- constructor

HYPER = ["lr", "momentum", "dampening", "weight_decay"]
NOT_A_NUMBER: list[tuple[str, Callable[[Any], Any]]] = [
    ("str", lambda arr: "x"),
    ("None", lambda arr: None),
    ("list", lambda arr: [0.1]),
    ("complex", lambda arr: 1 + 2j),
]


@pytest.mark.parametrize("name", HYPER)
@pytest.mark.parametrize(("kind", "make"), NOT_A_NUMBER, ids=[k for k, _ in NOT_A_NUMBER])
def test_hyperparameter_that_is_not_a_number(name: str, kind: str, make: Any) -> None:
    ours = nn.Parameter(jnp.ones((2,)))
    theirs = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError) as error:
        optim.SGD([ours], **{name: make(jnp.asarray)})
    # The message names the argument and what it got.
    assert str(error.value).startswith(f"{name} must be a real number"), error.value
    assert kind.lower() in str(error.value).lower() or "list" in str(error.value)
    if name != "dampening":
        with pytest.raises(TypeError):  # torch: '<' not supported between ...
            torch.optim.SGD([theirs], **{name: make(torch.tensor)})
    else:
        # torch does not check dampening when built; with momentum it fails at the second
        # step (the first copies the gradient). fparam refuses it at once.
        topt = torch.optim.SGD([theirs], momentum=0.9, dampening=make(torch.tensor))
        theirs.grad = torch.ones(2)
        with pytest.raises((TypeError, RuntimeError)):
            topt.step()
            topt.step()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lr", "Invalid learning rate: {}"),
        ("momentum", "Invalid momentum value: {}"),
        ("weight_decay", "Invalid weight_decay value: {}"),
    ],
)
@pytest.mark.parametrize("value", [-1, -0.5, -math.inf])
def test_negative_hyperparameter_like_torch(name: str, message: str, value: float) -> None:
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], **{name: value})
    with pytest.raises(ValueError) as ours:
        optim.SGD([nn.Parameter(jnp.ones((2,)))], **{name: value})
    assert str(ours.value) == str(theirs.value) == message.format(value)


@pytest.mark.parametrize("name", HYPER)
def test_nan_and_negative_dampening_accepted_like_torch(name: str) -> None:
    torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], **{name: math.nan})
    opt = optim.SGD([nn.Parameter(jnp.ones((2,)))], **{name: math.nan})
    assert math.isnan(opt.param_groups[0][name])
    torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], dampening=-1)
    optim.SGD([nn.Parameter(jnp.ones((2,)))], dampening=-1)


@pytest.mark.parametrize("name", HYPER)
def test_hyperparameter_array_of_the_wrong_size(name: str) -> None:
    theirs = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=f"Tensor {name} must be 1-element") as ours:
        optim.SGD([nn.Parameter(jnp.ones((2,)))], **{name: jnp.asarray([0.1, 0.2])})
    if name == "lr":
        with pytest.raises(ValueError) as error:
            torch.optim.SGD([theirs], lr=torch.tensor([0.1, 0.2]))
        assert str(ours.value) == str(error.value)
    elif name != "dampening":
        # torch fails on the sign check: "Boolean value of Tensor with more than one value
        # is ambiguous"; fparam says which argument and what shape.
        with pytest.raises(RuntimeError):
            torch.optim.SGD([theirs], **{name: torch.tensor([0.1, 0.2])})
        assert "(2,)" in str(ours.value)


def test_hyperparameter_as_a_1_element_array_or_torch_tensor() -> None:
    p = nn.Parameter(jnp.ones((2,)))
    opt = optim.SGD([p], lr=torch.tensor(0.5), momentum=np.float32(0.9))
    assert isinstance(opt.param_groups[0]["lr"], jax.Array)
    assert float(opt.param_groups[0]["lr"]) == 0.5
    with pytest.raises(TypeError, match=r"momentum must be a real number.*dtype complex64"):
        optim.SGD([p], momentum=np.complex64(1))


def test_group_option_that_is_not_a_number_names_the_group() -> None:
    m = Net()
    opt = optim.SGD([m.get_parameter("fc.weight")], lr=0.1, momentum=0.9)
    before = snapshot(opt)
    with pytest.raises(TypeError, match=re.escape("param_groups[1]['lr'] must be a real number")):
        opt.add_param_group({"params": [m.get_parameter("fc.bias")], "lr": "x"})
    assert_unchanged(opt, before)
    # torch takes it and fails at the step.
    t = TorchNet()
    topt = torch.optim.SGD([t.fc.weight], lr=0.1)
    topt.add_param_group({"params": [t.fc.bias], "lr": "x"})
    t.fc.bias.grad = torch.ones(2)
    with pytest.raises(TypeError):
        topt.step()


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_group_option_set_to_a_string_names_the_group(jit: bool) -> None:
    m = Net()
    opt = optim.SGD(m.parameters(), lr=0.1)
    grads = fparam.grad(lambda m: m(jnp.ones((1, 3))).sum())(m)
    opt.param_groups[0]["momentum"] = "fast"
    step = jax.jit(lambda m, o, g: o.step(m, g)) if jit else (lambda m, o, g: o.step(m, g))
    with pytest.raises(
        TypeError, match=re.escape("param_groups[0]['momentum'] must be a real number")
    ):
        step(m, opt, grads)


# ------------------------------------------------------------------------------- step()


def _grads(m: Net) -> Net:
    return fparam.grad(lambda m: m(jnp.ones((4, 3))).sum())(m)


def _with_grad(grads: Net, value: Any) -> Net:
    bad = jax.tree.map(lambda x: x, grads)
    bad.fc.__dict__["weight"] = value
    return bad


BAD_GRADS: list[tuple[str, Callable[[], Any], Callable[[], Any], str]] = [
    # (id, fparam grad for fc.weight (2, 3), torch grad, what the message says)
    (
        "broadcasting (2, 1)",
        lambda: jnp.ones((2, 1)),
        lambda: torch.ones(2, 1),
        "grads for 'fc.weight' have shape (2, 1); the parameter has shape (2, 3)",
    ),
    ("0-d", lambda: jnp.ones(()), lambda: torch.ones(()), "have shape (); the parameter"),
    (
        "int",
        lambda: jnp.ones((2, 3), jnp.int32),
        lambda: torch.ones(2, 3, dtype=torch.int32),
        "grads for 'fc.weight' have dtype int32; the parameter has dtype float32",
    ),
    (
        "bool",
        lambda: jnp.ones((2, 3), bool),
        lambda: torch.ones(2, 3, dtype=torch.bool),
        "have dtype bool",
    ),
    (
        "float16 for float32",
        lambda: jnp.ones((2, 3), jnp.float16),
        lambda: torch.ones(2, 3, dtype=torch.float16),
        "have dtype float16; the parameter has dtype float32",
    ),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("ours", "theirs", "message"), [b[1:] for b in BAD_GRADS], ids=[b[0] for b in BAD_GRADS]
)
def test_bad_gradient_names_the_parameter(ours: Any, theirs: Any, message: str, jit: bool) -> None:
    m, opt, _ = trained_pair()
    before = snapshot(opt)
    weights = np.array(m.fc.weight)
    bad = _with_grad(_grads(m), ours())
    step = jax.jit(lambda m, o, g: o.step(m, g)) if jit else (lambda m, o, g: o.step(m, g))
    with pytest.raises(RuntimeError) as error:
        step(m, opt, bad)
    assert message in str(error.value)
    assert_unchanged(opt, before)
    np.testing.assert_array_equal(np.array(m.fc.weight), weights)
    # torch refuses such a gradient with a RuntimeError too (when it is assigned).
    with pytest.raises(RuntimeError):
        TorchNet().fc.weight.grad = theirs()


def test_gradient_that_is_not_an_array() -> None:
    m, opt, _ = trained_pair()
    before = snapshot(opt)
    with pytest.raises(TypeError, match=r"grads for 'fc.weight' is str; expected an array"):
        opt.step(m, _with_grad(_grads(m), "g"))
    assert_unchanged(opt, before)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_swapped_step_arguments_with_fparam_grads(jit: bool) -> None:
    # fparam.grad's gradients hold None at the frozen parameter and the buffers.
    m, opt, _ = trained_pair()
    before = snapshot(opt)
    grads = _grads(m)
    step = jax.jit(lambda a, o, b: o.step(a, b)) if jit else (lambda a, o, b: o.step(a, b))
    with pytest.raises(ValueError, match=re.escape("opt.step(grads, model)")) as error:
        step(grads, opt, m)
    assert "None at 'scale'" in str(error.value)
    assert_unchanged(opt, before)


def test_swapped_step_arguments_with_jax_grads_of_an_int_buffer() -> None:
    # jax.grad(allow_int=True) gives float0 gradients for integer leaves.
    m, opt, _ = trained_pair()
    before = snapshot(opt)
    grads = jax.grad(lambda m: m(jnp.ones((4, 3))).sum(), allow_int=True)(m)
    with pytest.raises(ValueError, match=re.escape("opt.step(grads, model)")) as error:
        opt.step(grads, m)
    assert "float0" in str(error.value) and "'count'" in str(error.value)
    assert_unchanged(opt, before)


# ------------------------------------------------------------------------------- load_state_dict


def _bad_buffer(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(sd: dict[str, Any]) -> None:
        sd["param_groups"][0]["lr"] = 7.0  # a good change before the bad one
        sd["state"][1]["momentum_buffer"] = value

    return edit


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(sd: dict[str, Any]) -> None:
        sd["param_groups"][0]["lr"] = 7.0
        target: Any = sd
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _replace(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda sd: value


# (id, edit of a good state dict (in place, or returning a replacement), error, message part)
BAD_STATE: list[tuple[str, Callable[[dict[str, Any]], Any], type[Exception], str]] = [
    (
        "string array of the right shape",
        _bad_buffer(np.array(["a", "b"])),
        TypeError,
        "momentum_buffer for parameter 1 has dtype <U1",
    ),
    (
        "object array of the right shape",
        _bad_buffer(np.array([object(), object()])),
        TypeError,
        "momentum_buffer for parameter 1 has dtype object",
    ),
    (
        "complex buffer",
        _bad_buffer(np.ones(2, np.complex64)),
        TypeError,
        "parameter 1 has dtype complex64",
    ),
    ("bool buffer", _bad_buffer(np.ones(2, bool)), TypeError, "parameter 1 has dtype bool"),
    (
        "ragged list",
        _bad_buffer([[1.0], [1.0, 2.0]]),
        TypeError,
        "state[1]['momentum_buffer'] is list",
    ),
    (
        "torch tensor of the wrong shape",
        _bad_buffer(torch.zeros(5)),
        ValueError,
        "momentum_buffer for parameter 1 has shape (5,), expected (2,)",
    ),
    (
        "broadcastable shape",
        _bad_buffer(np.zeros((1, 2), np.float32)),
        ValueError,
        "has shape (1, 2), expected (2,)",
    ),
    (
        "string lr in the second group",
        _set(("param_groups", 1, "lr"), "x"),
        TypeError,
        "param_groups[1]['lr'] must be a real number",
    ),
    (
        "2-element lr",
        _set(("param_groups", 1, "lr"), torch.tensor([0.1, 0.2])),
        ValueError,
        "Tensor lr must be 1-element (got param_groups[1]['lr'] of shape (2,))",
    ),
    (
        "unhashable option",
        _set(("param_groups", 1, "nesterov"), {"on": True}),
        ValueError,
        "param_groups[1]['nesterov'] is dict",
    ),
    (
        "state entry that is not a dict",
        _set(("state", 1), torch.zeros(2)),
        ValueError,
        "state[1] is torch.Tensor",
    ),
    (
        "another optimizer's state",
        _set(("state", 1), {"exp_avg": torch.zeros(2), "step": torch.tensor(1.0)}),
        ValueError,
        "state[1] has key 'exp_avg'",
    ),
    (
        "unknown parameter index",
        _set(("state", 99), {"momentum_buffer": torch.zeros(2)}),
        ValueError,
        "entry for parameter 99, which no parameter group lists",
    ),
    (
        "group without params",
        lambda sd: sd["param_groups"][1].pop("params"),
        ValueError,
        "param_groups[1] is a dict with keys",
    ),
    (
        "param_groups not a list",
        _set(("param_groups",), "groups"),
        TypeError,  # torch: ValueError (len("groups") != 1), TypeError for an int
        "'param_groups' must be a list of groups, got a str",
    ),
    (
        "state not a dict",
        _set(("state",), [1, 2]),
        TypeError,  # torch: AttributeError ('list' object has no attribute 'items')
        "'state' must be a mapping from parameter index",
    ),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"), [b[1:] for b in BAD_STATE], ids=[b[0] for b in BAD_STATE]
)
def test_bad_state_dict_leaves_the_optimizer_unchanged(
    edit: Callable[[dict[str, Any]], Any], error: type[Exception], message: str
) -> None:
    _, opt, _ = trained_pair()
    sd = good_state(opt)
    replaced = edit(sd)
    if isinstance(replaced, dict):
        sd = replaced
    before = snapshot(opt)
    with pytest.raises(error) as raised:
        opt.load_state_dict(sd)
    assert message in str(raised.value), raised.value
    assert_unchanged(opt, before)


@pytest.mark.parametrize("missing", ["state", "param_groups"])
def test_state_dict_missing_a_key_like_torch(missing: str) -> None:
    # torch raises a bare KeyError; fparam a KeyError that says what the dict holds.
    _, opt, topt = trained_pair()
    sd = good_state(opt)
    del sd[missing]
    before = snapshot(opt)
    with pytest.raises(KeyError):
        topt.load_state_dict(copy.deepcopy(sd))
    with pytest.raises(KeyError) as error:
        opt.load_state_dict(sd)
    assert (
        f"expected an optimizer state_dict (a mapping with 'state' and 'param_groups'), but it has no '{missing}' entry"
        in str(error.value)
    )
    assert_unchanged(opt, before)


def test_model_state_dict_given_to_the_optimizer() -> None:
    m, opt, _ = trained_pair()
    before = snapshot(opt)
    with pytest.raises(KeyError, match=r"a model state_dict \(5 arrays, keys \['scale', 'shift', "):
        opt.load_state_dict(m.state_dict())
    with pytest.raises(TypeError, match="got a list of 2 items"):
        opt.load_state_dict([1, 2])  # type: ignore[arg-type]
    assert_unchanged(opt, before)


def test_load_state_dict_inside_jit_is_refused() -> None:
    _, opt, _ = trained_pair()
    sd = good_state(opt)

    @jax.jit
    def load(opt: optim.SGD) -> optim.SGD:
        opt.load_state_dict(sd)
        return opt

    with pytest.raises(RuntimeError, match="cannot load_state_dict"):
        load(opt)


# ------------------------------------------------------------------------------- schedulers


def test_scheduler_step_inside_jit_is_refused() -> None:
    _, opt, _ = trained_pair()
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    before = snapshot(opt)

    @jax.jit
    def traced(opt: optim.SGD) -> optim.SGD:
        return sched.step(opt)

    with pytest.raises(RuntimeError, match=re.escape("scheduler.apply(opt, epoch)")):
        traced(opt)
    assert sched.last_epoch == 0

    # A concrete optimizer captured by closure: the epoch would still advance once, at trace
    # time.
    @jax.jit
    def captured(x: jax.Array) -> jax.Array:
        sched.step(opt)
        return x

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        captured(jnp.ones(()))
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1, 0.01]
    assert_unchanged(opt, before)

    # Inside scan too.
    def body(o: optim.SGD, _: Any) -> Any:
        return sched.step(o), None

    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        jax.lax.scan(body, opt, jnp.arange(2))
    assert sched.last_epoch == 0


def test_lr_set_on_a_traced_optimizer_is_kept_when_returned() -> None:
    # The documented rule: a traced optimizer is a value of the trace; a change to it is kept
    # exactly when the step returns it (the input optimizer never changes).
    _, opt, _ = trained_pair()
    before = snapshot(opt)

    @jax.jit
    def returned(opt: optim.SGD, lr: jax.Array) -> optim.SGD:
        opt.param_groups[1]["lr"] = lr
        return opt

    @jax.jit
    def dropped(opt: optim.SGD, lr: jax.Array) -> jax.Array:
        opt.param_groups[1]["lr"] = lr
        return lr

    new = returned(opt, jnp.float32(0.25))
    assert new.param_groups[1]["lr"] == 0.25
    dropped(opt, jnp.float32(0.5))
    assert_unchanged(opt, before)


def _scheduler_pair(name: str, **kwargs: Any) -> tuple[Any, optim.SGD, Any, torch.optim.SGD]:
    _, opt, topt = trained_pair()
    return (
        getattr(lr_scheduler, name)(opt, **kwargs),
        opt,
        getattr(torch.optim.lr_scheduler, name)(topt, **kwargs),
        topt,
    )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("StepLR", {"step_size": 2, "gamma": 0.5}), ("LambdaLR", {"lr_lambda": lambda e: 0.9**e})],
)
def test_torch_scheduler_state_loads_and_continues_like_torch(
    name: str, kwargs: dict[str, Any]
) -> None:
    # torch's state_dict holds bookkeeping keys fparam does not use, and LambdaLR's holds
    # 'lr_lambdas': [None, None] (plain functions): both load as in torch.
    ours, opt, theirs, topt = _scheduler_pair(name, **kwargs)
    for _ in range(5):
        topt.step()
        theirs.step()
    # As in torch, a recursive schedule continues from the optimizer's lrs: resume both.
    opt.load_state_dict(topt.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert ours.last_epoch == 5 and callable(getattr(ours, "lr_lambdas", [len])[0])
    for _ in range(4):
        topt.step()
        theirs.step()
        opt = ours.step(opt)
        np.testing.assert_allclose(
            [g["lr"] for g in opt.param_groups], [g["lr"] for g in topt.param_groups], rtol=1e-6
        )


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda sd: sd.update(last_epoch="3"), TypeError, "'last_epoch' must be an int"),
        (lambda sd: sd.update(base_lrs=[0.1]), ValueError, "'base_lrs' must be a list of 2"),
        (lambda sd: sd.update(_last_lr=["a", 0.1]), ValueError, "'_last_lr' must be a list"),
        (
            lambda sd: sd.update(lr_lambdas=[None, None]),
            ValueError,
            "unexpected key 'lr_lambdas'",
        ),
    ],
    ids=["epoch-str", "base_lrs-length", "last_lr-str", "lambdas-into-StepLR"],
)
def test_bad_scheduler_state_leaves_it_unchanged(edit: Any, error: Any, message: str) -> None:
    ours, _, _, _ = _scheduler_pair("StepLR", step_size=2)
    sd = copy.deepcopy(ours.state_dict())
    edit(sd)
    sd["gamma"] = 0.7  # a good value before the bad one
    before = copy.deepcopy(ours.state_dict())
    with pytest.raises(error, match=re.escape(message)):
        ours.load_state_dict(sd)
    assert ours.state_dict() == before
    with pytest.raises(TypeError, match="expects a dict"):
        ours.load_state_dict([1])  # type: ignore[arg-type]
