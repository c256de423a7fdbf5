"""`lit-llm plan`: what a pre-training run will cost, and what fits on the hardware, before it starts.

The estimates are ``lit_llm.planning.estimate`` (compute, time, cost) and ``lit_llm.planning.memory`` (peak
memory per GPU); this file reads what is planned (an experiment YAML or a preset) and prints the report.
"""

from __future__ import annotations

import json as jsonlib
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from lit_llm.commands.plan_law import compute_optimal_run, law_lines, law_predictions
from lit_llm.model.config import ModelConfig
from lit_llm.model.presets import PRESETS
from lit_llm.planning.estimate import (
    CHINCHILLA_TOKENS_PER_PARAM,
    amount,
    compute_estimate,
    duration,
    human,
    measure_mfu,
    resolve_precision,
    time_and_cost,
)
from lit_llm.planning.hardware import get_accelerator
from lit_llm.planning.memory import FRAMEWORK_OVERHEAD_BYTES, GB, HEADROOM, memory_plan

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
    strategy: str | None = None  # trainer.strategy's name, lower case (None: a preset, no strategy chosen)
    activation_checkpointing: bool = False
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


def model_config_from(architecture) -> ModelConfig:
    """model.architecture as fit's parser leaves it: a preset name or the fields of a ModelConfig."""
    if isinstance(architecture, str):
        return ModelConfig.from_preset(architecture)
    return ModelConfig(**architecture)


def count_devices(devices, source: str) -> int | None:
    """Lightning's ``trainer.devices``: an int, a digit string, a list of ids, or "auto" (None: unknown)."""
    if devices in (None, "auto"):
        return None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return int(devices)
    raise ValueError(f"{source}: cannot read trainer.devices={devices!r}; use a number of devices")


def strategy_name(strategy) -> str:
    """trainer.strategy as fit's parser leaves it (a registered name or a class_path mapping), lower case."""
    name = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy or "auto")
    return name.rsplit(".", 1)[-1].lower()


def planned_setup(spec: RunSpec, num_gpus: int) -> str | None:
    """The memory table's row the YAML's trainer.strategy runs as (None: a preset, or a strategy it does not model)."""
    name = spec.strategy
    if name is None:
        return None
    if "fsdp" in name or "modelparallel" in name.replace("_", ""):
        setup = "fsdp"
    elif name.startswith("ddp"):
        setup = "ddp"
    elif name in ("auto", "single_device", "singledevicestrategy"):
        setup = "single" if num_gpus == 1 else "ddp"  # what Lightning's "auto" picks for these devices
    else:
        return None
    return f"{setup}+ckpt" if spec.activation_checkpointing else setup


def check_yaml(path: str) -> str:
    """A missing or malformed YAML, named in one line before fit's (slow to import) parser starts."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"experiment config {path} not found; pass an existing YAML, "
            "e.g. --config experiments/shakespeare-char-cpu.yaml"
        )
    try:
        content = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path} is not valid YAML{where}: {problem}; fix the file") from None
    if content is not None and not isinstance(content, dict):
        raise ValueError(
            f"{path} holds a {type(content).__name__}, not a mapping of the trainer/model/data sections "
            "that `lit-llm fit --config` reads; see experiments/*.yaml"
        )
    return str(file)


def read_experiment(config: str | list[str]) -> RunSpec:
    """The run `lit-llm fit` would start with these arguments, read by fit's own parser: YAML paths, merged in
    order (later ones win), and dotted overrides (items starting with ``--``, e.g. ``--trainer.max_steps=100``)."""
    items = [config] if isinstance(config, str) else list(config)
    args = [arg for item in items for arg in ((item,) if item.startswith("--") else ("--config", check_yaml(item)))]
    paths = [item for item in items if not item.startswith("--")]
    source = " + ".join(paths) or "the experiment"
    from lit_llm.train.cli import parse_experiment  # imports Lightning: only when an experiment is planned

    try:
        parsed = parse_experiment(args)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    trainer, model, data = parsed["trainer"], parsed["model"], parsed["data"]
    data_dir = data["data_dir"] or next((entry["path"] for entry in data["sources"] or []), None)
    config, note = resolve_vocab(model_config_from(model["architecture"]), data_dir)
    devices = count_devices(trainer["devices"], source)
    micro_batch_size = data["batch_size"]
    max_steps = trainer["max_steps"]
    return RunSpec(
        name=" + ".join(Path(path).stem for path in paths) or "experiment",
        config=config,
        seq_len=data["seq_len"] or config.block_size,
        precision=resolve_precision(trainer["precision"] or "32-true"),  # Lightning's default when none is set
        micro_batch_size=micro_batch_size,
        num_gpus=devices * trainer["num_nodes"] if devices else None,
        max_steps=max_steps if max_steps and max_steps > 0 else None,  # Lightning's -1 means "no step limit"
        sequences_per_step=model["global_batch_size"],
        sequences_per_gpu_step=micro_batch_size * trainer["accumulate_grad_batches"] if micro_batch_size else None,
        strategy=strategy_name(trainer["strategy"]),
        activation_checkpointing=model["activation_checkpointing"],
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


# ---------------------------------------------------------------- memory


# ---------------------------------------------------------------- measured MFU


# ---------------------------------------------------------------- formatting


def format_report(r: dict) -> str:
    memory, planned = r["memory"], r["planned_setup"]
    defaulted = " (default: compute-optimal)" if r["tokens_defaulted"] else ""
    as_planned = f", as {planned}" if planned else ""
    lines = [
        f"lit-llm plan: {r['name']} on {r['num_gpus']} × {r['gpu']} "
        f"({r['precision']}, seq_len {r['seq_len']:,}{as_planned})",
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
            f"{s['max_micro_batch_size']}" + ("  <- planned" if name == planned else "")
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
    config: list[str] | str | None = None,
    preset: str | None = None,
    tokens: float | None = None,
    gpu: str = "h100-sxm",
    num_gpus: int | None = None,
    mfu: str = "0.4",
    price_per_gpu_hour: float = 2.5,
    micro_batch_size: int | None = None,
    seq_len: int | None = None,
    precision: str = "bf16-mixed",
    scaling_law: str | None = None,
    budget_flops: float | None = None,
    budget_gpu_hours: float | None = None,
    budget_usd: float | None = None,
    json: bool = False,
) -> dict:
    """Estimate a pre-training run's compute, time, cost and per-GPU memory before starting it.

    Prints parameters, training FLOPs (6·N·D plus attention) next to the compute-optimal token count, wall-clock
    time, GPU-hours and cost at the given MFU, and per-GPU memory for single-device, DDP and FSDP training with
    and without activation checkpointing, with a recommended strategy and micro-batch that fit.

    Args:
        config: Experiment YAML to plan, read by `lit-llm fit`'s own parser: repeat --config to stack YAMLs
            (later ones win, e.g. --config experiments/X.yaml --config experiments/trainer/fsdp2.yaml) and add
            fit's dotted overrides (--trainer.max_steps 100). Its max_steps, batch sizes, devices, precision
            and seq_len set the plan. Give this or --preset.
        preset: Model preset to plan instead of a YAML: one of the names in lit_llm.model.model.presets.PRESETS.
        tokens: Training tokens, e.g. 10e9. Overrides the YAML's max_steps × global batch × seq_len.
            Default: compute-optimal, 20 tokens per parameter.
        gpu: Accelerator name from lit_llm.planning.hardware (e.g. a100-80gb, h100-sxm, l4).
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
        scaling_law: a DIR/ladder.json written by `lit-llm ladder`: adds the run's predicted final val loss and
            bits per byte, with an interval.
        budget_flops: plan the compute-optimal run of this many FLOPs instead of a YAML or preset: the size of the
            ladder's model family and the tokens the law predicts best (needs --scaling_law).
        budget_gpu_hours: the same for a budget in GPU-hours of --gpu at --mfu.
        budget_usd: the same for a budget in dollars at --price_per_gpu_hour.
        json: Print the plan as JSON instead of a report.
    """
    items = [config] if isinstance(config, str) else config or []
    if preset is not None and items and all(item.startswith("--") for item in items):  # overrides, no YAML
        raise ValueError(f"dotted options such as {items[0]} change a --config experiment, not a --preset")
    accelerator = get_accelerator(gpu)
    given_mfu = parse_mfu(mfu)
    budget = (budget_flops, budget_gpu_hours, budget_usd)
    law, optimum = compute_optimal_run(scaling_law, *budget, accelerator, given_mfu, price_per_gpu_hour)
    if optimum is not None and (config, preset) != (None, None):
        raise ValueError("pass a --budget_* (to plan the compute-optimal run) or --config/--preset, not both")
    if optimum is None and (config is None) == (preset is None):
        raise ValueError(
            f"pass exactly one of --config (an experiment YAML) or --preset (one of: {', '.join(PRESETS)})"
        )
    if optimum is not None:
        spec = RunSpec("compute-optimal", optimum.pop("config"), law.seq_len, resolve_precision(precision))
        tokens = optimum["tokens"]
    else:
        spec = read_experiment(config) if config is not None else preset_spec(preset, precision)
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
        "planned_setup": planned_setup(spec, num_gpus),
        **estimate,
        **time_and_cost(
            estimate["flops_per_token"], estimate["tokens"], accelerator, num_gpus, mfu_value, price_per_gpu_hour
        ),
        "memory": memory,
        "memory_per_gpu_gb": {name: s["memory_per_gpu_gb"] for name, s in memory["strategies"].items()},
        **law_predictions(law, model, estimate["tokens"], optimum),
    }
    print(jsonlib.dumps(result, indent=2) if json else format_report(result) + law_lines(result))
    return result


CLI = {
    "name": "plan",
    "summary": "estimate compute, time, memory and cost of a run before starting it",
    "function": "plan",
    "arguments": "experiment",
}
