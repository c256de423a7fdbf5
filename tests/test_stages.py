"""A data stage (annealing): a run resumed from a checkpoint with another mixture and a WSD decay keeps its
optimizer state, trains on the new mixture from the resumed step on, and continues the kept source's pass."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from lit_llm.data.prepare import prepare
from lit_llm.data.shards import open_split
from tests.conftest import SHAKESPEARE, fit_args
from tests.forked_cli import Command, run_commands
from tests.sample_ids import RECORD, samples_by_step
from tests.test_resume import losses_by_step

SETTINGS = {
    "trainer.max_steps": 8, "trainer.log_every_n_steps": 1, "trainer.val_check_interval": 100,
    "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False, "checkpoint.every_n_train_steps": 4,
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "model.warmup_steps": 1, "model.lr_schedule": "constant", "data.batch_size": 8, "data.elastic": True,
}  # fmt: skip


def sequence_ids(data: Path) -> set[str]:
    """The ids RecordSamples gives every training sequence of a dataset."""
    dataset = open_split(str(data), data, "train", 33)
    return {hashlib.sha1(dataset[i].numpy().tobytes()).hexdigest()[:12] for i in range(len(dataset))}


@pytest.fixture(scope="module")
def quality_dataset(tmp_path_factory) -> Path:
    """Other text of the same tokenizer as small_dataset: the 'higher-quality' source of the stage."""
    corpus = tmp_path_factory.mktemp("quality") / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[10_000:13_000])
    prepare([str(corpus)], str(corpus.parent / "data"), num_workers=1)
    return corpus.parent / "data"


def test_an_annealing_stage_keeps_the_optimizer_and_trains_on_the_new_mixture(small_dataset, quality_dataset, tmp_path):
    base, anneal = tmp_path / "base", tmp_path / "anneal"
    sources = [{"path": str(small_dataset), "weight": 0.5, "name": "base"},
               {"path": str(quality_dataset), "weight": 0.5, "name": "quality"}]  # fmt: skip
    stage = [
        "--data.data_dir", "null", "--data.sources", json.dumps(sources), "--model.lr_schedule", "wsd",
        "--model.decay_fraction", "0.5", "--ckpt_path", str(base / "checkpoints" / "step-000004.ckpt"),
        "--resume_with_changes",
    ]  # fmt: skip
    results = run_commands(
        [Command(fit_args(small_dataset, base, SETTINGS, RECORD), cwd=tmp_path),
         Command(fit_args(small_dataset, anneal, SETTINGS, RECORD, *stage), cwd=tmp_path)],
        parallel=1,
    )  # fmt: skip
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    assert "data: a new stage from sequence 32 on: base 0.5, quality 0.5; continuing base from its sequence 32" in (
        results[1].stdout
    )
    before, after = samples_by_step(base), samples_by_step(anneal)
    assert sorted(after) == [4, 5, 6, 7]
    base_ids, quality_ids = sequence_ids(small_dataset), sequence_ids(quality_dataset)
    seen_before = sum((before[s] for s in range(4)), Counter())
    seen_after = sum(after.values(), Counter())
    assert set(seen_before) <= base_ids  # the first stage: the base data only
    assert 10 <= len(set(seen_after) & quality_ids) <= 22  # half of the stage's 32 sequences
    kept = set(seen_after) & base_ids
    assert kept and not kept & set(seen_before)  # the base source continues its pass: no repeats
    # the optimizer state carried over: AdamW's step count continues (a new optimizer would count from 1)
    states = torch.load(anneal / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]["state"]
    assert {int(s["step"]) for s in states.values()} == {8}
    # WSD: the learning rate decays over the stage, from the base run's constant rate
    lr = learning_rates(anneal)
    assert lr[4] > lr[5] > lr[6] > lr[7] and learning_rates(base)[7] == pytest.approx(lr[4])
    assert losses_by_step(anneal)  # trained


def learning_rates(run_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    rates = {}
    for events in run_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "train/lr":
                    rates[event.step] = value.tensor.float_val[0] if value.tensor.float_val else value.simple_value
    return rates
