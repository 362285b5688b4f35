"""``synthesize --labels pascal6``: COCO people labelled from their own masks and skeletons."""
import json
import shutil

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipeline.formats import files
from pipeline.formats.records import ReadReport
from pipeline.formats.synth_dataset import read_items, read_synth_info
from pipeline.labels import IGNORE
from pipeline.readers.coco import read_coco
from refine_net.config import SynthConfig
from refine_net.partition_labeller import PartitionLabeller

from conftest import viton_subset


def coco_with_crowd(shared_data, tmp_path):
    """One fixture photo (640 x 425) with: its keypoint person and polygon; a crowd region
    (RLE, top-left corner); a person without keypoints (a polygon, top-right corner); a
    person with keypoints and no segmentation."""
    src = json.loads((shared_data / "mmpose" / "coco" / "test_coco.json").read_text())
    shutil.copy(shared_data / "mmpose" / "coco" / "000000000785.jpg", tmp_path)
    person = next(a for a in src["annotations"] if a["image_id"] == 785)
    crowd = np.zeros((425, 640), np.uint8)
    crowd[0:40, 0:60] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))
    unkeyed = [[600, 0, 639, 0, 639, 50, 600, 50]]
    doc = {"images": [{"id": 785, "file_name": "000000000785.jpg", "height": 425, "width": 640}],
           "categories": src["categories"],
           "annotations": [
               person,
               {"id": 2, "image_id": 785, "category_id": 1, "iscrowd": 1, "num_keypoints": 0, "bbox": [0, 0, 60, 40],
                "area": 2400, "segmentation": {"size": [425, 640], "counts": crowd_rle["counts"].decode()}},
               {"id": 3, "image_id": 785, "category_id": 1, "iscrowd": 0, "num_keypoints": 0, "bbox": [600, 0, 39, 50],
                "area": 1950, "segmentation": unkeyed, "keypoints": [0] * 51},
               dict(person, id=4, segmentation=[], area=0)]}
    path = tmp_path / "people.json"
    path.write_text(json.dumps(doc))
    return path, person


def test_crowds_unkeyed_people_and_maskless_people(shared_data, tmp_path):
    path, person = coco_with_crowd(shared_data, tmp_path)
    report = ReadReport()
    recs = list(read_coco(path, report=report))
    assert [r.person_id for r in recs] == ["785/442619", "785/4"]
    assert report.counts == {"crowd": 1, "few_keypoints": 1}
    out = tmp_path / "out"
    cfg = SynthConfig(labels="pascal6", data=str(path), out=str(out))
    counts = PartitionLabeller(cfg).run(recs, out)
    assert counts == {"images_done": 1, "images_reused": 0, "images_failed": 0}
    (item,) = read_items(out)
    ok, skipped = item.persons
    assert ok.status == "ok" and ok.person_mask == "annotation" and not ok.notes
    assert skipped.status == "skipped" and skipped.reason.startswith("no person mask")
    label = files.read_label_png(out / item.label)
    h, w = item.image_size
    mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(person["segmentation"], h, w))).astype(bool)
    fg = (label > 0) & (label != IGNORE)
    assert not (fg & ~mask).any()                                  # nothing outside the person's own mask
    assert fg[mask].mean() > 0.95                                  # nearly all of it given a part
    assert set(np.unique(label[fg])) == {1, 2, 3, 4, 5, 6}          # all six parts of a standing person
    assert (label[0:40, 0:60] == IGNORE).all()                     # the crowd: unknown, not background
    assert (label[5:45, 605:635] == IGNORE).all()                  # the person without keypoints too
    assert ok.mean_max_prob == pytest.approx(fg[mask].mean(), abs=1e-4)
    assert PartitionLabeller(cfg).run(recs, out)["images_reused"] == 1


def test_a_config_without_a_refiner_needs_pascal6_labels():
    with pytest.raises(ValueError, match="--labels pascal6"):
        SynthConfig(data="d", out="o")


@pytest.mark.slow
def test_the_flow_labels_every_coco_person_with_a_mask(prefect_harness, shared_data, tmp_path):
    from flows.synthesis import synthesize_labels

    data = shared_data / "mmpose" / "coco" / "test_coco.json"
    out = tmp_path / "synth"
    totals = synthesize_labels(SynthConfig(labels="pascal6", data=str(data), out=str(out)))
    people = [p for item in read_items(out) for p in item.persons]
    assert totals["people_labelled"] == len(people) == 12 and all(p.status == "ok" for p in people)
    info = read_synth_info(out)
    assert info.label_set == "pascal6" and info.refiner_checkpoint == ""
    for item in read_items(out):
        label = files.read_label_png(out / item.label)
        for p in item.persons:
            mine = np.logical_or.reduce([mask_utils.decode(r).astype(bool) for r in p.rle.values()])
            assert p.pixels == mine.sum() and set(p.rle) <= {1, 2, 3, 4, 5, 6}
            assert (label[mine] > 0).all()
    again = synthesize_labels(SynthConfig(labels="pascal6", data=str(data), out=str(out)))   # its own folder
    assert again["images_reused"] == 4 and again["people_labelled"] == 12


def test_viton_parses_read_as_body_parts(shared_data):
    from itertools import islice

    from pipeline.readers.layouts import iter_records

    lip = list(islice(iter_records(shared_data / "viton"), 20))
    parts = list(islice(iter_records(shared_data / "viton", label_set="pascal6"), 20))
    assert [r.person_id for r in lip] == [r.person_id for r in parts]
    for a, b in zip(lip, parts):
        assert b.label_set == "pascal6" and b.label_map.max() <= 6
        assert ((b.label_map > 0) == (a.label_map > 0)).all()      # the same person, cut into parts
        face = a.label_map == 13
        assert (b.label_map[face] == 1).all()
    assert {3, 4} <= set(np.unique(np.concatenate([b.label_map.ravel() for b in parts])))  # arms split at the elbow


def test_pascal_part_people_carry_their_object_masks(shared_data):
    from pipeline.formats.person_mask import read_person_mask
    from pipeline.readers.pascal_part import read_pascal_part

    recs = list(read_pascal_part(shared_data / "pascal_part"))
    assert len(recs) == 19
    for r in recs:
        mask = read_person_mask(r, r.image_size)
        parts = (r.label_map > 0) & (r.label_map != IGNORE)
        assert parts.any() and not (parts & ~mask).any()


def test_a_refiner_on_the_partition_prior(shared_data, tmp_path):
    from refine_net.checkpoint import load_checkpoint
    from refine_net.config import RefinerTrainConfig
    from refine_net.synthesize import Synthesizer
    from refine_net.train import fit_refiner

    with pytest.raises(ValueError, match="needs --label-set pascal6"):
        RefinerTrainConfig(data="d", out_dir="o", prior_source="partition", label_set="ccp8")
    data = viton_subset(shared_data, tmp_path / "viton")
    ckpt_path = fit_refiner(RefinerTrainConfig(data=str(data), out_dir=str(tmp_path / "run"), label_set="pascal6",
                                               prior_source="partition", epochs=1, size=32, base_filters=8, depth=3,
                                               batch_size=4, threads=1))
    ckpt = load_checkpoint(ckpt_path, kind="refiner")
    assert ckpt.network["prior_source"] == "partition" and ckpt.label_set == "pascal6"
    assert json.loads((tmp_path / "run" / "history.json").read_text())[0]["val_miou"] > 0   # hashed val people exist
    path, _ = coco_with_crowd(shared_data, tmp_path)
    recs = list(read_coco(path))
    out = tmp_path / "synth"
    synth = Synthesizer(SynthConfig(checkpoint=str(ckpt_path), data=str(path), out=str(out), labels="pascal6"))
    synth.run(recs, out)
    (item,) = read_items(out)
    ok, maskless = item.persons
    assert ok.status == "ok" and maskless.status == "skipped" and "no person mask" in maskless.reason
    label = files.read_label_png(out / item.label)
    assert set(np.unique(label)) <= {0, 1, 2, 3, 4, 5, 6, IGNORE}
    assert (label[0:40, 0:60] == IGNORE).all()                     # the crowd, through the refiner too


def test_a_partition_labellers_folder_can_be_written_again(shared_data, tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.formats.synth_dataset import claim_output

    data = shared_data / "mmpose" / "coco" / "test_coco.json"
    out = tmp_path / "synth"
    out.mkdir()
    files.write_json(out / "dataset.json", {"format": "partsynth", "label_set": "pascal6", "refiner_checkpoint": "",
                                            "synthetic": True})
    claim_output(out, data)                           # no refiner: the checkpoint is "", still ours
    files.write_json(out / "dataset.json", {"format": "partsynth", "label_set": "pascal6"})   # a labelled set
    with pytest.raises(ConfigError, match="not empty and not a partsynth synthesized dataset"):
        claim_output(out, data)
