"""A checkpoint written by lit-llm before the package was re-laid out (commit 05cb48d, kept as a fixture)
still loads in generate, evaluate and export, gives the logits it gave then, and resumes exactly."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint.load import load_checkpoint
from tests.conftest import REPO, SHAKESPEARE
from tests.test_resume import losses_by_step

FIXTURES = REPO / "tests" / "fixtures"
OLD_CHECKPOINT = FIXTURES / "v0.1-step3.ckpt"  # step 3 of the run below, written by the code at 05cb48d
# Where its data was: LitData's saved loader state names the dataset folder, so a resume reads it there.
OLD_DATA = Path("/tmp/lit-llm-compat/data")
# The flags that wrote it (on the first 20,000 characters of tiny Shakespeare, byte tokenizer).
RUN = [
    "--config",
    str(REPO / "experiments" / "shakespeare-char-cpu.yaml"),
    "--trainer.max_steps",
    "6",
    "--trainer.val_check_interval",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.log_every_n_steps",
    "1",
    "--checkpoint.every_n_train_steps",
    "3",
    "--model.architecture.n_layer",
    "1",
    "--model.architecture.n_embd",
    "32",
    "--model.architecture.n_head",
    "2",
    "--model.architecture.block_size",
    "32",
    "--model.sample_tokens",
    "0",
    "--model.warmup_steps",
    "2",
    "--data.batch_size",
    "4",
    "--data.num_workers",
    "0",
    "--trainer.enable_progress_bar",
    "false",
]


def lit_llm(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "lit_llm.cli", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_old_checkpoint_gives_the_logits_it_gave_when_written():
    model, tokenizer = load_checkpoint(OLD_CHECKPOINT)
    expected = torch.load(FIXTURES / "v0.1-step3-logits.pt", weights_only=True)
    assert torch.equal(model(expected["ids"]), expected["logits"])
    assert tokenizer.vocab_size == 257


def test_old_checkpoint_in_generate_evaluate_and_export(tmp_path):
    out = lit_llm(
        "generate", "--checkpoint", str(OLD_CHECKPOINT), "--prompt", "ROMEO:", "--max_new_tokens", "20", "--seed", "1"
    ).stdout
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:")
    corpus = tmp_path / "text.txt"
    corpus.write_text(SHAKESPEARE.read_text()[20_000:22_000])
    lit_llm("evaluate", "--checkpoint", str(OLD_CHECKPOINT), "--inputs", str(corpus), "--json")
    transformers = pytest.importorskip("transformers")
    lit_llm("export", "--checkpoint", str(OLD_CHECKPOINT), "--output_dir", str(tmp_path / "hf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    expected = torch.load(FIXTURES / "v0.1-step3-logits.pt", weights_only=True)
    with torch.no_grad():
        logits = hf(expected["ids"]).logits[..., : expected["logits"].size(-1)]
    assert (logits - expected["logits"]).abs().max() < 1e-4


def test_old_checkpoint_resumes_exactly(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:20_000])
    data = OLD_DATA
    lit_llm("prepare", "--inputs", str(corpus), "--output_dir", str(data), "--tokenizer", "byte", "--overwrite")
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    lit_llm("fit", *RUN, "--data.data_dir", str(data), "--trainer.default_root_dir", str(fresh))
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(OLD_CHECKPOINT, resumed / "checkpoints" / "last.ckpt")
    lit_llm(
        "fit", *RUN, "--data.data_dir", str(data), "--trainer.default_root_dir", str(resumed), "--ckpt_path", "last"
    )
    expected, got = losses_by_step(fresh), losses_by_step(resumed)
    assert sorted(got) == [3, 4, 5]  # the resumed process trained steps 3..5 only
    assert max(abs(expected[s] - got[s]) for s in got) < 1e-6


def test_an_experiment_naming_the_old_downstream_eval_class_path_still_parses(tmp_path):
    """0.1's YAMLs name `lit_llm.train.evaluation.DownstreamEval`; the callback now lives in train/downstream.py."""
    from lit_llm.train.cli import parse_experiment
    from lit_llm.train.downstream import DownstreamEval

    experiment = tmp_path / "old.yaml"
    experiment.write_text(
        "trainer:\n  callbacks:\n    - class_path: lit_llm.train.evaluation.DownstreamEval\n"
        "      init_args:\n        tasks: [lit_llm/tasks/shakespeare_cloze.jsonl]\n"
    )
    config = parse_experiment(
        ["--config", str(REPO / "experiments" / "shakespeare-char-cpu.yaml"), "--config", str(experiment)]
    )
    (callback,) = config["trainer"]["callbacks"]
    module, _, name = callback["class_path"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is DownstreamEval
