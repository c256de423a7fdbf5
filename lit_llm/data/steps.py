"""The steps a one-process `prepare` and the tasks of a split one (`tasks.py`) share: the seeded validation
draw, the tokenizer's choice, tokenizing into shards, and metadata.json's description and counts."""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_llm.data.format import SPLITS, TOKENIZER, count_tokens, read_index, read_tokenizer
from lit_llm.data.readers import Part, ReadOptions
from lit_llm.data.shards import ShardWriter, append_split
from lit_llm.data.tokenize import Job, tokenize_job
from lit_llm.model.tokenizer import Tokenizer, byte_tokenizer

# ---- split --------------------------------------------------------------------------------------------


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction {val_fraction} must lie strictly between 0 and 1, e.g. 0.1")


def assign_splits(parts: list[Part], val_fraction: float, val_size: int | None, seed: int | list[int]) -> list[Job]:
    """Choose the validation documents with a seeded draw; a single document is split by position instead."""
    check_val_fraction(val_fraction)
    total = sum(part.n_docs for part in parts)
    if total == 1:
        if val_size is not None:
            raise ValueError(
                "--val_size counts documents, and the corpus is one document (split by position); use --val_fraction"
            )
        return [Job(parts[0], train_fraction=1.0 - val_fraction)]
    n_val = val_size if val_size is not None else max(1, round(val_fraction * total))
    if not 1 <= n_val < total:
        raise ValueError(
            f"--val_size {n_val} must leave at least one of the {total} documents in each split; pick 1 to {total - 1}"
        )
    val = np.sort(np.random.default_rng(seed).choice(total, n_val, replace=False))
    jobs, first = [], 0
    for part in parts:
        lo, hi = np.searchsorted(val, [first, first + part.n_docs])
        jobs.append(Job(part, frozenset((val[lo:hi] - first).tolist())))
        first += part.n_docs
    return jobs


# ---- tokenizer ----------------------------------------------------------------------------------------


def ready_tokenizer(spec: str | None, vocab_size: int, existing: Path | None) -> Tokenizer | None:
    """The tokenizer if it needs no training (None for BPE, trained after the scan); bad choices fail here, early."""
    if existing is not None:
        return appending_tokenizer(spec, existing)
    spec = spec or "byte"
    if spec == "byte":
        return byte_tokenizer()
    if spec == "bpe":
        if vocab_size < 257:
            raise ValueError(
                f"--vocab_size {vocab_size} is too small for byte-level BPE; use at least 257 (or --tokenizer byte)"
            )
        return None
    if spec.endswith(".json") or Path(spec).exists():
        return Tokenizer.from_file(spec)
    raise ValueError(f"--tokenizer {spec!r} is not 'byte', 'bpe' or a tokenizer.json file; pick one of those")


def appending_tokenizer(spec: str | None, dataset: Path) -> Tokenizer:
    """An append keeps the dataset's tokenizer; naming a different one is refused (ids would mean two things)."""
    own = read_tokenizer(dataset)
    if spec is None:
        return own
    if spec == "bpe" or ready_tokenizer(spec, 257, None).to_json() != own.to_json():
        raise ValueError(
            f"--tokenizer {spec} differs from the dataset's own tokenizer.json; drop --tokenizer to append with it"
        )
    return own


# ---- tokenize and write -------------------------------------------------------------------------------


def tokenize_into(
    staging: Path,
    jobs: list[Job],
    options: ReadOptions,
    worker_map_fn,
    append: bool,
    tokenizer_path: Path | None = None,
) -> dict[str, dict]:
    """Tokenize the jobs in parallel and write each split's shards in job order; returns what each split gained.
    The workers load the tokenizer from ``tokenizer_path`` (default: the one in ``staging``)."""
    new_dirs = {split: staging / (f"{split}.new" if append else split) for split in SPLITS}
    writers = {
        split: ShardWriter(new_dirs[split], first_chunk=len(read_index(staging / split)["chunks"]) if append else 0)
        for split in SPLITS
    }
    written = nothing_written()
    tokenize = partial(tokenize_job, tokenizer_path=str(tokenizer_path or staging / TOKENIZER), options=options)
    progress = tqdm(
        total=sum(job.part.n_docs for job in jobs),
        desc="tokenizing",
        unit="doc",
        unit_scale=True,
        mininterval=1.0,
        disable=None,
    )
    started = time.perf_counter()
    for job, tokens in zip(jobs, worker_map_fn(tokenize, jobs)):
        for split, counts in written.items():
            if tokens.documents[split]:
                writers[split].add(tokens.ids[split])
                counts["documents"] += tokens.documents[split]
                counts["tokens"] += len(tokens.ids[split])
                counts["bytes"] += tokens.text_bytes[split]
                counts["sources"].append(tokens.sources[split])
        progress.update(job.part.n_docs)
        elapsed = max(time.perf_counter() - started, 1e-9)
        total_tokens = sum(c["tokens"] for c in written.values())
        total_mb = sum(c["bytes"] for c in written.values()) / 1e6
        progress.set_postfix_str(f"{total_tokens / elapsed:,.0f} tok/s, {total_mb / elapsed:.1f} MB/s", refresh=False)
    progress.close()
    for split, writer in writers.items():
        writer.close()
        if append and writer.chunks:
            append_split(staging / split, new_dirs[split])
        if append:
            shutil.rmtree(new_dirs[split])
    return written


def nothing_written() -> dict[str, dict]:
    """What each split gained, before anything is written."""
    return {split: {"documents": 0, "tokens": 0, "bytes": 0, "sources": []} for split in SPLITS}


# ---- metadata -----------------------------------------------------------------------------------------


def describe(
    tokenizer: str | None,
    tok: Tokenizer,
    val_fraction: float,
    val_size: int | None,
    seed: int,
    text_field: str,
    separator: str | None,
) -> dict:
    """metadata.json's description of how the dataset was made (counts are added by `build_metadata`)."""
    return {
        "tokenizer": tokenizer
        if tokenizer in ("byte", "bpe")
        else str(Path(tokenizer).resolve())
        if tokenizer
        else "byte",
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "dtype": "int32",
        "val_fraction": val_fraction,
        "val_size": val_size,
        "seed": seed,
        "text_field": text_field,
        "separator": separator,
    }


def build_metadata(staging: Path, written: dict, stats: dict, inputs: list[str], base: dict) -> dict:
    """metadata.json: ``base`` (the dataset's description, or its previous metadata for an append) plus
    this run's counts; token and shard counts are read back from the splits' indexes."""
    splits = {}
    for split in SPLITS:
        before = base.get("splits", {}).get(split, {})
        splits[split] = {
            "documents": before.get("documents", 0) + written[split]["documents"],
            "tokens": count_tokens(staging / split),
            "bytes": before.get("bytes", 0) + written[split]["bytes"],
            "shards": len(read_index(staging / split)["chunks"]),
            "sources": list(dict.fromkeys(before.get("sources", []) + written[split]["sources"])),
        }
    totals = {key: base.get(key, type(value)()) + value for key, value in stats.items()}  # counts add, file lists join
    return {**base, "inputs": base.get("inputs", []) + inputs, "splits": splits, **totals}
