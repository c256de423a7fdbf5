import json
import logging

import pytest

from lit_llm.data.prepare import prepare
from lit_llm.model.tokenizer import Tokenizer, byte_tokenizer
from tests.conftest import SHAKESPEARE


def test_byte_tokenizer_round_trips_any_text():
    tok = byte_tokenizer()
    text = "Hello, wörld! 你好\n\ttabs"
    ids = tok.encode(text)
    assert ids[:5] == list(b"Hello")  # ids are byte values
    assert tok.decode(ids) == text
    assert tok.vocab_size == 257 and tok.eot_id == 256


def test_single_document_splits_like_nanogpt(byte_dataset, shakespeare_slice):
    meta = json.loads((byte_dataset / "metadata.json").read_text())
    n_chars = len(shakespeare_slice.read_text())
    # byte tokens == characters for ASCII text, plus one end-of-text token per split
    assert meta["splits"]["train"]["tokens"] == int(n_chars * 0.9) + 1
    assert meta["splits"]["val"]["tokens"] == n_chars - int(n_chars * 0.9) + 1
    assert meta["vocab_size"] == 257
    assert Tokenizer.from_file(byte_dataset / "tokenizer.json").vocab_size == 257


def test_bpe_on_many_documents_splits_by_document(tmp_path, shakespeare_documents):
    meta = prepare(
        [str(shakespeare_documents / "*.txt")],
        str(tmp_path / "out"),
        tokenizer="bpe",
        vocab_size=1024,
        val_fraction=0.2,
        num_workers=2,
    )
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["documents"] + val["documents"] == 5 and val["documents"] >= 1
    assert not set(train["sources"]) & set(val["sources"])
    assert meta["vocab_size"] == 1024
    tok = Tokenizer.from_file(tmp_path / "out" / "tokenizer.json")
    text = "What is the matter with you, my good lord?"
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) < len(text) / 2  # BPE actually merges


def test_existing_tokenizer_file_is_reused(tmp_path, shakespeare_slice):
    """A trained BPE tokenizer (not the byte one, which any byte-level run would reproduce) is used as it is."""
    trained = prepare([str(shakespeare_slice)], str(tmp_path / "bpe"), tokenizer="bpe", vocab_size=300)
    source = tmp_path / "bpe" / "tokenizer.json"
    other = tmp_path / "other.txt"
    other.write_text("Completely different words: zebra, quantum, xylophone. " * 200)
    meta = prepare([str(other)], str(tmp_path / "out"), tokenizer=str(source))
    assert meta["vocab_size"] == trained["vocab_size"] == 300
    reused, original = Tokenizer.from_file(tmp_path / "out" / "tokenizer.json"), Tokenizer.from_file(source)
    assert reused.backend.get_vocab() == original.backend.get_vocab()


def test_glob_and_folder_inputs(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_text("alpha " * 50)
    (tmp_path / "in" / "sub" / "b.txt").write_text("beta " * 50)
    (tmp_path / "in" / "c.md").write_text("gamma " * 50)
    meta = prepare([str(tmp_path / "in" / "*.txt"), str(tmp_path / "in" / "sub")], str(tmp_path / "out"))
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 2


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        prepare([str(tmp_path / "nope.txt")], str(tmp_path / "out"))


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="no text found"):
        prepare([str(tmp_path / "empty.txt")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_binary_files_are_skipped_and_non_utf8_counted(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "image.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "in" / "latin1.txt").write_bytes("café crème ".encode("latin-1") * 40)
    (tmp_path / "in" / "ok.txt").write_text("plain text " * 40)
    meta = prepare([str(tmp_path / "in")], str(tmp_path / "out"))
    assert [p.endswith("image.bin") for p in meta["binary_skipped"]] == [True]
    assert meta["replaced_bytes"] == 80  # é and è, 40 times each


def test_only_binary_input_is_refused(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ValueError, match="no text found"):
        prepare([str(tmp_path / "x.bin")], str(tmp_path / "out"))


def test_existing_output_is_never_overwritten_silently(tmp_path, shakespeare_slice):
    out = tmp_path / "out"
    prepare([str(shakespeare_slice)], str(out))
    before = (out / "metadata.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare([str(shakespeare_slice)], str(out))
    # a failing overwrite (bad tokenizer) leaves the old dataset intact
    with pytest.raises(ValueError, match="--tokenizer"):
        prepare([str(shakespeare_slice)], str(out), tokenizer="wordpiece", overwrite=True)
    assert (out / "metadata.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_tokenizer_file_and_vocab_size(tmp_path, shakespeare_slice):
    bad = tmp_path / "tok.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        prepare([str(shakespeare_slice)], str(tmp_path / "out"), tokenizer=str(bad))
    with pytest.raises(ValueError, match="too small"):
        prepare([str(shakespeare_slice)], str(tmp_path / "out2"), tokenizer="bpe", vocab_size=100)


def test_exclude_drops_matching_paths(tmp_path):
    for rel in ("lib/a.py", "lib/test/test_a.py", "lib/pkg/test/x.py", "lib/pkg/b.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n" * 20)
    meta = prepare([str(tmp_path / "lib")], str(tmp_path / "out"), exclude=["**/test/**"])
    sources = meta["splits"]["train"]["sources"] + meta["splits"]["val"]["sources"]
    assert sorted(s.rsplit("/", 1)[-1] for s in sources) == ["a.py", "b.py"]
    with pytest.raises(FileNotFoundError, match="--exclude"):
        prepare([str(tmp_path / "lib")], str(tmp_path / "out2"), exclude=["*.py"])


def test_lopsided_document_split_is_reported(tmp_path, shakespeare_slice, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.txt").write_text(shakespeare_slice.read_text())
    (tmp_path / "in" / "small.txt").write_text("a short note " * 20)
    for seed in range(4):  # some seed puts the big document in validation
        meta = prepare([str(tmp_path / "in")], str(tmp_path / f"out{seed}"), val_fraction=0.5, seed=seed)
        if meta["splits"]["val"]["tokens"] > meta["splits"]["train"]["tokens"]:
            assert "validation holds" in caplog.text and "another --seed" in caplog.text
            return
    pytest.fail("no seed put the big document in validation")


@pytest.mark.parametrize("form", ["words", "json"])
def test_exclude_from_the_command_line_in_either_list_form(tmp_path, form):
    """`--exclude a b` and `--exclude '["a", "b"]'` (as experiments/code-completion.yaml writes it) both exclude."""
    from lit_llm.cli import main

    for name in ("keep.py", "test/drop.py", "tests/drop.py"):
        (tmp_path / "lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lib" / name).write_text(f"# {name}\nx = 1\n")
    exclude = ["**/test/**", "**/tests/**"] if form == "words" else ['["**/test/**", "**/tests/**"]']
    main(["prepare", "--inputs", str(tmp_path / "lib"), "--output_dir", str(tmp_path / "out"), "--exclude", *exclude])
    splits = json.loads((tmp_path / "out" / "metadata.json").read_text())["splits"]
    assert sum(split["bytes"] for split in splits.values()) == len("# keep.py\nx = 1\n")  # the other two dropped


def one_document_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "as one document" in r.getMessage()]


def test_a_large_text_file_without_separators_is_said_to_be_one_document(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    meta = prepare([str(SHAKESPEARE)], str(tmp_path / "one"), num_workers=1)
    assert meta["splits"]["train"]["documents"] == meta["splits"]["val"]["documents"] == 1  # split by position
    [line] = one_document_warnings(caplog)
    assert line.startswith(f"{SHAKESPEARE} (1.1 MB) is the whole corpus as one document (no --separator given)")
    assert "the last 10% of its characters validate" in line and "pass --separator LINE" in line
    assert "JSON Lines/Parquet files (a document per record)" in line
    caplog.clear()
    prepare([str(SHAKESPEARE)], str(tmp_path / "absent"), num_workers=1, separator="<|endoftext|>")
    [line] = one_document_warnings(caplog)
    assert "(no line holds only '<|endoftext|>')" in line


def test_documents_found_in_a_text_file_or_a_folder_are_not_warned_about(tmp_path, shakespeare_documents, caplog):
    caplog.set_level(logging.WARNING)
    speeches = prepare([str(SHAKESPEARE)], str(tmp_path / "speeches"), num_workers=1, separator="")  # blank lines
    assert speeches["splits"]["train"]["documents"] > 1000
    folder = prepare([str(shakespeare_documents)], str(tmp_path / "folder"), num_workers=1)
    assert folder["splits"]["train"]["documents"] + folder["splits"]["val"]["documents"] == 5
    assert one_document_warnings(caplog) == []
