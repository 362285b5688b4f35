"""The project's own dataset folder layout (the demo set, synthesized label sets)."""
from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.labels import LABEL_SETS
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.skeleton import NUM_JOINTS, validate_keypoints

DATASET_FILE = "dataset.json"
PEOPLE_FILE = "people.json"
FORMAT = "partsynth"


def read_dataset_info(root: Path) -> dict:
    """``dataset.json`` of a partsynth folder; DataError if missing, not this format, or
    without a known ``label_set`` (null only in a ``keypoints_only`` folder)."""
    path = root / DATASET_FILE
    info = files.read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} dataset description (format must be {FORMAT!r})")
    if info.get("label_set") is None and info.get("keypoints_only"):
        return info
    if info.get("label_set") not in LABEL_SETS:
        raise DataError(path, f"unknown label_set {info.get('label_set')!r}; known: {sorted(LABEL_SETS)}")
    return info


def read_people_entries(root: Path) -> list:
    """``people.json`` of a partsynth folder as written (a list of JSON objects); DataError
    when it is missing, unreadable or not a list."""
    people_path = root / PEOPLE_FILE
    people = files.read_json(people_path)
    if not isinstance(people, list):
        raise DataError(people_path, "expected a list of people")
    return people


def drawable_person_ids(root: str | Path) -> list[str]:
    """Ids of a partsynth folder's people that have keypoints and a label or a person mask,
    in ``people.json`` order, from that file alone (no photo or label PNG is opened, so a
    100,000-person folder answers in seconds).  Raises DataError as
    :func:`read_people_entries`."""
    return [str(e["person_id"]) for e in read_people_entries(Path(root))
            if isinstance(e, dict) and "person_id" in e and e.get("status") != "skipped"
            and e.get("keypoints") is not None and (e.get("label") or (e.get("meta") or {}).get("person_mask"))]


def read_partsynth_folder(root: str | Path, *, skip_bad: bool = False, report: ReadReport | None = None,
                          person_ids: Collection[str] | None = None) -> Iterator[PersonRecord]:
    """Yield one record per person of a partsynth folder (only those in ``person_ids`` when
    given: the others' files are not opened).

    Layout::

        dataset.json   {"format": "partsynth", "label_set": "pascal10", "synthetic": bool, ...}
        people.json    [{"person_id", "image", "label" | null, "keypoints": [[x, y, v] x 16]
                         | null, "split"}]   paths relative to the folder; entries with
                       "status": "skipped" (people the writing command could not label,
                       photos where keypoint estimation found no one, with their
                       "reason") are counted as ``skipped_when_written``, not yielded;
                       ``label_set`` is null in a ``keypoints_only`` folder
        images/, labels/  (label PNGs: palette, class ids of label_set)

    Keypoints are canonical (x, y in pixels, v in {0, 1, 2}; missing joints as
    ``[null, null, 0]``).  Raises: DataError for a missing or malformed ``dataset.json``
    or ``people.json``; per person (unless ``skip_bad``): missing image, label size
    mismatch, label ids outside the label set, bad keypoints.
    """
    root = Path(root)
    info = read_dataset_info(root)
    label_set = LABEL_SETS.get(info["label_set"])
    people_path = root / PEOPLE_FILE
    people = read_people_entries(root)
    wanted = None if person_ids is None else {str(i) for i in person_ids}
    for entry in people:
        if wanted is not None and not (isinstance(entry, dict) and str(entry.get("person_id")) in wanted):
            continue
        if isinstance(entry, dict) and entry.get("status") == "skipped":
            if report is not None:    # a person its writer could not label, a photo without a person
                report.counts["skipped_when_written"] += 1
                report.skipped.append((str(entry.get("image")), str(entry.get("reason") or "skipped when written")))
            continue

        def one(entry=entry):
            if not isinstance(entry, dict) or not {"person_id", "image"} <= entry.keys():
                raise DataError(people_path, f"entry lacks 'person_id' or 'image': {str(entry)[:80]}")
            image = root / entry["image"]
            size = files.image_size(image)
            lm = None
            if entry.get("label"):
                if label_set is None:
                    raise DataError(people_path, f"person {entry['person_id']} has a label in a keypoints-only "
                                                 "dataset (label_set null)")
                lm = files.read_photo_label_png(root / entry["label"], size, label_set)
            kp = derived = None
            if entry.get("keypoints") is not None:
                try:
                    raw = json_to_keypoints(entry["keypoints"])
                except (TypeError, ValueError) as e:
                    raise DataError(people_path, f"person {entry['person_id']}: keypoints are not numbers ({e})") from None
                kp = validate_keypoints(raw, path=people_path)
                derived = np.array(entry.get("derived") or [False] * NUM_JOINTS, dtype=bool)
            return PersonRecord(image, size, str(entry["person_id"]), FORMAT, lm, kp, derived,
                                label_set.name if lm is not None else None, entry.get("split"),
                                _meta(root, entry, info))

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec


def _meta(root: Path, entry: dict, info: dict) -> dict:
    """A person's ``meta`` with ``synthetic`` and its ``person_mask`` made absolute."""
    meta = dict(entry.get("meta") or {}, synthetic=bool(info.get("synthetic")))
    if meta.get("person_mask"):
        meta["person_mask"] = str(root / meta["person_mask"])
    return meta


def keypoints_to_json(kp: np.ndarray) -> list:
    """float (16, 3) keypoints -> JSON rows ``[x, y, v]`` with ``null`` for missing x, y."""
    return [[None if not np.isfinite(x) else round(float(x), 3),
             None if not np.isfinite(y) else round(float(y), 3), float(v)] for x, y, v in kp]


def json_to_keypoints(rows: list) -> np.ndarray:
    """JSON rows ``[x, y, v]`` (``null`` for missing x, y) -> float32 (J, 3) with NaN."""
    return np.array([[np.nan if c is None else c for c in row] for row in rows], dtype=np.float32)
