"""The ladder's results: the fits of lit_llm.planning.scaling on the finished runs, DIR/ladder.json and DIR/ladder.md
(with PNG plots when matplotlib, the `plot` extra, is installed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lit_llm.commands.plot import bits_per_byte
from lit_llm.planning.estimate import human
from lit_llm.planning.scaling import MIN_PARAMETRIC_RUNS, ParametricLaw, compute_optimal, fit_isoflop, fit_parametric

DEFAULT_BOOTSTRAP = 200


def fit_laws(finished: list[dict], fit: dict) -> dict:
    """Both fits, each replaced by the reason it could not be made when the runs do not allow it."""
    notes = []
    isoflop = fit_isoflop(finished, params_key="law_params")
    notes += isoflop["skipped"] + (
        [f"IsoFLOP exponents not fitted: {isoflop['reason']}"] if "reason" in isoflop else []
    )
    parametric = None
    if len(finished) < MIN_PARAMETRIC_RUNS:
        notes.append(f"parametric law not fitted: {len(finished)} finished run(s), it needs {MIN_PARAMETRIC_RUNS}")
    else:
        try:
            parametric = fit_parametric(
                [r["law_params"] for r in finished],
                [r["tokens"] for r in finished],
                [r["val_loss"] for r in finished],
                n_bootstrap=int(fit.get("bootstrap", DEFAULT_BOOTSTRAP)),
                level=float(fit.get("level", 0.95)),
            ).to_dict()
        except ValueError as err:
            notes.append(f"parametric law not fitted: {err}")
    return {"params": fit.get("params", "total"), "isoflop": isoflop, "parametric": parametric, "notes": notes}


def write_results(spec: dict, facts: dict, results: list[dict], notes: list[str]) -> dict:
    data_dir = spec["data"]["data_dir"]
    per_nat = bits_per_byte(1.0, data_dir)  # bits per byte of a loss of one nat per token on the val split
    for r in results:
        r["bits_per_byte"] = None if r["val_loss"] is None else r["val_loss"] * per_nat
    finished = [r for r in results if r["val_loss"] is not None]
    missing = len(results) - len(finished)
    fit = fit_laws(finished, spec["fit"])
    fit["notes"] = (
        notes + ([f"{missing} run(s) not finished yet: left out of the fits"] if missing else []) + fit["notes"]
    )
    family = spec["family"]
    summary = {
        "config": spec["source"],
        "data_dir": data_dir,
        "vocab_size": facts["vocab_size"],
        "seq_len": facts["seq_len"],
        "train_tokens": facts["train_tokens"],
        "bits_per_byte_per_nat": per_nat,
        "family": {k: getattr(family, k) for k in family.__dataclass_fields__},
        "runs": results,
        "fit": fit,
    }
    out = Path(spec["output_dir"]).expanduser()
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
    from lit_llm.planning.shapes import ModelFamily, count_params

    law = ParametricLaw.from_dict(summary["fit"]["parametric"])
    family = ModelFamily(**summary["family"])
    shapes = family.shapes(summary["vocab_size"])
    candidates = [(count_params(c, summary["fit"]["params"]), c.flops_per_token(summary["seq_len"])) for c in shapes]
    budgets = sorted({r["budget"] for r in finished})
    span = np.geomspace(budgets[0] / 2, budgets[-1] * 10, 30)
    optima = [compute_optimal(law, c, candidates) for c in span]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(span, [o["predicted_val_loss"] for o in optima], label="law, compute-optimal size")
    ax.fill_between(
        span, *zip(*(o["predicted_val_loss_interval"] for o in optima)), alpha=0.2, label=f"{law.level:.0%} interval"
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
