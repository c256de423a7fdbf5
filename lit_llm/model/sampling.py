"""Sampling on the model's KV cache: temperature, top-k and top-p, stop tokens and stop strings, batches."""

from __future__ import annotations

import torch

from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import Tokenizer


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator
) -> torch.Tensor:
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


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    return tokenizer.encode(prompt) or [tokenizer.eot_id]  # an empty prompt starts a new document


def generate_batch(model: GPT, tokenizer: Tokenizer, prompts: list[str], stop: list[str], sample: dict) -> list[str]:
    """Continuations of several prompts, in their order. Prompts of equal token length share a batch:
    the model has no padding mask, so unequal ones cannot."""
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
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
