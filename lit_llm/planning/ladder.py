"""A scaling ladder's sizing and fits: the ladder YAML as a typed ``LadderSpec``, the (budget, shape) runs it asks
for (``plan_runs``, ``size_run``), the `lit-llm fit` experiment of each run (``fit_experiment``), and the laws
fitted on the finished runs (``fit_laws``, ``ladder_summary``). ``lit_llm.commands.ladder`` reads the files, runs
the fits and prints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lit_llm.model.config import ModelConfig
from lit_llm.planning.estimate import CHINCHILLA_TOKENS_PER_PARAM, human
from lit_llm.planning.scaling import MIN_PARAMETRIC_RUNS, MIN_PROFILE_SIZES, fit_isoflop, fit_parametric
from lit_llm.planning.shapes import ModelFamily, count_params

LADDER_KEYS = {
    "output_dir": "folder of the ladder: runs/, ladder.json, ladder.md",
    "budgets": "compute budgets in FLOPs, e.g. [1.0e12, 3.0e12]",
    "sizes": 'parameter counts, or "auto": sizes_per_budget sizes around the compute-optimal one',
    "sizes_per_budget": "sizes per budget with sizes: auto",
    "size_spread": "largest / smallest size of an auto spread",
    "min_steps": "refuse runs shorter than this many optimizer steps",
    "max_epochs": "refuse runs that would read the training data more times than this",
    "seed": "seed_everything of every run",
    "family": "the model family (planning.shapes.ModelFamily): name, aspect_ratio, head_size, ModelConfig fields",
    "recipe": "LitLLM arguments for every run, plus warmup_fraction, min_lr_ratio, lr_reference_width",
    "data": "TokenDataModule arguments (data_dir, batch_size, seq_len, num_workers)",
    "trainer": "Lightning Trainer arguments for every run (precision, limit_val_batches, ...)",
    "fit": "params: total | non_embedding (the N of the laws), bootstrap: resamples, level: interval level",
}
DEFAULTS = {"sizes": "auto", "sizes_per_budget": 5, "size_spread": 8.0, "min_steps": 20, "max_epochs": 4.0}
DEFAULTS |= {"seed": 1337, "family": {}, "recipe": {}, "data": {}, "trainer": {}, "fit": {}}
RECIPE_RULES = {"warmup_fraction": 0.05, "min_lr_ratio": 0.1, "lr_reference_width": None, "learning_rate": 1e-3}
TRAINER_DEFAULTS = {"accelerator": "auto", "devices": 1, "precision": "32-true", "enable_progress_bar": False}
DEFAULT_BOOTSTRAP = 200


# ---------------------------------------------------------------- the ladder


@dataclass(frozen=True)
class LadderSpec:
    """A ladder YAML, checked: every key of ``LADDER_KEYS``; recipe, data, trainer and fit stay mappings because
    they pass through to each run's `lit-llm fit` experiment."""

    source: str
    output_dir: Path
    budgets: list[float]  # sorted
    sizes: list[float] | None  # None: "auto"
    sizes_per_budget: int
    size_spread: float
    min_steps: int
    max_epochs: float
    seed: int
    family: ModelFamily
    recipe: dict
    data: dict
    trainer: dict
    fit: dict

    @classmethod
    def from_dict(cls, raw: dict, source: str) -> LadderSpec:
        """The ladder of a YAML's mapping (overrides applied), or a one-line error naming ``source`` and the key."""
        unknown = sorted(set(raw) - set(LADDER_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; a ladder YAML has: {', '.join(LADDER_KEYS)}")
        values = {**DEFAULTS, **raw}
        for key in ("output_dir", "budgets"):
            if values.get(key) is None:
                raise ValueError(f"{source}: {key} is missing ({LADDER_KEYS[key]})")
        if not values["data"].get("data_dir"):
            raise ValueError(f"{source}: data.data_dir is missing: a folder written by `lit-llm prepare`")
        budgets = sorted(floats(values["budgets"], "budgets", source))
        sizes = None if values["sizes"] == "auto" else floats(values["sizes"], "sizes", source)
        family = ModelFamily.from_dict(values["family"], source)
        if values["recipe"].get("lr_reference_width") and family.shared.get("parametrization") == "mup":
            raise ValueError(
                f"{source}: recipe.lr_reference_width and family parametrization mup both scale the learning rate "
                "with width; drop recipe.lr_reference_width (μP already does it)"
            )
        count_params(ModelConfig(vocab_size=1), values["fit"].get("params", "total"))  # validates fit.params
        return cls(
            **{
                **values,
                "source": source,
                "output_dir": Path(values["output_dir"]).expanduser(),
                "budgets": budgets,
                "sizes": sizes,
                "sizes_per_budget": int(values["sizes_per_budget"]),
                "size_spread": float(values["size_spread"]),
                "family": family,
            }
        )

    @property
    def params_count(self) -> str:
        """The N of the laws: "total" or "non_embedding" parameters."""
        return self.fit.get("params", "total")

    @property
    def seq_len(self) -> int:
        return self.data.get("seq_len") or self.family.shared.get("block_size", ModelConfig.block_size)

    @property
    def tokens_per_step(self) -> int:
        """The global batch in tokens: the recipe's global_batch_size, else the micro-batch on every device."""
        devices = int(self.trainer.get("devices", 1))
        sequences = self.recipe.get("global_batch_size") or self.data.get("batch_size", 8) * devices
        return sequences * self.seq_len

    def steps(self, budget: float, config: ModelConfig) -> int:
        """Optimizer steps of ``config`` that ``budget`` FLOPs buy."""
        return round(budget / (config.flops_per_token(self.seq_len) * self.tokens_per_step))


@dataclass(frozen=True)
class DataFacts:
    """What the sizing needs from the prepared data's metadata.json."""

    vocab_size: int
    train_tokens: int


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


# ---------------------------------------------------------------- sizing the runs


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


def plan_runs(spec: LadderSpec, data: DataFacts) -> list[Run]:
    """Every (budget, shape) run of the ladder, in budget order."""
    shapes = spec.family.shapes(data.vocab_size)
    runs: list[Run] = []
    for budget in spec.budgets:
        if spec.sizes is None:  # among the shapes this budget can train (enough steps, fresh enough data)
            trainable = [c for c in shapes if not run_problem(spec, data, budget, c)]
            if len(trainable) < min(MIN_PROFILE_SIZES, spec.sizes_per_budget):
                problem = next(p for p in (run_problem(spec, data, budget, c) for c in shapes) if p)
                raise ValueError(
                    f"{spec.source}: budget {budget:.3g} FLOPs can train only {len(trainable)} shape(s) of the "
                    f"family (sizes: auto needs {MIN_PROFILE_SIZES}); e.g. {problem}"
                )
            configs = auto_shapes(spec, budget, trainable)
        else:  # the nearest shape of each size, once
            nearest = [spec.family.nearest(size, data.vocab_size, spec.params_count) for size in spec.sizes]
            configs = list({c.n_embd: c for c in nearest}.values())
        for config in configs:
            runs.append(size_run(spec, data, index=len(runs), budget=budget, config=config))
    return runs


def auto_shapes(spec: LadderSpec, budget: float, shapes: list[ModelConfig]) -> list[ModelConfig]:
    """``sizes_per_budget`` distinct shapes spread geometrically (``size_spread`` end to end) around the shape
    whose Chinchilla run (20 tokens per parameter) costs the budget; neighbours fill in where small widths
    are too coarse for the spread (or the spread reaches past the family's ends)."""
    cost = [c.flops_per_token(spec.seq_len) * CHINCHILLA_TOKENS_PER_PARAM * c.num_params() for c in shapes]
    centre = min(range(len(shapes)), key=lambda i: abs(math.log(cost[i] / budget)))
    k = spec.sizes_per_budget
    sizes = np.array([count_params(c, spec.params_count) for c in shapes], dtype=np.float64)
    targets = sizes[centre] * spec.size_spread ** (np.linspace(-0.5, 0.5, k) if k > 1 else np.zeros(1))
    picked = sorted({int(np.argmin(np.abs(np.log(sizes / t)))) for t in targets})
    while len(picked) < min(k, len(shapes)):  # widen by one shape on the side nearer the centre's balance
        below, above = picked[0] - 1, picked[-1] + 1
        grow_down = below >= 0 and (above >= len(shapes) or centre - picked[0] <= picked[-1] - centre)
        picked = sorted({*picked, below if grow_down else above})
    return [shapes[i] for i in picked]


def run_problem(spec: LadderSpec, data: DataFacts, budget: float, config: ModelConfig) -> str | None:
    """Why a (budget, shape) run cannot be trained: too few steps, or more epochs than max_epochs; else None."""
    step_flops = config.flops_per_token(spec.seq_len) * spec.tokens_per_step
    steps = spec.steps(budget, config)
    shape = f"n_layer={config.n_layer}, n_embd={config.n_embd}, {human(config.num_params())} parameters"
    if steps < spec.min_steps:
        return (
            f"budget {budget:.3g} FLOPs buys {steps} steps of {shape} ({step_flops:.3g} FLOPs a step), fewer than "
            f"min_steps={spec.min_steps}; raise the budget to at least {spec.min_steps * step_flops:.3g}, use smaller "
            "sizes or a smaller batch"
        )
    epochs = steps * spec.tokens_per_step / data.train_tokens
    if epochs > spec.max_epochs:
        return (
            f"{shape} at budget {budget:.3g} needs {human(steps * spec.tokens_per_step)} tokens, {epochs:.1f} "
            f"epochs of the data's {human(data.train_tokens)} training tokens (max_epochs={spec.max_epochs}); the "
            "sizes do not fit the data: use larger sizes, smaller budgets or more data"
        )
    return None


def size_run(spec: LadderSpec, data: DataFacts, *, index: int, budget: float, config: ModelConfig) -> Run:
    """Run ``index`` of the ladder: ``config`` trained on ``budget`` FLOPs, its steps, tokens and learning rate."""
    problem = run_problem(spec, data, budget, config)
    if problem:
        raise ValueError(f"{spec.source}: {problem}")
    steps = spec.steps(budget, config)
    tokens = steps * spec.tokens_per_step
    recipe = {**RECIPE_RULES, **spec.recipe}
    learning_rate = recipe["learning_rate"]
    if recipe["lr_reference_width"]:  # Adam's hidden-layer LR ∝ 1/width (μP's rule, without its init changes)
        learning_rate *= recipe["lr_reference_width"] / config.n_embd
    name = f"C{budget:.3g}-L{config.n_layer}-d{config.n_embd}".replace("+", "")
    return Run(
        index=index,
        name=name,
        budget=budget,
        config=config,
        steps=steps,
        tokens=tokens,
        flops=config.flops_per_token(spec.seq_len) * tokens,
        epochs=tokens / data.train_tokens,
        learning_rate=learning_rate,
        run_dir=spec.output_dir / "runs" / name,
    )


def fit_experiment(spec: LadderSpec, run: Run) -> dict:
    """The `lit-llm fit` experiment of one run: the recipe with the schedule fitted to its length."""
    recipe = {**RECIPE_RULES, **spec.recipe}
    model = {k: v for k, v in recipe.items() if k not in RECIPE_RULES}
    model |= {
        "architecture": run.config.to_dict(),
        "learning_rate": run.learning_rate,
        "min_lr": run.learning_rate * recipe["min_lr_ratio"],
        "warmup_steps": max(1, round(recipe["warmup_fraction"] * run.steps)),
        "sample_tokens": model.get("sample_tokens", 0),
    }
    trainer = {**TRAINER_DEFAULTS, "log_every_n_steps": max(1, min(10, run.steps // 5)), **spec.trainer}
    trainer |= {"max_steps": run.steps, "val_check_interval": run.steps, "default_root_dir": str(run.run_dir)}
    checkpoint = {"every_n_train_steps": max(1, run.steps // 4), "save_top_k": 0}  # last.ckpt only, to resume
    return {"seed_everything": spec.seed, "trainer": trainer, "model": model, "data": spec.data,
            "checkpoint": checkpoint}  # fmt: skip


# ---------------------------------------------------------------- the fits


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


def ladder_summary(
    spec: LadderSpec, data: DataFacts, results: list[dict], notes: list[str], bits_per_byte_per_nat: float
) -> dict:
    """DIR/ladder.json: the runs (``results``: each run's summary and val_loss, None while unfinished), with their
    bits per byte, and the laws fitted on the finished ones; ``notes`` come first among the fit's notes."""
    for r in results:
        r["bits_per_byte"] = None if r["val_loss"] is None else r["val_loss"] * bits_per_byte_per_nat
    finished = [r for r in results if r["val_loss"] is not None]
    missing = len(results) - len(finished)
    fit = fit_laws(finished, spec.fit)
    fit["notes"] = (
        notes + ([f"{missing} run(s) not finished yet: left out of the fits"] if missing else []) + fit["notes"]
    )
    return {
        "config": spec.source,
        "data_dir": spec.data["data_dir"],
        "vocab_size": data.vocab_size,
        "seq_len": spec.seq_len,
        "train_tokens": data.train_tokens,
        "bits_per_byte_per_nat": bits_per_byte_per_nat,
        "family": asdict(spec.family),
        "runs": results,
        "fit": fit,
    }
