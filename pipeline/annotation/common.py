"""What every annotation format shares: which synthesized images go out (and in which
order), the partsynth facts that travel with them, class names, and the labelled folder the
corrections come back into.

Formats other than Label Studio cannot carry our per-image facts (the photo's path, its
people's ids, keypoints, split and confidence) inside their files, so their exports write
them beside the annotations in ``partsynth.json`` ({image file name: facts}); imports read
it back (from beside the annotation file, or ``meta=``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.formats.output_lock import LOCK_ENTRIES, check_unlocked, output_lock
from pipeline.formats.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, keypoints_to_json, read_dataset_info
from pipeline.formats.item_folder import ITEMS_DIR, item_name
from pipeline.formats.synth_dataset import SynthItem, read_items, read_synth_info

IGNORE_NAME = "ignore"
META_FILE = "partsynth.json"


@dataclass
class ExportImage:
    """One labelled image going out: ``name`` (its name in the export: the photo's path
    relative to the photos' root, :func:`export_names`, in POSIX form), ``photo`` (its path),
    ``score`` (its people's lowest confidence), ``label_map`` path, and ``meta`` (the facts
    :class:`LabelledWriter` needs)."""

    name: str
    photo: str
    score: float
    label: Path
    meta: dict

    def label_map(self) -> np.ndarray:
        """uint8 (H, W) synthesized label map (class ids, 255 undecided)."""
        return files.read_label_png(self.label)

    @property
    def stem(self) -> str:
        """``name`` without its suffix (VOC's and the training layouts' image id)."""
        return self.name[: -len(Path(self.name).suffix)] if Path(self.name).suffix else self.name

    @property
    def split(self) -> str:
        """``val`` when one of its people is in the val split (synthesized with
        ``--relabel --split val``), else ``train`` (keypoint-only people train parsers)."""
        return "val" if any(p.get("split") == "val" for p in self.meta["people"]) else "train"


@dataclass(frozen=True)
class Selection:
    """Which images an export holds: ordered lowest confidence first (``order="confidence"``;
    a correction is worth most there) or by ``name``; images whose people are all at or
    above ``max_confidence`` left out; at most ``limit``; ``copy_images``: the photos are
    copied beside the annotations."""

    order: str = "confidence"
    max_confidence: float | None = None
    limit: int | None = None
    copy_images: bool = False


def select_images(synth_dir: str | Path, selection: Selection = Selection()) -> tuple[object, list[ExportImage], int]:
    """The labelled images of a synthesized dataset to export, as ``selection`` says.

    Returns (the dataset's :class:`pipeline.formats.synth_dataset.SynthDatasetInfo`, the images, the
    number of labelled images).  Raises DataError for a folder that is not a synthesized
    dataset; ValueError for an unknown order."""
    order, max_confidence, limit = selection.order, selection.max_confidence, selection.limit
    if order not in ("confidence", "name"):
        raise ValueError(f"order must be confidence or name, got {order!r}")
    synth_dir = Path(synth_dir)
    info = read_synth_info(synth_dir)
    items = [i for i in read_items(synth_dir) if i.label]
    scored = [(min(p.mean_max_prob for p in i.labelled), i) for i in items]
    if order == "confidence":
        scored.sort(key=lambda t: t[0])
    if max_confidence is not None:
        scored = [t for t in scored if t[0] < max_confidence]
    picked = scored[:limit] if limit is not None else scored
    names = export_names([i.image for i in items])
    return info, [_export_image(synth_dir, s, i, info.label_set, names[i.image]) for s, i in picked], len(items)


def export_names(photos: list[str]) -> dict[str, str]:
    """{photo path: its name in an export}: the path relative to the deepest folder holding
    every photo of the dataset, in POSIX form (``0001.jpg``, ``train2017/0001.jpg`` for photos
    in several folders): the name a CVAT task made from that folder gives the frame, and a
    COCO ``file_name``.  Unique because the paths are; the same for every selection of the
    dataset's images.  A dataset of one photo gets its file name."""
    if not photos:
        return {}
    resolved = {p: Path(p).resolve() for p in photos}
    root = Path(os.path.commonpath([str(r.parent) for r in resolved.values()]))
    return {p: r.relative_to(root).as_posix() for p, r in resolved.items()}


def _export_image(synth_dir: Path, score: float, item: SynthItem, label_set: str, name: str) -> ExportImage:
    meta = {"image": item.image, "label_set": label_set, "people": [
        {"person_id": p.person_id, "split": p.split, "confidence": p.mean_max_prob,
         "keypoints": None if p.keypoints is None else keypoints_to_json(p.keypoints)} for p in item.labelled]}
    return ExportImage(name, item.image, score, synth_dir / item.label, meta)


def copy_photo(image: ExportImage, folder: Path) -> Path:
    """Copy the photo to ``folder/<image.name>`` (sub-folders made as needed); returns the
    copy's path."""
    target = folder / image.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.photo, target)
    return target


def class_names(label_set: str) -> list[str]:
    """The names an export uses for classes 1..C-1 (background is not annotated)."""
    return list(LABEL_SETS[label_set].names[1:])


def class_id(name: str, label_set: str, where: str) -> int:
    """Class id of an annotation label name (``ignore`` -> 255).  Raises DataError naming
    ``where`` for a name the label set does not have."""
    if name == IGNORE_NAME:
        return IGNORE
    names = LABEL_SETS[label_set].names
    if name in names[1:]:
        return names.index(name)
    raise DataError(where, f"unknown label {name!r} (label set {label_set}: {', '.join(names[1:])})")


def class_name(c: int, label_set: str) -> str:
    """Name of class id ``c`` in an export (255 -> ``ignore``)."""
    return IGNORE_NAME if c == IGNORE else LABEL_SETS[label_set].names[c]


def write_meta(out: Path, images: list[ExportImage]) -> None:
    """``out/partsynth.json``: {image file name: facts} of the exported images."""
    files.write_json(out / META_FILE, {im.name: im.meta for im in images})


def read_meta(folder: Path, meta: str | Path | None) -> ExportFacts:
    """The facts written by :func:`write_meta`: the file ``meta``, or ``folder/partsynth.json``.
    Raises DataError when there are none."""
    path = Path(meta) if meta is not None else folder / META_FILE
    if not path.is_file():
        raise DataError(path, f"no {META_FILE}: pass the one 'partsynth export' wrote (--meta)")
    facts = files.read_json(path)
    if not isinstance(facts, dict):
        raise DataError(path, f"expected {{image name: facts}}, got {type(facts).__name__}")
    return ExportFacts(facts)


class ExportFacts:
    """The facts of ``partsynth.json``, looked up by the name a tool gives an image back."""

    def __init__(self, facts: dict[str, dict]):
        self.facts = facts
        self._index: dict[tuple[bool, bool], dict[str, list[str]]] = {}
        for suffix_free in (False, True):
            strip = _without_suffix if suffix_free else str
            for base in (False, True):
                index = self._index[suffix_free, base] = {}
                for n in facts:
                    index.setdefault(strip(PurePosixPath(n).name if base else n), []).append(n)

    def find(self, name: str, suffix_free: bool = False) -> dict | None:
        """The facts of the image a tool calls ``name``: the exported name itself (also an
        older export's ``<item>.jpg``), else the only exported image with that file name (a
        tool that keeps base names only).  ``suffix_free``: ``name`` is a VOC image id, the
        name without its suffix.  None when no image, or several, match."""
        hits = self._hits(name, suffix_free)
        return self.facts[hits[0]] if len(hits) == 1 else None

    def lookup(self, name: str, where: str, suffix_free: bool = False) -> dict:
        """:meth:`find`, or DataError naming ``where`` when no exported image or several match."""
        hits = self._hits(name, suffix_free)
        if len(hits) > 1:
            raise DataError(where, f"{name!r} matches {len(hits)} exported images ({', '.join(sorted(hits)[:3])}); "
                                   "keep the names the export gave them")
        if not hits:
            raise DataError(where, "not in partsynth.json: not an image 'partsynth export' wrote")
        return self.facts[hits[0]]

    def _hits(self, name: str, suffix_free: bool) -> list[str]:
        name = name.replace("\\", "/")
        return (self._index[suffix_free, False].get(name)
                or self._index[suffix_free, True].get(PurePosixPath(name).name, []))


def _without_suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return name[: -len(suffix)] if suffix else name


class LabelledWriter:
    """The labelled partsynth folder corrections come back into (created, or extended):
    ``labels/<item>.png`` per image and its people in ``people.json`` (split ``train``,
    keypoints from the synthesis that made the pre-annotation).

    Used as a context manager.  Nothing reaches ``out`` before :meth:`finish`: label maps
    are staged in a temporary folder (removed on exit), and ``finish`` moves them in and
    writes ``people.json`` then ``dataset.json`` while holding the folder's lock
    (:func:`pipeline.formats.output_lock.output_lock`), so an import that fails on its 500th image
    leaves ``out`` as it was.

    ``out`` must be new, empty, or a labelled partsynth folder; a folder that
    ``synthesize``, ``predict`` or ``keypoints`` wrote is refused, since the people.json and
    dataset.json it would get would lose that folder's own records (its refiner, config and
    per-image items).
    Raises (from the constructor) ConfigError for such a target; (from :meth:`add`)
    DataError naming the annotation for a label map whose size differs from the photo's;
    ConfigError for another label set than the folder's, or a person already labelled
    there without ``replace``."""

    def __init__(self, out: str | Path, replace: bool = False):
        self.out, self.replace = Path(out), replace
        self.label_set, self.existing = claim_labelled_output(self.out)
        self.known = {p["person_id"] for p in self.existing}
        self.entries: dict[str, dict] = {}             # this import's people by id
        self.people: list[dict] = []                    # every person of the folder, after finish
        self.staged: dict[str, Path] = {}
        self.images = 0
        self._stage: Path | None = None

    def __enter__(self) -> LabelledWriter:
        self._stage = Path(tempfile.mkdtemp(prefix="partsynth-import-"))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)

    def check_label_set(self, label_set: str, where: str) -> None:
        """Adopt ``label_set`` for a new folder; ConfigError when it differs from the folder's."""
        if self.label_set is None:
            self.label_set = label_set
        elif label_set != self.label_set:
            raise ConfigError(f"{where}: label set {label_set} differs from {self.out}'s {self.label_set}")

    def add(self, meta: dict, label_map: np.ndarray | None, where: str) -> None:
        """One corrected image: ``label_map`` uint8 (H, W) (None or empty: all background)."""
        self.check_label_set(meta["label_set"], where)
        h, w = files.image_size(meta["image"])
        if label_map is None or label_map.size == 0:
            label_map = np.zeros((h, w), np.uint8)
        elif label_map.shape != (h, w):
            raise DataError(where, f"label map {label_map.shape} differs from the photo {(h, w)} of {meta['image']}")
        taken = [p["person_id"] for p in meta["people"] if p["person_id"] in self.known]
        if taken and not self.replace:
            raise ConfigError(f"{where}: {taken[0]} is already labelled in {self.out} (--replace overwrites it)")
        rel = f"labels/{item_name(meta['image'])}.png"
        files.write_label_png(self._stage / rel, label_map, LABEL_SETS[self.label_set].palette)
        self.staged[rel] = self._stage / rel
        for p in meta["people"]:
            self.entries[p["person_id"]] = {"person_id": p["person_id"], "image": meta["image"], "label": rel,
                                            "keypoints": p["keypoints"], "split": "train",
                                            "meta": {"corrected_from_confidence": p.get("confidence")}}
            self.known.add(p["person_id"])
        self.images += 1

    def finish(self, tool: str, source: Path) -> None:
        """Move the staged label maps into ``out/labels`` and write people.json, then
        dataset.json (each atomically), under the folder's lock.  DataError when nothing was
        read; ConfigError when another run holds the folder or changed it meanwhile."""
        if self.label_set is None:
            raise DataError(source, "no annotated images")
        with output_lock(self.out):
            label_set, existing = claim_labelled_output(self.out)
            if label_set not in (None, self.label_set) or existing != self.existing:
                raise ConfigError(f"{self.out}: changed by another run during this import; run it again")
            for rel, staged in self.staged.items():
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staged, self.out / rel)
            people = [p for p in existing if p["person_id"] not in self.entries] + list(self.entries.values())
            files.write_json(self.out / PEOPLE_FILE, people)
            files.write_json(self.out / DATASET_FILE, {
                "format": FORMAT, "label_set": self.label_set, "synthetic": False,
                "description": f"people corrected in {tool} (partsynth import-labels)"})
        self.people = people


def claim_labelled_output(out: Path) -> tuple[str | None, list[dict]]:
    """(label set, people) of the labelled folder ``out`` that corrections may go into:
    (None, []) for a new or empty folder.
    Raises: ConfigError in one line for a folder that is not a labelled partsynth folder: a
    synthesized, predicted or keypoints folder (with a hint naming a new folder), or a
    non-empty folder of other files; DataError for an unreadable dataset.json/people.json."""
    if not out.exists():
        return None, []
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    check_unlocked(out)
    if not (out / DATASET_FILE).is_file():
        entries = sorted(p.name for p in out.iterdir() if not p.name.startswith(files.TEMP_PREFIX)
                         and p.name not in LOCK_ENTRIES)
        if entries:
            raise ConfigError(f"{out}: not empty and not a labelled partsynth folder (holds {', '.join(entries[:3])}); "
                              "choose a new folder")
        return None, []
    info = read_dataset_info(out)
    made_by = "synthesize" if "refiner_checkpoint" in info else "predict" if info.get("predicted") else \
        "keypoints" if info.get("keypoints_only") else "synthesize" if (out / ITEMS_DIR).is_dir() else None
    if made_by:
        raise ConfigError(f"{out}: written by 'partsynth {made_by}'; corrections go into a folder of their own "
                          f"(for example --out {out.name}-corrected), which training then takes beside it")
    people = files.read_json(out / PEOPLE_FILE) if (out / PEOPLE_FILE).is_file() else []
    return info["label_set"], people
