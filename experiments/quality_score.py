"""Which per-person score predicts how good a synthetic label is? (docs/results.md, lever 1c)

    python experiments/quality_score.py --synth data/runs/ccp/synth/val_as_keypoint_only \\
        --truth ../shared/data/ccp --out docs/results/quality_score.json

The synthesized people are CCP val people labelled as if keypoint-only (``synthesize
--relabel --split val``; one person per photo), so each has a ground truth.  For each person
the candidate scores are computed from what synthesis records (confidence = mean
max-probability, the kNN distances of its prior's neighbours) and from its prior, rebuilt
from the train split (bank and k as synthesis, crop frame of its record):

- ``prior_agreement``: share of the person's crop pixels that the prior's argmax or the
  label calls foreground on which both agree on the class;
- ``outside_prior``: share of the label's foreground outside the prior's support (pixels
  some neighbour covers), as a score its negative.

Each is rank-correlated (Spearman) with the person's own mIoU against its ground truth
(classes present in either map), and the set's mIoU is given for the people kept when the
worst 10 / 25 / 50 % by that score are dropped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from pipeline.formats import files
from pipeline.formats.files import write_json
from pipeline.labels import LABEL_SETS
from pipeline.readers.layouts import iter_records
from pipeline.metrics import ConfusionMatrix
from pipeline.priors.bank import PriorConfig, crop_label_map
from pipeline.readers.prior_bank import bank_from_dataset
from pipeline.priors.pose import CropBox, apply_affine


def person_miou(cm: ConfusionMatrix) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction."""
    s = cm.compute()
    return float(np.nanmean(s.iou))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", required=True, help="synthesized val people (synthesize --relabel --split val)")
    ap.add_argument("--truth", default="../shared/data/ccp")
    ap.add_argument("--size", type=int, default=128, help="crop frame of the refiner (the CPU profile's 128)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", default="docs/results/quality_score.json")
    args = ap.parse_args()
    truth = {r.image_path.name: r for r in iter_records(args.truth) if r.split == "val" and r.label_map is not None}
    people = [r for r in iter_records(args.synth) if r.label_map is not None and r.image_path.name in truth]
    records = {}                                    # image name -> the person's synthesis record (box, distances)
    for item in sorted(Path(args.synth, "items").glob("*.json")):
        d = files.read_json(item)
        records.update({Path(d["image"]).name: p for p in d["persons"] if p["status"] == "ok"})
    info = files.read_json(f"{args.synth}/dataset.json")
    lset = LABEL_SETS[info["label_set"]]
    bank = bank_from_dataset(args.truth, "train", PriorConfig(size=args.size, k=args.k))
    rows, total = [], ConfusionMatrix(lset.num_classes)
    for rec in people:
        gt = truth[rec.image_path.name].label_map
        cm = ConfusionMatrix(lset.num_classes)
        cm.update(gt, rec.label_map)
        meta = records[rec.image_path.name]
        box = CropBox(*meta["box"])
        kp = apply_affine(rec.keypoints, box.crop_from_image(args.size))
        nb = bank.index.query(kp, args.k)
        prior = bank.prior(kp, nb.ids[0])
        guess = prior.argmax(0)
        label = crop_label_map(np.where(rec.label_map == 255, 0, rec.label_map).astype(np.uint8), box, args.size)
        union = (guess > 0) | (label > 0)
        support = prior[0] < 1.0 - 1e-6
        rows.append({"image": rec.image_path.name, "miou": person_miou(cm),
                     "confidence": meta.get("mean_max_prob"),
                     "knn_distance": -float(np.mean(meta.get("distances") or [np.inf])),
                     "prior_agreement": float((guess == label)[union].mean()) if union.any() else 0.0,
                     "outside_prior": -float((~support & (label > 0)).sum() / max(1, (label > 0).sum()))})
        total.update(gt, rec.label_map)
    truth_miou = np.array([r["miou"] for r in rows])
    result = {"people": len(rows), "miou_all": float(total.compute().mean_iou), "scores": {}}
    print(f"{len(rows)} people; mIoU of the whole set {100 * result['miou_all']:.1f}")
    for name in ("confidence", "knn_distance", "prior_agreement", "outside_prior"):
        score = np.array([r[name] for r in rows], dtype=float)
        rho = float(spearmanr(score, truth_miou).statistic)
        kept = {}
        for drop in (0.1, 0.25, 0.5):
            keep = score >= np.quantile(score, drop)
            cm = ConfusionMatrix(lset.num_classes)
            for r, k in zip(people, keep):
                if k:
                    cm.update(truth[r.image_path.name].label_map, r.label_map)
            kept[f"drop_{int(drop * 100)}"] = float(cm.compute().mean_iou)
        result["scores"][name] = {"spearman": rho, **kept}
        print(f"{name:>16}: Spearman {rho:+.3f}; set mIoU dropping the worst 10/25/50 %: "
              + " / ".join(f"{100 * v:.1f}" for v in kept.values()))
    result["people_rows"] = rows
    write_json(args.out, result)


if __name__ == "__main__":
    main()
