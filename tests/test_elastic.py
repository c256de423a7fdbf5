"""Elastic resume (data.elastic): a run resumed on another number of processes trains on the same sequences at
every step as the uninterrupted run, under DDP and FSDP2, and a changed mixture starts a new stage."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_llm.checkpoint.load import load_weights
from lit_llm.data.elastic import GlobalOrder, Stage, permute
from tests.conftest import fit_args
from tests.sample_ids import RECORD, samples_by_step


def steps_of(order: GlobalOrder, world_size: int, accumulation: int, workers: int, steps: int, start: int = 0):
    """Sequence ids per optimizer step when the global batch is split over ranks, micro-batches and workers."""
    per_step: dict[int, Counter] = {}
    micro = 8 // (world_size * accumulation)
    for rank in range(world_size):
        order.start, order.rank, order.world_size = start, rank, world_size
        order.batch_size, order.accumulation = micro, accumulation
        loader = torch.utils.data.DataLoader(order, batch_size=micro, num_workers=workers)
        for i, batch in zip(range(steps * accumulation), loader):
            per_step.setdefault(i // accumulation, Counter()).update(batch.tolist())
    return per_step


def test_a_step_trains_on_the_same_sequences_however_the_global_batch_is_split():
    order = GlobalOrder([list(range(100)), list(range(1000, 1050))], Stage(["a", "b"], [2, 1], [100, 50], seed=7))
    reference = steps_of(order, world_size=2, accumulation=1, workers=1, steps=12)
    for world_size, accumulation, workers in [(1, 2, 1), (1, 1, 2), (4, 2, 2), (1, 8, 0)]:
        assert steps_of(order, world_size, accumulation, workers, steps=12) == reference
    # resumed mid-run: the same steps from the position alone
    assert steps_of(order, 1, 2, 0, steps=4, start=8 * 8) == {s - 8: reference[s] for s in range(8, 12)}
    seen = sum(reference.values(), Counter())
    a, b = [n for n in seen if n < 1000], [n for n in seen if n >= 1000]
    assert len(a) + len(b) == 96 and 52 <= len(a) <= 76  # about the 2:1 share (shuffled within a block)
    sources, _ = order.stage.sample(np.arange(2048))
    assert np.bincount(sources).tolist() == [1366, 682]  # whole blocks: the exact share, 2048 · 1/3 rounded down
    assert set(seen.values()) == {1}  # no sequence twice within a pass over either source


def test_a_new_stage_switches_the_mixture_and_kept_sources_continue_their_pass():
    base = Stage(["web", "code"], [0.9, 0.1], [300, 200], seed=1)
    anneal = base.next(["code", "books"], [0.5, 0.5], [200, 100], seed=1, position=1000)
    assert base.next(["web", "code"], [0.9, 0.1], [300, 200], seed=1, position=1000) is base  # nothing changed
    sources, indices = base.sample(np.arange(1000))
    code_before = indices[sources == 1]
    sources, indices = anneal.sample(np.arange(1000, 1400))
    assert 170 <= (sources == 0).sum() <= 230  # half of the new stage is code
    code = np.concatenate([code_before, indices[sources == 0]])
    assert len(code) > 200 and len(set(code[:200])) == 200  # code's first pass: every sequence once, across stages
    assert anneal.offsets == {"web": (np.asarray(base.sample(np.arange(1000))[0]) == 0).sum(), "code": len(code_before)}


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 4097])
def test_the_permutation_is_a_permutation(n):
    assert sorted(permute(np.arange(n), n, key=3).tolist()) == list(range(n))


SETTINGS = {
    "trainer.max_steps": 12, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 1000,
    "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False, "checkpoint.every_n_train_steps": 4,
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "model.warmup_steps": 2, "data.batch_size": 4, "model.global_batch_size": 8, "data.num_workers": 1,
    "data.elastic": True,
}  # fmt: skip
TOLERANCE = 1e-6  # measured: 7e-9 under both; one AdamW step moves a weight by ~the learning rate, 1e-3


def fit(data: Path, run_dir: Path, strategy: str, devices: int, *extra: str) -> None:
    args = fit_args(data, run_dir, SETTINGS, RECORD, "--trainer.strategy", strategy, "--trainer.devices", str(devices))
    result = subprocess.run([sys.executable, "-m", "lit_llm.cli", *args, *extra], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_one_two_processes_train_on_the_uninterrupted_runs_sequences(small_dataset, tmp_path, strategy):
    """12 steps of 8 sequences on 2 processes; the same run resumed at step 4 on 1 process (accumulating 2
    micro-batches), and that one resumed at step 8 on 2 processes again. An epoch of the data is 10 steps,
    so the resumed runs cross it. Every step trains on the same sequences, and the weights are the same up to float
    rounding; the optimizer state is resharded (FSDP2: a sharded checkpoint)."""
    two, one, two_again = tmp_path / "two", tmp_path / "one", tmp_path / "two-again"
    fit(small_dataset, two, strategy, 2)
    fit(small_dataset, one, strategy, 1, "--ckpt_path", str(two / "checkpoints" / "step-000004.ckpt"))
    fit(small_dataset, two_again, strategy, 2, "--ckpt_path", str(one / "checkpoints" / "step-000008.ckpt"))
    expected, after_one, after_two = samples_by_step(two), samples_by_step(one), samples_by_step(two_again)
    assert sorted(after_one) == list(range(4, 12)) and sorted(after_two) == list(range(8, 12))
    assert all(after_one[s] == expected[s] for s in after_one)
    assert all(after_two[s] == expected[s] for s in after_two)
    first_epoch = sum((expected[s] for s in range(10)), Counter())
    assert len(first_epoch) == 80 and set(first_epoch.values()) == {1}  # 80 of the 81 sequences, once each
    # the weights too, up to float rounding (gradients summed in another order): with the optimizer state
    # reset or lost in the resharding, AdamW's first steps would move them by ~learning_rate each
    for resumed, name in ((one, "step-000008.ckpt"), (one, "last.ckpt"), (two_again, "last.ckpt")):
        _, got, _ = load_weights(resumed / "checkpoints" / name)
        _, want, _ = load_weights(two / "checkpoints" / name)
        difference = max((got[key] - want[key]).abs().max().item() for key in want)
        assert difference < TOLERANCE, f"{resumed.name}/{name}: weights differ by {difference}"
