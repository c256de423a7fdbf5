"""`lit-llm plan`: what a pre-training run will cost, and what fits on the hardware, before it starts.

The plan is ``lit_llm.planning.experiment`` (what the run is, and its compute, time, cost and memory per GPU); this
file reads the command line and the experiment YAML (with fit's own parser) and prints the report.
"""

from __future__ import annotations

import json as jsonlib
import math
from pathlib import Path

import yaml

from lit_llm.commands.plan_law import compute_optimal_run, law_lines
from lit_llm.model.presets import PRESETS
from lit_llm.planning.estimate import CHINCHILLA_TOKENS_PER_PARAM, amount, duration, human, resolve_precision
from lit_llm.planning.experiment import RunSpec, experiment_source, plan_run
from lit_llm.planning.hardware import get_accelerator
from lit_llm.planning.memory import FRAMEWORK_OVERHEAD_BYTES, GB, HEADROOM, setup_name

# ---------------------------------------------------------------- inputs


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
    from lit_llm.train.cli import parse_experiment  # imports Lightning: only when an experiment is planned

    try:
        parsed = parse_experiment(args)
    except ValueError as err:
        raise ValueError(f"{experiment_source(paths)}: {err}") from None
    return RunSpec.from_experiment(parsed, paths)


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
    lines += ["", recommendation_line(memory, r)]
    return "\n".join(lines)


def recommendation_line(memory: dict, r: dict) -> str:
    """The planned setup when it fits (and a cheaper one that also does), else the cheapest that fits."""
    rec, planned = memory["recommendation"], r["planned_setup"]
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
    recompute = "recomputes the forward: ~33% more compute than planned above"
    if planned != setup_name(rec["strategy"], rec["activation_checkpointing"]):
        checkpointing = f" + activation checkpointing ({recompute})" if rec["activation_checkpointing"] else ""
        line = f"Recommendation: {rec['strategy']}{checkpointing}, {batch_text(rec)}."
        return line + (f" The planned {planned} does not fit even at micro-batch 1." if planned else "")
    line = f"Recommendation: {planned} as planned, {batch_text(rec)}" + (
        f" (activation checkpointing {recompute})." if rec["activation_checkpointing"] else "."
    )
    alternative = memory["alternative"]
    if alternative is None:
        return line
    name = setup_name(alternative["strategy"], alternative["activation_checkpointing"])
    drops_checkpointing = rec["activation_checkpointing"] and not alternative["activation_checkpointing"]
    saving = "no recomputed forward" if drops_checkpointing else "less communication"
    return f"{line} Also fits, cheaper: {name}, {batch_text(alternative)} ({saving})."


def batch_text(rec: dict) -> str:
    text = f"micro-batch {rec['micro_batch_size']}"
    if rec["accumulate_grad_batches"] > 1:
        text += f" with accumulate_grad_batches {rec['accumulate_grad_batches']} to keep the planned global batch"
    return text


# ---------------------------------------------------------------- entry points


def validate(spec: RunSpec, tokens: float | None, price: float) -> None:
    """The planned run's numbers, named by the option that sets them (or the YAML key behind it)."""
    if spec.num_gpus < 1:
        raise ValueError(f"--num_gpus must be at least 1, got {spec.num_gpus}")
    if spec.micro_batch_size is not None and spec.micro_batch_size < 1:
        raise ValueError(
            f"--micro_batch_size must be at least 1, got {spec.micro_batch_size}; "
            "or leave it out to get the largest that fits"
        )
    if not 1 <= spec.seq_len <= spec.config.block_size:
        raise ValueError(
            f"--seq_len {spec.seq_len} must be between 1 and the model's block_size {spec.config.block_size}"
        )
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
        preset: Model preset to plan instead of a YAML: one of the names in lit_llm.model.presets.PRESETS.
        tokens: Training tokens, e.g. 10e9. Overrides the YAML's max_steps × global batch × seq_len.
            Default: compute-optimal, 20 tokens per parameter.
        gpu: Accelerator name from lit_llm.planning.hardware (e.g. a100-80gb, h100-sxm, l4).
        num_gpus: Number of GPUs in the run, all nodes together. Overrides the YAML's devices × num_nodes.
            Default: the YAML's ("auto" counts as 1), else 1.
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
        spec = read_experiment(config) if config is not None else RunSpec.from_preset(preset, precision)
    spec = spec.overridden(num_gpus=num_gpus, micro_batch_size=micro_batch_size, seq_len=seq_len)
    validate(spec, tokens, price_per_gpu_hour)
    result = plan_run(
        spec,
        accelerator,
        tokens=tokens,
        mfu=given_mfu,
        price_per_gpu_hour=price_per_gpu_hour,
        law=law,
        compute_optimal=optimum,
    )
    print(jsonlib.dumps(result, indent=2) if json else format_report(result) + law_lines(result))
    return result


CLI = {
    "name": "plan",
    "summary": "estimate compute, time, memory and cost of a run before starting it",
    "function": "plan",
    "arguments": "experiment",
}
