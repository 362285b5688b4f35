"""COCO person keypoints (Lin et al., ECCV 2014): streamed (:mod:`pipeline.readers.coco_stream`),
masks with pycocotools."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.person_mask import rle_to_mask
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.readers.coco_stream import StreamedCoco, streamed_coco
from pipeline.skeleton import from_coco17


def read_coco(ann_path: str | Path, image_dir: str | Path | None = None, *,
              skip_bad: bool = False, report: ReadReport | None = None,
              min_keypoints: int = 1) -> Iterator[PersonRecord]:
    """Yield one keypoint-only record per annotated person of a COCO keypoints JSON.

    Multi-person: every non-crowd ``person`` annotation with at least ``min_keypoints``
    labelled keypoints becomes a record (``person_id = "<image id>/<annotation id>"``).
    Crowd annotations and people with fewer keypoints are skipped and counted in
    ``report.counts`` as ``crowd`` and ``few_keypoints``.  ``meta`` keeps the annotation
    id, bbox (x, y, w, h pixels) and the instance segmentation encoded as COCO RLE.

    Ambiguous entries are bad items, named by id: the people of an image id that two or
    more ``images`` entries share (which photo they are on cannot be told), and
    annotations whose ``image_id`` no image has.  Every problem of a person names its
    image id, file name and annotation id.

    The file is streamed (:func:`pipeline.readers.coco_stream.streamed_coco`): memory holds
    the image table and one image's annotations, not the file, and records come in
    ascending image id, each image's in file order.

    Args:
        ann_path: the JSON file.  image_dir: folder of ``file_name``s (default: its folder).
    Raises: DataError for an unreadable JSON; per person (unless ``skip_bad``) for a
        missing/unreadable image, malformed keypoints, a shared image id or a missing image.
    """
    ann_path = Path(ann_path)
    image_dir = ann_path.parent if image_dir is None else Path(image_dir)
    with streamed_coco(ann_path) as coco:
        for ann_id, img_id in coco.orphans:
            guard(lambda ann_id=ann_id, img_id=img_id: _raise(
                ann_path, f"annotation {ann_id} refers to image id {img_id}, which no image has"),
                skip_bad=skip_bad, report=report)
        for img_id, anns in coco.by_image():
            yield from _image_people(ann_path, image_dir, coco, img_id, anns, skip_bad, report, min_keypoints)


def _image_people(ann_path: Path, image_dir: Path, coco: StreamedCoco, img_id, anns: list[dict], skip_bad: bool,
                  report: ReadReport | None, min_keypoints: int) -> Iterator[PersonRecord]:
    """The records of one image's annotations (see :func:`read_coco`)."""
    info = coco.images[img_id]
    names = coco.file_names[img_id]
    h, w = info.get("height"), info.get("width")
    unused = [a for a in anns if a.get("iscrowd", 0) or a.get("num_keypoints", 0) < min_keypoints
              or "keypoints" not in a]
    others = _union_rle([a for a in unused if a.get("segmentation")], h, w)
    unused_ids = {id(a) for a in unused}
    photo_size = functools.cache(lambda: files.image_size(image_dir / info["file_name"]))   # once per image
    for ann in anns:
        if ann.get("iscrowd", 0):
            if report is not None:
                report.counts["crowd"] += 1
            continue
        if id(ann) in unused_ids:
            if report is not None:
                report.counts["few_keypoints"] += 1
            continue
        where = f"image {img_id} ({info.get('file_name')}), annotation {ann['id']}"

        def one(ann=ann, where=where):
            if len(names) > 1:
                raise DataError(ann_path, f"{where}: image id {img_id} is shared by {len(names)} images "
                                          f"({', '.join(names)}); which photo the person is on cannot be told")
            path = image_dir / info["file_name"]
            size = photo_size()
            if (h, w) not in ((None, None), size):
                raise DataError(path, f"image size {size} differs from the JSON's {(h, w)}")
            try:
                kp, derived = from_coco17(ann["keypoints"], path=ann_path)
            except DataError as e:
                raise DataError(ann_path, f"{where}: {e.problem}") from None
            meta = {"annotation_id": ann["id"], "bbox": [float(b) for b in ann.get("bbox", [])]}
            if ann.get("segmentation"):
                try:
                    rle = annotation_rle(ann["segmentation"], h, w)
                except (TypeError, ValueError, KeyError, IndexError) as e:
                    raise DataError(ann_path, f"{where}: unreadable segmentation ({e})") from None
                meta["rle"] = {"size": list(rle["size"]), "counts": _counts_str(rle["counts"])}
            if others is not None:
                meta["other_people_rle"] = others
            return PersonRecord(path, size, f"{info['id']}/{ann['id']}", "coco", None, kp, derived, None, None, meta)

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec


def annotation_rle(segmentation, h: int, w: int) -> dict:
    """One COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as a
    compressed RLE of an (h, w) image, as pycocotools' ``COCO.annToRLE`` makes it.
    Raises what pycocotools raises for a malformed one (TypeError, ValueError, ...)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, h, w)
    return segmentation


def _union_rle(anns: list[dict], h: int, w: int) -> dict | None:
    """The union of the annotations' masks in an (h, w) image as ``{"size", "counts": str}``, or None."""
    if not anns:
        return None
    try:
        rle = mask_utils.merge([annotation_rle(a["segmentation"], h, w) for a in anns], intersect=False)
    except (TypeError, ValueError, KeyError, IndexError):    # a malformed segmentation of a person left out
        return None
    return {"size": list(rle["size"]), "counts": _counts_str(rle["counts"])}


def _raise(path: Path, problem: str):
    raise DataError(path, problem)


def _counts_str(counts) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def coco_instance_mask(meta: dict) -> np.ndarray:
    """Decode the RLE kept in a COCO record's ``meta["rle"]`` into bool (H, W)."""
    return rle_to_mask(meta["rle"])
