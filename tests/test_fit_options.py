"""The model options of an experiment, each through a short real `lit-llm fit` on CPU, against the plain
run: activation checkpointing recomputes the same numbers, bf16-mixed stays close, torch.compile too."""

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from lit_llm.cli import main
from tests.conftest import fit_args

STEPS = 4


def fit_losses(data_dir, run_dir, *extra) -> list[float]:
    settings = {
        "trainer.max_steps": STEPS, "trainer.log_every_n_steps": 1, "trainer.limit_val_batches": 1,
        "model.architecture.n_layer": 2, "model.architecture.block_size": 32, "data.batch_size": 4,
    }  # fmt: skip
    main(fit_args(data_dir, run_dir, settings, *extra))
    losses = {}
    for path in run_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    losses[event.step] = value.tensor.float_val[0]
    assert sorted(losses) == list(range(STEPS))
    return [losses[s] for s in range(STEPS)]


@pytest.fixture(scope="module")
def plain(byte_dataset, tmp_path_factory) -> list[float]:
    return fit_losses(byte_dataset, tmp_path_factory.mktemp("plain") / "run")


@pytest.mark.parametrize(
    "option, tolerance",
    [
        (["--model.activation_checkpointing", "true"], 1e-6),
        (["--trainer.precision", "bf16-mixed"], 0.05),
        (["--model.compile", "true"], 1e-3),
    ],
    ids=["activation_checkpointing", "bf16-mixed", "compile"],
)
def test_option_trains_like_the_plain_run(plain, byte_dataset, tmp_path, option, tolerance):
    losses = fit_losses(byte_dataset, tmp_path / "run", *option)
    assert max(abs(a - b) for a, b in zip(plain, losses)) <= tolerance, (plain, losses)
