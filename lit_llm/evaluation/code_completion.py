"""Next-line code completion: how much of each held-out line a model completes greedily, as an autocomplete
user feels it.

Prefixes are cut at line starts in held-out source files. The prompt is the file's tokens up to the line
start, kept whole: a BPE token that spans the cut (``"\\n    "``, a line break merged with the next line's
indentation) is left for the model to produce, rather than cut into a token boundary the model never saw in
training. The model then continues greedily until the line ends. Per line: ``exact`` when it reproduces the
line and ends it; ``accepted`` the fraction of the line's characters it got right before the first wrong one.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_llm.model.model import GPT
from lit_llm.model.sampling import Continuation, generate
from lit_llm.model.tokenizer import Tokenizer


def default_context(block_size: int) -> int:
    """Prompt tokens kept by default: half the model's context, leaving the rest for the line itself."""
    return max(1, block_size // 2)


@dataclass(frozen=True)
class LineTask:
    prompt: list[int]  # token ids before the line (the file's tokens that end at or before its start)
    lead: str  # text between the prompt's end and the line start, which the model must produce first
    line: str  # the held-out line, without its line break


@dataclass
class CompletionCounts:
    """Lines scored, lines completed exactly, and the sum of accepted fractions: summable over ranks."""

    lines: int = 0
    exact: int = 0
    accepted: float = 0.0

    def metrics(self) -> dict[str, float]:
        if not self.lines:
            raise ValueError("no lines were scored; the files hold no non-blank lines")
        return {"exact_match": self.exact / self.lines, "accepted_chars": self.accepted / self.lines}


def read_sources(files: list[str]) -> list[tuple[str, str]]:
    """(name, text) of each source file, refusing files that cannot be held out."""
    sources = []
    for name in files:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"code completion file {path} does not exist; pass held-out source files")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise ValueError(f"code completion file {path} is empty; pass source files with code in them")
        sources.append((str(path), text))
    return sources


def line_tasks(
    tokenizer: Tokenizer, sources: list[tuple[str, str]], context: int, limit: int | None = None, seed: int = 0
) -> list[LineTask]:
    """One task per non-blank line after each file's first (``limit`` of them drawn with ``seed``), each prompt
    keeping its last ``context`` tokens."""
    tasks = []
    for _, text in sources:
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)
        ends = [end for _, end in encoding.offsets]
        start, kept = 0, 0  # `kept`: tokens whose text ends at or before the line start
        for line in text.split("\n"):
            if start and line.strip():
                while kept < len(ends) and ends[kept] <= start:
                    kept += 1
                boundary = ends[kept - 1] if kept else 0
                prompt = [tokenizer.eot_id, *encoding.ids[:kept]][-context:]  # documents start after end-of-text
                tasks.append(LineTask(prompt, text[boundary:start], line))
            start += len(line) + 1
    if limit is not None and limit < len(tasks):
        tasks = random.Random(seed).sample(tasks, limit)
    return tasks


class LineProgress(Continuation):
    """One task's greedy continuation, decoded as it grows; done at its first wrong character or line end."""

    def __init__(self, task: LineTask, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer, stop=[])
        self.expected = task.lead + task.line + "\n"
        self.task = task

    def add(self, token_id: int) -> None:
        if self.done:
            return
        super().add(token_id)
        settled = self.text.rstrip("\ufffd")  # an unfinished multi-byte character is not wrong yet
        wrong = not self.expected.startswith(settled[: len(self.expected)])
        self.done = self.done or wrong or len(settled) >= len(self.expected)

    def score(self) -> tuple[bool, float]:
        """(exact, accepted fraction of the line's characters)."""
        right = 0
        for got, want in zip(self.text, self.expected):
            if got != want:
                break
            right += 1
        line = self.task.line
        accepted = min(max(right - len(self.task.lead), 0), len(line)) / len(line)
        return self.text.startswith(self.expected), accepted


@torch.inference_mode()
def score_lines(
    model: GPT, tokenizer: Tokenizer, tasks: list[LineTask], batch_size: int = 16, max_new_tokens: int | None = None
) -> CompletionCounts:
    """Greedy completion of every task; prompts of one length share a batch (the model has no padding mask)."""
    counts = CompletionCounts()
    device = model.wte.weight.device
    by_length: dict[int, list[LineTask]] = {}
    for task in tasks:
        by_length.setdefault(len(task.prompt), []).append(task)
    for group in by_length.values():
        for first in range(0, len(group), batch_size):
            rows = [LineProgress(t, tokenizer) for t in group[first : first + batch_size]]
            # A token is at least one byte: the longest expected text in bytes bounds the tokens needed.
            budget = max(len(r.expected.encode()) for r in rows)
            generate(
                model,
                torch.tensor([r.task.prompt for r in rows], device=device),
                min(budget, max_new_tokens or budget),
                temperature=0.0,
                on_token=lambda ids, rows=rows: _advance(rows, ids),
            )
            for row in rows:
                exact, accepted = row.score()
                counts.lines += 1
                counts.exact += exact
                counts.accepted += accepted
    return counts


def _advance(rows: list[LineProgress], next_ids: torch.Tensor) -> bool:
    for row, token_id in zip(rows, next_ids[:, 0].tolist()):
        row.add(token_id)
    return all(row.done for row in rows)


# ---- infilling and edit similarity ----------------------------------------------------------------------
#
# Single-line infilling (the benchmark of Bavarian et al. 2022 and of HumanEval-infilling): one line inside a
# function of a held-out file is the middle, the file's text before and after it the prefix and suffix. As for
# next-line completion, the cuts fall on the file's own token boundaries (training's FIM cuts whole tokens), so
# the middle is the line together with any text of the tokens that straddle its edges.


@dataclass(frozen=True)
class InfillTask:
    prefix: list[int]  # the file's tokens before the middle (the end kept)
    suffix: list[int]  # the file's tokens after it (the start kept)
    middle: str  # the text the model should write, then end-of-text


@dataclass
class SimilarityCounts:
    """Tasks scored, exact answers and the sum of edit similarities: summable."""

    tasks: int = 0
    exact: int = 0
    similarity: float = 0.0

    def metrics(self) -> dict[str, float]:
        if not self.tasks:
            raise ValueError("no tasks were scored; the files hold no lines inside functions")
        return {"exact_match": self.exact / self.tasks, "edit_similarity": self.similarity / self.tasks}

    def add(self, got: str, want: str) -> None:
        self.tasks += 1
        self.exact += got == want
        self.similarity += edit_similarity(got, want)


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / the longer length (1.0: equal), the measure of CodeXGLUE and RepoBench."""
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def function_lines(text: str) -> list[int]:
    """Indices (0-based) of the non-blank lines inside function bodies, docstrings left out."""
    import ast

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    lines = text.split("\n")
    chosen: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if body:
                chosen.update(range(body[0].lineno - 1, node.end_lineno))
    return sorted(i for i in chosen if lines[i].strip() and not lines[i].strip().startswith("#"))


def infill_tasks(
    tokenizer: Tokenizer, sources: list[tuple[str, str]], prefix_tokens: int, suffix_tokens: int, limit: int | None,
    seed: int = 0,
) -> list[InfillTask]:  # fmt: skip
    """One task per line inside a function of each file (``limit`` of them drawn with ``seed``)."""
    tasks = []
    for _, text in sources:
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)
        starts, ends = [s for s, _ in encoding.offsets], [e for _, e in encoding.offsets]
        line_starts = [0]
        for line in text.split("\n"):
            line_starts.append(line_starts[-1] + len(line) + 1)
        for index in function_lines(text):
            start, end = line_starts[index], line_starts[index + 1]  # the line with its line break
            before = bisect.bisect_right(ends, start)  # tokens wholly before the line
            after = bisect.bisect_left(starts, end)  # the first token wholly after it
            middle_start = ends[before - 1] if before else 0
            middle_end = starts[after] if after < len(starts) else len(text)
            tasks.append(
                InfillTask(
                    encoding.ids[:before][-prefix_tokens:],
                    encoding.ids[after:][:suffix_tokens],
                    text[middle_start:middle_end],
                )
            )
    if limit is not None and limit < len(tasks):
        tasks = random.Random(seed).sample(tasks, limit)
    return tasks


class UntilEnd(Continuation):
    """A continuation that ends at end-of-text or once it is ``limit`` characters long (a wrong answer that
    runs on is cut where it can no longer be mistaken for the right one)."""

    def __init__(self, tokenizer: Tokenizer, limit: int) -> None:
        super().__init__(tokenizer, stop=[])
        self.limit = limit

    def add(self, token_id: int) -> None:
        super().add(token_id)
        self.done = self.done or len(self.text) > self.limit


@torch.inference_mode()
def score_infills(
    model: GPT, tokenizer: Tokenizer, tasks: list[InfillTask], max_new_tokens: int = 64, batch_size: int = 16
) -> SimilarityCounts:
    """Greedy infilling of every task (PSM prompt, lit_llm.data.fim): exact match and edit similarity of the
    middle. Needs a tokenizer with the FIM tokens."""
    from lit_llm.data.fim import infill_prompt

    counts = SimilarityCounts()
    device = model.wte.weight.device
    by_length: dict[int, list[tuple[list[int], InfillTask]]] = {}
    for task in tasks:
        prompt = infill_prompt(tokenizer, task.prefix, task.suffix)
        by_length.setdefault(len(prompt), []).append((prompt, task))
    for group in by_length.values():
        for first in range(0, len(group), batch_size):
            members = group[first : first + batch_size]
            rows = [UntilEnd(tokenizer, 2 * len(task.middle) + 8) for _, task in members]
            generate(
                model,
                torch.tensor([prompt for prompt, _ in members], device=device),
                max_new_tokens,
                temperature=0.0,
                on_token=lambda ids, rows=rows: _advance(rows, ids),
            )
            for row, (_, task) in zip(rows, members):
                counts.add(row.text, task.middle)
    return counts


@torch.inference_mode()
def score_line_edits(
    model: GPT, tokenizer: Tokenizer, tasks: list[LineTask], max_new_tokens: int = 64, batch_size: int = 16
) -> SimilarityCounts:
    """Next-line completion scored as an editor shows it: the model writes until its line ends (not only until
    its first mistake, as `score_lines` does), and its line is compared whole: exact match and edit similarity."""
    counts = SimilarityCounts()
    device = model.wte.weight.device
    by_length: dict[int, list[LineTask]] = {}
    for task in tasks:
        by_length.setdefault(len(task.prompt), []).append(task)
    for group in by_length.values():
        for first in range(0, len(group), batch_size):
            members = group[first : first + batch_size]
            # the lead, then one line: stop once a line break follows the lead
            rows = [Continuation(tokenizer, stop=[]) for _ in members]
            leads = [task.lead for task in members]

            def advance(ids, rows=rows, leads=leads) -> bool:
                for row, lead, token_id in zip(rows, leads, ids[:, 0].tolist()):
                    row.add(token_id)
                    row.done = row.done or "\n" in row.text[len(lead) :]
                return all(row.done for row in rows)

            generate(model, torch.tensor([t.prompt for t in members], device=device), max_new_tokens, 0.0,
                     on_token=advance)  # fmt: skip
            for row, task in zip(rows, members):
                written = row.text[len(task.lead) :].split("\n")[0] if row.text.startswith(task.lead) else row.text
                counts.add(written, task.line)
    return counts
