"""`lit-llm plan`: what a pre-training run will cost, and what fits on the hardware, before it starts.

Compute is the standard estimate (Kaplan et al. 2020; PaLM appendix B): 6 FLOPs per matmul parameter per
token for forward + backward, plus 12·L·d·T for attention scores. Time is compute / (MFU × peak). Memory is
counted from what ``lit_llm.model.GPT`` actually keeps alive (see docs/plan.md for the derivation and the
checks against published runs and against measured peak memory).
"""

from __future__ import annotations

import json as jsonlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from lit_llm.config import PRESETS, ModelConfig
from lit_llm.hardware import ACCELERATORS, Accelerator, detect_accelerator, get_accelerator
from lit_llm.model import GPT

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal training uses ~20 tokens per parameter
HEADROOM = 0.9  # plan to 90% of the card: allocator fragmentation and short-lived temporaries take the rest
FRAMEWORK_OVERHEAD_BYTES = 1e9  # CUDA context, cuBLAS workspaces and NCCL buffers: memory no tensor accounts for
BYTE_VOCAB_SIZE = 257  # `lit-llm prepare --tokenizer byte`: 256 bytes + <|endoftext|>
LOSS_BYTES = 4  # logits are upcast to fp32 for the cross-entropy, whatever the training precision
GB = 1e9  # vendors' GB, the unit of lit_llm.hardware's memory column


@dataclass(frozen=True)
class PrecisionBytes:
    """Bytes per element of each kind of training state under one Lightning ``precision`` setting."""

    weights: int  # stored weights (fp32 master weights under mixed precision)
    grads: int  # gradients have the stored weights' dtype
    optimizer: int  # AdamW's exp_avg + exp_avg_sq, in the stored weights' dtype
    compute: int  # dtype the matmuls run in: their saved inputs/outputs, autocast's weight copies
    residual: int  # dtype of the residual stream (embeddings are not autocast, so it stays fp32 when mixed)


PRECISIONS: dict[str, PrecisionBytes] = {
    "32-true": PrecisionBytes(weights=4, grads=4, optimizer=8, compute=4, residual=4),
    "bf16-mixed": PrecisionBytes(weights=4, grads=4, optimizer=8, compute=2, residual=4),
    "bf16-true": PrecisionBytes(weights=2, grads=2, optimizer=4, compute=2, residual=2),
}
PRECISION_ALIASES = {"32": "32-true", "bf16": "bf16-mixed"}  # Lightning's short names


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RunSpec:
    """What is being planned: model shape and the run's shape, resolved from a YAML or a preset."""

    name: str
    config: ModelConfig
    seq_len: int
    precision: str
    micro_batch_size: int | None = None
    num_gpus: int | None = None
    max_steps: int | None = None
    sequences_per_step: int | None = None  # global batch, when the YAML fixes it independently of the GPU count
    sequences_per_gpu_step: int | None = None  # micro-batch × accumulation, scaled by the GPU count
    note: str | None = None


def resolve_precision(precision: str | int) -> str:
    precision = PRECISION_ALIASES.get(str(precision), str(precision))
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def resolve_vocab(config: ModelConfig, data_dir: str | None) -> tuple[ModelConfig, str | None]:
    """Take the vocabulary from the prepared data's metadata.json; assume a byte vocabulary if there is none."""
    metadata = Path(data_dir).expanduser() / "metadata.json" if data_dir else None
    if metadata is not None and metadata.is_file():
        return config.with_vocab(jsonlib.loads(metadata.read_text())["vocab_size"]), None
    if config.vocab_size is not None:
        return config, None
    resolved = config.with_vocab(BYTE_VOCAB_SIZE)
    where = f"{data_dir} is not prepared yet" if data_dir else "no data given"
    return resolved, f"{where}: assumed a byte vocabulary ({BYTE_VOCAB_SIZE} tokens, padded to {resolved.vocab_size})"


def model_config_from(architecture, source: str) -> ModelConfig:
    if isinstance(architecture, str):
        return ModelConfig.from_preset(architecture)
    if isinstance(architecture, dict):
        unknown = set(architecture) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"{source}: unknown model.architecture field(s) {sorted(unknown)}; use ModelConfig's fields"
            )
        return ModelConfig(**architecture)
    raise ValueError(
        f"{source}: model.architecture must be a preset name or a mapping of ModelConfig fields, got {architecture!r}"
    )


def count_devices(devices, source: str) -> int | None:
    """Lightning's ``trainer.devices``: an int, a digit string, a list of ids, or "auto" (None: unknown)."""
    if devices in (None, "auto"):
        return None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return int(devices)
    raise ValueError(f"{source}: cannot read trainer.devices={devices!r}; use a number of devices")


def read_experiment(path: str) -> RunSpec:
    """A LightningCLI experiment YAML (trainer/model/data sections), read without importing Lightning."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"experiment config {path} not found; pass an existing YAML, "
            "e.g. --config experiments/shakespeare-char-cpu.yaml"
        )
    raw = yaml.safe_load(file.read_text()) or {}
    trainer, model, data = (raw.get(section) or {} for section in ("trainer", "model", "data"))
    data_dir = data.get("data_dir") or next((source["path"] for source in data.get("sources") or []), None)
    config, note = resolve_vocab(model_config_from(model.get("architecture"), path), data_dir)
    devices = count_devices(trainer.get("devices", "auto"), path)
    micro_batch_size = data.get("batch_size")
    max_steps = trainer.get("max_steps")
    accumulate = trainer.get("accumulate_grad_batches") or 1
    return RunSpec(
        name=file.stem,
        config=config,
        seq_len=data.get("seq_len") or config.block_size,
        precision=resolve_precision(trainer.get("precision", "32-true")),
        micro_batch_size=micro_batch_size,
        num_gpus=devices * (trainer.get("num_nodes") or 1) if devices else None,
        max_steps=max_steps if max_steps and max_steps > 0 else None,  # Lightning's -1 means "no step limit"
        sequences_per_step=model.get("global_batch_size"),
        sequences_per_gpu_step=micro_batch_size * accumulate if micro_batch_size else None,
        note=note,
    )


def preset_spec(preset: str, precision: str) -> RunSpec:
    config, note = resolve_vocab(ModelConfig.from_preset(preset), None)
    return RunSpec(
        name=preset, config=config, seq_len=config.block_size, precision=resolve_precision(precision), note=note
    )


def planned_tokens(spec: RunSpec, num_gpus: int, seq_len: int) -> float | None:
    """max_steps × global batch × seq_len, the global batch following the GPU count unless the YAML fixes it."""
    if not spec.max_steps or not (spec.sequences_per_step or spec.sequences_per_gpu_step):
        return None
    sequences = spec.sequences_per_step or spec.sequences_per_gpu_step * num_gpus
    return spec.max_steps * sequences * seq_len


def parse_mfu(mfu: str) -> float | None:
    """A fraction in (0, 1], or None for "measure"."""
    if str(mfu).strip().lower() == "measure":
        return None
    try:
        value = float(mfu)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise ValueError(
            f"--mfu must be a fraction in (0, 1] such as 0.4 (not a percentage), or 'measure'; got {mfu!r}"
        )
    return value


# ---------------------------------------------------------------- compute, time, cost


def compute_estimate(config: ModelConfig, tokens: float, seq_len: int) -> dict:
    matmul_flops = 6 * config.matmul_params() * tokens
    flops = config.flops_per_token(seq_len) * tokens
    params = config.num_params()
    return {
        "params": params,
        "params_non_embedding": config.num_params(include_embeddings=False),
        "params_matmul": config.matmul_params(),
        "tokens": tokens,
        "compute_optimal_tokens": CHINCHILLA_TOKENS_PER_PARAM * params,
        "tokens_per_param": tokens / params,
        "flops_per_token": config.flops_per_token(seq_len),
        "flops_6nd": matmul_flops,
        "flops_attention": flops - matmul_flops,
        "flops": flops,
    }


def time_and_cost(
    flops_per_token: float,
    tokens: float,
    accelerator: Accelerator,
    num_gpus: int,
    mfu: float,
    price_per_gpu_hour: float,
) -> dict:
    tokens_per_second_per_gpu = mfu * accelerator.bf16_tflops * 1e12 / flops_per_token
    seconds = tokens / (tokens_per_second_per_gpu * num_gpus)
    gpu_hours = seconds * num_gpus / 3600
    return {
        "tokens_per_second_per_gpu": tokens_per_second_per_gpu,
        "seconds": seconds,
        "days": seconds / 86400,
        "gpu_hours": gpu_hours,
        "cost": gpu_hours * price_per_gpu_hour,
    }


# ---------------------------------------------------------------- memory


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
    """Bytes one transformer block saves for backward, per token (what autograd keeps in lit_llm.model.Block).

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
    """Parameters FSDP2 (lit_llm.parallel: one unit per block, then the root) holds unsharded at once: the root
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
    # them: lit_llm.parallel gives fully_shard a MixedPrecisionPolicy, so it gathers blocks in the compute dtype.
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


def setups(num_gpus: int) -> list[tuple[str, bool]]:
    """(strategy, checkpointing) in order of preference: no sharding or recomputation unless needed.
    Checkpointing costs about a third more compute (the forward runs twice), so plain FSDP comes before it."""
    if num_gpus == 1:
        return [("single", False), ("single", True)]
    return [("ddp", False), ("fsdp", False), ("ddp", True), ("fsdp", True)]


def setup_name(strategy: str, checkpointing: bool) -> str:
    return f"{strategy}+ckpt" if checkpointing else strategy


def recommend(capacity: dict[str, int], num_gpus: int, micro_batch_size: int | None) -> dict | None:
    """The first setup (in order of preference) where the planned micro-batch fits. Failing that, the first where
    any fits, at the largest divisor of the planned micro-batch that does, so that gradient accumulation keeps the
    global batch exact (with no plan: the largest power of two that fits)."""
    options = [(strategy, ckpt, capacity[setup_name(strategy, ckpt)]) for strategy, ckpt in setups(num_gpus)]
    for strategy, ckpt, largest in options:
        if micro_batch_size is not None and largest >= micro_batch_size:
            return {
                "strategy": strategy,
                "activation_checkpointing": ckpt,
                "micro_batch_size": micro_batch_size,
                "accumulate_grad_batches": 1,
            }
    for strategy, ckpt, largest in options:
        if largest < 1:
            continue
        if micro_batch_size is None:
            return {
                "strategy": strategy,
                "activation_checkpointing": ckpt,
                "micro_batch_size": 2 ** int(math.log2(largest)),
                "accumulate_grad_batches": 1,
            }
        fitting = max(k for k in range(1, largest + 1) if micro_batch_size % k == 0)
        return {
            "strategy": strategy,
            "activation_checkpointing": ckpt,
            "micro_batch_size": fitting,
            "accumulate_grad_batches": micro_batch_size // fitting,
        }
    return None


def memory_plan(
    config: ModelConfig,
    accelerator: Accelerator,
    num_gpus: int,
    micro_batch_size: int | None,
    seq_len: int,
    precision: str,
) -> dict:
    budget = memory_budget(accelerator)
    all_setups = [(s, c) for s in ("single", "ddp", "fsdp") for c in (False, True)]
    capacity = {
        setup_name(s, c): max_micro_batch_size(config, s, num_gpus, seq_len, precision, c, budget)
        for s, c in all_setups
    }
    recommendation = recommend(capacity, num_gpus, micro_batch_size)
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
    }


# ---------------------------------------------------------------- measured MFU


def training_step_seconds(
    config: ModelConfig,
    micro_batch_size: int,
    seq_len: int,
    precision: str,
    device: torch.device,
    steps: int = 5,
    warmup: int = 2,
) -> float:
    """Mean wall time of forward + backward + AdamW steps of lit_llm.model.GPT on ``device`` (eager, no compile)."""
    from lit_llm.module import next_token_loss  # imports Lightning: only when measuring

    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(config).to(torch.bfloat16 if precision == "bf16-true" else torch.float32)
        batch = torch.randint(0, config.vocab_size, (micro_batch_size, seq_len + 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            logits = model(inputs)
        next_token_loss(logits, targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):  # kernel selection and allocator warm-up
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return (time.perf_counter() - start) / steps


def measure_mfu(
    config: ModelConfig, micro_batch_size: int, seq_len: int, precision: str, device: torch.device | None = None
) -> float:
    """MFU of a few real training steps on this machine's GPU, against its dense bf16 peak from the table.

    The plan applies it to ``--gpu``: MFU carries over between similar chips far better than raw speed does."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accelerator = detect_accelerator(device)
    if accelerator is None:
        where = f"GPU {torch.cuda.get_device_name(device)!r}" if device.type == "cuda" else "the CPU"
        raise ValueError(
            f"--mfu measure needs a GPU from lit_llm.hardware's table ({', '.join(ACCELERATORS)}) to compare against "
            f"its peak, but this runs on {where}; pass a fraction instead, e.g. --mfu 0.4"
        )
    try:
        seconds = training_step_seconds(config, micro_batch_size, seq_len, precision, device)
    except torch.OutOfMemoryError:
        raise ValueError(
            f"--mfu measure trains the whole model on this one {accelerator.name}, and micro-batch "
            f"{micro_batch_size} × {seq_len} tokens does not fit; pass a smaller --micro_batch_size, "
            "or a fraction, e.g. --mfu 0.4"
        ) from None
    flops = config.flops_per_token(seq_len) * micro_batch_size * seq_len
    return flops / seconds / (accelerator.bf16_tflops * 1e12)


# ---------------------------------------------------------------- formatting


def human(n: float) -> str:
    """124.5M, 2.0T: counts at a glance."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return f"{n:.0f}"


def amount(x: float) -> str:
    """182,362 or 0.00213: whole numbers when large, three significant digits when small."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_report(r: dict) -> str:
    memory = r["memory"]
    defaulted = " (default: compute-optimal)" if r["tokens_defaulted"] else ""
    lines = [
        f"lit-llm plan: {r['name']} on {r['num_gpus']} × {r['gpu']} ({r['precision']}, seq_len {r['seq_len']:,})",
        *([f"  note: {r['note']}"] if r["note"] else []),
        "",
        "Model and compute",
        f"  parameters      {human(r['params'])} total, {human(r['params_non_embedding'])} non-embedding "
        f"({human(r['params_matmul'])} in matmuls)",
        f"  training FLOPs  {r['flops']:.3g} = 6·N·D {r['flops_6nd']:.3g} + attention {r['flops_attention']:.3g} "
        f"({human(r['flops_per_token'])} FLOPs/token)",
        f"  tokens          {human(r['tokens'])} planned{defaulted} "
        f"vs {human(r['compute_optimal_tokens'])} compute-optimal "
        f"(Chinchilla, {CHINCHILLA_TOKENS_PER_PARAM} tokens/param); "
        f"planned is {r['tokens_per_param']:.1f} tokens/param",
        "",
        f"Time and cost at {r['mfu']:.1%} MFU ({r['mfu_source']}) "
        f"of {r['gpu']}'s {r['peak_tflops']:g} TFLOP/s bf16 peak",
        f"  throughput      {r['tokens_per_second_per_gpu']:,.0f} tokens/s per GPU, "
        f"{human(r['tokens_per_second_per_gpu'] * r['num_gpus'])} tokens/s in all",
        f"  wall-clock      {duration(r['seconds'])} on {r['num_gpus']} GPU(s)",
        f"  GPU-hours       {amount(r['gpu_hours'])}",
        f"  cost            ${amount(r['cost'])} at ${r['price_per_gpu_hour']:.2f}/GPU-hour",
        "",
        f"Memory per GPU at micro-batch {memory['micro_batch_size']} × {r['seq_len']:,} tokens, GB "
        f"(budget {memory['budget_gb']:.1f}: {HEADROOM:.0%} of {r['gpu_memory_gb']:g} "
        f"minus {FRAMEWORK_OVERHEAD_BYTES / GB:g} framework)",
        f"  {'setup':<12}{'weights':>9}{'grads':>8}{'AdamW':>8}{'activ.':>9}{'total':>9}  fits  max micro-batch",
    ]
    for name, s in memory["strategies"].items():
        lines.append(
            f"  {name:<12}{s['weights_gb']:>9.2f}{s['grads_gb']:>8.2f}{s['optimizer_gb']:>8.2f}"
            f"{s['activations_gb']:>9.2f}{s['memory_per_gpu_gb']:>9.2f}  {'yes' if s['fits'] else 'no':<4}  "
            f"{s['max_micro_batch_size']}"
        )
    lines += ["", recommendation_line(memory["recommendation"], r)]
    return "\n".join(lines)


def recommendation_line(rec: dict | None, r: dict) -> str:
    if rec is None and r["num_gpus"] == 1:
        return (
            f"Recommendation: does not fit on one {r['gpu']} even with activation checkpointing at micro-batch 1; "
            "shard it with FSDP over more GPUs (--num_gpus) or use a larger card."
        )
    if rec is None:
        return (
            f"Recommendation: does not fit on {r['num_gpus']} × {r['gpu']} even with FSDP + activation checkpointing "
            "at micro-batch 1; use more GPUs or a larger card."
        )
    checkpointing = (
        " + activation checkpointing (recomputes the forward: ~33% more compute than planned above)"
        if rec["activation_checkpointing"]
        else ""
    )
    line = f"Recommendation: {rec['strategy']}{checkpointing}, micro-batch {rec['micro_batch_size']}"
    if rec["accumulate_grad_batches"] > 1:
        line += f" with accumulate_grad_batches {rec['accumulate_grad_batches']} to keep the planned global batch"
    return line + "."


# ---------------------------------------------------------------- entry points


def validate(
    config: ModelConfig, num_gpus: int, micro_batch_size: int | None, seq_len: int, tokens: float | None, price: float
) -> None:
    if num_gpus < 1:
        raise ValueError(f"--num_gpus must be at least 1, got {num_gpus}")
    if micro_batch_size is not None and micro_batch_size < 1:
        raise ValueError(
            f"--micro_batch_size must be at least 1, got {micro_batch_size}; "
            "or leave it out to get the largest that fits"
        )
    if not 1 <= seq_len <= config.block_size:
        raise ValueError(f"--seq_len {seq_len} must be between 1 and the model's block_size {config.block_size}")
    if tokens is not None and not tokens > 0:
        raise ValueError(f"--tokens must be positive, got {tokens}; e.g. --tokens 10e9")
    if price < 0:
        raise ValueError(f"--price_per_gpu_hour must not be negative, got {price}")


def plan(
    config: str | None = None,
    preset: str | None = None,
    tokens: float | None = None,
    gpu: str = "h100-sxm",
    num_gpus: int | None = None,
    mfu: str = "0.4",
    price_per_gpu_hour: float = 2.5,
    micro_batch_size: int | None = None,
    seq_len: int | None = None,
    precision: str = "bf16-mixed",
    json: bool = False,
) -> dict:
    """Estimate a pre-training run's compute, time, cost and per-GPU memory before starting it.

    Prints parameters, training FLOPs (6·N·D plus attention) next to the compute-optimal token count, wall-clock
    time, GPU-hours and cost at the given MFU, and per-GPU memory for single-device, DDP and FSDP training with
    and without activation checkpointing, with a recommended strategy and micro-batch that fit.

    Args:
        config: Experiment YAML to plan (trainer/model/data sections, as passed to `lit-llm fit --config`).
            Its max_steps, batch sizes, devices, precision and seq_len set the plan. Give this or --preset.
        preset: Model preset to plan instead of a YAML: one of the names in lit_llm.config.PRESETS.
        tokens: Training tokens, e.g. 10e9. Overrides the YAML's max_steps × global batch × seq_len.
            Default: compute-optimal, 20 tokens per parameter.
        gpu: Accelerator name from lit_llm.hardware (e.g. a100-80gb, h100-sxm, l4).
        num_gpus: Number of GPUs in the run, all nodes together. Overrides the YAML's devices × num_nodes
            unless left at 1.
        mfu: Model FLOPs utilization as a fraction of the GPU's dense bf16 peak (e.g. 0.4), or "measure" to
            time a few training steps of this model on this machine's GPU.
        price_per_gpu_hour: Price of one GPU-hour in dollars.
        micro_batch_size: Sequences per GPU per forward/backward. Default: the YAML's data.batch_size, else
            the largest power of two that fits.
        seq_len: Tokens per sequence. Default: the YAML's data.seq_len, else the model's block_size.
        precision: Training precision with --preset: 32-true, bf16-mixed or bf16-true. With --config the
            YAML's trainer.precision is used (Lightning's default, 32-true, if it sets none).
        json: Print the plan as JSON instead of a report.
    """
    if (config is None) == (preset is None):
        raise ValueError(
            f"pass exactly one of --config (an experiment YAML) or --preset (one of: {', '.join(PRESETS)})"
        )
    spec = read_experiment(config) if config is not None else preset_spec(preset, precision)
    accelerator = get_accelerator(gpu)
    given_mfu = parse_mfu(mfu)
    num_gpus = (spec.num_gpus or 1) if num_gpus is None else num_gpus  # the command line wins over the YAML
    micro_batch_size = spec.micro_batch_size if micro_batch_size is None else micro_batch_size
    seq_len = spec.seq_len if seq_len is None else seq_len
    validate(spec.config, num_gpus, micro_batch_size, seq_len, tokens, price_per_gpu_hour)

    model = spec.config
    planned = tokens or planned_tokens(spec, num_gpus, seq_len)
    memory = memory_plan(model, accelerator, num_gpus, micro_batch_size, seq_len, spec.precision)
    mfu_value = given_mfu or measure_mfu(model, memory["micro_batch_size"], seq_len, spec.precision)
    estimate = compute_estimate(model, planned or CHINCHILLA_TOKENS_PER_PARAM * model.num_params(), seq_len)
    result = {
        "name": spec.name,
        "note": spec.note,
        "gpu": accelerator.name,
        "peak_tflops": accelerator.bf16_tflops,
        "gpu_memory_gb": accelerator.memory_gb,
        "num_gpus": num_gpus,
        "precision": spec.precision,
        "seq_len": seq_len,
        "mfu": mfu_value,
        "mfu_source": "given" if given_mfu else "measured",
        "price_per_gpu_hour": price_per_gpu_hour,
        "tokens_defaulted": planned is None,
        **estimate,
        **time_and_cost(
            estimate["flops_per_token"], estimate["tokens"], accelerator, num_gpus, mfu_value, price_per_gpu_hour
        ),
        "memory": memory,
        "memory_per_gpu_gb": {name: s["memory_per_gpu_gb"] for name, s in memory["strategies"].items()},
    }
    print(jsonlib.dumps(result, indent=2) if json else format_report(result))
    return result


def run_cost_summary(
    config: ModelConfig, tokens: int, seconds: float, num_devices: int, seq_len: int, accelerator: Accelerator | None
) -> str:
    """What a finished run actually cost, in the units of `lit-llm plan`'s report (for the end of `fit`)."""
    lines = [
        "Run cost (same units as `lit-llm plan`)",
        f"  tokens          {human(tokens)}",
        f"  wall-clock      {duration(seconds)} on {num_devices} device(s)",
        f"  GPU-hours       {amount(seconds * num_devices / 3600)} ({accelerator.name})"
        if accelerator
        else f"  device-hours    {amount(seconds * num_devices / 3600)}",
    ]
    if seconds <= 0 or tokens <= 0:
        return "\n".join(lines)
    tokens_per_second = tokens / seconds / num_devices
    flops_per_second = tokens_per_second * config.flops_per_token(seq_len)
    lines.append(f"  throughput      {tokens_per_second:,.0f} tokens/s per device")
    if accelerator:
        mfu = flops_per_second / (accelerator.bf16_tflops * 1e12)
        lines.append(f"  achieved MFU    {mfu:.1%} of {accelerator.bf16_tflops:g} TFLOP/s bf16 peak")
    else:
        lines.append(
            f"  achieved        {flops_per_second / 1e12:.3g} TFLOP/s per device "
            "(no MFU: device not in lit_llm.hardware's table)"
        )
    return "\n".join(lines)
