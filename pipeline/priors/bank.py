"""Part-level priors (Fang et al., CVPR 2018, section 3.4; method.md section 3).

A prior is float32 (C, S, S) in the target person's crop frame: the average of the
one-hot label maps of its k most pose-similar labelled people, each morphed part by part
onto the target pose.  It sums to 1 at every pixel (pixels no morphed part reaches count
as background).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.priors.morph import Patch, morph_patches, segment_patches, segment_transforms
from pipeline.priors.pose import CropBox, apply_affine, person_box, torso_problem
from pipeline.priors.pose_index import PoseIndex
from pipeline.formats.records import PersonRecord
from pipeline.priors.segments import assign_segments
from pipeline.skeleton import flip_keypoints


@dataclass(frozen=True)
class PriorConfig:
    """Settings of prior construction.

    Attributes:
        size: side of the square crop frame in pixels (256 in the paper; 128 for CPU).
        margin: crop box enlargement on each side, as a fraction of the keypoint box.
        k: neighbours averaged.
        min_shared: joints two poses must share to be compared.
        torso_affine: least-squares affine for the torso (else a similarity).
        keep_width: limbs keep their width under foreshortening (else pure similarity).
        flip: add mirrored copies of the bank (left/right classes and joints swapped).
    """

    size: int = 128
    margin: float = 0.25
    k: int = 3
    min_shared: int = 6
    torso_affine: bool = True
    keep_width: bool = True
    flip: bool = False


@dataclass
class Exemplar:
    """One labelled person in its crop frame: ``label_map`` uint8 (S, S) (0 outside the
    image), ``keypoints`` float32 (16, 3) in crop pixels, the per-segment ``patches``, and
    where it came from (``person_id``, ``image_path``, ``box``, ``flipped``)."""

    person_id: str
    image_path: str
    box: CropBox
    flipped: bool
    label_map: np.ndarray
    keypoints: np.ndarray
    patches: list[Patch] = field(repr=False)


def crop_label_map(label_map: np.ndarray, box: CropBox, size: int, outside: int = 0) -> np.ndarray:
    """uint8 (H, W) label map -> uint8 (size, size) in the crop frame (nearest neighbour);
    pixels outside the image get ``outside`` (0 for exemplars, 255 for ground truth)."""
    return cv2.warpAffine(label_map, box.crop_from_image(size), (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=int(outside))


def crop_mask(mask: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """bool (H, W) mask -> bool (size, size) in the crop frame (nearest neighbour; False
    outside the image)."""
    return crop_label_map(mask.astype(np.uint8), box, size) > 0


def crop_image(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """uint8 (H, W, 3) image -> (size, size, 3) crop (bilinear, black outside the image)."""
    return cv2.warpAffine(image, box.crop_from_image(size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def make_exemplar(label_crop: np.ndarray, kp_crop: np.ndarray, label_set: str, *, person_id: str = "",
                  image_path: str = "", box: CropBox | None = None, flipped: bool = False) -> Exemplar:
    """An :class:`Exemplar` from a label map and keypoints already in the crop frame."""
    lm = np.where(label_crop == IGNORE, 0, label_crop).astype(np.uint8)
    seg = assign_segments(lm, kp_crop, label_set)
    return Exemplar(person_id, image_path, box or CropBox(0, 0, 1), flipped, lm,
                    kp_crop.astype(np.float32), segment_patches(lm, seg))


class PriorBank:
    """Labelled people in their crop frames plus a :class:`PoseIndex` over their poses.

    Build with :meth:`from_records`.  Row i of the index is ``exemplars[i]``; a person
    and its mirrored copy share ``groups[i]`` (its position in the input).
    """

    def __init__(self, exemplars: list[Exemplar], groups: np.ndarray, label_set: str,
                 config: PriorConfig, skipped: list[tuple[str, str]]):
        self.exemplars = exemplars
        self.groups = groups
        self.label_set = label_set
        self.num_classes = LABEL_SETS[label_set].num_classes
        self.config = config
        self.skipped = skipped
        self._label_sum: np.ndarray | None = None  # one-hot sum of all exemplars, for mean_prior
        kps = np.stack([e.keypoints for e in exemplars]) if exemplars else np.zeros((0, 16, 3))
        self.index = PoseIndex(kps, groups, min_shared=config.min_shared)

    @classmethod
    def from_records(cls, records: Iterable[PersonRecord], config: PriorConfig) -> "PriorBank":
        """Crop every record that has a label map and a usable pose; others are skipped
        with their reason in ``bank.skipped``.  All records must share one label set.

        Raises: ValueError when the records mix label sets or none is usable.
        """
        exemplars, groups, skipped, label_set = [], [], [], None
        flip_lut = None
        for n, rec in enumerate(records):
            if rec.label_map is None or rec.keypoints is None:
                skipped.append((rec.person_id, "no label map" if rec.label_map is None else "no keypoints"))
                continue
            if label_set is None:
                label_set = rec.label_set
                flip_lut = LABEL_SETS[label_set].flip_lut()
            elif rec.label_set != label_set:
                raise ValueError(f"bank mixes label sets {label_set} and {rec.label_set}")
            problem = torso_problem(rec.keypoints)
            if problem:
                skipped.append((rec.person_id, problem))
                continue
            box = person_box(rec.keypoints, config.margin, path=rec.image_path)
            lm = crop_label_map(rec.label_map, box, config.size)
            kp = apply_affine(rec.keypoints, box.crop_from_image(config.size))
            exemplars.append(make_exemplar(lm, kp, label_set, person_id=rec.person_id,
                                           image_path=str(rec.image_path), box=box))
            groups.append(n)
            if config.flip:
                exemplars.append(make_exemplar(flip_lut[lm[:, ::-1]], flip_keypoints(kp, config.size),
                                               label_set, person_id=rec.person_id,
                                               image_path=str(rec.image_path), box=box, flipped=True))
                groups.append(n)
        if not exemplars:
            raise ValueError("no usable labelled person for the bank")
        return cls(exemplars, np.array(groups), label_set, config, skipped)

    def morph(self, row: int, target_kp: np.ndarray) -> np.ndarray:
        """Exemplar ``row`` morphed onto target keypoints (16, 3) in the crop frame:
        uint8 (S, S) label map."""
        ex = self.exemplars[row]
        t = segment_transforms(ex.keypoints, target_kp, torso_affine=self.config.torso_affine,
                               keep_width=self.config.keep_width)
        return morph_patches(ex.patches, t, self.config.size)

    def prior(self, target_kp: np.ndarray, rows) -> np.ndarray:
        """Part-level prior float32 (C, S, S) for target keypoints (16, 3) in the crop
        frame from bank rows (ids from :meth:`PoseIndex.query`; -1 entries ignored).

        Raises: ValueError when no row is given.
        """
        rows = [int(r) for r in np.asarray(rows).reshape(-1) if r >= 0]
        if not rows:
            raise ValueError("a prior needs at least one neighbour")
        maps = np.stack([self.morph(r, target_kp) for r in rows])
        return one_hot_mean(maps, self.num_classes)

    def mean_prior(self, exclude_group=None) -> np.ndarray:
        """Pose-free baseline float32 (C, S, S): the mean one-hot crop label map of the
        bank (rows of ``exclude_group`` left out)."""
        if self._label_sum is None:
            self._label_sum = one_hot_mean(np.stack([e.label_map for e in self.exemplars]),
                                           self.num_classes) * len(self.exemplars)
        total, n = self._label_sum, len(self.exemplars)
        if exclude_group is not None:
            rows = np.flatnonzero(self.groups == exclude_group)
            if len(rows):
                total = total - one_hot_mean(np.stack([self.exemplars[r].label_map for r in rows]),
                                             self.num_classes) * len(rows)
                n -= len(rows)
        return (total / max(n, 1)).astype(np.float32)


def one_hot_mean(maps: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean one-hot encoding of uint8 label maps (k, S, S) -> float32 (C, S, S) summing to
    1 per pixel; ids >= C (e.g. 255) count as background.

    Counts are accumulated in uint8 (uint32 from 256 maps on), one comparison of each map
    against all classes at once, and scaled once; a float reduction over the k axis is
    several times slower."""
    maps = np.asarray(maps)
    k = len(maps)
    count_dtype = np.uint8 if k < 256 else np.uint32
    classes = np.arange(1, num_classes, dtype=maps.dtype)[:, None, None]
    counts = np.zeros((num_classes - 1, *maps.shape[1:]), dtype=count_dtype)
    hit = np.empty(counts.shape, dtype=bool)
    for m in maps:
        np.equal(m[None], classes, out=hit)
        counts += hit.view(np.uint8)
    out = np.empty((num_classes, *maps.shape[1:]), dtype=np.float32)
    out[1:] = counts
    out[1:] *= np.float32(1.0 / k)
    out[0] = 1.0 - out[1:].sum(axis=0)
    return out
