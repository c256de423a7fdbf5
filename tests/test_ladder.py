"""`lit-llm ladder`: a micro ladder end to end through the real command (killed mid-run, then resumed),
the commands it hands to a scheduler, one-line errors for ladders that cannot run, and the report and
`plan --scaling_law` on a ladder's fit."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lit_llm.cli import main
from lit_llm.commands.ladder import data_facts, read_ladder
from lit_llm.commands.ladder_report import write_results
from lit_llm.commands.plan import plan
from lit_llm.planning.ladder import DataFacts, LadderSpec, fit_experiment, plan_runs, size_run
from lit_llm.planning.scaling import law_loss

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def micro_ladder(tmp_path: Path, data_dir: Path, **changes) -> Path:
    """Llama shapes of width 16 (18k parameters) and 32 (68k) on bytes, a few steps of 4 × 32 tokens each."""
    ladder = {
        "output_dir": str(tmp_path / "ladder"),
        "budgets": [1.5e8, 3.0e8],
        "sizes": [1.8e4, 6.8e4],
        "min_steps": 2,
        "family": {"name": "llama", "aspect_ratio": 16, "head_size": 16, "block_size": 32},
        "recipe": {"learning_rate": 3e-3, "warmup_fraction": 0.1},
        "data": {"data_dir": str(data_dir), "batch_size": 4, "num_workers": 0},
        "trainer": {"accelerator": "cpu", "limit_val_batches": 2, "num_sanity_val_steps": 0},
        "fit": {"bootstrap": 10},
    }
    for key, value in changes.items():
        ladder[key] = value
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(ladder))
    return path


def runs_of(spec: LadderSpec) -> list:
    """The ladder's runs, sized on its prepared data."""
    return plan_runs(spec, data_facts(spec))


def lit_llm(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["lit-llm", *args], capture_output=True, text=True, env=ENV, **kwargs)


def test_micro_ladder_trains_resumes_after_a_kill_and_writes_ladder_json(tmp_path, byte_dataset):
    config = micro_ladder(tmp_path, byte_dataset)
    runs = runs_of(read_ladder(str(config), {}))
    assert [(r.budget, r.config.n_embd) for r in runs] == [(1.5e8, 16), (1.5e8, 32), (3e8, 16), (3e8, 32)]
    out = tmp_path / "ladder"
    # Kill the ladder (and the fit it is running) once the third run has written a checkpoint.
    ladder = subprocess.Popen(
        ["lit-llm", "ladder", "--config", str(config)], env=ENV, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    third = runs[2].run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 900
    while not third.exists() and ladder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the run goes on past its first checkpoint: kill it before it ends
    os.killpg(ladder.pid, signal.SIGKILL)
    first_output = ladder.communicate()[0]
    assert third.exists(), first_output
    assert not (out / "ladder.json").exists()

    resumed = lit_llm("ladder", "--config", str(config), timeout=900)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{runs[0].name}: finished, skipped" in resumed.stdout
    assert f"{runs[1].name}: finished, skipped" in resumed.stdout
    assert f"{runs[2].name}: " in resumed.stdout and "(resuming from last.ckpt)" in resumed.stdout
    assert "Restored all states from the checkpoint" in (runs[2].run_dir / "fit.log").read_text()

    summary = json.loads((out / "ladder.json").read_text())
    assert [r["name"] for r in summary["runs"]] == [r.name for r in runs]
    for entry, run in zip(summary["runs"], runs):
        assert entry["steps"] == run.steps and entry["tokens"] == run.steps * 4 * 32
        assert entry["params"] == run.config.num_params() > entry["non_embedding_params"]
        assert 0 < entry["val_loss"] < math.log(320)  # better than uniform over the (padded) byte vocabulary
        assert entry["bits_per_byte"] == pytest.approx(entry["val_loss"] * summary["bits_per_byte_per_nat"])
        assert entry["flops"] == pytest.approx(run.config.flops_per_token(32) * entry["tokens"])
        assert entry["epochs"] == pytest.approx(entry["tokens"] / summary["train_tokens"])
    # four runs: too few to fit anything, and the ladder says so instead of failing
    assert summary["fit"]["parametric"] is None
    notes = " ".join(summary["fit"]["notes"])
    assert "parametric law not fitted" in notes and "a profile needs 3" in notes
    assert "parametric law not fitted" in resumed.stdout
    assert (out / "ladder.md").read_text().startswith("# Scaling ladder")


def test_print_commands_gives_one_fit_line_per_run(tmp_path, byte_dataset):
    config = micro_ladder(tmp_path, byte_dataset)
    result = lit_llm("ladder", "--config", str(config), "--print_commands", "--budgets", "3e8,6e8")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        command = line.split()
        assert command[:3] == ["lit-llm", "fit", "--config"] and command[-2:] == ["--ckpt_path", "last"]
        experiment = yaml.safe_load(Path(command[3]).read_text())
        assert experiment["trainer"]["max_steps"] >= 2
        assert experiment["trainer"]["default_root_dir"] == str(Path(command[3]).parent)
        assert experiment["model"]["warmup_steps"] == max(1, round(0.1 * experiment["trainer"]["max_steps"]))
    # the experiment is an ordinary `fit` YAML: fit accepts it as it is (checked without training)
    check = lit_llm("fit", "--config", lines[0].split()[3], "--print_config")
    assert check.returncode == 0, check.stderr
    bad = lit_llm("ladder", "--config", str(config), "--run_index", "7")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == (
        "lit-llm ladder: error: --run_index 7 is out of range: this ladder has runs 0 to 3"
    )


def test_shipped_ladder_reads_and_names_the_data_its_prepare_command_writes():
    for path in sorted((REPO / "experiments").glob("ladder-*.yaml")):
        spec = read_ladder(str(path), {})
        assert spec.budgets == sorted(spec.budgets) and spec.family.name in ("llama", "gpt2")
        prepared = re.search(r"lit-llm prepare .*--output_dir (\S+)", path.read_text()).group(1)
        assert spec.data["data_dir"] == prepared, path


def test_a_run_is_sized_from_its_budget_with_the_learning_rate_scaled_by_width():
    recipe = {"learning_rate": 1e-3, "lr_reference_width": 64, "warmup_fraction": 0.1}
    data = {"data_dir": "d", "batch_size": 4}
    raw = {"output_dir": "~/ladder", "budgets": "3e12,1e12", "recipe": recipe, "data": data}
    spec = LadderSpec.from_dict(raw, "L.yaml")
    assert spec.budgets == [1e12, 3e12] and spec.sizes is None and spec.output_dir == Path.home() / "ladder"
    config = spec.family.shape(128, vocab_size=320)
    run = size_run(spec, DataFacts(vocab_size=320, train_tokens=10**7), index=3, budget=1e12, config=config)
    assert spec.seq_len == 256  # no data.seq_len: the family's block_size, ModelConfig's default
    assert run.steps == round(1e12 / (config.flops_per_token(256) * 4 * 256)) and run.tokens == run.steps * 4 * 256
    assert run.learning_rate == pytest.approx(1e-3 * 64 / 128)  # Adam's LR ∝ 1/width from the reference width
    assert run.run_dir == spec.output_dir / "runs" / "C1e12-L4-d128"
    experiment = fit_experiment(spec, run)
    assert experiment["trainer"]["max_steps"] == run.steps and experiment["model"]["min_lr"] == run.learning_rate / 10
    assert experiment["model"]["warmup_steps"] == round(0.1 * run.steps)
    with pytest.raises(ValueError, match="^L.yaml: .* epochs of the data's 1.0k training tokens"):
        size_run(spec, DataFacts(vocab_size=320, train_tokens=1000), index=0, budget=1e12, config=config)


def ladder_error(capsys, config: Path, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["ladder", "--config", str(config), *args])
    message = str(exit_info.value)
    assert exit_info.value.code == 2 and "\n" not in message and message.startswith("lit-llm ladder: error: ")
    return message


def test_bad_ladders_give_one_line_errors(tmp_path, byte_dataset, capsys):
    config = micro_ladder(tmp_path, byte_dataset)
    message = ladder_error(capsys, config, "--budgets", "1e7")
    assert "budget 1e+07 FLOPs buys 1 steps of n_layer=1, n_embd=16" in message
    assert "raise the budget to at least" in message
    # the data is 54k training tokens: at 2 epochs or more, the sizes do not fit it
    message = ladder_error(capsys, config, "--budgets", "3e10", "--max_epochs", "2")
    assert "the sizes do not fit the data" in message and "max_epochs=2" in message
    message = ladder_error(capsys, config, "--sizes", "100")
    assert "size 100 does not fit the llama family" in message
    message = ladder_error(capsys, config, "--recipe_typo", "1")
    assert "unknown option --recipe_typo" in message
    message = ladder_error(capsys, config, "--budgets", "-1")
    assert "budgets must be positive numbers" in message
    message = ladder_error(capsys, config, "--recipe.lr_reference_width", "16", "--family.parametrization", "mup")
    assert "drop recipe.lr_reference_width" in message
    config.write_text(config.read_text() + "\nwarmup: 10\n")
    assert "unknown key(s) ['warmup']" in ladder_error(capsys, config)
    assert "not found" in ladder_error(capsys, tmp_path / "missing.yaml")


# ---------------------------------------------------------------- the report and plan, on a synthetic ladder

LAW = np.array([1.5, 80.0, 60.0, 0.4, 0.3])  # the "true" law the fake runs follow (losses of 3 to 6 nats)


def fake_results(spec: LadderSpec) -> list[dict]:
    """Ladder entries whose val losses follow LAW (with 0.2% noise), as if every run had finished."""
    rng = np.random.default_rng(0)
    results = []
    for run in runs_of(spec):
        entry = run.summary("total")
        entry["val_loss"] = float(law_loss(LAW, entry["law_params"], entry["tokens"])) * math.exp(rng.normal(0, 0.002))
        results.append(entry)
    return results


def test_report_and_plan_use_the_ladder_fit(tmp_path, byte_dataset, capsys):
    config = micro_ladder(tmp_path, byte_dataset, sizes="auto", sizes_per_budget=5, size_spread=30.0,
                          budgets=[3e9, 1e10, 3e10], max_epochs=100.0)  # fmt: skip
    spec = read_ladder(str(config), {})
    summary = write_results(spec, data_facts(spec), fake_results(spec), [])
    out = spec.output_dir
    saved = json.loads((out / "ladder.json").read_text())
    law = saved["fit"]["parametric"]
    assert law is not None and len(saved["fit"]["isoflop"]["profiles"]) == 3
    # 1.4 decades of sizes leave E and A/N^α hard to tell apart (test_scaling checks the exponents on wider
    # ladders); the fit must still reproduce every run, and its intervals must be there
    assert max(abs(r) for r in law["residuals"]) < 0.01
    assert set(law["intervals"]) == {"E", "A", "B", "alpha", "beta"}
    report = (out / "ladder.md").read_text()
    assert "## Parametric law" in report and "![isoflop.png](isoflop.png)" in report
    assert (out / "isoflop.png").stat().st_size > 0 and (out / "frontier.png").stat().st_size > 0
    assert summary["fit"] == saved["fit"]

    # plan a run of the family four times the largest budget: the prediction follows the law
    budget = 4 * 3e10
    result = plan(scaling_law=str(out / "ladder.json"), budget_flops=budget, gpu="h100-sxm", json=True)
    optimum = result["compute_optimal"]
    assert optimum["budget_flops"] == budget
    assert result["flops"] == pytest.approx(budget, rel=1e-6)  # the planned run is the optimum's
    assert result["params"] == optimum["params"] and result["tokens"] == pytest.approx(optimum["tokens"])
    truth = float(law_loss(LAW, optimum["params"], optimum["tokens"]))
    assert result["predicted_val_loss"] == pytest.approx(truth, rel=0.02)
    low, high = result["predicted_val_loss_interval"]
    assert low < result["predicted_val_loss"] < high
    assert result["predicted_bits_per_byte"] == pytest.approx(
        result["predicted_val_loss"] * saved["bits_per_byte_per_nat"]
    )
    capsys.readouterr()
    text = lit_llm("plan", "--scaling_law", str(out / "ladder.json"), "--budget_gpu_hours", "1e-9", "--mfu", "0.4")
    assert text.returncode == 0, text.stderr
    assert "compute-optimal for" in text.stdout and "final val loss" in text.stdout
    refused = lit_llm("plan", "--preset", "micro", "--budget_flops", "1e12")
    assert refused.stderr.strip().splitlines()[-1] == (
        "lit-llm plan: error: a --budget_* needs --scaling_law DIR/ladder.json (from `lit-llm ladder`) to size the run"
    )
    # an experiment YAML: its own size and tokens, predicted with an interval
    experiment = tmp_path / "big.yaml"
    architecture = runs_of(spec)[-1].config.to_dict()
    experiment.write_text(yaml.safe_dump({
        "trainer": {"max_steps": 1000},
        "model": {"architecture": architecture},
        "data": {"data_dir": str(byte_dataset), "batch_size": 4},
    }))  # fmt: skip
    planned = plan(config=str(experiment), scaling_law=str(out / "ladder.json"), json=True)
    assert planned["compute_optimal"] is None
    expected = float(law_loss(LAW, planned["params"], 1000 * 4 * 32))
    assert planned["predicted_val_loss"] == pytest.approx(expected, rel=0.02)


def test_ladder_help_and_the_fits_import_no_lightning():
    code = (
        "import lit_llm.planning.ladder, lit_llm.planning.scaling, lit_llm.commands.ladder_report\n"
        "from lit_llm.cli import main\ntry:\n    main(['ladder', '--help'])\nexcept SystemExit:\n    pass\n"
        "import sys; print(' '.join(sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert "--print_commands" in result.stdout and "--fit_only" in result.stdout
    assert "lightning" not in result.stdout.split()
