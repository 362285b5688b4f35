"""Readers on small files the tests write: bad input raises DataError naming the file, or
is skipped and reported with skip_bad."""
import json

import numpy as np
import pytest
import scipy.io

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.readers import read_ccp, read_coco, read_lsp, read_mpii_mat, read_partsynth_folder
from pipeline.formats.records import ReadReport
from pipeline.skeleton import J
from writers import write_ccp


def test_ccp_small_folder_reads(tmp_path):
    write_ccp(tmp_path)
    recs = list(read_ccp(tmp_path))
    assert len(recs) == 3 and recs[0].split == "train" and recs[0].image_size == (12, 8)
    assert set(np.unique(recs[0].label_map)) == {0, 1}  # hair -> ccp8 hair
    assert recs[0].keypoints[J["pelvis"], 1] == 9.0


def test_corrupt_image_raises_or_is_skipped(tmp_path):
    write_ccp(tmp_path)
    (tmp_path / "photos" / "0002.jpg").write_bytes(b"\xff\xd8not a jpeg")
    with pytest.raises(DataError, match=r"0002\.jpg.*unreadable image"):
        list(read_ccp(tmp_path))
    report = ReadReport()
    recs = list(read_ccp(tmp_path, skip_bad=True, report=report))
    assert [r.person_id for r in recs] == ["0001", "0003"]
    assert len(report.skipped) == 1 and report.skipped[0][0].endswith("0002.jpg")


def test_truncated_image_fails_full_decode(tmp_path):
    path = tmp_path / "a.jpg"
    files.write_image(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match="a.jpg"):
        files.read_image(path)


def test_label_image_size_mismatch(tmp_path):
    write_ccp(tmp_path)
    scipy.io.savemat(tmp_path / "annotations" / "pixel-level" / "0001.mat",
                     {"groundtruth": np.zeros((5, 5), np.uint8)})
    with pytest.raises(DataError, match=r"0001\.mat.*differs from image size"):
        list(read_ccp(tmp_path))


def test_label_ids_out_of_range(tmp_path):
    write_ccp(tmp_path)
    scipy.io.savemat(tmp_path / "annotations" / "pixel-level" / "0003.mat",
                     {"groundtruth": np.full((12, 8), 77, np.uint8)})
    report = ReadReport()
    assert len(list(read_ccp(tmp_path, skip_bad=True, report=report))) == 2
    assert "outside 0..58" in report.skipped[0][1]


def test_missing_file_and_wrong_label_list(tmp_path):
    with pytest.raises(DataError, match="photos folder not found"):
        list(read_ccp(tmp_path))
    write_ccp(tmp_path)
    scipy.io.savemat(tmp_path / "label_list.mat", {"label_list": np.array([["a"]], dtype=object)})
    with pytest.raises(DataError, match="label_list.mat"):
        list(read_ccp(tmp_path))


def write_lsp(root, joints):
    (root / "images").mkdir(parents=True)
    for i in range(len(joints)):
        files.write_image(root / "images" / f"im{i + 1:04d}.jpg", np.zeros((20, 10, 3), np.uint8))
    np.save(root / "joints.npy", joints)


def test_lsp_wrong_shape_and_nan(tmp_path):
    write_lsp(tmp_path, np.zeros((2, 13, 3)))
    with pytest.raises(DataError, match=r"joints\.npy.*\(N, 14, 3\)"):
        list(read_lsp(tmp_path))
    joints = np.ones((2, 14, 3))
    joints[1, 4, 0] = np.nan  # a NaN coordinate becomes a missing joint, never (0, 0)
    np.save(tmp_path / "joints.npy", joints)
    recs = list(read_lsp(tmp_path))
    assert recs[1].keypoints[J["left_knee"], 2] == 0 and np.isnan(recs[1].keypoints[J["left_knee"], 0])


def test_coco_crowd_and_nan(tmp_path):
    files.write_image(tmp_path / "a.jpg", np.zeros((30, 40, 3), np.uint8))
    kp = [10, 10, 2] * 17
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
             "keypoints": kp, "bbox": [0, 0, 10, 10], "area": 100,
             "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
            {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1, "num_keypoints": 17,
             "keypoints": kp, "bbox": [0, 0, 5, 5], "area": 25,
             "segmentation": {"counts": [0, 25, 1175], "size": [30, 40]}},
            {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
             "keypoints": [float("nan"), 1, 2] + kp[3:], "bbox": [0, 0, 5, 5], "area": 25,
             "segmentation": []}]
    doc = {"images": [{"id": 7, "file_name": "a.jpg", "height": 30, "width": 40}],
           "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    report = ReadReport()
    recs = list(read_coco(tmp_path / "ann.json", skip_bad=True, report=report))
    assert [r.person_id for r in recs] == ["7/1"]
    assert report.counts["crowd"] == 1 and len(report.skipped) == 1
    assert "NaN" in report.skipped[0][1]
    from pipeline.readers.coco import coco_instance_mask

    assert coco_instance_mask(recs[0].meta).sum() > 50


def mpii_release(tmp_path):
    """A two-image MPII release .mat with the official nesting."""
    files.write_image(tmp_path / "images" / "a.jpg", np.zeros((50, 60, 3), np.uint8))
    files.write_image(tmp_path / "images" / "b.jpg", np.zeros((50, 60, 3), np.uint8))
    point_dt = [("x", "O"), ("y", "O"), ("id", "O"), ("is_visible", "O")]
    pts = np.zeros((1, 3), dtype=point_dt)
    for k, (x, y, jid, vis) in enumerate([(5, 40, 0, 1), (20, 30, 6, 1), (30, 30, 9, 0)]):
        pts[0, k] = (x, y, jid, vis)
    rect_dt = [("annopoints", "O"), ("scale", "O")]
    rects = np.zeros((1, 2), dtype=rect_dt)
    rects[0, 0] = (np.array([[(pts,)]], dtype=[("point", "O")]), 1.5)
    rects[0, 1] = (np.zeros((0, 0)), 2.0)  # a person without annopoints
    anno_dt = [("image", "O"), ("annorect", "O")]
    annolist = np.zeros((1, 2), dtype=anno_dt)
    annolist[0, 0] = (np.array([[("a.jpg",)]], dtype=[("name", "O")]), rects)
    annolist[0, 1] = (np.array([[("b.jpg",)]], dtype=[("name", "O")]), np.zeros((0, 0)))
    release = np.zeros((1, 1), dtype=[("annolist", "O"), ("img_train", "O")])
    release[0, 0] = (annolist, np.array([[1, 0]]))
    scipy.io.savemat(tmp_path / "mpii.mat", {"RELEASE": release})
    return tmp_path / "mpii.mat"


def test_mpii_official_mat(tmp_path):
    mat = mpii_release(tmp_path)
    report = ReadReport()
    recs = list(read_mpii_mat(mat, tmp_path / "images", report=report))
    assert len(recs) == 1 and report.counts["no_keypoints"] == 1
    r = recs[0]
    assert r.person_id == "a.jpg/0" and r.split == "train" and r.image_size == (50, 60)
    np.testing.assert_allclose(r.keypoints[0], [5, 40, 2])
    np.testing.assert_allclose(r.keypoints[J["pelvis"]], [20, 30, 2])
    np.testing.assert_allclose(r.keypoints[J["head_top"]], [30, 30, 1])  # occluded
    assert r.num_keypoints == 3 and r.meta["scale"] == 1.5


def test_mpii_mat_not_a_release(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"foo": np.zeros(3)})
    with pytest.raises(DataError, match="RELEASE"):
        list(read_mpii_mat(tmp_path / "x.mat", tmp_path))


def test_partsynth_folder_bad_entries(demo_dir, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(demo_dir, d)
    people = json.loads((d / "people.json").read_text())
    people[0]["keypoints"][3] = [None, 5.0, 2.0]  # present joint with a NaN coordinate
    del people[1]["image"]
    (d / "people.json").write_text(json.dumps(people))
    with pytest.raises(DataError, match="people.json"):
        list(read_partsynth_folder(d))
    report = ReadReport()
    recs = list(read_partsynth_folder(d, skip_bad=True, report=report))
    assert len(recs) == len(people) - 2 and len(report.skipped) == 2
