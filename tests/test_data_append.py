"""`lit-llm prepare --append`: new documents join an existing dataset safely, with the same tokenizer."""

import json

import pytest

from lit_llm.data.format import count_tokens
from lit_llm.data.prepare import prepare
from lit_llm.data.shards import open_split
from lit_llm.model.tokenizer import byte_tokenizer


def write_corpus(folder, name, n_docs):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.jsonl").open("w") as f:
        f.writelines(json.dumps({"text": f"{name} document {i} " * 10}) + "\n" for i in range(n_docs))
    return folder / f"{name}.jsonl"


def test_append_adds_documents_and_keeps_the_old_ones(tmp_path):
    first, second = write_corpus(tmp_path / "in", "first", 20), write_corpus(tmp_path / "in", "second", 10)
    out = tmp_path / "out"
    before = prepare([str(first)], str(out), num_workers=1)
    old_chunk = (out / "train" / "chunk-0-0.bin").read_bytes()
    after = prepare([str(second)], str(out), append=True, num_workers=1)
    for split in ("train", "val"):
        old, new = before["splits"][split], after["splits"][split]
        assert new["tokens"] == count_tokens(out / split) > old["tokens"]
        assert new["shards"] == 2 and new["sources"] == [str(first), str(second)]
    assert after["splits"]["train"]["documents"] + after["splits"]["val"]["documents"] == 30
    assert after["inputs"] == [str(first), str(second)]
    assert (out / "train" / "chunk-0-0.bin").read_bytes() == old_chunk
    tokens = [int(t) for seq in open_split(str(out), out, "train", 1) for t in seq]
    assert len(tokens) == after["splits"]["train"]["tokens"]
    assert "second document" in byte_tokenizer().decode(tokens)
    assert not list(tmp_path.glob(".out*"))


def test_append_refuses_another_tokenizer_duplicates_and_nothing_to_append_to(tmp_path, byte_dataset):
    first, second = write_corpus(tmp_path / "in", "first", 5), write_corpus(tmp_path / "in", "second", 5)
    out = tmp_path / "out"
    prepare([str(first)], str(out), tokenizer="bpe", vocab_size=300, num_workers=1)
    before = (out / "metadata.json").read_text()
    with pytest.raises(
        ValueError, match="--tokenizer byte differs from the dataset's own tokenizer.json; drop --tokenizer"
    ):
        prepare([str(second)], str(out), tokenizer="byte", append=True)
    with pytest.raises(ValueError, match="--tokenizer bpe differs"):
        prepare([str(second)], str(out), tokenizer="bpe", append=True)
    with pytest.raises(ValueError, match="first.jsonl .* is already in the dataset; remove it from --inputs"):
        prepare([str(first)], str(out), append=True)
    assert (out / "metadata.json").read_text() == before and not list(tmp_path.glob(".out*"))
    prepare(
        [str(second)], str(out), tokenizer=str(out / "tokenizer.json"), append=True, num_workers=1
    )  # the same one is fine
    with pytest.raises(FileNotFoundError, match="holds no dataset to add to; drop --append"):
        prepare([str(second)], str(tmp_path / "nothing"), append=True)
    with pytest.raises(ValueError, match="--overwrite and --append contradict"):
        prepare([str(second)], str(out), append=True, overwrite=True)
    with pytest.raises(FileExistsError, match="--overwrite to replace it or --append to add to it"):
        prepare([str(second)], str(out))


def test_failed_append_leaves_the_dataset_untouched(tmp_path):
    first = write_corpus(tmp_path / "in", "first", 5)
    (tmp_path / "in" / "broken.jsonl").write_text('{"text": "fine"}\n{oops\n')
    out = tmp_path / "out"
    prepare([str(first)], str(out), num_workers=1)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="broken.jsonl line 2 is not valid JSON"):
        prepare([str(tmp_path / "in" / "broken.jsonl")], str(out), append=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert not list(tmp_path.glob(".out*"))
