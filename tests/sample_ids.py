"""A callback for tests: which training sequences each optimizer step saw, by a hash of each sequence."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import lightning as L


class RecordSamples(L.Callback):
    """Appends ``{"step", "rank", "ids"}`` per micro-batch to RUN/samples-RANK.jsonl (``ids``: the first 12 hex
    digits of each sequence's sha1)."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        ids = [hashlib.sha1(row.numpy().tobytes()).hexdigest()[:12] for row in batch.cpu()]
        record = {"step": trainer.global_step, "rank": trainer.global_rank, "ids": ids}
        with open(Path(trainer.default_root_dir) / f"samples-{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


RECORD = "--trainer.callbacks+=tests.sample_ids.RecordSamples"


def samples_by_step(run_dir: Path) -> dict[int, Counter]:
    """The multiset of sequence ids each optimizer step trained on, over all ranks and micro-batches."""
    steps: dict[int, Counter] = {}
    for path in run_dir.glob("samples-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            steps.setdefault(record["step"], Counter()).update(record["ids"])
    return steps
