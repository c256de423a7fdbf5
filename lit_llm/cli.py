"""`lit-llm`: dispatches to LightningCLI (fit, validate) or to the project's own commands. Wiring only.

Imports stay lazy so that `lit-llm generate`, `plan` or `--help` do not pay for importing Lightning.
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentError
from pathlib import Path

from lit_llm.errors import one_line

USAGE = """usage: lit-llm COMMAND [options]   (lit-llm COMMAND --help for each command's options; lit-llm --version)

commands:
  prepare    tokenize text files/folders/globs into LitData shards (+ tokenizer, metadata)
  data info  show a prepared dataset: vocabulary, token counts, shards, decoded samples
  data verify  read every shard of a prepared dataset and check it against metadata.json's checksums
  fit        train a model from an experiment YAML (--config experiments/NAME.yaml)
  validate   compute the validation loss of a checkpoint (--config ... --ckpt_path CKPT)
  generate   sample continuations of prompts from a checkpoint, run folder or Hugging Face folder
  evaluate   loss, perplexity and bits per byte on text; lm-eval tasks (--tasks); code completion
  export     write a checkpoint as a Hugging Face transformers model folder
  plan       estimate compute, time, memory and cost of a run before starting it
  ladder     train a ladder of (size, compute budget) runs and fit scaling laws to them
  consolidate  merge a sharded FSDP2 checkpoint folder into one checkpoint file
  plot       loss curves (PNG) from run folders' TensorBoard events (pip install "lit-llm[plot]")
"""

# Errors a user can fix from the message alone: shown as one line, without a traceback
# (FloatingPointError: lit_llm.train.module.NonFiniteLossError, which names the checkpoint to resume from;
# ImportError: an optional extra that is not installed, named with its pip command).
# ArgumentError: a misspelt option or a value of the wrong type (jsonargparse raises it instead of printing
# the whole usage, see exit_on_error below).
# OSError: only lit_llm.checkpoint.files.CheckpointSaveError (a full disk, named with the checkpoint kept) is one.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, ImportError, ArgumentError)


class UserError(SystemExit):
    """Exit status 2 (what argparse gives a usage error) after the one-line message: the command refused its
    input or could not do the work, and changed nothing. 1 stays for bugs (a traceback), 128 + N for a signal."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def check_config_files(args: list[str]) -> None:
    """Each ``--config`` YAML of fit/validate exists and is a mapping of sections, and a ``--ckpt_path`` file
    is a readable checkpoint, said in one line (LightningCLI answers with its usage, or a traceback)."""
    from lit_llm.commands.plan import check_yaml

    for flag, path in zip(args, args[1:]):
        if flag in ("--config", "-c"):
            check_yaml(path)
        if flag == "--ckpt_path" and Path(path).is_file():  # LightningCLI's own torch.load would print a traceback
            from lit_llm.checkpoint.files import check_readable

            check_readable(Path(path))


def gather_list_option(args: list[str], option: str) -> list[str]:
    """Turn ``--inputs a b c`` (the shell's natural form) into jsonargparse's ``--inputs '["a","b","c"]'``; a
    value already written as a JSON list (``--inputs '["a", "b"]'``) is passed on as it is."""
    if option not in args:
        return args
    start = args.index(option) + 1
    end = start
    while end < len(args) and not args[end].startswith("--"):
        end += 1
    if end == start + 1 and args[start].lstrip().startswith("["):
        return args
    return args[:start] + [json.dumps(args[start:end])] + args[end:]


def gather_experiment(args: list[str]) -> list[str]:
    """`lit-llm plan`'s experiment, typed as for `fit`: each ``--config YAML`` and each dotted override
    (``--trainer.max_steps 100``; plan's own options have no dots), gathered in order into one ``--config``
    list, so later ones win as they do in `fit`."""
    experiment, rest, i = [], [], 0
    while i < len(args):
        name, has_value, value = args[i].partition("=")
        if name == "--config" or (name.startswith("--") and "." in name):
            if not has_value and i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, has_value, i = args[i + 1], True, i + 1
            experiment.append(value if name == "--config" else f"{name}={value}" if has_value else name)
        else:
            rest.append(args[i])
        i += 1
    return rest + ["--config", json.dumps(experiment)] if experiment else rest


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
    parser = ArgumentParser(prog=prog, description=docs.short_description, exit_on_error=False)
    parser.add_function_arguments(function, as_group=False, skip=set(flags))
    for name, param in flags.items():
        help_text = next((d.description for d in docs.params if d.arg_name == name), None)
        parser.add_argument(
            f"--{name}", action=ActionYesNo(yes_prefix=""), nargs="?", default=param.default, help=help_text
        )
    for option in ("--inputs", "--exclude", "--run_dirs", "--tags", "--code_completion"):
        args = gather_list_option(args, option)
    function(**parser.parse_args(args).as_dict())


def function_command(name: str):
    """The function behind a non-Lightning command (imported lazily: each pulls in different libraries)."""
    if name == "prepare":
        import logging

        from lit_llm.data.prepare import prepare

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        return prepare
    if name == "generate":
        from lit_llm.commands.generate import generate_text

        return generate_text
    if name == "evaluate":
        from lit_llm.commands.evaluate import evaluate

        return evaluate
    if name == "export":
        from lit_llm.commands.export import export

        return export
    if name == "plot":
        from lit_llm.commands.plot import plot

        return plot
    if name == "consolidate":
        from lit_llm.commands.consolidate import consolidate

        return consolidate
    from lit_llm.commands.plan import plan

    return plan


def data_command(name: str):
    """The function behind `lit-llm data info` or `lit-llm data verify`."""
    if name == "info":
        from lit_llm.data.info import data_info

        return data_info
    from lit_llm.data.verify import data_verify

    return data_verify


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``argv`` is for calling from Python (tests), the console script reads sys.argv."""
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] == "--version":
        from lit_llm import __version__

        print(f"lit-llm {__version__}")
        return
    command, args = argv[0], argv[1:]
    try:
        if command in ("fit", "validate"):
            check_config_files(args)
            from lit_llm.train.cli import run

            run(None if from_shell else argv)
        elif command in ("prepare", "generate", "evaluate", "export", "plan", "consolidate", "plot"):
            args = gather_experiment(args) if command == "plan" else args
            run_function(function_command(command), f"lit-llm {command}", args)
        elif command == "ladder":
            from lit_llm.commands.ladder import ladder

            ladder(args)
        elif command == "data" and args[:1] in (["info"], ["verify"]):
            rest = args[1:]  # `lit-llm data info DIR [options]`: the folder comes first, without --data_dir
            run_function(
                data_command(args[0]),
                f"lit-llm data {args[0]}",
                ["--data_dir", *rest] if rest and not rest[0].startswith("-") else rest,
            )
        else:
            raise ValueError(f"unknown command {command!r}; run `lit-llm --help` for the list")
    except Exception as err:
        from lit_llm.checkpoint.files import CheckpointSaveError

        if not isinstance(err, (*USER_ERRORS, CheckpointSaveError)):
            raise
        name = f"data {args[0]}" if command == "data" and args else command
        hint = f"; see `lit-llm {name} --help`" if isinstance(err, ArgumentError) else ""
        message = f"lit-llm {name}: error: {one_line(err)}{hint}"
        print(message, file=sys.stderr, flush=True)
        raise UserError(message) from None


if __name__ == "__main__":
    main()
