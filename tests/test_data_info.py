"""`lit-llm data info`: what a prepared dataset holds and what the model will read."""

import json

import pytest

from lit_llm.commands.data_info import data_info


def test_info_reports_counts_shards_and_decoded_samples(byte_dataset, shakespeare_slice, capsys):
    info = data_info(str(byte_dataset), samples=2, sample_tokens=40)
    metadata = json.loads((byte_dataset / "metadata.json").read_text())
    assert info["tokenizer"] == {"kind": "byte", "vocab_size": 257, "eot_id": 256}
    for split in ("train", "val"):
        assert info["splits"][split]["tokens"] == metadata["splits"][split]["tokens"]
        assert info["splits"][split]["shards"] == 1
        assert info["splits"][split]["shard_bytes"] >= 4 * metadata["splits"][split]["tokens"]
    text = shakespeare_slice.read_text()
    assert len(info["samples"]) == 2 and all(len(sample) == 40 and sample in text for sample in info["samples"])
    out = capsys.readouterr().out
    assert "byte: 257 tokens, end of text = 256" in out and info["samples"][1] in out
    assert info["identity"] == {key: metadata[key] for key in ("tokenizer_sha256", "fingerprint")}
    assert f"sha256 {metadata['tokenizer_sha256']}" in out and f"fingerprint {metadata['fingerprint']}" in out
    assert f"{metadata['splits']['train']['tokens']:,}" in out


def test_info_on_a_folder_that_is_no_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a prepared dataset"):
        data_info(str(tmp_path))
