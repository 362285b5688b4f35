"""A picture of a synthesized set's soft labels (docs/results.md, lever 3): per image the photo, the
hard label map, the soft label (class colours mixed by probability) and its max-probability
(white 1, black 0), with the foreground statistics of the whole set printed.

    python experiments/soft_label_grid.py data/runs/ccp/synth/ccp_probs --png docs/soft_labels_ccp.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.formats import files
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.pictures.overlay import colorize, grid
from pipeline.pictures.prior_grid import prior_colour
from pipeline.soft_labels import SoftLabels
from pipeline.formats.synth_dataset import read_items, read_synth_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("synth", help="a synthesized folder made with --save-probabilities")
    ap.add_argument("--png", default="docs/soft_labels_ccp.png")
    ap.add_argument("--images", type=int, default=6, help="images in the picture (evenly spaced)")
    ap.add_argument("--tile", type=int, default=160)
    args = ap.parse_args()
    root = Path(args.synth)
    palette = np.asarray(LABEL_SETS[read_synth_info(root).label_set].palette, np.uint8)
    soft_labels = SoftLabels([root])
    items = [it for it in read_items(root) if it.label]
    shown = set(np.linspace(0, len(items) - 1, args.images).round().astype(int).tolist())
    rows, max_prob = [], []
    for i, item in enumerate(items):
        label = files.read_label_png(root / item.label)
        soft = soft_labels(item.image, label)
        fg = (label > 0) & (label != IGNORE)
        top = soft.max(-1)
        max_prob.append(top[fg].astype(np.float32) / 255)
        if i in shown:
            conf = cv2.cvtColor(top, cv2.COLOR_GRAY2RGB)
            rows.append([files.read_image(item.image), colorize(label, palette),
                         prior_colour(np.moveaxis(soft, -1, 0).astype(np.float32) / 255, palette), conf])
    cv2.imwrite(args.png, cv2.cvtColor(grid([list(t) for t in zip(*rows)], args.tile), cv2.COLOR_RGB2BGR))
    p = np.concatenate(max_prob)
    print(json.dumps({"images": len(items), "foreground_pixels": int(p.size),
                      "mean_max_probability": round(float(p.mean()), 4),
                      "share_below_0.6": round(float((p < 0.6).mean()), 4),
                      "share_above_0.9": round(float((p > 0.9).mean()), 4), "png": args.png}))


if __name__ == "__main__":
    main()
