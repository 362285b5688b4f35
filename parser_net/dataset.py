"""Whole-image parsing data: preloaded, downsized images and label maps, the training
augmentation (random scale, crop, flip with left/right class swap) and batch drawing.

Images are parsed whole (no keypoints needed at test time).  Each image is resized once so
that its long side is ``long_side`` pixels and kept in memory as uint8, so that a training
run reads the disk once; a few thousand images at 200 px take ~100 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pipeline import files
from pipeline.labels import LabelSet
from pipeline.records import PersonRecord

IGNORE = 255
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(eq=False)
class ParsingItem:
    """One image with its label map, downsized.

    Attributes:
        image: uint8 (h, w, 3) RGB, long side = the loader's ``long_side``.
        label_map: uint8 (h, w) class ids, 255 ignore (nearest-neighbour resized).
        synthetic: True for labels made by the synthesis (:mod:`refine_net.synthesize`).
        confidence: the refiner's mean max-probability for synthetic people (1.0 for real).
        item_id: ``<source>:<person id>`` for reports.
    """

    image: np.ndarray
    label_map: np.ndarray
    synthetic: bool
    confidence: float
    item_id: str


def resize_long_side(image: np.ndarray, long_side: int, interpolation: int) -> np.ndarray:
    """Resize (H, W[, 3]) so that max(H, W) == long_side (aspect kept, sizes rounded)."""
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    size_hw = (max(1, round(h * s)), max(1, round(w * s)))
    return cv2.resize(image, size_hw[::-1], interpolation=interpolation)


def load_items(records: list[PersonRecord], long_side: int) -> list[ParsingItem]:
    """Labelled records -> in-memory :class:`ParsingItem` (one per image: records sharing an
    image, as in multi-person sets, share one whole-image label map and load once).

    Raises: DataError (from :func:`pipeline.files.read_image`) for a missing or corrupt
    image; ValueError for a record without a label map."""
    items, seen = [], set()
    for r in records:
        if r.label_map is None:
            raise ValueError(f"{r.image_path}: person {r.person_id} has no label map")
        if r.image_path in seen:
            continue
        seen.add(r.image_path)
        image = resize_long_side(files.read_image(r.image_path), long_side, cv2.INTER_AREA)
        label = resize_long_side(r.label_map, long_side, cv2.INTER_NEAREST)
        synthetic = bool(r.meta.get("synthetic"))
        confidence = float(r.meta.get("mean_max_prob", 1.0)) if synthetic else 1.0
        items.append(ParsingItem(image, label, synthetic, confidence, f"{r.source_format}:{r.person_id}"))
    return items


def augment(item: ParsingItem, crop_hw: tuple[int, int], scale_range: tuple[float, float],
            flip_lut: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random scale (uniform in ``scale_range``, relative to the stored size), random crop of
    ``crop_hw`` (padding: image 0, label 255 = ignore), horizontal flip with probability
    0.5 and ``flip_lut`` swapping left/right classes (None: no flip).

    Returns: uint8 (h, w, 3) image and uint8 (h, w) label map, (h, w) = crop_hw."""
    s = rng.uniform(*scale_range)
    h, w = item.label_map.shape
    size_wh = (max(1, round(w * s)), max(1, round(h * s)))
    image = cv2.resize(item.image, size_wh, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(item.label_map, size_wh, interpolation=cv2.INTER_NEAREST)
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
    if flip_lut is not None and rng.random() < 0.5:
        out_img = out_img[:, ::-1]
        out_lab = flip_lut[out_lab[:, ::-1]]
    return np.ascontiguousarray(out_img), np.ascontiguousarray(out_lab)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) RGB -> float32 (B, 3, H, W) normalized with the
    ImageNet mean and std."""
    x = (np.asarray(images, np.float32) / 255.0 - MEAN) / STD
    x = torch.from_numpy(np.ascontiguousarray(x))
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(2, 0, 1)


def draw_batch(items: list[ParsingItem], indices: np.ndarray, crop_hw: tuple[int, int],
               scale_range: tuple[float, float], label_set: LabelSet, seed: int, step: int,
               flip: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented batch for ``items[indices]``, deterministic in (seed, step).

    Returns: x float32 (B, 3, h, w), target int64 (B, h, w), synthetic bool (B,)."""
    rng = np.random.default_rng([seed, step])
    lut = label_set.flip_lut() if flip else None
    pairs = [augment(items[i], crop_hw, scale_range, lut, rng) for i in indices]
    x = to_tensor(np.stack([p[0] for p in pairs]))
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    synthetic = torch.tensor([items[i].synthetic for i in indices])
    return x, y, synthetic


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
