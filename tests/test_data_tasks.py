"""`prepare --num_tasks N --task_index i` then `--merge`: one dataset made by independent processes, the same
bytes whatever N is; a rerun task skips its finished units; the merge names the tasks still missing."""

import filecmp
import json
import os
import random

import pytest

from lit_llm.data.identity import check_dataset
from lit_llm.data.prepare import prepare
from lit_llm.data.shards import open_split
from tests.forked_cli import Command, run_commands

UNIT = 20_000  # bytes per unit: the corpus below makes 6 units or more


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """JSON Lines files of different sizes (some empty documents among them) and a text file."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    words = "the of and to in that is was he for it with as his on be at by had".split()
    for f in range(10):
        with open(folder / f"part-{f:02d}.jsonl", "w") as out:
            for _ in range(rng.randint(5, 60)):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 300)))
                text = "  " if rng.random() < 0.05 else text  # an empty document, counted and dropped
                out.write(json.dumps({"text": text}) + "\n")
    (folder / "notes.txt").write_text("a plain text file is one document\n" * 500)
    return folder


def files_of(folder):
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, fs in os.walk(folder) for f in fs)


def run_tasks(corpus, out, n):
    return prepare([str(corpus)], str(out), num_tasks=n, merge=True, unit_bytes=UNIT)


def test_three_task_processes_make_the_bytes_of_one(tmp_path, corpus):
    one = tmp_path / "one"
    prepare([str(corpus)], str(one), num_tasks=1, task_index=0, unit_bytes=UNIT, num_workers=2)
    one_meta = run_tasks(corpus, one, 1)

    three = tmp_path / "three"
    args = ["prepare", "--inputs", str(corpus), "--output_dir", str(three), "--num_tasks", "3"]
    tasks = [Command([*args, "--task_index", str(i), "--unit_bytes", str(UNIT)], cwd=tmp_path) for i in range(3)]
    results = run_commands(tasks, parallel=3)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(list((tmp_path / "three.tasks").glob("unit-*"))) >= 6  # two or more units per task
    three_meta = run_tasks(corpus, three, 3)

    assert files_of(one) == files_of(three)
    assert all(filecmp.cmp(one / name, three / name, shallow=False) for name in files_of(one))
    assert one_meta["fingerprint"] == three_meta["fingerprint"]
    assert not (tmp_path / "three.tasks").exists()  # the merge cleans up
    # a sound dataset: every shard as recorded, every document counted, and it streams
    check_dataset(three, deep=True)
    total = three_meta["splits"]["train"]["documents"] + three_meta["splits"]["val"]["documents"]
    lines = [json.loads(line)["text"] for f in corpus.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert total == sum(1 for text in lines if text.strip()) + 1
    assert three_meta["empty_documents"] == sum(1 for text in lines if not text.strip())
    assert len(open_split(str(three), three, "train", block_size=64)) > 0


def test_a_rerun_task_skips_finished_units_and_the_merge_names_missing_tasks(tmp_path, corpus, monkeypatch):
    out = tmp_path / "out"
    first = prepare([str(corpus)], str(out), num_tasks=3, task_index=1, unit_bytes=UNIT)
    assert first["skipped"] == 0 and first["units"] >= 2
    with pytest.raises(ValueError, match="tasks 0, 2 of 3 have not finished"):
        run_tasks(corpus, out, 3)

    import lit_llm.data.tasks as tasks_module

    def must_not_tokenize(*args, **kwargs):
        raise AssertionError("a finished unit was tokenized again")

    monkeypatch.setattr(tasks_module, "tokenize_into", must_not_tokenize)
    again = prepare([str(corpus)], str(out), num_tasks=3, task_index=1, unit_bytes=UNIT)
    assert again["skipped"] == again["units"] == first["units"]

    with pytest.raises(ValueError, match="other inputs or settings"):
        prepare([str(corpus)], str(out), num_tasks=3, task_index=1, unit_bytes=UNIT, seed=7)


def test_the_merge_removes_only_what_the_tasks_wrote_in_a_given_tasks_dir(tmp_path, corpus):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("the user's file")
    for index in range(2):
        prepare(
            [str(corpus)], str(tmp_path / "out"), num_tasks=2, task_index=index, unit_bytes=UNIT, tasks_dir=str(shared)
        )
    prepare([str(corpus)], str(tmp_path / "out"), num_tasks=2, merge=True, unit_bytes=UNIT, tasks_dir=str(shared))
    assert files_of(shared) == ["notes.txt"] and (shared / "notes.txt").read_text() == "the user's file"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"num_tasks": 3, "task_index": 3}, "--task_index 3 must be 0 to 2"),
        ({"num_tasks": 0, "task_index": 0}, "--num_tasks 0 must be at least 1"),
        ({"task_index": 0}, "need --num_tasks"),
        ({"num_tasks": 2, "task_index": 0, "tokenizer": "bpe"}, "train it first"),
        ({"num_tasks": 2, "task_index": 0, "val_size": 3}, "--val_size does not work with --num_tasks"),
    ],
)
def test_bad_task_settings_are_one_line_errors(tmp_path, corpus, settings, message):
    with pytest.raises(ValueError, match=message):
        prepare([str(corpus)], str(tmp_path / "out"), **settings)
