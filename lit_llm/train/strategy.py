"""The ``fsdp2`` strategy: registered with Lightning, so experiment YAMLs and the command line can say
``trainer.strategy: fsdp2``. What it does to the model is ``lit_llm.distributed.parallelize.parallelize``."""

from __future__ import annotations

import shutil
from pathlib import Path

from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry

from lit_llm.checkpoint.files import replace_atomically


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
