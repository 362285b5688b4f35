"""Inspecting a synthesized dataset: statistics and a static, sortable HTML page.

Reads a folder in the synthesized-dataset format (:mod:`pipeline.formats.synth_dataset`).  The
page (``index.html`` + ``thumbs/*.png``, rendered from ``templates/inspect.html.j2``)
opens from disk in any browser with no server: one row per person with thumbnails
image | prior | label overlay, sortable by refiner confidence by clicking the column
header.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from pipeline.formats import files
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.pictures.overlay import overlay
from pipeline.priors.pose import CropBox
from pipeline.formats.folder import read_dataset_info
from pipeline.formats.synth_dataset import SynthPerson, read_items


@dataclass
class LabelledPerson:
    """A person labelled "ok" in a synthesized dataset, with its image and label files."""

    person: SynthPerson
    image: str
    label: str
    source: str

    @property
    def confidence(self) -> float:
        return float(self.person.mean_max_prob or 0.0)


def load_people(root: str | Path) -> tuple[dict, list[LabelledPerson]]:
    """``dataset.json`` and every labelled person.  Raises DataError for a folder that is
    not a partsynth dataset or holds a malformed item record."""
    root = Path(root)
    info = read_dataset_info(root)
    people = []
    for item in read_items(root):
        for p in item.labelled:
            source = p.source or Path(item.image).parent.parent.name or "unknown"
            people.append(LabelledPerson(p, item.image, item.label, source))
    return info, people


def dataset_stats(root: str | Path, lowest: int = 10) -> dict:
    """Per-class pixel frequency (share of labelled pixels, background included), people per
    source, refiner confidence (mean max-probability) quantiles and histogram, and the
    ``lowest`` lowest-confidence people.  Raises DataError as :func:`load_people`."""
    root = Path(root)
    info, people = load_people(root)
    names = LABEL_SETS[info["label_set"]].names
    counts = np.zeros(len(names), np.int64)
    for label in sorted({p.label for p in people if p.label}):
        lm = files.read_label_png(root / label)
        counts += np.bincount(lm[lm != IGNORE].ravel(), minlength=len(names))[: len(names)]
    conf = np.array([p.confidence for p in people], float)
    hist, edges = np.histogram(conf, bins=10, range=(0.0, 1.0)) if conf.size else (np.zeros(10, int), np.linspace(0, 1, 11))
    order = np.argsort(conf)[:lowest]
    return {
        "people": len(people), "label_set": info["label_set"],
        "class_pixel_share": {n: float(c / max(counts.sum(), 1)) for n, c in zip(names, counts)},
        "people_per_source": dict(Counter(p.source for p in people)),
        "confidence_quantiles": {f"q{int(q * 100)}": float(np.quantile(conf, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        if conf.size else {},
        "confidence_histogram": {f"{edges[i]:.1f}-{edges[i + 1]:.1f}": int(h) for i, h in enumerate(hist)},
        "lowest_confidence": [{"person_id": people[i].person.person_id, "image": people[i].image,
                               "mean_max_prob": float(conf[i])} for i in order],
    }


PriorFn = Callable[[SynthPerson], np.ndarray | None]


def write_inspect_page(root: str | Path, out_dir: str | Path, prior_fn: PriorFn | None = None,
                       max_people: int = 200, tile: int = 96, preview: int = 384) -> Path:
    """Write ``out_dir/index.html``, ``out_dir/thumbs/`` (``tile`` px) and
    ``out_dir/previews/`` (image | prior | label side by side, ``preview`` px high) for up
    to ``max_people`` people (the lowest-confidence ones first when there are more).

    The page filters by source, class and confidence range, sorts by confidence, and opens
    a person's preview on click; the URL fragment presets them
    (``#source=coco&class=hair&min=0.5&person=ID``).
    ``prior_fn(person)`` returns the person's prior as an RGB uint8 (tile-sized or any size)
    thumbnail, or None to show "no prior".  Returns the page path."""
    root, out = Path(root), Path(out_dir)
    info, people = load_people(root)
    people = sorted(people, key=lambda p: p.confidence)[:max_people]
    palette = LABEL_SETS[info["label_set"]].palette
    names = LABEL_SETS[info["label_set"]].names
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    rows, labels, images = [], {}, {}
    for i, lp in enumerate(people):
        if lp.image not in images:
            images = {lp.image: files.read_image(lp.image)}            # keep one image in memory
        image = images[lp.image]
        if lp.label not in labels:
            labels = {lp.label: files.read_label_png(root / lp.label)}
        box = CropBox(*lp.person.box)
        cells = {"image": _crop(image, box), "label": _crop(overlay(image, labels[lp.label], 0.55, palette), box)}
        prior = prior_fn(lp.person) if prior_fn else None
        if prior is not None:
            cells["prior"] = prior
        thumbs = {}
        for kind, arr in cells.items():
            thumbs[kind] = f"thumbs/{i:05d}-{kind}.png"
            files.write_image(out / thumbs[kind], _fit(arr, tile))
        big = f"previews/{i:05d}.png"
        files.write_image(out / big, np.concatenate(
            [_fit(cells[k], preview, by_height=True) for k in ("image", "prior", "label") if k in cells], axis=1))
        rows.append({"person_id": lp.person.person_id, "source": lp.source, "confidence": lp.confidence,
                     "classes": [names[c] for c in sorted(lp.person.rle)],
                     "neighbours": [str(n) for n in lp.person.neighbours], "thumbs": thumbs, "preview": big})
    page = out / "index.html"
    meta = json.dumps({k: info.get(k) for k in ("label_set", "refiner_checkpoint", "fingerprint")})
    env = Environment(loader=PackageLoader("pipeline.pictures", "templates"), autoescape=select_autoescape(["j2"]))
    with files.atomic_path(page) as tmp:
        tmp.write_text(env.get_template("inspect.html.j2").render(
            root=str(root), meta=meta, rows=rows, sources=sorted({r["source"] for r in rows}),
            classes=[n for n in names[1:] if any(n in r["classes"] for r in rows)]))
    return page


def _crop(image: np.ndarray, box: CropBox) -> np.ndarray:
    """The part of ``image`` inside a person box (clipped to the image)."""
    h, w = image.shape[:2]
    half = box.side / 2
    x0, y0 = min(w - 1, max(0, int(box.cx - half))), min(h - 1, max(0, int(box.cy - half)))
    x1, y1 = min(w, int(np.ceil(box.cx + half))), min(h, int(np.ceil(box.cy + half)))
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def _fit(arr: np.ndarray, tile: int, by_height: bool = False) -> np.ndarray:
    """``arr`` resized so that its longer side (its height with ``by_height``) is ``tile``."""
    import cv2

    h, w = arr.shape[:2]
    s = tile / (h if by_height else max(h, w))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    return cv2.resize(arr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def bank_prior_fn(bank, palette: np.ndarray) -> PriorFn:
    """A ``prior_fn`` for :func:`write_inspect_page` recomputing each person's prior from
    the bank it was synthesized with (its recorded neighbours, box and keypoints; a
    partial body's pose completed from those neighbours again, as synthesis did)."""
    from pipeline.pictures.prior_grid import prior_colour
    from pipeline.priors.partial import complete_pose
    from pipeline.priors.pose import apply_affine

    rows = {(e.person_id, e.flipped): i for i, e in enumerate(bank.exemplars)}

    def prior_fn(person: SynthPerson) -> np.ndarray | None:
        flipped = person.neighbour_flipped or [False] * len(person.neighbours)
        ids = [rows.get((n, f), -1) for n, f in zip(person.neighbours, flipped)]
        if not ids or min(ids) < 0:
            return None        # the bank changed since synthesis
        pose = person.keypoints
        if person.estimated_joints:
            pose, _ = complete_pose(pose, np.stack([bank.exemplars[i].keypoints for i in ids]))
        kp = apply_affine(pose, CropBox(*person.box).crop_from_image(bank.config.size))
        return prior_colour(bank.prior(kp, ids), palette)

    return prior_fn
