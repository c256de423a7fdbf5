"""Multiple-choice tasks in HellaSwag's format, scored as lm-evaluation-harness scores them.

A task is a JSON Lines file, one question a line: ``{"ctx": "...", "endings": ["...", ...], "label": 2}``
(``label`` may also be a digit string, as in the hub's HellaSwag). Each ending is scored as the
continuation ``" " + ending`` of the context; ``acc`` counts questions whose most likely ending is the
labelled one, ``acc_norm`` the same with each log-likelihood divided by the ending's length in characters
(lm-eval's ``acc_norm``). The offline command (through lm-eval) and the in-training callback both score
through this file's definitions, so their accuracies match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lit_llm.evaluation.loglikelihood import continuation_logprobs, encode_pair
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import Tokenizer

TARGET_DELIMITER = " "  # lm-eval's default between a context and each choice


@dataclass(frozen=True)
class Question:
    context: str
    endings: list[str]
    label: int


@dataclass
class ChoiceCounts:
    """Questions scored and answered right, summable over ranks."""

    questions: int = 0
    correct: int = 0
    correct_norm: int = 0

    def accuracies(self) -> dict[str, float]:
        if not self.questions:
            raise ValueError("no questions were scored; the task file is empty or --limit is 0")
        return {"acc": self.correct / self.questions, "acc_norm": self.correct_norm / self.questions}


def read_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """The first ``limit`` questions of a task file (all by default), checked line by line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist; pass a JSON Lines file with ctx, endings, label")
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                questions.append(parse_question(line, f"{path}:{number}"))
            if limit is not None and len(questions) >= limit:
                break
    if not questions:
        raise ValueError(f"task file {path} holds no questions; write one JSON object a line with ctx, endings, label")
    return questions


def parse_question(line: str, where: str) -> Question:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg}); write one JSON object a line") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a JSON object with ctx, endings and label was expected, got {type(row).__name__}")
    missing = [k for k in ("ctx", "endings", "label") if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}; each line needs ctx, endings and label")
    context, endings, label = row["ctx"], row["endings"], row["label"]
    if not isinstance(context, str):
        raise ValueError(f"{where}: ctx must be a string, got {type(context).__name__}")
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) and e for e in endings):
        raise ValueError(f"{where}: endings must be a list of at least two non-empty strings")
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(endings):
        raise ValueError(
            f"{where}: label {row['label']!r} is not an index into its {len(endings)} endings (0 to {len(endings) - 1})"
        )
    return Question(context, endings, label)


def pick(scores: list[float]) -> int:
    """Index of the highest score, the first on ties (as numpy's argmax, which lm-eval uses)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def score_questions(
    model: GPT, tokenizer: Tokenizer, questions: list[Question], batch_size: int = 16, min_batches: int = 0
) -> ChoiceCounts:
    pairs = [encode_pair(tokenizer, q.context, TARGET_DELIMITER + e) for q in questions for e in q.endings]
    logprobs = iter(logprob for logprob, _ in continuation_logprobs(model, pairs, batch_size, min_batches))
    counts = ChoiceCounts()
    for q in questions:
        scores = [next(logprobs) for _ in q.endings]
        counts.questions += 1
        counts.correct += pick(scores) == q.label
        counts.correct_norm += pick([s / len(e) for s, e in zip(scores, q.endings)]) == q.label
    return counts


def batches_needed(questions: list[Question], batch_size: int) -> int:
    """Forward passes ``score_questions`` makes for these questions."""
    return -(-sum(len(q.endings) for q in questions) // batch_size)
