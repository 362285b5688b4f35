"""Pre-annotations as "CVAT for images 1.1" XML with ``<mask>`` elements, and corrected
CVAT exports back in (the format CVAT itself exports and imports; Sekachev et al., CVAT).

Export (:func:`export_cvat`) writes ``annotations.xml``: ``meta/task/labels`` (the label
set's classes but background, type ``mask``, palette colours, and ``ignore``), then per
image (``name`` = the photo's path relative to the photos' root, as a CVAT task made from
that folder names its frames: :func:`pipeline.annotation.common.export_names`) one ``<mask>`` per class present,
``source="auto"``; ``partsynth.json`` beside it holds the facts an import needs.  CVAT's
mask RLE covers the mask's bounding box (``left``, ``top``, ``width``, ``height``) in row
order: run lengths alternating between 0 and 1 pixels, starting with 0 (a leading 0 when
the box starts with a 1).  Images are ordered lowest confidence first by default.

Import (:func:`import_cvat`) paints each image's masks in ``z_order`` then file order
(classes by label name); pixels no mask covers are background.  Polygons and other shapes
are refused with the image named (the pre-annotations are masks; brush corrections stay
masks in CVAT's export).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.annotation.common import (IGNORE_NAME, LabelledWriter, Selection, class_id, class_name, class_names,
                                        copy_photo, read_meta, select_images, write_meta)
from pipeline.errors import DataError
from pipeline.labels import LABEL_SETS

ANNOTATIONS_FILE = "annotations.xml"
#: the project labels for CVAT's "Raw" label editor, beside the annotations
LABELS_FILE = "labels.json"


def mask_to_rle(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT's mask RLE of a bool (H, W) mask with at least one pixel: (run lengths over the
    bounding box in row order, starting with a 0-run; (left, top, width, height))."""
    ys, xs = np.nonzero(mask)
    top, left = int(ys.min()), int(xs.min())
    h, w = int(ys.max()) - top + 1, int(xs.max()) - left + 1
    flat = mask[top:top + h, left:left + w].ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs], (left, top, w, h)


def rle_to_mask(runs: list[int], box: tuple[int, int, int, int], hw: tuple[int, int], where: str) -> np.ndarray:
    """bool (H, W) mask of CVAT's RLE over ``box`` = (left, top, width, height) in an image
    of size ``hw``.  Raises DataError naming ``where`` when the runs do not fill the box or
    the box leaves the image."""
    left, top, w, h = box
    if left < 0 or top < 0 or left + w > hw[1] or top + h > hw[0]:
        raise DataError(where, f"mask box {box} leaves the image {hw[1]} x {hw[0]}")
    if sum(runs) != w * h:
        raise DataError(where, f"mask runs cover {sum(runs)} pixels, its box {w} x {h} = {w * h}")
    values = np.arange(len(runs)) % 2
    out = np.zeros(hw, bool)
    out[top:top + h, left:left + w] = np.repeat(values, runs).astype(bool).reshape(h, w)
    return out


def cvat_labels(label_set: str) -> list[dict]:
    """The label set's classes (background left out, ``ignore`` added) as CVAT's project
    label editor takes them in its "Raw" tab: ``[{"name", "color": "#rrggbb", "type":
    "mask", "attributes": []}]``.  CVAT ignores the labels inside an uploaded annotation
    file, so a project made from these is what lets it accept ``annotations.xml``."""
    palette = LABEL_SETS[label_set].palette.tolist()
    return [{"name": name, "color": f"#{r:02x}{g:02x}{b:02x}", "type": "mask", "attributes": []}
            for name, (r, g, b) in [*zip(class_names(label_set), palette[1:]), (IGNORE_NAME, (255, 255, 255))]]


def export_cvat(synth_dir: str | Path, out: str | Path, selection: Selection = Selection()) -> dict:
    """Write ``annotations.xml``, ``labels.json`` (:func:`cvat_labels`) and ``partsynth.json`` for the labelled images of a
    synthesized dataset (``selection``: which, in which order, and with ``copy_images`` the
    photos to ``out/images``).  Returns {"images", "masks",
    "images_left_out", "label_set"}.  Raises DataError for a folder that is not a
    synthesized dataset."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = f"partsynth-{info.refiner_sha256[:12]} ({info.label_set})"
    ET.SubElement(task, "size").text = str(len(images))
    labels = ET.SubElement(task, "labels")
    for spec in cvat_labels(info.label_set):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = spec["name"]
        ET.SubElement(label, "color").text = spec["color"]
        ET.SubElement(label, "type").text = spec["type"]
        ET.SubElement(label, "attributes")
    masks = 0
    for i, image in enumerate(images):
        if selection.copy_images:
            copy_photo(image, out / "images")
        label_map = image.label_map()
        h, w = label_map.shape
        el = ET.SubElement(root, "image", id=str(i), name=image.name, width=str(w), height=str(h))
        for c in np.unique(label_map):
            if c == 0:
                continue
            runs, (left, top, bw, bh) = mask_to_rle(label_map == c)
            ET.SubElement(el, "mask", label=class_name(int(c), info.label_set), source="auto", occluded="0",
                          rle=", ".join(map(str, runs)), left=str(left), top=str(top), width=str(bw), height=str(bh),
                          z_order="0")
            masks += 1
    out.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    with files.atomic_path(out / ANNOTATIONS_FILE) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    files.write_json(out / LABELS_FILE, cvat_labels(info.label_set))
    write_meta(out, images)
    return {"images": len(images), "masks": masks, "images_left_out": n_labelled - len(images),
            "label_set": info.label_set}


def import_cvat(annotations: str | Path, out: str | Path, *, meta: str | Path | None = None,
                replace: bool = False) -> dict:
    """Read a corrected "CVAT for images 1.1" export of :func:`export_cvat`'s images into the
    labelled partsynth folder ``out`` (:class:`pipeline.annotation.common.LabelledWriter`).
    Images without a mask count as not annotated and are skipped.

    Returns {"images", "people", "not_annotated"}.  Raises DataError naming the image for an
    unknown label, a shape other than a mask, a bad RLE, a size mismatch, or an image
    ``partsynth.json`` does not know; ConfigError as :class:`LabelledWriter`."""
    annotations = Path(annotations)
    try:
        root = ET.parse(annotations).getroot()
    except ET.ParseError as e:
        raise DataError(annotations, f"not XML: {e}") from None
    if root.tag != "annotations":
        raise DataError(annotations, f"expected CVAT's <annotations>, got <{root.tag}>")
    facts = read_meta(annotations.parent, meta)
    skipped = 0
    with LabelledWriter(out, replace) as writer:
        for image in root.iter("image"):
            where = f"{annotations} image {image.get('id')} ({image.get('name')})"
            fact = facts.lookup(image.get("name", ""), where)
            shapes = list(image)
            others = sorted({s.tag for s in shapes if s.tag != "mask"})
            if others:
                raise DataError(where, f"only masks can be imported, found {', '.join(others)}")
            if not shapes:
                skipped += 1
                continue
            h, w = int(image.get("height")), int(image.get("width"))
            label_map = np.zeros((h, w), np.uint8)
            for m in sorted(shapes, key=lambda s: int(s.get("z_order", 0))):
                try:
                    runs = [int(v) for v in m.get("rle", "").split(",")]
                    box = tuple(int(float(m.get(k))) for k in ("left", "top", "width", "height"))
                except (TypeError, ValueError):
                    raise DataError(where, f"a {m.get('label')!r} mask has a bad rle or box") from None
                label_map[rle_to_mask(runs, box, (h, w), where)] = class_id(m.get("label"), fact["label_set"], where)
            writer.add(fact, label_map, where)
        writer.finish("CVAT", annotations)
    return {"images": writer.images, "people": len(writer.people), "not_annotated": skipped}
