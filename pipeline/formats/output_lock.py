"""One run per output folder: an advisory lock (filelock, ``flock`` on POSIX) held while a
run writes, so that a second run into the same folder stops at once instead of deleting the
first one's work.

The kernel drops the lock of a process that dies, however it dies (SIGKILL, a crash, a
reboot), so the lock of a killed run is taken over by the next run without any staleness
guess; the holder's description beside it (``.partsynth.lock.json``: pid, host, command,
start time) is then simply overwritten.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import ConfigError

LOCK_FILE = ".partsynth.lock"
HOLDER_FILE = ".partsynth.lock.json"
#: the names this module may leave in an output folder (folder claims ignore them)
LOCK_ENTRIES = frozenset({LOCK_FILE, HOLDER_FILE})


def holder(out: str | Path) -> str:
    """A one-line description of the run holding ``out``'s lock ("pid 123 on host, since
    2026-12-03 16:40:02: partsynth synthesize ..."), or "another process" when it wrote none."""
    try:
        h = json.loads((Path(out) / HOLDER_FILE).read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']}, since {h['started']}: {h['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def check_unlocked(out: str | Path) -> None:
    """Raise ConfigError (as :func:`output_lock` would) when another run holds ``out``'s
    lock; creates nothing.  For the checks a run makes before it takes the lock, so that a
    folder half-written by a live run is reported as that, not as foreign content."""
    path = Path(out) / LOCK_FILE
    mine = _locks.get(str(Path(out).resolve()))
    if not path.is_file() or (mine is not None and mine.is_locked):
        return
    probe = FileLock(path)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        raise _held(out) from None
    probe.release()


@contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of output folder ``out`` (created if missing) for the ``with`` block.

    Yields the folder.  Re-entrant within one process and thread (a flow that calls
    another flow on the same folder keeps the lock).
    Raises: ConfigError in one line naming the folder and the holder when another run
    holds it; OSError when the folder cannot be created (read-only parent)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _locks.setdefault(str(out.resolve()), FileLock(out / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise _held(out) from None
    outermost = lock.lock_counter == 1
    try:
        if outermost:
            (out / HOLDER_FILE).write_text(json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}), encoding="utf-8")
        yield out
    finally:
        if outermost:
            (out / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def _held(out: Path) -> ConfigError:
    return ConfigError(f"{out}: another partsynth run is writing into this folder ({holder(out)}); "
                       "wait for it to end or choose another folder")


_locks: dict[str, FileLock] = {}
