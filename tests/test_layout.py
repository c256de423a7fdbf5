"""The layering the package promises: the core and the light commands start without Lightning."""

import subprocess
import sys

CORE = [
    "lit_llm.model",
    "lit_llm.sampling",
    "lit_llm.checkpointing",
    "lit_llm.estimate",
    "lit_llm.memory",
    "lit_llm.objective",
    "lit_llm.parallelism",
    "lit_llm.hf",
    "lit_llm.hf_families",
    "lit_llm.data.prepare",
    "lit_llm.data.format",
    "lit_llm.evaluation.multiple_choice",
    "lit_llm.evaluation.code_completion",
]
LIGHT_COMMANDS = ["generate", "evaluate", "export", "plan", "consolidate", "plot", "prepare"]


def imported_modules(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_core_imports_no_lightning():
    modules = imported_modules(
        "".join(f"import {m}\n" for m in CORE) + "import lit_llm\nlit_llm.GPT, lit_llm.ModelConfig"
    )
    assert not {m for m in modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics")}


def test_help_of_light_commands_imports_no_lightning():
    for command in LIGHT_COMMANDS:
        code = f"from lit_llm.cli import main\ntry:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass"
        modules = imported_modules(code)
        assert "lightning" not in modules, f"`lit-llm {command} --help` imports Lightning"


def test_training_stack_defers_torchmetrics_domains():
    """`lit-llm fit`'s imports leave out torchmetrics' metric domains (torchvision, torch's image models...),
    and torchmetrics still offers all of them to a user's own callback once asked for."""
    modules = imported_modules("import lit_llm.train.cli, lit_llm.train.module, lit_llm.data.datamodule")
    assert "lightning" in modules and "torchmetrics" in modules
    assert not {"torchvision", "torchmetrics.functional", "torchmetrics.image"} & modules
    code = (
        "import lit_llm.train.cli, importlib.metadata, torch, torchmetrics\n"
        "from torchmetrics.functional import accuracy\n"
        "assert torchmetrics.__version__ == importlib.metadata.version('torchmetrics')\n"
        "assert torchmetrics.Accuracy(task='binary')(torch.tensor([1, 0]), torch.tensor([1, 1])) == 0.5\n"
        "assert torchmetrics.Metric is torchmetrics.metric.Metric and 'Accuracy' in torchmetrics.__all__"
    )
    assert "torchvision" in imported_modules(code)
