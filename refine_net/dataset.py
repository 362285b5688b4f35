"""Training and evaluation samples for the refinement network.

A sample is one labelled person in its crop frame: the image crop, the ground-truth crop
(255 outside the photo) and the keypoints, plus the ids of its n nearest poses in a prior
bank (the person itself excluded).  Each epoch draws k of those n at random (the paper's
"k of n") and builds the prior from them; evaluation uses the k nearest.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.formats import files
from pipeline.labels import LABEL_SETS, resize_label_map
from pipeline.priors.pose import apply_affine, person_box
from pipeline.priors.bank import PriorBank, crop_image, crop_label_map, crop_mask
from pipeline.formats.person_mask import read_person_mask
from pipeline.formats.records import PersonRecord
from pipeline.priors.partition import masked_morph_prior, partition_person, partition_prior

#: pix2pix jitter: resize to 286/256 of the crop size, then crop back at random.
JITTER_RATIO = 286 / 256


@dataclass
class Samples:
    """Crops of labelled people: ``images`` uint8 (N, S, S, 3), ``targets`` uint8 (N, S, S)
    (255 outside the photo), ``keypoints`` float32 (N, 16, 3) in crop pixels,
    ``candidates`` int64 (N, n) bank rows nearest first (-1 padding), ``person_ids``, and
    ``masks`` bool (N, S, S): each person's own mask (:func:`person_mask_crop`)."""

    images: np.ndarray
    targets: np.ndarray
    keypoints: np.ndarray
    candidates: np.ndarray
    person_ids: list[str]
    masks: np.ndarray | None = None


def person_mask_crop(rec: PersonRecord, box, size: int) -> np.ndarray:
    """bool (size, size): the person's own mask (:func:`pipeline.formats.person_mask.read_person_mask`)
    in its crop frame, else the foreground of its label map (classes 1.., not ignore)."""
    mask = read_person_mask(rec, rec.image_size)
    if mask is None:
        mask = (rec.label_map > 0) & (rec.label_map != 255)
    return crop_mask(mask, box, size)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def make_samples(records: list[PersonRecord], bank: PriorBank, n: int,
                 exclude_self: bool) -> Samples:
    """Crop labelled ``records`` (with keypoints) and find their n nearest bank poses.

    With ``exclude_self`` a record whose person id is in the bank never gets its own
    rows (nor their flipped copies) as neighbours.
    Raises: DataError from image reading; ValueError when no record is usable.
    """
    size, margin = bank.config.size, bank.config.margin
    group_of = {e.person_id: g for e, g in zip(bank.exemplars, bank.groups)}
    imgs, tgts, kps, ids, groups, masks = [], [], [], [], [], []
    for rec in records:
        if rec.label_map is None or rec.keypoints is None or rec.person_id not in group_of and exclude_self:
            continue
        box = person_box(rec.keypoints, margin, path=rec.image_path)
        imgs.append(crop_image(files.read_image(rec.image_path), box, size))
        tgts.append(crop_label_map(rec.label_map, box, size, outside=255))
        masks.append(person_mask_crop(rec, box, size))
        kps.append(apply_affine(rec.keypoints, box.crop_from_image(size)))
        ids.append(rec.person_id)
        groups.append(group_of.get(rec.person_id, -1))
    if not ids:
        raise ValueError("no labelled person with keypoints to train or evaluate on")
    kp = np.stack(kps)
    nb = bank.index.query(kp, n, exclude_groups=np.array(groups) if exclude_self else None)
    return Samples(np.stack(imgs), np.stack(tgts), kp, nb.ids, ids, np.stack(masks))


class RefineDataset(Dataset):
    """(input (3 + C, S, S) or (3, S, S), target int64 (S, S)) pairs.

    Args:
        samples: from :func:`make_samples`.
        bank: the prior bank the candidates index.
        k: neighbours per prior.
        train: draw k of the n candidates at random (new draw each epoch, see
            :meth:`set_epoch`), jitter and flip; otherwise the k nearest, no augmentation.
        use_prior: append the prior channels (False: the image-only baseline).
        prior_source: ``morph`` (the bank's k-prior), ``partition`` (the person's mask split
            by its skeleton, :func:`pipeline.priors.partition.partition_prior`) or ``both``
            (:func:`pipeline.priors.partition.masked_morph_prior`); the last two need
            ``pascal6`` and ``samples.masks``.
        seed: base seed; the draw for item i in epoch e depends only on (seed, e, i).
    """

    def __init__(self, samples: Samples, bank: PriorBank, k: int, *, train: bool,
                 use_prior: bool = True, seed: int = 0, jitter: bool = True, flip: bool = True,
                 prior_source: str = "morph"):
        self.s, self.bank, self.k, self.train = samples, bank, k, train
        self.use_prior, self.seed, self.jitter, self.flip = use_prior, seed, jitter, flip
        self.prior_source = prior_source
        self.epoch = 0
        self.flip_lut = LABEL_SETS[bank.label_set].flip_lut()
        self._parts: dict[int, np.ndarray] = {}           # partition label maps, made on first use

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.s.person_ids)

    def partition(self, i: int) -> np.ndarray:
        """uint8 (S, S) ``pascal6`` partition of sample i's mask by its keypoints."""
        if i not in self._parts:
            self._parts[i] = partition_person(self.s.masks[i], self.s.keypoints[i]).label_map
        return self._parts[i]

    def prior(self, i: int, rng: np.random.Generator | None) -> np.ndarray:
        """float32 (C, S, S) prior of sample i from ``prior_source`` (the morph: random k of
        n with ``rng``, else k nearest; certain background when sample i has no candidate)."""
        if self.prior_source == "partition":
            return partition_prior(self.partition(i), self.bank.num_classes)
        cand = self.s.candidates[i][self.s.candidates[i] >= 0]
        if rng is not None and len(cand) > self.k:
            cand = np.sort(rng.choice(cand, self.k, replace=False))
        if len(cand):
            morph = self.bank.prior(self.s.keypoints[i], cand[: self.k])
        else:                               # no bank pose shares enough joints: nothing to morph
            morph = np.zeros((self.bank.num_classes, *self.s.targets[i].shape), dtype=np.float32)
            morph[0] = 1.0
        if self.prior_source == "both":
            return masked_morph_prior(morph, self.s.masks[i], self.partition(i))
        return morph

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        image, target = self.s.images[i], self.s.targets[i]
        prior = self.prior(i, rng) if self.use_prior else None
        if self.train and self.jitter:
            image, target, prior = _jitter(image, target, prior, rng)
        if self.train and self.flip and rng.random() < 0.5:
            image, target = image[:, ::-1], self.flip_lut[target[:, ::-1]]
            if prior is not None:
                prior = prior[np.argsort(self.flip_lut[: len(prior)]), :, ::-1]
        x = image_to_tensor(image)
        if prior is not None:
            x = torch.cat([x, torch.from_numpy(np.ascontiguousarray(prior))], dim=0)
        return x, torch.from_numpy(target.astype(np.int64))


def _jitter(image, target, prior, rng):
    """Resize to JITTER_RATIO x S (bilinear; the target by :func:`resize_label_map`), crop S at random."""
    s = image.shape[0]
    big = int(round(s * JITTER_RATIO))
    y, x = rng.integers(0, big - s + 1, size=2)
    image = cv2.resize(image, (big, big), interpolation=cv2.INTER_LINEAR)[y:y + s, x:x + s]
    target = resize_label_map(target, (big, big))[y:y + s, x:x + s]
    if prior is not None:
        p = cv2.resize(prior.transpose(1, 2, 0), (big, big), interpolation=cv2.INTER_LINEAR)
        prior = np.ascontiguousarray(p.reshape(big, big, -1)[y:y + s, x:x + s].transpose(2, 0, 1))
    return image, target, prior
