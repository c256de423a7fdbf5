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
