"""``partsynth predict``: a parser's label maps for photos without labels, resumable, bad
photos skipped and listed, the output readable as a dataset."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli import main as cli
from flows.predict import predict_labels
from parser_net.config import PredictConfig
from parser_net.pose_eval import predict_keypoints
from parser_net.predict import Predictor
from pipeline.formats import files
from pipeline.errors import ConfigError
from pipeline.readers.layouts import iter_records
from pipeline.readers.layouts import list_photos


@pytest.fixture
def photos(demo_dir, tmp_path) -> Path:
    """A flat folder of 6 demo photos, a 0-byte 'photo' and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((demo_dir / "images").iterdir())[:6]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_predictor_writes_label_maps_overlays_probabilities_and_resumes(tiny_parser, photos, tmp_path):
    out = tmp_path / "pred"
    pred = Predictor(tiny_parser, overlays=True, save_probabilities=True, scales=(0.75, 1.0), flip=True, batch_size=4)
    listed = list_photos(photos)
    assert [p.name for p in listed] == ["broken.jpg"] + [f"demo0000{i}.png" for i in range(6)]
    statuses = pred.process_images(listed, out)
    assert statuses == ["images_failed"] + ["images_done"] * 6
    totals = pred.finalize(out)
    assert (totals["images_parsed"], totals["images_failed"]) == (6, 1)
    assert totals["failed"][0][0].endswith("broken.jpg") and "corrupt" in totals["failed"][0][1]
    item = json.loads(next(p for p in (out / "items").glob("demo00000-*.json")).read_text())
    photo = np.asarray(Image.open(photos / "demo00000.png").convert("RGB"))
    label = Image.open(out / item["label"])
    assert label.mode == "P" and np.asarray(label).shape == photo.shape[:2]
    assert np.asarray(label).max() < pred.label_set.num_classes
    assert files.read_image(out / item["overlay"]).shape == photo.shape
    probs = np.load(out / item["probs"])["probs"]
    assert probs.shape == (pred.label_set.num_classes, *photo.shape[:2]) and probs.dtype == np.uint8
    assert np.abs(probs.astype(int).sum(0) - 255).max() <= pred.label_set.num_classes   # rounded per class
    assert item["keypoints"] is None                                     # a plain parser has no pose head
    # the folder is a dataset: six labelled people, the broken photo counted as skipped
    recs = list(iter_records(out))
    assert len(recs) == 6 and all(r.label_map is not None and r.label_set == pred.label_set.name for r in recs)
    # a second call reuses everything (the broken photo stays skipped until it changes); a changed
    # photo and a deleted label are redone
    assert pred.process_images(listed, out) == ["images_reused"] * 7
    Image.fromarray(255 - photo).save(photos / "demo00000.png")
    (out / json.loads(next((out / "items").glob("demo00003-*.json")).read_text())["label"]).unlink()
    again = pred.process_images(listed, out)
    assert [again[i] for i in (1, 4)] == ["images_done", "images_done"] and again.count("images_reused") == 5
    # other options are another fingerprint: everything is redone
    assert Predictor(tiny_parser).process_images(listed[1:], out) == ["images_done"] * 6


def test_joint_network_predicts_keypoints_in_photo_pixels(tiny_joint, photos, tmp_path):
    out = tmp_path / "pred"
    pred = Predictor(tiny_joint)
    pred.process_images(list_photos(photos)[1:3], out)
    pred.finalize(out)
    people = json.loads((out / "people.json").read_text())
    assert len(people) == 2
    for person in people:
        kp = np.array(person["keypoints"], dtype=float)
        assert kp.shape == (16, 3) and (kp[:, 2] == 2).all()
        assert (kp[:, :2] >= -1).all() and (kp[:, :2] <= 96).all()           # inside the 96 px photo
        assert len(person["meta"]["keypoint_confidence"]) == 16
    assert all(r.keypoints is not None for r in iter_records(out))


def test_joint_network_runs_once_per_photo_and_matches_its_pose_forward(tiny_joint, photos):
    pred = Predictor(tiny_joint, scales=(0.75, 1.0))
    image = files.read_image(sorted(photos.glob("demo*.png"))[0])
    calls = []
    pred.model.register_forward_hook(lambda *_: calls.append(1))
    _, _, keypoints = pred.predict(image)
    assert len(calls) == 2                                      # one forward per scale, none for the pose
    np.testing.assert_allclose(keypoints, predict_keypoints(pred.model, image, pred.long_side, pred.stride))
    calls.clear()
    pred.scales = (0.75,)                                       # no scale-1 view: the pose input is parsed apart
    _, _, again = pred.predict(image)
    assert len(calls) == 2
    np.testing.assert_allclose(again, keypoints)


def test_batched_prediction_equals_one_photo_at_a_time(tiny_joint, photos):
    images = [files.read_image(p) for p in sorted(photos.glob("demo*.png"))[:3]]
    images.append(np.ascontiguousarray(images[0][:, :70]))          # another shape: its own forward pass
    pred = Predictor(tiny_joint, scales=(0.75, 1.0), flip=True)
    batched = pred.predict_batch(images)
    for image, (label_map, probs, keypoints) in zip(images, batched):
        one = pred.predict(image)
        assert probs.shape == (pred.label_set.num_classes, *image.shape[:2])
        np.testing.assert_allclose(probs.numpy(), one[1].numpy(), atol=1e-5)
        np.testing.assert_allclose(keypoints, one[2], atol=1e-2)            # pixels; batched convs round apart


def test_predict_flow_caches_chunks_and_handles_new_and_removed_photos(prefect_harness, tiny_parser, photos, tmp_path):
    out = tmp_path / "pred"
    cfg = PredictConfig(checkpoint=str(tiny_parser), data=str(photos), out=str(out), chunk_size=2)
    first = predict_labels(cfg)
    assert (first["images_parsed"], first["images_failed"], first["images_done"]) == (6, 1, 6)
    second = predict_labels(cfg)
    assert second["images_reused"] == 6 and second["images_done"] == 0      # the corrupt photo is not kept
    assert second["images_failed"] == 1
    before = {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()}
    shutil.copy(photos / "demo00001.png", photos / "extra.png")
    (photos / "demo00005.png").unlink()
    third = predict_labels(cfg)
    assert third["images_done"] == 1 and third["images_removed"] == 1 and third["images_parsed"] == 6
    after = {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()}
    assert sum(after.get(n) == t for n, t in before.items()) == 5          # the others untouched
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="my_notes.txt"):
        predict_labels(cfg)
    assert (out / "my_notes.txt").read_text() == "mine"


def test_predict_command_and_its_errors(prefect_harness, tiny_parser, tiny_refiner, photos, tmp_path, capsys):
    out = tmp_path / "pred"
    assert cli(["predict", "--checkpoint", str(tiny_parser), "--data", str(photos), "--out", str(out),
                "--overlays"]) == 0
    text = capsys.readouterr().out
    assert "6 photos parsed" in text and "1 skipped" in text and "broken.jpg" in text
    assert len(list((out / "overlays").glob("*.jpg"))) == 6
    assert cli(["predict", "--checkpoint", str(tiny_refiner), "--data", str(photos), "--out",
                str(tmp_path / "p2")]) == 1
    assert "refiner checkpoint" in capsys.readouterr().err
    assert cli(["predict", "--checkpoint", str(tiny_parser), "--data", str(photos), "--out", str(photos / "x")]) == 1
    assert "may not be the input folder, be inside it" in capsys.readouterr().err
    assert cli(["predict", "--checkpoint", str(tiny_parser), "--data", str(tmp_path / "none"), "--out",
                str(tmp_path / "p3")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert cli(["predict", "--checkpoint", str(tiny_parser), "--data", str(photos), "--out", str(tmp_path / "p4"),
                "--scales", "0"]) == 1
    assert "--scales" in capsys.readouterr().err


def test_scored_predictions_equal_evaluate(tiny_parser, demo_dir, tmp_path):
    """predict on a labelled dataset, then data score, gives evaluate's numbers."""
    from parser_net.evaluate import evaluate_checkpoint
    from pipeline.synth_score import score_synthesis

    pred = Predictor(tiny_parser)
    pred.process_images(list_photos(demo_dir), tmp_path / "pred")
    pred.finalize(tmp_path / "pred")
    scored = score_synthesis(tmp_path / "pred", demo_dir, split=None)
    evaluated, n, _ = evaluate_checkpoint(str(tiny_parser), str(demo_dir))
    assert scored["images"] == n == 12
    assert scored["mean_iou"] == pytest.approx(evaluated.mean_iou, abs=1e-9)
