"""Hugging Face ``transformers`` interop: write a model as a transformers model folder, and read one back.

GPT-2-style models (learned positions, LayerNorm, GELU) become ``GPT2LMHeadModel``, Llama-style models
(RoPE, RMSNorm, SwiGLU, optional GQA) become ``LlamaForCausalLM``. One table of parameter names per
family drives both directions, so export and import cannot drift apart. Our RoPE already uses the
"rotate half" layout of Hugging Face's Llama, so q/k need no permutation (the parity tests compare
logits to prove it). Needs ``safetensors`` (``pip install 'lit-llm[hf]'``), never ``transformers``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lit_llm.config import ModelConfig
from lit_llm.model import GPT
from lit_llm.tokenizer import Tokenizer

HF_CONFIG = "config.json"  # marks a Hugging Face model folder (run folders hold config.yaml)
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
LEGACY_WEIGHTS = "pytorch_model.bin"
HF_TOKENIZER = "tokenizer.json"
# Buffers that some transformers versions save beside the parameters; they hold no learned weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
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


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _gpt2_lit_config(hf: dict, source: str) -> ModelConfig:
    activation = hf.get("activation_function", "gelu_new")
    _require(
        activation in (*TANH_GELUS, "gelu"),
        f"{source}: activation_function={activation!r} is not supported; lit-llm's GPT-2 MLP computes the tanh GELU "
        f"({', '.join(TANH_GELUS)}) or the exact one (gelu)",
    )
    _require(
        not hf.get("scale_attn_by_inverse_layer_idx"),
        f"{source}: scale_attn_by_inverse_layer_idx=true is not supported; lit-llm scales attention by 1/sqrt(head "
        "size) only",
    )
    _require(
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
    _require(
        rope_type == "default",
        f"{source}: RoPE scaling {rope_type!r} is not supported; lit-llm implements plain RoPE (rope_type 'default') "
        "only",
    )
    act = hf.get("hidden_act", "silu")
    _require(act == "silu", f"{source}: hidden_act={act!r} is not supported; lit-llm's SwiGLU uses silu")
    bias, mlp_bias = hf.get("attention_bias", False), hf.get("mlp_bias", False)
    _require(
        bias == mlp_bias,
        f"{source}: attention_bias={bias} with mlp_bias={mlp_bias} is not supported; lit-llm has one bias switch for "
        "all linear layers",
    )
    n_head, n_embd = hf["num_attention_heads"], hf["hidden_size"]
    head_dim = hf.get("head_dim") or n_embd // n_head
    _require(
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


def family_of(config: ModelConfig, source: str) -> Family:
    """The transformers class that computes exactly this model, or a refusal naming the switch that rules it out."""
    for switch in ("qk_norm", "logit_softcap"):  # zero_init_proj only changes the init: exported exactly
        _require(
            getattr(config, switch) in (False, None),
            f"{source} cannot be exported: {switch}={getattr(config, switch)} has no counterpart in GPT2LMHeadModel "
            f"or LlamaForCausalLM; train with {switch} off to export",
        )
    family = FAMILY_BY_POSITIONS[config.positions]
    for switch, needed in family.requires.items():
        value = getattr(config, switch)
        _require(
            value == needed,
            f"{source} cannot be exported: positions={config.positions} maps to {family.architecture}, which needs "
            f"{switch}={needed} but this model has {switch}={value}; no transformers class has both ({EXPORTABLE})",
        )
    _require(
        family.grouped_query or config.n_kv_head == config.n_head,
        f"{source} cannot be exported: n_kv_head={config.n_kv_head} (grouped-query attention) but "
        f"{family.architecture} has only multi-head attention (n_kv_head = n_head = {config.n_head}; {EXPORTABLE})",
    )
    return family


# ---- export ---------------------------------------------------------------------------------------
def write_hf_folder(model: GPT, tokenizer: Tokenizer, family: Family, dtype: str, folder: Path) -> None:
    """Weights, configs and tokenizer files of ``model`` as ``family``'s transformers class, into ``folder``."""
    _write_weights(model, family, getattr(torch, dtype), folder)
    _write_configs(model.config, family, tokenizer, dtype, folder)
    tokenizer.save(folder / HF_TOKENIZER)


def _write_weights(model: GPT, family: Family, dtype: torch.dtype, folder: Path) -> None:
    from safetensors.torch import save_file

    config = model.config
    if family is GPT2 and not config.bias:
        # GPT-2 layers always add a bias; a zero bias computes exactly what no bias does.
        biased = GPT(replace(config, bias=True))  # its fresh biases are zeros
        biased.load_state_dict(model.state_dict(), strict=False)
        model = biased
    state = model.state_dict()
    tensors = {name: t for p in family.params(config) for name, t in p.to_hf(state[p.lit], dtype).items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})


def _write_configs(config: ModelConfig, family: Family, tokenizer: Tokenizer, dtype: str, folder: Path) -> None:
    eot_id, eot = tokenizer.eot_id, tokenizer.backend.id_to_token(tokenizer.eot_id)
    ids = {"bos_token_id": eot_id, "eos_token_id": eot_id, "pad_token_id": eot_id}  # documents are separated by EOT
    model_config = {
        "architectures": [family.architecture],
        "model_type": family.model_type,
        "vocab_size": config.vocab_size,  # may exceed the tokenizer's: padded rows are never produced by it
        "tie_word_embeddings": config.tie_embeddings,
        "torch_dtype": dtype,
        **family.hf_config(config),
        **ids,
    }
    special = {"bos_token": eot, "eos_token": eot, "pad_token": eot}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": config.block_size,
        "clean_up_tokenization_spaces": False,  # decode must give back the exact text
        **special,
    }
    for name, content in (
        (HF_CONFIG, model_config),
        ("generation_config.json", ids),
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special),
    ):
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")


# ---- import ---------------------------------------------------------------------------------------
def load_hf_model(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    """A transformers GPT-2 or Llama model folder as lit-llm's (config, state dict, tokenizer).

    State dict keys use lit-llm names without the ``model.`` prefix; a tied ``lm_head.weight`` is the
    same tensor as ``wte.weight``, so ``GPT(config).load_state_dict(state)`` works strictly.
    """
    folder = Path(path).expanduser()
    hf_config = _read_hf_config(folder)
    model_type = hf_config.get("model_type")
    if model_type not in FAMILY_BY_MODEL_TYPE:
        raise ValueError(
            f"{folder / HF_CONFIG} has model_type={model_type!r}; lit-llm imports "
            f"{' and '.join(FAMILY_BY_MODEL_TYPE)} models only"
        )
    family = FAMILY_BY_MODEL_TYPE[model_type]
    config = family.lit_config(hf_config, str(folder / HF_CONFIG))
    hf_state = _with_base_prefix(_read_hf_weights(folder), family)
    params = family.params(config)
    expected = {name for p in params for name in p.hf}
    missing = sorted(expected - hf_state.keys())
    if config.tie_embeddings:
        hf_state.pop("lm_head.weight", None)  # some versions save the tied head too
    unknown = sorted(k for k in hf_state.keys() - expected if not k.endswith(IGNORED_SUFFIXES))
    if missing or unknown:
        raise ValueError(
            f"{folder} does not match its config.json (missing {missing[:3]}, unexpected {unknown[:3]}); re-save it "
            "with save_pretrained"
        )
    state = {p.lit: p.to_lit(hf_state) for p in params}
    if config.tie_embeddings:  # the same tensor, so GPT(config).load_state_dict(state) works strictly
        state["lm_head.weight"] = state["wte.weight"]
    tokenizer = _read_hf_tokenizer(folder)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"tokenizer/model mismatch in {folder}: {HF_TOKENIZER} has {tokenizer.vocab_size} tokens but the model's "
            f"vocab_size is {config.vocab_size}; put the tokenizer the model was trained with beside it"
        )
    return config, state, tokenizer


def _read_hf_config(folder: Path) -> dict:
    path = folder / HF_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a Hugging Face model folder (no {HF_CONFIG}); pass a folder written by save_pretrained "
            "or `lit-llm export`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the model with save_pretrained") from None


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / WEIGHTS_INDEX).is_file():  # sharded: an index names the files
        files = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
    elif (folder / WEIGHTS).is_file():
        files = [WEIGHTS]
    elif (folder / LEGACY_WEIGHTS).is_file():
        return torch.load(folder / LEGACY_WEIGHTS, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(
            f"{folder} has no {WEIGHTS}, {WEIGHTS_INDEX} or {LEGACY_WEIGHTS}; save the model with save_pretrained"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            state.update(load_file(str(folder / name)))
        except (OSError, SafetensorError) as err:
            raise ValueError(
                f"{folder / name} is not a readable safetensors file ({err}); it may be truncated or corrupt"
            ) from None
    return state


def _with_base_prefix(state: dict[str, torch.Tensor], family: Family) -> dict[str, torch.Tensor]:
    """Old GPT-2 checkpoints (the base model's own) name parameters without ``transformer.``."""

    def full(name: str) -> str:
        return name if name.startswith((family.base_prefix, "lm_head.")) else family.base_prefix + name

    return {full(name): tensor for name, tensor in state.items()}


def _read_hf_tokenizer(folder: Path) -> Tokenizer:
    path = folder / HF_TOKENIZER
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {HF_TOKENIZER}; save a fast tokenizer beside the model "
            f"(AutoTokenizer.from_pretrained(...).save_pretrained('{folder}'))"
        )
    return Tokenizer.from_file(path)
