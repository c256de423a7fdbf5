"""The Hugging Face side of each exportable family: its transformers class, config fields and parameter names.

One table of parameter names per family (``Family.params``) drives both export and import
(lit_llm/hf/convert.py), so the two directions cannot drift apart. Our RoPE already uses the "rotate half"
layout of Hugging Face's Llama, so q/k need no permutation (the parity tests compare logits to prove it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lit_llm.model.config import ModelConfig

# Activations that compute GELU's tanh approximation (lit-llm's `gelu: tanh`); `gelu` is the exact one.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


@dataclass(frozen=True)
class Param:
    """One lit-llm tensor and the Hugging Face tensor(s) it is stored as.

    A fused lit-llm matrix (``qkv``, SwiGLU's ``fc``) is several Hugging Face tensors: its output rows
    split into ``sizes``. GPT-2's Conv1D layers store weights transposed, as (in, out).
    """

    lit: str
    hf: tuple[str, ...]
    sizes: tuple[int, ...] | None = None
    conv1d: bool = False

    def to_hf(self, tensor: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        pieces = tensor.split(list(self.sizes)) if self.sizes else (tensor,)
        # A copy per piece: safetensors refuses tensors that share memory.
        return {name: self._orient(p).to(dtype=dtype, copy=True).contiguous() for name, p in zip(self.hf, pieces)}

    def to_lit(self, hf_state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self._orient(hf_state[name]) for name in self.hf])

    def _orient(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.t() if self.conv1d and tensor.dim() == 2 else tensor


@dataclass(frozen=True)
class Family:
    architecture: str  # the transformers class
    model_type: str
    base_prefix: str  # where transformers keeps the body's parameters ("transformer." / "model.")
    requires: dict[str, str]  # ModelConfig switches the class has no option for
    grouped_query: bool  # whether the class has n_kv_head < n_head
    params: Callable[[ModelConfig], list[Param]]
    hf_config: Callable[[ModelConfig], dict]
    lit_config: Callable[[dict, str], ModelConfig]


def _layer(lit: str, hf: str, bias: bool, conv1d: bool = False, sizes: tuple[int, ...] | None = None) -> list[Param]:
    """A layer's weight (and bias); ``hf`` names the pieces of a fused lit-llm layer as "a|b|c"."""
    kinds = ("weight", "bias") if bias else ("weight",)
    return [Param(f"{lit}.{kind}", tuple(f"{h}.{kind}" for h in hf.split("|")), sizes, conv1d) for kind in kinds]


def _gpt2_params(c: ModelConfig) -> list[Param]:
    """GPT2LMHeadModel always has biases: export fills missing ones with zeros (see ``export``)."""
    params = _layer("wte", "transformer.wte", False) + _layer("wpe", "transformer.wpe", False)
    for i in range(c.n_layer):
        lit, hf = f"blocks.{i}", f"transformer.h.{i}"
        params += _layer(f"{lit}.norm_1", f"{hf}.ln_1", True) + _layer(f"{lit}.norm_2", f"{hf}.ln_2", True)
        params += _layer(f"{lit}.attn.qkv", f"{hf}.attn.c_attn", True, conv1d=True)
        params += _layer(f"{lit}.attn.proj", f"{hf}.attn.c_proj", True, conv1d=True)
        params += _layer(f"{lit}.mlp.fc", f"{hf}.mlp.c_fc", True, conv1d=True)
        params += _layer(f"{lit}.mlp.proj", f"{hf}.mlp.c_proj", True, conv1d=True)
    params += _layer("norm_f", "transformer.ln_f", True)
    return params + ([] if c.tie_embeddings else _layer("lm_head", "lm_head", False))


def _llama_params(c: ModelConfig) -> list[Param]:
    kv = c.n_kv_head * c.head_size
    params = _layer("wte", "model.embed_tokens", False)
    for i in range(c.n_layer):
        lit, hf = f"blocks.{i}", f"model.layers.{i}"
        params += _layer(f"{lit}.norm_1", f"{hf}.input_layernorm", False)
        params += _layer(f"{lit}.norm_2", f"{hf}.post_attention_layernorm", False)
        qkv = f"{hf}.self_attn.q_proj|{hf}.self_attn.k_proj|{hf}.self_attn.v_proj"
        params += _layer(f"{lit}.attn.qkv", qkv, c.bias, sizes=(c.n_embd, kv, kv))
        params += _layer(f"{lit}.attn.proj", f"{hf}.self_attn.o_proj", c.bias)
        fc = f"{hf}.mlp.gate_proj|{hf}.mlp.up_proj"  # our fused fc is [gate | up]
        params += _layer(f"{lit}.mlp.fc", fc, c.bias, sizes=(c.intermediate_size, c.intermediate_size))
        params += _layer(f"{lit}.mlp.proj", f"{hf}.mlp.down_proj", c.bias)
    params += _layer("norm_f", "model.norm", False)
    return params + ([] if c.tie_embeddings else _layer("lm_head", "lm_head", False))


def _gpt2_hf_config(c: ModelConfig) -> dict:
    return {
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.intermediate_size,
        "activation_function": "gelu_new" if c.gelu == "tanh" else "gelu",  # gelu_new: GPT-2's tanh GELU
        "layer_norm_epsilon": c.norm_eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
    }


def _llama_hf_config(c: ModelConfig) -> dict:
    return {
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_base,  # top level: read by transformers 4.x and 5.x alike
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "attention_dropout": c.dropout,
    }


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _gpt2_lit_config(hf: dict, source: str) -> ModelConfig:
    activation = hf.get("activation_function", "gelu_new")
    require(
        activation in (*TANH_GELUS, "gelu"),
        f"{source}: activation_function={activation!r} is not supported; lit-llm's GPT-2 MLP computes the tanh GELU "
        f"({', '.join(TANH_GELUS)}) or the exact one (gelu)",
    )
    require(
        not hf.get("scale_attn_by_inverse_layer_idx"),
        f"{source}: scale_attn_by_inverse_layer_idx=true is not supported; lit-llm scales attention by 1/sqrt(head "
        "size) only",
    )
    require(
        hf.get("scale_attn_weights", True),
        f"{source}: scale_attn_weights=false is not supported; lit-llm always scales attention by 1/sqrt(head size)",
    )
    return ModelConfig(
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=hf["n_embd"],
        block_size=hf["n_positions"],
        vocab_size=hf["vocab_size"],
        intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"],
        positions="learned",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        mlp="gelu",
        gelu="exact" if activation == "gelu" else "tanh",
        bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        dropout=hf.get("resid_pdrop", 0.0),
    )


def _llama_lit_config(hf: dict, source: str) -> ModelConfig:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}  # transformers 5.x / 4.x
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    require(
        rope_type == "default",
        f"{source}: RoPE scaling {rope_type!r} is not supported; lit-llm implements plain RoPE (rope_type 'default') "
        "only",
    )
    act = hf.get("hidden_act", "silu")
    require(act == "silu", f"{source}: hidden_act={act!r} is not supported; lit-llm's SwiGLU uses silu")
    bias, mlp_bias = hf.get("attention_bias", False), hf.get("mlp_bias", False)
    require(
        bias == mlp_bias,
        f"{source}: attention_bias={bias} with mlp_bias={mlp_bias} is not supported; lit-llm has one bias switch for "
        "all linear layers",
    )
    n_head, n_embd = hf["num_attention_heads"], hf["hidden_size"]
    head_dim = hf.get("head_dim") or n_embd // n_head
    require(
        head_dim * n_head == n_embd,
        f"{source}: head_dim={head_dim} × num_attention_heads={n_head} != hidden_size={n_embd}; lit-llm needs "
        "head_dim = hidden_size / heads",
    )
    return ModelConfig(
        n_layer=hf["num_hidden_layers"],
        n_head=n_head,
        n_kv_head=hf.get("num_key_value_heads") or n_head,
        n_embd=n_embd,
        block_size=hf["max_position_embeddings"],
        vocab_size=hf["vocab_size"],
        intermediate_size=hf["intermediate_size"],
        positions="rope",
        rope_base=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        mlp="swiglu",
        bias=bias,
        tie_embeddings=hf.get("tie_word_embeddings", False),
        dropout=hf.get("attention_dropout", 0.0),
    )


GPT2 = Family(
    architecture="GPT2LMHeadModel",
    model_type="gpt2",
    base_prefix="transformer.",
    requires={"norm": "layernorm", "mlp": "gelu"},
    grouped_query=False,
    params=_gpt2_params,
    hf_config=_gpt2_hf_config,
    lit_config=_gpt2_lit_config,
)
LLAMA = Family(
    architecture="LlamaForCausalLM",
    model_type="llama",
    base_prefix="model.",
    requires={"norm": "rmsnorm", "mlp": "swiglu"},
    grouped_query=True,
    params=_llama_params,
    hf_config=_llama_hf_config,
    lit_config=_llama_lit_config,
)
FAMILY_BY_POSITIONS = {"learned": GPT2, "rope": LLAMA}
FAMILY_BY_MODEL_TYPE = {f.model_type: f for f in FAMILY_BY_POSITIONS.values()}
EXPORTABLE = (
    "exportable are GPT-2 style: positions=learned, norm=layernorm, mlp=gelu, n_kv_head=n_head; "
    "Llama style: positions=rope, norm=rmsnorm, mlp=swiglu"
)
