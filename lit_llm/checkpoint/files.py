"""The checkpoint format, one place for training and inference: atomic writes, safe reading of files and
sharded folders, and finding a run's newest complete checkpoint. (Rebuilding a model from one: load.py.)

Plain PyTorch, so `generate`, `evaluate` and `export` start without importing Lightning.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from lit_llm.errors import CheckpointSaveError

CHECKPOINT_KEY = "lit_llm"  # where a checkpoint keeps what rebuilds the model and tokenizer
SHARDED_METADATA = "meta.pt"  # Lightning's file of non-tensor state inside a sharded checkpoint folder
EMA_KEY = "ema_state_dict"  # the weights' moving average (train.callbacks.WeightEMA), keyed as state_dict


def replace_atomically(tmp: Path, path: Path) -> None:
    """Move a fully written file or folder over ``path``; a kill at any point leaves one of the two intact.

    A folder cannot be renamed over another, so it takes two renames: ``NAME`` -> ``NAME.old``, then
    ``NAME.tmp`` -> ``NAME``; a kill in between leaves no ``NAME`` but a complete ``NAME.old``, which
    ``newest_checkpoint`` finds.
    """
    old = path.with_name(path.name + ".old")
    if tmp.is_dir() and path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        tmp.rename(path)
    else:
        os.replace(tmp, path)  # files: one atomic rename
    if old.is_dir():
        shutil.rmtree(old)  # also the leftover of an earlier kill between the two renames
    elif old.exists():
        old.unlink()


def save_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``.NAME.tmp-PID`` beside the target (a name no other process writes), flushed to disk,
    then renamed into place. A failed write removes its temporary file and leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise CheckpointSaveError(
                f"{failed_save_reason(err)}: cannot save {path} ({kept_checkpoint(path)})"
            ) from err
        raise
    replace_atomically(tmp, path)


def failed_save_reason(err: BaseException) -> str:
    """The OS's reason for a failed write: torch's zip writer reports it as a RuntimeError ("unexpected pos")
    whose context holds the OSError (ENOSPC for a full disk)."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    if err is None:
        return "write failed"
    return "no space left on device" if err.errno == errno.ENOSPC else (err.strerror or str(err)).lower()


def kept_checkpoint(path: Path) -> str:
    """What the run can still resume from after a failed save of ``path`` (in RUN/checkpoints/)."""
    newest = newest_checkpoint(path.parent.parent, path.parent)
    return f"previous checkpoint kept: {newest[0]}" if newest else "no earlier checkpoint exists"


def is_sharded_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / SHARDED_METADATA).is_file()


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as one dict, from a file or a sharded (FSDP2, distributed-checkpoint) folder.

    Only tensors and plain types are read (``weights_only``): a checkpoint can never run code.
    """
    try:
        if not is_sharded_checkpoint(path):
            return torch.load(path, map_location="cpu", weights_only=True)
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        checkpoint = torch.load(path / SHARDED_METADATA, map_location="cpu", weights_only=True)
        reader = dcp.FileSystemReader(str(path))
        # The weights and their EMA only: the AdamW states beside them are twice the weights' size and no
        # reader here needs them. Keys are ENTRY.NAME, e.g. state_dict.model.wte.weight.
        tensors: dict[str, dict[str, torch.Tensor]] = {"state_dict": {}, EMA_KEY: {}}
        for key, meta in reader.read_metadata().state_dict_metadata.items():
            entry, _, name = key.partition(".")
            if entry in tensors and isinstance(meta, TensorStorageMetadata):
                tensors[entry][name] = torch.empty(meta.size, dtype=meta.properties.dtype)
        tensors = {entry: weights for entry, weights in tensors.items() if weights}  # no EMA: no entry
        dcp.load(tensors, storage_reader=reader, no_dist=True)
        checkpoint.update(tensors)
        return checkpoint
    except Exception as err:
        raise unreadable_checkpoint(path, err) from None


def check_readable(path: Path) -> None:
    """One line if ``path`` is not a checkpoint torch can open; its tensors are memory-mapped, not read."""
    try:
        checkpoint_header(path)
    except Exception as err:
        raise unreadable_checkpoint(path, err) from None


def unreadable_checkpoint(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable checkpoint ({unreadable_reason(err)}); it may be truncated or corrupt: pass "
        "another one, e.g. an earlier checkpoints/step-*.ckpt of the run"
    )


def checkpoint_header(path: Path) -> dict:
    """A checkpoint's entries without reading its tensors, whatever the model size: a file is
    memory-mapped, a sharded folder gives its small ``meta.pt``."""
    if path.is_dir():
        return torch.load(path / SHARDED_METADATA, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def checkpoint_step(path: Path) -> int | None:
    """The optimizer step a checkpoint was saved at, or None when it is incomplete or unreadable: a file
    cut short by a kill has no zip directory; a sharded folder is complete once the distributed
    checkpoint's ``.metadata`` (written last) is there."""
    try:
        if path.is_dir() and not (path / ".metadata").is_file():
            return None
        return int(checkpoint_header(path)["global_step"])
    except Exception:
        return None


def resume_candidates(run_dir: Path, folder: Path | None = None) -> list[Path]:
    """Checkpoints a run can continue from: in ``folder`` (default RUN/checkpoints) ``last.ckpt``, periodic
    ``step-*.ckpt`` and ``NAME.old`` left by a kill between a folder swap's two renames; in the run folder
    Lightning's SLURM ``hpc_ckpt_N.ckpt``. Never ``best.ckpt`` (saved during validation, for inference)
    nor ``NAME.tmp`` (being written)."""
    folder = folder or run_dir / "checkpoints"
    return [
        folder / "last.ckpt",
        *sorted(folder.glob("step-*.ckpt")),
        *sorted(run_dir.glob("hpc_ckpt_*.ckpt")),
        folder / "last.ckpt.old",
        *sorted(folder.glob("step-*.ckpt.old")),
    ]


def newest_checkpoint(run_dir: str | Path, folder: Path | None = None) -> tuple[Path, int] | None:
    """The complete checkpoint of ``run_dir`` at the latest step, and that step (None: nothing to resume).

    On a tie the earlier candidate wins (``last.ckpt`` before ``step-*``): both hold the same state.
    """
    best: tuple[Path, int] | None = None
    for path in resume_candidates(Path(run_dir), folder):
        step = checkpoint_step(path) if path.exists() else None
        if step is not None and (best is None or step > best[1]):
            best = (path, step)
    return best


def unreadable_reason(err: Exception) -> str:
    """The first line of why torch could not read a file, without torch's advice to retry with
    ``weights_only=False``: wrong advice for a damaged file, and unsafe for a file from elsewhere."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
