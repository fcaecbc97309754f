"""One compile per architecture: parameter identity is not part of the tree structure.

Two models of one architecture have equal tree structures (a jitted step compiles once for all
of them, a sharding tree built from one places the other), while what the identity bought stays:
an optimizer recognises its parameters in every copy JAX hands it (by place: root model and
state_dict key), refuses a model without them, and the same parameter cannot sit in two places
of one model.
"""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim


class Net(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        self.head_scale = nn.Parameter(jnp.ones((3,)))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.body(x) * self.head_scale[None, :]


class TorchNet(torch.nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
        )
        self.head_scale = torch.nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.head_scale[None, :]


CRITERION = nn.CrossEntropyLoss()
X = jax.random.normal(jax.random.key(0), (6, 4))
Y = jnp.arange(6) % 3


def counting_step() -> tuple[list[int], object]:
    traces = [0]

    @jax.jit
    def step(model, opt, x, y):
        traces[0] += 1
        loss, grads = fparam.value_and_grad(lambda m: CRITERION(m(x), y))(model)
        model, opt = opt.step(model, grads)
        return model, opt, loss

    return traces, step


def test_models_of_one_architecture_have_equal_structures() -> None:
    a, b = Net(), Net()
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.structure(copy.deepcopy(a)) == jax.tree.structure(a)
    # What does change the structure: architecture, requires_grad, training mode.
    assert jax.tree.structure(Net(hidden=9)) == jax.tree.structure(Net(hidden=9))
    frozen = Net()
    frozen.body[0].requires_grad_(False)
    assert jax.tree.structure(frozen) != jax.tree.structure(a)
    assert jax.tree.structure(Net().eval()) != jax.tree.structure(a)


def test_twenty_fresh_models_train_with_one_trace() -> None:
    traces, step = counting_step()
    for i in range(20):
        fparam.manual_seed(i)
        model = Net()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=i % 2 == 0)
        before = {k: np.asarray(v) for k, v in model.state_dict().items()}
        model, opt, _ = step(model, opt, X, Y)
        model, opt, _ = step(model, opt, X, Y)
        after = model.state_dict()
        assert all(not np.array_equal(before[k], after[k]) for k in before)
    # nesterov is static: two programs, each traced once for twenty models.
    assert traces[0] == 2


def test_fresh_models_match_torch_through_one_compiled_step() -> None:
    traces, step = counting_step()
    for seed in range(3):
        torch.manual_seed(seed)
        tmodel = TorchNet()
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
        model = Net()
        model.load_state_dict(tmodel.state_dict())
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        tx, ty = torch.tensor(np.asarray(X)), torch.tensor(np.asarray(Y)).long()
        for _ in range(3):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tmodel(tx), ty).backward()
            topt.step()
            model, opt, _ = step(model, opt, X, Y)
        for key, value in tmodel.state_dict().items():
            np.testing.assert_allclose(
                model.state_dict()[key], value.detach().numpy(), rtol=1e-5, atol=1e-6
            )
    assert traces[0] == 1


def test_a_deepcopy_for_an_ema_teacher_shares_the_compiled_step() -> None:
    traces = [0]

    @jax.jit
    def ema(student, teacher):
        traces[0] += 1
        return jax.tree.map(lambda s, t: 0.9 * t + 0.1 * s, student, teacher)

    student = Net()
    teacher = copy.deepcopy(student)
    for _ in range(3):
        teacher = ema(student, teacher)
        student = Net()
    assert traces[0] == 1


def test_a_sharding_tree_built_from_one_model_places_another() -> None:
    device = jax.devices()[0]
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), Net())
    placed = jax.device_put(Net(), shardings)
    assert all(leaf.committed for leaf in jax.tree.leaves(placed))
    specs = jax.tree.map(lambda _: jax.sharding.PartitionSpec(), Net())
    assert jax.tree.structure(specs) == jax.tree.structure(Net())
    jax.tree.map(lambda spec, leaf: None, specs, Net())  # same structure: no error


def test_an_optimizer_finds_its_subset_in_every_copy_and_in_a_returned_model() -> None:
    model = Net()
    opt = optim.SGD(model.body[2].parameters(), lr=0.5)
    assert [p._place for p in opt.param_groups[0]["params"]] == [
        (0, "body.2.weight"),
        (0, "body.2.bias"),
    ]
    grads = jax.tree.map(jnp.ones_like, model)
    new, opt = jax.jit(lambda m, o, g: o.step(m, g))(model, opt, grads)
    np.testing.assert_allclose(new.body[2].bias, model.body[2].bias - 0.5)
    np.testing.assert_array_equal(new.body[0].weight, model.body[0].weight)
    np.testing.assert_array_equal(new.head_scale, model.head_scale)
    # An optimizer built from a child of a model returned by jit knows its place too.
    opt2 = optim.SGD(new.body[0].parameters(), lr=1.0)
    assert opt2.param_groups[0]["params"][0]._place == (0, "body.0.weight")
    newer, _ = opt2.step(new, grads)
    np.testing.assert_allclose(newer.body[0].bias, new.body[0].bias - 1.0)


def test_a_model_without_the_optimizers_parameters_is_refused_with_their_keys() -> None:
    opt = optim.SGD(Net().parameters(), lr=0.1)
    other = Net(hidden=5)
    with pytest.raises(
        ValueError,
        match=r"3 of this optimizer's 5 parameters .*'body.0.weight', 'body.0.bias', 'body.2.weight'",
    ):
        opt.step(other, jax.tree.map(jnp.zeros_like, other))


def test_a_parameter_assigned_after_the_optimizer_was_built_is_found() -> None:
    p = nn.Parameter(jnp.ones((3,)))
    opt = optim.SGD([p], lr=0.5)
    holder = nn.Module()
    holder.w = p
    new, _ = opt.step(holder, jax.tree.map(jnp.ones_like, holder))
    np.testing.assert_allclose(new.w, 0.5 * np.ones(3))
    lonely = optim.SGD([nn.Parameter(jnp.ones((3,)))], lr=0.5)
    with pytest.raises(ValueError, match="not in any module"):
        lonely.step(holder, jax.tree.map(jnp.ones_like, holder))


def test_a_module_in_two_models_is_ambiguous_for_an_optimizer() -> None:
    shared = nn.Linear(2, 2)
    first, second = nn.Sequential(shared), nn.Sequential(shared)
    assert first[0] is second[0]
    with pytest.raises(ValueError, match="belongs to 2 models"):
        optim.SGD(shared.parameters(), lr=0.1)


def test_the_same_parameter_in_two_places_is_still_refused_in_copies() -> None:
    model = Net()
    with pytest.raises(ValueError, match="appears twice"):
        model.body[0].weight2 = model.get_parameter("body.0.weight")
    copy_ = jax.tree.map(lambda x: x, model)
    with pytest.raises(ValueError, match="appears twice"):
        copy_.body[2].extra = copy_.get_parameter("body.0.bias")
    # Models returned by jitted steps, put together in one ensemble, are not "shared".
    _, step = counting_step()
    trained = []
    for _ in range(3):
        m = Net()
        m, _, _ = step(m, optim.SGD(m.parameters(), lr=0.1), X, Y)
        trained.append(m)
    ensemble = nn.ModuleList(trained)
    assert len(list(ensemble.parameters())) == 15


def test_memory_is_flat_when_stepping_many_fresh_models() -> None:
    """Builds and steps 150 fresh models in a child process: executables are not duplicated,
    so memory after the first 50 grows by less than one compile's worth per ten models."""
    script = textwrap.dedent(
        """
        import resource, jax, jax.numpy as jnp, fparam
        from fparam import nn, optim
        crit = nn.CrossEntropyLoss()
        traces = [0]
        @jax.jit
        def step(m, o, x, y):
            traces[0] += 1
            loss, g = fparam.value_and_grad(lambda m: crit(m(x), y))(m)
            return o.step(m, g)
        x, y = jnp.ones((4, 6)), jnp.zeros((4,), jnp.int32)
        def rss():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        marks = []
        for i in range(150):
            m = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))
            m, o = step(m, optim.SGD(m.parameters(), lr=0.1), x, y)
            if i in (49, 149):
                marks.append(rss())
        print(traces[0], marks[1] - marks[0])
        """
    )
    gc.collect()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    traces, growth_kib = map(int, out.stdout.split())
    assert traces == 1
    # One extra compile of this step costs several MiB of executable and trace caches; 100
    # models with a compile each would grow by hundreds of MiB.
    assert growth_kib < 20 * 1024, growth_kib


def test_a_named_sharding_tree_from_one_model_places_another_on_eight_devices() -> None:
    """On 8 simulated CPU devices (a child process, so the suite keeps one device); also
    ``reset_parameters`` keeping each parameter's sharding (DESIGN.md, rule 11)."""
    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        import jax, jax.numpy as jnp
        from jax.sharding import NamedSharding, PartitionSpec as P
        import fparam
        from fparam import nn, optim

        mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
        def spec(leaf):
            return NamedSharding(mesh, P("x") if leaf.shape[0] % 8 == 0 else P())
        def build():
            return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 8))
        shardings = jax.tree.map(spec, build())          # from one instance ...
        other = jax.device_put(build(), shardings)        # ... places another
        assert other[0].weight.sharding.spec == P("x"), other[0].weight.sharding
        assert other[2].bias.sharding.spec == P("x")
        crit = nn.MSELoss()
        traces = [0]
        @jax.jit
        def step(m, o, x, y):
            traces[0] += 1
            loss, g = fparam.value_and_grad(lambda m: crit(m(x), y))(m)
            return o.step(m, g)
        x, y = jnp.ones((4, 16)), jnp.zeros((4, 8))
        for _ in range(3):
            model = jax.device_put(build(), shardings)
            model, opt = step(model, optim.SGD(model.parameters(), lr=0.1), x, y)
        assert traces[0] == 1, traces
        assert model[0].weight.sharding.spec == P("x")
        # Optimizer state is born with each parameter's sharding and keeps it through
        # load_state_dict and a new lr: one compiled program from the first call on.
        placed = jax.device_put(build(), shardings)
        sgd = optim.SGD(placed.parameters(), lr=0.1, momentum=0.9)
        assert sgd._momentum[sgd.param_groups[0]["params"][0].uid].sharding.spec == P("x")
        placed, sgd = step(placed, sgd, x, y)  # a new structure (momentum): one new entry
        entries = step._cache_size()
        sgd.load_state_dict(sgd.state_dict())
        sgd.param_groups[0]["lr"] = 0.05
        for _ in range(2):
            placed, sgd = step(placed, sgd, x, y)
        assert step._cache_size() == entries, (entries, step._cache_size())
        assert sgd._momentum[sgd.param_groups[0]["params"][0].uid].sharding.spec == P("x")
        # Re-initialising in place keeps each parameter's sharding (Linear and Conv alike).
        for layer in (nn.Linear(16, 32), nn.Conv2d(8, 16, 3)):
            layer = jax.device_put(layer, jax.tree.map(spec, layer))
            before = {k: v.sharding for k, v in layer.state_dict().items()}
            layer.reset_parameters()
            assert {k: v.sharding for k, v in layer.state_dict().items()} == before
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
