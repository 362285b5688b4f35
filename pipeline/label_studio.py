"""The annotation loop with Label Studio: synthesized labels out as pre-annotations, the
corrected label maps back in as a labelled partsynth folder.

Export (:func:`export_label_studio`) writes, for a synthesized dataset
(:mod:`pipeline.synth_dataset`):

    tasks.json            one task per labelled image: ``data.image`` (a local-files URL),
                          ``data.partsynth`` (the photo's path and its people's ids,
                          keypoints, split and confidence, kept through Label Studio), and
                          one prediction: ``model_version`` (the refiner's hash), ``score``
                          (the lowest confidence of the image's people) and one
                          ``brushlabels`` result per class present, in Label Studio's brush
                          RLE (encoded by label-studio-converter)
    labeling_config.xml   ``<Image name="image">`` + ``<BrushLabels name="tag">`` with the
                          label set's class names and palette colours, and ``ignore`` for
                          the pixels synthesis left undecided (255)

Import (:func:`import_label_studio`) reads a Label Studio JSON export of those tasks and
writes each annotated image's label map (classes by name, ``ignore`` -> 255, unpainted
pixels -> background) and its people into a labelled partsynth folder (split ``train``),
so the next prior bank and refiner can use them.  label-studio-converter is the optional
extra ``partsynth[annotation]``, imported only here.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from pipeline import files
from pipeline.errors import ConfigError, DataError
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.readers.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, keypoints_to_json, read_dataset_info
from pipeline.synth_dataset import item_name, read_items, read_synth_info

FROM_NAME, TO_NAME, IGNORE_NAME = "tag", "image", "ignore"
TASKS_FILE, CONFIG_FILE = "tasks.json", "labeling_config.xml"


def _brush():
    try:
        from label_studio_converter import brush
    except ImportError:
        raise ConfigError("label-studio-converter is not installed: pip install 'partsynth[annotation]'") from None
    return brush


def labeling_config(label_set: str) -> str:
    """Label Studio labeling-config XML for ``label_set``: one brush label per class but
    background, in the set's palette colours, plus ``ignore``."""
    lset = LABEL_SETS[label_set]
    labels = [f'    <Label value="{name}" background="#{r:02x}{g:02x}{b:02x}"/>'
              for (name, (r, g, b)) in list(zip(lset.names, lset.palette.tolist()))[1:]]
    labels.append(f'    <Label value="{IGNORE_NAME}" background="#ffffff"/>')
    return "\n".join([f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>',
                      f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">', *labels,
                      "  </BrushLabels>\n</View>\n"])


def label_map_results(label_map: np.ndarray, label_set: str) -> list[dict]:
    """Label Studio ``brushlabels`` results of a uint8 (H, W) label map: one per class
    present (background left out; 255 as ``ignore``), each its mask in brush RLE."""
    brush, lset = _brush(), LABEL_SETS[label_set]
    h, w = label_map.shape
    out = []
    for c in np.unique(label_map):
        if c == 0:
            continue
        name = IGNORE_NAME if c == IGNORE else lset.names[c]
        rle = brush.mask2rle(np.where(label_map == c, 255, 0).astype(np.uint8))
        out.append({"id": f"c{int(c)}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                    "original_width": w, "original_height": h, "image_rotation": 0,
                    "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [name]}})
    return out


def results_label_map(results: list[dict], label_set: str, where: str) -> np.ndarray:
    """uint8 (H, W) label map from a task's ``brushlabels`` results (later strokes over
    earlier ones; unpainted pixels background).  Raises DataError naming ``where`` (the
    task) for an unknown label name, results of different sizes, or no size at all."""
    brush, lset = _brush(), LABEL_SETS[label_set]
    brushes = [r for r in results if r.get("type") == "brushlabels"]
    sizes = {(r.get("original_height"), r.get("original_width")) for r in brushes}
    if len(sizes) > 1:
        raise DataError(where, f"brush results of different sizes {sorted(sizes)}")
    if not sizes:
        return np.zeros((0, 0), np.uint8)
    h, w = sizes.pop()
    label_map = np.zeros((h, w), np.uint8)
    for r in brushes:
        names = r["value"].get("brushlabels") or []
        if len(names) != 1:
            raise DataError(where, f"a brush result needs exactly one label, got {names}")
        name = names[0]
        if name == IGNORE_NAME:
            c = IGNORE
        elif name in lset.names[1:]:
            c = lset.names.index(name)
        else:
            raise DataError(where, f"unknown label {name!r} (label set {label_set}: {', '.join(lset.names[1:])})")
        rgba = brush.decode_rle(r["value"]["rle"])
        if rgba.size != h * w * 4:
            raise DataError(where, f"a {name!r} mask holds {rgba.size // 4} pixels, not original_width x "
                                   f"original_height = {w} x {h}")
        mask = rgba.reshape(h, w, 4)[:, :, 3] > 127
        label_map[mask] = c
    return label_map


def export_label_studio(synth_dir: str | Path, out: str | Path, *, order: str = "confidence",
                        max_confidence: float | None = None, limit: int | None = None, copy_images: bool = False,
                        document_root: str | Path = "/") -> dict:
    """Write ``tasks.json`` and ``labeling_config.xml`` for the labelled images of a
    synthesized dataset.

    Args:
        order: ``confidence`` (lowest-confidence image first: a correction is worth most
            there) or ``name``.
        max_confidence: leave out images whose people are all at or above it.
        limit: at most this many tasks (after ordering).
        copy_images: copy the photos to ``out/images`` and point the URLs there (document
            root = ``out``); else the URLs point to the photos under ``document_root``
            (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``).
    Returns: {"tasks", "images_left_out", "label_set"}.  Raises DataError for a folder that
    is not a synthesized dataset; ConfigError without label-studio-converter, or for a
    photo outside ``document_root``."""
    synth_dir, out = Path(synth_dir), Path(out)
    info = read_synth_info(synth_dir)
    items = [i for i in read_items(synth_dir) if i.label]
    scored = [(min(p.mean_max_prob for p in i.labelled), i) for i in items]
    if order == "confidence":
        scored.sort(key=lambda t: t[0])
    if max_confidence is not None:
        scored = [t for t in scored if t[0] < max_confidence]
    picked = scored[:limit] if limit is not None else scored
    root = out if copy_images else Path(document_root).resolve()
    tasks = []
    for score, item in picked:
        photo = Path(item.image)
        if copy_images:
            photo = out / "images" / f"{item_name(item.image)}{photo.suffix}"
            photo.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.image, photo)
        try:
            rel = photo.resolve().relative_to(root)
        except ValueError:
            raise ConfigError(f"{item.image}: not under the document root {root} (--document-root)") from None
        label_map = files.read_label_png(synth_dir / item.label)
        tasks.append({
            "data": {"image": f"/data/local-files/?d={quote(rel.as_posix())}",
                     "partsynth": {"image": item.image, "label_set": info.label_set, "people": [
                         {"person_id": p.person_id, "split": p.split, "confidence": p.mean_max_prob,
                          "keypoints": None if p.keypoints is None else keypoints_to_json(p.keypoints)}
                         for p in item.labelled]}},
            "predictions": [{"model_version": f"partsynth-{info.refiner_sha256[:12]}", "score": round(score, 5),
                             "result": label_map_results(label_map, info.label_set)}]})
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / TASKS_FILE, tasks)
    with files.atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(labeling_config(info.label_set), encoding="utf-8")
    return {"tasks": len(tasks), "images_left_out": len(items) - len(tasks), "label_set": info.label_set}


def _final_annotation(task: dict) -> dict | None:
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return done[-1] if done else None


def import_label_studio(export: str | Path, out: str | Path, *, replace: bool = False) -> dict:
    """Read a Label Studio JSON export of :func:`export_label_studio`'s tasks into the
    labelled partsynth folder ``out`` (created, or extended).

    Each task's last annotation that was not cancelled gives the image's label map, whose
    size must equal the photo's; its people (ids, keypoints from the synthesis that made
    the pre-annotation) join ``out/people.json`` with split ``train``.  Tasks without an
    annotation are skipped and counted.
    Returns {"images", "people", "not_annotated"}.  Raises DataError naming the task for
    an unknown label, a size mismatch or a task not made by partsynth; ConfigError when
    ``out`` holds another label set, or a person already labelled there (without
    ``replace``)."""
    export, out = Path(export), Path(out)
    tasks = files.read_json(export)
    if not isinstance(tasks, list):
        raise DataError(export, "expected Label Studio's JSON export (a list of tasks)")
    people: list[dict] = []
    if (out / PEOPLE_FILE).is_file():
        label_set = read_dataset_info(out)["label_set"]
        people = files.read_json(out / PEOPLE_FILE)
    else:
        label_set = None
    known = {p["person_id"]: i for i, p in enumerate(people)}
    images = skipped = 0
    for n, task in enumerate(tasks):
        where = f"{export} task {task.get('id', n)}"
        meta = (task.get("data") or {}).get("partsynth")
        if not meta:
            raise DataError(where, "not a partsynth task (no data.partsynth): export it with 'partsynth export'")
        if label_set is None:
            label_set = meta["label_set"]
        elif meta["label_set"] != label_set:
            raise ConfigError(f"{where}: label set {meta['label_set']} differs from {out}'s {label_set}")
        annotation = _final_annotation(task)
        if annotation is None:
            skipped += 1
            continue
        label_map = results_label_map(annotation.get("result") or [], label_set, where)
        with Image.open(meta["image"]) as im:
            w, h = im.size
        if label_map.size == 0:
            label_map = np.zeros((h, w), np.uint8)
        elif label_map.shape != (h, w):
            raise DataError(where, f"label map {label_map.shape} differs from the photo {(h, w)} of {meta['image']}")
        rel = f"labels/{item_name(meta['image'])}.png"
        taken = [p["person_id"] for p in meta["people"] if p["person_id"] in known]
        if taken and not replace:
            raise ConfigError(f"{where}: {taken[0]} is already labelled in {out} (--replace overwrites it)")
        files.write_label_png(out / rel, label_map, LABEL_SETS[label_set].palette)
        for p in meta["people"]:
            entry = {"person_id": p["person_id"], "image": meta["image"], "label": rel, "keypoints": p["keypoints"],
                     "split": "train", "meta": {"corrected_from_confidence": p.get("confidence")}}
            if p["person_id"] in known:
                people[known[p["person_id"]]] = entry
            else:
                known[p["person_id"]] = len(people)
                people.append(entry)
        images += 1
    if label_set is None:
        raise DataError(export, "no tasks")
    files.write_json(out / PEOPLE_FILE, people)
    files.write_json(out / DATASET_FILE, {"format": FORMAT, "label_set": label_set, "synthetic": False,
                                          "description": "people corrected in Label Studio (partsynth import-labels)"})
    return {"images": images, "people": len(people), "not_annotated": skipped}
