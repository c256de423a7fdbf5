"""`lit-llm evaluate`: loss, perplexity and bits per byte of a model on text files or prepared datasets;
with ``--tasks``, lm-evaluation-harness tasks; with ``--code_completion``, next-line code completion.

Each input becomes one token stream laid out as `lit-llm prepare` lays out training data: every document
followed by the end-of-text token, the whole preceded by one (so the first token is predicted too, from
the context every document starts with in training). Every token of the stream is scored once; streams
longer than the context are read in overlapping windows, each token predicted with at least
``context - stride`` tokens before it. Bits per byte divide the total loss by the UTF-8 bytes of the
documents, so models with different tokenizers can be compared on the same text.
"""

from __future__ import annotations

import json as jsonlib
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.data.format import METADATA, TOKENIZER, read_index, read_tokenizer
from lit_llm.data.identity import check_dataset, check_shard_size
from lit_llm.data.inputs import resolve_inputs
from lit_llm.data.readers import ReadOptions, read_part, scan_file
from lit_llm.data.storage import load_metadata
from lit_llm.data.tokenize import encode_documents
from lit_llm.model.model import GPT
from lit_llm.model.tokenizer import Tokenizer
from lit_llm.planning.hardware import resolve_device, resolve_dtype

IGNORE = -100  # target id that cross_entropy skips: context-only positions and padding


def evaluate(
    checkpoint: str,
    inputs: list[str] | None = None,
    split: str = "val",
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 4,
    text_field: str = "text",
    separator: str | None = None,
    device: str = "auto",
    dtype: Literal["float32", "bfloat16"] = "float32",
    json: bool = False,
    tasks: str | None = None,
    limit: int | None = None,
    include_path: str | None = None,
    code_completion: list[str] | None = None,
    code_lines: int | None = 200,
) -> dict:
    """Loss (nats per token), perplexity and bits per byte of a model on text files or prepared datasets.

    Args:
        checkpoint: a .ckpt file, a run folder (uses its checkpoints/last.ckpt) or a Hugging Face model folder.
        inputs: text, JSON Lines or Parquet files, folders, globs, or folders written by `lit-llm prepare`; each is
            reported on its own line.
        split: which split of a prepared dataset to evaluate (train or val).
        context: tokens per window (default: the model's block_size).
        stride: tokens the window advances by (default: half the context); each token then sees at least context -
            stride tokens before it. Use the context for the fastest, non-overlapping windows.
        batch_size: windows per forward pass.
        text_field: the JSON Lines field or Parquet column that holds the text.
        separator: in text files, a line holding only this string ends a document (as in `lit-llm prepare`).
        device: cpu, cuda or auto.
        dtype: float32 (comparable across machines) or bfloat16 (faster on GPUs).
        json: print the results as JSON instead of a table.
        tasks: comma-separated lm-evaluation-harness tasks (needs pip install "lit-llm[eval]"): lit-llm's shipped
            ones (shakespeare_cloze, shakespeare_rolling), tasks under --include_path, HellaSwag-format .jsonl files,
            or lm-eval's own, whose datasets download from the Hugging Face hub on first use; offline
            (HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1) they are read from the local Hugging Face cache, filled
            beforehand on a connected machine.
        limit: score only the first ``limit`` examples of each task.
        include_path: a folder of lm-eval task YAMLs (e.g. with ``dataset_path: json`` and local data_files).
        code_completion: held-out source files: next-line exact match and mean accepted characters (the share of
            each line completed greedily before the first wrong character), from prefixes cut at line starts.
        code_lines: lines drawn from the code files (seed 0; None: every non-blank line).
    """
    if not (inputs or tasks or code_completion):
        raise ValueError("nothing to evaluate; pass --inputs (text or prepared data), --tasks or --code_completion")
    device = resolve_device(device)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.to(resolve_dtype(dtype, device))
    result: dict = {"checkpoint": checkpoint}
    tables = []
    if inputs:
        options = ReadOptions(text_field, separator)
        result.update(evaluate_text(model, tokenizer, checkpoint, inputs, split, context, stride, batch_size, options))
        tables.append(format_table(result["inputs"] + ([result["total"]] if len(result["inputs"]) > 1 else [])))
    if tasks:
        from lit_llm.evaluation.harness import LitLLMEval, evaluate_tasks

        lm = LitLLMEval.from_model(model, tokenizer, batch_size, checkpoint)
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        result["tasks"] = evaluate_tasks(lm, names, limit, include_path)
        tables.append(format_tasks(result["tasks"]))
    if code_completion:
        result["code_completion"] = evaluate_code(model, tokenizer, code_completion, code_lines, batch_size)
        tables.append(format_code(result["code_completion"]))
    print(jsonlib.dumps(result, indent=2) if json else "\n\n".join(tables))
    return result


def evaluate_text(
    model: GPT,
    tokenizer: Tokenizer,
    checkpoint: str,
    inputs: list[str],
    split: str,
    context: int | None,
    stride: int | None,
    batch_size: int,
    options: ReadOptions,
) -> dict:
    """Loss, perplexity and bits per byte of each input and of all together (``checkpoint`` names the model)."""
    context = context or model.config.block_size
    stride = stride or max(1, context // 2)
    if not 0 < context <= model.config.block_size:
        raise ValueError(f"--context {context} must lie between 1 and the model's block_size {model.config.block_size}")
    if not 0 < stride <= context:
        raise ValueError(f"--stride {stride} must lie between 1 and the context {context}")
    streams = [read_stream(item, tokenizer, checkpoint, split, options) for item in inputs]
    with tqdm(total=sum(len(ids) - 1 for ids, _ in streams), unit="tok", desc="evaluating", disable=None) as bar:
        rows = [
            summarize(item, score(model, ids, context, stride, batch_size, bar), len(ids) - 1, n_bytes)
            for item, (ids, n_bytes) in zip(inputs, streams)
        ]
    total = summarize(
        "all", sum(r["nats"] for r in rows), sum(r["tokens"] for r in rows), sum(r["bytes"] for r in rows)
    )
    return {"context": context, "stride": stride, "inputs": rows, "total": total}


def evaluate_code(model: GPT, tokenizer: Tokenizer, files: list[str], lines: int | None, batch_size: int) -> dict:
    from lit_llm.evaluation.code_completion import default_context, line_tasks, read_sources, score_lines

    tasks = line_tasks(tokenizer, read_sources(files), default_context(model.config.block_size), lines)
    counts = score_lines(model, tokenizer, tasks, batch_size)
    return {"files": len(files), "lines": counts.lines, **counts.metrics()}


# ---- inputs ---------------------------------------------------------------------------------------
def read_stream(
    item: str, tokenizer: Tokenizer, checkpoint: str, split: str, options: ReadOptions
) -> tuple[torch.Tensor, int]:
    """An input's token stream (starting with end-of-text) and the UTF-8 bytes of its documents."""
    path = Path(item).expanduser()
    if (path / METADATA).is_file():
        tokens, n_bytes = read_prepared(path, split, tokenizer, checkpoint)
    else:
        documents = [
            doc
            for file in resolve_inputs([item])
            for part in scan_file(str(file), options).parts
            for doc in read_part(part, options)
        ]
        if not documents:
            raise ValueError(
                f"input {item} holds no text (only empty or binary files); pass UTF-8 text, JSON Lines or Parquet files"
            )
        tokens = torch.from_numpy(encode_documents(tokenizer, documents).astype(np.int64))  # as `prepare` lays them out
        n_bytes = sum(len(doc.encode()) for doc in documents)
    return torch.cat([torch.tensor([tokenizer.eot_id]), tokens]), n_bytes


def read_prepared(folder: Path, split: str, tokenizer: Tokenizer, checkpoint: str) -> tuple[torch.Tensor, int]:
    """All token ids of a prepared split, in order, and its text bytes, after checking the split's shards
    (their checksums too: every byte is read anyway) and that the checkpoint's tokenizer wrote them."""
    metadata = load_metadata(folder)
    if split not in metadata["splits"]:
        raise ValueError(f"--split {split!r} is not in {folder}; choose one of: {', '.join(metadata['splits'])}")
    check_dataset(folder, deep=True, splits=(split,))
    data_tokenizer = read_tokenizer(folder)
    if data_tokenizer.backend.get_vocab(with_added_tokens=True) != tokenizer.backend.get_vocab(with_added_tokens=True):
        raise ValueError(
            f"tokenizer/model mismatch: {folder / TOKENIZER} ({data_tokenizer.vocab_size:,} tokens) is not the "
            f"tokenizer of {checkpoint} ({tokenizer.vocab_size:,} tokens), so its token ids mean other text to this "
            f"model; evaluate the raw text files instead (they are tokenized with the model's tokenizer)"
        )
    tokens = split_tokens(folder / split, metadata["dtype"])
    if not len(tokens):
        raise ValueError(f"{folder / split} holds no tokens; evaluate another --split or prepare more data")
    n_bytes = metadata["splits"][split].get("bytes")  # datasets prepared before byte counts: decode the documents
    if n_bytes is None:
        n_bytes = len(tokenizer.backend.decode(tokens.tolist(), skip_special_tokens=True).encode())
    return tokens, n_bytes


def split_tokens(split_dir: Path, dtype: str) -> torch.Tensor:
    """A split's token ids, read straight from its LitData chunks: a uint32 item count, item count + 1 uint32
    offsets, then the ids. A short file would read as fewer tokens scored against the full text's bytes (a
    wrong, too good bits per byte), so each file's size is checked first, for datasets without checksums too."""
    chunks = []
    for chunk in read_index(split_dir)["chunks"]:
        path = split_dir / chunk["filename"]
        check_shard_size(path, str(path), chunk["chunk_bytes"], "its index.json")
        chunks.append(np.fromfile(path, dtype=dtype, count=chunk["dim"], offset=(chunk["chunk_size"] + 2) * 4))
    return torch.from_numpy(np.concatenate(chunks or [np.zeros(0)]).astype(np.int64))


# ---- scoring --------------------------------------------------------------------------------------
def windows(n_targets: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` per window: inputs ``ids[begin:end]`` predict ``ids[begin+1:end+1]``,
    of which those from position ``first_scored`` on count (the earlier ones were scored before)."""
    spans, scored = [], 0
    for begin in range(0, n_targets, stride):
        end = min(begin + context, n_targets)
        spans.append((begin, end, scored))
        scored = end
        if end == n_targets:
            break
    return spans


@torch.inference_mode()
def score(model: GPT, ids: torch.Tensor, context: int, stride: int, batch_size: int, bar: tqdm) -> float:
    """Total negative log-likelihood (nats) of ``ids[1:]``, each token scored exactly once."""
    spans = windows(len(ids) - 1, context, stride)
    device = model.wte.weight.device
    nats = 0.0
    for first in range(0, len(spans), batch_size):
        batch = spans[first : first + batch_size]
        width = max(end - begin for begin, end, _ in batch)
        inputs = torch.zeros(len(batch), width, dtype=torch.long)
        targets = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for row, (begin, end, scored) in enumerate(batch):
            # Right padding: causal attention keeps it from changing the positions before it.
            inputs[row, : end - begin] = ids[begin:end]
            targets[row, scored - begin : end - begin] = ids[scored + 1 : end + 1]
        logits = model(inputs.to(device))
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.to(device).flatten(), ignore_index=IGNORE, reduction="sum"
        )
        nats += loss.item()
        bar.update(sum(end - scored for _, end, scored in batch))
    return nats


def summarize(name: str, nats: float, tokens: int, n_bytes: int) -> dict:
    loss = nats / tokens
    return {
        "input": name,
        "tokens": tokens,
        "bytes": n_bytes,
        "nats": nats,
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_byte": nats / (math.log(2) * n_bytes),
    }


def format_tasks(results: dict) -> str:
    lines = [f"{'task':<24}  {'metric':<16}  {'value':>10}"]
    for task, metrics in results.items():
        lines += [f"{task:<24}  {name:<16}  {value:>10.4f}" for name, value in metrics.items()]
    return "\n".join(lines)


def format_code(result: dict) -> str:
    return (
        f"code completion: {result['lines']:,} lines of {result['files']} file(s): "
        f"exact match {result['exact_match']:.4f}, accepted characters {result['accepted_chars']:.4f}"
    )


def format_table(rows: list[dict]) -> str:
    width = max(len("input"), *(len(r["input"]) for r in rows))
    lines = [f"{'input':<{width}}  {'tokens':>12}  {'bytes':>13}  {'loss':>7}  {'perplexity':>10}  {'bits/byte':>9}"]
    for r in rows:
        lines.append(
            f"{r['input']:<{width}}  {r['tokens']:>12,}  {r['bytes']:>13,}  {r['loss']:>7.4f}  "
            f"{r['perplexity']:>10.3f}  {r['bits_per_byte']:>9.4f}"
        )
    return "\n".join(lines)


CLI = {
    "name": "evaluate",
    "summary": "loss, perplexity and bits per byte on text; lm-eval tasks (--tasks); code completion",
    "function": "evaluate",
}
