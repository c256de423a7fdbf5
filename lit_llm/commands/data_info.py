"""`lit-llm data info`: what a prepared dataset holds, and a few decoded samples of what the model will read."""

from __future__ import annotations

from lit_llm.data.format import SPLITS, read_index, read_metadata, read_tokenizer
from lit_llm.data.identity import check_dataset
from lit_llm.data.shards import open_split
from lit_llm.data.storage import local_view


def data_info(
    data_dir: str,
    samples: int = 3,
    sample_tokens: int = 128,
    storage_options: dict | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Print a prepared dataset's vocabulary, token counts, shards and a few decoded training samples.

    Args:
        data_dir: a folder written by `lit-llm prepare`, or its ``s3://``/``gs://``/``r2://`` URL.
        samples: training sequences to decode, spread evenly over the split (0: none).
        sample_tokens: tokens per decoded sample.
        storage_options: options for the object storage client (for S3: boto3's, e.g. ``endpoint_url``).
        cache_dir: where a remote dataset is cached locally (default: ``$LIT_LLM_CACHE`` or ~/.cache/lit-llm).

    Returns:
        The printed facts: ``tokenizer`` (kind, vocab_size, eot_id), ``identity`` (fingerprint and tokenizer
        sha256, see `identity.check_dataset`), ``splits`` (per split: documents,
        tokens, text bytes, shards, shard bytes), ``skipped`` (binary and empty files, empty documents,
        replaced bytes), ``curation`` (documents in, removed by each step, kept; None when not curated) and
        ``samples`` (the decoded texts).
    """
    view = local_view(data_dir, storage_options, cache_dir)
    identity = check_dataset(view, source=data_dir)
    metadata = read_metadata(view)
    tokenizer = read_tokenizer(view)
    info = {
        "path": data_dir,
        "tokenizer": {"kind": metadata["tokenizer"], "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id},
        "identity": identity,
        "splits": {split: split_info(metadata["splits"][split], read_index(view / split)) for split in SPLITS},
        "skipped": {
            "binary_files": len(metadata["binary_skipped"]),
            "empty_files": len(metadata["empty_skipped"]),
            "empty_documents": metadata.get("empty_documents", 0),
            "replaced_bytes": metadata["replaced_bytes"],
        },
        "curation": metadata.get("curation"),
    }
    train = open_split(data_dir, view, "train", sample_tokens, storage_options=storage_options) if samples else None
    info["samples"] = (
        [tokenizer.decode(train[i * len(train) // samples].tolist()) for i in range(samples)] if train else []
    )
    print_info(info)
    return info


def split_info(split: dict, index: dict) -> dict:
    return {
        "documents": split["documents"],
        "tokens": split["tokens"],
        "bytes": split.get("bytes"),
        "shards": len(index["chunks"]),
        "shard_bytes": sum(chunk["chunk_bytes"] for chunk in index["chunks"]),
    }


def print_info(info: dict) -> None:
    tok = info["tokenizer"]
    print(f"dataset    {info['path']}")
    identity = info["identity"]
    sha = f", sha256 {identity['tokenizer_sha256']}" if identity["tokenizer_sha256"] else ""
    print(f"tokenizer  {tok['kind']}: {tok['vocab_size']:,} tokens, end of text = {tok['eot_id']}{sha}")
    print(f"fingerprint {identity['fingerprint'] or 'none: prepared before fingerprints (prepare it again for one)'}")
    print(
        f"{'split':<10} {'documents':>10} {'tokens':>14} {'text MB':>9} {'tokens/byte':>11} {'shards':>7} "
        f"{'shard MB':>9}"
    )
    for name, split in info["splits"].items():
        text_mb = f"{split['bytes'] / 1e6:.2f}" if split["bytes"] else "?"
        ratio = f"{split['tokens'] / split['bytes']:.3f}" if split["bytes"] else "?"
        print(
            f"{name:<10} {split['documents']:>10,} {split['tokens']:>14,} {text_mb:>9} {ratio:>11} "
            f"{split['shards']:>7} {split['shard_bytes'] / 1e6:>9.2f}"
        )
    skipped = info["skipped"]
    print(
        f"skipped    {skipped['binary_files']} binary file(s), {skipped['empty_files']} empty file(s), "
        f"{skipped['empty_documents']} empty document(s); {skipped['replaced_bytes']} invalid UTF-8 bytes replaced"
    )
    if info["curation"]:
        print(curation_line(info["curation"]))
    for i, text in enumerate(info["samples"], 1):
        print(f"\n--- training sample {i} of {len(info['samples'])} ({len(text)} characters) ---\n{text}")


def curation_line(curation: dict) -> str:
    removed = ", ".join(f"{step} {count:,}" for step, count in curation["removed"].items())
    kept = curation["documents_out"]
    return f"curation   {curation['documents_in']:,} documents in; removed by {removed}; {kept:,} kept"


CLI = {
    "name": "data info",
    "summary": "show a prepared dataset: vocabulary, token counts, shards, fingerprint, decoded samples",
    "function": "data_info",
    "arguments": "positional:data_dir",
}
