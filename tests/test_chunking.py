"""Content-defined chunks of the synthesis flow: every item once, in order, and one added
or removed item changes only its own chunk; a wait that fails starts no queued chunk; a
rerun skips only the chunks the last run did on a folder it left unchanged."""
import logging
import os
import time
from types import SimpleNamespace

import pytest

from flows.chunking import MAX_FACTOR, chunk_key, content_chunks, run_chunks, unchanged_chunks
from pipeline.formats.item_folder import read_run_record, scan_item_folder, write_run_record


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


def test_a_folder_scan_sees_every_write_deletion_and_restored_time(tmp_path):
    for folder, name in (("items", "a-1.json"), ("items", "b-2.json"), ("labels", "a-1.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"x" * 10)
    first = scan_item_folder(tmp_path)
    assert first.items == {"a-1", "b-2"} and scan_item_folder(tmp_path).state == first.state
    label = tmp_path / "labels" / "a-1.png"
    before = label.stat().st_mtime_ns
    label.write_bytes(b"y" * 11)
    os.utime(label, ns=(before, before))                   # other content, the old time restored: its size tells
    assert scan_item_folder(tmp_path).state != first.state
    label.write_bytes(b"x" * 10)
    os.utime(label, ns=(before - 10**9, before - 10**9))   # the same bytes, an older time: seen
    assert scan_item_folder(tmp_path).state != first.state
    os.utime(label, ns=(before, before))
    assert scan_item_folder(tmp_path).state == first.state
    (tmp_path / "items" / "b-2.json").unlink()
    assert scan_item_folder(tmp_path).state != first.state


def test_only_chunks_the_last_run_did_on_an_unchanged_folder_are_skipped(tmp_path):
    (tmp_path / "items").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "items" / f"{name}.json").write_text("{}")
    write_run_record(tmp_path, {chunk_key("run", ["ka"]): ["images_done"],
                                chunk_key("run", ["kb", "kc"]): ["images_done", "images_failed"]})
    record, scan = read_run_record(tmp_path), scan_item_folder(tmp_path)
    keys = [chunk_key("run", ["ka"]), chunk_key("run", ["kb", "kc"]), chunk_key("run", ["kd"])]
    assert unchanged_chunks(record, scan, keys, [["a"], ["b", "c"], ["d"]]) == {
        0: ["images_done"], 1: ["images_done", "images_failed"]}          # the new chunk is not known
    assert unchanged_chunks(record, scan, [chunk_key("other settings", ["ka"])], [["a"]]) == {}
    assert unchanged_chunks(record, scan, keys[:1], [["z"]]) == {}         # its item has no record
    (tmp_path / "items" / "c.json").write_text('{"changed": 1}')
    assert unchanged_chunks(record, scan_item_folder(tmp_path), keys, [["a"], ["b", "c"], ["d"]]) == {}
    (tmp_path / "run.json").write_text("{cut")
    assert read_run_record(tmp_path) == {}
