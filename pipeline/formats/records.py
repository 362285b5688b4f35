"""The one record type every dataset reader yields, and the skip-and-report helper."""
from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.errors import ConfigError, DataError

T = TypeVar("T")


@dataclass(eq=False)
class PersonRecord:
    """One person (or, for whole-image label sets, one image) of a dataset.

    Attributes:
        image_path: the image file.
        image_size: (h, w) of the image in pixels.
        person_id: unique within the dataset (``"0001"``, ``"785/1"`` for COCO image/ann).
        source_format: ``ccp``, ``lsp``, ``coco``, ``mpii``, ``pascal_part``, ``lip``,
            ``cihp`` or ``partsynth`` (the project's own folder layout).
        label_map: uint8 (h, w) class ids of ``label_set`` (0 background, 255 ignore), or
            None for keypoint-only people.
        keypoints: float32 (16, 3) canonical keypoints (see :mod:`pipeline.skeleton`), or
            None when the source has none for this person.
        keypoints_derived: bool (16,) marking derived joints, or None with no keypoints.
        label_set: name of the label set in :data:`pipeline.labels.LABEL_SETS`, or None.
        split: ``train``, ``val``, ``test`` or None when the source defines none.
        meta: provenance (annotation ids, raw confidences, fit residuals, ...).
    """

    image_path: Path
    image_size: tuple[int, int]
    person_id: str
    source_format: str
    label_map: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoints_derived: np.ndarray | None = None
    label_set: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.label_map is not None:
            if self.label_map.dtype != np.uint8 or self.label_map.ndim != 2:
                raise DataError(self.image_path, "label map must be uint8 (H, W), got "
                                                 f"{self.label_map.dtype} {self.label_map.shape}")
            if tuple(self.label_map.shape) != tuple(self.image_size):
                raise DataError(self.image_path, f"label map size {self.label_map.shape} differs "
                                                 f"from image size {tuple(self.image_size)}")
        if self.keypoints is not None and self.keypoints.shape != (16, 3):
            raise DataError(self.image_path, f"keypoints must be (16, 3), got {self.keypoints.shape}")

    @property
    def has_labels(self) -> bool:
        return self.label_map is not None

    @property
    def num_keypoints(self) -> int:
        """Number of present canonical joints (v > 0)."""
        if self.keypoints is None:
            return 0
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class ReadReport:
    """What a reader skipped and why.

    Attributes:
        skipped: (file, problem) for every bad item skipped with ``skip_bad=True``.
        counts: named counters of items left out by design (``crowd``, ``no_keypoints``, ...).
    """

    skipped: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{n} {k}" for k, n in sorted(self.counts.items())]
        if self.skipped:
            parts.append(f"{len(self.skipped)} bad items skipped")
        return ", ".join(parts) if parts else "nothing skipped"

    def records(self) -> list[dict]:
        """The skipped items as JSON-ready ``[{"file", "reason"}]`` (what runs save)."""
        return skip_records(self.skipped)

    def log_skipped(self, log: logging.Logger) -> None:
        """One warning per skipped item, naming its file and reason."""
        for file, problem in self.skipped:
            log.warning("skipped %s: %s", file, problem)

    def refuse(self, strict: bool) -> None:
        """With ``strict`` and anything skipped, raise ConfigError naming the count and the
        first skipped file and reason; otherwise do nothing (``--strict`` of the runs)."""
        if strict and self.skipped:
            file, reason = self.skipped[0]
            raise ConfigError(f"{len(self.skipped)} bad items skipped (--strict); the first: {file}: {reason}")


def skip_records(skipped) -> list[dict]:
    """(file, reason) pairs as JSON-ready ``[{"file", "reason"}]``."""
    return [{"file": f, "reason": r} for f, r in skipped]


def guard(fn: Callable[[], T], *, skip_bad: bool,
          report: ReadReport | None) -> T | None:
    """Run ``fn``; on DataError re-raise, or with ``skip_bad`` record it and return None."""
    try:
        return fn()
    except DataError as e:
        if not skip_bad:
            raise
        if report is not None:
            report.skipped.append((str(e.path), e.problem))
        return None


#: share of the people of data without splits that :func:`with_splits` makes val
VAL_FRACTION = 0.1


def with_splits(records: list[PersonRecord], val_fraction: float = VAL_FRACTION) -> list[PersonRecord]:
    """``records`` unchanged when any has the ``train`` split; otherwise (data that defines
    no split) each gets ``val`` when the first 8 hex digits of the SHA-1 of its person id,
    as a fraction of 16^8, fall below ``val_fraction``, else ``train``: the same people
    every run, whatever their order."""
    if any(r.split == "train" for r in records):
        return records
    def split(pid: str) -> str:
        return "val" if int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16) < val_fraction * 16 ** 8 else "train"
    return [replace(r, split=split(r.person_id)) for r in records]
