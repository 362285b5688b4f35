"""Whole-image parsing data: preloaded, downsized images and label maps, the training
augmentation (random scale, crop, flip with left/right class swap) and batch drawing.

Images are parsed whole (no keypoints needed at test time).  Each image is resized once so
that its long side is ``long_side`` pixels and kept in memory as uint8, so that a training
run reads the disk once; a few thousand images at 200 px take ~100 MB.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from pipeline.formats import files
from pipeline.labels import IGNORE, LabelSet, resize_label_map
from pipeline.formats.records import PersonRecord
from pipeline.skeleton import J, flip_keypoints, present
from refine_net.encoders import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)
#: how far :func:`load_items` may rescale a photo to match its person's scale (factor range)
PERSON_SCALE_LIMITS = (0.5, 2.0)


@dataclass(eq=False)
class ParsingItem:
    """One image with its label map, downsized.

    Attributes:
        image: uint8 (h, w, 3) RGB, long side = the loader's ``long_side``.
        label_map: uint8 (h, w) class ids, 255 ignore (nearest-neighbour resized).
        synthetic: True for labels made by the synthesis (:mod:`refine_net.synthesize`).
        confidence: the refiner's mean max-probability for synthetic people (1.0 for real).
        item_id: ``<source>:<person id>`` for reports.
        keypoints: float32 (16, 3) canonical keypoints in the stored image's pixels (one
            person per image; None when the image has none or several people).
        has_label: False for keypoint-only people (``label_map`` is all 255).
        soft: uint8 (h, w, C) class distribution x 255 of a synthetic label
            (:mod:`pipeline.soft_labels`), or None (train on ``label_map``).
    """

    image: np.ndarray
    label_map: np.ndarray
    synthetic: bool
    confidence: float
    item_id: str
    keypoints: np.ndarray | None = None
    has_label: bool = True
    soft: np.ndarray | None = None


class Augmented(NamedTuple):
    """One augmented training sample (:func:`augment`): ``image`` uint8 (h, w, 3),
    ``label_map`` uint8 (h, w), ``keypoints`` float32 (16, 3) in crop pixels (None unless
    asked for), ``soft`` uint8 (h, w, C) (None when the item has no soft label)."""

    image: np.ndarray
    label_map: np.ndarray
    keypoints: np.ndarray | None = None
    soft: np.ndarray | None = None


class Batch(NamedTuple):
    """A training batch (:func:`draw_batch`): ``x`` float32 (B, 3, h, w); ``target`` int64
    (B, h, w) class ids, 255 ignore; ``synthetic``, ``has_label`` bool (B,);
    ``keypoints`` a list of B float32 (16, 3) in crop pixels (None unless asked for);
    ``soft`` float32 (B, C, h, w) target distributions in [0, 1] (None unless asked for):
    an item's soft label, or the one-hot of its label map (0 on ignored pixels)."""

    x: torch.Tensor
    target: torch.Tensor
    synthetic: torch.Tensor
    has_label: torch.Tensor
    keypoints: list[np.ndarray] | None = None
    soft: torch.Tensor | None = None


def long_side_shape(image_hw: tuple[int, int], long_side: float) -> tuple[int, int]:
    """(h, w) in pixels of an image of shape ``image_hw`` resized so that its long side is
    ``long_side`` (aspect kept, sizes rounded, at least 1)."""
    h, w = image_hw
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize_channels(image: np.ndarray, size_wh: tuple[int, int], interpolation: int) -> np.ndarray:
    """``cv2.resize`` of (H, W) or (H, W, C) to ``size_wh`` for any C (OpenCV's area
    interpolation takes at most 4 channels: more are resized 4 at a time); keeps the
    channel axis, even of size 1."""
    if image.ndim == 2 or image.shape[2] <= 4:
        out = cv2.resize(image, size_wh, interpolation=interpolation)
        return out if image.ndim == out.ndim else out[..., None]
    return np.concatenate([resize_channels(np.ascontiguousarray(image[..., i: i + 4]), size_wh, interpolation)
                           for i in range(0, image.shape[2], 4)], axis=2)


def resize_long_side(image: np.ndarray, long_side: float, interpolation: int) -> np.ndarray:
    """Resize (H, W[, C]) so that max(H, W) == long_side (aspect kept, sizes rounded)."""
    size_hw = long_side_shape(image.shape[:2], long_side)
    return resize_channels(image, size_hw[::-1], interpolation)


def torso_fraction(keypoints: np.ndarray | None, image_hw: tuple[int, int]) -> float | None:
    """A person's scale in its photo: the thorax-to-pelvis distance (the length
    :func:`pipeline.priors.pose.normalize_poses` divides by) over the photo's long side, in
    (0, ~1]; None without keypoints, without both joints or for a zero-length torso."""
    if keypoints is None:
        return None
    ok = present(keypoints)
    if not (ok[J["thorax"]] and ok[J["pelvis"]]):
        return None
    torso = float(np.linalg.norm(keypoints[J["thorax"], :2] - keypoints[J["pelvis"], :2]))
    return torso / max(image_hw) if torso > 0 else None


def median_torso_fraction(records: Sequence[PersonRecord]) -> float | None:
    """The median :func:`torso_fraction` of ``records`` (those with a torso), or None when none has one."""
    fractions = [f for r in records if (f := torso_fraction(r.keypoints, r.image_size)) is not None]
    return float(np.median(fractions)) if fractions else None


def load_items(records: list[PersonRecord], long_side: int, allow_unlabelled: bool = False,
               soft_labels: Callable[[Path, np.ndarray], np.ndarray | None] | None = None,
               person_scale: float | None = None) -> list[ParsingItem]:
    """Records -> in-memory :class:`ParsingItem` (one per image: records sharing an image,
    as in multi-person sets, share one whole-image label map and load once; such images
    carry no keypoints).  Keypoints are rescaled with the image (pixel centres kept).
    ``soft_labels(image path, label map)`` (e.g. :class:`pipeline.soft_labels.SoftLabels`)
    gives an image's uint8 (H, W, C) soft label or None; it is resized with the image.
    With ``person_scale`` (a :func:`torso_fraction`), a one-person image whose person has a
    torso is resized so that the torso is ``person_scale x long_side`` pixels long (by a
    factor within :data:`PERSON_SCALE_LIMITS` of ``long_side``; others at ``long_side``):
    upper-body close-ups then show their people at the size a full-body set shows its own.

    Raises: DataError (from :func:`pipeline.formats.files.read_image`) for a missing or corrupt
    image; ValueError for a record without a label map unless ``allow_unlabelled`` (then
    its label map is all 255 and ``has_label`` False)."""
    per_image: dict = {}
    for r in records:
        per_image.setdefault(r.image_path, []).append(r)
    items = []
    for path, recs in per_image.items():
        r = recs[0]
        if r.label_map is None and not allow_unlabelled:
            raise ValueError(f"{r.image_path}: person {r.person_id} has no label map")
        raw = files.read_image(path)
        side = long_side
        if person_scale is not None and len(recs) == 1:
            fraction = torso_fraction(r.keypoints, raw.shape[:2])
            if fraction is not None:
                side = round(long_side * float(np.clip(person_scale / fraction, *PERSON_SCALE_LIMITS)))
        image = resize_long_side(raw, side, cv2.INTER_AREA)
        if r.label_map is not None:
            label = resize_label_map(r.label_map, image.shape[1::-1])
        else:
            label = np.full(image.shape[:2], IGNORE, np.uint8)
        kp = None
        if len(recs) == 1 and r.keypoints is not None:
            kp = r.keypoints.astype(np.float32).copy()
            sy, sx = image.shape[0] / raw.shape[0], image.shape[1] / raw.shape[1]
            kp[:, 0] = (kp[:, 0] + 0.5) * sx - 0.5
            kp[:, 1] = (kp[:, 1] + 0.5) * sy - 0.5
        synthetic = bool(r.meta.get("synthetic"))
        confidence = float(r.meta.get("mean_max_prob", 1.0)) if synthetic else 1.0
        soft = None
        if soft_labels is not None and r.label_map is not None:
            soft = soft_labels(path, r.label_map)
            soft = None if soft is None else resize_long_side(soft, side, cv2.INTER_AREA)
        items.append(ParsingItem(image, label, synthetic, confidence, f"{r.source_format}:{r.person_id}",
                                 kp, r.label_map is not None, soft))
    return items


def augment(item: ParsingItem, crop_hw: tuple[int, int], scale_range: tuple[float, float],
            flip_lut: np.ndarray | None, rng: np.random.Generator, with_keypoints: bool = False) -> Augmented:
    """Random scale (uniform in ``scale_range``, relative to the stored size), random crop of
    ``crop_hw`` (padding: image 0, label 255 = ignore, soft label 0), horizontal flip with
    probability 0.5 and ``flip_lut`` swapping left/right classes (None: no flip).  The
    random draws do not depend on the item's soft label, so runs with and without soft
    targets see the same crops.

    Returns: :class:`Augmented` of size ``crop_hw``; with ``with_keypoints`` the item's
    keypoints moved the same way (float32 (16, 3), left and right joints swapped on a
    flip; all missing when the item has none); its soft label moved the same way (the
    left/right class channels swapped on a flip) when it has one."""
    s = rng.uniform(*scale_range)
    h, w = item.label_map.shape
    size_wh = (max(1, round(w * s)), max(1, round(h * s)))
    image = cv2.resize(item.image, size_wh, interpolation=cv2.INTER_LINEAR)
    label = resize_label_map(item.label_map, size_wh)
    ch, cw = crop_hw
    out_img = np.zeros((ch, cw, 3), np.uint8)
    out_lab = np.full((ch, cw), IGNORE, np.uint8)
    h, w = label.shape
    # random offset of the crop inside the (possibly smaller) image, or of the image inside the crop
    y0, x0 = int(rng.integers(0, abs(h - ch) + 1)), int(rng.integers(0, abs(w - cw) + 1))
    sy, dy = (slice(y0, y0 + ch), slice(0, ch)) if h >= ch else (slice(0, h), slice(y0, y0 + h))
    sx, dx = (slice(x0, x0 + cw), slice(0, cw)) if w >= cw else (slice(0, w), slice(x0, x0 + w))
    out_img[dy, dx] = image[sy, sx]
    out_lab[dy, dx] = label[sy, sx]
    out_soft = None
    if item.soft is not None:
        soft = resize_channels(item.soft, size_wh, cv2.INTER_LINEAR)
        out_soft = np.zeros((ch, cw, soft.shape[2]), np.uint8)
        out_soft[dy, dx] = soft[sy, sx]
    flipped = flip_lut is not None and rng.random() < 0.5
    if flipped:
        out_img = out_img[:, ::-1]
        out_lab = flip_lut[out_lab[:, ::-1]]
        if out_soft is not None:        # flipped channel c holds the mirror class of c
            out_soft = out_soft[:, ::-1][:, :, flip_lut[: out_soft.shape[2]]]
    if out_soft is not None:
        out_soft = np.ascontiguousarray(out_soft)
    kp = None
    if with_keypoints:
        kp = np.full((16, 3), np.nan, np.float32)
        kp[:, 2] = 0
        if item.keypoints is not None:
            kp = item.keypoints.copy()
            kp[:, 0] = (kp[:, 0] + 0.5) * size_wh[0] / item.label_map.shape[1] - 0.5 - (sx.start - dx.start)
            kp[:, 1] = (kp[:, 1] + 0.5) * size_wh[1] / item.label_map.shape[0] - 0.5 - (sy.start - dy.start)
            if flipped:
                kp = flip_keypoints(kp, cw)
    return Augmented(np.ascontiguousarray(out_img), np.ascontiguousarray(out_lab), kp, out_soft)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) RGB -> float32 (B, 3, H, W) normalized with the
    ImageNet mean and std, contiguous in NCHW order.

    The channels-last view a plain permute gives crashed torch 2.13's oneDNN convolution
    backward on CPU (heap corruption in ``mkldnn_convolution_backward_weights`` with the
    joint network), so the result is made contiguous."""
    x = (np.asarray(images, np.float32) / 255.0 - MEAN) / STD
    x = torch.from_numpy(np.ascontiguousarray(x))
    return (x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(2, 0, 1)).contiguous()


def draw_batch(items: list[ParsingItem], indices: np.ndarray, crop_hw: tuple[int, int],
               scale_range: tuple[float, float], label_set: LabelSet, seed: int, step: int,
               flip: bool = True, with_keypoints: bool = False, with_soft: bool = False,
               positions: Sequence[int] | None = None) -> Batch:
    """Augmented :class:`Batch` of ``items[indices]``, deterministic in (seed, step,
    position) (the same with and without ``with_soft``).  ``positions``: where these items
    sit in the step's global batch (default ``0 .. len(indices)-1``), so that a rank or a
    micro-batch drawing a slice of it gets the very crops the whole batch would hold.
    ``with_keypoints`` adds the keypoints in crop pixels, ``with_soft`` the target
    distributions (``label_set.num_classes`` channels)."""
    positions = range(len(indices)) if positions is None else positions
    if len(positions) != len(indices):
        raise ValueError(f"{len(indices)} items but {len(positions)} positions")
    lut = label_set.flip_lut() if flip else None
    outs = [augment(items[i], crop_hw, scale_range, lut, np.random.default_rng([seed, step, p]), with_keypoints)
            for i, p in zip(indices, positions)]
    x = to_tensor(np.stack([o.image for o in outs]))
    labels = np.stack([o.label_map for o in outs])
    y = torch.from_numpy(labels.astype(np.int64))
    synthetic = torch.tensor([items[i].synthetic for i in indices])
    has_label = torch.tensor([items[i].has_label for i in indices])
    soft = None
    if with_soft:
        eye = np.eye(label_set.num_classes + 1, label_set.num_classes, dtype=np.float32)   # last row: ignore
        one_hot = eye[np.minimum(labels, label_set.num_classes)]                             # (B, h, w, C)
        soft = np.stack([o.soft.astype(np.float32) / 255.0 if o.soft is not None else oh
                         for o, oh in zip(outs, one_hot)])
        empty = soft.sum(-1, keepdims=True) == 0          # e.g. a soft label's ignored rim, resized
        soft = torch.from_numpy(np.where(empty, one_hot, soft)).permute(0, 3, 1, 2).contiguous()
    return Batch(x, y, synthetic, has_label, [o.keypoints for o in outs] if with_keypoints else None, soft)


def sample_indices(n_real: int, n_synthetic: int, batch_size: int, real_fraction: float | None,
                   seed: int, step: int) -> np.ndarray:
    """Indices into ``real + synthetic`` items for one step, deterministic in (seed, step).

    Items 0..n_real-1 are real, the rest synthetic.  ``real_fraction`` None draws uniformly
    over all items (pooling); a float p draws each sample from the real items with
    probability p and from the synthetic ones otherwise.  Raises ValueError with no items."""
    if n_real + n_synthetic == 0:
        raise ValueError("no training items")
    rng = np.random.default_rng([seed, step, 1])
    if real_fraction is None or n_synthetic == 0 or n_real == 0:
        return rng.integers(0, n_real + n_synthetic, batch_size)
    real = rng.random(batch_size) < real_fraction
    return np.where(real, rng.integers(0, n_real, batch_size), n_real + rng.integers(0, n_synthetic, batch_size))
