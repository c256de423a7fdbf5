"""`lit-llm plan`: compute checked against published pre-training runs, memory against what training really
keeps (autograd's saved tensors, and peak RSS of real training steps on CPU), plus inputs and errors."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser

import lit_llm.planning.estimate as estimate_module
from lit_llm.commands.plan import plan
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.planning.estimate import PRECISIONS, compute_estimate, measure_mfu, run_cost_summary
from lit_llm.planning.hardware import Accelerator, get_accelerator
from lit_llm.planning.memory import (
    block_activation_bytes_per_token,
    max_micro_batch_size,
    memory_budget,
    memory_estimate,
)

REPO = Path(__file__).resolve().parents[1]
A100_PEAK = 312e12  # dense bf16, NVIDIA A100 datasheet

# ---------------------------------------------------------------- published runs

# Llama 2 (Touvron et al. 2023, arXiv:2307.09288): Table 2 lists pre-training time in A100-80GB GPU-hours;
# Table 1: every size trained on 2.0T tokens with a 4k context.
LLAMA2_GPU_HOURS = {"llama2-7b": 184_320, "llama2-70b": 1_720_320}
LLAMA2_TOKENS = 2e12
# The MFU those hours imply with our FLOPs (6·N·D + attention) is 44.5% (7B) and 46.0% (70B); we plan both at 45%.
LLAMA2_MFU = 0.45

# TinyLlama (github.com/jzhang38/TinyLlama README; Zhang et al. 2024, arXiv:2401.02385): 1.1B parameters, 3T tokens,
# "24k tokens per second per A100-40G GPU, which translates to 56% model flops utilization", 16 GPUs, ~90 days.
TINYLLAMA_TOKENS_PER_SECOND = 24_000
TINYLLAMA_DAYS = 90

# GPT-2 124M (nanoGPT, llm.c discussion #481 "Reproducing GPT-2 (124M) in llm.c in 90 minutes for $20"): 12 layers,
# 768 wide, 1024 context, 10B FineWeb tokens, ~90 minutes on one 8×A100-80GB node at "up to ~60%" MFU.
GPT2_PARAMS, GPT2_TOKENS, GPT2_MINUTES, GPT2_MFU = 124e6, 10e9, 90, 0.6


def within(value: float, reference: float, tolerance: float) -> bool:
    return abs(value - reference) <= tolerance * reference


@pytest.mark.parametrize("preset", LLAMA2_GPU_HOURS)
def test_llama2_gpu_hours_match_the_paper(preset):
    result = plan(preset=preset, tokens=LLAMA2_TOKENS, gpu="a100-80gb", num_gpus=2048, mfu=str(LLAMA2_MFU))
    assert within(result["gpu_hours"], LLAMA2_GPU_HOURS[preset], 0.15), result["gpu_hours"]


def test_llama2_7b_and_70b_imply_the_same_mfu():
    """One MFU explains both runs, so the FLOPs formula scales correctly from 7B to 70B (GQA, 80 layers)."""
    implied = {
        preset: ModelConfig.from_preset(preset).flops_per_token(4096) * LLAMA2_TOKENS / (hours * 3600 * A100_PEAK)
        for preset, hours in LLAMA2_GPU_HOURS.items()
    }
    assert all(0.40 < mfu < 0.50 for mfu in implied.values()), implied
    assert abs(implied["llama2-7b"] - implied["llama2-70b"]) < 0.03, implied


def test_tinyllama_throughput_and_duration_match_the_readme():
    result = plan(preset="tinyllama-1.1b", tokens=3e12, gpu="a100-40gb", num_gpus=16, mfu="0.56")
    assert within(result["tokens_per_second_per_gpu"], TINYLLAMA_TOKENS_PER_SECOND, 0.15)
    assert within(result["days"], TINYLLAMA_DAYS, 0.15)


def test_gpt2_124m_flops_and_time_match_nanogpt_and_llmc():
    config = ModelConfig.from_preset("gpt2-124m")
    estimate = compute_estimate(config, GPT2_TOKENS, 1024)
    assert within(estimate["flops_6nd"], 6 * GPT2_PARAMS * GPT2_TOKENS, 0.01)
    assert estimate["flops_attention"] == pytest.approx(12 * 12 * 768 * 1024 * GPT2_TOKENS)
    assert within(estimate["flops"], 6 * GPT2_PARAMS * GPT2_TOKENS + 12 * 12 * 768 * 1024 * GPT2_TOKENS, 0.15)
    result = plan(preset="gpt2-124m", tokens=GPT2_TOKENS, gpu="a100-80gb", num_gpus=8, mfu=str(GPT2_MFU))
    assert within(result["seconds"] / 60, GPT2_MINUTES, 0.15)


def test_report_shows_compute_optimal_tokens_next_to_planned(capsys):
    result = plan(preset="gpt2-124m", tokens=10e9, num_gpus=8)
    out = capsys.readouterr().out
    assert result["compute_optimal_tokens"] == 20 * result["params"]
    assert "10.0B planned vs 2.5B compute-optimal" in out
    assert "6·N·D" in out and "attention" in out


def test_tokens_default_to_compute_optimal(capsys):
    result = plan(preset="gpt2-124m")
    assert result["tokens"] == result["compute_optimal_tokens"]
    assert "(default: compute-optimal)" in capsys.readouterr().out


# ---------------------------------------------------------------- memory: what autograd saves

ARCHITECTURES = {
    "gpt2-style": dict(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=128),
    "llama-style": dict(
        n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=128, positions="rope", norm="rmsnorm", mlp="swiglu"
    ),
}
# Grouped-query attention is checked in bf16 only: in fp32 CUDA falls back to SDPA's math kernel (the plan counts its
# T×T probabilities), while the CPU kernel that runs these tests does not.
GQA = {**ARCHITECTURES["llama-style"], "n_kv_head": 2}


def saved_bytes(config: ModelConfig, batch_size: int, precision: str) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward (parameters excluded)."""
    torch.manual_seed(0)
    model = GPT(config)
    idx = torch.randint(0, config.vocab_size, (batch_size, config.block_size))
    owned = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
    saved = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            model(idx)
    return sum(saved.values())


@pytest.mark.parametrize(
    "architecture, precision",
    [(name, precision) for name in ARCHITECTURES for precision in ("32-true", "bf16-mixed")] + [("gqa", "bf16-mixed")],
)
def test_block_activation_formula_matches_what_autograd_saves(architecture, precision):
    """One more block adds exactly what the per-block formula says (plus autocast's bf16 copy of its weights)."""
    config = ModelConfig(**(GQA if architecture == "gqa" else ARCHITECTURES[architecture]))
    batch_size = 2
    measured = saved_bytes(replace(config, n_layer=3), batch_size, precision) - saved_bytes(
        config, batch_size, precision
    )
    block_params = config.num_params(include_embeddings=False) // config.n_layer
    weight_copies = block_params * 2 if precision == "bf16-mixed" else 0
    tokens = batch_size * config.block_size
    expected = tokens * block_activation_bytes_per_token(config, precision, config.block_size) + weight_copies
    assert within(measured, expected, 0.02), (measured, expected)


def test_only_fp32_grouped_query_attention_stores_the_attention_matrix():
    """CUDA has no fused fp32 GQA kernel: SDPA's math fallback keeps n_head × T probabilities per token."""
    mha, gqa = ModelConfig(**ARCHITECTURES["llama-style"]), ModelConfig(**GQA)

    def growth(config: ModelConfig, precision: str) -> int:  # bytes per token added by doubling the context
        short, long = (block_activation_bytes_per_token(config, precision, seq_len) for seq_len in (32, 64))
        return long - short

    assert growth(mha, "32-true") == growth(gqa, "bf16-mixed") == 0
    assert growth(gqa, "32-true") == gqa.n_head * 32 * 4


# ---------------------------------------------------------------- memory: measured peak of real training steps

PEAK_SCRIPT = """
import gc, json, os, sys
import torch, torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def high_water_mark():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

def peak_above_now(config, batch_size, seq_len, checkpointing):
    gc.collect()
    # Reset the peak to now: ru_maxrss would carry over the parent's peak across fork and exec (a big
    # pytest process would then hide every measurement here).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = rss()
    model = GPT(config)
    if checkpointing:  # what distributed.parallelize's checkpoint_wrapper does: recompute each block in backward
        for block in model.blocks:
            block.forward = lambda *args, forward=block.forward: checkpoint(forward, *args, use_reentrant=False)
    optimizer = torch.optim.AdamW(model.parameters())
    batch = torch.randint(0, config.vocab_size, (batch_size, seq_len + 1))
    for _ in range(2):  # the second step runs with AdamW's states
        F.cross_entropy(model(batch[:, :-1]).flatten(0, 1).float(), batch[:, 1:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()
    return high_water_mark() - baseline

args = json.loads(sys.argv[1])
torch.set_num_threads(1)
peak_above_now(ModelConfig(**{**args["runs"][0][0], "n_layer": 1}), 1, 8, True)  # load kernels, autograd, AdamW
peaks = [peak_above_now(ModelConfig(**config), args["batch_size"], 128, ckpt) for config, ckpt in args["runs"]]
print(json.dumps(peaks))
"""
PEAK_SHAPE = dict(n_layer=4, n_embd=128, block_size=128, vocab_size=320)
PEAK_CONFIGS = {
    **{name: {**config, **PEAK_SHAPE} for name, config in ARCHITECTURES.items()},
    # Real vocabularies dwarf the block activations of small models: this one is mostly logits and their gradients.
    "big-vocab": {**ARCHITECTURES["gpt2-style"], "n_layer": 1, "block_size": 128, "vocab_size": 4096},
}
# (model, checkpointing) runs, one process per line (each run resets the process's peak before it starts).
PEAK_PROCESSES = [
    [("gpt2-style", True), ("gpt2-style", False), ("big-vocab", False)],
    [("llama-style", True), ("llama-style", False)],
]
PEAK_BATCH_SIZE = 16


@pytest.fixture(scope="module")
def measured_peaks() -> dict:
    """Peak RSS of two training steps above a warmed-up baseline, in fresh processes.

    glibc would keep freed tensors in its heap (and grow its mmap threshold), so RSS would show its caching rather
    than what training needs; a fixed low mmap threshold hands every tensor over 128 KiB back to the OS on free.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONPATH": str(REPO)}
    processes = []
    for runs in PEAK_PROCESSES:
        args = {"runs": [(PEAK_CONFIGS[name], ckpt) for name, ckpt in runs], "batch_size": PEAK_BATCH_SIZE}
        command = [sys.executable, "-c", PEAK_SCRIPT, json.dumps(args)]
        processes.append(
            (runs, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True))
        )
    peaks = {}
    for runs, process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        measured = json.loads(out)
        peaks.update(zip(runs, measured, strict=True))
    return peaks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc settings")
@pytest.mark.parametrize("name, checkpointing", [run for runs in PEAK_PROCESSES for run in runs])
def test_memory_estimate_within_20_percent_of_measured_peak(measured_peaks, name, checkpointing):
    config = ModelConfig(**PEAK_CONFIGS[name])
    estimate = memory_estimate(config, "single", 1, PEAK_BATCH_SIZE, 128, "32-true", checkpointing).total
    measured = measured_peaks[name, checkpointing]
    assert measured > 30e6  # large enough that interpreter noise cannot decide the comparison
    assert within(estimate, measured, 0.20), (estimate, measured)


# ---------------------------------------------------------------- memory: precisions and strategies


@pytest.mark.parametrize("precision, bytes_per_param", [("32-true", 16), ("bf16-mixed", 16), ("bf16-true", 8)])
def test_training_state_bytes_per_param(precision, bytes_per_param):
    config = ModelConfig.from_preset("llama-1b")
    states = memory_estimate(config, "single", 1, 0, 2048, precision, False)
    weight_copies = 2 * config.matmul_params() if precision == "bf16-mixed" else 0  # autocast's bf16 copies
    assert states.activations == 0
    assert states.total == bytes_per_param * config.num_params() + weight_copies


def test_ddp_buckets_double_gradients_and_fsdp_shards_states():
    config = ModelConfig.from_preset("llama2-7b")
    single, ddp, fsdp = (
        memory_estimate(config, s, 64, 1, 4096, "bf16-mixed", False) for s in ("single", "ddp", "fsdp")
    )
    assert ddp.grads == 2 * single.grads
    assert fsdp.optimizer == pytest.approx(single.optimizer / 64)
    assert fsdp.activations == single.activations
    assert fsdp.total < single.total / 2
    more_gpus = memory_estimate(config, "fsdp", 128, 1, 4096, "bf16-mixed", False)
    assert more_gpus.total < fsdp.total


def test_checkpointing_keeps_only_block_inputs():
    config = ModelConfig.from_preset("llama2-7b")
    full, ckpt = (memory_estimate(config, "fsdp", 64, 1, 4096, "bf16-mixed", c).activations for c in (False, True))
    assert ckpt < full / 5
    assert ckpt >= config.n_layer * 4096 * config.n_embd * PRECISIONS["bf16-mixed"].residual


def test_max_micro_batch_size_is_the_largest_that_fits():
    config = ModelConfig.from_preset("gpt2-124m")
    budget = memory_budget(get_accelerator("a100-40gb"))
    largest = max_micro_batch_size(config, "single", 1, 1024, "bf16-mixed", False, budget)
    assert largest >= 1
    assert memory_estimate(config, "single", 1, largest, 1024, "bf16-mixed", False).total <= budget
    assert memory_estimate(config, "single", 1, largest + 1, 1024, "bf16-mixed", False).total > budget


def test_small_model_recommends_plain_training_at_the_planned_micro_batch(capsys):
    result = plan(preset="gpt2-124m", tokens=10e9, gpu="h100-sxm", num_gpus=1, micro_batch_size=8)
    assert result["memory"]["recommendation"] == {
        "strategy": "single",
        "activation_checkpointing": False,
        "micro_batch_size": 8,
        "accumulate_grad_batches": 1,
    }
    assert result["memory"]["strategies"]["single"]["fits"]
    assert "Recommendation: single, micro-batch 8." in capsys.readouterr().out


def test_7b_needs_fsdp_on_a100s():
    result = plan(preset="llama2-7b", tokens=2e12, gpu="a100-80gb", num_gpus=64, micro_batch_size=1)
    strategies = result["memory"]["strategies"]
    assert not strategies["ddp"]["fits"] and not strategies["ddp+ckpt"]["fits"]
    assert result["memory"]["recommendation"]["strategy"] == "fsdp"


@pytest.mark.parametrize("planned", [64, 48])
def test_oversized_micro_batch_is_split_with_gradient_accumulation(planned):
    result = plan(preset="tinyllama-1.1b", tokens=3e12, gpu="a100-40gb", num_gpus=16, micro_batch_size=planned)
    rec = result["memory"]["recommendation"]
    assert rec["micro_batch_size"] < planned
    assert rec["micro_batch_size"] * rec["accumulate_grad_batches"] == planned  # same global batch
    name = f"{rec['strategy']}+ckpt" if rec["activation_checkpointing"] else rec["strategy"]
    assert result["memory"]["strategies"][name]["max_micro_batch_size"] >= rec["micro_batch_size"]


def test_model_too_big_for_the_gpus_says_so(capsys):
    result = plan(preset="llama2-70b", tokens=2e12, gpu="l4", num_gpus=2, micro_batch_size=1)
    assert result["memory"]["recommendation"] is None
    assert "does not fit on 2 × l4" in capsys.readouterr().out


# ---------------------------------------------------------------- experiment YAMLs


def write_experiment(tmp_path: Path, trainer: dict, model: dict, data: dict) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"trainer": trainer, "model": model, "data": data}))  # JSON is YAML
    return str(path)


def prepared_data(tmp_path: Path, vocab_size: int) -> str:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"vocab_size": vocab_size}))
    return str(folder)


TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64}


def test_yaml_tokens_follow_steps_batches_devices_and_accumulation(tmp_path):
    trainer = {"max_steps": 100, "devices": 2, "num_nodes": 2, "accumulate_grad_batches": 4, "precision": "bf16-true"}
    data = {"data_dir": prepared_data(tmp_path, 1000), "batch_size": 3, "seq_len": 32}
    result = plan(config=write_experiment(tmp_path, trainer, {"architecture": TINY}, data))
    assert result["tokens"] == 100 * 3 * 2 * 2 * 4 * 32
    assert (result["num_gpus"], result["precision"], result["seq_len"]) == (4, "bf16-true", 32)
    assert result["params"] == replace(ModelConfig(**TINY), vocab_size=1024).num_params()  # 1000 padded to 64s
    assert result["memory"]["micro_batch_size"] == 3


def test_yaml_global_batch_is_fixed_while_per_gpu_batches_scale_with_num_gpus(tmp_path):
    data = {"data_dir": prepared_data(tmp_path, 300), "batch_size": 4}
    per_gpu = write_experiment(tmp_path, {"max_steps": 10, "devices": 1}, {"architecture": TINY}, data)
    assert plan(config=per_gpu, num_gpus=8)["tokens"] == 10 * 4 * 8 * 64
    fixed = write_experiment(
        tmp_path, {"max_steps": 10, "devices": 1}, {"architecture": TINY, "global_batch_size": 48}, data
    )
    assert plan(config=fixed, num_gpus=8)["tokens"] == 10 * 48 * 64
    assert plan(config=fixed, tokens=1e6)["tokens"] == 1e6


def test_yaml_without_prepared_data_assumes_a_byte_vocabulary(tmp_path, capsys):
    data = {"data_dir": str(tmp_path / "missing"), "batch_size": 2}
    path = write_experiment(tmp_path, {"max_steps": 5, "devices": "auto"}, {"architecture": "micro"}, data)
    result = plan(config=path)
    assert result["num_gpus"] == 1 and result["precision"] == "32-true"  # Lightning's defaults
    assert result["params"] == ModelConfig.from_preset("micro", vocab_size=320).num_params()
    assert "assumed a byte vocabulary (257 tokens, padded to 320)" in capsys.readouterr().out


def test_yaml_with_unknown_architecture_field_names_it(tmp_path):
    path = write_experiment(tmp_path, {"max_steps": 5}, {"architecture": {**TINY, "n_layers": 3}}, {"batch_size": 2})
    with pytest.raises(ValueError, match="n_layers"):
        plan(config=path)


FIT_EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.yaml") if not p.name.startswith("ladder-"))


@pytest.mark.parametrize("experiment", FIT_EXPERIMENTS, ids=lambda p: p.name)  # ladder-*: tests/test_ladder.py
def test_shipped_experiments_plan(experiment, capsys):
    result = plan(config=str(experiment))
    assert result["tokens"] > 0 and result["gpu_hours"] > 0
    assert "Recommendation" in capsys.readouterr().out


SETUP_ROWS = ("single", "single+ckpt", "ddp", "ddp+ckpt", "fsdp", "fsdp+ckpt")


def lit_llm(*args: str) -> subprocess.CompletedProcess:
    """`lit-llm ...` as a user types it, run from the repository root with this checkout's package."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["lit-llm", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_recommendation_keeps_the_planned_setup_and_names_a_cheaper_one_that_fits():
    """The YAML plans FSDP2 + activation checkpointing: the recommendation keeps that row, which fits, and offers
    a cheaper setup that fits the same micro-batch as an alternative, never instead of the planned one."""
    result = lit_llm("plan", "--config", "experiments/llama-1b-fsdp.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {words[0]: words for words in map(str.split, lines) if words and words[0] in SETUP_ROWS}
    planned = [name for name, words in rows.items() if words[-2:] == ["<-", "planned"]]
    assert planned == ["fsdp+ckpt"] and rows["fsdp+ckpt"][6] == "yes"  # fits at the YAML's micro-batch 8
    recommendation = next(line for line in lines if line.startswith("Recommendation: "))
    assert recommendation.startswith("Recommendation: fsdp+ckpt as planned, micro-batch 8 ")
    alternative = re.search(r"Also fits, cheaper: (\S+), micro-batch (\d+)", recommendation)
    assert alternative is not None and alternative[1] == "single"  # one GPU: no checkpointing needed
    assert rows[alternative[1]][6] == "yes" and int(rows[alternative[1]][7]) >= int(alternative[2])


def test_a_planned_setup_that_does_not_fit_is_replaced_and_said_so(tmp_path, capsys):
    trainer = {"strategy": "ddp", "devices": 8, "num_nodes": 8, "precision": "bf16-mixed", "max_steps": 10}
    path = write_experiment(tmp_path, trainer, {"architecture": "llama2-7b"}, {"batch_size": 1})
    result = plan(config=path, gpu="a100-80gb")
    assert result["planned_setup"] == "ddp" and result["memory"]["strategies"]["ddp"]["max_micro_batch_size"] == 0
    assert result["memory"]["recommendation"]["strategy"] == "fsdp"
    assert result["memory"]["alternative"] is None
    out = capsys.readouterr().out
    assert "Recommendation: fsdp, micro-batch 1. The planned ddp does not fit even at micro-batch 1." in out


def test_stacked_configs_are_planned_as_the_one_run_fit_would_start():
    """fit's --config stack: the trainer snippet's devices, precision and strategy replace the experiment's."""
    alone = plan(config=["experiments/tinystories.yaml"])
    stacked = plan(config=["experiments/tinystories.yaml", "experiments/trainer/fsdp2.yaml"])
    assert (alone["precision"], alone["planned_setup"]) == ("32-true", "single")
    assert (stacked["precision"], stacked["planned_setup"], stacked["num_gpus"]) == ("bf16-mixed", "fsdp", 1)
    assert stacked["name"] == "tinystories + fsdp2" and stacked["tokens"] == alone["tokens"] == 600 * 8 * 256


def test_later_configs_and_overrides_win_in_command_line_order(tmp_path):
    data = {"data_dir": prepared_data(tmp_path, 300), "batch_size": 4}
    first = write_experiment(tmp_path, {"max_steps": 10, "devices": 2}, {"architecture": TINY}, data)
    second = tmp_path / "longer.yaml"
    second.write_text("trainer:\n  max_steps: 30\nmodel:\n  activation_checkpointing: true\n")
    assert plan(config=[first, "--trainer.max_steps=20", str(second)])["tokens"] == 30 * 4 * 2 * 64
    result = plan(config=[first, str(second), "--trainer.max_steps=20", "--data.batch_size=2"])
    assert result["tokens"] == 20 * 2 * 2 * 64
    assert (result["num_gpus"], result["planned_setup"]) == (2, "ddp+ckpt")  # "auto" on 2 devices is DDP


def test_plan_command_stacks_configs_with_dotted_overrides():
    result = lit_llm(
        "plan",
        "--config",
        "experiments/tinystories.yaml",
        "--config=experiments/trainer/ddp.yaml",
        "--trainer.max_steps",
        "1000",
        "--num_gpus",
        "8",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert planned["tokens"] == 1000 * 8 * 8 * 256  # steps × micro-batch × GPUs × seq_len
    assert (planned["precision"], planned["planned_setup"], planned["num_gpus"]) == ("bf16-mixed", "ddp", 8)


@pytest.mark.parametrize(
    "content, message",
    [
        ("trainer:\n  max_steps: [10\n", "bad.yaml is not valid YAML at line 3, column 1: expected ',' or ']'"),
        ("- trainer\n- model\n", "bad.yaml holds a list, not a mapping of the trainer/model/data sections"),
        ("trainer:\n  max_stepz: 10\n", "bad.yaml: Group 'trainer' does not accept option 'max_stepz'"),
        ("trainer:\n  max_steps: many\n", 'bad.yaml: Parser key "trainer.max_steps": Expected a .*int.* many'),
        ("model:\n  architecture: {n_layers: 3}\n", "bad.yaml: .*Option 'n_layers' is not accepted"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        plan(config=[str(path)])
    assert "\n" not in str(err.value)


def test_plan_command_reports_a_bad_yaml_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  max_stepz: 10\n")
    result = lit_llm("plan", "--config", "experiments/tinystories.yaml", "--config", str(path))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"lit-llm plan: error: experiments/tinystories.yaml + {path}: "
        "Group 'trainer' does not accept option 'max_stepz'"
    ]


def test_planning_a_preset_imports_no_lightning():
    code = "from lit_llm.cli import main; main(['plan', '--preset', 'micro', '--json']); import sys; "
    code += "print('lightning' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


# ---------------------------------------------------------------- interface and errors


def test_json_output_has_the_documented_fields(capsys):
    result = plan(preset="gpt2-124m", tokens=10e9, num_gpus=8, json=True)
    printed = json.loads(capsys.readouterr().out)
    for key in ("params", "flops", "gpu_hours", "days", "cost"):
        assert printed[key] == pytest.approx(result[key])
    assert set(printed["memory_per_gpu_gb"]) == {"single", "single+ckpt", "ddp", "ddp+ckpt", "fsdp", "fsdp+ckpt"}
    assert printed["cost"] == pytest.approx(printed["gpu_hours"] * 2.5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(preset="gpt5"), ValueError, "unknown model preset 'gpt5'"),
        (dict(preset="gpt2-124m", gpu="tpu-v5"), ValueError, "unknown GPU 'tpu-v5'"),
        (dict(config="no/such.yaml"), FileNotFoundError, "no/such.yaml not found"),
        (dict(preset="gpt2-124m", tokens=0), ValueError, "--tokens must be positive"),
        (dict(preset="gpt2-124m", config="x.yaml"), ValueError, "exactly one of --config"),
        (dict(), ValueError, "exactly one of --config"),
        (dict(preset="micro", config=["--trainer.max_steps=5"]), ValueError, "--trainer.max_steps=5 change a --config"),
        (dict(preset="gpt2-124m", mfu="40"), ValueError, "fraction in \\(0, 1\\]"),
        (dict(preset="gpt2-124m", mfu="fast"), ValueError, "'fast'"),
        (dict(preset="gpt2-124m", num_gpus=0), ValueError, "--num_gpus must be at least 1"),
        (dict(preset="gpt2-124m", seq_len=4096), ValueError, "block_size 1024"),
        (dict(preset="gpt2-124m", micro_batch_size=0), ValueError, "--micro_batch_size"),
        (dict(preset="gpt2-124m", precision="fp8"), ValueError, "unknown precision 'fp8'"),
    ],
)
def test_bad_input_names_the_value_and_the_fix(kwargs, error, message):
    with pytest.raises(error, match=message):
        plan(**kwargs)


def test_docstring_documents_every_argument_for_the_cli_help():
    documented = plan.__doc__.split("Args:")[1]
    for name in inspect.signature(plan).parameters:
        assert f"\n        {name}: " in documented, name
    parser = ArgumentParser()
    parser.add_function_arguments(plan, as_group=False)
    cfg = parser.parse_args(["--preset", "gpt2-124m", "--tokens", "10e9", "--mfu", "measure", "--num_gpus", "8"])
    assert (cfg.tokens, cfg.mfu, cfg.num_gpus) == (10e9, "measure", 8)


# ---------------------------------------------------------------- measured MFU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_measure_on_cpu_fails_with_one_clear_line():
    with pytest.raises(ValueError, match="needs a GPU from lit_llm.planning.hardware's table") as err:
        plan(preset="micro", mfu="measure")
    assert "\n" not in str(err.value) and "--mfu 0.4" in str(err.value)


FAKE_CHIP = Accelerator("fake", bf16_tflops=1.0, memory_gb=16, match=())


def test_measured_mfu_is_model_flops_over_step_time_and_peak(monkeypatch):
    monkeypatch.setattr(estimate_module, "detect_accelerator", lambda device: FAKE_CHIP)
    monkeypatch.setattr(estimate_module, "training_step_seconds", lambda *args, **kwargs: 0.5)
    config = ModelConfig.from_preset("micro", vocab_size=320)
    expected = config.flops_per_token(64) * 4 * 64 / 0.5 / 1e12
    assert measure_mfu(config, 4, 64, "32-true", torch.device("cpu")) == pytest.approx(expected)


def test_measure_times_real_training_steps(monkeypatch):
    """The benchmark really runs GPT forward + backward + AdamW (here on CPU, against a pretend 1 TFLOP/s chip)."""
    monkeypatch.setattr(estimate_module, "detect_accelerator", lambda device: FAKE_CHIP)
    result = plan(preset="micro", mfu="measure", micro_batch_size=2, seq_len=32, precision="32-true")
    assert result["mfu_source"] == "measured"
    assert 0 < result["mfu"] < 1


# ---------------------------------------------------------------- the run's own cost, in the plan's units


def test_run_cost_summary_closes_the_loop_with_the_plan():
    config = ModelConfig.from_preset("gpt2-124m")
    a100 = get_accelerator("a100-80gb")
    tokens, seconds, devices = 3_600_000_000, 3600.0, 8
    summary = run_cost_summary(config, tokens, seconds, devices, 1024, a100)
    achieved = tokens / seconds / devices * config.flops_per_token(1024) / A100_PEAK
    assert f"{achieved:.1%}" in summary
    assert "GPU-hours       8 (a100-80gb)" in summary and "125,000 tokens/s per device" in summary
    planned = plan(preset="gpt2-124m", tokens=tokens, gpu="a100-80gb", num_gpus=devices, mfu=str(achieved))
    assert planned["gpu_hours"] == pytest.approx(8.0)


def test_run_cost_summary_without_a_known_chip_reports_tflops():
    summary = run_cost_summary(ModelConfig.from_preset("micro", vocab_size=320), 1_000_000, 100.0, 1, 256, None)
    assert "TFLOP/s per device" in summary and "device-hours" in summary and "achieved MFU" not in summary
