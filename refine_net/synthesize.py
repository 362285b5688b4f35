"""Label synthesis for keypoint-only people (Fang et al., CVPR 2018, section 5): the
refiner's inference over a dataset.

For every image: each person's crop -> part-level prior from the k nearest labelled
poses (deterministic) -> refinement U-Net -> class probabilities, pasted back into the
full image (overlaps go to the most confident person, :mod:`pipeline.priors.paste`).
The output folder is the synthesized-dataset format of :mod:`pipeline.formats.synth_dataset`:
each image's label PNG, optional probabilities and item record are written atomically
(record last), a rerun skips images whose record carries the run's fingerprint, and
:meth:`Synthesizer.finalize` rebuilds the summary files from the records.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.formats.files import file_sha256
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.priors.bank import PriorBank, PriorConfig, crop_image, crop_mask
from pipeline.readers.prior_bank import bank_from_dataset
from pipeline.priors.partial import complete_pose, hidden_in_image, hidden_region, is_partial, partial_neighbours
from pipeline.priors.partition import masked_morph_prior, partition_person, partition_prior
from pipeline.priors.paste import NO_OWNER, paste_people
from pipeline.priors.pose import apply_affine, keypoint_problem, person_box, torso_problem
from pipeline.priors.pose_index import Neighbours
from pipeline.priors.support import apply_person_masks, clip_to_support, prior_support
from pipeline.formats.person_mask import person_mask_source, read_other_people, read_person_mask
from pipeline.formats.records import PersonRecord
from pipeline.skeleton import JOINT_NAMES
from pipeline.formats.item_folder import item_name, remove_partial_files, write_item
from pipeline.formats.synth_dataset import (SynthDatasetInfo, SynthItem, SynthPerson, finalize_dataset, item_intact,
                                           person_class_rles, write_label_file)
from refine_net.checkpoint import Checkpoint, load_checkpoint
from refine_net.config import SynthConfig
from refine_net.dataset import image_to_tensor
from refine_net.model import RefineConfig
from refine_net.onnx_export import OnnxModule, refiner_onnx
from refine_net.train import load_refiner, prior_config, training_config


def synthesis_prior_config(ckpt: Checkpoint, k: int) -> PriorConfig:
    """The prior configuration of synthesis: the refiner's crop frame with ``k`` neighbours."""
    prior = prior_config(ckpt)
    return PriorConfig(size=prior.size, margin=prior.margin, k=k, min_shared=prior.min_shared)


def bank_data_of(cfg: SynthConfig, ckpt: Checkpoint) -> str:
    """The bank of a synthesis run: ``cfg.bank_data``, else the refiner's training data
    (stored as an absolute path in the checkpoint)."""
    return cfg.bank_data or ckpt.network["bank_data"]


def bank_folders(cfg: SynthConfig, ckpt: Checkpoint) -> list[str]:
    """Every labelled dataset of a synthesis run's bank: :func:`bank_data_of`, then
    ``cfg.extra_bank_data``."""
    return [bank_data_of(cfg, ckpt), *cfg.extra_bank_data]


def build_bank(cfg: SynthConfig, ckpt: Checkpoint) -> PriorBank:
    """The prior bank of a synthesis run, read in the refiner's label set.  Raises
    ConfigError when a bank dataset has no labelled person with keypoints."""
    return bank_from_dataset(bank_folders(cfg, ckpt), cfg.bank_split, synthesis_prior_config(ckpt, cfg.k),
                             label_set=ckpt.label_set, val_fraction=training_config(ckpt).val_fraction)


#: options added after format version 1 was released, with their "off" values
LATER_OPTIONS = {"support_dilation": None, "min_pixel_confidence": 0.0, "relabel": False, "extra_bank_data": (),
                 "person_masks": None, "person_mask_mode": "fill", "partial_bodies": False, "mirror_average": False,
                 "engine": "torch"}


def mirrored(x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """The mirror image of a batch (B, K, S, S), any dtype: columns reversed and channel
    ``k`` taken from channel ``channels[k]`` (int64 (K,), a permutation that swaps each
    left/right class pair, :meth:`pipeline.labels.LabelSet.flip_lut`), so that a left arm's
    channel stays the left arm's.  Its own inverse when ``channels`` is an involution."""
    return x.flip(-1)[:, channels]


def people_by_image(people: Iterable[PersonRecord]) -> list[tuple[Path, list[PersonRecord]]]:
    """``people`` grouped by their image's resolved path, images in first-seen order (what
    the labellers' ``process_images`` take)."""
    by_image: OrderedDict[Path, list[PersonRecord]] = OrderedDict()
    for rec in people:
        by_image.setdefault(Path(rec.image_path).resolve(), []).append(rec)
    return list(by_image.items())


@dataclass
class _Pending:
    """One image between reading and the refiner: its record, and per person reaching the
    refiner the crop box, the input (3 + C, S, S), the prior (C, S, S) or None, the
    person mask bool (H, W) or None and, for a partial body, its hidden region bool (S, S)
    (else None); ``others`` bool (H, W) the pixels of the image's people without a record
    (crowds), or None."""

    item: SynthItem
    boxes: list = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)
    priors: list[np.ndarray | None] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    hidden: list[np.ndarray | None] = field(default_factory=list)
    others: np.ndarray | None = None


class Synthesizer:
    """Holds the refiner and the prior bank; :meth:`run` labels people image by image."""

    def __init__(self, cfg: SynthConfig, bank: PriorBank | None = None):
        """Load the refiner (on ``cfg.device``; with ``cfg.engine == "onnx"`` its ONNX export,
        :func:`refine_net.onnx_export.refiner_onnx`, run by ONNX Runtime on the CPU); build
        the prior bank unless a prebuilt ``bank`` (same data, split and crop size, see
        :func:`build_bank`) is given.
        Raises CheckpointError when ``cfg.checkpoint`` is not a refiner checkpoint;
        ConfigError when the ONNX engine is asked for and onnx / ONNX Runtime is missing."""
        self.cfg = cfg
        self.checkpoint_sha256 = file_sha256(cfg.checkpoint)
        if cfg.engine == "onnx":
            ckpt = load_checkpoint(cfg.checkpoint, kind="refiner")
            self.model = OnnxModule(refiner_onnx(cfg.checkpoint, self.checkpoint_sha256), threads=cfg.threads_per_task)
            self.device = torch.device("cpu")
            self.use_prior = RefineConfig(**ckpt.network["refine"]).use_prior
        else:
            self.model, ckpt = load_refiner(cfg.checkpoint, cfg.device)
            self.device = next(self.model.parameters()).device
            self.use_prior = self.model.cfg.use_prior
        self.label_set = ckpt.label_set
        #: the refiner's input prior (:class:`refine_net.config.RefinerTrainConfig` ``prior_source``)
        self.prior_source = ckpt.network.get("prior_source", "morph")
        if cfg.labels and cfg.labels != self.label_set:
            raise ConfigError(f"--labels {cfg.labels}: the refiner {cfg.checkpoint} labels {self.label_set}")
        self.prior_cfg = synthesis_prior_config(ckpt, cfg.k)
        bank_data = bank_data_of(cfg, ckpt)
        self.bank = bank if bank is not None else build_bank(cfg, ckpt)
        keyed = {"ckpt": self.checkpoint_sha256, "bank": str(bank_data), "bank_split": cfg.bank_split,
                 "bank_size": len(self.bank.exemplars), "k": cfg.k, "probs": cfg.save_probabilities,
                 "keypoint_margin": cfg.keypoint_margin, "max_bone_ratio": cfg.max_bone_ratio}
        # later options enter only when set, so that datasets made before them stay valid
        keyed.update({name: getattr(cfg, name) for name, unset in LATER_OPTIONS.items()
                      if getattr(cfg, name) != unset})
        self.fingerprint = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
        classes = len(LABEL_SETS[self.label_set].names)
        #: class channel of a mirrored probability map (or prior) that each class channel reads
        self.mirror_classes = torch.from_numpy(LABEL_SETS[self.label_set].flip_lut()[:classes].astype(np.int64))
        #: the same for the refiner input: RGB, then the prior's classes when the refiner reads a prior
        self.mirror_channels = torch.cat([torch.arange(3), 3 + self.mirror_classes] if self.use_prior
                                         else [torch.arange(3)])

    def _match(self, rec: PersonRecord, image_path: Path, image_size: tuple[int, int],
               ahead: dict | None = None) -> tuple[SynthPerson, tuple | None]:
        """The person's record and, when usable, (box, crop keypoints, neighbour rows,
        hidden region bool (S, S) or None).  Keypoints that do not fit the image or form
        an implausible pose are skipped (:func:`pipeline.priors.pose.keypoint_problem`);
        with ``partial_bodies`` a person without pelvis or thorax is matched on the
        joints it has and completed from its neighbours (:mod:`pipeline.priors.partial`)."""
        person = SynthPerson(rec.person_id, "skipped", keypoints=rec.keypoints, split=rec.split,
                             source=rec.source_format,
                             person_mask=None if self.cfg.person_mask_mode == "off" else person_mask_source(rec))
        problem = "no keypoints" if rec.keypoints is None else keypoint_problem(
            rec.keypoints, image_size, self.cfg.keypoint_margin, self.cfg.max_bone_ratio,
            allow_partial=self.cfg.partial_bodies)
        if not problem and rec.num_keypoints < self.prior_cfg.min_shared:
            problem = f"only {rec.num_keypoints} keypoints (< {self.prior_cfg.min_shared})"
        if not problem and self.prior_source != "morph" and person_mask_source(rec) is None:
            problem = (f"no person mask (this refiner's prior, {self.prior_source}, partitions the person's own mask: "
                       "a COCO segmentation, or BlazePose's via --person-masks)")
        pose, estimated, hidden = rec.keypoints, None, None
        if not problem and is_partial(pose):
            problem, pose, nb, estimated = self._complete(pose)
        if not problem:
            box = person_box(pose, self.prior_cfg.margin, path=image_path)
            kp = apply_affine(pose, box.crop_from_image(self.prior_cfg.size))
            if estimated is not None:
                hidden = hidden_region(kp, estimated, self.prior_cfg.size)
                person.estimated_joints = [JOINT_NAMES[j] for j in np.flatnonzero(estimated)]
            else:
                nb = self._neighbours(rec, kp, ahead)
                if nb.ids[0, 0] < 0 and self.prior_source != "partition":     # the partition needs no neighbour
                    problem = nb.reasons[0] or "no neighbour"
        if problem:
            person.reason = problem
            return person, None
        ids = nb.ids[0][nb.ids[0] >= 0]
        person.status, person.box = "ok", tuple(float(v) for v in box)
        person.neighbours = [self.bank.exemplars[i].person_id for i in ids]
        person.neighbour_flipped = [bool(self.bank.exemplars[i].flipped) for i in ids]
        person.distances = [round(float(d), 5) for d in nb.distances[0][: len(ids)]]
        return person, (box, kp, ids, hidden)

    def _query_ahead(self, images: Sequence[tuple[Path, list[PersonRecord]]]) -> dict[int, tuple]:
        """Query the bank once for the whole-body people of ``images`` (one batched
        :meth:`PoseIndex.query`, several times cheaper per person than one query each):
        ``{id(record): (crop keypoints float32 (16, 3), Neighbours of that person)}``, from
        which :meth:`_match` takes each person's row.  The crop keypoints are those
        :meth:`_match` computes, so the neighbours are the same.  A plain return value, not
        state: the flow's worker threads share one Synthesizer."""
        recs, kps = [], []
        for _, people in images:
            for rec in people:
                if rec.keypoints is None or is_partial(rec.keypoints) or torso_problem(rec.keypoints):
                    continue            # matched on its own joints (or skipped) by _match
                try:
                    box = person_box(rec.keypoints, self.prior_cfg.margin)
                except DataError:
                    continue
                recs.append(rec)
                kps.append(apply_affine(rec.keypoints, box.crop_from_image(self.prior_cfg.size)))
        if not recs:
            return {}
        nb = self.bank.index.query(np.stack(kps), self.cfg.k)
        return {id(rec): (kp, Neighbours(nb.ids[i: i + 1], nb.distances[i: i + 1], nb.reasons[i: i + 1]))
                for i, (rec, kp) in enumerate(zip(recs, kps))}

    def _neighbours(self, rec: PersonRecord, kp: np.ndarray, ahead: dict | None) -> Neighbours:
        """The bank neighbours of one person with crop keypoints ``kp`` (16, 3): from
        ``ahead`` (:meth:`_query_ahead`) when it queried these keypoints, else one query."""
        found = (ahead or {}).get(id(rec))
        if found is not None and np.array_equal(found[0], kp, equal_nan=True):
            return found[1]
        return self.bank.index.query(kp, self.cfg.k)

    def _complete(self, keypoints: np.ndarray) -> tuple[str, np.ndarray, Neighbours, np.ndarray]:
        """A partial body's neighbours (matched on its own joints) and its pose completed
        from them (:mod:`pipeline.priors.partial`): (problem or "", keypoints float32
        (16, 3) in image pixels, :class:`Neighbours`, bool (16,) estimated joints)."""
        nb = partial_neighbours(self.bank.index, keypoints, self.cfg.k)
        ids = nb.ids[0][nb.ids[0] >= 0]
        if not len(ids):
            return nb.reasons[0], keypoints, nb, np.zeros(len(keypoints), dtype=bool)
        pose, estimated = complete_pose(keypoints, np.stack([self.bank.exemplars[i].keypoints for i in ids]))
        left = torso_problem(pose)
        return (f"partial body not completed: {left}" if left else ""), pose, nb, estimated

    def _prepare(self, image_path: Path, people: list[PersonRecord], ahead: dict | None = None) -> _Pending:
        """Read one image and build the refiner input of each usable person (crop +
        prior); people whose pose is unusable are skipped with their reason.  Raises
        DataError for a corrupt image."""
        image = files.read_image(image_path)
        matched = [self._match(rec, image_path, image.shape[:2], ahead) for rec in people]
        pending = _Pending(SynthItem(str(image_path), tuple(image.shape[:2]), [p for p, _ in matched]),
                           others=read_other_people(people[0], image.shape[:2]) if people else None)
        for rec, m in ((rec, m) for rec, (_, m) in zip(people, matched) if m is not None):
            box, kp, ids, hidden = m
            x = image_to_tensor(crop_image(image, box, self.prior_cfg.size))
            mask = read_person_mask(rec, image.shape[:2]) if self.prior_source != "morph" or \
                self.cfg.person_mask_mode != "off" else None
            prior = None
            if self.use_prior or self.cfg.support_dilation is not None:
                prior = self._prior(kp, ids, mask, box)
            if self.use_prior:
                x = torch.cat([x, torch.from_numpy(prior)], dim=0)
            pending.boxes.append(box)
            pending.inputs.append(x)
            pending.priors.append(prior)
            pending.masks.append(None if self.cfg.person_mask_mode == "off" else mask)
            pending.hidden.append(hidden)
        return pending

    def _prior(self, kp: np.ndarray, ids: np.ndarray, mask: np.ndarray | None, box) -> np.ndarray:
        """float32 (C, S, S) prior of one person from the refiner's prior source: the morph
        of its bank neighbours ``ids``, the partition of its mask (bool (H, W)) cropped by
        ``box``, or both (:mod:`pipeline.priors.partition`); ``kp`` in crop pixels."""
        if self.prior_source == "morph":
            return self.bank.prior(kp, ids)
        crop = crop_mask(mask, box, self.prior_cfg.size)
        part = partition_person(crop, kp).label_map
        if self.prior_source == "partition":
            return partition_prior(part, self.bank.num_classes)
        return masked_morph_prior(self.bank.prior(kp, ids), crop, part)

    @torch.no_grad()
    def _refine(self, inputs: list[torch.Tensor]) -> list[np.ndarray]:
        """Class probabilities, float32 (C, S, S) each, of the refiner inputs (3 + C, S, S),
        ``cfg.batch_size`` people per forward pass."""
        probs: list[np.ndarray] = []
        def softmax(x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["parsing"].softmax(1)

        for i in range(0, len(inputs), self.cfg.batch_size):
            x = torch.stack(inputs[i: i + self.cfg.batch_size]).to(self.device)
            p = softmax(x)
            if self.cfg.mirror_average:
                p = (p + mirrored(softmax(mirrored(x, self.mirror_channels)), self.mirror_classes)) / 2
            probs.extend(p.cpu().numpy())
        return probs

    def _finish(self, pending: _Pending, probs: list[np.ndarray]) -> tuple[SynthItem, np.ndarray | None, list]:
        """Paste one image's refined people into its label map and fill their records.

        Returns: (item record, uint8 (H, W) label map or None when nobody is labelled (255
        on a person's pixels below ``min_pixel_confidence`` and on the hidden region of a
        partial body), float32 (C, S, S) crop
        probabilities of every person that reached the refiner, in order, a person
        skipped afterwards for an empty label included)."""
        item = pending.item
        if not probs:
            return item, None, []
        if self.cfg.support_dilation is not None:
            probs = [clip_to_support(p, prior_support(q, self.cfg.support_dilation))
                     for p, q in zip(probs, pending.priors)]
        pasted = paste_people(item.image_size, probs, pending.boxes)
        if self.cfg.person_mask_mode != "off":
            apply_person_masks(pasted.label_map, pasted.owner, pending.masks, self.cfg.person_mask_mode == "fill")
        if pending.others is not None:      # crowds and unkeyed people: their parts are unknown, not background
            pasted.label_map[pending.others & (pasted.label_map == 0)] = IGNORE
        uncertain = (pasted.owner != NO_OWNER) & (pasted.confidence < self.cfg.min_pixel_confidence)
        pasted.label_map[uncertain] = IGNORE
        for j, (hidden, box) in enumerate(zip(pending.hidden, pending.boxes)):
            if hidden is not None:          # a partial body: where its unseen joints are, nothing was observed
                unseen = hidden_in_image(hidden, box.crop_from_image(hidden.shape[0]), item.image_size)
                pasted.label_map[unseen & ((pasted.owner == j) | (pasted.label_map == 0))] = IGNORE
        for j, person in enumerate([p for p in item.persons if p.status == "ok"]):
            mine = pasted.owner == j
            person.pixels = int((mine & (pasted.label_map > 0) & (pasted.label_map != IGNORE)).sum())
            if person.pixels == 0:          # nothing of this person was labelled: not a label
                person.status, person.reason = "skipped", "empty label (0 foreground pixels)"
                continue
            person.mean_max_prob = round(float(pasted.confidence[mine].mean()), 5)
            person.rle = person_class_rles(pasted.label_map, mine)
        if not item.labelled:
            return item, None, []
        return item, pasted.label_map, probs

    def label_image(self, image_path: str | Path, people: list[PersonRecord]) -> tuple[SynthItem, np.ndarray | None]:
        """One image's people labelled in memory, nothing written (the ML backend's
        prediction): (item record, uint8 (H, W) label map of the refiner's label set, or
        None when nobody is labelled).  Raises DataError for a corrupt image."""
        pending = self._prepare(Path(image_path), people)
        item, label_map, _ = self._finish(pending, self._refine(pending.inputs))
        item.fingerprint = self.fingerprint
        return item, label_map

    def run(self, people: Iterable[PersonRecord], out_dir: str | Path,
            progress: Callable[[str], None] | None = None, stop_after: int | None = None) -> dict:
        """Label every person of ``people`` (grouped by image) into ``out_dir``.

        Items already done with the same fingerprint are skipped.  ``stop_after`` stops
        after that many newly processed items (for tests of interruption).
        Returns counts: images done now, reused (already done), failed."""
        out = Path(out_dir)
        remove_partial_files(out)
        images = people_by_image(people)
        if stop_after is not None:
            undone = [i for i, (path, _) in enumerate(images) if not self.is_done(out, path)]
            images = images[: undone[stop_after]] if len(undone) > stop_after else images
        statuses = self.process_images(images, out, progress=progress)
        return {s: statuses.count(s) for s in ("images_done", "images_reused", "images_failed")}

    def is_done(self, out: Path, image_path: Path) -> bool:
        """True when ``out`` holds this image's item record with this run's fingerprint and
        its label files are intact (a deleted, changed or foreign file is redone)."""
        return item_intact(out, image_path, self.fingerprint)

    def process_images(self, images: Sequence[tuple[Path, list[PersonRecord]]], out: Path, force: bool = False,
                       progress: Callable[[str], None] | None = None) -> list[str]:
        """Label the people of ``images`` ([(image path, its people)]) into ``out``: label
        PNG, optional probabilities, then the item record, each written atomically, image
        by image.  The refiner sees ``cfg.batch_size`` people per forward pass, gathered
        across images; at most that many people (plus one image's) wait in memory.

        Returns one status per image, in order: ``images_reused`` when already done
        (unless ``force``), ``images_failed`` for an unreadable image (recorded with its
        error), else ``images_done``.  ``progress`` gets each image's item name once its
        files are written."""
        statuses: list[str | None] = [None] * len(images)
        waiting: list[tuple[int, _Pending]] = []
        todo = [i for i, (image_path, _) in enumerate(images) if force or not self.is_done(out, image_path)]
        ahead = self._query_ahead([images[i] for i in todo])

        def flush() -> None:
            probs = self._refine([x for _, p in waiting for x in p.inputs])
            start = 0
            for i, p in waiting:
                self._write(out, *self._finish(p, probs[start: start + len(p.inputs)]))
                start += len(p.inputs)
                statuses[i] = "images_done"
                if progress:
                    progress(item_name(images[i][0]))
            waiting.clear()

        todo = set(todo)
        for i, (image_path, recs) in enumerate(images):
            if i not in todo:
                statuses[i] = "images_reused"
            else:
                try:
                    waiting.append((i, self._prepare(image_path, recs, ahead)))
                except DataError as e:
                    self._write(out, SynthItem(str(image_path), (0, 0), error=str(e), persons=[
                        SynthPerson(r.person_id, "skipped", split=r.split, source=r.source_format, reason=e.problem)
                        for r in recs]), None, [])
                    statuses[i] = "images_failed"
            if progress and statuses[i] is not None:
                progress(item_name(image_path))
            if sum(len(p.inputs) for _, p in waiting) >= self.cfg.batch_size:
                flush()
        flush()
        return statuses

    def _write(self, out: Path, item: SynthItem, label_map: np.ndarray | None, probs: list) -> None:
        """One image's label PNG and probabilities, then its item record (all atomic)."""
        name = item_name(item.image)
        item.fingerprint = self.fingerprint
        if label_map is not None:
            write_label_file(out, item, label_map, LABEL_SETS[self.label_set].palette)
            if self.cfg.save_probabilities and probs:
                item.probs = f"probs/{name}.npz"
                with files.atomic_path(out / item.probs) as tmp:
                    np.savez_compressed(tmp, probs=np.round(np.stack(probs) * 255).astype(np.uint8))
        write_item(out, item)

    def dataset_info(self) -> SynthDatasetInfo:
        """``dataset.json`` of this run's output."""
        return SynthDatasetInfo(label_set=self.label_set, refiner_checkpoint=str(Path(self.cfg.checkpoint).resolve()),
                                refiner_sha256=self.checkpoint_sha256,
                                synth_config=self.cfg.model_dump(mode="json", exclude={"out"}),
                                fingerprint=self.fingerprint)

    def finalize(self, out_dir: str | Path) -> dict:
        """Rebuild people.json, annotations.json, manifest.parquet and dataset.json from
        the item records (:func:`pipeline.formats.synth_dataset.finalize_dataset`); returns totals."""
        return finalize_dataset(out_dir, self.dataset_info())
