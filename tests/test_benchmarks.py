"""The benchmark scripts run end to end at toy sizes and report every variant (speed itself is not tested)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOY = [
    "--preset",
    "micro",
    "--arch",
    "n_layer=1",
    "n_embd=32",
    "n_head=2",
    "block_size=32",
    "--batch-size",
    "2",
    "--rounds",
    "1",
    "--warmup",
    "1",
    "--steps",
    "2",
    "--threads",
    "1",
]


def run_benchmark(module: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{module}.json"
    cmd = [
        sys.executable,
        "-m",
        module,
        *TOY,
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(out),
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def assert_measured(summary: dict, names: list[str]) -> None:
    rows = {r["name"]: r for r in summary["variants"]}
    assert list(rows) == names
    for name, r in rows.items():
        assert r["error"] is None, (name, r["error"])
        assert r["tokens_per_sec"] > 0 and r["step_ms"] > 0, name


def test_throughput_measures_lightning_bare_and_reference_with_memory_and_loader(tmp_path):
    summary = run_benchmark("benchmarks.throughput", "--loader-batches", "5", tmp_path=tmp_path)
    assert_measured(summary, ["lightning", "bare", "reference"])
    assert all(r["peak_memory_bytes"] > 0 for r in summary["variants"])
    assert set(summary["ratios"]) >= {"lightning_overhead", "lit_model_vs_reference", "loader_vs_training"}
    assert summary["shape"]["model"]["gelu"] == "exact"


def test_features_compares_each_feature_with_the_baseline(tmp_path):
    summary = run_benchmark(
        "benchmarks.features", "--features", "gelu,optimizer,checkpointing", "--no-memory", tmp_path=tmp_path
    )
    assert_measured(summary, ["baseline", "tanh-gelu", "foreach-adamw", "for-loop-adamw", "activation-checkpointing"])
    assert summary["variants"][1]["settings"]["gelu"] == "tanh"


def test_whole_process_times_lit_llm_and_nanogpts_own_train_py_end_to_end(tmp_path):
    out, work = tmp_path / "whole.json", tmp_path / "work"
    cmd = [sys.executable, "-m", "benchmarks.whole_process", "--runs", "4:2", "--pairs", "2"]
    cmd += ["--workdir", str(work), "--json", str(out), "--lit-llm-args", "--model.sample_tokens=5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["steps"] == 4 and run["interval"] == 2
    assert all(len(t) == 2 and min(t) > 0 for t in run["seconds"].values()) and run["speed_vs_nanogpt"] > 0
    for pair in (0, 1):
        run_dir = work / f"runs-4-2-{pair}"
        assert (run_dir / "lit-llm" / "checkpoints" / "last.ckpt").is_file()
        log = (run_dir / "nanoGPT.log").read_text()
        # nanoGPT's own train.py: evaluations at 0, 2, 4, iterations 0..4, its 65-character vocabulary
        assert "found vocab_size = 65" in log and "step 0:" in log and "step 4:" in log and "iter 4:" in log
        assert (run_dir / "nanogpt" / "ckpt.pt").is_file()
    # the pairs alternate which process goes first: lit-llm in the first, nanoGPT in the second
    order = [line.split(": ")[1].split()[0] for line in done.stdout.splitlines() if ", pair " in line]
    assert order == ["lit-llm", "nanoGPT", "nanoGPT", "lit-llm"], done.stdout
    assert "| 4 / 2 | " in done.stdout  # the table, with every pair's times
    # the benchmark ran a copy of nanoGPT in its scratch folder; the project holds none
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert (work / "nanoGPT" / "train.py").is_file() and "configurator.py" not in tracked
