"""LightningCLI for `lit-llm fit` and `lit-llm validate`: the experiment YAML's trainer, model, data and
checkpoint sections, the TensorBoard run folder, and what keeps a run folder one run: its lock, resuming
its newest checkpoint (or saying a finished run has nothing to do), and the refusals to mix in another model,
tokenizer or changed settings. `fit --help` is one screen of its own; `fit --help full` is LightningCLI's."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

from jsonargparse import ActionYesNo, DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from lit_llm.checkpoint.files import CHECKPOINT_KEY, checkpoint_header, newest_checkpoint
from lit_llm.errors import one_line
from lit_llm.train.callbacks import RunCheckpoint
from lit_llm.train.console import console_callbacks, quiet_lightning
from lit_llm.train.records import (
    SECTIONS,
    RecordingSaveConfig,
    changed_settings,
    config_filename,
    resume_settings,
    write_hparams,
)
from lit_llm.train.run_folder import RunFolderLock, check_nothing_to_overwrite
from lit_llm.train.strategy import check_sharded_resume, is_sharded


class HelpFormatter(DefaultHelpFormatter):
    """Help texts come from docstrings (Lightning's and ours), written in reStructuredText: show
    ``name`` as `name` in a terminal."""

    def _expand_help(self, action) -> str:
        return super()._expand_help(action).replace("``", "`")


class LitLLMCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Periodic checkpoints (all kept) and last.ckpt; the module adds best.ckpt by val/loss.
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.filename": "step-{step:06d}",
                "checkpoint.every_n_train_steps": 1000,
                "checkpoint.save_top_k": -1,
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_argument(
            "--resume_with_changes",
            action=ActionYesNo(yes_prefix=""),
            nargs="?",
            default=False,
            help="fit: resume although settings that exact resume depends on changed (batch size, learning rate, "
            "schedule, data, ...); they apply from the resumed step on, and the changes are printed",
        )

    def before_instantiate_classes(self) -> None:
        """Log to TensorBoard directly in the run folder (default_root_dir), which also holds checkpoints/."""
        trainer = self.config[self.subcommand].trainer
        if trainer.gradient_clip_val is not None:  # clipping happens in LitLLM.configure_gradient_clipping
            raise ValueError(
                f"trainer.gradient_clip_val={trainer.gradient_clip_val} is not used by lit-llm; "
                f"set --model.grad_clip {trainer.gradient_clip_val} instead (null disables clipping)"
            )
        if trainer.logger in (None, True):
            trainer.logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": trainer.default_root_dir or "checkpoints/run", "name": "", "version": ""},
            }

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with lit-llm's console: the run line, and its model line and progress bar where Lightning
        would add its own."""
        trainer = self.config_init[self.subcommand].trainer
        callbacks = trainer.callbacks or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        ours = console_callbacks(callbacks, trainer.enable_progress_bar, trainer.enable_model_summary)
        trainer.callbacks = [*callbacks, *ours]
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """The same command line starts a run and resumes it. The run folder is locked for this process
        first; then, without --ckpt_path (or with `last`), a folder holding checkpoints resumes from the
        newest complete one, whatever wrote it (a periodic or final save, a signal, a SLURM requeue, a kill
        mid-save), and a folder holding anything else is refused. A resume must continue the same run:
        same model, same tokenizer, and the same settings unless --resume_with_changes. A run that already
        reached trainer.max_steps says so and stops (NothingToDo)."""
        run_dir = Path(self.trainer.default_root_dir)
        if self.trainer.is_global_zero:
            lock = RunFolderLock(run_dir)
            lock.acquire()
            RUN_LOCKS.append(lock)
        resume = self.checkpoint_to_resume(run_dir)
        config = {k: v for k, v in self.config.fit.as_dict().items() if k in SECTIONS}
        settings = resume_settings(
            config, self.trainer.num_devices * self.trainer.num_nodes, self.datamodule.identities
        )
        self.model.resume_settings = settings  # stored in every checkpoint, compared when it is resumed
        if resume is not None:
            if is_sharded(self.trainer.strategy):
                check_sharded_resume(resume[0])
            self.check_same_run(*resume, settings, run_dir)
        elif self.trainer.is_global_zero and isinstance(self.trainer.logger, TensorBoardLogger):
            write_hparams(self.trainer.logger, config)
        save_config = next(c for c in self.trainer.callbacks if isinstance(c, RecordingSaveConfig))
        save_config.config_filename = config_filename(run_dir, resuming=resume is not None)

    def checkpoint_to_resume(self, run_dir: Path) -> tuple[Path, int | None] | None:
        """The checkpoint this fit continues and, when it is the run folder's newest, its step: --ckpt_path
        (step None), else the run folder's newest (None: a new run, which needs an empty folder)."""
        ckpt_path = self.config_init.fit.ckpt_path
        if ckpt_path not in (None, "last"):
            return Path(ckpt_path), None
        folder = self.config.fit.checkpoint.dirpath
        newest = newest_checkpoint(run_dir, Path(folder) if folder else None)
        if newest is None:
            if self.trainer.is_global_zero:  # other ranks start once rank 0 has begun writing the folder
                check_nothing_to_overwrite(run_dir, [Path(str(p)) for p in self.config.fit.get("config") or []])
            return None
        self.config_init.fit.ckpt_path = str(newest[0])
        return newest

    def check_same_run(self, checkpoint: Path, step: int | None, settings: dict, run_dir: Path) -> None:
        """The model and tokenizer first (a folder holding another model's run is not this run, finished or
        not), then whether the folder's run is finished (nothing would apply a changed setting), then the
        settings. A raised trainer.max_steps is a changed setting, not a finished run."""
        saved = checkpoint_header(checkpoint).get(CHECKPOINT_KEY, {})
        check_same_model(saved.get("model_config", {}), self.model.architecture.to_dict(), run_dir)
        if "tokenizer" in saved and saved["tokenizer"] != self.datamodule.tokenizer.to_json():
            raise ValueError(
                f"{checkpoint} was trained with another tokenizer than {self.datamodule.sources[0].path}'s "
                "tokenizer.json (was the dataset prepared again?); resume with the data it was trained on, or start "
                "a new run in another --trainer.default_root_dir"
            )
        if step is not None:  # the run folder's own newest checkpoint
            self.stop_if_finished(step)
            print(f"resuming {run_dir} from {checkpoint} (step {step})", flush=True)
        changes = changed_settings(saved.get("resume_settings", {}), settings)
        if changes and not self.config.fit.resume_with_changes:
            raise ValueError(
                f"resuming {run_dir} with changed settings breaks exact resume: {'; '.join(changes)}; set them back, "
                "or pass --resume_with_changes to apply them from the resumed step on"
            )
        if changes:
            print(f"resuming with changes (--resume_with_changes): {'; '.join(changes)}", flush=True)

    def stop_if_finished(self, step: int) -> None:
        """A run at trainer.max_steps (or past a lowered one): one line, then NothingToDo."""
        if step < self.trainer.max_steps or self.trainer.max_steps <= 0:  # -1: bounded by epochs or time
            return
        if self.trainer.is_global_zero:
            val_loss = final_val_loss(self.trainer.logger)
            val = f" (val {val_loss:.4f})" if val_loss is not None else ""
            print(f"run finished at step {step}{val}; nothing to do", flush=True)
        raise NothingToDo


RUN_LOCKS: list[RunFolderLock] = []  # taken by this process's fit; released when `run` returns or raises


class NothingToDo(Exception):
    """The run folder's run already reached trainer.max_steps: `run` returns (exit 0) before Lightning loads
    the checkpoint into its loop, which would print its model summary and stop at once."""


def final_val_loss(logger) -> float | None:
    """The last val/loss in the TensorBoard events of the run (None: another logger, or no validation yet).
    The events, not a checkpoint: a periodic save at the last step (and last.ckpt with it) precedes the final
    validation."""
    if not isinstance(logger, TensorBoardLogger):
        return None
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    latest = None  # (step, value); a step logged twice (a resume) keeps its later write
    for path in sorted(Path(logger.log_dir).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "val/loss" and (latest is None or event.step >= latest[0]):
                    latest = (event.step, value.tensor.float_val[0])
    return None if latest is None else latest[1]


def check_same_model(saved: dict, architecture: dict, run_dir: Path) -> None:
    """Refuse to continue a run folder's checkpoint with another model (vocab_size aside, which the data sets)."""
    differences = [
        f"{key} {saved[key]} there, {value} here"
        for key, value in architecture.items()
        if key in saved and key != "vocab_size" and saved[key] != value
    ]
    if differences:
        raise FileExistsError(
            f"{run_dir} holds a run of another model ({'; '.join(differences[:3])}); "
            f"resume it with the configuration it was started with, or use another --trainer.default_root_dir"
        )


FIT_HELP = """\
usage: lit-llm fit --config experiments/NAME.yaml [--SECTION.KEY VALUE ...]

Trains the experiment's model in its run folder (trainer.default_root_dir). The same command again resumes
the folder's newest checkpoint; once the run has reached trainer.max_steps it says so and does nothing.

lit-llm's options:
  -c, --config FILE                 an experiment YAML (experiments/); several merge, later ones win
  --resume_with_changes             resume although settings that exact resume depends on changed (batch
                                    size, learning rate, schedule, max_steps, data, ...): they apply from the
                                    resumed step on, and are printed
  --ckpt_path FILE                  resume from this checkpoint instead of the run folder's newest
  --print_config                    print the resolved configuration as YAML and exit

The experiment's keys (any YAML key, as --SECTION.KEY VALUE; the main ones):
  --trainer.max_steps N             optimizer steps of the run; the learning-rate schedule spans them
  --trainer.default_root_dir DIR    the run folder: checkpoints/, TensorBoard events, config.yaml
  --trainer.accelerator NAME        cpu, gpu or auto; --trainer.devices N, --trainer.num_nodes N
  --trainer.precision NAME          32-true, bf16-mixed (GPUs) or bf16-true
  --trainer.strategy NAME           auto, ddp or fsdp2 (experiments/trainer/*.yaml hold the set-ups)
  --trainer.val_check_interval N    optimizer steps between validations (a final one always runs)
  --trainer.limit_val_batches N     batches per validation
  --trainer.log_every_n_steps N     steps between logged metrics (TensorBoard, the progress bar)
  --trainer.enable_progress_bar B   false: no progress bar (for logs); the run and summary lines stay
  --model.architecture NAME         a preset, or fields such as --model.architecture.n_layer 4 (all of them:
                                    --model.architecture.help ModelConfig); the presets:
{presets}
  --model.learning_rate LR          peak learning rate (--model.min_lr: the final one)
  --model.lr_schedule NAME          cosine, wsd or constant, after --model.warmup_steps N
  --model.global_batch_size N       sequences per optimizer step; gradient accumulation is derived
  --model.optimizer NAME            adamw or muon
  --model.compile B                 torch.compile the model
  --model.init_from PATH            start from a checkpoint, run folder or Hugging Face folder
  --data.data_dir DIR               a folder written by `lit-llm prepare`
  --data.batch_size N               sequences per device per micro-step
  --data.num_workers N              data loader processes per device
  --data.elastic B                  an order independent of the device count: resume on another count, or
                                    with another mixture (a data stage); docs/checkpoints.md
  --checkpoint.every_n_train_steps N  steps between kept checkpoints (last.ckpt and best.ckpt always)

Every option, with its documentation and default (Lightning's Trainer included): lit-llm fit --help full
"""


def fit_help(argv: list[str]) -> list[str] | None:
    """`fit --help`: prints FIT_HELP and returns None. `fit --help full`: the arguments for jsonargparse's whole
    list (without `full`). Any other command line: returned as it is."""
    at = next((i for i, arg in enumerate(argv) if arg in ("-h", "--help")), None)
    if argv[:1] != ["fit"] or at is None:
        return argv
    if argv[at + 1 : at + 2] != ["full"]:
        from lit_llm.model.presets import PRESETS

        presets = textwrap.fill(", ".join(PRESETS), 116, initial_indent=" " * 36, subsequent_indent=" " * 36)
        print(FIT_HELP.format(presets=presets), end="")
        return None
    return argv[: at + 1] + argv[at + 2 :]


def run(args: list[str] | None) -> None:
    # Lightning warns that a sized IterableDataset may mislead with workers; LitData shards per worker itself.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # val/* come from torchmetrics, which already reduces over ranks: sync_dist would reduce twice.
    warnings.filterwarnings("ignore", message=".*self.log\\('val/.*sync_dist=True.*")
    # A resume writes into its own checkpoints/ (a folder holding another run's files is refused before).
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    args = fit_help(sys.argv[1:] if args is None else args)
    if args is None:
        return
    # `args` now always holds the command line, which LightningCLI would warn about when sys.argv does too.
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    quiet_lightning()
    import lit_llm.train.strategy  # noqa: F401  (registers the `fsdp2` strategy name)
    from lit_llm.train.datamodule import TokenDataModule
    from lit_llm.train.module import LitLLM

    try:
        LitLLMCLI(
            LitLLM,
            TokenDataModule,
            args=args,
            seed_everything_default=1337,
            save_config_callback=RecordingSaveConfig,
            save_config_kwargs={"overwrite": True},  # config_filename is new for each start and resume
            auto_configure_optimizers=False,  # LitLLM.configure_optimizers is the one optimizer and schedule
            trainer_defaults={
                "max_epochs": -1,
                "check_val_every_n_epoch": None,
                "default_root_dir": "checkpoints/run",
                "plugins": [{"class_path": "lit_llm.train.callbacks.AtomicCheckpointIO"}],
            },
            parser_kwargs={
                "prog": "lit-llm",
                "exit_on_error": False,  # errors as one line, by lit_llm.cli
                "formatter_class": HelpFormatter,
                **{name: {"formatter_class": HelpFormatter} for name in LitLLMCLI.subcommands()},
            },
        )
    except NothingToDo:
        pass  # the line is printed: exit 0, as a run that trained to max_steps
    finally:
        while RUN_LOCKS:
            RUN_LOCKS.pop().release()


class ExperimentParser(LitLLMCLI):
    """`fit`'s parser, run for its parsed config only: nothing is instantiated, nothing trains."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def parse_experiment(args: list[str]) -> dict:
    """An experiment as `lit-llm fit` reads it: ``--config`` YAMLs (later ones win) and dotted overrides such as
    ``--trainer.max_steps=100``, merged and checked by fit's own parser. Returns the trainer, model and data
    sections as plain values; raises ValueError with the parser's message for a bad key or value."""
    from argparse import ArgumentError

    from lit_llm.train.datamodule import TokenDataModule
    from lit_llm.train.module import LitLLM

    with warnings.catch_warnings():  # plan passes `args` while its own sys.argv holds more
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        try:
            parsed = ExperimentParser(
                LitLLM,
                TokenDataModule,
                args=[*args, "--seed_everything=false"],  # parsing must not seed the caller's random state
                run=False,
                load_from_checkpoint_support=False,
                parser_kwargs={"prog": "lit-llm plan", "exit_on_error": False},
            )
        except ArgumentError as err:
            raise ValueError(one_line(err)) from None
    return parsed.config.as_dict()
