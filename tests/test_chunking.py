"""Content-defined chunks of the synthesis flow: every item once, in order, and one added
or removed item changes only its own chunk; a wait that fails starts no queued chunk."""
import logging
import time
from types import SimpleNamespace

import pytest

from flows.chunking import MAX_FACTOR, content_chunks, run_chunks


def keys(n, prefix="images/im"):
    return [f"{prefix}{i:05d}.jpg" for i in range(n)]


def as_keys(names, chunks):
    return [tuple(names[i] for i in c) for c in chunks]


def test_chunks_cover_every_item_in_order_with_the_requested_average():
    names = keys(5000)
    chunks = content_chunks(names, 64)
    assert [i for c in chunks for i in c] == list(range(5000))
    assert max(len(c) for c in chunks) <= MAX_FACTOR * 64
    assert 40 <= 5000 / len(chunks) <= 100          # average near 64 (hash-defined, not exact)
    assert content_chunks(names, 1) == [[i] for i in range(5000)]
    assert content_chunks([], 8) == []


@pytest.mark.parametrize("where", [0, 1234, 4999])
def test_an_added_or_removed_item_changes_only_its_own_chunk(where):
    names = keys(5000)
    before = set(as_keys(names, content_chunks(names, 32)))
    added = names[:where] + ["images/new.jpg"] + names[where:]
    after = set(as_keys(added, content_chunks(added, 32)))
    assert len(after - before) <= 2 and len(before - after) <= 1        # the new item's chunk (split at most once)
    removed = names[:where] + names[where + 1:]
    after = set(as_keys(removed, content_chunks(removed, 32)))
    assert len(before - after) <= 2 and len(after - before) <= 1


def test_bad_chunk_size_is_refused():
    with pytest.raises(ValueError, match="chunk size"):
        content_chunks(keys(3), 0)


class PoolTask:
    """The part of a Prefect task that run_chunks uses, on one worker thread: ``submit``
    returns a future wrapping a ``concurrent.futures.Future`` as Prefect's do."""

    def __init__(self, pool, fn):
        self.pool, self.fn = pool, fn

    def with_options(self, **_):
        return self

    def submit(self, *args):
        wrapped = self.pool.submit(self.fn, *args)
        return SimpleNamespace(wrapped_future=wrapped, result=wrapped.result,
                               state=SimpleNamespace(name="Completed"))


def test_a_failed_wait_starts_no_queued_chunk():
    from concurrent.futures import ThreadPoolExecutor

    started = []

    def work(chunk):
        started.append(chunk[0])
        time.sleep(0.05)
        if chunk[0] == 1:
            raise KeyboardInterrupt      # what Ctrl-C raises in the waiting thread
        return ["images_done"] * len(chunk)

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(KeyboardInterrupt):
            run_chunks(PoolTask(pool, work), [[i] for i in range(40)], lambda c: True, lambda c: (c,),
                       logging.getLogger("test"))
    assert started[:2] == [0, 1] and len(started) <= 3     # chunk 2 may have started before the cancel


def test_a_cached_chunk_keeps_its_failed_items_failed():
    from concurrent.futures import ThreadPoolExecutor

    class CachedTask(PoolTask):
        def submit(self, *args):
            future = super().submit(*args)
            future.state.name = "Cached"
            return future

    with ThreadPoolExecutor(max_workers=1) as pool:
        statuses = run_chunks(CachedTask(pool, lambda chunk: ["images_done", "images_failed", "images_reused"]),
                              [[0, 1, 2]], lambda c: True, lambda c: (c,), logging.getLogger("test"))
    assert statuses == ["images_reused", "images_failed", "images_reused"]
