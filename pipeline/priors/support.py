"""Foreground control: a person's label may only cover pixels its prior supports.

The refiner sees a whole crop and, where the backgrounds differ from the bank's (snow,
sports fields, crowds), paints clothes into the background.  A pixel that no morphed
neighbour covers cannot belong to the person unless the pose is badly off, so synthesis
clips each person's probabilities to the *prior support*: the pixels where some
neighbour has a foreground class, dilated by a margin in crop pixels that leaves room for
loose clothes and hair the neighbours lack.

Where a person mask exists (BlazePose's from ``partsynth keypoints``), the pasted label is
clipped to it and, optionally, the mask's unlabelled pixels are filled from the nearest
labelled part (:func:`apply_person_masks`).
"""
from __future__ import annotations

import cv2
import numpy as np


def prior_support(prior: np.ndarray, dilation: int) -> np.ndarray:
    """Pixels a person may occupy, bool (S, S).

    Args:
        prior: float32 (C, S, S) part-level prior (channel 0 background), summing to 1
            over C where a neighbour covers the pixel.
        dilation: margin in crop pixels (>= 0); the support grows by a disc of this radius.

    Raises: ValueError for a negative ``dilation``."""
    if dilation < 0:
        raise ValueError(f"support dilation must be >= 0 crop pixels, got {dilation}")
    covered = (prior[1:].sum(axis=0) > 1e-6).astype(np.uint8)
    if dilation:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        covered = cv2.dilate(covered, disc)
    return covered.astype(bool)


def clip_to_support(probs: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Class probabilities float32 (C, S, S) with every pixel outside ``support`` (bool
    (S, S)) set to certain background (1 for class 0, 0 for the others); a new array."""
    out = probs.copy()
    out[:, ~support] = 0.0
    out[0, ~support] = 1.0
    return out


def apply_person_masks(label_map: np.ndarray, owner: np.ndarray, masks: list[np.ndarray | None],
                       fill: bool = True, ignore: int = 255) -> None:
    """Clip pasted people to their person masks (e.g. BlazePose's), in place.

    For person ``j`` with a mask: its foreground pixels outside the mask become background;
    with ``fill``, the mask's pixels left background (and owned by no other person's
    foreground) take the class of person ``j``'s nearest foreground pixel (Euclidean
    distance transform) and become ``j``'s.  People without a mask (None) are untouched.

    Args:
        label_map: uint8 (H, W) class ids (0 background, ``ignore`` kept as is).
        owner: int16 (H, W) index of the person each pixel came from
            (:class:`pipeline.priors.paste.Pasted`; -1: none).
        masks: per person (index = owner id), bool (H, W) person mask or None.
    Raises: ValueError when a mask's shape differs from the label map's.
    """
    from scipy import ndimage

    for j, mask in enumerate(masks):
        if mask is None:
            continue
        if mask.shape != label_map.shape:
            raise ValueError(f"person mask {mask.shape} differs from the label map {label_map.shape}")
        mine = owner == j
        label_map[mine & ~mask & (label_map != ignore)] = 0
        if not fill:
            continue
        fg = mine & (label_map > 0) & (label_map != ignore)
        hole = mask & (label_map == 0)
        if not fg.any() or not hole.any():
            continue
        ys, xs = np.nonzero(fg | hole)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        _, (iy, ix) = ndimage.distance_transform_edt(~fg[y0:y1, x0:x1], return_indices=True)
        nearest = label_map[y0:y1, x0:x1][iy, ix]
        h = hole[y0:y1, x0:x1]
        label_map[y0:y1, x0:x1][h] = nearest[h]
        owner[y0:y1, x0:x1][h] = j
