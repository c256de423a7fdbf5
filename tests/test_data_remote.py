"""Datasets in object storage: prepare writes to s3://, training and `data info` read from it through
LitData's cache. The S3 server is moto's, started here on localhost, so no network is needed."""

import json
import socket

import boto3
import pytest
import torch

from lit_llm.commands.data_info import data_info
from lit_llm.data.prepare import prepare
from lit_llm.train.datamodule import DataSource, TokenDataModule

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3():
    """A fresh bucket on a local S3 server; clients find it through the standard AWS_* variables."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }.items():
            env.setenv(key, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="lit-llm")
        yield client
    server.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remote-corpus")
    with (folder / "a.jsonl").open("w") as f:
        f.writelines(
            json.dumps({"text": f"record {i}: " + "the quick brown fox " * (i % 9 + 1)}) + "\n" for i in range(60)
        )
    (folder / "b.txt").write_text("an extra document, appended later " * 30)
    return folder


def keys(client, prefix):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="lit-llm", Prefix=prefix).get("Contents", []))


def first_batches(data: TokenDataModule, n: int = 3) -> list[torch.Tensor]:
    data.setup("fit")
    return [batch for _, batch in zip(range(n), data.train_dataloader())]


def test_round_trip_through_s3(s3, corpus, tmp_path):
    local = prepare([str(corpus / "a.jsonl")], str(tmp_path / "local"), num_workers=1)
    remote = prepare([str(corpus / "a.jsonl")], "s3://lit-llm/ds", num_workers=1)
    assert remote["splits"] == local["splits"]
    assert remote["fingerprint"] == local["fingerprint"]  # computed on the staging folder before the upload
    assert keys(s3, "ds/") == [
        f"ds/{name}"
        for name in (
            "metadata.json",
            "tokenizer.json",
            "train/chunk-0-0.bin",
            "train/index.json",
            "val/chunk-0-0.bin",
            "val/index.json",
        )
    ]
    chunk = s3.get_object(Bucket="lit-llm", Key="ds/train/chunk-0-0.bin")["Body"].read()
    assert chunk == (tmp_path / "local" / "train" / "chunk-0-0.bin").read_bytes()

    info = data_info("s3://lit-llm/ds", samples=2, sample_tokens=32, cache_dir=str(tmp_path / "cache"))
    assert info["splits"]["train"]["tokens"] == local["splits"]["train"]["tokens"] and len(info["samples"]) == 2

    options = {"batch_size": 4, "seq_len": 16, "num_workers": 1, "cache_dir": str(tmp_path / "cache")}
    streamed = first_batches(TokenDataModule("s3://lit-llm/ds", **options))
    local_batches = first_batches(TokenDataModule(str(tmp_path / "local"), **options))
    assert len(streamed) == len(local_batches) == 3
    assert all(torch.equal(a, b) for a, b in zip(streamed, local_batches))
    mixed = TokenDataModule(
        sources=[DataSource(str(tmp_path / "local")), DataSource("s3://lit-llm/ds", name="remote")], **options
    )
    assert len(first_batches(mixed)) == 3 and mixed.val_source_names == ["local", "remote"]


def test_append_and_overwrite_in_s3(s3, corpus, tmp_path):
    before = prepare([str(corpus / "a.jsonl")], "s3://lit-llm/grow", num_workers=1)
    with pytest.raises(FileExistsError, match="s3://lit-llm/grow already exists .* --append to add to it"):
        prepare([str(corpus / "b.txt")], "s3://lit-llm/grow")
    after = prepare([str(corpus / "b.txt")], "s3://lit-llm/grow", append=True, num_workers=1)
    assert after["splits"]["train"]["tokens"] > before["splits"]["train"]["tokens"]
    assert "grow/train/chunk-0-1.bin" in keys(s3, "grow/")
    assert after["shard_files"]["train"][0] == before["shard_files"]["train"][0]  # the remote shard was not here
    assert after["shard_files"]["train"][1]["name"] == "chunk-0-1.bin" and after["fingerprint"] != before["fingerprint"]
    data = TokenDataModule(
        "s3://lit-llm/grow", batch_size=2, seq_len=16, num_workers=0, cache_dir=str(tmp_path / "cache")
    )
    data.setup("fit")
    assert len(data.train_dataset) > before["splits"]["train"]["tokens"] // 17  # the cache follows the append

    s3.put_object(Bucket="lit-llm", Key="grow-sibling/keep.txt", Body=b"not part of the dataset")
    replaced = prepare([str(corpus / "b.txt")], "s3://lit-llm/grow", overwrite=True, num_workers=1)
    assert keys(s3, "grow-sibling/") == ["grow-sibling/keep.txt"]
    assert replaced["splits"]["train"]["documents"] == 1
    assert "grow/train/chunk-0-1.bin" not in keys(s3, "grow/")


def test_missing_remote_dataset_is_a_clear_error(s3, tmp_path):
    with pytest.raises(FileNotFoundError, match="s3://lit-llm/nothing is not a prepared dataset"):
        TokenDataModule("s3://lit-llm/nothing", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="ftp://x/y: LitData cannot write or list this kind of storage"):
        prepare(["whatever"], "ftp://x/y")


def test_overwrite_refuses_a_prefix_that_is_not_one_dataset(s3, corpus):
    """The reported case: --overwrite of a prefix one level too high deleted the datasets under it."""
    for name in ("a", "b"):
        prepare([str(corpus / "b.txt")], f"s3://lit-llm/team/{name}", num_workers=1)
    s3.put_object(Bucket="lit-llm", Key="team/b/notes.txt", Body=b"not part of the dataset")
    before = keys(s3, "")
    for url, reason in (
        ("s3://lit-llm/team", "s3://lit-llm/team holds no metadata.json"),
        ("s3://lit-llm", "s3://lit-llm holds no metadata.json"),
        ("s3://lit-llm/team/b/", "s3://lit-llm/team/b holds notes.txt besides what lit-llm writes"),
    ):
        with pytest.raises(FileExistsError, match=reason):
            prepare([str(corpus / "b.txt")], url, overwrite=True, num_workers=1)
    assert keys(s3, "") == before
    assert s3.get_object(Bucket="lit-llm", Key="team/b/notes.txt")["Body"].read() == b"not part of the dataset"
