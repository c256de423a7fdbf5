"""`lit-llm plan --scaling_law DIR/ladder.json`: the options that load the ladder's law and size the compute-optimal
run of a budget (``--budget_flops``, ``--budget_gpu_hours`` or ``--budget_usd``), and the report's lines on what the
law predicts (``lit_llm.planning.experiment.plan_run`` adds the predictions)."""

from __future__ import annotations

from lit_llm.planning.estimate import human
from lit_llm.planning.hardware import Accelerator
from lit_llm.planning.scaling import LadderLaw, budget_to_flops


def compute_optimal_run(
    scaling_law: str | None,
    budget_flops: float | None,
    budget_gpu_hours: float | None,
    budget_usd: float | None,
    accelerator: Accelerator,
    mfu: float | None,
    price_per_gpu_hour: float,
) -> tuple[LadderLaw | None, dict | None]:
    """The ladder's law (if given) and, with a budget, its compute-optimal shape (under "config") and tokens."""
    budgets = (budget_flops, budget_gpu_hours, budget_usd)
    if all(b is None for b in budgets):
        return (LadderLaw.load(scaling_law) if scaling_law else None), None
    if scaling_law is None:
        raise ValueError("a --budget_* needs --scaling_law DIR/ladder.json (from `lit-llm ladder`) to size the run")
    if mfu is None and budget_flops is None:
        raise ValueError("--mfu measure needs a model to time; with --budget_gpu_hours or --budget_usd pass --mfu 0.4")
    law = LadderLaw.load(scaling_law)
    flops = budget_to_flops(
        *budgets, mfu=mfu, peak_tflops=accelerator.bf16_tflops, price_per_gpu_hour=price_per_gpu_hour
    )
    config, optimum = law.optimum(flops)
    return law, {**optimum, "config": config}


def law_lines(result: dict) -> str:
    if "predicted_val_loss" not in result:
        return ""
    low, high = result["predicted_val_loss_interval"]
    bpb_low, bpb_high = result["predicted_bits_per_byte_interval"]
    lines = ["", f"Predicted by the scaling law {result['scaling_law']}"]
    optimum = result["compute_optimal"]
    if optimum is not None:
        lines.append(
            f"  compute-optimal for {optimum['budget_flops']:.3g} FLOPs: n_layer {optimum['n_layer']}, "
            f"n_embd {optimum['n_embd']} ({human(optimum['params'])} parameters in the law), "
            f"{human(optimum['tokens'])} tokens"
        )
    lines += [
        f"  final val loss  {result['predicted_val_loss']:.4f} [{low:.4f}, {high:.4f}]",
        f"  bits per byte   {result['predicted_bits_per_byte']:.4f} [{bpb_low:.4f}, {bpb_high:.4f}]",
        *[f"  note: {note}" for note in result["law_notes"]],
    ]
    return "\n".join(lines)
