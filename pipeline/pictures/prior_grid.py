"""The visual check of priors: a PNG grid, one row per query person:
image | its k neighbours (image with label overlay) | prior (colour-mixed) | argmax | ground truth."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.formats import files
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.pictures.overlay import colorize, draw_keypoints, grid, overlay
from pipeline.priors.pose import apply_affine, person_box
from pipeline.priors.bank import PriorBank, crop_image, crop_label_map
from pipeline.formats.records import PersonRecord


def prior_colour(prior: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """float32 (C, S, S) prior -> uint8 (S, S, 3): class colours mixed by probability."""
    pal = palette[: prior.shape[0]].astype(np.float32)
    return np.clip(np.einsum("chw,cd->hwd", prior, pal), 0, 255).astype(np.uint8)


def prior_grid(bank: PriorBank, queries: Sequence[PersonRecord], k: int, tile: int = 128,
               photos: bool = True) -> np.ndarray:
    """uint8 RGB grid for ``queries`` (records with keypoints; label maps optional), their
    priors built from ``bank`` excluding the query person itself.  ``photos=False`` draws
    skeletons and label maps on black instead of the photographs (for publishing a grid
    without redistributing a dataset's images)."""
    pal = LABEL_SETS[bank.label_set].palette
    by_id = {e.person_id: i for i, e in enumerate(bank.exemplars) if not e.flipped}
    size = bank.config.size
    rows = []
    for rec in queries:
        box = person_box(rec.keypoints, bank.config.margin, path=rec.image_path)
        kp = apply_affine(rec.keypoints, box.crop_from_image(size))
        group = bank.groups[by_id[rec.person_id]] if rec.person_id in by_id else None
        nb = bank.index.query(kp, k, exclude_groups=None if group is None else [group])
        ids = [i for i in nb.ids[0] if i >= 0]
        black = np.zeros((size, size, 3), np.uint8)
        img = crop_image(files.read_image(rec.image_path), box, size) if photos else black
        row = [draw_keypoints(img, kp)]
        for i in ids:
            ex = bank.exemplars[i]
            ex_img = crop_image(files.read_image(ex.image_path), ex.box, size) if photos else black
            if ex.flipped:
                ex_img = ex_img[:, ::-1]
            row.append(draw_keypoints(overlay(ex_img, ex.label_map, 0.5 if photos else 1.0, pal),
                                      ex.keypoints))
        prior = bank.prior(kp, ids) if ids else bank.mean_prior()
        row += [prior_colour(prior, pal), colorize(prior.argmax(0).astype(np.uint8), pal)]
        if rec.label_map is not None:
            row.append(colorize(crop_label_map(rec.label_map, box, size, outside=IGNORE), pal))
        rows.append(row)
    return grid(rows, tile)
