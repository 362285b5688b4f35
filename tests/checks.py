"""Assertions shared by tests that score a (barely trained) network."""
from __future__ import annotations

import pytest
import torch


def assert_scores_consistent(scores: dict, images: int) -> None:
    """A :meth:`ParsingScores.as_dict` row (+ ``images``) that a broken evaluation would not
    give: the image count, mIoU equal to the mean of the defined per-class IoUs, and a
    background IoU above zero (background covers most pixels of every image)."""
    ious = [v for v in scores["iou"].values() if v is not None]
    assert scores["images"] == images
    assert scores["mean_iou"] == pytest.approx(sum(ious) / len(ious))
    assert scores["iou"]["background"] > 0


def assert_import_round_trip(read, synth, labelled) -> None:
    """``read(labelled, replace=False)`` imports an unchanged export of the 8 synthesized
    images of ``synth``: every label map comes back identical, the people are train people
    with keypoints, a second import is refused and ``replace`` overwrites."""
    import numpy as np
    import pytest

    from pipeline.formats import files
    from pipeline.errors import ConfigError
    from pipeline.readers.layouts import iter_records
    from pipeline.formats.synth_dataset import read_items

    assert read(labelled) == {"images": 8, "people": 8, "not_annotated": 0}
    synthesized = {i.image: files.read_label_png(synth / i.label) for i in read_items(synth)}
    recs = list(iter_records(labelled))
    assert len(recs) == 8 and all(r.split == "train" and r.keypoints is not None for r in recs)
    for r in recs:
        assert np.array_equal(r.label_map, synthesized[str(r.image_path)])
    with pytest.raises(ConfigError, match="already labelled"):
        read(labelled)
    assert read(labelled, replace=True)["people"] == 8


def assert_gradients_reach(parts: list[tuple[str, torch.nn.Module]]) -> None:
    """After ``backward()``: every parameter of each named module has a finite gradient
    and at least one of them is non-zero (the part takes part in the loss)."""
    for name, part in parts:
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name
