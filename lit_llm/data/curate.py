"""Curation before tokenization (`lit-llm prepare --curation ...`), on Hugging Face's datatrove.

Steps, applied in this order whatever order they are named in: the quality filters (``gopher_quality``,
``gopher_repetition``, ``c4``, ``fineweb``: datatrove's Gopher, C4 and FineWeb rules, English), then
``exact_dedup`` (identical texts, datatrove's three-stage exact dedup), then ``minhash`` (near duplicates,
datatrove's four-stage MinHash: 5-grams, 14 buckets of 8 hashes, which finds pairs of about 75% Jaccard
similarity or more). Of a set of duplicates the first in input order is kept.

lit-llm's own readers feed the pipeline (its separators, binary sniffing, UTF-8 repair and fsspec URLs),
through one datatrove step; the curated documents are written as JSON Lines, which `prepare` then
tokenizes as usual. Each step's count of removed documents goes to metadata.json (``curation``).
Dedup compares documents across the whole corpus, so it runs in one `prepare`, not in `--num_tasks` tasks.

Needs ``pip install 'lit-llm[curate]'`` (datatrove, spacy for the filters' English word splitting, xxhash);
nothing is downloaded at run time.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

from lit_llm.data.readers import Part, ReadOptions, read_part

log = logging.getLogger(__name__)
FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
DEDUPS = ("exact_dedup", "minhash")
STEPS = FILTERS + DEDUPS


def check_steps(steps: list[str]) -> list[str]:
    """The steps in the order they run; an unknown name is a one-line error naming the choices."""
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise ValueError(f"--curation {unknown[0]!r} is not a curation step; choose from {', '.join(STEPS)}")
    return [step for step in STEPS if step in steps]


def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"--curation needs the {err.name} package, which is not installed; pip install 'lit-llm[curate]'"
        ) from None


@contextmanager
def datatrove_logs_to(path: Path) -> Iterator[None]:
    """datatrove logs every step of every task to stderr (loguru): into a file in the work folder instead.
    The forked tasks log to the redirected sys.stderr; failures still raise in `curate`."""
    from datatrove.utils.logging import logger, setup_default_logger

    with open(path, "w") as quiet, redirect_stderr(quiet):
        logger.remove()
        logger.add(quiet)
        try:
            yield
        finally:
            setup_default_logger()  # loguru's handler on the real stderr again


def quality_filter(step: str):
    filters = _import("datatrove.pipeline.filters")
    _import("spacy")  # datatrove's English word splitter; without it the filters fail mid-run
    return {
        "gopher_quality": filters.GopherQualityFilter,
        "gopher_repetition": filters.GopherRepetitionFilter,
        "c4": filters.C4QualityFilter,
        "fineweb": filters.FineWebQualityFilter,
    }[step]()


class PartsReader:
    """A datatrove pipeline's first step: the documents of lit-llm's parts, task ``rank`` reading a contiguous
    range of them, so the tasks' outputs in rank order keep the input order."""

    def __init__(self, parts: list[Part], options: ReadOptions) -> None:
        self.parts = parts
        self.options = options

    def __call__(self, data, rank: int = 0, world_size: int = 1) -> Iterator:
        from datatrove.data import Document

        lo, hi = rank * len(self.parts) // world_size, (rank + 1) * len(self.parts) // world_size
        for number, part in enumerate(self.parts[lo:hi], lo):
            for index, text in enumerate(read_part(part, self.options)):
                yield Document(text=text, id=f"{number}/{index}")


def curate(
    parts: list[Part], options: ReadOptions, steps: list[str], work_dir: Path, workers: int
) -> tuple[list[str], dict]:
    """Run the steps over the parts' documents; returns the curated JSON Lines files (in order) and the record
    for metadata.json: documents in, removed by each step, documents out."""
    steps = check_steps(steps)
    executor = _import("datatrove.executor")
    tasks = max(1, min(workers, len(parts)))
    removed: dict[str, int] = {}

    def run(name: str, pipeline: list, labels: dict, n_tasks: int = tasks) -> None:
        log.info("curation: %s (%d tasks)", name, n_tasks)
        logs = work_dir / "logs" / name
        logs.mkdir(parents=True)
        with datatrove_logs_to(logs / "stderr.log"):
            stats = executor.LocalPipelineExecutor(
                pipeline,
                tasks=n_tasks,
                workers=min(workers, n_tasks),
                logging_dir=str(logs),
                start_method="fork" if sys.platform == "linux" else "spawn",
            ).run()
        by_name = {s.name: s.to_dict()["stats"] for s in stats.stats}
        for label, step in labels.items():
            removed[label] = removed.get(label, 0) + int(by_name.get(str(step), {}).get("dropped", 0))

    writers = _import("datatrove.pipeline.writers")
    filters = {step: quality_filter(step) for step in steps if step in FILTERS}
    current = work_dir / "filtered"
    run("filter", [PartsReader(parts, options), *filters.values(), writers.JsonlWriter(str(current))], filters)
    if "exact_dedup" in steps:
        current = exact_dedup(current, work_dir / "exact", run)
    if "minhash" in steps:
        current = minhash_dedup(current, work_dir / "minhash", run)
    files = sorted(str(p) for p in current.glob("*.jsonl.gz"))
    documents_in = sum(part.n_docs for part in parts)
    log.info(
        "curation: %d documents in; removed %s; %d kept",
        documents_in,
        ", ".join(f"{step} {count}" for step, count in removed.items()),
        documents_in - sum(removed.values()),
    )
    return files, {
        "steps": steps,
        "documents_in": documents_in,
        "removed": removed,
        "documents_out": documents_in - sum(removed.values()),
    }


def document_text(document) -> str:
    """What exact dedup compares: the whole text."""
    return document.text


def sha1_hashes():
    """datatrove 0.10.1 hashes str with xxhash, which xxhash 4 refuses ("Strings must be encoded"): use its sha1."""
    return _import("datatrove.utils.hashing").HashConfig(precision=64, hash_fc="sha1")


def exact_dedup(source: Path, work: Path, run) -> Path:
    dedup, readers, writers = (_import(f"datatrove.pipeline.{m}") for m in ("dedup.exact_dedup", "readers", "writers"))
    config = dedup.ExactDedupConfig(content_getter=document_text, hash_config=sha1_hashes())
    run(
        "exact-signatures",
        [
            readers.JsonlReader(str(source)),
            dedup.ExactDedupSignature(str(work / "sigs"), config=config, finder_workers=1),
        ],
        {},
    )
    run("exact-find", [dedup.ExactFindDedups(str(work / "sigs"), str(work / "dups"), config=config)], {}, n_tasks=1)
    remove = dedup.ExactDedupFilter(str(work / "dups"), config=config)
    out = work / "out"
    run(
        "exact-filter",
        [readers.JsonlReader(str(source)), remove, writers.JsonlWriter(str(out))],
        {"exact_dedup": remove},
    )
    return out


def minhash_dedup(source: Path, work: Path, run) -> Path:
    minhash, readers, writers = (_import(f"datatrove.pipeline.{m}") for m in ("dedup.minhash", "readers", "writers"))
    config = minhash.MinhashConfig(hash_config=sha1_hashes())
    run(
        "minhash-signatures",
        [readers.JsonlReader(str(source)), minhash.MinhashDedupSignature(str(work / "sigs"), config=config)],
        {},
    )
    run(
        "minhash-buckets",
        [minhash.MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
        {},
        n_tasks=config.num_buckets,
    )
    run(
        "minhash-cluster",
        [minhash.MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)],
        {},
        n_tasks=1,
    )
    remove = minhash.MinhashDedupFilter(str(work / "remove"))
    out = work / "out"
    run(
        "minhash-filter", [readers.JsonlReader(str(source)), remove, writers.JsonlWriter(str(out))], {"minhash": remove}
    )
    return out
