"""Body-edge evaluation of HTCorrM networks: ODS F-measure on label-map boundaries
(:mod:`pipeline.edges`), at the network's input size."""
from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import torch

from pipeline.formats import files
from pipeline.edges import BSDS_MAX_DIST, THRESHOLDS, edge_counts, label_boundaries, ods
from pipeline.labels import IGNORE, resize_label_map
from pipeline.formats.records import PersonRecord
from parser_net.dataset import resize_long_side, to_tensor


@torch.no_grad()
def evaluate_edges(model: torch.nn.Module, records: Iterable[PersonRecord], long_side: int,
                   max_dist: float = BSDS_MAX_DIST) -> dict:
    """ODS of ``model(x)["edges"]`` (logits (1, 1, h, w)) against the boundaries of each
    labelled image's label map, both at the input size (long side ``long_side`` pixels; the
    label map resized by nearest neighbour), matching tolerance ``max_dist`` x the image
    diagonal in pixels (BSDS's 0.0075 by default); 255 pixels are not scored.

    Returns {"ods", "threshold", "precision", "recall", "images", "tolerance_px"}.
    Raises ValueError when no record has a label map."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    counts, n, tol = np.zeros((len(THRESHOLDS), 4), np.int64), 0, 0.0
    for r in records:
        if r.label_map is None:
            continue
        small = resize_long_side(files.read_image(r.image_path), long_side, cv2.INTER_AREA)
        h, w = small.shape[:2]
        label = resize_label_map(np.asarray(r.label_map, np.uint8), (w, h))
        prob = torch.sigmoid(model(to_tensor(small)[None].to(device))["edges"])[0, 0].cpu().numpy()
        tol = max_dist * float(np.hypot(h, w))
        counts += edge_counts(prob, label_boundaries(label), label != IGNORE, THRESHOLDS, tol)
        n += 1
    if not n:
        raise ValueError("no labelled images to score edges on")
    return {**ods(counts), "images": n, "tolerance_px": round(tol, 3)}
