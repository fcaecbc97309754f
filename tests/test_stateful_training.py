"""The program of issue #10: BatchNorm statistics and Dropout keys through the jitted train step.

The README's step with `fparam.rng(key)` and `fparam.value_and_grad` carries running statistics
out of `jit` (into `opt.step`'s model), inside `lax.scan` (state in the carry) and under `vmap`
over an ensemble; masks come only from the key in scope; lost updates raise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim
from fparam.nn import functional as F


class Net(nn.Module):
    def __init__(self, p: float = 0.25) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: jax.Array) -> jax.Array:
        x = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(x.reshape(x.shape[0], -1))


class TorchNet(torch.nn.Module):
    def __init__(self, p: float = 0.25) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(p)
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.reshape(x.shape[0], -1))


CRITERION = nn.CrossEntropyLoss()


def make_step() -> tuple[list[int], object]:
    traces = [0]

    @jax.jit
    def train_step(model, opt, x, y, key):
        traces[0] += 1
        with fparam.rng(key):
            loss, grads = fparam.value_and_grad(lambda m: CRITERION(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    return traces, train_step


def batches(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((8, 1, 8, 8)).astype(np.float32) * 2 + 1,
            rng.integers(0, 10, 8).astype(np.int64),
        )
        for _ in range(n)
    ]


def test_twenty_jitted_steps_match_a_torch_twin() -> None:
    torch.manual_seed(0)
    tmodel = TorchNet(p=0.0)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    model = Net(p=0.0)
    model.load_state_dict(tmodel.state_dict())
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    traces, train_step = make_step()
    key = jax.random.key(0)
    for step, (x, y) in enumerate(batches(20)):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
        model, opt, _ = train_step(
            model, opt, jnp.asarray(x), jnp.asarray(y, jnp.int32), jax.random.fold_in(key, step)
        )
    assert traces[0] == 1
    ours, theirs = model.state_dict(), tmodel.state_dict()
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[k], v.numpy(), rtol=2e-4, atol=2e-5, err_msg=k)
    assert int(model.bn.num_batches_tracked) == 20
    # Eval mode uses the running statistics, as torch's.
    model.eval()
    tmodel.eval()
    x_test = batches(1, seed=9)[0][0]
    np.testing.assert_allclose(
        jax.jit(lambda m, x: m(x))(model, jnp.asarray(x_test)),
        tmodel(torch.tensor(x_test)).detach().numpy(),
        rtol=1e-4,
        atol=1e-4,
    )


def test_masks_come_from_the_key_in_scope() -> None:
    fparam.manual_seed(0)
    model = Net(p=0.5)
    opt = optim.SGD(model.parameters(), lr=0.1)
    traces, train_step = make_step()
    x, y = (jnp.asarray(a) for a in batches(1)[0])
    y = y.astype(jnp.int32)
    loss_a = train_step(model, opt, x, y, jax.random.key(1))[2]
    loss_b = train_step(model, opt, x, y, jax.random.key(1))[2]
    loss_c = train_step(model, opt, x, y, jax.random.key(2))[2]
    assert float(loss_a) == float(loss_b) and float(loss_a) != float(loss_c)
    assert traces[0] == 1
    with pytest.raises(fparam.RandomnessError, match="Dropout"):
        jax.jit(lambda m, x: fparam.stateful(lambda m: m(x))(m))(model, x)


def test_a_scan_over_batches_carries_the_statistics() -> None:
    fparam.manual_seed(1)
    model = Net(p=0.0)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _, train_step = make_step()
    data = batches(4, seed=3)
    xs = jnp.stack([jnp.asarray(x) for x, _ in data])
    ys = jnp.stack([jnp.asarray(y, jnp.int32) for _, y in data])
    keys = jax.random.split(jax.random.key(0), 4)

    def body(carry, batch):
        m, o = carry
        x, y, k = batch
        m, o, loss = train_step(m, o, x, y, k)
        return (m, o), loss

    (scanned, _), losses = jax.jit(lambda c, b: jax.lax.scan(body, c, b))(
        (model, opt), (xs, ys, keys)
    )
    looped, lopt = model, opt
    for i in range(4):
        looped, lopt, _ = train_step(looped, lopt, xs[i], ys[i], keys[i])
    assert losses.shape == (4,)
    assert int(scanned.bn.num_batches_tracked) == 4
    for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(looped)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vmap_over_an_ensemble_keeps_each_members_statistics() -> None:
    members = []
    for seed in range(3):
        fparam.manual_seed(seed)
        members.append(Net(p=0.0))
    stack = lambda *xs: jnp.stack(xs)  # noqa: E731
    models = jax.tree.map(stack, *members)  # one architecture: equal structures stack
    opts = jax.tree.map(stack, *[optim.SGD(m.parameters(), lr=0.1) for m in members])
    data = batches(3, seed=5)
    xs = jnp.stack([jnp.asarray(x) for x, _ in data])
    ys = jnp.stack([jnp.asarray(y, jnp.int32) for _, y in data])
    keys = jax.random.split(jax.random.key(0), 3)
    _, train_step = make_step()
    new_models, _, _ = jax.jit(jax.vmap(train_step))(models, opts, xs, ys, keys)
    for i, member in enumerate(members):
        alone, _, _ = train_step(
            member, optim.SGD(member.parameters(), lr=0.1), xs[i], ys[i], keys[i]
        )
        np.testing.assert_allclose(new_models.bn.running_mean[i], alone.bn.running_mean, rtol=1e-5)
        np.testing.assert_allclose(new_models.bn.running_var[i], alone.bn.running_var, rtol=1e-5)
    assert not np.allclose(new_models.bn.running_mean[0], new_models.bn.running_mean[1])


def test_switching_modes_does_not_retrace_in_a_loop_that_keeps_the_mode() -> None:
    model = Net(p=0.0)
    traces = [0]

    @jax.jit
    def forward(m, x):
        traces[0] += 1
        return fparam.stateful(lambda m: m(x))(m), m

    x = jnp.asarray(batches(1)[0][0])
    for _ in range(3):
        _, model = forward(model, x)
    model.eval()
    for _ in range(3):
        forward(model, x)
    model.train()
    for _ in range(3):
        _, model = forward(model, x)
    assert traces[0] == 2
    assert int(model.bn.num_batches_tracked) == 6


def test_lost_updates_raise_and_name_the_layer() -> None:
    model = Net(p=0.0)
    x = jnp.asarray(batches(1)[0][0])
    before = np.asarray(model.bn.running_mean)
    with pytest.raises(fparam.BufferUpdateError, match=r"BatchNorm2d.*fparam\.value_and_grad"):
        jax.jit(lambda m, x: m(x))(model, x)
    with pytest.raises(fparam.BufferUpdateError, match="BatchNorm2d"):
        jax.value_and_grad(lambda x: model(x).sum())(x)
    np.testing.assert_array_equal(model.bn.running_mean, before)
    # In eval mode nothing changes: plain jit is fine.
    model.eval()
    assert jax.jit(lambda m, x: m(x))(model, x).shape == (8, 10)


def test_a_torch_batchnorm_checkpoint_loads_as_is_and_back() -> None:
    tmodel = TorchNet()
    tmodel.train()
    tmodel(torch.randn(8, 1, 8, 8))  # running statistics and num_batches_tracked move
    model = Net()
    model.load_state_dict(tmodel.state_dict())
    assert int(model.bn.num_batches_tracked) == 1
    back = TorchNet()
    back.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k].numpy(), v.numpy())
    twin = fparam.from_torch(tmodel.bn)
    assert isinstance(twin, nn.BatchNorm2d)


def test_stateful_names_its_bad_arguments() -> None:
    model = Net(p=0.0)
    with pytest.raises(TypeError, match="expects a function"):
        fparam.stateful(model.bn.running_mean)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argnums must be ints"):
        fparam.stateful(lambda m: m, argnums="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"argnums=2.*got 1 positional"):
        fparam.stateful(lambda m: m, argnums=2)(model)
    # Eagerly it updates in place, as torch's forward does.
    x = jnp.asarray(batches(1)[0][0])
    fparam.stateful(lambda m: m(x))(model)
    assert int(model.bn.num_batches_tracked) == 1
