"""Dataset manifests: one row per person (pandas, Parquet on disk) and their summaries."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.formats.files import atomic_path
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.formats.records import PersonRecord

COLUMNS = ("person_id", "image_path", "image_h", "image_w", "source_format", "split",
           "label_set", "has_labels", "num_keypoints", "classes_present", "class_pixels")


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive on Windows
        return str(path)


def manifest_row(rec: PersonRecord, root: Path | None = None) -> dict:
    """One manifest row: paths relative to ``root``, ``classes_present`` (sorted ids present
    in the label map, 255 excluded) and ``class_pixels`` (pixel count per class id of the
    label set, 255 excluded); both empty for keypoint-only people."""
    classes, pixels = [], []
    if rec.label_map is not None:
        n = LABEL_SETS[rec.label_set].num_classes if rec.label_set in LABEL_SETS else 256
        counts = np.bincount(rec.label_map[rec.label_map != IGNORE].ravel(), minlength=n)[:n]
        classes = np.flatnonzero(counts).tolist()
        pixels = counts.astype(np.int64).tolist()
    return {"person_id": rec.person_id, "image_path": _relative(rec.image_path, root),
            "image_h": rec.image_size[0], "image_w": rec.image_size[1],
            "source_format": rec.source_format, "split": rec.split, "label_set": rec.label_set,
            "has_labels": rec.label_map is not None, "num_keypoints": rec.num_keypoints,
            "classes_present": classes, "class_pixels": pixels}


def build_manifest(records: Iterable[PersonRecord], root: str | Path | None = None,
                   progress: Callable[[PersonRecord], None] | None = None) -> pd.DataFrame:
    """A DataFrame with :data:`COLUMNS`, one row per record, streaming (label maps are not
    kept).  ``progress`` is called once per record (for a progress bar)."""
    root = None if root is None else Path(root)
    rows = []
    for rec in records:
        rows.append(manifest_row(rec, root))
        if progress is not None:
            progress(rec)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest as Parquet, atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


class ManifestWriter:
    """A manifest written as it is made: rows go to Parquet in row groups of ``rows_per_group``
    under the fixed ``schema`` (pyarrow), into a temporary file renamed to ``path`` when the
    ``with`` block ends without an error (removed when it raises).  Memory: one row group."""

    def __init__(self, path: str | Path, schema: pa.Schema, rows_per_group: int = 10_000):
        self.path, self.schema, self.rows_per_group = Path(path), schema, rows_per_group
        self.rows: list[dict] = []

    def __enter__(self) -> ManifestWriter:
        self._atomic = atomic_path(self.path)
        self._writer = pq.ParquetWriter(self._atomic.__enter__(), self.schema)
        return self

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows = []

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._flush()
        finally:
            self._writer.close()
            self._atomic.__exit__(*exc)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`."""
    return pd.read_parquet(path)


@dataclass(frozen=True)
class Summary:
    """Counts and per-class pixel shares of a manifest.

    ``class_shares`` maps label set -> [(class name, share of labelled pixels in [0, 1])].
    ``unusable`` counts people with neither a label map nor keypoints.
    """

    images: int
    people: int
    labelled: int
    keypoint_only: int
    unusable: int
    splits: dict
    class_shares: dict


def summarize(df: pd.DataFrame) -> Summary:
    """Summarise a manifest: images, people, labelled / keypoint-only people, splits and
    per-class pixel shares for each label set present."""
    labelled = df["has_labels"].astype(bool)
    with_kp = df["num_keypoints"] > 0
    shares = {}
    for name, group in df[labelled].groupby("label_set"):
        totals = np.sum(np.stack([np.asarray(v, dtype=np.int64) for v in group["class_pixels"]]), axis=0)
        names = LABEL_SETS[name].names if name in LABEL_SETS else tuple(map(str, range(len(totals))))
        denom = max(int(totals.sum()), 1)
        shares[name] = [(names[i], float(totals[i]) / denom) for i in range(len(totals))]
    splits = {str(k): int(v) for k, v in df["split"].fillna("none").value_counts().sort_index().items()}
    return Summary(images=int(df["image_path"].nunique()), people=len(df),
                   labelled=int(labelled.sum()), keypoint_only=int((~labelled & with_kp).sum()),
                   unusable=int((~labelled & ~with_kp).sum()), splits=splits, class_shares=shares)
