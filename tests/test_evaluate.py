"""`lit-llm evaluate`: loss, perplexity and bits per byte, by hand where possible."""

import importlib.util
import json
import math

import pytest
import torch
import torch.nn.functional as F

from lit_llm.cli import main
from lit_llm.commands.evaluate import evaluate, windows
from lit_llm.commands.export import export
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import byte_tokenizer, train_bpe
from tests.test_export import FAMILIES, random_model, save_checkpoint, tiny_config

needs_safetensors = pytest.mark.skipif(
    importlib.util.find_spec("safetensors") is None, reason="needs safetensors (pip install 'lit-llm[hf]')"
)


@pytest.fixture(scope="module")
def llama_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "llama.ckpt"
    return save_checkpoint(random_model(tiny_config(FAMILIES["llama"], vocab_size=320)), byte_tokenizer(), path)


def test_bits_per_byte_of_a_uniform_model_by_hand(tmp_path, capsys):
    """All weights zero: every logit is 0, so each token costs ln(320) nats whatever the text."""
    model = GPT(tiny_config(FAMILIES["gpt2"], vocab_size=320))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    checkpoint = save_checkpoint(model, byte_tokenizer(), tmp_path / "uniform.ckpt")
    (tmp_path / "text.txt").write_text("héllo")  # 5 characters, 6 UTF-8 bytes, 6 byte tokens
    result = evaluate(str(checkpoint), [str(tmp_path / "text.txt")], json=True)["inputs"][0]
    # Scored: the 6 byte tokens and the end-of-text token that closes the document.
    assert result["tokens"] == 7 and result["bytes"] == 6
    assert result["nats"] == pytest.approx(7 * math.log(320), rel=1e-6)
    assert result["loss"] == pytest.approx(math.log(320), rel=1e-6)
    assert result["perplexity"] == pytest.approx(320, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(7 * math.log(320) / (math.log(2) * 6), rel=1e-6)
    assert json.loads(capsys.readouterr().out)["total"]["bits_per_byte"] == pytest.approx(result["bits_per_byte"])


def test_loss_is_the_mean_next_token_loss_of_the_stream(llama_checkpoint, tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak."  # shorter than the context
    (tmp_path / "a.txt").write_text(text)
    result = evaluate(str(llama_checkpoint), [str(tmp_path / "a.txt")])["inputs"][0]
    from lit_llm.checkpoint.load import load_checkpoint

    model, tokenizer = load_checkpoint(llama_checkpoint)
    stream = torch.tensor([tokenizer.eot_id, *tokenizer.encode(text), tokenizer.eot_id])
    with torch.no_grad():
        expected = F.cross_entropy(model(stream[None, :-1])[0], stream[1:]).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_long_text_is_scored_in_windows_each_token_once(llama_checkpoint, shakespeare_slice, tmp_path):
    (tmp_path / "long.txt").write_text(shakespeare_slice.read_text()[:1000])  # 1000 byte tokens, block_size 96
    from lit_llm.checkpoint.load import load_checkpoint

    model, tokenizer = load_checkpoint(llama_checkpoint)
    stream = torch.tensor([tokenizer.eot_id, *tokenizer.encode(shakespeare_slice.read_text()[:1000]), tokenizer.eot_id])
    with torch.no_grad():  # non-overlapping windows by hand
        chunks = [(stream[i : i + 96], stream[i + 1 : i + 97]) for i in range(0, len(stream) - 1, 96)]
        nats = sum(F.cross_entropy(model(x[None, : len(y)])[0], y, reduction="sum").item() for x, y in chunks)
    disjoint = evaluate(str(llama_checkpoint), [str(tmp_path / "long.txt")], stride=96, batch_size=3)["inputs"][0]
    assert disjoint["tokens"] == len(stream) - 1 == 1001
    assert disjoint["nats"] == pytest.approx(nats, rel=1e-5)
    overlapping = evaluate(str(llama_checkpoint), [str(tmp_path / "long.txt")])["inputs"][0]  # stride 48
    assert overlapping["tokens"] == 1001 and overlapping["nats"] != pytest.approx(nats, rel=1e-5)


@pytest.mark.parametrize(
    "n, context, stride", [(1001, 96, 48), (1001, 96, 96), (10, 96, 48), (97, 96, 1), (500, 64, 37)]
)
def test_windows_score_every_target_once_with_enough_context(n, context, stride):
    scored = []
    for begin, end, first in windows(n, context, stride):
        assert end - begin <= context
        assert first == begin or first - begin >= context - stride  # the promised minimum context
        scored.extend(range(first, end))
    assert scored == list(range(n))


def test_prepared_dataset_equals_its_text_and_matches_training_layout(
    byte_dataset, shakespeare_slice, llama_checkpoint, tmp_path
):
    val_text = tmp_path / "val.txt"  # prepare splits one document by position: the last 10% is val
    text = shakespeare_slice.read_text()
    val_text.write_text(text[int(len(text) * 0.9) :])
    result = evaluate(str(llama_checkpoint), [str(byte_dataset), str(val_text)], stride=96)
    prepared, raw = result["inputs"]
    metadata = json.loads((byte_dataset / "metadata.json").read_text())
    assert prepared["tokens"] == metadata["splits"]["val"]["tokens"]
    assert prepared["bytes"] == raw["bytes"] == len(val_text.read_bytes())
    assert prepared["nats"] == pytest.approx(raw["nats"], rel=1e-6)
    assert result["total"]["tokens"] == 2 * prepared["tokens"]


def test_prepared_dataset_of_another_tokenizer_is_refused(byte_dataset, shakespeare_slice, tmp_path):
    bpe = train_bpe([shakespeare_slice.read_text()], 300)
    checkpoint = save_checkpoint(GPT(tiny_config(FAMILIES["llama"], vocab_size=320)), bpe, tmp_path / "bpe.ckpt")
    mismatch = rf"{byte_dataset}/tokenizer.json \(257 tokens\) is not the tokenizer of {checkpoint} \(300 tokens\)"
    with pytest.raises(ValueError, match=f"tokenizer/model mismatch: {mismatch}"):
        evaluate(str(checkpoint), [str(byte_dataset)])


@needs_safetensors
@pytest.mark.parametrize("family", FAMILIES)
def test_exported_model_evaluates_to_the_same_loss(family, shakespeare_slice, tmp_path):
    model = random_model(tiny_config(FAMILIES[family], vocab_size=320))
    checkpoint = save_checkpoint(model, byte_tokenizer(), tmp_path / "model.ckpt")
    hf_folder = export(str(checkpoint), str(tmp_path / "hf"))
    (tmp_path / "text.txt").write_text(shakespeare_slice.read_text()[:6000])
    inputs = [str(tmp_path / "text.txt")]
    before = evaluate(str(checkpoint), inputs, context=64, stride=64, batch_size=8)["total"]
    after = evaluate(str(hf_folder), inputs, context=64, stride=64, batch_size=8)["total"]
    assert after["tokens"] == before["tokens"] and after["bytes"] == before["bytes"]
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-6)


def test_bad_options_name_the_value_and_the_fix(llama_checkpoint, byte_dataset, tmp_path):
    (tmp_path / "a.txt").write_text("some text")
    with pytest.raises(ValueError, match="--stride 200 must lie between 1 and the context 96"):
        evaluate(str(llama_checkpoint), [str(tmp_path / "a.txt")], stride=200)
    with pytest.raises(ValueError, match="--context 500 must lie between 1 and the model's block_size 96"):
        evaluate(str(llama_checkpoint), [str(tmp_path / "a.txt")], context=500)
    with pytest.raises(ValueError, match="--split 'test' is not in .*; choose one of: train, val"):
        evaluate(str(llama_checkpoint), [str(byte_dataset)], split="test")
    with pytest.raises(FileNotFoundError, match="input .*missing.txt does not exist"):
        evaluate(str(llama_checkpoint), [str(tmp_path / "missing.txt")])


def test_help_tells_a_user_how_to_run_lm_eval_tasks_offline(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the help's line wrapping
    assert "these machines" not in text
    assert "HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1" in text and "local Hugging Face cache, filled beforehand" in text
