"""Sampling on the model's KV cache, and loading a model + tokenizer from a checkpoint or run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lit_llm.checkpointing import is_sharded_checkpoint, read_checkpoint
from lit_llm.config import ModelConfig
from lit_llm.model import GPT
from lit_llm.tokenizer import Tokenizer

CHECKPOINT_KEY = "lit_llm"  # where a checkpoint keeps what rebuilds the model and tokenizer


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file or sharded checkpoint folder, or a run folder (its checkpoints/last.ckpt)."""
    path = Path(path).expanduser()
    if path.is_dir() and not is_sharded_checkpoint(path):
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"run folder {path} has no checkpoints/last.ckpt; train it with `lit-llm fit` or pass a .ckpt file")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a .ckpt file or a run folder")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model and its tokenizer from a lit-llm checkpoint (safe weights-only loading)."""
    path = resolve_checkpoint(path)
    checkpoint = read_checkpoint(path)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(f"{path} was not written by lit-llm (no '{CHECKPOINT_KEY}' entry); pass a checkpoint from `lit-llm fit`")
    meta = checkpoint[CHECKPOINT_KEY]
    model = GPT(ModelConfig(**meta["model_config"]))
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if model.config.tie_embeddings:  # sharded checkpoints store a tied weight once
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{path} does not match its model config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), Tokenizer.from_json(meta["tokenizer"], source=str(path))


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator) -> torch.Tensor:
    """One token per row from (B, vocab) logits; temperature 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


@torch.inference_mode()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    on_token=None,
) -> torch.Tensor:
    """Continue (B, T) prompt ids by up to ``max_new_tokens``; returns only the new ids.

    With the cache, the prompt is processed once and each step feeds one token. Once the sequence
    outgrows the model's context, every step re-reads the last block_size tokens, exactly as the
    cache-free path does, so both paths give the same tokens.
    """
    block_size = model.config.block_size
    tokens = prompt
    new: list[torch.Tensor] = []
    cached = 0  # positions already in the KV cache
    if use_cache:
        model.setup_kv_cache(prompt.size(0))
    try:
        for _ in range(max_new_tokens):
            if use_cache and tokens.size(1) <= block_size:
                logits = model(tokens[:, cached:], start=cached)
                cached = tokens.size(1)
            else:
                if use_cache:
                    model.setup_kv_cache(prompt.size(0))  # window slid: positions changed, re-read it
                logits = model(tokens[:, -block_size:])
            next_id = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, next_id], dim=1)
            new.append(next_id)
            if on_token is not None:
                on_token(next_id)
            if stop_id is not None and bool((next_id == stop_id).all()):
                break
    finally:
        model.clear_kv_cache()
    return torch.cat(new, dim=1) if new else prompt[:, :0]


def generate_text(
    checkpoint: str,
    prompt: str = "\n",
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    seed: int | None = None,
    device: str = "auto",
) -> str:
    """Sample a continuation of a prompt from a trained checkpoint, streaming it to the terminal.

    Args:
        checkpoint: a .ckpt file or a run folder (uses its checkpoints/last.ckpt).
        prompt: text to continue.
        max_new_tokens: how many tokens to sample.
        temperature: softmax temperature; 0 means greedy.
        top_k: sample only among the k most likely tokens (None: all).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p (None: off).
        seed: random seed for reproducible samples.
        device: cpu, cuda or auto.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_checkpoint(checkpoint, device)
    ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    prompt_ids = torch.tensor([ids], device=device)
    streamed: list[int] = []
    printed = 0

    def stream(next_id: torch.Tensor) -> None:  # print whole characters as soon as they are complete
        nonlocal printed
        streamed.append(int(next_id[0, 0]))
        text = tokenizer.decode(streamed)
        if not text.endswith("\ufffd"):
            sys.stdout.write(text[printed:])
            sys.stdout.flush()
            printed = len(text)

    sys.stdout.write(prompt)
    generate(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, generator=generator, on_token=stream)
    text = tokenizer.decode(streamed)
    sys.stdout.write(text[printed:] + "\n")
    return prompt + text
