"""`lit-llm ladder`: train a ladder of (size, compute budget) runs with `lit-llm fit`, then fit scaling laws.

A ladder YAML names the data, a model family, the budgets (FLOPs) and the sizes (parameter counts, or
"auto": spread around the compute-optimal size), and the recipe shared by every run. Each run is an
ordinary `lit-llm fit` of an experiment YAML the ladder writes into DIR/runs/NAME/fit.yaml: tokens =
budget / FLOPs per token of that size, the schedule fitted to the run's length. Runs are resumable (a
finished run is skipped, a killed one resumes from its last.ckpt), and `--print_commands` hands them to a
scheduler instead. The fits (lit_llm.planning.scaling) and the report go to DIR/ladder.json and DIR/ladder.md.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lit_llm.commands.ladder_report import write_results
from lit_llm.data.format import read_metadata
from lit_llm.model.config import ModelConfig
from lit_llm.planning.estimate import CHINCHILLA_TOKENS_PER_PARAM, human
from lit_llm.planning.scaling import MIN_PROFILE_SIZES
from lit_llm.planning.shapes import ModelFamily, count_params

KEYS = {
    "output_dir": "folder of the ladder: runs/, ladder.json, ladder.md",
    "budgets": "compute budgets in FLOPs, e.g. [1.0e12, 3.0e12]",
    "sizes": 'parameter counts, or "auto": sizes_per_budget sizes around the compute-optimal one',
    "sizes_per_budget": "sizes per budget with sizes: auto",
    "size_spread": "largest / smallest size of an auto spread",
    "min_steps": "refuse runs shorter than this many optimizer steps",
    "max_epochs": "refuse runs that would read the training data more times than this",
    "seed": "seed_everything of every run",
    "family": "the model family (planning.scaling.ModelFamily): name, aspect_ratio, head_size, ModelConfig fields",
    "recipe": "LitLLM arguments for every run, plus warmup_fraction, min_lr_ratio, lr_reference_width",
    "data": "TokenDataModule arguments (data_dir, batch_size, seq_len, num_workers)",
    "trainer": "Lightning Trainer arguments for every run (precision, limit_val_batches, ...)",
    "fit": "params: total | non_embedding (the N of the laws), bootstrap: resamples, level: interval level",
}
DEFAULTS = {"sizes": "auto", "sizes_per_budget": 5, "size_spread": 8.0, "min_steps": 20, "max_epochs": 4.0}
DEFAULTS |= {"seed": 1337, "family": {}, "recipe": {}, "data": {}, "trainer": {}, "fit": {}}
RECIPE_RULES = {"warmup_fraction": 0.05, "min_lr_ratio": 0.1, "lr_reference_width": None, "learning_rate": 1e-3}
TRAINER_DEFAULTS = {"accelerator": "auto", "devices": 1, "precision": "32-true", "enable_progress_bar": False}


@dataclass(frozen=True)
class Run:
    index: int
    name: str
    budget: float
    config: ModelConfig
    steps: int
    tokens: int
    flops: float
    epochs: float
    learning_rate: float
    run_dir: Path

    def summary(self, count: str) -> dict:
        return {
            "name": self.name,
            "budget": self.budget,
            "n_layer": self.config.n_layer,
            "n_embd": self.config.n_embd,
            "params": count_params(self.config, "total"),
            "non_embedding_params": count_params(self.config, "non_embedding"),
            "law_params": count_params(self.config, count),
            "steps": self.steps,
            "tokens": self.tokens,
            "flops": self.flops,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "run_dir": str(self.run_dir),
        }


# ---------------------------------------------------------------- reading the ladder


def floats(value, name: str, source: str) -> list[float]:
    """A YAML list or a comma-separated string of numbers (YAML reads 1e12 without a dot as a string)."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {name} must be numbers such as 1e12,3e12; got {value!r}") from None
    if not numbers or any(not (n > 0 and math.isfinite(n)) for n in numbers):
        raise ValueError(f"{source}: {name} must be positive numbers such as 1e12,3e12; got {value!r}")
    return numbers


def read_ladder(path: str, overrides: dict) -> dict:
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"ladder config {path} not found; pass e.g. --config experiments/ladder-code-cpu.yaml")
    raw = yaml.safe_load(file.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a ladder YAML is a mapping of {', '.join(KEYS)}")
    for dotted, value in overrides.items():  # --data.data_dir DIR, --recipe.learning_rate 3e-3, ...
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"--{dotted}: {key} is not a section of the ladder YAML")
        node[leaf] = value
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; a ladder YAML has: {', '.join(KEYS)}")
    ladder = {**DEFAULTS, **raw, "source": str(path)}
    for key in ("output_dir", "budgets"):
        if ladder.get(key) is None:
            raise ValueError(f"{path}: {key} is missing ({KEYS[key]})")
    if not ladder["data"].get("data_dir"):
        raise ValueError(f"{path}: data.data_dir is missing: a folder written by `lit-llm prepare`")
    ladder["budgets"] = sorted(floats(ladder["budgets"], "budgets", path))
    if ladder["sizes"] != "auto":
        ladder["sizes"] = floats(ladder["sizes"], "sizes", path)
    ladder["family"] = ModelFamily.from_dict(ladder["family"], path)
    if ladder["recipe"].get("lr_reference_width") and ladder["family"].shared.get("parametrization") == "mup":
        raise ValueError(
            f"{path}: recipe.lr_reference_width and family parametrization mup both scale the learning rate with "
            "width; drop recipe.lr_reference_width (μP already does it)"
        )
    count_params(ModelConfig(vocab_size=1), ladder["fit"].get("params", "total"))  # validates fit.params
    return ladder


# ---------------------------------------------------------------- sizing the runs


def auto_shapes(ladder: dict, budget: float, shapes: list[ModelConfig], seq_len: int, count: str) -> list[ModelConfig]:
    """``sizes_per_budget`` distinct shapes spread geometrically (``size_spread`` end to end) around the shape
    whose Chinchilla run (20 tokens per parameter) costs the budget; neighbours fill in where small widths
    are too coarse for the spread (or the spread reaches past the family's ends)."""
    cost = [c.flops_per_token(seq_len) * CHINCHILLA_TOKENS_PER_PARAM * c.num_params() for c in shapes]
    centre = min(range(len(shapes)), key=lambda i: abs(math.log(cost[i] / budget)))
    k, spread = int(ladder["sizes_per_budget"]), float(ladder["size_spread"])
    sizes = np.array([count_params(c, count) for c in shapes], dtype=np.float64)
    targets = sizes[centre] * spread ** (np.linspace(-0.5, 0.5, k) if k > 1 else np.zeros(1))
    picked = sorted({int(np.argmin(np.abs(np.log(sizes / t)))) for t in targets})
    while len(picked) < min(k, len(shapes)):  # widen by one shape on the side nearer the centre's balance
        below, above = picked[0] - 1, picked[-1] + 1
        grow_down = below >= 0 and (above >= len(shapes) or centre - picked[0] <= picked[-1] - centre)
        picked = sorted({*picked, below if grow_down else above})
    return [shapes[i] for i in picked]


def data_facts(ladder: dict) -> dict:
    """What the sizing needs from the prepared data: its vocabulary, training tokens and the sequence length."""
    metadata = read_metadata(Path(ladder["data"]["data_dir"]).expanduser())
    block_size = ladder["family"].shared.get("block_size", ModelConfig.block_size)
    return {
        "vocab_size": metadata["vocab_size"],
        "train_tokens": metadata["splits"]["train"]["tokens"],
        "seq_len": ladder["data"].get("seq_len") or block_size,
    }


def plan_runs(ladder: dict) -> list[Run]:
    data, recipe, family = ladder["data"], ladder["recipe"], ladder["family"]
    facts = data_facts(ladder)
    train_tokens, seq_len = facts["train_tokens"], facts["seq_len"]
    shapes = family.shapes(facts["vocab_size"])
    sequences = recipe.get("global_batch_size") or data.get("batch_size", 8) * int(ladder["trainer"].get("devices", 1))
    tokens_per_step = sequences * seq_len
    count = ladder["fit"].get("params", "total")
    runs: list[Run] = []
    for budget in ladder["budgets"]:
        if ladder["sizes"] == "auto":  # among the shapes this budget can train (enough steps, fresh enough data)
            fit = [c for c in shapes if not run_problem(ladder, budget, c, seq_len, tokens_per_step, train_tokens)]
            if len(fit) < min(MIN_PROFILE_SIZES, ladder["sizes_per_budget"]):
                problems = (run_problem(ladder, budget, c, seq_len, tokens_per_step, train_tokens) for c in shapes)
                raise ValueError(
                    f"{ladder['source']}: budget {budget:.3g} FLOPs can train only {len(fit)} shape(s) of the family "
                    f"(sizes: auto needs {MIN_PROFILE_SIZES}); e.g. " + next(p for p in problems if p)
                )
            configs = auto_shapes(ladder, budget, fit, seq_len, count)
        else:  # the nearest shape of each size, once
            nearest = [family.nearest(size, facts["vocab_size"], count) for size in ladder["sizes"]]
            configs = list({c.n_embd: c for c in nearest}.values())
        for config in configs:
            runs.append(size_run(ladder, len(runs), budget, config, seq_len, tokens_per_step, train_tokens))
    return runs


def run_problem(ladder, budget, config, seq_len, tokens_per_step, train_tokens) -> str | None:
    """Why a (budget, shape) run cannot be trained: too few steps, or more epochs than max_epochs; else None."""
    flops_per_token = config.flops_per_token(seq_len)
    steps = round(budget / (flops_per_token * tokens_per_step))
    shape = f"n_layer={config.n_layer}, n_embd={config.n_embd}, {human(config.num_params())} parameters"
    if steps < ladder["min_steps"]:
        need = ladder["min_steps"] * flops_per_token * tokens_per_step
        return (
            f"budget {budget:.3g} FLOPs buys {steps} steps of {shape} "
            f"({flops_per_token * tokens_per_step:.3g} FLOPs a step), fewer than min_steps={ladder['min_steps']}; "
            f"raise the budget to at least {need:.3g}, use smaller sizes or a smaller batch"
        )
    epochs = steps * tokens_per_step / train_tokens
    if epochs > ladder["max_epochs"]:
        return (
            f"{shape} at budget {budget:.3g} needs {human(steps * tokens_per_step)} tokens, {epochs:.1f} "
            f"epochs of the data's {human(train_tokens)} training tokens (max_epochs={ladder['max_epochs']}); the "
            "sizes do not fit the data: use larger sizes, smaller budgets or more data"
        )
    return None


def size_run(ladder, index, budget, config, seq_len, tokens_per_step, train_tokens) -> Run:
    problem = run_problem(ladder, budget, config, seq_len, tokens_per_step, train_tokens)
    if problem:
        raise ValueError(f"{ladder['source']}: {problem}")
    flops_per_token = config.flops_per_token(seq_len)
    steps = round(budget / (flops_per_token * tokens_per_step))
    tokens = steps * tokens_per_step
    epochs = tokens / train_tokens
    recipe = {**RECIPE_RULES, **ladder["recipe"]}
    learning_rate = recipe["learning_rate"]
    if recipe["lr_reference_width"]:  # Adam's hidden-layer LR ∝ 1/width (μP's rule, without its init changes)
        learning_rate *= recipe["lr_reference_width"] / config.n_embd
    name = f"C{budget:.3g}-L{config.n_layer}-d{config.n_embd}".replace("+", "")
    return Run(
        index, name, budget, config, steps, tokens, flops_per_token * tokens, epochs, learning_rate,
        Path(ladder["output_dir"]).expanduser() / "runs" / name,
    )  # fmt: skip


def fit_experiment(ladder: dict, run: Run) -> dict:
    """The `lit-llm fit` experiment of one run: the recipe with the schedule fitted to its length."""
    recipe = {**RECIPE_RULES, **ladder["recipe"]}
    model = {k: v for k, v in recipe.items() if k not in RECIPE_RULES}
    model |= {
        "architecture": run.config.to_dict(),
        "learning_rate": run.learning_rate,
        "min_lr": run.learning_rate * recipe["min_lr_ratio"],
        "warmup_steps": max(1, round(recipe["warmup_fraction"] * run.steps)),
        "sample_tokens": model.get("sample_tokens", 0),
    }
    trainer = {**TRAINER_DEFAULTS, "log_every_n_steps": max(1, min(10, run.steps // 5)), **ladder["trainer"]}
    trainer |= {"max_steps": run.steps, "val_check_interval": run.steps, "default_root_dir": str(run.run_dir)}
    checkpoint = {"every_n_train_steps": max(1, run.steps // 4), "save_top_k": 0}  # last.ckpt only, to resume
    return {"seed_everything": ladder["seed"], "trainer": trainer, "model": model, "data": ladder["data"],
            "checkpoint": checkpoint}  # fmt: skip


def write_experiment(ladder: dict, run: Run) -> Path:
    """DIR/runs/NAME/fit.yaml, refusing to change the recipe of a run that has started."""
    path = run.run_dir / "fit.yaml"
    text = yaml.safe_dump(fit_experiment(ladder, run), sort_keys=False)
    if path.exists() and path.read_text() != text and (run.run_dir / "checkpoints").exists():
        raise ValueError(
            f"{run.run_dir} was started with another recipe than {ladder['source']} now gives; "
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
    runs = plan_runs(spec)
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
    count = spec["fit"].get("params", "total")
    results = [{**run.summary(count), "val_loss": (finished_result(run) or {}).get("val_loss")} for run in runs]
    return write_results(spec, data_facts(spec), results, notes)


def parse_args(args: list[str]) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(
        prog="lit-llm ladder",
        description=__doc__.split("\n\n")[0],
        epilog="Any ladder YAML key can be overridden as --KEY.SUBKEY VALUE, e.g. --data.data_dir DIR, "
        "--recipe.learning_rate 3e-3. Keys: " + "; ".join(f"{k}: {v}" for k, v in KEYS.items()),
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
        if key.split(".")[0] not in KEYS:
            raise ValueError(f"unknown option --{key}; ladder YAML keys are: {', '.join(KEYS)}")
        overrides[key] = yaml.safe_load(value)
    return options, overrides


CLI = {
    "name": "ladder",
    "summary": "train a ladder of (size, compute budget) runs and fit scaling laws to them",
    "function": "ladder",
    "arguments": "raw",
}
