"""Facts about the real data under ../shared/data (skipped when it is absent)."""
import itertools

import numpy as np
import pytest

from pipeline.labels import LABEL_SETS
from pipeline.readers.layouts import detect_layout
from pipeline.readers import (read_ccp, read_cihp, read_coco, read_lip, read_lsp, read_mpii_json,
                              read_pascal_part)
from pipeline.formats.records import ReadReport
from pipeline.skeleton import J


def between_hips(kp):
    lo = np.minimum(kp[J["left_hip"], :2], kp[J["right_hip"], :2]) - 1e-3
    hi = np.maximum(kp[J["left_hip"], :2], kp[J["right_hip"], :2]) + 1e-3
    return bool(((kp[J["pelvis"], :2] >= lo) & (kp[J["pelvis"], :2] <= hi)).all())


def test_ccp_counts_labels_and_keypoints(shared_data):
    report = ReadReport()
    recs = list(read_ccp(shared_data / "ccp", label_set="ccp8", report=report, load_labels=False))
    assert len(recs) == 1898
    labelled = [r for r in recs if r.meta["label_path"]]
    assert len(labelled) == 804
    assert max(int(r.person_id) for r in labelled) <= 1004
    assert all(r.split == "unlabelled" for r in recs if int(r.person_id) > 1004)
    assert report.counts["no_keypoints"] == 2
    with_kp = [r for r in recs if r.keypoints is not None]
    assert len(with_kp) == 1896
    assert all(between_hips(r.keypoints) for r in with_kp)
    assert all(r.keypoints_derived[J["pelvis"]] for r in with_kp)


def test_ccp_label_maps_in_range(shared_data):
    for label_set, n in (("ccp8", 8), ("ccp59", 59)):
        for r in itertools.islice(read_ccp(shared_data / "ccp", label_set=label_set), 30):
            assert r.label_map.dtype == np.uint8 and r.label_map.shape == r.image_size
            assert r.label_map.max() < n
            assert r.label_set == label_set


def test_ccp8_grouping_matches_raw_names(shared_data):
    raw = next(read_ccp(shared_data / "ccp", label_set="ccp59"))
    grouped = next(read_ccp(shared_data / "ccp", label_set="ccp8"))
    names59, names8 = LABEL_SETS["ccp59"].names, LABEL_SETS["ccp8"].names
    for cid in np.unique(raw.label_map):
        g = np.unique(grouped.label_map[raw.label_map == cid])
        assert len(g) == 1
        if names59[cid] == "hair":
            assert names8[g[0]] == "hair"
        if names59[cid] == "jeans":
            assert names8[g[0]] == "lower-clothes"


def test_lsp_2000_images_with_14_joints(shared_data):
    joints = np.load(shared_data / "lsp" / "joints.npy")
    assert joints.shape == (2000, 14, 3)
    recs = list(read_lsp(shared_data / "lsp"))
    assert len(recs) == 2000
    assert [r.split for r in recs].count("test") == 1000
    assert recs[1000].person_id == "im1001" and recs[1000].meta["joints_source"] == "exact_spin_test"
    assert sum(r.meta["suspect"] for r in recs) == 10
    assert all(between_hips(r.keypoints) for r in recs)
    # LSP neck and head top map to upper neck and head top without change
    np.testing.assert_allclose(recs[0].keypoints[J["head_top"], :2], joints[0, 13, :2], rtol=1e-5)
    assert max(r.image_size[1] for r in recs) <= 202


def test_coco_fixture_skips_zero_keypoint_people(shared_data):
    report = ReadReport()
    recs = list(read_coco(shared_data / "mmpose" / "coco" / "test_coco.json", report=report))
    assert len(recs) == 12 and report.counts["few_keypoints"] == 2
    assert all(r.keypoints.shape == (16, 3) for r in recs)
    assert len({r.image_path for r in recs}) == 4  # multi-person images
    full = [r for r in recs if r.keypoints[[J["left_hip"], J["right_hip"]], 2].min() > 0]
    assert full and all(between_hips(r.keypoints) for r in full)


def test_mpii_json_fixture(shared_data):
    recs = list(read_mpii_json(shared_data / "mmpose" / "mpii" / "test_mpii.json"))
    assert len(recs) == 5
    partial = [r for r in recs if r.num_keypoints == 14]
    assert len(partial) == 2 and all(np.isnan(r.keypoints[0, 0]) for r in partial)


def test_pascal_part_19_persons(shared_data):
    recs = list(read_pascal_part(shared_data / "pascal_part", label_set="pascal6"))
    assert len(recs) == 19 and len({r.image_path for r in recs}) == 8
    for r in recs:
        ids = set(np.unique(r.label_map).tolist())
        assert ids <= {*range(7), 255} and ids & {1, 2, 3, 4, 5, 6}  # every person has parts
    ten = list(read_pascal_part(shared_data / "pascal_part", label_set="pascal10"))
    assert max(int(r.label_map[r.label_map != 255].max()) for r in ten) == 10


def test_lip_and_cihp_samples(shared_data):
    lip = list(read_lip(shared_data / "lip" / "lip_xlee1013"))
    assert [r.split for r in lip] == ["train", "val", "test"]
    assert all(r.label_map.max() <= 19 for r in lip if r.label_map is not None)
    cihp = list(read_cihp(shared_data / "cihp" / "CIHP"))
    assert len(cihp) == 5 and all(r.label_set == "cihp20" for r in cihp)
    assert all(r.meta["label_rev_path"] for r in cihp)


@pytest.mark.parametrize("rel,layout", [("ccp", "ccp"), ("lsp", "lsp"), ("pascal_part", "pascal_part"),
                                        ("lip/lip_xlee1013", "lip"), ("cihp/CIHP", "cihp"),
                                        ("mmpose/coco/test_coco.json", "coco"),
                                        ("mmpose/mpii/test_mpii.json", "mpii")])
def test_detect_layout(shared_data, rel, layout):
    assert detect_layout(shared_data / rel) == layout


def test_an_annotation_jsons_layout_is_told_without_parsing_it(tmp_path, monkeypatch):
    import json
    import os

    from pipeline.formats import files
    from pipeline.readers.layouts import annotation_file

    path = tmp_path / "people.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    parsed = []
    real = files.read_json
    monkeypatch.setattr(files, "read_json", lambda p: parsed.append(p) or real(p))
    assert detect_layout(path) == detect_layout(tmp_path) == "coco"
    assert annotation_file(tmp_path, "coco") == path
    assert parsed == []                                    # its bytes tell; the reader parses it, once
    path.write_text(json.dumps([{"image": "a.jpg", "joints": []}]))       # another file now: looked at again
    os.utime(path, ns=(1, 1))
    assert detect_layout(path) == "mpii" and parsed == []
    path.write_text(json.dumps({"images": []}))              # neither: parsed, and not a layout
    with pytest.raises(Exception, match="not a COCO keypoints JSON"):
        detect_layout(path)
    assert len(parsed) == 1
    path.write_text("{broken")
    with pytest.raises(Exception, match="invalid JSON at line 1"):
        detect_layout(path)
