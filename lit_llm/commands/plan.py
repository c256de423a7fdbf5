"""`lit-llm plan`: what a pre-training run will cost, and what fits on the hardware, before it starts.

The estimates are ``lit_llm.estimate`` (compute, time, cost) and ``lit_llm.memory`` (peak memory per GPU);
this file reads what is planned (an experiment YAML or a preset) and prints the report.
"""

from __future__ import annotations

import json as jsonlib
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from lit_llm.config import PRESETS, ModelConfig
from lit_llm.estimate import (
    CHINCHILLA_TOKENS_PER_PARAM,
    amount,
    compute_estimate,
    duration,
    human,
    measure_mfu,
    resolve_precision,
    time_and_cost,
)
from lit_llm.hardware import get_accelerator
from lit_llm.memory import FRAMEWORK_OVERHEAD_BYTES, GB, HEADROOM, memory_plan

BYTE_VOCAB_SIZE = 257  # `lit-llm prepare --tokenizer byte`: 256 bytes + <|endoftext|>


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
    raw = read_experiment_yaml(path)
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


def read_experiment_yaml(path: str) -> dict:
    """An experiment YAML's sections (trainer, model, data, checkpoint), or one line saying why it has none."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"experiment config {path} not found; pass an existing YAML, "
            "e.g. --config experiments/shakespeare-char-cpu.yaml"
        )
    try:
        sections = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path} is not valid YAML{where} ({getattr(err, 'problem', None) or err}); fix it") from None
    if not isinstance(sections, dict | None):
        raise ValueError(
            f"{path} holds a YAML {type(sections).__name__}, not a mapping of sections (trainer:, model:, data:); "
            "see experiments/*.yaml"
        )
    return sections or {}


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


# ---------------------------------------------------------------- memory


# ---------------------------------------------------------------- measured MFU


# ---------------------------------------------------------------- formatting


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
