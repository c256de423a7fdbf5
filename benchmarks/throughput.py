"""Training throughput of lit-llm, side by side with a bare PyTorch loop and an independent reference GPT.

Three variants train on the same shapes and the same tokens in one process:

  lightning  lit-llm's LitLLM through L.Trainer with its TokenDataModule, TensorBoard logger, progress
             bar and own callbacks, as a user runs `lit-llm fit` (validation off: it never runs inside
             a timed step)
  bare       the same lit_llm.model.model.GPT, loss and AdamW in a plain PyTorch loop, over the first batches
             TokenDataModule's loader yields (held in memory, as nanoGPT's loop holds its data)
  reference  a nanoGPT-style GPT written for the benchmark (benchmarks/reference_gpt.py), same loop

The bare loop builds its model as fit does (lit_llm.distributed.parallelize.parallelize: activation checkpointing,
compile) and computes lit_llm.model.objective's losses, so only the Trainer around them differs.

A step's time is the interval between consecutive step starts (data, hooks and optimizer included),
warm-up excluded, median over all timed steps. On a CPU the variants alternate step by step (the bare
ones run between two Lightning batches, outside Lightning's intervals), so the load other processes put
on a shared machine hits all of them alike; the process's CPU time per step is reported beside the
wall clock. On a GPU they alternate round by round (a round: warm-up, then timed steps), and step starts
are CUDA events resolved after a final synchronisation, so the timed loop never waits on the host.

Reported per variant: ms/step, tokens/s, MFU against the chip's dense bf16 peak (lit_llm.planning.hardware) or,
on a CPU, achieved GFLOP/s; FLOPs per token are lit-llm's own count (ModelConfig.flops_per_token, the
same for the reference, which has the same shape). Peak memory is torch.cuda.max_memory_allocated on a
GPU (what the variant allocated above what was held before it was built); on a CPU it is the peak
resident set of a separate process that runs only that variant (DataLoader workers not included).
Also measured: the StreamingDataLoader's own tokens/s over the same shards, against the training step's
consumption.

    python -m benchmarks.throughput --preset micro --batch-size 8 --threads 1    # a shared CPU: 1 thread
    python -m benchmarks.throughput --preset micro --arch n_embd=256 --batch-size 8 --json out.json
    python -m benchmarks.throughput --preset gpt2-124m --batch-size 32 --precision bf16-mixed --compile
    python -m benchmarks.throughput --preset llama-1b --strategy fsdp2 --variants lightning --batch-size 4
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import gc
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lightning as L
import torch

import lit_llm.train.strategy  # noqa: F401  (registers the `fsdp2` strategy name)
from benchmarks.harness import (
    StepClock,
    TimeLimit,
    machine_description,
    markdown_table,
    paired_ratio,
    peak_rss_since_reset,
    reset_peak_rss,
    rss_bytes,
    stop_on_sigterm,
    time_call,
    versions,
)
from benchmarks.reference_gpt import ReferenceConfig, ReferenceGPT
from lit_llm.data.prepare import prepare
from lit_llm.distributed.parallelize import parallelize
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import chunked_next_token_loss, next_token_loss, weight_decay_groups
from lit_llm.planning.hardware import detect_accelerator
from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.module import LitLLM

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "tinyshakespeare.txt"
MEMORY_TAG = "MEMORY_PROBE "
VARIANT_KINDS = ("lightning", "bare", "reference")
# Before Lightning adds MASTER_PORT and friends: a probe process must pick its own port.
LAUNCH_ENVIRONMENT = dict(os.environ)


# ---- what is measured ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One way of running a training step. `kind` picks the runner; the rest are speed features."""

    name: str
    kind: str  # lightning | bare | reference
    precision: str = "32-true"  # 32-true | bf16-mixed
    compile: bool = False
    activation_checkpointing: bool = False
    optimizer: str = "fused"  # fused (lit-llm's choice) | foreach | for-loop  (bare and reference only)
    loss: str = "plain"  # plain (lit-llm's) | compiled | chunked  (bare only)
    sdpa: str = "auto"  # auto (SDPA picks: flash where it can) | math (forces the unfused kernel)
    strategy: str = "auto"  # auto | fsdp2  (lightning only)
    num_workers: int = 1  # lightning's data loader workers
    gelu: str | None = None  # tanh | exact: overrides the model config's GELU (None keeps it)

    def model_config(self, config: ModelConfig) -> ModelConfig:
        return replace(config, gelu=self.gelu) if self.gelu else config


@dataclass
class Shape:
    config: ModelConfig  # vocabulary resolved against the data
    seq_len: int
    batch_size: int

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size


@dataclass(frozen=True)
class Bench:
    """Where the variants run: the shape, the prepared shards, a scratch folder and the device."""

    shape: Shape
    data_dir: Path
    workdir: Path
    device: torch.device

    def runner(self, variant: Variant, batches: list[torch.Tensor]):
        if variant.kind == "lightning":
            return LightningRunner(variant, self.shape, self.data_dir, self.workdir, self.device)
        return BareRunner(variant, self.shape, batches, self.device)


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


# ---- data ---------------------------------------------------------------------------------------
def prepare_shards(workdir: Path, min_train_tokens: int) -> Path:
    """Byte-tokenize tiny Shakespeare, repeated until the train split holds ``min_train_tokens``.

    Byte tokens suit every preset: a step costs the same whatever the token ids, and a preset with a
    fixed large vocabulary (gpt2-124m: 50304) still gets its full-size embedding, head and loss.
    """
    text = CORPUS.read_text()
    repeats = max(1, math.ceil(min_train_tokens / (0.85 * len(text.encode()))))
    corpus = workdir / "corpus.txt"
    corpus.write_text(text * repeats)
    out = workdir / "shards"
    prepare([str(corpus)], str(out), tokenizer="byte")
    return out


def train_tokens(data_dir: Path) -> int:
    return json.loads((data_dir / "metadata.json").read_text())["splits"]["train"]["tokens"]


def data_vocab_size(data_dir: Path) -> int:
    return TokenDataModule(str(data_dir)).vocab_size


def train_loader(data_dir: Path, shape: Shape, num_workers: int):
    """TokenDataModule's own train loader, set up outside a fit (with the sequence length given)."""
    datamodule = TokenDataModule(
        str(data_dir), batch_size=shape.batch_size, seq_len=shape.seq_len, num_workers=num_workers
    )
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def load_batches(data_dir: Path, shape: Shape, count: int, device: torch.device) -> list[torch.Tensor]:
    """The first ``count`` batches the Trainer's loader yields, kept on the host for the bare loops."""
    batches = []
    for batch in train_loader(data_dir, shape, num_workers=0):
        batches.append(batch.pin_memory() if device.type == "cuda" else batch)
        if len(batches) == count:
            break
    return batches


# ---- timing ------------------------------------------------------------------------------------
class BatchStartClock(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.clock.tick()


class InterleavedSteps(L.Callback):
    """At every Lightning batch start, one step of each bare runner, timed apart from Lightning's interval.

    Neighbouring steps of all variants then share the machine's load of that moment, which a shared CPU
    changes from second to second. Ticks come in pairs: the end of the previous Lightning interval, then
    the start of this one.
    """

    def __init__(self, clock: StepClock, runners: dict, times: dict[str, tuple[list[float], list[float]]]) -> None:
        self.clock, self.runners, self.times = clock, runners, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.clock.tick()
        names = list(self.runners)
        for name in names[batch_idx % len(names) :] + names[: batch_idx % len(names)]:
            wall, cpu = time_call(self.runners[name].train_step)
            self.times[name][0].append(wall)
            self.times[name][1].append(cpu)
        self.clock.tick()


def sdpa_context(backend: str):
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


# ---- runners -----------------------------------------------------------------------------------
def build_optimizer(params, variant: Variant) -> torch.optim.Optimizer:
    """AdamW as LitLLM configures it: decay on matrices only, fused unless told otherwise."""
    kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    return torch.optim.AdamW(weight_decay_groups(params, 0.1), lr=6e-4, betas=(0.9, 0.95), **kinds[variant.optimizer])


class BareRunner:
    """A plain PyTorch training loop, as a nanoGPT user writes it (bf16 autocast, clip 1.0, AdamW)."""

    def __init__(self, variant: Variant, shape: Shape, batches: list[torch.Tensor], device: torch.device) -> None:
        self.variant, self.shape, self.batches, self.device = variant, shape, batches, device
        self.model = self._build_model().to(device)
        self.loss_fn = self._build_loss()
        self.optimizer = build_optimizer(self.model.parameters(), variant)
        self.next_batch = 0

    def _build_model(self) -> torch.nn.Module:
        c = self.variant.model_config(self.shape.config)
        if self.variant.kind == "reference":
            gelu = "tanh" if c.gelu == "tanh" else "none"
            return ReferenceGPT(
                ReferenceConfig(c.block_size, c.vocab_size, c.n_layer, c.n_head, c.n_embd, c.bias, c.dropout, gelu)
            )
        # compiled below, with its loss (parallelize's compile would compile the model alone)
        return parallelize(GPT(c), activation_checkpointing=self.variant.activation_checkpointing)

    def _build_loss(self):
        """A function (model, inputs, targets) -> loss, compiled as the variant asks."""
        v = self.variant
        if v.kind == "reference":  # nanoGPT compiles the whole model, its loss included
            compiled = torch.compile(self.model) if v.compile else self.model
            return lambda model, x, y: compiled(x, y)
        if v.loss == "chunked":  # as LitLLM with `model.loss: chunked`
            trunk = torch.compile(self.model.hidden_states) if v.compile else self.model.hidden_states
            return lambda model, x, y: chunked_next_token_loss(trunk(x), model.lm_head.weight, y)
        if v.compile:
            parallelize(self.model, compile=True)  # the model as `model.compile: true` compiles it; LitLLM
            # also compiles its loss then, which the `compiled` loss variant measures
        cross_entropy = torch.compile(next_token_loss) if v.loss == "compiled" else next_token_loss
        return lambda model, x, y: cross_entropy(model(x), y)

    def train_step(self) -> None:
        batch = self.batches[self.next_batch % len(self.batches)].to(self.device, non_blocking=True).long()
        self.next_batch += 1
        with autocast(self.device, self.variant.precision), sdpa_context(self.variant.sdpa):
            loss = self.loss_fn(self.model, batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, warmup: int, steps: int) -> tuple[list[float], list[float]]:
        clock = StepClock(self.device)
        for _ in range(warmup + steps):
            clock.tick()
            self.train_step()
        clock.tick()
        wall, cpu = clock.intervals()
        return wall[warmup:], cpu[warmup:]


class LightningRunner:
    """lit-llm's real training step: LitLLM + TokenDataModule through L.Trainer, one fit per round.

    The module (and its compiled model) is kept across rounds, as the bare runner keeps its model; each
    round is a fresh Trainer, so its optimizer restarts and the warm-up steps absorb that.
    """

    def __init__(self, variant: Variant, shape: Shape, data_dir: Path, workdir: Path, device: torch.device) -> None:
        self.variant, self.shape, self.device = variant, shape, device
        self.workdir = workdir
        self.module = LitLLM(
            architecture=variant.model_config(shape.config),
            compile=variant.compile,
            activation_checkpointing=variant.activation_checkpointing,
            warmup_steps=10,
            sample_tokens=0,  # samples are drawn at validation, which the benchmark switches off
        )
        self.datamodule = TokenDataModule(
            str(data_dir), batch_size=shape.batch_size, seq_len=shape.seq_len, num_workers=variant.num_workers
        )
        self.fits = 0

    def run(
        self, warmup: int, steps: int, side_runners: dict | None = None, side_times: dict | None = None
    ) -> tuple[list[float], list[float]]:
        """Timed steps of one fit; with ``side_runners``, their steps run in between (InterleavedSteps)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        if self.fits and self.variant.strategy == "fsdp2":
            raise RuntimeError("an FSDP2 module is sharded once: measure it in a single round (--rounds 1)")
        clock = StepClock(self.device)
        timer = InterleavedSteps(clock, side_runners, side_times) if side_runners else BatchStartClock(clock)
        trainer = L.Trainer(
            accelerator=self.device.type,
            devices=1,
            strategy=self.variant.strategy,
            precision=self.variant.precision,
            max_steps=warmup + steps + 1,
            log_every_n_steps=10,  # as the experiment YAMLs log
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_model_summary=False,
            logger=TensorBoardLogger(self.workdir / "logs", name=self.variant.name, version=f"fit{self.fits}"),
            default_root_dir=self.workdir,
            callbacks=[timer],
        )
        self.fits += 1
        with sdpa_context(self.variant.sdpa):
            trainer.fit(self.module, self.datamodule)
        if (
            skipped := self.module.nonfinite.total()
        ):  # a skipped step has no optimizer update: it would flatter the timing
            raise RuntimeError(f"{skipped} step(s) had a non-finite loss or gradient")
        wall, cpu = clock.intervals()
        if side_runners:  # the intervals from a batch's second tick to the next batch's first
            wall, cpu = wall[1::2], cpu[1::2]
        return wall[warmup : warmup + steps], cpu[warmup : warmup + steps]


# ---- measuring ---------------------------------------------------------------------------------
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
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
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
            for name in list(bare)[step % len(bare) :] + list(bare)[: step % len(bare)]:
                wall, cpu = time_call(bare[name].train_step)
                times[name][0].append(wall)
                times[name][1].append(cpu)
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


def loader_tokens_per_sec(data_dir: Path, shape: Shape, num_workers: int, batches: int) -> float:
    """The StreamingDataLoader that TokenDataModule gives the Trainer, drained as fast as it yields."""
    loader = train_loader(data_dir, shape, num_workers)
    available = len(loader)
    if available < 3:
        raise ValueError(f"the train split holds only {available} batches; prepare more data")
    batches = min(batches, available - 1)
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per step
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * shape.tokens_per_step / (time.perf_counter() - start)


# ---- reporting ---------------------------------------------------------------------------------
def summarise(measurements: list[Measurement], shape: Shape, device: torch.device, loader: float | None) -> dict:
    accelerator = detect_accelerator(device)
    flops_per_token = shape.config.flops_per_token(shape.seq_len)
    rows = [row(m, shape, flops_per_token, accelerator) for m in measurements]
    targets, intervals = ratios([r for r in rows if r["error"] is None], loader)
    return {
        "date": datetime.date.today().isoformat(),
        "device": machine_description(device),
        "peak_tflops": accelerator.bf16_tflops if accelerator else None,
        "versions": versions(),
        "shape": {"model": shape.config.to_dict(), "seq_len": shape.seq_len, "batch_size": shape.batch_size},
        "flops_per_token": flops_per_token,
        "variants": rows,
        "loader_tokens_per_sec": loader,
        "ratios": targets,
        "ratio_intervals": intervals,
    }


def row(m: Measurement, shape: Shape, flops_per_token: int, accelerator) -> dict:
    base = {
        "name": m.variant.name,
        "settings": asdict(m.variant),
        "error": m.error,
        "peak_memory_bytes": m.peak_memory_bytes,
        "memory_measure": m.memory_note,
    }
    if m.error is not None:
        return base
    tokens_per_sec = shape.tokens_per_step / m.step_seconds
    medians = m.round_medians
    return {
        **base,
        "step_ms": m.step_seconds * 1e3,
        "cpu_step_ms": m.cpu_step_seconds * 1e3 if m.cpu_step_seconds else None,
        "round_median_ms": [t * 1e3 for t in medians],
        "spread": (max(medians) - min(medians)) / m.step_seconds,
        "tokens_per_sec": tokens_per_sec,
        "achieved_tflops": tokens_per_sec * flops_per_token / 1e12,
        "mfu": tokens_per_sec * flops_per_token / (accelerator.bf16_tflops * 1e12) if accelerator else None,
        "step_ms_all": [t * 1e3 for r in m.rounds for t in r],
        "cpu_step_ms_all": [t * 1e3 for r in m.cpu_rounds for t in r],
    }


def ratios(rows: list[dict], loader: float | None) -> tuple[dict, dict]:
    """The issue's targets as ratios (on a CPU also from CPU time, which other jobs' load does not
    inflate), each with its 95% interval where the variants' steps pair up."""
    by_name = {r["name"]: r for r in rows}
    result, intervals = {}, {}
    for clock, suffix in (("step_ms", ""), ("cpu_step_ms", "_cpu_time")):
        for key, slower, faster, offset in (
            ("lightning_overhead", "lightning", "bare", 1),
            ("lit_model_vs_reference", "reference", "bare", 0),
        ):
            if {slower, faster} <= by_name.keys() and by_name[faster][clock]:
                paired = paired_ratio(by_name[slower][clock + "_all"], by_name[faster][clock + "_all"])
                if paired is None:
                    result[key + suffix] = by_name[slower][clock] / by_name[faster][clock] - offset
                else:
                    result[key + suffix], *interval = (value - offset for value in paired)
                    intervals[key + suffix] = interval
    if loader is not None and rows:
        consumer = by_name.get("lightning") or rows[0]
        result["loader_vs_training"] = loader / consumer["tokens_per_sec"]
    return result, intervals


TARGETS = {
    "lightning_overhead": ("Lightning step vs bare loop", "{:+.1%}", "target ≤ +3%"),
    "lightning_overhead_cpu_time": ("Lightning step vs bare loop, CPU time", "{:+.1%}", "target ≤ +3%"),
    "lit_model_vs_reference": ("lit-llm model speed / reference GPT speed", "{:.3f}×", "target ≥ 1"),
    "lit_model_vs_reference_cpu_time": ("lit-llm model speed / reference GPT speed, CPU time", "{:.3f}×", "target ≥ 1"),
    "loader_vs_training": ("StreamingDataLoader tokens/s / training tokens/s", "{:.0f}×", "target ≥ 10×"),
}


def table(summary: dict, extra: dict[str, list[str]] | None = None) -> str:
    """A markdown table, one row per variant; ``extra`` adds columns (header -> one cell per variant)."""
    rows = summary["variants"]
    gpu = summary["peak_tflops"] is not None
    cpu_clock = any(r.get("cpu_step_ms") for r in rows)
    header = [
        "variant",
        "ms/step",
        "spread",
        *(["CPU ms/step"] if cpu_clock else []),
        "tokens/s",
        "MFU" if gpu else "GFLOP/s",
        "peak memory MiB",
        *(extra or {}),
    ]
    cells_per_row = []
    for i, r in enumerate(rows):
        memory = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:,.0f}"
        if r["error"] is not None:
            cells = [r["name"], f"failed: {r['error']}", *[""] * (len(header) - 3), memory]
        else:
            cells = [
                r["name"],
                f"{r['step_ms']:.1f}",
                f"±{r['spread'] / 2:.1%}",
                *([f"{r['cpu_step_ms']:.1f}"] if cpu_clock else []),
                f"{r['tokens_per_sec']:,.0f}",
                f"{r['mfu']:.1%}" if gpu else f"{r['achieved_tflops'] * 1e3:.2f}",
                memory,
            ]
        cells += [column[i] for column in (extra or {}).values()]
        cells_per_row.append(cells)
    lines = [markdown_table(header, cells_per_row), ""]
    for key, value in summary["ratios"].items():
        label, fmt, target = TARGETS[key]
        interval = summary["ratio_intervals"].get(key)
        paired = (
            f" (median of paired steps, 95% interval {fmt.format(interval[0])} to {fmt.format(interval[1])})"
            if interval
            else ""
        )
        lines.append(f"{label}: {fmt.format(value)}{paired} ({target})")
    if summary["loader_tokens_per_sec"] is not None:
        lines.append(f"StreamingDataLoader alone: {summary['loader_tokens_per_sec']:,.0f} tokens/s")
    return "\n".join(lines)


def report(summary: dict, args: argparse.Namespace, extra: dict[str, list[str]] | None = None) -> None:
    shape = summary["shape"]
    print(
        f"\n{summary['device']}, torch {summary['versions']['torch']}, {summary['date']}: {args.preset} "
        f"{' '.join(args.arch)} seq {shape['seq_len']} batch {shape['batch_size']} {args.precision}"
        f"{' compiled' if args.compile else ''}, {summary['flops_per_token'] / 1e6:.1f} MFLOP/token, "
        f"median of {args.rounds}×{args.steps} steps"
    )
    print(table(summary, extra), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))


# ---- command line ------------------------------------------------------------------------------
def common_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark script shares: the shape, the repetitions, the data and the output."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="micro", help="a lit_llm.model.config preset")
    p.add_argument(
        "--arch", nargs="*", default=[], metavar="FIELD=VALUE", help="ModelConfig overrides, e.g. n_embd=256"
    )
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default: the model's block_size)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of every round")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument(
        "--interleave",
        default="auto",
        choices=["auto", "steps", "rounds"],
        help="alternate the variants step by step (auto: on a CPU, with at most one Lightning variant) "
        "or round by round",
    )
    p.add_argument("--num-workers", type=int, default=1, help="data loader workers (lightning and the loader check)")
    p.add_argument("--loader-batches", type=int, default=0, help="batches drained for the loader check (0: skip)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True, help="measure peak memory")
    p.add_argument("--data-dir", type=Path, help="prepared byte shards to reuse (default: prepare into --workdir)")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the full results here")
    p.add_argument("--probe-memory", metavar="VARIANT", help=argparse.SUPPRESS)  # internal: one memory probe
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--variants", default="lightning,bare,reference", help=f"comma-separated subset of {VARIANT_KINDS}")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--strategy", default="auto", choices=["auto", "fsdp2"], help="fsdp2: lightning only, one round")
    p.set_defaults(loader_batches=50)
    return p.parse_args(argv)


def parse_value_pair(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--arch takes FIELD=VALUE pairs, got {item!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The preset with the --arch overrides (vocabulary still unresolved where the preset leaves it open)."""
    return ModelConfig.from_preset(args.preset, **dict(parse_value_pair(item) for item in args.arch))


def resolve_shape(args: argparse.Namespace, data_dir: Path) -> Shape:
    config = model_config(args).with_vocab(data_vocab_size(data_dir))
    seq_len = args.seq_len or config.block_size
    if seq_len > config.block_size:
        raise ValueError(
            f"--seq-len {seq_len} exceeds the model's block_size {config.block_size}; pass --arch block_size={seq_len}"
        )
    return Shape(config, seq_len, args.batch_size)


def variants_from_args(args: argparse.Namespace) -> list[Variant]:
    kinds = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = set(kinds) - set(VARIANT_KINDS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANT_KINDS}")
    common = {
        "precision": args.precision,
        "compile": args.compile,
        "num_workers": args.num_workers,
        "activation_checkpointing": args.activation_checkpointing,
    }
    return [
        Variant(name=kind, kind=kind, strategy=args.strategy if kind == "lightning" else "auto", **common)
        for kind in kinds
    ]


def needed_train_tokens(shape: Shape, args: argparse.Namespace) -> int:
    """Enough for every round's fit without starting a second epoch, and for the loader check."""
    per_batch = shape.batch_size * (shape.seq_len + 1)
    return per_batch * (max(args.rounds * (args.warmup + args.steps + 1), 16) + args.loader_batches + 4)


def setup_data(args: argparse.Namespace, workdir: Path) -> tuple[Path, Shape]:
    if args.data_dir:
        shape = resolve_shape(args, args.data_dir)
        if train_tokens(args.data_dir) < needed_train_tokens(shape, args):
            raise ValueError(
                f"{args.data_dir} holds {train_tokens(args.data_dir):,} train tokens, fewer than the "
                f"{needed_train_tokens(shape, args):,} this run needs; omit --data-dir to prepare enough"
            )
        return args.data_dir, shape
    draft_config = model_config(args)
    draft = Shape(draft_config, args.seq_len or draft_config.block_size, args.batch_size)
    data_dir = prepare_shards(workdir, needed_train_tokens(draft, args))
    return data_dir, resolve_shape(args, data_dir)


def quiet_lightning() -> None:
    # Lightning's banner lines and lit-llm's end-of-run cost summary would bury the per-round progress.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "litdata"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def run(args: argparse.Namespace, argv: list[str], variants: list[Variant], module: str) -> dict | None:
    """Prepare data, measure the variants interleaved, then memory and the loader; None for a memory probe.

    ``module`` (the calling script, e.g. benchmarks.features) runs again for each CPU memory probe."""
    quiet_lightning()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # else a distributed strategy resets the thread count
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lit-llm-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data_dir, shape = setup_data(args, workdir)
        bench = Bench(shape, data_dir, workdir, device)
        if args.probe_memory:
            variant = next(v for v in variants if v.name == args.probe_memory)
            print(MEMORY_TAG + json.dumps(probe_memory(variant, bench)), flush=True)
            return None
        torch.manual_seed(1337)
        stop_on_sigterm()
        measurements, loader = [], None
        try:
            step_wise = args.interleave == "steps" or (
                args.interleave == "auto" and device.type == "cpu" and sum(v.kind == "lightning" for v in variants) <= 1
            )
            how = measure_step_interleaved if step_wise else measure
            measurements = how(variants, bench, args.rounds, args.warmup, args.steps)
            if args.memory and device.type == "cpu":
                probe_argv = [*argv, "--data-dir", str(data_dir), "--no-memory", "--loader-batches", "0"]
                memory_in_subprocesses(measurements, module, probe_argv)
            if args.loader_batches:
                loader = loader_tokens_per_sec(data_dir, shape, args.num_workers, args.loader_batches)
        except TimeLimit as stopped:  # report what was measured before the time limit
            measurements = stopped.args[0] if stopped.args else measurements
        return summarise(measurements, shape, device, loader)


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    summary = run(args, argv, variants_from_args(args), "benchmarks.throughput")
    if summary is not None:
        report(summary, args)
    return summary


if __name__ == "__main__":
    main()
