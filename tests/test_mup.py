"""μP (model.architecture.parametrization: mup): its rules, training, export and the coordinate check."""

import importlib.util
from dataclasses import replace

import pytest
import torch

from benchmarks.coord_check import RECIPE, coord_check
from benchmarks.mup_sweep import Recipe, batch_loss, batches, shakespeare_tokens, train
from lit_llm.commands.export import export
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.train.optim import build_optimizer, muon_parameters
from tests.test_export import FAMILIES, bpe, random_model, save_checkpoint, text, tokenizer_for  # noqa: F401


def mup_config(**overrides) -> ModelConfig:
    fields = dict(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=320, parametrization="mup")
    return ModelConfig(**{**fields, "mup_base_width": 16, **overrides})


def group_rates(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_adam_rates_are_base_over_width_multiplier_for_hidden_matrices_only():
    model = GPT(mup_config())  # width multiplier 4
    rates = group_rates(build_optimizer(model, "adamw", learning_rate=1e-2, weight_decay=0.1, betas=(0.9, 0.95)))
    hidden = {id(p) for p in muon_parameters(model)}
    assert len(hidden) == 4 * model.config.n_layer
    for name, p in model.named_parameters():
        assert rates[id(p)] == (1e-2 / 4 if id(p) in hidden else 1e-2), name


def test_hidden_init_std_shrinks_with_sqrt_width_multiplier_and_embeddings_keep_theirs():
    torch.manual_seed(0)
    standard, mup = GPT(mup_config(parametrization="standard", mup_base_width=None)), GPT(mup_config())
    assert mup.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02 / 2, rel=0.05)
    assert standard.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert mup.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_readout_divides_the_logits_by_the_width_multiplier():
    model = GPT(mup_config())
    final_norm = []
    model.norm_f.register_forward_hook(lambda module, inputs, output: final_norm.append(output))
    with torch.no_grad():
        logits = model(torch.randint(0, 320, (2, 32)))
        torch.testing.assert_close(logits, model.lm_head(final_norm[0]) / 4)


def test_mup_model_trains():
    recipe = Recipe(steps=8, warmup_steps=2)
    config = recipe.config(128, "mup")
    assert config.width_multiplier == 2
    torch.manual_seed(0)
    model = GPT(config)
    data = batches(shakespeare_tokens()[0], recipe, recipe.steps, seed=0)
    before = batch_loss(model, data[0]).item()
    train(model, data, 1e-2, recipe)
    after = batch_loss(model, data[0]).item()
    assert after < before - 1.0, (before, after)


def test_muon_under_mup_keeps_its_rate_and_adam_the_base_rate():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon is missing in this torch")
    model = GPT(mup_config())
    optimizer = build_optimizer(model, "muon", learning_rate=1e-3, weight_decay=0.0, betas=(0.9, 0.95), muon_lr=0.02)
    rates = group_rates(optimizer)
    hidden = {id(p) for p in muon_parameters(model)}
    assert {rates[id(p)] for p in model.parameters() if id(p) in hidden} == {0.02}
    assert {rates[id(p)] for p in model.parameters() if id(p) not in hidden} == {1e-3}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parametrization": "standard"}, "mup_base_width=16 needs parametrization=mup"),
        ({"mup_base_width": 0}, "mup_base_width=0 needs parametrization=mup and a positive width"),
    ],
)
def test_bad_mup_settings_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        mup_config(**fields)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is None, reason="needs safetensors")
@pytest.mark.parametrize("family", FAMILIES)
def test_mup_export_gives_transformers_the_same_logits(family, bpe, text, tmp_path):  # noqa: F811
    transformers = pytest.importorskip("transformers")
    tokenizer = tokenizer_for(family, bpe)
    # width multiplier 4, head size 32: the query fold 1/sqrt(32) is not a power of two
    config = ModelConfig(
        n_layer=2,
        n_head=2,
        n_embd=64,
        block_size=96,
        vocab_size=448,
        parametrization="mup",
        mup_base_width=16,
        **FAMILIES[family],
    )
    model = random_model(config)
    out = export(str(save_checkpoint(model, tokenizer, tmp_path / "model.ckpt")), str(tmp_path / "hf"))
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.tensor([tokenizer.encode(text)[: config.block_size]])
    standard = GPT(replace(config, parametrization="standard", mup_base_width=None)).eval()
    standard.load_state_dict(model.state_dict())  # the same weights without the multipliers
    with torch.no_grad():
        ours, theirs, unfolded = model(x), hf_model(x).logits, standard(x)
    assert (unfolded - ours).abs().max() > 0.1  # the multipliers show: a missing fold would be far off
    assert (theirs - ours).abs().max().item() < 1e-5


def test_coord_check_logits_grow_with_width_under_standard_only():
    results = coord_check([64, 256], steps=4, learning_rate=1e-2)
    last = {(r["parametrization"], r["width"]): r["scales"] for r in results}
    for name in ("logits", "block 1"):
        standard = last["standard", 256][name][-1] / last["standard", 64][name][-1]
        mup = last["mup", 256][name][-1] / last["mup", 64][name][-1]
        assert standard > 2.5 and 0.5 < mup < 1.6, (name, standard, mup)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon is missing in this torch")
def test_coord_check_with_muon_is_flat_under_mup():
    results = coord_check([64, 256], steps=4, learning_rate=1e-2, recipe=replace(RECIPE, optimizer="muon"))
    last = {(r["parametrization"], r["width"]): r["scales"] for r in results}
    for name in ("logits", "block 1"):
        standard = last["standard", 256][name][-1] / last["standard", 64][name][-1]
        mup = last["mup", 256][name][-1] / last["mup", 64][name][-1]
        assert standard > 2.0 and 0.8 < mup < 1.25, (name, standard, mup)
