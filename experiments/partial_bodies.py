"""Partial bodies (docs/results.md, lever 0): how many people and how good a label, before/after.

    python experiments/partial_bodies.py --checkpoint RUN/last.pt --truth ../shared/data/ccp \\
        --work data/exp/partial --out docs/results/partial_bodies.json

The CCP val people (whole bodies with ground truth) are turned into upper-body shots: each
photo is cut at ``thorax_y + f * (pelvis_y - thorax_y)`` (f = ``--cuts``; 1 is the hip
line), the joints below the cut are dropped (as an annotator or an estimator would), and
the cut photo is labelled as if keypoint-only, with partial bodies off (today's skip) and
on.  Scores against the cut ground truth, one confusion matrix over the set, background
included: mIoU over the pixels the label does not mark ignore, the share of ground-truth
person pixels marked ignore, and mIoU with ignore counted as background.  Reference: the
same people labelled from their whole photo and whole pose, cut afterwards (what the label
of the visible part would be had the whole body been seen), over all of them and over the
people the partial-body run labelled.  Bank: the train split.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.readers.layouts import iter_records
from pipeline.metrics import ConfusionMatrix
from pipeline.formats.records import PersonRecord
from pipeline.skeleton import J, present
from refine_net.config import SynthConfig
from refine_net.synthesize import Synthesizer


def cut_person(rec: PersonRecord, f: float, folder: Path) -> tuple[PersonRecord, np.ndarray]:
    """The person's photo cut at f of the way from thorax to pelvis, written as PNG into
    ``folder``: (keypoint-only record of the cut photo, its cut ground truth uint8 (h, W))."""
    kp = rec.keypoints
    cut = int(round(kp[J["thorax"], 1] + f * (kp[J["pelvis"], 1] - kp[J["thorax"], 1])))
    path = folder / f"{rec.image_path.stem}.png"
    files.write_image(path, files.read_image(rec.image_path)[:cut])
    kp = kp.copy()
    below = present(kp) & (kp[:, 1] > cut - 0.5)
    kp[below] = (np.nan, np.nan, 0.0)
    return PersonRecord(path, (cut, rec.image_size[1]), rec.person_id, "partsynth", keypoints=kp,
                        split="val"), rec.label_map[:cut]


def synthesize(checkpoint: str, people: list[PersonRecord], out: Path, partial: bool) -> dict[str, np.ndarray]:
    """Label ``people`` (keypoint-only records) into ``out``: {image name: label map} of the
    labelled ones, and the skip reasons counted."""
    cfg = SynthConfig(checkpoint=checkpoint, data=str(out), out=str(out), partial_bodies=partial,
                      person_mask_mode="off", threads_per_task=1)
    synth = Synthesizer(cfg)
    synth.run(people, out)
    synth.finalize(out)
    return {r.image_path.stem: r.label_map for r in iter_records(out) if r.label_map is not None}


def score(labels: dict[str, np.ndarray], truth: dict[str, np.ndarray], num_classes: int) -> dict:
    """Scores of synthetic ``labels`` against ``truth`` (both {name: (h, w)}); people
    without a label are not scored (their count is the coverage)."""
    if not labels:
        return {"people_labelled": 0, "people": len(truth)}
    kept, as_bg = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    ignored = person = 0
    for name, lab in labels.items():
        gt = truth[name]
        known = lab != IGNORE
        kept.update(np.where(known, gt, IGNORE), np.where(known, lab, 0))
        as_bg.update(gt, np.where(known, lab, 0))
        fg = (gt > 0) & (gt != IGNORE)
        person += int(fg.sum())
        ignored += int((fg & ~known).sum())
    s, b = kept.compute(), as_bg.compute()
    return {"people_labelled": len(labels), "people": len(truth),
            "miou_known_pixels": round(100 * s.mean_iou, 2), "iou_known_pixels": [round(100 * v, 1) for v in s.iou],
            "person_pixels_ignored_pct": round(100 * ignored / max(person, 1), 1),
            "miou_ignore_as_background": round(100 * b.mean_iou, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--truth", default="../shared/data/ccp")
    ap.add_argument("--work", default="data/exp/partial")
    ap.add_argument("--cuts", type=float, nargs="+", default=[0.8, 0.5])
    ap.add_argument("--out", default="docs/results/partial_bodies.json")
    args = ap.parse_args()
    work = Path(args.work)
    val = [r for r in iter_records(args.truth) if r.split == "val" and r.label_map is not None
           and r.keypoints is not None and present(r.keypoints[[J["pelvis"], J["thorax"]]]).all()]
    num_classes = LABEL_SETS[val[0].label_set].num_classes
    whole = synthesize(args.checkpoint, [PersonRecord(r.image_path, r.image_size, r.person_id, "ccp",
                                                      keypoints=r.keypoints, split="val") for r in val],
                       work / "whole", partial=True)
    rows = []
    for f in args.cuts:
        folder = work / f"cut{f:g}" / "photos"
        folder.mkdir(parents=True, exist_ok=True)
        cut = [cut_person(r, f, folder) for r in val]
        truth = {p.image_path.stem: gt for p, gt in cut}
        people = [p for p, _ in cut]
        joints = [int(present(p.keypoints).sum()) for p in people]
        reference = {n: lab[: truth[n].shape[0]] for n, lab in whole.items() if n in truth}
        row = {"cut": f, "joints_left_median": float(np.median(joints)),
               "whole_body_then_cut": score(reference, truth, num_classes)}
        for partial in (False, True):
            labels = synthesize(args.checkpoint, people, work / f"cut{f:g}" / ("partial" if partial else "skip"), partial)
            row["partial_bodies" if partial else "skipped_as_before"] = score(labels, truth, num_classes)
        row["whole_body_then_cut_same_people"] = score({n: reference[n] for n in labels}, truth, num_classes)
        rows.append(row)
        print(json.dumps(row, indent=1))
    files.write_json(args.out, {"checkpoint": args.checkpoint, "truth": args.truth, "val_people": len(val),
                                "rows": rows})


if __name__ == "__main__":
    main()
