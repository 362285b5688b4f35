"""The synthesized-dataset format, version 1: typed records with their read/write
functions.  Synthesis (:mod:`refine_net.synthesize`) writes it; the parsers, the
inspection page and the flows read it through here, never by string keys.

A synthesized dataset is a partsynth folder (:mod:`pipeline.formats.folder`)::

    dataset.json          SynthDatasetInfo: format "partsynth", synthetic true,
                          synth_format_version, label_set, refiner checkpoint and sha256,
                          the synthesis config, the run fingerprint
    people.json           every person: the labelled ones as every partsynth folder has
                          them, the skipped ones with "status": "skipped" and "reason"
    items/<item>.json     SynthItem per image: what was done (resumes a killed run)
    labels/<item>.png     palette label PNG per image (class ids of label_set)
    probs/<item>.npz      optional: uint8 (N, C, S, S) per-person crop probabilities x 255
    annotations.json      COCO instances, one RLE per person and class
    manifest.parquet      one row per person (ok and skipped), with provenance
    skipped.json          the input items the reader could not use
    run.json              what the last finished run left (its chunks, the files' state),
                          so that a rerun with nothing changed checks no item

Each ``items/<item>.json`` is the last file written for its image, so its presence with
the run's fingerprint means the image is done.  Everything else at the top level is
rebuilt from the items by :func:`finalize_dataset`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pycocotools import mask as mask_utils

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.labels import LABEL_SETS
from pipeline.formats.manifest import ManifestWriter
from pipeline.formats.item_folder import (ITEMS_DIR, RUN_FILE, claim_item_folder, item_files, label_file_intact, read_record_or_none,
                                  remove_stale_items)
from pipeline.formats.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, json_to_keypoints, keypoints_to_json
from pipeline.formats.records import skip_records

SYNTH_FORMAT_VERSION = 1
ANNOTATIONS_FILE = "annotations.json"
MANIFEST_FILE = "manifest.parquet"
#: the synthesized dataset's manifest, one row per person (its columns also when nobody was labelled)
MANIFEST_SCHEMA = pa.schema([
    ("person_id", pa.string()), ("image", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("split", pa.string()), ("source", pa.string()), ("neighbours", pa.list_(pa.string())),
    ("distances", pa.list_(pa.float64())), ("mean_max_prob", pa.float64()), ("pixels", pa.int64()),
    ("estimated_joints", pa.list_(pa.string())), ("refiner_sha256", pa.string()), ("label", pa.string())])
SYNTH_MANIFEST_COLUMNS = tuple(MANIFEST_SCHEMA.names)
#: the input items the reader could not use, [{"file", "reason"}], rewritten by every run
READ_SKIPS_FILE = "skipped.json"
#: where ``synthesize --data PHOTOS`` keeps the keypoints it estimated first (a keypoints folder)
KEYPOINTS_DIR = "keypoints"
#: what a synthesized dataset folder holds (besides temporary files of our own)
OWN_ENTRIES = frozenset({DATASET_FILE, PEOPLE_FILE, ITEMS_DIR, "labels", "probs", ANNOTATIONS_FILE, MANIFEST_FILE,
                         READ_SKIPS_FILE, "inspect", KEYPOINTS_DIR, RUN_FILE})
STATUSES = ("ok", "skipped")


@dataclass
class SynthPerson:
    """One person of a synthesized image.

    Attributes:
        person_id: the id in the source dataset.
        status: ``ok`` (labelled) or ``skipped`` (``reason`` says why).
        keypoints: float32 (16, 3) canonical keypoints in image pixels, or None.
        split, source: the source record's split and format.
        reason: why the person was skipped ('' when ok).
        box: (cx, cy, side) crop box in image pixels (:class:`pipeline.priors.pose.CropBox`).
        neighbours, neighbour_flipped, distances: the bank people the prior averaged.
        mean_max_prob: the refiner's confidence, mean max-probability over the person's
            pasted pixels, in [0, 1] (None when skipped).
        pixels: foreground pixels of the person in the label map (0 when skipped).
        rle: {class id: COCO RLE {"size": [h, w], "counts": str}} of the person's pixels.
        estimated_joints: names of the joints a partial body lacked and got from its
            neighbours (:mod:`pipeline.priors.partial`); their region is ignore (255).
        person_mask: the mask that clipped (and filled) the person's label: ``annotation``
            (its COCO annotation's own instance mask), ``blazepose`` (a keypoints folder's),
            or None.
        notes: how missing joints or parts were handled (the partition labeller,
            :class:`pipeline.priors.partition.Partition`), one line each.
    """

    person_id: str
    status: str
    keypoints: np.ndarray | None = None
    split: str | None = None
    source: str | None = None
    reason: str = ""
    box: tuple[float, float, float] | None = None
    neighbours: list[str] = field(default_factory=list)
    neighbour_flipped: list[bool] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    mean_max_prob: float | None = None
    pixels: int = 0
    rle: dict[int, dict] = field(default_factory=dict)
    estimated_joints: list[str] = field(default_factory=list)
    person_mask: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["keypoints"] = None if self.keypoints is None else keypoints_to_json(self.keypoints)
        d["box"] = None if self.box is None else [float(v) for v in self.box]
        d["rle"] = {str(c): r for c, r in self.rle.items()}
        return d

    @classmethod
    def from_json(cls, d: dict, path: Path) -> SynthPerson:
        """Raises DataError naming ``path`` for a record that is not a person of this format."""
        if not isinstance(d, dict) or "person_id" not in d or d.get("status") not in STATUSES:
            raise DataError(path, f"not a synthesized person record: {str(d)[:80]}")
        try:
            return cls(**dict(d, keypoints=None if d.get("keypoints") is None else json_to_keypoints(d["keypoints"]),
                              box=None if d.get("box") is None else tuple(d["box"]),
                              rle={int(c): r for c, r in (d.get("rle") or {}).items()}))
        except (TypeError, ValueError) as e:
            raise DataError(path, f"bad synthesized person record {d.get('person_id')!r}: {e}") from None


@dataclass
class SynthItem:
    """One image of a synthesized dataset (``items/<item>.json``).

    Attributes:
        image: absolute path of the source image.
        image_size: (h, w) in pixels ((0, 0) when the image could not be read).
        persons: every person of the image, labelled or skipped.
        fingerprint: the synthesis run's fingerprint (refiner, bank, k, options).
        label: label PNG path relative to the dataset folder, or None (nobody labelled).
        label_sha256: SHA-256 of that PNG as written (checked before the item is reused).
        probs: probabilities ``.npz`` relative path, or None.
        error: why the whole image failed (unreadable image), or None.
        version: :data:`SYNTH_FORMAT_VERSION`.
    """

    image: str
    image_size: tuple[int, int]
    persons: list[SynthPerson]
    fingerprint: str = ""
    label: str | None = None
    label_sha256: str | None = None
    probs: str | None = None
    error: str | None = None
    version: int = SYNTH_FORMAT_VERSION

    def to_json(self) -> dict:
        return {"version": self.version, "image": self.image, "image_size": list(self.image_size),
                "fingerprint": self.fingerprint, "label": self.label, "label_sha256": self.label_sha256,
                "probs": self.probs, "error": self.error, "persons": [p.to_json() for p in self.persons]}

    @classmethod
    def from_json(cls, d: dict, path: Path) -> SynthItem:
        """Raises DataError naming ``path`` for a file that is not an item of this format."""
        if not isinstance(d, dict) or not {"image", "persons"} <= d.keys() or not isinstance(d["persons"], list):
            raise DataError(path, "not a partsynth item record (needs 'image' and a 'persons' list)")
        if d.get("version", SYNTH_FORMAT_VERSION) > SYNTH_FORMAT_VERSION:
            raise DataError(path, f"item format {d['version']} is newer than this partsynth ({SYNTH_FORMAT_VERSION})")
        return cls(image=str(d["image"]), image_size=tuple(d.get("image_size") or (0, 0)),
                   persons=[SynthPerson.from_json(p, path) for p in d["persons"]],
                   fingerprint=str(d.get("fingerprint", "")), label=d.get("label"),
                   label_sha256=d.get("label_sha256"), probs=d.get("probs"),
                   error=d.get("error"), version=int(d.get("version", SYNTH_FORMAT_VERSION)))

    @property
    def labelled(self) -> list[SynthPerson]:
        return [p for p in self.persons if p.status == "ok"]


@dataclass
class SynthDatasetInfo:
    """``dataset.json`` of a synthesized dataset.

    Attributes:
        label_set: name in :data:`pipeline.labels.LABEL_SETS`.
        refiner_checkpoint: absolute path of the refiner checkpoint.
        refiner_sha256: its content hash.
        synth_config: the synthesis run config (:class:`refine_net.config.SynthConfig`, JSON).
        fingerprint: the run fingerprint every item carries.
    """

    label_set: str
    refiner_checkpoint: str
    refiner_sha256: str
    synth_config: dict
    fingerprint: str
    synth_format_version: int = SYNTH_FORMAT_VERSION

    def to_json(self) -> dict:
        return dict(asdict(self), format=FORMAT, synthetic=True,
                    description="labels synthesized by partsynth (prior + refinement U-Net)")


def person_class_rles(label_map: np.ndarray, mine: np.ndarray) -> dict[int, dict]:
    """{class id: COCO RLE {"size", "counts": str}} of one person's pixels (bool (H, W)
    ``mine``) per class of the uint8 (H, W) ``label_map`` (background and ignore left out):
    what :attr:`SynthPerson.rle` holds."""
    out = {}
    for c in np.unique(label_map[mine]):
        if c == 0 or c == 255:
            continue
        rle = mask_utils.encode(np.asfortranarray((mine & (label_map == c)).astype(np.uint8)))
        out[int(c)] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    return out


def write_label_file(out: Path, item: SynthItem, label_map: np.ndarray, palette: np.ndarray) -> None:
    """Write one image's palette label PNG ``labels/<item>.png`` into the dataset folder
    ``out`` (atomically) and set ``item.label`` and ``item.label_sha256``; the caller writes
    the item record after it (:func:`pipeline.formats.item_folder.write_item`)."""
    from pipeline.formats.files import file_sha256
    from pipeline.formats.item_folder import item_name

    item.label = f"labels/{item_name(item.image)}.png"
    files.write_label_png(out / item.label, label_map, palette)
    item.label_sha256 = file_sha256(out / item.label)


def read_item(path: str | Path, raw: dict | None = None) -> SynthItem:
    """One item record (``raw``: its JSON already parsed).  Raises DataError naming the
    file when it is unreadable or not an item of this format."""
    path = Path(path)
    return SynthItem.from_json(files.read_json(path) if raw is None else raw, path)


def read_items(root: str | Path) -> list[SynthItem]:
    """Every item record of a synthesized dataset, in file-name order.  Raises DataError as
    :func:`read_item`."""
    return [read_item(p) for p in item_files(root)]


def read_synth_info(root: str | Path) -> SynthDatasetInfo:
    """``dataset.json`` of a synthesized dataset.  Raises DataError naming the file when it
    is missing, not a partsynth dataset, or not a synthesized one."""
    from pipeline.formats.folder import read_dataset_info

    path = Path(root) / DATASET_FILE
    d = read_dataset_info(Path(root))
    if not d.get("synthetic") or "refiner_checkpoint" not in d:
        raise DataError(path, "not a synthesized partsynth dataset (no refiner_checkpoint)")
    return SynthDatasetInfo(label_set=d["label_set"], refiner_checkpoint=d["refiner_checkpoint"],
                            refiner_sha256=d.get("refiner_sha256", ""), synth_config=d.get("synth_config") or {},
                            fingerprint=d.get("fingerprint", ""),
                            synth_format_version=int(d.get("synth_format_version", SYNTH_FORMAT_VERSION)))


def finalize_dataset(root: str | Path, info: SynthDatasetInfo) -> dict:
    """Rebuild ``people.json``, ``annotations.json`` (COCO RLE), ``manifest.parquet`` and
    ``dataset.json`` of ``root`` from its item records (each written atomically), streaming:
    one item record in memory at a time, the JSON arrays spooled to temporary files
    (:class:`pipeline.formats.files.JsonArraySpool`), the manifest written in row groups.

    Returns: totals {"images", "people_labelled", "people_partial" (labelled partial
    bodies, among the labelled), "people_skipped"}.
    Raises: DataError naming a malformed item file."""
    out = Path(root)
    people, images, anns = files.JsonArraySpool(), files.JsonArraySpool(), files.JsonArraySpool()
    names = LABEL_SETS[info.label_set].names
    totals = {"images": 0, "people_labelled": 0, "people_partial": 0, "people_skipped": 0}
    with ManifestWriter(out / MANIFEST_FILE, MANIFEST_SCHEMA) as manifest:
        for image_id, path in enumerate(item_files(out), start=1):
            item = read_item(path)
            totals["images"] += 1
            h, w = item.image_size
            if item.label:
                images.add({"id": image_id, "file_name": item.image, "height": h, "width": w, "label": item.label})
            for p in item.persons:
                manifest.add({"person_id": p.person_id, "image": item.image, "status": p.status, "reason": p.reason,
                              "split": p.split, "source": p.source, "neighbours": p.neighbours,
                              "distances": p.distances,
                              "mean_max_prob": np.nan if p.mean_max_prob is None else p.mean_max_prob,
                              "pixels": p.pixels, "estimated_joints": p.estimated_joints,
                              "refiner_sha256": info.refiner_sha256, "label": item.label})
                keypoints = None if p.keypoints is None else keypoints_to_json(p.keypoints)
                if p.status != "ok":
                    totals["people_skipped"] += 1
                    people.add({"person_id": p.person_id, "image": item.image, "label": None, "status": p.status,
                                "reason": p.reason, "split": p.split, "keypoints": keypoints})
                    continue
                totals["people_labelled"] += 1
                totals["people_partial"] += bool(p.estimated_joints)
                people.add({"person_id": p.person_id, "image": item.image, "label": item.label, "keypoints": keypoints,
                            "split": p.split, "meta": {"mean_max_prob": p.mean_max_prob, "neighbours": p.neighbours,
                                                       "source": p.source, "estimated_joints": p.estimated_joints,
                                                       "person_mask": p.person_mask}})
                for c, rle in p.rle.items():
                    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
                    anns.add({"id": anns.count + 1, "image_id": image_id, "category_id": int(c),
                              "person_id": p.person_id, "segmentation": rle, "iscrowd": 0,
                              "area": float(mask_utils.area(r)), "bbox": [float(v) for v in mask_utils.toBbox(r)]})
        files.write_streamed_json(out / ANNOTATIONS_FILE, {
            "info": {"description": "partsynth synthesized labels", "refiner_sha256": info.refiner_sha256},
            "images": images, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in enumerate(names) if i > 0]})
        files.write_streamed_json(out / PEOPLE_FILE, people)
    files.write_json(out / DATASET_FILE, info.to_json())
    return totals


def write_read_skips(root: str | Path, skipped: list) -> None:
    """Write ``root/skipped.json``: the (file, reason) of every input item the reader
    skipped (an unreadable photo, a keypoints entry without a photo, ...), which never
    reach an item record."""
    files.write_json(Path(root) / READ_SKIPS_FILE, skip_records(skipped))


def read_read_skips(root: str | Path) -> list[dict]:
    """What :func:`write_read_skips` wrote ([] when absent)."""
    path = Path(root) / READ_SKIPS_FILE
    return files.read_json(path) if path.is_file() else []


def item_intact(root: str | Path, image_path: str | Path, fingerprint: str | None = None) -> bool:
    """True when ``root`` holds a readable item record for this image (with ``fingerprint``
    when given) whose label PNG and probabilities exist, the PNG with the recorded hash.
    A deleted, changed or foreign file makes it False (the image is then redone)."""
    root = Path(root)
    item = read_record_or_none(root, image_path, read_item)
    if item is None or (fingerprint is not None and item.fingerprint != fingerprint):
        return False
    return label_file_intact(root, item.label, item.label_sha256) and (not item.probs or (root / item.probs).is_file())


def top_level_intact(root: str | Path) -> bool:
    """True when the files :func:`finalize_dataset` writes are all present."""
    root = Path(root)
    return all((root / name).is_file() for name in (DATASET_FILE, PEOPLE_FILE, ANNOTATIONS_FILE, MANIFEST_FILE))


def remove_stale_labels(root: str | Path, images: set[str]) -> list[str]:
    """Delete the records, label PNGs and probabilities of images no longer in the input
    (``images``: absolute paths).  Returns the images removed."""
    return remove_stale_items(root, images, read_item, ("label", "probs"))


def claim_output(out: str | Path, data: str | Path, records: bool = True) -> None:
    """Check that ``out`` may receive a synthesized dataset made from ``data``
    (:func:`pipeline.formats.item_folder.claim_item_folder`): new, empty, a synthesized dataset
    (``dataset.json`` with a ``refiner_checkpoint``), or, when that was deleted, nothing
    but this format's files with readable item records; not the input, inside an input
    folder, or containing it.  Raises: ConfigError in one line naming the folder or the
    foreign file.  ``records`` off leaves the item records unread (the command line's
    check before the flow, which reads them)."""
    claim_item_folder(out, data, "refiner_checkpoint", OWN_ENTRIES, read_item, "synthesized dataset",
                      bare=frozenset({ITEMS_DIR, "labels", "probs", KEYPOINTS_DIR, READ_SKIPS_FILE}), keep_foreign=True,
                      records=records)


def skip_summary(root: str | Path) -> dict[str, tuple[int, str]]:
    """{reason: (count, "image person" or file)} of the people a synthesis run skipped (its
    manifest) and the input items its reader could not use (``skipped.json``), most
    frequent first.  Reasons that differ only in their numbers are one kind of problem,
    counted once; the key is the first such reason as written (digits kept) and the example
    is where it occurred."""
    root = Path(root)
    m = pd.read_parquet(root / MANIFEST_FILE, columns=["image", "person_id", "reason", "status"],
                        filters=[("status", "!=", "ok")])
    entries = [(reason, f"{image} {pid}") for image, pid, reason in zip(m.image, m.person_id, m.reason)]
    entries += [(s["reason"], s["file"]) for s in read_read_skips(root)]
    groups: dict[str, list] = {}
    for reason, where in entries:
        groups.setdefault(re.sub(r"[-+]?\d[\d.e+-]*", "#", reason), []).append((reason, where))
    return {v[0][0]: (len(v), v[0][1]) for _, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))}


def training_data_signature(paths: list[str | Path]) -> str:
    """16 hex digits that change when the data a network trains on changes.

    A folder written by partsynth (``items/`` beside ``dataset.json``: synthesized,
    predicted or imported people) is hashed by the content of its ``people.json`` and item
    records, which carry every label file's hash, so that a rerun that rewrites the same
    labels keeps the signature; any other path by :func:`pipeline.formats.files.tree_signature`
    (names, sizes, modification times).  Raises DataError for a missing path."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        if (path / DATASET_FILE).is_file() and (path / ITEMS_DIR).is_dir():
            for f in [path / PEOPLE_FILE, *item_files(path)]:
                h.update(f.name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b"") + b"\n")
        else:
            h.update(files.tree_signature(path).encode())
    return h.hexdigest()[:16]
