"""Person boxes for multi-person keypoint estimation, read from a COCO file.

Two COCO forms are accepted (https://cocodataset.org/#format-data, #format-results):

- a detections (results) file: a JSON list ``[{"image_id", "category_id", "bbox": [x, y,
  w, h], "score"}]``, e.g. mmpose's ``test_coco_det_AP_H_56.json``.  Its image ids are
  matched to photos whose file stem is that number (COCO's ``000000000785.jpg`` is 785);
- an annotations file: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
  "category_id", "bbox", "iscrowd"}]}``; photos are matched by file name.

Only person boxes (category 1) count; crowd regions (``iscrowd: 1``) are left out.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.formats import files
from pipeline.errors import DataError

PERSON_CATEGORY = 1


def _box(entry: dict, path: Path) -> list[float]:
    box = entry.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise DataError(path, f"bbox must be [x, y, w, h] numbers, got {str(box)[:60]} (image {entry.get('image_id')})")
    return [float(v) for v in box]


def read_person_boxes(path: str | Path, photos: list[str | Path],
                      min_score: float = 0.5) -> dict[str, list[tuple[list[float], float | None]]]:
    """The person boxes of each photo.

    Args:
        path: a COCO detections list or annotations file (module docstring).
        photos: the photos to match (paths).
        min_score: detections scoring below this are dropped (annotations have no score).
    Returns: ``{str(photo): [([x, y, w, h] pixels, score | None), ...]}`` for every photo
        of ``photos`` (an empty list where the file has no box for it), boxes in file order.
    Raises: DataError naming ``path`` when it is not such a file, or an entry lacks
        ``image_id`` or a numeric ``bbox``.
    """
    path = Path(path)
    raw = files.read_json(path)
    by_key: dict[object, list] = {}
    if isinstance(raw, list):
        for entry in raw:
            if not isinstance(entry, dict) or "image_id" not in entry:
                raise DataError(path, f"detection without image_id: {str(entry)[:60]}")
            if entry.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
                continue
            score = float(entry.get("score", 1.0))
            if score >= min_score:
                by_key.setdefault(int(entry["image_id"]), []).append((_box(entry, path), score))

        def key(photo: Path):
            return int(photo.stem) if photo.stem.isdigit() else None
    elif isinstance(raw, dict) and {"images", "annotations"} <= raw.keys():
        names = {img["id"]: Path(img["file_name"]).name for img in raw["images"]}
        for entry in raw["annotations"]:
            if not isinstance(entry, dict) or entry.get("image_id") not in names:
                raise DataError(path, f"annotation of an image not in 'images': {str(entry)[:60]}")
            if entry.get("category_id", PERSON_CATEGORY) == PERSON_CATEGORY and not entry.get("iscrowd"):
                by_key.setdefault(names[entry["image_id"]], []).append((_box(entry, path), None))

        def key(photo: Path):
            return photo.name
    else:
        raise DataError(path, "not a COCO detections list or a COCO annotations file (images + annotations)")
    return {str(p): by_key.get(key(Path(p)), []) for p in photos}
