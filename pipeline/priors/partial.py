"""Partial bodies: people whose pelvis or thorax is missing (upper-body shots, people cut by
the image border, hips hidden in a crowd).

The paper's normalisation (pelvis at the origin, unit torso) needs both ends of the
torso, so such people used to be skipped.  Here they are labelled in four steps:

1. **Matching** (:func:`partial_neighbours`): the query's present joints J (pelvis
   excluded, as in :mod:`pipeline.priors.pose_index`) are compared with every bank pose
   that has all of them, both brought to the same similarity-free frame: centred on the
   centroid of J and divided by their RMS distance from it (the centroid size of shape
   analysis).  Distance: RMS over J of the 2-D differences, in units of that size.
2. **Completion** (:func:`complete_pose`): each neighbour's pose is mapped onto the
   query by the least-squares similarity (rotation, uniform scale, translation) of their
   shared trunk and head joints (:data:`CORE`; all shared joints when fewer than two); a
   missing joint is the median of the neighbours' mapped joints, marked occluded (v = 1).  The completed pose sets the crop box and drives the morphing, so
   the refiner sees a whole body at the scale it was trained on.
3. **Prior and refinement** as for anybody else, on the completed pose.  (The issue asked
   for a prior of the visible part only; a whole-body prior is what the refiner was
   trained on, and step 4 removes the unseen part from the label either way.)
4. **Hidden region** (:func:`hidden_region`): crop pixels whose nearest joint of the
   completed pose is an estimated one.  The synthetic label marks them ignore (255), not
   background: nothing was observed there.
"""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np

from pipeline.priors.pose import PARTIAL_BODY_PROBLEMS, torso_problem
from pipeline.priors.pose_index import COMPARED, Neighbours, PoseIndex
from pipeline.skeleton import J, NUM_JOINTS, OCCLUDED, present

#: Joints that move rigidly with the trunk: the similarity of :func:`complete_pose` is fitted
#: on these when at least two are shared (limbs swing independently of the trunk).
CORE = np.isin(np.arange(NUM_JOINTS), [J[n] for n in ("right_hip", "left_hip", "pelvis", "thorax", "upper_neck",
                                                      "head_top", "right_shoulder", "left_shoulder")])
#: A shape whose joints lie within this RMS radius of their centroid cannot be scaled.
MIN_RADIUS = 1e-6


def is_partial(keypoints: np.ndarray) -> bool:
    """True when keypoints float (16, 3) (pixels) lack the pelvis or the thorax, the
    cases this module completes (a zero-length torso stays a keypoint error)."""
    return torso_problem(keypoints) in PARTIAL_BODY_PROBLEMS


def shape_features(coords: np.ndarray) -> np.ndarray:
    """float64 (N, 2m) rows of joint coordinates (N, m, 2) centred on their centroid and
    divided by their RMS radius, times sqrt(1 / m) so that the Euclidean distance of two
    rows is the RMS joint distance; NaN rows where the radius is below :data:`MIN_RADIUS`."""
    xy = np.asarray(coords, dtype=np.float64)
    centred = xy - xy.mean(axis=1, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(-1).mean(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = centred / radius[:, None, None] / math.sqrt(xy.shape[1])
    out[radius < MIN_RADIUS] = np.nan
    return out.reshape(len(xy), -1)


def partial_neighbours(index: PoseIndex, keypoints: np.ndarray, k: int) -> Neighbours:
    """The k nearest bank poses of one partial pose, compared on its own present joints.

    Args:
        index: the bank's :class:`PoseIndex` (its poses are already similarity-normalised,
            which this comparison is invariant to).
        keypoints: float (16, 3) query keypoints in pixels (any frame).
        k: neighbours wanted.
    Returns: :class:`Neighbours` of one query (ids (1, k), distances (1, k) in centroid
        sizes, nearest first; -1 / inf where fewer bank poses have all the query's joints);
        ``reasons[0]`` says why none was found (fewer than ``index.min_shared`` joints, no
        bank pose with all of them, joints all at one point).
    """
    kp = np.asarray(keypoints, dtype=np.float64)[COMPARED]
    mask = present(kp)
    ids = np.full((1, k), -1, dtype=np.int64)
    dist = np.full((1, k), np.inf, dtype=np.float32)
    if mask.sum() < index.min_shared:
        return Neighbours(ids, dist, [f"only {int(mask.sum())} comparable joints (< {index.min_shared})"])
    rows = np.flatnonzero(index.usable & index.valid[:, mask].all(axis=1))
    query = shape_features(kp[None, mask, :2])
    if np.isnan(query).any():
        return Neighbours(ids, dist, ["present joints all at one point"])
    bank = shape_features(index.coords[rows][:, mask])
    d = np.sqrt(((bank - query) ** 2).sum(axis=1))
    d[np.isnan(d)] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    order = order[np.isfinite(d[order])]
    ids[0, : len(order)], dist[0, : len(order)] = rows[order], d[order]
    return Neighbours(ids, dist, ["" if len(order) else "no bank pose has all its joints"])


def lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares dst_from_src (2, 3) similarity (rotation, uniform scale, translation,
    no reflection) from >= 2 point pairs float (n, 2); None when the source points
    coincide.  Closed form on centred points: with p, q the centred source and
    destination, a = sum(p . q) / sum|p|^2, b = sum(p x q) / sum|p|^2, A = [[a, -b], [b, a]]."""
    p, q = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    pm, qm = p.mean(axis=0), q.mean(axis=0)
    p, q = p - pm, q - qm
    norm = float((p ** 2).sum())
    if len(p) < 2 or norm < MIN_RADIUS:
        return None
    a = float((p * q).sum()) / norm
    b = float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum()) / norm
    m = np.array([[a, -b], [b, a]])
    return np.hstack([m, (qm - m @ pm)[:, None]])


def complete_pose(keypoints: np.ndarray, exemplar_keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the missing joints of a partial pose from its neighbours.

    Args:
        keypoints: float (16, 3) the person's keypoints in pixels (v = 0: missing).
        exemplar_keypoints: float (k, 16, 3) its neighbours' keypoints (any frames).
    Returns: (float32 (16, 3) completed keypoints, present joints unchanged, estimated
        ones at the median of the neighbours' similarity-mapped joints with v = 1;
        bool (16,) which joints were estimated).  A joint no neighbour has stays missing.
    """
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    have = present(kp)
    mapped = []
    for ex in np.asarray(exemplar_keypoints, dtype=np.float64):
        shared = have & present(ex)
        if (shared & CORE).sum() >= 2:      # arms swing: fit on the torso and head when they allow it
            shared &= CORE
        t = lstsq_similarity(ex[shared, :2], kp[shared, :2]) if shared.sum() >= 2 else None
        if t is not None:
            mapped.append(np.where(present(ex)[:, None], ex[:, :2] @ t[:, :2].T + t[:, 2], np.nan))
    estimated = np.zeros(NUM_JOINTS, dtype=bool)
    if mapped:
        with warnings.catch_warnings():     # "All-NaN slice": a joint no neighbour has
            warnings.simplefilter("ignore", RuntimeWarning)
            guess = np.nanmedian(np.stack(mapped), axis=0)
        estimated = ~have & np.isfinite(guess).all(axis=1)
        kp[estimated, :2] = guess[estimated]
        kp[estimated, 2] = OCCLUDED
    return kp, estimated


def hidden_region(keypoints: np.ndarray, estimated: np.ndarray, size: int) -> np.ndarray:
    """bool (size, size): crop pixels whose nearest present joint of the completed pose
    (float (16, 3), crop pixels) is an estimated one (bool (16,)); nothing when no joint
    was estimated."""
    ok = present(keypoints)
    if not (estimated & ok).any():
        return np.zeros((size, size), dtype=bool)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    joints = np.asarray(keypoints, dtype=np.float32)[ok]
    d = (xs[None] - joints[:, 0, None, None]) ** 2 + (ys[None] - joints[:, 1, None, None]) ** 2
    return estimated[ok][d.argmin(axis=0)]


def hidden_in_image(hidden: np.ndarray, crop_from_image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A crop-frame mask bool (S, S) carried into the image: bool (H, W) (nearest
    neighbour; False outside the crop).  ``crop_from_image`` is the crop box's (2, 3)
    affine (:meth:`pipeline.priors.pose.CropBox.crop_from_image`)."""
    h, w = image_size
    return cv2.warpAffine(hidden.astype(np.uint8), crop_from_image, (w, h),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)

