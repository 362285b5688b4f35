"""Recognise a dataset's layout on disk and read it with the matching reader; list the
photos of an input (:func:`list_photos`) and tell a folder of bare photos from a dataset
(:func:`is_photo_folder`)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import mmap
from collections.abc import Iterator
from pathlib import Path

from pipeline import readers
from pipeline.errors import ConfigError, DataError
from pipeline.formats import files
from pipeline.formats.files import IMAGE_SUFFIXES
from pipeline.formats.records import PersonRecord, ReadReport
from pipeline.readers.openpose import openpose_folders

LAYOUTS = ("partsynth", "ccp", "lsp", "coco", "mpii", "mpii_mat", "openpose", "pascal_part", "lip", "cihp")


def _json_kind(path: Path, strict: bool = False) -> str | None:
    """"coco", "mpii" or None for a JSON file; with ``strict`` an unreadable file raises
    DataError (invalid JSON with its line and column) instead of giving None.  A COCO or
    MPII file is told by its bytes, not parsed (a COCO keypoints JSON takes seconds to
    parse; its reader parses it once), and each version of a file (size, modification
    time) is looked at once per process."""
    try:
        if not path.is_file():
            files.read_json(path)               # raises DataError naming what is wrong with the path
        st = path.stat()
        return _cached_json_kind(path, st.st_mtime_ns, st.st_size)
    except DataError:
        if strict:
            raise
        return None


@functools.lru_cache(maxsize=64)
def _cached_json_kind(path: Path, mtime_ns: int, size: int) -> str | None:
    """:func:`_json_kind` of one version of a file (DataError when unreadable, not cached).
    A file that opens with ``[`` and ends with ``]``, or opens with ``{``, ends with ``}``
    and holds both ``"images"`` and ``"annotations"`` keys, is told by its bytes, without
    parsing (the reader parses it, once, and names any error); any other, a cut one too, is
    parsed, so that its invalid JSON is named here."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else \
            contextlib.nullcontext(b"") as raw:
        start, end = raw[:4096].lstrip()[:1], raw[-4096:].rstrip()[-1:]     # a cut file (a partial
        if start == b"[" and end == b"]":                                    # download) is parsed below
            return "mpii"
        if start == b"{" and end == b"}" and raw.find(b'"annotations"') >= 0 and raw.find(b'"images"') >= 0:
            return "coco"
    doc = files.read_json(path)
    if isinstance(doc, list):
        return "mpii"
    if isinstance(doc, dict) and {"images", "annotations"} <= set(doc):
        return "coco"
    return None


def detect_layout(path: str | Path) -> str:
    """The layout name (one of :data:`LAYOUTS`) of a dataset folder or annotation file.

    Folders: ``dataset.json`` -> partsynth; ``photos/`` + ``label_list.mat`` -> ccp;
    ``joints.npy`` + ``images/`` -> lsp; ``TrainVal_images/`` or ``Testing_images/`` -> lip;
    ``Training/`` or ``images/`` + ``labels/`` -> cihp; OpenPose ``*_keypoints.json`` files
    (or a ``pose/`` folder of them) -> openpose; ``*.mat`` beside same-named
    ``*.jpg`` -> pascal_part; a folder with exactly one COCO or MPII JSON -> that.
    Files: a COCO keypoints JSON -> coco; a JSON list -> mpii; ``.mat`` -> mpii_mat.
    Raises: DataError when the path is missing or nothing matches.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(p, "path not found")
    if p.is_file():
        if p.suffix == ".json" and (kind := _json_kind(p, strict=True)):
            return kind
        if p.suffix == ".mat":
            return "mpii_mat"
        raise DataError(p, "not a COCO keypoints JSON, an MPII JSON or an MPII .mat")
    checks = [
        ("partsynth", (p / "dataset.json").is_file()),
        ("ccp", (p / "photos").is_dir() and (p / "label_list.mat").is_file()),
        ("lsp", (p / "joints.npy").is_file() and (p / "images").is_dir()),
        ("lip", (p / "TrainVal_images").is_dir() or (p / "Testing_images").is_dir()),
        ("cihp", (p / "Training").is_dir() or ((p / "images").is_dir() and (p / "labels").is_dir())),
        ("openpose", openpose_folders(p) is not None),
        ("pascal_part", any(m.with_suffix(".jpg").exists() for m in p.glob("*.mat"))),
    ]
    for name, ok in checks:
        if ok:
            return name
    kinds, unreadable = {}, []
    for j in sorted(p.glob("*.json")):
        try:
            kinds[j] = _json_kind(j, strict=True)
        except DataError as e:
            unreadable.append(f"{j.name}: {e.problem}")
    found = [j for j, k in kinds.items() if k]
    if len(found) == 1:
        return kinds[found[0]]
    hint = f" ({len(found)} annotation JSONs: pass one file)" if found else \
        f" ({'; '.join(unreadable)})" if unreadable else ""
    raise DataError(p, f"unrecognised dataset layout{hint}; known layouts: {', '.join(LAYOUTS)}")


def annotation_file(path: Path, layout: str) -> Path:
    """The annotation file for coco/mpii layouts given a file or a folder holding one."""
    if path.is_file():
        return path
    found = [j for j in sorted(path.glob("*.json")) if _json_kind(j) == layout]
    if len(found) != 1:
        raise DataError(path, f"expected exactly one {layout} JSON, found {len(found)}")
    return found[0]


def iter_records(path: str | Path, layout: str | None = None, *, skip_bad: bool = False,
                 report: ReadReport | None = None, **options) -> Iterator[PersonRecord]:
    """Records of the dataset at ``path`` (layout detected when None).

    ``options`` go to the reader (``label_set`` for ccp, pascal_part and openpose).
    Raises: ValueError for an unknown layout name; DataError as the reader does.
    """
    p = Path(path)
    layout = layout or detect_layout(p)
    kw = dict(skip_bad=skip_bad, report=report)
    if layout == "partsynth":
        return readers.read_partsynth_folder(p, **kw)
    if layout == "ccp":
        return readers.read_ccp(p, **kw, **options)
    if layout == "lsp":
        return readers.read_lsp(p, **kw)
    if layout == "coco":
        return readers.read_coco(annotation_file(p, "coco"), **kw)
    if layout == "mpii":
        return readers.read_mpii_json(annotation_file(p, "mpii"), **kw)
    if layout == "mpii_mat":
        return readers.read_mpii_mat(p, options.get("image_dir", p.parent / "images"), **kw)
    if layout == "openpose":
        return readers.read_openpose(p, options.get("image_dir"), **kw,
                                     **{k: v for k, v in options.items() if k == "label_set"})
    if layout == "pascal_part":
        return readers.read_pascal_part(p, **kw, **options)
    if layout == "lip":
        return readers.read_lip(p, **kw)
    if layout == "cihp":
        return readers.read_cihp(p, **kw)
    raise ConfigError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def iter_keypoint_only_people(data: str | Path, layout: str | None = None, report: ReadReport | None = None,
                              relabel: bool = False, split: str | None = None) -> Iterator[PersonRecord]:
    """People of a dataset to synthesize labels for, one at a time, in reader order: those
    without a label map (labelled people are left alone), or with ``relabel`` every person,
    labels dropped (to score synthesis against their ground truth); only ``split``'s people
    when given.  Bad items are skipped into ``report``."""
    for r in iter_records(data, layout, skip_bad=True, report=report):
        if split is not None and r.split != split:
            continue
        if relabel:
            yield dataclasses.replace(r, label_map=None)
        elif r.label_map is None:
            yield r


def keypoint_only_people(data: str | Path, layout: str | None = None, report: ReadReport | None = None,
                         relabel: bool = False, split: str | None = None) -> list[PersonRecord]:
    """:func:`iter_keypoint_only_people` as a list."""
    return list(iter_keypoint_only_people(data, layout, report, relabel, split))


def drawable_people(data: str | Path, layout: str | None = None, n: int = 16, ids=None,
                    seed: int = 0) -> list[PersonRecord]:
    """The people ``partsynth data show`` draws: those with keypoints and a label map or a
    person mask, ``n`` of them drawn at random with ``seed`` (all when fewer), or those whose
    ``person_id`` is in ``ids``; reader order.  Bad items are skipped.

    A partsynth folder picks from ``people.json`` alone and reads only the picked people's
    files, so it takes the same time at 100,000 people as at 1,000; other layouts are read
    whole.  Raises: DataError and ConfigError as :func:`iter_records`.
    """
    import numpy as np

    layout = layout or detect_layout(data)
    if layout == "partsynth":
        from pipeline.formats.folder import drawable_person_ids

        candidates = drawable_person_ids(data)
        if ids:
            wanted = set(ids)
        elif len(candidates) > n:
            wanted = {candidates[i] for i in np.random.default_rng(seed).choice(len(candidates), n, replace=False)}
        else:
            wanted = set(candidates)
        return list(readers.read_partsynth_folder(Path(data), skip_bad=True, person_ids=wanted))
    recs = [r for r in iter_records(data, layout, skip_bad=True) if r.keypoints is not None
            and (r.label_map is not None or r.meta.get("person_mask"))]
    if ids:
        return [r for r in recs if r.person_id in set(ids)]
    if len(recs) > n:
        pick = np.random.default_rng(seed).choice(len(recs), n, replace=False)
        recs = [recs[i] for i in sorted(pick)]
    return recs


def link_unlabelled_photos(data: str | Path, folder: str | Path) -> list[Path]:
    """Make ``folder`` a plain folder of photos: one symbolic link per photo of the dataset
    ``data`` that has no labelled person (CCP's keypoint-only photos, say), named as the
    photo, so that the photos can be treated as raw photos without keypoints.  Links no
    longer wanted are removed; each link is made under a temporary name and renamed.

    Returns: the linked photos (absolute paths, reader order).
    Raises: ConfigError when ``folder`` holds anything but symbolic links, or two photos
        share a file name; DataError as the dataset's reader does.
    """
    from pipeline.formats.files import TEMP_PREFIX

    folder = Path(folder)
    labelled = set()
    photos: dict[str, Path] = {}
    layout = detect_layout(data)
    options = {"load_labels": False} if layout == "ccp" else {}          # CCP: the .mat path says enough
    for r in iter_records(data, layout, skip_bad=True, report=ReadReport(), **options):
        path = Path(r.image_path).resolve()
        if r.label_map is not None or (r.meta or {}).get("label_path"):
            labelled.add(path)
        photos.setdefault(path.name, path)
        if photos[path.name] != path:
            raise ConfigError(f"{data}: two photos named {path.name}; cannot link them into one folder")
    wanted = {name: p for name, p in photos.items() if p not in labelled}
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if not entry.is_symlink():
            raise ConfigError(f"{folder}: holds {entry.name}, which is not a link; choose an empty or new folder")
        if entry.name not in wanted or entry.resolve() != wanted[entry.name]:
            entry.unlink()
    for name, target in wanted.items():
        link = folder / name
        if not link.is_symlink():
            tmp = folder / f"{TEMP_PREFIX}{name}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            tmp.replace(link)
    return list(wanted.values())


def list_photos(data: str | Path) -> list[Path]:
    """The photos to parse: the images of a recognised dataset layout, folder or annotation
    file (a COCO or MPII JSON, an MPII .mat; each image once, in reader order); ``data``
    itself when it is another file; else every file with an image suffix
    (:data:`IMAGE_SUFFIXES`, any case) under the folder, hidden folders excluded, in path
    order.  Paths are absolute.  Raises ConfigError when ``data`` is missing or holds no
    photo; DataError when an annotation file is unreadable."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() not in (".json", ".mat"):
            return [data.resolve()]
        photos = list(dict.fromkeys(Path(r.image_path).resolve() for r in iter_records(data, skip_bad=True)))
        if not photos:
            raise ConfigError(f"{data}: no people's photos")
        return photos
    if not data.is_dir():
        raise ConfigError(f"{data}: no such file or folder")
    try:
        detect_layout(data)
        photos = list(dict.fromkeys(Path(r.image_path).resolve() for r in iter_records(data, skip_bad=True)))
    except DataError:
        photos = sorted(p.resolve() for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(data).parts))
    if not photos:
        raise ConfigError(f"{data}: no photos ({', '.join(IMAGE_SUFFIXES)})")
    return photos


def is_photo_folder(path: str | Path, layout: str | None = None) -> bool:
    """True when ``path`` is a folder of photos in no dataset layout partsynth reads (so its
    people need keypoints first); False for a recognised layout or a forced ``layout``."""
    path = Path(path)
    if layout is not None or not path.is_dir():
        return False
    try:
        detect_layout(path)
        return False
    except DataError:
        return any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file())
