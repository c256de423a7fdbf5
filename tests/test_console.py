"""The installed `lit-llm` console script on the happy path, each command a subprocess typed as a user types
it in a project folder: prepare -> data info -> plan -> fit -> generate -> evaluate -> export, each exiting 0
with the output it promises. (The commands' options and results are tested in-process elsewhere; consolidate,
which needs an FSDP2 run, in tests/test_resume.py and tests/test_distributed_guards.py.)"""

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO, SHAKESPEARE

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
TIMINGS: dict[str, float] = {}


def lit_llm(*args: str, cwd: Path) -> str:
    """Run the console script, check its exit status, return its stdout."""
    script = shutil.which("lit-llm")
    assert script, "the lit-llm console script is not installed (pip install -e .)"
    start = time.perf_counter()
    result = subprocess.run([script, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    TIMINGS[args[0]] = time.perf_counter() - start
    assert result.returncode == 0, f"lit-llm {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


def test_console_script_from_prepare_to_export(tmp_path):
    text = SHAKESPEARE.read_text()
    (tmp_path / "corpus.txt").write_text(text[:20_000])
    (tmp_path / "held_out.txt").write_text(text[20_000:22_000])
    lit_llm("prepare", "--inputs", "corpus.txt", "--output_dir", "data", "--tokenizer", "byte", cwd=tmp_path)
    assert (tmp_path / "data" / "tokenizer.json").is_file()

    info = lit_llm("data", "info", "data", "--samples", "1", cwd=tmp_path)
    train_tokens = json.loads((tmp_path / "data" / "metadata.json").read_text())["splits"]["train"]["tokens"]
    assert f"{train_tokens:,}" in info

    plan = json.loads(lit_llm("plan", "--preset", "gpt2-124m", "--json", cwd=tmp_path))
    assert 120e6 < plan["params"] < 130e6 and plan["tokens"] == 20 * plan["params"]  # compute-optimal by default

    config = str(REPO / "experiments" / "shakespeare-char-cpu.yaml")
    tiny = ["--model.architecture.n_layer", "1", "--model.architecture.block_size", "32", "--model.warmup_steps", "1"]
    tiny += ["--model.sample_tokens", "0", "--data.num_workers", "0", "--data.batch_size", "4"]
    tiny += ["--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false"]
    fit = ["fit", "--config", config, "--data.data_dir", "data", "--trainer.default_root_dir", "run", *tiny]
    lit_llm(*fit, "--trainer.max_steps", "4", cwd=tmp_path)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()

    sample = lit_llm("generate", "--checkpoint", "run", "--prompt", "ROMEO:", "--max_new_tokens", "20", cwd=tmp_path)
    assert sample.startswith("ROMEO:") and len(sample) > len("ROMEO:")

    scores = lit_llm("evaluate", "--checkpoint", "run", "--inputs", "held_out.txt", "--json", cwd=tmp_path)
    (row,) = json.loads(scores)["inputs"]
    assert 0 < row["loss"] < math.log(320) + 0.5 and math.isfinite(row["bits_per_byte"])  # 4 steps from ln(320)

    lit_llm("export", "--checkpoint", "run", "--output_dir", "hf", cwd=tmp_path)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["n_layer"] == 1
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    print("seconds per command:", {name: round(seconds, 1) for name, seconds in TIMINGS.items()})  # with -s


def test_forked_commands_are_the_installed_script(tmp_path):
    """tests/forked_cli.py (which runs the bad-input table) gives what the console script gives: exit status,
    stdout and stderr, for errors before and inside LightningCLI and for a command that succeeds."""
    from tests.forked_cli import Command, run_commands

    commands = [["trian"], ["plan", "--preset", "gpt5"], ["--version"], ["fit", "--trainer.max_stepz", "3"]]
    forked = run_commands([Command(args, cwd=tmp_path) for args in commands])
    for args, ours in zip(commands, forked, strict=True):
        script = subprocess.run([shutil.which("lit-llm"), *args], cwd=tmp_path, env=ENV, capture_output=True, text=True)
        assert (ours.returncode, ours.stdout, ours.stderr) == (script.returncode, script.stdout, script.stderr), args
    assert [result.returncode for result in forked] == [2, 2, 0, 2]  # one-line errors exit 2
