"""Clothing Co-Parsing (Yang, Luo, Lin, CVPR 2014) with estimated BlazePose keypoints."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.labels import CCP59_NAMES, ccp59_to_ccp8_lut, remap
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.skeleton import from_blazepose33

KEYPOINTS_FILE = "keypoints_blazepose33.json"


def ccp_split(person_id: str, labelled: bool) -> str:
    """The project's CCP split: labelled ids divisible by 4 -> ``val``, other labelled ids ->
    ``train``, photos without pixel labels -> ``unlabelled`` (keypoint-only)."""
    if not labelled:
        return "unlabelled"
    return "val" if int(person_id) % 4 == 0 else "train"


def check_label_list(root: Path) -> None:
    """Check ``label_list.mat`` holds the 59 CCP names in the expected order (DataError if not)."""
    path = root / "label_list.mat"
    raw = files.read_mat(path)
    if "label_list" not in raw:
        raise DataError(path, "no 'label_list' variable")
    names = tuple(str(x[0]) if len(x) else "" for x in raw["label_list"].reshape(-1))
    if names != CCP59_NAMES:
        raise DataError(path, f"label names differ from the 59 CCP classes (got {len(names)} names)")


def read_ccp_label_map(path: Path, image_size: tuple[int, int], label_set: str) -> np.ndarray:
    """CCP ``groundtruth`` (H, W) uint8 in ``ccp59`` or ``ccp8`` ids.

    Raises: DataError on a missing variable, a wrong shape or size, or ids >= 59.
    """
    raw = files.read_mat(path)
    if "groundtruth" not in raw:
        raise DataError(path, "no 'groundtruth' variable")
    gt = np.asarray(raw["groundtruth"])
    if gt.ndim != 2:
        raise DataError(path, f"groundtruth must be 2-D, got shape {gt.shape}")
    if tuple(gt.shape) != tuple(image_size):
        raise DataError(path, f"label map size {gt.shape} differs from image size {image_size}")
    if gt.size and (gt.min() < 0 or gt.max() >= len(CCP59_NAMES)):
        raise DataError(path, f"label ids outside 0..58 (min {gt.min()}, max {gt.max()})")
    gt = gt.astype(np.uint8)
    return remap(gt, ccp59_to_ccp8_lut()) if label_set == "ccp8" else gt


def read_ccp(root: str | Path, *, label_set: str = "ccp8", skip_bad: bool = False,
             report: ReadReport | None = None, load_labels: bool = True) -> Iterator[PersonRecord]:
    """Yield one record per CCP photo (one standing person each).

    Layout: ``photos/NNNN.jpg``, ``annotations/pixel-level/NNNN.mat`` (``groundtruth``),
    ``label_list.mat`` and ``keypoints_blazepose33.json`` (``{file: [[x, y, vis] x 33] |
    null}``).  Keypoints are BlazePose estimates converted with
    :func:`pipeline.skeleton.from_blazepose33`; a ``null`` entry (no person found) gives
    ``keypoints=None`` and is counted as ``no_keypoints``.

    Args:
        label_set: ``ccp8`` (grouped, default) or ``ccp59`` (raw classes).
        load_labels: False skips reading the ``.mat`` files (label_map None) but keeps
            ``meta["label_path"]`` and the split.
    Raises: DataError (unless ``skip_bad``) for a corrupt photo, a bad ``.mat``, a size
        mismatch or bad keypoints; DataError always for a missing layout file.
    """
    root = Path(root)
    if label_set not in ("ccp8", "ccp59"):
        raise ConfigError(f"CCP label_set must be 'ccp8' or 'ccp59', got {label_set!r}")
    photos_dir = root / "photos"
    if not photos_dir.is_dir():
        raise DataError(photos_dir, "CCP photos folder not found")
    check_label_list(root)
    kp_path = root / KEYPOINTS_FILE
    all_kps = files.read_json(kp_path) if kp_path.exists() else {}
    if kp_path.exists() and not isinstance(all_kps, dict):
        raise DataError(kp_path, "expected an object {photo file name: landmarks | null}")
    if not kp_path.exists() and report is not None:
        report.counts["no_keypoints_file"] += 1
        report.skipped.append((str(kp_path), "keypoints file missing: no photo has keypoints"))
    photos = sorted(photos_dir.glob("*.jpg"))
    if report is not None:
        names = {p.name for p in photos}
        report.skipped += [(str(p), "not a .jpg photo (CCP photos are NNNN.jpg): ignored")
                           for p in sorted(photos_dir.iterdir()) if p.is_file() and p.suffix != ".jpg"
                           and not p.name.startswith(".")]
        report.skipped += [(str(kp_path), f"keypoints for {name}, which is not in photos/: ignored")
                           for name in sorted(set(all_kps) - names)]
    label_dir = root / "annotations" / "pixel-level"
    for photo in photos:
        def one(photo=photo):
            pid = photo.stem
            size = files.image_size(photo)
            mat = label_dir / f"{pid}.mat"
            labelled = mat.exists()
            label = read_ccp_label_map(mat, size, label_set) if labelled and load_labels else None
            kp = derived = None
            raw = all_kps.get(photo.name)
            if raw is not None:
                kp, derived = from_blazepose33(raw, path=kp_path)
            elif report is not None:
                report.counts["no_keypoints"] += 1
            meta = {"label_path": str(mat) if labelled else None, "keypoints_source": "blazepose33"}
            return PersonRecord(photo, size, pid, "ccp", label, kp, derived,
                                label_set if labelled else None, ccp_split(pid, labelled), meta)

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec
