"""SS-NAN's learned aggregation weights on CCP val photos (the paper's Fig. 5): per photo the
photo, the parsing, the ground truth, then the weight map of each scale (summed over the two
levels) and of the skip level (summed over scales), white = 1.

    python experiments/ssnan_weights.py --checkpoint data/exp/family/ssnan_s0/last.pt \\
        --data ../shared/data/ccp --out docs/ssnan_weights_ccp.png
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from pipeline.formats import files
from pipeline.labels import LABEL_SETS, resize_label_map
from pipeline.readers.layouts import iter_records
from pipeline.pictures.overlay import colorize, grid
from parser_net.dataset import resize_long_side, to_tensor
from parser_net.networks import load_parser


def gray(weights: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float (h, w) in [0, 1] -> uint8 (H, W, 3) grey picture at the photo's size."""
    up = cv2.resize(weights.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.repeat((np.clip(up, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="../shared/data/ccp")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--out", default="docs/ssnan_weights_ccp.png")
    args = ap.parse_args()
    model, ckpt = load_parser(args.checkpoint)
    if ckpt.network["arch"] != "ssnan":
        raise SystemExit(f"{args.checkpoint}: not an SS-NAN parser ({ckpt.network['arch']})")
    lset = LABEL_SETS[ckpt.label_set]
    scales = ckpt.network["parser"]["scales"]
    recs = [r for r in iter_records(args.data, label_set=lset.name) if r.split == "val" and r.label_map is not None]
    rows = []
    for r in recs[:: max(1, len(recs) // args.n)][: args.n]:
        image = resize_long_side(files.read_image(r.image_path), ckpt.network["size"], cv2.INTER_AREA)
        out = model(to_tensor(image)[None])
        w = out["aggregation_weights"][0].numpy().reshape(len(scales), 2, *out["aggregation_weights"].shape[-2:])
        parsing = out["parsing"][0].argmax(0).numpy().astype(np.uint8)
        truth = resize_label_map(r.label_map, (image.shape[1], image.shape[0]))
        hw = image.shape[:2]
        rows.append([image, colorize(parsing, lset.palette), colorize(truth, lset.palette),
                     *[gray(w[i].sum(0), hw) for i in range(len(scales))], gray(w[:, 1].sum(0), hw)])
    files.write_image(args.out, grid(rows, tile_size=160))
    print(f"wrote {args.out}: photo | parsing | truth | weight of scale {' | '.join(map(str, scales))} | skip level")


if __name__ == "__main__":
    main()
