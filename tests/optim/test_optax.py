"""``optim.Optax``: an optax transformation trains an fparam model like a native optimizer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fparam
from fparam import nn, optim


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8, key=jax.random.key(0))
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3, key=jax.random.key(1))
        self.fc2.bias.requires_grad = False  # frozen: never moves
        self.register_buffer("scale", jnp.full((3,), 2.0))

    def forward(self, x: Any) -> Any:
        # fc1 -> relu -> bn: a bias right before BatchNorm would get a zero gradient (noise).
        return self.fc2(self.bn(jax.nn.relu(self.fc1(x)))) * self.scale[None, :]


def loss_fn(model: Net, x: Any, y: Any) -> Any:
    return jnp.mean((model(x) - y) ** 2)


@pytest.fixture(autouse=True)
def _standard_promotion() -> Any:
    # optax is written for JAX's default promotion (its bias corrections mix an int32 count
    # with Python floats), not the suite's strict one.
    with jax.numpy_dtype_promotion("standard"):
        yield


def batches(n: int) -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(0)
    return [
        (
            jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
            jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
        )
        for _ in range(n)
    ]


def reference(model: Net, transformation: Any, data: list[Any]) -> dict[str, np.ndarray]:
    """optax by hand on the trainable parameters only (the frozen bias gets no update)."""
    names = [n for n, p in model.named_parameters()]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: model.get_parameter(n).data for n in names}
    state = transformation.init([params[n] for n in names])
    for x, y in data:
        grads_tree = fparam.grad(loss_fn)(model, x, y)
        grads = [
            grads_tree.get_parameter(n).data if n in trainable else jnp.zeros_like(params[n])
            for n in names
        ]
        updates, state = transformation.update(grads, state, [params[n] for n in names])
        for n, u in zip(names, updates):
            if n in trainable:
                params[n] = params[n] + u
        model.load_state_dict({**model.state_dict(), **params})
    return {n: np.asarray(v) for n, v in params.items()}


TRANSFORMATIONS = {
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "chain-clip-sgd": lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1, 0.9)),
    "schedule": lambda: optax.adam(optax.cosine_decay_schedule(1e-2, 10)),
}


@pytest.mark.parametrize("name", list(TRANSFORMATIONS))
def test_jitted_training_matches_optax_on_the_trainable_parameters(name: str) -> None:
    data = batches(6)
    want = reference(Net(), TRANSFORMATIONS[name](), data)
    model = Net()
    frozen_bias = np.asarray(model.fc2.bias)
    opt = optim.Optax(TRANSFORMATIONS[name](), model.parameters())
    traces = 0

    @jax.jit
    def step(model: Net, opt: optim.Optax, x: Any, y: Any) -> Any:
        nonlocal traces
        traces += 1
        loss, grads = fparam.value_and_grad(loss_fn)(model, x, y)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    for x, y in data:
        model, opt, _ = step(model, opt, x, y)
    assert traces == 1
    for n, p in model.named_parameters():
        np.testing.assert_allclose(np.asarray(p.data), want[n], rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(model.fc2.bias, frozen_bias)
    np.testing.assert_array_equal(model.scale, np.full((3,), 2.0))
    # BatchNorm's statistics moved through the forward (rule 9), not through the optimizer.
    assert int(model.bn.num_batches_tracked) == len(data)


def test_plain_jax_grad_leaves_buffers_and_frozen_parameters_untouched() -> None:
    model = Net()
    model.eval()  # no buffer updates in the forward: plain jax.grad is allowed
    opt = optim.Optax(optax.sgd(0.5), model.parameters())
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    # allow_int: the BatchNorm counter is an integer leaf (its gradient is float0).
    grads = jax.grad(loss_fn, allow_int=True)(model, *batches(1)[0])
    model, opt = opt.step(model, grads)
    after = model.state_dict()
    for key in ("bn.running_mean", "bn.running_var", "fc2.bias"):
        np.testing.assert_array_equal(after[key], before[key])
    assert not np.array_equal(after["fc1.weight"], before["fc1.weight"])


def test_state_dict_and_checkpoint_resume_continue_identically(tmp_path: Any) -> None:
    data = batches(6)
    step = jax.jit(lambda m, o, x, y: o.step(m, fparam.grad(loss_fn)(m, x, y)))
    # One transformation object, as a program builds it once: a new object, even an equal
    # one, is new static structure (optax's update functions are closures) and retraces.
    tx = optax.adamw(1e-2)
    model = Net()
    opt = optim.Optax(tx, model.parameters())
    for x, y in data[:3]:
        model, opt = step(model, opt, x, y)
    saved = opt.state_dict()
    assert set(saved["state"]["optax"]) >= {"0.count", "0.mu.0", "0.nu.4"}
    fparam.save(opt, tmp_path / "opt.safetensors")
    fparam.save(model, tmp_path / "model.safetensors")

    resumed_model = Net()
    resumed_model.load_state_dict(fparam.load(tmp_path / "model.safetensors"))
    resumed = optim.Optax(tx, resumed_model.parameters())
    resumed.load_state_dict(fparam.load(tmp_path / "opt.safetensors"))
    assert jax.tree.structure(resumed) == jax.tree.structure(opt)  # the compiled step is reused
    for x, y in data[3:]:
        model, opt = step(model, opt, x, y)
        resumed_model, resumed = step(resumed_model, resumed, x, y)
    for (n, a), (_, b) in zip(model.state_dict().items(), resumed_model.state_dict().items()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=n)


def test_injected_hyperparameters_change_without_recompiling() -> None:
    model = Net()
    opt = optim.Optax(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), model.parameters())
    traces = 0

    @jax.jit
    def step(m: Net, o: optim.Optax, x: Any, y: Any) -> Any:
        nonlocal traces
        traces += 1
        return o.step(m, fparam.grad(loss_fn)(m, x, y))

    x, y = batches(1)[0]
    m1, o1 = step(model, opt, x, y)
    o1.opt_state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    m2, _ = step(m1, o1, x, y)
    assert traces == 1
    np.testing.assert_array_equal(m2.fc1.weight, m1.fc1.weight)  # lr 0: nothing moved


def test_bad_inputs_are_named() -> None:
    model = Net()
    with pytest.raises(TypeError, match="expects an optax GradientTransformation"):
        optim.Optax(optax.adam, model.parameters())  # the factory, not a transformation
    opt = optim.Optax(optax.adam(1e-3), model.parameters())
    sgd_state = optim.Optax(optax.sgd(0.1, 0.9), model.parameters()).state_dict()
    before = jax.tree.leaves(opt.opt_state)
    with pytest.raises(ValueError, match="does not match this transformation's"):
        opt.load_state_dict(sgd_state)
    assert all(a is b for a, b in zip(jax.tree.leaves(opt.opt_state), before))  # unchanged
    with pytest.raises(ValueError, match="Optax optimizer's state_dict"):
        opt.load_state_dict(optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict())
    with pytest.raises(ValueError, match="build a new Optax optimizer"):
        opt.add_param_group({"params": [model.fc1.weight]})
