"""Pasting per-person crop predictions back into the full image (method.md section 5).

Each person's class probabilities live in its own crop frame.  Warped back to the image,
every pixel goes to the person with the highest *foreground* probability there
(1 - P(background)), and takes that person's most probable class (which may still be
background).  Depth is not known; the refiner's confidence decides overlaps, not class
ids (unlike the release, which took the pixel-wise maximum of class ids).
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from pipeline.priors.pose import CropBox

NO_OWNER = -1


class Pasted(NamedTuple):
    """``label_map`` uint8 (H, W); ``owner`` int16 (H, W) index of the person a pixel
    came from (-1: no crop covers it, background); ``confidence`` float32 (H, W) the
    owner's probability of the chosen class (0 where no crop covers it);
    ``probabilities`` float32 (C, H, W) the owner's whole class distribution (one-hot
    background where no crop covers it), only when asked for (else None)."""

    label_map: np.ndarray
    owner: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None


def paste_people(image_size: tuple[int, int], probs: list[np.ndarray], boxes: list[CropBox],
                 with_probabilities: bool = False) -> Pasted:
    """Combine per-person crop probabilities float32 (C, S, S) (summing to 1 over C) with
    their crop boxes into one label map of an image of ``image_size`` (h, w); with
    ``with_probabilities`` also the pasted class distributions (the soft labels of
    :mod:`pipeline.soft_labels`)."""
    h, w = image_size
    best_fg = np.full((h, w), -1.0, dtype=np.float32)
    label = np.zeros((h, w), dtype=np.uint8)
    owner = np.full((h, w), NO_OWNER, dtype=np.int16)
    conf = np.zeros((h, w), dtype=np.float32)
    dist = None
    if with_probabilities and probs:
        dist = np.zeros((probs[0].shape[0], h, w), dtype=np.float32)
        dist[0] = 1.0
    for p, (prob, box) in enumerate(zip(probs, boxes)):
        c, s, _ = prob.shape
        m = box.crop_from_image(s)  # crop <- image; cv2 with WARP_INVERSE_MAP samples the crop
        # image-frame bounding box of the crop, clipped
        x0, y0 = max(int(np.floor(box.cx - box.side / 2)), 0), max(int(np.floor(box.cy - box.side / 2)), 0)
        x1, y1 = min(int(np.ceil(box.cx + box.side / 2)) + 1, w), min(int(np.ceil(box.cy + box.side / 2)) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        shift = m.copy()
        shift[:, 2] += m[:, :2] @ [x0, y0]  # crop <- region (region pixel (0,0) = image (x0,y0))
        size = (x1 - x0, y1 - y0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        region = np.stack([cv2.warpAffine(prob[i], shift, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
                           for i in range(c)])  # (C, h', w')
        inside = cv2.warpAffine(np.ones((s, s), np.uint8), shift, size,
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        fg = np.where(inside, 1.0 - region[0], -1.0)
        take = fg > best_fg[y0:y1, x0:x1]
        cls = region.argmax(axis=0)
        best_fg[y0:y1, x0:x1][take] = fg[take]
        label[y0:y1, x0:x1][take] = cls[take]
        owner[y0:y1, x0:x1][take] = p
        conf[y0:y1, x0:x1][take] = np.take_along_axis(region, cls[None], 0)[0][take]
        if dist is not None:
            dist[:, y0:y1, x0:x1][:, take] = region[:, take]
    return Pasted(label, owner, conf, dist)
