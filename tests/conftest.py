import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"
CPU_EXPERIMENT = REPO / "experiments" / "shakespeare-char-cpu.yaml"
# What a test run leaves out unless it asks: the progress bar, the validation sample, loader workers.
QUIET = {"trainer.enable_progress_bar": False, "model.sample_tokens": 0, "data.num_workers": 0}

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n auto` already keeps every core busy: one torch thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def fit_args(data_dir, run_dir, settings: dict, *extra: str) -> list[str]:
    """`lit-llm fit` arguments of a test run of the README's CPU experiment: ``settings`` as
    ``{"trainer.max_steps": 6, ...}`` (over QUIET), then ``extra`` flags as they are."""
    merged = {"data.data_dir": data_dir, "trainer.default_root_dir": run_dir, **QUIET, **settings}
    flags = [item for key, value in merged.items() for item in (f"--{key}", flag_value(value))]
    return ["fit", "--config", str(CPU_EXPERIMENT), *flags, *extra]


def flag_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture(scope="session")
def shakespeare_documents(tmp_path_factory) -> Path:
    """Tiny Shakespeare (shipped) cut into five documents of ~220k characters: a folder of long texts."""
    folder = tmp_path_factory.mktemp("documents")
    text = SHAKESPEARE.read_text()
    size = -(-len(text) // 5)
    for i in range(5):
        (folder / f"part-{i}.txt").write_text(text[i * size : (i + 1) * size])
    return folder


@pytest.fixture(scope="session")
def shakespeare_slice(tmp_path_factory) -> Path:
    """The first 60k characters of tiny Shakespeare: real text, small enough for fast tests."""
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(SHAKESPEARE.read_text()[:60_000])
    return path


@pytest.fixture(scope="session")
def byte_dataset(tmp_path_factory, shakespeare_slice) -> Path:
    from lit_llm.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "shakespeare-byte"
    prepare([str(shakespeare_slice)], str(out), tokenizer="byte", num_workers=1)
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """~80 training sequences of 33 tokens: an epoch lasts 20 steps (10 under 2-process DDP), so resume
    tests cross epoch boundaries after the resume, where resumed loaders have been known to go wrong."""
    from lit_llm.data.prepare import prepare

    corpus = tmp_path_factory.mktemp("small") / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:3000])
    out = corpus.parent / "data"
    prepare([str(corpus)], str(out), num_workers=1)
    return out
