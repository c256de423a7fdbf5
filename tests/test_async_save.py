"""Async checkpoints under FSDP2 (FSDP2Strategy(async_save=True)): every save lands whole under its name,
including the one in flight when fit ends, and a run resumed from one continues exactly."""

import subprocess
import sys

import pytest
import torch

from lit_llm.checkpoint.files import checkpoint_step
from lit_llm.checkpoint.load import load_weights
from tests.conftest import fit_args

SETTINGS = {
    "trainer.max_steps": 8, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 1000,
    "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False, "checkpoint.every_n_train_steps": 4,
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "model.warmup_steps": 2, "data.batch_size": 4, "trainer.devices": 2,
}  # fmt: skip
STRATEGY = ["--trainer.strategy", "lit_llm.train.strategy.FSDP2Strategy", "--trainer.strategy.async_save"]


def fit(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "lit_llm.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_async_saves_land_whole_and_resume_exactly(small_dataset, tmp_path):
    run, resumed = tmp_path / "async", tmp_path / "resumed"
    fit(*fit_args(small_dataset, run, SETTINGS, *STRATEGY, "true"))
    folder = run / "checkpoints"
    assert not list(folder.glob("*.tmp")) and not list(folder.glob("*.old"))  # the last save finished and moved
    steps = {path.name: checkpoint_step(path) for path in folder.iterdir()}
    assert steps == {"step-000004.ckpt": 4, "step-000008.ckpt": 8, "last.ckpt": 8, "best.ckpt": 8}
    # resumed (with synchronous saves) from the async checkpoint at step 4: the same weights at step 8,
    # bit for bit, so the async save held step 4's state, not a later one the training thread wrote meanwhile
    fit(
        *fit_args(small_dataset, resumed, SETTINGS, *STRATEGY, "false", "--ckpt_path", str(folder / "step-000004.ckpt"))
    )
    _, expected, _ = load_weights(folder / "last.ckpt")
    _, got, _ = load_weights(resumed / "checkpoints" / "last.ckpt")
    assert all(torch.equal(got[name], expected[name]) for name in expected)
