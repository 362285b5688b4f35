"""Label synthesis for keypoint-only people (Fang et al., CVPR 2018, section 5).

For every image: each person's crop -> part-level prior from the k nearest labelled
poses (deterministic) -> refinement U-Net -> class probabilities, pasted back into the
full image (overlaps go to the most confident person, :mod:`pipeline.paste`).

Output folder (the partsynth layout, readable by ``partsynth data summary``)::

    dataset.json  people.json            partsynth dataset description and people
    labels/<item>.png                    palette label PNG per image
    probs/<item>.npz                     optional: per-person crop probabilities (uint8)
    items/<item>.json                    per-image record: what was done, for resuming
    annotations.json                     COCO-style, RLE per person and class
    manifest.parquet                     one row per person, with provenance

Each item is written atomically (PNG first, its record last), a rerun skips items whose
record matches the run's fingerprint, and the summary files are rebuilt from the item
records at the end, so an interrupted run resumes and ends with the same files.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pycocotools import mask as mask_utils

from pipeline import files
from pipeline.files import file_sha256
from pipeline.errors import DataError
from pipeline.labels import LABEL_SETS
from pipeline.layouts import iter_records
from pipeline.manifest import write_manifest
from pipeline.paste import paste_people
from pipeline.pose import apply_affine, person_box, torso_problem
from pipeline.prior import PriorBank, PriorConfig, crop_image
from pipeline.readers.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, keypoints_to_json
from pipeline.records import PersonRecord, ReadReport
from refine_net.dataset import image_to_tensor
from refine_net.train import load_refiner


@dataclass(frozen=True)
class SynthConfig:
    """A synthesis run.

    Attributes:
        checkpoint: refiner checkpoint (``last.pt`` of ``train-refiner``).
        bank_data: labelled dataset whose people (with keypoints) form the prior bank;
            defaults to the dataset the refiner was trained on.
        k: neighbours per prior (nearest, deterministic).
        save_probabilities: also write per-person crop probabilities.
        bank_split: use only this split of ``bank_data`` (None: every labelled person).
    """

    checkpoint: str
    bank_data: str | None = None
    k: int = 3
    save_probabilities: bool = False
    bank_split: str | None = None


def item_name(image_path: Path) -> str:
    """A file-system-safe, unique item name for an image path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", image_path.stem)[:60]
    return f"{stem}-{hashlib.sha1(str(image_path).encode()).hexdigest()[:8]}"


class Synthesizer:
    """Holds the refiner and the prior bank; :meth:`run` labels people image by image."""

    def __init__(self, cfg: SynthConfig, bank: PriorBank | None = None):
        """Load the refiner; build the prior bank unless a prebuilt ``bank`` (same data,
        split and crop size, see :func:`build_bank`) is given."""
        self.cfg = cfg
        self.model, ckpt = load_refiner(cfg.checkpoint)
        self.label_set = ckpt["label_set"]
        self.prior_cfg = synthesis_prior_config(ckpt, cfg.k)
        bank_data = cfg.bank_data or ckpt["bank_data"]
        self.bank = bank if bank is not None else build_bank(bank_data, cfg.bank_split, self.prior_cfg)
        self.checkpoint_sha256 = file_sha256(cfg.checkpoint)
        self.fingerprint = hashlib.sha256(json.dumps(
            {"ckpt": self.checkpoint_sha256, "bank": str(bank_data), "bank_split": cfg.bank_split,
             "bank_size": len(self.bank.exemplars), "k": cfg.k, "probs": cfg.save_probabilities},
            sort_keys=True).encode()).hexdigest()[:16]
        self.use_prior = self.model.cfg.use_prior

    @torch.no_grad()
    def label_image(self, image_path: Path, people: list[PersonRecord]) -> tuple[dict, np.ndarray | None, list]:
        """Label one image's people.  Returns (item record, label map or None, crop probs).

        People whose pose is unusable are skipped with their reason; a corrupt image
        raises DataError (the caller records it).
        """
        image = files.read_image(image_path)
        size = self.prior_cfg.size
        ok, persons = [], []
        for rec in people:
            entry = {"person_id": rec.person_id, "keypoints": keypoints_to_json(rec.keypoints)
                     if rec.keypoints is not None else None, "split": rec.split, "source": rec.source_format}
            problem = "no keypoints" if rec.keypoints is None else torso_problem(rec.keypoints)
            if not problem and rec.num_keypoints < self.prior_cfg.min_shared:
                problem = f"only {rec.num_keypoints} keypoints (< {self.prior_cfg.min_shared})"
            if not problem:
                box = person_box(rec.keypoints, self.prior_cfg.margin, path=image_path)
                kp = apply_affine(rec.keypoints, box.crop_from_image(size))
                nb = self.bank.index.query(kp, self.cfg.k)
                if nb.ids[0, 0] < 0:
                    problem = nb.reasons[0] or "no neighbour"
            if problem:
                entry.update(status="skipped", reason=problem)
            else:
                ids = nb.ids[0][nb.ids[0] >= 0]
                entry.update(status="ok", box=list(box), neighbours=[self.bank.exemplars[i].person_id for i in ids],
                             neighbour_flipped=[self.bank.exemplars[i].flipped for i in ids],
                             distances=[round(float(d), 5) for d in nb.distances[0][: len(ids)]])
                ok.append((box, kp, ids))
            persons.append(entry)
        probs = []
        if ok:
            xs = []
            for box, kp, ids in ok:
                x = image_to_tensor(crop_image(image, box, size))
                if self.use_prior:
                    x = torch.cat([x, torch.from_numpy(self.bank.prior(kp, ids))], dim=0)
                xs.append(x)
            probs = list(self.model(torch.stack(xs))["parsing"].softmax(1).numpy())
        if not ok:
            return {"image": str(image_path), "image_size": list(image.shape[:2]), "persons": persons}, None, []
        pasted = paste_people(image.shape[:2], probs, [b for b, _, _ in ok])
        j = 0
        for entry in persons:
            if entry["status"] != "ok":
                continue
            mine = pasted.owner == j
            entry["mean_max_prob"] = round(float(pasted.confidence[mine].mean()) if mine.any() else 0.0, 5)
            entry["pixels"] = int((mine & (pasted.label_map > 0)).sum())
            entry["rle"] = {}
            for c in np.unique(pasted.label_map[mine]):
                if c == 0:
                    continue
                rle = mask_utils.encode(np.asfortranarray((mine & (pasted.label_map == c)).astype(np.uint8)))
                entry["rle"][str(int(c))] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
            j += 1
        return {"image": str(image_path), "image_size": list(image.shape[:2]), "persons": persons}, \
            pasted.label_map, probs

    def run(self, people: Iterable[PersonRecord], out_dir: str | Path,
            progress: Callable[[str], None] | None = None, stop_after: int | None = None) -> dict:
        """Label every person of ``people`` (grouped by image) into ``out_dir``.

        Items already done with the same fingerprint are skipped.  ``stop_after`` stops
        after that many newly processed items (for tests of interruption).
        Returns counts: images done now, skipped as done, failed; people labelled, skipped.
        """
        out = Path(out_dir)
        remove_partial_files(out)
        by_image: OrderedDict[Path, list[PersonRecord]] = OrderedDict()
        for rec in people:
            by_image.setdefault(Path(rec.image_path).resolve(), []).append(rec)
        counts = {"images_done": 0, "images_reused": 0, "images_failed": 0}
        for image_path, recs in by_image.items():
            if stop_after is not None and counts["images_done"] >= stop_after \
                    and not self.is_done(out, image_path):
                break
            counts[self.process_image(image_path, recs, out)] += 1
            if progress:
                progress(item_name(image_path))
        return counts

    def is_done(self, out: Path, image_path: Path) -> bool:
        """True when ``out`` holds this image's item record with this run's fingerprint."""
        item_path = out / "items" / f"{item_name(image_path)}.json"
        if not item_path.exists():
            return False
        try:
            return json.loads(item_path.read_text())["fingerprint"] == self.fingerprint
        except (json.JSONDecodeError, KeyError):
            return False  # a damaged record is redone

    def process_image(self, image_path: Path, recs: list[PersonRecord], out: Path) -> str:
        """Label one image's people into ``out`` (label PNG, optional probabilities, then
        the item record, each written atomically); returns ``images_reused`` when already
        done, ``images_failed`` for an unreadable image (recorded with its error), else
        ``images_done``."""
        if self.is_done(out, image_path):
            return "images_reused"
        name = item_name(image_path)
        status = "images_done"
        try:
            item, label_map, probs = self.label_image(image_path, recs)
        except DataError as e:
            item = {"image": str(image_path), "error": str(e),
                    "persons": [{"person_id": r.person_id, "status": "skipped", "reason": e.problem,
                                 "keypoints": None, "split": r.split} for r in recs]}
            label_map, probs, status = None, [], "images_failed"
        item["fingerprint"] = self.fingerprint
        if label_map is not None:
            item["label"] = f"labels/{name}.png"
            files.write_label_png(out / item["label"], label_map, LABEL_SETS[self.label_set].palette)
            if self.cfg.save_probabilities and probs:
                with files.atomic_path(out / "probs" / f"{name}.npz") as tmp:
                    np.savez_compressed(tmp, probs=np.round(np.stack(probs) * 255).astype(np.uint8))
                item["probs"] = f"probs/{name}.npz"
        files.write_json(out / "items" / f"{name}.json", item)
        return status

    def finalize(self, out_dir: str | Path) -> dict:
        """Rebuild people.json, annotations.json, manifest.parquet and dataset.json from
        the item records; returns totals."""
        out = Path(out_dir)
        items = [json.loads(p.read_text()) for p in sorted((out / "items").glob("*.json"))]
        people, rows, images, anns = [], [], [], []
        names = LABEL_SETS[self.label_set].names
        for image_id, item in enumerate(items, start=1):
            h, w = item.get("image_size", [0, 0])
            if item.get("label"):
                images.append({"id": image_id, "file_name": item["image"], "height": h, "width": w,
                               "label": item["label"]})
            for p in item["persons"]:
                row = {"person_id": p["person_id"], "image": item["image"], "status": p["status"],
                       "reason": p.get("reason", ""), "split": p.get("split"), "source": p.get("source"),
                       "neighbours": p.get("neighbours", []), "distances": p.get("distances", []),
                       "mean_max_prob": p.get("mean_max_prob", np.nan), "pixels": p.get("pixels", 0),
                       "refiner_sha256": self.checkpoint_sha256, "label": item.get("label")}
                rows.append(row)
                if p["status"] != "ok":
                    continue
                people.append({"person_id": p["person_id"], "image": item["image"], "label": item["label"],
                               "keypoints": p["keypoints"], "split": p.get("split"),
                               "meta": {"mean_max_prob": p["mean_max_prob"], "neighbours": p["neighbours"],
                                        "source": p.get("source")}})
                for c, rle in p["rle"].items():
                    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(c),
                                 "person_id": p["person_id"], "segmentation": rle, "iscrowd": 0,
                                 "area": float(mask_utils.area(r)),
                                 "bbox": [float(v) for v in mask_utils.toBbox(r)]})
        files.write_json(out / "annotations.json", {
            "info": {"description": "partsynth synthesized labels", "refiner_sha256": self.checkpoint_sha256},
            "images": images, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in enumerate(names) if i > 0]})
        files.write_json(out / PEOPLE_FILE, people)
        write_manifest(pd.DataFrame(rows), out / "manifest.parquet")
        files.write_json(out / DATASET_FILE, {
            "format": FORMAT, "label_set": self.label_set, "synthetic": True,
            "description": "labels synthesized by partsynth (prior + refinement U-Net)",
            "refiner_checkpoint": str(self.cfg.checkpoint), "refiner_sha256": self.checkpoint_sha256,
            "synth_config": asdict(self.cfg), "fingerprint": self.fingerprint})
        ok = sum(r["status"] == "ok" for r in rows)
        return {"images": len(items), "people_labelled": ok, "people_skipped": len(rows) - ok}


def synthesis_prior_config(ckpt: dict, k: int) -> PriorConfig:
    """The prior configuration of synthesis: the refiner's crop frame with ``k`` neighbours."""
    prior = PriorConfig(**ckpt["prior_config"])
    return PriorConfig(size=prior.size, margin=prior.margin, k=k, min_shared=prior.min_shared)


def build_bank(bank_data: str | Path, bank_split: str | None, prior_cfg: PriorConfig) -> PriorBank:
    """The prior bank of synthesis: labelled people with keypoints of ``bank_data`` (only
    ``bank_split`` when given; bad items skipped).  Raises ValueError when none is left."""
    recs = [r for r in iter_records(bank_data, skip_bad=True)
            if r.label_map is not None and r.keypoints is not None
            and (bank_split is None or r.split == bank_split)]
    if not recs:
        raise ValueError(f"{bank_data}: no labelled people with keypoints"
                         + (f" in split {bank_split!r}" if bank_split else ""))
    return PriorBank.from_records(recs, prior_cfg)


def remove_partial_files(out: Path) -> list[Path]:
    """Delete temporary files an interrupted run left in ``out`` (the ``.<name>.*.tmp.<ext>``
    files of :func:`pipeline.files.atomic_path`); returns them."""
    stale = [p for p in out.rglob(".*.tmp*") if p.is_file()] if out.exists() else []
    for p in stale:
        p.unlink()
    return stale


def keypoint_only_people(data: str | Path, layout: str | None = None,
                         report: ReadReport | None = None) -> list[PersonRecord]:
    """People of a dataset to synthesize for: those without a label map (label maps of
    labelled people are left alone); bad items are skipped into ``report``."""
    return [r for r in iter_records(data, layout, skip_bad=True, report=report) if r.label_map is None]
