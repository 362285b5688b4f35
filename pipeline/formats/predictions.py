"""The predictions folder of ``partsynth predict``: a parser's label maps for any photos,
written so that the folder is itself a partsynth dataset (``data show``, ``data score`` and
training read it).

Layout::

    dataset.json        {"format": "partsynth", "label_set", "predicted": true,
                         "parser_checkpoint", "parser_sha256", "predict_config", "fingerprint"}
    people.json         one entry per photo: {"person_id": item name, "image": absolute path,
                         "label": "labels/<item>.png", "keypoints": 16 x [x, y, 2] (joint
                         networks) | null, "split": null, "meta": {"keypoint_confidence"}};
                         unreadable photos as {"status": "skipped", "reason"}
    items/<item>.json   per-photo record, written last (:class:`PredictedItem`, by
                        :func:`pipeline.formats.synth_dataset.write_item`)
    labels/<item>.png   palette PNG at the photo's own size, class ids of label_set
    overlays/<item>.jpg photo blended with its label map (and keypoints), when asked for
    probs/<item>.npz    ``probs``: uint8 (C, H, W) = round(255 x probability), when asked for

Item names are :func:`pipeline.formats.synth_dataset.item_name` of the photo's absolute path.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.folder import DATASET_FILE, FORMAT, PEOPLE_FILE
from pipeline.skeleton import NUM_JOINTS
from pipeline.formats.item_folder import (ITEMS_DIR, claim_item_folder, item_files, item_name, label_file_intact,
                                  read_record_or_none, remove_stale_items)

PREDICT_FORMAT_VERSION = 1
OUTPUT_DIRS = ("labels", "overlays", "probs")
OWN_ENTRIES = frozenset({DATASET_FILE, PEOPLE_FILE, ITEMS_DIR, *OUTPUT_DIRS})


@dataclass
class PredictedItem:
    """One photo's predictions.

    Attributes:
        image: absolute path of the photo; image_size: (h, w) pixels ((0, 0) if unreadable).
        image_sha256: hex SHA-256 of the photo's bytes (a replaced photo is redone).
        fingerprint: checkpoint hash + options of the run that wrote it (a rerun with other
            options redoes the photo).
        label, overlay, probs: paths relative to the folder, or None.
        label_sha256: hex SHA-256 of the label PNG (a changed file is redone).
        keypoints: joint networks: 16 x [x, y, confidence] in the photo's pixels.
        error: why the photo could not be parsed (unreadable, corrupt), else None.
    """

    image: str
    image_size: tuple[int, int]
    fingerprint: str
    image_sha256: str = ""
    label: str | None = None
    label_sha256: str | None = None
    overlay: str | None = None
    probs: str | None = None
    keypoints: list[list[float]] | None = None
    error: str | None = None
    version: int = PREDICT_FORMAT_VERSION

    def to_json(self) -> dict:
        return dict(asdict(self), image_size=list(self.image_size))

    @classmethod
    def from_json(cls, d: dict, path: Path) -> PredictedItem:
        """Raises DataError naming ``path`` when ``d`` is not a predicted item."""
        if not isinstance(d, dict) or "image" not in d or "fingerprint" not in d:
            raise DataError(path, "not a partsynth prediction record (no image or fingerprint)")
        if int(d.get("version", 1)) > PREDICT_FORMAT_VERSION:
            raise DataError(path, f"record format {d['version']} is newer than this partsynth")
        return cls(**{k: d.get(k) for k in ("image", "fingerprint", "image_sha256", "label", "label_sha256", "overlay", "probs",
                                            "keypoints", "error")},
                   image_size=tuple(d.get("image_size") or (0, 0)), version=int(d.get("version", 1)))


@dataclass
class PredictionsInfo:
    """``dataset.json`` of a predictions folder."""

    label_set: str
    parser_checkpoint: str
    parser_sha256: str
    predict_config: dict = field(default_factory=dict)
    fingerprint: str = ""

    def to_json(self) -> dict:
        return dict(asdict(self), format=FORMAT, predicted=True, synthetic=False,
                    predict_format_version=PREDICT_FORMAT_VERSION,
                    description="label maps predicted by a partsynth parser")


def read_predicted_item(path: str | Path, raw: dict | None = None) -> PredictedItem:
    """One record (``raw``: its JSON already parsed); DataError naming the file when
    unreadable or not a record."""
    return PredictedItem.from_json(files.read_json(path) if raw is None else raw, Path(path))


def predicted_item_intact(root: str | Path, image: str | Path, fingerprint: str, image_sha256: str) -> bool:
    """True when ``root`` holds this photo's record with ``fingerprint`` and the photo's
    current ``image_sha256``, and every file it names exists, the label PNG with its
    recorded hash."""
    root = Path(root)
    item = read_record_or_none(root, image, read_predicted_item)
    if item is None or item.fingerprint != fingerprint or item.image_sha256 != image_sha256:
        return False
    return label_file_intact(root, item.label, item.label_sha256) and \
        all((root / rel).is_file() for rel in (item.overlay, item.probs) if rel)


def claim_predictions_output(out: str | Path, data: str | Path) -> None:
    """Check that ``out`` may receive predictions for ``data`` (:func:`claim_item_folder`
    with ``dataset.json``'s ``predicted``).  Raises ConfigError in one line."""
    claim_item_folder(out, data, "predicted", OWN_ENTRIES, read_predicted_item, "predictions folder")


def remove_stale_predictions(root: str | Path, images: set[str]) -> list[str]:
    """Delete the records and files of photos no longer in the input (``images``:
    absolute paths).  Returns the photos removed."""
    return remove_stale_items(root, images, read_predicted_item, ("label", "overlay", "probs"))


def finalize_predictions(root: str | Path, info: PredictionsInfo) -> dict:
    """Write ``people.json`` and ``dataset.json`` of ``root`` from its item records (each
    atomically).  Returns totals {"images", "images_parsed", "images_failed"} and
    ``failed``: [[photo, reason]].  Raises DataError naming a malformed record."""
    root = Path(root)
    people, failed = [], []
    for path in item_files(root):
        item = read_predicted_item(path)
        name = item_name(item.image)
        if item.error or not item.label:
            failed.append([item.image, item.error or "no label map"])
            people.append({"person_id": name, "image": item.image, "label": None, "status": "skipped",
                           "reason": item.error or "no label map", "split": None})
            continue
        kp = None if item.keypoints is None else [[x, y, 2] for x, y, _ in item.keypoints]
        if kp is not None and len(kp) != NUM_JOINTS:
            raise DataError(path, f"expected {NUM_JOINTS} keypoints, got {len(kp)}")
        people.append({"person_id": name, "image": item.image, "label": item.label, "keypoints": kp, "split": None,
                       "meta": {"keypoint_confidence": None if item.keypoints is None
                                else [round(c, 4) for _, _, c in item.keypoints]}})
    files.write_json(root / PEOPLE_FILE, people)
    files.write_json(root / DATASET_FILE, info.to_json())
    return {"images": len(people), "images_parsed": len(people) - len(failed), "images_failed": len(failed),
            "failed": failed}
