"""The keypoints folder of ``partsynth keypoints``: BlazePose keypoints and person masks for
photos that came without keypoints, written so that the folder is itself a keypoint-only
partsynth dataset (``synthesize --data`` reads it; its person masks stay with it).

Layout::

    dataset.json        {"format": "partsynth", "label_set": null, "keypoints_only": true,
                         "estimator", "keypoints_config", "fingerprint"}
    people.json         one entry per person: {"person_id", "image": absolute path,
                         "label": null, "keypoints": 16 x [x, y, v] (canonical), "derived",
                         "split": null, "meta": {"person_mask": "masks/<item>-<i>.png",
                         "box", "box_score", "landmarks_blazepose33": 33 x [x, y, visibility],
                         "keypoints_source": "blazepose33"}}; photos without a person (or
                         unreadable) as {"status": "skipped", "reason"}
    items/<item>.json   per-photo record, written last (:class:`EstimatedItem`)
    masks/<item>-<i>.png  uint8 person mask at the photo's size: round(255 x probability)

Item names are :func:`pipeline.formats.synth_dataset.item_name` of the photo's absolute path.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.item_folder import (ITEMS_DIR, claim_item_folder, item_files, item_name, label_file_intact,
                                  read_record_or_none, remove_stale_items, write_item)
from pipeline.formats.folder import (DATASET_FILE, FORMAT, PEOPLE_FILE, json_to_keypoints, keypoints_to_json,
                                    read_dataset_info)
from pipeline.skeleton import from_blazepose33

KEYPOINTS_FORMAT_VERSION = 1
MASKS_DIR = "masks"
OWN_ENTRIES = frozenset({DATASET_FILE, PEOPLE_FILE, ITEMS_DIR, MASKS_DIR})
ESTIMATOR = "BlazePose full (mediapipe 0.10.14, model_complexity 1)"


@dataclass
class EstimatedItem:
    """One photo's estimated people.

    Attributes:
        image: absolute path of the photo; image_size: (h, w) pixels ((0, 0) if unreadable).
        fingerprint: estimator options and this photo's person boxes (another box or
            threshold redoes the photo).
        image_sha256: hex SHA-256 of the photo's bytes (a replaced photo is redone).
        people: per person found: {"landmarks": 33 x [x, y, visibility] pixels, "box":
            [x0, y0, x1, y1] of the crop, "box_score", "mask": relative PNG path,
            "mask_sha256"}.
        misses: why a box gave no person (one reason per such box; ["no person found"]
            for a photo without boxes and without a person).
        error: why the photo could not be read, else None.
    """

    image: str
    image_size: tuple[int, int]
    fingerprint: str
    image_sha256: str = ""
    people: list[dict] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    error: str | None = None
    version: int = KEYPOINTS_FORMAT_VERSION

    @property
    def masks(self) -> list[str]:
        return [p["mask"] for p in self.people]

    def to_json(self) -> dict:
        return dict(asdict(self), image_size=list(self.image_size))

    @classmethod
    def from_json(cls, d: dict, path: Path) -> EstimatedItem:
        """Raises DataError naming ``path`` when ``d`` is not a keypoints record."""
        if not isinstance(d, dict) or "image" not in d or "fingerprint" not in d or "people" not in d:
            raise DataError(path, "not a partsynth keypoints record (no image, fingerprint or people)")
        if int(d.get("version", 1)) > KEYPOINTS_FORMAT_VERSION:
            raise DataError(path, f"record format {d['version']} is newer than this partsynth")
        return cls(d["image"], tuple(d.get("image_size") or (0, 0)), d["fingerprint"], d.get("image_sha256", ""),
                   list(d["people"]), list(d.get("misses") or []), d.get("error"), int(d.get("version", 1)))


def read_estimated_item(path: str | Path, raw: dict | None = None) -> EstimatedItem:
    """One record (``raw``: its JSON already parsed); DataError naming the file when
    unreadable or not a record."""
    return EstimatedItem.from_json(files.read_json(path) if raw is None else raw, Path(path))


def estimator_fingerprint(config: dict, boxes: list | None) -> str:
    """16 hex digits of the estimator options and one photo's boxes (None: whole photo)."""
    blob = json.dumps({"config": config, "boxes": boxes, "version": KEYPOINTS_FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def estimated_item_intact(root: str | Path, image: str | Path, fingerprint: str, image_sha256: str) -> bool:
    """True when ``root`` holds this photo's record with ``fingerprint`` and the photo's
    current hash, and every mask it names exists with its recorded hash."""
    root = Path(root)
    item = read_record_or_none(root, image, read_estimated_item)
    if item is None or item.fingerprint != fingerprint or item.image_sha256 != image_sha256:
        return False
    return all(label_file_intact(root, p["mask"], p.get("mask_sha256")) for p in item.people)


def estimate_photo(estimator, photo: str, image_sha256: str, out: Path, fingerprint: str,
                   boxes: Sequence[tuple[list[float], float | None]] | None) -> str:
    """Estimate one photo's people into ``out`` (masks atomic, record last).

    Args:
        estimator: a :class:`pipeline.blazepose.BlazePose` (anything with its ``estimate``).
        boxes: the photo's ``([x, y, w, h], score)`` person boxes, or None for one person
            on the whole photo; an empty list records "no person box" without running.
    Returns: ``images_done``, or ``images_failed`` for an unreadable photo or one where no
        person was found (recorded with the reason).
    """
    name = item_name(photo)
    try:
        rgb = files.read_image(photo)
    except DataError as e:
        write_item(out, EstimatedItem(photo, (0, 0), fingerprint, image_sha256, error=e.problem))
        return "images_failed"
    item = EstimatedItem(photo, tuple(rgb.shape[:2]), fingerprint, image_sha256)
    if boxes is not None and not boxes:
        item.misses.append("no person box for this photo")
    else:
        found = estimator.estimate(rgb, None if boxes is None else [b for b, _ in boxes],
                                   None if boxes is None else [s for _, s in boxes], path=photo)
        for person in found:
            if isinstance(person, str):
                item.misses.append(person)
                continue
            rel = f"{MASKS_DIR}/{name}-{len(item.people)}.png"
            files.write_label_png(out / rel, np.rint(person.mask * 255).astype(np.uint8))
            item.people.append({"landmarks": [[round(float(v), 2) for v in row[:2]] + [round(float(row[2]), 4)]
                                              for row in person.landmarks],
                                "box": [int(v) for v in person.box], "box_score": person.box_score,
                                "mask": rel, "mask_sha256": files.file_sha256(out / rel)})
    write_item(out, item)
    return "images_done" if item.people else "images_failed"


def estimate_photos(estimator, photos: Sequence[str], out: str | Path, fingerprints: Sequence[str],
                    image_sha256: Sequence[str], boxes: Sequence | None = None, force: bool = False,
                    progress: Callable[[str], None] | None = None) -> list[str]:
    """:func:`estimate_photo` for each photo whose record is not intact (all with ``force``);
    ``images_reused`` for the others.  ``boxes``: per photo as :func:`estimate_photo`, or
    None (whole photos).  ``progress`` gets each photo's item name.  One status per photo."""
    out = Path(out)
    statuses = []
    for i, (photo, fp, sha) in enumerate(zip(photos, fingerprints, image_sha256)):
        if not force and estimated_item_intact(out, photo, fp, sha):
            statuses.append("images_reused")
        else:
            statuses.append(estimate_photo(estimator, photo, sha, out, fp, None if boxes is None else boxes[i]))
        if progress:
            progress(item_name(photo))
    return statuses


def remove_stale_estimates(root: str | Path, images: set[str]) -> list[str]:
    """Delete the records and masks of photos no longer in the input (``images``: absolute
    paths).  Returns the photos removed."""
    return remove_stale_items(root, images, read_estimated_item, ("masks",))


def claim_keypoints_output(out: str | Path, data: str | Path) -> None:
    """Check that ``out`` may receive keypoints for the photos of ``data`` (as
    :func:`pipeline.formats.predictions.claim_item_folder`).  Raises ConfigError in one line."""
    claim_item_folder(out, data, "keypoints_only", OWN_ENTRIES, read_estimated_item, "keypoints folder")


def _person_entry(root: Path, item: EstimatedItem, i: int, person: dict, single: bool) -> dict:
    path = root / ITEMS_DIR / f"{item_name(item.image)}.json"
    pose = from_blazepose33(np.array(person["landmarks"], dtype=np.float32), path=path)
    return {"person_id": item_name(item.image) if single else f"{item_name(item.image)}-{i}",
            "image": item.image, "label": None, "keypoints": keypoints_to_json(pose.keypoints),
            "derived": pose.derived.tolist(), "split": None,
            "meta": {"person_mask": person["mask"], "box": person["box"], "box_score": person["box_score"],
                     "landmarks_blazepose33": person["landmarks"], "keypoints_source": "blazepose33"}}


def finalize_keypoints(root: str | Path, config: dict, fingerprint: str) -> dict:
    """Write ``people.json`` and ``dataset.json`` of ``root`` from its records (each
    atomically).  Returns totals {"images", "people", "images_failed", "misses"} and
    ``failed``: [[photo, reason]] (unreadable photos, photos without a person).
    Raises DataError naming a malformed record."""
    root = Path(root)
    people, failed, misses = [], [], 0
    records = item_files(root)
    for path in records:
        item = read_estimated_item(path)
        misses += len(item.misses)
        if item.error or not item.people:
            reason = item.error or "; ".join(item.misses) or "no person found"
            failed.append([item.image, reason])
            people.append({"person_id": item_name(item.image), "image": item.image, "label": None,
                           "status": "skipped", "reason": reason, "split": None})
            continue
        single = len(item.people) == 1 and not item.misses and item.people[0]["box_score"] is None
        people += [_person_entry(root, item, i, p, single) for i, p in enumerate(item.people)]
    files.write_json(root / PEOPLE_FILE, people)
    files.write_json(root / DATASET_FILE, {
        "format": FORMAT, "label_set": None, "keypoints_only": True, "synthetic": False,
        "estimator": ESTIMATOR, "keypoints_config": config, "fingerprint": fingerprint,
        "keypoints_format_version": KEYPOINTS_FORMAT_VERSION,
        "description": "keypoints and person masks estimated by partsynth keypoints (BlazePose)"})
    return {"images": len(records), "people": len(people) - len(failed), "images_failed": len(failed),
            "misses": misses, "failed": failed}


def is_keypoints_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder written by ``partsynth keypoints``."""
    try:
        return bool(read_dataset_info(Path(path)).get("keypoints_only"))
    except (DataError, OSError):
        return False


class PersonMasks:
    """The person masks of a keypoints folder, looked up by photo and pose: synthesis of
    another dataset of the same photos (CCP with its own keypoints, say) clips its labels
    to them.

    Args:
        root: a folder written by ``partsynth keypoints``.
    Raises: DataError naming ``root`` when it is not one.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not is_keypoints_folder(self.root):
            raise DataError(self.root, "not a partsynth keypoints folder (run partsynth keypoints first)")
        self._by_image: dict[str, list[tuple[np.ndarray, str]]] = {}
        for entry in files.read_json(self.root / PEOPLE_FILE):
            if entry.get("status") == "skipped" or not (entry.get("meta") or {}).get("person_mask"):
                continue
            kp = json_to_keypoints(entry["keypoints"])
            self._by_image.setdefault(str(Path(entry["image"]).resolve()), []).append(
                (kp, str(self.root / entry["meta"]["person_mask"])))

    def find(self, image: str | Path, keypoints: np.ndarray, max_offset: float = 0.2) -> str | None:
        """The mask file of the person of ``image`` whose estimated keypoints lie nearest
        ``keypoints`` (float (16, 3) pixels): the median distance over the joints both
        have must be below ``max_offset`` x the diagonal of ``keypoints``' bounding box.
        None when the photo has no estimated person that close."""
        present = np.isfinite(keypoints[:, :2]).all(1) & (keypoints[:, 2] > 0)
        if not present.any():
            return None
        pts = keypoints[present, :2]
        scale = float(np.linalg.norm(pts.max(0) - pts.min(0))) or 1.0
        best, best_d = None, np.inf
        for kp, mask in self._by_image.get(str(Path(image).resolve()), []):
            both = present & np.isfinite(kp[:, :2]).all(1)
            if both.any():
                d = float(np.median(np.linalg.norm(kp[both, :2] - keypoints[both, :2], axis=1)))
                if d < best_d:
                    best, best_d = mask, d
        return best if best_d < max_offset * scale else None
