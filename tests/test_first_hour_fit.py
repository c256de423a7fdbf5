"""What a new user sees of `lit-llm fit` in the first hour: one progress bar over the run's steps (not per
epoch) with tokens/s and the latest val loss, a model line with real FLOPs, an end summary naming the final
val loss and the best checkpoint, a rerun of a finished run that says so in one line, and a short --help."""

import contextlib
import io
import logging
import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.cli import main
from lit_llm.planning.estimate import human
from tests.conftest import fit_args

# An epoch of small_dataset is 20 steps at batch 4: 24 steps cross an epoch boundary.
TINY = {
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "data.batch_size": 4, "trainer.limit_val_batches": 1, "trainer.log_every_n_steps": 2,
    "model.warmup_steps": 0, "trainer.val_check_interval": 8, "trainer.max_steps": 24,
}  # fmt: skip
SHOWN = {"trainer.enable_progress_bar": True, "trainer.enable_model_summary": True}


def fit(*args: str) -> str:
    """`lit-llm fit` in this process: what it printed on stdout (the bar included) and logged (the summary)."""
    out, records = io.StringIO(), []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out):
            main(list(args))
    finally:
        lightning_log.removeHandler(handler)
    return out.getvalue().replace("\r", "\n") + "\n".join(records)


def val_losses(run_dir) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars("val/loss")]


@pytest.fixture(scope="module")
def finished(small_dataset, tmp_path_factory) -> dict:
    """A 24-step run with the bar and model line shown, then the same command again."""
    run_dir = tmp_path_factory.mktemp("first-hour") / "run"
    command = fit_args(small_dataset, run_dir, {**TINY, **SHOWN})
    first = fit(*command)
    rerun = fit(*command)
    return {"run_dir": run_dir, "first": first, "rerun": rerun, "data": small_dataset}


def test_one_bar_counts_steps_of_max_steps_across_epochs_with_tokens_per_sec_and_val_loss(finished):
    output = finished["first"]
    assert "step 24/24" in output and "step 21/24" in output  # past the epoch's end (20 steps), the same bar
    assert "Epoch" not in output
    final_val = val_losses(finished["run_dir"])[-1]
    last_bar = [line for line in output.splitlines() if line.startswith("step 24/24")][-1]
    assert f"val={final_val:.4f}" in last_bar and re.search(r"tok/s=[\d,]+", last_bar) and "loss=" in last_bar


def test_model_line_counts_flops_instead_of_lightnings_zero(finished):
    output = finished["first"]
    config = load_checkpoint(finished["run_dir"])[0].config
    tokens = 24 * 4 * 32  # steps × sequences × tokens
    line = next(line for line in output.splitlines() if line.startswith("model: "))
    assert line.startswith(f"model: {human(config.num_params())} parameters")
    assert f"training FLOPs {config.flops_per_token(32) * tokens:.3g} for {human(tokens)} tokens" in line
    assert "Total FLOPs" not in output and "FLOPs: 0" not in output


def test_end_summary_names_the_final_val_loss_and_the_best_checkpoint(finished):
    output, run_dir = finished["first"], finished["run_dir"]
    val = val_losses(run_dir)
    assert len(val) == 3  # steps 8, 16, 24
    assert f"  val loss        {val[-1]:.4f} at step 24" in output
    assert f"  best checkpoint {run_dir / 'checkpoints' / 'best.ckpt'} (val {min(val):.4f})" in output


def test_a_finished_run_run_again_says_so_in_one_line_and_trains_nothing(finished):
    run_dir = finished["run_dir"]
    assert finished["rerun"].strip() == f"run finished at step 24 (val {val_losses(run_dir)[-1]:.4f}); nothing to do"
    assert not (run_dir / "config-resume-1.yaml").exists()  # Lightning's fit never started


def test_a_raised_max_steps_is_not_finished_but_a_changed_setting(finished):
    longer = fit_args(finished["data"], finished["run_dir"], {**TINY, **SHOWN, "trainer.max_steps": 30})
    with pytest.raises(SystemExit, match="trainer.max_steps 24 in the checkpoint, 30 now"):
        main(longer)
    output = fit(*longer, "--resume_with_changes")
    assert "step 30/30" in output and "step 25/30" in output
    assert "step 1/30" not in output  # the bar counts on from the resumed step


def test_fit_help_leads_with_lit_llms_options_in_one_screen_and_full_stays_reachable(capsys):
    main(["fit", "--help"])
    short = capsys.readouterr().out
    lines = short.splitlines()
    assert len(lines) < 80
    head = "\n".join(lines[:12])
    assert all(option in head for option in ("--config", "--resume_with_changes", "--ckpt_path"))
    assert "lit-llm fit --help full" in short
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help", "full"])
    assert exit_info.value.code == 0
    full = capsys.readouterr().out
    assert len(full.splitlines()) > 300 and "--trainer.gradient_clip_algorithm" in full
    named = re.findall(r"^  (?:-c, )?(--[\w.]+)", short, flags=re.MULTILINE)
    assert len(named) > 20
    assert [option for option in named if option not in full] == []  # the short help names real options


def test_the_bar_reads_nothing_from_the_device_between_logging_steps(byte_dataset, tmp_path, monkeypatch):
    """The bar refreshes every step: it shows host numbers only (tests/test_module.py counts the reads)."""

    from lit_llm.train.console import StepProgressBar
    from lit_llm.train.datamodule import TokenDataModule
    from lit_llm.train.module import LitLLM
    from tests.test_module import SMALL, CountDeviceReads, logging_every_5_steps

    counter, bar = CountDeviceReads(monkeypatch), StepProgressBar()
    shown = []
    monkeypatch.setattr(bar, "get_metrics", lambda *args: shown.append(StepProgressBar.get_metrics(bar, *args)) or {})
    trainer = logging_every_5_steps(tmp_path, [counter, bar])
    trainer.fit(LitLLM(SMALL, sample_tokens=0), datamodule=TokenDataModule(str(byte_dataset), batch_size=4))
    assert counter.reads == []
    assert "tok/s" in shown[-1] and "loss" in shown[-1]


def test_a_users_own_progress_bar_or_summary_replaces_lit_llms_and_false_turns_them_off():
    from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar

    from lit_llm.train.console import ModelLine, RunLine, StepProgressBar, console_callbacks

    kinds = lambda callbacks: [type(c) for c in callbacks]  # noqa: E731
    assert kinds(console_callbacks([], None, None)) == [RunLine, ModelLine, StepProgressBar]
    assert kinds(console_callbacks([], False, False)) == [RunLine]  # the run line always: it refuses endless runs
    assert kinds(console_callbacks([TQDMProgressBar(), ModelSummary()], True, True)) == [RunLine]
