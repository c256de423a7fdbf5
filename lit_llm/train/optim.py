"""Optimizers in plain PyTorch: AdamW, or Muon for the blocks' matrices with AdamW for everything else.

Muon (torch.optim.Muon) orthogonalises each matrix's momentum with a few Newton-Schulz iterations; it is
meant for the hidden layers' 2-D weights only. Embeddings, the output head, norms and biases keep AdamW.
Both live in one ``MuonWithAdamW`` optimizer, so a learning-rate scheduler, Lightning's automatic
optimisation and checkpoints see a single optimizer whose groups carry their own base learning rates.
"""

from __future__ import annotations

from typing import Literal

import torch

from lit_llm.model.model import GPT
from lit_llm.model.objective import weight_decay_groups

OptimizerName = Literal["adamw", "muon"]


def muon_parameters(model: GPT) -> list[torch.nn.Parameter]:
    """The transformer blocks' 2-D weights (attention and MLP matrices): what Muon optimises, and μP's
    hidden (matrix-like) weights."""
    return [p for p in model.blocks.parameters() if p.requires_grad and p.dim() == 2]


def adamw_groups(model: GPT, parameters, learning_rate: float, weight_decay: float) -> list[dict]:
    """``weight_decay_groups`` of ``parameters``; under μP the blocks' matrices among them get their own group
    at ``learning_rate / width multiplier``.

    μP's Adam rule (Tensor Programs V, Table 3; the mup package's MuAdamW): hidden weights' learning rate
    ∝ 1/fan_in, while vector-like parameters (embeddings, the readout, norms, biases) keep the base rate.
    As in MuAdamW the weight decay value is kept, so decoupled decay (lr × wd) shrinks with the rate.
    """
    groups = weight_decay_groups(parameters, weight_decay)
    if model.config.parametrization != "mup":
        return groups
    hidden = {id(p) for p in muon_parameters(model)}
    decay = groups[0]
    hidden_group = {
        "params": [p for p in decay["params"] if id(p) in hidden],
        "weight_decay": weight_decay,
        "lr": learning_rate / model.config.width_multiplier,
    }
    decay["params"] = [p for p in decay["params"] if id(p) not in hidden]
    return [*groups, hidden_group]  # last: train/lr logs the first group's rate


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for ``muon_params``, AdamW for ``adamw_groups``: one optimizer whose ``param_groups`` are
    both optimizers' groups (the same dicts, so a scheduler's learning rates reach them) and whose
    ``state`` is shared (the parameters are disjoint), so ``state_dict``/``load_state_dict`` are
    torch's own."""

    def __init__(
        self,
        muon_params: list[torch.nn.Parameter],
        adamw_groups: list[dict],
        *,
        muon_lr: float,
        muon_momentum: float,
        muon_ns_steps: int,
        muon_weight_decay: float,
        adamw_lr: float,
        betas: tuple[float, float],
        fused: bool | None,
    ) -> None:
        self.muon = torch.optim.Muon(
            muon_params, lr=muon_lr, momentum=muon_momentum, weight_decay=muon_weight_decay, ns_steps=muon_ns_steps
        )
        self.adamw = torch.optim.AdamW(adamw_groups, lr=adamw_lr, betas=betas, fused=fused)
        super().__init__(self.muon.param_groups + self.adamw.param_groups, defaults={})
        self._link()
        self.register_load_state_dict_post_hook(lambda optimizer: optimizer._link())

    def _link(self) -> None:
        """Point both inner optimizers at this optimizer's groups and state (again after a load replaced them)."""
        n_muon = len(self.muon.param_groups)
        self.muon.param_groups, self.adamw.param_groups = self.param_groups[:n_muon], self.param_groups[n_muon:]
        self.muon.state = self.adamw.state = self.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss


def build_optimizer(
    model: GPT,
    name: OptimizerName,
    *,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float],
    muon_lr: float = 0.02,
    muon_momentum: float = 0.95,
    muon_ns_steps: int = 5,
    sharded: bool = False,
) -> torch.optim.Optimizer:
    """AdamW over all parameters (``adamw``), or Muon for the blocks' matrices + AdamW for the rest (``muon``).

    ``sharded`` (FSDP2) is refused for Muon: it orthogonalises whole matrices, and each rank holds a shard.
    """
    params = list(model.parameters())
    fused = all(p.device.type in ("cuda", "cpu") for p in params) or None  # CPU: docs/benchmarks.md
    if name == "adamw":
        groups = adamw_groups(model, params, learning_rate, weight_decay)
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)
    if name != "muon":
        raise ValueError(f"model.optimizer={name!r} is unknown; choose adamw or muon")
    if not hasattr(torch.optim, "Muon"):
        raise ValueError(f"model.optimizer=muon needs torch.optim.Muon, missing in torch {torch.__version__}; upgrade")
    if sharded:
        raise ValueError(
            "model.optimizer=muon orthogonalises whole matrices, but fsdp2 shards each one over the ranks; "
            "use trainer.strategy ddp (or model.optimizer adamw)"
        )
    # Under μP Muon's matrices keep muon_lr at every width: its orthogonalised update has spectral norm 1,
    # times sqrt(max(1, fan_out/fan_in)) (torch's default adjust_lr_fn), which meets the spectral condition
    # for feature learning (Yang, Simon & Bernstein 2023: ||ΔW|| ∝ sqrt(fan_out/fan_in)) with no width
    # factor. The AdamW rest is vector-like (embeddings, readout, norms, biases): base rate under μP too.
    matrices = muon_parameters(model)
    ids = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in ids]
    return MuonWithAdamW(
        matrices,
        weight_decay_groups(rest, weight_decay),
        muon_lr=muon_lr,
        muon_momentum=muon_momentum,
        muon_ns_steps=muon_ns_steps,
        muon_weight_decay=weight_decay,
        adamw_lr=learning_rate,
        betas=betas,
        fused=fused,
    )
