"""The mIoU a perfect parser would score at a given input size and output stride (docs/results.md).

    python experiments/resolution_ceiling.py --data ../shared/data/ccp --split val \\
        --sizes 160 224 320 --strides 1 4 --out docs/results/resolution_ceiling_ccp_val.json

The parsers take each photo at a long side of ``size`` pixels and predict class
probabilities on a grid ``stride`` times coarser, which the evaluation upsamples
(bilinear) to the photo's full resolution and scores there (``parser_net.evaluate``).  Here
the "prediction" is the ground truth itself, brought to that grid the way a network's output
would be: each class's one-hot map area-averaged onto the grid (soft probabilities), then
upsampled bilinearly and arg-maxed.  What it loses is what no parser of that size and stride
can recover: thin parts (shoes, bags, belts, hair strands) a grid cell wide or less.
"""
from __future__ import annotations

import argparse
import platform
import time

import cv2
import numpy as np

from parser_net.dataset import resize_channels, resize_long_side
from pipeline.formats.files import write_json
from pipeline.labels import LABEL_SETS
from pipeline.metrics import ConfusionMatrix
from pipeline.readers.layouts import iter_records


def through_grid(label_map: np.ndarray, num_classes: int, long_side: float) -> np.ndarray:
    """uint8 (H, W) arg-max of ``label_map``'s one-hot classes area-averaged onto a grid whose
    long side is ``long_side`` cells (rounded; size / stride), then resized back bilinearly
    to (H, W).  255 (ignore) pixels count for no class; a pixel whose grid cell holds only
    ignore gets class 0."""
    h, w = label_map.shape
    onehot = np.stack([(label_map == c).astype(np.float32) for c in range(num_classes)], axis=-1)
    small = resize_long_side(onehot, long_side, cv2.INTER_AREA)
    back = resize_channels(small, (w, h), cv2.INTER_LINEAR)
    return np.argmax(back, axis=-1).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/ccp")
    ap.add_argument("--split", default="val")
    ap.add_argument("--label-set", default="ccp8")
    ap.add_argument("--sizes", type=int, nargs="+", default=[160, 224, 320])
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    label_set = LABEL_SETS[args.label_set]
    records = [r for r in iter_records(args.data, None, label_set=label_set.name)
               if r.label_map is not None and r.split == args.split]
    seen, maps = set(), []
    for r in records:
        if r.image_path not in seen:
            seen.add(r.image_path)
            maps.append(r.label_map)
    t0, rows = time.time(), []
    for size in args.sizes:
        for stride in args.strides:
            cm = ConfusionMatrix(label_set.num_classes)
            for m in maps:
                cm.update(m, through_grid(m, label_set.num_classes, size / stride))
            s = cm.compute().as_dict(label_set.names)
            rows.append({"size": size, "stride": stride, "grid_long_side": size / stride,
                         "mean_iou": s["mean_iou"], "iou": s["iou"]})
            print(f"size {size} stride {stride}: mIoU {100 * s['mean_iou']:.1f}  " +
                  " ".join(f"{k} {100 * v:.1f}" for k, v in s["iou"].items()))
    write_json(args.out, {"data": args.data, "split": args.split, "label_set": label_set.name,
                          "images": len(maps), "rows": rows, "machine": platform.machine(),
                          "wall_seconds": time.time() - t0})


if __name__ == "__main__":
    main()
