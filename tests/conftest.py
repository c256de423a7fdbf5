import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus {path} not available")
    return path


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
