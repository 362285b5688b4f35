"""Pre-annotations as COCO instances with RLE masks, and corrected COCO files back in
(the COCO format of Lin et al., ECCV 2014, as CVAT, Label Studio and Datumaro import it).

Export (:func:`export_coco`) writes ``annotations.json``: ``images`` (``file_name`` = the
photo's path relative to the photos' root, :func:`pipeline.annotation.common.export_names`, ``width``, ``height``, ``id``), ``categories`` (the label
set's classes but background, ids = class ids, then ``ignore`` for pixels synthesis left
undecided), and one annotation per image and class present: ``segmentation`` a COCO RLE
(pycocotools, ``counts`` as a string), ``area``, ``bbox`` [x, y, w, h], ``iscrowd`` 0 and
``score`` (the image's lowest person confidence); ``partsynth.json`` beside it holds the
facts an import needs (:mod:`pipeline.annotation.common`).  Images are ordered lowest
confidence first (``order="confidence"``), so ``image id`` 1 is the one to correct first.

Import (:func:`import_coco`) paints each image's annotations in file order (classes by
category name; polygons and uncompressed RLE are accepted too, as annotation tools write
them) into a label map; pixels no annotation covers are background.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.formats import files
from pipeline.annotation.common import (IGNORE_NAME, LabelledWriter, Selection, class_id, class_names, copy_photo,
                                        read_meta, select_images, write_meta)
from pipeline.errors import DataError

ANNOTATIONS_FILE = "annotations.json"
IGNORE_CATEGORY = 255


def categories(label_set: str) -> list[dict]:
    """COCO categories of a label set: class ids 1..C-1 by name, then ``ignore`` (id 255)."""
    cats = [{"id": i, "name": n, "supercategory": "person"} for i, n in enumerate(class_names(label_set), 1)]
    return cats + [{"id": IGNORE_CATEGORY, "name": IGNORE_NAME, "supercategory": "person"}]


def label_map_annotations(label_map: np.ndarray, image_id: int, first_id: int, score: float) -> list[dict]:
    """One COCO annotation per class present in a uint8 (H, W) label map (background left
    out, 255 as category 255), ids from ``first_id``; masks as pycocotools RLE."""
    out = []
    for c in np.unique(label_map):
        if c == 0:
            continue
        rle = mask_utils.encode(np.asfortranarray(label_map == c, dtype=np.uint8))
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        out.append({"id": first_id + len(out), "image_id": image_id, "category_id": int(c),
                    "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "area": int(mask_utils.area(rle)), "bbox": [x, y, w, h], "iscrowd": 0, "score": round(score, 5)})
    return out


def export_coco(synth_dir: str | Path, out: str | Path, selection: Selection = Selection()) -> dict:
    """Write ``annotations.json`` and ``partsynth.json`` for the labelled images of a
    synthesized dataset (``selection``: which, in which order, and with ``copy_images`` the
    photos to ``out/images``).  Returns {"images", "annotations",
    "images_left_out", "label_set"}.  Raises DataError for a folder that is not a
    synthesized dataset."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    coco = {"info": {"description": f"partsynth pre-annotations ({info.label_set})",
                     "version": f"partsynth-{info.refiner_sha256[:12]}"},
            "images": [], "annotations": [], "categories": categories(info.label_set)}
    for image_id, image in enumerate(images, 1):
        if selection.copy_images:
            copy_photo(image, out / "images")
        label_map = image.label_map()
        h, w = label_map.shape
        coco["images"].append({"id": image_id, "file_name": image.name, "width": w, "height": h})
        coco["annotations"] += label_map_annotations(label_map, image_id, len(coco["annotations"]) + 1, image.score)
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / ANNOTATIONS_FILE, coco)
    write_meta(out, images)
    return {"images": len(images), "annotations": len(coco["annotations"]), "images_left_out": n_labelled - len(images),
            "label_set": info.label_set}


def _mask(segmentation, h: int, w: int, where: str) -> np.ndarray:
    """bool (h, w) of a COCO segmentation: compressed or uncompressed RLE, or polygons."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, h, w)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation.get("size", [])) != [h, w]:
            raise DataError(where, f"mask size {segmentation.get('size')} differs from the image's {[h, w]}")
        rle = (mask_utils.frPyObjects(segmentation, h, w) if isinstance(segmentation["counts"], list)
               else {"size": [h, w], "counts": segmentation["counts"].encode("ascii")})
    else:
        raise DataError(where, "segmentation must be RLE or polygons")
    return mask_utils.decode(rle).astype(bool)


def import_coco(annotations: str | Path, out: str | Path, *, meta: str | Path | None = None,
                replace: bool = False) -> dict:
    """Read a corrected COCO instances file of :func:`export_coco`'s images into the labelled
    partsynth folder ``out`` (:class:`pipeline.annotation.common.LabelledWriter`).  Images
    without an annotation count as not annotated and are skipped.

    Returns {"images", "people", "not_annotated"}.  Raises DataError naming the image for an
    unknown category name, a size mismatch, or an image ``partsynth.json`` does not know;
    ConfigError as :class:`LabelledWriter`."""
    annotations = Path(annotations)
    coco = files.read_json(annotations)
    if not isinstance(coco, dict) or not {"images", "annotations", "categories"} <= set(coco):
        raise DataError(annotations, "expected a COCO instances file (images, annotations, categories)")
    facts = read_meta(annotations.parent, meta)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    skipped = 0
    with LabelledWriter(out, replace) as writer:
        for image in coco["images"]:
            where = f"{annotations} image {image['id']} ({image['file_name']})"
            fact = facts.lookup(image["file_name"], where)
            anns = by_image.get(image["id"], [])
            if not anns:
                skipped += 1
                continue
            h, w = int(image["height"]), int(image["width"])
            label_map = np.zeros((h, w), np.uint8)
            for a in anns:
                name = names.get(a["category_id"])
                if name is None:
                    raise DataError(where, f"annotation {a['id']}: category id {a['category_id']} is not in categories")
                label_map[_mask(a["segmentation"], h, w, where)] = class_id(name, fact["label_set"], where)
            writer.add(fact, label_map, where)
        writer.finish("a COCO file", annotations)
    return {"images": writer.images, "people": len(writer.people), "not_annotated": skipped}

