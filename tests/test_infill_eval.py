"""Infilling and whole-line scores of held-out code (lit_llm.evaluation.code_completion)."""

from __future__ import annotations

import pytest

from lit_llm.evaluation.code_completion import (
    edit_similarity,
    function_lines,
    infill_tasks,
    line_tasks,
    score_infills,
    score_line_edits,
)
from lit_llm.model.tokenizer import train_bpe, with_fim_tokens
from tests.test_export import FAMILIES, random_model, tiny_config

SOURCE = '''"""A module."""

import os


def join(a, b):
    """Join two paths."""
    # a comment
    path = os.path.join(a, b)
    return path


class Box:
    def size(self):
        return len(self.items)
'''


@pytest.fixture(scope="module")
def tokenizer():
    return with_fim_tokens(train_bpe([SOURCE * 20, "def f(x):\n    return x\n" * 50], 300))


def test_edit_similarity_is_one_minus_the_normalised_levenshtein_distance():
    assert edit_similarity("return x", "return x") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abxd") == 0.75
    assert edit_similarity("", "abcd") == 0.0
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_infill_lines_are_function_body_lines_without_docstrings_or_comments():
    lines = SOURCE.split("\n")
    assert [lines[i].strip() for i in function_lines(SOURCE)] == [
        "path = os.path.join(a, b)",
        "return path",
        "return len(self.items)",
    ]
    assert function_lines("def broken(:\n") == []


def test_each_infill_task_puts_the_file_back_together(tokenizer):
    tasks = infill_tasks(tokenizer, [("m.py", SOURCE)], prefix_tokens=10_000, suffix_tokens=10_000, limit=None)
    assert len(tasks) == 3
    for task in tasks:
        assert tokenizer.decode(task.prefix) + task.middle + tokenizer.decode(task.suffix) == SOURCE
    assert "path = os.path.join(a, b)\n" in tasks[0].middle
    short = infill_tasks(tokenizer, [("m.py", SOURCE)], prefix_tokens=3, suffix_tokens=2, limit=2, seed=1)
    assert len(short) == 2 and all(len(t.prefix) == 3 and len(t.suffix) <= 2 for t in short)


def test_scores_count_every_task_and_stay_in_range(tokenizer):
    model = random_model(tiny_config(FAMILIES["llama"], tokenizer.vocab_size))
    tasks = infill_tasks(tokenizer, [("m.py", SOURCE)], prefix_tokens=40, suffix_tokens=20, limit=None)
    infill = score_infills(model, tokenizer, tasks, max_new_tokens=8, batch_size=2)
    lines = score_line_edits(model, tokenizer, line_tasks(tokenizer, [("m.py", SOURCE)], 40), max_new_tokens=8)
    for counts, n in ((infill, 3), (lines, 9)):
        assert counts.tasks == n and counts.exact == 0  # random weights: nothing right
        assert 0.0 <= counts.metrics()["edit_similarity"] < 0.5
