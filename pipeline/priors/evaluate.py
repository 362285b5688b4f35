"""Scoring priors on labelled data: leave-one-out and bank/query splits.

Each query person's prior is built in its own crop frame from other people's label maps
and ``argmax(prior)`` is scored against its ground truth cropped the same way (pixels
outside the image are 255 and not scored).  Baselines: the pose-free prior (the bank's
mean crop label map) and, for PASCAL-Person-Part classes, the skeleton map.  For
``pascal6`` people with their own masks (:func:`pipeline.formats.person_mask.read_person_mask`)
two more rows: ``partition`` (:func:`pipeline.priors.partition.partition_person` in the
crop, ignore scored as background) and ``morph + mask`` (the k-prior within the mask,
gaps filled by the partition: :func:`pipeline.priors.partition.masked_morph_prior`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.metrics import ConfusionMatrix, ParsingScores
from pipeline.priors.bank import PriorBank, PriorConfig, crop_label_map, crop_mask
from pipeline.formats.person_mask import read_person_mask
from pipeline.formats.records import PersonRecord
from pipeline.priors.partition import masked_morph_prior, partition_person, partition_prior
from pipeline.priors.segments import SEGMENT_TO_PASCAL6, skeleton_map


def _gt_crop(rec: PersonRecord, bank: PriorBank, row: int) -> np.ndarray:
    return crop_label_map(rec.label_map, bank.exemplars[row].box, bank.config.size, outside=IGNORE)


def _mask_crop(rec: PersonRecord, bank: PriorBank, row: int) -> np.ndarray | None:
    """The person's own mask in its crop frame, bool (S, S), or None without one."""
    mask = read_person_mask(rec, rec.image_size)
    if mask is None:
        return None
    return crop_mask(mask, bank.exemplars[row].box, bank.config.size)


def _score_rows(bank: PriorBank, gts: Sequence[np.ndarray], kp_crops: np.ndarray, groups, ks: Sequence[int],
                progress, masks: Sequence[np.ndarray | None] = ()) -> dict[str, ParsingScores]:
    c = bank.num_classes
    out = {}
    with_masks = bank.label_set == "pascal6" and len(masks) == len(gts) and all(m is not None for m in masks)
    parts = [partition_person(m, kp_crops[i]).label_map for i, m in enumerate(masks)] if with_masks else []
    if with_masks:
        cm = ConfusionMatrix(c)
        for gt, part in zip(gts, parts):
            cm.update(gt, np.where(part == IGNORE, 0, part))
        out["partition"] = cm.compute()
    for k in ks:
        nb = bank.index.query(kp_crops, k, exclude_groups=groups)
        cm, both = ConfusionMatrix(c), ConfusionMatrix(c)
        for i, gt in enumerate(gts):
            ids = nb.ids[i][nb.ids[i] >= 0]
            prior = bank.prior(kp_crops[i], ids) if len(ids) else None
            cm.update(gt, prior.argmax(0) if prior is not None else np.zeros_like(gt))
            if with_masks:
                fill = partition_prior(parts[i], c)
                both.update(gt, (masked_morph_prior(prior, masks[i], parts[i]) if prior is not None else fill).argmax(0))
            if progress:
                progress()
        out[f"k={k}"] = cm.compute()
        if with_masks:
            out[f"k={k} morph + mask"] = both.compute()
    cm = ConfusionMatrix(c)
    for i, gt in enumerate(gts):
        cm.update(gt, bank.mean_prior(None if groups is None else groups[i]).argmax(0))
    out["pose-free"] = cm.compute()
    if bank.label_set == "pascal6":
        cm = ConfusionMatrix(c)
        lut = np.concatenate([[0], SEGMENT_TO_PASCAL6]).astype(np.uint8)
        for i, gt in enumerate(gts):
            cm.update(gt, lut[skeleton_map(kp_crops[i], bank.config.size)])
        out["skeleton map"] = cm.compute()
    return out


def evaluate_leave_one_out(records: Sequence[PersonRecord], config: PriorConfig, ks: Sequence[int],
                           progress: Callable[[], None] | None = None) -> tuple[dict[str, ParsingScores], dict]:
    """Prior of every labelled person from all *other* labelled people.

    Returns: ({method: scores}, info with the number of queries and skipped people).
    """
    bank = PriorBank.from_records(records, config)
    originals = [r for r, e in enumerate(bank.exemplars) if not e.flipped]
    recs = {r.person_id: r for r in records}
    gts = [_gt_crop(recs[bank.exemplars[r].person_id], bank, r) for r in originals]
    masks = [_mask_crop(recs[bank.exemplars[r].person_id], bank, r) for r in originals]
    kps = np.stack([bank.exemplars[r].keypoints for r in originals])
    scores = _score_rows(bank, gts, kps, bank.groups[originals], ks, progress, masks)
    return scores, {"queries": len(originals), "bank": len(bank.exemplars), "skipped": bank.skipped}


def evaluate_split(bank_records: Sequence[PersonRecord], query_records: Sequence[PersonRecord],
                   config: PriorConfig, ks: Sequence[int],
                   progress: Callable[[], None] | None = None) -> tuple[dict[str, ParsingScores], dict]:
    """Priors of the query people (e.g. CCP val) from a bank of other people (CCP train)."""
    bank = PriorBank.from_records(bank_records, config)
    qbank = PriorBank.from_records(query_records, replace(config, flip=False))
    recs = {r.person_id: r for r in query_records}
    rows = list(range(len(qbank.exemplars)))
    gts = [_gt_crop(recs[qbank.exemplars[r].person_id], qbank, r) for r in rows]
    masks = [_mask_crop(recs[qbank.exemplars[r].person_id], qbank, r) for r in rows]
    kps = np.stack([e.keypoints for e in qbank.exemplars])
    scores = _score_rows(bank, gts, kps, None, ks, progress, masks)
    return scores, {"queries": len(rows), "bank": len(bank.exemplars),
                    "skipped": bank.skipped + qbank.skipped}


def scores_table(scores: dict[str, ParsingScores], label_set: str) -> str:
    """Markdown table: one row per method, mIoU then per-class IoU, in percent."""
    names = LABEL_SETS[label_set].names
    head = "| method | mIoU | " + " | ".join(names) + " |"
    sep = "|" + "---|" * (len(names) + 2)
    rows = [f"| {m} | {100 * s.mean_iou:.1f} | " + " | ".join(
        "-" if np.isnan(v) else f"{100 * v:.1f}" for v in s.iou) + " |" for m, s in scores.items()]
    return "\n".join([head, sep, *rows])
