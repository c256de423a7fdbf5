"""Commands declare themselves: a module of lit_llm/commands/ with a ``CLI`` dict is a `lit-llm` command, listed
by `lit-llm --help` and runnable, with nothing else to wire."""

import pytest

from lit_llm.cli import discover_commands, main, usage

COMMANDS = discover_commands()


def test_every_command_module_is_listed():
    assert {"prepare", "data info", "data verify", "generate", "evaluate", "export", "plan", "ladder"} <= set(COMMANDS)
    listing = usage(COMMANDS)
    for name, spec in COMMANDS.items():
        assert f"  {name} " in listing and spec["summary"] in listing


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_runs_its_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*name.split(), "--help"])
    assert exit_info.value.code == 0
    assert f"lit-llm {name}" in capsys.readouterr().out


def test_a_new_command_is_one_file(tmp_path):
    """What a contributor writes: one module with its declaration; the dispatcher finds it without importing it."""
    (tmp_path / "hello.py").write_text(
        'raise RuntimeError("imported: discovery must only read the source")\n'
        'CLI = {"name": "hello", "summary": "say hello", "function": "greet"}\n'
    )
    (tmp_path / "helpers.py").write_text("def shared(): ...\n")  # no declaration: not a command
    found = discover_commands(tmp_path)
    assert found == {
        "hello": {"name": "hello", "summary": "say hello", "function": "greet", "module": "lit_llm.commands.hello"}
    }
    assert "  hello" in usage(found)
