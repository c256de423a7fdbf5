"""Scaling-law fits (lit_llm.planning.scaling) on synthetic ladders drawn from a known L(N, D) with noise: the fits must
give back the law's exponents, the compute-optimal allocation and honest intervals."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lit_llm.planning.scaling import (
    ParametricLaw,
    budget_to_flops,
    compute_optimal,
    fit_isoflop,
    fit_parametric,
    law_loss,
)
from lit_llm.planning.shapes import ModelFamily, count_params

# Hoffmann et al. 2022's fitted law (their eq. 10): the known truth the synthetic runs are drawn from.
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
TRUE_PARAMS = np.array(list(TRUE.values()))
NOISE = 0.003  # relative scatter of a run's final loss (seeds, data order)


def synthetic_runs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(np.log(1e5), np.log(1e8), n))
    tokens = np.exp(rng.uniform(np.log(1e6), np.log(1e10), n))
    losses = law_loss(TRUE_PARAMS, params, tokens) * np.exp(rng.normal(0, NOISE, n))
    return params, tokens, losses


def test_parametric_fit_recovers_the_law_and_covers_the_truth():
    params, tokens, losses = synthetic_runs(30)
    law = fit_parametric(params, tokens, losses, n_bootstrap=20)
    assert law.alpha == pytest.approx(TRUE["alpha"], abs=0.03)
    assert law.beta == pytest.approx(TRUE["beta"], abs=0.03)
    assert law.E == pytest.approx(TRUE["E"], abs=0.25)
    # A prediction well outside the runs (10x the largest size, 10x the tokens) stays within 2% (the bar of a
    # held-out run), and the prediction interval holds the true loss.
    far = (1e9, 1e11)
    truth = float(law_loss(TRUE_PARAMS, *far))
    assert float(law.predict(*far)) == pytest.approx(truth, rel=0.02)
    low, high = law.predict_interval(*far)
    assert low < truth < high
    assert set(law.intervals) == set(TRUE) and all(lo <= hi for lo, hi in law.intervals.values())
    assert ParametricLaw.from_dict(law.to_dict()) == law


def test_torch_lbfgs_finds_the_same_law_without_scipy(monkeypatch):
    params, tokens, losses = synthetic_runs(30)
    with_scipy = fit_parametric(params, tokens, losses, n_bootstrap=0, n_best=2)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # `from scipy.optimize import ...` raises ImportError
    with_torch = fit_parametric(params, tokens, losses, n_bootstrap=0, n_best=2)
    for name in TRUE:
        assert getattr(with_torch, name) == pytest.approx(getattr(with_scipy, name), rel=0.02)


def test_parametric_fit_refuses_too_few_runs():
    params, tokens, losses = synthetic_runs(5)
    with pytest.raises(ValueError, match="at least 6 runs"):
        fit_parametric(params, tokens, losses)


def isoflop_ladder(budgets, sizes_per_budget=7, spread=16.0, seed=0) -> list[dict]:
    """Runs along IsoFLOP lines (C = 6·N·D) around each budget's true optimum, with noisy losses."""
    rng = np.random.default_rng(seed)
    runs = []
    for budget in budgets:
        optimum = analytic_optimal_params(budget)
        for size in optimum * spread ** np.linspace(-0.5, 0.5, sizes_per_budget):
            tokens = budget / (6 * size)
            loss = float(law_loss(TRUE_PARAMS, size, tokens)) * np.exp(rng.normal(0, NOISE / 3))
            runs.append({"budget": budget, "params": size, "tokens": tokens, "val_loss": loss})
    return runs


def analytic_optimal_params(budget: float) -> float:
    """Hoffmann et al.'s eq. 4: N_opt = G (C/6)^(β/(α+β)), G = (αA / βB)^(1/(α+β))."""
    a, b = TRUE["alpha"], TRUE["beta"]
    g = (a * TRUE["A"] / (b * TRUE["B"])) ** (1 / (a + b))
    return g * (budget / 6) ** (b / (a + b))


def test_isoflop_profiles_recover_the_allocation_exponents():
    budgets = [1e15, 1e16, 1e17, 1e18]
    fit = fit_isoflop(isoflop_ladder(budgets))
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])  # 0.452
    assert fit["a"] == pytest.approx(a_true, abs=0.03)
    assert fit["b"] == pytest.approx(1 - a_true, abs=0.03)
    for profile in fit["profiles"]:
        assert profile["bracketed"]
        assert profile["params_opt"] == pytest.approx(analytic_optimal_params(profile["budget"]), rel=0.25)
    assert fit["skipped"] == []


def test_isoflop_says_what_it_could_not_fit():
    runs = isoflop_ladder([1e15, 1e16], sizes_per_budget=2)
    fit = fit_isoflop(runs)
    assert fit["a"] is None and "2 budgets or more" in fit["reason"]
    assert all("a profile needs 3" in note for note in fit["skipped"])
    # sizes all on one side of the optimum: the vertex is extrapolated, reported and left out of the exponents
    runs = isoflop_ladder([1e15, 1e16, 1e17], sizes_per_budget=9, spread=64.0)
    lopsided = [r for r in runs if r["params"] > 1.5 * analytic_optimal_params(r["budget"])]
    fit = fit_isoflop(lopsided)
    assert any("outside the sizes tried" in note for note in fit["skipped"])


def test_compute_optimal_matches_the_closed_form():
    law = ParametricLaw(**TRUE)
    sizes = np.geomspace(1e6, 1e11, 2000)
    candidates = [(n, 6 * n) for n in sizes]  # FLOPs per token 6N: the closed form's assumption
    for budget in (1e19, 1e21, 1e23):
        best = compute_optimal(law, budget, candidates)
        assert best["params"] == pytest.approx(analytic_optimal_params(budget), rel=0.01)
        assert best["tokens"] == pytest.approx(budget / (6 * best["params"]), rel=1e-9)


def test_budget_in_gpu_hours_and_dollars():
    rate = {"mfu": 0.4, "peak_tflops": 989.0, "price_per_gpu_hour": 2.5}
    flops = budget_to_flops(None, 10.0, None, **rate)
    assert flops == pytest.approx(10 * 3600 * 0.4 * 989e12)
    assert budget_to_flops(None, None, 25.0, **rate) == pytest.approx(flops)
    with pytest.raises(ValueError, match="one of --budget_flops"):
        budget_to_flops(1e20, 10.0, None, **rate)


def test_family_sizes_by_parameter_count_and_refuses_sizes_outside_it():
    family = ModelFamily("llama", aspect_ratio=32, head_size=32, shared={"block_size": 128})
    shapes = family.shapes(vocab_size=512)
    counts = [count_params(c) for c in shapes]
    assert counts == sorted(counts) and all(c.n_embd == 32 * c.n_layer for c in shapes[:8])
    target = counts[5] * 1.1
    assert family.nearest(target, 512) == shapes[5]
    assert family.nearest(count_params(shapes[3], "non_embedding"), 512, "non_embedding") == shapes[3]
    with pytest.raises(ValueError, match="does not fit the llama family"):
        family.nearest(counts[0] / 10, 512)
    with pytest.raises(ValueError, match="cannot be set"):
        ModelFamily.from_dict({"name": "llama", "n_layer": 4}, "ladder.yaml")
    with pytest.raises(ValueError, match="is not one of"):
        ModelFamily.from_dict({"name": "mamba"}, "ladder.yaml")
