"""Trainer plug-ins: throughput/MFU logging with an end-of-run cost summary, text samples at validation,
and the checkpoint callback (which also stops a run cleanly on SIGTERM or SLURM's warning signal) and writer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_llm.checkpoint.files import EMA_KEY, read_checkpoint, save_atomically
from lit_llm.model.sampling import generate
from lit_llm.planning.estimate import run_cost_summary
from lit_llm.planning.hardware import detect_accelerator


class Throughput(L.Callback):
    """Logs ``train/tokens_per_sec`` (all devices together) and ``train/mfu`` where the chip's peak is known.

    The rate is measured over the last ``log_every_n_steps`` optimizer steps, on a clock that stops from
    the start of a validation or a checkpoint save to the start of the next training batch, so the curve
    shows training speed (data loading and hooks included) without dips after each validation and
    checkpoint. The end-of-run cost summary is the all-in figure: wall clock from the first step.
    Reads from the module what LitLLM documents for callbacks: ``config``, ``device`` and ``logs_this_step``.
    """

    def __init__(self) -> None:
        self.step_ends: deque[tuple[float, int]] = deque()  # (training clock, tokens so far) at recent steps
        self.last_step = -1
        self.run_start = 0.0
        self.run_tokens = 0
        self.seq_len: int | None = None  # of the batches trained on
        self.accelerator = None
        self.excluded = 0.0  # seconds of validation and checkpointing so far, off the training clock
        self.paused_at: float | None = None
        self.training = False  # the sanity check's validation runs before training starts
        self.latest: dict[str, float] = {}  # the rates last logged, as host numbers: the progress bar shows them

    def training_clock(self) -> float:
        return time.perf_counter() - self.excluded

    def pause(self) -> None:
        if self.paused_at is None and self.training:
            self.paused_at = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.accelerator = detect_accelerator(pl_module.device)
        self.run_start = time.perf_counter()
        self.training = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pause()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.pause()  # the save itself follows this hook; no hook marks its end, the next batch start does

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.paused_at is not None:
            self.excluded += time.perf_counter() - self.paused_at
            self.paused_at = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.seq_len = batch.size(1) - 1  # a batch holds seq_len + 1 tokens per sequence: inputs and targets
        self.run_tokens += self.seq_len * batch.size(0) * trainer.world_size
        if trainer.global_step == self.last_step:  # still accumulating gradients
            return
        self.last_step = trainer.global_step
        self.step_ends.append((self.training_clock(), self.run_tokens))
        if len(self.step_ends) > trainer.log_every_n_steps + 1:
            self.step_ends.popleft()
        if len(self.step_ends) < 2 or not pl_module.logs_this_step:  # the first step includes start-up and
            return  # compilation: never timed; other steps log only when the logger writes
        (t0, tokens0), (t1, tokens1) = self.step_ends[0], self.step_ends[-1]
        tokens_per_sec = (tokens1 - tokens0) / (t1 - t0)
        self.latest = {"train/tokens_per_sec": tokens_per_sec}
        if self.accelerator is not None:
            flops = pl_module.config.flops_per_token(self.seq_len) * tokens_per_sec
            self.latest["train/mfu"] = flops / (self.accelerator.bf16_tflops * 1e12 * trainer.world_size)
        for name, value in self.latest.items():
            pl_module.log(name, value, on_step=True, on_epoch=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.run_start
        seq_len = self.seq_len or pl_module.config.block_size  # block_size: no batch was trained
        val_loss = trainer.callback_metrics.get("val/loss")  # the final validation's: every run ends with one
        summary = run_cost_summary(
            pl_module.config,
            self.run_tokens,
            seconds,
            trainer.world_size,
            seq_len,
            self.accelerator,
            step=trainer.global_step,
            val_loss=None if val_loss is None else float(val_loss),
            best_checkpoint=best_checkpoint(trainer),
        )
        rank_zero_info(summary)


def best_checkpoint(trainer: L.Trainer) -> tuple[str, float] | None:
    """best.ckpt's path and val loss, from the callback that keeps it (LitLLM's, by val/loss); None before
    the first validation or without it."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor == "val/loss" and callback.best_model_path:
            return callback.best_model_path, float(callback.best_model_score)
    return None


def eager_mode():
    """Run compiled modules eagerly inside this context (torch>=2.6; older versions just compile). Before
    torch._dynamo is imported nothing is compiled, and `set_stance` would import it (1.5-2 CPU-s)."""
    if hasattr(torch.compiler, "set_stance") and "torch._dynamo" in sys.modules:
        return torch.compiler.set_stance("force_eager")
    return contextlib.nullcontext()


class TextSampler(L.Callback):
    """Continues a fixed prompt at every validation and logs the text to TensorBoard.

    Reads from the module what LitLLM documents for callbacks: ``model``, ``tokenizer`` and ``device``.
    """

    def __init__(self, prompt: str, max_new_tokens: int) -> None:
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.max_new_tokens <= 0 or trainer.sanity_checking:
            return
        tokenizer = pl_module.tokenizer
        prompt = torch.tensor([tokenizer.encode(self.prompt) or [tokenizer.eot_id]], device=pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(1234)
        was_training = pl_module.model.training
        pl_module.model.eval()
        with eager_mode():  # a compiled model would recompile for every new sequence length
            new = generate(
                pl_module.model, prompt, self.max_new_tokens, temperature=0.8, top_k=200, generator=generator
            )
        pl_module.model.train(was_training)
        text = self.prompt + tokenizer.decode(new[0].tolist())
        if trainer.is_global_zero and trainer.logger is not None and hasattr(trainer.logger.experiment, "add_text"):
            # Markdown needs indented lines to keep line breaks.
            trainer.logger.experiment.add_text("samples", "    " + text.replace("\n", "\n    "), trainer.global_step)


class WeightEMA(L.Callback):
    """An exponential moving average of the model's weights, updated after every optimizer step
    (``ema = decay * ema + (1 - decay) * weights``), kept in fp32 on the training device, saved in every
    checkpoint beside the weights (``ema_state_dict``) and restored on resume. Training itself is unchanged.

    Use the EMA weights with ``lit-llm average --checkpoints CKPT --ema --output ema.ckpt`` (then generate,
    evaluate or export ``ema.ckpt``). Turn it on in the YAML::

        trainer:
          callbacks:
            - class_path: lit_llm.train.callbacks.WeightEMA
              init_args: {decay: 0.999}

    A decay d averages over about 1 / (1 - d) steps: 0.999 suits runs of several thousand steps. Under fsdp2
    the EMA is sharded like the weights: each rank averages its own shards (no communication per step) and
    the sharded checkpoint holds the EMA's shards beside the weights'.
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"WeightEMA decay {decay} must be between 0 and 1 (e.g. 0.999)")
        self.decay = decay
        self.weights: dict[str, torch.Tensor] | None = None  # by state_dict name (``model.wte.weight``)
        self.last_step = -1

    def parameters(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """By state_dict name: without the prefix activation checkpointing adds to parameter names."""
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import _CHECKPOINT_PREFIX

        return {f"model.{name.replace(_CHECKPOINT_PREFIX, '')}": p for name, p in pl_module.model.named_parameters()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_step = trainer.global_step
        reshard(pl_module.model)
        params = self.parameters(pl_module)
        if self.weights is None:  # a new run, or a resume of a run trained without EMA: start from here
            self.weights = {name: p.detach().float().clone() for name, p in params.items()}
        else:
            self.weights = {name: w.to(params[name].device) for name, w in self.weights.items()}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.last_step:  # still accumulating gradients
            return
        self.last_step = trainer.global_step
        params = self.parameters(pl_module)
        with torch.no_grad():  # on this rank's shards under fsdp2: a plain foreach, no DTensor dispatch
            averages = [local_tensor(w) for w in self.weights.values()]
            current = [local_tensor(params[name].detach()).float() for name in self.weights]
            torch._foreach_lerp_(averages, current, 1 - self.decay)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.weights is not None:  # shards stay where they are: the sharded save writes each rank's own
            checkpoint[EMA_KEY] = {name: w if is_dtensor(w) else w.detach().cpu() for name, w in self.weights.items()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.weights = checkpoint.get(EMA_KEY)  # None: the run trained without EMA so far


def reshard(model: torch.nn.Module) -> None:
    """Register FSDP2's sharded parameters on every sharded module: a forward without backward (the sanity
    validation) leaves the root module's gathered, whole-size ones in place. The next forward gathers again."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this rank (a view: writing to it writes the DTensor), or the tensor itself."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through ``save_atomically``: Lightning's own save stages the file in the system temp folder and
    moves it, which is a copy (not atomic) whenever that folder is on another file system than the run."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save_atomically(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return read_checkpoint(Path(path))  # weights only, and a damaged file said in one line


class Preempted(SystemExit):
    """The run stopped on a signal after saving ``last.ckpt``; the exit status is 128 + the signal number,
    what a shell reports for a killed process and what schedulers (Kubeflow, torchrun) treat as retryable."""


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus:

    - ``last.ckpt`` always holds the final step when training ends (Lightning only writes it at the end
      if it was never written before);
    - on SIGTERM (any scheduler, Kubernetes, spot instances), Ctrl-C (SIGINT), or SLURM's warning signal
      (the SLURMEnvironment's ``requeue_signal``, SIGUSR1 by default, sent by ``#SBATCH --signal``), the run
      finishes the optimizer step it is in, writes ``last.ckpt`` on every rank, logs the step, requeues
      the SLURM job (when the environment's ``auto_requeue`` is on), and exits (``Preempted``), without
      that step's validation. The signal handler only sets a flag, and the ranks agree on it at each step
      boundary: a save is collective under FSDP2, and a step boundary is where a checkpoint resumes
      exactly. The same command line then resumes. Ctrl-C before the first step, or a second Ctrl-C,
      stops at once (there is nothing new to save, or the user asked not to wait), as Python would.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop_signal = 0  # the signal this process received; 0: none
        self.exit_signal = 0  # the signal all ranks agreed on, once last.ckpt holds the step
        self.requeue_signal: int | None = None
        self.checked_step = -1
        self.training = False
        self.is_global_zero = True
        self.previous_sigint = None  # the handler before fit, put back when fit ends

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.is_global_zero = trainer.is_global_zero
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self.previous_sigint = signal.signal(signal.SIGINT, self.on_sigint)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if self.previous_sigint is not None:
            signal.signal(signal.SIGINT, self.previous_sigint)
            self.previous_sigint = None

    def on_sigint(self, signum: int, frame) -> None:
        if not self.training or self.stop_signal == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # die of the signal: the shell reports 130
            os.kill(os.getpid(), signal.SIGINT)
        if self.is_global_zero:
            print("\nCtrl-C: saving the current step, then stopping (Ctrl-C again stops without saving)", flush=True)
        self.on_signal(signum, frame)

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.checked_step = trainer.global_step
        self.training = True
        signals = [signal.SIGTERM]
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.requeue_signal is not None:
            signals.append(environment.requeue_signal)
            self.requeue_signal = environment.requeue_signal if environment.auto_requeue else None
        # Replaces Lightning's handlers (restored when fit ends): they save from inside the handler, which
        # is not collective-safe, and only to hpc_ckpt_N.ckpt.
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                signal.signal(signum, self.on_signal)
        if trainer.received_sigterm:  # arrived before training started, under Lightning's handler
            self.stop_signal = signal.SIGTERM

    def on_signal(self, signum: int, frame) -> None:
        self.stop_signal = self.stop_signal or signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.global_step == self.checked_step:  # still accumulating gradients
            return
        self.checked_step = trainer.global_step
        signum = agreed_signal(trainer, self.stop_signal)
        if not signum or trainer.global_step >= trainer.max_steps:  # the last step finishes the run normally
            return
        if self._last_global_step_saved != trainer.global_step or not self.last_model_path:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        # Exit at the next hook, once Lightning has written this step's metrics (after this hook).
        self.exit_signal = signum

    def on_validation_start(self, trainer, pl_module) -> None:
        self.exit_if_stopping(trainer)  # the stopping step's validation is skipped

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.exit_if_stopping(trainer)

    def exit_if_stopping(self, trainer) -> None:
        if not self.exit_signal:
            return
        trainer.strategy.barrier()
        name = signal.Signals(self.exit_signal).name
        rank_zero_info(
            f"{name}: saved {self.last_model_path} at step {trainer.global_step}; run the same command to resume"
        )
        if self.exit_signal == self.requeue_signal and trainer.is_global_zero:
            requeue_slurm_job()
        raise Preempted(128 + self.exit_signal)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def agreed_signal(trainer: L.Trainer, local: int) -> int:
    """The largest stop signal any rank received (0: none), on every rank, so all stop at the same step."""
    if trainer.world_size == 1:
        return local
    flag = torch.tensor([local], device=trainer.strategy.root_device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item())


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this job (an array task by its own id), as Lightning's SLURM handler does."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except FileNotFoundError:
        rank_zero_warn(f"cannot requeue SLURM job {job}: no scontrol on PATH; resubmit the same script")
        return
    if result.returncode:
        rank_zero_warn(f"scontrol requeue {job} failed ({result.stderr.strip()}); resubmit the same script")
    else:
        rank_zero_info(f"requeued SLURM job {job}")
