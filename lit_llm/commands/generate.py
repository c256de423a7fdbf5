"""`lit-llm generate`: sample continuations of prompts from a checkpoint, a run folder or a Hugging Face folder."""

from __future__ import annotations

import sys
from typing import Literal

import torch

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.model.model import GPT
from lit_llm.model.sampling import Continuation, generate, generate_batch, prompt_ids
from lit_llm.model.tokenizer import Tokenizer
from lit_llm.planning.hardware import resolve_device, resolve_dtype


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
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    device = resolve_device(device)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.to(resolve_dtype(dtype, device))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    sample = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "generator": generator,
    }
    if isinstance(prompt, str):
        return stream_one(model, tokenizer, prompt, stop or [], sample)
    if not prompt:
        raise ValueError("--prompt is an empty list; pass a text or a non-empty JSON list of texts")
    texts = [p + t for p, t in zip(prompt, generate_batch(model, tokenizer, prompt, stop or [], sample))]
    print("\n\n".join(texts))
    return texts


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Refuse settings that sample nothing or from no tokens, before loading the model.

    More new tokens than the model's block_size are fine: the context then slides (see `sampling.generate`).
    """
    if max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens {max_new_tokens} must be at least 1")
    if temperature < 0:
        raise ValueError(f"--temperature {temperature} must not be negative; use 0 for greedy decoding, 0.8 to sample")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top_k {top_k} must be at least 1 (1 is greedy), or null for all tokens")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top_p {top_p} must lie in (0, 1], e.g. 0.9, or null for no nucleus sampling")


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
    ids = torch.tensor([prompt_ids(tokenizer, prompt)], device=model.wte.weight.device)
    generate(model, ids, on_token=on_token, **sample)
    sys.stdout.write(row.text[printed:] + "\n")
    return prompt + row.text


CLI = {
    "name": "generate",
    "summary": "sample continuations of prompts from a checkpoint, run folder or Hugging Face folder",
    "function": "generate_text",
}
