"""The ladder's results: DIR/ladder.json (the fits of lit_llm.planning.ladder on the finished runs), DIR/ladder.md
and the console summary, with PNG plots when matplotlib (the `plot` extra) is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lit_llm.commands.plot import bits_per_byte
from lit_llm.planning.estimate import human
from lit_llm.planning.ladder import DataFacts, LadderSpec, ladder_summary
from lit_llm.planning.scaling import LadderLaw


def write_results(spec: LadderSpec, data: DataFacts, results: list[dict], notes: list[str]) -> dict:
    """DIR/ladder.json (``ladder_summary``), the plots and DIR/ladder.md, and the summary on the console."""
    per_nat = bits_per_byte(1.0, spec.data["data_dir"])  # bits per byte of one nat per token on the val split
    summary = ladder_summary(spec, data, results, notes, per_nat)
    out = spec.output_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "ladder.json", json.dumps(summary, indent=2))
    plots = draw_plots(summary, out)
    atomic_write(out / "ladder.md", report(summary, plots))
    print(console_summary(summary, out))
    return summary


def atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


# ---------------------------------------------------------------- text


def console_summary(summary: dict, out: Path) -> str:
    fit = summary["fit"]
    lines = [f"{sum(r['val_loss'] is not None for r in summary['runs'])}/{len(summary['runs'])} runs finished"]
    if fit["isoflop"]["a"] is not None:
        lines.append(f"IsoFLOP: N_opt ∝ C^{fit['isoflop']['a']:.3f}, D_opt ∝ C^{fit['isoflop']['b']:.3f}")
    if fit["parametric"]:
        lines.append(f"L(N, D) = {law_text(fit['parametric'])}")
    lines += [f"note: {note}" for note in fit["notes"]]
    lines.append(f"wrote {out / 'ladder.json'} and {out / 'ladder.md'}")
    return "\n".join(lines)


def law_text(law: dict) -> str:
    return f"{law['E']:.3f} + {law['A']:.4g}/N^{law['alpha']:.3f} + {law['B']:.4g}/D^{law['beta']:.3f}"


def report(summary: dict, plots: list[str]) -> str:
    fit = summary["fit"]
    lines = [
        f"# Scaling ladder: {summary['config']}",
        "",
        f"Data `{summary['data_dir']}` ({human(summary['train_tokens'])} training tokens, vocabulary "
        f"{summary['vocab_size']}), {summary['family']['name']} family, sequences of {summary['seq_len']} tokens. "
        f"N in the laws counts {fit['params']} parameters.",
        "",
        "| run | budget (FLOPs) | params | non-emb. | tokens | epochs | val loss | bits/byte |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["runs"]:
        loss = "—" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        bpb = "—" if r["bits_per_byte"] is None else f"{r['bits_per_byte']:.4f}"
        lines.append(
            f"| {r['name']} | {r['budget']:.3g} | {human(r['params'])} | {human(r['non_embedding_params'])} | "
            f"{human(r['tokens'])} | {r['epochs']:.2f} | {loss} | {bpb} |"
        )
    lines += ["", "## IsoFLOP profiles (Chinchilla approach 2)", ""]
    for p in fit["isoflop"]["profiles"]:
        if p["params_opt"] is None:
            lines.append(f"- budget {p['budget']:.3g}: {p['reason']}")
        else:
            where = "" if p["bracketed"] else " (outside the sizes tried: not used)"
            lines.append(
                f"- budget {p['budget']:.3g}: N_opt {human(p['params_opt'])}, D_opt {human(p['tokens_opt'])}, "
                f"loss {p['loss_opt']:.4f}{where}"
            )
    if fit["isoflop"]["a"] is not None:
        lines.append(f"- N_opt ∝ C^{fit['isoflop']['a']:.3f}, D_opt ∝ C^{fit['isoflop']['b']:.3f}")
    lines += ["", "## Parametric law (Chinchilla approach 3)", ""]
    law = fit["parametric"]
    if law:
        lines.append(f"L(N, D) = {law_text(law)}, from {law['n_runs']} runs; {law['level']:.0%} bootstrap intervals:")
        lines.append("")
        lines += [f"- {name}: {law[name]:.4g} [{lo:.4g}, {hi:.4g}]" for name, (lo, hi) in law["intervals"].items()]
    else:
        lines.append("not fitted (see the notes)")
    if fit["notes"]:
        lines += ["", "## Notes", "", *[f"- {note}" for note in fit["notes"]]]
    lines += ["", *[f"![{name}]({name})" for name in plots]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def draw_plots(summary: dict, out: Path) -> list[str]:
    """isoflop.png, optimal_size.png and frontier.png; none (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        summary["fit"]["notes"].append('plots skipped: matplotlib is not installed (pip install "lit-llm[plot]")')
        return []
    finished = [r for r in summary["runs"] if r["val_loss"] is not None]
    if not finished:
        return []
    drawn = [isoflop_plot(plt, summary, finished, out)]
    if summary["fit"]["isoflop"]["a"] is not None:
        drawn.append(optimal_size_plot(plt, summary["fit"]["isoflop"], out))
    if summary["fit"]["parametric"]:
        drawn.append(frontier_plot(plt, summary, finished, out))
    return drawn


def isoflop_plot(plt, summary: dict, finished: list[dict], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    profiles = {p["budget"]: p for p in summary["fit"]["isoflop"]["profiles"]}
    for budget in sorted({r["budget"] for r in finished}):
        group = sorted((r for r in finished if r["budget"] == budget), key=lambda r: r["law_params"])
        line = ax.plot([r["law_params"] for r in group], [r["val_loss"] for r in group], "o", label=f"C={budget:.2g}")
        profile = profiles.get(budget)
        if profile and profile["params_opt"]:
            c0, c1, c2 = profile["coefficients"]
            x = np.linspace(math.log(group[0]["law_params"]), math.log(group[-1]["law_params"]), 50)
            ax.plot(np.exp(x), c0 + c1 * x + c2 * x**2, color=line[0].get_color(), alpha=0.6)
            ax.plot([profile["params_opt"]], [profile["loss_opt"]], "*", color=line[0].get_color(), markersize=11)
    ax.set(xscale="log", xlabel=f"parameters ({summary['fit']['params']})", ylabel="final val loss")
    ax.set_title("IsoFLOP profiles")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, plt, out, "isoflop.png")


def optimal_size_plot(plt, isoflop: dict, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    usable = [p for p in isoflop["profiles"] if p["params_opt"] and p["bracketed"]]
    budgets = np.array([p["budget"] for p in usable])
    ax.plot(budgets, [p["params_opt"] for p in usable], "o", label="N_opt per budget")
    law = isoflop["params_law"]
    span = np.geomspace(budgets.min() / 3, budgets.max() * 10, 50)
    ax.plot(span, law["coefficient"] * span ** law["exponent"], label=f"N_opt ∝ C^{law['exponent']:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="compute (FLOPs)", ylabel="loss-optimal parameters")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, plt, out, "optimal_size.png")


def frontier_plot(plt, summary: dict, finished: list[dict], out: Path) -> str:
    """The best measured loss per budget against the law's compute-optimal prediction and its interval."""
    law = LadderLaw.from_summary(summary, str(out / "ladder.json"))
    budgets = sorted({r["budget"] for r in finished})
    span = np.geomspace(budgets[0] / 2, budgets[-1] * 10, 30)
    optima = [law.optimum(budget)[1] for budget in span]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(span, [o["predicted_val_loss"] for o in optima], label="law, compute-optimal size")
    ax.fill_between(
        span,
        *zip(*(o["predicted_val_loss_interval"] for o in optima)),
        alpha=0.2,
        label=f"{law.law.level:.0%} interval",
    )
    best = [min(r["val_loss"] for r in finished if r["budget"] == b) for b in budgets]
    ax.plot(budgets, best, "o", label="best run per budget")
    ax.set(xscale="log", xlabel="compute (FLOPs)", ylabel="final val loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, plt, out, "frontier.png")


def save(fig, plt, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name
