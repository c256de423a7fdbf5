"""prepare -> fit -> generate through the `lit-llm` entry point, as a user runs it."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.cli import main
from lit_llm.model.sampling import generate
from tests.conftest import REPO

FAST = [
    "--config",
    str(REPO / "experiments" / "shakespeare-char-cpu.yaml"),
    "--model.architecture.n_layer",
    "2",
    "--model.architecture.block_size",
    "32",
    "--model.warmup_steps",
    "5",
    "--model.sample_tokens",
    "20",
    "--data.batch_size",
    "8",
    "--data.num_workers",
    "0",
    "--trainer.val_check_interval",
    "50",
    "--trainer.limit_val_batches",
    "4",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def fit(data_dir, run_dir, *extra):
    main(["fit", *FAST, "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(run_dir), *extra])


@pytest.fixture(scope="module")
def trained_run(byte_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "shakespeare"
    fit(byte_dataset, run_dir, "--trainer.max_steps", "120")
    return run_dir


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_fit_learns_and_logs_every_promised_tag(trained_run):
    events = EventAccumulator(str(trained_run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/ppl", "train/lr", "train/grad_norm", "train/tokens_per_sec"} <= tags
    assert events.Tags()["tensors"]  # the text sample logged at validation
    train_loss = [v for _, v in scalars(trained_run, "train/loss")]
    assert train_loss[-1] < train_loss[0] - 1.5
    val = [v for _, v in scalars(trained_run, "val/loss")]
    assert len(val) == 3  # every 50 steps, plus the final one at step 120
    assert val[-1] < 2.7  # below a character-unigram model (~3.0 nats), from ln(257) = 5.5 at init
    lr = [v for _, v in scalars(trained_run, "train/lr")]
    assert max(lr) == pytest.approx(1e-3, rel=0.05) and lr[-1] < 2e-4  # warmup then cosine towards min_lr
    assert (trained_run / "config.yaml").is_file()


def test_checkpoint_rebuilds_model_and_tokenizer(trained_run):
    model, tokenizer = load_checkpoint(trained_run)  # a run folder resolves to checkpoints/last.ckpt
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert model.config.n_layer == 2 and model.config.vocab_size == 320
    prompt = torch.tensor([tokenizer.encode("ROMEO:")])
    cached = generate(model, prompt, 60, temperature=0.0)
    uncached = generate(model, prompt, 60, temperature=0.0, use_cache=False)
    assert torch.equal(cached, uncached)


def test_generate_command_samples_text(trained_run, capsys):
    main(["generate", "--checkpoint", str(trained_run), "--prompt", "KING:", "--max_new_tokens", "40", "--seed", "1"])
    first = capsys.readouterr().out
    main(["generate", "--checkpoint", str(trained_run), "--prompt", "KING:", "--max_new_tokens", "40", "--seed", "1"])
    assert first.startswith("KING:") and len(first) > 30
    assert capsys.readouterr().out == first  # same seed, same sample


def test_validate_reports_val_loss(trained_run, byte_dataset, capsys):
    main(
        [
            "validate",
            *FAST,
            "--data.data_dir",
            str(byte_dataset),
            "--trainer.default_root_dir",
            str(trained_run),
            "--ckpt_path",
            str(trained_run / "checkpoints" / "last.ckpt"),
        ]
    )
    assert "val/loss" in capsys.readouterr().out


def test_fit_refuses_a_folder_that_holds_a_run_of_another_model(trained_run, byte_dataset, capsys):
    # the same model resumes there instead (tests/test_preemption.py)
    with pytest.raises(SystemExit, match=r"holds a run of another model \(n_layer 2 there, 3 here\)"):
        fit(byte_dataset, trained_run, "--trainer.max_steps", "5", "--model.architecture.n_layer", "3")


def test_vocabulary_too_large_for_model_is_refused(byte_dataset, tmp_path):
    with pytest.raises(SystemExit, match="vocab_size is 128; set model vocab_size to at least 257"):
        fit(byte_dataset, tmp_path / "run", "--trainer.max_steps", "5", "--model.architecture.vocab_size", "128")


def test_unknown_preset_config_typo_and_missing_data_are_clear(byte_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown model preset 'gpt5'"):
        main(["fit", "--model.architecture", "gpt5", "--data.data_dir", str(byte_dataset), "--trainer.max_steps", "1"])
    with pytest.raises(SystemExit, match="n_layerz"):
        fit(byte_dataset, tmp_path / "run", "--model.architecture.n_layerz", "2")
    with pytest.raises(SystemExit, match="is not a prepared dataset; run `lit-llm prepare"):
        fit(tmp_path / "nothing", tmp_path / "run")
    with pytest.raises(SystemExit, match="does not exist"):
        main(["generate", "--checkpoint", str(tmp_path / "missing.ckpt")])


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(SystemExit, match="not a readable checkpoint"):
        main(["generate", "--checkpoint", str(broken)])
