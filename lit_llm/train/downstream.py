"""Downstream evaluation during training: multiple-choice tasks and next-line code completion, scored at
every validation and logged as ``eval/<task>/acc``, ``eval/<task>/acc_norm``, ``eval/code/exact_match`` and
``eval/code/accepted_chars`` (plus ``eval/seconds``, the time it took, to keep its share of the run known).

Add it to the experiment YAML (paths relative to where `lit-llm fit` runs)::

    trainer:
      callbacks:
        - class_path: lit_llm.train.downstream.DownstreamEval
          init_args:
            tasks: [lit_llm/tasks/shakespeare_cloze.jsonl]
            limit: 100

The scores are those of `lit-llm evaluate --tasks FILE.jsonl` on the saved checkpoint (the same definitions
in lit_llm.evaluation). Each rank scores its share of the examples and the counts are summed.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from lit_llm.evaluation.code_completion import (
    CompletionCounts,
    default_context,
    line_tasks,
    read_sources,
    score_lines,
)
from lit_llm.evaluation.multiple_choice import ChoiceCounts, batches_needed, read_questions, score_questions
from lit_llm.train.callbacks import eager_mode
from lit_llm.train.strategy import is_sharded


class DownstreamEval(L.Callback):
    def __init__(
        self,
        tasks: list[str] | None = None,
        limit: int | None = 200,
        code_files: list[str] | None = None,
        code_lines: int | None = 200,
        batch_size: int = 16,
    ) -> None:
        """
        Args:
            tasks: HellaSwag-format JSON Lines files (ctx, endings, label), each logged under its file name.
            limit: score the first ``limit`` questions of each task (None: all).
            code_files: held-out source files for next-line completion (eval/code/*).
            code_lines: lines drawn from the code files (seed 0; None: every non-blank line).
            batch_size: sequences per forward pass.
        """
        self.questions = {Path(t).stem: read_questions(t, limit) for t in tasks or []}  # bad files fail before fit
        self.sources = read_sources(code_files or [])
        self.code_lines = code_lines
        self.batch_size = batch_size
        self.code_tasks = None  # tokenized on first use: the tokenizer comes with the data

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.sources and is_sharded(trainer.strategy):
            raise ValueError(
                "code completion during training needs an unsharded model (its generation length varies by rank); "
                "drop code_files under fsdp2 and run `lit-llm evaluate --code_completion` on the checkpoint"
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not (self.questions or self.sources):
            return
        start = time.perf_counter()
        rank, world = trainer.global_rank, trainer.world_size
        with eager_mode(), trainer.precision_plugin.forward_context():
            for name, questions in self.questions.items():
                # Every rank makes as many forward passes as the busiest one: sharded weights gather in each.
                busiest = max(batches_needed(questions[r::world], self.batch_size) for r in range(world))
                counts = score_questions(
                    pl_module.model, pl_module.tokenizer, questions[rank::world], self.batch_size, busiest
                )
                total = ChoiceCounts(
                    *self._sum(trainer, pl_module, [counts.questions, counts.correct, counts.correct_norm])
                )
                for metric, value in total.accuracies().items():
                    pl_module.log(f"eval/{name}/{metric}", value, add_dataloader_idx=False)
            if self.sources:
                if self.code_tasks is None:
                    context = default_context(pl_module.config.block_size)
                    self.code_tasks = line_tasks(pl_module.tokenizer, self.sources, context, self.code_lines)
                share = self.code_tasks[rank::world]
                counts = score_lines(pl_module.model, pl_module.tokenizer, share, self.batch_size)
                lines, exact, accepted = self._sum(trainer, pl_module, [counts.lines, counts.exact, counts.accepted])
                for metric, value in CompletionCounts(int(lines), int(exact), accepted).metrics().items():
                    pl_module.log(f"eval/code/{metric}", value, add_dataloader_idx=False)
        pl_module.log("eval/seconds", time.perf_counter() - start, add_dataloader_idx=False)

    @staticmethod
    def _sum(trainer: L.Trainer, pl_module: L.LightningModule, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64: exact for the counts)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=pl_module.device)
        return trainer.strategy.reduce(tensor, reduce_op="sum").tolist()
