"""Parallelism applied to an unmodified model from outside: FSDP2, activation checkpointing, compilation."""
