"""The step benchmarks' results: the summary JSON (per variant and the target ratios) and its markdown table."""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import asdict

import torch

from benchmarks.harness import machine_description, markdown_table, paired_ratio, versions
from benchmarks.step_data import Shape
from benchmarks.step_measure import Measurement
from lit_llm.planning.hardware import detect_accelerator


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
