"""LightningCLI for `lit-llm fit` and `lit-llm validate`: the experiment YAML's trainer, model, data and
checkpoint sections, the TensorBoard run folder, and the guard against mixing two runs in one folder."""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_llm.train.callbacks import RunCheckpoint
from lit_llm.train.console import RunLine, quiet_lightning


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
        if trainer.logger in (None, True):
            trainer.logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": trainer.default_root_dir or "checkpoints/run", "name": "", "version": ""},
            }

    def before_fit(self) -> None:
        """Never mix two runs in one folder: a fresh fit into a folder that holds a run must resume or move."""
        if self.config.fit.ckpt_path is None:
            last = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            if last.exists():
                raise FileExistsError(
                    f"{last.parent.parent} already holds a run; resume it with --ckpt_path last, "
                    f"or start a new one with another --trainer.default_root_dir"
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
        trainer_defaults={
            "max_epochs": -1,
            "check_val_every_n_epoch": None,
            "default_root_dir": "checkpoints/run",
            "plugins": [{"class_path": "lit_llm.train.callbacks.AtomicCheckpointIO"}],
            "callbacks": [RunLine()],
        },
        parser_kwargs={"prog": "lit-llm", "exit_on_error": False},  # errors as one line, by lit_llm.cli
    )
