"""Fill-in-the-middle: the tokenizer's sentinels, `prepare --fim`, the per-document rewrite at load time, the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lit_llm.data.fim import FimTransform, check_fim_settings, infill_prompt
from lit_llm.data.prepare import prepare
from lit_llm.model.tokenizer import FIM_TOKENS, byte_tokenizer, with_fim_tokens

TOKENIZER = with_fim_tokens(byte_tokenizer())
PRE, SUF, MID = TOKENIZER.fim_ids
EOT = TOKENIZER.eot_id


def test_fim_tokens_are_added_after_the_existing_ids_and_leave_every_text_alone():
    plain = byte_tokenizer()
    text = "def f(x):\n    return x  # héllo"
    assert TOKENIZER.encode(text) == plain.encode(text)
    assert (PRE, SUF, MID) == (257, 258, 259) and TOKENIZER.vocab_size == plain.vocab_size + 3
    assert plain.fim_ids is None
    assert with_fim_tokens(TOKENIZER).to_json() == TOKENIZER.to_json()  # adding twice changes nothing
    assert TOKENIZER.encode("<fim_middle>") == [MID]


def undo(sequence: list[int]) -> list[int]:
    """The whole documents (those whose end-of-text the sequence holds) a rewritten sequence came from: the
    inverse of PSM and SPM, for checking."""
    out, document = [], []
    for token in sequence:
        if token != EOT:
            document.append(token)
            continue
        if document[:2] == [PRE, SUF]:  # SPM: <pre> <suf> suffix <mid> prefix middle
            suffix_end = document.index(MID)
            document = document[suffix_end + 1 :] + document[2:suffix_end]
        elif document[:1] == [PRE]:  # PSM: <pre> prefix <suf> suffix <mid> middle
            suf, mid = document.index(SUF), document.index(MID)
            document = document[1:suf] + document[mid + 1 :] + document[suf + 1 : mid]
        out += [*document, EOT]
        document = []
    return out


def documents(rng: np.random.Generator, length: int) -> np.ndarray:
    """A sequence of random byte documents separated by end-of-text, starting and ending mid-document."""
    pieces = [rng.integers(0, 256, size=rng.integers(0, 40)).tolist() + [EOT] for _ in range(20)]
    return np.array([t for piece in pieces for t in piece][3 : 3 + length], dtype=np.int32)


@pytest.mark.parametrize("spm_rate", [0.0, 0.5, 1.0])
def test_every_document_is_rewritten_into_a_permutation_of_itself_and_the_length_is_kept(spm_rate):
    transform = FimTransform(TOKENIZER, fim_rate=1.0, fim_spm_rate=spm_rate, seed=0)
    rng = np.random.default_rng(0)
    forms = []
    for _ in range(50):
        tokens = documents(rng, 129)
        out = transform.apply(tokens, np.random.default_rng(rng.integers(1 << 30)))
        assert len(out) == len(tokens) and out.dtype == tokens.dtype
        # every document up to the cut-off last one comes back whole, and keeps its end-of-text
        whole = undo(out.tolist())
        assert whole == tokens.tolist()[: len(whole)] and len(whole) > len(tokens) - 3 * 40
        complete = [d.split() for d in " ".join(map(str, out.tolist())).split(str(EOT))[:-1] if d.strip()]
        assert all(d[0] == str(PRE) for d in complete)  # rate 1: every document is rewritten
        forms += [d[1] == str(SUF) for d in complete]
    # <fim_prefix> <fim_suffix> opens every SPM document, and a PSM one only when its prefix is empty
    spm_share = sum(forms) / len(forms)
    assert spm_share == 1.0 if spm_rate == 1.0 else spm_rate <= spm_share < spm_rate + 0.25


def test_the_rate_is_per_document_and_the_draw_repeats_for_the_same_sequence():
    transform = FimTransform(TOKENIZER, fim_rate=0.5, fim_spm_rate=0.5, seed=7)
    tokens = torch.from_numpy(documents(np.random.default_rng(1), 4097))
    once, again = transform(tokens), transform(tokens.clone())
    assert torch.equal(once, again) and once.dtype == tokens.dtype  # a resumed run rewrites it the same way
    n_documents = int((tokens == EOT).sum())
    assert 0.3 * n_documents < int((once == PRE).sum()) < 0.7 * n_documents
    assert torch.equal(FimTransform(TOKENIZER, 0.0, 0.5, seed=7)(tokens), tokens)
    assert not torch.equal(FimTransform(TOKENIZER, 0.5, 0.5, seed=8)(tokens), once)  # the data seed matters


def test_settings_are_checked_before_training():
    with pytest.raises(ValueError, match=r"data.fim_rate=0.5: data/x's tokenizer.json has no <fim_prefix>.*--fim"):
        check_fim_settings(0.5, 0.5, byte_tokenizer(), "data/x")
    with pytest.raises(ValueError, match=r"data.fim_spm_rate=2 must lie in \[0, 1\]"):
        check_fim_settings(0.5, 2, TOKENIZER, "data/x")
    check_fim_settings(0.0, 0.5, byte_tokenizer(), "data/x")  # off: any data


def test_infill_prompt_is_a_new_psm_document():
    assert infill_prompt(TOKENIZER, [1, 2], [3]) == [EOT, PRE, 1, 2, SUF, 3, MID]


def test_prepare_fim_adds_the_tokens_and_writes_the_same_ids(tmp_path, shakespeare_slice):
    plain = prepare([str(shakespeare_slice)], str(tmp_path / "plain"), tokenizer="bpe", vocab_size=300, num_workers=1)
    fim = prepare(
        [str(shakespeare_slice)], str(tmp_path / "fim"), tokenizer="bpe", vocab_size=300, num_workers=1, fim=True
    )
    assert fim["vocab_size"] == plain["vocab_size"] + 3
    saved = json.loads((tmp_path / "fim" / "tokenizer.json").read_text())
    assert [t["content"] for t in saved["added_tokens"]][-3:] == list(FIM_TOKENS)
    for split in ("train", "val"):
        fim_shards, plain_shards = (sorted((tmp_path / name / split).glob("*.bin")) for name in ("fim", "plain"))
        assert [p.read_bytes() for p in fim_shards] == [p.read_bytes() for p in plain_shards]


def test_train_batches_are_rewritten_and_validation_is_not(tmp_path, shakespeare_documents):
    from lit_llm.train.datamodule import TokenDataModule

    prepare([str(shakespeare_documents)], str(tmp_path / "data"), num_workers=1, fim=True, val_fraction=0.4)
    data = TokenDataModule(str(tmp_path / "data"), batch_size=4, seq_len=256, num_workers=0, fim_rate=1.0)
    prefix, _, _ = data.tokenizer.fim_ids
    train = next(iter(data.train_dataloader()))
    val = next(iter(data.val_dataloader()))
    assert train.shape == val.shape == (4, 257)
    assert bool((train == prefix).any(dim=1).all())  # one document per row at least: each row starts with FIM
    assert not bool((val == prefix).any())


def test_export_lists_the_fim_tokens_for_transformers(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from lit_llm.commands.export import export
    from tests.test_export import FAMILIES, random_model, save_checkpoint, tiny_config

    model = random_model(tiny_config(FAMILIES["llama"], TOKENIZER.vocab_size))
    folder = export(str(save_checkpoint(model, TOKENIZER, tmp_path / "m.ckpt")), str(tmp_path / "hf"))
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert set(FIM_TOKENS) <= set(loaded.all_special_tokens)  # read from additional_special_tokens (v4 and v5)
    assert loaded.convert_tokens_to_ids(list(FIM_TOKENS)) == [PRE, SUF, MID]
    assert loaded("<fim_prefix>ab<fim_middle>")["input_ids"] == [PRE, 97, 98, MID]
