"""The step benchmarks' data: tiny Shakespeare as byte shards, TokenDataModule's train loader over them, its
first batches for the bare loops, and the loader's own tokens/s (see benchmarks/throughput.py)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness import SHAKESPEARE
from lit_llm.data.prepare import prepare
from lit_llm.model.config import ModelConfig
from lit_llm.train.datamodule import TokenDataModule


@dataclass
class Shape:
    config: ModelConfig  # vocabulary resolved against the data
    seq_len: int
    batch_size: int

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size


def prepare_shards(workdir: Path, min_train_tokens: int) -> Path:
    """Byte-tokenize tiny Shakespeare, repeated until the train split holds ``min_train_tokens``.

    Byte tokens suit every preset: a step costs the same whatever the token ids, and a preset with a
    fixed large vocabulary (gpt2-124m: 50304) still gets its full-size embedding, head and loss.
    """
    text = SHAKESPEARE.read_text()
    repeats = max(1, math.ceil(min_train_tokens / (0.85 * len(text.encode()))))
    corpus = workdir / "corpus.txt"
    corpus.write_text(text * repeats)
    out = workdir / "shards"
    prepare([str(corpus)], str(out), tokenizer="byte")
    return out


def train_tokens(data_dir: Path) -> int:
    return json.loads((data_dir / "metadata.json").read_text())["splits"]["train"]["tokens"]


def data_vocab_size(data_dir: Path) -> int:
    return TokenDataModule(str(data_dir)).vocab_size


def train_loader(data_dir: Path, shape: Shape, num_workers: int):
    """TokenDataModule's own train loader, set up outside a fit (with the sequence length given)."""
    datamodule = TokenDataModule(
        str(data_dir), batch_size=shape.batch_size, seq_len=shape.seq_len, num_workers=num_workers
    )
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def load_batches(data_dir: Path, shape: Shape, count: int, device: torch.device) -> list[torch.Tensor]:
    """The first ``count`` batches the Trainer's loader yields, kept on the host for the bare loops."""
    batches = []
    for batch in train_loader(data_dir, shape, num_workers=0):
        batches.append(batch.pin_memory() if device.type == "cuda" else batch)
        if len(batches) == count:
            break
    return batches


def loader_tokens_per_sec(data_dir: Path, shape: Shape, num_workers: int, batches: int) -> float:
    """The StreamingDataLoader that TokenDataModule gives the Trainer, drained as fast as it yields."""
    loader = train_loader(data_dir, shape, num_workers)
    available = len(loader)
    if available < 3:
        raise ValueError(f"the train split holds only {available} batches; prepare more data")
    batches = min(batches, available - 1)
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per step
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * shape.tokens_per_step / (time.perf_counter() - start)
