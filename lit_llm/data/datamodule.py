"""LightningDataModule streaming pre-tokenized LitData shards made by `lit-llm prepare`."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

from lit_llm.data.prepare import TOKENIZER, load_metadata
from lit_llm.tokenizer import Tokenizer


class TokenDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str,
        batch_size: int = 8,
        seq_len: int | None = None,
        num_workers: int = 1,
        seed: int = 42,
    ) -> None:
        """
        Args:
            data_dir: a folder written by `lit-llm prepare` (holds train/, val/, tokenizer.json, metadata.json).
            batch_size: sequences per device per micro-step.
            seq_len: tokens per training sequence (default: the model's block_size).
            num_workers: data loader worker processes per device.
            seed: shuffling seed (the same seed resumes the same order).
        """
        super().__init__()
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.num_workers = num_workers
        self.seed = seed
        self.metadata = load_metadata(self.data_dir)
        self.tokenizer = Tokenizer.from_file(self.data_dir / TOKENIZER)
        self.train_dataset: StreamingDataset | None = None
        self.val_dataset: StreamingDataset | None = None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def setup(self, stage: str) -> None:
        block_size = self.trainer.lightning_module.architecture.block_size
        seq_len = self.seq_len or block_size
        if seq_len > block_size:
            raise ValueError(f"data.seq_len={seq_len} exceeds the model's block_size={block_size}; lower seq_len or raise block_size")
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self._dataset("train", seq_len, shuffle=True)
        if self.val_dataset is None:
            self.val_dataset = self._dataset("val", seq_len, shuffle=False)

    def _dataset(self, split: str, seq_len: int, shuffle: bool) -> StreamingDataset:
        tokens = self.metadata["splits"][split]["tokens"]
        if tokens < seq_len + 1:
            raise ValueError(
                f"{self.data_dir}/{split} holds {tokens} tokens, fewer than one sequence of {seq_len + 1}; "
                f"prepare more data (or a larger --val_fraction) or lower data.seq_len"
            )
        return StreamingDataset(
            input_dir=str(self.data_dir / split),
            item_loader=TokensLoader(block_size=seq_len + 1),
            shuffle=shuffle,
            drop_last=True,
            seed=self.seed,
        )

    def _loader(self, dataset: StreamingDataset) -> StreamingDataLoader:
        return StreamingDataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            drop_last=True,
        )

    def train_dataloader(self) -> StreamingDataLoader:
        return self._loader(self.train_dataset)

    def val_dataloader(self) -> StreamingDataLoader:
        return self._loader(self.val_dataset)
