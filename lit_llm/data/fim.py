"""Fill-in-the-middle (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle").

Applied at load time, per document, to each training sequence (so one prepared dataset trains with or without
it): with probability ``fim_rate`` a document is cut at two uniformly drawn token positions into prefix,
middle and suffix, and rewritten as

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle     (with probability ``fim_spm_rate``)

The SPM form is the paper's joint-training variant (its appendix D), as StarCoder and Code Llama use it. Each
rewritten document keeps its end-of-text token after the middle, so the model learns to end an infill there.
Documents are the runs between end-of-text tokens in a sequence; the first and last may be fragments of
longer ones, which are treated as documents of their own (as Megatron-LM does). The three sentinels lengthen
the sequence: it is cut back to its length, dropping the tail. The random draw is seeded by the sequence's own
tokens and the data seed, so a resumed run rewrites each sequence exactly as the first run did.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from lit_llm.model.tokenizer import FIM_TOKENS, Tokenizer, with_fim_tokens


def with_fim_tokens_if_asked(tokenizer: Tokenizer, fim: bool, append: bool) -> Tokenizer:
    """`prepare --fim`: the tokenizer with the FIM sentinels. An append keeps its dataset's tokenizer, so one
    that lacks them is refused rather than changed under the data already written."""
    if not fim or tokenizer.fim_ids is not None:
        return tokenizer
    if append:
        raise ValueError(
            "--fim: the dataset's tokenizer.json has no FIM tokens and an append cannot change it; "
            "prepare a new dataset with --fim"
        )
    return with_fim_tokens(tokenizer)


def check_fim_settings(fim_rate: float, fim_spm_rate: float, tokenizer: Tokenizer, where: str) -> None:
    """Rates are probabilities, and FIM needs the sentinels in the data's tokenizer (one line, before training)."""
    for name, rate in (("data.fim_rate", fim_rate), ("data.fim_spm_rate", fim_spm_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name}={rate} must lie in [0, 1], e.g. 0.5 (0 turns FIM off)")
    if fim_rate > 0 and tokenizer.fim_ids is None:
        raise ValueError(
            f"data.fim_rate={fim_rate}: {where}'s tokenizer.json has no {' '.join(FIM_TOKENS)} tokens; "
            "prepare the data with `lit-llm prepare --fim` (or set data.fim_rate 0)"
        )


class FimTransform:
    """LitData item transform: a (seq_len + 1,) token tensor in, the same length out, documents rewritten."""

    def __init__(self, tokenizer: Tokenizer, fim_rate: float, fim_spm_rate: float, seed: int) -> None:
        self.prefix, self.suffix, self.middle = tokenizer.fim_ids
        self.eot = tokenizer.eot_id
        self.fim_rate = fim_rate
        self.fim_spm_rate = fim_spm_rate
        self.seed = seed

    def __call__(self, item: torch.Tensor) -> torch.Tensor:
        tokens = item.numpy()
        rng = np.random.default_rng([self.seed, zlib.crc32(tokens.tobytes())])
        return torch.from_numpy(self.apply(tokens, rng)).to(item.dtype)

    def apply(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pieces = []
        ends = np.flatnonzero(tokens == self.eot)
        start = 0
        for end in [*ends.tolist(), len(tokens)]:
            document = tokens[start:end]
            # draw for every document, even those too short to rewrite, so each draw belongs to a fixed document
            rewrite = rng.random() < self.fim_rate
            pieces.append(self.permute(document, rng) if rewrite and len(document) else document)
            pieces.append(tokens[end : end + 1])  # its end-of-text, if the sequence holds it
            start = end + 1
        return np.concatenate(pieces)[: len(tokens)]

    def permute(self, document: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        low, high = np.sort(rng.integers(0, len(document) + 1, size=2))
        prefix, middle, suffix = document[:low], document[low:high], document[high:]
        sentinel = lambda token: np.array([token], dtype=document.dtype)  # noqa: E731
        if rng.random() < self.fim_spm_rate:
            parts = [sentinel(self.prefix), sentinel(self.suffix), suffix, sentinel(self.middle), prefix, middle]
        else:
            parts = [sentinel(self.prefix), prefix, sentinel(self.suffix), suffix, sentinel(self.middle), middle]
        return np.concatenate(parts)


def infill_prompt(tokenizer: Tokenizer, prefix: list[int], suffix: list[int]) -> list[int]:
    """The PSM prompt a FIM-trained model completes with the middle (then end-of-text): a new document."""
    fim_prefix, fim_suffix, fim_middle = tokenizer.fim_ids
    return [tokenizer.eot_id, fim_prefix, *prefix, fim_suffix, *suffix, fim_middle]
