"""The synthesized-dataset format: typed records, round trips, named errors."""
import json

import numpy as np
import pytest

from parser_net.dataset import to_tensor
from pipeline.formats import files
from pipeline.errors import ConfigError, DataError
from pipeline.priors.bank import PriorConfig
from pipeline.readers.prior_bank import bank_from_dataset
from pipeline.formats.item_folder import item_name, item_path, write_item
from pipeline.formats.synth_dataset import SYNTH_FORMAT_VERSION, SynthItem, SynthPerson, read_item, read_synth_info


def person(**kw) -> SynthPerson:
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    kp[3] = (10.5, 20.25, 2)
    return SynthPerson("p1", "ok", keypoints=kp, split="unlabelled", source="coco", box=(30.0, 40.0, 50.0),
                       neighbours=["0001", "0002"], neighbour_flipped=[False, True], distances=[0.1, 0.2],
                       mean_max_prob=0.9, pixels=12, rle={3: {"size": [4, 5], "counts": "abc"}}, **kw)


def test_item_round_trip(tmp_path):
    item = SynthItem("/photos/a b.jpg", (4, 5), [person(), SynthPerson("p2", "skipped", reason="no pelvis")],
                     fingerprint="f" * 16, label="labels/x.png")
    path = write_item(tmp_path, item)
    assert path == item_path(tmp_path, "/photos/a b.jpg") and path.name.startswith("a_b-")
    back = read_item(path)
    assert back.to_json() == item.to_json() and back.version == SYNTH_FORMAT_VERSION
    np.testing.assert_array_equal(back.persons[0].keypoints, item.persons[0].keypoints)
    assert back.persons[0].rle == {3: {"size": [4, 5], "counts": "abc"}} and back.labelled == [back.persons[0]]
    assert json.loads(path.read_text())["persons"][0]["rle"] == {"3": {"size": [4, 5], "counts": "abc"}}
    assert item_name("/a/b.png") != item_name("/c/b.png")


@pytest.mark.parametrize("content, problem", [
    ({"something": "else"}, "not a partsynth item record"),
    ({"image": "x.jpg", "persons": [{"person_id": "1"}]}, "not a synthesized person record"),
    ({"image": "x.jpg", "persons": [], "version": SYNTH_FORMAT_VERSION + 1}, "newer than this partsynth"),
])
def test_foreign_items_are_named(tmp_path, content, problem):
    path = tmp_path / "items" / "other.json"
    files.write_json(path, content)
    with pytest.raises(DataError, match=problem) as e:
        read_item(path)
    assert e.value.path == path


def test_dataset_info_of_a_labelled_folder_is_refused(demo_dir):
    with pytest.raises(DataError, match="not a synthesized partsynth dataset"):
        read_synth_info(demo_dir)


def test_bank_is_read_in_the_refiners_label_set(demo_dir):
    bank = bank_from_dataset(demo_dir, "train", PriorConfig(size=32), label_set="pascal10")
    assert bank.label_set == "pascal10" and len(bank.exemplars) > 0
    with pytest.raises(ConfigError, match="labels are pascal10, the refiner works in ccp59"):
        bank_from_dataset(demo_dir, "train", PriorConfig(size=32), label_set="ccp59")


def test_image_tensors_are_contiguous_nchw():
    x = to_tensor(np.zeros((2, 6, 4, 3), np.uint8))
    assert x.shape == (2, 3, 6, 4) and x.is_contiguous()
