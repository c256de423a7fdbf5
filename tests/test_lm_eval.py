"""lit-llm as an lm-evaluation-harness model: lm-eval's model interface, agreement with lm-eval's own `hf`
model on the exported folder, `lit-llm evaluate`'s bits per byte, in-training evaluation, bad task files."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.cli import main
from lit_llm.commands.evaluate import evaluate, windows
from lit_llm.commands.export import export
from lit_llm.evaluation.multiple_choice import read_questions
from lit_llm.model.tokenizer import train_bpe
from tests.conftest import REPO
from tests.test_export import FAMILIES, random_model, save_checkpoint, tiny_config
from tests.test_pipeline import FAST, scalars

os.environ["HF_DATASETS_OFFLINE"] = "1"  # every task below is local
os.environ["HF_HUB_OFFLINE"] = "1"
lm_eval = pytest.importorskip("lm_eval", reason='needs lm-eval (pip install "lit-llm[eval]")')
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.model import LM  # noqa: E402

from lit_llm.evaluation.harness import TASKS_DIR, LitLLMEval, choice_task, evaluate_tasks, task_manager  # noqa: E402

CLOZE = TASKS_DIR / "shakespeare_cloze.jsonl"


@pytest.fixture(scope="module")
def checkpoint(shakespeare_slice, tmp_path_factory):
    """A Llama-family model (RoPE, grouped-query attention) with a BPE tokenizer, whose merges cross the seam
    between a context and its continuation."""
    tokenizer = train_bpe([shakespeare_slice.read_text()], 400)
    model = random_model(tiny_config(FAMILIES["llama"], vocab_size=448))
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("lm_eval") / "model.ckpt")


@pytest.fixture(scope="module")
def text_task(checkpoint, shakespeare_slice, tmp_path_factory):
    """One document of exactly three 96-token contexts (so lm-eval's windows and `evaluate`'s coincide) as a
    text file and as an lm-eval rolling task."""
    _, tokenizer = load_checkpoint(checkpoint)
    ids = tokenizer.encode(shakespeare_slice.read_text()[30_000:32_000])
    pieces = (tokenizer.decode(ids[start : start + 288]) for start in range(20))
    text = next(t for t in pieces if len(tokenizer.encode(t)) == 288)  # a cut that re-encodes to 288 tokens
    folder = tmp_path_factory.mktemp("text")
    (folder / "text.txt").write_text(text)
    (folder / "text.jsonl").write_text(json.dumps({"text": text}) + "\n")
    config = {
        "task": "one_text",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "text.jsonl")}},
        "output_type": "loglikelihood_rolling",
        "test_split": "test",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
    }
    return folder / "text.txt", config


def run_harness(model, model_args, tasks):
    return lm_eval.simple_evaluate(
        model,
        model_args=model_args,
        tasks=tasks,
        task_manager=task_manager([str(TASKS_DIR)], tasks),
        limit=24,
        batch_size=4,
        device="cpu",
        bootstrap_iters=0,
        log_samples=True,
    )


@pytest.fixture(scope="module")
def native_and_hf(checkpoint, text_task, tmp_path_factory):
    pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate")
    folder = export(str(checkpoint), str(tmp_path_factory.mktemp("hf") / "model"))
    tasks = ["shakespeare_cloze", "shakespeare_rolling", text_task[1]]
    native = run_harness("lit-llm", f"checkpoint={checkpoint},dtype=float32", tasks)
    hf = run_harness("hf", f"pretrained={folder},dtype=float32", tasks)
    return native, hf


def test_adapter_is_an_lm_eval_model_with_each_request_type(checkpoint):
    lm = lm_eval.api.registry.get_model("lit-llm").create_from_arg_string(
        f"checkpoint={checkpoint}", {"batch_size": "3", "device": None}
    )
    assert isinstance(lm, LM) and lm.batch_size == 3 and lm.max_length == 96
    assert lm_eval.api.registry.get_model("hf").__name__ == "HFLM"  # lm-eval's own types are still known
    contexts = ["KING RICHARD:\nWhat say you", "First Citizen:", ""]
    options = {"until": ["\n\n"], "max_gen_toks": 12}
    generated = lm.generate_until([Instance("generate_until", {}, (c, options), i) for i, c in enumerate(contexts)])
    assert len(generated) == 3 and all(isinstance(g, str) and "\n\n" not in g for g in generated)
    model, tokenizer = load_checkpoint(checkpoint)
    for context, text in zip(contexts, generated):  # greedy decoding by hand, without the KV cache
        ids = tokenizer.encode(context) or [tokenizer.eot_id]
        with torch.no_grad():
            for _ in range(12):
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        prompt_length = len(tokenizer.encode(context) or [tokenizer.eot_id])
        assert text == tokenizer.decode(ids[prompt_length:]).split("\n\n")[0].split("<|endoftext|>")[0]
    # The greedy flag: does every continuation token have the highest logit?
    pairs = [("First Citizen:", " Before we"), ("", "KING"), ("First Citizen:", " zzzz qqqq")]
    scored = lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])
    for (context, continuation), (logprob, greedy) in zip(pairs, scored):
        context_ids = tokenizer.encode(context) or [tokenizer.eot_id]
        continuation_ids = tokenizer.encode(context + continuation)[len(tokenizer.encode(context)) :]
        ids = torch.tensor([context_ids + continuation_ids])
        with torch.no_grad():
            logprobs = F.log_softmax(model(ids[:, :-1])[0, len(context_ids) - 1 :], dim=-1)
        target = torch.tensor(continuation_ids)
        assert logprob == pytest.approx(logprobs.gather(1, target[:, None]).sum().item(), abs=1e-4)
        assert greedy == bool((logprobs.argmax(dim=-1) == target).all())
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("To be, or not to be.",), 0)])
    ids = torch.tensor([tokenizer.eot_id, *tokenizer.encode("To be, or not to be.")])
    with torch.no_grad():
        by_hand = -F.cross_entropy(model(ids[None, :-1])[0], ids[1:], reduction="sum").item()
    assert rolling[0] == pytest.approx(by_hand, abs=1e-4)


def test_native_and_hf_give_the_same_loglikelihoods_accuracies_and_perplexities(native_and_hf):
    native, hf = native_and_hf
    ours = {s["doc_id"]: s["resps"] for s in native["samples"]["shakespeare_cloze"]}
    theirs = {s["doc_id"]: s["resps"] for s in hf["samples"]["shakespeare_cloze"]}
    assert len(ours) == 24 and ours.keys() == theirs.keys()
    deltas = [abs(a[0][0] - b[0][0]) for d in ours for a, b in zip(ours[d], theirs[d])]
    print(f"per-choice |Δ loglikelihood|: max {max(deltas):.2e} over {len(deltas)} choices")
    assert max(deltas) < 1e-4
    assert [a[0][1] for d in ours for a in ours[d]] == [b[0][1] for d in theirs for b in theirs[d]]  # is_greedy
    for metric in ("acc,none", "acc_norm,none"):
        assert native["results"]["shakespeare_cloze"][metric] == hf["results"]["shakespeare_cloze"][metric]
    for task in ("shakespeare_rolling", "one_text"):
        for metric in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"):
            print(task, metric, native["results"][task][metric], hf["results"][task][metric])
            assert native["results"][task][metric] == pytest.approx(hf["results"][task][metric], rel=1e-6)


def test_evaluate_bits_per_byte_is_lm_evals_plus_the_closing_end_of_text(checkpoint, text_task):
    """`lit-llm evaluate` scores a document followed by end-of-text, as training lays it out; lm-eval scores the
    document alone. With the stride at the context and a document of whole contexts the windows coincide, so
    the totals differ by exactly the closing end-of-text token's loss (a window of its own)."""
    path, config = text_task
    ours = evaluate(str(checkpoint), [str(path)], stride=96)["inputs"][0]
    lm = LitLLMEval(str(checkpoint), batch_size=4, dtype="float32")
    manager = task_manager([str(TASKS_DIR)], [config])
    harness = lm_eval.simple_evaluate(lm, tasks=[config], task_manager=manager, bootstrap_iters=0)["results"]
    harness = harness["one_text"]
    n_bytes = len(path.read_text().encode())
    assert ours["bytes"] == n_bytes
    harness_nats = harness["bits_per_byte,none"] * math.log(2) * n_bytes
    model, tokenizer = load_checkpoint(checkpoint)
    stream = torch.tensor([tokenizer.eot_id, *tokenizer.encode(path.read_text()), tokenizer.eot_id])
    begin, end, _ = windows(len(stream) - 1, 96, 96)[-1]
    with torch.no_grad():
        closing = -F.log_softmax(model(stream[None, begin:end])[0, -1], dim=-1)[tokenizer.eot_id].item()
    print(f"bits/byte: lit-llm evaluate {ours['bits_per_byte']:.6f}, lm-eval {harness['bits_per_byte,none']:.6f}")
    assert ours["nats"] - harness_nats == pytest.approx(closing, abs=1e-3)


def test_shipped_tasks_and_jsonl_files_through_the_command(checkpoint, capsys):
    main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--tasks",
            f"shakespeare_rolling,{CLOZE}",
            "--limit",
            "8",
            "--json",
        ]
    )
    tasks = json.loads(capsys.readouterr().out)["tasks"]
    assert set(tasks) == {"shakespeare_rolling", "shakespeare_cloze"}
    assert 0 <= tasks["shakespeare_cloze"]["acc"] <= 1 and tasks["shakespeare_rolling"]["bits_per_byte"] > 0
    # The .jsonl file and the shipped YAML define one task: the same scores.
    lm = LitLLMEval(str(checkpoint), dtype="float32")
    assert evaluate_tasks(lm, ["shakespeare_cloze"], 8, None)["shakespeare_cloze"] == tasks["shakespeare_cloze"]
    with pytest.raises(SystemExit, match="unknown task.*hellaswagg"):
        main(["evaluate", "--checkpoint", str(checkpoint), "--tasks", "hellaswagg"])


def test_lm_eval_command_line_with_the_model_registered(checkpoint):
    """`python -m lit_llm.evaluation.harness` is lm-eval's own CLI, with --model lit-llm and the shipped tasks."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_llm.evaluation.harness",
            "--model",
            "lit-llm",
            "--model_args",
            f"checkpoint={checkpoint}",
            "--tasks",
            "shakespeare_cloze",
            "--limit",
            "4",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "shakespeare_cloze" in out.stdout and "acc_norm" in out.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"ctx": "a", "endings": ["b", "c"]}\n', "line 1.*missing field.*label"),  # noqa: E501
        (
            '{"ctx": "a", "endings": ["b", "c"], "label": 0}\n{"ctx": "a", "endings": ["b", "c"], "label": 2}\n',
            ":2: label 2 is not an index into its 2 endings",
        ),
        ("\n\n", "holds no questions"),
        ('{"ctx": "a", "endings": ["b"], "label": 0}\n', "at least two non-empty strings"),
        ("not json\n", "not valid JSON"),
    ],
)
def test_bad_task_files_give_one_line_errors(content, message, checkpoint, tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text(content)
    message = message.replace("line 1", f"{path}:1")
    with pytest.raises(ValueError, match=message):
        read_questions(path)
    with pytest.raises(ValueError, match=message):
        choice_task(str(path))
    with pytest.raises(SystemExit, match=message) as exit_info:
        main(["evaluate", "--checkpoint", str(checkpoint), "--tasks", str(path)])
    assert "\n" not in str(exit_info.value)


def test_without_lm_eval_the_command_names_the_extra(checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    monkeypatch.delitem(sys.modules, "lit_llm.evaluation.harness")
    with pytest.raises(SystemExit, match=r'pip install "lit-llm\[eval\]"'):
        main(["evaluate", "--checkpoint", str(checkpoint), "--tasks", "shakespeare_cloze"])


def test_training_logs_downstream_tags_with_the_offline_accuracy(byte_dataset, shakespeare_slice, tmp_path, capsys):
    """fit scores the cloze task and code completion at every validation; the last scores are those of
    `lit-llm evaluate` on last.ckpt."""
    source = tmp_path / "held_out.txt"
    source.write_text(shakespeare_slice.read_text()[50_000:52_000])
    config = tmp_path / "eval.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lit_llm.train.downstream.DownstreamEval\n      init_args:\n"
        f"        tasks: [{CLOZE}]\n        limit: 12\n        code_files: [{source}]\n        code_lines: 20\n"
    )
    run_dir = tmp_path / "run"
    main(
        [
            "fit",
            *FAST,
            "--config",
            str(config),
            "--data.data_dir",
            str(byte_dataset),
            "--trainer.default_root_dir",
            str(run_dir),
            "--trainer.max_steps",
            "40",
            "--trainer.val_check_interval",
            "20",
            "--model.architecture.block_size",
            "64",  # the longest cloze ending, 38 characters, must fit the context with its space
        ]
    )
    acc, acc_norm = scalars(run_dir, "eval/shakespeare_cloze/acc"), scalars(run_dir, "eval/shakespeare_cloze/acc_norm")
    exact, accepted = scalars(run_dir, "eval/code/exact_match"), scalars(run_dir, "eval/code/accepted_chars")
    assert len(acc) == len(acc_norm) == len(exact) == len(accepted) == 2  # validations at steps 20 and 40
    assert all(min(abs(v - k / 12) for k in range(13)) < 1e-6 for _, v in acc + acc_norm)  # counts of 12
    capsys.readouterr()
    main(
        [
            "evaluate",
            "--checkpoint",
            str(run_dir),
            "--tasks",
            str(CLOZE),
            "--limit",
            "12",
            "--code_completion",
            str(source),
            "--code_lines",
            "20",
            "--json",
        ]
    )
    offline = json.loads(capsys.readouterr().out)
    assert offline["tasks"]["shakespeare_cloze"]["acc"] == pytest.approx(acc[-1][1])
    assert offline["tasks"]["shakespeare_cloze"]["acc_norm"] == pytest.approx(acc_norm[-1][1])
    assert offline["code_completion"]["exact_match"] == pytest.approx(exact[-1][1])
    assert offline["code_completion"]["accepted_chars"] == pytest.approx(accepted[-1][1], abs=1e-6)


def test_callback_refuses_bad_task_files_before_training(tmp_path):
    from lit_llm.train.downstream import DownstreamEval

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl holds no questions"):
        DownstreamEval(tasks=[str(tmp_path / "empty.jsonl")])
