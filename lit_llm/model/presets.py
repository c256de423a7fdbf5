"""Named model shapes, from a ~1M-parameter CPU model to GPT-2 124M and a 1B Llama (`ModelConfig.from_preset`)."""

_GPT2 = dict(positions="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=True, vocab_size=50304)
_LLAMA = dict(positions="rope", norm="rmsnorm", norm_eps=1e-5, mlp="swiglu", bias=False)

PRESETS: dict[str, dict] = {
    # ~1M parameters (with a byte vocabulary): a smoke-test model that trains on a laptop CPU in minutes.
    "micro": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),
    # nanoGPT's character-level Shakespeare model (~10.7M).
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
    # A small Llama-style model for TinyStories-sized corpora (~7.7M with an 8k vocabulary).
    "llama-8m": dict(n_layer=6, n_head=6, n_kv_head=2, n_embd=288, block_size=256, **_LLAMA),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, **_GPT2),
    "gpt2-350m": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, **_GPT2),
    # ~1.0B Llama-style model (Llama 3.2 1B shape with a 32k vocabulary).
    "llama-1b": dict(
        n_layer=16,
        n_head=32,
        n_kv_head=8,
        n_embd=2048,
        intermediate_size=8192,
        block_size=2048,
        vocab_size=32000,
        tie_embeddings=True,
        rope_base=500000.0,
        **_LLAMA,
    ),
    # Published models, for `lit-llm plan` (shapes from their papers / configs).
    "tinyllama-1.1b": dict(
        n_layer=22,
        n_head=32,
        n_kv_head=4,
        n_embd=2048,
        intermediate_size=5632,
        block_size=2048,
        vocab_size=32000,
        tie_embeddings=False,
        **_LLAMA,
    ),
    "llama2-7b": dict(
        n_layer=32,
        n_head=32,
        n_embd=4096,
        intermediate_size=11008,
        block_size=4096,
        vocab_size=32000,
        tie_embeddings=False,
        **_LLAMA,
    ),
    "llama2-70b": dict(
        n_layer=80,
        n_head=64,
        n_kv_head=8,
        n_embd=8192,
        intermediate_size=28672,
        block_size=4096,
        vocab_size=32000,
        tie_embeddings=False,
        **_LLAMA,
    ),
}
