"""nanoGPT's Shakespeare-char CPU recipe, as an independent plain-PyTorch process: the speedrun's yardstick.

Written for the benchmark, not copied from nanoGPT nor built on lit_llm: its train.py loop with
config/train_shakespeare_char.py and the CPU overrides of nanoGPT's README (--device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--max_iters=2000 --lr_decay_iters=2000 --dropout=0.0). That is: characters as tokens (65 of them),
the first 90% of the text to train on, random windows per batch, AdamW (lr 1e-3, betas 0.9/0.99,
weight decay 0.1 on matrices), 100 warmup iterations then cosine to 1e-4, clipping at 1.0, iterations
0..2000 inclusive, an estimate over 20 batches of each split every 250 iterations (and a checkpoint when
it improves), a log line every iteration. The model is ``reference_gpt.ReferenceGPT`` (nanoGPT's model).

    python benchmarks/nanogpt_cpu.py --seed 1337 [--whole_val]

Prints one JSON line at the end: estimates per evaluation, and with ``--whole_val`` the loss over the
whole val split in non-overlapping windows (what ``lit-llm evaluate --stride`` = context measures),
timed separately because it is not part of nanoGPT's recipe.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reference_gpt, when run as a module too
from reference_gpt import ReferenceConfig, ReferenceGPT  # noqa: E402

TEXT = Path(__file__).resolve().parents[1] / "data" / "tinyshakespeare.txt"
RECIPE = dict(
    n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000, lr_decay_iters=2000,
    learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0,
    eval_interval=250, eval_iters=20, log_interval=1,
)  # fmt: skip


def char_data(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """nanoGPT's data/shakespeare_char/prepare.py: a vocabulary of the text's characters, a 90/10 split."""
    text = path.read_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    return data[:n], data[n:], len(chars)


def get_batch(data: torch.Tensor, block_size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def get_lr(it: int, r: dict) -> float:
    if it < r["warmup_iters"]:
        return r["learning_rate"] * (it + 1) / (r["warmup_iters"] + 1)
    if it > r["lr_decay_iters"]:
        return r["min_lr"]
    ratio = (it - r["warmup_iters"]) / (r["lr_decay_iters"] - r["warmup_iters"])
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["learning_rate"] - r["min_lr"])


@torch.no_grad()
def estimate_loss(model: ReferenceGPT, splits: dict[str, torch.Tensor], r: dict) -> dict[str, float]:
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = [model(*get_batch(data, r["block_size"], r["batch_size"])).item() for _ in range(r["eval_iters"])]
        out[name] = sum(losses) / len(losses)
    model.train()
    return out


@torch.no_grad()
def whole_split_loss(model: ReferenceGPT, data: torch.Tensor, block_size: int, batch_size: int = 64) -> float:
    """Mean loss over every token of ``data`` after the first, in non-overlapping windows of the context."""
    model.eval()
    n_windows = (len(data) - 1) // block_size
    total, count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        idx = torch.arange(start, min(start + batch_size, n_windows)) * block_size
        x = torch.stack([data[i : i + block_size] for i in idx])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in idx])
        total += model(x, y).item() * y.numel()
        count += y.numel()
    rest = (len(data) - 1) - n_windows * block_size  # the tail, as a shorter window
    if rest:
        x, y = data[-rest - 1 : -1][None], data[-rest:][None]
        total += model(x, y).item() * rest
        count += rest
    return total / count


def train(r: dict, seed: int, out_dir: Path) -> tuple[ReferenceGPT, list[dict], torch.Tensor]:
    torch.manual_seed(seed)
    train_data, val_data, vocab = char_data(TEXT)
    config = ReferenceConfig(r["block_size"], vocab, r["n_layer"], r["n_head"], r["n_embd"], bias=False)
    model = ReferenceGPT(config)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": r["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=r["learning_rate"], betas=(r["beta1"], r["beta2"]))
    evals, best_val, t0 = [], 1e9, time.perf_counter()
    splits = {"train": train_data, "val": val_data}
    for it in range(r["max_iters"] + 1):
        lr = get_lr(it, r)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if it % r["eval_interval"] == 0:
            losses = estimate_loss(model, splits, r)
            evals.append({"iter": it, "seconds": time.perf_counter() - t0, **losses})
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            if losses["val"] < best_val and it > 0:
                best_val = losses["val"]
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": it}
                torch.save(state, out_dir / "ckpt.pt")
        loss = model(*get_batch(train_data, r["block_size"], r["batch_size"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it % r["log_interval"] == 0:
            print(f"iter {it}: loss {loss.item():.4f}, time {time.perf_counter() - t0:.2f}s", flush=True)
    return model, evals, val_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--max_iters", type=int, default=RECIPE["max_iters"], help="shorter runs for tests only")
    parser.add_argument("--whole_val", action="store_true", help="also score the whole val split at the end")
    args = parser.parse_args()
    recipe = {**RECIPE, "max_iters": args.max_iters, "lr_decay_iters": args.max_iters}
    with tempfile.TemporaryDirectory() as out_dir:
        model, evals, val_data = train(recipe, args.seed, Path(out_dir))
    result = {"seed": args.seed, "iters": args.max_iters + 1, "evals": evals}
    if args.whole_val:
        t0, cpu0 = time.perf_counter(), time.process_time()
        result["whole_val_loss"] = whole_split_loss(model, val_data, recipe["block_size"])
        result["whole_val_seconds"] = time.perf_counter() - t0
        result["whole_val_cpu_seconds"] = time.process_time() - cpu0
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
