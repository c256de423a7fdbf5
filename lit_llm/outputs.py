"""What ``--overwrite`` may replace: only a folder that lit-llm wrote (a dataset, an export), never the user's
own files, whatever path was typed (``.``, ``~``, a folder one level too high, a symlink to elsewhere)."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path


def output_folder(output_dir: str) -> Path:
    """``output_dir`` made absolute with its parents' symlinks resolved but not its own, so a link stays a link;
    a file there is refused."""
    path = Path(os.path.abspath(Path(output_dir).expanduser()))
    if path.is_file():
        raise FileExistsError(f"--output_dir {output_dir} is a file, not a folder; choose another --output_dir")
    return path.parent.resolve() / path.name


def check_replaceable(folder: Path, marker: str, names: Collection[str], inputs: Iterable[Path] = ()) -> None:
    """Refuse to let ``--overwrite`` delete ``folder`` (from `output_folder`) unless it is a real folder (not a
    symlink, whose target would go) holding none of the working directory, $HOME and the resolved ``inputs``,
    and nothing but what lit-llm writes there."""
    if folder.is_symlink():
        raise FileExistsError(
            f"--output_dir {folder} is a symlink to {os.readlink(folder)}; --overwrite replaces only a real folder, "
            "so pass the folder itself or choose another --output_dir"
        )
    kept = [("the working directory", Path.cwd().resolve()), ("your home folder", Path.home().resolve())]
    for why, place in kept + [(f"the input {path}", path) for path in inputs]:
        if place.is_relative_to(folder):
            raise FileExistsError(
                f"--output_dir {folder} is or holds {why}, which --overwrite would delete; choose a folder of its own"
            )
    check_contents(str(folder), set(os.listdir(folder)) if folder.is_dir() else set(), marker, names)


def check_contents(where: str, entries: set[str], marker: str, names: Collection[str]) -> None:
    """Refuse unless ``entries`` (the top-level names at ``where``) are empty or are ``marker`` and only ``names``."""
    if not entries:
        return
    if marker not in entries:
        raise FileExistsError(
            f"--output_dir {where} holds no {marker}, so lit-llm did not write it and --overwrite will not delete it; "
            "choose another --output_dir"
        )
    extra = sorted(entries - set(names))
    if extra:
        raise FileExistsError(
            f"--output_dir {where} holds {', '.join(extra[:3])}{' and more' if len(extra) > 3 else ''} besides what "
            f"lit-llm writes ({', '.join(names)}); move those out or choose another --output_dir"
        )
