"""Downstream evaluation: log-likelihoods of continuations, multiple-choice tasks, code completion, and the
lm-evaluation-harness model type. Plain PyTorch except `harness`, which needs the `eval` extra (lm-eval)."""
