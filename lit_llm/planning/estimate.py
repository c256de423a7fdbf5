"""What a pre-training run costs: compute, time, GPU-hours and dollars, and the measured step time behind
`--mfu measure`. Shared by `lit-llm plan`, the end-of-fit cost line and the benchmarks.

Compute is the standard estimate (Kaplan et al. 2020; PaLM appendix B): 6 FLOPs per matmul parameter per
token for forward + backward, plus 12·L·d·T for attention scores. Time is compute / (MFU × peak). See
docs/plan.md for the checks against published runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import next_token_loss
from lit_llm.planning.hardware import ACCELERATORS, Accelerator, detect_accelerator

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal training uses ~20 tokens per parameter


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


def resolve_precision(precision: str | int) -> str:
    precision = PRECISION_ALIASES.get(str(precision), str(precision))
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


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


def training_step_seconds(
    config: ModelConfig,
    micro_batch_size: int,
    seq_len: int,
    precision: str,
    device: torch.device,
    steps: int = 5,
    warmup: int = 2,
) -> float:
    """Mean wall time of forward + backward + AdamW steps of the GPT on ``device`` (eager, no compile)."""
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
            f"--mfu measure needs a GPU from lit_llm.planning.hardware's table ({', '.join(ACCELERATORS)}) to compare "
            f"against its peak, but this runs on {where}; pass a fraction instead, e.g. --mfu 0.4"
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


def run_cost_summary(
    config: ModelConfig,
    tokens: int,
    seconds: float,
    num_devices: int,
    seq_len: int,
    accelerator: Accelerator | None,
    step: int | None = None,
    val_loss: float | None = None,
    best_checkpoint: tuple[str, float] | None = None,
) -> str:
    """What a finished run reached (its final val loss at ``step``, its best checkpoint: path and val loss) and
    what it actually cost, in the units of `lit-llm plan`'s report (for the end of `fit`)."""
    lines = ["Run summary (cost in the same units as `lit-llm plan`)"]
    if val_loss is not None:
        lines.append(f"  val loss        {val_loss:.4f}" + (f" at step {step:,}" if step is not None else ""))
    if best_checkpoint is not None:
        lines.append(f"  best checkpoint {best_checkpoint[0]} (val {best_checkpoint[1]:.4f})")
    lines += [
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
            "(no MFU: device not in lit_llm.planning.hardware's table)"
        )
    return "\n".join(lines)
