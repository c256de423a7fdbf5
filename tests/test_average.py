"""`lit-llm average` and the WeightEMA callback, on real runs: the average is the mean of the checkpoints'
weights and loads in generate; the EMA follows its recurrence step by step, survives a resume, and comes out
through `average --ema`; checkpoints of different models are refused in one line."""

from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint.files import CHECKPOINT_KEY, EMA_KEY
from lit_llm.checkpoint.load import load_weights
from tests.conftest import fit_args
from tests.forked_cli import Command, run_commands

DECAY = 0.5  # large steps of the average: a reset or a skipped update changes every weight visibly
SETTINGS = {
    "trainer.max_steps": 4, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 100,
    "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False, "checkpoint.every_n_train_steps": 1,
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "model.warmup_steps": 1, "data.batch_size": 4,
}  # fmt: skip
EMA = ["--trainer.callbacks+=lit_llm.train.callbacks.WeightEMA", f"--trainer.callbacks.decay={DECAY}"]


def lit_llm(*commands: list[str], cwd: Path) -> None:
    for result in run_commands([Command(args, cwd=cwd) for args in commands], parallel=1):
        assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, byte_dataset) -> Path:
    """4 steps with EMA, then resumed to step 6 (a raised max_steps): a checkpoint at every step."""
    run = tmp_path_factory.mktemp("ema") / "run"
    first = fit_args(byte_dataset, run, SETTINGS, *EMA)
    resumed = fit_args(byte_dataset, run, {**SETTINGS, "trainer.max_steps": 6}, *EMA, "--resume_with_changes")
    lit_llm(first, resumed, cwd=run.parent)
    return run


def checkpoint(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step-{step:06d}.ckpt", weights_only=True)


def test_ema_follows_its_recurrence_across_a_resume(ema_run):
    for step in range(2, 7):  # step 5 is the resumed process's first: its EMA continues step 4's
        previous, current = checkpoint(ema_run, step - 1), checkpoint(ema_run, step)
        for name, ema in current[EMA_KEY].items():
            expected = DECAY * previous[EMA_KEY][name] + (1 - DECAY) * current["state_dict"][name]
            torch.testing.assert_close(ema, expected, rtol=0, atol=1e-6, msg=f"step {step}: {name}")
        weight = current["state_dict"]["model.wte.weight"]
        assert not torch.allclose(current[EMA_KEY]["model.wte.weight"], weight)  # an average, not a copy


def test_average_is_the_mean_and_loads_everywhere(ema_run, tmp_path):
    paths = [ema_run / "checkpoints" / f"step-{step:06d}.ckpt" for step in (4, 5, 6)]
    lit_llm(
        ["average", "--checkpoints", *map(str, paths), "--output", str(tmp_path / "avg.ckpt")],
        ["average", "--checkpoints", str(paths[-1]), "--ema", "--output", str(tmp_path / "ema.ckpt")],
        ["generate", "--checkpoint", str(tmp_path / "avg.ckpt"), "--max_new_tokens", "8", "--seed", "1"],
        cwd=tmp_path,
    )
    states = [torch.load(p, weights_only=True)["state_dict"] for p in paths]
    _, averaged, _ = load_weights(tmp_path / "avg.ckpt")
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, sum(s[f"model.{name}"] for s in states) / 3)
    _, ema, _ = load_weights(tmp_path / "ema.ckpt")
    assert all(torch.equal(ema[name], checkpoint(ema_run, 6)[EMA_KEY][f"model.{name}"]) for name in ema)
    assert "optimizer_states" not in torch.load(tmp_path / "avg.ckpt", weights_only=True)


def test_average_refuses_another_model_in_one_line(ema_run, tmp_path):
    other = checkpoint(ema_run, 6)
    other[CHECKPOINT_KEY]["model_config"]["n_embd"] = 64
    torch.save(other, tmp_path / "other.ckpt")
    (result,) = run_commands([Command(
        ["average", "--checkpoints", str(ema_run / "checkpoints" / "last.ckpt"), str(tmp_path / "other.ckpt"),
         "--output", str(tmp_path / "avg.ckpt")], cwd=tmp_path)])  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "other.ckpt is another model" in result.stderr
    assert "n_embd 64 vs 32" in result.stderr and not (tmp_path / "avg.ckpt").exists()
