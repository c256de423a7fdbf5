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
import sys

from benchmarks.step_cli import common_parser, run
from benchmarks.step_report import report
from benchmarks.step_runners import Variant

VARIANT_KINDS = ("lightning", "bare", "reference")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--variants", default="lightning,bare,reference", help=f"comma-separated subset of {VARIANT_KINDS}")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--strategy", default="auto", choices=["auto", "fsdp2"], help="fsdp2: lightning only, one round")
    p.set_defaults(loader_batches=50)
    return p.parse_args(argv)


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


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    summary = run(args, argv, variants_from_args(args), "benchmarks.throughput")
    if summary is not None:
        report(summary, args)
    return summary


if __name__ == "__main__":
    main()
