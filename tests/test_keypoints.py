"""``partsynth keypoints``: BlazePose (mediapipe 0.10.14, offline) keypoints and person masks
for photos without keypoints; boxes from COCO files; bad input skipped and listed."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main as cli
from pipeline.formats import files
from pipeline.blazepose import BlazePose, crop_box, mediapipe_pose
from pipeline.errors import ConfigError, DataError
from pipeline.formats.estimated_poses import estimate_photos, estimator_fingerprint, finalize_keypoints
from pipeline.readers.layouts import is_photo_folder
from pipeline.readers.layouts import iter_records, keypoint_only_people
from pipeline.person_boxes import read_person_boxes
from pipeline.readers.ccp import read_ccp_label_map
from pipeline.formats.folder import read_dataset_info


def _mediapipe_or_skip():
    try:
        mediapipe_pose()
    except ConfigError as e:
        pytest.skip(f"partsynth[pose] not installed: {e}")


@pytest.fixture(scope="module")
def blazepose():
    _mediapipe_or_skip()
    return BlazePose()


@pytest.fixture
def photos(shared_data, tmp_path) -> Path:
    """Three CCP photos, a corrupt 'photo' and a grey photo with nobody in it."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for pid in ("0004", "0008", "0012"):
        shutil.copy(shared_data / "ccp" / "photos" / f"{pid}.jpg", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    Image.fromarray(np.full((240, 160, 3), 128, np.uint8)).save(folder / "empty.png")
    return folder


def test_crop_box_pads_clips_and_rejects_boxes_outside():
    assert crop_box([100, 50, 40, 80], (200, 300), 0.25) == (80, 30, 160, 150)
    assert crop_box([-30, -30, 60, 60], (100, 100), 0.0) == (0, 0, 30, 30)
    assert crop_box([500, 10, 20, 20], (100, 100), 0.25) is None
    assert crop_box([10, 10, 0, 20], (100, 100), 0.25) is None
    assert crop_box([np.nan, 10, 5, 5], (100, 100), 0.25) is None


def test_models_that_would_download_are_refused_before_mediapipe_is_touched(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)          # import fails: not installed
    for complexity in (0, 2):
        with pytest.raises(ConfigError, match="would be downloaded"):
            BlazePose(model_complexity=complexity)
    with pytest.raises(ConfigError, match=r"needs mediapipe 0\.10\.14: pip install"):
        BlazePose()


def test_person_boxes_from_coco_detections_and_annotations(shared_data, tmp_path):
    coco = shared_data / "mmpose" / "coco"
    photos = sorted(str(p) for p in coco.glob("*.jpg"))
    dets = read_person_boxes(coco / "test_coco_det_AP_H_56.json", photos, min_score=0.5)
    raw = json.loads((coco / "test_coco_det_AP_H_56.json").read_text())
    expected = sum(d["score"] >= 0.5 and d["category_id"] == 1 for d in raw)
    assert sum(map(len, dets.values())) == expected > 0
    assert all(len(b) == 4 and s >= 0.5 for boxes in dets.values() for b, s in boxes)
    anns = read_person_boxes(coco / "test_coco.json", photos)
    assert all(s is None for boxes in anns.values() for _, s in boxes)
    assert sum(map(len, anns.values())) > 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, "x", 4], "score": 1.0, "category_id": 1}]))
    with pytest.raises(DataError, match="bbox must be"):
        read_person_boxes(bad, photos)
    bad.write_text(json.dumps({"something": 1}))
    with pytest.raises(DataError, match="not a COCO detections list"):
        read_person_boxes(bad, photos)


@pytest.mark.shared_data
def test_blazepose_on_ccp_photos_matches_the_shared_keypoints_and_silhouettes(blazepose, shared_data):
    shared = json.loads((shared_data / "ccp" / "keypoints_blazepose33.json").read_text())
    for pid in ("0004", "0008"):
        photo = shared_data / "ccp" / "photos" / f"{pid}.jpg"
        rgb = files.read_image(photo)
        (person,) = blazepose.estimate(rgb, path=photo)
        assert person.landmarks.shape == (33, 3) and person.keypoints.shape == (16, 3)
        assert person.mask.shape == rgb.shape[:2] and 0 <= person.mask.min() and person.mask.max() <= 1
        ref = np.array(shared[photo.name], dtype=np.float32)
        err = np.linalg.norm(person.landmarks[:, :2] - ref[:, :2], axis=1)
        assert np.median(err) < 0.02 * rgb.shape[0], f"{pid}: median landmark offset {np.median(err):.1f} px"
        truth = read_ccp_label_map(shared_data / "ccp" / "annotations" / "pixel-level" / f"{pid}.mat",
                                   rgb.shape[:2], "ccp8") > 0
        mask = person.mask >= 0.5
        assert (mask & truth).sum() / (mask | truth).sum() > 0.75


@pytest.mark.shared_data
def test_boxes_give_one_person_each_and_a_box_outside_is_a_skip_entry(blazepose, shared_data):
    photo = shared_data / "mmpose" / "coco" / "000000000785.jpg"
    rgb = files.read_image(photo)
    people = blazepose.estimate(rgb, [[277.1, 45.7, 225.1, 333.6], [5000, 5000, 10, 10]], [0.99, 0.9], path=photo)
    person, outside = people
    assert "outside the 640x425 photo" in outside
    assert person.box_score == 0.99 and person.mask[:, :150].max() == 0      # nothing outside the padded crop
    x, y = person.keypoints[2, :2]                                             # right hip inside the box
    assert 277 <= x <= 277 + 225 and 45 <= y <= 45 + 334


@pytest.mark.shared_data
def test_estimate_photos_skips_bad_photos_resumes_and_reads_as_a_keypoint_only_dataset(blazepose, photos, tmp_path):
    out = tmp_path / "kp"
    listed = sorted(str(p) for p in photos.iterdir())
    fps = [estimator_fingerprint({"a": 1}, None)] * len(listed)
    shas = [files.file_sha256(p) for p in listed]
    statuses = estimate_photos(blazepose, listed, out, fps, shas)
    assert statuses == ["images_done"] * 3 + ["images_failed"] * 2     # 0004 0008 0012 broken empty
    assert estimate_photos(blazepose, listed, out, fps, shas) == ["images_reused"] * 5
    mask = next((out / "masks").iterdir())
    mask.unlink()                                                      # a deleted mask redoes its photo only
    assert estimate_photos(blazepose, listed, out, fps, shas).count("images_done") == 1
    totals = finalize_keypoints(out, {"a": 1}, "f")
    assert (totals["people"], totals["images_failed"]) == (3, 2)
    reasons = dict(totals["failed"])
    assert "corrupt or unreadable" in reasons[str(photos / "broken.jpg")]
    assert reasons[str(photos / "empty.png")] == "no person found"
    assert read_dataset_info(out)["keypoints_only"] and is_photo_folder(photos) and not is_photo_folder(out)
    people = keypoint_only_people(out)
    assert len(people) == 3 and all(r.keypoints.shape == (16, 3) and r.label_map is None for r in people)
    assert all(Path(r.meta["person_mask"]).is_file() for r in people)
    assert files.read_label_png(people[0].meta["person_mask"]).shape == people[0].image_size
    assert len(list(iter_records(out))) == 3


@pytest.mark.shared_data
def test_keypoints_command_then_synthesize_from_raw_photos(prefect_harness, blazepose, tiny_refiner, photos, tmp_path,
                                                            capsys):
    out = tmp_path / "kp"
    assert cli(["keypoints", str(photos), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3 people in 5 photos" in printed and "skipped" in printed and "broken.jpg" in printed
    assert cli(["data", "show", str(out), "--out", str(tmp_path / "grid.png")]) == 0       # keypoints + masks
    assert files.read_image(tmp_path / "grid.png").shape[1] > 0
    (out / "notes.txt").write_text("mine")
    assert cli(["keypoints", str(photos), "--out", str(out)]) == 1      # a foreign file: refused in one line
    assert "not a partsynth keypoints folder" in capsys.readouterr().err
    assert cli(["keypoints", str(photos), "--out", str(tmp_path / "kp2"), "--boxes", str(tmp_path / "no.json")]) == 1
    assert "no.json: file not found" in capsys.readouterr().err and not (tmp_path / "kp2").exists()
    synth = tmp_path / "synth"
    assert cli(["synthesize", "--checkpoint", str(tiny_refiner), "--data", str(photos), "--out", str(synth)]) == 0
    assert (synth / "keypoints" / "dataset.json").is_file()
    labelled = [r for r in iter_records(synth) if r.label_map is not None]
    assert len(labelled) == 3


def test_synthesize_on_photos_without_mediapipe_says_so_in_one_line(tiny_refiner, demo_dir, tmp_path, monkeypatch,
                                                                     capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next((demo_dir / "images").iterdir()), photos)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    assert cli(["synthesize", "--checkpoint", str(tiny_refiner), "--data", str(photos), "--out",
                str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert "is a folder of photos without keypoints" in err and "mediapipe==0.10.14" in err and "\n" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.shared_data
def test_threads_share_a_bounded_pool_of_graphs(shared_data):
    from concurrent.futures import ThreadPoolExecutor

    _mediapipe_or_skip()
    bp = BlazePose(max_graphs=2)
    rgb = files.read_image(shared_data / "ccp" / "photos" / "0004.jpg")
    with ThreadPoolExecutor(6) as pool:
        found = list(pool.map(lambda _: bp.estimate(rgb)[0], range(12)))
    assert bp._made <= 2 and all(np.allclose(p.landmarks, found[0].landmarks) for p in found)
    bp.close()
    assert bp._made == 0


@pytest.mark.shared_data
def test_estimating_prints_no_protobuf_deprecation_warning(shared_data):
    import warnings

    _mediapipe_or_skip()
    rgb = files.read_image(shared_data / "ccp" / "photos" / "0004.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()                      # a user's interpreter: no filter of pytest's
        bp = BlazePose()
        bp.estimate(rgb)
        bp.estimate(rgb)
    bp.close()
    assert [str(w.message) for w in caught if w.category is UserWarning] == []
