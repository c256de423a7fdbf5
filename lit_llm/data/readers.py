"""Input formats for `lit-llm prepare`: what a document is in each kind of file, and how to read it back.

A document is a whole file for text (or the text between ``separator`` lines), one record for JSON Lines
and Parquet. Files ending in ``.gz`` or ``.zst``/``.zstd`` are decompressed first and read by their inner
extension (``books.jsonl.zst`` is JSON Lines). Scanning a file counts its documents and cuts it into
`Part`s, the units the tokenizer workers take; reading a part later yields exactly the non-empty
documents the scan counted, in the same order, so the train/val split can be chosen between the two.

This module is imported by the tokenizer worker processes: keep it free of torch.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lit_llm.data.storage import is_remote  # a URL: read through fsspec (hf://, s3://, file://, ...)

TEXT, JSONL, PARQUET = "text", "jsonl", "parquet"
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
BINARY_SNIFF_BYTES = 8192
# An uncompressed line-format file is cut into parts of this size range, so the workers share its work.
MIN_PART_BYTES, MAX_PART_BYTES = 256 << 10, 32 << 20


@dataclass(frozen=True)
class ReadOptions:
    """How to find documents in the inputs (the same for every file of one `prepare`)."""

    text_field: str = "text"  # JSON Lines field / Parquet column holding the text
    separator: str | None = None  # a line holding only this ends a document in a text file (e.g. <|endoftext|>)


@dataclass(frozen=True)
class Part:
    """Documents of one file that a worker reads together: a byte range, a Parquet row group, or the whole file."""

    path: str
    format: str
    compression: str | None
    n_docs: int
    start: int = 0  # byte offset into the file, or the row group of a Parquet file
    end: int | None = None  # byte offset where the part ends (None: end of file)


@dataclass
class FileScan:
    """What scanning one file found."""

    path: str
    binary: bool = False
    parts: list[Part] = field(default_factory=list)
    empty_documents: int = 0
    replaced_bytes: int = 0


def file_kind(path: str | Path) -> tuple[str, str | None]:
    """(format, compression) from the file name: ``a.jsonl.gz`` -> ("jsonl", "gzip"); anything unknown is text."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    inner = (
        suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes and not compression else "")
    )
    if inner in JSONL_SUFFIXES:
        return JSONL, compression
    if inner == ".parquet" and not compression:
        return PARQUET, None
    return TEXT, compression


def decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 text, with invalid bytes replaced by U+FFFD, and how many were replaced."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def is_empty(text: str) -> bool:
    return not text.strip()


def optional_module(name: str, path: str):
    """A package that only some formats need (pyarrow, zstandard), or a one-line error saying how to get it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ValueError(
            f"{path}: reading this format needs the {name.split('.')[0]} package; pip install 'lit-llm[data]'"
        ) from None


def url_filesystem(url: str):
    """(fsspec filesystem, path within it) of a URL; a missing client package or an unknown protocol is one line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as err:
        raise ValueError(f"input {url}: {err}".rstrip(".") + "; install that package to read such URLs") from None
    except ValueError as err:
        raise ValueError(f"input {url}: {err}; use a local path or an fsspec URL (hf://, s3://, file://)") from None


def file_size(path: str) -> int:
    if is_remote(path):
        fs, inner = url_filesystem(path)
        return fs.size(inner)
    return os.path.getsize(path)


def open_raw(path: str):
    """The file's bytes: a local file, or a stream read by ranges through fsspec (never a full local copy)."""
    if is_remote(path):
        fs, inner = url_filesystem(path)
        return fs.open(inner, "rb")
    return open(path, "rb")


@contextmanager
def open_binary(path: str, compression: str | None) -> Iterator[io.BufferedIOBase]:
    with open_raw(path) as raw:
        if compression == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                yield f
        elif compression == "zstd":
            zstandard = optional_module("zstandard", path)
            with io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)) as f:
                yield f
        else:
            yield raw


def splittable(path: str | Path, options: ReadOptions) -> bool:
    """Whether a file can be cut into several parts (a Parquet file is cut at its row groups)."""
    fmt, compression = file_kind(path)
    return fmt == PARQUET or (compression is None and (fmt == JSONL or options.separator is not None))


def looks_binary(path: str, compression: str | None) -> bool:
    with open_binary(path, compression) as f:
        return b"\x00" in f.read(BINARY_SNIFF_BYTES)


# ---- documents of a file, with the byte offset where each ends (the scan cuts parts there) -------------


def text_documents(
    f: io.BufferedIOBase, separator: str | None, start: int, end: int | None
) -> Iterator[tuple[bytes, int]]:
    """Raw documents of a text file: the whole file, or the lines between ``separator`` lines."""
    if separator is None:
        yield f.read(), -1
        return
    if start:
        f.seek(start)
    marker, lines, offset = separator.encode(), [], start
    for line in f:
        offset += len(line)
        if line.rstrip(b"\r\n") == marker:
            yield b"".join(lines), offset
            lines = []
            if end is not None and offset >= end:
                return
        else:
            lines.append(line)
    if lines:
        yield b"".join(lines), offset


def jsonl_documents(
    f: io.BufferedIOBase, path: str, text_field: str, start: int, end: int | None
) -> Iterator[tuple[str, int, int]]:
    """(text, replaced bytes, end offset) of each record of a JSON Lines file between ``start`` and ``end``."""
    if start:
        f.seek(start)
    offset = start
    for line_number, line in enumerate(f, 1):  # numbered from the part's start; errors surface in the scan, from 0
        offset += len(line)
        if line.strip():
            text, replaced = decode(line)
            yield record_text(text, path, line_number, text_field), replaced, offset
        if end is not None and offset >= end:
            return


def record_text(line: str, path: str, line_number: int, text_field: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} line {line_number} is not valid JSON ({err}); fix or remove the line") from None
    if not isinstance(record, dict) or text_field not in record:
        keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(
            f"{path} line {line_number} has no field {text_field!r} (found: {keys}); pass --text_field NAME"
        )
    value = record[text_field]
    if value is not None and not isinstance(value, str):
        raise ValueError(
            f"{path} line {line_number}: field {text_field!r} holds {type(value).__name__}, not text; pass "
            "--text_field naming a text field"
        )
    return value or ""


def parquet_column(path: str, text_field: str, row_group: int) -> list[str | bytes | None]:
    pa = optional_module("pyarrow", path)
    parquet = parquet_file(path)
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise ValueError(
            f"{path} has no column {text_field!r} (columns: {', '.join(schema.names)}); pass --text_field NAME"
        )
    kind = schema.field(text_field).type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        raise ValueError(
            f"{path}: column {text_field!r} holds {kind}, not text; pass --text_field naming a text column"
        )
    return parquet.read_row_group(row_group, columns=[text_field]).column(0).to_pylist()


def parquet_file(path: str):
    """A Parquet file's reader; a URL's is read through fsspec, footer and asked-for row groups only."""
    pa, pq = optional_module("pyarrow", path), optional_module("pyarrow.parquet", path)
    fs, inner = url_filesystem(path) if is_remote(path) else (None, path)
    try:
        return pq.ParquetFile(inner, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path} is not a readable Parquet file ({err}); fix or remove it") from None


def parquet_text(value: str | bytes | None) -> tuple[str, int]:
    if isinstance(value, bytes):
        return decode(value)
    return value or "", 0


# ---- scanning -----------------------------------------------------------------------------------------


def scan_file(path: str, options: ReadOptions, part_bytes: int = MAX_PART_BYTES) -> FileScan:
    """Count a file's non-empty documents, cut it into parts of about ``part_bytes``, and note what was dropped or
    repaired."""
    fmt, compression = file_kind(path)
    scan = FileScan(path)
    if fmt == PARQUET:
        return scan_parquet(path, options, scan)
    if looks_binary(path, compression):
        scan.binary = True
        return scan
    cut = splittable(path, options)
    part_start, part_docs = 0, 0
    with open_binary(path, compression) as f:
        for text, replaced, offset in documents_with_offsets(f, path, fmt, options, 0, None):
            scan.replaced_bytes += replaced
            if is_empty(text):
                scan.empty_documents += 1
                continue
            part_docs += 1
            if cut and offset - part_start >= part_bytes:
                scan.parts.append(Part(path, fmt, compression, part_docs, part_start, offset))
                part_start, part_docs = offset, 0
    if part_docs:
        scan.parts.append(Part(path, fmt, compression, part_docs, part_start, None))
    return scan


def scan_parquet(path: str, options: ReadOptions, scan: FileScan) -> FileScan:
    for row_group in range(parquet_file(path).num_row_groups):
        n_docs = 0
        for value in parquet_column(path, options.text_field, row_group):
            text, replaced = parquet_text(value)
            scan.replaced_bytes += replaced
            if is_empty(text):
                scan.empty_documents += 1
            else:
                n_docs += 1
        if n_docs:
            scan.parts.append(Part(path, PARQUET, None, n_docs, row_group, None))
    return scan


def documents_with_offsets(
    f, path: str, fmt: str, options: ReadOptions, start: int, end: int | None
) -> Iterator[tuple[str, int, int]]:
    """(text, replaced bytes, end offset) of every document, empty ones included, of a text or JSON Lines file."""
    if fmt == JSONL:
        yield from jsonl_documents(f, path, options.text_field, start, end)
        return
    for raw, offset in text_documents(f, options.separator, start, end):
        text, replaced = decode(raw)
        yield text, replaced, offset


def read_part(part: Part, options: ReadOptions) -> Iterator[str]:
    """The part's non-empty documents, in the order and number its scan counted."""
    if part.format == PARQUET:
        texts = (parquet_text(value)[0] for value in parquet_column(part.path, options.text_field, part.start))
        yield from (text for text in texts if not is_empty(text))
        return
    with open_binary(part.path, part.compression) as f:
        for text, _, _ in documents_with_offsets(f, part.path, part.format, options, part.start, part.end):
            if not is_empty(text):
                yield text


# ---- long documents -----------------------------------------------------------------------------------

# Longer documents are encoded in pieces: memory stays bounded (~100 bytes per token while encoding), and
# a tokenizer without a pre-tokenizer (the byte tokenizer) is several times faster on short inputs.
SEGMENT_CHARS = 1 << 16
# After a lone newline between non-space characters, or between the \r and \n of such a CRLF.
_SAFE_CUT = re.compile(r"(?<=\S)\n(?=\S)|(?<=\S)\r(?=\n\S)")


def segments(text: str, limit: int = SEGMENT_CHARS) -> Iterator[str]:
    """Cut a long text into pieces of at most ``limit`` characters at line breaks.

    A byte-level BPE pre-tokenizer (GPT-2's regex) never joins text across those cut points, so the
    pieces encode to the same tokens as the whole; a text without one is cut at ``limit``.
    """
    while len(text) > limit:
        cut = None
        for match in _SAFE_CUT.finditer(text, limit // 2, limit):
            cut = match.end()
        cut = cut or limit
        yield text[:cut]
        text = text[cut:]
    yield text
