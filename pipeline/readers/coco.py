"""COCO person keypoints (Lin et al., ECCV 2014), read with pycocotools."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.person_mask import rle_to_mask
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.skeleton import from_coco17


def load_coco(ann_path: Path) -> COCO:
    """pycocotools ``COCO`` for a person-keypoints JSON, quietly, the file parsed once;
    DataError if unreadable, invalid JSON (line and column) or not a COCO dict."""
    doc = files.read_json(ann_path)
    if not isinstance(doc, dict):
        raise DataError(ann_path, f"not a COCO annotation file (a JSON {type(doc).__name__}, not an object)")
    coco = COCO()                      # pycocotools' own index over the parsed document
    coco.dataset = doc
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError, AssertionError) as e:
        raise DataError(ann_path, f"not a COCO annotation file ({e!r})") from None
    return coco


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

    Args:
        ann_path: the JSON file.  image_dir: folder of ``file_name``s (default: its folder).
    Raises: DataError for an unreadable JSON; per person (unless ``skip_bad``) for a
        missing/unreadable image, malformed keypoints, a shared image id or a missing image.
    """
    ann_path = Path(ann_path)
    image_dir = ann_path.parent if image_dir is None else Path(image_dir)
    coco = load_coco(ann_path)
    cat_ids = coco.getCatIds(catNms=["person"]) or sorted(coco.cats)
    names: dict[int, list[str]] = {}
    for img in coco.dataset.get("images", []):
        names.setdefault(img["id"], []).append(str(img.get("file_name")))
    for ann in coco.dataset.get("annotations", []):
        if ann.get("image_id") not in names and ann.get("category_id") in cat_ids:
            guard(lambda ann=ann: _raise(ann_path, f"annotation {ann.get('id')} refers to image id "
                                                   f"{ann.get('image_id')}, which no image has"),
                  skip_bad=skip_bad, report=report)
    for img_id in sorted(coco.getImgIds()):
        info = coco.imgs[img_id]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, catIds=cat_ids, iscrowd=None))
        unused = [a for a in anns if a.get("iscrowd", 0) or a.get("num_keypoints", 0) < min_keypoints
                  or "keypoints" not in a]
        others = _union_rle(coco, [a for a in unused if a.get("segmentation")])
        unused_ids = {id(a) for a in unused}
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

            def one(ann=ann, info=info, where=where):
                if len(names[img_id]) > 1:
                    raise DataError(ann_path, f"{where}: image id {img_id} is shared by "
                                              f"{len(names[img_id])} images ({', '.join(names[img_id])}); "
                                              "which photo the person is on cannot be told")
                path = image_dir / info["file_name"]
                size = files.image_size(path)
                if (info.get("height"), info.get("width")) not in ((None, None), size):
                    raise DataError(path, f"image size {size} differs from the JSON's "
                                          f"{(info['height'], info['width'])}")
                try:
                    kp, derived = from_coco17(ann["keypoints"], path=ann_path)
                except DataError as e:
                    raise DataError(ann_path, f"{where}: {e.problem}") from None
                meta = {"annotation_id": ann["id"], "bbox": [float(b) for b in ann.get("bbox", [])]}
                if ann.get("segmentation"):
                    rle = coco.annToRLE(ann)
                    meta["rle"] = {"size": list(rle["size"]), "counts": _counts_str(rle["counts"])}
                if others is not None:
                    meta["other_people_rle"] = others
                return PersonRecord(path, size, f"{info['id']}/{ann['id']}", "coco", None, kp,
                                    derived, None, None, meta)

            rec = guard(one, skip_bad=skip_bad, report=report)
            if rec is not None:
                yield rec


def _union_rle(coco: COCO, anns: list[dict]) -> dict | None:
    """The union of the annotations' masks as ``{"size", "counts": str}``, or None."""
    if not anns:
        return None
    try:
        rle = mask_utils.merge([coco.annToRLE(a) for a in anns], intersect=False)
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
