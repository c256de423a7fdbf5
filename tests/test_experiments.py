"""Every shipped experiment YAML, and every trainer snippet merged after one, parses with the real CLI."""

import pytest
import yaml

from lit_llm.cli import main
from tests.conftest import REPO

# fit experiments; a ladder YAML is `lit-llm ladder`'s (tests/test_ladder.py reads the shipped one)
EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.yaml") if not p.name.startswith("ladder-"))
TRAINER_SNIPPETS = sorted((REPO / "experiments" / "trainer").glob("*.yaml"))


def print_config(capsys, *configs) -> dict:
    args = [arg for config in configs for arg in ("--config", str(config))]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err[-2000:]
    return yaml.safe_load(capsys.readouterr().out)


def holds(resolved, written) -> bool:
    """What the YAML wrote is in the resolved config, which adds every default (to mappings, at any depth)."""
    if isinstance(written, dict):
        return isinstance(resolved, dict) and all(k in resolved and holds(resolved[k], v) for k, v in written.items())
    if isinstance(written, list):
        return isinstance(resolved, list) and len(resolved) == len(written) and all(map(holds, resolved, written))
    return resolved == written


def test_experiments_are_all_checked():
    assert len(EXPERIMENTS) >= 5 and len(TRAINER_SNIPPETS) >= 3


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda path: path.name)
def test_experiment_parses(experiment, capsys):
    written = yaml.safe_load(experiment.read_text())
    resolved = print_config(capsys, experiment)
    for section in ("trainer", "model", "data"):
        for key, value in written.get(section, {}).items():
            assert holds(resolved[section].get(key), value), (section, key)


@pytest.mark.parametrize("snippet", TRAINER_SNIPPETS, ids=lambda path: path.name)
def test_trainer_snippet_merges_after_an_experiment(snippet, capsys):
    written = yaml.safe_load(snippet.read_text())
    resolved = print_config(capsys, REPO / "experiments" / "shakespeare-char-cpu.yaml", snippet)
    for section, values in written.items():
        for key, value in values.items():
            assert resolved[section][key] == value, (section, key)
