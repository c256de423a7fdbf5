"""Throughput of `lit-llm prepare` on the shared corpora, next to a plain single-process loop.

For each corpus and tokenizer (the byte tokenizer, and a BPE tokenizer trained once beforehand so that
training time is not counted), it times:

- ``loop``: ``tokenizer.encode(document)`` for every document in one process, over text already in
  memory (reading, splitting and writing not counted: the loop's best case);
- ``prepare N``: the whole ``prepare()`` with N worker processes (scan, read, tokenize, write shards).

MB/s counts UTF-8 bytes of document text. Wall-clock rates depend on what else runs on the machine, so
each row also gives the CPU time that all its processes used (workers included): "per CPU-second"
rates are the per-core throughput, comparable between rows even on a shared machine.

    python -m benchmarks.prepare_throughput [--data ../shared/data] [--repeat 4] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process, so "per core" means what it says

from benchmarks.harness import cpu_seconds_with_children, machine_description, markdown_row, markdown_table
from lit_llm.data.prepare import prepare
from lit_llm.model.tokenizer import Tokenizer, byte_tokenizer, train_bpe

SEPARATOR = "<|endoftext|>"


def build_corpora(data: Path, work: Path, repeat: int) -> dict[str, tuple[list[str], dict, list[str]]]:
    """name -> (prepare inputs, prepare options, the same documents as strings for the loop)."""
    stories = [
        s
        for s in (data / "tinystories" / "tinystories_train_head.txt").read_text().split(f"{SEPARATOR}\n")
        if s.strip()
    ]
    shards = []
    for i in range(repeat):  # JSON Lines shards, as pre-training corpora usually come
        shard = work / f"stories-{i}.jsonl"
        shard.write_text("".join(json.dumps({"text": s}) + "\n" for s in stories))
        shards.append(str(shard))
    novels = sorted((data / "gutenberg").glob("*.txt"))
    shakespeare = data / "tinyshakespeare" / "input.txt"
    return {
        f"tinystories JSONL x{repeat}": (shards, {}, stories * repeat),
        "gutenberg (5 novels)": ([str(p) for p in novels], {}, [p.read_text() for p in novels]),
        "tinyshakespeare (1 doc)": ([str(shakespeare)], {}, [shakespeare.read_text()]),
    }


def measure(run, *args) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, tokens) of ``run(*args)``, which returns the tokens it made."""
    wall, cpu = time.perf_counter(), cpu_seconds_with_children()  # workers included
    tokens = run(*args)
    return time.perf_counter() - wall, cpu_seconds_with_children() - cpu, tokens


def loop(tokenizer: Tokenizer, documents: list[str]) -> int:
    return sum(len(tokenizer.encode(doc)) + 1 for doc in documents)


def prepare_quietly(inputs: list[str], options: dict, tokenizer_path: str, workers: int, out: Path) -> int:
    with contextlib.redirect_stdout(io.StringIO()):  # prepare's own summary line
        meta = prepare(inputs, str(out), tokenizer=tokenizer_path, num_workers=workers, overwrite=True, **options)
    return meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"]


HEADER = [
    "corpus",
    "tokenizer",
    "how",
    "MB",
    "wall s",
    "MB/s",
    "Mtok/s",
    "CPU s",
    "MB per CPU-s",
    "Mtok per CPU-s",
    "per CPU-s vs loop",
]


def row(
    corpus: str, tokenizer: str, how: str, mb: float, wall: float, cpu: float, tokens: int, loop_rate: float
) -> list[str]:
    rates = [mb / wall, tokens / wall / 1e6, cpu, mb / cpu, tokens / cpu / 1e6]
    return [
        corpus,
        tokenizer,
        how,
        f"{mb:.1f}",
        f"{wall:.2f}",
        *(f"{r:.2f}" for r in rates),
        f"{mb / cpu / loop_rate:.2f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=4, help="copies of TinyStories, as separate JSONL shards")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, len(os.sched_getaffinity(0))])
    parser.add_argument("--vocab_size", type=int, default=8192)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpora = build_corpora(Path(args.data), work, args.repeat)
        unique_documents = dict.fromkeys(doc for _, _, docs in corpora.values() for doc in docs)
        bpe = train_bpe(unique_documents, args.vocab_size)  # trained once, not timed
        tokenizers = {"byte": byte_tokenizer(), f"BPE {bpe.vocab_size}": bpe}
        print(f"\nmachine: {machine_description()} at start\n")
        print(markdown_table(HEADER, []))
        for corpus, (inputs, options, documents) in corpora.items():
            mb = sum(len(d.encode()) for d in documents) / 1e6
            for name, tokenizer in tokenizers.items():
                tokenizer_path = str(work / f"{name.split()[0]}.json")
                tokenizer.save(tokenizer_path)
                wall, cpu, tokens = measure(loop, tokenizer, documents)
                loop_rate = mb / cpu
                print(markdown_row(row(corpus, name, "loop (1 process)", mb, wall, cpu, tokens, loop_rate)), flush=True)
                for workers in args.workers:
                    wall, cpu, tokens = measure(prepare_quietly, inputs, options, tokenizer_path, workers, work / "out")
                    how = f"prepare, {workers} worker(s)"
                    print(markdown_row(row(corpus, name, how, mb, wall, cpu, tokens, loop_rate)), flush=True)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other jobs share this machine)")


if __name__ == "__main__":
    main()
