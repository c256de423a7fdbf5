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
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_llm.data.destination import check_destination, open_staging, publish
from lit_llm.data.fim import with_fim_tokens_if_asked
from lit_llm.data.format import (
    METADATA,
    SPLITS,
    TOKENIZER,
    count_tokens,
    read_index,
    read_metadata,
    read_tokenizer,
)
from lit_llm.data.identity import add_identity, check_dataset
from lit_llm.data.inputs import input_stats, plan_work, resolve_inputs, scan_inputs
from lit_llm.data.readers import (
    TEXT,
    FileScan,
    Part,
    ReadOptions,
    file_size,
    read_part,
)
from lit_llm.data.shards import (
    ShardWriter,
    append_split,
    write_json,
)
from lit_llm.data.storage import is_remote
from lit_llm.data.tasks import (
    UNIT_BYTES,
    Unit,
    check_task_arguments,
    default_tasks_dir,
    merge_units,
    plan_units,
    remove_task_files,
    run_task,
    stamp_indexes,
    task_tokenizer,
)
from lit_llm.data.tokenize import Job, split_documents, tokenize_job, worker_map
from lit_llm.model.tokenizer import Tokenizer, byte_tokenizer, train_bpe

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


# ---- several tasks ------------------------------------------------------------------------------------


def prepare_in_tasks(
    inputs: list[str],
    output_dir: str,
    tokenizer: str | None,
    vocab_size: int,
    val_fraction: float,
    seed: int,
    num_workers: int | None,
    overwrite: bool,
    exclude: list[str] | None,
    text_field: str,
    separator: str | None,
    val_size: int | None,
    append: bool,
    storage_options: dict | None,
    num_tasks: int | None,
    task_index: int | None,
    merge: bool,
    tasks_dir: str | None,
    unit_bytes: int,
    curation: list[str] | None,
    fim: bool,
    **_,
) -> dict:
    """One task of a prepare split into ``num_tasks`` (or, with ``merge``, the step that joins them): see
    `lit_llm.data.tasks`."""
    start_time = time.perf_counter()
    check_val_fraction(val_fraction)  # before the scan, which can take minutes
    if num_tasks is None:
        raise ValueError("--task_index and --merge need --num_tasks N, the number of tasks of the job")
    check_task_arguments(num_tasks, task_index, merge)
    if append or val_size is not None or curation:
        flag = "append" if append else "val_size" if val_size is not None else "curation"
        raise ValueError(f"--{flag} does not work with --num_tasks: prepare in one task, or drop it")
    target = check_destination(output_dir, overwrite, False, storage_options, inputs, exclude)
    tasks_path = default_tasks_dir(output_dir, tasks_dir, is_remote(target))
    files = resolve_inputs(inputs, exclude)
    options = ReadOptions(text_field, separator)
    tok = ready_tokenizer(tokenizer, vocab_size, None)
    if tok is None:
        raise ValueError(
            "--tokenizer bpe trains on the whole corpus, which no single task reads: train it first (a one-task "
            "`lit-llm prepare --tokenizer bpe` on a sample) and pass its tokenizer.json"
        )
    tok = with_fim_tokens_if_asked(tok, fim, append=False)
    tokenizer_path = task_tokenizer(tok, tasks_path, create=not merge)
    units = plan_units(files, unit_bytes)
    description = describe(tokenizer, tok, val_fraction, None, seed, text_field, separator)
    if not merge:
        tokenize_unit = partial(
            tokenize_unit_parts, options=options, val_fraction=val_fraction, seed=seed, tokenizer_path=tokenizer_path
        )
        return run_task(
            units, task_index, num_tasks, tasks_path, tokenizer_path, description, options, num_workers, tokenize_unit
        )
    staging = open_staging(target, False, storage_options)
    try:
        written, stats = merge_units(units, num_tasks, tasks_path, tokenizer_path, description, staging)
        metadata = add_identity(staging, build_metadata(staging, written, stats, list(inputs), description))
        stamp_indexes(staging, metadata["fingerprint"])
        write_json(staging / METADATA, metadata)
        publish(staging, target, overwrite, storage_options)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_task_files(tasks_path, units)
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    print(
        f"merged {len(units)} units of {num_tasks} task(s) into {target} in {time.perf_counter() - start_time:.1f}s: "
        f"train {train['tokens']:,} tokens ({train['documents']} docs), val {val['tokens']:,} tokens "
        f"({val['documents']} docs); skipped {len(stats['binary_skipped'])} binary and {len(stats['empty_skipped'])} "
        f"empty file(s) and {stats['empty_documents']} empty document(s)"
    )
    return metadata


def tokenize_unit_parts(
    staging: Path,
    parts: list[Part],
    unit: Unit,
    worker_map_fn,
    options: ReadOptions,
    val_fraction: float,
    seed: int,
    tokenizer_path: Path,
) -> dict[str, dict]:
    """A unit's documents, split by its own seeded draw (the seed and the unit's index), into shards in ``staging``."""
    if not parts:
        return nothing_written()
    jobs = assign_splits(parts, val_fraction, None, [seed, unit.index])
    return tokenize_into(staging, jobs, options, worker_map_fn, append=False, tokenizer_path=tokenizer_path)


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


def refuse_duplicates(previous: dict, files: list[str]) -> None:
    known = {source.split("[")[0] for split in previous["splits"].values() for source in split["sources"]}
    repeated = [p for p in files if p in known]
    if repeated:
        raise ValueError(
            f"{repeated[0]} (and {len(repeated) - 1} more) is already in the dataset; remove it from --inputs to "
            "avoid duplicates"
        )


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
