"""A person record's own mask: its annotation's instance mask, or BlazePose's."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.errors import DataError
from pipeline.formats import files
from pipeline.formats.records import PersonRecord


def mask_to_rle(mask: np.ndarray) -> dict:
    """bool (H, W) -> COCO RLE ``{"size": [h, w], "counts": str}`` (what ``meta["rle"]`` holds)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE ``{"size", "counts": str}`` (``meta["rle"]``) -> bool (H, W)."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def person_mask_source(rec: PersonRecord) -> str | None:
    """Which person mask :func:`read_person_mask` uses for ``rec``: ``annotation`` (its
    annotation's own instance mask, ``meta["rle"]``: COCO's segmentation, a PASCAL-Part
    object mask), else ``blazepose`` (``meta["person_mask"]``, a keypoints folder's PNG),
    else None."""
    meta = rec.meta or {}
    return "annotation" if meta.get("rle") else "blazepose" if meta.get("person_mask") else None


def read_person_mask(rec: PersonRecord, image_size: tuple[int, int]) -> np.ndarray | None:
    """bool (H, W) person mask of ``rec``: its annotation's own instance mask
    (``meta["rle"]``, COCO RLE) when it has one, else ``meta["person_mask"]`` (a uint8 PNG,
    >= 128 is the person), else None.  Raises DataError naming the image or PNG when the
    mask is unreadable or its size differs from the image's (h, w) ``image_size``."""
    meta = rec.meta or {}
    if meta.get("rle"):
        mask = rle_to_mask(meta["rle"])
        if mask.shape != tuple(image_size):
            raise DataError(rec.image_path, f"the annotation's mask {mask.shape} differs from the image "
                                            f"{tuple(image_size)}")
        return mask
    path = meta.get("person_mask")
    if not path:
        return None
    mask = files.read_label_png(path)
    if mask.shape != tuple(image_size):
        raise DataError(path, f"person mask size {mask.shape} differs from image size {tuple(image_size)}")
    return mask >= 128


def read_other_people(rec: PersonRecord, image_size: tuple[int, int]) -> np.ndarray | None:
    """bool (H, W) pixels of the image's people that have no record (COCO's crowd regions
    and people with too few keypoints, ``meta["other_people_rle"]``), or None: their
    parts are unknown, so synthesis marks them ignore rather than background.  Raises
    DataError naming the image when its size differs from ``image_size``."""
    rle = (rec.meta or {}).get("other_people_rle")
    if not rle:
        return None
    mask = rle_to_mask(rle)
    if mask.shape != tuple(image_size):
        raise DataError(rec.image_path, f"the crowd / other people's mask {mask.shape} differs from the image "
                                        f"{tuple(image_size)}")
    return mask
