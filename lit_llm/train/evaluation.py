"""The class path of `DownstreamEval` in lit-llm 0.1 experiment YAMLs (``lit_llm.train.evaluation.DownstreamEval``),
kept so they still load; the callback lives in `lit_llm.train.downstream`."""

from lit_llm.train.downstream import DownstreamEval

__all__ = ["DownstreamEval"]
