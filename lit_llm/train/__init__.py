"""The Lightning layer: the LightningModule, the data module, callbacks, LightningCLI and strategy set-up.

Importing it first defers what Lightning imports but a run may never use (train/imports.py); set
``LIT_LLM_PLAIN_IMPORTS=1`` to import Lightning and torchmetrics exactly as they ship, e.g. to rule the
deferral out when a new release behaves oddly (start-up then costs ~4-5 CPU-seconds more).
"""

import os

from lit_llm.train.imports import defer_dynamo, defer_dynamo_in_optimizers, defer_metric_domains

if os.environ.get("LIT_LLM_PLAIN_IMPORTS", "") in ("", "0"):
    defer_metric_domains()  # before any module here imports Lightning (which imports torchmetrics and torch._dynamo)
    defer_dynamo()
    defer_dynamo_in_optimizers()
