"""Time to nanoGPT's Shakespeare loss: a lit-llm experiment against nanoGPT's CPU recipe, interleaved.

    python -m benchmarks.speedrun [--candidate experiments/shakespeare-speedrun-cpu.yaml] [--seeds 1337 1338 1339]
    python -m benchmarks.speedrun --json results/speedrun.json

For every seed it runs, one after the other and alternating which goes first (so a change in the
machine's load hits both alike):
- the reference, nanoGPT's own train.py as its README runs it on a CPU (``benchmarks/nanogpt.py``: an unmodified
  copy made at run time from ../shared/reference/nanoGPT; iterations 0..2000, 20 train + 20 val batches every
  250, its own 65-character data from the same bytes) as a whole process;
- the candidate, ``lit-llm fit --config CANDIDATE`` as a whole process (start-up, data, validations and
  checkpoints included), which stops itself at the target (``lit_llm.train.early_stop.StopAtTarget``),
  then, untimed, ``lit-llm evaluate`` of its final checkpoint over the whole val split in non-overlapping
  windows (``--stride`` = context): the metric. A seed counts only if that loss is at most the target.
Both get the same thread count (``--threads``, default 1, through OMP_NUM_THREADS). Wall time is the
measure; the CPU time of each process is printed beside it, since on a shared machine it varies less.
The reference's loss is its own last estimate (20 val batches), as its README reports it.
On a machine others load unevenly, ``--parallel 6`` runs all six processes at once instead, so that
both see the same load (the candidates end first, after which the references run a little faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

from benchmarks.harness import REPO, SHAKESPEARE, run_timed
from benchmarks.nanogpt import NANOGPT, evaluations, prepare_nanogpt, train_command
from lit_llm.checkpoint.files import CHECKPOINT_KEY
from lit_llm.model.config import ModelConfig


def timed(command: list[str], env: dict, log: Path, cwd: Path = REPO) -> tuple[float, float, str]:
    """Wall and CPU seconds of a whole process, and its stdout (its stderr goes to ``log``); a failure is fatal."""
    with open(log, "w") as err, open(log.with_suffix(".out"), "w+") as out:
        wall, cpu, code = run_timed(command, cwd, out, err, env)
        out.seek(0)
        stdout = out.read()
    if code != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {code}); its output: {log}")
    return wall, cpu, stdout


def lit_llm(*args: str) -> list[str]:
    return [sys.executable, "-m", "lit_llm.cli", *args]


def run_reference(seed: int, env: dict, out: Path, nanogpt: Path, iters: int) -> dict:
    """nanoGPT's README CPU run; its train.py has no seed option (it seeds 1337 itself), so every seed's
    reference is the same run, timed again beside that seed's candidate."""
    wall, cpu, stdout = timed(
        train_command(iters, 250, out / f"reference-{seed}"), env, out / f"reference-{seed}.log", nanogpt
    )
    # nanoGPT's 4x128 on its 65 characters, 12 x 64 tokens an iteration
    flops_per_token = ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65).flops_per_token()
    tokens = (iters + 1) * 12 * 64
    return {
        "seed": seed,
        "seconds": wall,
        "cpu_seconds": cpu,
        "steps": iters + 1,
        "tokens": tokens,
        "flops": tokens * flops_per_token,
        "val_loss": evaluations(stdout)[-1]["val"],  # its own estimate over 20 val batches
    }


def run_candidate(config: Path, seed: int, env: dict, out: Path, data_dir: Path, overrides: list[str]) -> dict:
    run_dir = out / f"candidate-{seed}"
    fit = ["fit", "--config", str(config), "--seed_everything", str(seed), "--data.data_dir", str(data_dir)]
    fit += ["--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false", *overrides]
    wall, cpu, _ = timed(lit_llm(*fit), env, out / f"candidate-{seed}.log")
    checkpoint_path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model_config = ModelConfig(**checkpoint[CHECKPOINT_KEY]["model_config"])
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    seq_len = resolved["data"].get("seq_len") or model_config.block_size
    sequences = resolved["model"].get("global_batch_size") or resolved["data"]["batch_size"]
    evaluate = ["evaluate", "--checkpoint", str(checkpoint_path), "--inputs", str(data_dir), "--split", "val"]
    evaluate += ["--context", str(model_config.block_size), "--stride", str(model_config.block_size), "--json"]
    _, _, stdout = timed(lit_llm(*evaluate), env, out / f"evaluate-{seed}.log")
    scored = json.loads(stdout[stdout.index("{") :])
    steps = checkpoint["global_step"]
    return {
        "seed": seed,
        "seconds": wall,
        "cpu_seconds": cpu,
        "steps": steps,
        "tokens": steps * sequences * seq_len,
        "flops": steps * sequences * seq_len * model_config.flops_per_token(seq_len),
        "val_loss": scored["total"]["loss"],
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def report(reference: list[dict], candidate: list[dict], target: float) -> dict:
    ratios = [c["seconds"] / r["seconds"] for r, c in zip(reference, candidate)]
    cpu_ratios = [c["cpu_seconds"] / r["cpu_seconds"] for r, c in zip(reference, candidate)]
    print(f"{'':>10} {'seed':>6} {'wall s':>8} {'cpu s':>8} {'steps':>6} {'tokens':>10} {'PFLOP':>7} {'val loss':>9}")
    for name, rows in (("reference", reference), ("candidate", candidate)):
        for r in rows:
            print(
                f"{name:>10} {r['seed']:>6} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['steps']:>6} "
                f"{r['tokens']:>10,} {r['flops'] / 1e15:>7.3f} {r['val_loss']:>9.4f}"
            )
    reached = all(c["val_loss"] <= target for c in candidate)
    summary = {
        "target": target,
        "reference_seconds": statistics.median(r["seconds"] for r in reference),
        "candidate_seconds": statistics.median(c["seconds"] for c in candidate),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
        "every_seed_reached_target": reached,
    }
    print(f"reference wall s: {spread([r['seconds'] for r in reference])}")
    print(f"candidate wall s: {spread([c['seconds'] for c in candidate])}")
    print(f"wall ratio candidate/reference, per seed: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"median {summary['ratio']:.3f}; CPU-time ratio median {summary['cpu_ratio']:.3f}")  # fmt: skip
    print(f"every candidate seed reached val loss <= {target} over the whole val split: {reached}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, default=REPO / "experiments" / "shakespeare-speedrun-cpu.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    parser.add_argument("--target", type=float, default=1.88, help="whole-val-split loss to reach")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for both processes")
    parser.add_argument("--data_dir", type=Path, default=REPO / "checkpoints" / "data" / "shakespeare-char")
    parser.add_argument("--out_dir", type=Path, default=REPO / "checkpoints" / "speedrun")
    parser.add_argument("--reference_iters", type=int, default=2000, help="shorten the reference (tests only)")
    parser.add_argument("--nanogpt", type=Path, default=NANOGPT, help="an unmodified nanoGPT checkout (read only)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="processes at once (1: strictly one after the other; 6: all together)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and summary here")
    parser.add_argument("overrides", nargs="*", help="extra `lit-llm fit` arguments for the candidate")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    out = args.out_dir / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    if not (args.data_dir / "metadata.json").is_file():
        prepare = ["prepare", "--inputs", str(SHAKESPEARE), "--output_dir", str(args.data_dir), "--tokenizer", "byte"]
        timed(lit_llm(*prepare), env, out / "prepare.log")
    nanogpt = prepare_nanogpt(out, args.nanogpt)

    # Interleaved: reference, candidate for the first seed, candidate, reference for the next, and so on.
    jobs = [
        (kind, seed) for i, seed in enumerate(args.seeds) for kind in ("reference", "candidate")[:: 1 - 2 * (i % 2)]
    ]

    def run(job: tuple[str, int]) -> dict:
        kind, seed = job
        if kind == "reference":
            result = run_reference(seed, env, out, nanogpt, args.reference_iters)
        else:
            result = run_candidate(args.candidate, seed, env, out, args.data_dir, args.overrides)
        print(f"{kind} seed {seed}: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU, "
              f"val loss {result['val_loss']:.4f}", flush=True)  # fmt: skip
        return result

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(run, jobs))
    reference = sorted((r for (kind, _), r in zip(jobs, results) if kind == "reference"), key=lambda r: r["seed"])
    candidate = sorted((r for (kind, _), r in zip(jobs, results) if kind == "candidate"), key=lambda r: r["seed"])
    summary = report(reference, candidate, args.target)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps({"reference": reference, "candidate": candidate, "summary": summary}, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
