"""Nothing lost, nothing wrong marked "ok": deleted outputs come back, foreign files are left
alone or refused, bad keypoints are skipped with a reason, modes follow the umask."""
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main as cli
from flows.synthesis import synthesize_labels
from pipeline.formats import files
from pipeline.errors import ConfigError
from pipeline.priors.pose import keypoint_problem
from pipeline.formats.synth_dataset import claim_output, read_items
from refine_net.config import SynthConfig


def run(checkpoint, data, out, **kw) -> dict:
    return synthesize_labels(SynthConfig(checkpoint=str(checkpoint), data=str(data), out=str(out)), **kw)


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "labels").glob("*.png"))} | \
        {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "items").glob("*.json"))}


def test_deleted_outputs_are_regenerated(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    out = tmp_path / "synth"
    first = run(tiny_refiner, demo_dir, out)
    assert first["images_done"] == 8 and first["images_reused"] == 0
    before = snapshot(out)
    people = (out / "people.json").read_bytes()
    again = run(tiny_refiner, demo_dir, out)
    assert again["images_reused"] == 8 and again["images_done"] == 0          # reuse is counted as such
    sorted((out / "labels").glob("*.png"))[0].unlink()           # one image's label, another's record
    sorted((out / "items").glob("*.json"))[1].unlink()
    (out / "people.json").unlink()
    third = run(tiny_refiner, demo_dir, out)
    assert third["images_done"] == 2 and third["images_reused"] == 6, third
    assert snapshot(out) == before and (out / "people.json").read_bytes() == people
    shutil.rmtree(out)
    fourth = run(tiny_refiner, demo_dir, out)
    assert fourth["images_done"] == 8 and snapshot(out) == before
    label = next((out / "labels").glob("*.png"))
    label.write_bytes(b"changed by hand")                                     # a changed file is redone too
    assert run(tiny_refiner, demo_dir, out)["images_done"] == 1 and snapshot(out) == before
    forced = run(tiny_refiner, demo_dir, out, force=True)
    assert forced["images_done"] == 8 and snapshot(out) == before


def test_foreign_files_are_kept_or_refused(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    out = tmp_path / "synth"
    run(tiny_refiner, demo_dir, out)
    keep = {out / ".settings.tmpl": "mine", out / "sub" / ".draft.tmp.txt": "draft"}
    for path, text in keep.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    run(tiny_refiner, demo_dir, out)
    assert all(p.read_text() == t for p, t in keep.items())                    # never cleaned up
    files.write_json(out / "items" / "other.json", {"mine": True})
    with pytest.raises(ConfigError, match="other.json: not a partsynth item record"):
        run(tiny_refiner, demo_dir, out)
    users = tmp_path / "users"
    users.mkdir()
    (users / "people.json").write_text("[]")
    with pytest.raises(ConfigError, match="not empty and not a partsynth synthesized dataset"):
        run(tiny_refiner, demo_dir, users)
    assert (users / "people.json").read_text() == "[]"
    with pytest.raises(ConfigError, match="may not be the input folder"):
        claim_output(demo_dir, demo_dir)
    with pytest.raises(ConfigError, match="may not be the input folder"):
        claim_output(demo_dir.parent, demo_dir)
    with pytest.raises(ConfigError, match="may not be the input folder, be inside it"):
        claim_output(demo_dir / "synth", demo_dir)


def test_removed_photos_lose_their_labels(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    data = Path(shutil.copytree(demo_dir, tmp_path / "demo"))
    out = tmp_path / "synth"
    run(tiny_refiner, data, out)
    people = json.loads((data / "people.json").read_text())
    gone = next(p for p in people if not p["label"])
    (data / "people.json").write_text(json.dumps([p for p in people if p is not gone]))
    totals = run(tiny_refiner, data, out)
    assert totals["images_removed"] == 1 and totals["people_labelled"] == 7
    assert len(read_items(out)) == 7 and len(list((out / "labels").glob("*.png"))) == 7
    assert gone["person_id"] not in {p["person_id"] for p in json.loads((out / "people.json").read_text())}


def test_keypoint_problems_are_named():
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    joints = {6: (50, 100), 7: (50, 60), 12: (40, 60), 13: (60, 60), 2: (45, 100), 3: (55, 100), 9: (50, 30)}
    for j, (x, y) in joints.items():
        kp[j] = (x, y, 2)
    assert keypoint_problem(kp, (200, 100)) == ""
    far = kp.copy()
    far[13, 0] = 1e9
    assert keypoint_problem(far, (200, 100)).startswith("left_shoulder at (1e+09, 60) lies outside the 100x200 image")
    neg = kp.copy()
    neg[9, 1] = -150
    assert "head_top" in keypoint_problem(neg, (200, 100))
    assert keypoint_problem(kp * np.array([1000, 1000, 1]), (200, 100)).startswith("right_hip at (4.5e+04")
    scaled = kp.copy()
    scaled[13, :2] = (60 + 80 * 1000 / 1000, 60 + 130)                         # one joint far from its bone
    assert keypoint_problem(scaled, (200, 100), margin=10).startswith("implausible pose: left_shoulder-thorax")
    stacked = np.zeros((16, 3), np.float32)                  # an upper body whose joints sit on one point
    stacked[[10, 11, 12, 13, 14, 15]] = (50, 60, 2)
    stacked[15] = (90, 160, 2)                               # but the left wrist: a ratio to a 0 px median
    assert keypoint_problem(stacked, (200, 100), allow_partial=True) == (
        "implausible pose: left_wrist-left_elbow is 108 px where the median bone length is 0 px "
        "(joints on top of each other)")


def test_bad_keypoints_are_skipped_with_reason(prefect_harness, demo_dir, tiny_refiner, tmp_path, capsys):
    data = Path(shutil.copytree(demo_dir, tmp_path / "demo"))
    people = json.loads((data / "people.json").read_text())
    kp_only = [p for p in people if not p["label"]]
    kp_only[0]["keypoints"][13][0] = 1e9
    kp_only[1]["keypoints"] = [[None if x is None else x * 1000, None if y is None else y * 1000, v]
                               for x, y, v in kp_only[1]["keypoints"]]
    (data / "people.json").write_text(json.dumps(people))
    out = tmp_path / "synth"
    assert cli(["synthesize", "--checkpoint", str(tiny_refiner), "--data", str(data), "--out", str(out),
                "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "people_labelled': 6" in printed and "lies outside the" in printed
    reasons = {p.person_id: p.reason for item in read_items(out) for p in item.persons if p.status != "ok"}
    assert set(reasons) == {kp_only[0]["person_id"], kp_only[1]["person_id"]}
    assert all("outside the" in r for r in reasons.values())
    listed = {p["person_id"]: p for p in json.loads((out / "people.json").read_text())}
    assert {pid for pid, p in listed.items() if p.get("status") == "skipped"} == set(reasons)
    assert all(listed[pid]["reason"] == r for pid, r in reasons.items())
    from pipeline.readers.layouts import iter_records
    from pipeline.formats.records import ReadReport

    report = ReadReport()
    assert len([r for r in iter_records(out, report=report) if r.label_map is not None]) == 6
    assert report.counts["skipped_when_written"] == 2
    assert cli(["synthesize", "--checkpoint", str(tiny_refiner), "--data", str(data), "--out", str(out),
                "--workers", "1", "--strict"]) == 1


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~files.UMASK


def test_ccp_reader_names_what_it_ignores(tmp_path):
    from pipeline.readers.layouts import keypoint_only_people
    from pipeline.formats.records import ReadReport
    from writers import write_ccp

    write_ccp(tmp_path, n=2, size=(12, 8))
    (tmp_path / "photos" / "0003.png").write_bytes(b"png")
    kps = json.loads((tmp_path / "keypoints_blazepose33.json").read_text()) \
        if (tmp_path / "keypoints_blazepose33.json").exists() else {}
    kps["0099.jpg"] = None
    (tmp_path / "keypoints_blazepose33.json").write_text(json.dumps(kps))
    report = ReadReport()
    keypoint_only_people(tmp_path, report=report)
    problems = dict((Path(f).name, r) for f, r in report.skipped)
    assert "not a .jpg photo" in problems["0003.png"]
    assert "keypoints for 0099.jpg, which is not in photos/" in problems["keypoints_blazepose33.json"]
    (tmp_path / "keypoints_blazepose33.json").unlink()
    report = ReadReport()
    keypoint_only_people(tmp_path, report=report)
    assert any("keypoints file missing" in r for _, r in report.skipped)


def test_non_numeric_keypoints_name_the_file(tmp_path):
    from pipeline.errors import DataError
    from pipeline.skeleton import from_blazepose33

    with pytest.raises(DataError, match="kp.json: BlazePose33 keypoints are not numbers|kp.json: .* not numbers"):
        from_blazepose33([["a", 1, 1]] + [[0, 0, 1]] * 32, path=tmp_path / "kp.json")


def test_a_killed_runs_temp_file_is_not_a_foreign_item(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    out = tmp_path / "synth"
    run(tiny_refiner, demo_dir, out)
    before = snapshot(out)
    partial = out / "items" / f"{files.TEMP_PREFIX}demo00002-2bdc8596.e7abnvgd.tmp.json"
    partial.write_bytes(b"")                                  # what a SIGKILL during write_item leaves
    claim_output(out, demo_dir)                               # ours, not refused
    assert len(read_items(out)) == 8
    assert run(tiny_refiner, demo_dir, out)["images_reused"] == 8
    assert not partial.exists() and snapshot(out) == before
