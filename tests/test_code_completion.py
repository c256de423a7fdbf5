"""Next-line code completion: prompts cut at line starts, scores by hand, and the command line."""

import json
import textwrap
from pathlib import Path

import pytest
import torch

from lit_llm.cli import main
from lit_llm.evaluation.code_completion import LineProgress, LineTask, line_tasks, read_sources, score_lines
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import byte_tokenizer, train_bpe
from tests.test_export import FAMILIES, save_checkpoint, tiny_config

SOURCE = 'def f(x):\n    """héllo → wörld"""\n    return x\n\n\nclass A:\n  pass\n'


@pytest.fixture(scope="module")
def bpe():
    """BPE trained on real Python (the standard library's textwrap), which merges a line break with indentation."""
    return train_bpe([Path(textwrap.__file__).read_text()], 400)


def zero_model(vocab_size: int) -> GPT:
    """Every logit 0: greedy decoding always picks token 0, which the byte tokenizer decodes to "\\x00"."""
    model = GPT(tiny_config(FAMILIES["llama"], vocab_size=vocab_size)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_prompts_are_whole_tokens_before_each_line_and_the_rest_is_left_to_produce(kind, bpe):
    tokenizer = byte_tokenizer() if kind == "byte" else bpe
    tasks = line_tasks(tokenizer, [("f.py", SOURCE)], context=1000)
    assert [t.line for t in tasks] == ['    """héllo → wörld"""', "    return x", "class A:", "  pass"]  # no blanks
    starts = [SOURCE.index(t.line + "\n") for t in tasks]
    for task, start in zip(tasks, starts):
        assert task.prompt[0] == tokenizer.eot_id  # documents start after end-of-text, as in training
        before = tokenizer.decode(task.prompt[1:])
        assert before + task.lead == SOURCE[:start]
    if kind == "bpe":  # a token "\n   " spans the line start: the prompt stops before it, the model writes the "\n"
        assert tasks[0].lead == "\n" and tasks[1].lead == "\n"
    else:
        assert all(t.lead == "" for t in tasks)


def test_prompts_keep_the_last_context_tokens_and_limit_draws_a_fixed_sample():
    tokenizer = byte_tokenizer()
    text = "".join(f"line {i}\n" for i in range(100))
    tasks = line_tasks(tokenizer, [("f", text)], context=16)
    assert len(tasks) == 99 and all(len(t.prompt) == 16 for t in tasks[3:])
    assert tokenizer.decode(tasks[-1].prompt) == text[: text.index("line 99")][-16:]
    drawn = line_tasks(tokenizer, [("f", text)], context=16, limit=10, seed=0)
    assert len(drawn) == 10 and drawn == line_tasks(tokenizer, [("f", text)], context=16, limit=10, seed=0)


def test_exact_match_and_accepted_characters_by_hand():
    """The zero model writes "\\x00" forever: a line of NULs is accepted whole but never ended (not exact),
    "\\x00\\x00a" is accepted for 2 of its 3 characters, "b" for none."""
    tokenizer = byte_tokenizer()
    model = zero_model(320)
    tasks = line_tasks(tokenizer, [("f", "first\n\x00\x00\x00\n\x00\x00a\nb\n")], context=64)
    counts = score_lines(model, tokenizer, tasks, batch_size=2)
    assert counts.lines == 3 and counts.exact == 0
    assert counts.accepted == pytest.approx(1 + 2 / 3 + 0)
    assert counts.metrics() == pytest.approx({"exact_match": 0.0, "accepted_chars": (1 + 2 / 3) / 3})


def test_line_progress_stops_at_the_first_wrong_character_and_counts_only_the_line():
    tokenizer = byte_tokenizer()
    task = LineTask(prompt=[tokenizer.eot_id], lead="\n", line="    return x")
    right = LineProgress(task, tokenizer)
    for token in tokenizer.encode("\n    return x\n    "):
        right.add(token)
    assert right.done and right.score() == (True, 1.0)
    wrong = LineProgress(task, tokenizer)
    for token in tokenizer.encode("\n    retry"):
        wrong.add(token)
    assert wrong.done and wrong.score() == (False, len("    ret") / len("    return x"))
    lost = LineProgress(task, tokenizer)  # wrong before the line starts: nothing of the line is accepted
    lost.add(tokenizer.encode("x")[0])
    assert lost.done and lost.score() == (False, 0.0)


def test_command_reports_the_figures_and_refuses_missing_or_empty_files(tmp_path, capsys):
    checkpoint = save_checkpoint(zero_model(320), byte_tokenizer(), tmp_path / "zero.ckpt")
    source = tmp_path / "held_out.py"
    source.write_text("first\n\x00\x00\x00\n\x00\x00a\nb\n")
    main(["evaluate", "--checkpoint", str(checkpoint), "--code_completion", str(source), "--json"])
    result = json.loads(capsys.readouterr().out)["code_completion"]
    assert result == pytest.approx({"files": 1, "lines": 3, "exact_match": 0.0, "accepted_chars": (1 + 2 / 3) / 3})
    (tmp_path / "empty.py").write_text("\n")
    for path, message in [(tmp_path / "missing.py", "does not exist"), (tmp_path / "empty.py", "is empty")]:
        with pytest.raises(SystemExit, match=message):
            main(["evaluate", "--checkpoint", str(checkpoint), "--code_completion", str(source), str(path)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sources([str(tmp_path / "missing.py")])
