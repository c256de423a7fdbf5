"""WeightEMA under fsdp2 (2 processes, gloo on CPU): each rank averages its own shards, and the result equals
a single process's EMA of the same run; the EMA's shards survive an async save and a resume exactly; and
`lit-llm average --ema` reads them from the sharded checkpoint folder."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint.files import EMA_KEY, is_sharded_checkpoint, read_checkpoint
from lit_llm.checkpoint.load import load_weights
from tests.conftest import fit_args

# The global batch of 8 sequences is the same on 2 processes (4 each) and on 1 (2 micro-batches of 4), and
# data.elastic gives every step the same sequences however it is split: the runs differ by float rounding only.
SETTINGS = {
    "trainer.max_steps": 8, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 1000,
    "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False, "checkpoint.every_n_train_steps": 4,
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "model.warmup_steps": 2, "data.batch_size": 4, "model.global_batch_size": 8, "data.num_workers": 1,
    "data.elastic": True,
}  # fmt: skip
EMA = ["--trainer.callbacks+=lit_llm.train.callbacks.WeightEMA", "--trainer.callbacks.decay=0.5"]
FSDP2, TWO = ["--trainer.strategy", "fsdp2"], ["--trainer.devices", "2"]
ASYNC_SAVE = ["--trainer.strategy", "lit_llm.train.strategy.FSDP2Strategy", "--trainer.strategy.async_save"]
# Activation checkpointing renames the parameters (checkpoint wrappers): the EMA must still be keyed as the weights.
CHECKPOINTING = ["--model.activation_checkpointing", "true"]
TOLERANCE = 1e-6  # one AdamW step moves a weight by ~the learning rate, 1e-3; the EMA half as much at decay 0.5


def lit_llm(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "lit_llm.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(small_dataset, tmp_path_factory) -> dict[str, Path]:
    """8 steps under fsdp2 with async saves; the same run resumed (synchronous saves) from its async step-4
    checkpoint; the same 8 steps in a single process. No common --model.init_from: on a CPU mesh FSDP2's shards
    start as the single process's whole weights, so the runs agree from step 0."""
    folder = tmp_path_factory.mktemp("ema-fsdp2")
    runs = {name: folder / name for name in ("fsdp2", "resumed", "single", "to-one")}
    fsdp2 = [*EMA, *TWO, *CHECKPOINTING, *ASYNC_SAVE]
    lit_llm(*fit_args(small_dataset, runs["fsdp2"], SETTINGS, *fsdp2, "true"))
    step_4 = runs["fsdp2"] / "checkpoints" / "step-000004.ckpt"
    lit_llm(*fit_args(small_dataset, runs["resumed"], SETTINGS, *fsdp2, "false", "--ckpt_path", str(step_4)))
    lit_llm(*fit_args(small_dataset, runs["single"], SETTINGS, *EMA))
    return runs


@pytest.fixture(scope="module")
def one_process(small_dataset, runs) -> Path:
    """The fsdp2 run resumed at step 4 on 1 process (data.elastic: the same sequences at every step)."""
    step_4 = runs["fsdp2"] / "checkpoints" / "step-000004.ckpt"
    fsdp2 = [*EMA, *FSDP2, *CHECKPOINTING, "--ckpt_path", str(step_4)]
    lit_llm(*fit_args(small_dataset, runs["to-one"], SETTINGS, *fsdp2))
    return runs["to-one"]


def ema(run: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoints" / name)[EMA_KEY]


@pytest.mark.slow
def test_sharded_ema_equals_the_single_process_ema(runs):
    for name in ("step-000004.ckpt", "last.ckpt"):
        assert is_sharded_checkpoint(runs["fsdp2"] / "checkpoints" / name)
        sharded, single = ema(runs["fsdp2"], name), ema(runs["single"], name)
        assert sharded.keys() == single.keys() and "model.wte.weight" in sharded
        for key, tensor in single.items():
            torch.testing.assert_close(sharded[key], tensor, rtol=0, atol=TOLERANCE, msg=f"{name}: {key}")
    weights = read_checkpoint(runs["fsdp2"] / "checkpoints" / "last.ckpt")["state_dict"]
    assert (sharded["model.wte.weight"] - weights["model.wte.weight"]).abs().max() > 100 * TOLERANCE  # not a copy


@pytest.mark.slow
def test_a_run_resumed_from_an_async_checkpoint_ends_with_the_same_ema(runs):
    expected, resumed = ema(runs["fsdp2"]), ema(runs["resumed"])
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[key], expected[key]) for key in expected)


@pytest.mark.slow
def test_a_run_resumed_on_one_process_continues_the_ema(runs, one_process):
    """The EMA's shards of 2 processes are resharded onto 1 (elastic resume)."""
    expected, got = ema(runs["single"]), ema(one_process)
    assert got.keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(got[key], tensor, rtol=0, atol=TOLERANCE, msg=key)


@pytest.mark.slow
def test_average_ema_reads_the_sharded_checkpoint(runs, tmp_path):
    output, folder = tmp_path / "ema.ckpt", runs["fsdp2"] / "checkpoints" / "last.ckpt"
    lit_llm("average", "--checkpoints", str(folder), "--ema", "--output", str(output))
    _, weights, _ = load_weights(output)
    expected = ema(runs["fsdp2"])  # read from the folder as training wrote it, by read_checkpoint
    assert {f"model.{key}" for key in weights} == expected.keys()
    assert all(torch.equal(weights[key], expected[f"model.{key}"]) for key in weights)
