"""What `lit-llm fit` prints before training: one line of lit-llm's own instead of Lightning's banners."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import Timer

# Lightning's start-up lines that the run line replaces (the device, the seed), that repeat the user's own
# setting back, or that advertise a service.
BANNERS = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:", "Seed set to", "`Trainer(limit_")
BANNER_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")


class DropBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(BANNERS)


def quiet_lightning() -> None:
    """Drop Lightning's banners; its warnings and other messages still come through."""
    for name in BANNER_LOGGERS:
        logging.getLogger(name).addFilter(DropBanners())


class RunLine(L.Callback):
    """At the start of fit: refuse a run that would never end, then say what will run, in one line."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        timed = any(isinstance(callback, Timer) for callback in trainer.callbacks)
        if stage == "fit" and trainer.max_steps == -1 and trainer.max_epochs == -1 and not timed:
            raise ValueError(
                "trainer.max_steps is -1 and max_epochs is -1: the run would never end; pass --trainer.max_steps N"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(run_line(trainer), flush=True)  # stdout: what runs; stderr stays for what went wrong


def run_line(trainer: L.Trainer) -> str:
    """e.g. ``lit-llm fit: 8 cuda device(s), precision bf16-mixed, strategy DDPStrategy, global batch 512
    sequences (micro 16 × 8 device(s) × 4 accumulation), 2,000 steps``."""
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    nodes = f" on {trainer.num_nodes} nodes" if trainer.num_nodes > 1 else ""
    micro = getattr(trainer.datamodule, "batch_size", None)
    accumulation = trainer.accumulate_grad_batches
    batch = (
        f"global batch {micro * trainer.world_size * accumulation} sequences "
        f"(micro {micro} × {trainer.world_size} device(s) × {accumulation} accumulation)"
        if micro
        else f"{accumulation} accumulation step(s)"
    )
    steps = f", {trainer.max_steps:,} steps" if trainer.max_steps > 0 else ""
    return (
        f"lit-llm fit: {trainer.num_devices} {device} device(s){nodes}, precision {trainer.precision}, "
        f"strategy {type(trainer.strategy).__name__}, {batch}{steps}"
    )
