"""Pose-guided per-part morphing (Fang et al., CVPR 2018, section 3.4).

Conventions (as kornia's warps): an affine ``dst_from_src`` is float64 (2, 3) and maps
source pixel coordinates (x, y), origin at the top-left pixel's centre, to destination
coordinates: ``x_dst = A @ x_src + b``; it is handed to ``cv2.warpAffine`` with
``WARP_INVERSE_MAP`` unset, which inverts it internally.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.priors.segments import NUM_SEGMENTS, SEG, SEGMENTS, TORSO_CORNERS
from pipeline.skeleton import J, present

#: Bones shorter than this many pixels give no transform.
MIN_BONE_PX = 1e-3


def to3x3(m: np.ndarray) -> np.ndarray:
    """(2, 3) affine -> (3, 3) homogeneous matrix."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def bone_affine(p1, p2, q1, q2, across_scale: float | None = None) -> np.ndarray | None:
    """dst_from_src (2, 3) mapping the source bone p1->p2 onto the destination bone q1->q2.

    Along the bone the scale is |q2 - q1| / |p2 - p1|; across it is the same (a
    similarity: rotation, uniform scale, translation) unless ``across_scale`` is given,
    which keeps limb widths at that scale when a limb is foreshortened.
    Returns None for a bone shorter than :data:`MIN_BONE_PX` at either end.
    """
    ux, uy = float(p2[0]) - float(p1[0]), float(p2[1]) - float(p1[1])
    vx, vy = float(q2[0]) - float(q1[0]), float(q2[1]) - float(q1[1])
    lp, lq = math.hypot(ux, uy), math.hypot(vx, vy)
    if lp < MIN_BONE_PX or lq < MIN_BONE_PX:
        return None
    ux, uy, vx, vy = ux / lp, uy / lp, vx / lq, vy / lq
    sa = lq / lp
    sc = sa if across_scale is None else float(across_scale)
    # A = [v, n_v] diag(sa, sc) [u, n_u]^T with n = (-y, x)
    a00 = sa * vx * ux + sc * vy * uy
    a01 = sa * vx * uy - sc * vy * ux
    a10 = sa * vy * ux - sc * vx * uy
    a11 = sa * vy * uy + sc * vx * ux
    bx = float(q1[0]) - (a00 * float(p1[0]) + a01 * float(p1[1]))
    by = float(q1[1]) - (a10 * float(p1[0]) + a11 * float(p1[1]))
    return np.array([[a00, a01, bx], [a10, a11, by]])


def lstsq_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares dst_from_src (2, 3) from >= 3 point pairs (n, 2); None when the points
    are (nearly) collinear or the fit mirrors (negative determinant)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if len(src) < 3:
        return None
    x = np.hstack([src, np.ones((len(src), 1))])
    if np.linalg.matrix_rank(x, tol=1e-3 * max(1.0, np.abs(src).max())) < 3:
        return None
    sol, *_ = np.linalg.lstsq(x, dst, rcond=None)
    a = sol.T
    if np.linalg.det(a[:, :2]) <= 0:
        return None
    return a


def segment_transforms(src_kp: np.ndarray, dst_kp: np.ndarray, *, torso_affine: bool = True,
                       keep_width: bool = True) -> list[np.ndarray | None]:
    """dst_from_src (2, 3) for each of the 10 segments, or None where it cannot be made.

    Args:
        src_kp, dst_kp: float (16, 3) exemplar and target keypoints, same pixel frame.
        torso_affine: fit the torso with a least-squares affine on the shoulder and hip
            joints present in both (>= 3, not collinear); otherwise, or when that fails, a
            similarity on pelvis -> thorax.
        keep_width: limbs and head scale across the bone by the torso's scale ratio
            (their width follows body size, not foreshortening); False: pure similarity,
            as in the paper's release.
    A segment whose end joint is missing in either pose borrows its parent's transform
    (lower arm from upper arm, ..., limbs and head from the torso).  Nothing is ever
    computed from NaN: missing joints only ever remove a transform.
    """
    ok = present(src_kp) & present(dst_kp)
    out: list[np.ndarray | None] = [None] * NUM_SEGMENTS
    scale = None
    if ok[J["pelvis"]] and ok[J["thorax"]]:
        ls = np.linalg.norm(src_kp[J["thorax"], :2] - src_kp[J["pelvis"], :2])
        ld = np.linalg.norm(dst_kp[J["thorax"], :2] - dst_kp[J["pelvis"], :2])
        scale = ld / ls if ls > MIN_BONE_PX else None
    for i, seg in enumerate(SEGMENTS):
        t = None
        if i == SEG["torso"] and torso_affine:
            corners = [j for j in (*TORSO_CORNERS, J["pelvis"], J["thorax"]) if ok[j]]
            if sum(ok[list(TORSO_CORNERS)]) >= 3:
                t = lstsq_affine(src_kp[corners, :2], dst_kp[corners, :2])
        if t is None and ok[seg.a] and ok[seg.b]:
            across = scale if keep_width and i != SEG["torso"] else None
            t = bone_affine(src_kp[seg.a], src_kp[seg.b], dst_kp[seg.a], dst_kp[seg.b], across)
        if t is None and seg.parent is not None:
            t = out[seg.parent]
        out[i] = t
    return out


class Patch(NamedTuple):
    """Label values of one segment inside its bounding box: ``labels`` uint8 (h, w), 0
    where the pixel belongs to another segment or the background; (x0, y0) is the box's
    top-left pixel in the exemplar frame."""

    segment: int
    x0: int
    y0: int
    labels: np.ndarray


def segment_patches(label_map: np.ndarray, segment_map: np.ndarray) -> list[Patch]:
    """Split a uint8 (S, S) label map into per-segment patches using a segment map from
    :func:`pipeline.priors.segments.assign_segments`; segments without pixels are left out."""
    patches = []
    for s in range(NUM_SEGMENTS):
        mask = segment_map == s
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sub = np.where(mask[y0:y1, x0:x1], label_map[y0:y1, x0:x1], 0).astype(np.uint8)
        patches.append(Patch(s, int(x0), int(y0), sub))
    return patches


def morph_patches(patches: list[Patch], transforms: list[np.ndarray | None], size: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Warp each segment's patch with its transform and draw it, in segment order, into a
    uint8 (size, size) label map (0 where nothing lands).  Patches whose transform is
    None are dropped.  Nearest-neighbour sampling keeps class ids intact.

    Only the destination bounding box of each patch is warped, so the cost follows the
    parts' area rather than the frame's.
    """
    out = np.zeros((size, size), dtype=np.uint8) if out is None else out
    for p in patches:
        t = transforms[p.segment]
        if t is None:
            continue
        h, w = p.labels.shape
        m = to3x3(t) @ np.array([[1.0, 0, p.x0], [0, 1.0, p.y0], [0, 0, 1]])  # dst_from_patch
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
        d = corners @ m[:2, :2].T + m[:2, 2]
        x0, y0 = np.floor(d.min(axis=0)).astype(int)
        x1, y1 = np.ceil(d.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]]) @ m  # box_from_patch
        warped = cv2.warpAffine(p.labels, m[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        region = out[y0:y1, x0:x1]
        np.copyto(region, warped, where=warped > 0)
    return out
