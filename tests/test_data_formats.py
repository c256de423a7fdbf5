"""`lit-llm prepare` inputs: each format, compression, document boundaries, bad input, and parallel determinism."""

import compileall
import gzip
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lit_llm.data import readers
from lit_llm.data.prepare import assign_splits, prepare, training_sample
from lit_llm.data.shards import open_split
from lit_llm.model.tokenizer import Tokenizer

STORIES = [f"Story {i}: the fox number {i} jumped over {i % 7} lazy dogs." for i in range(40)]


def decoded_documents(data_dir) -> list[str]:
    """Every document of both splits, read back from the shards (sequences of one token, joined, cut at
    <|endoftext|>)."""
    tokenizer = Tokenizer.from_file(data_dir / "tokenizer.json")
    documents = []
    for split in ("train", "val"):
        ids = [int(t) for seq in open_split(str(data_dir), data_dir, split, 1) for t in seq]
        text = tokenizer.decode(ids)
        documents += [doc for doc in text.split("<|endoftext|>") if doc]
    return documents


def write_jsonl(path, records, opener=open):
    with opener(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def test_jsonl_records_are_documents_and_field_is_chosen(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"content": s, "id": i} for i, s in enumerate(STORIES)])
    meta = prepare([str(tmp_path / "a.jsonl")], str(tmp_path / "out"), text_field="content", val_size=5, num_workers=1)
    assert meta["splits"]["train"]["documents"] == 35 and meta["splits"]["val"]["documents"] == 5
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(STORIES)


def test_gzip_and_zstd_are_decompressed_by_extension(tmp_path):
    write_jsonl(tmp_path / "a.jsonl.gz", [{"text": s} for s in STORIES[:20]], opener=gzip.open)
    (tmp_path / "b.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps({"text": s}) + "\n" for s in STORIES[20:]).encode())
    )
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(b"a plain gzipped text file"))
    meta = prepare([str(tmp_path)], str(tmp_path / "out"), num_workers=1)
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(STORIES + ["a plain gzipped text file"])
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 41


def test_parquet_column_over_row_groups(tmp_path):
    table = pa.table({"body": STORIES, "n": list(range(40))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=16)  # 3 row groups -> 3 parts
    assert len(readers.scan_file(str(tmp_path / "a.parquet"), readers.ReadOptions("body")).parts) == 3
    prepare([str(tmp_path / "a.parquet")], str(tmp_path / "out"), text_field="body", num_workers=2)
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(STORIES)


def test_separator_lines_split_a_text_file_into_documents(tmp_path):
    (tmp_path / "s.txt").write_text("".join(f"{s}\nsecond line\n<|endoftext|>\n" for s in STORIES[:10]))
    meta = prepare([str(tmp_path / "s.txt")], str(tmp_path / "out"), separator="<|endoftext|>", num_workers=1)
    assert meta["splits"]["train"]["documents"] == 9 and meta["splits"]["val"]["documents"] == 1
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(f"{s}\nsecond line\n" for s in STORIES[:10])


def test_bad_input_is_counted_or_named(tmp_path, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blob.bin.gz").write_bytes(gzip.compress(bytes(range(256)) * 4))
    write_jsonl(tmp_path / "in" / "r.jsonl", [{"text": "kept"}, {"text": "  "}, {"text": None}, {"text": "also kept"}])
    (tmp_path / "in" / "r.jsonl").open("ab").write(b'{"text": "caf\xe9"}\n\n')  # latin-1 byte, then a blank line
    (tmp_path / "in" / "empty.txt").write_text("\n")
    meta = prepare([str(tmp_path / "in")], str(tmp_path / "out"), num_workers=1)
    assert [p.endswith("blob.bin.gz") for p in meta["binary_skipped"]] == [True]
    assert "skipping 1 binary file (blob.bin.gz); --exclude '**/*.bin.gz' leaves such files out" in caplog.text
    assert [p.endswith("empty.txt") for p in meta["empty_skipped"]] == [True]
    assert meta["empty_documents"] == 3 and meta["replaced_bytes"] == 1
    assert sorted(decoded_documents(tmp_path / "out")) == ["also kept", "caf\ufffd", "kept"]


@pytest.mark.parametrize(
    "content, options, message",
    [
        ('{"text": "ok"}\n{not json\n', {}, "bad.jsonl line 2 is not valid JSON"),
        ('{"body": "ok"}\n', {}, "has no field 'text' \\(found: body\\); pass --text_field"),
        ('{"text": 3}\n', {}, "holds int, not text"),
    ],
)
def test_malformed_jsonl_is_a_clear_error(tmp_path, content, options, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        prepare([str(tmp_path / "bad.jsonl")], str(tmp_path / "out"), **options)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_bad_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="fake.parquet is not a readable Parquet file"):
        prepare([str(tmp_path / "fake.parquet")], str(tmp_path / "out"))
    pq.write_table(pa.table({"body": ["x"], "n": [1]}), tmp_path / "real.parquet")
    with pytest.raises(ValueError, match=r"has no column 'text' \(columns: body, n\); pass --text_field"):
        prepare([str(tmp_path / "real.parquet")], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="column 'n' holds int64, not text"):
        prepare([str(tmp_path / "real.parquet")], str(tmp_path / "out"), text_field="n")


def test_split_options_are_checked(tmp_path, shakespeare_slice):
    write_jsonl(tmp_path / "a.jsonl", [{"text": s} for s in STORIES])
    with pytest.raises(ValueError, match="--val_size 40 must leave at least one of the 40 documents"):
        prepare([str(tmp_path / "a.jsonl")], str(tmp_path / "out"), val_size=40)
    with pytest.raises(ValueError, match="one document .* use --val_fraction"):
        prepare([str(shakespeare_slice)], str(tmp_path / "out"), val_size=1)


def test_shards_do_not_depend_on_worker_count_or_part_size(tmp_path, monkeypatch):
    """Records cut into many parts and tokenized by 2 processes give the same bytes as one pass in-process."""
    write_jsonl(tmp_path / "a.jsonl", [{"text": s * 20} for s in STORIES * 5])
    prepare([str(tmp_path / "a.jsonl")], str(tmp_path / "one"), tokenizer="bpe", vocab_size=300, num_workers=1)
    monkeypatch.setattr("lit_llm.data.inputs.MAX_PART_BYTES", 4096)
    monkeypatch.setattr("lit_llm.data.inputs.MIN_PART_BYTES", 4096)
    assert len(readers.scan_file(str(tmp_path / "a.jsonl"), readers.ReadOptions(), 4096).parts) > 10
    prepare(
        [str(tmp_path / "a.jsonl")],
        str(tmp_path / "two"),
        tokenizer=str(tmp_path / "one" / "tokenizer.json"),
        num_workers=2,
    )
    for split in ("train", "val"):
        assert (tmp_path / "one" / split / "chunk-0-0.bin").read_bytes() == (
            tmp_path / "two" / split / "chunk-0-0.bin"
        ).read_bytes()


def test_long_documents_encode_in_pieces_exactly_like_whole(tmp_path, shakespeare_documents):
    prepare(
        [str(shakespeare_documents / "part-0.txt")],
        str(tmp_path / "bpe"),
        tokenizer="bpe",
        vocab_size=512,
        num_workers=1,
    )
    tokenizer = Tokenizer.from_file(tmp_path / "bpe" / "tokenizer.json")
    novel = (shakespeare_documents / "part-4.txt").read_text()
    for text in (novel, novel.replace("\n", "\r\n")):
        pieces = list(readers.segments(text, limit=5000))
        assert len(pieces) > 20 and "".join(pieces) == text
        assert [i for piece in pieces for i in tokenizer.encode(piece)] == tokenizer.encode(text)


def test_tokenizer_training_sample_is_bounded(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": s} for s in STORIES])
    sampled = prepare(
        [str(tmp_path / "a.jsonl")],
        str(tmp_path / "a"),
        tokenizer="bpe",
        vocab_size=2000,
        tokenizer_sample_bytes=300,
        num_workers=1,
    )
    full = prepare(
        [str(tmp_path / "a.jsonl")],
        str(tmp_path / "b"),
        tokenizer="bpe",
        vocab_size=2000,
        tokenizer_sample_bytes=None,
        num_workers=1,
    )
    assert sampled["vocab_size"] < full["vocab_size"]
    jobs = assign_splits(readers.scan_file(str(tmp_path / "a.jsonl"), readers.ReadOptions()).parts, 0.1, None, seed=1)
    assert sum(len(text.encode()) for text in training_sample(jobs, readers.ReadOptions(), 300, seed=1)) == 300


def test_a_source_tree_s_pycache_is_one_warning_with_the_exclude_that_silences_it(tmp_path, caplog):
    (tmp_path / "src").mkdir()
    for name in ("alpha", "beta", "gamma", "delta", "epsilon"):
        (tmp_path / "src" / f"{name}.py").write_text(f"def {name}():\n    return {name!r}\n")
    assert compileall.compile_dir(tmp_path / "src", quiet=1)  # five .pyc files, each with NUL bytes
    caplog.set_level(logging.WARNING)
    meta = prepare([str(tmp_path / "src")], str(tmp_path / "out"), num_workers=1)
    assert len(meta["binary_skipped"]) == 5
    [line] = [r.getMessage() for r in caplog.records if "binary" in r.getMessage()]
    assert line.startswith("skipping 5 binary files (") and "and 2 more)" in line
    assert line.endswith("--exclude '**/__pycache__/**' leaves such files out")
    caplog.clear()
    meta = prepare([str(tmp_path / "src")], str(tmp_path / "out2"), num_workers=1, exclude=["**/__pycache__/**"])
    assert meta["binary_skipped"] == [] and "binary" not in caplog.text
