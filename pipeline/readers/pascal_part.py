"""PASCAL-Part persons (Chen et al., CVPR 2014) merged to PASCAL-Person-Part parts."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.labels import IGNORE, pascal10_to_pascal6_lut, remap
from pipeline.formats.person_mask import mask_to_rle
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.readers.part_joints import keypoints_from_parts

#: PASCAL-Part person part name -> ``pascal10`` id.  Left/right are the person's own.
#: Hands join the lower arms and feet the lower legs (as PASCAL-Person-Part does); every
#: face part, the hair and the neck join the head (our choice for the neck, documented in
#: docs/data.md).
PART_TO_PASCAL10: dict[str, int] = {
    **{n: 1 for n in ("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow",
                      "nose", "mouth", "neck")},
    "torso": 2,
    "luarm": 3, "ruarm": 4,
    "llarm": 5, "lhand": 5, "rlarm": 6, "rhand": 6,
    "luleg": 7, "ruleg": 8,
    "llleg": 9, "lfoot": 9, "rlleg": 10, "rfoot": 10,
}


def _str(x) -> str:
    return str(np.asarray(x).reshape(-1)[0]) if np.asarray(x).size else ""


def person_parts(mat_path: Path, image_size: tuple[int, int]) -> tuple[list[tuple[int, dict, np.ndarray]], np.ndarray, int]:
    """Raw part masks of every person of one PASCAL-Part annotation file.

    Returns: ([(object index, {part name: bool (H, W) mask}, bool (H, W) object mask)] for
        persons with parts, bool (H, W) union of all persons' masks, number of persons
        without part masks).
    Raises: DataError on a file without ``anno.objects``, an unknown person part name or
        a mask whose size differs from the image.
    """
    raw = files.read_mat(mat_path)
    try:
        objects = raw["anno"][0, 0]["objects"][0]
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(mat_path, f"no anno.objects struct ({e!r})") from None
    persons = [(k, o) for k, o in enumerate(objects) if _str(o["class"]) == "person"]
    all_people = np.zeros(image_size, dtype=bool)
    out = []
    for k, o in persons:
        if o["mask"].shape != image_size:
            raise DataError(mat_path, f"object mask size {o['mask'].shape} differs from image {image_size}")
        whole = o["mask"].astype(bool)
        all_people |= whole
        parts = {}
        for p in o["parts"].reshape(-1):
            name = _str(p["part_name"])
            if name not in PART_TO_PASCAL10:
                raise DataError(mat_path, f"unknown person part {name!r}")
            if p["mask"].shape != image_size:
                raise DataError(mat_path, f"part {name!r} mask size differs from the image")
            parts[name] = parts.get(name, False) | p["mask"].astype(bool)
        if parts:
            out.append((k, parts, whole))
    return out, all_people, len(persons) - len(out)


def parts_label_map(parts: dict, all_people: np.ndarray) -> np.ndarray:
    """uint8 (H, W) ``pascal10`` map of one person's parts; other people's pixels and this
    person's pixels outside every part are 255 (ignore)."""
    lm = np.where(all_people, IGNORE, 0).astype(np.uint8)
    for name, mask in parts.items():
        lm[mask] = PART_TO_PASCAL10[name]
    return lm


def read_pascal_part(root: str | Path, *, label_set: str = "pascal6", skip_bad: bool = False,
                     report: ReadReport | None = None,
                     keypoints_from_masks: bool = False) -> Iterator[PersonRecord]:
    """Yield one labelled record per person with part masks in a PASCAL-Part folder.

    Layout: ``<image id>.jpg`` beside ``<image id>.mat`` (``anno.objects``: ``class``,
    ``mask``, ``parts`` with ``part_name`` and ``mask``).  Non-person objects are ignored;
    persons without part masks are counted as ``no_parts``.  ``person_id`` is
    ``"<image id>/<object index>"``; ``meta["rle"]`` is the person's object mask (COCO
    RLE: the person's own mask, as a COCO annotation's).  PASCAL-Part has no keypoints:
    None, or with ``keypoints_from_masks`` the joints :func:`keypoints_from_parts` derives
    from the part masks (all flagged derived).

    Args:
        label_set: ``pascal6`` (head, torso, upper/lower arms, upper/lower legs) or
            ``pascal10`` (arms and legs split into left/right).
    Raises: DataError per image (unless ``skip_bad``): missing image, bad ``.mat``.
    """
    root = Path(root)
    if label_set not in ("pascal6", "pascal10"):
        raise ConfigError(f"PASCAL-Part label_set must be 'pascal6' or 'pascal10', got {label_set!r}")
    if not root.is_dir():
        raise DataError(root, "PASCAL-Part folder not found")
    for mat in sorted(root.glob("*.mat")):
        def people(mat=mat):
            image = mat.with_suffix(".jpg")
            size = files.image_size(image)
            people, all_people, unlabelled = person_parts(mat, size)
            if report is not None:
                report.counts["no_parts"] += unlabelled
            lut = pascal10_to_pascal6_lut() if label_set == "pascal6" else np.arange(256, dtype=np.uint8)
            recs = []
            for k, parts, whole in people:
                kp = derived = None
                if keypoints_from_masks:
                    kp = keypoints_from_parts(parts)
                    derived = np.ones(16, dtype=bool)
                recs.append(PersonRecord(image, size, f"{mat.stem}/{k}", "pascal_part",
                                         remap(parts_label_map(parts, all_people), lut), kp, derived,
                                         label_set, None, {"object_index": k, "rle": mask_to_rle(whole)}))
            return recs

        yield from guard(people, skip_bad=skip_bad, report=report) or []
