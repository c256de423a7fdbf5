"""Loads the JSON Lines files beside lit-llm's shipped task YAMLs: lm-eval's ``dataset_path: json`` reads
``data_files`` relative to the working directory, so a shipped task names its file through this function."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(file: str, **metadata):
    """A DatasetDict with one ``test`` split read from ``file`` (a name in this folder); lm-eval passes the
    task's ``metadata`` and ``dataset_kwargs`` as keyword arguments."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_json(str(HERE / file))})
