"""The step benchmarks' training steps: lit-llm's Lightning fit, the bare PyTorch loop and the reference GPT,
each built from a Variant (the speed features it turns on), with the clocks that time their steps."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch

import lit_llm.train.strategy  # noqa: F401  (registers the `fsdp2` strategy name)
from benchmarks.harness import StepClock, time_call
from benchmarks.reference_gpt import ReferenceConfig, ReferenceGPT
from benchmarks.step_data import Shape
from lit_llm.distributed.parallelize import parallelize
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import chunked_next_token_loss, next_token_loss, weight_decay_groups
from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.module import LitLLM


@dataclass(frozen=True)
class Variant:
    """One way of running a training step. `kind` picks the runner; the rest are speed features."""

    name: str
    kind: str  # lightning | bare | reference
    precision: str = "32-true"  # 32-true | bf16-mixed
    compile: bool = False
    activation_checkpointing: bool = False
    optimizer: str = "fused"  # fused (lit-llm's choice) | foreach | for-loop  (bare and reference only)
    loss: str = "plain"  # plain (lit-llm's) | compiled | chunked  (bare only)
    sdpa: str = "auto"  # auto (SDPA picks: flash where it can) | math (forces the unfused kernel)
    strategy: str = "auto"  # auto | fsdp2  (lightning only)
    num_workers: int = 1  # lightning's data loader workers
    gelu: str | None = None  # tanh | exact: overrides the model config's GELU (None keeps it)

    def model_config(self, config: ModelConfig) -> ModelConfig:
        return replace(config, gelu=self.gelu) if self.gelu else config


@dataclass(frozen=True)
class Bench:
    """Where the variants run: the shape, the prepared shards, a scratch folder and the device."""

    shape: Shape
    data_dir: Path
    workdir: Path
    device: torch.device

    def runner(self, variant: Variant, batches: list[torch.Tensor]):
        if variant.kind == "lightning":
            return LightningRunner(variant, self.shape, self.data_dir, self.workdir, self.device)
        return BareRunner(variant, self.shape, batches, self.device)


# ---- timing ------------------------------------------------------------------------------------
class BatchStartClock(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.clock.tick()


class InterleavedSteps(L.Callback):
    """At every Lightning batch start, one step of each bare runner, timed apart from Lightning's interval.

    Neighbouring steps of all variants then share the machine's load of that moment, which a shared CPU
    changes from second to second. Ticks come in pairs: the end of the previous Lightning interval, then
    the start of this one.
    """

    def __init__(self, clock: StepClock, runners: dict, times: dict[str, tuple[list[float], list[float]]]) -> None:
        self.clock, self.runners, self.times = clock, runners, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.clock.tick()
        step_each(self.runners, self.times, batch_idx)
        self.clock.tick()


def rotated(items: list, start: int) -> list:
    """``items`` from index ``start`` on, wrapping round: no variant always runs first, after the same one."""
    return items[start % len(items) :] + items[: start % len(items)]


def step_each(runners: dict, times: dict[str, tuple[list[float], list[float]]], start: int) -> None:
    """One step of every runner, in an order rotated by ``start``; their wall and CPU seconds go to ``times``."""
    for name in rotated(list(runners), start):
        wall, cpu = time_call(runners[name].train_step)
        times[name][0].append(wall)
        times[name][1].append(cpu)


def sdpa_context(backend: str):
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


# ---- runners -----------------------------------------------------------------------------------
def build_optimizer(params, variant: Variant) -> torch.optim.Optimizer:
    """AdamW as LitLLM configures it: decay on matrices only, fused unless told otherwise."""
    kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    return torch.optim.AdamW(weight_decay_groups(params, 0.1), lr=6e-4, betas=(0.9, 0.95), **kinds[variant.optimizer])


class BareRunner:
    """A plain PyTorch training loop, as a nanoGPT user writes it (bf16 autocast, clip 1.0, AdamW)."""

    def __init__(self, variant: Variant, shape: Shape, batches: list[torch.Tensor], device: torch.device) -> None:
        self.variant, self.shape, self.batches, self.device = variant, shape, batches, device
        self.model = self._build_model().to(device)
        self.loss_fn = self._build_loss()
        self.optimizer = build_optimizer(self.model.parameters(), variant)
        self.next_batch = 0

    def _build_model(self) -> torch.nn.Module:
        c = self.variant.model_config(self.shape.config)
        if self.variant.kind == "reference":
            gelu = "tanh" if c.gelu == "tanh" else "none"
            return ReferenceGPT(
                ReferenceConfig(c.block_size, c.vocab_size, c.n_layer, c.n_head, c.n_embd, c.bias, c.dropout, gelu)
            )
        # compiled below, with its loss (parallelize's compile would compile the model alone)
        return parallelize(GPT(c), activation_checkpointing=self.variant.activation_checkpointing)

    def _build_loss(self):
        """A function (model, inputs, targets) -> loss, compiled as the variant asks."""
        v = self.variant
        if v.kind == "reference":  # nanoGPT compiles the whole model, its loss included
            compiled = torch.compile(self.model) if v.compile else self.model
            return lambda model, x, y: compiled(x, y)
        if v.loss == "chunked":  # as LitLLM with `model.loss: chunked`
            trunk = torch.compile(self.model.hidden_states) if v.compile else self.model.hidden_states
            return lambda model, x, y: chunked_next_token_loss(trunk(x), model.lm_head.weight, y)
        if v.compile:
            parallelize(self.model, compile=True)  # the model as `model.compile: true` compiles it; LitLLM
            # also compiles its loss then, which the `compiled` loss variant measures
        cross_entropy = torch.compile(next_token_loss) if v.loss == "compiled" else next_token_loss
        return lambda model, x, y: cross_entropy(model(x), y)

    def train_step(self) -> None:
        batch = self.batches[self.next_batch % len(self.batches)].to(self.device, non_blocking=True).long()
        self.next_batch += 1
        with autocast(self.device, self.variant.precision), sdpa_context(self.variant.sdpa):
            loss = self.loss_fn(self.model, batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, warmup: int, steps: int) -> tuple[list[float], list[float]]:
        clock = StepClock(self.device)
        for _ in range(warmup + steps):
            clock.tick()
            self.train_step()
        clock.tick()
        wall, cpu = clock.intervals()
        return wall[warmup:], cpu[warmup:]


class LightningRunner:
    """lit-llm's real training step: LitLLM + TokenDataModule through L.Trainer, one fit per round.

    The module (and its compiled model) is kept across rounds, as the bare runner keeps its model; each
    round is a fresh Trainer, so its optimizer restarts and the warm-up steps absorb that.
    """

    def __init__(self, variant: Variant, shape: Shape, data_dir: Path, workdir: Path, device: torch.device) -> None:
        self.variant, self.shape, self.device = variant, shape, device
        self.workdir = workdir
        self.module = LitLLM(
            architecture=variant.model_config(shape.config),
            compile=variant.compile,
            activation_checkpointing=variant.activation_checkpointing,
            warmup_steps=10,
            sample_tokens=0,  # samples are drawn at validation, which the benchmark switches off
        )
        self.datamodule = TokenDataModule(
            str(data_dir), batch_size=shape.batch_size, seq_len=shape.seq_len, num_workers=variant.num_workers
        )
        self.fits = 0

    def run(
        self, warmup: int, steps: int, side_runners: dict | None = None, side_times: dict | None = None
    ) -> tuple[list[float], list[float]]:
        """Timed steps of one fit; with ``side_runners``, their steps run in between (InterleavedSteps)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        if self.fits and self.variant.strategy == "fsdp2":
            raise RuntimeError("an FSDP2 module is sharded once: measure it in a single round (--rounds 1)")
        clock = StepClock(self.device)
        timer = InterleavedSteps(clock, side_runners, side_times) if side_runners else BatchStartClock(clock)
        trainer = L.Trainer(
            accelerator=self.device.type,
            devices=1,
            strategy=self.variant.strategy,
            precision=self.variant.precision,
            max_steps=warmup + steps + 1,
            log_every_n_steps=10,  # as the experiment YAMLs log
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_model_summary=False,
            logger=TensorBoardLogger(self.workdir / "logs", name=self.variant.name, version=f"fit{self.fits}"),
            default_root_dir=self.workdir,
            callbacks=[timer],
        )
        self.fits += 1
        with sdpa_context(self.variant.sdpa):
            trainer.fit(self.module, self.datamodule)
        if (
            skipped := self.module.nonfinite.total()
        ):  # a skipped step has no optimizer update: it would flatter the timing
            raise RuntimeError(f"{skipped} step(s) had a non-finite loss or gradient")
        wall, cpu = clock.intervals()
        if side_runners:  # the intervals from a batch's second tick to the next batch's first
            wall, cpu = wall[1::2], cpu[1::2]
        return wall[warmup : warmup + steps], cpu[warmup : warmup + steps]
