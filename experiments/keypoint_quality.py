"""How good are partsynth's own keypoints and person masks (BlazePose)?

    python experiments/keypoint_quality.py --data-root ../shared/data --out docs/results/keypoint_quality.json

- LSP test half (im1001-im2000, one person per photo, whole photo): PCK@0.2 of the torso
  size per joint of the canonical skeleton against LSP's ground-truth joints, and how many
  people BlazePose misses (a missed person counts as wrong on every joint).
- CCP val split (ids divisible by 4): IoU of the BlazePose person mask (>= 0.5) against
  the person silhouette (label > 0), one photo at a time and over all pixels.
- COCO and OCHuman fixtures: each annotated person's box (COCO annotations), padded as
  ``partsynth keypoints --boxes`` does, mask IoU against the instance polygon / RLE.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from pipeline.formats import files
from pipeline.blazepose import BlazePose
from pipeline.metrics import pck_torso
from pipeline.readers import read_ccp, read_coco, read_lsp
from pipeline.readers.coco import coco_instance_mask
from pipeline.skeleton import JOINT_NAMES

LSP_JOINTS = [n for n in JOINT_NAMES if n not in ("pelvis", "thorax")]     # the 14 LSP annotates


def lsp_pck(bp: BlazePose, root: Path) -> dict:
    preds, gts, missed, t = [], [], 0, time.time()
    for r in read_lsp(root / "lsp"):
        if r.split != "test":
            continue
        (person,) = bp.estimate(files.read_image(r.image_path), path=r.image_path)
        if isinstance(person, str):
            missed += 1
            preds.append(np.full((len(JOINT_NAMES), 3), np.nan, np.float32))
        else:
            preds.append(person.keypoints)
        gts.append(r.keypoints)
    per_joint, _ = pck_torso(np.stack(preds), np.stack(gts), 0.2)
    limbs = [JOINT_NAMES.index(n) for n in LSP_JOINTS if n not in ("upper_neck", "head_top")]
    gt = np.stack(gts)
    gt[:, [JOINT_NAMES.index("pelvis"), JOINT_NAMES.index("thorax")], 2] = 0      # derived, not LSP's: unscored
    _, pck14 = pck_torso(np.stack(preds), gt, 0.2)
    return {"people": len(gts), "missed": missed, "seconds": round(time.time() - t, 1),
            "pck_per_joint": {n: round(float(per_joint[JOINT_NAMES.index(n)]) * 100, 1) for n in LSP_JOINTS},
            "pck_14": round(pck14 * 100, 1),
            "pck_12_limbs": round(float(np.nanmean([per_joint[i] for i in limbs])) * 100, 1)}


def ccp_masks(bp: BlazePose, root: Path) -> dict:
    ious, inter, union, missed = [], 0, 0, 0
    for r in read_ccp(root / "ccp"):
        if r.split != "val":
            continue
        (person,) = bp.estimate(files.read_image(r.image_path), path=r.image_path)
        truth = r.label_map > 0
        mask = np.zeros_like(truth) if isinstance(person, str) else person.mask >= 0.5
        missed += isinstance(person, str)
        i, u = int((mask & truth).sum()), int((mask | truth).sum())
        ious.append(i / u)
        inter, union = inter + i, union + u
    return {"photos": len(ious), "missed": missed, "mean_iou": round(float(np.mean(ious)) * 100, 1),
            "median_iou": round(float(np.median(ious)) * 100, 1), "pooled_iou": round(inter / union * 100, 1)}


def instance_masks(bp: BlazePose, ann: Path) -> dict:
    ious, missed = [], 0
    for r in read_coco(ann, min_keypoints=1):
        h, w = r.image_size
        truth = coco_instance_mask(r.meta) > 0
        (person,) = bp.estimate(files.read_image(r.image_path), [r.meta["bbox"]], [None], path=r.image_path)
        mask = np.zeros((h, w), bool) if isinstance(person, str) else person.mask >= 0.5
        missed += isinstance(person, str)
        ious.append(float((mask & truth).sum() / max(1, (mask | truth).sum())))
    return {"people": len(ious), "missed": missed, "mean_iou": round(float(np.mean(ious)) * 100, 1),
            "per_person_iou": [round(v * 100, 1) for v in ious]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parts", nargs="*", default=["lsp", "ccp", "coco"])
    args = ap.parse_args()
    bp = BlazePose()
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "date": time.strftime("%Y-%m-%d"), "estimator": "mediapipe 0.10.14 BlazePose full"}
    if "lsp" in args.parts:
        result["lsp_test_pck"] = lsp_pck(bp, args.data_root)
        print("LSP test half:", result["lsp_test_pck"])
    if "ccp" in args.parts:
        result["ccp_val_person_mask"] = ccp_masks(bp, args.data_root)
        print("CCP val masks:", result["ccp_val_person_mask"])
    if "coco" in args.parts:
        mm = args.data_root / "mmpose"
        result["coco_fixture_masks"] = instance_masks(bp, mm / "coco" / "test_coco.json")
        result["ochuman_fixture_masks"] = instance_masks(bp, mm / "ochuman" / "test_ochuman.json")
        print("COCO:", result["coco_fixture_masks"], "OCHuman:", result["ochuman_fixture_masks"])
    if args.out:
        files.write_json(args.out, result)


if __name__ == "__main__":
    main()
