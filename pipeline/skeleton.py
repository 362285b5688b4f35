"""The canonical 16-joint skeleton (MPII order) and converters from other keypoint formats.

Conventions (method.md section 1), repeated in every docstring that takes keypoints:

* ``keypoints``: float32 array (J, 3) = x, y in pixels (origin at the top-left pixel's
  centre, x right, y down) and a visibility ``v``.  ``v == 0`` means *missing*: x and y
  are NaN, never (0, 0).  ``v == 1`` means present but occluded or low-confidence (the
  COCO "labelled, not visible" flag; an estimator's landmark below its visibility
  threshold); ``v == 2`` means present and visible.
* Left/right are the person's own.
* ``derived``: bool array (J,) marking joints computed from other points rather than
  annotated (pelvis = mid-hips, thorax = mid-shoulders, upper neck and head top from face
  points for COCO/BlazePose).

Canonical order (MPII): 0 right ankle, 1 right knee, 2 right hip, 3 left hip, 4 left knee,
5 left ankle, 6 pelvis, 7 thorax, 8 upper neck, 9 head top, 10 right wrist, 11 right elbow,
12 right shoulder, 13 left shoulder, 14 left elbow, 15 left wrist.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from pipeline.errors import DataError

JOINT_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
J = {name: i for i, name in enumerate(JOINT_NAMES)}

MISSING, OCCLUDED, VISIBLE = 0.0, 1.0, 2.0

#: Left/right joint pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
#: Bones of the canonical skeleton as (joint, joint) pairs, limbs first.
BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (5, 4), (4, 3), (10, 11), (11, 12), (15, 14), (14, 13),
    (2, 6), (3, 6), (6, 7), (7, 8), (8, 9), (12, 7), (13, 7),
)

#: Upper neck sits this fraction of the way from the thorax to the face centre (mid-ears).
UPPER_NECK_FRACTION = 1.0 / 3.0
#: Head top lies beyond the face centre by this fraction of the thorax-to-face-centre vector.
HEAD_TOP_EXTENSION = 0.8


class CanonicalPose(NamedTuple):
    """Keypoints in canonical order plus which of them were derived.

    Attributes:
        keypoints: float32 (16, 3): x, y in pixels, v in {0, 1, 2}; NaN where v == 0.
        derived: bool (16,): True where the joint was computed from other points.
    """

    keypoints: np.ndarray
    derived: np.ndarray


def empty_keypoints(num_joints: int = NUM_JOINTS) -> np.ndarray:
    """All-missing keypoints: float32 (num_joints, 3) with NaN x, y and v = 0."""
    kp = np.full((num_joints, 3), np.nan, dtype=np.float32)
    kp[:, 2] = MISSING
    return kp


def present(keypoints: np.ndarray) -> np.ndarray:
    """Bool (J,) (or (N, J) for batched (N, J, 3)): joints with v > 0 and finite x, y."""
    kp = np.asarray(keypoints)
    return (kp[..., 2] > 0) & np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1])


def _as_points(points, n: int, fmt: str, path) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:      # strings, ragged rows, None inside a row
        raise DataError(path, f"{fmt} keypoints are not numbers: {e}") from None
    if arr.ndim == 1 and arr.size in (n * 2, n * 3):
        arr = arr.reshape(n, -1)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] not in (2, 3):
        raise DataError(path, f"{fmt} keypoints must have shape ({n}, 2) or ({n}, 3), got {arr.shape}")
    return arr


def _check_present_finite(xy: np.ndarray, v: np.ndarray, fmt: str, path) -> None:
    bad = (v > 0) & ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise DataError(path, f"{fmt} keypoints {np.flatnonzero(bad).tolist()} are marked present "
                              "but have NaN/inf coordinates")


def _finish(xy: np.ndarray, v: np.ndarray) -> np.ndarray:
    kp = np.empty((len(v), 3), dtype=np.float32)
    kp[:, :2] = xy
    kp[:, 2] = v
    kp[v <= 0, :2] = np.nan
    kp[v <= 0, 2] = MISSING
    return kp


def _mid(kp: np.ndarray, a: int, b: int) -> np.ndarray:
    """Midpoint row (3,) of joints a, b; missing unless both are present; v = min(v_a, v_b)."""
    if kp[a, 2] > 0 and kp[b, 2] > 0:
        return np.array([*(kp[a, :2] + kp[b, :2]) / 2, min(kp[a, 2], kp[b, 2])], dtype=np.float32)
    return empty_keypoints(1)[0]


def _derive_torso(kp: np.ndarray, derived: np.ndarray, pelvis: bool, thorax: bool) -> None:
    if pelvis:
        kp[J["pelvis"]] = _mid(kp, J["right_hip"], J["left_hip"])
        derived[J["pelvis"]] = True
    if thorax:
        kp[J["thorax"]] = _mid(kp, J["right_shoulder"], J["left_shoulder"])
        derived[J["thorax"]] = True


def face_centre(ears: np.ndarray, eyes: np.ndarray, nose: np.ndarray) -> np.ndarray:
    """Face centre (3,) from face points, each given as float (K, 3) rows (x, y, v).

    Uses the mean of the present ears; if none, the mean of the present eyes; if none, the
    nose.  v is the minimum v of the points used.  Missing (NaN, v = 0) when none exists.
    """
    for group in (ears, eyes, nose):
        g = np.asarray(group, dtype=np.float64).reshape(-1, 3)
        ok = present(g)
        if ok.any():
            return np.array([*g[ok, :2].mean(axis=0), g[ok, 2].min()], dtype=np.float32)
    return empty_keypoints(1)[0]


def _derive_head(kp: np.ndarray, derived: np.ndarray, face: np.ndarray) -> None:
    """Upper neck and head top from the thorax T and the face centre M (both (3,)).

    upper_neck = T + UPPER_NECK_FRACTION * (M - T); head_top = M + HEAD_TOP_EXTENSION * (M - T).
    """
    thorax = kp[J["thorax"]]
    derived[J["upper_neck"]] = derived[J["head_top"]] = True
    if thorax[2] <= 0 or face[2] <= 0:
        return
    up = face[:2] - thorax[:2]
    v = min(thorax[2], face[2])
    kp[J["upper_neck"]] = [*(thorax[:2] + UPPER_NECK_FRACTION * up), v]
    kp[J["head_top"]] = [*(face[:2] + HEAD_TOP_EXTENSION * up), v]


def _gather(src: np.ndarray, mapping: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical keypoints (16, 3) from source rows (x, y, v) via {source index: canonical
    index}, plus an all-False ``derived``; unmapped joints are missing."""
    xy, v = np.full((NUM_JOINTS, 2), np.nan), np.zeros(NUM_JOINTS)
    for s, c in mapping.items():
        xy[c], v[c] = src[s, :2], src[s, 2]
    return _finish(xy, v), np.zeros(NUM_JOINTS, dtype=bool)


def from_mpii16(joints, visible=None, *, path=None) -> CanonicalPose:
    """MPII 16 joints (already canonical order) -> :class:`CanonicalPose`.

    Args:
        joints: (16, 2) or (16, 3) pixel coordinates (a third column is ignored when
            ``visible`` is given).  MPII/mmpose mark unannotated joints with -1 or NaN.
        visible: optional (16,) flags: 0 = not annotated (missing), 1 = annotated.  When
            omitted, the third column of ``joints`` is used, else every finite joint counts.
        path: file name for error messages.
    Returns: keypoints with v = 2 for annotated joints; nothing derived (MPII annotates
        pelvis, thorax, upper neck and head top).
    Raises: DataError on a wrong shape or an annotated joint with NaN coordinates.
    """
    arr = _as_points(joints, 16, "MPII", path)
    xy = arr[:, :2]
    if visible is not None:
        v = np.asarray(visible, dtype=np.float64).reshape(-1)
        if v.shape != (16,):
            raise DataError(path, f"MPII joints_vis must have 16 entries, got {v.shape}")
    elif arr.shape[1] == 3:
        v = arr[:, 2]
    else:
        v = np.isfinite(xy).all(axis=1).astype(np.float64)
    v = np.where(v > 0, VISIBLE, MISSING)
    v[(xy < 0).all(axis=1) & np.isclose(xy, -1).all(axis=1)] = MISSING  # mmpose's -1 sentinel
    _check_present_finite(xy, v, "MPII", path)
    return CanonicalPose(_finish(xy, v), np.zeros(16, dtype=bool))


_LSP_TO_CANON = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 10, 7: 11, 8: 12, 9: 13, 10: 14, 11: 15,
                 12: 8, 13: 9}


def from_lsp14(joints, *, path=None) -> CanonicalPose:
    """LSP 14 joints -> :class:`CanonicalPose` (Johnson & Everingham, BMVC 2010).

    Args:
        joints: (14, 3) x, y in pixels and the LSP visibility flag (1 visible, 0 occluded;
            occluded joints still carry annotated coordinates), or (14, 2).  LSP order:
            r ankle, r knee, r hip, l hip, l knee, l ankle, r wrist, r elbow, r shoulder,
            l shoulder, l elbow, l wrist, neck, head top.
    Returns: v = 2 for visible, 1 for occluded; NaN coordinates -> missing.  LSP "neck"
        becomes upper neck; pelvis and thorax are derived (mid-hips, mid-shoulders).
    Raises: DataError on a wrong shape.
    """
    arr = _as_points(joints, 14, "LSP", path)
    finite = np.isfinite(arr[:, :2]).all(axis=1)
    vis = arr[:, 2] if arr.shape[1] == 3 else np.ones(14)
    src = _finish(arr[:, :2], np.where(~finite, MISSING, np.where(vis > 0, VISIBLE, OCCLUDED)))
    kp, derived = _gather(src, _LSP_TO_CANON)
    _derive_torso(kp, derived, pelvis=True, thorax=True)
    return CanonicalPose(kp, derived)


_COCO_TO_CANON = {16: 0, 14: 1, 12: 2, 11: 3, 13: 4, 15: 5, 10: 10, 8: 11, 6: 12, 5: 13, 7: 14,
                  9: 15}


def from_coco17(keypoints, *, path=None) -> CanonicalPose:
    """COCO 17 person keypoints -> :class:`CanonicalPose` (Lin et al., ECCV 2014).

    Args:
        keypoints: (17, 3) or the flat list of 51 from a COCO annotation: x, y in pixels,
            v = 0 not labelled (x = y = 0 in the file), 1 labelled not visible, 2 visible.
            COCO order: nose, l eye, r eye, l ear, r ear, l/r shoulder, l/r elbow,
            l/r wrist, l/r hip, l/r knee, l/r ankle.
    Returns: limbs copied with COCO's v; pelvis, thorax, upper neck and head top derived
        (head from the face centre, see :func:`face_centre` and module constants).
    Raises: DataError on a wrong shape or a labelled joint with NaN coordinates.
    """
    arr = _as_points(keypoints, 17, "COCO", path)
    if arr.shape[1] != 3:
        raise DataError(path, "COCO keypoints need a visibility column")
    v_src = np.clip(np.rint(arr[:, 2]), 0, 2)
    _check_present_finite(arr[:, :2], v_src, "COCO", path)
    src = _finish(arr[:, :2], v_src)
    kp, derived = _gather(src, _COCO_TO_CANON)
    _derive_torso(kp, derived, pelvis=True, thorax=True)
    _derive_head(kp, derived, face_centre(src[[3, 4]], src[[1, 2]], src[[0]]))
    return CanonicalPose(kp, derived)


#: OpenPose BODY_18 (its COCO-18 model) and BODY_25 -> canonical limbs, and their face points
_OPENPOSE = {
    18: ({10: 0, 9: 1, 8: 2, 11: 3, 12: 4, 13: 5, 4: 10, 3: 11, 2: 12, 5: 13, 6: 14, 7: 15},
         (16, 17), (14, 15), 0),
    25: ({11: 0, 10: 1, 9: 2, 12: 3, 13: 4, 14: 5, 4: 10, 3: 11, 2: 12, 5: 13, 6: 14, 7: 15},
         (17, 18), (15, 16), 0),
}


def from_openpose(keypoints, *, min_confidence: float = 0.1, visible_threshold: float = 0.5,
                  path=None) -> CanonicalPose:
    """OpenPose body keypoints -> :class:`CanonicalPose` (Cao et al., CVPR 2017 / TPAMI 2019).

    Args:
        keypoints: the flat ``pose_keypoints_2d`` list of one person (x, y, confidence per
            point, pixels) or its (N, 3) array, N = 18 (BODY_18, OpenPose's COCO model:
            0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left, 8-10 right
            hip/knee/ankle, 11-13 left, 14/15 right/left eye, 16/17 right/left ear) or 25
            (BODY_25: 8 mid hip, 9-11 right hip/knee/ankle, 12-14 left, 15-18 eyes and
            ears, 19-24 feet).  A point OpenPose did not find is (0, 0, 0).
        min_confidence: points below it are missing; visible_threshold: points at or above
            it get v = 2, the others v = 1.
    Returns: limbs; pelvis, thorax, upper neck and head top derived from the hips,
        shoulders and face as for COCO (the neck and mid hip are not used).
    Raises: DataError naming ``path`` on another number of points or non-numbers.
    """
    try:
        arr = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise DataError(path, "OpenPose keypoints must be numbers in (x, y, confidence) triples") from None
    if len(arr) not in _OPENPOSE:
        raise DataError(path, f"OpenPose keypoints: {len(arr)} points; BODY_18 has 18, BODY_25 has 25")
    limbs, ears, eyes, nose = _OPENPOSE[len(arr)]
    c = np.nan_to_num(arr[:, 2], nan=0.0)
    present = (c >= min_confidence) & np.isfinite(arr[:, :2]).all(axis=1)
    src = _finish(np.where(present[:, None], arr[:, :2], np.nan),
                  np.where(~present, MISSING, np.where(c >= visible_threshold, VISIBLE, OCCLUDED)))
    kp, derived = _gather(src, limbs)
    _derive_torso(kp, derived, pelvis=True, thorax=True)
    _derive_head(kp, derived, face_centre(src[list(ears)], src[list(eyes)], src[[nose]]))
    return CanonicalPose(kp, derived)


_BLAZE_TO_CANON = {28: 0, 26: 1, 24: 2, 23: 3, 25: 4, 27: 5, 16: 10, 14: 11, 12: 12, 11: 13,
                   13: 14, 15: 15}


def from_blazepose33(landmarks, *, visible_threshold: float = 0.5, path=None) -> CanonicalPose:
    """BlazePose 33 landmarks (mediapipe) -> :class:`CanonicalPose` (Bazarevsky et al., 2020).

    Args:
        landmarks: (33, 3) x, y in pixels and mediapipe's visibility score in [0, 1].
            Order: 0 nose, 1-6 eyes (2 left eye, 5 right eye), 7 left ear, 8 right ear,
            11/12 l/r shoulder, 13/14 elbows, 15/16 wrists, 23/24 hips, 25/26 knees,
            27/28 ankles (left first).  BlazePose always returns coordinates, possibly
            outside the image.
        visible_threshold: scores >= this become v = 2, lower scores v = 1.
    Returns: limbs with v in {1, 2} (NaN coordinates -> missing); pelvis, thorax, upper
        neck and head top derived (face centre from ears 7/8, else eyes 2/5, else nose).
    Raises: DataError on a wrong shape.
    """
    arr = _as_points(landmarks, 33, "BlazePose", path)
    score = arr[:, 2] if arr.shape[1] == 3 else np.ones(33)
    finite = np.isfinite(arr[:, :2]).all(axis=1)
    src = _finish(arr[:, :2], np.where(~finite, MISSING,
                                       np.where(score >= visible_threshold, VISIBLE, OCCLUDED)))
    kp, derived = _gather(src, _BLAZE_TO_CANON)
    _derive_torso(kp, derived, pelvis=True, thorax=True)
    _derive_head(kp, derived, face_centre(src[[7, 8]], src[[2, 5]], src[[0]]))
    return CanonicalPose(kp, derived)


#: Accepted names (after lower-casing and dropping '_', '-', ' ') for :func:`from_named`.
_NAME_ALIASES = {
    "rankle": "right_ankle", "rknee": "right_knee", "rhip": "right_hip",
    "lhip": "left_hip", "lknee": "left_knee", "lankle": "left_ankle",
    "pelvis": "pelvis", "midhip": "pelvis", "mhip": "pelvis",
    "thorax": "thorax", "midshoulder": "thorax", "mshoulder": "thorax",
    "upperneck": "upper_neck", "neck": "upper_neck",
    "headtop": "head_top", "bhead": "head_top", "tophead": "head_top",
    "rwrist": "right_wrist", "relbow": "right_elbow", "rshoulder": "right_shoulder",
    "lshoulder": "left_shoulder", "lelbow": "left_elbow", "lwrist": "left_wrist",
}
_FACE_ALIASES = {"lear": "left_ear", "rear": "right_ear", "leye": "left_eye", "reye": "right_eye",
                 "nose": "nose"}


def _normalise_name(name: str) -> str:
    key = re.sub(r"[\s_\-]", "", name.lower())
    return key.replace("right", "r").replace("left", "l")


def from_named(points: Mapping[str, object], *, path=None) -> CanonicalPose:
    """Named keypoints (PASCAL poselets / H3D, LSP meta names, canonical names) -> canonical.

    Args:
        points: ``{name: (x, y) | (x, y, v)}``.  Names are matched case-insensitively with
            '_', '-' and spaces ignored and left/right abbreviated: ``L_Shoulder``,
            ``left_shoulder``, ``lshoulder`` are the same joint.  Known extra names: the face
            points ``L_Ear``, ``R_Ear``, ``L_Eye``, ``R_Eye``, ``Nose`` (used to derive upper
            neck and head top when those are absent); ``B_Head``/``head_top``;
            ``Neck``/``upper_neck``.  A missing v means visible (2).
    Returns: pelvis, thorax, upper neck and head top are derived only when not given.
    Raises: DataError on an unknown name, a point that is not 2 or 3 numbers, or NaN
        coordinates on a point marked present.
    """
    xy, v = np.full((16, 2), np.nan), np.zeros(16)
    face = {k: empty_keypoints(1)[0] for k in _FACE_ALIASES.values()}
    for name, value in points.items():
        p = np.asarray(value, dtype=np.float64).reshape(-1)
        if p.size not in (2, 3):
            raise DataError(path, f"keypoint {name!r} must be (x, y) or (x, y, v), got {p.size} values")
        vis = VISIBLE if p.size == 2 else float(np.clip(np.rint(p[2]), 0, 2))
        if vis > 0 and not np.isfinite(p[:2]).all():
            raise DataError(path, f"keypoint {name!r} is marked present but has NaN coordinates")
        key = _normalise_name(name)
        if key in _NAME_ALIASES:
            c = J[_NAME_ALIASES[key]]
            xy[c], v[c] = p[:2], vis
        elif key in _FACE_ALIASES:
            face[_FACE_ALIASES[key]] = np.array([*p[:2], vis], dtype=np.float32)
        else:
            raise DataError(path, f"unknown keypoint name {name!r}")
    kp, derived = _finish(xy, v), np.zeros(16, dtype=bool)
    _derive_torso(kp, derived, pelvis=kp[J["pelvis"], 2] == 0, thorax=kp[J["thorax"], 2] == 0)
    if kp[J["upper_neck"], 2] == 0 or kp[J["head_top"], 2] == 0:
        given = kp[[J["upper_neck"], J["head_top"]]].copy()
        centre = face_centre(np.stack([face["left_ear"], face["right_ear"]]),
                             np.stack([face["left_eye"], face["right_eye"]]), face["nose"][None])
        _derive_head(kp, derived, centre)
        for row, name in zip(given, ("upper_neck", "head_top")):
            if row[2] > 0:  # keep what was annotated
                kp[J[name]], derived[J[name]] = row, False
    return CanonicalPose(kp, derived)


def validate_keypoints(keypoints, *, num_joints: int = NUM_JOINTS, path=None) -> np.ndarray:
    """Check and normalise canonical keypoints; returns float32 (num_joints, 3).

    Raises: DataError on a wrong shape, NaN/inf coordinates on a joint with v > 0, or a
        negative v.  Joints with v == 0 get NaN coordinates.
    """
    kp = np.array(keypoints, dtype=np.float32)
    if kp.shape != (num_joints, 3):
        raise DataError(path, f"keypoints must have shape ({num_joints}, 3), got {kp.shape}")
    if (kp[:, 2] < 0).any() or not np.isfinite(kp[:, 2]).all():
        raise DataError(path, "keypoint visibility must be finite and >= 0")
    _check_present_finite(kp[:, :2], kp[:, 2], "canonical", path)
    kp[kp[:, 2] == 0, :2] = np.nan
    return kp


def flip_keypoints(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Mirror keypoints horizontally in an image ``width`` pixels wide.

    x -> width - 1 - x (pixel centres at integer coordinates) and left/right joints swap.
    Args: keypoints float (16, 3) or (N, 16, 3).  Returns a new array of the same shape.
    """
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    kp[..., 0] = (width - 1) - kp[..., 0]
    for a, b in FLIP_PAIRS:
        kp[..., [a, b], :] = kp[..., [b, a], :]
    return kp
