"""Start-up: seconds of CPU that `import lightning` spends on code a training run may never use.

- torchmetrics' `__init__` imports every metric domain (image -> torchvision, text -> transformers, audio ->
  scipy.signal; torchmetrics #3314) although lit-llm and Lightning only use `Metric`, `MetricCollection` and
  `torchmetrics.aggregation`: `defer_metric_domains()` makes the rest of that `__init__` run on first use.
- Lightning imports `torch._dynamo` (2 CPU-s, the compiler) for `OptimizedModule`, used in isinstance checks,
  and for `@torch.compiler.disable` on its logging methods: `defer_dynamo()` binds the name to a stand-in that
  answers those checks as the real class does and applies the decorator once the compiler is imported, so
  nothing imports it until `torch.compile` (a run with `model.compile: true`) does.
- torch's optimizers import `torch._dynamo` too, on their first step (`_use_grad_for_differentiable` around
  each `step`, for its graph breaks) and first `zero_grad`/`add_param_group`/functional update
  (`torch._disable_dynamo`): `defer_dynamo_in_optimizers()` runs those as they would run uncompiled until
  the compiler is imported, and as torch ships them from then on.
"""

from __future__ import annotations

import ast
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys

import torch


def defer_metric_domains() -> None:
    """Register `torchmetrics` with its `__init__` run only up to its first import of its own submodules, plus
    `Metric` and `MetricCollection`; any other top-level name (`torchmetrics.Accuracy`, `.functional`) runs the
    rest of the `__init__` first, so code that uses them sees the package as usual. Does nothing when
    torchmetrics is already imported, and falls back to the plain import if its `__init__` has changed shape."""
    if "torchmetrics" in sys.modules or (spec := importlib.util.find_spec("torchmetrics")) is None:
        return
    with open(spec.origin, encoding="utf-8") as file:
        statements = ast.parse(file.read(), spec.origin).body
    split = next((i for i, statement in enumerate(statements) if imports_own_submodule(statement)), None)
    if split is None:
        return
    # The `if package_available(...)` blocks before it patch numpy, PIL and scipy for the domains' sake (and
    # import scipy.signal, a second): they run with the rest.
    head = [statement for statement in statements[:split] if not isinstance(statement, ast.If)]
    rest = [statement for statement in statements[:split] if isinstance(statement, ast.If)] + statements[split:]
    package = importlib.util.module_from_spec(spec)
    sys.modules["torchmetrics"] = package
    try:
        run(head, spec.origin, package)
        import torchmetrics.utilities  # noqa: F401  before .metric: utilities -> checks -> metric resolves the cycle
        from torchmetrics.collections import MetricCollection
        from torchmetrics.metric import Metric
    except Exception:  # a torchmetrics whose modules need its whole __init__: import it the usual way
        for name in [name for name in sys.modules if name.partition(".")[0] == "torchmetrics"]:
            del sys.modules[name]
        return
    package.Metric, package.MetricCollection = Metric, MetricCollection

    def load_rest(name: str):
        del package.__getattr__
        run(rest, spec.origin, package)
        return getattr(package, name)

    package.__getattr__ = load_rest


def imports_own_submodule(statement: ast.stmt) -> bool:
    """`from torchmetrics import functional`, `from torchmetrics.aggregation import ...` (not `.__about__`)."""
    module = getattr(statement, "module", None) or ""
    own = module == "torchmetrics" or (module.startswith("torchmetrics.") and module != "torchmetrics.__about__")
    return isinstance(statement, ast.ImportFrom) and own


def run(statements: list[ast.stmt], filename: str, module) -> None:
    exec(compile(ast.Module(statements, type_ignores=[]), filename, "exec"), module.__dict__)


# Lightning's modules whose import runs torch._dynamo's: for `OptimizedModule` in isinstance checks, and for
# `@torch.compiler.disable` on the logging methods (lightning 2.x)
IMPORT_DYNAMO = (
    "lightning.fabric.wrappers",
    "lightning.pytorch.utilities.compile",
    "lightning.pytorch.trainer.connectors.logger_connector.result",
)


class DeferredClassCheck(type):
    """isinstance/issubclass against torch._dynamo.OptimizedModule, without importing torch._dynamo: before it
    is imported no instance or subclass of it can exist, so the answer is False until then."""

    def __instancecheck__(cls, instance) -> bool:
        real = imported_optimized_module()
        return real is not None and isinstance(instance, real)

    def __subclasscheck__(cls, subclass) -> bool:
        real = imported_optimized_module()
        return real is not None and issubclass(subclass, real)


class OptimizedModule(metaclass=DeferredClassCheck):
    """Stands for torch._dynamo.OptimizedModule in the Lightning modules of IMPORT_DYNAMO."""


def imported_optimized_module() -> type | None:
    return getattr(sys.modules.get("torch._dynamo"), "OptimizedModule", None)


def disable_when_compiling(fn):
    """`@torch.compiler.disable`, applied when it can matter: ``fn`` runs as it is until torch._dynamo is
    imported (nothing can be compiling before), and through `torch.compiler.disable(fn)` from then on."""
    disabled = []

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return call


class DeferDynamo(ast.NodeTransformer):
    """`from torch._dynamo import OptimizedModule` -> the stand-in; `@torch.compiler.disable` ->
    `@disable_when_compiling`. Anything else is left as it is."""

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module == "torch._dynamo" and [alias.name for alias in node.names] == ["OptimizedModule"]:
            return ast.copy_location(ast.ImportFrom("lit_llm.train.imports", node.names, 0), node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.decorator_list = [
            ast.copy_location(ast.parse(f"{__name__}.disable_when_compiling", mode="eval").body, d)
            if ast.unparse(d) == "torch.compiler.disable"
            else d
            for d in node.decorator_list
        ]
        self.generic_visit(node)
        return node


class DeferDynamoLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str):
        path = self.get_filename(fullname)
        tree = DeferDynamo().visit(ast.parse(self.get_source(fullname), path))
        tree.body.insert(first_statement(tree), ast.parse(f"import {__name__}").body[0])
        return compile(ast.fix_missing_locations(tree), path, "exec", dont_inherit=True)


def first_statement(tree: ast.Module) -> int:
    """Where a statement can go first: after the docstring and the `from __future__` imports."""
    index = 0
    for statement in tree.body:
        docstring = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and index == 0
        if not (docstring or (isinstance(statement, ast.ImportFrom) and statement.module == "__future__")):
            break
        index += 1
    return index


class DeferDynamoFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of IMPORT_DYNAMO where Python would, and loads them through DeferDynamoLoader."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname not in IMPORT_DYNAMO:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = DeferDynamoLoader(fullname, spec.origin)
        return spec


def defer_dynamo_in_optimizers() -> None:
    """Keep torch.optim from importing the compiler (1.5-2 CPU-s, every run's first step) while nothing compiles.

    - each optimizer class's `step`, wrapped by `_use_grad_for_differentiable` (which imports torch._dynamo
      for two `graph_break()` calls around the step: they only matter while compiling), is wrapped once more
      by `step_until_compiler_imported`;
    - `torch._disable_dynamo(fn)` builds `torch._dynamo.disable(fn)` on its first call and keeps it as
      `fn.__dynamo_disable`: each such wrapper in torch.optim gets that attribute already, a stand-in that
      calls `fn` while torch._dynamo is not imported and then removes itself, so that torch builds the real one.
    A torch whose wrappers have another shape is left as it is (`tests/test_layout.py` checks a fit)."""
    import torch.optim
    from torch._compile import _disable_dynamo
    from torch.optim.optimizer import _use_grad_for_differentiable

    use_grad_code = _use_grad_for_differentiable(len).__code__
    if use_grad_code.co_freevars == ("func",):
        for cls in vars(torch.optim).values():
            step = vars(cls).get("step") if isinstance(cls, type) else None
            if getattr(step, "__code__", None) is use_grad_code:
                cls.step = step_until_compiler_imported(step)

    disable_code = _disable_dynamo(len).__code__
    if disable_code.co_freevars != ("fn", "recursive"):
        return
    wrappers = list(vars(torch.optim.Optimizer).values())
    for name, module in list(sys.modules.items()):  # the functional updates: `disabled_func` in each maybe_fallback
        if name.startswith("torch.optim.") and module is not None:
            closures = [f.__closure__ for f in vars(module).values() if getattr(f, "__closure__", None)]
            wrappers += [cell.cell_contents for closure in closures for cell in closure if filled(cell)]
    for wrapper in wrappers:
        fn = getattr(wrapper, "__wrapped__", None)
        if getattr(wrapper, "__code__", None) is disable_code and getattr(fn, "__dynamo_disable", None) is None:
            fn.__dynamo_disable = call_until_compiler_imported(fn, wrapper)


def step_until_compiler_imported(use_grad):
    """`_use_grad_for_differentiable(step)` without its graph breaks while torch._dynamo is not imported."""
    step = use_grad.__wrapped__

    @functools.wraps(step)
    def deferred(self, *args, **kwargs):
        if "torch._dynamo" in sys.modules:
            return use_grad(self, *args, **kwargs)
        with torch.set_grad_enabled(self.defaults["differentiable"]):  # what it does around the step
            return step(self, *args, **kwargs)

    deferred.use_grad = use_grad
    return deferred


def call_until_compiler_imported(fn, wrapper):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        del fn.__dynamo_disable  # torch's wrapper builds the real one now, and keeps it
        return wrapper(*args, **kwargs)

    return call


def filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018  an empty cell raises
    except ValueError:
        return False
    return True


def defer_dynamo() -> None:
    """Load IMPORT_DYNAMO without importing torch._dynamo (before Lightning is imported; a no-op once it is)."""
    loaded = any(name in sys.modules for name in IMPORT_DYNAMO)
    if not loaded and not any(isinstance(finder, DeferDynamoFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferDynamoFinder())
