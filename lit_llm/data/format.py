"""The on-disk format of a prepared dataset, for everything that reads one:

DIR/metadata.json      vocabulary size, token/document/byte counts per split, the inputs
DIR/tokenizer.json     the tokenizer that wrote the ids
DIR/{train,val}/       LitData chunks of int32 token ids and their index.json
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_llm.model.tokenizer import Tokenizer

METADATA = "metadata.json"
TOKENIZER = "tokenizer.json"
INDEX = "index.json"  # LitData's list of a split's chunks
SPLITS = ("train", "val")
# the small files that describe a dataset, next to its chunks
DESCRIPTION = (METADATA, TOKENIZER, *(f"{split}/{INDEX}" for split in SPLITS))


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a prepared dataset; run `lit-llm prepare --output_dir {folder}` first"
        )
    return json.loads(path.read_text())


def read_tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(Path(folder) / TOKENIZER)


def read_index(split_dir: Path) -> dict:
    return json.loads((split_dir / INDEX).read_text())


def count_tokens(split_dir: Path) -> int:
    """Tokens in a split, read from LitData's index (one int32 each)."""
    return sum(chunk["dim"] for chunk in read_index(split_dir)["chunks"])
