"""LightningCLI for `lit-llm fit` and `lit-llm validate`: the experiment YAML's trainer, model, data and
checkpoint sections, the TensorBoard run folder, resuming a run folder's newest checkpoint, and the
guard against mixing two runs of different models in one folder."""

from __future__ import annotations

import warnings
from pathlib import Path

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_llm.checkpointing import CHECKPOINT_KEY, checkpoint_header, newest_checkpoint
from lit_llm.errors import one_line
from lit_llm.train.callbacks import RunCheckpoint
from lit_llm.train.console import RunLine, quiet_lightning

HPARAMS_METRIC = "hp/val_loss"  # the final val loss, beside the hyperparameters in TensorBoard's HPARAMS tab


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

    def before_fit(self) -> None:
        """The same command line starts a run and resumes it: without --ckpt_path (or with `last`), a run
        folder that holds checkpoints resumes from the newest complete one, whatever wrote it (a periodic
        or final save, a SIGTERM, a SLURM requeue, a kill mid-save). A folder holding a run of another
        model is refused rather than mixed with this one."""
        if self.config_init.fit.ckpt_path not in (None, "last"):
            return
        run_dir = Path(self.trainer.default_root_dir)
        folder = self.config.fit.checkpoint.dirpath
        newest = newest_checkpoint(run_dir, Path(folder) if folder else None)
        if newest is None:
            return
        path, step = newest
        check_same_model(path, self.model.architecture.to_dict(), run_dir)
        print(f"resuming {run_dir} from {path} (step {step})", flush=True)
        self.config_init.fit.ckpt_path = str(path)

    def after_fit(self) -> None:
        """Fill TensorBoard's HPARAMS tab: the resolved configuration, and the final val loss to compare by.
        (Written to the event file only: checkpoints keep plain types, loadable with weights_only.)"""
        val_loss = self.trainer.callback_metrics.get("val/loss")
        if self.trainer.logger is None or val_loss is None:
            return
        sections = ("seed_everything", "trainer", "model", "data", "checkpoint")
        config = {k: v for k, v in self.config.fit.as_dict().items() if k in sections}
        self.trainer.logger.log_hyperparams(config, {HPARAMS_METRIC: float(val_loss)})


def check_same_model(checkpoint: Path, architecture: dict, run_dir: Path) -> None:
    """Refuse to continue a run folder's checkpoint with another model (vocab_size aside, which the data sets)."""
    saved = checkpoint_header(checkpoint).get(CHECKPOINT_KEY, {}).get("model_config", {})
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


def run(args: list[str] | None) -> None:
    # Lightning warns that a sized IterableDataset may mislead with workers; LitData shards per worker itself.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # val/* come from torchmetrics, which already reduces over ranks: sync_dist would reduce twice.
    warnings.filterwarnings("ignore", message=".*self.log\\('val/.*sync_dist=True.*")
    quiet_lightning()
    import lit_llm.train.parallel  # noqa: F401  (registers the `fsdp2` strategy name)
    from lit_llm.data.datamodule import TokenDataModule
    from lit_llm.train.module import LitLLM

    LitLLMCLI(
        LitLLM,
        TokenDataModule,
        args=args,
        seed_everything_default=1337,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # LitLLM.configure_optimizers is the one optimizer and schedule
        trainer_defaults={
            "max_epochs": -1,
            "check_val_every_n_epoch": None,
            "default_root_dir": "checkpoints/run",
            "plugins": [{"class_path": "lit_llm.train.callbacks.AtomicCheckpointIO"}],
            "callbacks": [RunLine()],
        },
        parser_kwargs={
            "prog": "lit-llm",
            "exit_on_error": False,  # errors as one line, by lit_llm.cli
            "formatter_class": HelpFormatter,
            **{name: {"formatter_class": HelpFormatter} for name in LitLLMCLI.subcommands()},
        },
    )


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

    from lit_llm.data.datamodule import TokenDataModule
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
