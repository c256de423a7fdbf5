"""The yardstick: nanoGPT's own, unmodified train.py, run as its README runs it on a CPU.

nanoGPT's files live outside the project, in ``../shared/reference/nanoGPT`` (``--nanogpt`` elsewhere); they
are never copied into it. ``prepare_nanogpt`` copies them to a scratch folder at run time and prepares
``data/shakespeare_char`` there with nanoGPT's own ``prepare.py`` (its 65-character vocabulary, 90/10
split) from the same bytes of tiny Shakespeare lit-llm trains on. ``train_command`` is the README's CPU
command (``--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``) with the number
of iterations and the evaluation cadence given, ``--always_save_checkpoint=False`` (the config's own value,
written out) and its output folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import REPO, SHAKESPEARE

NANOGPT = Path(os.environ.get("LIT_LLM_NANOGPT", REPO.parent / "shared" / "reference" / "nanoGPT"))
FILES = ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py")
PREPARE = "data/shakespeare_char/prepare.py"
README_CPU = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]
EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)$", re.MULTILINE)


def prepare_nanogpt(workdir: Path, source: Path = NANOGPT) -> Path:
    """A scratch copy of nanoGPT with its Shakespeare data prepared (untimed); returns the copy's folder."""
    missing = [name for name in (*FILES, PREPARE) if not (source / name).is_file()]
    if missing:
        raise SystemExit(
            f"nanoGPT's reference files are missing from {source}: {', '.join(missing)}; "
            "point --nanogpt (or LIT_LLM_NANOGPT) at an unmodified nanoGPT checkout"
        )
    copy = workdir / "nanoGPT"
    for name in (*FILES, PREPARE):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, copy / name)  # copyfile: the reference folder is read-only
    data = copy / PREPARE
    shutil.copyfile(SHAKESPEARE, data.with_name("input.txt"))  # present, so prepare.py downloads nothing
    done = subprocess.run([sys.executable, data.name], cwd=data.parent, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"nanoGPT's {PREPARE} failed: {done.stderr.strip().splitlines()[-1:]}")
    return copy


def train_command(iters: int, eval_interval: int, out_dir: Path) -> list[str]:
    """nanoGPT's README CPU run for ``iters`` iterations (it runs iterations 0..iters, one more optimizer step
    than lit-llm's ``max_steps``), evaluating 20 train + 20 val batches at 0 and every ``eval_interval``.
    Run it in the copy's folder: train.py reads configurator.py, the config and data/ from there."""
    return [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        *README_CPU,
        f"--max_iters={iters}",
        f"--lr_decay_iters={iters}",
        f"--eval_interval={eval_interval}",
        "--always_save_checkpoint=False",
        f"--out_dir={out_dir}",
    ]


def evaluations(stdout: str) -> list[dict]:
    """nanoGPT's printed estimates, ``step N: train loss X, val loss Y``, in order."""
    return [{"step": int(s), "train": float(t), "val": float(v)} for s, t, v in EVAL_LINE.findall(stdout)]
