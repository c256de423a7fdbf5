"""`prepare --curation`: datatrove's quality filters, exact and MinHash dedup before tokenization, with what
each step removed in metadata.json and `data info`."""

import json
import random

import pytest

from lit_llm.commands.data_info import data_info
from lit_llm.data.prepare import prepare
from tests.conftest import REPO

pytest.importorskip("datatrove")
pytest.importorskip("spacy")
BOOKS = REPO.parent / "shared" / "data" / "gutenberg"


def prose_windows(n: int, words_per_document: int = 250) -> list[str]:
    """``n`` disjoint passages of real prose (no two overlap, so none are near duplicates by accident)."""
    words = [w for book in sorted(BOOKS.glob("*.txt")) for w in book.read_text().split()]
    step = len(words) // n
    return [" ".join(words[i * step : i * step + words_per_document]) for i in range(n)]


def edited(text: str, rng: random.Random, edits: int = 3) -> str:
    """A near duplicate: a few words replaced (5-gram Jaccard similarity stays above 0.9)."""
    words = text.split()
    for position in rng.sample(range(len(words)), edits):
        words[position] = "zqx"
    return " ".join(words)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """80 distinct passages, 10 exact copies, 10 near copies and 2 spam pages, shuffled into two files."""
    rng = random.Random(0)
    unique = prose_windows(80)
    documents = [*unique, *unique[:10], *(edited(text, rng) for text in unique[10:20])]
    documents += ["buy cheap pills now " * 80, "click here to win " * 90]
    rng.shuffle(documents)
    folder = tmp_path_factory.mktemp("planted")
    for f, chunk in enumerate((documents[:50], documents[50:])):
        (folder / f"part-{f}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in chunk))
    return folder


def test_curation_removes_the_planted_duplicates_and_spam_and_records_each_step(tmp_path, planted, capsys):
    meta = prepare(
        [str(planted)],
        str(tmp_path / "out"),
        curation=["minhash", "exact_dedup", "gopher_repetition"],  # run in the documented order, whatever given
        num_workers=2,
    )
    curation = meta["curation"]
    assert curation["steps"] == ["gopher_repetition", "exact_dedup", "minhash"]
    assert curation["removed"] == {"gopher_repetition": 2, "exact_dedup": 10, "minhash": 10}
    assert curation["documents_in"] == 102 and curation["documents_out"] == 80
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 80
    assert meta["splits"]["train"]["sources"] == sorted(str(p) for p in planted.glob("*.jsonl"))
    assert not (tmp_path / "out" / ".curation").exists()

    info = data_info(str(tmp_path / "out"), samples=0)
    assert info["curation"] == curation
    assert "removed by gopher_repetition 2, exact_dedup 10, minhash 10; 80 kept" in capsys.readouterr().out


def test_unknown_curation_step_is_a_one_line_error(tmp_path, planted):
    with pytest.raises(ValueError, match="'minhas' is not a curation step; choose from gopher_quality"):
        prepare([str(planted)], str(tmp_path / "out"), curation=["minhas"])
    assert not (tmp_path / "out").exists()


def test_curation_is_refused_in_tasks(tmp_path, planted):
    with pytest.raises(ValueError, match="--curation does not work with --num_tasks"):
        prepare([str(planted)], str(tmp_path / "out"), curation=["minhash"], num_tasks=2, task_index=0)
