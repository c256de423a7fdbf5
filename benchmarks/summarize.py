"""One short markdown table from the JSON files that benchmarks.throughput and benchmarks.features write.

    python -m benchmarks.summarize results/*.json > summary.md

Each row is one measured variant of one file; the footer lists the issue's targets that the files can
answer, each with the measured value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Reference throughput of the GPT-2 124M shape on one H100 (../shared/benchmarks/h100-reference-throughput.md).
H100_REFERENCES = {"nanoGPT compiled": 502_202, "litgpt compiled": 470_884, "HF Llama compiled": 409_995}
MFU_TARGET = 0.50


def describe(summary: dict) -> str:
    shape, model = summary["shape"], summary["shape"]["model"]
    return (
        f"L{model['n_layer']} d{model['n_embd']} V{model['vocab_size']} seq {shape['seq_len']} "
        f"batch {shape['batch_size']}"
    )


def rows(path: Path, summary: dict) -> list[str]:
    out = []
    for r in summary["variants"]:
        s = r["settings"]
        setting = f"{s['precision']}{' compiled' if s['compile'] else ''}{' fsdp2' if s['strategy'] == 'fsdp2' else ''}"
        memory = "" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.2f}"
        if r["error"]:
            out.append(
                f"| {path.stem} | {describe(summary)} | {r['name']} | {setting} | failed: {r['error']} | | | {memory} |"
            )
            continue
        rate = f"{r['mfu']:.1%}" if r["mfu"] is not None else f"{r['achieved_tflops'] * 1e3:.1f} GFLOP/s"
        out.append(
            f"| {path.stem} | {describe(summary)} | {r['name']} | {setting} | {r['step_ms']:.1f} "
            f"| {r['tokens_per_sec']:,.0f} | {rate} | {memory} |"
        )
    return out


def verdicts(summary: dict) -> list[str]:
    """The issue's targets that this file answers."""
    lines = []
    ratios = summary["ratios"]
    if "lightning_overhead" in ratios:
        v = ratios["lightning_overhead"]
        lines.append(f"Lightning step vs bare loop: {v:+.1%} ({'met' if v <= 0.03 else 'MISSED'}: ≤ +3%)")
    if "lit_model_vs_reference" in ratios:
        v = ratios["lit_model_vs_reference"]
        lines.append(f"lit-llm model / reference GPT speed: {v:.3f}× ({'met' if v >= 1 else 'MISSED'}: ≥ 1)")
    if "loader_vs_training" in ratios:
        v = ratios["loader_vs_training"]
        lines.append(f"StreamingDataLoader / training tokens/s: {v:.0f}× ({'met' if v >= 10 else 'MISSED'}: ≥ 10×)")
    model = summary["shape"]["model"]
    gpt2_shape = (model["n_layer"], model["n_embd"], model["vocab_size"], summary["shape"]["seq_len"]) == (
        12,
        768,
        50304,
        1024,
    )
    lightning = next((r for r in summary["variants"] if r["name"] == "lightning" and not r["error"]), None)
    if gpt2_shape and lightning and lightning["mfu"] is not None and "H100" in summary["device"]:
        beaten = [name for name, tps in H100_REFERENCES.items() if lightning["tokens_per_sec"] > tps]
        lines.append(
            f"GPT-2 124M through lit-llm's Trainer: {lightning['mfu']:.1%} MFU "
            f"({'met' if lightning['mfu'] >= MFU_TARGET else 'MISSED'}: ≥ 50%), ahead of "
            f"{len(beaten)}/{len(H100_REFERENCES)} references ({', '.join(beaten) or 'none'})"
        )
    return lines


def main(paths: list[str]) -> None:
    files = [(Path(p), json.loads(Path(p).read_text())) for p in paths if Path(p).is_file()]
    if not files:
        print("no results")
        return
    first = files[0][1]
    print(f"{first['device']}, torch {first['versions']['torch']}, {first['date']}\n")
    print("| run | shape | variant | settings | ms/step | tokens/s | MFU | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for path, summary in files:
        print("\n".join(rows(path, summary)))
    print()
    for path, summary in files:
        for line in verdicts(summary):
            print(f"- {path.stem}: {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
