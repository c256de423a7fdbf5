"""Peak memory per GPU of a training setup, counted from what ``lit_llm.model.model.GPT`` keeps alive under the
sharding and checkpointing that ``lit_llm.distributed.parallelize.parallelize`` applies (docs/plan.md derives each term
and checks it against measured peaks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lit_llm.model.config import ModelConfig
from lit_llm.planning.estimate import PRECISIONS
from lit_llm.planning.hardware import Accelerator

HEADROOM = 0.9  # plan to 90% of the card: allocator fragmentation and short-lived temporaries take the rest


FRAMEWORK_OVERHEAD_BYTES = 1e9  # CUDA context, cuBLAS workspaces and NCCL buffers: memory no tensor accounts for


LOSS_BYTES = 4  # logits are upcast to fp32 for the cross-entropy, whatever the training precision


GB = 1e9  # vendors' GB, the unit of lit_llm.planning.hardware's memory column


STRATEGIES = ("single", "ddp", "fsdp")  # in order of cost: no communication, an all-reduce, gathers + reduce-scatters


@dataclass(frozen=True)
class Memory:
    """Peak bytes per GPU of one training setup. Gradients and activations are summed although backward frees
    activations as it creates gradients: the slight overestimate is the safe side for "does it fit"."""

    weights: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations


def block_activation_bytes_per_token(config: ModelConfig, precision: str, seq_len: int) -> int:
    """Bytes one transformer block saves for backward, per token (what autograd keeps in lit_llm.model.model.Block).

    Residual dtype: the block input and the mid-block sum (each norm's saved input), plus the normalized input
    that RMSNorm's composite kernel also saves. Compute dtype: both norm outputs (saved by the next matmul),
    the fused qkv output (SDPA keeps q, k, v as views of it), the attention output, rotated q and k (RoPE),
    and the MLP: GELU saves its input and output; SwiGLU saves the fused [gate | up] (2I), silu(gate) and
    the product. Fused attention kernels store no T×T scores, except in the one case below. Per-row norm
    statistics and attention log-sum-exp are under 2% and not counted; nor are dropout masks (1 byte per
    element, and dropout is rare in pre-training).
    """
    b = PRECISIONS[precision]
    d, kv, inter = config.n_embd, config.n_kv_head * config.head_size, config.intermediate_size
    residual = 2 * d + (2 * d if config.norm == "rmsnorm" else 0)
    compute = 2 * d + (d + 2 * kv) + d + (d + kv if config.positions == "rope" else 0)
    compute += (4 if config.mlp == "swiglu" else 2) * inter
    return residual * b.residual + compute * b.compute + attention_matrix_bytes_per_token(config, precision, seq_len)


def attention_matrix_bytes_per_token(config: ModelConfig, precision: str, seq_len: int) -> int:
    """CUDA's fused SDPA kernels have no fp32 grouped-query path, so fp32 GQA falls back to the math kernel,
    which saves the softmax probabilities: n_head × T floats per token (plus K/V expanded to every head, small
    next to them). PyTorch's CPU flash kernel does handle fp32 GQA: this term is for the GPUs being planned."""
    if config.n_kv_head == config.n_head or PRECISIONS[precision].compute != 4:
        return 0
    return config.n_head * seq_len * 4


def head_activation_bytes_per_token(config: ModelConfig, precision: str) -> int:
    """Final norm and output head per token: the norm's input (+ RMSNorm's normalized input), its output, and
    three fp32 vocab-sized rows that coexist when backward starts: log-softmax output, its gradient, and the
    logits' gradient."""
    b = PRECISIONS[precision]
    d = config.n_embd
    return (2 if config.norm == "rmsnorm" else 1) * d * b.residual + d * b.compute + 3 * config.vocab_size * LOSS_BYTES


def block_backward_bytes_per_token(config: ModelConfig, precision: str) -> int:
    """The largest gradient backward creates inside a block, that of the MLP's fc output (I for GELU, 2I for
    SwiGLU): it briefly coexists with the block's saved tensors."""
    return (2 if config.mlp == "swiglu" else 1) * config.intermediate_size * PRECISIONS[precision].compute


def activation_bytes(
    config: ModelConfig, micro_batch_size: int, seq_len: int, precision: str, checkpointing: bool
) -> int:
    """Activation memory at its peak. Without checkpointing, every block's saved tensors stay alive until
    backward reaches them, and the peak is when backward starts on the head or on the last block. Checkpointing
    each block keeps only the block inputs and recomputes one block at a time, after the head's buffers are gone."""
    block = block_activation_bytes_per_token(config, precision, seq_len)
    head = head_activation_bytes_per_token(config, precision)
    block_backward = block_backward_bytes_per_token(config, precision)
    if checkpointing:
        per_token = config.n_layer * config.n_embd * PRECISIONS[precision].residual + max(head, block + block_backward)
    else:
        per_token = config.n_layer * block + max(head, block_backward)
    return micro_batch_size * seq_len * per_token


def fsdp_gathered_params(config: ModelConfig) -> int:
    """Parameters FSDP2 (distributed.parallelize: one unit per block, then the root) holds unsharded at once: the root
    unit (embeddings, head, final norm) stays gathered through the step, plus the block being computed and the
    next one being prefetched."""
    per_block = config.num_params(include_embeddings=False) // config.n_layer  # final norm is a rounding error
    return config.num_params() - config.n_layer * per_block + 2 * per_block


def memory_estimate(
    config: ModelConfig,
    strategy: str,
    num_gpus: int,
    micro_batch_size: int,
    seq_len: int,
    precision: str,
    checkpointing: bool,
) -> Memory:
    """Per-GPU peak for "single" (one device), "ddp" (replicated) or "fsdp" (fully sharded over num_gpus)."""
    b = PRECISIONS[precision]
    params = config.num_params()
    activations = activation_bytes(config, micro_batch_size, seq_len, precision, checkpointing)
    # Mixed precision: autocast's compute-dtype copy of every matmul weight is saved for backward. FSDP avoids
    # them: distributed.parallelize gives fully_shard a MixedPrecisionPolicy, so it gathers blocks in the compute dtype.
    weight_copies = config.matmul_params() * b.compute if b.compute != b.weights else 0
    if strategy == "fsdp":
        gathered = fsdp_gathered_params(config)
        return Memory(
            weights=params * b.weights / num_gpus + gathered * b.compute,
            grads=params * b.grads / num_gpus + gathered * b.grads,  # unsharded until reduce-scattered
            optimizer=params * b.optimizer / num_gpus,
            activations=activations,
        )
    # DDP (gradient_as_bucket_view=False, the default) also holds every gradient in its all-reduce buckets.
    grad_copies = 2 if strategy == "ddp" else 1
    return Memory(params * b.weights + weight_copies, grad_copies * params * b.grads, params * b.optimizer, activations)


def memory_budget(accelerator: Accelerator) -> float:
    return HEADROOM * accelerator.memory_gb * GB - FRAMEWORK_OVERHEAD_BYTES


def max_micro_batch_size(
    config: ModelConfig, strategy: str, num_gpus: int, seq_len: int, precision: str, checkpointing: bool, budget: float
) -> int:
    """Largest micro-batch whose peak fits the budget (activations grow linearly with it; states do not)."""
    states = memory_estimate(config, strategy, num_gpus, 0, seq_len, precision, checkpointing).total
    per_sequence = activation_bytes(config, 1, seq_len, precision, checkpointing)
    return max(0, int((budget - states) // per_sequence))


def setup_name(strategy: str, checkpointing: bool) -> str:
    return f"{strategy}+ckpt" if checkpointing else strategy


def setup_cost(name: str) -> tuple[bool, int]:
    """Checkpointing costs about a third more compute (the forward runs twice), more than any communication, so it
    ranks first: plain FSDP is cheaper than DDP + checkpointing."""
    strategy, _, checkpointing = name.partition("+")
    return bool(checkpointing), STRATEGIES.index(strategy)


def setups(num_gpus: int) -> list[str]:
    """The setups that use ``num_gpus``, cheapest first: no sharding or recomputation unless needed."""
    usable = ("single",) if num_gpus == 1 else ("ddp", "fsdp")
    return sorted((setup_name(s, c) for s in usable for c in (False, True)), key=setup_cost)


def as_run(name: str, micro_batch_size: int, accumulate_grad_batches: int) -> dict:
    strategy, _, checkpointing = name.partition("+")
    return {
        "strategy": strategy,
        "activation_checkpointing": bool(checkpointing),
        "micro_batch_size": micro_batch_size,
        "accumulate_grad_batches": accumulate_grad_batches,
    }


def fitted_run(name: str, largest: int, micro_batch_size: int | None) -> dict | None:
    """Setup ``name`` (whose largest micro-batch is ``largest``) at the planned micro-batch, else at its largest
    divisor that fits, so that gradient accumulation keeps the global batch exact; with no plan, at the largest
    power of two that fits. None when not even one sequence fits."""
    if largest < 1:
        return None
    if micro_batch_size is None:
        return as_run(name, 2 ** int(math.log2(largest)), 1)
    fitting = max(k for k in range(1, min(largest, micro_batch_size) + 1) if micro_batch_size % k == 0)
    return as_run(name, fitting, micro_batch_size // fitting)


def recommend(
    capacity: dict[str, int], num_gpus: int, micro_batch_size: int | None, planned: str | None = None
) -> tuple[dict | None, dict | None]:
    """The recommended run and a cheaper alternative. A planned setup that fits at all is kept (the YAML chose it),
    with the cheapest setup that also fits its micro-batch as the alternative. Otherwise the cheapest setup where
    the planned micro-batch fits whole, failing that the cheapest where any fits (see ``fitted_run``)."""
    if planned is not None and capacity[planned] >= 1:
        chosen = fitted_run(planned, capacity[planned], micro_batch_size)
        cheaper = (
            name
            for name in setups(num_gpus)
            if setup_cost(name) < setup_cost(planned) and capacity[name] >= chosen["micro_batch_size"]
        )
        alternative = next(cheaper, None)
        if alternative is None:
            return chosen, None
        return chosen, as_run(alternative, chosen["micro_batch_size"], chosen["accumulate_grad_batches"])
    preferred = setups(num_gpus)
    if micro_batch_size is not None:  # where the planned micro-batch fits whole, if anywhere
        preferred = [name for name in preferred if capacity[name] >= micro_batch_size] or preferred
    runs = (fitted_run(name, capacity[name], micro_batch_size) for name in preferred)
    return next((run for run in runs if run is not None), None), None


def memory_plan(
    config: ModelConfig,
    accelerator: Accelerator,
    num_gpus: int,
    micro_batch_size: int | None,
    seq_len: int,
    precision: str,
    planned: str | None = None,
) -> dict:
    """Every setup's memory per GPU and largest micro-batch, and the recommendation (``recommend``) for the
    ``planned`` setup name (None: no set-up chosen yet)."""
    budget = memory_budget(accelerator)
    all_setups = [(s, c) for s in STRATEGIES for c in (False, True)]
    capacity = {
        setup_name(s, c): max_micro_batch_size(config, s, num_gpus, seq_len, precision, c, budget)
        for s, c in all_setups
    }
    recommendation, alternative = recommend(capacity, num_gpus, micro_batch_size, planned)
    shown_batch = micro_batch_size or (recommendation["micro_batch_size"] if recommendation else 1)
    strategies = {}
    for strategy, ckpt in all_setups:
        memory = memory_estimate(config, strategy, num_gpus, shown_batch, seq_len, precision, ckpt)
        strategies[setup_name(strategy, ckpt)] = {
            "memory_per_gpu_gb": memory.total / GB,
            "weights_gb": memory.weights / GB,
            "grads_gb": memory.grads / GB,
            "optimizer_gb": memory.optimizer / GB,
            "activations_gb": memory.activations / GB,
            "fits": memory.total <= budget,
            "max_micro_batch_size": capacity[setup_name(strategy, ckpt)],
        }
    return {
        "budget_gb": budget / GB,
        "micro_batch_size": shown_batch,
        "strategies": strategies,
        "recommendation": recommendation,
        "alternative": alternative,
    }
