"""`lit-llm`: dispatches to LightningCLI (fit, validate) or to the project's own commands. Wiring only.

Every other command is a module of lit_llm/commands/ that declares itself in a ``CLI`` dict: its ``name`` (what
the user types, e.g. ``data info``), a one-line ``summary`` for `lit-llm --help`, the ``function`` it runs (its
arguments become options, its docstring the help; ``module:function`` for one defined elsewhere), and optionally
``arguments``: ``raw`` (the function parses its own arguments), ``experiment`` (``--config`` and dotted
overrides gathered as for `fit`) or ``positional:NAME`` (the first argument fills ``--NAME``). The dict is read
from the source without importing the module, so `--help` stays instant and adding a command touches one file.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from argparse import ArgumentError
from pathlib import Path

from lit_llm.errors import CheckpointSaveError, one_line

COMMANDS_DIR = Path(__file__).parent / "commands"
LIGHTNING_COMMANDS = {
    "fit": "train a model from an experiment YAML (--config experiments/NAME.yaml)",
    "validate": "compute the validation loss of a checkpoint (--config ... --ckpt_path CKPT)",
}


def discover_commands(folder: Path = COMMANDS_DIR) -> dict[str, dict]:
    """The ``CLI`` declaration of each module in ``folder``, by command name, with the module's import path."""
    commands = {}
    for path in sorted(folder.glob("*.py")):
        declared = declaration(path)
        if declared is not None:
            commands[declared["name"]] = {**declared, "module": f"lit_llm.commands.{path.stem}"}
    return commands


def declaration(path: Path) -> dict | None:
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CLI"]:
            return ast.literal_eval(node.value)
    return None


def usage(commands: dict[str, dict]) -> str:
    summaries = {**LIGHTNING_COMMANDS, **{name: spec["summary"] for name, spec in commands.items()}}
    width = max(map(len, summaries)) + 2
    lines = [f"  {name:<{width}}{summary}" for name, summary in summaries.items()]
    return (
        "usage: lit-llm COMMAND [options]   (lit-llm COMMAND --help for each command's options; lit-llm --version)\n\n"
        "commands:\n" + "\n".join(lines) + "\n"
    )


# Errors a user can fix from the message alone: shown as one line, without a traceback
# (FloatingPointError: lit_llm.train.module.NonFiniteLossError, which names the checkpoint to resume from;
# ImportError: an optional extra that is not installed, named with its pip command).
# ArgumentError: a misspelt option or a value of the wrong type (jsonargparse raises it instead of printing
# the whole usage, see exit_on_error below).
# CheckpointSaveError: a full disk, named with the checkpoint kept (the one OSError shown as one line).
USER_ERRORS = (
    ValueError, FileNotFoundError, FileExistsError, FloatingPointError, ImportError, ArgumentError, CheckpointSaveError
)  # fmt: skip


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


def gather_list_options(function, args: list[str]) -> list[str]:
    """Turn ``--inputs a b c`` (the shell's natural form) into jsonargparse's ``--inputs '["a","b","c"]'`` for
    each list-typed argument of ``function``; a value already written as a JSON list is passed on as it is."""
    import inspect

    for name, param in inspect.signature(function).parameters.items():
        option = f"--{name}"
        if not any(kind in str(param.annotation) for kind in ("list", "Sequence")) or option not in args:
            continue
        start = end = args.index(option) + 1
        while end < len(args) and not args[end].startswith("--"):
            end += 1
        if not (end == start + 1 and args[start].lstrip().startswith("[")):
            args = args[:start] + [json.dumps(args[start:end])] + args[end:]
    return args


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
    args = gather_list_options(function, args)
    function(**parser.parse_args(args).as_dict())


def run_command(spec: dict, args: list[str]) -> None:
    """Import the declared function (only now: each command pulls in different libraries) and run it."""
    module, _, name = spec["function"].rpartition(":")
    function = getattr(importlib.import_module(module or spec["module"]), name)
    arguments = spec.get("arguments", "")
    if arguments == "raw":
        function(args)
        return
    if arguments == "experiment":
        args = gather_experiment(args)
    elif arguments.startswith("positional:") and args and not args[0].startswith("-"):
        args = [f"--{arguments.removeprefix('positional:')}", *args]
    run_function(function, f"lit-llm {spec['name']}", args)


def find_command(argv: list[str], commands: dict[str, dict]) -> tuple[str, list[str]]:
    """The command named by the first one or two words of ``argv`` (``data info``), and the rest."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if name in commands or name in LIGHTNING_COMMANDS:
            return name, argv[words:]
    raise ValueError(f"unknown command {argv[0]!r}; run `lit-llm --help` for the list")


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``argv`` is for calling from Python (tests), the console script reads sys.argv."""
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    if argv[:1] == ["--version"]:
        from lit_llm import __version__

        print(f"lit-llm {__version__}")
        return
    commands = discover_commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(commands))
        return
    command, args = argv[0], argv[1:]
    try:
        command, args = find_command(argv, commands)
        logging_for_users()
        if command in LIGHTNING_COMMANDS:
            check_config_files(args)
            from lit_llm.train.cli import run

            run(None if from_shell else argv)
        else:
            run_command(commands[command], args)
    except USER_ERRORS as err:
        hint = f"; see `lit-llm {command} --help`" if isinstance(err, ArgumentError) else ""
        message = f"lit-llm {command}: error: {one_line(err)}{hint}"
        print(message, file=sys.stderr, flush=True)
        raise UserError(message) from None


def logging_for_users() -> None:
    """lit-llm's own log lines (warnings about the data, what a step is doing) as plain messages on stderr;
    other libraries' loggers keep their defaults."""
    import logging

    logger = logging.getLogger("lit_llm")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)  # propagates too: a host application's (or pytest's) handlers still see it


if __name__ == "__main__":
    main()
