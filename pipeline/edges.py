"""Body edges from label maps, and the edge F-measure at the optimal dataset threshold (ODS).

Edge ground truth follows HTCorrM (Zhang et al., "On the Correlation among Edge, Pose and
Parsing", TPAMI 2021, section 4.2): no dataset has edge labels, so a pixel is an edge where
the label map changes class: part boundaries and the person's outline alike.

ODS follows the BSDS protocol (Martin et al., TPAMI 2004; Arbelaez et al., TPAMI 2011) in a
simplified form, stated with every result: edge probabilities are thresholded at each of
``thresholds`` (no non-maximum suppression or thinning); a predicted edge pixel is correct
when a ground-truth edge pixel lies within ``tolerance`` pixels of it (precision), a
ground-truth edge pixel is found when a predicted one lies within ``tolerance`` (recall);
counts are summed over the data set per threshold and the best F = 2PR / (P + R) is ODS.
BSDS's default tolerance is 0.0075 of the image diagonal (1.5 px at 160 x 120).
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.labels import IGNORE

THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)
BSDS_MAX_DIST = 0.0075


def label_boundaries(label_map: np.ndarray, ignore: int = IGNORE) -> np.ndarray:
    """Edge pixels of a label map: pixels whose right or lower neighbour has another class,
    and those neighbours (so a boundary is 2 pixels wide, one on each side).  Pixels next
    to ``ignore`` are not edges.

    Shape: label_map int (H, W) class ids -> bool (H, W).  Raises ValueError for a non-2-D map."""
    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {lab.shape}")
    edge = np.zeros(lab.shape, bool)
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        d = (a != b) & (a != ignore) & (b != ignore)
        if a.shape[1] != lab.shape[1]:                      # horizontal neighbours
            edge[:, :-1] |= d
            edge[:, 1:] |= d
        else:
            edge[:-1, :] |= d
            edge[1:, :] |= d
    return edge


def _near(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` (Euclidean, pixels) of a True pixel of ``mask``."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= tolerance


def edge_counts(prob: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None,
                thresholds: np.ndarray = THRESHOLDS, tolerance: float = 1.5) -> np.ndarray:
    """Matching counts of one image at every threshold.

    Args:
        prob: float (H, W) edge probabilities in [0, 1].
        truth: bool (H, W) ground-truth edges (:func:`label_boundaries`).
        valid: bool (H, W) pixels scored (None: all), e.g. not ignore.
        thresholds: float (T,) in (0, 1).
        tolerance: matching distance in pixels.
    Returns: int64 (T, 4): correct predicted edge pixels, predicted edge pixels, found
    ground-truth edge pixels, ground-truth edge pixels.  Raises ValueError on shape mismatch."""
    if prob.shape != truth.shape or (valid is not None and valid.shape != truth.shape):
        raise ValueError(f"shapes differ: prob {prob.shape}, truth {truth.shape}")
    valid = np.ones(truth.shape, bool) if valid is None else valid
    truth = truth & valid
    near_truth = _near(truth, tolerance)
    out = np.zeros((len(thresholds), 4), np.int64)
    for i, t in enumerate(thresholds):
        pred = (prob >= t) & valid
        out[i] = [(pred & near_truth).sum(), pred.sum(), (truth & _near(pred, tolerance)).sum(), truth.sum()]
    return out


def ods(counts: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> dict:
    """ODS from :func:`edge_counts` summed over a data set: int (T, 4) -> {"ods", "threshold",
    "precision", "recall"} at the best threshold (all 0 when nothing is predicted or true)."""
    c = counts.astype(np.float64)
    precision = np.divide(c[:, 0], c[:, 1], out=np.zeros(len(c)), where=c[:, 1] > 0)
    recall = np.divide(c[:, 2], c[:, 3], out=np.zeros(len(c)), where=c[:, 3] > 0)
    f = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(c)), where=precision + recall > 0)
    i = int(np.argmax(f))
    return {"ods": float(f[i]), "threshold": float(thresholds[i]), "precision": float(precision[i]),
            "recall": float(recall[i])}
