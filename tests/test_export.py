"""Hugging Face export and import: transformers must compute what lit-llm computes, on real text."""

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint.files import CHECKPOINT_KEY
from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.cli import main
from lit_llm.commands.export import export
from lit_llm.hf.convert import EXPORT_FILES, load_hf_model
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.sampling import generate
from lit_llm.model.tokenizer import Tokenizer, byte_tokenizer, train_bpe

os.environ["HF_HUB_OFFLINE"] = "1"  # everything below must load from disk
# Export and import need the `hf` extra; transformers itself only the tests that load into it.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("safetensors") is None, reason="needs safetensors (pip install 'lit-llm[hf]')"
)

FAMILIES = {
    "gpt2": {"positions": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True, "tie_embeddings": True},
    "llama": {
        "positions": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "bias": False,
        "tie_embeddings": False,
        "n_kv_head": 2,
        "rope_base": 500000.0,
    },
}
# The other switch settings each class can represent.
VARIANTS = {
    "gpt2-no-bias-untied": {**FAMILIES["gpt2"], "bias": False, "tie_embeddings": False},
    "gpt2-tanh-gelu": {**FAMILIES["gpt2"], "gelu": "tanh"},
    "llama-bias-tied-mha": {**FAMILIES["llama"], "bias": True, "tie_embeddings": True, "n_kv_head": 4},
}


def tiny_config(family: dict, vocab_size: int) -> ModelConfig:
    return ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=96, vocab_size=vocab_size, **family)


def random_model(config: ModelConfig, seed: int = 0) -> GPT:
    """Weights far from init (norm gains around 1, everything else N(0, 0.1), biases included) so that
    every parameter shows in the logits, and greedy decoding has no near-ties."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def save_checkpoint(model: GPT, tokenizer: Tokenizer, path: Path) -> Path:
    """A minimal lit-llm checkpoint, as `lit-llm fit` writes it (weights under ``model.``, config, tokenizer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model_config": model.config.to_dict(), "tokenizer": tokenizer.to_json()}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, CHECKPOINT_KEY: meta}, path)
    return path


@pytest.fixture(scope="module")
def bpe(shakespeare_slice) -> Tokenizer:
    return train_bpe([shakespeare_slice.read_text()], 400)


@pytest.fixture(scope="module")
def text(shakespeare_slice) -> str:
    return shakespeare_slice.read_text()[20_000:21_000]


def tokenizer_for(family: str, bpe: Tokenizer) -> Tokenizer:
    return bpe if family.startswith("gpt2") else byte_tokenizer()  # each family with one real tokenizer kind


@pytest.mark.parametrize("family", [*FAMILIES, *VARIANTS])
def test_transformers_loads_the_export_with_the_same_logits_and_greedy_tokens(family, bpe, text, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = tokenizer_for(family, bpe)
    model = random_model(tiny_config({**FAMILIES, **VARIANTS}[family], vocab_size=448))  # padded beyond the tokenizer
    out = export(str(save_checkpoint(model, tokenizer, tmp_path / "model.ckpt")), str(tmp_path / "hf"))
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        assert (out / name).is_file(), name

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf_model).__name__ == ("GPT2LMHeadModel" if family.startswith("gpt2") else "LlamaForCausalLM")
    ids = hf_tokenizer(text)["input_ids"]
    assert ids == tokenizer.encode(text) and hf_tokenizer.decode(ids) == text
    assert hf_tokenizer.eos_token_id == tokenizer.eot_id
    x = torch.tensor([ids[: model.config.block_size]])
    with torch.no_grad():
        diff = (hf_model(x).logits - model(x)).abs().max().item()
    print(f"{family}: max |logit difference| = {diff:.2e}")
    assert diff < 1e-4
    prompt = x[:, :16]
    ours = generate(model, prompt, 40, temperature=0.0)
    theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=40, do_sample=False)
    assert torch.equal(ours, theirs[:, 16:])


# Not the bias-free variants: a GPT-2 import always has (zero) biases.
@pytest.mark.parametrize("family", [*FAMILIES, "gpt2-tanh-gelu"])
def test_import_gives_back_the_exported_model(family, bpe, tmp_path):
    tokenizer = tokenizer_for(family, bpe)
    model = random_model(tiny_config({**FAMILIES, **VARIANTS}[family], vocab_size=448))
    out = export(str(save_checkpoint(model, tokenizer, tmp_path / "model.ckpt")), str(tmp_path / "hf"))
    config, state, imported_tokenizer = load_hf_model(out)
    assert config == model.config
    assert imported_tokenizer.to_json() == tokenizer.to_json()
    rebuilt = GPT(config)
    rebuilt.load_state_dict(state)  # strict: every parameter comes back, tied ones included
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name


@pytest.mark.parametrize("family", FAMILIES)
def test_import_reads_folders_that_transformers_saved(family, bpe, text, tmp_path):
    """Not only our own export: a model made and saved by transformers itself (its config keys, its names)."""
    transformers = pytest.importorskip("transformers")
    tokenizer = tokenizer_for(family, bpe)
    if family == "gpt2":
        hf_config = transformers.GPT2Config(
            n_layer=2, n_head=4, n_embd=64, n_positions=96, vocab_size=448, activation_function="gelu_new"
        )
        hf_model = transformers.GPT2LMHeadModel(hf_config)
    else:
        hf_config = transformers.LlamaConfig(
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_size=64,
            intermediate_size=160,
            max_position_embeddings=96,
            vocab_size=448,
            rms_norm_eps=1e-5,
            rope_theta=50000.0,
        )
        hf_model = transformers.LlamaForCausalLM(hf_config)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf_model.eval().save_pretrained(tmp_path / "hf")
    tokenizer.save(tmp_path / "hf" / "tokenizer.json")

    model, _ = load_checkpoint(tmp_path / "hf")
    x = torch.tensor([tokenizer.encode(text)[:96]])
    with torch.no_grad():
        assert (hf_model(x).logits - model(x)).abs().max().item() < 1e-4


def test_old_gpt2_names_without_the_transformer_prefix_are_read(bpe, tmp_path):
    from safetensors.torch import load_file, save_file

    model = random_model(tiny_config(FAMILIES["gpt2"], vocab_size=448))
    out = export(str(save_checkpoint(model, bpe, tmp_path / "model.ckpt")), str(tmp_path / "hf"))
    weights = load_file(out / "model.safetensors")
    save_file({k.removeprefix("transformer."): v for k, v in weights.items()}, out / "model.safetensors")
    _, state, _ = load_hf_model(out)
    assert torch.equal(state["blocks.1.attn.qkv.weight"], model.blocks[1].attn.qkv.weight)


def test_run_folders_and_sharded_checkpoints_export_the_same_weights(bpe, tmp_path):
    import torch.distributed.checkpoint as dcp

    model = random_model(tiny_config(FAMILIES["llama"], vocab_size=448))
    plain = save_checkpoint(model, bpe, tmp_path / "plain.ckpt")
    save_checkpoint(model, bpe, tmp_path / "run" / "checkpoints" / "last.ckpt")
    sharded = tmp_path / "sharded.ckpt"  # the layout Lightning's FSDP2 strategy writes
    checkpoint = torch.load(plain, weights_only=True)
    dcp.save({"state_dict": checkpoint["state_dict"]}, checkpoint_id=str(sharded), no_dist=True)
    torch.save({CHECKPOINT_KEY: checkpoint[CHECKPOINT_KEY]}, sharded / "meta.pt")
    written = [
        export(str(source), str(tmp_path / f"hf-{i}")) for i, source in enumerate((plain, tmp_path / "run", sharded))
    ]
    contents = {(folder / "model.safetensors").read_bytes() for folder in written}
    assert len(contents) == 1


@pytest.mark.parametrize(
    "switches, message",
    [
        (
            {"positions": "rope", "norm": "layernorm", "mlp": "gelu"},
            "needs norm=rmsnorm but this model has norm=layernorm",
        ),
        ({"positions": "rope", "norm": "rmsnorm", "mlp": "gelu"}, "needs mlp=swiglu but this model has mlp=gelu"),
        (
            {"positions": "learned", "norm": "rmsnorm", "mlp": "gelu"},
            "needs norm=layernorm but this model has norm=rmsnorm",
        ),
        (
            {"positions": "learned", "norm": "layernorm", "mlp": "swiglu"},
            "needs mlp=gelu but this model has mlp=swiglu",
        ),
        ({**FAMILIES["gpt2"], "n_kv_head": 2}, "n_kv_head=2 .grouped-query attention. but GPT2LMHeadModel"),
    ],
)
def test_configs_no_transformers_class_represents_are_refused(switches, message, tmp_path):
    checkpoint = save_checkpoint(GPT(tiny_config(switches, vocab_size=320)), byte_tokenizer(), tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match=message):
        export(str(checkpoint), str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


def test_existing_output_is_kept_and_only_an_export_is_overwritten(tmp_path):
    checkpoint = save_checkpoint(GPT(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "model.ckpt")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    with pytest.raises(
        FileExistsError, match="already exists and is not empty; choose another --output_dir or pass --overwrite"
    ):
        export(str(checkpoint), str(tmp_path / "hf"))
    with pytest.raises(FileExistsError, match="holds no config.json, so lit-llm did not write it"):
        export(str(checkpoint), str(tmp_path / "hf"), overwrite=True)
    assert (tmp_path / "hf" / "notes.txt").read_text() == "mine"
    export(str(checkpoint), str(tmp_path / "export"))
    export(str(checkpoint), str(tmp_path / "export"), overwrite=True)  # an export replaces an export
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == sorted(EXPORT_FILES)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_bfloat16_export_halves_the_weights(tmp_path):
    checkpoint = save_checkpoint(GPT(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "model.ckpt")
    full, half = (
        export(str(checkpoint), str(tmp_path / "fp32")),
        export(str(checkpoint), str(tmp_path / "bf16"), dtype="bfloat16"),
    )
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == "bfloat16"
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.51
    config, state, _ = load_hf_model(half)
    assert state["wte.weight"].dtype == torch.bfloat16 and config.n_kv_head == 2


def test_bad_inputs_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt does not exist"):
        export(str(tmp_path / "missing.ckpt"), str(tmp_path / "a"))
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.ckpt is not a readable checkpoint"):
        export(str(tmp_path / "corrupt.ckpt"), str(tmp_path / "b"))
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt was not written by lit-llm"):
        export(str(tmp_path / "other.ckpt"), str(tmp_path / "c"))

    out = export(
        str(save_checkpoint(GPT(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "m.ckpt")),
        str(tmp_path / "hf"),
    )
    (out / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json; save a fast tokenizer beside the model"):
        load_hf_model(out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(ValueError, match="model_type='mistral'; lit-llm imports gpt2 and llama models only"):
        load_hf_model(out)
    (out / "config.json").write_text(json.dumps({**config, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
    with pytest.raises(ValueError, match="RoPE scaling 'llama3' is not supported"):
        load_hf_model(out)


def test_tokenizer_bigger_than_the_model_vocabulary_is_refused(bpe, tmp_path):
    model = GPT(tiny_config(FAMILIES["llama"], 320))
    out = export(str(save_checkpoint(model, byte_tokenizer(), tmp_path / "m.ckpt")), str(tmp_path / "hf"))
    bpe.save(out / "tokenizer.json")  # 400 tokens for a 320-row embedding
    with pytest.raises(
        ValueError, match="tokenizer/model mismatch .* has 400 tokens but the model's vocab_size is 320"
    ):
        load_hf_model(out)


def test_export_without_safetensors_names_the_extra_in_one_line(tmp_path, monkeypatch, capsys):
    checkpoint = save_checkpoint(GPT(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "m.ckpt")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors now fails, as when not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "lit-llm export: error: safetensors is not installed (Hugging Face folders store their weights with it); "
        'install the hf extra: pip install "lit-llm[hf]"\n'
    )
    assert not (tmp_path / "hf").exists()


def test_every_exported_file_gets_the_mode_the_umask_gives_a_new_file(tmp_path):
    """safetensors writes model.safetensors as a 0600 temporary file; a group-writable umask shows any stray mode."""
    checkpoint = save_checkpoint(GPT(tiny_config(FAMILIES["llama"], 320)), byte_tokenizer(), tmp_path / "m.ckpt")
    previous = os.umask(0o002)
    try:
        out = export(str(checkpoint), str(tmp_path / "hf"))
    finally:
        os.umask(previous)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir()}
    assert modes == {name: oct(0o664) for name in EXPORT_FILES}
