"""The prior bank of labelled datasets on disk: read them (any layout) and build a
:class:`pipeline.priors.bank.PriorBank`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.formats.records import VAL_FRACTION, with_splits
from pipeline.priors.bank import PriorBank, PriorConfig
from pipeline.readers.layouts import iter_records


def bank_from_dataset(data: str | Path | Sequence[str | Path], split: str | None, config: PriorConfig,
                      label_set: str | None = None, report=None, val_fraction: float = VAL_FRACTION) -> PriorBank:
    """The prior bank of the labelled people with keypoints of one or several datasets.

    Args:
        data: dataset folder or annotation file (any supported layout), or several (e.g.
            the refiner's training data and people corrected with ``import-labels``).
        split: use only this split (None: every labelled person); a dataset that defines
            no split gets the hashed one of :func:`pipeline.formats.records.with_splits`
            (``val_fraction`` val), as the refiner trained on it did.
        config: crop frame and prior settings.
        label_set: read the data in this label set (a refiner's: ccp8, ccp59, ...);
            None: the reader's default.
        report: a :class:`pipeline.formats.records.ReadReport` collecting skipped bad items.
    Raises: ConfigError when a dataset has no labelled person with keypoints (in
    ``split``) or labels in another label set."""
    options = {"label_set": label_set} if label_set else {}
    recs = []
    for folder in [data] if isinstance(data, (str, Path)) else data:
        labelled = with_splits([r for r in iter_records(folder, skip_bad=True, report=report, **options)
                                if r.label_map is not None and r.keypoints is not None], val_fraction)
        mine = [r for r in labelled if split is None or r.split == split]
        if not mine:
            raise ConfigError(f"{folder}: no labelled people with keypoints" + (f" in split {split!r}" if split else ""))
        if label_set and mine[0].label_set != label_set:
            raise ConfigError(f"{folder}: labels are {mine[0].label_set}, the refiner works in {label_set}")
        recs += mine
    return PriorBank.from_records(recs, config)
