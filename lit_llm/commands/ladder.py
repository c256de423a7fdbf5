"""`lit-llm ladder`: train a ladder of (size, compute budget) runs with `lit-llm fit`, then fit scaling laws.

A ladder YAML names the data, a model family, the budgets (FLOPs) and the sizes (parameter counts, or
"auto": spread around the compute-optimal size), and the recipe shared by every run. Each run is an
ordinary `lit-llm fit` of an experiment YAML the ladder writes into DIR/runs/NAME/fit.yaml: tokens =
budget / FLOPs per token of that size, the schedule fitted to the run's length. Runs are resumable (a
finished run is skipped, a killed one resumes from its last.ckpt), and `--print_commands` hands them to a
scheduler instead. The fits (lit_llm.planning.scaling) and the report go to DIR/ladder.json and DIR/ladder.md.
The sizing and the fits are lit_llm.planning.ladder; this file reads the files, runs the fits and prints.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from lit_llm.commands.ladder_report import write_results
from lit_llm.data.format import read_metadata
from lit_llm.planning.estimate import human
from lit_llm.planning.ladder import LADDER_KEYS, DataFacts, LadderSpec, Run, fit_experiment, plan_runs

# ---------------------------------------------------------------- reading the ladder


def read_ladder(path: str, overrides: dict) -> LadderSpec:
    """The ladder YAML at ``path`` with the command line's ``--KEY.SUBKEY VALUE`` overrides applied."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"ladder config {path} not found; pass e.g. --config experiments/ladder-code-cpu.yaml")
    raw = yaml.safe_load(file.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a ladder YAML is a mapping of {', '.join(LADDER_KEYS)}")
    for dotted, value in overrides.items():  # --data.data_dir DIR, --recipe.learning_rate 3e-3, ...
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"--{dotted}: {key} is not a section of the ladder YAML")
        node[leaf] = value
    return LadderSpec.from_dict(raw, str(path))


def data_facts(spec: LadderSpec) -> DataFacts:
    """The prepared data's vocabulary and training tokens, from its metadata.json."""
    metadata = read_metadata(Path(spec.data["data_dir"]).expanduser())
    return DataFacts(vocab_size=metadata["vocab_size"], train_tokens=metadata["splits"]["train"]["tokens"])


# ---------------------------------------------------------------- the runs' experiments


def write_experiment(spec: LadderSpec, run: Run) -> Path:
    """DIR/runs/NAME/fit.yaml, refusing to change the recipe of a run that has started."""
    path = run.run_dir / "fit.yaml"
    text = yaml.safe_dump(fit_experiment(spec, run), sort_keys=False)
    if path.exists() and path.read_text() != text and (run.run_dir / "checkpoints").exists():
        raise ValueError(
            f"{run.run_dir} was started with another recipe than {spec.source} now gives; "
            "use another --output_dir, or remove that run folder to train it again"
        )
    run.run_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".yaml.tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path


def fit_command(path: Path) -> list[str]:
    """`--ckpt_path last` always: a fresh run starts, a killed one resumes (Lightning warns there is none yet)."""
    return ["fit", "--config", str(path), "--ckpt_path", "last"]


# ---------------------------------------------------------------- running


def finished_result(run: Run) -> dict | None:
    """val_loss of a run whose final validation (at max_steps) is in its TensorBoard events, else None."""
    from lit_llm.commands.plot import run_summary

    if not (run.run_dir / "config.yaml").is_file():
        return None
    try:
        summary = run_summary(run.run_dir)
    except (FileNotFoundError, ValueError):
        return None
    return summary if summary["steps"] >= run.steps else None


def train(run: Run, path: Path, total: int) -> None:
    resuming = (run.run_dir / "checkpoints" / "last.ckpt").exists()
    print(
        f"[{run.index + 1}/{total}] {run.name}: {human(run.config.num_params())} parameters, "
        f"{human(run.tokens)} tokens, {run.steps} steps" + (" (resuming from last.ckpt)" if resuming else ""),
        flush=True,
    )
    log = run.run_dir / "fit.log"
    with log.open("a") as out:
        code = subprocess.run(
            [sys.executable, "-m", "lit_llm.cli", *fit_command(path)], stdout=out, stderr=out
        ).returncode
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(
            f"lit-llm ladder: error: run {run.name} failed (exit {code}): {tail[0]}; see {log}, "
            "then rerun the ladder to resume it"
        )


def warn_repeats(runs: list[Run]) -> list[str]:
    repeated = [r for r in runs if r.epochs > 1]
    if not repeated:
        return []
    worst = max(repeated, key=lambda r: r.epochs)
    note = (
        f"{len(repeated)} run(s) repeat the training data (up to {worst.epochs:.2f} epochs, {worst.name}): "
        "repeated tokens are worth less than fresh ones and bend the law (Muennighoff et al. 2023)"
    )
    print(f"warning: {note}", file=sys.stderr)
    return [note]


def ladder(args: list[str]) -> dict | None:
    options, overrides = parse_args(args)
    if options.output_dir:
        overrides["output_dir"] = options.output_dir
    for key in ("budgets", "sizes"):
        if getattr(options, key):
            overrides[key] = getattr(options, key)
    spec = read_ladder(options.config, overrides)
    data = data_facts(spec)
    runs = plan_runs(spec, data)
    notes = warn_repeats(runs)
    if options.run_index is not None and not 0 <= options.run_index < len(runs):
        raise ValueError(f"--run_index {options.run_index} is out of range: this ladder has runs 0 to {len(runs) - 1}")
    if options.print_commands:
        for run in runs:
            print(" ".join(["lit-llm", *fit_command(write_experiment(spec, run))]))
        return None
    if not options.fit_only:
        for run in runs if options.run_index is None else [runs[options.run_index]]:
            path = write_experiment(spec, run)
            if finished_result(run) is not None:
                print(f"[{run.index + 1}/{len(runs)}] {run.name}: finished, skipped", flush=True)
                continue
            train(run, path, len(runs))
        if options.run_index is not None:
            return None
    val_losses = [(finished_result(run) or {}).get("val_loss") for run in runs]
    results = [{**run.summary(spec.params_count), "val_loss": loss} for run, loss in zip(runs, val_losses)]
    return write_results(spec, data, results, notes)


def parse_args(args: list[str]) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(
        prog="lit-llm ladder",
        description=__doc__.split("\n\n")[0],
        epilog="Any ladder YAML key can be overridden as --KEY.SUBKEY VALUE, e.g. --data.data_dir DIR, "
        "--recipe.learning_rate 3e-3. Keys: " + "; ".join(f"{k}: {v}" for k, v in LADDER_KEYS.items()),
    )
    parser.add_argument("--config", required=True, help="the ladder YAML, e.g. experiments/ladder-code-cpu.yaml")
    parser.add_argument("--budgets", help="compute budgets in FLOPs, comma-separated: 1e11,3e11,1e12")
    parser.add_argument("--sizes", help="auto, or parameter counts, comma-separated: 2e5,5e5,1e6")
    parser.add_argument("--output_dir", help="the ladder's folder (runs/, ladder.json, ladder.md)")
    parser.add_argument(
        "--print_commands", action="store_true", help="print one `lit-llm fit` line per run, train none"
    )
    parser.add_argument("--run_index", type=int, help="train only run I (0-based, in --print_commands order)")
    parser.add_argument(
        "--fit_only", action="store_true", help="train nothing: fit the finished runs, write the report"
    )
    options, rest = parser.parse_known_args(args)
    overrides = {}
    while rest:
        key = rest.pop(0)
        if not key.startswith("--") or "=" not in key and not rest:
            raise ValueError(f"unrecognized argument {key!r}: overrides are --KEY.SUBKEY VALUE")
        key, value = key[2:].split("=", 1) if "=" in key else (key[2:], rest.pop(0))
        if key.split(".")[0] not in LADDER_KEYS:
            raise ValueError(f"unknown option --{key}; ladder YAML keys are: {', '.join(LADDER_KEYS)}")
        overrides[key] = yaml.safe_load(value)
    return options, overrides


CLI = {
    "name": "ladder",
    "summary": "train a ladder of (size, compute budget) runs and fit scaling laws to them",
    "function": "ladder",
    "arguments": "raw",
}
