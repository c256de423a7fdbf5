"""Parallelism, activation checkpointing and compilation, applied to an unmodified model from outside.

Also registers the ``fsdp2`` strategy name with Lightning, so experiment YAMLs and the command line
can say ``trainer.strategy: fsdp2``.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from lit_llm.model import GPT

if "fsdp2" not in StrategyRegistry:
    StrategyRegistry.register(
        "fsdp2",
        ModelParallelStrategy,
        description="FSDP2 (fully_shard per transformer block, then the root) via ModelParallelStrategy",
        data_parallel_size="auto",
        tensor_parallel_size=1,
    )


def apply_parallelism(module: L.LightningModule, model: GPT) -> None:
    """Checkpoint activations, shard (FSDP2 when the strategy is model-parallel), then compile.

    The order matters: checkpoint wrappers go inside the shards, and compiling comes last so it sees the
    sharded modules (Lightning's guide for ModelParallelStrategy).
    """
    if module.activation_checkpointing:
        # checkpoint_wrapper strips its own prefix from state dicts, so checkpoints stay interchangeable.
        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block)
    if isinstance(module.trainer.strategy, ModelParallelStrategy):
        from torch.distributed.fsdp import fully_shard

        mesh = module.device_mesh["data_parallel"]
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    if module.compile:
        model.compile()
