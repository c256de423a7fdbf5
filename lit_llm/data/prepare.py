"""`lit-llm prepare`: raw text -> tokenizer + pre-tokenized LitData shards (train/val) + metadata.json.

The output folder is self-describing: ``tokenizer.json`` and ``metadata.json`` sit next to the
``train/`` and ``val/`` shard folders, so `fit` needs only the folder's path.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_llm.tokenizer import Tokenizer, byte_tokenizer, train_bpe

log = logging.getLogger(__name__)

METADATA = "metadata.json"
TOKENIZER = "tokenizer.json"
SPLITS = ("train", "val")
CHUNK_TOKENS = 1 << 21  # tokens per shard: 8 MiB of int32, big enough to stream well, small enough for tiny data
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """A file, or a character range of one (a single-file corpus is split by position)."""

    path: str
    start: int = 0
    end: int | None = None

    def read(self) -> str:
        return read_text(Path(self.path))[0][self.start : self.end]


def read_text(path: Path) -> tuple[str, int]:
    """The file's text and how many bytes were not valid UTF-8 (each replaced by U+FFFD)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def is_binary(path: Path) -> bool:
    with path.open("rb") as f:
        return b"\x00" in f.read(BINARY_SNIFF_BYTES)


def resolve_inputs(inputs: list[str]) -> list[Path]:
    """Files named directly, found under folders (recursively) or matched by globs, sorted and unique."""
    if not inputs:
        raise ValueError("no --inputs given; pass text files, folders or globs")
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"input {item} does not exist (no file, folder or glob match); check the path")
        if not found:
            raise FileNotFoundError(f"input folder {item} holds no files; point --inputs at text files")
        files.extend(found)
    return list(dict.fromkeys(p.resolve() for p in files))


def scan_documents(files: list[Path]) -> tuple[list[tuple[Path, int]], dict]:
    """Keep readable, non-empty text files with their character counts; count what was dropped."""
    kept, stats = [], {"binary_skipped": [], "empty_skipped": [], "replaced_bytes": 0}
    for path in files:
        if is_binary(path):
            log.warning("skipping binary file %s", path)
            stats["binary_skipped"].append(str(path))
            continue
        text, replaced = read_text(path)
        if not text.strip():
            stats["empty_skipped"].append(str(path))
            continue
        if replaced:
            log.warning("%s: %d bytes were not valid UTF-8 and were replaced with U+FFFD", path, replaced)
        stats["replaced_bytes"] += replaced
        kept.append((path, len(text)))
    if not kept:
        raise ValueError(f"no text found in {len(files)} input file(s) (all empty or binary); pass UTF-8 text files")
    return kept, stats


def split_documents(docs: list[tuple[Path, int]], val_fraction: float, seed: int) -> dict[str, list[Document]]:
    """Split by document with a fixed seed; a single document is split by position (first part trains)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction {val_fraction} must lie strictly between 0 and 1, e.g. 0.1")
    if len(docs) == 1:
        path, n_chars = docs[0]
        cut = int(n_chars * (1.0 - val_fraction))
        return {"train": [Document(str(path), 0, cut)], "val": [Document(str(path), cut, None)]}
    order = list(docs)
    random.Random(seed).shuffle(order)
    total, val, val_chars = sum(n for _, n in order), [], 0
    while order and (not val or val_chars < val_fraction * total) and len(order) > 1:
        path, n = order.pop()
        val.append(Document(str(path)))
        val_chars += n
    return {"train": [Document(str(p)) for p, _ in sorted(order)], "val": sorted(val, key=lambda d: d.path)}


def build_tokenizer(kind: str, train_docs: list[Document], vocab_size: int) -> Tokenizer:
    if kind == "byte":
        return byte_tokenizer()
    if kind == "bpe":
        log.info("training a byte-level BPE tokenizer with %d tokens on %d document(s)", vocab_size, len(train_docs))
        return train_bpe((doc.read() for doc in train_docs), vocab_size)
    if kind.endswith(".json") or Path(kind).exists():
        return Tokenizer.from_file(kind)
    raise ValueError(f"--tokenizer {kind!r} is not 'byte', 'bpe' or a tokenizer.json file; pick one of those")


class TokenizeDocument:
    """litdata.optimize worker function: one document -> one tensor of token ids ending in <|endoftext|>."""

    def __init__(self, tokenizer_json: str) -> None:
        self.tokenizer_json = tokenizer_json
        self._tokenizer: Tokenizer | None = None

    def __call__(self, doc: Document):
        if self._tokenizer is None:  # built lazily: each worker process makes its own
            self._tokenizer = Tokenizer.from_json(self.tokenizer_json)
        ids = self._tokenizer.encode(doc.read())
        ids.append(self._tokenizer.eot_id)
        yield torch.tensor(ids, dtype=torch.int32)


def write_shards(docs: list[Document], tokenizer: Tokenizer, output_dir: Path, num_workers: int) -> None:
    from litdata import TokensLoader, optimize

    optimize(
        fn=TokenizeDocument(tokenizer.to_json()),
        inputs=docs,
        output_dir=str(output_dir),
        chunk_size=CHUNK_TOKENS,
        item_loader=TokensLoader(),
        num_workers=max(1, min(num_workers, len(docs))),
        reorder_files=False,
        start_method="fork",
    )


def count_tokens(split_dir: Path) -> int:
    """Tokens in a split, read from LitData's index (one int32 each)."""
    index = json.loads((split_dir / "index.json").read_text())
    return sum(chunk["dim"] for chunk in index["chunks"])


def prepare(
    inputs: list[str],
    output_dir: str,
    tokenizer: str = "byte",
    vocab_size: int = 8192,
    val_fraction: float = 0.1,
    seed: int = 42,
    num_workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Tokenize ``inputs`` into LitData shards under ``output_dir``/{train,val}; returns the metadata.

    Everything is written to a temporary folder beside ``output_dir`` and renamed into place at the
    end, so an interrupted run never leaves a half-written dataset behind or destroys an old one.
    """
    start_time = time.perf_counter()
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} already exists and is not empty; choose another --output_dir or pass --overwrite")
    files = resolve_inputs(inputs)
    docs, stats = scan_documents(files)
    splits = split_documents(docs, val_fraction, seed)
    tok = build_tokenizer(tokenizer, splits["train"], vocab_size)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in SPLITS:
            log.info("tokenizing %s split: %d document(s)", name, len(splits[name]))
            write_shards(splits[name], tok, tmp / name, num_workers or os.cpu_count() or 1)
        tok.save(tmp / TOKENIZER)
        metadata = {
            "tokenizer": tokenizer if tokenizer in ("byte", "bpe") else str(Path(tokenizer).resolve()),
            "vocab_size": tok.vocab_size,
            "eot_id": tok.eot_id,
            "dtype": "int32",
            "val_fraction": val_fraction,
            "seed": seed,
            "splits": {
                name: {
                    "documents": len(splits[name]),
                    "tokens": count_tokens(tmp / name),
                    "sources": [d.path if d.end is None and d.start == 0 else f"{d.path}[{d.start}:{d.end}]" for d in splits[name]],
                }
                for name in SPLITS
            },
            **stats,
        }
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - start_time
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    print(
        f"prepared {out}: vocab {tok.vocab_size}, train {train['tokens']:,} tokens ({train['documents']} docs), "
        f"val {val['tokens']:,} tokens ({val['documents']} docs), skipped {len(stats['binary_skipped'])} binary "
        f"and {len(stats['empty_skipped'])} empty file(s), {stats['replaced_bytes']} invalid UTF-8 bytes replaced, "
        f"in {elapsed:.1f}s"
    )
    return metadata


def load_metadata(data_dir: str | Path) -> dict:
    path = Path(data_dir).expanduser() / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {data_dir} is not a prepared dataset; run `lit-llm prepare --output_dir {data_dir}` first")
    return json.loads(path.read_text())
