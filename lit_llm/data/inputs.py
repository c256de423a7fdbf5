"""The inputs of `lit-llm prepare` (and `evaluate`): files, folders and globs resolved to files, scanned in
parallel, with what was skipped or repaired counted and named."""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import zlib
from functools import partial
from pathlib import Path

from tqdm import tqdm

from lit_llm.data.readers import (
    COMPRESSIONS,
    MAX_PART_BYTES,
    MIN_PART_BYTES,
    FileScan,
    ReadOptions,
    file_size,
    scan_file,
    splittable,
    url_filesystem,
)
from lit_llm.data.storage import is_remote

log = logging.getLogger(__name__)


def is_excluded(path: str, exclude: list[str]) -> bool:
    """Whether the absolute path (or URL) matches a pattern; fnmatch's ``*`` also crosses ``/``, so ``**/test/**``
    drops any test folder."""
    where = path if is_remote(path) else Path(path).absolute().as_posix()
    return any(fnmatch.fnmatchcase(where, pattern) for pattern in exclude)


def resolve_inputs(inputs: list[str], exclude: list[str] | None = None) -> list[str]:
    """Files named directly, found under folders (recursively) or matched by globs, minus ``exclude``; sorted and
    unique. Local files come back as absolute paths, URLs (``hf://datasets/ORG/NAME/*.parquet``, ``s3://``,
    ``file://``, any fsspec protocol) as URLs of the files they name: listed, never downloaded."""
    if not inputs:
        raise ValueError("no --inputs given; pass text files, folders or globs")
    files: list[str] = []
    for item in inputs:
        found = url_files(item) if is_remote(item) else local_files(item)
        if not found:
            raise FileNotFoundError(f"input folder {item} holds no files; point --inputs at text files")
        files.extend(p for p in found if not is_excluded(p, exclude or []))
    if not files:
        raise FileNotFoundError(f"--exclude {exclude} removed every input file; loosen the patterns")
    return list(dict.fromkeys(files))


def local_files(item: str) -> list[str]:
    path = Path(item).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(f"input {item} does not exist (no file, folder or glob match); check the path")
    return [str(p.resolve()) for p in found]


def url_files(item: str) -> list[str]:
    """The files a URL names: itself, the files under it (a folder) or its glob's matches, as URLs."""
    fs, path = url_filesystem(item)
    if glob.has_magic(path):
        found = [p for p, info in fs.glob(path, detail=True).items() if info["type"] == "file"]
        if not found:
            raise FileNotFoundError(f"input {item} matches no file; check the URL")
    elif fs.isdir(path):
        found = [p for p in fs.find(path) if not p.rsplit("/", 1)[-1].startswith(".")]
    elif fs.isfile(path):
        found = [path]
    else:
        raise FileNotFoundError(f"input {item} does not exist (no file, folder or glob match); check the URL")
    return sorted(fs.unstrip_protocol(p) for p in found)


def plan_work(files: list[str], num_workers: int | None, options: ReadOptions) -> tuple[int, int]:
    """(worker processes, bytes per part): a few parts per worker so all stay busy, and no more workers
    (default: one per core) than there are parts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = num_workers or cores
    sizes = {p: file_size(p) for p in files}
    part_bytes = min(MAX_PART_BYTES, max(MIN_PART_BYTES, sum(sizes.values()) // (4 * workers)))
    parts = sum(max(1, size // part_bytes) if splittable(p, options) else 1 for p, size in sizes.items())
    return max(1, min(workers, parts)), part_bytes


def scan_readable(path: str, options: ReadOptions, part_bytes: int) -> FileScan:
    """`scan_file`, naming a file that cannot be opened or decompressed in one line (workers re-raise it here)."""
    try:
        return scan_file(path, options, part_bytes)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} cannot be read ({type(err).__name__}: {err}); repair or remove it, or leave it out with --exclude"
        ) from None


def scan_inputs(files: list[str], options: ReadOptions, part_bytes: int, worker_map_fn) -> list[FileScan]:
    scan = partial(scan_readable, options=options, part_bytes=part_bytes)
    progress = tqdm(
        worker_map_fn(scan, files),
        total=len(files),
        desc="scanning",
        unit="file",
        mininterval=1.0,
        disable=None,
    )
    return list(progress)


def input_stats(scans: list[FileScan]) -> dict:
    """What was dropped or repaired, warned about by name."""
    stats = {"binary_skipped": [], "empty_skipped": [], "empty_documents": 0, "replaced_bytes": 0}
    for scan in scans:
        if scan.binary:
            stats["binary_skipped"].append(scan.path)
            continue
        if not scan.parts:
            stats["empty_skipped"].append(scan.path)
        if scan.replaced_bytes:
            log.warning(
                "%s: %d bytes were not valid UTF-8 and were replaced with U+FFFD", scan.path, scan.replaced_bytes
            )
        stats["empty_documents"] += scan.empty_documents
        stats["replaced_bytes"] += scan.replaced_bytes
    warn_binary(stats["binary_skipped"])
    return stats


def warn_binary(paths: list[str]) -> None:
    """One line for all the binary files skipped (a source tree's __pycache__ holds hundreds), naming a few and the
    --exclude patterns that leave them out."""
    if not paths:
        return
    names = ", ".join(Path(p).name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    patterns = " ".join(dict.fromkeys(exclude_pattern(Path(p)) for p in paths))
    log.warning(
        "skipping %d binary file%s (%s); --exclude %s leaves such files out",
        len(paths),
        "s" if len(paths) > 1 else "",
        names,
        patterns,
    )


def exclude_pattern(path: Path) -> str:
    """A quoted --exclude pattern for files like this one: its __pycache__ folder, or its extension (with the one
    before a compression suffix: ``*.bin.gz``, not every ``*.gz``)."""
    if "__pycache__" in path.parts:
        return "'**/__pycache__/**'"
    suffixes = path.suffixes[-2:] if path.suffix.lower() in COMPRESSIONS else path.suffixes[-1:]
    return f"'**/*{''.join(suffixes)}'" if suffixes else f"'**/{path.name}'"
