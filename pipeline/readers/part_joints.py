"""Canonical keypoints estimated from PASCAL-Part person part masks.

PASCAL-Part has part masks but no joints; the priors' evaluation on it needs poses.  A
joint between two adjacent parts is the centroid of their shared boundary (pixels of one
part within 2 px of the other): shoulder = upper arm | torso, elbow = upper | lower arm,
wrist = lower arm | hand, hip = upper leg | torso, knee = upper | lower leg,
ankle = lower leg | foot, upper neck = head | neck (or head | torso without a neck).
Head top is the head pixel farthest from the upper neck.  Fallbacks, each documented in
docs/data.md: without a hand (foot) mask the wrist (ankle) is the lower arm's (leg's)
pixel farthest from the elbow (knee); anything else not found stays missing.  Pelvis and
thorax are the mid-hips and mid-shoulders; when the hips (shoulders) are not found they
are the centroids of the far (near) 10% of the torso mask along its principal axis.
Everything returned is derived (v = 1: estimated, not annotated).
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.skeleton import J, NUM_JOINTS, OCCLUDED, empty_keypoints

_HEAD = ("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth")
_KERNEL = np.ones((5, 5), np.uint8)


def _union(parts: dict, names) -> np.ndarray | None:
    masks = [parts[n] for n in names if n in parts]
    return np.logical_or.reduce(masks) if masks else None


def _boundary(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Centroid (x, y) of the pixels where masks a and b touch (within 2 px), or None."""
    if a is None or b is None:
        return None
    da = cv2.dilate(a.astype(np.uint8), _KERNEL).astype(bool)
    db = cv2.dilate(b.astype(np.uint8), _KERNEL).astype(bool)
    ys, xs = np.nonzero((da & b) | (db & a))
    return None if len(xs) == 0 else np.array([xs.mean(), ys.mean()])


def _farthest(mask: np.ndarray | None, point: np.ndarray | None) -> np.ndarray | None:
    if mask is None or point is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    i = np.argmax((xs - point[0]) ** 2 + (ys - point[1]) ** 2)
    return np.array([xs[i], ys[i]], dtype=np.float64)


def keypoints_from_parts(parts: dict) -> np.ndarray:
    """float32 (16, 3) canonical keypoints from ``{PASCAL-Part name: bool (H, W) mask}``
    of one person; v = 1 (estimated) where found, missing (NaN, 0) otherwise."""
    kp = empty_keypoints(NUM_JOINTS)
    torso = parts.get("torso")
    head = _union(parts, _HEAD)

    def put(name, xy):
        if xy is not None:
            kp[J[name]] = (xy[0], xy[1], OCCLUDED)

    for side, s in (("right", "r"), ("left", "l")):
        uarm, larm, hand = parts.get(f"{s}uarm"), parts.get(f"{s}larm"), parts.get(f"{s}hand")
        uleg, lleg, foot = parts.get(f"{s}uleg"), parts.get(f"{s}lleg"), parts.get(f"{s}foot")
        elbow = _boundary(uarm, larm)
        knee = _boundary(uleg, lleg)
        put(f"{side}_shoulder", _boundary(uarm, torso))
        put(f"{side}_elbow", elbow)
        put(f"{side}_wrist", _boundary(larm, hand) if hand is not None else _farthest(larm, elbow))
        put(f"{side}_hip", _boundary(uleg, torso))
        put(f"{side}_knee", knee)
        put(f"{side}_ankle", _boundary(lleg, foot) if foot is not None else _farthest(lleg, knee))
    neck = parts.get("neck")
    upper_neck = _boundary(head, neck) if neck is not None else _boundary(head, torso)
    put("upper_neck", upper_neck)
    put("head_top", _farthest(head, upper_neck))
    for name, (a, b) in (("pelvis", ("right_hip", "left_hip")),
                         ("thorax", ("right_shoulder", "left_shoulder"))):
        if kp[J[a], 2] > 0 and kp[J[b], 2] > 0:
            kp[J[name]] = (*(kp[J[a], :2] + kp[J[b], :2]) / 2, OCCLUDED)
    if torso is not None and torso.sum() >= 20 and (kp[J["pelvis"], 2] == 0 or kp[J["thorax"], 2] == 0):
        _torso_ends(kp, torso)
    return kp


def _torso_ends(kp: np.ndarray, torso: np.ndarray) -> None:
    """Fill a missing pelvis / thorax from the torso mask: the centroids of its far and near
    10% along its principal axis, the near end being the one towards the thorax, else the
    upper neck, else the top of the image."""
    ys, xs = np.nonzero(torso)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    c = pts.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((pts - c).T))
    d = vecs[:, -1]
    for ref_name in ("thorax", "upper_neck"):
        if kp[J[ref_name], 2] > 0:
            ref = kp[J[ref_name], :2].astype(np.float64)
            break
    else:
        ref = c - np.array([0.0, 1.0])
    if np.dot(c - ref, d) < 0:
        d = -d
    proj = (pts - c) @ d
    if kp[J["pelvis"], 2] == 0:
        kp[J["pelvis"]] = (*pts[proj >= np.quantile(proj, 0.9)].mean(axis=0), OCCLUDED)
    if kp[J["thorax"], 2] == 0:
        kp[J["thorax"]] = (*pts[proj <= np.quantile(proj, 0.1)].mean(axis=0), OCCLUDED)
