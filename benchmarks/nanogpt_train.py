"""A plain single-file training script with nanoGPT's ``train.py`` loop and evaluation cadence.

The yardstick of benchmarks/whole_process.py, written for the benchmark and independent of lit_llm (the
model is benchmarks/reference_gpt.py, as nanoGPT's train.py imports its model.py). What it keeps from
nanoGPT's train.py, as its README's CPU run (``--device=cpu --compile=False --eval_iters=20``) runs it:

- data: ``train.bin`` / ``val.bin`` token files read through a fresh ``np.memmap`` per batch, random
  offsets drawn with ``torch.randint``;
- evaluation at iteration 0 and every ``--eval-interval`` iterations: ``--eval-iters`` batches of the
  train split and of the val split, in eval mode; a checkpoint (model, optimizer, arguments) written
  whenever the val loss improves, from the first evaluation after iteration 0;
- the loop runs iterations 0 .. ``max_iters`` inclusive (so ``max_iters + 1`` optimizer steps), with
  warmup + cosine learning rate set by hand each iteration, gradient clipping, AdamW with decay on
  matrices (fused only on CUDA), ``zero_grad(set_to_none=True)``, and ``loss.item()`` printed every
  ``--log-interval`` iterations.

    python -m benchmarks.nanogpt_train --data-dir DIR --out-dir DIR --max-iters 300 --eval-interval 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.reference_gpt import ReferenceConfig, ReferenceGPT


def write_bins(text_file: Path, out_dir: Path, val_fraction: float = 0.1) -> None:
    """nanoGPT's shakespeare_char/prepare.py, with bytes as tokens: the first 90% trains, the rest validates."""
    data = np.frombuffer(text_file.read_bytes(), dtype=np.uint8).astype(np.uint16)
    n = int(len(data) * (1 - val_fraction))
    out_dir.mkdir(parents=True, exist_ok=True)
    data[:n].tofile(out_dir / "train.bin")
    data[n:].tofile(out_dir / "val.bin")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="holds train.bin and val.bin (uint16 tokens)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--max-iters", type=int, default=2000)
    p.add_argument("--eval-interval", type=int, default=250)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--log-interval", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=320)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--whole-val", action="store_true", help="after training, also score the whole val split")
    return p.parse_args(argv)


@torch.no_grad()
def whole_split_loss(model: ReferenceGPT, data: np.ndarray, block_size: int, device, batch_size: int = 64) -> float:
    """Mean loss over every token of ``data`` after the first, in non-overlapping windows of the context (what
    `lit-llm evaluate --stride CONTEXT` measures); not part of nanoGPT's recipe, so timed apart by callers."""
    model.eval()
    tokens = torch.from_numpy(data.astype(np.int64)).to(device)
    n_windows = (len(tokens) - 1) // block_size
    total, count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        idx = torch.arange(start, min(start + batch_size, n_windows)) * block_size
        x = torch.stack([tokens[i : i + block_size] for i in idx])
        y = torch.stack([tokens[i + 1 : i + 1 + block_size] for i in idx])
        total += model(x, y).item() * y.numel()
        count += y.numel()
    rest = (len(tokens) - 1) - n_windows * block_size  # the tail, as a shorter window
    if rest:
        total += model(tokens[-rest - 1 : -1][None], tokens[-rest:][None]).item() * rest
        count += rest
    return total / count


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(args.data_dir / f"{split}.bin", dtype=np.uint16, mode="r")  # fresh: avoids a memory leak
        ix = torch.randint(len(data) - args.block_size, (args.batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + args.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + args.block_size].astype(np.int64)) for i in ix])
        return x.to(device), y.to(device)

    config = ReferenceConfig(args.block_size, args.vocab_size, args.n_layer, args.n_head, args.n_embd, bias=False)
    model = ReferenceGPT(config).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=(0.9, args.beta2), **({"fused": True} if device.type == "cuda" else {})
    )

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        out = {
            split: float(np.mean([model(*get_batch(split)).item() for _ in range(args.eval_iters)]))
            for split in ("train", "val")
        }
        model.train()
        return out

    def get_lr(it: int) -> float:
        if it < args.warmup_iters:
            return args.learning_rate * (it + 1) / (args.warmup_iters + 1)
        if it > args.max_iters:
            return args.min_lr
        ratio = (it - args.warmup_iters) / (args.max_iters - args.warmup_iters)
        return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.learning_rate - args.min_lr)

    best_val_loss, t0, start = 1e9, time.time(), time.perf_counter()
    evals = []
    X, Y = get_batch("train")
    for iter_num in range(args.max_iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(iter_num)
        if iter_num % args.eval_interval == 0:
            losses = estimate_loss()
            evals.append({"iter": iter_num, "seconds": time.perf_counter() - start, **losses})
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            if losses["val"] < best_val_loss:
                best_val_loss = losses["val"]
                if iter_num > 0:
                    checkpoint = {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "model_args": vars(config),
                        "iter_num": iter_num,
                        "best_val_loss": best_val_loss,
                        "config": {k: str(v) for k, v in vars(args).items()},
                    }
                    torch.save(checkpoint, os.path.join(args.out_dir, "ckpt.pt"))
        loss = model(X, Y)
        X, Y = get_batch("train")  # fetch the next batch while the model computes (on a GPU)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.time()
        dt, t0 = t1 - t0, t1
        if iter_num % args.log_interval == 0:
            print(f"iter {iter_num}: loss {loss.item():.4f}, time {dt * 1000:.2f}ms", flush=True)
    summary = {"seed": args.seed, "iters": args.max_iters + 1, "evals": evals}
    if args.whole_val:
        wall, cpu = time.perf_counter(), time.process_time()
        val = np.memmap(args.data_dir / "val.bin", dtype=np.uint16, mode="r")
        summary["whole_val_loss"] = whole_split_loss(model, val, args.block_size, device)
        summary["whole_val_seconds"] = time.perf_counter() - wall
        summary["whole_val_cpu_seconds"] = time.process_time() - cpu
    print(json.dumps(summary), flush=True)  # the last line: what benchmarks/speedrun.py reads


if __name__ == "__main__":
    main()
