"""A model and its tokenizer from anything lit-llm reads: a checkpoint file, a sharded checkpoint folder, a run
folder (its newest checkpoint) or a Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path

import torch

from lit_llm.checkpoint.files import CHECKPOINT_KEY, is_sharded_checkpoint, newest_checkpoint, read_checkpoint
from lit_llm.hf.convert import HF_CONFIG, load_hf_model
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import Tokenizer


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / HF_CONFIG).is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, sharded checkpoint folder or Hugging Face model folder as it is, or a run
    folder's checkpoints/last.ckpt (its newest complete checkpoint when a kill left none)."""
    path = Path(path).expanduser()
    if path.is_dir() and not is_sharded_checkpoint(path) and not is_hf_folder(path):
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.exists():
                return candidate
        if newest := newest_checkpoint(path):
            return newest[0]
        raise FileNotFoundError(
            f"run folder {path} has no checkpoints/last.ckpt (nor {HF_CONFIG} of a Hugging Face model); "
            f"train it with `lit-llm fit` or pass a .ckpt file"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass a .ckpt file, a run folder or a Hugging Face model folder"
        )
    return path


def load_weights(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    """Model config, state dict (keys without the ``model.`` prefix) and tokenizer from a lit-llm
    checkpoint or run folder, or a transformers GPT-2 / Llama folder."""
    path = resolve_checkpoint(path)
    if is_hf_folder(path):
        return load_hf_model(path)
    checkpoint = read_checkpoint(path)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(
            f"{path} was not written by lit-llm (no '{CHECKPOINT_KEY}' entry); pass a checkpoint from `lit-llm fit`"
        )
    meta = checkpoint[CHECKPOINT_KEY]
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return ModelConfig(**meta["model_config"]), state, Tokenizer.from_json(meta["tokenizer"], source=str(path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model (in eval mode) and its tokenizer from anything ``load_weights`` reads."""
    config, state, tokenizer = load_weights(path)
    model = GPT(config)
    missing, unexpected = model.load_state_dict(tie_head(config, state), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match its model config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), tokenizer


def tie_head(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the output head filled in from the embedding when the model ties them: sharded
    checkpoints and Hugging Face folders store a tied weight once."""
    if config.tie_embeddings and "lm_head.weight" not in state:
        return {**state, "lm_head.weight": state["wte.weight"]}
    return state
