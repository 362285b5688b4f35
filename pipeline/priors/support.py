"""Foreground control: a person's label may only cover pixels its prior supports.

The refiner sees a whole crop and, where the backgrounds differ from the bank's (snow,
sports fields, crowds), paints clothes into the background.  A pixel that no morphed
neighbour covers cannot belong to the person unless the pose is badly off, so synthesis
clips each person's probabilities to the *prior support*: the pixels where some
neighbour has a foreground class, dilated by a margin in crop pixels that leaves room for
loose clothes and hair the neighbours lack.
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
