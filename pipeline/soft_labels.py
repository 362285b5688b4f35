"""Soft labels of synthesized images: the refiner's class distributions, pasted whole.

A synthesized dataset made with ``--save-probabilities`` keeps every refined person's
crop probabilities (``probs/<item>.npz``, uint8 (N, C, S, S) = round(255 x p)) beside the
crop boxes in its item records.  Pasted back into the image the way the label map was
(:func:`pipeline.priors.paste.paste_people`), they give a per-pixel class distribution
that a parser can learn from instead of the argmax (knowledge distillation, Hinton et
al., 2015; lever 3 of docs/results.md, 'Making synthetic labels pay off').

Wherever synthesis changed a pixel after pasting (prior support, person masks, pixels
below the confidence floor marked 255), the stored label map wins: the soft label there
is the one-hot of the label map's class, so the soft and hard labels never disagree on
anything but the refiner's uncertainty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.labels import IGNORE
from pipeline.priors.paste import paste_people
from pipeline.priors.pose import CropBox
from pipeline.formats.synth_dataset import SynthItem, read_items


def soft_label_map(item: SynthItem, probs: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """The soft label of one synthesized image.

    Args:
        item: its item record (image size, people with their crop boxes).
        probs: uint8 (N, C, S, S) crop probabilities x 255 of the N people that reached
            the refiner (those with a box, in record order).
        label_map: uint8 (H, W) its stored label map (class ids, 255 ignore).
    Returns: uint8 (H, W, C) class distribution x 255 (rows sum to about 255; 0 where the
        label map is 255).
    Raises: DataError naming the image when the counts or sizes disagree."""
    boxes = [CropBox(*p.box) for p in item.persons if p.box is not None]
    if probs.ndim != 4 or len(boxes) != probs.shape[0]:
        raise DataError(item.image, f"{probs.shape[0] if probs.ndim == 4 else '?'} people's probabilities for "
                                    f"{len(boxes)} refined people")
    if tuple(label_map.shape) != tuple(item.image_size):
        raise DataError(item.image, f"label map {label_map.shape} differs from the image size {item.image_size}")
    c = probs.shape[1]
    if label_map[label_map != IGNORE].max(initial=0) >= c:
        raise DataError(item.image, f"label ids beyond the {c} classes of its probabilities")
    pasted = paste_people(item.image_size, [p.astype(np.float32) / 255.0 for p in probs], boxes,
                          with_probabilities=True)
    soft = np.round(np.moveaxis(pasted.probabilities, 0, -1) * 255.0).astype(np.uint8)     # (H, W, C)
    # changed after pasting, or a tie after rounding: the label map's class, one-hot
    overridden = (soft.argmax(-1) != label_map) & (label_map != IGNORE)
    soft[overridden] = np.eye(c, dtype=np.uint8)[label_map[overridden]] * 255
    soft[label_map == IGNORE] = 0
    return soft


class SoftLabels:
    """The soft labels of one or more synthesized folders, looked up by image path.

    Raises (on construction): DataError naming the folder when it holds labelled images
    without saved probabilities (made without ``--save-probabilities``)."""

    def __init__(self, folders: list[str | Path]):
        self._items: dict[Path, tuple[Path, SynthItem]] = {}
        for folder in map(Path, folders):
            items = [it for it in read_items(folder) if it.label]
            missing = [it for it in items if not it.probs]
            if missing:
                raise DataError(folder, f"{len(missing)} of {len(items)} labelled images have no saved "
                                        "probabilities (synthesize with --save-probabilities for soft targets)")
            self._items.update({Path(it.image).resolve(): (folder, it) for it in items})

    def __call__(self, image_path: str | Path, label_map: np.ndarray) -> np.ndarray | None:
        """uint8 (H, W, C) soft label of ``image_path`` (:func:`soft_label_map`), or None
        for an image none of the folders synthesized.  Raises DataError for a missing or
        unreadable probabilities file."""
        found = self._items.get(Path(image_path).resolve())
        if found is None:
            return None
        folder, item = found
        path = folder / item.probs
        try:
            with np.load(path) as npz:
                probs = npz["probs"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(path, f"unreadable probabilities ({e})") from None
        return soft_label_map(item, probs, label_map)
