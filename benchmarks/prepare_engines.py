"""`lit-llm prepare` against datatrove's DocumentTokenizer and LitData's `optimize` on one 100+ MB corpus, and
the dedup of a corpus with planted duplicates (recall of the planted copies, false-positive rate).

Throughput: the same BPE tokenizer (trained once beforehand, not timed) and the same JSON Lines shards for all
three engines, each given one worker process: "per CPU-second" rates (user + system time of the benchmark and
all its child processes) are tokens per core, comparable on a shared machine where wall time is not.

- ``lit-llm prepare``: scan, split, tokenize (batched encode), write LitData shards, checksum, publish;
- ``datatrove DocumentTokenizer``: JsonlReader -> DocumentTokenizer (batches of 10,000 documents), its own
  token file format;
- ``litdata optimize``: one `fn` per shard file encoding each document and yielding its ids (the litgpt
  recipe), TokensLoader chunks.

Dedup: disjoint passages of the Gutenberg novels and TinyStories stories (the originals, first in input
order), then planted copies: exact ones, and near ones with 2, 5, 10 and 20% of their words replaced.
`prepare --curation exact_dedup,minhash` (datatrove's) runs over them; a removed planted copy is a hit, a
removed original a false positive.

    python -m benchmarks.prepare_engines [--data ../shared/data] [--mb 110] [--skip throughput|dedup]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process, so "per core" means what it says

from benchmarks.harness import cpu_seconds_with_children, machine_description, markdown_row, markdown_table
from lit_llm.data.curate import curate
from lit_llm.data.prepare import prepare
from lit_llm.data.readers import ReadOptions, scan_file
from lit_llm.model.tokenizer import EOT, Tokenizer, train_bpe

SHARD_BYTES = 16_000_000


def corpus_documents(data: Path) -> list[str]:
    """Python's standard library sources (a file each), the Gutenberg novels (a chapter-sized piece each) and
    TinyStories (a story each): code, prose and short simple text."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = [p.read_text(errors="replace") for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    prose = []
    for book in sorted((data / "gutenberg").glob("*.txt")):
        text = book.read_text()
        prose += [text[i : i + 20_000] for i in range(0, len(text), 20_000)]
    stories = [s for s in (data / "tinystories" / "tinystories_train_head.txt").read_text().split(f"{EOT}\n")]
    return [d for d in code + prose + stories if d.strip()]


def write_shards(documents: list[str], folder: Path, target_mb: float) -> float:
    """The documents as JSON Lines shards of about 16 MB, repeated until ``target_mb``; returns the text MB."""
    folder.mkdir(parents=True)
    written, shard, out = 0, 0, None
    while written < target_mb * 1e6:
        for doc in documents:
            if out is None or out.tell() >= SHARD_BYTES:
                out = open(folder / f"shard-{shard:03d}.jsonl", "w")  # noqa: SIM115 (closed when the next opens)
                shard += 1
            out.write(json.dumps({"text": doc}) + "\n")
            written += len(doc.encode())
    out.close()
    return written / 1e6


def measure(run, *args) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), cpu_seconds_with_children()
    tokens = run(*args)
    return time.perf_counter() - wall, cpu_seconds_with_children() - cpu, tokens


def run_prepare(shards: Path, tokenizer: Path, out: Path) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        meta = prepare([str(shards)], str(out), tokenizer=str(tokenizer), num_workers=1, overwrite=True)
    return meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"]


def run_datatrove(shards: Path, tokenizer: Path, out: Path) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    with open(out.parent / "datatrove.log", "w") as quiet, contextlib.redirect_stderr(quiet):
        stats = LocalPipelineExecutor(
            [
                JsonlReader(str(shards), compression=None),
                DocumentTokenizer(str(out), tokenizer_name_or_path=str(tokenizer), eos_token=EOT),
            ],
            tasks=1,
            workers=1,
            logging_dir=str(out.parent / "datatrove-logs"),
            start_method="fork",
        ).run()
    counts = [step.to_dict()["stats"].get("tokens") for step in stats.stats]
    return sum(c["total"] if isinstance(c, dict) else c for c in counts if c)


def encode_shard(path: str):
    """LitData's `fn`: every document's ids and end-of-text, one tensor per document (litgpt's recipe)."""
    import torch

    tokenizer = encode_shard.tokenizer
    with open(path) as f:
        for line in f:
            ids = tokenizer.backend.encode(json.loads(line)["text"], add_special_tokens=False).ids
            yield torch.tensor([*ids, tokenizer.eot_id], dtype=torch.int32)


def run_litdata(shards: Path, tokenizer: Path, out: Path) -> int:
    from litdata import TokensLoader, optimize

    encode_shard.tokenizer = Tokenizer.from_file(tokenizer)  # inherited by the forked worker
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        optimize(
            fn=encode_shard,
            inputs=sorted(str(p) for p in shards.glob("*.jsonl")),
            output_dir=str(out),
            chunk_bytes="64MB",
            item_loader=TokensLoader(),
            num_workers=1,
            start_method="fork",
            verbose=False,
        )
    index = json.loads((out / "index.json").read_text())
    return sum(chunk["dim"] for chunk in index["chunks"])


def throughput(data: Path, work: Path, target_mb: float, vocab_size: int, sample_mb: float) -> None:
    documents = corpus_documents(data)
    mb = write_shards(documents, work / "shards", target_mb)
    sample = random.Random(0).sample(documents, len(documents))
    budget, picked = 0, []
    for doc in sample:  # the tokenizer trains on a sample of the corpus, not timed
        picked.append(doc)
        budget += len(doc)
        if budget > sample_mb * 1e6:
            break
    train_bpe(picked, vocab_size).save(str(work / "tokenizer.json"))
    print(f"\ncorpus: {mb:.1f} MB of text in {len(list((work / 'shards').glob('*.jsonl')))} JSON Lines shards")
    print(f"machine: {machine_description()} at start\n")
    header = ["engine (1 worker)", "tokens", "wall s", "CPU s", "Mtok/s wall", "Mtok per CPU-s", "MB per CPU-s"]
    print(markdown_table(header, []))
    engines = {
        "lit-llm prepare": run_prepare,
        "datatrove DocumentTokenizer": run_datatrove,
        "litdata optimize": run_litdata,
    }
    for name, run in engines.items():
        wall, cpu, tokens = measure(run, work / "shards", work / "tokenizer.json", work / name.split()[0])
        cells = [
            name,
            f"{tokens:,}",
            f"{wall:.1f}",
            f"{cpu:.1f}",
            f"{tokens / wall / 1e6:.2f}",
            f"{tokens / cpu / 1e6:.2f}",
            f"{mb / cpu:.2f}",
        ]
        print(markdown_row(cells), flush=True)


def planted_corpus(data: Path, rng: random.Random) -> tuple[list[str], dict[str, list[str]]]:
    """(originals, planted copies by kind): disjoint 150-word passages and stories, then the copies."""
    words = [w for book in sorted((data / "gutenberg").glob("*.txt")) for w in book.read_text().split()]
    passages = [" ".join(words[i : i + 150]) for i in range(0, len(words) - 150, 150)]
    stories = [s.strip() for s in (data / "tinystories" / "tinystories_train_head.txt").read_text().split(EOT)]
    originals = list(dict.fromkeys(t for t in passages + stories if len(t.split()) >= 50))
    planted: dict[str, list[str]] = {"exact copy": [rng.choice(originals) for _ in range(200)]}
    for rate in (0.02, 0.05, 0.10, 0.20):
        copies = []
        for text in rng.sample(originals, 200):
            w = text.split()
            for position in rng.sample(range(len(w)), max(1, round(rate * len(w)))):
                w[position] = rng.choice(words)
            copies.append(" ".join(w))
        planted[f"{rate:.0%} of words replaced"] = copies
    return originals, planted


def dedup(data: Path, work: Path) -> None:
    originals, planted = planted_corpus(data, random.Random(0))
    documents = originals + [copy for copies in planted.values() for copy in copies]
    source = work / "planted.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    parts = scan_file(str(source), ReadOptions(), 2_000_000).parts
    start = time.perf_counter()
    files, record = curate(parts, ReadOptions(), ["exact_dedup", "minhash"], work / "curation", workers=2)
    elapsed = time.perf_counter() - start
    kept: dict[str, int] = {}
    for f in files:
        with gzip.open(f, "rt") as lines:
            for line in lines:
                text = json.loads(line)["text"]
                kept[text] = kept.get(text, 0) + 1
    removed_originals = sum(1 for t in originals if t not in kept)
    print(
        f"\n{len(originals):,} originals + {sum(map(len, planted.values())):,} planted copies; curation {elapsed:.0f}s"
    )
    print(f"removed by step: {record['removed']}\n")
    rows = []
    for kind, copies in planted.items():
        # a copy is caught when it is not kept as a separate document (its text kept fewer times than planted)
        if kind == "exact copy":  # its text is kept once, as the original
            caught = len(copies) - sum(max(0, kept.get(t, 0) - 1) for t in set(copies))
        else:
            caught = sum(1 for t in copies if kept.get(t, 0) == 0)
        rows.append([kind, str(len(copies)), str(caught), f"{caught / len(copies):.0%}"])
    print(markdown_table(["planted", "copies", "removed", "recall"], rows))
    share = removed_originals / len(originals)
    print(f"\nfalse positives: {removed_originals} of {len(originals):,} originals removed ({share:.2%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--mb", type=float, default=110, help="corpus size in MB of text")
    parser.add_argument("--vocab_size", type=int, default=16384)
    parser.add_argument("--tokenizer_sample_mb", type=float, default=3, help="BPE training text (not timed)")
    parser.add_argument("--skip", choices=["throughput", "dedup"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip != "throughput":
            throughput(Path(args.data), Path(tmp) / "throughput", args.mb, args.vocab_size, args.tokenizer_sample_mb)
        if args.skip != "dedup":
            (Path(tmp) / "dedup").mkdir()
            dedup(Path(args.data), Path(tmp) / "dedup")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other jobs share this machine)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
