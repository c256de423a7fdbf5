"""Generation: batches of prompts, stop sequences, seeds, streaming, bfloat16, Hugging Face folders.

Most tests use a hand-built model whose next token is a fixed function of the current byte: after
"a" it writes "bc.XYZ\\n" and starts again, and "p" is followed by "q" and then end-of-text. Its
output is known in advance, so cuts and stops can be checked exactly.
"""

import importlib.util

import pytest
import torch

from lit_llm.cli import main
from lit_llm.commands.export import export
from lit_llm.commands.generate import generate_text
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.sampling import Continuation, generate
from lit_llm.model.tokenizer import byte_tokenizer
from tests.test_export import FAMILIES, random_model, save_checkpoint, tiny_config

CYCLE = "abc.XYZ\n"


def cycle_model() -> GPT:
    """Blocks that add nothing (all zero), and an output head that maps each byte's embedding to its successor."""
    eot = byte_tokenizer().eot_id
    successor = {ord(a): ord(b) for a, b in zip(CYCLE, CYCLE[1:] + CYCLE[0])} | {ord("p"): ord("q"), ord("q"): eot}
    config = ModelConfig(n_layer=1, n_head=2, n_embd=64, block_size=64, vocab_size=320, bias=True, tie_embeddings=False)
    model = GPT(config).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.norm_f.weight.fill_(1.0)
        model.wte.weight.normal_()
        for token, following in successor.items():
            model.lm_head.weight[following] = 10 * model.wte.weight[token]
    return model


@pytest.fixture(scope="module")
def cycle_checkpoint(tmp_path_factory):
    return str(save_checkpoint(cycle_model(), byte_tokenizer(), tmp_path_factory.mktemp("ckpt") / "cycle.ckpt"))


def test_streamed_text_stops_before_a_stop_sequence(cycle_checkpoint, capsys):
    # "Z\n" spans two tokens: the "Z" must be held back until the "\n" shows it starts the stop sequence.
    text = generate_text(cycle_checkpoint, "a", max_new_tokens=40, temperature=0.0, stop=["Z\n", "never"])
    assert text == "abc.XY"
    assert capsys.readouterr().out == "abc.XY\n"
    assert generate_text(cycle_checkpoint, "a", max_new_tokens=12, temperature=0.0) == "abc.XYZ\nabc.X"


def test_end_of_text_ends_the_continuation(cycle_checkpoint, capsys):
    assert generate_text(cycle_checkpoint, "p", max_new_tokens=40, temperature=0.0) == "pq"
    assert capsys.readouterr().out == "pq\n"


def test_a_batch_of_prompts_gives_what_each_prompt_gives_alone(cycle_checkpoint, capsys):
    prompts = ["a", "X", "p", "bc", "", "Z\na"]  # two token lengths, rows that stop at different steps
    alone = [generate_text(cycle_checkpoint, p, max_new_tokens=20, temperature=0.0, stop=["\n"]) for p in prompts]
    capsys.readouterr()
    batch = generate_text(cycle_checkpoint, prompts, max_new_tokens=20, temperature=0.0, stop=["\n"])
    assert batch == alone
    assert alone[:4] == ["abc.XYZ", "XYZ", "pq", "bc.XYZ"]
    assert capsys.readouterr().out == "\n\n".join(batch) + "\n"


def test_generate_stops_once_every_row_has_stopped():
    eot = byte_tokenizer().eot_id
    model = cycle_model()
    # Row "q" ends at the first step and row "p" at the second: two steps, not max_new_tokens.
    new = generate(model, torch.tensor([[ord("q")], [ord("p")]]), 30, temperature=0.0, stop_id=eot)
    assert new.shape == (2, 2) and new[0, 0] == eot and new[1].tolist() == [ord("q"), eot]
    calls = []
    generate(
        model,
        torch.tensor([[ord("a")]]),
        30,
        temperature=0.0,
        on_token=lambda ids: calls.append(ids) or len(calls) == 3,
    )
    assert len(calls) == 3  # on_token returning True ends generation


def test_same_seed_same_sample_other_seed_other_sample(tmp_path):
    checkpoint = str(
        save_checkpoint(random_model(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "m.ckpt")
    )
    samples = [
        generate_text(checkpoint, ["KING:", "QUEEN:"], max_new_tokens=12, temperature=1.0, top_k=None, seed=seed)
        for seed in (1, 1, 2)
    ]
    assert samples[0] == samples[1] and samples[0] != samples[2]


def test_bfloat16_generates_the_same_greedy_text(cycle_checkpoint):
    assert (
        generate_text(cycle_checkpoint, "a", max_new_tokens=20, temperature=0.0, stop=["Z"], dtype="bfloat16")
        == "abc.XY"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("safetensors") is None, reason="needs safetensors (pip install 'lit-llm[hf]')"
)
def test_a_hugging_face_folder_generates_like_its_checkpoint(cycle_checkpoint, tmp_path):
    hf_folder = export(cycle_checkpoint, str(tmp_path / "hf"))
    from_hf = generate_text(str(hf_folder), ["a", "p"], max_new_tokens=20, temperature=0.0)
    assert from_hf == generate_text(cycle_checkpoint, ["a", "p"], max_new_tokens=20, temperature=0.0)
    assert from_hf == ["abc.XYZ\nabc.XYZ\nabc.X", "pq"]


def test_continuation_shows_only_settled_text():
    tokenizer = byte_tokenizer()
    row = Continuation(tokenizer, stop=["END"])
    for byte in "hi é".encode()[:-1]:  # "é" is two bytes: the first alone is not a character yet
        row.add(byte)
    assert row.settled() == "hi "
    row.add("é".encode()[-1])
    assert row.settled() == "hi é"
    for byte in b" EN":  # might become "END"
        row.add(byte)
    assert row.settled() == "hi é " and not row.done
    row.add(ord("D"))
    assert row.done and row.settled() == row.text == "hi é "
    row.add(ord("x"))  # ignored once done
    assert row.text == "hi é "


def test_command_line_takes_a_list_of_prompts_and_stop_sequences(cycle_checkpoint, capsys):
    main(
        [
            "generate",
            "--checkpoint",
            cycle_checkpoint,
            "--prompt",
            '["a", "X"]',
            "--stop",
            '["Z"]',
            "--temperature",
            "0",
        ]
    )
    assert capsys.readouterr().out == "abc.XY\n\nXY\n"
    main(
        ["generate", "--checkpoint", cycle_checkpoint, "--prompt", "a:", "--max_new_tokens", "3", "--temperature", "0"]
    )
    assert capsys.readouterr().out.startswith("a:")
