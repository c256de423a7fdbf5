"""`lit-llm prepare`: raw text -> tokenizer + pre-tokenized LitData shards (train/val) + metadata.json.

The output folder is self-describing: ``tokenizer.json`` and ``metadata.json`` sit next to the
``train/`` and ``val/`` shard folders, so `fit` needs only the folder's path (or its ``s3://`` URL).

Steps: find the input files; scan them in parallel (count documents, skip binary files, note invalid
UTF-8 and empty documents); choose the validation documents with a seeded draw; train or load the
tokenizer; tokenize in parallel and write shards in input order; publish. Everything is written to a
local staging folder first: a local dataset is renamed into place at the end, a remote one uploaded with
metadata.json last, so an interrupted run never leaves a half-written dataset or destroys an old one.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

from lit_llm.data.destination import check_destination, open_staging, publish
from lit_llm.data.fim import with_fim_tokens_if_asked
from lit_llm.data.format import METADATA, TOKENIZER, read_metadata
from lit_llm.data.identity import add_identity, check_dataset
from lit_llm.data.inputs import input_stats, plan_work, resolve_inputs, scan_inputs
from lit_llm.data.readers import TEXT, FileScan, Part, ReadOptions, file_size, read_part
from lit_llm.data.shards import write_json
from lit_llm.data.steps import (
    assign_splits,
    build_metadata,
    check_val_fraction,
    describe,
    ready_tokenizer,
    tokenize_into,
)
from lit_llm.data.storage import is_remote
from lit_llm.data.tasks import UNIT_BYTES, prepare_in_tasks
from lit_llm.data.tokenize import Job, split_documents, worker_map
from lit_llm.model.tokenizer import Tokenizer, train_bpe

log = logging.getLogger(__name__)
# A text file this large as the corpus's only document may be several documents without separators: say so.
ONE_DOCUMENT_BYTES = 1_000_000


def prepare(
    inputs: list[str],
    output_dir: str,
    tokenizer: str | None = None,
    vocab_size: int = 8192,
    val_fraction: float = 0.1,
    seed: int = 42,
    num_workers: int | None = None,
    overwrite: bool = False,
    exclude: list[str] | None = None,
    text_field: str = "text",
    separator: str | None = None,
    val_size: int | None = None,
    append: bool = False,
    tokenizer_sample_bytes: int | None = 100_000_000,
    storage_options: dict | None = None,
    num_tasks: int | None = None,
    task_index: int | None = None,
    merge: bool = False,
    tasks_dir: str | None = None,
    unit_bytes: int = UNIT_BYTES,
    curation: list[str] | None = None,
    fim: bool = False,
) -> dict:
    """Tokenize ``inputs`` into LitData shards under ``output_dir``/{train,val}; returns the metadata.

    Args:
        inputs: text, JSON Lines (.jsonl/.ndjson) or Parquet files, folders (searched recursively) or globs;
            ``.gz`` and ``.zst`` files are decompressed. Also URLs, streamed through fsspec, never copied whole:
            ``hf://datasets/ORG/NAME/data/*.parquet`` (the Hugging Face Hub; a token from ``HF_TOKEN``),
            ``s3://``, ``gs://``, ``file://`` or any fsspec protocol whose client is installed.
        output_dir: a local folder, or an ``s3://``/``gs://``/``r2://`` prefix.
        tokenizer: ``byte`` (the default for a new dataset), ``bpe`` (trained here) or a tokenizer.json file.
            An append uses the dataset's own tokenizer and refuses a different one.
        vocab_size: tokens in a trained BPE vocabulary.
        val_fraction: share of the documents that validate (a single document is split by position instead:
            the first ``1 - val_fraction`` of its characters train).
        seed: seed of the validation draw and of the tokenizer's training sample.
        num_workers: tokenizer processes (default: one per CPU core).
        overwrite: replace an existing dataset at ``output_dir``.
        exclude: glob patterns matched against each file's absolute path (``*`` also matches ``/``),
            e.g. ``["**/test/**", "**/__pycache__/**"]``.
        text_field: the JSON Lines field or Parquet column that holds the text.
        separator: in text files, a line holding only this string ends a document (``<|endoftext|>``
            for TinyStories); without it each text file is one document.
        val_size: number of validation documents, instead of ``val_fraction``.
        append: add the inputs' documents to the existing dataset at ``output_dir`` (split the same way).
        tokenizer_sample_bytes: BPE trains on at most this many bytes of training documents, drawn from
            the corpus in a seeded random order (None: all of them).
        storage_options: options for the object storage client (for S3: boto3's, e.g. ``endpoint_url``).
        num_tasks: split the work into this many tasks, each a separate process started by any scheduler (SLURM
            array, plain shell loop) with its own ``task_index``; then run the same command once with ``merge``.
            The dataset is byte-identical whatever the number of tasks (see `lit_llm.data.tasks`).
        task_index: which task this process is, 0 to ``num_tasks - 1``; a rerun skips the units it finished.
        merge: after all tasks: link their shards into ``output_dir`` and write the indexes and metadata.json.
        tasks_dir: where the tasks write (every task must reach it); default: ``OUTPUT_DIR.tasks`` beside a local
            ``output_dir``. Deleted after the merge.
        unit_bytes: with ``num_tasks``: input bytes per unit of work (consecutive files); every task and the merge
            must use the same value, which decides the shards' layout and the validation draw.
        curation: datatrove steps run over the documents before the split and tokenization (off by default):
            ``gopher_quality``, ``gopher_repetition``, ``c4``, ``fineweb`` (quality filters), ``exact_dedup``,
            ``minhash`` (near duplicates). What each removed is recorded in metadata.json. See
            `lit_llm.data.curate`; needs ``pip install 'lit-llm[curate]'``.
        fim: add the fill-in-the-middle tokens <fim_prefix> <fim_suffix> <fim_middle> to the tokenizer, for
            training with ``data.fim_rate`` (docs/serve.md); the text's ids stay the same.
    """
    if num_tasks is not None or merge or task_index is not None:
        return prepare_in_tasks(**locals())  # every argument, by name
    start_time = time.perf_counter()
    check_val_fraction(val_fraction)  # before the scan, which can take minutes
    target = check_destination(output_dir, overwrite, append, storage_options, inputs, exclude)
    files = resolve_inputs(inputs, exclude)
    options = ReadOptions(text_field, separator)
    steps = check_curation(curation, append)
    staging = open_staging(target, append, storage_options)
    try:
        previous = None
        if append:
            check_dataset(staging, source=target)  # adding to a damaged dataset would record its damage as sound
            previous = read_metadata(staging)
            refuse_duplicates(previous, files)
        tok = ready_tokenizer(tokenizer, vocab_size, staging if append else None)
        workers, part_bytes = plan_work(files, num_workers, options)
        with worker_map(workers) as worker_map_fn:
            scans = scan_inputs(files, options, part_bytes, worker_map_fn)
            parts = [part for scan in scans for part in scan.parts]
            if not parts:
                raise ValueError(no_text_message(scans))
            stats = input_stats(scans)
            curated = None
            if steps:
                parts, options, curated = curated_parts(
                    parts, options, steps, staging, workers, part_bytes, worker_map_fn
                )
            jobs = assign_splits(parts, val_fraction, val_size, seed)
            warn_if_one_document(jobs, options)
            if tok is None:
                tok = train_tokenizer(jobs, options, vocab_size, tokenizer_sample_bytes, seed)
                warn_if_vocabulary_smaller(tok, vocab_size)
            tok = with_fim_tokens_if_asked(tok, fim, append)
            if not append:
                tok.save(staging / TOKENIZER)
            written = tokenize_into(staging, jobs, options, worker_map_fn, append)
        description = describe(tokenizer, tok, val_fraction, val_size, seed, text_field, separator)
        if curated:
            description["curation"] = curated
            written = from_inputs(written, files, staging)
        metadata = build_metadata(staging, written, stats, list(inputs), previous or description)
        metadata = identified(staging, metadata, target, append)
        write_json(staging / METADATA, metadata)
        publish(staging, target, overwrite, storage_options)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print_summary(target, metadata, written, stats, time.perf_counter() - start_time)
    warn_if_lopsided(metadata["splits"], val_fraction if val_size is None else None)
    return metadata


def no_text_message(scans: list[FileScan]) -> str:
    """Name the inputs that held no text, and why: the user passed them on purpose."""
    kinds = [f"{Path(scan.path).name} is {'binary' if scan.binary else 'empty'}" for scan in scans[:3]]
    more = f" (and {len(scans) - 3} more)" if len(scans) > 3 else ""
    return f"no text found in the inputs: {', '.join(kinds)}{more}; pass UTF-8 text, JSON Lines or Parquet files"


def warn_if_vocabulary_smaller(tok: Tokenizer, vocab_size: int) -> None:
    """BPE stops merging when the corpus has no pair left to merge: say so, the model takes the smaller size."""
    if tok.vocab_size < vocab_size:
        log.warning(
            "--vocab_size %d: this corpus supports only %s tokens (BPE ran out of pairs to merge); the dataset and "
            "the model (vocab_size: null) use %s; pass a larger corpus for more",
            vocab_size,
            f"{tok.vocab_size:,}",
            f"{tok.vocab_size:,}",
        )


def warn_if_lopsided(splits: dict, val_fraction: float | None) -> None:
    """A split by document follows document counts, not sizes: one huge document can land in validation."""
    train, val = splits["train"]["tokens"], splits["val"]["tokens"]
    share = val / max(1, train + val)
    if val_fraction is not None and not val_fraction / 3 <= share <= min(0.5, 3 * val_fraction):
        log.warning(
            "validation holds %.1f%% of the tokens (asked for %.0f%% of the documents): the documents differ "
            "greatly in size; draw again with another --seed, choose --val_size, or prepare the large file on its own",
            100 * share,
            100 * val_fraction,
        )


# ---- split --------------------------------------------------------------------------------------------


def warn_if_one_document(jobs: list[Job], options: ReadOptions) -> None:
    """A large text file read as the only document is split by position and trains without document ends: say
    so, in case it holds several documents."""
    job = jobs[0]
    size = file_size(job.part.path)
    if job.train_fraction is None or job.part.format != TEXT or size < ONE_DOCUMENT_BYTES:
        return
    found = "no --separator given" if options.separator is None else f"no line holds only {options.separator!r}"
    log.warning(
        "%s (%.1f MB) is the whole corpus as one document (%s), so the split is by position (the last %.0f%% of "
        "its characters validate); if it holds several documents, pass --separator LINE (a line holding only LINE "
        "ends each), or give a folder of files (a document each) or JSON Lines/Parquet files (a document per record)",
        job.part.path,
        size / 1e6,
        found,
        100 * (1 - job.train_fraction),
    )


# ---- tokenizer ----------------------------------------------------------------------------------------


def train_tokenizer(
    jobs: list[Job], options: ReadOptions, vocab_size: int, sample_bytes: int | None, seed: int
) -> Tokenizer:
    log.info(
        "training a byte-level BPE tokenizer with %d tokens on up to %s bytes of training documents",
        vocab_size,
        sample_bytes or "all",
    )
    return train_bpe(training_sample(jobs, options, sample_bytes, seed), vocab_size)


def training_sample(jobs: list[Job], options: ReadOptions, budget: int | None, seed: int):
    """Training documents from the parts in a seeded random order, until ``budget`` bytes."""
    used = 0
    for job in random.Random(seed).sample(jobs, len(jobs)):
        for text in split_documents(job, read_part(job.part, options))["train"]:
            size = len(text.encode())
            if budget is not None and used + size > budget:
                yield text.encode()[: budget - used].decode(errors="ignore")
                return
            used += size
            yield text


# ---- curation -----------------------------------------------------------------------------------------

CURATION_WORK = ".curation"  # in the staging folder: datatrove's work files and the curated documents


def check_curation(curation: list[str] | None, append: bool) -> list[str]:
    if not curation:
        return []
    if append:
        raise ValueError("--curation does not work with --append (dedup would not see the dataset's documents)")
    from lit_llm.data.curate import check_steps

    return check_steps(curation)


def curated_parts(
    parts: list[Part],
    options: ReadOptions,
    steps: list[str],
    staging: Path,
    workers: int,
    part_bytes: int,
    worker_map_fn,
) -> tuple[list[Part], ReadOptions, dict]:
    """The parts of the curated corpus (JSON Lines written by datatrove), how to read them and what was removed."""
    from lit_llm.data.curate import curate

    files, record = curate(parts, options, steps, staging / CURATION_WORK, workers)
    curated_options = ReadOptions(text_field="text")
    scans = scan_inputs(files, curated_options, part_bytes, worker_map_fn)
    curated = [part for scan in scans for part in scan.parts]
    if not curated:
        raise ValueError(f"--curation {','.join(steps)} removed every document ({record['removed']}); drop a filter")
    return curated, curated_options, record


def from_inputs(written: dict, files: list[str], staging: Path) -> dict:
    """Counts with the input files as sources (the curated files were temporary), the curated files removed."""
    shutil.rmtree(staging / CURATION_WORK)
    return {
        split: {**counts, "sources": list(files) if counts["documents"] else []} for split, counts in written.items()
    }


# ---- append, identity, summary ------------------------------------------------------------------------


def refuse_duplicates(previous: dict, files: list[str]) -> None:
    known = {source.split("[")[0] for split in previous["splits"].values() for source in split["sources"]}
    repeated = [p for p in files if p in known]
    if repeated:
        raise ValueError(
            f"{repeated[0]} (and {len(repeated) - 1} more) is already in the dataset; remove it from --inputs to "
            "avoid duplicates"
        )


def identified(staging: Path, metadata: dict, target: str, append: bool) -> dict:
    """``metadata`` with the dataset's fingerprint (see `identity`), computed here before a remote upload; not for
    an append to a remote dataset prepared before fingerprints: its earlier shards are not here to be read."""
    if append and "fingerprint" not in metadata and is_remote(target):
        log.warning("%s has no fingerprint and its shards are remote: the appended dataset has none either", target)
        return metadata
    return add_identity(staging, metadata)


def print_summary(target: str, metadata: dict, written: dict, stats: dict, elapsed: float) -> None:
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    new_mb = sum(c["bytes"] for c in written.values()) / 1e6
    new_tokens = sum(c["tokens"] for c in written.values())
    print(
        f"prepared {target}: vocab {metadata['vocab_size']}, train {train['tokens']:,} tokens ({train['documents']} "
        "docs), "
        f"val {val['tokens']:,} tokens ({val['documents']} docs); skipped {len(stats['binary_skipped'])} binary "
        f"and {len(stats['empty_skipped'])} empty file(s) and {stats['empty_documents']} empty document(s), "
        f"{stats['replaced_bytes']} invalid UTF-8 bytes replaced; {new_mb:.1f} MB in {elapsed:.1f}s "
        f"({new_mb / elapsed:.1f} MB/s, {new_tokens / elapsed:,.0f} tokens/s)"
    )
