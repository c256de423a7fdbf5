"""Log-likelihoods of continuations given contexts, as lm-evaluation-harness computes them for its `hf` model.

The rules follow lm-eval's ``HFLM`` so that the native path and lm-eval on an exported folder agree to the
last digit: spaces at the end of a context move to the front of the continuation; the continuation's tokens
are those of ``context + continuation`` after the context's own tokens (BPE may merge across the seam, which
this keeps honest); an empty context becomes the end-of-text token (lm-eval's ``prefix_token_id``); inputs
longer than the model keep their last ``block_size`` tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import Tokenizer


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context ids and continuation ids, split where lm-eval splits them."""
    if not context:  # end-of-text as the context, unless the continuation starts with it already
        ids = tokenizer.encode(continuation)
        return ([tokenizer.eot_id], ids) if ids[:1] != [tokenizer.eot_id] else (ids[:1], ids[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


@torch.inference_mode()
def continuation_logprobs(
    model: GPT, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16, min_batches: int = 0
) -> list[tuple[float, bool]]:
    """For each (context ids, continuation ids): the continuation's total log-probability and whether greedy
    decoding would have produced it. Longest inputs first, so a batch pads little (right padding: causal
    attention keeps it from changing what comes before it).

    ``min_batches`` runs extra one-token forward passes until that many were made: sharded (FSDP2) models
    gather their weights in every forward pass, so all ranks must make the same number of them.
    """
    block_size = model.config.block_size
    device = model.wte.weight.device
    inputs = []
    for context, continuation in pairs:
        if not continuation:
            raise ValueError("a continuation encodes to no tokens; every choice must hold some text")
        if len(continuation) > block_size:
            raise ValueError(
                f"a continuation of {len(continuation)} tokens does not fit the model's context of {block_size} "
                f"tokens; score shorter choices or a model with a longer block_size"
            )
        inputs.append((context + continuation)[-(block_size + 1) :][:-1])
    order = sorted(range(len(pairs)), key=lambda i: -len(inputs[i]))
    results: list[tuple[float, bool] | None] = [None] * len(pairs)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in batches:
        width = len(inputs[batch[0]])
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
        logprobs = F.log_softmax(model(ids.to(device)).float(), dim=-1).cpu()
        for row, i in enumerate(batch):
            continuation = torch.tensor(pairs[i][1])
            end = len(inputs[i])
            rows = logprobs[row, end - len(continuation) : end]
            greedy = bool((rows.argmax(dim=-1) == continuation).all())
            results[i] = (rows.gather(1, continuation[:, None]).sum().item(), greedy)
    for _ in range(min_batches - len(batches)):
        model(torch.zeros(1, 1, dtype=torch.long, device=device))
    return results
