"""The annotation loop with Label Studio: synthesized labels out as pre-annotations, the
corrected label maps back in as a labelled partsynth folder.

Export (:func:`export_label_studio`) writes, for a synthesized dataset
(:mod:`pipeline.formats.synth_dataset`):

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

from pathlib import Path
from urllib.parse import quote

import numpy as np

from pipeline.formats import files
from pipeline.annotation.common import (IGNORE_NAME, LabelledWriter, Selection, class_id, class_name, class_names,
                                        copy_photo, select_images)
from pipeline.errors import ConfigError, DataError
from pipeline.labels import LABEL_SETS

FROM_NAME, TO_NAME = "tag", "image"
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
    palette = LABEL_SETS[label_set].palette.tolist()
    labels = [f'    <Label value="{name}" background="#{r:02x}{g:02x}{b:02x}"/>'
              for name, (r, g, b) in zip(class_names(label_set), palette[1:])]
    labels.append(f'    <Label value="{IGNORE_NAME}" background="#ffffff"/>')
    return "\n".join([f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>',
                      f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">', *labels,
                      "  </BrushLabels>\n</View>\n"])


def label_map_results(label_map: np.ndarray, label_set: str) -> list[dict]:
    """Label Studio ``brushlabels`` results of a uint8 (H, W) label map: one per class
    present (background left out; 255 as ``ignore``), each its mask in brush RLE."""
    brush = _brush()
    h, w = label_map.shape
    out = []
    for c in np.unique(label_map):
        if c == 0:
            continue
        name = class_name(int(c), label_set)
        rle = brush.mask2rle(np.where(label_map == c, 255, 0).astype(np.uint8))
        out.append({"id": f"c{int(c)}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                    "original_width": w, "original_height": h, "image_rotation": 0,
                    "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [name]}})
    return out


def results_label_map(results: list[dict], label_set: str, where: str) -> np.ndarray:
    """uint8 (H, W) label map from a task's ``brushlabels`` results (later strokes over
    earlier ones; unpainted pixels background).  Raises DataError naming ``where`` (the
    task) for an unknown label name, results of different sizes, or no size at all."""
    brush = _brush()
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
        c = class_id(name, label_set, where)
        rgba = brush.decode_rle(r["value"]["rle"])
        if rgba.size != h * w * 4:
            raise DataError(where, f"a {name!r} mask holds {rgba.size // 4} pixels, not original_width x "
                                   f"original_height = {w} x {h}")
        mask = rgba.reshape(h, w, 4)[:, :, 3] > 127
        label_map[mask] = c
    return label_map


def export_label_studio(synth_dir: str | Path, out: str | Path, selection: Selection = Selection(),
                        document_root: str | Path | None = None) -> dict:
    """Write ``tasks.json`` and ``labeling_config.xml`` for the labelled images of a
    synthesized dataset.

    Args:
        selection: which images, in which order (lowest confidence first by default), and
            with ``copy_images`` the photos copied to ``out/images``.
        document_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, which the image URLs
            are relative to (``/data/local-files/?d=<path under it>``); default ``out``
            with ``copy_images``, else ``/``.  The photos (or their copies) must lie under it.
    Returns: {"tasks", "images_left_out", "label_set", "document_root"}.  Raises DataError
    for a folder that is not a synthesized dataset; ConfigError without
    label-studio-converter, or for a photo outside ``document_root`` (before anything is
    written)."""
    out = Path(out)
    info, images, n_labelled = select_images(synth_dir, selection)
    if document_root is None:
        document_root = out if selection.copy_images else "/"
    root = Path(document_root).resolve()
    placed = [out.resolve() / "images" / image.name if selection.copy_images else Path(image.photo).resolve()
              for image in images]
    rels = []
    for image, photo in zip(images, placed):
        try:
            rels.append(photo.relative_to(root))
        except ValueError:
            raise ConfigError(f"{photo}: not under the document root {root} (--document-root)") from None
    tasks = [{"data": {"image": f"/data/local-files/?d={quote(rel.as_posix())}", "partsynth": image.meta},
              "predictions": [{"model_version": f"partsynth-{info.refiner_sha256[:12]}", "score": round(image.score, 5),
                               "result": label_map_results(image.label_map(), info.label_set)}]}
             for image, rel in zip(images, rels)]
    out.mkdir(parents=True, exist_ok=True)
    if selection.copy_images:
        for image in images:
            copy_photo(image, out / "images")
    files.write_json(out / TASKS_FILE, tasks)
    with files.atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(labeling_config(info.label_set), encoding="utf-8")
    return {"tasks": len(tasks), "images_left_out": n_labelled - len(tasks), "label_set": info.label_set,
            "document_root": str(root)}


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
    export = Path(export)
    tasks = files.read_json(export)
    if not isinstance(tasks, list):
        raise DataError(export, "expected Label Studio's JSON export (a list of tasks)")
    skipped = 0
    with LabelledWriter(out, replace) as writer:
        for n, task in enumerate(tasks):
            where = f"{export} task {task.get('id', n)}"
            meta = (task.get("data") or {}).get("partsynth")
            if not meta:
                raise DataError(where, "not a partsynth task (no data.partsynth): export it with 'partsynth export'")
            writer.check_label_set(meta["label_set"], where)
            annotation = _final_annotation(task)
            if annotation is None:
                skipped += 1
                continue
            writer.add(meta, results_label_map(annotation.get("result") or [], meta["label_set"], where), where)
        writer.finish("Label Studio", export)
    return {"images": writer.images, "people": len(writer.people), "not_annotated": skipped}
