"""Start-up: `import lightning` imports torchmetrics, whose `__init__` imports every metric domain (image ->
torchvision -> torch._dynamo, text -> transformers, audio -> scipy.signal; torchmetrics #3314), seconds of
CPU before the first step although lit-llm and Lightning only use `Metric`, `MetricCollection` and
`torchmetrics.aggregation`. `defer_metric_domains()` makes the rest of that `__init__` run on first use."""

from __future__ import annotations

import ast
import importlib.util
import sys


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
