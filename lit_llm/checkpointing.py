"""Checkpoint files: atomic writes, safe reading of files and sharded folders, consolidation.

Plain PyTorch, so `generate`, `evaluate` and `export` start without importing Lightning.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch


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


def save_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``NAME.tmp`` beside the target, flushed to disk, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    replace_atomically(tmp, path)


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
    save_atomically({k: v for k, v in state.items() if not k.startswith("optimizer")}, target)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from {source}")
