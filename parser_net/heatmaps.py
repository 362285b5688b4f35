"""Keypoint heatmaps: Gaussian encoding and sub-pixel decoding (pose branch of the joint
networks, method.md section 7).

Convention: a heatmap of stride s has cell (i, j) centred on input pixel
(x, y) = ((j + 0.5) s - 0.5, (i + 0.5) s - 0.5), so that u = (x + 0.5) / s - 0.5 maps input
pixel centres (origin at the top-left pixel's centre) to heatmap coordinates.
"""
from __future__ import annotations

import numpy as np
import torch


def encode_heatmaps(keypoints: np.ndarray, out_hw: tuple[int, int], stride: int, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmaps of keypoints.

    Args:
        keypoints: float (J, 3) x, y in input pixels, v (0 missing: x, y may be NaN).
        out_hw: (h, w) of the heatmaps.
        stride: input pixels per heatmap cell.
        sigma: Gaussian standard deviation in heatmap cells.
    Returns: float32 (J, h, w) in [0, 1] (peak 1 at the joint; zeros for missing joints or
        joints outside the map) and float32 (J,) target weights (1 present inside, else 0).
    """
    kp = np.asarray(keypoints, np.float64)
    h, w = out_hw
    maps = np.zeros((len(kp), h, w), np.float32)
    weight = np.zeros(len(kp), np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    for j, (x, y, v) in enumerate(kp):
        if v <= 0 or not (np.isfinite(x) and np.isfinite(y)):
            continue
        u, t = (x + 0.5) / stride - 0.5, (y + 0.5) / stride - 0.5
        if not (-0.5 <= u <= w - 0.5 and -0.5 <= t <= h - 0.5):
            continue
        maps[j] = np.exp(-((xs - u) ** 2 + (ys - t) ** 2) / (2 * sigma ** 2))
        weight[j] = 1.0
    return maps, weight


def decode_heatmaps(heatmaps: torch.Tensor, stride: int) -> torch.Tensor:
    """Sub-pixel argmax of heatmaps.

    The integer argmax is refined per axis by fitting a parabola to the log of three
    neighbouring values (exact for a Gaussian peak, also at the border).

    Shape: heatmaps float (B, J, h, w) -> float32 (B, J, 3): x, y in input pixels and the
    peak value as a confidence.
    """
    b, j, h, w = heatmaps.shape
    hm = heatmaps.detach().float().reshape(b * j, h, w)
    peak, idx = hm.flatten(1).max(1)
    iy, ix = (idx // w).long(), (idx % w).long()
    logs = hm.clamp(min=1e-10).log()
    n = torch.arange(b * j)

    def vertex(i, size, sample):
        """Vertex of the parabola through log values at c-1, c, c+1, c = i clamped off
        the border (so border peaks are refined too), kept within half a cell of i."""
        if size < 3:
            return i.float()
        c = i.clamp(1, size - 2)
        lo, mid, hi = sample(c - 1), sample(c), sample(c + 1)
        denom = lo - 2 * mid + hi                         # < 0 for a concave (peaked) fit
        safe = torch.where(denom < -1e-6, denom, -torch.ones_like(denom))
        v = torch.where(denom < -1e-6, c.float() + 0.5 * (lo - hi) / safe, i.float())
        return torch.minimum(torch.maximum(v, i.float() - 0.5), i.float() + 0.5)

    u = vertex(ix, w, lambda c: logs[n, iy, c])
    t = vertex(iy, h, lambda c: logs[n, c, ix])
    x = (u + 0.5) * stride - 0.5
    y = (t + 0.5) * stride - 0.5
    return torch.stack([x, y, peak], -1).reshape(b, j, 3)
