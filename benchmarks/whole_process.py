"""The first impression: the README's CPU run, timed as a whole process as a user waits for it, against a
plain single-file script with nanoGPT's train.py loop and evaluation cadence (benchmarks/nanogpt_train.py).

Both train the same model (4 layers x 128, context 64, vocabulary 320), batch 12, AdamW, the same
learning-rate schedule and clipping, on the same bytes of tiny Shakespeare, for the same steps with an
evaluation every ``interval`` steps:

  lit-llm   lit-llm fit --config experiments/shakespeare-char-cpu.yaml --trainer.max_steps STEPS
                --trainer.val_check_interval INTERVAL  (its sanity check, its 20 val batches, text sample
                and best.ckpt at every validation, last.ckpt at the end, TensorBoard, progress bar)
  nanoGPT   python -m benchmarks.nanogpt_train --max-iters STEPS --eval-interval INTERVAL  (20 train and
                20 val batches at every evaluation and at step 0, ckpt.pt when the val loss improves)

A run is the wall time from starting the process to its exit: interpreter and imports, set-up, every
step and every evaluation. The two alternate (A B A B ...) so both see the same load on a shared
machine; reported are medians and the median of the paired ratios. Data preparation is not timed
(both read files prepared beforehand).

    python -m benchmarks.whole_process --runs 300:100 600:250 --pairs 5 --json whole.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (
    REPO,
    SHAKESPEARE,
    cpu_seconds_with_children,
    machine_description,
    markdown_table,
    paired_ratio,
    versions,
)
from benchmarks.nanogpt_train import write_bins

CONFIG = REPO / "experiments" / "shakespeare-char-cpu.yaml"
VOCAB_SIZE = 320  # the byte tokenizer's 257 ids padded to a multiple of 64, as lit-llm's model pads them


def prepare_data(workdir: Path) -> tuple[Path, Path]:
    """lit-llm's byte shards and nanoGPT's .bin files of the same text (untimed)."""
    from lit_llm.data.prepare import prepare

    shards, bins = workdir / "shakespeare-char", workdir / "bins"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        prepare([str(SHAKESPEARE)], str(shards), tokenizer="byte", num_workers=1, overwrite=True)
    write_bins(SHAKESPEARE, bins)
    return shards, bins


def commands(steps: int, interval: int, shards: Path, bins: Path, run_dir: Path, extra: list[str]) -> dict:
    lit_llm = Path(sys.executable).with_name("lit-llm")  # the installed script, without a pyenv shim
    return {
        "lit-llm": [
            str(lit_llm) if lit_llm.exists() else "lit-llm",
            "fit",
            "--config",
            str(CONFIG),
            f"--data.data_dir={shards}",
            f"--trainer.default_root_dir={run_dir / 'lit-llm'}",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={interval}",
            *extra,
        ],
        "nanoGPT": [
            sys.executable,
            "-m",
            "benchmarks.nanogpt_train",
            f"--data-dir={bins}",
            f"--out-dir={run_dir / 'nanogpt'}",
            f"--max-iters={steps}",
            f"--eval-interval={interval}",
            f"--vocab-size={VOCAB_SIZE}",
        ],
    }


def time_process(command: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds from start to exit, CPU seconds of the process and its children); the output goes to
    ``log``. CPU time does not count the waits that other jobs' load causes, the wall clock does."""
    start, cpu = time.perf_counter(), cpu_seconds_with_children()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} exited with {done.returncode}; its output: {log}")
    return seconds, cpu_seconds_with_children() - cpu


def measure(steps: int, interval: int, pairs: int, shards: Path, bins: Path, workdir: Path, extra: list[str]) -> dict:
    times: dict[str, list[float]] = {"lit-llm": [], "nanoGPT": []}
    cpu_times: dict[str, list[float]] = {"lit-llm": [], "nanoGPT": []}
    for pair in range(pairs):
        run_dir = workdir / f"runs-{steps}-{interval}-{pair}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resumed one
        run_dir.mkdir(parents=True)
        for name, command in commands(steps, interval, shards, bins, run_dir, extra).items():
            wall, cpu = time_process(command, run_dir / f"{name}.log")
            times[name].append(wall)
            cpu_times[name].append(cpu)
            print(
                f"{steps} steps, eval every {interval}, pair {pair + 1}/{pairs}: {name} {wall:.1f} s ({cpu:.1f} CPU s)",
                flush=True,
            )
    paired = paired_ratio(times["nanoGPT"], times["lit-llm"], minimum=1)
    return {
        "steps": steps,
        "interval": interval,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "median_seconds": {name: statistics.median(t) for name, t in times.items()},
        "median_cpu_seconds": {name: statistics.median(t) for name, t in cpu_times.items()},
        "speed_vs_nanogpt": paired[0],  # nanoGPT's time / lit-llm's time, median over pairs
        "speed_interval": paired[1:],
    }


def report(results: list[dict]) -> str:
    rows = [
        [
            f"{r['steps']} / {r['interval']}",
            f"{r['median_seconds']['lit-llm']:.1f}",
            f"{r['median_seconds']['nanoGPT']:.1f}",
            f"{r['median_cpu_seconds']['lit-llm']:.1f} / {r['median_cpu_seconds']['nanoGPT']:.1f}",
            f"{r['speed_vs_nanogpt']:.2f}x ({r['speed_interval'][0]:.2f}-{r['speed_interval'][1]:.2f})",
            str(len(r["seconds"]["lit-llm"])),
        ]
        for r in results
    ]
    header = [
        "steps / eval every",
        "lit-llm s",
        "nanoGPT s",
        "CPU s lit-llm / nanoGPT",
        "lit-llm speed vs nanoGPT (95% interval)",
        "pairs",
    ]
    return markdown_table(header, rows)


def parse_run(text: str) -> tuple[int, int]:
    steps, _, interval = text.partition(":")
    if not interval:
        raise argparse.ArgumentTypeError(f"--runs takes STEPS:INTERVAL pairs such as 300:100, got {text!r}")
    return int(steps), int(interval)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=parse_run, default=[(300, 100), (600, 250)], metavar="STEPS:INTERVAL")
    p.add_argument("--pairs", type=int, default=3, help="A B repetitions of every run")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both (OMP_NUM_THREADS; 0: torch's choice)")
    p.add_argument("--lit-llm-args", nargs=argparse.REMAINDER, default=[], help="more `lit-llm fit` arguments")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:  # on a shared machine, two spinning OpenMP threads per process stall on each other
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="lit-llm-whole-") as tmp:
        workdir = args.workdir or Path(tmp)
        shards, bins = prepare_data(workdir)
        machine = f"{machine_description()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} for both)"
        results = [measure(s, i, args.pairs, shards, bins, workdir, args.lit_llm_args) for s, i in args.runs]
    print(f"\n{datetime.date.today()}, {machine}, {versions()}\n{report(results)}")
    if args.json:
        summary = {"date": str(datetime.date.today()), "machine": machine, "versions": versions(), "runs": results}
        args.json.write_text(json.dumps(summary, indent=2))
    return results


if __name__ == "__main__":
    main()
