"""Scaling laws from a ladder of runs (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models").

- IsoFLOP profiles (their approach 2): per compute budget, a parabola of the final loss against log N; its
  vertex is that budget's loss-optimal size. Then N_opt ∝ C^a and D_opt ∝ C^b by least squares in log space.
- The parametric law (approach 3): L(N, D) = E + A/N^α + B/D^β, fitted as they did: a Huber loss (δ = 1e-3)
  on log L, written log L = LSE(a - α log N, b - β log D, e) with A = e^a, B = e^b, E = e^e, minimised with
  L-BFGS from the best points of a grid of starts. Intervals come from a bootstrap over the runs (refit on
  runs drawn with replacement), as Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt") did.

Plain numpy (+ scipy's L-BFGS-B when installed, else torch's L-BFGS); no Lightning.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lit_llm.model.config import ModelConfig
from lit_llm.planning.shapes import ModelFamily, count_params

PARAMETERS = ("E", "A", "B", "alpha", "beta")
HUBER_DELTA = 1e-3  # Hoffmann et al.: residuals of log L beyond this count linearly, so outliers barely pull
MIN_PARAMETRIC_RUNS = 6  # five parameters: at least one more run than that
MIN_PROFILE_SIZES = 3  # a parabola needs three sizes per budget


# ---------------------------------------------------------------- the parametric law


def _terms(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """The three log-space terms a - α log N, b - β log D, e (one row per run); theta = (e, a, b, α, β)."""
    e, a, b, alpha, beta = theta
    return np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=1)


def huber_objective(theta, log_n, log_d, log_loss, delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Sum of Huber losses of the log-space residuals, and its gradient with respect to theta."""
    terms = _terms(np.asarray(theta, dtype=np.float64), log_n, log_d)
    peak = terms.max(axis=1, keepdims=True)
    weights = np.exp(terms - peak)
    total = weights.sum(axis=1)
    residual = peak[:, 0] + np.log(total) - log_loss
    weights /= total[:, None]  # d LSE / d term
    small = np.abs(residual) <= delta
    value = np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta)).sum()
    slope = np.where(small, residual, delta * np.sign(residual))
    grad = np.array(
        [
            (slope * weights[:, 2]).sum(),
            (slope * weights[:, 0]).sum(),
            (slope * weights[:, 1]).sum(),
            -(slope * weights[:, 0] * log_n).sum(),
            -(slope * weights[:, 1] * log_d).sum(),
        ]
    )
    return float(value), grad


def _lbfgs(objective, x0: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimise ``objective(x) -> (value, grad)``: scipy's L-BFGS-B if installed, else torch's L-BFGS.

    Tolerances are tight because the objective is tiny (residuals near δ = 1e-3): with scipy's defaults the
    search stops early, at different points from different starts."""
    try:
        from scipy.optimize import minimize
    except ImportError:
        return _torch_lbfgs(objective, x0)
    options = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20}
    result = minimize(objective, x0, jac=True, method="L-BFGS-B", options=options)
    return result.x, float(result.fun)


def _torch_lbfgs(objective, x0: np.ndarray) -> tuple[np.ndarray, float]:
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=5000,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        value, grad = objective(x.detach().numpy())
        x.grad = torch.from_numpy(grad)
        return torch.tensor(value, dtype=torch.float64)

    optimizer.step(closure)
    theta = x.detach().numpy().copy()
    return theta, objective(theta)[0]


def start_grid() -> np.ndarray:
    """Hoffmann et al.'s grid of initialisations over (e, a, b, α, β)."""
    exponents = (0.0, 0.5, 1.0, 1.5, 2.0)
    logs = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    return np.array(list(itertools.product((-1.0, -0.5, 0.0, 0.5, 1.0), logs, logs, exponents, exponents)))


def _grid_values(starts: np.ndarray, log_n, log_d, log_loss, delta: float = HUBER_DELTA) -> np.ndarray:
    """The Huber objective at many starts at once (rows of theta)."""
    e, a, b, alpha, beta = (starts[:, i : i + 1] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(starts), len(log_n)))], axis=2)
    residual = np.logaddexp.reduce(terms, axis=2) - log_loss
    small = np.abs(residual) <= delta
    return np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta)).sum(axis=1)


def _fit_theta(log_n, log_d, log_loss, starts: np.ndarray, n_best: int) -> tuple[np.ndarray, float]:
    """L-BFGS from the ``n_best`` starts with the lowest objective; the best end point."""
    values = _grid_values(starts, log_n, log_d, log_loss)
    best = None
    for start in starts[np.argsort(values)[:n_best]]:
        theta, value = _lbfgs(lambda t: _scaled(huber_objective(t, log_n, log_d, log_loss)), start)
        if np.all(np.isfinite(theta)) and (best is None or value < best[1]):
            best = (theta, value)
    return best


def _scaled(value_and_grad: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    """The objective in units of δ, so the optimizer's absolute tolerances mean something."""
    value, grad = value_and_grad
    return value / HUBER_DELTA, grad / HUBER_DELTA


def _named(theta: np.ndarray) -> dict[str, float]:
    e, a, b, alpha, beta = theta
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": float(alpha), "beta": float(beta)}


@dataclass
class ParametricLaw:
    """L(N, D) = E + A/N^α + B/D^β with bootstrap samples of its parameters and its log-space residuals."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    intervals: dict[str, list[float]] = field(default_factory=dict)  # name -> [low, high] at ``level``
    level: float = 0.95
    bootstrap: list[list[float]] = field(default_factory=list)  # rows of (E, A, B, alpha, beta)
    residuals: list[float] = field(default_factory=list)  # log(measured) - log(fitted) per run
    n_runs: int = 0

    def predict(self, params, tokens) -> np.ndarray:
        return law_loss(np.array([self.E, self.A, self.B, self.alpha, self.beta]), params, tokens)

    def predict_interval(self, params: float, tokens: float) -> tuple[float, float]:
        """A bootstrap prediction interval for one run's loss: the law's parameter uncertainty (the refits)
        times the scatter of single runs around the law (its residuals, drawn at random)."""
        if not self.bootstrap:
            return math.nan, math.nan
        samples = law_loss(np.array(self.bootstrap).T[:, :, None], params, tokens)[:, 0]
        rng = np.random.default_rng(0)
        noise = np.exp(rng.choice(np.array(self.residuals or [0.0]), size=samples.shape))
        tail = (1 - self.level) / 2
        low, high = np.quantile(samples * noise, [tail, 1 - tail])
        return float(low), float(high)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ParametricLaw:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def law_loss(parameters: np.ndarray, params, tokens) -> np.ndarray:
    E, A, B, alpha, beta = parameters
    return E + A / np.power(params, alpha) + B / np.power(tokens, beta)


def fit_parametric(
    params, tokens, losses, n_bootstrap: int = 200, level: float = 0.95, n_best: int = 4, seed: int = 0
) -> ParametricLaw:
    """Fit L(N, D) to runs (N parameters, D tokens, final losses), with bootstrap intervals at ``level``."""
    log_n, log_d, log_loss = (np.log(np.asarray(x, dtype=np.float64)) for x in (params, tokens, losses))
    if len(log_n) < MIN_PARAMETRIC_RUNS:
        raise ValueError(f"the parametric law needs at least {MIN_PARAMETRIC_RUNS} runs, got {len(log_n)}")
    if len(np.unique(log_n)) < 2 or len(np.unique(log_d)) < 2:
        raise ValueError("the parametric law needs runs of at least two sizes and two token counts")
    theta, _ = _fit_theta(log_n, log_d, log_loss, start_grid(), n_best)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):  # each refit starts from the full fit (a grid search per sample costs 8x)
        pick = rng.integers(0, len(log_n), len(log_n))
        if len(np.unique(log_n[pick])) < 2 or len(np.unique(log_d[pick])) < 2:
            continue
        refit, _ = _fit_theta(log_n[pick], log_d[pick], log_loss[pick], theta[None], n_best=1)
        samples.append(list(_named(refit).values()))
    tail = (1 - level) / 2
    table = np.array(samples) if samples else np.empty((0, len(PARAMETERS)))
    intervals = {
        name: [float(np.quantile(table[:, i], tail)), float(np.quantile(table[:, i], 1 - tail))]
        for i, name in enumerate(PARAMETERS)
        if len(table)
    }
    named = _named(theta)
    fitted = law_loss(np.array(list(named.values())), np.exp(log_n), np.exp(log_d))
    return ParametricLaw(
        **named,
        intervals=intervals,
        level=level,
        bootstrap=table.tolist(),
        residuals=(log_loss - np.log(fitted)).tolist(),
        n_runs=len(log_n),
    )


# ---------------------------------------------------------------- IsoFLOP profiles


def power_law(x, y) -> dict:
    """y = k·x^exponent by least squares in log space, with the exponent's standard error (None for 2 points)."""
    log_x, log_y = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    slope, intercept = np.polyfit(log_x, log_y, 1)
    stderr = None
    if len(log_x) > 2:
        residual = log_y - (slope * log_x + intercept)
        stderr = float(math.sqrt((residual**2).sum() / (len(log_x) - 2) / ((log_x - log_x.mean()) ** 2).sum()))
    return {"exponent": float(slope), "coefficient": float(math.exp(intercept)), "exponent_stderr": stderr}


def isoflop_profile(budget: float, params, tokens, losses) -> dict:
    """The loss-optimal size of one budget: vertex of loss = c0 + c1·log N + c2·(log N)^2, and the tokens
    at that size (log D is linear in log N along a budget, so it is interpolated the same way)."""
    log_n, log_d = np.log(np.asarray(params, dtype=np.float64)), np.log(np.asarray(tokens, dtype=np.float64))
    c2, c1, c0 = np.polyfit(log_n, np.asarray(losses, dtype=np.float64), 2)
    profile = {"budget": budget, "n_sizes": len(log_n), "curvature": float(c2), "coefficients": [c0, c1, c2]}
    if c2 <= 0:
        return {**profile, "params_opt": None, "reason": "the losses do not curve upwards: no optimum in range"}
    vertex = -c1 / (2 * c2)
    slope, intercept = np.polyfit(log_n, log_d, 1)
    return {
        **profile,
        "params_opt": float(math.exp(vertex)),
        "tokens_opt": float(math.exp(intercept + slope * vertex)),
        "loss_opt": float(c0 + c1 * vertex + c2 * vertex**2),
        "bracketed": bool(log_n.min() <= vertex <= log_n.max()),
    }


def fit_isoflop(runs: list[dict], params_key: str = "params") -> dict:
    """Per-budget optima from runs grouped by their ``budget``, then N_opt ∝ C^a and D_opt ∝ C^b over the
    budgets whose optimum lies inside the sizes tried (an extrapolated vertex is reported, not used)."""
    by_budget: dict[float, list[dict]] = {}
    for run in runs:
        by_budget.setdefault(run["budget"], []).append(run)
    profiles, skipped = [], []
    for budget, group in sorted(by_budget.items()):
        if len({r[params_key] for r in group}) < MIN_PROFILE_SIZES:
            skipped.append(f"budget {budget:.3g}: {len(group)} size(s), a profile needs {MIN_PROFILE_SIZES}")
            continue
        group = sorted(group, key=lambda r: r[params_key])
        profile = isoflop_profile(
            budget, [r[params_key] for r in group], [r["tokens"] for r in group], [r["val_loss"] for r in group]
        )
        profiles.append(profile)
        if profile["params_opt"] is None:
            skipped.append(f"budget {budget:.3g}: {profile['reason']}")
        elif not profile["bracketed"]:
            skipped.append(f"budget {budget:.3g}: optimum outside the sizes tried (extend the sizes)")
    usable = [p for p in profiles if p["params_opt"] is not None and p["bracketed"]]
    result = {"profiles": profiles, "skipped": skipped, "a": None, "b": None}
    if len(usable) < 2:
        result["reason"] = f"exponents need optima at 2 budgets or more, got {len(usable)}"
        return result
    budgets = [p["budget"] for p in usable]
    n_law, d_law = (
        power_law(budgets, [p["params_opt"] for p in usable]),
        power_law(budgets, [p["tokens_opt"] for p in usable]),
    )
    return {**result, "a": n_law["exponent"], "b": d_law["exponent"], "params_law": n_law, "tokens_law": d_law}


# ---------------------------------------------------------------- what a budget buys


def compute_optimal(law: ParametricLaw, budget_flops: float, candidates: list[tuple[float, float]]) -> dict:
    """The candidate (parameters, FLOPs per token) whose run of ``budget_flops`` the law predicts lowest."""
    params = np.array([c[0] for c in candidates], dtype=np.float64)
    tokens = budget_flops / np.array([c[1] for c in candidates], dtype=np.float64)
    losses = law.predict(params, tokens)
    best = int(np.argmin(losses))
    low, high = law.predict_interval(params[best], tokens[best])
    return {
        "index": best,
        "params": float(params[best]),
        "tokens": float(tokens[best]),
        "predicted_val_loss": float(losses[best]),
        "predicted_val_loss_interval": [low, high],
    }


# ---------------------------------------------------------------- a ladder's law, for `lit-llm plan`


@dataclass
class LadderLaw:
    """The parametric law of a DIR/ladder.json with what it was measured on: the family of shapes, the data's
    vocabulary and sequence length, and the bits per byte a nat per token is worth on its validation text."""

    law: ParametricLaw
    family: ModelFamily
    vocab_size: int
    seq_len: int
    params_count: str
    bits_per_byte_per_nat: float
    source: str

    @classmethod
    def load(cls, path: str) -> LadderLaw:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"scaling law {path} not found; pass the ladder.json that `lit-llm ladder` wrote")
        summary = json.loads(file.read_text())
        fit = summary.get("fit") or {}
        if not fit.get("parametric"):
            notes = "; ".join(fit.get("notes", [])) or "no fit in it"
            raise ValueError(f"{path} holds no parametric law ({notes}); finish more ladder runs and rerun --fit_only")
        return cls.from_summary(summary, str(path))

    @classmethod
    def from_summary(cls, summary: dict, source: str) -> LadderLaw:
        """The law of a ladder.json's content (``lit_llm.planning.ladder.ladder_summary``) that has one."""
        return cls(
            law=ParametricLaw.from_dict(summary["fit"]["parametric"]),
            family=ModelFamily(**summary["family"]),
            vocab_size=summary["vocab_size"],
            seq_len=summary["seq_len"],
            params_count=summary["fit"].get("params", "total"),
            bits_per_byte_per_nat=summary["bits_per_byte_per_nat"],
            source=source,
        )

    def predict(self, config: ModelConfig, tokens: float) -> dict:
        """Predicted final val loss (and bits per byte) of ``config`` trained on ``tokens``, with intervals."""
        params = count_params(config, self.params_count)
        loss = float(self.law.predict(params, tokens))
        interval = list(self.law.predict_interval(params, tokens))
        notes = []
        if config.vocab_size != self.vocab_size:
            notes.append(
                f"the model's vocabulary ({config.vocab_size}) is not the ladder's ({self.vocab_size}): "
                "losses of different tokenizers are not comparable, the prediction assumes the ladder's data"
            )
        return {
            "predicted_val_loss": loss,
            "predicted_val_loss_interval": interval,
            "predicted_bits_per_byte": loss * self.bits_per_byte_per_nat,
            "predicted_bits_per_byte_interval": [x * self.bits_per_byte_per_nat for x in interval],
            "law_params": params,
            "law_notes": notes,
        }

    def optimum(self, budget_flops: float) -> tuple[ModelConfig, dict]:
        """The family's shape the law predicts best for ``budget_flops``, its tokens and predicted loss."""
        shapes = self.family.shapes(self.vocab_size)
        candidates = [(count_params(c, self.params_count), c.flops_per_token(self.seq_len)) for c in shapes]
        best = compute_optimal(self.law, budget_flops, candidates)
        config = shapes[best.pop("index")]
        return config, {**best, "budget_flops": budget_flops, "n_layer": config.n_layer, "n_embd": config.n_embd}


def budget_to_flops(flops: float | None, gpu_hours: float | None, usd: float | None, **rate) -> float:
    """A compute budget in FLOPs from FLOPs, GPU-hours or dollars; ``rate``: mfu, peak_tflops, price_per_gpu_hour."""
    given = [name for name, v in (("flops", flops), ("gpu_hours", gpu_hours), ("usd", usd)) if v is not None]
    if len(given) != 1:
        raise ValueError("pass one of --budget_flops, --budget_gpu_hours or --budget_usd")
    value = {"flops": flops, "gpu_hours": gpu_hours, "usd": usd}[given[0]]
    if not value > 0:
        raise ValueError(f"--budget_{given[0]} must be positive, got {value}")
    if flops is not None:
        return float(flops)
    hours = gpu_hours if gpu_hours is not None else usd / rate["price_per_gpu_hour"]
    return hours * 3600 * rate["mfu"] * rate["peak_tflops"] * 1e12
