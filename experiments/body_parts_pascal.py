"""Body parts of PASCAL-Part's persons from a pascal6 refiner's bank and network
(docs/results.md, "Body parts of in-the-wild people").

    python experiments/body_parts_pascal.py --refiner RUN/last.pt --data ../shared/data/pascal_part \\
        --out docs/results/body_parts_pascal.json

Every person of the PASCAL-Part folder (keypoints estimated from its part masks, its own
object mask) in the refiner's crop frame, scored against its ground truth cropped the same
way (one confusion matrix, background included, pixels outside the photo and ignore left
out): argmax of the morphed prior from the refiner's bank (k nearest), of the partition
(``partition_person`` of the mask; ignore scored as background), of the morph within the
mask filled by the partition, and the refiner's labels from its own prior source, raw and
as synthesis writes them (clipped to the person's mask, its unlabelled pixels filled from
the nearest part: ``--person-mask-mode fill``).  The
persons are not in the refiner's training data.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.formats.files import write_json
from pipeline.labels import LABEL_SETS
from pipeline.metrics import ConfusionMatrix
from pipeline.priors.pose import torso_problem
from pipeline.priors.support import apply_person_masks
from pipeline.readers.pascal_part import read_pascal_part
from pipeline.readers.prior_bank import bank_from_dataset
from refine_net.dataset import RefineDataset, make_samples
from refine_net.synthesize import synthesis_prior_config
from refine_net.train import load_refiner, training_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refiner", required=True, help="a pascal6 refiner checkpoint")
    ap.add_argument("--data", default="../shared/data/pascal_part")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", help="write the scores as JSON")
    args = ap.parse_args()
    t0 = time.time()
    model, ckpt = load_refiner(args.refiner)
    cfg = training_config(ckpt)
    if ckpt.label_set != "pascal6":
        raise SystemExit(f"error: {args.refiner} labels {ckpt.label_set}, not pascal6")
    bank = bank_from_dataset(ckpt.network["bank_data"], "train", synthesis_prior_config(ckpt, args.k),
                             label_set="pascal6", val_fraction=cfg.val_fraction)
    recs = [r for r in read_pascal_part(args.data, keypoints_from_masks=True) if not torso_problem(r.keypoints)]
    samples = make_samples(recs, bank, args.k, exclude_self=False)
    source = ckpt.network.get("prior_source", "morph")
    rows = {}
    for name, prior_source in (("morph prior", "morph"), ("partition", "partition"), ("morph + mask", "both")):
        ds = RefineDataset(samples, bank, args.k, train=False, prior_source=prior_source)
        cm = ConfusionMatrix(bank.num_classes)
        for i in range(len(ds)):
            cm.update(samples.targets[i], ds.prior(i, None).argmax(0))
        rows[name] = cm.compute()
    ds = RefineDataset(samples, bank, args.k, train=False, prior_source=source, use_prior=cfg.use_prior)
    raw, clipped = ConfusionMatrix(bank.num_classes), ConfusionMatrix(bank.num_classes)
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[i]
            label = model(x[None])["parsing"].argmax(1)[0].numpy().astype(np.uint8)
            raw.update(y.numpy(), label)
            owner = np.zeros(label.shape, np.int16)
            apply_person_masks(label, owner, [samples.masks[i]], fill=True)   # what synthesis writes
            clipped.update(y.numpy(), label)
    rows[f"refined ({source} prior)"] = raw.compute()
    rows[f"refined ({source} prior), clipped and filled by the mask"] = clipped.compute()
    names = LABEL_SETS["pascal6"].names
    print(f"{len(recs)} PASCAL-Part persons, bank of {len(bank.exemplars)} from {ckpt.network['bank_data']}")
    print("| input | mIoU | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 2))
    for name, s in rows.items():
        print(f"| {name} | {100 * s.mean_iou:.1f} | " + " | ".join(f"{100 * v:.1f}" for v in s.iou) + " |")
    if args.out:
        write_json(args.out, {"refiner": args.refiner, "data": args.data, "k": args.k, "persons": len(recs),
                              "bank": len(bank.exemplars), "prior_source": source,
                              "scores": {n: s.as_dict() for n, s in rows.items()},
                              "seconds": round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
