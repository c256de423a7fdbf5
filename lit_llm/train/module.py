"""The LightningModule: next-token objective, AdamW + schedule, clipping, the skip-step guard, logging."""

from __future__ import annotations

import contextlib
import os

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.aggregation import MeanMetric

from lit_llm.checkpoint.files import CHECKPOINT_KEY
from lit_llm.distributed.parallelize import load_full_state_dict, parallelize
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT, document_mask
from lit_llm.model.objective import (
    LossName,
    LossTerms,
    LRSchedule,
    LRScheduleName,
    chunked_next_token_loss,
    chunked_next_token_loss_with_z,
    next_token_loss,
    next_token_loss_with_z,
)
from lit_llm.model.tokenizer import Tokenizer
from lit_llm.train.optim import OptimizerName, build_optimizer
from lit_llm.train.spikes import NonFiniteGuard, SpikeDetector
from lit_llm.train.strategy import is_sharded


class NonFiniteLossError(FloatingPointError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def derive_step_counts(trainer: L.Trainer, global_batch_size: int | None, micro_batch: int) -> None:
    """The Trainer's batch counts from what the YAML means, set once when fit starts.

    ``model.global_batch_size`` is sequences per optimizer step whatever the device count, so the gradient
    accumulation is derived from it, the micro batch and the devices. An int ``trainer.val_check_interval``
    counts optimizer steps in the YAML while Lightning counts batches, so it is scaled by the accumulation.
    """
    if global_batch_size is not None:
        per_step = micro_batch * trainer.world_size
        if global_batch_size % per_step:
            raise ValueError(
                f"model.global_batch_size={global_batch_size} is not a multiple of data.batch_size × devices "
                f"= {micro_batch} × {trainer.world_size}; change one of them"
            )
        trainer.accumulate_grad_batches = global_batch_size // per_step
        rank_zero_info(
            f"global batch {global_batch_size} sequences = micro batch {micro_batch} × {trainer.world_size} "
            f"device(s) × {trainer.accumulate_grad_batches} accumulation step(s)"
        )
    if isinstance(trainer.val_check_interval, int):
        trainer.val_check_interval *= trainer.accumulate_grad_batches


class LitLLM(L.LightningModule):
    """Trains a GPT with the next-token objective.

    Meets the data module in ``connect`` (called from ``setup``). What callbacks may read, once set up:
    ``model`` (the GPT), ``config`` (its ModelConfig, vocabulary resolved), ``tokenizer``, and
    ``logs_this_step`` (True on the optimizer steps whose metrics the logger writes; set when each batch
    starts, so callbacks log only then and cost no host time on the other steps).
    """

    def __init__(
        self,
        architecture: str | ModelConfig = "micro",
        init_from: str | None = None,
        learning_rate: float = 6e-4,
        min_lr: float | None = None,
        lr_schedule: LRScheduleName = "cosine",
        warmup_steps: int = 100,
        decay_fraction: float = 0.2,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        optimizer: OptimizerName = "adamw",
        muon_lr: float = 0.02,
        muon_momentum: float = 0.95,
        muon_ns_steps: int = 5,
        grad_clip: float | None = 1.0,
        global_batch_size: int | None = None,
        compile: bool = False,
        activation_checkpointing: bool = False,
        loss: LossName = "plain",
        document_masking: bool = False,
        z_loss: float = 0.0,
        spike_skip_sigma: float | None = None,
        spike_skip_window: int = 100,
        max_nonfinite_steps: int = 5,
        sample_prompt: str = "\n",
        sample_tokens: int = 200,
    ) -> None:
        """
        Args:
            architecture: a preset name from lit_llm.model.model.presets.PRESETS, or ModelConfig fields (listed by
                ``--model.architecture.help ModelConfig``; μP: ``parametrization: mup`` and ``mup_base_width``).
            init_from: continue pre-training an existing model: a lit-llm checkpoint, run folder or Hugging
                Face GPT-2/Llama folder. Its architecture replaces ``architecture``, and the data must be
                prepared with its tokenizer (``lit-llm prepare --tokenizer FOLDER/tokenizer.json``).
            learning_rate: peak learning rate, reached after ``warmup_steps``.
            min_lr: final learning rate of the cosine / WSD decay (default: learning_rate / 10).
            lr_schedule: ``cosine`` (warmup then cosine to min_lr), ``wsd`` (warmup, stable, then linear
                decay over the last ``decay_fraction`` of steps) or ``constant`` (after warmup).
            warmup_steps: optimizer steps of linear warmup.
            decay_fraction: share of the run spent decaying in the WSD schedule.
            weight_decay: AdamW weight decay for matrices and embeddings (never for norms and biases).
            betas: AdamW betas.
            optimizer: ``adamw`` for every parameter, or ``muon``: Muon (torch.optim.Muon) for the blocks' matrices
                and AdamW (``learning_rate``, ``betas``) for embeddings, head, norms and biases. Not under fsdp2.
            muon_lr: Muon's peak learning rate (the schedule scales it as it scales ``learning_rate``).
            muon_momentum: Muon's (Nesterov) momentum.
            muon_ns_steps: Newton-Schulz iterations that orthogonalise each Muon update (torch's default 5);
                fewer cost less per step, at some precision. Only with ``optimizer: muon``.
            grad_clip: clip the global gradient norm to this value (None: no clipping; the norm is still logged).
            global_batch_size: sequences per optimizer step over all devices; gradient accumulation is
                derived from it, the micro batch (data.batch_size) and the device count.
            compile: torch.compile the model.
            activation_checkpointing: recompute each block in the backward pass to save memory.
            loss: ``plain`` (logits, then cross-entropy) or ``chunked`` (head and cross-entropy a chunk of
                tokens at a time: the same loss and gradients without ever holding all the logits, which
                saves most of a step's memory at a large vocabulary; not with a sharded model).
            document_masking: each token attends only to the earlier tokens of its own document, and positions
                restart at 0 with each document (documents end with the tokenizer's end-of-text token). Training
                and validation only: generation and exported models are plain causal (docs/recipe.md).
            z_loss: coefficient of the z-loss, ``z_loss · mean(logsumexp(logits)²)`` added to the training
                loss (e.g. 1e-4; 0: none); logged as ``train/z_loss``. ``train/loss`` stays the cross-entropy.
            spike_skip_sigma: skip the optimizer step when the step's loss or gradient norm is more than this many
                standard deviations above the mean of the last ``spike_skip_window`` steps (e.g. 6; null: off).
                Skipped steps are counted in ``train/skipped_steps``.
            spike_skip_window: the steps those statistics are taken over; checks start once it is full.
            max_nonfinite_steps: stop after this many consecutive steps with a non-finite loss or gradient
                (checked on logging steps: every ``trainer.log_every_n_steps``).
            sample_prompt: text the model continues at every validation (logged to TensorBoard).
            sample_tokens: tokens sampled at every validation (0 disables sampling).
        """
        super().__init__()
        if isinstance(architecture, str):
            architecture = ModelConfig.from_preset(architecture)
        elif isinstance(architecture, dict):  # from Python; the CLI already gives a ModelConfig
            architecture = ModelConfig(**architecture)
        self.init_from = init_from
        self.initial_weights: dict[str, torch.Tensor] | None = None
        self.initial_tokenizer: Tokenizer | None = None
        if init_from is not None:  # read now: the data module sizes its sequences from the architecture
            from lit_llm.checkpoint.load import load_weights

            architecture, self.initial_weights, self.initial_tokenizer = load_weights(init_from)
            rank_zero_info(f"initialising from {init_from}: {architecture.num_params():,} parameters")
        self.architecture = architecture
        self.learning_rate = learning_rate
        self.min_lr = learning_rate / 10 if min_lr is None else min_lr
        self.lr_schedule = lr_schedule
        self.warmup_steps = warmup_steps
        self.decay_fraction = decay_fraction
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.optimizer_name = optimizer
        self.muon_lr = muon_lr
        self.muon_momentum = muon_momentum
        if muon_ns_steps < 1:
            raise ValueError(f"model.muon_ns_steps={muon_ns_steps} must be at least 1 (torch's default is 5)")
        self.muon_ns_steps = muon_ns_steps
        self.grad_clip = grad_clip
        self.global_batch_size = global_batch_size
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing
        self.loss_name = loss
        self.document_masking = document_masking
        if z_loss < 0:
            raise ValueError(f"model.z_loss={z_loss} must be >= 0 (e.g. 1e-4, or 0 for none)")
        self.z_loss = z_loss
        self.spikes = SpikeDetector(spike_skip_sigma, spike_skip_window) if spike_skip_sigma is not None else None
        self.max_nonfinite_steps = max_nonfinite_steps
        self.sample_prompt = sample_prompt
        self.sample_tokens = sample_tokens

        self.config: ModelConfig | None = None  # the architecture resolved against the data's vocabulary
        self.tokenizer: Tokenizer | None = None
        self.model: GPT | None = None
        self.val_loss = MeanMetric()
        self.val_source_names: list[str] = []
        self.source_val_losses = torch.nn.ModuleList()
        self.next_token_loss = next_token_loss  # compiled with the model in configure_model
        self.logs_this_step = True  # set per batch in on_train_batch_start
        # The step's cross-entropy and z-loss, summed over its micro-batches (means when the step ends)
        self.step_terms: list[torch.Tensor] | None = None
        self.step_micro_batches = 0
        self.nonfinite = NonFiniteGuard()
        self.resume_settings: dict | None = None  # set by the CLI; saved in checkpoints, compared on resume
        self.configured_groups: list[dict] = []  # the optimizer's hyperparameters as configured, per group

    # ---- set-up -------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if data is None:
            raise ValueError(
                "LitLLM learns its vocabulary and tokenizer from a data module: "
                "trainer.fit(module, datamodule=lit_llm.TokenDataModule(...))"
            )
        self.connect(data)
        if stage == "fit":
            derive_step_counts(self.trainer, self.global_batch_size, data.batch_size)

    def connect(self, data: L.LightningDataModule) -> None:
        """The hand-over with the data module (see TokenDataModule): tell it the model's context, and take
        its tokenizer, vocabulary and validation sources (one ``val/<name>/loss`` each when it mixes several)."""
        data.connect(block_size=self.architecture.block_size)
        tokenizer = data.tokenizer
        if (
            self.initial_tokenizer is not None
            and self.initial_tokenizer.backend.get_vocab() != tokenizer.backend.get_vocab()
        ):
            raise ValueError(
                f"the data was prepared with another tokenizer than {self.init_from}'s; prepare it again with "
                f"--tokenizer {self.init_from}/tokenizer.json (or the checkpoint's tokenizer)"
            )
        self.tokenizer = tokenizer
        self.config = self.architecture.with_vocab(data.vocab_size)
        self.val_source_names = list(data.val_source_names)
        self.source_val_losses = torch.nn.ModuleList(MeanMetric() for _ in self.val_source_names).to(self.device)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        if self.config is None:
            raise RuntimeError("LitLLM needs a data module (lit_llm.TokenDataModule) to learn its vocabulary")
        # A sharded model is built on the meta device and materialised shard by shard: no rank ever holds
        # the whole model.
        sharded = is_sharded(self.trainer.strategy)
        with torch.device("meta") if sharded else contextlib.nullcontext():
            self.model = GPT(self.config)
        parallelize(
            self.model,
            mesh=self.device_mesh["data_parallel"] if sharded else None,
            param_dtype=torch.bfloat16 if str(self.trainer.precision).startswith("bf16") else None,
            activation_checkpointing=self.activation_checkpointing,
            compile=self.compile,
            device=self.device,
        )
        # Compiled with the model, the loss reads the logits twice instead of materialising fp32 copies of
        # them (docs/benchmarks.md: 1.26x a step and 0.74x the memory at a 50k vocabulary on a CPU).
        self.next_token_loss = torch.compile(next_token_loss) if self.compile else next_token_loss
        if self.loss_name == "chunked" and sharded:  # hidden_states skips the root's all-gather hook
            raise ValueError("model.loss chunked does not work with a sharded model (fsdp2); use model.loss plain")
        self.trunk = torch.compile(self.model.hidden_states) if self.compile else self.model.hidden_states
        if self.initial_weights is not None:
            load_full_state_dict(self.model, self.initial_weights)
            self.initial_weights = None

    # ---- objective ----------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def loss(self, batch: torch.Tensor, z_loss: float = 0.0) -> LossTerms:
        """The objective of a batch of (B, T+1) tokens; ``z_loss`` adds that term (training only)."""
        batch = batch.long()
        inputs, targets = batch[:, :-1], batch[:, 1:]
        # Built here, outside the compiled model: FlexAttention's block mask is made in eager code.
        documents = document_mask(inputs, self.tokenizer.eot_id) if self.document_masking else None
        if self.loss_name == "chunked":
            hidden, head = self.trunk(inputs, documents=documents), self.model.lm_head.weight
            if z_loss:
                return chunked_next_token_loss_with_z(hidden, head, targets, z_loss)
            loss = chunked_next_token_loss(hidden, head, targets)
        else:
            logits = self.model(inputs, documents=documents)
            if z_loss:
                return next_token_loss_with_z(logits, targets, z_loss)
            loss = self.next_token_loss(logits, targets)
        return LossTerms(loss, loss, loss.new_zeros(()))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        terms = self.loss(batch, self.z_loss)
        parts = [terms.cross_entropy.detach(), terms.z_loss]
        self.step_terms = parts if self.step_terms is None else [a + b for a, b in zip(self.step_terms, parts)]
        self.step_micro_batches += 1
        return terms.total

    def validation_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        loss = self.loss(batch).cross_entropy
        self.val_loss.update(loss)
        if len(self.source_val_losses) > 1:
            self.source_val_losses[dataloader_idx].update(loss)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics reduces over ranks, so the logged values are already global (no sync_dist).
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True, add_dataloader_idx=False)
        self.log("val/ppl", torch.exp(loss), add_dataloader_idx=False)
        if len(self.source_val_losses) > 1:
            for name, metric in zip(self.val_source_names, self.source_val_losses):
                self.log(f"val/{name}/loss", metric.compute(), add_dataloader_idx=False)
                metric.reset()

    # ---- optimizer ----------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(
            self.model,
            self.optimizer_name,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            betas=self.betas,
            muon_lr=self.muon_lr,
            muon_momentum=self.muon_momentum,
            muon_ns_steps=self.muon_ns_steps,
            sharded=is_sharded(self.trainer.strategy),
        )
        total = self.trainer.max_steps
        if total is None or total < 1:
            raise ValueError("trainer.max_steps must be set (e.g. --trainer.max_steps 2000): the LR schedule needs it")
        schedule = LRSchedule(self.learning_rate, self.min_lr, self.warmup_steps, self.lr_schedule, self.decay_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule.at(step, total) / self.learning_rate
        )
        self.configured_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        """After a resume, the optimizer's hyperparameters are the checkpoint's (torch restores them with its
        state) and the schedule's base rates too: apply the configured ones, so that a change allowed by
        --resume_with_changes (learning rate, weight decay, betas, max_steps) takes effect from this step."""
        optimizer, scheduler = self.optimizers(use_pl_optimizer=False), self.lr_schedulers()
        for group, configured in zip(optimizer.param_groups, self.configured_groups):
            group.update(configured)
        scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        for group, base, rate in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * rate(scheduler.last_epoch)  # what LambdaLR sets at this step

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip here rather than through the Trainer: works with fused AdamW under bf16-mixed, and lets
        us log the norm and skip steps whose gradients are not finite. Called once per optimizer step."""
        max_norm = self.grad_clip if self.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
            norm = norm.full_tensor()
        loss, z_loss = (term / self.step_micro_batches for term in self.step_terms)
        self.step_terms, self.step_micro_batches = None, 0
        spike = None
        if self.spikes is not None:
            # The gradient norm is already global (DDP averaged the gradients; FSDP2's norm is all-reduced):
            # averaging the loss over ranks too makes every rank take the same decision (a copy: the
            # all-reduce works in place, and train/loss is this rank's).
            spike = self.spikes.check(self.trainer.strategy.reduce(loss.clone(), reduce_op="mean"), norm)
        self.nonfinite.record(optimizer, norm, spike)
        if self.logs_this_step:
            self._log_step(loss, z_loss, norm)

    def _log_step(self, loss: torch.Tensor, z_loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Step metrics, on the steps the logger writes, read from the device in one go and logged as CPU
        values: the progress bar converts its metrics every step, which for a GPU value is a host sync.
        ``train/loss`` is this rank's cross-entropy over the step's micro-batches."""
        loss, z_loss, grad_norm = torch.stack([loss.float(), z_loss.float(), grad_norm.float()]).cpu()
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, sync_dist=False)
        if self.z_loss:
            self.log("train/z_loss", z_loss, on_step=True, on_epoch=False, sync_dist=False)
        self.log("train/grad_norm", grad_norm, on_step=True, on_epoch=False, sync_dist=False)
        self.log("train/lr", torch.tensor(self.optimizers().param_groups[0]["lr"]), on_step=True, on_epoch=False)
        longest_run, skipped = self.nonfinite.read()
        self.log("train/skipped_steps", torch.tensor(float(self.nonfinite.skipped_steps)), on_step=True, on_epoch=False)
        if skipped:
            rank_zero_info(
                f"step {self.trainer.global_step}: {skipped} step(s) with a non-finite or spiking loss or gradient "
                f"norm skipped since the last logging step ({self.nonfinite.skipped_steps} in all)"
            )
        if longest_run >= self.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{longest_run} consecutive steps had a non-finite loss or gradient; stopping. "
                f"Resume from the last good checkpoint ({self._last_checkpoint()}) with a lower learning rate "
                f"or bf16 instead of fp16"
            )

    def _last_checkpoint(self) -> str:
        callback = self.trainer.checkpoint_callback
        return (callback and (callback.last_model_path or callback.best_model_path)) or "none saved yet"

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Stop after the last optimizer step through `should_stop`, which makes Lightning validate once
        # more: every run, however short, ends with a val loss.
        if self.trainer.max_steps > 0 and self.trainer.global_step >= self.trainer.max_steps:
            self.trainer.should_stop = True

    def configure_callbacks(self) -> list[L.Callback]:
        from lightning.pytorch.callbacks import ModelCheckpoint

        from lit_llm.train.callbacks import TextSampler, Throughput

        best = ModelCheckpoint(
            monitor="val/loss",
            mode="min",
            filename="best",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        return [Throughput(), TextSampler(self.sample_prompt, self.sample_tokens), best]

    # ---- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain types only, so checkpoints load with torch.load(weights_only=True).
        checkpoint[CHECKPOINT_KEY] = {
            "model_config": self.config.to_dict(),
            "tokenizer": self.tokenizer.to_json(),
            "skipped_steps": self.nonfinite.total(),
            **({"spike_window": self.spikes.state_dict()} if self.spikes is not None else {}),
            **({"resume_settings": self.resume_settings} if self.resume_settings is not None else {}),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY, {})
        self.nonfinite.skipped_steps = saved.get("skipped_steps", 0)
        if self.spikes is not None:
            self.spikes.load_state_dict(saved.get("spike_window", {}))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Lightning writes step metrics when (optimizer steps done + 1) % log_every_n_steps == 0 and at the
        # last step; a `self.log` on other steps is never written but costs host time (docs/benchmarks.md).
        every, step = self.trainer.log_every_n_steps, self.trainer.global_step + 1
        self.logs_this_step = every > 0 and (step % every == 0 or step == self.trainer.max_steps)
        # Seed every micro-batch from (seed, step, batch, rank): dropout masks then depend only on where
        # the run is, so a resumed run draws exactly the masks the uninterrupted one drew, whatever the
        # data loaders and the sanity check consumed from the global RNG in between.
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = hash((base, self.trainer.global_step, batch_idx, self.global_rank)) % 2**63
        # The CPU's generator and the training device's own, not torch.manual_seed: that also queues lazy
        # seeding of every other backend with a stack trace each, ~1 ms a step (docs/benchmarks.md).
        torch.default_generator.manual_seed(seed)
        if self.device.type != "cpu":
            torch.get_device_module(self.device.type).manual_seed(seed)
