"""What benchmarks.throughput and benchmarks.features share: their common options, the shape and data they
set up, and the run (measure the variants, then memory and the loader; or, inside a probe process, one
variant's memory)."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from benchmarks.harness import TimeLimit, stop_on_sigterm
from benchmarks.step_data import Shape, data_vocab_size, loader_tokens_per_sec, prepare_shards, train_tokens
from benchmarks.step_measure import MEMORY_TAG, measure, measure_step_interleaved, memory_in_subprocesses, probe_memory
from benchmarks.step_report import summarise
from benchmarks.step_runners import Bench, Variant
from lit_llm.model.config import ModelConfig


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
