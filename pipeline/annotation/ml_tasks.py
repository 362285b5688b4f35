"""Label Studio tasks as partsynth's ML backend (``partsynth serve``) reads them: the photo,
its people's keypoints, the project's labeling config, each problem named by its field.

A task's ``data`` (Label Studio's task format) gives:

    image        the photo: Label Studio's local-files URL ``/data/local-files/?d=<path>``
                 (``<path>`` under the document root, as ``LOCAL_FILES_DOCUMENT_ROOT``),
                 a ``file://`` URL, or an absolute path.  Uploaded files and http(s) URLs
                 are refused (the backend reads photos from the disk it shares with Label
                 Studio, it fetches nothing).
    keypoints    optional: one person's COCO keypoints (17 x [x, y, v], flat 51 numbers or
                 17 triples, Lin et al., ECCV 2014), or a list of such, one per person
    partsynth    optional: what ``partsynth export --format label-studio`` put there (the
                 photo's people with their canonical keypoints); wins over ``keypoints``

A task with neither is an image-only task: the backend finds its person with BlazePose.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from pipeline.annotation.common import IGNORE_NAME, class_names
from pipeline.errors import DataError
from pipeline.formats import files
from pipeline.formats.folder import json_to_keypoints, keypoints_to_json
from pipeline.formats.records import PersonRecord
from pipeline.skeleton import CanonicalPose, from_coco17


class TaskError(ValueError):
    """A request the backend cannot serve: ``field`` (a JSON path such as
    ``tasks[0].data.keypoints[1]``) and ``problem``, one line."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass
class TaskPeople:
    """One task's photo and people.

    Attributes:
        photo: the photo's absolute path.
        people: keypoint records (canonical keypoints in photo pixels); empty for an
            image-only task.
        ids: the people's ids (``<task id>/<n>``, or the exported ones).
    """

    photo: Path
    people: list[PersonRecord] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def meta(self, label_set: str, confidences: list[float | None] | None = None) -> dict:
        """The import path's image meta (:class:`pipeline.annotation.common.LabelledWriter`)."""
        confidences = confidences or [None] * len(self.people)
        return {"image": str(self.photo), "label_set": label_set, "people": [
            {"person_id": pid, "split": "train", "confidence": c,
             "keypoints": None if r.keypoints is None else keypoints_to_json(r.keypoints)}
            for pid, r, c in zip(self.ids, self.people, confidences)]}


def task_photo(image, document_root: Path, where: str) -> Path:
    """The photo of a task's ``data.image`` (see the module docstring).  Raises TaskError
    naming ``where`` for a missing value, an unsupported URL, a path that escapes the
    document root, or a photo that is not a file."""
    if not isinstance(image, str) or not image:
        raise TaskError(where, "no image (a local-files URL, file:// URL or absolute path)")
    url = urlparse(image)
    if url.path.startswith("/data/local-files") and "d" in parse_qs(url.query):
        rel = unquote(parse_qs(url.query)["d"][0])
        path = (document_root / rel).resolve()
        if not path.is_relative_to(document_root.resolve()):
            raise TaskError(where, f"{rel!r} lies outside the document root {document_root}")
    elif url.scheme == "file":
        path = Path(unquote(url.path))
    elif url.scheme in ("http", "https") or image.startswith("/data/"):
        raise TaskError(where, f"{image!r}: only photos on this disk are read (Label Studio local files, "
                               "file:// or a path); uploaded or remote photos are not fetched")
    elif Path(image).is_absolute():
        path = Path(image)
    else:
        raise TaskError(where, f"{image!r}: not a local-files URL, file:// URL or absolute path")
    if not path.is_file():
        raise TaskError(where, f"{path}: no such photo")
    return path


def _coco_person(value, where: str) -> CanonicalPose:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TaskError(where, "COCO keypoints must be numbers") from None
    if arr.size != 51 or arr.ndim not in (1, 2):
        raise TaskError(where, f"COCO keypoints need 51 numbers (17 x [x, y, v]), got {arr.size}")
    try:
        return from_coco17(arr.reshape(17, 3))
    except DataError as e:
        raise TaskError(where, e.problem) from None


def task_people(task: dict, document_root: Path, where: str = "task") -> TaskPeople:
    """Photo and people of one Label Studio task (see the module docstring).  Raises
    TaskError naming the field (``<where>.data.image``, ``<where>.data.keypoints[i]``, ...)."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise TaskError(f"{where}.data", "a task needs a data object")
    data = task["data"]
    photo = task_photo(data.get("image"), document_root, f"{where}.data.image")
    try:
        size = files.image_size(photo)
    except DataError as e:
        raise TaskError(f"{where}.data.image", f"{photo}: {e.problem}") from None
    tid = task.get("id", "task")
    out = TaskPeople(photo)
    meta = data.get("partsynth")
    if isinstance(meta, dict) and isinstance(meta.get("people"), list):
        for i, p in enumerate(meta["people"]):
            try:
                kp = json_to_keypoints(p["keypoints"])
            except (KeyError, TypeError, ValueError, DataError):
                raise TaskError(f"{where}.data.partsynth.people[{i}].keypoints",
                                "not partsynth keypoints (16 x [x, y, v])") from None
            out.people.append(PersonRecord(photo, size, str(p.get("person_id", f"{tid}/{i}")), "label-studio",
                                           keypoints=kp))
            out.ids.append(out.people[-1].person_id)
        return out
    kps = data.get("keypoints")
    if kps is None:
        return out
    if not isinstance(kps, list) or not kps:
        raise TaskError(f"{where}.data.keypoints", "COCO keypoints: a list of 51 numbers, or a list of such lists")
    several = isinstance(kps[0], list) and (len(kps[0]) == 51 or (kps[0] and isinstance(kps[0][0], list)))
    for i, person in enumerate(kps if several else [kps]):
        field_name = f"{where}.data.keypoints" + (f"[{i}]" if several else "")
        pose = _coco_person(person, field_name)
        out.people.append(PersonRecord(photo, size, f"{tid}/{i}", "label-studio", keypoints=pose.keypoints,
                                       keypoints_derived=pose.derived))
        out.ids.append(f"{tid}/{i}")
    return out


def check_label_config(label_config: str | None, label_set: str) -> None:
    """Raise TaskError("label_config", ...) unless the project's labeling config has a
    ``BrushLabels`` control with every class of ``label_set`` (but background) and
    ``ignore``, as ``partsynth export`` writes it; None (not sent) passes."""
    if label_config is None:
        return
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as e:
        raise TaskError("label_config", f"not XML ({e})") from None
    wanted = set(class_names(label_set)) | {IGNORE_NAME}
    for control in root.iter("BrushLabels"):
        have = {label.get("value") for label in control.iter("Label")}
        if wanted <= have:
            return
    raise TaskError("label_config", f"no BrushLabels with the {label_set} labels ({', '.join(sorted(wanted))}): "
                                    "use the labeling_config.xml that 'partsynth export' writes")
