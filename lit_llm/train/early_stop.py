"""Stop a run as soon as a validation metric reaches a target: "train until val loss 1.88", from any YAML.

    trainer:
      callbacks:
        - class_path: lit_llm.train.early_stop.StopAtTarget
          init_args: {target: 1.88}

Unlike Lightning's EarlyStopping (which stops when a metric stops improving), this stops on success;
``trainer.max_steps`` still bounds the run (and sizes the LR schedule) when the target is never reached.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class StopAtTarget(L.Callback):
    def __init__(self, target: float, monitor: str = "val/loss", mode: str = "min") -> None:
        """
        Args:
            target: stop once the metric is at or below it (``mode: min``) or at or above it (``mode: max``).
            monitor: a logged validation metric (``val/loss``, ``val/<source>/loss``, ...).
            mode: ``min`` for losses, ``max`` for accuracies.
        """
        if mode not in ("min", "max"):
            raise ValueError(f"StopAtTarget mode={mode!r} is unknown; use min (losses) or max (accuracies)")
        self.target = target
        self.monitor = monitor
        self.mode = mode
        self.reached_at_step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ValueError(
                f"StopAtTarget monitors {self.monitor!r}, which validation did not log; "
                f"logged: {', '.join(sorted(trainer.callback_metrics)) or 'nothing'}"
            )
        value = float(value)
        if value <= self.target if self.mode == "min" else value >= self.target:
            self.reached_at_step = trainer.global_step
            trainer.should_stop = True
            rank_zero_info(
                f"{self.monitor} = {value:.4f} reached the target {self.target} at step {trainer.global_step}: stopping"
            )
