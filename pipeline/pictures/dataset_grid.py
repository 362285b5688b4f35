"""A PNG grid of people from any labelled dataset: the person crop with its label overlay
(for looking at synthesized labels), or with its person mask for a keypoints folder."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.formats import files
from pipeline.labels import LABEL_SETS
from pipeline.pictures.overlay import colorize, draw_keypoints, grid, overlay
from pipeline.priors.pose import apply_affine, person_box
from pipeline.priors.bank import crop_image, crop_label_map
from pipeline.formats.records import PersonRecord


#: background black, person mask green
PERSON_MASK_PALETTE = np.array([[0, 0, 0], [40, 220, 90]], dtype=np.uint8)


def people_grid(records: Sequence[PersonRecord], tile: int = 128, per_row: int = 4,
                photos: bool = True) -> np.ndarray:
    """uint8 RGB grid; per person two tiles: crop with keypoints | label overlay (or the
    colour label map alone with ``photos=False``).  Records need keypoints and a label
    map or, in a keypoints folder, a person mask (``meta["person_mask"]``, shown green)."""
    tiles = []
    for rec in records:
        box = person_box(rec.keypoints, 0.25, path=rec.image_path)
        if rec.label_map is not None:
            pal, lm = LABEL_SETS[rec.label_set].palette, crop_label_map(rec.label_map, box, tile)
        else:
            mask = (files.read_label_png(rec.meta["person_mask"]) >= 128).astype(np.uint8)
            pal, lm = PERSON_MASK_PALETTE, crop_label_map(mask, box, tile)
        kp = apply_affine(rec.keypoints, box.crop_from_image(tile))
        if photos:
            img = crop_image(files.read_image(rec.image_path), box, tile)
            tiles += [draw_keypoints(img, kp), overlay(img, lm, 0.6, pal)]
        else:
            tiles += [draw_keypoints(np.zeros((tile, tile, 3), np.uint8), kp), colorize(lm, pal)]
    rows = [tiles[i:i + 2 * per_row] for i in range(0, len(tiles), 2 * per_row)]
    return grid(rows, tile)
