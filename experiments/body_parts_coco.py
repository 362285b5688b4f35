"""How much of each keypoint person's own mask its synthesized body-part label covers
(docs/results.md, "Body parts of in-the-wild people").

    partsynth synthesize --labels pascal6 --data ../shared/data/mmpose/coco/test_coco.json --out OUT
    python experiments/body_parts_coco.py --synth OUT --data ../shared/data/mmpose/coco/test_coco.json \\
        --out docs/results/body_parts_coco_fixture.json

Per person of ``--data`` with its own instance mask (COCO's segmentation): the share of the
mask given a part (pixels the person owns in the label map with classes 1-6), and the
silhouette IoU of those pixels against the mask; a skipped person counts 0 and its reason
is listed.  Pooled: the sums of intersections over the sums of unions.  People of data
without their own masks (MPII, with BlazePose's) are counted labelled / skipped by reason.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.formats.files import write_json
from pipeline.formats.person_mask import read_person_mask
from pipeline.formats.records import ReadReport
from pipeline.formats.synth_dataset import read_items
from pipeline.readers.layouts import iter_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", required=True, help="a synthesized pascal6 folder")
    ap.add_argument("--data", required=True, help="the dataset it was made from")
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()
    report = ReadReport()
    source = {r.person_id: r for r in iter_records(args.data, skip_bad=True, report=report)}
    rows, reasons = [], Counter()
    for item in read_items(args.synth):
        for p in item.persons:
            if p.status != "ok":
                reasons[p.reason] += 1
            rec = source.get(p.person_id)
            mask = read_person_mask(rec, rec.image_size) if rec is not None and rec.meta.get("rle") else None
            if mask is None:
                continue
            mine = np.zeros(mask.shape, bool)
            for rle in p.rle.values():
                mine |= mask_utils.decode(rle).astype(bool)
            inter, union = int((mine & mask).sum()), int((mine | mask).sum())
            rows.append({"person_id": p.person_id, "status": p.status, "mask_pixels": int(mask.sum()),
                         "given_a_part": inter / max(int(mask.sum()), 1), "silhouette_iou": inter / max(union, 1),
                         "inter": inter, "union": union, "notes": p.notes})
    people = sum(1 for item in read_items(args.synth) for _ in item.persons)
    labelled = people - sum(reasons.values())
    print(f"{people} people, {labelled} labelled, {people - labelled} skipped "
          f"({dict(reasons) or 'none'}); reader: {report.summary()}")
    out = {"synth": args.synth, "data": args.data, "people": people, "labelled": labelled,
           "skipped": dict(reasons), "reader": dict(report.counts)}
    if rows:
        part = np.array([r["given_a_part"] for r in rows])
        iou = np.array([r["silhouette_iou"] for r in rows])
        pooled = sum(r["inter"] for r in rows) / max(sum(r["union"] for r in rows), 1)
        print(f"{len(rows)} people with their own masks: mask given a part mean {100 * part.mean():.1f}% "
              f"(min {100 * part.min():.1f}), silhouette IoU mean {100 * iou.mean():.1f} (min {100 * iou.min():.1f}), "
              f"pooled {100 * pooled:.1f}")
        out.update(with_masks=len(rows), given_a_part_mean=part.mean(), given_a_part_min=part.min(),
                   silhouette_iou_mean=iou.mean(), silhouette_iou_min=iou.min(), silhouette_iou_pooled=pooled,
                   people_rows=[{k: v for k, v in r.items() if k not in ("inter", "union")} for r in rows])
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
