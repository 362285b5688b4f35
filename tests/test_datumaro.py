"""Datumaro, the dataset library inside CVAT, reads our CVAT, VOC and COCO exports, and
every mask it finds equals our label map pixel for pixel.

Datumaro 1.13 pins numpy, OpenCV and pandas apart from this project, so it runs from a
virtual environment of its own: set ``PARTSYNTH_DATUMARO_PYTHON`` to that environment's
``python`` (``.ci/run`` builds one); the test skips when it is unset.  Datumaro reads
images only with the photos beside the annotations (``--copy-images``), and a COCO file
only as ``annotations/instances_<subset>.json`` beside ``images/``, the layout of COCO's own
release: the test moves our ``annotations.json`` there, as a user would.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.annotation import coco, cvat, voc
from pipeline.annotation.common import Selection, select_images
from pipeline.labels import IGNORE, LABEL_SETS

PYTHON = os.environ.get("PARTSYNTH_DATUMARO_PYTHON")
pytestmark = pytest.mark.skipif(not PYTHON, reason="no Datumaro environment (set PARTSYNTH_DATUMARO_PYTHON)")

SCRIPT = Path(__file__).with_name("datumaro_masks.py")


def datumaro_masks(fmt: str, path: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"{fmt}.npz"
    done = subprocess.run([PYTHON, str(SCRIPT), fmt, str(path), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as masks:
        return {k: masks[k] for k in masks.files}


@pytest.mark.parametrize("fmt", ["cvat", "voc", "coco"])
def test_datumaro_reads_our_export_mask_for_mask(fmt, synth, tmp_path):
    out = tmp_path / fmt
    {"cvat": cvat.export_cvat, "voc": voc.export_voc, "coco": coco.export_coco}[fmt](
        synth, out, Selection(copy_images=True))
    if fmt == "coco":
        (out / "annotations").mkdir()
        shutil.move(out / "annotations.json", out / "annotations" / "instances_default.json")
    found = datumaro_masks({"cvat": "cvat", "voc": "voc_segmentation", "coco": "coco_instances"}[fmt], out, tmp_path)
    info, images, _ = select_images(synth, Selection())
    names = LABEL_SETS[info.label_set].names
    checked = 0
    for image in images:
        ours = image.label_map()
        present = [c for c in np.unique(ours) if c != 0 and (c != IGNORE or fmt != "voc")]
        for c in present:
            name = "ignore" if c == IGNORE else names[c]
            key = f"{image.stem}|{name}"
            assert key in found, f"Datumaro found no {name!r} mask in {image.name}"
            assert np.array_equal(found.pop(key), ours == c), f"{image.name}: {name}"
            checked += 1
        if fmt == "voc":                       # VOC's masks include the background class
            assert np.array_equal(found.pop(f"{image.stem}|background"), ours == 0)
    assert checked >= len(images) and not found, sorted(found)[:5]
