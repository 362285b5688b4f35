"""LIP (Gong et al., CVPR 2017) and CIHP (Gong et al., ECCV 2018) label PNGs."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.labels import IGNORE, LIP_NAMES
from pipeline.formats.records import PersonRecord, ReadReport, guard


def read_label_for(label_path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """A LIP/CIHP label PNG as uint8 (H, W) ids 0-19 (255 ignore).

    Raises: DataError on a size mismatch with the image or ids outside 0-19 and 255.
    """
    lm = files.read_label_png(label_path)
    if lm.shape != tuple(image_size):
        raise DataError(label_path, f"label size {lm.shape} differs from image size {image_size}")
    bad = np.setdiff1d(np.unique(lm), [*range(len(LIP_NAMES)), IGNORE])
    if bad.size:
        raise DataError(label_path, f"label ids outside 0-19: {bad.tolist()[:5]}")
    return lm


def _records(pairs, fmt: str, label_set: str, skip_bad: bool, report) -> Iterator[PersonRecord]:
    for image, label, split, meta in pairs:
        def one(image=image, label=label, split=split, meta=meta):
            size = files.image_size(image)
            lm = read_label_for(label, size) if label is not None else None
            return PersonRecord(image, size, image.stem, fmt, lm, None, None,
                                label_set if lm is not None else None, split, meta)

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec


def _child(root: Path, name: str) -> Path:
    """``root / name``, or the existing child whose name matches case-insensitively
    (releases spell ``TrainVal_parsing_annotations`` both ways)."""
    if not (root / name).exists() and root.is_dir():
        for c in root.iterdir():
            if c.name.lower() == name.lower():
                return c
    return root / name


def read_lip(root: str | Path, *, skip_bad: bool = False,
             report: ReadReport | None = None) -> Iterator[PersonRecord]:
    """Yield one record per LIP image (single person, ``lip20`` classes).

    Official layout: ``TrainVal_images/{train,val}_images/<id>.jpg``,
    ``TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png`` (greyscale ids
    0-19 in LIP order; the folder name is matched case-insensitively) and
    ``Testing_images/<id>.jpg`` (no labels: keypoint-only records
    without keypoints, split ``test``).  A train/val image without its label PNG raises
    (or is skipped with ``skip_bad``).
    Raises: DataError when none of the official folders exists.
    """
    root = Path(root)
    pairs = []
    ann_root = _child(root, "TrainVal_parsing_annotations")
    for split in ("train", "val"):
        img_dir = root / "TrainVal_images" / f"{split}_images"
        lab_dir = ann_root / f"{split}_segmentations"
        pairs += [(p, lab_dir / f"{p.stem}.png", split, {}) for p in sorted(img_dir.glob("*.jpg"))]
    pairs += [(p, None, "test", {}) for p in sorted((root / "Testing_images").glob("*.jpg"))]
    if not (root / "TrainVal_images").is_dir() and not (root / "Testing_images").is_dir():
        raise DataError(root, "not a LIP folder (no TrainVal_images/ or Testing_images/)")
    yield from _records(pairs, "lip", "lip20", skip_bad, report)


def _ids(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def read_cihp(root: str | Path, *, skip_bad: bool = False,
              report: ReadReport | None = None) -> Iterator[PersonRecord]:
    """Yield one record per CIHP image (multi-person; ``cihp20`` = LIP's 20 classes).

    Two layouts are recognised:

    * official: ``{Training,Validation}/Images/<id>.jpg`` with ``Category_ids/<id>.png``
      (split from the folder) and ``Testing/Images`` without labels;
    * the common preprocessed one: ``images/<id>.jpg``, ``labels/<id>.png``, optional
      ``labels_rev/`` (left/right swapped, for flipping; kept in ``meta``), ``edges/`` and
      ``list/{train,val}_id.txt`` (split: ``train`` if listed there, else ``val`` if
      listed in the val list, else None).

    The label map covers every person of the image (instance ids are not read), so the
    record is per image and ``person_id`` is the image id.  No keypoints.
    Raises: DataError when neither layout is found.
    """
    root = Path(root)
    pairs = []
    if (root / "Training").is_dir() or (root / "Validation").is_dir():
        for folder, split in (("Training", "train"), ("Validation", "val")):
            pairs += [(p, root / folder / "Category_ids" / f"{p.stem}.png", split, {})
                      for p in sorted((root / folder / "Images").glob("*.jpg"))]
        pairs += [(p, None, "test", {}) for p in sorted((root / "Testing" / "Images").glob("*.jpg"))]
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        train, val = _ids(root / "list" / "train_id.txt"), _ids(root / "list" / "val_id.txt")
        for p in sorted((root / "images").glob("*.jpg")):
            split = "train" if p.stem in train else "val" if p.stem in val else None
            rev = root / "labels_rev" / f"{p.stem}.png"
            pairs.append((p, root / "labels" / f"{p.stem}.png", split,
                          {"label_rev_path": str(rev) if rev.exists() else None}))
    else:
        raise DataError(root, "not a CIHP folder (no Training/ or images/ + labels/)")
    yield from _records(pairs, "cihp", "cihp20", skip_bad, report)
