"""Real-world input and concurrent runs: ambiguous COCO files named by id, invalid JSON with
its line and column, one run per output folder, imports that never destroy a synthesized
dataset and fail atomically, hand-edited item records redone, OS errors and wrong
checkpoints in one line with no traceback, skip reasons with their digits, and Label
Studio's --copy-images."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main as cli
from flows.synthesis import synthesize_labels
from pipeline.formats import files
from pipeline.annotation import voc
from pipeline.annotation.common import Selection
from pipeline.errors import ConfigError, DataError
from pipeline.readers.layouts import detect_layout, iter_records
from pipeline.formats.output_lock import HOLDER_FILE, output_lock
from pipeline.readers import read_coco
from pipeline.formats.records import ReadReport
from pipeline.formats.item_folder import item_files
from refine_net.config import SynthConfig


def synthesize(checkpoint, data, out, *extra) -> int:
    return cli(["synthesize", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                "--workers", "1", *extra])


def coco_doc(tmp_path) -> dict:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        files.write_image(tmp_path / name, np.zeros((30, 40, 3), np.uint8))
    kp = [10, 10, 2] * 17

    def ann(i, image_id, keypoints=kp):
        return {"id": i, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                "keypoints": keypoints, "bbox": [0, 0, 10, 10], "area": 100}
    return {"images": [{"id": 7, "file_name": "a.jpg", "height": 30, "width": 40},
                       {"id": 7, "file_name": "b.jpg", "height": 30, "width": 40},
                       {"id": 8, "file_name": "c.jpg", "height": 30, "width": 40}],
            "annotations": [ann(1, 7), ann(2, 8), ann(3, 99), ann(4, 8, kp[:-3])],
            "categories": [{"id": 1, "name": "person"}]}


def test_coco_shared_image_ids_and_orphan_annotations_are_named(tmp_path):
    (tmp_path / "ann.json").write_text(json.dumps(coco_doc(tmp_path)))
    report = ReadReport()
    recs = list(read_coco(tmp_path / "ann.json", skip_bad=True, report=report))
    assert [r.person_id for r in recs] == ["8/2"]                  # only the unambiguous person
    reasons = [r for _, r in report.skipped]
    assert len(reasons) == 3, reasons
    assert any("annotation 3 refers to image id 99, which no image has" in r for r in reasons)
    assert any(r.startswith("image 7 (") and "annotation 1: image id 7 is shared by 2 images (a.jpg, b.jpg)" in r
               for r in reasons)
    assert any(r.startswith("image 8 (c.jpg), annotation 4: COCO keypoints") for r in reasons)
    with pytest.raises(DataError, match="annotation 3 refers to image id 99"):
        list(read_coco(tmp_path / "ann.json"))


def test_invalid_json_names_its_line_and_column(tmp_path, capsys):
    text = json.dumps(coco_doc(tmp_path), indent=1)
    (tmp_path / "cut.json").write_text(text[:len(text) // 2])
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(DataError, match=r"cut.json: invalid JSON at line \d+, column \d+: "):
        detect_layout(tmp_path / "cut.json")
    with pytest.raises(DataError, match="empty.json: empty file, not JSON"):
        list(iter_records(tmp_path / "empty.json"))
    assert cli(["data", "summary", str(tmp_path / "cut.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid JSON at line" in err[0]


def test_a_hand_edited_item_record_is_redone(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    out = tmp_path / "synth"
    assert synthesize(tiny_refiner, demo_dir, out) == 0
    record = item_files(out)[2]
    original = record.read_bytes()
    edited = json.loads(original)
    edited["persons"][0]["mean_max_prob"] = 0.999                    # what a user might "fix" by hand
    record.write_text(json.dumps(edited, indent=1, sort_keys=True))
    people = json.loads((out / "people.json").read_text())
    assert synthesize(tiny_refiner, demo_dir, out) == 0
    assert record.read_bytes() == original
    assert json.loads((out / "people.json").read_text()) == people


def _hold_lock(out: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom pipeline.formats.output_lock import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_one_run_per_output_folder_and_a_killed_holder_is_taken_over(prefect_harness, demo_dir, tiny_refiner,
                                                                     tmp_path):
    out = tmp_path / "synth"
    holder = _hold_lock(out)
    try:
        with pytest.raises(ConfigError, match=f"{out}: another partsynth run is writing into this folder "
                                              rf"\(pid {holder.pid} on .*, since .*: -c\)"):
            synthesize_labels(SynthConfig(checkpoint=str(tiny_refiner), data=str(demo_dir), out=str(out)))
        assert not (out / "items").exists()                        # nothing written beside the holder
        with pytest.raises(ConfigError, match="another partsynth run"):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)                         # a killed run: the kernel drops its lock
        holder.wait()
    assert (out / HOLDER_FILE).is_file()                           # its description is left behind
    assert synthesize(tiny_refiner, demo_dir, out) == 0
    assert len(item_files(out)) == 8 and not (out / HOLDER_FILE).exists()
    with output_lock(out), output_lock(out):                       # re-entrant within one process
        pass


@pytest.fixture
def voc_export(synth, tmp_path) -> Path:
    out = tmp_path / "voc"
    voc.export_voc(synth, out, Selection())
    return out


def test_import_never_overwrites_a_synthesized_dataset(synth, voc_export, tmp_path):
    before = {p: p.read_bytes() for p in synth.rglob("*") if p.is_file()}
    for replace in (False, True):
        with pytest.raises(ConfigError, match=r"written by 'partsynth synthesize'; corrections go into a folder "
                                              r"of their own \(for example --out synth-corrected\)"):
            voc.import_voc(voc_export, synth, replace=replace)
    assert {p: p.read_bytes() for p in synth.rglob("*") if p.is_file()} == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and not a labelled partsynth folder"):
        voc.import_voc(voc_export, tmp_path / "mine")


def test_a_failed_import_leaves_the_folder_as_it_was(voc_export, tmp_path):
    stems = (voc_export / "ImageSets/Segmentation/default.txt").read_text().split()
    bad = voc_export / "SegmentationClass" / f"{stems[-1]}.png"
    lm = np.array(files.read_label_png(bad))
    lm[0, 0] = 200                                                # a class the label set does not have
    files.write_label_png(bad, lm)
    with pytest.raises(DataError, match=stems[-1]):
        voc.import_voc(voc_export, tmp_path / "new")
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").rglob("*.png"))
    assert not (tmp_path / "new" / "people.json").exists()
    good = tmp_path / "voc_good"
    shutil.copytree(voc_export, good)
    (good / "ImageSets/Segmentation/default.txt").write_text("\n".join(stems[:2]))
    labelled = tmp_path / "labelled"
    assert voc.import_voc(good, labelled)["images"] == 2
    before = {p: p.read_bytes() for p in labelled.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match=stems[-1]):
        voc.import_voc(voc_export, labelled, replace=True)
    assert {p: p.read_bytes() for p in labelled.rglob("*") if p.is_file()} == before


def test_os_errors_and_wrong_checkpoints_are_one_line_without_a_traceback(prefect_harness, demo_dir, tiny_refiner,
                                                                           tiny_parser, tmp_path, capfd,
                                                                           monkeypatch):
    (tmp_path / "a_file").write_text("x")
    assert synthesize(tiny_refiner, demo_dir, tmp_path / "a_file" / "out") == 1
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert printed.err.strip().splitlines()[-1] == f"error: {tmp_path / 'a_file' / 'out'}: Not a directory"

    out = tmp_path / "read_only"
    real_replace = os.replace

    def read_only(src, dst, *a, **kw):                            # what a read-only folder does to a write
        if str(dst).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real_replace(src, dst, *a, **kw)
    monkeypatch.setattr(files.os, "replace", read_only)
    assert synthesize(tiny_refiner, demo_dir, out) == 1
    printed = capfd.readouterr()
    monkeypatch.undo()
    assert "Traceback" not in printed.out + printed.err
    last = printed.err.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}") and last.endswith(": Read-only file system")

    assert synthesize(tiny_parser, demo_dir, tmp_path / "s") == 1
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert printed.err.strip() == f"error: {tiny_parser}: this is a parser checkpoint; a refiner checkpoint is " \
                                  "needed here"


def test_skip_reasons_keep_their_digits(prefect_harness, demo_dir, tiny_refiner, tmp_path, capsys):
    data = Path(shutil.copytree(demo_dir, tmp_path / "demo"))
    people = json.loads((data / "people.json").read_text())
    for p in [p for p in people if not p["label"]][:3]:
        p["keypoints"][13][0] = 1e9
    (data / "people.json").write_text(json.dumps(people))
    assert synthesize(tiny_refiner, data, tmp_path / "synth") == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  skipped")]
    assert len(lines) == 1 and "#" not in lines[0], lines
    assert "left_shoulder at (1e+09, " in lines[0] and lines[0].endswith("(and 2 more like it)")


def test_label_studio_copy_images_with_a_relative_out(synth, tmp_path, monkeypatch, capsys):
    pytest.importorskip("label_studio_converter", reason="partsynth[annotation] not installed")
    monkeypatch.chdir(tmp_path)
    assert cli(["export", str(synth), "--out", "ls", "--copy-images", "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"LOCAL_FILES_DOCUMENT_ROOT={tmp_path / 'ls'}" in printed
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    urls = [t["data"]["image"].split("?d=")[1] for t in tasks]
    assert len(urls) == 3 and all(u.startswith("images/") and (tmp_path / "ls" / u).is_file() for u in urls)
    assert cli(["export", str(synth), "--out", "ls2", "--copy-images", "--document-root", str(tmp_path / "ls")]) == 1
    assert "not under the document root" in capsys.readouterr().err
    assert not (tmp_path / "ls2").exists()                         # refused before anything is written
    assert cli(["export", str(synth), "--out", "ls3", "--copy-images", "--document-root", str(tmp_path)]) == 0
    urls = [t["data"]["image"].split("?d=")[1] for t in json.loads((tmp_path / "ls3" / "tasks.json").read_text())]
    assert all(u.startswith("ls3/images/") and (tmp_path / u).is_file() for u in urls)

