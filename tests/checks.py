"""Assertions shared by tests that score a (barely trained) network."""
from __future__ import annotations

import pytest


def assert_scores_consistent(scores: dict, images: int) -> None:
    """A :meth:`ParsingScores.as_dict` row (+ ``images``) that a broken evaluation would not
    give: the image count, mIoU equal to the mean of the defined per-class IoUs, and a
    background IoU above zero (background covers most pixels of every image)."""
    ious = [v for v in scores["iou"].values() if v is not None]
    assert scores["images"] == images
    assert scores["mean_iou"] == pytest.approx(sum(ious) / len(ious))
    assert scores["iou"]["background"] > 0
