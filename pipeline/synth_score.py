"""Scoring synthesized labels against ground truth on whole photos.

Synthesize a labelled split as if it were keypoint-only (``partsynth synthesize
--relabel``), then compare each image's synthesized label map with its ground truth:
one confusion matrix over every pixel of the scored images, background included
(method.md section 8).  An image synthesis could not label (no usable pose, unreadable)
counts as all background, so skipping people is never rewarded; so do pixels synthesis
marked ignore (``--min-pixel-confidence``), whose share is reported.  The person silhouette
(label > 0) is scored too: it says how well synthesis separates people from background,
whatever the part classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.readers.layouts import iter_records
from pipeline.metrics import ConfusionMatrix
from pipeline.formats.records import ReadReport
from pipeline.formats.synth_dataset import item_files, read_items, read_synth_info


def _label_files(folder: Path) -> tuple[str, list[tuple[str, str | None]]]:
    """(label set, [(image, label PNG relative to ``folder`` or None)]) of a synthesized
    dataset or a predictions folder (:mod:`pipeline.formats.predictions`)."""
    from pipeline.formats.predictions import read_predicted_item
    from pipeline.formats.folder import DATASET_FILE, read_dataset_info

    info = read_dataset_info(folder) if (folder / DATASET_FILE).is_file() else {}
    if info.get("predicted"):
        items = [read_predicted_item(p) for p in item_files(folder)]
        return info["label_set"], [(i.image, i.label) for i in items]
    return read_synth_info(folder).label_set, [(i.image, i.label) for i in read_items(folder)]


def score_synthesis(synth_dir: str | Path, truth: str | Path, split: str | None = "val",
                    layout: str | None = None) -> dict:
    """Score the synthesized dataset ``synth_dir`` against the labelled dataset ``truth``.

    Args:
        synth_dir: a synthesized dataset (:mod:`pipeline.formats.synth_dataset`) made from ``truth``
            with ``relabel`` (or from the same photos), or a predictions folder of
            ``partsynth predict`` on ``truth``'s photos (:mod:`pipeline.formats.predictions`).
        truth: the labelled dataset, read in the synthesized set's label set.
        split: the ground-truth split scored (None: every labelled image).
        layout: force the layout of ``truth``.

    Returns: JSON-ready dict: ``mean_iou``, ``pixel_accuracy``, ``mean_accuracy``, per-class
    ``iou`` (by class name), ``silhouette_iou`` (label > 0 against label > 0), all in
    [0, 1]; ``images`` scored and ``images_unlabelled`` (scored as all background);
    ``ignored_fraction``, the share of scored pixels synthesis marked ignore (255, scored
    as background), and ``kept_mean_iou``, the mIoU over the pixels it did not ignore
    (what a parser trains on).
    Raises: ConfigError when no image of ``synth_dir`` has ground truth in ``truth``;
    DataError for a label PNG whose size differs from its ground truth."""
    label_set, labels = _label_files(Path(synth_dir))
    lset = LABEL_SETS[label_set]
    gt_of: dict[str, np.ndarray] = {}
    for r in iter_records(truth, layout, skip_bad=True, report=ReadReport(), label_set=lset.name):
        if r.label_map is not None and (split is None or r.split == split):
            gt_of.setdefault(str(Path(r.image_path).resolve()), r.label_map)
    parts, silhouette = ConfusionMatrix(lset.num_classes), ConfusionMatrix(2)
    kept = ConfusionMatrix(lset.num_classes)
    images = unlabelled = ignored = pixels = 0
    for image, label in labels:
        gt = gt_of.get(str(Path(image).resolve()))
        if gt is None:
            continue
        if label:
            path = Path(synth_dir) / label
            pred = files.read_label_png(path)
            if pred.shape != gt.shape:
                raise DataError(path, f"label map {pred.shape} differs from its ground truth {gt.shape}")
        else:
            pred, unlabelled = np.zeros_like(gt), unlabelled + 1
        uncertain = pred == IGNORE
        ignored, pixels = ignored + int(uncertain.sum()), pixels + pred.size
        pred = np.where(uncertain, 0, pred)
        kept.update(np.where(uncertain, IGNORE, gt), pred)
        parts.update(gt, pred)
        silhouette.update(np.where(gt == IGNORE, IGNORE, gt > 0).astype(np.uint8), (pred > 0).astype(np.uint8))
        images += 1
    if not images:
        raise ConfigError(f"{synth_dir}: no synthesized image has ground truth in {truth}"
                          + (f" (split {split})" if split else ""))
    scores = parts.compute().as_dict(lset.names)
    del scores["class_accuracy"]
    return dict(scores, silhouette_iou=float(silhouette.compute().iou[1]), images=images,
                images_unlabelled=unlabelled, ignored_fraction=ignored / pixels,
                kept_mean_iou=kept.compute().mean_iou)
