"""The per-image output folders partsynth writes (synthesized datasets, predictions,
keypoints folders): one item record per image in ``items/``, written atomically with its
own content hash; claiming a folder, removing an interrupted run's temporary files and the
records of images gone from the input, and checking that a record and its files are intact.
Each format passes its own record reader."""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.formats.output_lock import LOCK_ENTRIES, check_unlocked
from pipeline.formats.folder import DATASET_FILE, read_dataset_info

ITEMS_DIR = "items"
#: what the last finished run of a per-image folder found there (:func:`write_run_record`)
RUN_FILE = "run.json"
#: the key of an item record's own content hash (:func:`record_sha256`)
RECORD_HASH = "record_sha256"


def item_name(image_path: str | Path) -> str:
    """A file-system-safe, unique item name for an image path: its stem (60 characters at
    most, other characters than letters, digits, ``_.-`` replaced) and 8 hex digits of the
    path's SHA-1."""
    image_path = Path(image_path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", image_path.stem)[:60]
    return f"{stem}-{hashlib.sha1(str(image_path).encode()).hexdigest()[:8]}"


def item_path(root: str | Path, image_path: str | Path) -> Path:
    """``root/items/<item_name(image_path)>.json``."""
    return Path(root) / ITEMS_DIR / f"{item_name(image_path)}.json"


def write_item(root: str | Path, item) -> Path:
    """Write ``item`` (any record with ``image`` and ``to_json()``:
    :class:`pipeline.formats.synth_dataset.SynthItem`, :class:`pipeline.formats.predictions.PredictedItem`,
    :class:`pipeline.formats.estimated_poses.EstimatedItem`) atomically to its
    :func:`item_path`; returns the path."""
    path = item_path(root, item.image)
    record = item.to_json()
    files.write_json(path, dict(record, **{RECORD_HASH: record_sha256(record)}))
    return path


def record_sha256(record: dict) -> str:
    """SHA-256 of an item record's content (canonical JSON, without :data:`RECORD_HASH`):
    what :func:`write_item` stores in the record, so that a record edited by hand no longer
    matches it and its image is redone, as an edited label PNG is."""
    body = {k: v for k, v in record.items() if k != RECORD_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def item_files(root: str | Path) -> list[Path]:
    """The item record files of a per-image output folder, in name order; temporary files of an
    interrupted write (``.partsynth-tmp-*``) are not records and are left out."""
    items = Path(root) / ITEMS_DIR
    return sorted(p for p in items.glob("*.json") if not p.name.startswith(files.TEMP_PREFIX))


def read_record_or_none(root: str | Path, image_path: str | Path, read: Callable[[Path], object]):
    """The item record of ``image_path`` in ``root`` read with ``read(path, raw)`` (``raw``:
    the parsed JSON), or None when it
    is missing, unreadable, or its content no longer matches the hash :func:`write_item`
    stored in it (edited by hand, or written by an older partsynth): the image is then
    redone."""
    path = item_path(root, image_path)
    if not path.is_file():
        return None
    try:
        raw = files.read_json(path)
        if not isinstance(raw, dict) or raw.get(RECORD_HASH) != record_sha256(raw):
            return None
        return read(path, raw)                                   # the file parsed once
    except DataError:
        return None


def label_file_intact(root: Path, label: str | None, sha256: str | None) -> bool:
    """True when there is no label file, or it exists with the recorded hash."""
    return not label or ((root / label).is_file() and files.file_sha256(root / label) == sha256)


def remove_partial_files(out: Path) -> list[Path]:
    """Delete temporary files an interrupted run left in ``out``: only the
    ``.partsynth-tmp-*`` files of :func:`pipeline.formats.files.atomic_path`, so a user's own
    ``.draft.tmp`` survives.  Returns them."""
    stale = [p for p in out.rglob(f"{files.TEMP_PREFIX}*") if p.is_file()] if out.exists() else []
    for p in stale:
        p.unlink()
    return stale


def claim_item_folder(out: str | Path, data: str | Path, marker: str, own: frozenset[str],
                      read: Callable[[Path], object], what: str, bare: frozenset[str] | None = None,
                      keep_foreign: bool = False, records: bool = True) -> None:
    """Check that ``out`` may receive a per-image folder (a synthesized dataset,
    predictions, keypoints) for ``data``: new, empty, such a folder (``dataset.json`` with
    ``marker`` set; with ``keep_foreign`` other files of the user's in it are left alone,
    else refused), or, when
    ``dataset.json`` is missing (a run killed before its end, or deleted), holding only
    the entries ``own`` and either item records or nothing but the entries ``bare``
    (default ``own``) that such a run writes before its first record.  Every record must
    be one ``read`` accepts (not read with ``records`` off: a quick check before the run
    that reads them).  It may not be the input, be inside an input folder (its PNGs
    would be read as photos, and change the input's signature, next time) or contain the
    input.
    Raises ConfigError in one line naming the folder or the foreign entry, or ``data``
    when it does not exist."""
    out, data = Path(out).resolve(), Path(data).resolve()
    if not data.exists():
        raise ConfigError(f"{data}: no such file or folder")
    source = data if data.is_dir() else data.parent
    if out == source or out in source.parents or (data.is_dir() and source in out.parents):
        raise ConfigError(f"{out}: the output folder may not be the input folder, be inside it or contain it "
                          f"({data})")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    check_unlocked(out)
    entries = {p.name for p in out.iterdir() if not p.name.startswith(files.TEMP_PREFIX)} - LOCK_ENTRIES
    if (out / DATASET_FILE).is_file():
        try:
            ours = read_dataset_info(out).get(marker) is not None     # "" for the partition labeller
        except DataError as e:
            raise ConfigError(f"{out}: not empty and not a partsynth {what} ({e.problem}); "
                              "choose an empty or new folder") from None
        if not ours:
            raise ConfigError(f"{out}: not empty and not a partsynth {what} ({DATASET_FILE} is not one); "
                              "choose an empty or new folder")
        foreign = [] if keep_foreign else sorted(entries - own)
    else:
        foreign = sorted(entries - own) or (sorted(entries - (own if bare is None else bare))
                                            if not item_files(out) else [])
    if foreign:
        raise ConfigError(f"{out}: not empty and not a partsynth {what} (holds {', '.join(foreign[:3])}); "
                          "choose an empty or new folder")
    if records:
        check_records(out, read)


def check_records(out: Path, read: Callable[[Path], object]) -> None:
    """Read every item record of ``out`` with ``read``; raises ConfigError naming the first
    that is not ours (a user's file in ``items/``)."""
    for path in item_files(out):
        try:
            read(path)
        except DataError as e:
            raise ConfigError(f"{path}: {e.problem}; this file is not ours: move it out of {out}") from None


def remove_stale_items(root: str | Path, images: set[str], read: Callable[[Path], object],
                       fields: tuple[str, ...] = ("label", "probs")) -> list[str]:
    """Delete the records and the files they name (their ``fields``: label PNGs and
    probabilities here; overlays too for predictions; a field may hold a list of paths, as
    a keypoints record's masks) of images no longer in the input (``images``: absolute
    paths of the current images).  ``read`` reads a record.  Returns the removed images."""
    root = Path(root)
    removed = []
    current = {f"{item_name(image)}.json" for image in images}
    for path in item_files(root):
        if path.name in current:            # named after a current image (item_name): not stale
            continue
        item = read(path)
        if item.image in images:
            continue
        for value in (getattr(item, f) for f in fields):
            for rel in value if isinstance(value, list) else [value]:
                if rel:
                    (root / rel).unlink(missing_ok=True)
        path.unlink()
        removed.append(item.image)
    return removed


@dataclass
class FolderScan:
    """What :func:`scan_item_folder` saw.

    Attributes:
        state: hex SHA-256 of every file's name, size and modification time (ns) in the
            folder's per-image sub-folders: any write, deletion or restore changes it.
        items: the item names (:func:`item_name`) that have a record.
    """

    state: str
    items: set[str]


def scan_item_folder(root: str | Path, folders: tuple[str, ...] = (ITEMS_DIR, "labels", "probs")) -> FolderScan:
    """Stat (not read) every file of ``root``'s per-image ``folders``: about 3 microseconds
    a file.  Files modified in place keeping their size and modification time to the
    nanosecond are not seen (as ``make`` does not see them)."""
    h = hashlib.sha256()
    items = set()
    for folder in folders:
        try:
            entries = sorted(os.scandir(Path(root) / folder), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for e in entries:
            st = e.stat(follow_symlinks=False)
            h.update(f"{folder}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            if folder == ITEMS_DIR and e.name.endswith(".json") and not e.name.startswith(files.TEMP_PREFIX):
                items.add(e.name[:-5])
    return FolderScan(h.hexdigest(), items)


def read_run_record(root: str | Path) -> dict:
    """``root/run.json`` as :func:`write_run_record` wrote it; {} when missing or unreadable
    (the next run then checks every item)."""
    try:
        record = files.read_json(Path(root) / RUN_FILE)
    except DataError:
        return {}
    return record if isinstance(record, dict) else {}


def write_run_record(root: str | Path, chunks: dict[str, list[str]]) -> None:
    """Write ``root/run.json``: the folder's :func:`scan_item_folder` state now and
    ``chunks``, {chunk key: the status of each of its items}, of the run that just finished.
    The next run trusts a chunk it finds there only while the state is unchanged."""
    files.write_json(Path(root) / RUN_FILE, {"items_state": scan_item_folder(root).state, "chunks": chunks})
