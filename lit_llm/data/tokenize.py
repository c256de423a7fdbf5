"""Parallel tokenization for `lit-llm prepare`: worker processes encode parts of the corpus with the
``tokenizers`` batch encoder and hand back int32 token ids for the train and val splits.

Results come back in input order whatever the number of workers, so a dataset's shards do not depend on
how many processes made them. On Linux the workers are forked, before `prepare` starts any thread of its
own: spawned workers would each re-import the parent's main module (the `lit-llm` CLI pulls in Lightning),
which costs seconds per worker. They touch only this module, the readers and the tokenizer.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_llm.data.readers import Part, ReadOptions, read_part, segments
from lit_llm.model.tokenizer import Tokenizer

BATCH_CHARS = 1 << 20  # characters per encode_batch call: large enough to amortise the call, small enough for memory


@dataclass(frozen=True)
class Job:
    """One part of the corpus and which of its documents validate."""

    part: Part
    val_docs: frozenset[int] = frozenset()  # indices, within the part, of the validation documents
    train_fraction: float | None = None  # a single-document corpus: the leading share of characters that trains


@dataclass
class Tokens:
    """What a worker made of one job: per split, token ids (each document ending in <|endoftext|>) and counts."""

    ids: dict[str, np.ndarray]
    documents: dict[str, int]
    text_bytes: dict[str, int]
    sources: dict[str, str]  # the file, or its character range for a document split by position


_loaded: tuple[str, Tokenizer] | None = None  # per process: the last tokenizer.json text and its tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """The tokenizer saved at ``path``, parsed once per process while the file's content stays the same
    (a later `prepare` in the same process may write another tokenizer to the same staging path)."""
    global _loaded
    text = Path(path).read_text()
    if _loaded is None or _loaded[0] != text:
        _loaded = (text, Tokenizer.from_json(text, path))
    return _loaded[1]


def split_documents(job: Job, documents: Iterable[str]) -> dict[str, list[str]]:
    """The part's documents sorted into train and val."""
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for index, text in enumerate(documents):
        if job.train_fraction is not None:
            cut = int(len(text) * job.train_fraction)
            splits["train"].append(text[:cut])
            splits["val"].append(text[cut:])
        else:
            splits["val" if index in job.val_docs else "train"].append(text)
    return splits


def tokenize_job(job: Job, tokenizer_path: str, options: ReadOptions) -> Tokens:
    tokenizer = load_tokenizer(tokenizer_path)
    splits = split_documents(job, read_part(job.part, options))
    path = job.part.path
    if job.train_fraction is not None:
        cut = len(splits["train"][0])
        sources = {"train": f"{path}[0:{cut}]", "val": f"{path}[{cut}:None]"}
    else:
        sources = {"train": path, "val": path}
    return Tokens(
        ids={split: encode_documents(tokenizer, texts) for split, texts in splits.items()},
        documents={split: len(texts) for split, texts in splits.items()},
        text_bytes={split: sum(len(text.encode()) for text in texts) for split, texts in splits.items()},
        sources=sources,
    )


def encode_documents(tokenizer: Tokenizer, documents: list[str]) -> np.ndarray:
    """Token ids of the documents, each followed by <|endoftext|>, encoded in batches."""
    ids = array("i")
    batch: list[str] = []
    ends: list[bool] = []  # whether a batch entry is the last piece of its document

    def flush() -> None:
        # encode_batch_fast skips the character offsets, which we do not need
        for encoding, is_end in zip(tokenizer.backend.encode_batch_fast(batch, add_special_tokens=False), ends):
            ids.extend(encoding.ids)
            if is_end:
                ids.append(tokenizer.eot_id)
        batch.clear()
        ends.clear()

    batch_chars = 0
    for document in documents:
        pieces = list(segments(document))
        for i, piece in enumerate(pieces):
            batch.append(piece)
            ends.append(i == len(pieces) - 1)
            batch_chars += len(piece)
            if batch_chars >= BATCH_CHARS:
                flush()
                batch_chars = 0
    flush()
    return np.frombuffer(ids, dtype=np.int32)


@contextmanager
def worker_map(num_workers: int) -> Iterator[Callable[[Callable, Iterable], Iterator]]:
    """An ordered, lazy ``map`` over ``num_workers`` processes (the plain built-in for one)."""
    if num_workers <= 1:
        yield map
        return
    context = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    # Each worker is one core's worth of work: the tokenizers thread pool inside it would oversubscribe.
    # The variable is set only while the workers start, so they inherit it and the parent keeps its own.
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        pool = context.Pool(num_workers)
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    with pool:
        yield lambda fn, items: pool.imap(fn, items, chunksize=1)
