"""Trainer plug-ins: throughput/MFU logging with an end-of-run cost summary, text samples at validation,
and the checkpoint callback and writer."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from lit_llm.checkpointing import read_checkpoint, save_atomically
from lit_llm.estimate import run_cost_summary
from lit_llm.hardware import detect_accelerator
from lit_llm.sampling import generate


class Throughput(L.Callback):
    """Logs ``train/tokens_per_sec`` (all devices together) and ``train/mfu`` where the chip's peak is known.

    The rate is measured over the last ``log_every_n_steps`` optimizer steps, wall clock between step
    ends, so it is what the run really achieved, data loading and hooks included.
    """

    def __init__(self) -> None:
        self.step_ends: deque[tuple[float, int]] = deque()  # (time, tokens so far) at recent optimizer steps
        self.last_step = -1
        self.run_start = 0.0
        self.run_tokens = 0
        self.accelerator = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.accelerator = detect_accelerator(pl_module.device)
        self.run_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.run_tokens += (batch.size(1) - 1) * batch.size(0) * trainer.world_size
        if trainer.global_step == self.last_step:  # still accumulating gradients
            return
        self.last_step = trainer.global_step
        self.step_ends.append((time.perf_counter(), self.run_tokens))
        if len(self.step_ends) > trainer.log_every_n_steps + 1:
            self.step_ends.popleft()
        if len(self.step_ends) < 2 or not getattr(pl_module, "logs_this_step", True):  # the first step includes
            return  # start-up and compilation: never timed; other steps log only when the logger writes
        (t0, tokens0), (t1, tokens1) = self.step_ends[0], self.step_ends[-1]
        tokens_per_sec = (tokens1 - tokens0) / (t1 - t0)
        pl_module.log("train/tokens_per_sec", tokens_per_sec, on_step=True, on_epoch=False)
        if self.accelerator is not None:
            flops = pl_module.config.flops_per_token(batch.size(1) - 1) * tokens_per_sec
            pl_module.log(
                "train/mfu",
                flops / (self.accelerator.bf16_tflops * 1e12 * trainer.world_size),
                on_step=True,
                on_epoch=False,
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.run_start
        seq_len = trainer.datamodule.seq_len or pl_module.config.block_size
        rank_zero_info(
            run_cost_summary(pl_module.config, self.run_tokens, seconds, trainer.world_size, seq_len, self.accelerator)
        )


def eager_mode():
    """Run compiled modules eagerly inside this context (torch>=2.6; older versions just compile)."""
    if hasattr(torch.compiler, "set_stance"):
        return torch.compiler.set_stance("force_eager")
    return contextlib.nullcontext()


class TextSampler(L.Callback):
    """Continues a fixed prompt at every validation and logs the text to TensorBoard."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.sample_tokens <= 0 or trainer.sanity_checking:
            return
        tokenizer = pl_module.tokenizer
        prompt = torch.tensor(
            [tokenizer.encode(pl_module.sample_prompt) or [tokenizer.eot_id]], device=pl_module.device
        )
        generator = torch.Generator(device=pl_module.device).manual_seed(1234)
        was_training = pl_module.model.training
        pl_module.model.eval()
        with eager_mode():  # a compiled model would recompile for every new sequence length
            new = generate(
                pl_module.model, prompt, pl_module.sample_tokens, temperature=0.8, top_k=200, generator=generator
            )
        pl_module.model.train(was_training)
        text = pl_module.sample_prompt + tokenizer.decode(new[0].tolist())
        if trainer.is_global_zero and trainer.logger is not None and hasattr(trainer.logger.experiment, "add_text"):
            # Markdown needs indented lines to keep line breaks.
            trainer.logger.experiment.add_text("samples", "    " + text.replace("\n", "\n    "), trainer.global_step)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through ``save_atomically``: Lightning's own save stages the file in the system temp folder and
    moves it, which is a copy (not atomic) whenever that folder is on another file system than the run."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save_atomically(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return read_checkpoint(Path(path))  # weights only, and a damaged file said in one line


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus: ``last.ckpt`` always holds the final step when training ends
    (Lightning only writes it at the end if it was never written before)."""

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
