"""μP learning-rate transfer: the same 5-point learning-rate sweep at widths 64 to 512, standard vs μP.

Trains lit_llm's GPT with lit_llm's optimizer, schedule and loss in a bare loop (no Lightning, no subprocess) on
the shipped tiny Shakespeare as bytes, every run on the same batches (one seed), and scores each by its final
loss on fixed validation batches. Under μP (base width 64) the best learning rate should stay put as the width
grows; under the standard parametrization it should move down. Writes docs/images/mup-sweep.{json,png} and
prints the table for docs/scaling.md. Parts of the sweep can run as separate processes and be merged:

    OMP_NUM_THREADS=1 nice python -m benchmarks.mup_sweep
    OMP_NUM_THREADS=1 nice python -m benchmarks.mup_sweep --widths 512 --parametrizations mup --out /tmp/part
    python -m benchmarks.mup_sweep --merge /tmp/part.json /tmp/other.json   # -> docs/images/mup-sweep.*
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness import REPO, SHAKESPEARE, markdown_table
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import LRSchedule, next_token_loss
from lit_llm.model.tokenizer import byte_tokenizer
from lit_llm.train.optim import build_optimizer

IMAGES = REPO / "docs" / "images"
PARAMETRIZATIONS = ("standard", "mup")


@dataclass(frozen=True)
class Recipe:
    """What every run of a sweep shares: the shape apart from the width, and the training loop."""

    n_layer: int = 2
    n_head: int = 4
    block_size: int = 64
    base_width: int = 64  # μP's mup_base_width: at this width both parametrizations coincide but for attention
    batch_size: int = 8
    steps: int = 200
    warmup_steps: int = 20
    lr_schedule: str = "cosine"
    optimizer: str = "adamw"  # or muon (at its default muon_lr) for the blocks' matrices
    weight_decay: float = 0.1
    val_batches: int = 16
    seed: int = 0
    tie_embeddings: bool = False

    def config(self, width: int, parametrization: str) -> ModelConfig:
        mup = parametrization == "mup"
        return ModelConfig(
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=width,
            block_size=self.block_size,
            tie_embeddings=self.tie_embeddings,
            parametrization=parametrization,
            mup_base_width=self.base_width if mup else None,
        ).with_vocab(byte_tokenizer().vocab_size)


def shakespeare_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped tiny Shakespeare as byte ids (the byte tokenizer's id is the byte): 90% train, 10% val."""
    data = torch.frombuffer(bytearray(SHAKESPEARE.read_bytes()), dtype=torch.uint8).long()
    n = int(0.9 * len(data))
    return data[:n], data[n:]


def batches(tokens: torch.Tensor, recipe: Recipe, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` batches of ``block_size + 1`` tokens at random offsets drawn from ``seed``: the same for every run."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(tokens) - recipe.block_size - 1, (count, recipe.batch_size), generator=generator)
    return [torch.stack([tokens[s : s + recipe.block_size + 1] for s in row.tolist()]) for row in starts]


def batch_loss(model: GPT, batch: torch.Tensor) -> torch.Tensor:
    return next_token_loss(model(batch[:, :-1]), batch[:, 1:])


def train(model: GPT, train_batches: list[torch.Tensor], learning_rate: float, recipe: Recipe) -> None:
    """The recipe's optimizer (μP's per-group rates under mup) and schedule, as `lit-llm fit` builds them; no
    clipping, so a learning rate that is too high shows as a high loss."""
    optimizer = build_optimizer(
        model, recipe.optimizer, learning_rate=learning_rate, weight_decay=recipe.weight_decay, betas=(0.9, 0.95)
    )
    schedule = LRSchedule(learning_rate, learning_rate / 10, recipe.warmup_steps, recipe.lr_schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule.at(step, len(train_batches)) / learning_rate
    )
    model.train()
    for batch in train_batches:
        loss = batch_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()


@torch.no_grad()
def evaluate(model: GPT, val_batches: list[torch.Tensor]) -> float:
    model.eval()
    loss = sum(batch_loss(model, b).item() for b in val_batches) / len(val_batches)
    return loss if math.isfinite(loss) else float("inf")


def run(width: int, parametrization: str, learning_rate: float, recipe: Recipe, data) -> float:
    train_batches, val_batches = data
    torch.manual_seed(recipe.seed)
    model = GPT(recipe.config(width, parametrization))
    train(model, train_batches, learning_rate, recipe)
    return evaluate(model, val_batches)


def best_rates(results: list[dict]) -> dict[str, dict[int, float]]:
    """The learning rate of the lowest final val loss, per parametrization and width."""
    best: dict[str, dict[int, dict]] = {}
    for r in results:
        current = best.setdefault(r["parametrization"], {}).get(r["width"])
        if current is None or r["val_loss"] < current["val_loss"]:
            best[r["parametrization"]][r["width"]] = r
    return {p: {w: r["learning_rate"] for w, r in rows.items()} for p, rows in best.items()}


def table(results: list[dict], widths: list[int], rates: list[float]) -> str:
    """Final val loss per (parametrization, width) and learning rate; the best of each row in bold."""
    by_key = {(r["parametrization"], r["width"], r["learning_rate"]): r["val_loss"] for r in results}
    best = best_rates(results)
    rows = []
    for p in PARAMETRIZATIONS:
        for w in widths:
            cells = [f"**{by_key[p, w, lr]:.3f}**" if best[p][w] == lr else f"{by_key[p, w, lr]:.3f}" for lr in rates]
            rows.append([p, str(w), *cells, f"{best[p][w]:g}"])
    return markdown_table(["parametrization", "width", *(f"lr {lr:g}" for lr in rates), "best lr"], rows)


def plot(results: list[dict], widths: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, p in zip(axes, PARAMETRIZATIONS):
        for w in widths:
            points = sorted(
                (r["learning_rate"], r["val_loss"]) for r in results if (r["parametrization"], r["width"]) == (p, w)
            )
            if points:  # a part of a sweep may lack a parametrization
                ax.plot(*zip(*points), marker="o", label=f"width {w}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate")
        ax.set_title({"standard": "standard parametrization", "mup": "μP (base width 64)"}[p])
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    finite = [r["val_loss"] for r in results if math.isfinite(r["val_loss"])]
    axes[0].set_ylim(min(finite) - 0.05, min(max(finite), min(finite) + 1.0) + 0.05)
    axes[0].set_ylabel("final val loss (nats per byte)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def write(results: list[dict], recipe: Recipe, cpu_s: float, out: Path) -> None:
    """``out``.json (every run), ``out``.png (loss against learning rate per width) and the table on stdout."""
    widths = sorted({r["width"] for r in results})
    rates = sorted({r["learning_rate"] for r in results})
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = dict(recipe=recipe.__dict__, widths=widths, rates=rates, results=results, cpu_s=cpu_s)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, widths, out.with_suffix(".png"))
    if {r["parametrization"] for r in results} == set(PARAMETRIZATIONS):
        print(table(results, widths, rates))
    print(f"{len(results)} runs in {cpu_s / 60:.1f} CPU minutes; wrote {out}.json and .png")


def merge(parts: list[Path], out: Path) -> None:
    """One sweep from the JSONs of sweeps run in parts (by width or parametrization) with the same recipe."""
    summaries = [json.loads(p.read_text()) for p in parts]
    if any(s["recipe"] != summaries[0]["recipe"] for s in summaries):
        raise SystemExit(f"{', '.join(map(str, parts))} were run with different recipes; merge parts of one sweep")
    results = [r for s in summaries for r in s["results"]]
    write(results, Recipe(**summaries[0]["recipe"]), sum(s["cpu_s"] for s in summaries), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="64,128,256,512")
    parser.add_argument("--parametrizations", default=",".join(PARAMETRIZATIONS))
    parser.add_argument("--rates", default="6.25e-4,1.25e-3,2.5e-3,5e-3,1e-2", help="5 values a factor 2 apart")
    parser.add_argument("--steps", type=int, default=Recipe.steps)
    parser.add_argument("--seed", type=int, default=Recipe.seed, help="the init and the batches drawn")
    parser.add_argument("--out", type=Path, default=IMAGES / "mup-sweep")
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these parts' JSONs into --out instead")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    recipe = Recipe(steps=args.steps, seed=args.seed)
    train_tokens, val_tokens = shakespeare_tokens()
    data = (
        batches(train_tokens, recipe, recipe.steps, recipe.seed),
        batches(val_tokens, recipe, recipe.val_batches, recipe.seed + 1),
    )
    results = []
    started = time.process_time()
    for width in [int(w) for w in args.widths.split(",")]:
        for p in args.parametrizations.split(","):
            for lr in [float(r) for r in args.rates.split(",")]:
                cpu = time.process_time()
                loss = run(width, p, lr, recipe, data)
                cpu = time.process_time() - cpu
                results.append(dict(parametrization=p, width=width, learning_rate=lr, val_loss=loss, cpu_s=cpu))
                print(f"{p:8s} width {width:4d} lr {lr:<8g} val loss {loss:.4f} ({cpu:.0f} CPU s)", flush=True)
    write(results, recipe, time.process_time() - started, args.out)


if __name__ == "__main__":
    main()
