"""Hugging Face ``transformers`` interop: write a model as a transformers model folder, and read one back.

GPT-2-style models (learned positions, LayerNorm, GELU) become ``GPT2LMHeadModel``, Llama-style models
(RoPE, RMSNorm, SwiGLU, optional GQA) become ``LlamaForCausalLM``, through the per-family tables of
lit_llm/hf/architectures.py; this module writes and reads the folders. A μP model is exported with its
multipliers folded into the weights (``fold_mup``). Needs ``safetensors`` (``pip install 'lit-llm[hf]'``),
never ``transformers``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import torch

from lit_llm.hf.architectures import (
    EXPORTABLE,
    FAMILY_BY_MODEL_TYPE,
    FAMILY_BY_POSITIONS,
    GPT2,
    Family,
    require,
)
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import FIM_TOKENS, Tokenizer

HF_CONFIG = "config.json"  # marks a Hugging Face model folder (run folders hold config.yaml)
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
LEGACY_WEIGHTS = "pytorch_model.bin"
HF_TOKENIZER = "tokenizer.json"
CONFIG_FILES = (HF_CONFIG, "generation_config.json", "tokenizer_config.json", "special_tokens_map.json")
EXPORT_FILES = (*CONFIG_FILES, WEIGHTS, HF_TOKENIZER)  # all that `write_hf_folder` writes
# Buffers that some transformers versions save beside the parameters; they hold no learned weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def family_of(config: ModelConfig, source: str) -> Family:
    """The transformers class that computes exactly this model, or a refusal naming the switch that rules it out."""
    for switch in ("qk_norm", "logit_softcap"):  # zero_init_proj only changes the init: exported exactly
        require(
            getattr(config, switch) in (False, None),
            f"{source} cannot be exported: {switch}={getattr(config, switch)} has no counterpart in GPT2LMHeadModel "
            f"or LlamaForCausalLM; train with {switch} off to export",
        )
    family = FAMILY_BY_POSITIONS[config.positions]
    for switch, needed in family.requires.items():
        value = getattr(config, switch)
        require(
            value == needed,
            f"{source} cannot be exported: positions={config.positions} maps to {family.architecture}, which needs "
            f"{switch}={needed} but this model has {switch}={value}; no transformers class has both ({EXPORTABLE})",
        )
    require(
        family.grouped_query or config.n_kv_head == config.n_head,
        f"{source} cannot be exported: n_kv_head={config.n_kv_head} (grouped-query attention) but "
        f"{family.architecture} has only multi-head attention (n_kv_head = n_head = {config.n_head}; {EXPORTABLE})",
    )
    return family


def require_safetensors():
    """The safetensors package, or a one-line error naming the extra that installs it (the CLI shows ImportError
    as one line)."""
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError(
            "safetensors is not installed (Hugging Face folders store their weights with it); install the hf extra: "
            'pip install "lit-llm[hf]"'
        ) from None
    return safetensors


# ---- export ---------------------------------------------------------------------------------------
def write_hf_folder(model: GPT, tokenizer: Tokenizer, family: Family, dtype: str, folder: Path) -> None:
    """Weights, configs and tokenizer files of ``model`` as ``family``'s transformers class, into ``folder``."""
    _write_weights(model, family, getattr(torch, dtype), folder)
    _write_configs(model.config, family, tokenizer, dtype, folder)
    tokenizer.save(folder / HF_TOKENIZER)


def _write_weights(model: GPT, family: Family, dtype: torch.dtype, folder: Path) -> None:
    safetensors = require_safetensors()
    config = model.config
    if family is GPT2 and not config.bias:
        # GPT-2 layers always add a bias; a zero bias computes exactly what no bias does.
        biased = GPT(replace(config, bias=True))  # its fresh biases are zeros
        biased.load_state_dict(model.state_dict(), strict=False)
        model = biased
    state = fold_mup(config, model.state_dict())
    tensors = {name: t for p in family.params(config) for name, t in p.to_hf(state[p.lit], dtype).items()}
    safetensors.torch.save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    # safetensors writes a temporary file (mode 0600) and renames it: give it the mode of the files beside it.
    os.chmod(folder / WEIGHTS, new_file_mode())


def new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask (reading the umask means setting it, so it is set
    straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def fold_mup(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with μP's multipliers folded in, for the standard transformers classes (unchanged otherwise).

    Attention: μP scores by 1/d_head, transformers by 1/sqrt(d_head), so the query rows of ``qkv`` (and their
    bias) are scaled by 1/sqrt(d_head); RoPE rotates linearly, so it commutes. Readout: μP's 1/width multiplier
    on the head's input goes into the final norm's gain and bias, which keeps tied embeddings tied.
    """
    if config.parametrization != "mup":
        return state
    state = dict(state)
    for i in range(config.n_layer):
        for kind in ("weight", "bias"):
            name = f"blocks.{i}.attn.qkv.{kind}"
            if name in state:
                folded = state[name].clone()
                folded[: config.n_embd] /= math.sqrt(config.head_size)
                state[name] = folded
    for kind in ("weight", "bias"):
        if f"norm_f.{kind}" in state:
            state[f"norm_f.{kind}"] = state[f"norm_f.{kind}"] / config.width_multiplier
    return state


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
    if tokenizer.fim_ids is not None:  # as StarCoder's tokenizer lists them: infilling tools look them up here
        special["additional_special_tokens"] = list(FIM_TOKENS)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": config.block_size,
        "clean_up_tokenization_spaces": False,  # decode must give back the exact text
        **special,
    }
    for name, content in zip(CONFIG_FILES, (model_config, ids, tokenizer_config, special), strict=True):
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
    safetensors = require_safetensors()
    state: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            state.update(safetensors.torch.load_file(str(folder / name)))
        except (OSError, safetensors.SafetensorError) as err:
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
