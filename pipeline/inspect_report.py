"""Inspecting a synthesized dataset: statistics and a static, sortable HTML page.

Reads a folder written by :mod:`refine_net.synthesize` (``dataset.json``, ``items/*.json``,
``labels/*.png``).  The page (``index.html`` + ``thumbs/*.png``) opens from disk in any
browser with no server: one row per person with thumbnails image | prior | label overlay,
sortable by refiner confidence by clicking the column header.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.labels import LABEL_SETS
from pipeline.overlay import colorize, overlay
from pipeline.pose import CropBox
from pipeline.readers.folder import read_dataset_info


def load_people(root: str | Path) -> tuple[dict, list[dict]]:
    """``dataset.json`` and one dict per labelled person (its item record's fields plus
    ``image``, ``label``, ``source``).  Raises DataError for a folder that is not a
    synthesized partsynth dataset."""
    root = Path(root)
    info = read_dataset_info(root)
    people = []
    for path in sorted((root / "items").glob("*.json")):
        item = files.read_json(path)
        for p in item.get("persons", []):
            if p.get("status") == "ok":
                source = p.get("source") or Path(item["image"]).parent.parent.name or "unknown"
                people.append(dict(p, image=item["image"], label=item.get("label"), source=source))
    return info, people


def dataset_stats(root: str | Path, lowest: int = 10) -> dict:
    """Per-class pixel frequency (share of labelled pixels, background included), people per
    source, refiner confidence (mean max-probability) quantiles and histogram, and the
    ``lowest`` lowest-confidence people.  Raises DataError as :func:`load_people`."""
    root = Path(root)
    info, people = load_people(root)
    names = LABEL_SETS[info["label_set"]].names
    counts = np.zeros(len(names), np.int64)
    for label in sorted({p["label"] for p in people if p["label"]}):
        lm = files.read_label_png(root / label)
        counts += np.bincount(lm[lm != 255].ravel(), minlength=len(names))[: len(names)]
    conf = np.array([p["mean_max_prob"] for p in people], float)
    hist, edges = np.histogram(conf, bins=10, range=(0.0, 1.0)) if conf.size else (np.zeros(10, int), np.linspace(0, 1, 11))
    order = np.argsort(conf)[:lowest]
    return {
        "people": len(people), "label_set": info["label_set"],
        "class_pixel_share": {n: float(c / max(counts.sum(), 1)) for n, c in zip(names, counts)},
        "people_per_source": dict(Counter(p["source"] for p in people)),
        "confidence_quantiles": {f"q{int(q * 100)}": float(np.quantile(conf, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        if conf.size else {},
        "confidence_histogram": {f"{edges[i]:.1f}-{edges[i + 1]:.1f}": int(h) for i, h in enumerate(hist)},
        "lowest_confidence": [{"person_id": people[i]["person_id"], "image": people[i]["image"],
                               "mean_max_prob": float(conf[i])} for i in order],
    }


PriorFn = Callable[[dict], np.ndarray | None]


def write_inspect_page(root: str | Path, out_dir: str | Path, prior_fn: PriorFn | None = None,
                       max_people: int = 200, tile: int = 96) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/thumbs/`` for up to ``max_people`` people
    (the lowest-confidence ones first when there are more).

    ``prior_fn(person)`` returns the person's prior as an RGB uint8 (tile-sized or any size)
    thumbnail, or None to show "no prior".  Returns the page path."""
    root, out = Path(root), Path(out_dir)
    info, people = load_people(root)
    people = sorted(people, key=lambda p: p["mean_max_prob"])[:max_people]
    palette = LABEL_SETS[info["label_set"]].palette
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    rows, labels, images = [], {}, {}
    for i, p in enumerate(people):
        if p["image"] not in images:
            images = {p["image"]: files.read_image(p["image"])}            # keep one image in memory
        image = images[p["image"]]
        if p["label"] not in labels:
            labels = {p["label"]: files.read_label_png(root / p["label"])}
        box = CropBox(*p["box"])
        crop = _crop(image, box)
        over = _crop(overlay(image, labels[p["label"]], 0.55, palette), box)
        cells = {"image": crop, "label": over}
        prior = prior_fn(p) if prior_fn else None
        if prior is not None:
            cells["prior"] = prior
        names = {}
        for kind, arr in cells.items():
            names[kind] = f"thumbs/{i:05d}-{kind}.png"
            files.write_image(out / names[kind], _fit(arr, tile))
        rows.append((p, names))
    page = out / "index.html"
    with files.atomic_path(page) as tmp:
        tmp.write_text(_html(info, rows, root))
    return page


def _crop(image: np.ndarray, box: CropBox) -> np.ndarray:
    """The part of ``image`` inside a person box (clipped to the image)."""
    h, w = image.shape[:2]
    half = box.side / 2
    x0, y0 = min(w - 1, max(0, int(box.cx - half))), min(h - 1, max(0, int(box.cy - half)))
    x1, y1 = min(w, int(np.ceil(box.cx + half))), min(h, int(np.ceil(box.cy + half)))
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def _fit(arr: np.ndarray, tile: int) -> np.ndarray:
    import cv2

    h, w = arr.shape[:2]
    s = tile / max(h, w)
    return cv2.resize(arr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _html(info: dict, rows: list[tuple[dict, dict]], root: Path) -> str:
    def img(names, kind):
        if kind not in names:
            return "<td class=na>no prior</td>"
        return f'<td><img class=thumb src="{names[kind]}" alt="{kind}"></td>'

    body = "\n".join(
        f'<tr data-conf="{p["mean_max_prob"]:.5f}"><td>{html.escape(str(p["person_id"]))}</td>'
        f'<td>{html.escape(p["source"])}</td><td>{p["mean_max_prob"]:.3f}</td>'
        f'<td>{html.escape(", ".join(map(str, p.get("neighbours", []))))}</td>'
        f'{img(names, "image")}{img(names, "prior")}{img(names, "label")}</tr>' for p, names in rows)
    meta = html.escape(json.dumps({k: info.get(k) for k in ("label_set", "refiner_checkpoint", "fingerprint")}))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>partsynth inspect: {html.escape(str(root))}</title>
<style>body{{font-family:sans-serif;background:#222;color:#ddd}} td,th{{padding:3px 6px}}
th.sort{{cursor:pointer;text-decoration:underline}} .na{{color:#888}} img.thumb{{display:block}}</style></head>
<body><h1>{html.escape(str(root))}</h1><p>{meta}</p>
<p>{len(rows)} people; click <em>confidence</em> to sort.</p>
<table id=people><thead><tr><th>person</th><th>source</th><th class=sort id=sort-conf>confidence</th>
<th>neighbours</th><th>image</th><th>prior</th><th>label</th></tr></thead><tbody>
{body}
</tbody></table>
<script>
let asc = true;
document.getElementById('sort-conf').onclick = () => {{
  const tb = document.querySelector('#people tbody');
  const rows = [...tb.rows].sort((a, b) => (a.dataset.conf - b.dataset.conf) * (asc ? 1 : -1));
  asc = !asc; rows.forEach(r => tb.appendChild(r));
}};
window.addEventListener('load', () => {{
  const imgs = [...document.images];
  document.body.dataset.thumbsLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.thumbsTotal = imgs.length;
}});
</script></body></html>
"""


def bank_prior_fn(bank, palette: np.ndarray) -> PriorFn:
    """A ``prior_fn`` for :func:`write_inspect_page` recomputing each person's prior from
    the bank it was synthesized with (its recorded neighbours, box and keypoints)."""
    from pipeline.pose import apply_affine
    from pipeline.prior_show import prior_colour
    from pipeline.readers.folder import json_to_keypoints

    rows = {(e.person_id, e.flipped): i for i, e in enumerate(bank.exemplars)}

    def prior_fn(person: dict) -> np.ndarray | None:
        flipped = person.get("neighbour_flipped") or [False] * len(person.get("neighbours", []))
        ids = [rows.get((n, f), -1) for n, f in zip(person.get("neighbours", []), flipped)]
        if not ids or min(ids) < 0:
            return None        # the bank changed since synthesis
        kp = apply_affine(json_to_keypoints(person["keypoints"]), CropBox(*person["box"]).crop_from_image(bank.config.size))
        return prior_colour(bank.prior(kp, ids), palette)

    return prior_fn
