"""Parallelism, activation checkpointing and compilation, applied to an unmodified model from outside.

Also registers the ``fsdp2`` strategy name with Lightning, so experiment YAMLs and the command line
can say ``trainer.strategy: fsdp2``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from lit_llm.checkpointing import replace_atomically
from lit_llm.model import GPT



class FSDP2Strategy(ModelParallelStrategy):
    """Pure data-parallel FSDP2 over every process of every node, with atomically replaced checkpoints.

    ModelParallelStrategy's "auto" sizes mean one data-parallel group per node; FSDP shards over all.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        """Sharded checkpoints are folders: write NAME.tmp, then swap it in, so a kill leaves the old one."""
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(path.name + ".tmp")
        if self.global_rank == 0 and tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        self.barrier()
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier()
        if self.global_rank == 0:
            replace_atomically(tmp, path)
        self.barrier()


if "fsdp2" not in StrategyRegistry:
    StrategyRegistry.register("fsdp2", FSDP2Strategy, description="FSDP2: fully_shard each block, then the root")


def is_sharded(strategy) -> bool:
    return isinstance(strategy, ModelParallelStrategy)


def apply_parallelism(module: L.LightningModule, model: GPT) -> None:
    """Checkpoint activations, shard (FSDP2 when the strategy is model-parallel; the model then arrives on
    the meta device and is materialised here), then compile.

    The order matters: checkpoint wrappers go inside the shards, and compiling comes last so it sees the
    sharded modules (Lightning's guide for ModelParallelStrategy).
    """
    if module.activation_checkpointing:
        # checkpoint_wrapper strips its own prefix from state dicts, so checkpoints stay interchangeable.
        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block)
    if is_sharded(module.trainer.strategy):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = module.device_mesh["data_parallel"]
        # Under bf16-mixed, gather parameters in bf16 (half the traffic, and no fp32 copy of a whole block
        # per GPU) while gradients are reduced in fp32.
        bf16 = str(module.trainer.precision).startswith("bf16")
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        model.to_empty(device=module.device)  # allocate this rank's shards, then initialise them
        model.init_weights()
    if module.compile:
        model.compile()


def load_full_state_dict(model: GPT, state: dict[str, torch.Tensor]) -> None:
    """Load unsharded weights into a model however it was wrapped (FSDP2 shards, checkpoint wrappers)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if model.config.tie_embeddings and "lm_head.weight" not in state:  # sharded checkpoints store it once
        state = {**state, "lm_head.weight": state["wte.weight"]}
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
