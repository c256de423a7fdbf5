"""Sampling on the model's KV cache, and loading a model + tokenizer from a checkpoint, a run folder or a
Hugging Face model folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch

from lit_llm.checkpointing import is_sharded_checkpoint, read_checkpoint
from lit_llm.config import ModelConfig
from lit_llm.model import GPT
from lit_llm.tokenizer import Tokenizer

CHECKPOINT_KEY = "lit_llm"  # where a checkpoint keeps what rebuilds the model and tokenizer
HF_CONFIG = "config.json"  # marks a Hugging Face model folder (run folders hold config.yaml)


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / HF_CONFIG).is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, sharded checkpoint folder or Hugging Face model folder as it is, or a run
    folder's checkpoints/last.ckpt."""
    path = Path(path).expanduser()
    if path.is_dir() and not is_sharded_checkpoint(path) and not is_hf_folder(path):
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(
            f"run folder {path} has no checkpoints/last.ckpt (nor {HF_CONFIG} of a Hugging Face model); "
            f"train it with `lit-llm fit` or pass a .ckpt file"
        )
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a .ckpt file, a run folder or a Hugging Face model folder")
    return path


def load_weights(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    """Model config, state dict (keys without the ``model.`` prefix) and tokenizer from a lit-llm
    checkpoint or run folder, or a transformers GPT-2 / Llama folder."""
    path = resolve_checkpoint(path)
    if is_hf_folder(path):
        # Imported here: lit_llm.export imports this module, and needs the optional safetensors.
        from lit_llm.export import load_hf_model

        return load_hf_model(path)
    checkpoint = read_checkpoint(path)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(f"{path} was not written by lit-llm (no '{CHECKPOINT_KEY}' entry); pass a checkpoint from `lit-llm fit`")
    meta = checkpoint[CHECKPOINT_KEY]
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return ModelConfig(**meta["model_config"]), state, Tokenizer.from_json(meta["tokenizer"], source=str(path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model (in eval mode) and its tokenizer from anything ``load_weights`` reads."""
    config, state, tokenizer = load_weights(path)
    model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if config.tie_embeddings:  # sharded checkpoints store a tied weight once
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{path} does not match its model config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), tokenizer


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it (half the memory, tensor cores), float32 elsewhere."""
    if dtype == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


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

    Stops early once every row has produced ``stop_id``, or when ``on_token`` (called with each step's
    (B, 1) new ids) returns True. Rows that stopped keep being sampled: cut them at ``stop_id``.

    With the cache, the prompt is processed once and each step feeds one token. Once the sequence
    outgrows the model's context, every step re-reads the last block_size tokens, exactly as the
    cache-free path does, so both paths give the same tokens.
    """
    block_size = model.config.block_size
    cache_len = min(block_size, prompt.size(1) + max_new_tokens)  # not block_size: imported models may have 100k+
    tokens = prompt
    new: list[torch.Tensor] = []
    stopped = torch.zeros(prompt.size(0), 1, dtype=torch.bool, device=prompt.device)
    cached = 0  # positions already in the KV cache
    if use_cache:
        model.setup_kv_cache(prompt.size(0), cache_len)
    try:
        for _ in range(max_new_tokens):
            if use_cache and tokens.size(1) <= block_size:
                logits = model(tokens[:, cached:], start=cached)
                cached = tokens.size(1)
            else:
                if use_cache:
                    model.setup_kv_cache(prompt.size(0), cache_len)  # window slid: positions changed, re-read it
                logits = model(tokens[:, -block_size:])
            next_id = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, next_id], dim=1)
            new.append(next_id)
            if on_token is not None and on_token(next_id):
                break
            if stop_id is not None:
                stopped |= next_id == stop_id
                if bool(stopped.all()):
                    break
    finally:
        model.clear_kv_cache()
    return torch.cat(new, dim=1) if new else prompt[:, :0]


class Continuation:
    """One row's text as its tokens arrive, cut before end-of-text or the first stop sequence."""

    def __init__(self, tokenizer: Tokenizer, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.text = ""
        self.done = False

    def add(self, token_id: int) -> None:
        if self.done:
            return
        if token_id == self.tokenizer.eot_id:
            self.done = True
            return
        self.ids.append(token_id)
        self.text = self.tokenizer.decode(self.ids)
        cuts = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.text, self.done = self.text[: min(cuts)], True

    def settled(self) -> str:
        """The text no later token can change: without an unfinished character (its bytes decode to
        U+FFFD so far) or an ending that may yet grow into a stop sequence."""
        if self.done:
            return self.text
        text = self.text.rstrip("\ufffd")
        held = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[: len(text) - held]


def generate_text(
    checkpoint: str,
    prompt: list[str] | str = "\n",
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    seed: int | None = None,
    device: str = "auto",
    stop: list[str] | None = None,
    dtype: Literal["auto", "float32", "bfloat16"] = "auto",
) -> str | list[str]:
    """Sample a continuation of a prompt, or of each of a list of prompts, from a checkpoint.

    One prompt is streamed to the terminal as it is produced; a list is sampled in batches and printed
    when done. Returns prompt + continuation (a list for a list). A continuation ends at the end-of-text
    token, a stop sequence or max_new_tokens.

    Args:
        checkpoint: a .ckpt file, a run folder (uses its checkpoints/last.ckpt) or a Hugging Face model folder.
        prompt: text to continue, or a JSON list of texts, e.g. '["ROMEO:", "JULIET:"]', sampled in batches.
        max_new_tokens: most tokens to sample per prompt.
        temperature: softmax temperature; 0 means greedy.
        top_k: sample only among the k most likely tokens (None: all).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p (None: off).
        seed: random seed: the same seed, checkpoint, device and options give the same text.
        device: cpu, cuda or auto.
        stop: strings that end a continuation (not included in it), e.g. '["\\n\\n"]'.
        dtype: float32, bfloat16, or auto (bfloat16 on a GPU that supports it, else float32).
    """
    device = resolve_device(device)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.to(resolve_dtype(dtype, device))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    sample = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p, "generator": generator}
    if isinstance(prompt, str):
        return stream_one(model, tokenizer, prompt, stop or [], sample)
    if not prompt:
        raise ValueError("--prompt is an empty list; pass a text or a non-empty JSON list of texts")
    texts = [p + t for p, t in zip(prompt, generate_batch(model, tokenizer, prompt, stop or [], sample))]
    print("\n\n".join(texts))
    return texts


def _prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    return tokenizer.encode(prompt) or [tokenizer.eot_id]  # an empty prompt starts a new document


def stream_one(model: GPT, tokenizer: Tokenizer, prompt: str, stop: list[str], sample: dict) -> str:
    """Print the prompt, then the continuation as it settles; returns prompt + continuation."""
    row = Continuation(tokenizer, stop)
    printed = 0

    def on_token(next_id: torch.Tensor) -> bool:
        nonlocal printed
        row.add(int(next_id[0, 0]))
        text = row.settled()
        sys.stdout.write(text[printed:])
        sys.stdout.flush()
        printed = len(text)
        return row.done

    sys.stdout.write(prompt)
    ids = torch.tensor([_prompt_ids(tokenizer, prompt)], device=model.wte.weight.device)
    generate(model, ids, on_token=on_token, **sample)
    sys.stdout.write(row.text[printed:] + "\n")
    return prompt + row.text


def generate_batch(model: GPT, tokenizer: Tokenizer, prompts: list[str], stop: list[str], sample: dict) -> list[str]:
    """Continuations of several prompts, in their order. Prompts of equal token length share a batch:
    the model has no padding mask, so unequal ones cannot."""
    encoded = [_prompt_ids(tokenizer, p) for p in prompts]
    rows = [Continuation(tokenizer, stop) for _ in prompts]
    for length in dict.fromkeys(len(ids) for ids in encoded):
        members = [i for i, ids in enumerate(encoded) if len(ids) == length]
        _continue_rows(model, [encoded[i] for i in members], [rows[i] for i in members], sample)
    return [row.text for row in rows]


def _continue_rows(model: GPT, ids: list[list[int]], rows: list[Continuation], sample: dict) -> None:
    def on_token(next_ids: torch.Tensor) -> bool:
        for row, token_id in zip(rows, next_ids[:, 0].tolist()):
            row.add(token_id)
        return all(row.done for row in rows)

    generate(model, torch.tensor(ids, device=model.wte.weight.device), on_token=on_token, **sample)
