"""What `lit-llm fit` prints: a run line and a model line of lit-llm's own instead of Lightning's banners and
model table, and one progress bar over the run's steps."""

from __future__ import annotations

import logging
import sys

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, Timer, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from lit_llm.planning.estimate import human
from lit_llm.train.callbacks import Throughput

# Lightning's start-up lines that the run line replaces (the device, the seed), that repeat the user's own
# setting back (the end summary names the final step), or that advertise a service.
BANNERS = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "💡 Tip:",
    "Seed set to",
    "`Trainer(limit_",
    "`Trainer.fit` stopped: `max_steps=",
    "Trainer already configured with model summary callbacks",  # lit-llm's ModelLine, or the user's own
)
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


def global_batch(trainer: L.Trainer) -> int | None:
    """Sequences per optimizer step over all devices (None: the data module does not say its micro batch)."""
    micro = getattr(trainer.datamodule, "batch_size", None)
    return micro * trainer.world_size * trainer.accumulate_grad_batches if micro else None


def run_line(trainer: L.Trainer) -> str:
    """e.g. ``lit-llm fit: 8 cuda device(s), precision bf16-mixed, strategy DDPStrategy, global batch 512
    sequences (micro 16 × 8 device(s) × 4 accumulation), 2,000 steps``."""
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    nodes = f" on {trainer.num_nodes} nodes" if trainer.num_nodes > 1 else ""
    sequences, accumulation = global_batch(trainer), trainer.accumulate_grad_batches
    batch = (
        f"global batch {sequences} sequences "
        f"(micro {trainer.datamodule.batch_size} × {trainer.world_size} device(s) × {accumulation} accumulation)"
        if sequences
        else f"{accumulation} accumulation step(s)"
    )
    steps = f", {trainer.max_steps:,} steps" if trainer.max_steps > 0 else ""
    return (
        f"lit-llm fit: {trainer.num_devices} {device} device(s){nodes}, precision {trainer.precision}, "
        f"strategy {type(trainer.strategy).__name__}, {batch}{steps}"
    )


class ModelLine(ModelSummary):
    """The model in one line, in `lit-llm plan`'s units, instead of Lightning's table: its FLOPs column
    measures only a module's ``example_input_array`` (0 here), and its rows are the GPT and two empty
    metrics. A ModelSummary, so that ``trainer.enable_model_summary false`` and a user's own summary
    callback (``--trainer.callbacks ModelSummary``, Lightning's table) replace it as they replace Lightning's."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(model_line(trainer, pl_module.config), flush=True)


def model_line(trainer: L.Trainer, config) -> str:
    """e.g. ``model: 836.7k parameters (787.6k non-embedding); training FLOPs 8.24e+12 for 1.5M tokens (5.4M per
    token)``, counted as `lit-llm plan` counts them, from the config: the same whatever the sharding."""
    seq_len = getattr(trainer.datamodule, "sequence_length", config.block_size)
    per_token = config.flops_per_token(seq_len)
    total, blocks = config.num_params(), config.num_params(include_embeddings=False)
    params = f"model: {human(total)} parameters ({human(blocks)} non-embedding)"
    sequences = global_batch(trainer)
    if trainer.max_steps <= 0 or not sequences:  # a run bounded by epochs or time: its tokens are unknown
        return f"{params}; {human(per_token)} training FLOPs per token (as lit-llm plan counts)"
    tokens = trainer.max_steps * sequences * seq_len
    return (
        f"{params}; training FLOPs {per_token * tokens:.3g} for {human(tokens)} tokens ({human(per_token)} per token)"
    )


# The bar's metrics (LitLLM's prog_bar metrics, Throughput's rates) by name and format; other prog_bar metrics
# follow as they are.
BAR_METRICS = {
    "train/loss": ("loss", "{:.3f}"),
    "val/loss": ("val", "{:.4f}"),
    "train/tokens_per_sec": ("tok/s", "{:,.0f}"),
    "train/mfu": ("MFU", "{:.1%}"),
}


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting optimizer steps of ``trainer.max_steps`` in one bar over the whole run
    (Lightning's counts the batches of each epoch, from 0 in every epoch), with the latest train loss, val
    loss, tokens/s and MFU (where the chip is known)."""

    def init_train_tqdm(self) -> Tqdm:
        """Lightning's training bar, counting steps from the resumed one (its rate too)."""
        max_steps = self.trainer.max_steps
        return Tqdm(
            total=max_steps if max_steps > 0 else None,
            initial=self.trainer.global_step,
            unit="step",
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format="step {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
        )

    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        pass  # one bar for the whole run: an epoch is how far the data goes, not how far the run is

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        bar, step = self.train_progress_bar, trainer.global_step
        # A new optimizer step (step == bar.n while gradients accumulate), at the refresh rate or the last one.
        if self.is_enabled and step != bar.n and (step % self.refresh_rate == 0 or step == bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
        # Host numbers only, read at every step without a device sync: LitLLM logs its prog_bar metrics from
        # the CPU, and Throughput keeps its rates (logged as plain numbers, which Lightning puts on the device).
        metrics = dict(trainer.progress_bar_metrics)
        for callback in trainer.callbacks:
            if isinstance(callback, Throughput):
                metrics.update(callback.latest)
        shown = {name: form.format(metrics[key]) for key, (name, form) in BAR_METRICS.items() if key in metrics}
        return {**shown, **{key: value for key, value in metrics.items() if key not in BAR_METRICS}}


def console_callbacks(callbacks: list[L.Callback], progress_bar: bool | None, summary: bool | None) -> list:
    """The run line, then lit-llm's model line and progress bar where the Trainer would add Lightning's: its
    flag is not false (None is Lightning's default: on) and the user's callbacks hold none of their own."""
    ours = [RunLine()]
    if summary is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
        ours.append(ModelLine())
    if progress_bar is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
        ours.append(StepProgressBar())
    return ours
