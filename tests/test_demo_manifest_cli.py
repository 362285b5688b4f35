import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from pipeline.demo import make_figure, write_demo_set
from pipeline.readers.layouts import detect_layout, iter_records
from pipeline.formats.manifest import build_manifest, read_manifest, summarize, write_manifest
from pipeline.skeleton import J


def test_demo_is_deterministic_and_consistent():
    a, b = make_figure(7, 3, 96), make_figure(7, 3, 96)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label_map, b.label_map)
    assert not np.array_equal(a.image, make_figure(8, 3, 96).image)
    assert a.image.shape == (96, 96, 3) and a.label_map.max() <= 10
    assert (a.keypoints[:, 2] == 2).all()
    # the torso label lies between the hips and the shoulders: the pelvis-thorax midpoint
    mid = (a.keypoints[J["pelvis"], :2] + a.keypoints[J["thorax"], :2]) / 2
    assert a.label_map[int(round(mid[1])), int(round(mid[0]))] == 2


def test_demo_folder_reads_back(demo_dir):
    assert detect_layout(demo_dir) == "partsynth"
    recs = list(iter_records(demo_dir))
    assert len(recs) == 20
    assert sum(r.label_map is not None for r in recs) == 12
    assert all(r.keypoints is not None and r.meta["synthetic"] for r in recs)
    assert {r.split for r in recs} == {"train", "val", "unlabelled"}
    assert (demo_dir / "heldout_labels" / "demo00019.png").exists()
    with pytest.raises(FileExistsError):
        write_demo_set(demo_dir)


def test_manifest_round_trip_and_summary(demo_dir, tmp_path):
    df = build_manifest(iter_records(demo_dir), demo_dir)
    assert len(df) == 20 and df["image_path"].iloc[0] == "images/demo00000.png"
    path = write_manifest(df, tmp_path / "m.parquet")
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back.drop(columns=["classes_present", "class_pixels"]),
                                  df.drop(columns=["classes_present", "class_pixels"]))
    assert list(back["class_pixels"].iloc[0]) == list(df["class_pixels"].iloc[0])
    s = summarize(df)
    assert (s.images, s.people, s.labelled, s.keypoint_only, s.unusable) == (20, 20, 12, 8, 0)
    shares = dict(s.class_shares["pascal10"])
    assert sum(shares.values()) == pytest.approx(1.0) and shares["torso"] > 0


def test_cli_summary_and_manifest(demo_dir, tmp_path, capsys):
    assert main(["data", "summary", str(demo_dir), "--manifest", str(tmp_path / "m.parquet")]) == 0
    out = capsys.readouterr().out
    assert "keypoint-only people" in out and "left-upper-arm" in out
    assert (tmp_path / "m.parquet").exists()


def test_cli_bad_path_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "summary", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "nope: path not found" in err


def test_console_script_help_and_version():
    exe = [sys.executable, "-m", "flows.cli"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("partsynth ")
    out = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "data" in out


def test_cli_summary_on_real_ccp(shared_data, capsys):
    assert main(["data", "summary", str(shared_data / "ccp"), "--label-set", "ccp8"]) == 0
    out = capsys.readouterr().out
    for expected in ("1898", "804", "1092", "upper-clothes"):
        assert expected in out


def test_cli_data_show_writes_a_grid(demo_dir, tmp_path):
    from pipeline.formats.files import read_image

    assert main(["data", "show", str(demo_dir), "--n", "3", "--tile", "64", "--out", str(tmp_path / "g.png")]) == 0
    assert read_image(tmp_path / "g.png").shape == (68, 6 * 68, 3)


def test_data_show_picks_a_partsynth_folder_s_people_from_people_json_alone(demo_dir, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from pipeline.formats import files
    from pipeline.readers.layouts import drawable_people, iter_records

    folder = shutil.copytree(demo_dir, tmp_path / "demo")
    drawable = [r for r in iter_records(folder) if r.keypoints is not None and r.label_map is not None]
    assert len(drawable) == 12
    pick = sorted(np.random.default_rng(5).choice(len(drawable), 3, replace=False))
    expected = [drawable[i] for i in pick]
    opened = []
    read_label = files.read_photo_label_png
    monkeypatch.setattr(files, "read_photo_label_png", lambda path, *a: opened.append(path) or read_label(path, *a))
    got = drawable_people(folder, n=3, seed=5)
    assert [r.person_id for r in got] == [r.person_id for r in expected]
    assert all(np.array_equal(g.label_map, e.label_map) for g, e in zip(got, expected))
    assert len(opened) == 3                      # the people not drawn: their label files are not read
    assert [r.person_id for r in drawable_people(folder, ids=[expected[1].person_id])] == [expected[1].person_id]
    # a picked person whose label is gone is skipped, not drawn wrong
    (opened[0]).unlink()
    assert [r.person_id for r in drawable_people(folder, n=3, seed=5)] == [r.person_id for r in expected[1:]]
