"""Colour views of label maps and priors for looking at results (pure numpy/OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.labels import IGNORE, voc_palette
from pipeline.skeleton import BONES


def colorize(label_map: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W) class ids -> uint8 (H, W, 3) RGB with the palette (VOC by default);
    255 (ignore) is white."""
    pal = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    full = voc_palette()
    full[: len(pal)] = pal
    full[IGNORE] = 255
    return full[label_map]


def overlay(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5,
            palette: np.ndarray | None = None) -> np.ndarray:
    """Blend a label map over an image: uint8 (H, W, 3) RGB; background pixels unchanged.

    Raises: ValueError when image and label map sizes differ.
    """
    if image.shape[:2] != label_map.shape:
        raise ValueError(f"image size {image.shape[:2]} differs from label map size {label_map.shape}")
    colour = colorize(label_map, palette).astype(np.float32)
    out = image.astype(np.float32)
    fg = label_map > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, radius: int = 2) -> np.ndarray:
    """Draw canonical keypoints (16, 3) and bones on a copy of uint8 (H, W, 3) RGB.

    Right-side joints red, left-side green, centre joints yellow; missing joints skipped.
    """
    out = np.ascontiguousarray(image.copy())
    ok = (keypoints[:, 2] > 0) & np.isfinite(keypoints[:, :2]).all(axis=1)
    pts = {i: (int(round(keypoints[i, 0])), int(round(keypoints[i, 1]))) for i in np.flatnonzero(ok)}
    for a, b in BONES:
        if a in pts and b in pts:
            cv2.line(out, pts[a], pts[b], (255, 255, 255), 1, cv2.LINE_AA)
    for i, p in pts.items():
        colour = (255, 0, 0) if i in (0, 1, 2, 10, 11, 12) else (0, 255, 0) if i in (3, 4, 5, 13, 14, 15) else (255, 255, 0)
        cv2.circle(out, p, radius, colour, -1, cv2.LINE_AA)
    return out


def grid(tiles: list[list[np.ndarray]], tile_size: int = 128, pad: int = 2,
         titles: list[str] | None = None) -> np.ndarray:
    """Arrange rows of uint8 RGB tiles (any sizes) into one uint8 image; each tile is
    letterboxed into tile_size x tile_size on a dark grey background.  ``titles`` (one
    per column) go in a header strip above the first row, in white, shrunk or cut to fit
    their column."""
    rows = [] if titles is None else [_title_strip(titles, tile_size + 2 * pad)]
    for row in tiles:
        cells = []
        for t in row:
            h, w = t.shape[:2]
            s = tile_size / max(h, w)
            r = cv2.resize(t, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_NEAREST)
            cell = np.full((tile_size + 2 * pad, tile_size + 2 * pad, 3), 40, dtype=np.uint8)
            y0, x0 = pad + (tile_size - r.shape[0]) // 2, pad + (tile_size - r.shape[1]) // 2
            cell[y0:y0 + r.shape[0], x0:x0 + r.shape[1]] = r
            cells.append(cell)
        rows.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=40) for r in rows]
    return np.concatenate(rows, axis=0)


def _title_strip(titles: list[str], cell: int, height: int = 20) -> np.ndarray:
    """uint8 RGB (height, cell * len(titles), 3): each title centred over its column."""
    strip = np.full((height, cell * len(titles), 3), 40, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, title in enumerate(titles):
        scale = 0.45
        while cv2.getTextSize(title, font, scale, 1)[0][0] > cell - 6 and scale > 0.3:
            scale -= 0.05
        while cv2.getTextSize(title, font, scale, 1)[0][0] > cell - 6 and len(title) > 3:
            title = title[:-3] + ".."
        (w, h), _ = cv2.getTextSize(title, font, scale, 1)
        cv2.putText(strip, title, (i * cell + (cell - w) // 2, (height + h) // 2), font, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return strip
