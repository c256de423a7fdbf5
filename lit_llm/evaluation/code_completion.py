"""Next-line code completion: how much of each held-out line a model completes greedily, as an autocomplete
user feels it.

Prefixes are cut at line starts in held-out source files. The prompt is the file's tokens up to the line
start, kept whole: a BPE token that spans the cut (``"\\n    "``, a line break merged with the next line's
indentation) is left for the model to produce, rather than cut into a token boundary the model never saw in
training. The model then continues greedily until the line ends. Per line: ``exact`` when it reproduces the
line and ends it; ``accepted`` the fraction of the line's characters it got right before the first wrong one.
"""

from __future__ import annotations

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
