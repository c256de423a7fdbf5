"""Kill a run with SIGKILL after a checkpoint, resume it with --ckpt_path last, and compare step by step.

The helpers here (fit_command, reference_losses, losses_by_step) also serve tests/test_preemption.py."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from lit_llm.checkpoint.load import load_checkpoint
from tests.conftest import fit_args

MAX_STEPS = 40
KILL_AFTER = "step-000020.ckpt"


LAUNCH = {"single": [], "ddp": ["--trainer.strategy", "ddp", "--trainer.devices", "2"]}
LAUNCH["fsdp2"] = ["--trainer.strategy", "fsdp2", "--trainer.devices", "2"]
_REFERENCES: dict[str, dict[int, float]] = {}


def reference_losses(data_dir: Path, tmp_path_factory, launch: str) -> dict[int, float]:
    """train/loss per step of an uninterrupted run, trained once per launch for every test that needs it."""
    if launch not in _REFERENCES:
        run_dir = tmp_path_factory.mktemp(f"reference-{launch}")
        run(fit_command(data_dir, run_dir, *LAUNCH[launch]))
        _REFERENCES[launch] = losses_by_step(run_dir)
    return _REFERENCES[launch]


def assert_same_losses(expected: dict[int, float], got: dict[int, float], steps: range) -> float:
    """Every step of ``steps`` logged by both runs with the same loss; returns the largest difference."""
    assert set(steps) <= set(expected) and set(steps) <= set(got), (sorted(expected), sorted(got))
    largest = max(abs(expected[s] - got[s]) for s in steps)
    assert largest < 1e-5, f"max abs loss difference after resume: {largest}"
    return largest


def fit_command(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    settings = {
        "trainer.max_steps": MAX_STEPS, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 1000,
        "trainer.limit_val_batches": 2, "checkpoint.every_n_train_steps": 10, "model.architecture.n_layer": 2,
        "model.architecture.block_size": 32, "model.warmup_steps": 5, "data.batch_size": 4,
        "model.architecture.dropout": 0.1,  # per-step seeding makes dropout resume exactly (the restored RNG state)
        "data.num_workers": 1,  # the loader's state is a worker's
    }  # fmt: skip
    return [sys.executable, "-m", "lit_llm.cli", *fit_args(data_dir, run_dir, settings, *extra)]


def losses_by_step(run_dir: Path) -> dict[int, float]:
    """train/loss per step; a later event file (the resumed process) overrides an earlier one."""
    losses = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3])):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    losses[event.step] = value.tensor.float_val[0] if value.tensor.float_val else value.simple_value
    return losses


def kill_after_checkpoint(command: list[str], checkpoint: Path, timeout: float = 240) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["single", "ddp", "fsdp2"])
def test_killed_run_resumes_exactly(small_dataset, tmp_path_factory, tmp_path, launch):
    expected = reference_losses(small_dataset, tmp_path_factory, launch)
    resumed = tmp_path / "resumed"
    extra = LAUNCH[launch]
    kill_after_checkpoint(fit_command(small_dataset, resumed, *extra), resumed / "checkpoints" / KILL_AFTER)
    run(fit_command(small_dataset, resumed, *extra, "--ckpt_path", "last"))
    assert_same_losses(expected, losses_by_step(resumed), range(20, MAX_STEPS))
    if launch == "fsdp2":
        check_consolidated_checkpoint(resumed / "checkpoints" / "last.ckpt", tmp_path / "consolidated.ckpt")


def check_consolidated_checkpoint(sharded: Path, output: Path) -> None:
    """A sharded checkpoint merges into one file whose model gives the same logits."""
    run([sys.executable, "-m", "lit_llm.cli", "consolidate", "--checkpoint", str(sharded), "--output", str(output)])
    (model, _), (merged, _) = load_checkpoint(sharded), load_checkpoint(output)
    tokens = torch.randint(0, 257, (2, 32))
    assert torch.equal(model(tokens), merged(tokens))
    assert "optimizer_states" not in torch.load(output, weights_only=True)
