"""A dataset's identity: the fingerprint `prepare` records, the checks every reader makes against it, `lit-llm
data verify`; and splits too small for one batch, refused before training instead of a run that does nothing."""

import hashlib
import json
import logging
import shutil
from types import SimpleNamespace

import pytest

from lit_llm.commands.data_info import data_info
from lit_llm.commands.data_verify import data_verify
from lit_llm.commands.evaluate import evaluate
from lit_llm.data.identity import CorruptShardError, add_identity, check_dataset
from lit_llm.data.prepare import prepare
from lit_llm.model.tokenizer import byte_tokenizer
from lit_llm.train.datamodule import TokenDataModule
from tests.conftest import SHAKESPEARE
from tests.forked_cli import Command, run_commands
from tests.test_bad_inputs import EXPERIMENT, TINY
from tests.test_data_append import write_corpus
from tests.test_export import FAMILIES, random_model, save_checkpoint, tiny_config

IDENTITY = ("tokenizer_sha256", "shard_files", "fingerprint")
SWAPPED = r"data/tokenizer.json is not the tokenizer the dataset was prepared with \(sha256 \w{12}, metadata.json says"


@pytest.fixture
def data(byte_dataset, tmp_path):
    """A copy of the byte-level dataset, for a test to damage."""
    return shutil.copytree(byte_dataset, tmp_path / "data")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "byte.ckpt"
    return save_checkpoint(random_model(tiny_config(FAMILIES["llama"], vocab_size=320)), byte_tokenizer(), path)


@pytest.fixture(scope="module")
def small_val(tmp_path_factory):
    """3,000 bytes, 3% of them validation: 2 val sequences of 33 tokens, 88 training ones."""
    corpus = tmp_path_factory.mktemp("small-val") / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:3000])
    prepare([str(corpus)], str(corpus.parent / "data"), val_fraction=0.03, num_workers=1)
    return corpus.parent / "data"


def metadata_of(folder):
    return json.loads((folder / "metadata.json").read_text())


def edit_metadata(folder, change) -> None:
    metadata = metadata_of(folder)
    change(metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def recomputed(folder) -> dict:
    """The identity computed afresh from the files, as `prepare` computes it."""
    bare = {key: value for key, value in metadata_of(folder).items() if key not in IDENTITY}
    return add_identity(folder, bare)


def flip_one_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last token id: the size stays, only the checksum tells
    path.write_bytes(bytes(data))


def test_fingerprint_covers_every_shard_and_the_tokenizer(data):
    metadata = metadata_of(data)
    for split in ("train", "val"):
        (entry,) = metadata["shard_files"][split]
        shard = (data / split / entry["name"]).read_bytes()
        assert entry == {"name": "chunk-0-0.bin", "bytes": len(shard), "sha256": hashlib.sha256(shard).hexdigest()}
    assert metadata["tokenizer_sha256"] == hashlib.sha256((data / "tokenizer.json").read_bytes()).hexdigest()
    assert recomputed(data)["fingerprint"] == metadata["fingerprint"]
    flip_one_byte(data / "val" / "chunk-0-0.bin")
    assert recomputed(data)["fingerprint"] != metadata["fingerprint"]


def test_a_swapped_tokenizer_is_refused_by_training_info_and_evaluate(data, shakespeare_slice, checkpoint, tmp_path):
    bpe = prepare([str(shakespeare_slice)], str(tmp_path / "bpe"), tokenizer="bpe", vocab_size=300, num_workers=1)
    assert bpe["splits"]["train"]["tokens"] > 0
    shutil.copy(tmp_path / "bpe" / "tokenizer.json", data / "tokenizer.json")
    with pytest.raises(ValueError, match=SWAPPED):
        TokenDataModule(str(data), batch_size=2, seq_len=16)
    with pytest.raises(ValueError, match=SWAPPED):
        data_info(str(data), samples=0)
    with pytest.raises(ValueError, match=SWAPPED):
        evaluate(str(checkpoint), [str(data)])


def test_an_edited_vocab_size_is_refused(data):
    edit_metadata(data, lambda metadata: metadata.update(vocab_size=300))
    with pytest.raises(ValueError, match="data/metadata.json says vocab_size 300, its tokenizer.json holds 257 tokens"):
        TokenDataModule(str(data), batch_size=2, seq_len=16)


def test_a_truncated_val_shard_makes_evaluate_refuse_instead_of_scoring_less(data, checkpoint):
    shard = data / "val" / "chunk-0-0.bin"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    truncated = rf"shard {shard} holds {size // 2:,} bytes, metadata.json says {size:,}: it is truncated or corrupt"
    with pytest.raises(CorruptShardError, match=truncated):
        evaluate(str(checkpoint), [str(data)])
    edit_metadata(data, lambda metadata: [metadata.pop(key) for key in IDENTITY])  # prepared before fingerprints
    with pytest.raises(CorruptShardError, match=rf"shard {shard} holds {size // 2:,} bytes, its index.json says"):
        evaluate(str(checkpoint), [str(data)])


def test_verify_passes_then_names_the_shard_with_a_flipped_byte(data, capsys):
    metadata = metadata_of(data)
    result = data_verify(str(data))
    assert result["fingerprint"] == metadata["fingerprint"] and result["train"]["shards"] == 1
    assert f"train  1 shard(s), {metadata['shard_files']['train'][0]['bytes']:,} bytes: OK" in capsys.readouterr().out
    flip_one_byte(data / "train" / "chunk-0-0.bin")
    check_dataset(data)  # same size: the cheap check cannot tell
    with pytest.raises(CorruptShardError, match=rf"shard {data}/train/chunk-0-0.bin does not match its checksum"):
        data_verify(str(data))
    with pytest.raises(ValueError, match="s3://bucket/data is remote .* verify the local copy"):
        data_verify("s3://bucket/data")


def test_append_keeps_the_old_checksums_and_a_valid_fingerprint(tmp_path):
    first, second = write_corpus(tmp_path / "in", "first", 20), write_corpus(tmp_path / "in", "second", 10)
    third = write_corpus(tmp_path / "in", "third", 5)
    out = tmp_path / "out"
    before = prepare([str(first)], str(out), num_workers=1)
    after = prepare([str(second)], str(out), append=True, num_workers=1)
    for split in ("train", "val"):
        assert after["shard_files"][split][0] == before["shard_files"][split][0]
        assert [e["name"] for e in after["shard_files"][split]] == ["chunk-0-0.bin", "chunk-0-1.bin"]
    assert after["fingerprint"] != before["fingerprint"] and after == metadata_of(out) == recomputed(out)
    check_dataset(out, deep=True)
    (out / "val" / "chunk-0-1.bin").unlink()
    with pytest.raises(CorruptShardError, match="val/chunk-0-1.bin is missing"):  # never appended to a damaged one
        prepare([str(third)], str(out), append=True)


def test_a_dataset_prepared_before_fingerprints_loads_with_a_warning(data, caplog):
    edit_metadata(data, lambda metadata: [metadata.pop(key) for key in IDENTITY])
    with caplog.at_level(logging.WARNING):
        loaded = TokenDataModule(str(data), batch_size=2, seq_len=16)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{data} has no fingerprint" in warning and "prepare it again" in warning
    assert loaded.identities == [{"path": str(data), "tokenizer_sha256": None, "fingerprint": None}]
    assert next(iter(loaded.train_dataloader())).shape == (2, 17)
    with pytest.raises(ValueError, match="has no fingerprint .* nothing to verify against; prepare it again"):
        data_verify(str(data))


def test_identities_name_each_source(data):
    loaded = TokenDataModule(str(data), batch_size=2, seq_len=16)
    metadata = metadata_of(data)
    assert loaded.identities == [
        {"path": str(data), "tokenizer_sha256": metadata["tokenizer_sha256"], "fingerprint": metadata["fingerprint"]}
    ]


def test_a_val_split_smaller_than_one_batch_per_device_is_refused(small_val):
    one_device = TokenDataModule(str(small_val), batch_size=2, seq_len=32, num_workers=0)
    assert len(next(iter(one_device.val_dataloader()))) == 2  # its 2 sequences fill one batch of 2
    two_devices = TokenDataModule(str(small_val), batch_size=2, seq_len=32, num_workers=0)
    two_devices.trainer = SimpleNamespace(world_size=2)
    expected = (
        rf"{small_val}/val holds 2 sequences of 33 tokens, fewer than one batch per device needs: data.batch_size 2 "
        r"× 2 device\(s\) = 4; prepare more data \(or a larger --val_fraction\), or lower data.batch_size or"
    )
    with pytest.raises(ValueError, match=expected):
        two_devices.val_dataloader()


def test_a_train_split_smaller_than_one_batch_is_refused(small_val):
    data = TokenDataModule(str(small_val), batch_size=4, seq_len=1000, num_workers=0)
    with pytest.raises(ValueError, match=rf"{small_val}/train holds 2 sequences of 1001 tokens, .* = 4; prepare more"):
        data.train_dataloader()


@pytest.fixture(scope="module")
def cli(byte_dataset, small_val, tmp_path_factory):
    """`lit-llm data verify` on a sound and on a damaged copy, and `lit-llm fit` on a val split of 2 sequences
    at batch size 4: real processes, forked from one interpreter that imports the stack once."""
    root = tmp_path_factory.mktemp("cli")
    sound, damaged = shutil.copytree(byte_dataset, root / "sound"), shutil.copytree(byte_dataset, root / "damaged")
    flip_one_byte(damaged / "val" / "chunk-0-0.bin")
    fit = ["fit", "--config", EXPERIMENT, *TINY, "--trainer.max_steps", "2", "--data.data_dir", str(small_val)]
    commands = [
        ["data", "verify", str(sound)],
        ["data", "verify", str(damaged)],
        [*fit, "--trainer.default_root_dir", str(root / "run")],
    ]
    results = run_commands([Command(args, cwd=root) for args in commands])
    return dict(zip(("sound", "damaged", "fit"), results)), root


def test_data_verify_from_the_command_line(cli):
    results, root = cli
    assert results["sound"].returncode == 0, results["sound"].stderr
    assert [line.split(":")[-1] for line in results["sound"].stdout.splitlines()[:3]] == [" OK"] * 3
    damaged = results["damaged"]
    assert damaged.returncode != 0 and damaged.stderr.count("\n") == 1
    assert damaged.stderr.startswith(f"lit-llm data verify: error: shard {root}/damaged/val/chunk-0-0.bin does not")


def test_fit_on_a_val_split_smaller_than_one_batch_stops_before_training(cli):
    results, root = cli
    fit = results["fit"]
    lines = [line for line in fit.stderr.splitlines() if line.strip()]
    assert fit.returncode != 0 and len(lines) == 1, fit.stderr
    assert "val holds 2 sequences of 33 tokens" in lines[0] and "data.batch_size 4 × 1 device(s) = 4" in lines[0]
    assert not list((root / "run").rglob("*.ckpt"))
