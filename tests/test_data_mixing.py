"""Mixing several prepared datasets with weights: proportions, per-source validation, exact resume."""

import json
from collections import Counter

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from lit_llm.data.prepare import prepare
from lit_llm.train.datamodule import DataSource, TokenDataModule
from tests.test_resume import (
    MAX_STEPS,
    fit_command,
    kill_after_checkpoint,
    losses_by_step,
    run,
)

SEQ_LEN = 8


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    """Three byte-tokenized datasets whose every token tells its source: 'a'*, 'b'*, 'c'* text."""
    root = tmp_path_factory.mktemp("letters")
    for letter in "abc":
        (root / f"{letter}.txt").write_text(letter * 40_000)
        prepare([str(root / f"{letter}.txt")], str(root / letter), num_workers=1)
    return root


def mixed(letters, weights, **kwargs) -> TokenDataModule:
    sources = [DataSource(str(letters / letter), weight) for letter, weight in zip("abc", weights)]
    data = TokenDataModule(sources=sources, batch_size=10, seq_len=SEQ_LEN, num_workers=0, **kwargs)
    data.setup("fit")
    return data


def source_of(sequence: torch.Tensor) -> str:
    return chr(int(sequence[0]))


def test_batches_follow_the_weights(letters):
    loader = mixed(letters, [0.6, 0.3, 0.1]).train_dataloader()
    counts = Counter(source_of(seq) for _, batch in zip(range(300), loader) for seq in batch)
    total = sum(counts.values())
    assert total == 3000
    for letter, weight in zip("abc", [0.6, 0.3, 0.1]):
        assert abs(counts[letter] / total - weight) < 0.03, counts


def test_validation_has_one_loader_per_source(letters):
    data = mixed(letters, [1, 1, 1])
    assert data.val_source_names == ["a", "b", "c"]
    loaders = data.val_dataloader()
    assert [source_of(next(iter(loader))[0]) for loader in loaders] == ["a", "b", "c"]


def test_mixed_loader_resumes_where_it_stopped(letters):
    loader = mixed(letters, [0.5, 0.3, 0.2]).train_dataloader()
    batches = iter(loader)
    for _ in range(7):
        next(batches)
    state = loader.state_dict()
    expected = [next(batches) for _ in range(5)]

    resumed = mixed(letters, [0.5, 0.3, 0.2]).train_dataloader()
    resumed.load_state_dict(state)
    got = [batch for _, batch in zip(range(5), resumed)]
    assert len(got) == len(expected) == 5 and all(torch.equal(a, b) for a, b in zip(expected, got))


def test_bad_mixtures_are_clear_errors(letters, byte_dataset, tmp_path):
    with pytest.raises(ValueError, match="give data.data_dir .* or data.sources"):
        TokenDataModule(str(letters / "a"), sources=[DataSource(str(letters / "b"))])
    with pytest.raises(ValueError, match="weight 0; weights must be positive"):
        TokenDataModule(sources=[DataSource(str(letters / "a"), 0)])
    with pytest.raises(ValueError, match="names .* repeat; give each source a distinct `name`"):
        TokenDataModule(sources=[DataSource(str(letters / "a")), DataSource(str(letters / "b"), name="a")])
    (tmp_path / "t.txt").write_text("some text for another tokenizer " * 50)
    prepare([str(tmp_path / "t.txt")], str(tmp_path / "bpe"), tokenizer="bpe", vocab_size=260, num_workers=1)
    with pytest.raises(ValueError, match="bpe uses a different tokenizer than .*; prepare it with --tokenizer"):
        TokenDataModule(sources=[DataSource(str(letters / "a")), DataSource(str(tmp_path / "bpe"))])


def test_killed_mixed_run_resumes_exactly_and_logs_each_source(tmp_path):
    """The Trainer saves and restores the mixed loader's position: losses after the resume match a run
    that never stopped, and validation reports every source. A source runs out about every 15 steps
    (an epoch), so the resumed run crosses epoch boundaries too."""
    for name, text in {"big": "abcdefgh " * 222, "small": "stuvwxyz " * 100}.items():
        (tmp_path / f"{name}.txt").write_text(text)
        prepare([str(tmp_path / f"{name}.txt")], str(tmp_path / name), val_fraction=0.3, num_workers=1)
    sources = json.dumps(
        [
            {"path": str(tmp_path / "big"), "weight": 0.7},
            {"path": str(tmp_path / "small"), "weight": 0.3, "name": "tail"},
        ]
    )
    mix = ["--data.data_dir", "null", "--data.sources", sources]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run(fit_command(tmp_path, reference, *mix))
    kill_after_checkpoint(fit_command(tmp_path, resumed, *mix), resumed / "checkpoints" / "step-000020.ckpt")
    run(fit_command(tmp_path, resumed, *mix, "--ckpt_path", "last"))
    expected, got = losses_by_step(reference), losses_by_step(resumed)
    assert all(abs(expected[s] - got[s]) < 1e-5 for s in range(20, MAX_STEPS)), (expected, got)
    values = [
        value
        for events in reference.glob("events.out.tfevents.*")
        for event in EventFileLoader(str(events)).Load()
        for value in event.summary.value
    ]
    assert {"val/loss", "val/big/loss", "val/tail/loss"} <= {value.tag for value in values}
    assert (
        max(
            value.tensor.float_val[0] if value.tensor.float_val else value.simple_value
            for value in values
            if value.tag == "epoch"
        )
        >= 2
    )
