"""The first impression: the README's CPU run, timed as a whole process as a user waits for it, against
nanoGPT's own train.py run as its README runs it on a CPU (benchmarks/nanogpt.py: an unmodified copy made at
run time from ../shared/reference/nanoGPT).

Both train the same model shape (4 layers x 128, context 64), batch 12, AdamW, the same warmup + cosine
learning-rate schedule and clipping, on the same bytes of tiny Shakespeare (each in its own format: lit-llm's
byte shards, vocabulary 257 padded to 320; nanoGPT's 65 characters), for the same steps with an
evaluation every ``interval`` steps:

  lit-llm   lit-llm fit --config experiments/shakespeare-char-cpu.yaml --trainer.max_steps STEPS
                --trainer.val_check_interval INTERVAL  (its 2-batch sanity check, 20 val batches, text sample
                and best.ckpt at every validation, last.ckpt at the end, TensorBoard, progress bar)
  nanoGPT   python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
                --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
                --dropout=0.0 --max_iters=STEPS --lr_decay_iters=STEPS --eval_interval=INTERVAL
                --always_save_checkpoint=False  (20 train + 20 val batches at iteration 0 and every
                INTERVAL, ckpt.pt when the val loss improves, iterations 0..STEPS)

A run is the wall time from starting the process to its exit: interpreter and imports, set-up, every
step and every evaluation. Each pair runs the two one after the other, alternating which goes first
(lit-llm first in pairs 1, 3, ...), so both see the same load on a shared machine; reported are every
run's time, the medians and the median of the paired ratios. Data preparation is not timed.

    python -m benchmarks.whole_process --runs 300:100 2000:250 --pairs 3 --json whole.json
    python -m benchmarks.whole_process --pairs 3 --parallel 3      # the 3 pairs side by side (spare cores)
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import (
    REPO,
    SHAKESPEARE,
    machine_description,
    markdown_table,
    paired_ratio,
    run_timed,
    versions,
)
from benchmarks.nanogpt import NANOGPT, prepare_nanogpt, train_command

CONFIG = REPO / "experiments" / "shakespeare-char-cpu.yaml"


def prepare_data(workdir: Path, nanogpt: Path) -> tuple[Path, Path]:
    """lit-llm's byte shards and a prepared copy of nanoGPT, from the same text (untimed)."""
    from lit_llm.data.prepare import prepare

    shards = workdir / "shakespeare-char"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        prepare([str(SHAKESPEARE)], str(shards), tokenizer="byte", num_workers=1, overwrite=True)
    return shards, prepare_nanogpt(workdir, nanogpt)


def commands(steps: int, interval: int, shards: Path, nanogpt: Path, run_dir: Path, extra: list[str]) -> dict:
    """Each side's command line and the folder it runs in."""
    lit_llm = Path(sys.executable).with_name("lit-llm")  # the installed script, without a pyenv shim
    return {
        "lit-llm": (
            [
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
            REPO,
        ),
        "nanoGPT": (train_command(steps, interval, run_dir / "nanogpt"), nanogpt),
    }


def time_process(command: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the whole process; its output goes to ``log``. CPU time does not count
    the waits that other jobs' load causes, the wall clock does."""
    with log.open("w") as out:
        wall, cpu, code = run_timed(command, cwd, out, subprocess.STDOUT)
    if code:
        raise SystemExit(f"{' '.join(command)} exited with {code}; its output: {log}")
    return wall, cpu


def measure(
    steps: int,
    interval: int,
    pairs: int,
    shards: Path,
    nanogpt: Path,
    workdir: Path,
    extra: list[str],
    parallel: int = 1,
) -> dict:
    def run_pair(pair: int) -> dict[str, tuple[float, float]]:
        run_dir = workdir / f"runs-{steps}-{interval}-{pair}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resumed one
        run_dir.mkdir(parents=True)
        both = list(commands(steps, interval, shards, nanogpt, run_dir, extra).items())
        timings = {}
        for name, (command, cwd) in both[:: 1 - 2 * (pair % 2)]:  # lit-llm first in even pairs, nanoGPT in odd
            timings[name] = wall, cpu = time_process(command, cwd, run_dir / f"{name}.log")
            print(
                f"{steps} steps, eval every {interval}, pair {pair + 1}/{pairs}: {name} {wall:.1f} s ({cpu:.1f} CPU s)",
                flush=True,
            )
        return timings

    with ThreadPoolExecutor(parallel) as pool:  # parallel > 1: pairs side by side, each still one after the other
        timed = list(pool.map(run_pair, range(pairs)))
    times = {name: [t[name][0] for t in timed] for name in ("lit-llm", "nanoGPT")}
    cpu_times = {name: [t[name][1] for t in timed] for name in ("lit-llm", "nanoGPT")}
    paired = paired_ratio(times["nanoGPT"], times["lit-llm"], minimum=1)
    paired_cpu = paired_ratio(cpu_times["nanoGPT"], cpu_times["lit-llm"], minimum=1)
    return {
        "steps": steps,
        "interval": interval,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "median_seconds": {name: statistics.median(t) for name, t in times.items()},
        "median_cpu_seconds": {name: statistics.median(t) for name, t in cpu_times.items()},
        "speed_vs_nanogpt": paired[0],  # nanoGPT's time / lit-llm's time, median over pairs
        "speed_interval": paired[1:],
        "cpu_speed_vs_nanogpt": paired_cpu[0],  # the same in CPU seconds: steadier on a loaded machine
    }


def report(results: list[dict]) -> str:
    """One row per run length: every run's wall seconds (in pair order), the medians and the paired ratio."""

    def each(r: dict, name: str) -> str:
        return ", ".join(f"{t:.1f}" for t in r["seconds"][name])

    rows = [
        [
            f"{r['steps']} / {r['interval']}",
            each(r, "lit-llm"),
            each(r, "nanoGPT"),
            ", ".join(f"{n / t:.2f}" for n, t in zip(r["seconds"]["nanoGPT"], r["seconds"]["lit-llm"])),
            f"{r['median_seconds']['lit-llm']:.1f} / {r['median_seconds']['nanoGPT']:.1f}",
            f"{r['median_cpu_seconds']['lit-llm']:.1f} / {r['median_cpu_seconds']['nanoGPT']:.1f}",
            f"**{r['speed_vs_nanogpt']:.2f}x** ({r['speed_interval'][0]:.2f}-{r['speed_interval'][1]:.2f})",
            f"{r['cpu_speed_vs_nanogpt']:.2f}x",
        ]
        for r in results
    ]
    header = [
        "steps / eval every",
        "lit-llm wall s, each pair",
        "nanoGPT wall s, each pair",
        "speed per pair",
        "median wall s lit-llm / nanoGPT",
        "median CPU s lit-llm / nanoGPT",
        "lit-llm speed vs nanoGPT, median pair (95% interval)",
        "the same in CPU time",
    ]
    return markdown_table(header, rows)


def parse_run(text: str) -> tuple[int, int]:
    steps, _, interval = text.partition(":")
    if not interval:
        raise argparse.ArgumentTypeError(f"--runs takes STEPS:INTERVAL pairs such as 300:100, got {text!r}")
    return int(steps), int(interval)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=parse_run, default=[(300, 100), (2000, 250)], metavar="STEPS:INTERVAL")
    p.add_argument("--pairs", type=int, default=3, help="A B repetitions of every run")
    p.add_argument(
        "--parallel", type=int, default=1, help="pairs at once (1: strictly one run after the other; needs spare cores)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads of both (OMP_NUM_THREADS; 0: torch's choice)")
    p.add_argument("--lit-llm-args", nargs=argparse.REMAINDER, default=[], help="more `lit-llm fit` arguments")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--nanogpt", type=Path, default=NANOGPT, help="an unmodified nanoGPT checkout (read only)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:  # on a shared machine, two spinning OpenMP threads per process stall on each other
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="lit-llm-whole-") as tmp:
        workdir = args.workdir or Path(tmp)
        shards, nanogpt = prepare_data(workdir, args.nanogpt)
        machine = f"{machine_description()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} for both)"
        results = [
            measure(s, i, args.pairs, shards, nanogpt, workdir, args.lit_llm_args, args.parallel) for s, i in args.runs
        ]
    print(f"\n{datetime.date.today()}, {machine}, {versions()}\n{report(results)}")
    if args.json:
        summary = {"date": str(datetime.date.today()), "machine": machine, "versions": versions(), "runs": results}
        args.json.write_text(json.dumps(summary, indent=2))
    return results


if __name__ == "__main__":
    main()
