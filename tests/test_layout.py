"""The layering the package promises: every package but train/ is plain PyTorch, and the light commands
start without Lightning. The packages are found by walking the source tree, so a new module is covered."""

import os
import pkgutil
import subprocess
import sys

import pytest
import torch

import lit_llm
from lit_llm.cli import discover_commands

PLAIN_PACKAGES = ("model", "hf", "checkpoint", "data", "distributed", "planning", "evaluation", "commands")
PLAIN = sorted(
    module.name
    for module in pkgutil.walk_packages(lit_llm.__path__, "lit_llm.")
    if module.name.split(".")[1] in PLAIN_PACKAGES
)
LIGHT_COMMANDS = sorted(discover_commands())  # every command but fit and validate


def imported_modules(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_plain_packages_import_no_lightning():
    assert {"lit_llm.model.model", "lit_llm.data.prepare", "lit_llm.commands.plan"} <= set(PLAIN)
    modules = imported_modules(
        "".join(f"import {m}\n" for m in PLAIN) + "import lit_llm\nlit_llm.GPT, lit_llm.ModelConfig"
    )
    assert not {m for m in modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics")}


def test_the_root_holds_only_the_dispatcher_and_its_plumbing():
    """Everything else lives in a package by concern (docs/architecture.md)."""
    modules = {m.name for m in pkgutil.iter_modules(lit_llm.__path__) if not m.ispkg}
    assert modules == {"cli", "errors", "outputs"}


def test_help_of_light_commands_imports_no_lightning():
    for command in LIGHT_COMMANDS:
        args = [*command.split(), "--help"]
        code = f"from lit_llm.cli import main\ntry:\n    main({args})\nexcept SystemExit:\n    pass"
        modules = imported_modules(code)
        assert "lightning" not in modules, f"`lit-llm {command} --help` imports Lightning"


def test_training_stack_defers_torchmetrics_domains():
    """`lit-llm fit`'s imports leave out torchmetrics' metric domains (torchvision, torch's image models...),
    and torchmetrics still offers all of them to a user's own callback once asked for."""
    modules = imported_modules("import lit_llm.train.cli, lit_llm.train.module, lit_llm.train.datamodule")
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


def test_training_stack_defers_the_compiler_and_lightning_still_sees_compiled_modules():
    """`lit-llm fit`'s imports leave out torch._dynamo (2 CPU-s) until a run compiles; then Lightning's
    isinstance checks see compiled modules and its logging methods are excluded from compilation, as with
    the plain imports."""
    modules = imported_modules("import lit_llm.train.cli, lit_llm.train.module, lit_llm.train.datamodule")
    assert "lightning.pytorch.trainer.connectors.logger_connector.result" in modules
    assert "torch._dynamo" not in modules
    code = """
import lit_llm.train.cli, sys, torch
from lightning.fabric.wrappers import OptimizedModule, _unwrap_compiled, _unwrap_objects
from lightning.pytorch.utilities.compile import from_compiled, to_uncompiled
from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection
from lit_llm.model.config import ModelConfig
from lit_llm.train.module import LitLLM
module = LitLLM(ModelConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16))
assert not isinstance(module, OptimizedModule) and not issubclass(LitLLM, OptimizedModule)
compiled = torch.compile(module)
assert isinstance(compiled, OptimizedModule) and issubclass(type(compiled), OptimizedModule)
assert _unwrap_compiled(compiled)[0] is module and _unwrap_objects(compiled) is compiled  # as plain Lightning
assert from_compiled(compiled) is module and to_uncompiled(module) is module
assert torch._dynamo.OptimizedModule is type(compiled)

from lit_llm.train.imports import disable_when_compiling
# Lightning's logging method is the deferred decorator around its own function...
assert _ResultCollection.log.__code__ is disable_when_compiling(len).__code__
assert _ResultCollection.log.__wrapped__.__name__ == "log"
# ... which, once the compiler is imported, runs eagerly outside the graph, as a disabled function does
calls = []
def logs(x):
    calls.append(1)
    return x + 1
logged = disable_when_compiling(logs)
explained = torch._dynamo.explain(lambda x: logged(x * 2) * 3)(torch.ones(2))
assert explained.graph_break_count == 1 and calls == [1], (explained, calls)
"""
    assert "torch._dynamo" in imported_modules(code)


def test_plain_imports_switch_turns_the_deferral_off_and_fit_still_runs(small_dataset, tmp_path):
    """LIT_LLM_PLAIN_IMPORTS=1: Lightning and torchmetrics load as they ship (torch._dynamo and torchmetrics'
    domains with them), and a short fit trains as usual."""
    from tests.conftest import fit_args

    settings = {"trainer.max_steps": 2, "model.architecture.n_layer": 1, "data.batch_size": 4}
    args = fit_args(small_dataset, tmp_path / "run", settings)
    code = (
        f"from lit_llm.cli import main\nmain({args!r})\nimport sys\n"
        "from lit_llm.train.imports import DeferDynamoFinder\n"
        "assert not any(isinstance(f, DeferDynamoFinder) for f in sys.meta_path)\n"
        "print(' '.join(sys.modules))"
    )
    env = {**os.environ, "LIT_LLM_PLAIN_IMPORTS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = set(result.stdout.split())
    assert {"torch._dynamo", "torchmetrics.functional"} <= modules
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("optimizer", ["adamw", pytest.param("muon", marks=pytest.mark.slow)])
def test_fit_never_imports_the_compiler_and_trains_as_with_the_plain_imports(optimizer, small_dataset, tmp_path):
    """torch's optimizers and the text sample import torch._dynamo (1.5-2 CPU-s) unless deferred: a fit, its
    resume (the optimizer's load_state_dict) and its sample run without it, to the same weights and optimizer
    state, bit for bit, as with LIT_LLM_PLAIN_IMPORTS=1, where torch imports it as it ships."""
    from tests.conftest import fit_args

    settings = {"model.architecture.n_layer": 1, "data.batch_size": 4, "model.optimizer": optimizer}
    settings |= {"trainer.val_check_interval": 2, "model.sample_tokens": 3}
    states = {}
    for plain in ("0", "1"):
        run_dir = tmp_path / f"plain-{plain}"
        for steps, resume in ((2, []), (4, ["--ckpt_path", "last", "--resume_with_changes", "true"])):
            args = fit_args(small_dataset, run_dir, {**settings, "trainer.max_steps": steps}, *resume)
            code = f"from lit_llm.cli import main\nmain({args!r})\nimport sys\nprint('torch._dynamo' in sys.modules)"
            env = {**os.environ, "LIT_LLM_PLAIN_IMPORTS": plain}
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            assert result.returncode == 0, result.stderr[-2000:]
            assert result.stdout.split()[-1] == ("True" if plain == "1" else "False")
        states[plain] = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert states["0"]["global_step"] == 4
    for a, b in zip(tensors(states["0"]), tensors(states["1"]), strict=True):
        assert torch.equal(a, b)


def tensors(checkpoint: dict) -> list:
    optimizer_state = checkpoint["optimizer_states"][0]["state"]
    moments = [t for _, s in sorted(optimizer_state.items()) for _, t in sorted(s.items())]
    return [*checkpoint["state_dict"].values(), *moments]


def test_optimizers_run_as_torch_ships_them_once_the_compiler_is_imported():
    code = """
import sys, lit_llm.train, torch
from torch.optim.optimizer import _use_grad_for_differentiable
from lit_llm.train.imports import step_until_compiler_imported
assert torch.optim.AdamW.step.__code__ is step_until_compiler_imported(torch.optim.Adam.step.use_grad).__code__
model = torch.nn.Linear(4, 4)
optimizer = torch.optim.AdamW(model.parameters(), fused=True)
for compiler in (False, True):
    if compiler:
        import torch._dynamo
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    assert ("torch._dynamo" in sys.modules) == compiler
# torch's own wrapper now holds the real disabled function, as it would have without the deferral
zero_grad = torch.optim.Optimizer.zero_grad.__wrapped__
assert getattr(zero_grad, "__dynamo_disable").__module__ != "lit_llm.train.imports"
compiled_step = torch.compile(lambda: optimizer.step())
model(torch.ones(2, 4)).sum().backward()
compiled_step()  # the optimizer step under the compiler: its graph breaks are back
print("ok")
"""
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "ok\n"
