"""Tokenizers: a built-in byte tokenizer, byte-level BPE trained locally, or an existing tokenizer.json.

All three are ``tokenizers.Tokenizer`` objects underneath, so every dataset and checkpoint carries one
``tokenizer.json`` that any Hugging Face tool can read, and no code path depends on which kind it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
# End-of-text markers used by common tokenizers, for tokenizer.json files made elsewhere.
KNOWN_EOT_TOKENS = (EOT, "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>")
# Fill-in-the-middle sentinels (Bavarian et al. 2022), spelt as StarCoder's tokenizer spells them so that
# editors and tools that know StarCoder's infilling format recognise an exported model's.
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"
FIM_TOKENS = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)


class Tokenizer:
    """Text <-> token ids, with the id that separates documents."""

    def __init__(self, backend: HFTokenizer, source: str = "tokenizer.json") -> None:
        self.backend = backend
        eot = next((t for t in KNOWN_EOT_TOKENS if backend.token_to_id(t) is not None), None)
        if eot is None:
            raise ValueError(
                f"{source} has no end-of-text token (looked for {', '.join(KNOWN_EOT_TOKENS)}); "
                f"add one as a special token or let `lit-llm prepare` train a tokenizer"
            )
        self.eot_id: int = backend.token_to_id(eot)

    @property
    def fim_ids(self) -> tuple[int, int, int] | None:
        """The ids of <fim_prefix>, <fim_suffix>, <fim_middle>, or None when the tokenizer lacks any of them."""
        ids = tuple(self.backend.token_to_id(token) for token in FIM_TOKENS)
        return None if None in ids else ids

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.backend.to_str()

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer.json") -> Tokenizer:
        return cls(HFTokenizer.from_str(text), source)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"tokenizer file {path} does not exist; pass an existing tokenizer.json, 'byte' or 'bpe'"
            )
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as err:
            raise ValueError(
                f"{path} is not a valid tokenizer.json ({err}); pass a file saved by the tokenizers library"
            ) from None
        return cls(backend, str(path))

    def save(self, path: str | Path) -> None:
        self.backend.save(str(path))


def with_fim_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` with the three FIM sentinels added as special tokens, after the existing ids:
    every text encodes to the same ids as before, so data prepared without them keeps its meaning."""
    if tokenizer.fim_ids is not None:
        return tokenizer
    backend = HFTokenizer.from_str(tokenizer.to_json())
    backend.add_special_tokens(list(FIM_TOKENS))
    return Tokenizer(backend, "tokenizer with FIM tokens")


def _byte_level(backend: HFTokenizer) -> HFTokenizer:
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return backend


def byte_tokenizer() -> Tokenizer:
    """256 byte ids (id == byte value) plus <|endoftext|> = 256: no training, any text round-trips."""
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps each byte to a printable character; order the vocabulary by byte value.
    char_of_byte = _bytes_to_unicode()
    assert set(char_of_byte.values()) == set(byte_chars)
    vocab = {char_of_byte[b]: b for b in range(256)}
    backend = _byte_level(HFTokenizer(models.BPE(vocab=vocab, merges=[])))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.add_special_tokens([EOT])
    return Tokenizer(backend, "byte tokenizer")


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 style) with ``vocab_size`` ids including <|endoftext|>."""
    if vocab_size < 257:
        raise ValueError(
            f"--vocab_size {vocab_size} is too small for byte-level BPE; use at least 257 (or --tokenizer byte)"
        )
    backend = _byte_level(HFTokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend, "trained BPE tokenizer")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the one ByteLevel uses)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars
