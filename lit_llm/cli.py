"""`lit-llm`: LightningCLI for fit/validate, plus the project's own subcommands. Wiring only."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_llm.checkpointing import RunCheckpoint

USAGE = """usage: lit-llm COMMAND [options]   (lit-llm COMMAND --help for each command's options)

commands:
  prepare    tokenize text files/folders/globs into LitData shards (+ tokenizer, metadata)
  fit        train a model from an experiment YAML (--config experiments/NAME.yaml)
  validate   compute the validation loss of a checkpoint (--config ... --ckpt_path CKPT)
  generate   sample continuations of prompts from a checkpoint, run folder or Hugging Face folder
  evaluate   loss, perplexity and bits per byte on text files or prepared datasets
  export     write a checkpoint as a Hugging Face transformers model folder
  plan       estimate compute, time, memory and cost of a run before starting it
  consolidate  merge a sharded FSDP2 checkpoint folder into one checkpoint file
"""

# Errors a user can fix from the message alone: shown as one line, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


class LitLLMCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}, "validate": {"model", "dataloaders", "datamodule"}}

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


def run_lightning(args: list[str] | None) -> None:
    # Lightning warns that a sized IterableDataset may mislead with workers; LitData shards per worker itself.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # val/* come from torchmetrics, which already reduces over ranks: sync_dist would reduce twice.
    warnings.filterwarnings("ignore", message=".*self.log\\('val/.*sync_dist=True.*")
    from lit_llm.data.datamodule import TokenDataModule
    from lit_llm.module import LitLLM
    import lit_llm.parallel  # noqa: F401  (registers the `fsdp2` strategy name)

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
            "plugins": [{"class_path": "lit_llm.checkpointing.AtomicCheckpointIO"}],
        },
        parser_kwargs={"prog": "lit-llm"},
    )


def gather_list_option(args: list[str], option: str) -> list[str]:
    """Turn ``--inputs a b c`` (the shell's natural form) into jsonargparse's ``--inputs '["a","b","c"]'``."""
    if option not in args:
        return args
    start = args.index(option) + 1
    end = start
    while end < len(args) and not args[end].startswith("--"):
        end += 1
    return args[:start] + [json.dumps(args[start:end])] + args[end:]


def run_function(function, prog: str, args: list[str]) -> None:
    """Expose a typed, documented function as a command: its arguments become options, its docstring the help.

    A plain jsonargparse ArgumentParser rather than jsonargparse.CLI: CLI reserves ``--config`` (which
    `plan` needs for an experiment YAML) and wants ``--json true`` where users type ``--json``.
    """
    import inspect

    from docstring_parser import parse as parse_docstring
    from jsonargparse import ActionYesNo, ArgumentParser

    docs = parse_docstring(function.__doc__ or "")
    flags = {name: p for name, p in inspect.signature(function).parameters.items() if p.annotation in (bool, "bool")}
    parser = ArgumentParser(prog=prog, description=docs.short_description)
    parser.add_function_arguments(function, as_group=False, skip=set(flags))
    for name, param in flags.items():
        help_text = next((d.description for d in docs.params if d.arg_name == name), None)
        parser.add_argument(f"--{name}", action=ActionYesNo(yes_prefix=""), nargs="?", default=param.default, help=help_text)
    function(**parser.parse_args(gather_list_option(args, "--inputs")).as_dict())


def function_command(name: str):
    """The function behind a non-Lightning command (imported lazily: each pulls in different libraries)."""
    if name == "prepare":
        import logging

        from lit_llm.data.prepare import prepare

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        return prepare
    if name == "generate":
        from lit_llm.generate import generate_text

        return generate_text
    if name == "evaluate":
        from lit_llm.evaluate import evaluate

        return evaluate
    if name == "export":
        from lit_llm.export import export

        return export
    if name == "consolidate":
        from lit_llm.checkpointing import consolidate

        return consolidate
    from lit_llm.plan import plan

    return plan


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``argv`` is for calling from Python (tests), the console script reads sys.argv."""
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, args = argv[0], argv[1:]
    try:
        if command in ("fit", "validate"):
            run_lightning(None if from_shell else argv)
        elif command in ("prepare", "generate", "evaluate", "export", "plan", "consolidate"):
            run_function(function_command(command), f"lit-llm {command}", args)
        else:
            raise ValueError(f"unknown command {command!r}; run `lit-llm --help` for the list")
    except USER_ERRORS as err:
        sys.exit(f"lit-llm {command}: error: {err}")


if __name__ == "__main__":
    main()
