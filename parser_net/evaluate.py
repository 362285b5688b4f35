"""Evaluating a parser on whole images: single- or multi-scale, optional flip, scored at
each label map's own resolution with one confusion matrix over the set (method.md 8)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.formats import files
from pipeline.errors import ConfigError
from pipeline.labels import IGNORE, LABEL_SETS, LabelSet
from pipeline.readers.layouts import iter_records
from pipeline.metrics import ConfusionMatrix, ParsingScores
from pipeline.pictures.overlay import colorize, grid
from pipeline.formats.records import PersonRecord
from parser_net.dataset import resize_long_side, to_tensor
from parser_net.networks import load_parser


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, long_side: int,
                          scales: tuple[float, ...] = (1.0,), flip_perm: np.ndarray | None = None) -> torch.Tensor:
    """Class probabilities float32 (C, H, W) of one uint8 (H, W, 3) RGB image at its own
    resolution: :func:`predict_probabilities_batch` of a batch of one."""
    return predict_probabilities_batch(model, [image], long_side, scales, flip_perm)[0]


@torch.no_grad()
def predict_probabilities_batch(model: torch.nn.Module, images: list[np.ndarray], long_side: int,
                                scales: tuple[float, ...] = (1.0,), flip_perm: np.ndarray | None = None,
                                heatmaps: list | None = None) -> list[torch.Tensor]:
    """Class probabilities of images, each at its own resolution.

    Args:
        model: a parser in eval mode returning ``{"parsing": (B, C, h, w)}``.
        images: uint8 (H, W, 3) RGB images of any sizes; at each scale those whose resized
            shapes agree go through the network in one batch.
        long_side: each image is resized so that its long side is ``long_side`` x scale.
        scales: test scales; probabilities are averaged over them (multi-scale testing).
        flip_perm: int (C,) class permutation mapping each class to its mirror; when given,
            the horizontally flipped images are parsed too, flipped back, their classes
            permuted, and averaged in.
        heatmaps: when given (a list as long as ``images``), filled with each image's
            ``"heatmaps"`` (1, J, h, w) of its unflipped scale-1 view (None without one),
            so that a joint network's keypoints need no second forward.
    Returns: float32 (C, H, W) CPU probabilities per image (softmax, averaged), summing to 1
    per pixel.
    """
    device = next(model.parameters(), torch.empty(0)).device
    totals: list[torch.Tensor | None] = [None] * len(images)
    perm = None if flip_perm is None else torch.as_tensor(flip_perm, device=device)
    for s in scales:
        small = [resize_long_side(im, max(8, round(long_side * s)), cv2.INTER_AREA) for im in images]
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(small):
            groups.setdefault(im.shape, []).append(i)
        for members in groups.values():
            x = torch.stack([to_tensor(small[i]) for i in members]).to(device)
            out = model(x)
            views = [out["parsing"].softmax(1)]
            if perm is not None:
                views.append(model(x.flip(-1))["parsing"].softmax(1).flip(-1)[:, perm])
            for j, i in enumerate(members):
                if heatmaps is not None and s == 1.0:
                    heatmaps[i] = out["heatmaps"][j:j + 1]
                for p in views:
                    p = F.interpolate(p[j:j + 1], size=images[i].shape[:2], mode="bilinear", align_corners=False)[0]
                    totals[i] = p if totals[i] is None else totals[i] + p
    n = len(scales) * (2 if perm is not None else 1)
    return [(t / n).cpu() for t in totals]   # bilinear weights sum to 1: each view's pixels already do


def label_map_of(probs: torch.Tensor) -> np.ndarray:
    """uint8 (H, W) most likely class of float (C, H, W) CPU probabilities (first class on
    ties).  numpy's argmax over the leading axis is about 4x faster than torch's here."""
    return np.argmax(probs.numpy(), axis=0).astype(np.uint8)


def evaluate_records(model: torch.nn.Module, records: Iterable[PersonRecord], label_set: LabelSet,
                     long_side: int, scales: tuple[float, ...] = (1.0,), flip: bool = False,
                     progress: Callable[[int], None] | None = None) -> tuple[ParsingScores, int]:
    """Parse every labelled image of ``records`` (each image once) and score it against its
    label map at full resolution (255 ignored; the records of one image merged,
    :func:`image_label_maps`).

    Returns: the scores and the number of images.  Raises: DataError for an unreadable
    image; ValueError when no record has a label map."""
    model.eval()
    perm = label_set.flip_lut()[:label_set.num_classes].astype(np.int64) if flip else None
    cm, n = ConfusionMatrix(label_set.num_classes), 0
    for image_path, truth in image_label_maps(records):
        probs = predict_probabilities(model, files.read_image(image_path), long_side, scales, perm)
        cm.update(truth, label_map_of(probs))
        n += 1
        if progress:
            progress(n)
    if not n:
        raise ValueError("no labelled images to evaluate")
    return cm.compute(), n


def image_label_maps(records: Iterable[PersonRecord]) -> list[tuple[Path, np.ndarray]]:
    """(image path, uint8 (H, W) label map) per labelled image, in first-seen order.  The
    records of one image are merged: a pixel another person's record leaves ignore (255,
    as PASCAL-Part's per-person maps leave the other people) takes the label of the record
    that labels it, so every labelled person of the image is scored."""
    merged: dict[Path, np.ndarray] = {}
    for r in records:
        if r.label_map is None:
            continue
        if r.image_path not in merged:
            merged[r.image_path] = r.label_map.copy()
            continue
        truth = merged[r.image_path]
        fill = (truth == IGNORE) & (r.label_map != IGNORE)
        truth[fill] = r.label_map[fill]
    return list(merged.items())


def scores_markdown(rows: dict[str, dict]) -> str:
    """A markdown table, one row per model, from :meth:`ParsingScores.as_dict` outputs
    (per-class IoU keyed by class name): per-class IoU, mIoU, pixel and mean accuracy (%)."""
    names = list(next(iter(rows.values()))["iou"])
    lines = ["| model | " + " | ".join(names) + " | mIoU | pixel acc | mean acc |",
             "|" + "---|" * (len(names) + 4)]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    for name, s in rows.items():
        lines.append(f"| {name} | " + " | ".join(pct(s["iou"][c]) for c in names) +
                     f" | **{pct(s['mean_iou'])}** | {pct(s['pixel_accuracy'])} | {pct(s['mean_accuracy'])} |")
    return "\n".join(lines) + "\n"


def evaluate_checkpoint(checkpoint: str, data: str, *, layout: str | None = None, split: str | None = None,
                        scales: tuple[float, ...] = (1.0,), flip: bool = False, device: str = "auto",
                        progress: Callable[[int], None] | None = None) -> tuple[ParsingScores, int, LabelSet]:
    """Score a parser checkpoint on the labelled images of any supported dataset layout.

    Args:
        checkpoint: ``last.pt`` of :func:`parser_net.train.train_parser`.
        data: dataset folder or annotation file; it is read in the checkpoint's label set.
        split: only records of this split (``val`` for CCP's held-out people); None: all.
        scales, flip: test-time augmentation (see :func:`predict_probabilities`).
        device: auto, cpu or cuda.
    Returns: scores, number of images, the label set.  Raises: ConfigError when the data
    has no labelled image (in ``split``) or its label set differs from the checkpoint's;
    CheckpointError when ``checkpoint`` is not a parser checkpoint; DataError for
    unreadable files."""
    model, ckpt = load_parser(checkpoint, device)
    label_set = LABEL_SETS[ckpt.label_set]
    records = [r for r in iter_records(data, layout, label_set=label_set.name)
               if r.label_map is not None and (split is None or r.split == split)]
    if not records:
        raise ConfigError(f"{data}: no labelled images" + (f" in split {split!r}" if split else ""))
    if records[0].label_set != label_set.name:
        raise ConfigError(f"{data}: labels are {records[0].label_set}, the parser predicts {label_set.name}")
    scores, n = evaluate_records(model, records, label_set, ckpt.network["size"], scales, flip, progress)
    return scores, n, label_set


def checkpoint_grid(checkpoints: dict[str, str], data: str, *, split: str | None = "val", n: int = 6,
                    photos: bool = True, layout: str | None = None) -> np.ndarray:
    """:func:`prediction_grid` of parser checkpoints ({name: last.pt}) on the first ``n``
    labelled images of ``data`` (in ``split``; None: any), read in the first checkpoint's
    label set at its training size."""
    loaded = {name: load_parser(path) for name, path in checkpoints.items()}
    ckpt = next(iter(loaded.values()))[1]
    label_set = LABEL_SETS[ckpt.label_set]
    recs = [r for r in iter_records(data, layout, label_set=label_set.name)
            if r.label_map is not None and (split is None or r.split == split)]
    first = list(dict.fromkeys(r.image_path for r in recs))[:n]               # the first n images, all their people
    recs = [r for r in recs if r.image_path in set(first)]
    return prediction_grid({k: m for k, (m, _) in loaded.items()}, recs, label_set, ckpt.network["size"],
                           photos=photos)


def prediction_grid(models: dict[str, torch.nn.Module], records: list[PersonRecord], label_set: LabelSet,
                    long_side: int, tile: int = 128, photos: bool = True) -> np.ndarray:
    """uint8 RGB grid under a header of column titles, one row per labelled image (its
    records merged, :func:`image_label_maps`): image |
    each model's label map (titled by its key in ``models``) | ground truth
    (``photos=False`` leaves the image column black, for figures that may not show the
    photographs, and titles it so)."""
    rows = []
    for image_path, truth in image_label_maps(records):
        image = files.read_image(image_path)
        row = [image if photos else np.zeros_like(image)]
        for model in models.values():
            model.eval()
            row.append(colorize(label_map_of(predict_probabilities(model, image, long_side)),
                                label_set.palette))
        row.append(colorize(truth, label_set.palette))
        rows.append(row)
    return grid(rows, tile, titles=["photo" if photos else "photo (not shown)", *models, "ground truth"])
