"""OpenPose's JSON output (Cao et al., TPAMI 2019): one ``<photo stem>_keypoints.json`` per
photo, as ``openpose --write_json`` writes it; with a ``parse/`` folder of LIP-style label
PNGs beside it (VITON's layout, Han et al., CVPR 2018), its one-person photos are labelled."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ConfigError, DataError
from pipeline.formats import files
from pipeline.labels import LABEL_SETS
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.priors.partition import lip_to_pascal6
from pipeline.skeleton import from_openpose

SUFFIX = "_keypoints.json"
LIP_SET = "lip20"


def openpose_folders(path: str | Path) -> tuple[Path, list[Path]] | None:
    """(keypoint JSON folder, photo folders to look in) when ``path`` holds OpenPose output:
    ``*_keypoints.json`` files directly (photos beside them or in a sibling ``images/``), or
    a ``pose/`` (or ``keypoints/``) folder of them beside ``images/`` (VITON's layout);
    else None."""
    path = Path(path)
    for json_dir, photo_dirs in ((path, [path, path.parent / "images"]),
                                 (path / "pose", [path / "images", path]),
                                 (path / "keypoints", [path / "images", path])):
        if json_dir.is_dir() and next(json_dir.glob(f"*{SUFFIX}"), None) is not None:
            return json_dir, photo_dirs
    return None


#: label PNGs of the photos (``<stem>.png``, LIP's 20 classes), looked for beside the photo folder
PARSE_DIR = "parse"


def read_openpose(path: str | Path, image_dir: str | Path | None = None, *, skip_bad: bool = False,
                  report: ReadReport | None = None, min_confidence: float = 0.1,
                  min_keypoints: int = 1, parses: bool = True, label_set: str = LIP_SET) -> Iterator[PersonRecord]:
    """Yield one record per person of a folder of OpenPose JSON files.

    Each ``<stem>_keypoints.json`` (``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}``;
    the old ``pose_keypoints`` key too; BODY_18 or BODY_25, see
    :func:`pipeline.skeleton.from_openpose`) belongs to the photo ``<stem>.<jpg|png|...>``,
    found in ``image_dir`` when given, else beside the JSON or in a sibling ``images/``
    folder (:func:`openpose_folders`).  Every person becomes a record
    (``person_id = "<stem>/<index>"``); points below ``min_confidence`` (and OpenPose's
    (0, 0, 0)) are missing.  People with fewer than ``min_keypoints`` present joints are
    counted in ``report.counts["few_keypoints"]``, files with nobody in them as
    ``no_person``.  ``meta`` keeps the JSON's path and the person's index.

    With ``parses`` and a ``parse/`` folder beside the photos' folder (VITON), the person of a
    one-person photo whose ``parse/<stem>.png`` exists gets that label map (``lip20``: LIP's
    classes, palette indices; VITON's were made by a LIP-trained network, so such a bank
    holds machine labels) and ``meta["label_source"] = "parse"``; the others stay
    keypoint-only.  ``split`` is None (the folder defines none).  With ``label_set="pascal6"``
    the parses are turned into body parts with the person's keypoints
    (:func:`pipeline.priors.partition.lip_to_pascal6`).

    Raises: DataError when ``path`` holds no OpenPose JSON; per file or person (unless
        ``skip_bad``) for invalid JSON, a file that is not OpenPose output, a missing or
        unreadable photo, keypoints of another length, or a parse PNG that is unreadable, not
        the photo's size or holds values outside LIP's 20 classes.
    """
    if label_set not in (LIP_SET, "pascal6"):
        raise ConfigError(f"OpenPose parses are read as lip20 or pascal6, not {label_set!r}")
    found = openpose_folders(path)
    if found is None:
        raise DataError(path, f"no OpenPose *{SUFFIX} files here or in its pose/ folder")
    json_dir, photo_dirs = found
    if image_dir is not None:
        photo_dirs = [Path(image_dir)]
    for keypoints_file in sorted(json_dir.glob(f"*{SUFFIX}")):
        stem = keypoints_file.name[: -len(SUFFIX)]
        opened = guard(lambda f=keypoints_file, s=stem: _open(f, s, photo_dirs), skip_bad=skip_bad, report=report)
        if opened is None:
            continue
        photo, size, people = opened
        if not people and report is not None:
            report.counts["no_person"] += 1
        for i, person in enumerate(people):
            def one(person=person, i=i, f=keypoints_file, s=stem):
                flat = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
                if flat is None:
                    raise DataError(f, f"person {i}: no pose_keypoints_2d (or pose_keypoints) list")
                try:
                    kp, derived = from_openpose(flat, min_confidence=min_confidence, path=f)
                except DataError as e:
                    raise DataError(f, f"person {i}: {e.problem}") from None
                meta = {"keypoints_file": str(f), "person_index": i}
                parse = photo.parent.parent / PARSE_DIR / f"{s}.png" if parses and len(people) == 1 else None
                if parse is None or not parse.is_file():
                    return PersonRecord(photo, size, f"{s}/{i}", "openpose", None, kp, derived, None, None, meta)
                label_map = files.read_photo_label_png(parse, size, LABEL_SETS[LIP_SET], "parse")
                if label_set == "pascal6":
                    label_map = lip_to_pascal6(label_map, kp)
                return PersonRecord(photo, size, f"{s}/{i}", "openpose", label_map, kp, derived,
                                    label_set, None, dict(meta, label_source="parse", label_file=str(parse)))

            rec = guard(one, skip_bad=skip_bad, report=report)
            if rec is None:
                continue
            if int(((rec.keypoints[:, 2] > 0) & ~rec.keypoints_derived).sum()) < min_keypoints:
                if report is not None:
                    report.counts["few_keypoints"] += 1
                continue
            yield rec


def _open(keypoints_file: Path, stem: str, photo_dirs: list[Path]) -> tuple[Path, tuple[int, int], list]:
    """(photo, its (h, w), the file's people) of one OpenPose JSON; DataError otherwise."""
    doc = files.read_json(keypoints_file)
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise DataError(keypoints_file, "not OpenPose output (needs a 'people' list)")
    photo = next((d / f"{stem}{sfx}" for d in photo_dirs for sfx in files.IMAGE_SUFFIXES
                  if (d / f"{stem}{sfx}").is_file()), None)
    if photo is None:
        raise DataError(keypoints_file, f"no photo {stem}.jpg (or .png, ...) in {', '.join(map(str, photo_dirs))}")
    return photo, files.image_size(photo), doc["people"]

