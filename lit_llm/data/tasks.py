"""`lit-llm prepare --num_tasks N --task_index i`, then `--merge`: one dataset tokenized by N independent tasks.

The corpus is cut into *units*: consecutive input files (in sorted order) of about ``unit_bytes`` together, a
cut that depends only on the file list and sizes, never on N. Each unit is tokenized on its own: its own
seeded validation draw (seed and unit index) and its own shard sequence. Task i does units i, i+N, i+2N, ...
and each finished unit is renamed into ``tasks_dir/unit-NNNNN`` with a ``done.json`` that records its
settings and counts, so a task that died is rerun alone and skips the units it had finished. The merge
numbers the units' shards in unit order into one index per split and writes metadata.json: the result is
byte-identical whatever N is, and for N = 1. (A plain `prepare` packs shards across files instead, so its
shards differ from a task run's: the tokens are the same, their cut into shards is not.)

Tasks are plain processes started by any scheduler; `tasks_dir` must be a folder they all reach (a shared
filesystem for several machines).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lit_llm.data.destination import check_destination, hard_link_or_copy, open_staging, publish
from lit_llm.data.fim import with_fim_tokens_if_asked
from lit_llm.data.format import INDEX, METADATA, SPLITS, TOKENIZER, read_index
from lit_llm.data.identity import add_identity
from lit_llm.data.inputs import input_stats, plan_work, resolve_inputs, scan_inputs
from lit_llm.data.readers import Part, ReadOptions, file_size
from lit_llm.data.shards import write_json
from lit_llm.data.steps import (
    assign_splits,
    build_metadata,
    check_val_fraction,
    describe,
    nothing_written,
    ready_tokenizer,
    tokenize_into,
)
from lit_llm.data.storage import is_remote
from lit_llm.data.tokenize import worker_map
from lit_llm.model.tokenizer import Tokenizer

log = logging.getLogger(__name__)
DONE = "done.json"
UNIT_BYTES = 256_000_000


@dataclass(frozen=True)
class Unit:
    """Consecutive input files tokenized together into one shard sequence."""

    index: int
    files: tuple[str, ...]

    def folder(self, tasks_dir: Path) -> Path:
        return tasks_dir / f"unit-{self.index:05d}"


def check_task_arguments(num_tasks: int, task_index: int | None, merge: bool) -> None:
    if num_tasks < 1:
        raise ValueError(f"--num_tasks {num_tasks} must be at least 1")
    if merge and task_index is not None:
        raise ValueError("--merge and --task_index contradict each other: run the tasks first, then one --merge")
    if not merge and (task_index is None or not 0 <= task_index < num_tasks):
        raise ValueError(f"--task_index {task_index} must be 0 to {num_tasks - 1} with --num_tasks {num_tasks}")


def default_tasks_dir(output_dir: str, tasks_dir: str | None, remote: bool) -> Path:
    if tasks_dir:
        return Path(tasks_dir).expanduser().resolve()
    if remote:
        raise ValueError(
            f"--output_dir {output_dir} is remote: pass --tasks_dir, a folder every task can write (shared storage)"
        )
    return Path(output_dir).expanduser().resolve().with_name(Path(output_dir).name + ".tasks")


def plan_units(files: list[str], unit_bytes: int) -> list[Unit]:
    """Consecutive files of about ``unit_bytes`` together; a larger file is a unit of its own."""
    if unit_bytes < 1:
        raise ValueError(f"--unit_bytes {unit_bytes} must be positive, e.g. {UNIT_BYTES}")
    units, current, size = [], [], 0
    for path in files:
        current.append(path)
        size += file_size(path)
        if size >= unit_bytes:
            units.append(Unit(len(units), tuple(current)))
            current, size = [], 0
    if current:
        units.append(Unit(len(units), tuple(current)))
    return units


def task_tokenizer(tok: Tokenizer, tasks_dir: Path, create: bool) -> Path:
    """The tokenizer every task encodes with, written once (the merge writes nothing: ``create`` False); a tasks
    folder holding another one is refused."""
    path = tasks_dir / TOKENIZER
    text = tok.to_json()
    if path.exists() or not create:
        if path.exists() and path.read_text() != text:
            raise ValueError(
                f"{tasks_dir} holds the tasks of a prepare with another tokenizer; delete it or pass another "
                "--tasks_dir"
            )
        return path
    tasks_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TOKENIZER}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def unit_settings(unit: Unit, tokenizer_path: Path, description: dict) -> dict:
    """What makes a unit's shards what they are: a finished unit with other settings is not reused."""
    return {
        "unit": unit.index,
        "files": list(unit.files),
        "tokenizer_sha256": hashlib.sha256(tokenizer_path.read_bytes()).hexdigest(),
        **{key: description[key] for key in ("val_fraction", "seed", "text_field", "separator")},
    }


def finished(unit: Unit, tasks_dir: Path, settings: dict) -> dict | None:
    """The unit's done.json if it was finished with these settings; a unit finished otherwise is an error."""
    done = unit.folder(tasks_dir) / DONE
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    if record["settings"] != settings:
        raise ValueError(
            f"{done.parent} was made with other inputs or settings; delete {tasks_dir} (or pass another --tasks_dir) "
            "to start the tasks again"
        )
    return record


def run_task(
    units: list[Unit],
    task_index: int,
    num_tasks: int,
    tasks_dir: Path,
    tokenizer_path: Path,
    description: dict,
    options: ReadOptions,
    num_workers: int | None,
    tokenize_unit,
) -> dict:
    """Tokenize this task's units that are not finished yet; returns counts of units done and skipped."""
    mine = units[task_index::num_tasks]
    skipped = 0
    for unit in mine:
        settings = unit_settings(unit, tokenizer_path, description)
        if finished(unit, tasks_dir, settings):
            skipped += 1
            continue
        staging = unit.folder(tasks_dir).with_name(f".{unit.folder(tasks_dir).name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        workers, part_bytes = plan_work(list(unit.files), num_workers, options)
        with worker_map(workers) as worker_map_fn:
            scans = scan_inputs(list(unit.files), options, part_bytes, worker_map_fn)
            stats = input_stats(scans)
            parts = [part for scan in scans for part in scan.parts]
            written = tokenize_unit(staging, parts, unit, worker_map_fn)
        write_json(staging / DONE, {"settings": settings, "written": written, "stats": stats})
        shutil.rmtree(unit.folder(tasks_dir), ignore_errors=True)  # an unfinished leftover has no done.json
        staging.rename(unit.folder(tasks_dir))
    summary = {"task_index": task_index, "units": len(mine), "skipped": skipped, "tasks_dir": str(tasks_dir)}
    print(
        f"task {task_index} of {num_tasks}: {len(mine) - skipped} unit(s) tokenized, {skipped} already done, in "
        f"{tasks_dir}; when all {num_tasks} tasks are done, run the same command with --merge instead of --task_index"
    )
    return summary


def merge_units(
    units: list[Unit], num_tasks: int, tasks_dir: Path, tokenizer_path: Path, description: dict, staging: Path
) -> tuple[dict, dict]:
    """Link every unit's shards into ``staging`` in unit order, one index per split; returns (written, stats)
    summed over the units, as `prepare` counts them."""
    records = [
        finished(unit, tasks_dir, unit_settings(unit, tokenizer_path, description)) if tokenizer_path.exists() else None
        for unit in units
    ]
    missing = sorted({unit.index % num_tasks for unit, record in zip(units, records) if record is None})
    if missing:
        raise ValueError(
            f"tasks {', '.join(map(str, missing))} of {num_tasks} have not finished (their units are missing in "
            f"{tasks_dir}); rerun them with --task_index, then --merge again"
        )
    shutil.copyfile(tokenizer_path, staging / TOKENIZER)
    for split in SPLITS:
        merge_split(units, tasks_dir, staging / split, split)
    written = {split: {"documents": 0, "tokens": 0, "bytes": 0, "sources": []} for split in SPLITS}  # summed below
    stats: dict = {}
    for record in records:
        for split, counts in record["written"].items():
            for key, value in counts.items():
                written[split][key] += value
        stats = {key: stats.get(key, type(value)()) + value for key, value in record["stats"].items()}
    return written, stats


def merge_split(units: list[Unit], tasks_dir: Path, split_dir: Path, split: str) -> None:
    split_dir.mkdir(parents=True)
    chunks, config = [], None
    for unit in units:
        folder = unit.folder(tasks_dir) / split
        if not (folder / INDEX).exists():  # a unit without documents in this split
            continue
        index = read_index(folder)
        config = config or index["config"]
        for chunk in index["chunks"]:
            name = f"chunk-0-{len(chunks)}.bin"
            hard_link_or_copy(str(folder / chunk["filename"]), str(split_dir / name))
            chunks.append({**chunk, "filename": name})
    # updated_at is set from the fingerprint once it is known (see `stamp_indexes`): not a clock, which would
    # make two merges of the same units differ
    write_json(split_dir / INDEX, {"chunks": chunks, "config": config, "updated_at": "0"})


def stamp_indexes(staging: Path, fingerprint: str) -> None:
    """LitData names a remote dataset's cache after index.json's ``updated_at``: derive it from the content, so
    a changed dataset gets a fresh cache and an identical one the same."""
    for split in SPLITS:
        index = read_index(staging / split)
        write_json(staging / split / INDEX, {**index, "updated_at": str(int(fingerprint[:12], 16))})


def remove_task_files(tasks_dir: Path, units: list[Unit]) -> None:
    """After the merge: delete what the tasks wrote (each unit's folder and the shared tokenizer), and the folder
    only once it is empty, so a ``--tasks_dir`` that also holds a user's files keeps them."""
    for unit in units:
        shutil.rmtree(unit.folder(tasks_dir), ignore_errors=True)
    (tasks_dir / TOKENIZER).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tasks_dir.rmdir()


# ---- prepare --num_tasks: one task, or the merge ------------------------------------------------------


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
    """One task of a prepare split into ``num_tasks`` (or, with ``merge``, the step that joins them), given every
    argument of `lit_llm.data.prepare.prepare`."""
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
