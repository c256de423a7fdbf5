"""Every bad input gets one clear line: a table of wrong inputs, each run as its own `lit-llm` process.

Each row runs in its own copy of a shared workspace (a prepared dataset, a trained run, broken files), and
asserts: a non-zero exit, exactly one line on stderr that names the offending value and the fix, no
traceback, and that nothing that existed before was changed or deleted. The rows' processes are forked from
one interpreter that imported the stack once (tests/forked_cli.py): fifty imports of Lightning would be most
of this file's time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.forked_cli import Command, run_commands

EXPERIMENT = str(REPO / "experiments" / "shakespeare-char-cpu.yaml")
# A 1-layer, 32-wide model on 32-token sequences: each fit row fails (or would train) in seconds.
TINY = [
    "--model.architecture.n_layer", "1",
    "--model.architecture.n_embd", "32",
    "--model.architecture.block_size", "32",
    "--model.warmup_steps", "1",
    "--model.sample_tokens", "4",
    "--data.batch_size", "4",
    "--data.num_workers", "0",
    "--trainer.limit_val_batches", "1",
    "--trainer.val_check_interval", "2",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip
FIT = ["fit", "--config", EXPERIMENT, *TINY, "--trainer.max_steps", "2", "--data.data_dir", "WS/data"]
NEW_RUN = ["--trainer.default_root_dir", "WS/new-run"]
# WS/run finished at step 2: a raised max_steps makes a rerun a resume (a finished run has nothing to do)
RESUME = [*FIT, "--trainer.default_root_dir", "WS/run", "--trainer.max_steps", "3"]
CKPT = "WS/run/checkpoints/last.ckpt"


def lit_llm(*args: str, cwd: Path):
    """One `lit-llm` command in its own process."""
    return run_commands([Command(list(args), cwd=cwd)])[0]


@dataclass(frozen=True)
class Row:
    name: str
    args: list[str]  # "WS/" stands for the row's workspace
    expect: tuple[str, ...]  # substrings of the one stderr line: the offending value and the way out


ROWS = [
    # ---- prepare --------------------------------------------------------------------------------------
    Row("prepare-empty-file", ["prepare", "--inputs", "WS/in/empty.txt", "--output_dir", "WS/out"],
        ("empty.txt", "empty", "UTF-8 text")),
    Row("prepare-missing-input", ["prepare", "--inputs", "WS/in/nope.txt", "--output_dir", "WS/out"],
        ("nope.txt", "does not exist", "check the path")),
    Row("prepare-empty-folder", ["prepare", "--inputs", "WS/in/empty-folder", "--output_dir", "WS/out"],
        ("empty-folder", "holds no files")),
    Row("prepare-binary-input", ["prepare", "--inputs", "WS/in/image.bin", "--output_dir", "WS/out"],
        ("image.bin", "binary", "UTF-8 text")),
    Row("prepare-corrupt-gzip", ["prepare", "--inputs", "WS/in/corrupt.txt.gz", "--output_dir", "WS/out"],
        ("corrupt.txt.gz", "cannot be read", "--exclude")),
    Row("prepare-truncated-gzip", ["prepare", "--inputs", "WS/in/truncated.txt.gz", "--output_dir", "WS/out"],
        ("truncated.txt.gz", "cannot be read", "--exclude")),
    Row("prepare-bad-jsonl-line", ["prepare", "--inputs", "WS/in/bad.jsonl", "--output_dir", "WS/out"],
        ("bad.jsonl", "line 2")),
    Row("prepare-jsonl-without-field", ["prepare", "--inputs", "WS/in/other-field.jsonl", "--output_dir", "WS/out"],
        ("other-field.jsonl", "'text'", "--text_field")),
    Row("prepare-parquet-without-column", ["prepare", "--inputs", "WS/in/content.parquet", "--output_dir", "WS/out"],
        ("content.parquet", "'text'", "--text_field")),
    Row("prepare-append-other-tokenizer",
        ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/data", "--append", "--tokenizer", "bpe"],
        ("--tokenizer bpe", "drop --tokenizer")),
    Row("prepare-append-to-nothing", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out", "--append"],
        ("out", "no dataset", "drop --append")),
    Row("prepare-output-is-a-file", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/in/more.txt"],
        ("more.txt", "is a file", "--output_dir")),
    Row("prepare-output-not-empty", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/data"],
        ("data", "not empty", "--overwrite")),
    Row("prepare-val-fraction", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                 "--val_fraction", "1.5"], ("--val_fraction 1.5", "between 0 and 1")),
    Row("prepare-unknown-tokenizer", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                      "--tokenizer", "wordpiece"], ("'wordpiece'", "'byte', 'bpe'")),
    Row("prepare-bpe-vocab-too-small", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                        "--tokenizer", "bpe", "--vocab_size", "100"], ("--vocab_size 100", "257")),
    Row("prepare-misspelt-option", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                    "--vocab_sise", "300"], ("--vocab_sise", "--help")),
    Row("prepare-url-matches-nothing", ["prepare", "--inputs", "file://WS/in/*.nothing", "--output_dir", "WS/out"],
        ("*.nothing", "matches no file", "check the URL")),
    Row("prepare-unknown-url-protocol", ["prepare", "--inputs", "nosuch://bucket/a.txt", "--output_dir", "WS/out"],
        ("nosuch://bucket/a.txt", "fsspec URL")),
    Row("prepare-task-index-out-of-range", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                            "--num_tasks", "2", "--task_index", "2"], ("--task_index 2", "0 to 1")),
    Row("prepare-tasks-with-bpe", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                   "--num_tasks", "2", "--task_index", "0", "--tokenizer", "bpe"],
        ("--tokenizer bpe", "tokenizer.json")),
    Row("prepare-merge-before-tasks", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                       "--num_tasks", "2", "--merge", "true"], ("tasks 0", "--task_index")),
    Row("prepare-unknown-curation-step", ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/out",
                                          "--curation", "[minhas]"], ("'minhas'", "choose from")),
    # ---- fit / validate -------------------------------------------------------------------------------
    Row("fit-shape-not-divisible", [*FIT, *NEW_RUN, "--model.architecture.n_embd", "130"],
        ("n_embd=130", "n_head=4", "pick sizes that divide")),
    Row("fit-unknown-preset", [*FIT[:3], "--model.architecture", "gpt5", "--data.data_dir", "WS/data", *NEW_RUN],
        ("'gpt5'", "choose one of", "micro")),
    Row("fit-vocab-mismatch", [*FIT, *NEW_RUN, "--model.architecture.vocab_size", "100"],
        ("257", "vocab_size is 100", "null")),
    Row("fit-missing-dataset", [*FIT, *NEW_RUN, "--data.data_dir", "WS/no-data"],
        ("no-data", "not a prepared dataset", "lit-llm prepare")),
    Row("fit-missing-shard", [*FIT, *NEW_RUN, "--data.data_dir", "WS/data-missing-shard"],
        ("chunk-0-0.bin", "missing", "prepare")),
    Row("fit-truncated-shard", [*FIT, *NEW_RUN, "--data.data_dir", "WS/data-truncated-shard"],
        ("chunk-0-0.bin", "bytes", "prepare")),
    Row("fit-corrupt-shard", [*FIT, *NEW_RUN, "--data.data_dir", "WS/data-corrupt-shard"],
        ("chunk-0-0.bin", "outside the vocabulary", "step 0")),
    Row("fit-yaml-not-a-mapping", ["fit", "--config", "WS/in/list.yaml"],
        ("list.yaml", "not a mapping", "experiments/")),
    Row("fit-yaml-syntax", ["fit", "--config", "WS/in/broken.yaml"], ("broken.yaml", "line")),
    Row("fit-config-missing", ["fit", "--config", "WS/in/nope.yaml"], ("nope.yaml", "not found", "experiments/")),
    Row("fit-global-batch-indivisible", [*FIT, *NEW_RUN, "--model.global_batch_size", "10"],
        ("global_batch_size=10", "4 × 1", "change one of them")),
    Row("fit-negative-z-loss", [*FIT, *NEW_RUN, "--model.z_loss", "-1"], ("z_loss=-1", "must be >= 0", "1e-4")),
    Row("fit-spike-skip-sigma-zero", [*FIT, *NEW_RUN, "--model.spike_skip_sigma", "0"],
        ("spike_skip_sigma=0", "must be positive", "null")),
    Row("fit-max-steps-unset", [*FIT, *NEW_RUN, "--trainer.max_steps", "-1"],
        ("max_steps", "never end", "--trainer.max_steps")),
    Row("fit-into-a-run-of-another-model",
        [*FIT, "--trainer.default_root_dir", "WS/run", "--model.architecture.n_layer", "2"],
        ("run of another model", "n_layer")),
    Row("fit-into-a-folder-without-checkpoint", [*FIT, "--trainer.default_root_dir", "WS/in"],
        ("run folder", "/in is not empty", "no checkpoint to resume from", "another --trainer.default_root_dir")),
    Row("fit-resume-with-another-batch-size",
        [*RESUME, "--data.batch_size", "8"],
        ("data.batch_size 4 in the checkpoint, 8 now", "--resume_with_changes")),
    Row("fit-resume-on-data-prepared-again",
        [*FIT, "--trainer.default_root_dir", "WS/run", "--data.data_dir", "WS/data-bpe"],
        ("last.ckpt was trained with another tokenizer", "data-bpe's tokenizer.json", "prepared again")),
    Row("fit-resume-on-data-appended-to",
        [*RESUME, "--data.data_dir", "WS/data-appended"],
        ("data.fingerprints", "in the checkpoint", "--resume_with_changes")),
    Row("fit-misspelt-option", [*FIT, *NEW_RUN, "--trainer.max_stepz", "3"], ("--trainer.max_stepz", "--help")),
    Row("fit-ema-decay-above-one",
        [*FIT, *NEW_RUN, "--trainer.callbacks+=lit_llm.train.callbacks.WeightEMA", "--trainer.callbacks.decay=1.5"],
        ("decay 1.5", "between 0 and 1")),
    Row("fit-fsdp2-resume-of-a-single-file-checkpoint",
        [*FIT, *NEW_RUN, "--trainer.strategy", "fsdp2", "--trainer.max_steps", "3", "--resume_with_changes",
         "--ckpt_path", CKPT],
        ("last.ckpt is a single-file checkpoint", "the strategy that wrote it", "--model.init_from")),
    Row("fit-fsdp2-without-sharded-checkpoints",
        [*FIT, *NEW_RUN, "--trainer.strategy", "lit_llm.train.strategy.FSDP2Strategy",
         "--trainer.strategy.save_distributed_checkpoint", "false"],
        ("save_distributed_checkpoint false is not supported", "lit-llm consolidate")),
    Row("validate-corrupt-checkpoint", ["validate", "--config", EXPERIMENT, *TINY, "--data.data_dir", "WS/data",
                                        *NEW_RUN, "--ckpt_path", "WS/garbage.ckpt"],
        ("garbage.ckpt", "not a readable checkpoint", "corrupt")),
    # ---- generate -------------------------------------------------------------------------------------
    Row("generate-corrupt-checkpoint", ["generate", "--checkpoint", "WS/garbage.ckpt"],
        ("garbage.ckpt", "not a readable checkpoint", "corrupt")),
    Row("generate-truncated-checkpoint", ["generate", "--checkpoint", "WS/truncated.ckpt"],
        ("truncated.ckpt", "not a readable checkpoint", "truncated")),
    Row("generate-missing-checkpoint", ["generate", "--checkpoint", "WS/nope.ckpt"], ("nope.ckpt", "does not exist")),
    Row("generate-empty-prompt-list", ["generate", "--checkpoint", CKPT, "--prompt", "[]"],
        ("--prompt", "empty list")),
    Row("generate-no-new-tokens", ["generate", "--checkpoint", CKPT, "--max_new_tokens", "0"],
        ("--max_new_tokens 0", "at least 1")),
    Row("generate-negative-temperature", ["generate", "--checkpoint", CKPT, "--temperature", "-0.5"],
        ("--temperature -0.5", "0 for greedy")),
    Row("generate-top-p-zero", ["generate", "--checkpoint", CKPT, "--top_p", "0"], ("--top_p 0", "(0, 1]")),
    Row("generate-top-p-above-one", ["generate", "--checkpoint", CKPT, "--top_p", "1.5"], ("--top_p 1.5", "(0, 1]")),
    Row("generate-top-k-zero", ["generate", "--checkpoint", CKPT, "--top_k", "0"], ("--top_k 0", "at least 1")),
    Row("serve-missing-checkpoint", ["serve", "WS/nope.ckpt"], ("nope.ckpt", "does not exist")),
    Row("serve-bad-port", ["serve", CKPT, "--port", "70000"], ("--port 70000", "1-65535")),
    Row("serve-zero-threads", ["serve", CKPT, "--threads", "0"], ("--threads 0", "at least 1")),
    Row("fit-fim-without-fim-tokens", [*FIT, *NEW_RUN, "--data.fim_rate", "0.5"],
        ("data.fim_rate=0.5", "tokenizer.json", "prepare --fim")),
    Row("fit-fim-rate-above-one", [*FIT, *NEW_RUN, "--data.fim_spm_rate", "1.5"], ("data.fim_spm_rate=1.5", "[0, 1]")),
    Row("prepare-fim-append-without-fim-tokens",
        ["prepare", "--inputs", "WS/in/more.txt", "--output_dir", "WS/data", "--append", "--fim"],
        ("--fim", "no FIM tokens", "new dataset with --fim")),
    # ---- evaluate, export, plan, data info, plot ------------------------------------------------------
    Row("evaluate-missing-input", ["evaluate", "--checkpoint", CKPT, "--inputs", "WS/in/nope.txt"],
        ("nope.txt", "does not exist")),
    Row("evaluate-context-too-long", ["evaluate", "--checkpoint", CKPT, "--inputs", "WS/in/more.txt",
                                      "--context", "64"], ("--context 64", "block_size 32")),
    Row("evaluate-corrupt-checkpoint", ["evaluate", "--checkpoint", "WS/garbage.ckpt", "--inputs", "WS/in/more.txt"],
        ("garbage.ckpt", "not a readable checkpoint")),
    Row("export-into-non-empty-folder", ["export", "--checkpoint", CKPT, "--output_dir", "WS/in"],
        ("in", "not empty", "--overwrite")),
    Row("average-corrupt-checkpoint", ["average", "--checkpoints", CKPT, "WS/garbage.ckpt", "--output", "WS/avg.ckpt"],
        ("garbage.ckpt", "not a readable checkpoint")),
    Row("average-ema-of-a-run-without-it", ["average", "--checkpoints", CKPT, "--ema", "--output", "WS/avg.ckpt"],
        ("last.ckpt holds no EMA weights", "WeightEMA", "without --ema")),
    Row("average-over-an-existing-file", ["average", "--checkpoints", CKPT, "--output", "WS/garbage.ckpt"],
        ("garbage.ckpt already exists", "--overwrite")),
    Row("plan-yaml-not-a-mapping", ["plan", "--config", "WS/in/list.yaml"], ("list.yaml", "not a mapping")),
    Row("plan-unknown-gpu", ["plan", "--preset", "micro", "--gpu", "h900"], ("h900",)),
    Row("plan-unknown-preset", ["plan", "--preset", "gpt5"], ("gpt5", "micro")),
    Row("data-info-missing", ["data", "info", "WS/no-data"], ("no-data", "not a prepared dataset")),
    Row("data-info-truncated-shard", ["data", "info", "WS/data-truncated-shard"], ("chunk-0-0.bin", "bytes")),
    Row("plot-no-events", ["plot", "--run_dirs", "WS/in", "--output", "WS/plot.png"], ("in", "lit-llm fit")),
    Row("plot-unknown-tag", ["plot", "--run_dirs", "WS/run", "--output", "WS/plot.png", "--tags", "train/nope"],
        ("train/nope", "logged", "--tags")),
    Row("unknown-command", ["trian"], ("'trian'", "lit-llm --help")),
]  # fmt: skip


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, byte_dataset) -> Path:
    """What every row starts from: a dataset, a trained run, broken copies of both, and bad input files."""
    from lit_llm.data.prepare import prepare

    ws = tmp_path_factory.mktemp("bad-inputs")
    shutil.copytree(byte_dataset, ws / "data")
    fit = [a.replace("WS/", f"{ws}/") for a in FIT]
    (trained,) = run_commands([Command([*fit, "--trainer.default_root_dir", str(ws / "run")], cwd=ws)])
    assert trained.returncode == 0, trained.stderr
    write_bad_inputs(ws / "in")
    write_broken_datasets(ws)
    prepare([str(ws / "in" / "more.txt")], str(ws / "data-bpe"), tokenizer="bpe", vocab_size=300, num_workers=1)
    shutil.copytree(ws / "data", ws / "data-appended")
    prepare([str(ws / "in" / "more.txt")], str(ws / "data-appended"), append=True, num_workers=1)
    last = (ws / "run" / "checkpoints" / "last.ckpt").read_bytes()
    (ws / "truncated.ckpt").write_bytes(last[: len(last) // 2])
    (ws / "garbage.ckpt").write_bytes(os.urandom(4096))
    return ws


def write_bad_inputs(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    (folder / "empty.txt").write_text("")
    (folder / "empty-folder").mkdir()
    (folder / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (folder / "corrupt.txt.gz").write_bytes(b"this is not gzip data at all\n" * 10)
    packed = gzip.compress((REPO / "data" / "tinyshakespeare.txt").read_bytes()[:50_000])
    (folder / "truncated.txt.gz").write_bytes(packed[: len(packed) // 2])
    (folder / "bad.jsonl").write_text('{"text": "fine"}\n{"text": "cut off\n{"text": "fine"}\n')
    (folder / "other-field.jsonl").write_text('{"content": "a"}\n{"content": "b"}\n')
    pq.write_table(pa.table({"content": ["a document", "another"]}), folder / "content.parquet")
    (folder / "more.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20)
    (folder / "list.yaml").write_text("- trainer\n- model\n")
    (folder / "broken.yaml").write_text("trainer:\n  max_steps: [1, 2\nmodel: {}\n")


def write_broken_datasets(ws: Path) -> None:
    """Copies of the dataset with its one training shard deleted, cut in half, and overwritten with noise."""
    shard = Path("train") / "chunk-0-0.bin"
    for kind in ("missing", "truncated", "corrupt"):
        shutil.copytree(ws / "data", ws / f"data-{kind}-shard")
    (ws / "data-missing-shard" / shard).unlink()
    data = (ws / "data" / shard).read_bytes()
    (ws / "data-truncated-shard" / shard).write_bytes(data[: len(data) // 2])
    (ws / "data-corrupt-shard" / shard).write_bytes(data[:16] + b"\xff" * (len(data) - 16))


@pytest.fixture(scope="module")
def outcomes(workspace, tmp_path_factory) -> dict:
    """All rows at once, each in its own copy of the workspace: (result, files before, files after) by name."""
    root = tmp_path_factory.mktemp("rows")
    commands, before = [], {}
    for row in ROWS:
        ws = root / row.name
        shutil.copytree(workspace, ws, symlinks=True)
        before[row.name] = tree_digest(ws)
        commands.append(Command([a.replace("WS/", f"{ws}/") for a in row.args], cwd=ws))
    results = run_commands(commands)  # a hang fails its own row (killed, "timed out" on stderr), not the table
    return {
        row.name: (result, before[row.name], tree_digest(root / row.name))
        for row, result in zip(ROWS, results, strict=True)
    }


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_gets_one_line(row: Row, outcomes):
    result, before, after = outcomes[row.name]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, f"exit {result.returncode}; stdout: {result.stdout[-500:]}"
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, "stderr is not one line:\n" + result.stderr
    for expected in row.expect:
        assert expected in lines[0], f"{expected!r} missing from: {lines[0]}"
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"changed or deleted: {changed}"
    print(f"{row.name}: {lines[0]}")  # the matrix, for `pytest -s`


def test_bpe_vocab_beyond_what_the_corpus_supports_is_reported(tmp_path, shakespeare_slice):
    """Asking for more BPE tokens than the corpus has pairs to merge: the dataset is written with the
    smaller vocabulary, and one warning says how many tokens the corpus supports."""
    result = lit_llm(
        "prepare", "--inputs", str(shakespeare_slice), "--output_dir", str(tmp_path / "out"),
        "--tokenizer", "bpe", "--vocab_size", "100000", "--num_workers", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    vocab = json.loads((tmp_path / "out" / "metadata.json").read_text())["vocab_size"]
    assert 257 < vocab < 100_000
    warnings = [line for line in result.stderr.splitlines() if "--vocab_size 100000" in line]
    assert len(warnings) == 1 and f"supports only {vocab:,} tokens" in warnings[0], result.stderr


def test_generate_beyond_the_block_size_slides_the_context(workspace):
    """Not an error: past block_size, each step re-reads the last block_size tokens (sampling.generate);
    temperature 0 is greedy."""
    result = lit_llm(
        "generate", "--checkpoint", str(workspace / "run"), "--prompt", "ROMEO:", "--max_new_tokens", "48",
        "--temperature", "0", "--seed", "1", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout.encode()) >= len("ROMEO:") + 40


def test_a_shard_corrupted_mid_run_stops_it_by_name_and_step_saving_nothing(tmp_path, shakespeare_slice):
    """A shard that turns to noise between a checkpoint and the resume: the resumed run stops when it first
    reads the shard, naming it and the step, and the checkpoints folder stays exactly as it was."""
    from lit_llm.data.prepare import prepare

    text = shakespeare_slice.read_text()
    (tmp_path / "a.txt").write_text(text[:3000])  # a short first shard, so the second is reached within steps
    (tmp_path / "b.txt").write_text(text[3000:])
    data = tmp_path / "data"
    prepare([str(tmp_path / "a.txt")], str(data), tokenizer="byte", num_workers=1)
    prepare([str(tmp_path / "b.txt")], str(data), append=True, num_workers=1)
    second = data / "train" / "chunk-0-1.bin"
    assert second.is_file()
    run = [
        "fit", "--config", EXPERIMENT, *TINY, "--data.data_dir", str(data), "--trainer.default_root_dir",
        str(tmp_path / "run"), "--checkpoint.every_n_train_steps", "2", "--trainer.val_check_interval", "1000",
    ]  # fmt: skip
    first = lit_llm(*run, "--trainer.max_steps", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    checkpoints = tmp_path / "run" / "checkpoints"
    before = tree_digest(checkpoints)
    shard = second.read_bytes()
    second.write_bytes(shard[:12] + b"\xff" * (len(shard) - 12))  # same size: only reading it finds the damage

    # no periodic save before the damaged shard is reached: any file that changes was written by the error path
    resume = ["--trainer.max_steps", "100000", "--checkpoint.every_n_train_steps", "100000", "--ckpt_path", "last",
              "--resume_with_changes"]  # fmt: skip
    resumed = lit_llm(*run, *resume, cwd=tmp_path)
    assert resumed.returncode != 0
    assert "Traceback" not in resumed.stderr
    error = resumed.stderr.strip().splitlines()[-1]
    assert f"{data}/train/chunk-0-1.bin" in error and "outside the vocabulary of 257" in error, resumed.stderr
    step = int(error.split("at step ")[1].split(":")[0])
    assert step >= 4 and "--ckpt_path last" in error
    assert tree_digest(checkpoints) == before  # nothing saved over (or beside) the last good checkpoint
