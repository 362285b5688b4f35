"""Run with the Python of a Datumaro environment (not this project's): read an export with
Datumaro and save every mask it finds, for tests/test_datumaro.py to compare with ours.

    python datumaro_masks.py FORMAT PATH OUT.npz

OUT.npz holds one bool (H, W) array per item and label, named ``<item id>|<label name>``
(several masks of one label in an item are merged).  Exit 1 with Datumaro's deepest error
in one line when it cannot read PATH.
"""
import sys

import numpy as np


def main(fmt: str, path: str, out: str) -> int:
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    try:
        dataset = dm.Dataset.import_from(path, fmt)
    except Exception as e:  # noqa: BLE001 - report Datumaro's own reason
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        print(f"datumaro could not read {path} as {fmt}: {cause}", file=sys.stderr)
        return 1
    names = [c.name for c in dataset.categories()[AnnotationType.label]]
    masks: dict[str, np.ndarray] = {}
    for item in dataset:
        for ann in item.annotations:
            if ann.type != AnnotationType.mask:
                continue
            key = f"{item.id}|{names[ann.label]}"
            mask = np.asarray(ann.image, bool)
            masks[key] = masks[key] | mask if key in masks else mask
    np.savez_compressed(out, **masks)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
