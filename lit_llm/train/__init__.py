"""The Lightning layer: the LightningModule, callbacks, LightningCLI and strategy set-up."""

from lit_llm.train.imports import defer_dynamo, defer_metric_domains

defer_metric_domains()  # before any module here imports Lightning (which imports torchmetrics and torch._dynamo)
defer_dynamo()
