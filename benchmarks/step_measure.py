"""The step benchmarks' measuring: the variants interleaved round by round (GPU) or step by step (CPU), each
variant's failure kept apart from the others, and peak memory (CUDA's counter, or one process per variant)."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import traceback
from dataclasses import dataclass, field

import torch

from benchmarks.harness import REPO, TimeLimit, peak_rss_since_reset, reset_peak_rss, rss_bytes
from benchmarks.step_data import load_batches
from benchmarks.step_runners import Bench, Variant, rotated, step_each

MEMORY_TAG = "MEMORY_PROBE "
# Before Lightning adds MASTER_PORT and friends: a probe process must pick its own port.
LAUNCH_ENVIRONMENT = dict(os.environ)


@dataclass
class Measurement:
    variant: Variant
    rounds: list[list[float]] = field(default_factory=list)  # wall seconds per timed step, one list per round
    cpu_rounds: list[list[float]] = field(default_factory=list)  # CPU seconds, likewise (CPU runs only)
    peak_memory_bytes: int | None = None
    memory_note: str = ""
    error: str | None = None  # why the variant could not be measured (e.g. out of memory)

    @property
    def step_seconds(self) -> float:
        return statistics.median(t for r in self.rounds for t in r)

    @property
    def cpu_step_seconds(self) -> float | None:
        times = [t for r in self.cpu_rounds for t in r]
        return statistics.median(times) if times else None

    @property
    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]


def measure(variants: list[Variant], bench: Bench, rounds: int, warmup: int, steps: int) -> list[Measurement]:
    """Interleave the variants: every round runs each once, in an order rotated by one per round.

    A variant that fails (out of memory, a compile error) is reported as failed; the others go on. Each
    runner is dropped after its last round, so later variants get its memory.
    """
    bare = any(v.kind != "lightning" for v in variants)
    batches = load_batches(bench.data_dir, bench.shape, 16, bench.device) if bare else []
    results = {v.name: Measurement(v) for v in variants}
    runners = {}
    try:
        for r in range(rounds):
            for v in rotated(variants, r):
                if results[v.name].error is None:
                    run_round(v, results[v.name], runners, bench, batches, warmup, steps)
                if results[v.name].error is None:
                    print(
                        f"round {r + 1}/{rounds} {v.name}: {statistics.median(results[v.name].rounds[-1]) * 1e3:.1f} "
                        "ms/step",
                        flush=True,
                    )
                if r == rounds - 1:
                    release(runners, v.name, bench.device)
    except TimeLimit:
        for m in results.values():
            if not m.rounds and m.error is None:
                m.error = "not measured: time limit"
        print("stopped by the time limit; reporting what was measured", flush=True)
        raise TimeLimit(list(results.values())) from None
    return list(results.values())


def release(runners: dict, name: str, device: torch.device) -> None:
    runners.pop(name, None)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_step_interleaved(
    variants: list[Variant], bench: Bench, rounds: int, warmup: int, steps: int
) -> list[Measurement]:
    """CPU: alternate the variants step by step (the bare ones inside the one Lightning fit, if any).

    The ``rounds × steps`` timed steps are split into ``rounds`` groups only to report their spread.
    """
    batches = load_batches(bench.data_dir, bench.shape, 16, bench.device)
    results = {v.name: Measurement(v) for v in variants}
    bare = {}
    for v in variants:
        if v.kind != "lightning":
            try:
                bare[v.name] = bench.runner(v, batches)
            except Exception as error:  # noqa: BLE001
                results[v.name].error = f"{type(error).__name__}: {error}"[:300]
    times = {name: ([], []) for name in bare}
    lightning = [v for v in variants if v.kind == "lightning"]
    total = rounds * steps
    if lightning:
        runner = bench.runner(lightning[0], batches)
        wall, cpu = runner.run(warmup, total, side_runners=bare, side_times=times)
        times[lightning[0].name] = (wall, cpu)
    else:
        for step in range(warmup + total):
            step_each(bare, times, step)
    for name, (wall, cpu) in times.items():
        skip = 0 if name in {v.name for v in lightning} else warmup  # the Lightning runner drops its own
        wall, cpu = wall[skip : skip + total], cpu[skip : skip + total]
        results[name].rounds = [wall[i * steps : (i + 1) * steps] for i in range(rounds)]
        results[name].cpu_rounds = [cpu[i * steps : (i + 1) * steps] for i in range(rounds)]
        print(f"{name}: {statistics.median(wall) * 1e3:.1f} ms/step", flush=True)
    return list(results.values())


def run_round(v: Variant, result: Measurement, runners: dict, bench: Bench, batches, warmup: int, steps: int) -> None:
    first = v.name not in runners
    cuda = bench.device.type == "cuda"
    if first and cuda:
        torch.cuda.synchronize()
        held_before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    try:
        if first:
            runners[v.name] = bench.runner(v, batches)
        wall, cpu = runners[v.name].run(warmup, steps)
    except Exception as error:  # noqa: BLE001  (one variant's failure must not lose the others' numbers)
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        release(runners, v.name, bench.device)
        return
    result.rounds.append(wall)
    result.cpu_rounds.append(cpu)
    if first and cuda:
        result.peak_memory_bytes = torch.cuda.max_memory_allocated() - held_before
        result.memory_note = "cuda max_memory_allocated above what was held before the variant was built"


def probe_memory(variant: Variant, bench: Bench) -> dict:
    """In a process of its own: peak RSS while building the variant and running a few steps."""
    batches = load_batches(bench.data_dir, bench.shape, 4, bench.device)
    baseline = rss_bytes()
    runner = bench.runner(variant, batches)
    if variant.kind != "lightning":  # a Trainer's fit restarts its optimizer: its warm-up must be inside
        runner.run(1, 0)  # compilation's transient peak is not a training step's
    reset_peak_rss()
    runner.run(1, 2)
    return {"peak_rss_bytes": peak_rss_since_reset(), "baseline_rss_bytes": baseline}


def memory_in_subprocesses(measurements: list[Measurement], module: str, argv: list[str]) -> None:
    """CPU memory: one fresh process per variant (an allocator never gives memory back reliably)."""
    for m in (m for m in measurements if m.error is None):
        cmd = [sys.executable, "-m", module, *argv, "--probe-memory", m.variant.name]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=LAUNCH_ENVIRONMENT, cwd=REPO)
        lines = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_TAG)]
        if done.returncode or not lines:
            print(f"memory probe of {m.variant.name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        probe = json.loads(lines[-1][len(MEMORY_TAG) :])
        m.peak_memory_bytes = probe["peak_rss_bytes"] - probe["baseline_rss_bytes"]
        m.memory_note = (
            "CPU: peak RSS during training steps above the process's RSS before the variant was built "
            "(a compiled variant's retained compiler memory included)"
        )
