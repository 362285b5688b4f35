"""Content-defined chunks: batches of work items for Prefect tasks whose boundaries depend on
the items themselves, not on their positions.

A flow with one task per image spends about half its time on task bookkeeping and fills
the Prefect database with thousands of task runs; a flow with fixed-size chunks (items
0-63, 64-127, ...) loses its cache whenever one image is added at the front, since every
later chunk shifts.  Here a chunk ends after an item whose key hashes to 0 modulo the
chunk size (the idea of content-defined chunking in rsync-like tools), so adding or
removing one item changes only the chunk that holds it and every other chunk keeps its
cache key.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

#: a chunk is cut at ``MAX_FACTOR * size`` items even without a natural boundary
MAX_FACTOR = 4


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def content_chunks(keys: Sequence[str], size: int) -> list[list[int]]:
    """Split the positions ``0 .. len(keys) - 1`` into consecutive chunks of ``size`` items
    on average.

    A chunk ends after an item whose key's BLAKE2b hash is 0 modulo ``size``, or when it
    reaches ``MAX_FACTOR * size`` items.  Keys are the items' stable names (image paths);
    inserting or removing one key changes only its own chunk (unless that chunk was cut at
    the cap, which moves the cuts up to the next natural boundary).

    Args:
        keys: one string per item, in the flow's order.
        size: average chunk length, >= 1 (1 gives one item per chunk).
    Returns: the chunks as lists of positions; every position exactly once, in order.
    Raises: ValueError when ``size`` < 1.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    chunks: list[list[int]] = []
    current: list[int] = []
    for i, key in enumerate(keys):
        current.append(i)
        if _key_hash(key) % size == 0 or len(current) >= MAX_FACTOR * size:
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


def prepare_output(out: Path, items: set[str], remove_stale: Callable[[Path, set[str]], list[str]], log,
                   what: str, source: str) -> list[str]:
    """Create the per-photo output folder ``out``, delete the partial files of an
    interrupted run and the outputs of photos no longer in ``items`` (``remove_stale``),
    logging how many (``what``: "labels", "predictions", "keypoints"; ``source``: the
    input).
    Returns the photos removed."""
    from pipeline.formats.item_folder import remove_partial_files

    out.mkdir(parents=True, exist_ok=True)
    partial = remove_partial_files(out)
    if partial:
        log.info("removed %d partial files of an interrupted run", len(partial))
    removed = remove_stale(out, items)
    if removed:
        log.warning("removed the %s of %d photos no longer in %s", what, len(removed), source)
    return removed


def chunk_key(run_key: str, item_keys: Sequence[str]) -> str:
    """32 hex digits naming a chunk's work: the run's settings (``run_key``) and its items'
    content keys, in order."""
    return hashlib.sha256("\0".join([run_key, *item_keys]).encode()).hexdigest()[:32]


def unchanged_chunks(record: dict, scan, keys: Sequence[str], names: Sequence[Sequence[str]]) -> dict[int, list[str]]:
    """{chunk index: its item statuses as the last run ended them} for each chunk whose key
    the last finished run of this folder recorded (``record``:
    :func:`pipeline.formats.item_folder.read_run_record`) and whose items (their item
    ``names``) all have records, provided the folder is as that run left it (``scan``:
    :func:`pipeline.formats.item_folder.scan_item_folder`); such a chunk needs neither its
    task nor a look at its files."""
    if not record or record.get("items_state") != scan.state:
        return {}
    known = record.get("chunks") or {}
    return {i: list(known[k]) for i, k in enumerate(keys)
            if isinstance(known.get(k), list) and len(known[k]) == len(names[i]) and all(n in scan.items for n in names[i])}


def cached_status(status: str) -> str:
    """An item's status when its chunk is served from Prefect's cache: a failed item stays
    ``images_failed`` (its input is still bad; it is not kept), any other is
    ``images_reused``."""
    return status if status == "images_failed" else "images_reused"


def run_chunks(task, chunks: list[list], intact: Callable[[list], bool], args: Callable[[list], tuple],
               log, unit: str = "images") -> list[str]:
    """Submit ``task(*args(chunk))`` for every chunk, bypassing Prefect's cache where
    ``intact(chunk)`` is False, wait for them in order logging "done/total", and return one
    status per item: the task's (a list, one per item of its chunk), or for a chunk served
    from the cache its own statuses as :func:`cached_status` reads them.

    When the wait ends in an exception (Ctrl-C, a chunk that raised), the chunks not yet
    started are cancelled before it propagates: the chunks running finish and write their
    files, nothing new starts.  ``task.submit`` must return futures that wrap a
    ``concurrent.futures`` or Dask future (Prefect's thread and Dask runners)."""
    redo = task.with_options(refresh_cache=True)
    futures = [(task if intact(chunk) else redo).submit(*args(chunk)) for chunk in chunks]
    total, done, statuses = sum(len(c) for c in chunks), 0, []
    try:
        for f, chunk in zip(futures, chunks):
            result = f.result()
            statuses += [cached_status(r) for r in result] if f.state.name == "Cached" else result
            done += len(chunk)
            log.info("%d/%d %s", done, total, unit)
    except BaseException:            # Ctrl-C or a failed chunk: no queued chunk starts after it
        for f in futures:
            f.wrapped_future.cancel()
        raise
    return statuses
