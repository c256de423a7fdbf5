"""What must hold under 2-process DDP and FSDP2 (gloo on CPU) as it does on one device: the non-finite guard
skips the same steps on every rank and its count survives a resume, validation gives the same loss for the
same weights, a SIGTERM saves a sharded checkpoint that the same command resumes exactly, and in-training
downstream evaluation gives the single-process figures."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_llm.checkpoint.files import checkpoint_step
from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.evaluation.code_completion import default_context, line_tasks, read_sources, score_lines
from lit_llm.evaluation.multiple_choice import read_questions, score_questions
from tests.conftest import REPO
from tests.test_preemption import EVERY, interrupt, resume_and_compare
from tests.test_resume import LAUNCH, MAX_STEPS, fit_command, kill_after_checkpoint, reference_losses, run


class PoisonLoss(L.Callback):
    """Makes ``rank``'s logits NaN at the optimizer steps ``steps`` (0-based, as ``trainer.global_step``
    counts before the step), so only that rank's loss and local gradients are non-finite, as a bad batch on
    one rank makes them. Appends a digest of this rank's parameters (its shard under FSDP2) at the start of
    every step to ``digests/rank-R.jsonl``."""

    def __init__(self, steps: list[int], rank: int, digests: str) -> None:
        self.steps, self.rank, self.digests = set(steps), rank, Path(digests)
        self.hook = None
        self.last_step = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step != self.last_step:  # the first micro-batch of an optimizer step
            self.last_step = step
            self.digests.mkdir(parents=True, exist_ok=True)
            with open(self.digests / f"rank-{trainer.global_rank}.jsonl", "a") as file:
                file.write(json.dumps({"step": step, "digest": parameter_digest(pl_module.model)}) + "\n")
        if step in self.steps and trainer.global_rank == self.rank and self.hook is None:
            self.hook = pl_module.model.register_forward_hook(lambda module, args, out: out * float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.hook is not None and trainer.global_step not in self.steps:  # the poisoned step is done
            self.hook.remove()
            self.hook = None


def parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for parameter in model.parameters():
        local = parameter.to_local() if hasattr(parameter, "to_local") else parameter
        # a copy: a NumPy view of FSDP2's shard pins its storage, which FSDP2 resizes when it reshards
        digest.update(local.detach().cpu().clone().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_digests(folder: Path, rank: int) -> dict[int, str]:
    """Step -> digest; a resumed process's lines (written later) override the killed one's."""
    lines = (folder / f"rank-{rank}.jsonl").read_text().splitlines()
    return {row["step"]: row["digest"] for row in map(json.loads, lines)}


def scalar_values(run_dir: Path, tag: str) -> dict[int, float]:
    """One tag by step, as TensorBoard shows it: a resumed run's events replace the killed run's later ones."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {event.step: event.value for event in events.Scalars(tag)}


CLOZE = REPO / "lit_llm" / "tasks" / "shakespeare_cloze.jsonl"
POISONED = (3, 14)  # one step before the step-10 checkpoint, one after it


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["ddp", "fsdp2"])
def test_nonfinite_steps_are_skipped_on_every_rank_and_counted_across_a_resume(
    small_dataset, tmp_path, monkeypatch, launch
):
    """Rank 1's loss is NaN at steps 3 and 14; the run is killed after step 10's checkpoint and resumed. Both
    ranks' weights stay unchanged over exactly those steps (DDP: identical on both ranks at every step), and
    train/skipped_steps, as TensorBoard reads the run, counts 1 then 2 across the resume."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))  # for PoisonLoss
    run_dir, digests = tmp_path / "run", tmp_path / "digests"
    poison = [
        "--trainer.callbacks+=tests.test_distributed_guards.PoisonLoss",
        f"--trainer.callbacks.steps={list(POISONED)}",
        "--trainer.callbacks.rank=1",
        f"--trainer.callbacks.digests={digests}",
    ]
    command = fit_command(small_dataset, run_dir, *LAUNCH[launch], "--trainer.max_steps", "20", *poison)
    kill_after_checkpoint(command, run_dir / "checkpoints" / "step-000010.ckpt")
    run(command)  # the same command resumes from step 10

    skipped = scalar_values(run_dir, "train/skipped_steps")
    assert skipped[2] == 0 and skipped[POISONED[0]] == 1 and skipped[13] == 1
    assert skipped[19] == 2  # the resumed run went on from the checkpoint's count
    for rank in (0, 1):
        by_step = read_digests(digests, rank)
        for step in range(19):
            unchanged = by_step[step + 1] == by_step[step]
            assert unchanged == (step in POISONED), (rank, step)
    if launch == "ddp":  # replicas: the same weights on both ranks at every step
        assert read_digests(digests, 0) == read_digests(digests, 1)


def validation_loss(data_dir: Path, checkpoint: Path, run_dir: Path, *launch: str) -> float:
    """`lit-llm validate` of ``checkpoint`` over the whole validation split, read from its TensorBoard events."""
    command = fit_command(data_dir, run_dir, *launch, "--ckpt_path", str(checkpoint), "--trainer.limit_val_batches=1.0")
    command[command.index("fit")] = "validate"
    run(command)
    (loss,) = scalar_values(run_dir, "val/loss").values()
    return loss


@pytest.mark.slow
def test_validation_loss_is_the_same_on_one_device_under_ddp_and_under_fsdp2(small_dataset, tmp_path):
    """The 9 validation sequences of 33 tokens fill two batches of 4 on one device and one on each of two
    ranks: the same 8 sequences each time (drop_last drops the ninth), so the mean loss must be the same."""
    trained = tmp_path / "trained"
    run(fit_command(small_dataset, trained, "--trainer.max_steps", "3"))
    checkpoint = trained / "checkpoints" / "last.ckpt"
    losses = {
        launch: validation_loss(small_dataset, checkpoint, tmp_path / launch, *LAUNCH[launch])
        for launch in ("single", "ddp", "fsdp2")
    }
    print(f"val/loss by launch: {losses}")  # shown with -s
    assert max(losses.values()) - min(losses.values()) < 1e-5, losses
    assert 4.0 < losses["single"] < 5.6  # a model 3 steps from ln(257) = 5.55, not a degenerate figure


@pytest.mark.slow
def test_sigterm_under_fsdp2_saves_every_rank_shard_and_the_same_command_resumes(
    small_dataset, tmp_path_factory, tmp_path
):
    expected = reference_losses(small_dataset, tmp_path_factory, "fsdp2")
    run_dir = tmp_path / "run"
    command = fit_command(small_dataset, run_dir, *LAUNCH["fsdp2"], *EVERY)
    returncode, output = interrupt(command, run_dir, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    stopped_at = checkpoint_step(last)
    assert 10 < stopped_at < MAX_STEPS  # the step the signal came in, not the last periodic one
    assert f"SIGTERM: saved {last} at step {stopped_at}" in output
    assert last.is_dir() and sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert resume_and_compare(command, run_dir, expected) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["ddp", "fsdp2"])
def test_downstream_eval_split_over_two_ranks_gives_the_single_process_figures(
    byte_dataset, shakespeare_slice, tmp_path, launch
):
    """Each rank scores every other question (and code line) and the counts are summed: the figures logged
    at the final validation are `lit-llm evaluate`'s, in one process, on the last checkpoint. Code
    completion runs under DDP only (fsdp2 refuses it: generation lengths differ by rank). The held-out
    lines are indented, which a 30-step model completes: the code figures are not 0 on both sides."""
    source = tmp_path / "held_out.txt"
    held_out = shakespeare_slice.read_text()[50_000:52_000].splitlines()
    source.write_text("".join(f"    {line}\n" for line in held_out))
    code = ["--trainer.callbacks.code_files", f"[{source}]", "--trainer.callbacks.code_lines", "20"]
    code = code if launch == "ddp" else []
    run_dir = tmp_path / "run"
    fit = [
        *fit_command(byte_dataset, run_dir, *LAUNCH[launch], "--trainer.max_steps", "30"),
        "--model.architecture.block_size=64",  # the longest cloze ending, 38 characters, fits with its space
        "--trainer.callbacks+=lit_llm.train.downstream.DownstreamEval",
        f"--trainer.callbacks.tasks=[{CLOZE}]",
        "--trainer.callbacks.limit=13",  # odd: the ranks score 7 and 6 questions
        *code,
    ]
    run(fit)
    logged = {tag: values[max(values)] for tag, values in eval_scalars(run_dir).items()}
    expected = single_process_figures(run_dir, 13, [str(source)] if code else [], 20)
    if code:
        assert expected["eval/code/accepted_chars"] > 0  # it gets the indentation right, not 0 on both sides
    print(f"{launch}: logged {logged}, offline {expected}")  # shown with -s
    assert set(logged) == set(expected) | {"eval/seconds"}
    for tag, value in expected.items():
        assert logged[tag] == pytest.approx(value, abs=1e-6), tag


def eval_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: scalar_values(run_dir, tag) for tag in events.Tags()["scalars"] if tag.startswith("eval/")}


def single_process_figures(run_dir: Path, limit: int, code_files: list[str], code_lines: int) -> dict[str, float]:
    """What DownstreamEval logs, computed in this one process on the run's last checkpoint."""
    model, tokenizer = load_checkpoint(run_dir)
    accuracies = score_questions(model, tokenizer, read_questions(CLOZE, limit)).accuracies()
    figures = {f"eval/shakespeare_cloze/{name}": value for name, value in accuracies.items()}
    if code_files:
        tasks = line_tasks(tokenizer, read_sources(code_files), default_context(model.config.block_size), code_lines)
        figures |= {
            f"eval/code/{name}": value for name, value in score_lines(model, tokenizer, tasks).metrics().items()
        }
    return figures
