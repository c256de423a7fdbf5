"""The training objective in plain PyTorch: next-token loss (plain, or chunked so the logits are never whole),
AdamW parameter groups, learning-rate schedules.

Shared by the LightningModule, the benchmarks' bare loop and `plan --mfu measure`, so none of them
needs Lightning to compute what training computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

LRScheduleName = Literal["cosine", "wsd", "constant"]
LossName = Literal["plain", "chunked"]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, computed in fp32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


class LossTerms(NamedTuple):
    """A step's objective and its parts: ``total`` (what is differentiated) = ``cross_entropy`` +
    ``z_loss``, the latter being the coefficient times the mean squared log of the softmax normaliser."""

    total: torch.Tensor
    cross_entropy: torch.Tensor
    z_loss: torch.Tensor


def next_token_loss_with_z(logits: torch.Tensor, targets: torch.Tensor, z_loss: float) -> LossTerms:
    """Cross-entropy plus PaLM's z-loss, ``z_loss · mean(log Z)²`` with ``log Z`` the logsumexp of each
    token's logits: it pulls the normaliser towards 1 (log Z to 0), which keeps the logits from drifting
    and the softmax out of the range where bf16 loses precision (PaLM, OLMo 2). One logsumexp serves both."""
    logits = logits.flatten(0, 1).float()
    log_normaliser = torch.logsumexp(logits, dim=-1)
    cross_entropy = (log_normaliser - logits.gather(1, targets.flatten()[:, None]).squeeze(1)).mean()
    z = z_loss * log_normaliser.square().mean()
    return LossTerms(cross_entropy + z, cross_entropy, z.detach())


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` (plus ``z_loss`` · mean squared logsumexp) that never
    holds all the logits; returns the objective and, not differentiable, its cross-entropy and z-loss parts.

    The forward pass walks chunks of tokens and computes each chunk's loss and its gradients at once
    (softmax minus the one-hot target; the z-loss adds 2·z_loss·logsumexp·softmax), so one chunk of fp32
    logits exists at a time and the backward pass only scales the stored gradients. Same FLOPs as the
    head, the loss and their backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens: int, z_loss: float):
        n = hidden.size(0)
        accumulate = torch.promote_types(weight.dtype, torch.float32)  # fp32 under autocast too
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=accumulate)
        cross_entropy = torch.zeros((), device=hidden.device, dtype=accumulate)
        squared_lse = torch.zeros((), device=hidden.device, dtype=accumulate)
        for start in range(0, n, chunk_tokens):
            h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
            logits = (h @ weight.T).to(accumulate)
            lse = torch.logsumexp(logits, dim=-1)
            cross_entropy += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            grad_logits = torch.exp_(logits.sub_(lse[:, None]))  # softmax, in place
            if z_loss:
                squared_lse += lse.square().sum()
                grad_logits.mul_(1 + 2 * z_loss * lse[:, None])
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
            grad_logits.div_(n)
            # under bf16 autocast these matmuls run in bf16, as the head's own backward would
            grad_hidden[start : start + chunk_tokens] = grad_logits @ weight
            grad_weight += grad_logits.T @ h
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        cross_entropy, z = cross_entropy / n, z_loss * squared_lse / n
        ctx.mark_non_differentiable(cross_entropy, z)
        return cross_entropy + z, cross_entropy, z

    @staticmethod
    def backward(ctx, grad_loss, _grad_cross_entropy, _grad_z):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def chunk_tokens_for(vocab_size: int, budget_bytes: int = 256 * 2**20) -> int:
    """Tokens per chunk so that one chunk's fp32 logits stay near ``budget_bytes``."""
    return max(128, budget_bytes // (4 * vocab_size))


def chunked_next_token_loss(
    hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int | None = None
) -> torch.Tensor:
    """``next_token_loss(hidden @ head_weight.T, targets)`` computed ``chunk_tokens`` tokens at a time.

    ``hidden`` is ``GPT.hidden_states`` (B, T, n_embd) and ``head_weight`` the output head's (vocab, n_embd)
    weight. At a large vocabulary the logits, their fp32 softmax and their gradient dominate a step's
    memory; here only one chunk of them exists at a time (docs/benchmarks.md).
    """
    hidden, targets = hidden.flatten(0, 1), targets.flatten()
    chunk_tokens = chunk_tokens or chunk_tokens_for(head_weight.size(0))
    if torch.is_grad_enabled() and (hidden.requires_grad or head_weight.requires_grad):
        return _ChunkedLinearCrossEntropy.apply(hidden, head_weight, targets, chunk_tokens, 0.0)[0]
    total = sum(  # no gradients wanted (validation): the losses alone, chunk by chunk
        F.cross_entropy((h @ head_weight.T).float(), t, reduction="sum")
        for h, t in zip(hidden.split(chunk_tokens), targets.split(chunk_tokens))
    )
    return total / hidden.size(0)


def chunked_next_token_loss_with_z(
    hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor, z_loss: float
) -> LossTerms:
    """``next_token_loss_with_z`` a chunk of tokens at a time (training only: validation has no z-loss)."""
    hidden, targets = hidden.flatten(0, 1), targets.flatten()
    chunk_tokens = chunk_tokens_for(head_weight.size(0))
    return LossTerms(*_ChunkedLinearCrossEntropy.apply(hidden, head_weight, targets, chunk_tokens, z_loss))


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
