"""Training over a ``jax.sharding`` mesh: placement plans, parallel styles, optimizer-state
sharding, synchronised statistics and sharded checkpoints.

fparam models and optimizers are pytrees, so JAX's SPMD partitioner already runs a jitted step
over any placement; this package decides the placement (by ``state_dict`` key, by torch-style
parallel styles, or by per-parameter annotations) and keeps it through everything fparam does.
"""

from __future__ import annotations

__all__: list[str] = []

from fparam.distributed.optimizer_state import StateSharding, shard_optimizer_state

__all__ += ["StateSharding", "shard_optimizer_state"]
