"""How far CCP's bank and refiner agree with VITON's machine parses (docs/results.md, VITON).

    python experiments/viton_agreement.py --synth data/exp/viton/synth --viton ../shared/data/viton \\
        --out docs/results/viton_synth_agreement.json

The synthetic labels of the VITON people (ccp8, made by ``partsynth synthesize --relabel``
with CCP's train bank and a CCP refiner) against the LIP-style parses shipped beside the
photos, mapped to ccp8 (hat and hair -> hair; face, arms and legs -> skin; coat ->
upper-clothes; jumpsuits -> dress; socks, pants and skirt -> lower-clothes; glove,
sunglasses and scarf -> accessories; both shoes -> shoes): one confusion matrix over every
pixel of every photo, background included.  The parses come from a LIP-trained network, so
this is agreement between two machines, not accuracy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.formats.files import read_label_png, write_json
from pipeline.formats.synth_dataset import read_items
from pipeline.labels import CCP8_GROUPS, IGNORE, LIP_NAMES, remap
from pipeline.metrics import ConfusionMatrix

LIP_TO_CCP8 = {
    "background": "background", "hat": "hair", "hair": "hair", "glove": "accessories",
    "sunglasses": "accessories", "upper-clothes": "upper-clothes", "dress": "dress", "coat": "upper-clothes",
    "socks": "lower-clothes", "pants": "lower-clothes", "jumpsuits": "dress", "scarf": "accessories",
    "skirt": "lower-clothes", "face": "skin", "left-arm": "skin", "right-arm": "skin", "left-leg": "skin",
    "right-leg": "skin", "left-shoe": "shoes", "right-shoe": "shoes",
}


def lip20_to_ccp8_lut() -> np.ndarray:
    """uint8 (256,) lookup: LIP id -> ccp8 id (255 and unknown ids -> 255)."""
    ccp8 = list(CCP8_GROUPS)
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for i, name in enumerate(LIP_NAMES):
        lut[i] = ccp8.index(LIP_TO_CCP8[name])
    return lut


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", required=True, help="synthesized VITON dataset (ccp8)")
    ap.add_argument("--viton", default="../shared/data/viton", help="the VITON folder (images/, parse/)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0, lut, names = time.time(), lip20_to_ccp8_lut(), list(CCP8_GROUPS)
    parts, silhouette = ConfusionMatrix(len(names)), ConfusionMatrix(2)
    scored = unlabelled = 0
    for item in read_items(Path(args.synth)):
        truth = remap(read_label_png(Path(args.viton) / "parse" / f"{Path(item.image).stem}.png"), lut)
        if item.label:
            pred = read_label_png(Path(args.synth) / item.label)
        else:
            pred, unlabelled = np.zeros_like(truth), unlabelled + 1
        pred = np.where(pred == IGNORE, 0, pred)
        parts.update(truth, pred)
        silhouette.update(np.where(truth == IGNORE, IGNORE, truth > 0).astype(np.uint8), (pred > 0).astype(np.uint8))
        scored += 1
    scores = parts.compute().as_dict(names)
    del scores["class_accuracy"]
    share = {"parses": parts.mat.sum(1) / parts.mat.sum(), "synthetic": parts.mat.sum(0) / parts.mat.sum()}
    result = dict(scores, silhouette_iou=float(silhouette.compute().iou[1]), images=scored,
                  pixel_share={k: dict(zip(names, v.tolist())) for k, v in share.items()},
                  images_unlabelled=unlabelled, synth=args.synth, seconds=time.time() - t0)
    write_json(args.out, result)
    cells = "  ".join(f"{k} {100 * v:.1f}" for k, v in scores["iou"].items() if v is not None)
    print(f"{scored} photos ({unlabelled} unlabelled): mIoU {100 * scores['mean_iou']:.1f}  "
          f"silhouette IoU {100 * result['silhouette_iou']:.1f}\n  {cells}")
    for k, v in share.items():
        print(f"  pixel share, {k}: " + "  ".join(f"{n} {100 * x:.1f}" for n, x in zip(names, v)))


if __name__ == "__main__":
    main()
