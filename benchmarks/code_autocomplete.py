"""Code autocompletion, measured: completion quality of checkpoints on held-out code, and `lit-llm serve`'s
latency as an editor sees it.

quality: for each checkpoint, on lines drawn from the held-out files (seed 0):
  - next line, left to right: exact match and accepted characters (`score_lines`, as `lit-llm evaluate
    --code_completion` reports them), and the whole written line's exact match and edit similarity;
  - single-line infilling inside functions (checkpoints whose tokenizer has the FIM tokens): exact match and
    edit similarity of the middle, given prefix and suffix.
serve: starts `lit-llm serve CHECKPOINT` on a free port and sends streamed completions with the official
  `openai` client, one at a time: time to first token (request sent -> first non-empty text), and tokens/s
  after it (completion tokens from the usage, over the time from first to last event).

    python -m benchmarks.code_autocomplete quality --checkpoints RUN_A RUN_B --files held_out/*.py --json out.json
    python -m benchmarks.code_autocomplete serve --checkpoint RUN --files held_out/*.py --requests 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quality(checkpoints: list[str], files: list[str], tasks: int, max_new_tokens: int) -> dict:
    from lit_llm.checkpoint.load import load_checkpoint
    from lit_llm.evaluation.code_completion import (
        default_context,
        infill_tasks,
        line_tasks,
        read_sources,
        score_infills,
        score_line_edits,
        score_lines,
    )

    sources = read_sources(files)
    results = {}
    for checkpoint in checkpoints:
        model, tokenizer = load_checkpoint(checkpoint)
        context = default_context(model.config.block_size)
        start = time.perf_counter()
        lines = line_tasks(tokenizer, sources, context, tasks)
        result = {
            "line": score_lines(model, tokenizer, lines, max_new_tokens=max_new_tokens).metrics(),
            "whole_line": score_line_edits(model, tokenizer, lines, max_new_tokens=max_new_tokens).metrics(),
        }
        if tokenizer.fim_ids is not None:
            # prefix + suffix + 4 special tokens + the answer within the context
            suffix = max(0, model.config.block_size - context - 4 - max_new_tokens)
            infills = infill_tasks(tokenizer, sources, context, suffix, tasks)
            result["infill"] = score_infills(model, tokenizer, infills, max_new_tokens=max_new_tokens).metrics()
        result["seconds"] = round(time.perf_counter() - start, 1)
        results[checkpoint] = result
        print(checkpoint, json.dumps(result), flush=True)
    return results


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_latency(checkpoint: str, files: list[str], requests: int, max_tokens: int, threads: int | None) -> dict:
    import openai

    from lit_llm.checkpoint.load import load_checkpoint
    from lit_llm.evaluation.code_completion import default_context, line_tasks, read_sources

    model, tokenizer = load_checkpoint(checkpoint)  # here only for its tokenizer and context; the server loads its own
    block_size = model.config.block_size
    del model
    prompts = [
        tokenizer.decode(task.prompt[1:] if task.prompt[0] == tokenizer.eot_id else task.prompt)
        for task in line_tasks(tokenizer, read_sources(files), default_context(block_size), requests)
    ]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "lit_llm.cli", "serve", checkpoint, "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command + (["--threads", str(threads)] if threads else []), env=env)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    try:
        wait_until_up(client, server)
        first_tokens, rates, produced = [], [], []
        for prompt in prompts:
            sent = time.perf_counter()
            first = last = None
            usage = None
            for event in client.completions.create(
                model="m", prompt=prompt, max_tokens=max_tokens, temperature=0.2, seed=0, stream=True
            ):
                now = time.perf_counter()
                if event.choices and event.choices[0].text and first is None:
                    first = now
                last = now
                usage = event.usage or usage
            if first is None:
                continue  # ended at once (end-of-text first): no text to time
            first_tokens.append(first - sent)
            produced.append(usage.completion_tokens)
            if usage.completion_tokens > 1 and last > first:
                rates.append((usage.completion_tokens - 1) / (last - first))
        return {
            "requests": len(first_tokens),
            "prompt_tokens": default_context(block_size),
            "threads": threads or "torch default",
            "max_tokens": max_tokens,
            "ttft_ms_median": round(1000 * statistics.median(first_tokens), 1),
            "ttft_ms_p90": round(1000 * sorted(first_tokens)[int(0.9 * (len(first_tokens) - 1))], 1),
            "tokens_per_s_median": round(statistics.median(rates), 1),
            "completion_tokens_mean": round(statistics.mean(produced), 1),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_up(client, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            client.models.list()
            return
        except Exception:
            time.sleep(0.5)
    raise SystemExit("the server did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--checkpoints", nargs="+", required=True)
    q.add_argument("--files", nargs="+", required=True)
    q.add_argument("--tasks", type=int, default=200, help="line tasks and infill tasks drawn (seed 0)")
    q.add_argument("--max_new_tokens", type=int, default=48)
    s = sub.add_parser("serve")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--files", nargs="+", required=True)
    s.add_argument("--requests", type=int, default=20)
    s.add_argument("--max_tokens", type=int, default=64)
    s.add_argument("--threads", type=int, help="the server's torch threads (default: torch's)")
    for p in (q, s):
        p.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.what == "quality":
        result = quality(args.checkpoints, args.files, args.tasks, args.max_new_tokens)
    else:
        result = serve_latency(args.checkpoint, args.files, args.requests, args.max_tokens, args.threads)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
