"""A COCO annotation file read in memory bounded by one image, not by the file.

ijson (its C parser) streams the file's ``categories``, ``images`` and ``annotations``
arrays, one pass each; the annotations of the wanted categories go into a temporary SQLite
table and come back grouped by image, in image-id order and, within an image, in file order
(pycocotools' ``imgToAns`` order).  What stays in memory is the image table (id, file name,
size: about 200 bytes an image) and one image's annotations at a time.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ijson

from pipeline.errors import DataError
from pipeline.formats import files

BATCH = 2000            # annotations per SQLite insert


@dataclass
class StreamedCoco:
    """The small part of a COCO file, and its annotations grouped by image on disk.

    Attributes:
        path: the JSON file.
        cat_ids: ids of the ``person`` category (all categories when none is so named).
        images: {image id: the last ``images`` entry with that id}, as pycocotools keeps it.
        file_names: {image id: every ``file_name`` given that id} (more than one: ambiguous).
        orphans: (annotation id, image id) of wanted annotations whose image no entry has.
    """

    path: Path
    cat_ids: list
    images: dict = field(default_factory=dict)
    file_names: dict = field(default_factory=dict)
    orphans: list = field(default_factory=list)
    db: sqlite3.Connection | None = None

    def by_image(self) -> Iterator[tuple[object, list[dict]]]:
        """(image id, its wanted annotations as dicts) for every image id of
        :attr:`images` that has any, in ascending id order; annotations in file order."""
        group, current = [], None
        for image_id, text in self.db.execute("SELECT image_id, ann FROM ann ORDER BY image_id, seq"):
            if group and image_id != current:
                yield current, group
                group = []
            current = image_id
            group.append(json.loads(text))
        if group:
            yield current, group


def _items(path: Path, prefix: str) -> Iterator:
    """The objects of the top-level array ``prefix`` ("images", ...), streamed by ijson,
    floats as float.  Where ijson stops, the file is parsed whole by Python's json: an
    invalid file raises the DataError :func:`pipeline.formats.files.read_json` words (line
    and column), and one that only Python reads (NaN, Infinity: what ``json.dumps`` writes
    for them) is served from memory from where the stream stopped."""
    served = 0
    with open(path, "rb") as f:
        try:
            for obj in ijson.items(f, f"{prefix}.item", use_float=True):
                served += 1
                yield obj
            return
        except ijson.JSONError:
            pass
    doc = files.read_json(path)
    items = doc.get(prefix) if isinstance(doc, dict) else None
    yield from (items if isinstance(items, list) else [])[served:]


def _require_object(path: Path) -> None:
    """DataError in read_json's or load's words unless the file's JSON is an object."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        doc = files.read_json(path)             # empty, invalid or not UTF-8: its own message
        raise DataError(path, f"not a COCO annotation file (a JSON {type(doc).__name__}, not an object)")


@contextlib.contextmanager
def streamed_coco(path: str | Path) -> Iterator[StreamedCoco]:
    """Read a COCO annotation file into a :class:`StreamedCoco` whose annotations (of the
    person category) wait in a temporary SQLite file, removed on exit.

    Raises: DataError naming the file when it is missing, empty, not JSON (line and column),
    not an object, or when an image or annotation entry is not an object with an ``id``.
    """
    path = Path(path)
    files.require_file(path)
    _require_object(path)
    cats = [c for c in _items(path, "categories") if isinstance(c, dict)]
    cat_ids = [c["id"] for c in cats if c.get("name") == "person" and "id" in c] or sorted(
        c["id"] for c in cats if "id" in c)
    coco = StreamedCoco(path, cat_ids)
    for img in _items(path, "images"):
        if not isinstance(img, dict) or "id" not in img:
            raise DataError(path, f"not a COCO annotation file (an image entry without an id: {str(img)[:80]})")
        coco.images[img["id"]] = img
        coco.file_names.setdefault(img["id"], []).append(str(img.get("file_name")))
    wanted = set(cat_ids)
    with tempfile.TemporaryDirectory(prefix="partsynth-coco-") as tmp:
        db = sqlite3.connect(Path(tmp) / "annotations.sqlite")
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE ann (image_id, seq INTEGER, ann TEXT)")
            batch = []
            for seq, ann in enumerate(_items(path, "annotations")):
                if not isinstance(ann, dict) or "id" not in ann:
                    raise DataError(path, f"not a COCO annotation file (an annotation without an id: {str(ann)[:80]})")
                if ann.get("category_id") not in wanted:
                    continue
                if ann.get("image_id") not in coco.images:
                    coco.orphans.append((ann["id"], ann.get("image_id")))
                    continue
                batch.append((ann["image_id"], seq, json.dumps(ann)))
                if len(batch) >= BATCH:
                    db.executemany("INSERT INTO ann VALUES (?, ?, ?)", batch)
                    batch = []
            db.executemany("INSERT INTO ann VALUES (?, ?, ?)", batch)
            db.execute("CREATE INDEX by_image ON ann (image_id, seq)")
            coco.db = db
            yield coco
        finally:
            db.close()
