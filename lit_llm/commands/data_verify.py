"""`lit-llm data verify`: read every shard of a prepared dataset and compare it with what metadata.json records."""

from __future__ import annotations

from pathlib import Path

from lit_llm.data.format import SPLITS, read_metadata
from lit_llm.data.identity import check_dataset
from lit_llm.data.storage import is_remote


def data_verify(data_dir: str) -> dict:
    """Check every shard's size and sha256 and the tokenizer's sha256 against metadata.json; one line per split.

    Args:
        data_dir: a local folder written by `lit-llm prepare`.

    Returns:
        ``fingerprint``, ``tokenizer_sha256`` and, per split, its ``shards`` and their ``bytes``; any mismatch
        raises instead, naming the file.
    """
    if is_remote(data_dir):
        raise ValueError(
            f"{data_dir} is remote and `data verify` reads every byte of every shard; download it "
            "(e.g. `aws s3 sync`) and verify the local copy"
        )
    view = Path(data_dir).expanduser()
    metadata = read_metadata(view)
    if "fingerprint" not in metadata:
        raise ValueError(
            f"{data_dir} has no fingerprint (prepared before lit-llm recorded one), so there is nothing to verify "
            "against; prepare it again to add one"
        )
    check_dataset(view, deep=True, source=data_dir)
    result = {key: metadata[key] for key in ("fingerprint", "tokenizer_sha256")}
    for split in SPLITS:
        shards = metadata["shard_files"][split]
        result[split] = {"shards": len(shards), "bytes": sum(entry["bytes"] for entry in shards)}
        print(f"{split:<6} {len(shards)} shard(s), {result[split]['bytes']:,} bytes: OK")
    print(f"tokenizer sha256 {metadata['tokenizer_sha256']}: OK\nfingerprint {metadata['fingerprint']}")
    return result


CLI = {
    "name": "data verify",
    "summary": "read every shard of a prepared dataset and check it against its recorded checksums",
    "function": "data_verify",
    "arguments": "positional:data_dir",
}
