"""Training over a ``jax.sharding`` mesh: placement plans, parallel styles, optimizer-state
sharding, synchronised statistics and sharded checkpoints.

fparam models and optimizers are pytrees, so JAX's SPMD partitioner already runs a jitted step
over any placement; this package decides the placement (by ``state_dict`` key, by torch-style
parallel styles, or by per-parameter annotations) and keeps it through everything fparam does.
"""

from __future__ import annotations

from fparam.distributed.checkpoint import load_sharded, save_sharded
from fparam.distributed.optimizer_state import StateSharding, shard_optimizer_state
from fparam.distributed.placement import (
    Logical,
    Placement,
    Replicate,
    Rule,
    ShardFirstDivisible,
    distribute,
    fully_shard,
    partition_specs,
    plan_shardings,
    sharded_init,
    shardings,
)
from fparam.distributed.tensor_parallel import (
    ColwiseParallel,
    HeadwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

__all__ = [
    "ColwiseParallel",
    "HeadwiseParallel",
    "Logical",
    "ParallelStyle",
    "Placement",
    "Replicate",
    "RowwiseParallel",
    "Rule",
    "ShardFirstDivisible",
    "StateSharding",
    "distribute",
    "fully_shard",
    "load_sharded",
    "parallelize_module",
    "partition_specs",
    "plan_shardings",
    "save_sharded",
    "shard_optimizer_state",
    "sharded_init",
    "shardings",
]
