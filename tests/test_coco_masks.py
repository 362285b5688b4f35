"""COCO people are clipped and filled by their own annotation's instance mask, and the
synthesized records say which mask was used."""
import json

import numpy as np
from pycocotools import mask as mask_utils

from flows.synthesis import synthesize_labels
from pipeline.formats import files
from pipeline.formats.synth_dataset import read_items
from refine_net.config import SynthConfig


def test_coco_people_are_clipped_to_their_own_masks(prefect_harness, shared_data, checkpoint, tmp_path):
    data = shared_data / "mmpose" / "coco" / "test_coco.json"
    out = tmp_path / "synth"
    synthesize_labels(SynthConfig(checkpoint=str(checkpoint), data=str(data), out=str(out), keypoint_margin=2.0))
    doc = json.loads(data.read_text())
    anns = {f"{a['image_id']}/{a['id']}": a for a in doc["annotations"]}
    labelled = 0
    for item in read_items(out):
        label = files.read_label_png(out / item.label) if item.label else None
        masks = {}
        for p in item.persons:
            if p.status != "ok":
                continue
            assert p.person_mask == "annotation"
            a = anns[p.person_id]
            h, w = item.image_size
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)) \
                if isinstance(a["segmentation"], list) else a["segmentation"]
            masks[p.person_id] = mask_utils.decode(rle).astype(bool)
            labelled += 1
        if label is not None and masks:
            union = np.logical_or.reduce(list(masks.values()))
            assert not ((label > 0) & (label != 255) & ~union).any()      # nothing outside the annotated people
    assert labelled >= 5
    people = [p for p in json.loads((out / "people.json").read_text()) if p.get("status") != "skipped"]
    assert people and all(p["meta"]["person_mask"] == "annotation" for p in people)
