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
