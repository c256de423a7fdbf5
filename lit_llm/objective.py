"""The training objective in plain PyTorch: next-token loss, AdamW parameter groups, learning-rate schedules.

Shared by the LightningModule, the benchmarks' bare loop and `plan --mfu measure`, so none of them
needs Lightning to compute what training computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LRScheduleName = Literal["cosine", "wsd", "constant"]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, computed in fp32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def weight_decay_groups(parameters, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay for matrices and embeddings, none for norms and biases."""
    trainable = [p for p in parameters if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup to ``peak``, then ``cosine`` (to ``minimum``), ``wsd`` (stable, then a linear decay
    over the last ``decay_fraction`` of the steps) or ``constant``."""

    peak: float
    minimum: float
    warmup_steps: int
    name: LRScheduleName = "cosine"
    decay_fraction: float = 0.2

    def at(self, step: int, total_steps: int) -> float:
        """Learning rate at an optimizer step of a run of ``total_steps``."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        if self.name == "constant":
            return self.peak
        if self.name == "wsd":
            decay_start = total_steps - int(self.decay_fraction * total_steps)
            if step < decay_start:
                return self.peak
            progress = (step - decay_start) / max(1, total_steps - decay_start)
            return self.peak + (self.minimum - self.peak) * min(progress, 1.0)
        progress = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
        return self.minimum + 0.5 * (self.peak - self.minimum) * (1 + math.cos(math.pi * progress))
