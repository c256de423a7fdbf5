"""Where `lit-llm prepare` writes: the checked output location, a staging folder beside it (or a local one for
object storage), and the swap that publishes the finished dataset, so a failed or killed run never leaves a
half-written dataset and an append never changes the original's files in place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lit_llm.data import storage
from lit_llm.data.format import DESCRIPTION, METADATA, SPLITS, TOKENIZER, read_metadata
from lit_llm.data.inputs import resolve_inputs
from lit_llm.data.storage import is_remote
from lit_llm.outputs import check_contents, check_replaceable, output_folder

# What `prepare` writes into a dataset's folder: all that --overwrite may delete there.
WRITTEN = (METADATA, TOKENIZER, *SPLITS)


def check_destination(
    output_dir: str,
    overwrite: bool,
    append: bool,
    storage_options: dict | None,
    inputs: list[str],
    exclude: list[str] | None,
) -> str:
    """The output location, after refusing to replace anything but a dataset or to append to nothing."""
    if overwrite and append:
        raise ValueError("--overwrite and --append contradict each other; pass one of them")
    if is_remote(output_dir):
        target, occupied = remote_destination(output_dir, overwrite, storage_options)
    else:
        target, occupied = local_destination(output_dir, overwrite, inputs, exclude)
    if append and not occupied:
        raise FileNotFoundError(f"--append: {target} holds no dataset to add to; drop --append to create it")
    if occupied and not (overwrite or append):
        raise FileExistsError(
            f"output folder {target} already exists and is not empty; choose another --output_dir, pass --overwrite "
            "to replace it or --append to add to it"
        )
    return target


def local_destination(
    output_dir: str, overwrite: bool, inputs: list[str], exclude: list[str] | None
) -> tuple[str, bool]:
    """(the folder, whether it holds anything); a symlink to an empty folder is written through, never replaced."""
    folder = output_folder(output_dir)
    target = folder.resolve()
    occupied = target.exists() and any(target.iterdir())
    if overwrite:  # the input files (found again by prepare) matter only where there is something to delete
        files = resolve_inputs(inputs, exclude) if occupied else []
        check_replaceable(folder, METADATA, WRITTEN, [Path(p) for p in files if not is_remote(p)])
    return str(target), occupied


def remote_destination(output_dir: str, overwrite: bool, storage_options: dict | None) -> tuple[str, bool]:
    """(the prefix, whether it holds anything); --overwrite replaces only a prefix that holds a dataset alone."""
    target = output_dir.rstrip("/")
    entries = storage.top_level_names(target, storage_options)
    if overwrite:
        check_contents(target, entries, METADATA, WRITTEN)
    return target, bool(entries)


def open_staging(target: str, append: bool, storage_options: dict | None) -> Path:
    """A local folder to write into: a hard-linked copy of the dataset for an append (its files are never
    changed in place, so the original stays intact), only its description when the dataset is remote."""
    if is_remote(target):
        staging = Path(tempfile.mkdtemp(prefix="lit-llm-prepare-"))
        if append:
            storage.download(target, DESCRIPTION, staging, storage_options)
        return staging
    out = Path(target)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    if append:
        read_metadata(out)  # a clear error if the folder is not a dataset
        shutil.copytree(out, staging, copy_function=hard_link_or_copy)
    else:
        staging.mkdir()
    return staging


def hard_link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def publish(staging: Path, target: str, replace: bool, storage_options: dict | None) -> None:
    """Put the finished dataset in place. A replaced dataset's contents are checked again first: tokenizing can
    take hours after `check_destination`, and a file put there meanwhile is not lit-llm's to delete."""
    if is_remote(target):
        if replace:
            check_contents(target, storage.top_level_names(target, storage_options), METADATA, WRITTEN)
            storage.delete(target, storage_options)
        storage.upload(staging, target, storage_options)
        shutil.rmtree(staging)
        return
    out = Path(target)
    if replace and out.exists():
        check_contents(target, set(os.listdir(out)), METADATA, WRITTEN)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)
