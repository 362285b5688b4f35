"""OpenPose JSON output as a dataset: BODY_18 and BODY_25, old and current keys, several
people per file, (0, 0, 0) as missing, bad files named and skipped; the VITON folder."""
import itertools
import json

import numpy as np
import pytest

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.readers.layouts import detect_layout, iter_records, keypoint_only_people
from pipeline.readers import read_openpose
from pipeline.formats.records import ReadReport
from pipeline.skeleton import JOINT_NAMES, from_openpose

J = {n: i for i, n in enumerate(JOINT_NAMES)}


def body(n: int, shift: float = 0.0) -> list[float]:
    """A standing person's n OpenPose points (x, y, c), flat; the left knee not found."""
    pts = np.zeros((n, 3))
    if n == 18:
        named = {0: (50, 20), 1: (50, 40), 2: (40, 40), 3: (35, 60), 4: (33, 80), 5: (60, 40), 6: (65, 60),
                 7: (67, 80), 8: (45, 90), 9: (45, 120), 10: (45, 150), 11: (55, 90), 13: (55, 150),
                 14: (47, 17), 15: (53, 17), 16: (44, 19), 17: (56, 19)}
    else:
        named = {0: (50, 20), 1: (50, 40), 2: (40, 40), 3: (35, 60), 4: (33, 80), 5: (60, 40), 6: (65, 60),
                 7: (67, 80), 8: (50, 90), 9: (45, 90), 10: (45, 120), 11: (45, 150), 12: (55, 90),
                 14: (55, 150), 15: (47, 17), 16: (53, 17), 17: (44, 19), 18: (56, 19)}
    for i, (x, y) in named.items():
        pts[i] = (x + shift, y, 0.9)
    return pts.ravel().tolist()


def openpose_folder(root):
    (root / "images").mkdir(parents=True)
    (root / "pose").mkdir()
    for stem in ("a", "b", "c", "d", "e"):
        files.write_image(root / "images" / f"{stem}.jpg", np.zeros((170, 100, 3), np.uint8))
    write = lambda stem, doc: (root / "pose" / f"{stem}_keypoints.json").write_text(json.dumps(doc))
    write("a", {"version": 1.3, "people": [{"pose_keypoints_2d": body(18)}, {"pose_keypoints_2d": body(18, 5)}]})
    write("b", {"version": 1.0, "people": [{"pose_keypoints": body(25)}]})
    write("c", {"version": 1.3, "people": []})
    write("d", {"version": 1.3, "people": [{"pose_keypoints_2d": body(18)[:-3]}, {"pose_keypoints_2d": body(18)}]})
    (root / "pose" / "e_keypoints.json").write_text('{"people": [')
    write("f", {"people": [{"pose_keypoints_2d": body(18)}]})                     # no photo f.*
    return root


def test_body_18_and_25_map_to_the_canonical_joints():
    for n, hip in ((18, 8), (25, 9)):
        kp, derived = from_openpose(body(n))
        flat = np.asarray(body(n)).reshape(n, 3)
        assert np.allclose(kp[J["right_hip"], :2], flat[hip, :2]) and kp[J["right_hip"], 2] == 2
        assert np.allclose(kp[J["right_shoulder"], :2], flat[2, :2])
        assert kp[J["left_knee"], 2] == 0 and np.isnan(kp[J["left_knee"], 0])          # (0, 0, 0): missing
        assert derived[J["pelvis"]] and np.allclose(kp[J["pelvis"], :2], (50, 90))
    low = np.asarray(body(18)).reshape(18, 3)
    low[3, 2] = 0.05
    assert from_openpose(low.ravel())[0][J["right_elbow"], 2] == 0                      # below min_confidence
    with pytest.raises(DataError, match="17 points; BODY_18 has 18, BODY_25 has 25"):
        from_openpose(body(18)[:-3])


def test_a_folder_of_openpose_files_reads_with_bad_files_named(tmp_path):
    root = openpose_folder(tmp_path / "op")
    assert detect_layout(root) == "openpose" and detect_layout(root / "pose") == "openpose"
    report = ReadReport()
    recs = list(iter_records(root, skip_bad=True, report=report))
    assert [r.person_id for r in recs] == ["a/0", "a/1", "b/0", "d/1"]
    assert recs[1].keypoints[J["right_wrist"], 0] == pytest.approx(38) and recs[0].image_path.name == "a.jpg"
    assert recs[2].source_format == "openpose" and recs[2].image_size == (170, 100)
    problems = {f.rsplit("/", 1)[-1]: r for f, r in report.skipped}
    assert problems["d_keypoints.json"].startswith("person 0: OpenPose keypoints: 17 points")
    assert problems["e_keypoints.json"].startswith("invalid JSON at line 1, column")
    assert problems["f_keypoints.json"].startswith("no photo f.jpg (or .png, ...) in ")
    assert report.counts["no_person"] == 1
    assert len(keypoint_only_people(root)) == 4
    with pytest.raises(DataError, match="d_keypoints.json: person 0"):
        list(read_openpose(root))
    with pytest.raises(DataError, match="no OpenPose"):
        list(read_openpose(tmp_path))


def test_the_viton_folder_reads_as_openpose(shared_data):
    viton = shared_data / "viton"
    assert detect_layout(viton) == "openpose"
    recs = list(itertools.islice(read_openpose(viton), 20))
    raw = json.loads((viton / "pose" / "000003_0_keypoints.json").read_text())["people"][0]["pose_keypoints"]
    assert recs[0].person_id == "000003_0/0" and recs[0].image_path == viton / "images" / "000003_0.jpg"
    assert np.allclose(recs[0].keypoints[J["left_shoulder"], :2], raw[15:17])          # BODY_18 point 5
    assert all(r.image_size == (256, 192) for r in recs)
    assert all(r.label_set == "lip20" and r.label_map.shape == (256, 192) for r in recs)   # VITON's parse/
    assert recs[0].meta["label_source"] == "parse" and set(np.unique(recs[0].label_map)) <= set(range(20))
    assert not any(r.label_map is not None for r in itertools.islice(read_openpose(viton, parses=False), 5))


def test_parse_pngs_label_the_one_person_photos_and_bad_ones_are_named(tmp_path):
    root = openpose_folder(tmp_path / "op")
    (root / "parse").mkdir()
    parse = np.zeros((170, 100), np.uint8)
    parse[20:90, 40:60] = 5                                                             # upper-clothes
    files.write_label_png(root / "parse" / "b.png", parse)
    files.write_label_png(root / "parse" / "a.png", parse)                             # two people: not used
    files.write_label_png(root / "parse" / "d.png", np.zeros((60, 60), np.uint8))      # d/1 is not alone either
    report = ReadReport()
    recs = {r.person_id: r for r in iter_records(root, skip_bad=True, report=report)}
    assert recs["b/0"].label_set == "lip20" and np.array_equal(recs["b/0"].label_map, parse)
    assert recs["a/0"].label_map is None and recs["a/1"].label_map is None and recs["d/1"].label_map is None
    assert [r.person_id for r in keypoint_only_people(root)] == ["a/0", "a/1", "d/1"]
    files.write_label_png(root / "parse" / "b.png", np.zeros((60, 60), np.uint8))
    with pytest.raises(DataError, match=r"b.png: parse is 60 x 60, its photo 100 x 170"):
        list(read_openpose(root / "pose", root / "images"))
    bad = parse.copy()
    bad[0, 0] = 40
    files.write_label_png(root / "parse" / "b.png", bad)
    report = ReadReport()
    assert "b/0" not in {r.person_id for r in read_openpose(root, skip_bad=True, report=report)}
    assert any(r.startswith("values [40] are not lip20 classes") for _, r in report.skipped)
