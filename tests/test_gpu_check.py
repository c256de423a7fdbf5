"""benchmarks/gpu_check.sh keeps working: its smoke mode (GPU_CHECK_SMOKE=1) runs every stage at toy sizes on
the CPU and writes what a GPU run writes: one JSON per stage, the log and the summary table."""

import json
import os
import subprocess

import pytest

from tests.conftest import REPO

STAGES = {  # stage -> the variants its JSON must hold, each measured
    "gpt2-124m": {"lightning", "bare", "reference"},
    "gpt2-124m-loss": {"baseline", "compiled-loss", "chunked-loss"},
    "llama-1b-fsdp2": {"lightning"},
    "gpt2-124m-eager-features": {"baseline", "foreach-adamw", "sdpa-math", "bf16-mixed", "activation-checkpointing"},
}


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_every_stage(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exited with" not in result.stdout and "skipped" not in result.stdout, result.stdout[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{stage}.json" for stage in STAGES] + ["gpu_check.log", "gpu_check.md"]
    )
    table = (tmp_path / "gpu_check.md").read_text()
    for stage, variants in STAGES.items():
        measured = {v["name"]: v for v in json.loads((tmp_path / f"{stage}.json").read_text())["variants"]}
        assert variants <= set(measured), (stage, sorted(measured))
        for name in variants:
            assert measured[name]["error"] is None and measured[name]["step_ms"] > 0, (stage, measured[name])
            assert f"| {stage} |" in table and f"| {name} |" in table
