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


def lstsq_affine(src, dst) -> np.ndarray | None:
    """Least-squares dst_from_src (2, 3) from >= 3 point pairs (n, 2) (arrays or lists);
    None when the points are (nearly) collinear (the centred source points' smaller
    singular value below 1e-3 of the largest coordinate, at least 1e-3 pixel) or the fit
    mirrors (negative determinant).

    Closed form on centred points, in plain floats (n is at most 6 here, where numpy's
    per-call costs would dominate): A = (Q^T P)(P^T P)^-1, b = mean(dst) - A mean(src)."""
    src = [(float(x), float(y)) for x, y in src]
    dst = [(float(x), float(y)) for x, y in dst]
    n = len(src)
    if n < 3:
        return None
    px, py = sum(x for x, _ in src) / n, sum(y for _, y in src) / n
    qx, qy = sum(x for x, _ in dst) / n, sum(y for _, y in dst) / n
    sxx = sxy = syy = uxx = uxy = uyx = uyy = 0.0
    for (x, y), (u, v) in zip(src, dst):
        x, y, u, v = x - px, y - py, u - qx, v - qy
        sxx, sxy, syy = sxx + x * x, sxy + x * y, syy + y * y
        uxx, uxy, uyx, uyy = uxx + u * x, uxy + u * y, uyx + v * x, uyy + v * y
    det = sxx * syy - sxy * sxy
    half_trace = 0.5 * (sxx + syy)
    smallest_eig = half_trace - math.sqrt(max(half_trace * half_trace - det, 0.0))
    tol = 1e-3 * max(1.0, max(abs(c) for p in src for c in p))
    if smallest_eig < tol * tol or det <= 0:
        return None
    a00, a01 = (uxx * syy - uxy * sxy) / det, (uxy * sxx - uxx * sxy) / det
    a10, a11 = (uyx * syy - uyy * sxy) / det, (uyy * sxx - uyx * sxy) / det
    if a00 * a11 - a01 * a10 <= 0:
        return None
    return np.array([[a00, a01, qx - a00 * px - a01 * py], [a10, a11, qy - a10 * px - a11 * py]])


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
    ok = (present(src_kp) & present(dst_kp)).tolist()
    src, dst = src_kp[:, :2].tolist(), dst_kp[:, :2].tolist()   # plain floats for the scalar maths
    out: list[np.ndarray | None] = [None] * NUM_SEGMENTS
    scale = None
    pelvis, thorax = J["pelvis"], J["thorax"]
    if ok[pelvis] and ok[thorax]:
        ls = math.dist(src[thorax], src[pelvis])
        ld = math.dist(dst[thorax], dst[pelvis])
        scale = ld / ls if ls > MIN_BONE_PX else None
    for i, seg in enumerate(SEGMENTS):
        t = None
        if i == SEG["torso"] and torso_affine:
            corners = [j for j in (*TORSO_CORNERS, pelvis, thorax) if ok[j]]
            if sum(ok[j] for j in TORSO_CORNERS) >= 3:
                t = lstsq_affine([src[j] for j in corners], [dst[j] for j in corners])
        if t is None and ok[seg.a] and ok[seg.b]:
            across = scale if keep_width and i != SEG["torso"] else None
            t = bone_affine(src[seg.a], src[seg.b], dst[seg.a], dst[seg.b], across)
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
        (a00, a01, b0), (a10, a11, b1) = t.tolist()   # plain floats: ~10 patches per exemplar
        b0 += a00 * p.x0 + a01 * p.y0                  # dst_from_patch
        b1 += a10 * p.x0 + a11 * p.y0
        corners = ((-0.5, -0.5), (w - 0.5, -0.5), (-0.5, h - 0.5), (w - 0.5, h - 0.5))
        xs = [a00 * cx + a01 * cy + b0 for cx, cy in corners]
        ys = [a10 * cx + a11 * cy + b1 for cx, cy in corners]
        x0, y0 = max(math.floor(min(xs)), 0), max(math.floor(min(ys)), 0)
        x1, y1 = min(math.ceil(max(xs)) + 1, size), min(math.ceil(max(ys)) + 1, size)
        if x1 <= x0 or y1 <= y0:
            continue
        box_from_patch = np.array([[a00, a01, b0 - x0], [a10, a11, b1 - y0]])
        warped = cv2.warpAffine(p.labels, box_from_patch, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.copyto(out[y0:y1, x0:x1], warped, where=warped > 0)
    return out
