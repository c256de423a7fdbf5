"""`lit-llm fit` without traps: no optimizer options that would silently replace lit-llm's, a refused
gradient_clip_val, help text without reStructuredText markup, `--version`, and a throughput curve that
leaves out validation and checkpoint time. (The HPARAMS tab: tests/test_fit_artifacts.py.)"""

import shutil
import subprocess
from types import SimpleNamespace

import pytest
import torch

import lit_llm
from lit_llm.cli import main
from lit_llm.train import callbacks
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "shakespeare-char-cpu.yaml")


def test_fit_help_offers_no_optimizer_options_and_no_rst(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help", "full"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--model.grad_clip" in text and "--trainer.max_steps" in text
    assert "--optimizer" not in text and "--lr_scheduler" not in text
    assert "``" not in text


def test_gradient_clip_val_is_refused_naming_model_grad_clip(tmp_path):
    args = ["fit", "--config", CONFIG, "--trainer.default_root_dir", str(tmp_path), "--trainer.gradient_clip_val"]
    with pytest.raises(SystemExit, match=r"gradient_clip_val=0.5 is not used by lit-llm; set --model.grad_clip 0.5"):
        main([*args, "0.5"])


def test_version_from_the_console_script():
    script = shutil.which("lit-llm")
    assert script, "the lit-llm console script is not installed (pip install -e .)"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"lit-llm {lit_llm.__version__}"


def test_tokens_per_sec_leaves_out_validation_and_checkpoint_time(monkeypatch):
    """A fake clock: steps of 1 s each; a 10 s validation and a 5 s checkpoint save between steps 2 and 3
    must not lower step 3's rate."""
    now = [0.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: now[0])
    logged = {}
    log = lambda name, value, **_: logged.update({name: value})  # noqa: E731
    module = SimpleNamespace(device=torch.device("cpu"), logs_this_step=True, log=log)
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=1, world_size=1)
    throughput = callbacks.Throughput()
    throughput.on_train_start(trainer, module)
    batch = torch.zeros(2, 9)  # 2 sequences of 8 predicted tokens: 16 tokens a step

    def step():
        throughput.on_train_batch_start(trainer, module, batch, 0)
        now[0] += 1.0
        trainer.global_step += 1
        throughput.on_train_batch_end(trainer, module, None, batch, 0)

    step()
    step()
    assert logged["train/tokens_per_sec"] == pytest.approx(16.0)
    throughput.on_validation_start(trainer, module)
    now[0] += 10.0
    throughput.on_validation_end(trainer, module)
    throughput.on_save_checkpoint(trainer, module, {})
    now[0] += 5.0
    step()
    assert logged["train/tokens_per_sec"] == pytest.approx(16.0)
    assert throughput.run_tokens == 48  # the end-of-run cost line keeps the all-in wall clock (18 s)
