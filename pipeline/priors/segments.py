"""Body segments that drive the per-part morphing (method.md section 3).

Ten segments, each driven by two canonical joints (the torso also by its four corner
joints), listed back to front: the order in which morphed parts are drawn.  Every
exemplar pixel of a label map is assigned to one segment: for body-part label sets by its
class, for any other label set (clothes, hair, skin) to the nearest segment among those
its class may belong to.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from pipeline.skeleton import J, present


class Segment(NamedTuple):
    name: str
    a: int  # joint the segment starts at (towards the torso)
    b: int  # joint it ends at
    parent: int | None  # segment whose transform a segment borrows when its end is missing


SEGMENTS: tuple[Segment, ...] = (
    Segment("torso", J["pelvis"], J["thorax"], None),
    Segment("right_upper_leg", J["right_hip"], J["right_knee"], 0),
    Segment("left_upper_leg", J["left_hip"], J["left_knee"], 0),
    Segment("right_lower_leg", J["right_knee"], J["right_ankle"], 1),
    Segment("left_lower_leg", J["left_knee"], J["left_ankle"], 2),
    Segment("right_upper_arm", J["right_shoulder"], J["right_elbow"], 0),
    Segment("left_upper_arm", J["left_shoulder"], J["left_elbow"], 0),
    Segment("right_lower_arm", J["right_elbow"], J["right_wrist"], 5),
    Segment("left_lower_arm", J["left_elbow"], J["left_wrist"], 6),
    Segment("head", J["upper_neck"], J["head_top"], 0),
)
SEG = {s.name: i for i, s in enumerate(SEGMENTS)}
NUM_SEGMENTS = len(SEGMENTS)
#: Torso corners for the least-squares affine and the torso polygon.
TORSO_CORNERS = (J["right_shoulder"], J["left_shoulder"], J["left_hip"], J["right_hip"])
NO_SEGMENT = 255

_ARMS = ("right_upper_arm", "left_upper_arm", "right_lower_arm", "left_lower_arm")
_LOWER_LEGS = ("right_lower_leg", "left_lower_leg")
_LEGS = ("right_upper_leg", "left_upper_leg", *_LOWER_LEGS)

#: label set -> {class id: segment names its pixels may be assigned to}; unlisted classes
#: may go to any segment.
CLASS_SEGMENTS: dict[str, dict[int, tuple[str, ...]]] = {
    "pascal10": {1: ("head",), 2: ("torso",), 3: ("left_upper_arm",), 4: ("right_upper_arm",),
                 5: ("left_lower_arm",), 6: ("right_lower_arm",), 7: ("left_upper_leg",),
                 8: ("right_upper_leg",), 9: ("left_lower_leg",), 10: ("right_lower_leg",)},
    "pascal6": {1: ("head",), 2: ("torso",), 3: ("right_upper_arm", "left_upper_arm"),
                4: ("right_lower_arm", "left_lower_arm"), 5: ("right_upper_leg", "left_upper_leg"),
                6: _LOWER_LEGS},
    "ccp8": {1: ("head",), 3: ("torso", *_ARMS), 4: ("torso", *_LEGS), 5: ("torso", *_LEGS),
             6: _LOWER_LEGS},
    "lip20": {1: ("head",), 2: ("head",), 4: ("head",), 13: ("head",),
              3: ("right_lower_arm", "left_lower_arm"), 8: _LOWER_LEGS,
              14: ("left_upper_arm", "left_lower_arm"), 15: ("right_upper_arm", "right_lower_arm"),
              16: ("left_upper_leg", "left_lower_leg"), 17: ("right_upper_leg", "right_lower_leg"),
              18: ("left_lower_leg",), 19: ("right_lower_leg",),
              5: ("torso", *_ARMS), 7: ("torso", *_ARMS), 6: ("torso", *_LEGS),
              9: ("torso", *_LEGS), 10: ("torso", *_ARMS, *_LEGS), 12: ("torso", *_LEGS)},
}
CLASS_SEGMENTS["cihp20"] = CLASS_SEGMENTS["lip20"]


def segment_available(kp: np.ndarray) -> np.ndarray:
    """bool (10,): both driving joints of each segment present in keypoints (16, 3)."""
    ok = present(kp)
    return np.array([ok[s.a] and ok[s.b] for s in SEGMENTS])


def draw_segment(mask: np.ndarray, kp: np.ndarray, seg: int, value: int, thickness: int = 1) -> None:
    """Rasterise segment ``seg`` of keypoints (16, 3) into uint8 ``mask`` in place: the
    torso as its corner polygon when all four corners are present, otherwise a line."""
    if seg == SEG["torso"] and present(kp[list(TORSO_CORNERS)]).all():
        poly = np.round(kp[list(TORSO_CORNERS), :2] * 16).astype(np.int32)
        cv2.fillConvexPoly(mask, poly, value, lineType=cv2.LINE_8, shift=4)
    s = SEGMENTS[seg]
    p, q = (tuple(int(round(c)) for c in kp[j, :2] * 16) for j in (s.a, s.b))
    cv2.line(mask, p, q, value, thickness, lineType=cv2.LINE_8, shift=4)


def segment_distances(kp: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """float32 (10, h, w): each pixel's distance in pixels to each segment's skeleton
    (line, or torso polygon); inf for segments whose joints are missing.  ``size`` is the
    side of a square frame or its (h, w)."""
    shape = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    dist = np.full((NUM_SEGMENTS, *shape), np.inf, dtype=np.float32)
    for i, ok in enumerate(segment_available(kp)):
        if ok:
            m = np.full(shape, 255, dtype=np.uint8)
            draw_segment(m, kp, i, 0)
            dist[i] = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist


def assign_segments(label_map: np.ndarray, kp: np.ndarray, label_set: str | None = None) -> np.ndarray:
    """Assign every foreground pixel of a label map to a body segment.

    Args:
        label_map: uint8 (H, W) class ids in the same frame as ``kp``; 0 and 255 are not
            assigned.
        kp: float (16, 3) keypoints in that frame.
        label_set: name used to look up :data:`CLASS_SEGMENTS` (classes restricted to
            their segments); None lets every class go to any segment.
    Returns: uint8 (H, W) segment index (0-9), :data:`NO_SEGMENT` for background, ignore
        and pixels whose allowed segments are all missing.
    """
    dist = segment_distances(kp, label_map.shape)
    out = np.full(label_map.shape, NO_SEGMENT, dtype=np.uint8)
    fg = (label_map != 0) & (label_map != 255)
    if not fg.any() or not np.isfinite(dist[:, 0, 0]).any():
        return out
    allowed = CLASS_SEGMENTS.get(label_set or "", {})
    nearest_any = np.argmin(dist, axis=0).astype(np.uint8)
    out[fg] = nearest_any[fg]
    for cls, names in allowed.items():
        pix = label_map == cls
        if not pix.any():
            continue
        idx = np.array([SEG[n] for n in names])
        sub = dist[idx][:, pix]  # (len(idx), n_pix)
        best = np.argmin(sub, axis=0)
        out[pix] = np.where(np.isfinite(sub.min(axis=0)), idx[best], NO_SEGMENT)
    return out


#: Segment -> PASCAL-Person-Part (pascal6) class, for scoring the skeleton map directly.
SEGMENT_TO_PASCAL6 = np.array([2, 5, 5, 6, 6, 3, 3, 4, 4, 1], dtype=np.uint8)


def skeleton_map(kp: np.ndarray, size: int, width_at_256: float = 7.0) -> np.ndarray:
    """The paper's skeleton-map baseline (Table 2): sticks between neighbouring joints, one
    class per segment (id = segment index + 1, 0 background), ``width_at_256`` pixels wide
    at 256 px (scaled to ``size``).  uint8 (size, size); segments drawn in
    :data:`SEGMENTS` order; the torso is the pelvis-thorax stick."""
    out = np.zeros((size, size), dtype=np.uint8)
    width = max(1, int(round(width_at_256 * size / 256)))
    for i, ok in enumerate(segment_available(kp)):
        if ok:
            s = SEGMENTS[i]
            p, q = (tuple(int(round(c)) for c in kp[j, :2] * 16) for j in (s.a, s.b))
            cv2.line(out, p, q, i + 1, width, lineType=cv2.LINE_8, shift=4)
    return out
