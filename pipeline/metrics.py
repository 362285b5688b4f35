"""Parsing metrics from one confusion matrix over a whole set, and PCK/PCKh for pose.

Parsing follows method.md section 8 (and torchvision's segmentation reference): one
confusion matrix accumulated over every pixel of the evaluation set, background
included, ignore label 255 skipped; per-class IoU, mean IoU, pixel accuracy, mean
accuracy.  Classes that appear neither in the ground truth nor in the predictions have
an undefined IoU (NaN) and are left out of the means.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.labels import IGNORE
from pipeline.skeleton import J


class ConfusionMatrix:
    """Accumulates an int64 (C, C) confusion matrix: rows = ground truth, columns = prediction.

    Args:
        num_classes: C, the number of classes including background (id 0).
        ignore_index: ground-truth value skipped (255).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one (or a batch of) label maps: integer arrays of equal shape.

        Raises: ValueError on a shape mismatch or ids >= C outside the ignore label.
        """
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
        keep = gt != self.ignore_index
        g, p = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
        if g.size and (g.max() >= self.num_classes or g.min() < 0):
            raise ValueError(f"ground-truth ids outside 0..{self.num_classes - 1}")
        if p.size and (p.max() >= self.num_classes or p.min() < 0):
            raise ValueError(f"predicted ids outside 0..{self.num_classes - 1}")
        self.mat += np.bincount(self.num_classes * g + p,
                                minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def compute(self) -> "ParsingScores":
        """Scores of everything accumulated so far."""
        return scores_from_confusion(self.mat)


@dataclass(frozen=True)
class ParsingScores:
    """Per-class IoU and accuracy (float64 (C,), NaN where undefined) and their summaries
    in [0, 1]: ``mean_iou``, ``pixel_accuracy``, ``mean_accuracy``."""

    iou: np.ndarray
    class_accuracy: np.ndarray
    mean_iou: float
    pixel_accuracy: float
    mean_accuracy: float

    def as_dict(self, names: tuple[str, ...] | None = None) -> dict:
        """JSON-ready dict; per-class values keyed by class name when ``names`` is given."""
        keys = names or tuple(str(i) for i in range(len(self.iou)))
        f = lambda x: None if np.isnan(x) else float(x)
        return {"mean_iou": f(self.mean_iou), "pixel_accuracy": f(self.pixel_accuracy),
                "mean_accuracy": f(self.mean_accuracy),
                "iou": {k: f(v) for k, v in zip(keys, self.iou)},
                "class_accuracy": {k: f(v) for k, v in zip(keys, self.class_accuracy)}}


def scores_from_confusion(mat: np.ndarray) -> ParsingScores:
    """Per-class IoU = TP / (TP + FP + FN), accuracy = TP / (TP + FN) from int (C, C)."""
    mat = np.asarray(mat, dtype=np.float64)
    tp = np.diag(mat)
    gt_total, pred_total = mat.sum(axis=1), mat.sum(axis=0)
    union = gt_total + pred_total - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_total > 0, tp / gt_total, np.nan)
        pixel = tp.sum() / mat.sum() if mat.sum() > 0 else np.nan
    mean = lambda x: float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
    return ParsingScores(iou, acc, mean(iou), float(pixel), mean(acc))


def mean_iou(gts, preds, num_classes: int, ignore_index: int = IGNORE) -> ParsingScores:
    """Scores over a whole set: iterables of integer (H, W) ground-truth and predicted maps."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    for g, p in zip(gts, preds, strict=True):
        cm.update(g, p)
    return cm.compute()


def pck(pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Percentage of Correct Keypoints.

    A joint is correct when ||pred - gt|| <= alpha * ref_length of its person.
    Args:
        pred, gt: float (N, J, 3) keypoints in pixels (canonical layout).  Only joints
            present in the ground truth (v > 0, finite) are scored; a missing or NaN
            prediction for such a joint counts as wrong.
        ref_length: float (N,) per-person reference length in pixels; people with a
            non-finite or non-positive length are left out.
        alpha: threshold fraction (0.2 for LSP's PCK, 0.5 for PCKh).
    Returns: (per-joint PCK float64 (J,), NaN where no joint was scored; overall PCK) in [0, 1].
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"pred and gt must both be (N, J, 3), got {pred.shape} and {gt.shape}")
    ref = np.asarray(ref_length, dtype=np.float64).reshape(-1)
    valid = (gt[..., 2] > 0) & np.isfinite(gt[..., :2]).all(-1) & (np.isfinite(ref) & (ref > 0))[:, None]
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    ok = (dist <= alpha * ref[:, None]) & (pred[..., 2] > 0)
    ok = np.where(np.isnan(dist), False, ok) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = ok.sum(0) / valid.sum(0)
    per_joint = np.where(valid.sum(0) > 0, per_joint, np.nan)
    total = ok.sum() / valid.sum() if valid.sum() else float("nan")
    return per_joint, float(total)


def head_size(gt: np.ndarray) -> np.ndarray:
    """Head segment length (upper neck to head top) in pixels, float (N,), NaN if missing.

    MPII's official PCKh uses 0.6 x the head box diagonal; without boxes we use this
    segment, as LIP and several re-implementations do (documented in docs/data.md).
    """
    gt = np.asarray(gt, dtype=np.float64)
    return np.linalg.norm(gt[:, J["head_top"], :2] - gt[:, J["upper_neck"], :2], axis=-1)


def torso_size(gt: np.ndarray) -> np.ndarray:
    """Torso size for LSP's PCK in pixels, float (N,): the distance from the left shoulder
    to the right hip (Johnson & Everingham's convention), NaN if either is missing."""
    gt = np.asarray(gt, dtype=np.float64)
    return np.linalg.norm(gt[:, J["left_shoulder"], :2] - gt[:, J["right_hip"], :2], axis=-1)


def pckh(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> tuple[np.ndarray, float]:
    """PCKh@alpha: :func:`pck` with the head segment length as reference."""
    return pck(pred, gt, head_size(gt), alpha)


def pck_torso(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.2) -> tuple[np.ndarray, float]:
    """PCK@alpha of the torso size (LSP's PCK@0.2)."""
    return pck(pred, gt, torso_size(gt), alpha)
