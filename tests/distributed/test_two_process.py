"""Two local processes (4 simulated CPU devices each) form one 8-device job through
``jax.distributed.initialize`` and train the digits CNN fully sharded over all 8 devices; each
process ends with the parameters and optimizer state a one-device run computes in it.

Cross-process collectives on CPU use gloo, the default ``jax_cpu_collectives_implementation`` of
JAX 0.10.2: nothing to configure.
"""

from __future__ import annotations

import sys
import textwrap

from tests.distributed._devices import PRELUDE, run_processes

SCRIPT = r"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

port, process_id = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(
    coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id
)
assert jax.device_count() == 8 and jax.local_device_count() == 4, jax.devices()

import fparam
from fparam import nn, optim
from tests.distributed._digits import CNN, digits
from fparam.distributed import fully_shard

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


images, labels = digits(48)
criterion = nn.CrossEntropyLoss()


def train_step(model, opt, x, y):
    loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
    model, opt = opt.step(model, grads)
    return model, opt, loss


def train(model, put):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = jax.jit(lambda *args: train_step(*args), compiler_options=FAST)
    placed = [leaf.sharding for leaf in jax.tree.leaves((model, opt))]
    for i in range(3):
        x, y = images[16 * i : 16 * (i + 1)], labels[16 * i : 16 * (i + 1)]
        model, opt, loss = step(model, opt, put(x), put(y))
        assert [leaf.sharding for leaf in jax.tree.leaves((model, opt))] == placed
    return model, opt, loss


fparam.manual_seed(0)  # the same seed in both processes: the same initial model
single = CNN()
sharded = CNN()
sharded.load_state_dict(single.state_dict())
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
fully_shard(sharded, mesh=mesh, axis="data")
weight = sharded.features[0].weight
assert weight.sharding.spec == P("data") and not weight.is_fully_addressable
assert len(weight.addressable_shards) == 4

# Each process feeds its own half of every global batch (torch's DistributedSampler).
batch = NamedSharding(mesh, P("data"))


def put_global(a):
    local = a[process_id * len(a) // 2 : (process_id + 1) * len(a) // 2]
    return jax.make_array_from_process_local_data(batch, local, a.shape)


sharded, opt_8, loss_8 = train(sharded, put_global)
single, opt_1, loss_1 = train(single, jnp.asarray)

# The loss is replicated; parameters and optimizer state: each addressable shard against the
# same slice of the one-device result. Measured worst difference: 3e-8.
worst = abs(float(loss_8.addressable_shards[0].data) - float(loss_1))
checked = 0
for got, want in zip(jax.tree.leaves((sharded, opt_8)), jax.tree.leaves((single, opt_1))):
    want = np.asarray(want)
    for shard in got.addressable_shards:
        worst = max(worst, float(np.max(np.abs(np.asarray(shard.data) - want[shard.index]))))
        checked += 1
assert checked > 0 and worst <= 1e-6, worst
print(f"process {process_id}: {checked} shards, worst difference {worst:.1e}")
print("ok")
"""


def test_two_processes_train_fully_sharded_to_the_one_device_result():
    code = PRELUDE + textwrap.dedent(SCRIPT)
    outputs = run_processes([sys.executable, "-c", code, "{port}", "{process_id}"], devices=4)
    for i, out in enumerate(outputs):
        assert out.rstrip().endswith("ok"), out
        assert f"process {i}: " in out, out
