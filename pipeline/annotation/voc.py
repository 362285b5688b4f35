"""Pre-annotations as Pascal VOC segmentation, and corrected VOC exports back in (Everingham
et al., IJCV 2010, the layout CVAT and Datumaro read and write as "PASCAL VOC").

Export (:func:`export_voc`) writes ``SegmentationClass/<id>.png`` (the image id: the
export name, :func:`pipeline.annotation.common.export_names`, without its suffix) (8-bit palette PNGs:
pixel value = class id, the label set's palette; 255 = VOC's void, our ignore),
``ImageSets/Segmentation/default.txt`` (the ids, lowest confidence first by default) and
``train.txt`` / ``val.txt`` (the same split by the people's split: ``val`` for people
synthesized from the val split, ``train`` for the rest),
``labelmap.txt`` (``name:r,g,b::`` per class in id order, as CVAT writes it) and
``partsynth.json`` beside them; ``JPEGImages/`` with the photos when asked.

Import (:func:`import_voc`) reads each listed id's PNG (palette indices; or RGB colours
mapped through ``labelmap.txt``), maps the indices to the label set by the class names of
``labelmap.txt`` (by id when there is none), 255 stays ignore.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.formats import files
from pipeline.annotation.common import (LabelledWriter, Selection, class_id, class_names, copy_photo, read_meta,
                                        select_images, write_meta)
from pipeline.errors import DataError
from pipeline.labels import IGNORE, LABEL_SETS

LIST_FILE = Path("ImageSets/Segmentation/default.txt")
MASK_DIR, IMAGE_DIR, LABELMAP_FILE = Path("SegmentationClass"), Path("JPEGImages"), "labelmap.txt"


def labelmap_text(label_set: str) -> str:
    """``labelmap.txt`` of a label set: a header, ``background``, then its classes in id order."""
    palette = LABEL_SETS[label_set].palette.tolist()
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{n}:{r},{g},{b}::" for n, (r, g, b) in zip(["background", *class_names(label_set)], palette)]
    return "\n".join(lines) + "\n"


def read_labelmap(path: Path) -> list[tuple[str, tuple[int, int, int] | None]]:
    """(name, colour or None) per index of a ``labelmap.txt``.  Raises DataError on a bad line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        rgb = rest.split(":")[0]
        try:
            colour = tuple(int(v) for v in rgb.split(",")) if rgb else None
        except ValueError:
            raise DataError(path, f"line {n}: bad colour {rgb!r}") from None
        out.append((name.strip(), colour))
    return out


def export_voc(synth_dir: str | Path, out: str | Path, selection: Selection = Selection()) -> dict:
    """Write the VOC segmentation layout and ``partsynth.json`` for the labelled images of a
    synthesized dataset (``selection``: which, in which order, and with ``copy_images`` the
    photos to ``out/JPEGImages``).  Returns {"images",
    "images_left_out", "label_set"}.  Raises DataError for a folder that is not a
    synthesized dataset."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    palette = LABEL_SETS[info.label_set].palette
    for image in images:
        if selection.copy_images:
            copy_photo(image, out / IMAGE_DIR)
        files.write_label_png(out / MASK_DIR / f"{image.stem}.png", image.label_map(), palette)
    (out / LIST_FILE).parent.mkdir(parents=True, exist_ok=True)
    for list_file, picked in ((LIST_FILE, images), (LIST_FILE.with_name("train.txt"), [i for i in images if i.split == "train"]),
                              (LIST_FILE.with_name("val.txt"), [i for i in images if i.split == "val"])):
        with files.atomic_path(out / list_file) as tmp:
            tmp.write_text("".join(f"{im.stem}\n" for im in picked), encoding="utf-8")
    with files.atomic_path(out / LABELMAP_FILE) as tmp:
        tmp.write_text(labelmap_text(info.label_set), encoding="utf-8")
    write_meta(out, images)
    return {"images": len(images), "images_left_out": n_labelled - len(images), "label_set": info.label_set}


def _index_map(labelmap: list[tuple[str, tuple | None]] | None, label_set: str, where: str) -> np.ndarray:
    """uint8 (256,) lookup from the PNG's indices to the label set's ids (255 for unknown
    indices is replaced by a check in :func:`_read_mask`)."""
    lut = np.full(256, 254, np.uint8)                     # 254: "not in the labelmap"
    lut[IGNORE] = IGNORE
    if labelmap is None:
        n = LABEL_SETS[label_set].num_classes
        lut[:n] = np.arange(n)
    else:
        for i, (name, _) in enumerate(labelmap):
            lut[i] = 0 if name == "background" else class_id(name, label_set, where)
    return lut


def _read_mask(path: Path, labelmap, label_set: str, where: str) -> np.ndarray:
    with Image.open(path) as im:
        rgb = im.mode == "RGB"
    if rgb:
        if labelmap is None or any(c is None for _, c in labelmap):
            raise DataError(path, "an RGB mask needs labelmap.txt with every class's colour")
        ids = files.rgb_to_label_map(files.read_image(path), np.array([c for _, c in labelmap], np.uint8), path=path)
    else:
        ids = files.read_label_png(path)
    label_map = _index_map(labelmap, label_set, where)[ids]
    if (label_map == 254).any():
        bad = sorted(set(np.unique(ids[label_map == 254]).tolist()))
        raise DataError(where, f"mask values {bad[:5]} are not classes of {label_set}"
                               + (" or of labelmap.txt" if labelmap else ""))
    return label_map


def import_voc(folder: str | Path, out: str | Path, *, meta: str | Path | None = None, replace: bool = False) -> dict:
    """Read a corrected VOC segmentation export (the folder holding ``ImageSets``,
    ``SegmentationClass`` and, if any, ``labelmap.txt``) of :func:`export_voc`'s images into
    the labelled partsynth folder ``out`` (:class:`pipeline.annotation.common.LabelledWriter`).
    Listed images without a mask PNG count as not annotated and are skipped.

    Returns {"images", "people", "not_annotated"}.  Raises DataError naming the image for an
    unknown class name or mask value, a size mismatch, or an image ``partsynth.json`` does not
    know; ConfigError as :class:`LabelledWriter`."""
    folder = Path(folder)
    if not (folder / LIST_FILE).is_file():
        raise DataError(folder, f"no {LIST_FILE}: not a VOC segmentation export")
    facts = read_meta(folder, meta)
    labelmap = read_labelmap(folder / LABELMAP_FILE) if (folder / LABELMAP_FILE).is_file() else None
    skipped = 0
    with LabelledWriter(out, replace) as writer:
        for stem in (folder / LIST_FILE).read_text(encoding="utf-8").split():
            where = f"{folder} image {stem}"
            fact = facts.lookup(stem, where, suffix_free=True)
            png = folder / MASK_DIR / f"{stem}.png"
            if not png.is_file():
                skipped += 1
                continue
            writer.add(fact, _read_mask(png, labelmap, fact["label_set"], where), where)
        writer.finish("a VOC export", folder)
    return {"images": writer.images, "people": len(writer.people), "not_annotated": skipped}
