"""Body parts from a person's own mask and skeleton: the partition labeller (``pascal6``).

A person mask (a COCO annotation's own instance mask, BlazePose's segmentation, a
PASCAL-Part object mask) says which pixels are the person; the keypoints say where each
body segment runs (:data:`pipeline.priors.segments.SEGMENTS`).  Every mask pixel goes to
the body part whose skeleton is nearest, measured as the distance to the segment minus
the part's typical half-width (:data:`PART_HALF_WIDTH`, in torso lengths, so that a
thigh claims more of the pixels around it than a forearm); the torso is the polygon of
shoulders and hips, its distance negative inside.  A mask pixel farther than
:data:`MAX_REACH` torso lengths beyond every part, or of a person with no usable segment,
is ignore (255): a pixel no part reaches is never given a guessed class.

Missing joints (v = 0), limb by limb (shoulder-elbow-wrist, hip-knee-ankle); each case is
said in :attr:`Partition.notes`:

* middle joint missing, both ends present: the middle joint is estimated halfway between
  them (listed in :attr:`Partition.estimated_joints`);
* middle and end missing, the root present (a leg cut by the frame above the knee): the
  limb is one class, the upper one (upper arm, upper leg), reaching out from the root;
* end missing, middle present: the lower part reaches out from the middle joint;
* root missing: the upper part is not labelled (its pixels go to the nearest other part);
* no head segment (no upper neck / head top, e.g. COCO without face points): no head.

Several people of one image (:func:`partition_people`): each pixel goes to the person
whose mask holds it; where masks overlap, the person in front wins, front being the one
whose mask reaches lower in the image (people stand on a ground plane seen from above
its horizon: the nearer one's feet are lower), ties going to the larger mask.

This is the same nearest-segment assignment the bank uses to morph clothes
(:func:`pipeline.priors.segments.assign_segments`), applied to the person's own mask;
:func:`lip_to_pascal6` applies it to LIP/CIHP label maps (whose classes fix head, arms
and legs but not upper against lower).
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from pipeline.labels import IGNORE
from pipeline.priors.segments import NUM_SEGMENTS, SEG, SEGMENT_TO_PASCAL6, SEGMENTS, TORSO_CORNERS, draw_segment
from pipeline.skeleton import J, JOINT_NAMES, OCCLUDED, present

#: typical half-width of each segment's body part in torso lengths (pelvis to thorax,
#: about 50 cm in an adult): thigh 8 cm, calf 6, upper arm 5, forearm 4, head 8 around its
#: axis; the torso reaches 4 cm beyond its polygon of shoulder and hip joints (which lie
#: inside the body's outline).  Adult proportions, not fitted to any data set.
PART_HALF_WIDTH = np.array([0.08, 0.16, 0.16, 0.12, 0.12, 0.10, 0.10, 0.08, 0.08, 0.16], dtype=np.float32)
#: half-width of the torso around its pelvis-thorax line when the polygon of shoulders and
#: hips cannot be drawn (shoulders about 0.8 torso lengths apart)
TORSO_LINE_HALF_WIDTH = 0.3
#: mask pixels farther than this many torso lengths beyond every part are ignore (255)
MAX_REACH = 0.5
#: a segment's bone length as a fraction of the torso, to size a person without a torso
_BONE_TO_TORSO = 0.7

#: limb chains: (side, kind, root joint, middle joint, end joint, upper segment, lower segment)
LIMBS: tuple[tuple[str, str, int, int, int, int, int], ...] = tuple(
    (side, kind, J[f"{side}_{a}"], J[f"{side}_{b}"], J[f"{side}_{c}"], SEG[f"{side}_upper_{kind}"],
     SEG[f"{side}_lower_{kind}"])
    for kind, (a, b, c) in (("arm", ("shoulder", "elbow", "wrist")), ("leg", ("hip", "knee", "ankle")))
    for side in ("right", "left"))


class Partition(NamedTuple):
    """One person's body parts.

    Attributes:
        label_map: uint8 (H, W) ``pascal6`` ids: 0 outside the mask, 1-6 the parts, 255 on
            mask pixels no part reaches.
        estimated_joints: names of the joints estimated halfway along their limb.
        notes: one line per missing joint or part and how it was handled.
    """

    label_map: np.ndarray
    estimated_joints: list[str]
    notes: list[str]


class _Skeleton(NamedTuple):
    keypoints: np.ndarray      # float32 (16, 3), middle joints estimated
    stubs: dict[int, int]      # segment -> the joint it reaches out from
    estimated: list[str]
    notes: list[str]


def _skeleton(keypoints: np.ndarray) -> _Skeleton:
    """Keypoints with middle joints estimated, the stub segments and the notes."""
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    ok = present(kp)
    stubs, estimated, notes = {}, [], []
    for side, kind, root, mid, end, upper, lower in LIMBS:
        name = f"{side} {kind}"
        if not ok[mid] and ok[root] and ok[end]:
            kp[mid] = (*(kp[root, :2] + kp[end, :2]) / 2, OCCLUDED)
            estimated.append(JOINT_NAMES[mid])
            notes.append(f"{name}: {JOINT_NAMES[mid]} missing, estimated halfway along the {kind}")
        elif not ok[mid] and ok[root]:
            stubs[upper] = root
            notes.append(f"{name}: {JOINT_NAMES[mid]} and {JOINT_NAMES[end]} missing, the {kind} is "
                         f"upper-{kind}s only")
        elif ok[mid] and not ok[end]:
            stubs[lower] = mid
            notes.append(f"{name}: {JOINT_NAMES[end]} missing, the lower {kind} reaches out from the "
                         f"{JOINT_NAMES[mid]}")
        if not ok[root] and (ok[mid] or ok[end]):
            notes.append(f"{name}: {JOINT_NAMES[root]} missing, no upper {kind}")
    if not (ok[J["upper_neck"]] and ok[J["head_top"]]):
        notes.append("head: no upper neck / head top, no head")
    if not present(kp[list(TORSO_CORNERS)]).all():
        notes.append("torso: not all of shoulders and hips present, " +
                     ("the pelvis-thorax line" if ok[J["pelvis"]] and ok[J["thorax"]] else "no torso"))
    return _Skeleton(kp, stubs, estimated, notes)


def torso_scale(keypoints: np.ndarray, fallback: float) -> float:
    """The torso length in pixels (pelvis to thorax) of keypoints (16, 3); without one,
    the median present bone / 0.7; without any bone, ``fallback``."""
    ok = present(keypoints)
    if ok[J["pelvis"]] and ok[J["thorax"]]:
        return max(float(np.linalg.norm(keypoints[J["thorax"], :2] - keypoints[J["pelvis"], :2])), 1.0)
    bones = [np.linalg.norm(keypoints[s.b, :2] - keypoints[s.a, :2]) for s in SEGMENTS[1:9] if ok[s.a] and ok[s.b]]
    return max(float(np.median(bones)) / _BONE_TO_TORSO, 1.0) if bones else max(fallback, 1.0)


def part_distances(keypoints: np.ndarray, shape: tuple[int, int], stubs: dict[int, int] | None = None,
                   scale: float | None = None) -> np.ndarray:
    """Each pixel's distance to each segment's body part, float32 (10, h, w) in pixels.

    The distance to the segment's skeleton (:func:`pipeline.priors.segments.draw_segment`;
    the torso polygon's signed: negative inside) minus the part's half-width
    (:data:`PART_HALF_WIDTH` x ``scale``; a torso without its polygon is its pelvis-thorax
    line, :data:`TORSO_LINE_HALF_WIDTH` wide; either ends square at the pelvis and the
    thorax, :func:`_cap_torso`); ``stubs`` maps a segment without its end
    joint to the joint it reaches out from (distance to that point, winning ties); inf
    for segments neither present nor stubs.

    Args:
        keypoints: float (16, 3) in the frame of ``shape`` = (h, w) pixels.
        scale: the torso length in pixels (default :func:`torso_scale`).
    """
    h, w = shape
    scale = torso_scale(keypoints, h / 3) if scale is None else scale
    ok = present(keypoints)
    polygon = bool(present(keypoints[list(TORSO_CORNERS)]).all())
    dist = np.full((NUM_SEGMENTS, h, w), np.inf, dtype=np.float32)
    for i, s in enumerate(SEGMENTS):
        m = np.full((h, w), 255, dtype=np.uint8)
        torso, width, tie = i == SEG["torso"], PART_HALF_WIDTH[i], 0.0
        if ok[s.a] and ok[s.b]:
            draw_segment(m, keypoints, i, 0)                  # the line (and the torso's polygon)
            if torso and not polygon:
                width = TORSO_LINE_HALF_WIDTH
        elif stubs and i in stubs:
            cv2.circle(m, tuple(int(round(c)) for c in keypoints[stubs[i], :2] * 16), 0, 0, -1,
                       lineType=cv2.LINE_8, shift=4)
            tie = 0.5
        elif torso and polygon:                                # corners without pelvis / thorax
            m[_polygon_inside(keypoints, (h, w))] = 0
        else:
            continue
        if not (m == 0).any():
            continue
        d = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        if torso and polygon:
            inside = _polygon_inside(keypoints, (h, w))
            d[inside] = -cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[inside]
        dist[i] = d - tie - width * scale
    if ok[J["pelvis"]] and ok[J["thorax"]] and np.isfinite(dist[SEG["torso"]]).any():
        _cap_torso(dist, keypoints)
    return dist


def _polygon_inside(keypoints: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (h, w): the pixels of the torso's shoulder-hip polygon."""
    m = np.zeros(shape, dtype=np.uint8)
    poly = np.round(keypoints[list(TORSO_CORNERS), :2] * 16).astype(np.int32)
    cv2.fillConvexPoly(m, poly, 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


_LEG_PARTS = [SEG[f"{s}_{p}_leg"] for s in ("right", "left") for p in ("upper", "lower")]
_UPPER_PARTS = [SEG["head"], *(SEG[f"{s}_{p}_arm"] for s in ("right", "left") for p in ("upper", "lower"))]


def _cap_torso(dist: np.ndarray, keypoints: np.ndarray) -> None:
    """The torso (polygon or pelvis-thorax line) ends at the lines through the pelvis and
    the thorax square to their axis: beyond the pelvis its pixels go to the legs, beyond
    the thorax to the head and arms, where those parts exist (in place)."""
    pelvis, thorax = keypoints[J["pelvis"], :2].astype(np.float64), keypoints[J["thorax"], :2].astype(np.float64)
    axis = thorax - pelvis
    length = np.linalg.norm(axis)
    if length < 1e-6:
        return
    h, w = dist.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    t = ((xs - pelvis[0]) * axis[0] + (ys - pelvis[1]) * axis[1]) / length ** 2      # 0 at the pelvis, 1 at the thorax
    torso = dist[SEG["torso"]]
    if np.isfinite(dist[_LEG_PARTS]).any():
        torso[t < 0] = np.inf
    if np.isfinite(dist[_UPPER_PARTS]).any():
        torso[t > 1] = np.inf


def _window(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) bounding box of a bool mask, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _distances_over(skel: _Skeleton, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
    """:func:`part_distances` over the image rows y0:y1, columns x0:x1 of ``box``, measured
    on a canvas that also holds every present joint (a joint outside the box, or outside
    the image, still draws its segment): float32 (10, y1 - y0, x1 - x0)."""
    y0, y1, x0, x1 = box
    ok = present(skel.keypoints)
    xy = skel.keypoints[ok, :2]
    cx0, cy0 = min(x0, int(np.floor(xy[:, 0].min())) - 1) if len(xy) else x0, \
        min(y0, int(np.floor(xy[:, 1].min())) - 1) if len(xy) else y0
    cx1, cy1 = max(x1, int(np.ceil(xy[:, 0].max())) + 2) if len(xy) else x1, \
        max(y1, int(np.ceil(xy[:, 1].max())) + 2) if len(xy) else y1
    kp = skel.keypoints.copy()
    kp[:, 0] -= cx0
    kp[:, 1] -= cy0
    dist = part_distances(kp, (cy1 - cy0, cx1 - cx0), skel.stubs, scale)
    return dist[:, y0 - cy0: y1 - cy0, x0 - cx0: x1 - cx0]


def partition_person(mask: np.ndarray, keypoints: np.ndarray) -> Partition:
    """A person's ``pascal6`` body parts from its mask and keypoints (module docstring).

    Args:
        mask: bool (H, W) the person's pixels.
        keypoints: float (16, 3) canonical keypoints in the same image frame (pixels;
            :mod:`pipeline.skeleton`), missing joints v = 0; joints may lie outside the
            mask and the image.
    Returns: :class:`Partition` (label map uint8 (H, W): 0 outside the mask).
    Raises: ValueError when mask is not 2-D or keypoints are not (16, 3).
    """
    mask = np.asarray(mask, dtype=bool)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if mask.ndim != 2 or keypoints.shape != (16, 3):
        raise ValueError(f"partition_person needs a (H, W) mask and (16, 3) keypoints, got {mask.shape}, "
                         f"{keypoints.shape}")
    skel = _skeleton(keypoints)
    out = np.zeros(mask.shape, dtype=np.uint8)
    box = _window(mask)
    if box is None:
        return Partition(out, skel.estimated, skel.notes)
    y0, y1, x0, x1 = box
    scale = torso_scale(skel.keypoints, (y1 - y0) / 3)
    dist = _distances_over(skel, box, scale)
    best = dist.min(axis=0)
    labels = SEGMENT_TO_PASCAL6[dist.argmin(axis=0)]
    labels[~(best <= MAX_REACH * scale)] = IGNORE          # unreached, or no part at all (inf)
    sub = mask[y0:y1, x0:x1]
    out[y0:y1, x0:x1][sub] = labels[sub]
    if not np.isfinite(best).any():
        skel.notes.append("no usable segment: every mask pixel is ignore")
    return Partition(out, skel.estimated, skel.notes)


def depth_order(masks: list[np.ndarray]) -> list[int]:
    """Indices of ``masks`` (bool (H, W) each) from back to front: the mask whose lowest
    pixel is higher in the image is farther; ties go to the smaller mask (module
    docstring).  Empty masks come first."""
    def key(i):
        rows = np.flatnonzero(masks[i].any(axis=1))
        return (int(rows[-1]) if len(rows) else -1, int(masks[i].sum()))
    return sorted(range(len(masks)), key=key)


class PartitionedImage(NamedTuple):
    """``label_map`` uint8 (H, W) ``pascal6`` (255 on mask pixels no part reaches);
    ``owner`` int16 (H, W) the person each pixel went to (-1 none); ``people`` each
    person's own :class:`Partition`."""

    label_map: np.ndarray
    owner: np.ndarray
    people: list[Partition]


def partition_people(masks: list[np.ndarray], keypoints: list[np.ndarray]) -> PartitionedImage:
    """Body parts of several people of one image: each person partitioned on its whole
    mask, then pasted back to front (:func:`depth_order`), so that a pixel two masks hold
    goes to the front one.

    Args: masks bool (H, W) and keypoints float (16, 3) per person, same image frame.
    Raises: ValueError when the lists differ in length or the masks in shape."""
    if len(masks) != len(keypoints):
        raise ValueError(f"{len(masks)} masks for {len(keypoints)} keypoint sets")
    if not masks:
        raise ValueError("partition_people needs at least one person")
    shape = masks[0].shape
    if any(m.shape != shape for m in masks):
        raise ValueError("person masks of one image must share its size")
    people = [partition_person(m, k) for m, k in zip(masks, keypoints)]
    label_map = np.zeros(shape, dtype=np.uint8)
    owner = np.full(shape, -1, dtype=np.int16)
    for i in depth_order(masks):
        m = masks[i].astype(bool)
        label_map[m] = people[i].label_map[m]
        owner[m] = i
    return PartitionedImage(label_map, owner, people)


def partition_prior(part_map: np.ndarray, num_classes: int = 7) -> np.ndarray:
    """A partition as a prior: float32 (C, S, S) one-hot of a uint8 (S, S) ``pascal6``
    map; ignore (255) pixels spread evenly over the foreground classes (the person is
    there, its part unknown)."""
    out = np.zeros((num_classes, *part_map.shape), dtype=np.float32)
    known = part_map < num_classes
    out[part_map[known], *np.nonzero(known)] = 1.0
    out[1:, part_map == IGNORE] = 1.0 / (num_classes - 1)
    return out


def masked_morph_prior(morph: np.ndarray, mask: np.ndarray, part_map: np.ndarray) -> np.ndarray:
    """The morphed prior within the person's mask, gaps filled by its partition (the
    ``both`` prior source): float32 (C, S, S).

    Outside ``mask`` (bool (S, S)) certain background; inside, where the morphed prior
    float32 (C, S, S) has foreground, its foreground classes renormalised to sum to 1;
    elsewhere inside, the partition's :func:`partition_prior`."""
    fg = 1.0 - morph[0]
    out = partition_prior(part_map, morph.shape[0])
    has = mask & (fg > 1e-6)
    out[1:, has] = morph[1:, has] / fg[has]
    out[0, has] = 0.0
    out[:, ~mask] = 0.0
    out[0, ~mask] = 1.0
    return out


#: LIP / CIHP class -> the segments its pixels may go to, for :func:`lip_to_pascal6`.
#: Face, hair, hat, sunglasses: head; arms and gloves: the arms (either side: pascal6
#: merges them); legs, socks, shoes: the legs; clothes: torso and the limbs they cover.
_ARM_SEGS = tuple(SEG[f"{s}_{p}_arm"] for s in ("right", "left") for p in ("upper", "lower"))
_LEG_SEGS = tuple(SEG[f"{s}_{p}_leg"] for s in ("right", "left") for p in ("upper", "lower"))
_LOWER_LEGS = (SEG["right_lower_leg"], SEG["left_lower_leg"])
_TORSO = (SEG["torso"],)
LIP_PARTS: dict[int, tuple[int, ...]] = {
    1: (SEG["head"],), 2: (SEG["head"],), 4: (SEG["head"],), 13: (SEG["head"],),
    3: (SEG["right_lower_arm"], SEG["left_lower_arm"]), 14: _ARM_SEGS, 15: _ARM_SEGS,
    16: _LEG_SEGS, 17: _LEG_SEGS, 8: _LOWER_LEGS, 18: _LOWER_LEGS, 19: _LOWER_LEGS,
    5: _TORSO + _ARM_SEGS, 7: _TORSO + _ARM_SEGS, 6: _TORSO + _ARM_SEGS + _LEG_SEGS, 9: _TORSO + _LEG_SEGS,
    10: _TORSO + _ARM_SEGS + _LEG_SEGS, 11: _TORSO + (SEG["head"],), 12: _TORSO + _LEG_SEGS,
}


def lip_to_pascal6(label_map: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """A LIP / CIHP (``lip20``) label map and its person's keypoints -> ``pascal6``.

    Each foreground pixel goes to the nearest body part (:func:`part_distances`) among
    those its class allows (:data:`LIP_PARTS`): face, hair, hat and sunglasses are head;
    an arm pixel is upper or lower arm by the elbow, a leg pixel upper or lower leg by the
    knee; clothes go to the torso or the limb they lie on.  Missing joints as in
    :func:`partition_person`.  Background stays 0, ignore 255; a pixel whose allowed parts
    are all missing becomes 255.

    Args: label_map uint8 (H, W) LIP ids; keypoints float (16, 3) in its frame.
    Returns: uint8 (H, W) ``pascal6`` ids."""
    if label_map.dtype != np.uint8 or label_map.ndim != 2:
        raise TypeError(f"label_map must be uint8 (H, W), got {label_map.dtype} {label_map.shape}")
    out = np.where(label_map == IGNORE, IGNORE, 0).astype(np.uint8)
    fg = (label_map != 0) & (label_map != IGNORE)
    box = _window(fg)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    skel = _skeleton(np.asarray(keypoints, dtype=np.float32))
    dist = _distances_over(skel, box, torso_scale(skel.keypoints, (y1 - y0) / 3))
    sub, lm = out[y0:y1, x0:x1], label_map[y0:y1, x0:x1]
    for cls in np.unique(lm[fg[y0:y1, x0:x1]]):
        pix = lm == cls
        segs = np.array(LIP_PARTS.get(int(cls), tuple(range(NUM_SEGMENTS))))
        d = dist[segs][:, pix]
        sub[pix] = np.where(np.isfinite(d.min(axis=0)), SEGMENT_TO_PASCAL6[segs[d.argmin(axis=0)]], IGNORE)
    return out
