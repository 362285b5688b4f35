"""Body-part labels without a refiner: every keypoint person's own mask partitioned by its
skeleton (:mod:`pipeline.priors.partition`), written in the synthesized-dataset format
(:mod:`pipeline.formats.synth_dataset`) exactly as :class:`refine_net.synthesize.Synthesizer`
writes it, so that inspection, export, import and parser training read it the same way.

``partsynth synthesize --labels pascal6 --data COCO.json`` runs it: COCO's people bring
their own instance masks; people read from a keypoints folder (``partsynth keypoints``) or
matched to one with ``--person-masks`` bring BlazePose's.  A person without a mask is
skipped with its reason (no label is guessed for it); crowd regions and people without
enough keypoints are ignore (255) in the label map, not background.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.formats import files
from pipeline.formats.item_folder import item_name, remove_partial_files, write_item
from pipeline.formats.person_mask import person_mask_source, read_other_people, read_person_mask
from pipeline.formats.records import PersonRecord
from pipeline.formats.synth_dataset import (SynthDatasetInfo, SynthItem, SynthPerson, finalize_dataset, item_intact,
                                           person_class_rles, write_label_file)
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.priors.partition import partition_people
from pipeline.priors.pose import keypoint_problem
from refine_net.config import SynthConfig
from refine_net.synthesize import people_by_image

#: what ``dataset.json`` names as the labeller (in place of a refiner checkpoint's hash)
LABELLER = "partition-v1"
LABEL_SET = "pascal6"


class PartitionLabeller:
    """Labels people image by image from their masks and keypoints; the interface of
    :class:`refine_net.synthesize.Synthesizer` (``fingerprint``, :meth:`process_images`,
    :meth:`run`, :meth:`is_done`, :meth:`finalize`)."""

    def __init__(self, cfg: SynthConfig):
        self.cfg = cfg
        self.label_set = LABEL_SET
        self.checkpoint_sha256 = LABELLER
        keyed = {"labeller": LABELLER, "keypoint_margin": cfg.keypoint_margin, "max_bone_ratio": cfg.max_bone_ratio,
                 "relabel": cfg.relabel, "person_masks": cfg.person_masks}
        self.fingerprint = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]

    def _problem(self, rec: PersonRecord, image_size: tuple[int, int]) -> str:
        if rec.keypoints is None:
            return "no keypoints"
        problem = keypoint_problem(rec.keypoints, image_size, self.cfg.keypoint_margin, self.cfg.max_bone_ratio,
                                   allow_partial=True)
        if problem:
            return problem
        if person_mask_source(rec) is None:
            return ("no person mask (the partition labeller needs one: a COCO segmentation, or BlazePose's from "
                    "partsynth keypoints via --person-masks)")
        return ""

    def label_image(self, image_path: Path, people: list[PersonRecord]) -> tuple[SynthItem, np.ndarray | None]:
        """One image's item record and uint8 (H, W) ``pascal6`` label map (None when nobody
        was labelled).  Raises DataError for an unreadable image or mask."""
        size = files.image_size(image_path)
        persons, masks, kps, usable = [], [], [], []
        for rec in people:
            person = SynthPerson(rec.person_id, "skipped", keypoints=rec.keypoints, split=rec.split,
                                 source=rec.source_format, person_mask=person_mask_source(rec))
            person.reason = self._problem(rec, size)
            mask = None if person.reason else read_person_mask(rec, size)
            if mask is not None and not mask.any():
                person.reason, mask = "empty person mask", None
            if mask is not None:
                masks.append(mask)
                kps.append(rec.keypoints)
                usable.append(person)
            persons.append(person)
        item = SynthItem(str(image_path), size, persons)
        if not usable:
            return item, None
        image = partition_people(masks, kps)
        label_map = image.label_map
        others = read_other_people(people[0], size)
        if others is not None:
            label_map[others & (label_map == 0)] = IGNORE
        for j, (person, part) in enumerate(zip(usable, image.people)):
            mine = image.owner == j
            person.pixels = int((mine & (label_map > 0) & (label_map != IGNORE)).sum())
            person.notes = part.notes
            person.estimated_joints = part.estimated_joints
            if person.pixels == 0:
                person.reason = "empty label (no mask pixel reached by a part)"
                continue
            person.status = "ok"
            person.mean_max_prob = round(person.pixels / max(int(mine.sum()), 1), 5)
            person.rle = person_class_rles(label_map, mine)
        return item, (label_map if item.labelled else None)

    def run(self, people: Iterable[PersonRecord], out_dir: str | Path,
            progress: Callable[[str], None] | None = None) -> dict:
        """Label every person of ``people`` (grouped by image) into ``out_dir``; returns counts
        of images done now, reused (already done) and failed."""
        out = Path(out_dir)
        remove_partial_files(out)
        statuses = self.process_images(people_by_image(people), out, progress=progress)
        return {s: statuses.count(s) for s in ("images_done", "images_reused", "images_failed")}

    def is_done(self, out: Path, image_path: Path) -> bool:
        """True when ``out`` holds this image's record with this run's fingerprint and intact files."""
        return item_intact(out, image_path, self.fingerprint)

    def process_images(self, images: Sequence[tuple[Path, list[PersonRecord]]], out: Path, force: bool = False,
                       progress: Callable[[str], None] | None = None) -> list[str]:
        """Label ``images`` ([(image path, its people)]) into ``out``, the label PNG then the
        item record, each atomically; one status per image (``images_reused``,
        ``images_failed`` for an unreadable image or mask, recorded with its error, else
        ``images_done``)."""
        statuses = []
        for image_path, recs in images:
            if not force and self.is_done(out, image_path):
                statuses.append("images_reused")
            else:
                try:
                    item, label_map = self.label_image(image_path, recs)
                    statuses.append("images_done")
                except DataError as e:
                    item, label_map = SynthItem(str(image_path), (0, 0), error=str(e), persons=[
                        SynthPerson(r.person_id, "skipped", split=r.split, source=r.source_format, reason=e.problem)
                        for r in recs]), None
                    statuses.append("images_failed")
                item.fingerprint = self.fingerprint
                if label_map is not None:
                    write_label_file(out, item, label_map, LABEL_SETS[LABEL_SET].palette)
                write_item(out, item)
            if progress:
                progress(item_name(image_path))
        return statuses

    def dataset_info(self) -> SynthDatasetInfo:
        """``dataset.json`` of this run's output (no refiner: an empty checkpoint path)."""
        return SynthDatasetInfo(label_set=LABEL_SET, refiner_checkpoint="", refiner_sha256=LABELLER,
                                synth_config=self.cfg.model_dump(mode="json", exclude={"out"}),
                                fingerprint=self.fingerprint)

    def finalize(self, out_dir: str | Path) -> dict:
        """Rebuild the summary files from the item records; returns totals."""
        return finalize_dataset(out_dir, self.dataset_info())
