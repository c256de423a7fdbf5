"""Datasets in object storage (``s3://``, ``gs://``, ``r2://``), through LitData's own storage clients.

LitData streams the shards and caches them locally; this module moves the small files around them
(metadata.json, tokenizer.json, the splits' index.json) and uploads what `lit-llm prepare` wrote.
Credentials and endpoints come from the usual environment (``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for
S3-compatible servers) or from ``storage_options``, which go to the client as keyword arguments
(for S3: boto3's, e.g. ``{"endpoint_url": "http://localhost:9000"}``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from lit_llm.data.format import DESCRIPTION, INDEX, METADATA, TOKENIZER, read_metadata


def is_remote(path: str | Path) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", str(path)) is not None


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def provider(url: str, storage_options: dict | None):
    from litdata.streaming.fs_provider import _get_fs_provider

    try:
        return _get_fs_provider(url, storage_options or {})
    except ValueError:
        raise ValueError(
            f"{url}: LitData cannot write or list this kind of storage; use s3://, gs:// or r2:// (or a local folder)"
        ) from None


def download(url: str, names: tuple[str, ...], local_dir: Path, storage_options: dict | None) -> None:
    """Copy the named files of a remote dataset into ``local_dir``; a missing metadata.json means no dataset."""
    store = provider(url, storage_options)
    if not store.exists(join(url, METADATA)):
        raise FileNotFoundError(
            f"{join(url, METADATA)} not found: {url} is not a prepared dataset; run `lit-llm prepare --output_dir "
            f"{url}` first"
        )
    for name in names:
        target = local_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        store.download_file(join(url, name), str(target))


def upload(local_dir: Path, url: str, storage_options: dict | None) -> None:
    """Upload a prepared dataset: chunks first, then the indexes and tokenizer, metadata.json last, so a
    reader never finds metadata that points at shards still missing."""
    store = provider(url, storage_options)
    files = [p for p in local_dir.rglob("*") if p.is_file()]
    order = {TOKENIZER: 2, METADATA: 3, INDEX: 1}
    for path in sorted(files, key=lambda p: (order.get(p.name, 0), str(p))):
        store.upload_file(str(path), join(url, path.relative_to(local_dir).as_posix()))


def top_level_names(url: str, storage_options: dict | None) -> set[str]:
    """The names directly under the prefix ``url/`` (objects and "subfolders"; none: an empty prefix).
    LitData's providers cannot list (``list_directory`` is not implemented), so this asks their clients."""
    from litdata.streaming.fs_provider import get_bucket_and_path

    store = provider(url, storage_options)
    scheme = url.split("://")[0]
    bucket, prefix = get_bucket_and_path(join(url, ""), scheme)
    if scheme == "gs":  # google.cloud.storage fills in the "subfolders" once the pages are read
        listing = store.client.list_blobs(bucket, prefix=prefix, delimiter="/")
        keys = [blob.name for blob in listing] + list(listing.prefixes)
    else:  # s3 and r2: boto3
        keys = []
        paginator = store.client.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            keys += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return {key[len(prefix) :].rstrip("/") for key in keys} - {""}  # "": a folder marker for the prefix itself


def delete(url: str, storage_options: dict | None) -> None:
    """Delete everything under the prefix ``url/`` (the slash keeps ``url-other/`` out of it)."""
    store = provider(url, storage_options)
    # a call deletes one listing page (1,000 objects on S3); LitData's is_empty misses a bucket root's objects
    while top_level_names(url, storage_options):
        store.delete_file_or_directory(join(url, ""))


def stream_plain_http_with_boto3(storage_options: dict | None) -> None:
    """LitData (0.2.76) fetches S3 chunks with obstore but does not let it speak plain HTTP, so an
    ``http://`` endpoint (MinIO, moto, a local gateway) fails there with "BadScheme". For such endpoints,
    take LitData's own fallback to its boto3 client: it avoids obstore in a process that looks forked
    after obstore started, which this marks for this process and its DataLoader workers (forked)."""
    endpoint = (
        (storage_options or {}).get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL", "")
    )
    if endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_INIT_PID = -1


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get("LIT_LLM_CACHE", "~/.cache/lit-llm")).expanduser()


def local_view(data_dir: str, storage_options: dict | None = None, cache_dir: str | None = None) -> Path:
    """A local folder holding the dataset's description: the folder itself, or a cached copy of a remote one.

    The copy's folder name carries a hash of metadata.json, so an append to the remote dataset gets a fresh
    cache instead of LitData reusing a stale index; the same folder also caches the streamed chunks.
    """
    if not is_remote(data_dir):
        return Path(data_dir).expanduser()
    root = cache_root(cache_dir)
    staging = root / f".download-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    download(data_dir, DESCRIPTION, staging, storage_options)
    version = hashlib.sha1((staging / METADATA).read_bytes()).hexdigest()[:12]
    view = root / f"{hashlib.sha1(data_dir.encode()).hexdigest()[:12]}-{version}"
    try:
        staging.rename(view)
    except OSError:  # cached already, perhaps by another rank a moment ago
        shutil.rmtree(staging)
    return view


def load_metadata(data_dir: str | Path, storage_options: dict | None = None) -> dict:
    """metadata.json of a prepared dataset, local or remote."""
    return read_metadata(local_view(str(data_dir), storage_options))
