"""Synthesized labels in the folder layouts that other parsers' training code reads:
mmsegmentation's custom dataset and LIP's (which SCHP's loaders read).

mmseg (:func:`export_mmseg`)::

    img_dir/{train,val}/<stem><photo suffix>     the photos
    ann_dir/{train,val}/<stem>.png               8-bit label maps: pixel = class id, 255 ignore
    classes.txt                                  class names in id order, background first

LIP (:func:`export_lip`; Gong et al., CVPR 2017)::

    {train,val}_images/<stem>.jpg                the photos (other suffixes kept as they are)
    {train,val}_segmentations/<stem>.png         label maps as above
    {train,val}_id.txt                           the stems, one per line

Both write ``partsynth.json`` beside them (:func:`pipeline.annotation.common.write_meta`).
An image goes to ``val`` when one of its people was synthesized from the val split
(``synthesize --relabel --split val``), else to ``train``.  Label maps are palette PNGs
whose pixel values are the class ids, which both readers take as they are (PIL mode "P").
"""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.formats import files
from pipeline.annotation.common import Selection, select_images, write_meta
from pipeline.labels import LABEL_SETS

SPLITS = ("train", "val")


def export_mmseg(synth_dir: str | Path, out: str | Path, selection: Selection = Selection()) -> dict:
    """Write mmsegmentation's ``img_dir``/``ann_dir`` layout (module docstring) for the
    labelled images of a synthesized dataset; the photos are always copied.
    Returns {"images", "images_left_out", "label_set", "train", "val"}.  Raises DataError
    for a folder that is not a synthesized dataset."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    palette = LABEL_SETS[info.label_set].palette
    for image in images:
        stem = image.stem
        _copy(image.photo, out / "img_dir" / image.split / image.name)
        files.write_label_png(out / "ann_dir" / image.split / f"{stem}.png", image.label_map(), palette)
    for split in SPLITS:
        (out / "img_dir" / split).mkdir(parents=True, exist_ok=True)
        (out / "ann_dir" / split).mkdir(parents=True, exist_ok=True)
    _write_text(out / "classes.txt", "".join(f"{n}\n" for n in LABEL_SETS[info.label_set].names))
    write_meta(out, images)
    return _totals(images, n_labelled, info.label_set)


def export_lip(synth_dir: str | Path, out: str | Path, selection: Selection = Selection()) -> dict:
    """Write LIP's layout (module docstring) for the labelled images of a synthesized
    dataset; the photos are always copied.  Returns {"images", "images_left_out",
    "label_set", "train", "val"}.  Raises DataError for a folder that is not a synthesized
    dataset."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    palette = LABEL_SETS[info.label_set].palette
    for image in images:
        stem = image.stem
        _copy(image.photo, out / f"{image.split}_images" / image.name)
        files.write_label_png(out / f"{image.split}_segmentations" / f"{stem}.png", image.label_map(), palette)
    for split in SPLITS:
        _write_text(out / f"{split}_id.txt", "".join(f"{i.stem}\n" for i in images if i.split == split))
    write_meta(out, images)
    return _totals(images, n_labelled, info.label_set)


def _copy(photo: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(dest) as tmp:
        shutil.copyfile(photo, tmp)


def _write_text(path: Path, text: str) -> None:
    with files.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _totals(images, n_labelled: int, label_set: str) -> dict:
    return {"images": len(images), "images_left_out": n_labelled - len(images), "label_set": label_set,
            **{split: sum(i.split == split for i in images) for split in SPLITS}}
