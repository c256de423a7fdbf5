"""A prepared dataset's identity, and the checks that its files are the ones `lit-llm prepare` wrote.

`prepare` records in metadata.json the sha256 of tokenizer.json (``tokenizer_sha256``), each shard's name,
size and sha256 per split in index order (``shard_files``), and one ``fingerprint`` over all of them, which
changes whenever a shard or the tokenizer does. Every reader calls `check_dataset`: a swapped tokenizer or
a truncated shard would otherwise train or evaluate silently on the wrong ids.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tqdm import tqdm

from lit_llm.data.format import INDEX, METADATA, SPLITS, TOKENIZER, read_index, read_metadata, read_tokenizer
from lit_llm.data.storage import is_remote

log = logging.getLogger(__name__)
REPAIR = "restore it or prepare the dataset again"


class CorruptShardError(ValueError):
    """A shard that is missing, of the wrong size or checksum, or holds ids outside the vocabulary."""


def sha256_files(paths: list[Path], desc: str) -> list[str]:
    """Each file's sha256, with one progress bar over all their bytes."""
    digests = []
    total = sum(path.stat().st_size for path in paths)
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, mininterval=1.0, disable=None) as bar:
        for path in paths:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
                    bar.update(len(block))
            digests.append(digest.hexdigest())
    return digests


def tokenizer_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / TOKENIZER).read_bytes()).hexdigest()


def fingerprint(tokenizer_hash: str, shard_files: dict) -> str:
    """One sha256 over the tokenizer's and every shard's name, size and sha256, in split and index order."""
    lines = [tokenizer_hash]
    lines += [f"{split}/{e['name']} {e['bytes']} {e['sha256']}" for split in SPLITS for e in shard_files[split]]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def add_identity(folder: Path, metadata: dict) -> dict:
    """``metadata`` with the identity of the dataset written in ``folder``. Shards that ``metadata`` lists
    already (an append's earlier ones) keep their entries: they are never rewritten, and a remote dataset's
    are not in ``folder``; only the new ones are read."""
    known = {(split, e["name"]): e for split, entries in metadata.get("shard_files", {}).items() for e in entries}
    listed = [(split, chunk["filename"]) for split in SPLITS for chunk in read_index(folder / split)["chunks"]]
    new = [key for key in listed if key not in known]
    paths = [folder / split / name for split, name in new]
    for key, path, digest in zip(new, paths, sha256_files(paths, "checksumming shards")):
        known[key] = {"name": path.name, "bytes": path.stat().st_size, "sha256": digest}
    shard_files = {split: [known[key] for key in listed if key[0] == split] for split in SPLITS}
    tokenizer_hash = tokenizer_sha256(folder)
    return {
        **metadata,
        "tokenizer_sha256": tokenizer_hash,
        "shard_files": shard_files,
        "fingerprint": fingerprint(tokenizer_hash, shard_files),
    }


def check_dataset(view: Path, deep: bool = False, splits: tuple[str, ...] = SPLITS, source: str | None = None) -> dict:
    """Refuse, in one line, a dataset whose files are not those metadata.json records; return its identity:
    ``tokenizer_sha256`` and ``fingerprint`` as metadata.json records them (None: prepared before fingerprints).

    Always (cheap): tokenizer.json's sha256, metadata's vocab_size against the tokenizer's, and each shard of
    ``splits`` listed by its index.json and present with its recorded size. A dataset prepared before
    fingerprints gets the vocabulary check and a warning that the rest cannot be checked.

    Args:
        view: the dataset's local folder (see `storage.local_view`).
        deep: also compare each shard's sha256 (reads every byte).
        splits: the splits whose shards are checked.
        source: the dataset as the user named it, for the messages (default: ``view``); the shards of a
            remote one are not local, so only its description is checked.
    """
    source = (source or str(view)).rstrip("/")
    metadata = read_metadata(view)
    identity = {key: metadata.get(key) for key in ("tokenizer_sha256", "fingerprint")}
    check_tokenizer(view, metadata, source)
    if "fingerprint" not in metadata:
        log.warning(
            "%s has no fingerprint (prepared before lit-llm recorded one): its shards and tokenizer cannot be "
            "checked; prepare it again to add one",
            source,
        )
        return identity
    for split in splits:
        check_listed(view / split, metadata["shard_files"][split], f"{source}/{split}")
    if not is_remote(source):
        check_shards(view, metadata["shard_files"], splits, source, deep)
    return identity


def check_tokenizer(view: Path, metadata: dict, source: str) -> None:
    """tokenizer.json is the recorded one (when metadata.json records it), and of metadata's vocabulary size."""
    recorded = metadata.get("tokenizer_sha256")
    actual = tokenizer_sha256(view) if recorded else None
    if actual != recorded:
        raise ValueError(
            f"{source}/{TOKENIZER} is not the tokenizer the dataset was prepared with (sha256 {actual[:12]}, "
            f"{METADATA} says {recorded[:12]}); {REPAIR}"
        )
    vocab_size = read_tokenizer(view).vocab_size
    if vocab_size != metadata["vocab_size"]:
        raise ValueError(
            f"{source}/{METADATA} says vocab_size {metadata['vocab_size']}, its {TOKENIZER} holds {vocab_size} "
            f"tokens: one of them was changed; {REPAIR}"
        )


def check_listed(split_dir: Path, entries: list[dict], where: str) -> None:
    """The split's index.json lists the shards metadata.json records: both come from the same preparation."""
    listed, recorded = [c["filename"] for c in read_index(split_dir)["chunks"]], [e["name"] for e in entries]
    if listed != recorded:
        first = next(i for i, (a, b) in enumerate(zip([*listed, None], [*recorded, None])) if a != b)
        raise ValueError(
            f"{where}/{INDEX} lists {listed[first] if first < len(listed) else 'nothing'} as shard {first + 1}, "
            f"{METADATA} {recorded[first] if first < len(recorded) else 'nothing'}: they come from different "
            f"preparations; restore them or prepare the dataset again"
        )


def check_shards(view: Path, shard_files: dict, splits: tuple[str, ...], source: str, deep: bool) -> None:
    shards = [
        (view / split / e["name"], f"{source}/{split}/{e['name']}", e) for split in splits for e in shard_files[split]
    ]
    for path, name, entry in shards:
        check_shard_size(path, name, entry["bytes"], METADATA)
    if not deep:
        return
    for (_, name, entry), digest in zip(shards, sha256_files([path for path, _, _ in shards], f"verifying {source}")):
        if digest != entry["sha256"]:
            raise CorruptShardError(
                f"shard {name} does not match its checksum (sha256 {digest[:12]}, {METADATA} says "
                f"{entry['sha256'][:12]}): it is corrupt; {REPAIR}"
            )


def check_shard_size(path: Path, name: str, expected: int, recorded_in: str) -> None:
    """A local shard exists with the size ``recorded_in`` (index.json or metadata.json) gives it."""
    size = path.stat().st_size if path.is_file() else None
    if size is None:
        raise CorruptShardError(f"shard {name} is missing ({recorded_in} lists it); {REPAIR}")
    if size != expected:
        raise CorruptShardError(
            f"shard {name} holds {size:,} bytes, {recorded_in} says {expected:,}: it is truncated or corrupt; {REPAIR}"
        )
