import pytest
import torch
import torch.nn.functional as F

from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.presets import PRESETS
from lit_llm.model.sampling import generate

VARIANTS = {
    "gpt2": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=True),
    "llama-gqa": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False, n_kv_head=2),
    "mixed": dict(positions="rope", norm="layernorm", mlp="gelu", bias=False, tie_embeddings=True, n_kv_head=1),
}


def tiny(**overrides) -> ModelConfig:
    base = dict(n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=64)
    return ModelConfig(**{**base, **overrides})


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_shape_and_parameter_count(variant):
    config = tiny(**VARIANTS[variant])
    model = GPT(config)
    logits = model(torch.randint(0, 64, (3, 17)))
    assert logits.shape == (3, 17, 64)
    assert sum(p.numel() for p in model.parameters()) == config.num_params()


@pytest.mark.parametrize("variant", VARIANTS)
def test_future_tokens_never_change_past_logits(variant):
    torch.manual_seed(0)
    model = GPT(tiny(**VARIANTS[variant])).eval()
    x = torch.randint(0, 64, (2, 20))
    changed = x.clone()
    changed[:, 12:] = torch.randint(0, 64, (2, 8))
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_matches_full_forward(variant):
    torch.manual_seed(0)
    model = GPT(tiny(**VARIANTS[variant])).eval()
    x = torch.randint(0, 64, (2, 24))
    full = model(x)
    model.setup_kv_cache(2)
    pieces = [model(x[:, :10], start=0), model(x[:, 10:11], start=10), model(x[:, 11:], start=11)]
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_generation_with_cache_equals_without(variant):
    torch.manual_seed(0)
    model = GPT(tiny(**VARIANTS[variant])).eval()
    prompt = torch.randint(0, 64, (2, 5))
    # 40 new tokens run past block_size=32, so the sliding-window path is covered too.
    for kwargs in (dict(temperature=0.0), dict(temperature=1.0, top_k=10, top_p=0.9)):
        with_cache = generate(model, prompt, 40, use_cache=True, generator=torch.Generator().manual_seed(3), **kwargs)
        without = generate(model, prompt, 40, use_cache=False, generator=torch.Generator().manual_seed(3), **kwargs)
        assert torch.equal(with_cache, without)
        assert with_cache.shape == (2, 40)


def test_tiny_model_overfits_short_text():
    torch.manual_seed(0)
    text = b"To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer."
    data = torch.tensor(list(text))[None]
    model = GPT(tiny(vocab_size=256, block_size=128))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(model(data[:, :-1]).flatten(0, 1), data[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 5.0  # ~ln(256) at init
    assert losses[-1] < 0.3


def test_residual_projections_use_scaled_init():
    model = GPT(ModelConfig(n_layer=8, n_head=4, n_embd=256, block_size=16, vocab_size=64))
    assert abs(model.blocks[0].mlp.proj.weight.std().item() - 0.02 / 4) < 5e-4
    assert abs(model.blocks[0].mlp.fc.weight.std().item() - 0.02) < 5e-4


def test_presets_span_cpu_to_1b():
    sizes = {name: ModelConfig.from_preset(name).with_vocab(257).num_params() for name in PRESETS}
    assert sizes["micro"] < 1.5e6
    assert abs(sizes["gpt2-124m"] - 124.4e6) < 0.5e6
    assert 0.9e9 < sizes["llama-1b"] < 1.2e9


def test_flops_per_token_matches_nanogpt_formula():
    config = ModelConfig.from_preset("gpt2-124m")
    # 6·N + 12·L·d·T with N the non-embedding parameters plus the output head (nanoGPT's PaLM-style count)
    n = config.num_params(include_embeddings=False) + config.vocab_size * config.n_embd
    assert config.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown model preset 'gpt5'"):
        ModelConfig.from_preset("gpt5")
    with pytest.raises(ValueError, match="not divisible by n_head"):
        ModelConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="vocab_size is 64"):
        tiny().with_vocab(257)
    assert ModelConfig(n_embd=32, n_head=4).with_vocab(257).vocab_size == 320
