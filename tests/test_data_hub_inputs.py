"""`prepare --inputs URL`: Hugging Face Hub (hf://) and other fsspec URLs, read through the same code path as a
remote corpus (listed, then streamed by ranges), checked offline with local files behind the URLs."""

import gzip
import json
import random

import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from lit_llm.data.format import read_index
from lit_llm.data.prepare import prepare
from lit_llm.data.readers import open_raw

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet_dataset(root, n_files=3, rows=40, row_group_size=16):
    """A Hub-like dataset folder: datasets/org/corpus/data/train-0000N.parquet, several row groups each."""
    folder = root / "datasets" / "org" / "corpus" / "data"
    folder.mkdir(parents=True)
    for f in range(n_files):
        texts = [f"file {f} document {i}: " + "the quick brown fox " * (5 + i % 7) for i in range(rows)]
        table = pa.table({"text": texts, "id": list(range(rows))})
        pq.write_table(table, folder / f"train-{f:05d}.parquet", row_group_size=row_group_size)
    return folder


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """hf:// served from a local folder: the Hub's fsspec filesystem replaced by a directory-backed one, so the
    hf:// branch (listing, globbing, range reads of Parquet) runs without a network."""
    root = tmp_path / "hub"
    root.mkdir()

    class LocalHub(DirFileSystem):
        protocol = "hf"

        def __init__(self, *args, **kwargs):
            super().__init__(path=str(root), fs=LocalFileSystem())

    fsspec.register_implementation("hf", LocalHub, clobber=True)
    yield root
    from huggingface_hub import HfFileSystem

    fsspec.register_implementation("hf", HfFileSystem, clobber=True)  # the class: a name would not replace ours
    LocalHub.clear_instance_cache()


def shard_bytes(dataset):
    return {
        split: [(dataset / split / c["filename"]).read_bytes() for c in read_index(dataset / split)["chunks"]]
        for split in ("train", "val")
    }


def test_hub_glob_streams_the_same_dataset_as_local_files(tmp_path, local_hub):
    folder = write_parquet_dataset(local_hub)
    hub = prepare(
        ["hf://datasets/org/corpus/data/*.parquet"], str(tmp_path / "hub-out"), text_field="text", num_workers=2
    )
    prepare([str(folder)], str(tmp_path / "local-out"), text_field="text", num_workers=1)
    assert hub["splits"]["train"]["documents"] + hub["splits"]["val"]["documents"] == 120
    assert hub["splits"]["train"]["sources"][0] == "hf://datasets/org/corpus/data/train-00000.parquet"
    assert shard_bytes(tmp_path / "hub-out") == shard_bytes(tmp_path / "local-out")


def test_file_urls_read_compressed_json_lines_and_folders(tmp_path):
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "a.jsonl.gz", "wt") as f:
        for i in range(30):
            f.write(json.dumps({"content": f"record {i} " * 10}) + "\n")
    (tmp_path / "in" / "b.txt").write_text("a whole text file is one document\n" * 20)
    meta = prepare([f"file://{tmp_path}/in"], str(tmp_path / "out"), text_field="content", num_workers=1)
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 31
    local = prepare([str(tmp_path / "in")], str(tmp_path / "local"), text_field="content", num_workers=1)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "local")
    assert meta["fingerprint"] == local["fingerprint"]


def test_remote_parquet_is_read_by_ranges_not_copied(tmp_path, local_hub, monkeypatch):
    """Reading one row group of a remote Parquet file fetches its footer and that group, not the whole file."""
    folder = local_hub / "datasets" / "org" / "corpus" / "data"
    folder.mkdir(parents=True)
    texts = [random.Random(i).randbytes(100).hex() for i in range(8000)]  # incompressible: 1.6 MB of text
    pq.write_table(pa.table({"text": texts}), folder / "train-00000.parquet", row_group_size=1000)
    size = (folder / "train-00000.parquet").stat().st_size
    read = []
    original = LocalFileSystem._open

    def counting_open(self, path, mode="rb", **kwargs):
        f = original(self, path, mode, **kwargs)
        real_read = f.read
        f.read = lambda n=-1: read.append(n) or real_read(n)
        return f

    monkeypatch.setattr(LocalFileSystem, "_open", counting_open)
    from lit_llm.data.readers import parquet_column

    column = parquet_column("hf://datasets/org/corpus/data/train-00000.parquet", "text", 3)
    assert len(column) == 1000
    assert -1 not in read and sum(read) < size / 3  # the footer and one of eight row groups
    with open_raw("hf://datasets/org/corpus/data/train-00000.parquet") as f:
        assert f.read(4) == b"PAR1"


@pytest.mark.parametrize(
    "url, message",
    [
        ("hf://datasets/org/corpus/data/*.jsonl", "matches no file"),
        ("hf://datasets/org/missing", "does not exist"),
        ("nosuchprotocol://bucket/x.txt", "nosuchprotocol"),
    ],
)
def test_bad_urls_are_one_line_errors(tmp_path, local_hub, url, message):
    write_parquet_dataset(local_hub, n_files=1)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        prepare([url], str(tmp_path / "out"))


def test_hf_urls_go_to_huggingface_hubs_filesystem():
    """Outside the tests' local Hub, hf:// is huggingface_hub's HfFileSystem (resolved without a request)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from lit_llm.data.readers import url_filesystem

    fs, path = url_filesystem("hf://datasets/HuggingFaceFW/fineweb-edu/sample/10BT/*.parquet")
    assert isinstance(fs, huggingface_hub.HfFileSystem)
    assert path == "datasets/HuggingFaceFW/fineweb-edu/sample/10BT/*.parquet"
