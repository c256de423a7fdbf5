"""The ``fsdp2`` strategy: registered with Lightning, so experiment YAMLs and the command line can say
``trainer.strategy: fsdp2``. What it does to the model is ``lit_llm.distributed.parallelize.parallelize``."""

from __future__ import annotations

import shutil
from pathlib import Path

from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry

from lit_llm.checkpoint.files import EMA_KEY, SHARDED_METADATA, is_sharded_checkpoint, replace_atomically


class FSDP2Strategy(ModelParallelStrategy):
    """Pure data-parallel FSDP2 over every process of every node, with atomically replaced checkpoints.

    ModelParallelStrategy's "auto" sizes mean one data-parallel group per node; FSDP shards over all.

    ``async_save``: a checkpoint's tensors are copied to host memory while training waits, then written by a
    background thread (torch.distributed.checkpoint.async_save) while training goes on. One save is in
    flight at a time: the next save, and the end of fit (normal, a signal, an error), first wait for it to
    complete and be renamed into place. Until then the previous checkpoint of that name is the one on disk,
    and a kill mid-write leaves only ``NAME.tmp``, which a resume never reads. Costs host memory for one copy
    of the weights and optimizer state of this rank.

    The EMA of the weights (``ema_state_dict``, train.callbacks.WeightEMA) is sharded like them: each rank
    writes and reads its own shards beside the weights' in the distributed checkpoint.
    """

    def __init__(self, async_save: bool = False, **kwargs) -> None:
        if kwargs.get("save_distributed_checkpoint") is False:
            raise ValueError(
                "trainer.strategy.save_distributed_checkpoint false is not supported: lit-llm's fsdp2 writes sharded "
                "checkpoint folders (resumable on any process count); make one file of one with `lit-llm consolidate`"
            )
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)
        self.async_save = async_save
        self.pending: tuple | None = None  # (future, NAME.tmp, NAME) of the save in flight
        self.save_group = None  # the background writes' own gloo group: never interleaved with training's

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        """Sharded checkpoints are folders: write NAME.tmp, then swap it in, so a kill leaves the old one."""
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(path.name + ".tmp")
        self.finish_pending_save()
        if self.global_rank == 0 and tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        self.barrier()
        self.write_sharded(checkpoint, tmp, path)
        if self.async_save:
            return
        self.barrier()
        if self.global_rank == 0:
            replace_atomically(tmp, path)
        self.barrier()

    def write_sharded(self, checkpoint: dict, tmp: Path, path: Path) -> None:
        """What ModelParallelStrategy.save_checkpoint writes (the tensors by torch.distributed.checkpoint, the
        rest in meta.pt by rank 0), with the EMA's shards among the tensors; under ``async_save`` the tensors
        are written in the background."""
        import torch
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        tmp.mkdir(parents=True, exist_ok=True)
        tensors = {"state_dict": checkpoint.pop("state_dict")}
        tensors.update({f"optimizer_{i}": state for i, state in enumerate(checkpoint.pop("optimizer_states", []))})
        if EMA_KEY in checkpoint:
            tensors[EMA_KEY] = checkpoint.pop(EMA_KEY)
        if self.global_rank == 0:
            torch.save(checkpoint, tmp / SHARDED_METADATA)
        if not self.async_save:
            dcp.save(tensors, checkpoint_id=tmp)
            return
        if self.save_group is None:
            self.save_group = dist.new_group(backend="gloo")
        future = dcp.async_save(tensors, checkpoint_id=tmp, process_group=self.save_group)
        self.pending = (future, tmp, path)

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict:
        """Lightning's load (weights and optimizer state into their shards, the rest from meta.pt), plus the
        EMA's shards, laid out like the weights' on this run's processes (however many saved them). Resuming a
        fit from a single file (one process's or DDP's checkpoint) is refused: Lightning would fail on its
        optimizer state (whole tensors against shards) or on activation checkpointing's parameter names."""
        path = Path(self.broadcast(str(checkpoint_path)))
        if self.lightning_module.trainer.state.fn == "fit":  # validate reads a file's weights well
            check_sharded_resume(path)
        checkpoint = super().load_checkpoint(checkpoint_path, weights_only)
        if is_sharded_checkpoint(path):
            checkpoint.update(self.load_sharded_ema(path))
        return checkpoint

    def load_sharded_ema(self, path: Path) -> dict:
        """``{EMA_KEY: shards}`` when the checkpoint folder holds an EMA (keyed as the state_dict), else {}."""
        import torch
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        stored = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
        names = [key.removeprefix(f"{EMA_KEY}.") for key in stored if key.startswith(f"{EMA_KEY}.")]
        if not names:
            return {}
        weights = get_model_state_dict(self.model)
        ema = {name: torch.empty_like(weights[name], dtype=torch.float32) for name in names}
        dcp.load({EMA_KEY: ema}, checkpoint_id=path)
        return {EMA_KEY: ema}

    def finish_pending_save(self) -> None:
        """Wait for the save in flight, then rename it into place. Rank 0's write completes last: it writes
        the checkpoint's ``.metadata`` once every rank has reported its files written."""
        if self.pending is None:
            return
        future, tmp, path = self.pending
        self.pending = None
        future.result()
        if self.global_rank == 0:
            replace_atomically(tmp, path)

    def teardown(self) -> None:
        try:
            self.finish_pending_save()  # a run ends with its last save on disk, however it ends
        finally:
            super().teardown()


if "fsdp2" not in StrategyRegistry:
    StrategyRegistry.register("fsdp2", FSDP2Strategy, description="FSDP2: fully_shard each block, then the root")


def is_sharded(strategy) -> bool:
    return isinstance(strategy, ModelParallelStrategy)


def check_sharded_resume(checkpoint: Path) -> None:
    """fsdp2 resumes only the sharded checkpoint folders it writes (the CLI checks before the processes start,
    for a clean one-line error; the strategy checks again for fits started from Python)."""
    if not is_sharded_checkpoint(checkpoint):
        raise ValueError(
            f"{checkpoint} is a single-file checkpoint (written by one process or ddp), and fsdp2 resumes only the "
            f"sharded checkpoint folders it writes: resume it with the strategy that wrote it, or start a new run "
            f"from its weights with --model.init_from {checkpoint}"
        )
