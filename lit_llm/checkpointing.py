"""Checkpoint files: atomic writes, `last.ckpt` at the end of every run, and consolidation of sharded ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint


def replace_atomically(tmp: Path, path: Path) -> None:
    """Move a fully written file or folder over ``path``; a kill at any point leaves one of the two intact."""
    if tmp.is_dir() and path.exists():
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)  # files: one atomic rename


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``NAME.tmp`` beside the target, flushes it to disk, then renames it into place.

    Lightning's own save stages the file in the system temp folder and moves it, which is a copy (not
    atomic) whenever that folder is on another file system than the checkpoints.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        replace_atomically(tmp, path)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus: ``last.ckpt`` always holds the final step when training ends
    (Lightning only writes it at the end if it was never written before)."""

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


SHARDED_METADATA = "meta.pt"  # Lightning's file of non-tensor state inside a sharded checkpoint folder


def is_sharded_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / SHARDED_METADATA).is_file()


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as one dict, from a file or a sharded (FSDP2, distributed-checkpoint) folder.

    Only tensors and plain types are read (``weights_only``): a checkpoint can never run code.
    """
    try:
        if not is_sharded_checkpoint(path):
            return torch.load(path, map_location="cpu", weights_only=True)
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
        from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

        checkpoint = torch.load(path / SHARDED_METADATA, map_location="cpu", weights_only=True)
        tensors: dict = {}
        _load_state_dict(tensors, storage_reader=FileSystemReader(str(path)), planner=_EmptyStateDictLoadPlanner(), no_dist=True)
        checkpoint["state_dict"] = tensors["state_dict"]
        return checkpoint
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); it may be truncated or corrupt") from None


def consolidate(checkpoint: str, output: str) -> None:
    """Merge a sharded FSDP2 checkpoint folder into one ordinary checkpoint file (model weights, config,
    tokenizer) that `generate` and `validate` load on a single device.

    Args:
        checkpoint: a sharded checkpoint folder, e.g. RUN/checkpoints/last.ckpt written under fsdp2.
        output: the single-file checkpoint to write (written to a temporary name, then renamed).
    """
    source, target = Path(checkpoint).expanduser(), Path(output).expanduser()
    if not is_sharded_checkpoint(source):
        raise ValueError(f"{source} is not a sharded checkpoint folder (no {SHARDED_METADATA}); it can be used as it is")
    state = read_checkpoint(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    AtomicCheckpointIO().save_checkpoint({k: v for k, v in state.items() if not k.startswith("optimizer")}, target)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from {source}")
