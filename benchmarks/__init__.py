import lit_llm.train  # noqa: F401  (defers torchmetrics' metric domains before a benchmark imports Lightning)
