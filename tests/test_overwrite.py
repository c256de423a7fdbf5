"""`--overwrite` replaces only a folder that lit-llm wrote: a dataset from `prepare`, an export from `export`.

Each refusal row builds a workspace (an input file, a user's train.py, a prepared dataset, an export), runs the
command with --overwrite, and asserts the one-line reason and that every file, folder and link in the workspace
is exactly as before. The S3 case (a prefix one level too high) is in tests/test_data_remote.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lit_llm.commands.export import export
from lit_llm.data.prepare import prepare
from tests.conftest import REPO

CHECKPOINT = REPO / "tests" / "fixtures" / "v0.1-step3.ckpt"
TEXT = "To be, or not to be, that is the question. " * 40


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A dataset and an export, written once by lit-llm, for the rows to copy."""
    folder = tmp_path_factory.mktemp("made")
    (folder / "corpus.txt").write_text(TEXT)
    prepare([str(folder / "corpus.txt")], str(folder / "ds"), tokenizer="byte", num_workers=1)
    export(str(CHECKPOINT), str(folder / "hf"))
    return folder


@pytest.fixture
def ws(tmp_path, made, monkeypatch) -> Path:
    """A user's workspace: tiny.txt (the input), train.py, ds/ (a dataset), hf/ (an export); cwd is outside it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tiny.txt").write_text(TEXT)
    (ws / "train.py").write_text("print('my own code')\n")
    shutil.copytree(made / "ds", ws / "ds")
    shutil.copytree(made / "hf", ws / "hf")
    monkeypatch.chdir(tmp_path)
    return ws


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``, without following links: file bytes, link targets, folders."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            key = path.relative_to(folder).as_posix()
            entries[key] = (
                ("link", os.readlink(path)) if path.is_symlink() else path.read_bytes() if name in files else "dir"
            )
    return entries


def prepare_into(ws: Path, output_dir: str, inputs: list[str] | None = None) -> None:
    prepare(inputs or [str(ws / "tiny.txt")], output_dir, tokenizer="byte", num_workers=1, overwrite=True)


def export_into(ws: Path, output_dir: str) -> None:
    export(str(CHECKPOINT), output_dir, overwrite=True)


def in_cwd(monkeypatch, folder: Path) -> str:
    monkeypatch.chdir(folder)
    return "."


def as_home(monkeypatch, folder: Path) -> str:
    monkeypatch.setenv("HOME", str(folder))
    return "~"


def with_extra_file(folder: Path) -> str:
    (folder / "notes.txt").write_text("my notes")
    return str(folder)


def link_to(folder: Path) -> str:
    link = folder.with_name("link")
    link.symlink_to(folder, target_is_directory=True)
    return str(link)


# (command, how the output is named, what the message must say)
ROWS = {
    "cwd-is-a-dataset": (prepare_into, lambda ws, mp: in_cwd(mp, ws / "ds"), "is or holds the working directory"),
    "ancestor-of-cwd": (
        prepare_into,
        lambda ws, mp: in_cwd(mp, ws / "ds" / "train") + "/..",
        "holds the working directory",
    ),
    "home-is-a-dataset": (prepare_into, lambda ws, mp: as_home(mp, ws / "ds"), "is or holds your home folder"),
    "root": (prepare_into, lambda ws, mp: "/", "--output_dir / is or holds the working directory"),
    "folder-holds-the-input": (prepare_into, lambda ws, mp: str(ws), "is or holds the input"),
    "inside-a-dataset": (prepare_into, lambda ws, mp: str(ws / "ds" / "train"), "holds no metadata.json"),
    "extra-file-beside-metadata": (
        prepare_into,
        lambda ws, mp: with_extra_file(ws / "ds"),
        "holds notes.txt besides what lit-llm writes",
    ),
    "symlink-to-a-dataset": (prepare_into, lambda ws, mp: link_to(ws / "ds"), "is a symlink to"),
    "export-over-a-dataset": (export_into, lambda ws, mp: str(ws / "ds"), "holds no config.json"),
    "export-over-the-workspace": (export_into, lambda ws, mp: str(ws), "holds no config.json"),
    "export-extra-file": (
        export_into,
        lambda ws, mp: with_extra_file(ws / "hf"),
        "holds notes.txt besides what lit-llm writes",
    ),
    "export-symlink": (export_into, lambda ws, mp: link_to(ws / "hf"), "is a symlink to"),
    "export-cwd": (export_into, lambda ws, mp: in_cwd(mp, ws / "hf"), "is or holds the working directory"),
}


@pytest.mark.parametrize("row", ROWS)
def test_overwrite_refuses_what_lit_llm_did_not_write(row, ws, monkeypatch):
    command, name_output, message = ROWS[row]
    output_dir = name_output(ws, monkeypatch)
    before = snapshot(ws)
    with pytest.raises(FileExistsError, match=message) as refusal:
        command(ws, output_dir)
    assert "\n" not in str(refusal.value) and "choose" in str(refusal.value)
    assert snapshot(ws) == before


def test_overwrite_refuses_a_dataset_holding_an_input(ws):
    """The input is one of the dataset's own files: the folder looks like a dataset, but replacing it loses it."""
    before = snapshot(ws)
    with pytest.raises(FileExistsError, match=f"--output_dir {ws / 'ds'} is or holds the input .*metadata.json"):
        prepare_into(ws, str(ws / "ds"), inputs=[str(ws / "ds" / "metadata.json")])
    assert snapshot(ws) == before


def test_overwrite_replaces_what_lit_llm_wrote(ws):
    (ws / "more.txt").write_text(TEXT * 2)
    old = (ws / "ds" / "metadata.json").read_text()
    prepare_into(ws, str(ws / "ds"), inputs=[str(ws / "more.txt")])
    assert (ws / "ds" / "metadata.json").read_text() != old
    assert sorted(p.name for p in (ws / "ds").iterdir()) == ["metadata.json", "tokenizer.json", "train", "val"]

    (ws / "hf" / "config.json").write_text("{}")  # an earlier export, to be replaced
    export_into(ws, str(ws / "hf"))
    assert (ws / "hf" / "config.json").read_text() != "{}"
    assert (ws / "tiny.txt").read_text() == TEXT and (ws / "train.py").is_file()

    (ws / "empty").mkdir()  # an empty folder needs no --overwrite
    prepare([str(ws / "tiny.txt")], str(ws / "empty"), tokenizer="byte", num_workers=1)
    assert (ws / "empty" / "metadata.json").is_file()


def test_a_file_put_in_the_dataset_while_prepare_runs_is_not_deleted(ws, monkeypatch):
    """--overwrite is checked when prepare starts and again before the old dataset goes: tokenizing can take
    hours, and a note written into the folder meanwhile is the user's."""
    import lit_llm.data.prepare as prepare_module

    tokenize_into = prepare_module.tokenize_into

    def user_writes_meanwhile(*args, **kwargs):
        (ws / "ds" / "notes.txt").write_text("mine")
        return tokenize_into(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "tokenize_into", user_writes_meanwhile)
    before = {**snapshot(ws), "ds/notes.txt": b"mine"}
    with pytest.raises(FileExistsError, match=f"--output_dir {ws / 'ds'} holds notes.txt besides what lit-llm writes"):
        prepare_into(ws, str(ws / "ds"), inputs=[str(ws / "tiny.txt")])
    assert snapshot(ws) == before  # the old dataset, the note, and no staging folder left


def test_cli_refuses_the_working_directory_in_one_line(tmp_path):
    """The reported case: `prepare --output_dir .` in a project folder wiped the input and train.py with it."""
    (tmp_path / "tinyshakespeare.txt").write_text(TEXT)
    (tmp_path / "train.py").write_text("print('my own code')\n")
    before = snapshot(tmp_path)
    result = subprocess.run(
        [shutil.which("lit-llm") or "lit-llm", "prepare", "--inputs", "tinyshakespeare.txt", "--output_dir", "."]
        + ["--tokenizer", "byte", "--overwrite"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"--output_dir {tmp_path.resolve()} is or holds the working directory" in result.stderr
    assert snapshot(tmp_path) == before
