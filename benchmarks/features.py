"""Do lit-llm's speed features pay? Each against a baseline, interleaved in one process on one shape.

The baseline is lit-llm's model in the bare loop of benchmarks.throughput, at the --precision and
--compile given; each feature changes one thing:

  compile        torch.compile of the model (or, with --compile, the eager model for comparison)
  loss           the loss compiled on its own; the chunked loss (`model.loss: chunked`), which never holds
                 all the logits
  chunked        the chunked loss alone (no compilation: quick on a CPU)
  optimizer      foreach and for-loop AdamW instead of the fused one lit-llm uses (on CUDA and CPU)
  sdpa           the math attention kernel instead of the one SDPA picks (flash where it can)
  precision      bf16 autocast instead of fp32 (or the reverse, with --precision bf16-mixed)
  checkpointing  activation checkpointing of every block (memory saved against speed lost)
  gelu           GPT-2's tanh approximation instead of the exact (erf) GELU (lit-llm's default, as nanoGPT's)

    python -m benchmarks.features --preset micro --features optimizer,sdpa,precision
    python -m benchmarks.features --preset micro --arch vocab_size=50304 --features chunked --batch-size 4
    python -m benchmarks.features --preset gpt2-124m --precision bf16-mixed --batch-size 16 \
        --features loss,checkpointing
"""

from __future__ import annotations

import sys
from dataclasses import replace

from benchmarks.step_cli import common_parser, run
from benchmarks.step_report import report
from benchmarks.step_runners import Variant

FEATURES = ("compile", "loss", "chunked", "optimizer", "sdpa", "precision", "checkpointing", "gelu")


def feature_variants(feature: str, baseline: Variant) -> list[Variant]:
    """The variants that test one feature, each differing from ``baseline`` in one setting."""
    if feature == "compile":
        return [replace(baseline, name="eager" if baseline.compile else "compiled", compile=not baseline.compile)]
    if feature == "loss":
        return [
            replace(baseline, name="compiled-loss", loss="compiled"),
            replace(baseline, name="chunked-loss", loss="chunked"),
        ]
    if feature == "chunked":
        return [replace(baseline, name="chunked-loss", loss="chunked")]
    if feature == "optimizer":
        return [
            replace(baseline, name="foreach-adamw", optimizer="foreach"),
            replace(baseline, name="for-loop-adamw", optimizer="for-loop"),
        ]
    if feature == "sdpa":
        return [replace(baseline, name="sdpa-math", sdpa="math")]
    if feature == "precision":
        other = "32-true" if baseline.precision == "bf16-mixed" else "bf16-mixed"
        return [replace(baseline, name=other, precision=other)]
    if feature == "checkpointing":
        return [replace(baseline, name="activation-checkpointing", activation_checkpointing=True)]
    if feature == "gelu":
        return [replace(baseline, name="tanh-gelu", gelu="tanh")]
    raise ValueError(f"unknown feature {feature!r}; choose from {FEATURES}")


def comparison_columns(summary: dict) -> dict[str, list[str]]:
    """Speed and memory of each row relative to the baseline's."""
    ref = next(r for r in summary["variants"] if r["name"] == "baseline")
    columns: dict[str, list[str]] = {"speed ×": [], "speed × (CPU time)": [], "memory ×": []}
    for r in summary["variants"]:
        same = ref is r or r["error"] or ref["error"]
        columns["speed ×"].append("" if same else f"{ref['step_ms'] / r['step_ms']:.3f}")
        cpu = not same and r.get("cpu_step_ms") and ref.get("cpu_step_ms")
        columns["speed × (CPU time)"].append(f"{ref['cpu_step_ms'] / r['cpu_step_ms']:.3f}" if cpu else "")
        memory = not same and r["peak_memory_bytes"] and ref["peak_memory_bytes"]
        columns["memory ×"].append(f"{r['peak_memory_bytes'] / ref['peak_memory_bytes']:.2f}" if memory else "")
    if not any(columns["speed × (CPU time)"]):
        del columns["speed × (CPU time)"]
    return columns


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    parser = common_parser(__doc__)
    parser.add_argument("--features", default=",".join(FEATURES), help=f"comma-separated subset of {FEATURES}")
    args = parser.parse_args(argv)
    baseline = Variant("baseline", "bare", precision=args.precision, compile=args.compile, num_workers=args.num_workers)
    variants = [baseline]
    for feature in (f.strip() for f in args.features.split(",") if f.strip()):
        variants += [v for v in feature_variants(feature, baseline) if v.name not in {u.name for u in variants}]
    summary = run(args, argv, variants, "benchmarks.features")
    if summary is not None:
        report(summary, args, comparison_columns(summary))
    return summary


if __name__ == "__main__":
    main()
