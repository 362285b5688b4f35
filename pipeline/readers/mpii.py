"""MPII Human Pose (Andriluka et al., CVPR 2014): the mmpose JSON and the official ``.mat``."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.skeleton import NUM_JOINTS, VISIBLE, OCCLUDED, CanonicalPose, from_mpii16, validate_keypoints


def read_mpii_json(ann_path: str | Path, image_dir: str | Path | None = None, *,
                   skip_bad: bool = False, report: ReadReport | None = None) -> Iterator[PersonRecord]:
    """Yield one keypoint-only record per entry of an mmpose-style MPII JSON.

    Format: a list of ``{"image": file name, "joints": [[x, y] x 16], "joints_vis":
    [0|1 x 16], "center": [x, y], "scale": s}``; joints in MPII order (= canonical order),
    unannotated joints as (-1, -1) with ``joints_vis`` 0.  ``person_id`` is
    ``"<image>/<index of the entry>"``; ``meta`` keeps center and scale (MPII's person
    scale, box height / 200 px).

    Raises: DataError for an unreadable JSON or a non-list; per entry (unless
        ``skip_bad``) for a missing image, wrong joint shapes or NaN joints.
    """
    ann_path = Path(ann_path)
    image_dir = ann_path.parent if image_dir is None else Path(image_dir)
    entries = files.read_json(ann_path)
    if not isinstance(entries, list):
        raise DataError(ann_path, "expected a list of person entries")
    for idx, entry in enumerate(entries):
        def one(idx=idx, entry=entry):
            if not isinstance(entry, dict) or "image" not in entry or "joints" not in entry:
                raise DataError(ann_path, f"entry {idx} lacks 'image' or 'joints'")
            path = image_dir / entry["image"]
            size = files.image_size(path)
            kp, derived = from_mpii16(entry["joints"], entry.get("joints_vis"), path=ann_path)
            meta = {"center": entry.get("center"), "scale": entry.get("scale"), "entry": idx}
            return PersonRecord(path, size, f"{entry['image']}/{idx}", "mpii", None, kp, derived,
                                None, None, meta)

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec


def _items(x) -> list:
    """Elements of a squeezed MATLAB struct/cell array (scalar, array or empty)."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return list(x.ravel())
    return [x]


def _field(obj, name, default=None):
    return getattr(obj, name, default) if not isinstance(obj, dict) else obj.get(name, default)


def _mat_points(points, path: Path) -> CanonicalPose:
    kp = np.full((NUM_JOINTS, 3), np.nan, dtype=np.float32)
    kp[:, 2] = 0
    for p in _items(points):
        jid = int(np.asarray(_field(p, "id")).reshape(-1)[0])
        if not 0 <= jid < NUM_JOINTS:
            raise DataError(path, f"MPII joint id {jid} outside 0..15")
        vis = np.asarray(_field(p, "is_visible", 1)).reshape(-1)
        vis_val = 1 if vis.size == 0 else int(float(str(vis[0]) or 1))
        kp[jid] = [float(_field(p, "x")), float(_field(p, "y")), VISIBLE if vis_val else OCCLUDED]
    return CanonicalPose(validate_keypoints(kp, path=path), np.zeros(NUM_JOINTS, dtype=bool))


def read_mpii_mat(mat_path: str | Path, image_dir: str | Path, *, skip_bad: bool = False,
                  report: ReadReport | None = None, check_images: bool = True) -> Iterator[PersonRecord]:
    """Yield one record per annotated person of the official MPII release ``.mat``.

    Format (``mpii_human_pose_v1_u12_1.mat``): ``RELEASE.annolist(i).image.name``,
    ``RELEASE.annolist(i).annorect(r).annopoints.point(k)`` with ``x``, ``y``, ``id``
    (0-15, MPII order = canonical) and ``is_visible`` (occluded joints are still
    annotated); ``RELEASE.img_train(i)`` (1 train, 0 test).  People without
    ``annopoints`` (the test set, unannotated people) are counted as ``no_keypoints``.
    ``person_id`` is ``"<image name>/<r>"``.  Read with ``scipy.io.loadmat``.

    Args:
        check_images: read each image's header for its size (False: size (0, 0) from the
            annotations alone, for listing a release without its images).
    Raises: DataError for a file without ``RELEASE.annolist``; per person (unless
        ``skip_bad``) for missing images or bad points.
    """
    mat_path, image_dir = Path(mat_path), Path(image_dir)
    raw = files.read_mat(mat_path, struct_as_record=False, squeeze_me=True)
    release = raw.get("RELEASE")
    annolist = _field(release, "annolist") if release is not None else None
    if annolist is None:
        raise DataError(mat_path, "no RELEASE.annolist: not an MPII release file")
    img_train = np.atleast_1d(np.asarray(_field(release, "img_train", []))).ravel()
    for i, anno in enumerate(_items(annolist)):
        name = str(_field(_field(anno, "image"), "name"))
        split = None if i >= len(img_train) else ("train" if int(img_train[i]) else "test")
        for r, rect in enumerate(_items(_field(anno, "annorect"))):
            points = _field(_field(rect, "annopoints"), "point") if _field(rect, "annopoints") is not None else None
            if points is None or (isinstance(points, np.ndarray) and points.size == 0):
                if report is not None:
                    report.counts["no_keypoints"] += 1
                continue

            def one(name=name, r=r, rect=rect, points=points, split=split):
                path = image_dir / name
                size = files.image_size(path) if check_images else (0, 0)
                kp, derived = _mat_points(points, mat_path)
                meta = {"scale": _scalar(_field(rect, "scale")), "annolist_index": i}
                return PersonRecord(path, size, f"{name}/{r}", "mpii", None, kp, derived, None,
                                    split, meta)

            rec = guard(one, skip_bad=skip_bad, report=report)
            if rec is not None:
                yield rec


def _scalar(x):
    arr = np.asarray(x).reshape(-1) if x is not None else np.array([])
    return float(arr[0]) if arr.size else None
