"""μP's coordinate check (Tensor Programs V, §D.1 and the mup package's ``get_coord_data``): activation scales
against width over the first training steps, standard parametrization vs μP.

Trains lit_llm's GPT at several widths for a few steps at one constant learning rate (the bare loop of
benchmarks/mup_sweep.py, tiny Shakespeare as bytes) and records, on each step's forward pass, the mean
|activation| of the embeddings, of each block's output and of the logits. Under μP they stay flat as the width
grows; under the standard parametrization the logits (and, after a few steps, the blocks' outputs) grow with it.
Writes docs/images/coord-check.{json,png}.

    OMP_NUM_THREADS=1 python -m benchmarks.coord_check
    OMP_NUM_THREADS=1 python -m benchmarks.coord_check --optimizer muon --out docs/images/coord-check-muon
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.mup_sweep import IMAGES, PARAMETRIZATIONS, Recipe, batches, shakespeare_tokens, train
from lit_llm.model.model import GPT

RECIPE = Recipe(warmup_steps=0, lr_schedule="constant", weight_decay=0.0)


def activation_scales(width: int, parametrization: str, steps: int, learning_rate: float, recipe: Recipe = RECIPE):
    """Mean |activation| per step of ``embeddings``, ``block i`` and ``logits`` while training ``steps`` steps."""
    torch.manual_seed(recipe.seed)
    model = GPT(recipe.config(width, parametrization))
    scales: dict[str, list[float]] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            scales.setdefault(name, []).append(output.detach().abs().mean().item())

        return hook

    model.wte.register_forward_hook(record("embeddings"))
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(record(f"block {i}"))
    model.register_forward_hook(record("logits"))
    train(model, batches(shakespeare_tokens()[0], recipe, steps, recipe.seed), learning_rate, recipe)
    return scales


def coord_check(widths: list[int], steps: int, learning_rate: float, recipe: Recipe = RECIPE) -> list[dict]:
    return [
        dict(parametrization=p, width=w, scales=activation_scales(w, p, steps, learning_rate, recipe))
        for p in PARAMETRIZATIONS
        for w in widths
    ]


def plot(results: list[dict], out: Path) -> None:
    """One panel per (parametrization, activation), each column on one scale: mean |activation| against width,
    one line per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results[0]["scales"])
    fig, axes = plt.subplots(2, len(names), figsize=(3 * len(names), 6), squeeze=False, sharey="col")
    for row, p in zip(axes, PARAMETRIZATIONS):
        runs = [r for r in results if r["parametrization"] == p]
        widths = [r["width"] for r in runs]
        for ax, name in zip(row, names):
            for step in range(len(runs[0]["scales"][name])):
                ax.plot(widths, [r["scales"][name][step] for r in runs], marker=".", label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'μP' if p == 'mup' else 'standard'}: {name}", fontsize=9)
            ax.set_xlabel("width", fontsize=8)
    axes[0][0].set_ylabel("mean |activation|")
    axes[1][0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="64,128,256,512,1024")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--learning_rate", type=float, default=1e-2)
    parser.add_argument("--optimizer", default="adamw", help="adamw, or muon (at muon_lr 0.02) for the matrices")
    parser.add_argument("--out", type=Path, default=IMAGES / "coord-check")
    args = parser.parse_args(argv)
    recipe = replace(RECIPE, optimizer=args.optimizer)
    results = coord_check([int(w) for w in args.widths.split(",")], args.steps, args.learning_rate, recipe)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = dict(recipe=recipe.__dict__, learning_rate=args.learning_rate, results=results)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    for r in results:
        last = {name: f"{values[-1]:.3g}" for name, values in r["scales"].items()}
        print(f"{r['parametrization']:8s} width {r['width']:5d} last step: {last}")
    print(f"wrote {args.out}.json and .png")


if __name__ == "__main__":
    main()
