"""What each pre-training recipe switch (docs/recipe.md) costs per training step, on the TinyStories model.

One process times one fp32 training step (forward, backward, clipping, fused AdamW with the skip-step guard)
of every variant in turn on the same real batches, so load from other processes falls on all of them alike,
and prints each variant's median step time against the baseline's. The table is in docs/results.md
("Pre-training recipe ablations"). Needs the prepared TinyStories data (docs/results.md, §2).

    OMP_NUM_THREADS=1 python -m benchmarks.recipe_step_time --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT, document_mask
from lit_llm.model.objective import next_token_loss, next_token_loss_with_z
from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.spikes import NonFiniteGuard, SpikeDetector

# experiments/tinystories.yaml's model with its data's vocabulary
CONFIG = ModelConfig(
    n_layer=4, n_head=4, n_kv_head=2, n_embd=192, block_size=256, positions="rope", norm="rmsnorm", mlp="swiglu",
    vocab_size=4096,
)  # fmt: skip
VARIANTS = ("baseline", "masking", "zloss", "spike")
WARMUP_ROUNDS = 3


def training_step(variant: str, eot_id: int):
    """A fresh model and optimizer, and a function that trains them one step on a (B, T+1) batch."""
    torch.manual_seed(0)
    model = GPT(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    guard = NonFiniteGuard()
    spikes = SpikeDetector(sigma=6.0, window=100) if variant == "spike" else None

    def step(batch: torch.Tensor) -> None:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(inputs, documents=document_mask(inputs, eot_id) if variant == "masking" else None)
        if variant == "zloss":
            loss = next_token_loss_with_z(logits, targets, 1e-4).total
        else:
            loss = next_token_loss(logits, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        guard.record(optimizer, norm, spikes.check(loss.detach(), norm) if spikes else None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="checkpoints/data/tinystories")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (after 3 warm-up rounds)")
    args = parser.parse_args()
    data = TokenDataModule(args.data_dir, batch_size=8, num_workers=0)
    data.connect(block_size=CONFIG.block_size)
    batches = [batch.long() for batch, _ in zip(data.train_dataloader(), range(args.rounds + WARMUP_ROUNDS))]
    eot_id = data.tokenizer.eot_id
    documents = float((torch.stack(batches)[:, :, :-1] == eot_id).sum(-1).float().mean()) + 1
    print(f"{documents:.2f} documents per sequence on average")

    steps = {variant: training_step(variant, eot_id) for variant in VARIANTS}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_, batch in enumerate(batches):
        for variant in VARIANTS:
            start = time.perf_counter()
            steps[variant](batch)
            if round_ >= WARMUP_ROUNDS:
                times[variant].append(time.perf_counter() - start)
    baseline = statistics.median(times["baseline"])
    tokens = batches[0].size(0) * CONFIG.block_size
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        per_second = tokens / median
        print(f"{variant:9s} median step {median * 1000:7.1f} ms  {per_second:7.0f} tokens/s  x{median / baseline:.3f}")


if __name__ == "__main__":
    main()
