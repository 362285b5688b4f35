"""Pose normalisation (method.md section 2) and the person crop frame (section 5).

Normalised pose: pelvis at the origin, torso (pelvis to thorax) of unit length, x right,
y down, unitless.  Crop frame: a square box around the present keypoints, enlarged by
``margin`` of its side on each side, resized to ``size`` x ``size`` pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.errors import DataError
from pipeline.skeleton import BONES, J, JOINT_NAMES, NUM_JOINTS, present

#: Torsos shorter than this many pixels are treated as zero-length.
MIN_TORSO_PX = 1.0
#: :func:`torso_problem`'s reasons for a missing end of the torso (partial bodies).
MISSING_PELVIS = "no pelvis (hips missing)"
MISSING_THORAX = "no thorax (shoulders missing)"
#: The reasons a partial body (:mod:`pipeline.priors.partial`) may have.
PARTIAL_BODY_PROBLEMS = (MISSING_PELVIS, MISSING_THORAX)


class NormalizedPoses(NamedTuple):
    """Batched normalised poses.

    Attributes:
        coords: float32 (N, 16, 2), pelvis at 0, unit torso; NaN where a joint is missing
            and for rejected poses.
        valid: bool (N, 16): joint present (and pose usable).
        usable: bool (N,): pose has a pelvis and a non-zero torso.
        reasons: one string per pose, "" when usable, else why it was rejected.
    """

    coords: np.ndarray
    valid: np.ndarray
    usable: np.ndarray
    reasons: list[str]


def torso_problem(kp: np.ndarray) -> str:
    """"" when keypoints (16, 3) have a usable torso, else the reason (missing pelvis,
    missing thorax, zero-length torso)."""
    if not present(kp[J["pelvis"]]):
        return MISSING_PELVIS
    if not present(kp[J["thorax"]]):
        return MISSING_THORAX
    if np.linalg.norm(kp[J["thorax"], :2] - kp[J["pelvis"], :2]) < MIN_TORSO_PX:
        return "zero-length torso"
    return ""


#: Present joints may lie at most this fraction of the image's longer side outside it.
KEYPOINT_MARGIN = 0.5
#: A bone longer than this many times the median bone length marks an implausible pose.
MAX_BONE_RATIO = 10.0


def keypoint_problem(kp: np.ndarray, image_size: tuple[int, int], margin: float = KEYPOINT_MARGIN,
                     max_bone_ratio: float = MAX_BONE_RATIO, allow_partial: bool = False) -> str:
    """"" when keypoints fit their image and form a plausible pose, else the reason.

    Args:
        kp: float (16, 3) canonical keypoints in image pixels (v > 0: present).
        image_size: (h, w) of the image in pixels.
        margin: present joints may lie outside the image by at most this fraction of its
            longer side (people cut by the border have joints estimated outside it).
        max_bone_ratio: a bone may be at most this many times the median length of the
            pose's present bones (a scale that survives a foreshortened torso); one
            joint with scaled or swapped coordinates breaks this.
        allow_partial: a missing pelvis or thorax is no problem (partial bodies,
            :mod:`pipeline.priors.partial`); the other checks still apply.
    Returns: "" or a one-line reason naming the joint (e.g. ``left_shoulder at (1e+09, 40)
    lies outside the 200x300 image``); a missing torso gives :func:`torso_problem`'s.
    """
    h, w = image_size
    slack = margin * max(h, w)
    for j in np.flatnonzero(present(kp)):
        x, y = kp[j, :2]
        if not (-slack - 0.5 <= x <= w - 0.5 + slack and -slack - 0.5 <= y <= h - 0.5 + slack):
            return (f"{JOINT_NAMES[j]} at ({x:.4g}, {y:.4g}) lies outside the {w}x{h} image "
                    f"(more than {margin:g} x its size)")
    problem = torso_problem(kp)
    if problem and not (allow_partial and problem in PARTIAL_BODY_PROBLEMS):
        return problem
    ok = present(kp)
    bones = [(a, b, float(np.linalg.norm(kp[a, :2] - kp[b, :2]))) for a, b in BONES if ok[a] and ok[b]]
    if not bones:
        return "no bone has both its joints present"
    median = float(np.median([length for _, _, length in bones]))
    for a, b, length in bones:
        if length > max_bone_ratio * max(median, MIN_TORSO_PX):
            if median == 0:                                  # most joints on top of each other
                return (f"implausible pose: {JOINT_NAMES[a]}-{JOINT_NAMES[b]} is {length:.0f} px where the "
                        "median bone length is 0 px (joints on top of each other)")
            return (f"implausible pose: {JOINT_NAMES[a]}-{JOINT_NAMES[b]} is {length / median:.1f} x the median "
                    f"bone length (> {max_bone_ratio:g})")
    return ""


def normalize_poses(keypoints: np.ndarray) -> NormalizedPoses:
    """Normalise keypoints float (N, 16, 3) (or one (16, 3)) in pixels.

    Poses without a pelvis, a thorax, or with a torso under :data:`MIN_TORSO_PX` are
    not usable; their reason is returned, nothing is raised (use
    :func:`require_usable` for a single pose that must be usable).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must be (N, 16, 3), got {kp.shape}")
    reasons = [torso_problem(k) for k in kp]
    usable = np.array([r == "" for r in reasons], dtype=bool)
    valid = present(kp) & usable[:, None]
    pelvis = kp[:, J["pelvis"], :2]
    torso = np.linalg.norm(kp[:, J["thorax"], :2] - pelvis, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        coords = (kp[..., :2] - pelvis[:, None]) / torso[:, None, None]
    coords[~valid] = np.nan
    return NormalizedPoses(coords.astype(np.float32), valid, usable, reasons)


def require_usable(keypoints: np.ndarray, path=None) -> None:
    """Raise DataError (naming ``path``) unless keypoints (16, 3) have a usable torso."""
    problem = torso_problem(np.asarray(keypoints))
    if problem:
        raise DataError(path, f"pose not usable: {problem}")


class CropBox(NamedTuple):
    """A square person box in image pixel coordinates: centre (cx, cy) and side, pixels."""

    cx: float
    cy: float
    side: float

    def crop_from_image(self, size: int) -> np.ndarray:
        """float64 (2, 3) affine mapping image pixel centres to crop pixel centres
        (``size`` x ``size``): x_crop = s (x - cx) + size / 2 - 0.5 with s = size / side."""
        s = size / self.side
        return np.array([[s, 0, size / 2 - 0.5 - s * self.cx],
                         [0, s, size / 2 - 0.5 - s * self.cy]])


def person_box(keypoints: np.ndarray, margin: float = 0.25, min_side: float = 8.0, path=None) -> CropBox:
    """Square box around the present keypoints (16, 3): the keypoints' bounding box made
    square on its longer side, then enlarged by ``margin`` x side on each side (so the
    side grows by 1 + 2 margin), at least ``min_side`` pixels.

    Raises: DataError when fewer than two joints are present.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = present(kp)
    if ok.sum() < 2:
        raise DataError(path, f"only {int(ok.sum())} keypoints present; cannot place a person box")
    lo, hi = kp[ok, :2].min(axis=0), kp[ok, :2].max(axis=0)
    side = max(float((hi - lo).max()) * (1 + 2 * margin), min_side)
    centre = (lo + hi) / 2
    return CropBox(float(centre[0]), float(centre[1]), side)


def apply_affine(keypoints: np.ndarray, dst_from_src: np.ndarray) -> np.ndarray:
    """Move keypoints (..., 16, 3) with a (2, 3) affine; v and NaN (missing) are kept."""
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    xy = kp[..., :2].astype(np.float64)
    kp[..., :2] = xy @ dst_from_src[:, :2].T + dst_from_src[:, 2]
    return kp
