"""Checkpoint files under a kill: a process SIGKILLed at each point inside a save (file and sharded folder
checkpoints) leaves a run folder whose newest complete checkpoint is found and reads; a sharded checkpoint
is read for inference without its optimizer states."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint.files import checkpoint_step, newest_checkpoint, read_checkpoint
from lit_llm.checkpoint.load import resolve_checkpoint

# Saves step 10 to checkpoints/last.ckpt, then step 20 over it, SIGKILLing itself at the Nth call of a function
# used by lit_llm.checkpoint.files in the second save. Folder checkpoints are written the way FSDP2Strategy
# does: the distributed checkpoint and meta.pt into NAME.tmp, then replace_atomically.
SAVER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    import torch.distributed.checkpoint as dcp
    import lit_llm.checkpoint.files as ck

    run_dir, kind, target, nth = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls, armed = 0, False  # counted only inside lit-llm's part of the save of step 20

    def inject(module, name):
        original = getattr(module, name)

        def killing(*args, **kwargs):
            global calls
            calls += armed
            if armed and calls == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(module, name, killing)

    def state(step):
        weights = {"model.wte.weight": torch.full((4, 4), float(step))}
        return weights, {"state": {0: {"exp_avg": torch.zeros(4, 4)}}}

    def save(step):
        global armed
        path = run_dir / "checkpoints" / "last.ckpt"
        weights, optimizer = state(step)
        meta = {"global_step": step, "lit_llm": {"model_config": {}}}
        if kind == "file":
            armed = step == 20
            ck.save_atomically({**meta, "state_dict": weights, "optimizer_states": [optimizer]}, path)
            return
        tmp = path.with_name(path.name + ".tmp")
        dcp.save({"state_dict": weights, "optimizer_0": optimizer}, checkpoint_id=str(tmp), no_dist=True)
        armed = step == 20
        ck.torch.save(meta, tmp / ck.SHARDED_METADATA)
        ck.replace_atomically(tmp, path)

    module, name = target.split(".")
    inject({"os": ck.os, "torch": ck.torch, "Path": ck.Path, "shutil": ck.shutil}[module], name)
    for step in (10, 20):
        save(step)
    """
)

# (kind, function to kill in, which call, step a resume must find)
KILL_POINTS = [
    ("file", "torch.save", 1, 10),  # while NAME.tmp is being written
    ("file", "os.replace", 1, 10),  # NAME.tmp complete, not yet renamed
    ("folder", "torch.save", 1, 10),  # distributed checkpoint written, meta.pt not
    ("folder", "Path.rename", 1, 10),  # NAME.tmp complete, NAME still the old one
    ("folder", "Path.rename", 2, 10),  # NAME moved to NAME.old, NAME.tmp not yet moved to NAME
    ("folder", "shutil.rmtree", 2, 20),  # swapped in, NAME.old not yet removed
]


@pytest.mark.parametrize("kind, function, nth, expected_step", KILL_POINTS)
def test_kill_inside_a_save_leaves_the_newest_complete_checkpoint(tmp_path, kind, function, nth, expected_step):
    result = subprocess.run(
        [sys.executable, "-c", SAVER, str(tmp_path), kind, function, str(nth)], capture_output=True, text=True
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    found = newest_checkpoint(tmp_path)
    assert found is not None and found[1] == expected_step, found
    state = read_checkpoint(found[0])["state_dict"]
    assert torch.equal(state["model.wte.weight"], torch.full((4, 4), float(expected_step)))
    if (tmp_path / "checkpoints" / "last.ckpt").exists():
        assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    else:  # killed between the two renames: a run folder still resolves, to the complete NAME.old
        assert resolve_checkpoint(tmp_path) == found[0] == tmp_path / "checkpoints" / "last.ckpt.old"


def write(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {}}, path)
    return path


def test_newest_checkpoint_whatever_its_kind(tmp_path):
    """last.ckpt, step-*.ckpt, Lightning's hpc_ckpt_N.ckpt and NAME.old compete by step; best.ckpt, NAME.tmp
    and truncated files never do."""
    folder = tmp_path / "checkpoints"
    write(folder / "last.ckpt", 30)
    write(folder / "step-000020.ckpt", 20)
    write(folder / "best.ckpt", 90)
    write(folder / "step-000040.ckpt.tmp", 40)
    truncated = write(folder / "step-000050.ckpt", 50)
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert checkpoint_step(truncated) is None
    assert newest_checkpoint(tmp_path) == (folder / "last.ckpt", 30)
    write(tmp_path / "hpc_ckpt_2.ckpt", 35)  # Lightning's SLURM save goes in the run folder itself
    assert newest_checkpoint(tmp_path) == (tmp_path / "hpc_ckpt_2.ckpt", 35)
    write(folder / "last.ckpt.old", 36)
    assert newest_checkpoint(tmp_path) == (folder / "last.ckpt.old", 36)
    write(folder / "step-000036.ckpt", 36)  # a tie: both hold the same state; the periodic one is preferred
    assert newest_checkpoint(tmp_path) == (folder / "step-000036.ckpt", 36)
    assert newest_checkpoint(tmp_path / "empty") is None


def test_sharded_checkpoint_is_read_without_optimizer_states(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    path = tmp_path / "last.ckpt"
    weights = {"model.wte.weight": torch.randn(8, 4)}
    optimizer = {"state": {"model.wte.weight": {"exp_avg": torch.randn(8, 4), "exp_avg_sq": torch.randn(8, 4)}}}
    dcp.save({"state_dict": weights, "optimizer_0": optimizer}, checkpoint_id=str(path), no_dist=True)
    torch.save({"global_step": 3}, path / "meta.pt")
    read_keys = []
    original = FileSystemReader.read_data

    def recording(self, plan, planner):
        read_keys.extend(item.storage_index.fqn for item in plan.items)
        return original(self, plan, planner)

    monkeypatch.setattr(FileSystemReader, "read_data", recording)
    checkpoint = read_checkpoint(path)
    assert torch.equal(checkpoint["state_dict"]["model.wte.weight"], weights["model.wte.weight"])
    assert read_keys and all(key.startswith("state_dict.") for key in read_keys), read_keys
