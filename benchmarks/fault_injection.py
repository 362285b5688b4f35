"""Fault injection: the ways a user can lose data or get wrong labels marked "ok", run on a
small copy of the shared CCP data with a one-epoch refiner, as a table
case | outcome | files intact.

    python benchmarks/fault_injection.py --data-root ../shared/data --work /tmp/faults

"files intact" compares every label PNG and item record of the output with an
uninterrupted first run (byte for byte) and checks the user's own files are untouched.
The second part feeds it real-world input (a sideways-stored phone photo, ambiguous and
truncated COCO files), races two runs on one folder, imports into the wrong folder and
fails imports half-way, and provokes OS errors; commands that must print one line run in a
process of their own, so that a traceback would show.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from flows.cli import main as cli
from flows.server import temporary_server
from pipeline.formats import files
from refine_net.config import RefinerTrainConfig
from refine_net.train import fit_refiner

ROWS: list[tuple[str, str, str]] = []


def small_ccp(root: Path, work: Path, labelled: int = 40, unlabelled: int = 12) -> Path:
    """A CCP-layout copy with ``labelled`` labelled and ``unlabelled`` keypoint-only photos."""
    out = work / "ccp"
    if out.exists():
        return out
    (out / "photos").mkdir(parents=True)
    (out / "annotations" / "pixel-level").mkdir(parents=True)
    shutil.copy(root / "label_list.mat", out)
    mats = sorted((root / "annotations" / "pixel-level").glob("*.mat"))[:labelled]
    ids = [m.stem for m in mats] + [f"{i:04d}" for i in range(1005, 1005 + unlabelled)]
    for m in mats:
        shutil.copy(m, out / "annotations" / "pixel-level")
    kps = json.loads((root / "keypoints_blazepose33.json").read_text())
    keep = {f"{i}.jpg": kps[f"{i}.jpg"] for i in ids}
    for name in keep:
        shutil.copy(root / "photos" / name, out / "photos")
    (out / "keypoints_blazepose33.json").write_text(json.dumps(keep))
    return out


def synth(ckpt: Path, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    """Run ``partsynth synthesize``; returns (exit code, its last output line)."""
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = cli(["synthesize", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                    "--workers", "2", *extra])
    lines = [ln for ln in (err.getvalue() + buf.getvalue()).splitlines() if ln.strip() and "|" not in ln[:30]]
    totals_line = [ln for ln in lines if "{'images'" in ln]
    return code, (totals_line or lines or [""])[-1].strip()


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("labels", "items")
            for p in sorted((out / sub).glob("*")) if p.is_file()}


def row(case: str, outcome: str, intact: bool | str) -> None:
    ROWS.append((case, outcome, intact if isinstance(intact, str) else ("yes" if intact else "NO")))
    print(f"{case:<48} | {outcome[:110]:<110} | {ROWS[-1][2]}", flush=True)


def totals(line: str) -> str:
    d = ast.literal_eval(line.split(": ", 1)[1]) if ": {" in line else {}     # the printed totals dict
    keep = ("people_labelled", "people_skipped", "images_done", "images_reused", "images_failed", "images_removed")
    return ", ".join(f"{k} {d[k]}" for k in keep if d.get(k)) or line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--work", default="/tmp/partsynth-faults")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work / "runs", ignore_errors=True)
    t0 = time.time()
    data = small_ccp(Path(args.data_root) / "ccp", work)
    ckpt = fit_refiner(RefinerTrainConfig(data=str(data), out_dir=str(work / "runs" / "refiner"), epochs=1,
                                            size=64, depth=4, base_filters=8, threads=2))
    out = work / "runs" / "synth"
    with temporary_server():
        code, line = synth(ckpt, data, out)
        base = snapshot(out)
        row("first run", f"exit {code}: {totals(line)}", bool(base))
        code, line = synth(ckpt, data, out)
        row("rerun, nothing changed", f"exit {code}: {totals(line)}", snapshot(out) == base)
        next((out / "labels").glob("*.png")).unlink()
        sorted((out / "items").glob("*.json"))[-1].unlink()
        (out / "people.json").unlink()
        code, line = synth(ckpt, data, out)
        row("deleted a label PNG, an item record, people.json", f"exit {code}: {totals(line)}",
            snapshot(out) == base and (out / "people.json").exists())
        shutil.rmtree(out)
        code, line = synth(ckpt, data, out)
        row("deleted the output folder", f"exit {code}: {totals(line)}", snapshot(out) == base)
        next((out / "labels").glob("*.png")).write_bytes(b"edited")
        code, line = synth(ckpt, data, out)
        row("a label PNG changed by hand", f"exit {code}: {totals(line)}", snapshot(out) == base)
        mine = {out / ".settings.tmpl": "user", out / "sub" / ".draft.tmp.txt": "user"}
        for p, text in mine.items():
            p.parent.mkdir(exist_ok=True)
            p.write_text(text)
        code, line = synth(ckpt, data, out)
        row("user's .settings.tmpl and sub/.draft.tmp.txt in the output", f"exit {code}: {totals(line)}",
            all(p.read_text() == t for p, t in mine.items()) and snapshot(out) == base)
        files.write_json(out / "items" / "other.json", {"mine": True})
        code, line = synth(ckpt, data, out)
        after = snapshot(out)
        row("foreign items/other.json in the output", f"exit {code}: {line}",
            after.pop("items/other.json", None) is not None and after == base)
        (out / "items" / "other.json").unlink()
        users = work / "runs" / "users"
        users.mkdir()
        for name in ("people.json", "dataset.json", "annotations.json"):
            (users / name).write_text("user's own")
        code, line = synth(ckpt, data, users)
        row("output folder holds the user's people/dataset/annotations.json", f"exit {code}: {line}",
            all((users / n).read_text() == "user's own" for n in ("people.json", "dataset.json", "annotations.json")))
        code, line = synth(ckpt, data, data)
        row("output folder = input folder", f"exit {code}: {line}", True)
        bad = work / "runs" / "badkp"
        shutil.copytree(data, bad)
        kps = json.loads((bad / "keypoints_blazepose33.json").read_text())
        names = sorted(n for n in kps if int(n[:4]) > 1004)
        kps[names[0]][11][0] = 1e9                                       # one shoulder far outside
        kps[names[1]] = [[x * 1000, y * 1000, v] for x, y, v in kps[names[1]]]
        kps[names[2]] = [[-abs(x) - 5000, y, v] for x, y, v in kps[names[2]]]
        (bad / "keypoints_blazepose33.json").write_text(json.dumps(kps))
        (bad / "photos" / names[3]).write_bytes(b"")                      # zero-byte photo
        code, line = synth(ckpt, bad, work / "runs" / "synth_badkp")
        manifest = __import__("pandas").read_parquet(work / "runs" / "synth_badkp" / "manifest.parquet")
        skipped = list(manifest[manifest.status != "ok"].reason)
        skipped += [s["reason"] for s in json.loads((work / "runs" / "synth_badkp" / "skipped.json").read_text())]
        reasons = "; ".join(sorted({r.split(" (")[0][:28] for r in skipped}))
        row("shoulder x=1e9, coords x1000, negative coords, 0-byte photo", f"exit {code}: {reasons}",
            "yes" if len(skipped) == 4 and (manifest[manifest.status == "ok"].pixels > 0).all() else "NO")
        code, _ = synth(ckpt, bad, work / "runs" / "synth_badkp", "--strict")
        row("the same with --strict", f"exit {code}", True)
        moved = work / "runs" / "moved"
        shutil.copytree(data, moved)
        code, _ = synth(ckpt, moved, work / "runs" / "synth_moved")
        (moved / "photos" / names[4]).unlink()
        code, line = synth(ckpt, moved, work / "runs" / "synth_moved")
        row("a photo removed from the input", f"exit {code}: {totals(line)}",
            not any(names[4][:4] in p.name for p in (work / "runs" / "synth_moved" / "labels").glob("*")))
        truncated = work / "runs" / "truncated.pt"
        truncated.write_bytes(ckpt.read_bytes()[:4096])
        code, printed = command("synthesize", "--checkpoint", str(truncated), "--data", str(data), "--out",
                                str(work / "runs" / "synth_trunc"))
        row("truncated checkpoint given to synthesize", one_line(code, printed), not (work / "runs" / "synth_trunc").exists())
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(data)])
        row("refiner checkpoint given to evaluate", f"exit {code}: {err.getvalue().strip()}", True)
        real_world_rows(work / "runs", data, ckpt, out, base, Path(args.data_root))
    print(f"\n{len(ROWS)} cases in {time.time() - t0:.0f} s")


def command(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    """``partsynth ARGV`` in a process of its own; (exit code, everything it printed)."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    return done.returncode, done.stdout + done.stderr


def one_line(code: int, printed: str) -> str:
    """"exit N: <last line>", or a note that a traceback was printed."""
    last = printed.strip().splitlines()[-1] if printed.strip() else ""
    return f"exit {code}: " + ("TRACEBACK PRINTED; " if "Traceback" in printed else "") + last


def files_of(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def real_world_rows(runs: Path, data: Path, ckpt: Path, out: Path, base: dict, root: Path) -> None:
    """Photos and files as they come from the real world, concurrent runs, imports and OS
    errors, each against the first run ``base`` of ``data`` into ``out``."""
    item = sorted((out / "items").glob("*.json"))[3]
    record = json.loads(item.read_text())
    record["persons"][0]["mean_max_prob"] = 0.999
    item.write_text(json.dumps(record))
    code, line = synth(ckpt, data, out)
    row("an item record edited by hand", f"exit {code}: {totals(line)}", snapshot(out) == base)

    racing = runs / "racing"
    first = subprocess.Popen([sys.executable, "-m", "flows.cli", "synthesize", "--checkpoint", str(ckpt), "--data",
                              str(data), "--out", str(racing), "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    while not (racing / ".partsynth.lock.json").exists() and first.poll() is None:
        time.sleep(0.05)
    other = runs / "other_input"
    shutil.copytree(data, other)
    code, line = synth(ckpt, other, racing)
    first.wait()
    row("a second synthesize (other input) into a folder being written", f"exit {code}: {line}",
        first.returncode == 0 and snapshot(racing) == base)

    exif = runs / "exif"
    shutil.copytree(data, exif)
    photo = sorted((exif / "photos").glob("*.jpg"))[-1]
    upright = Image.open(photo)
    exif_tags = Image.Exif()
    exif_tags[0x0112] = 6                                            # stored turned: a viewer turns it 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, quality=95, exif=exif_tags)
    code, line = synth(ckpt, exif, runs / "synth_exif")
    turned = files.read_label_png(next((runs / "synth_exif" / "labels").glob(f"{photo.stem}-*.png")))
    upright = files.read_label_png(next((out / "labels").glob(f"{photo.stem}-*.png")))
    same = float((turned == upright).mean()) if turned.shape == upright.shape else 0.0
    row("a phone photo stored sideways with EXIF orientation 6", f"exit {code}: label agrees with the upright "
        f"photo's on {100 * same:.1f} % of pixels", same > 0.95)

    coco = runs / "coco"
    shutil.copytree(root / "mmpose" / "coco", coco, ignore=shutil.ignore_patterns("test_coco_*"))
    doc = json.loads((coco / "test_coco.json").read_text())
    doc["images"][1]["id"] = doc["images"][0]["id"]                  # two photos, one id
    for a in doc["annotations"]:
        if a["image_id"] == 40083:
            a["image_id"] = doc["images"][0]["id"]
    doc["annotations"].append(dict(doc["annotations"][0], id=1, image_id=999))
    (coco / "test_coco.json").write_text(json.dumps(doc))
    code, line = synth(ckpt, coco / "test_coco.json", runs / "synth_coco")
    skips = [s["reason"] for s in json.loads((runs / "synth_coco" / "skipped.json").read_text())]
    labelled = {p["image"].rsplit("/", 1)[-1] for p in json.loads((runs / "synth_coco" / "people.json").read_text())
                if p.get("status") != "skipped"}
    row("COCO: two photos with one image id, an annotation of a missing image",
        f"exit {code}: {len(skips)} skipped: {'; '.join(sorted({r[:50] for r in skips}))[:90]}",
        len(skips) == 4 and labelled == {"000000196141.jpg", "000000197388.jpg"})
    (coco / "cut.json").write_text((coco / "test_coco.json").read_text()[:5000])
    code, line = synth(ckpt, coco / "cut.json", runs / "synth_cut")
    row("a truncated COCO JSON", f"exit {code}: {line}", not (runs / "synth_cut").exists())

    voc_dir = runs / "voc"
    assert cli(["export", str(out), "--format", "voc", "--out", str(voc_dir)]) == 0
    before = files_of(out)
    code, printed = command("import-labels", str(voc_dir), "--format", "voc", "--out", str(out), "--replace")
    row("import-labels into the synthesized folder, with --replace", one_line(code, printed), files_of(out) == before)
    stems = (voc_dir / "ImageSets/Segmentation/default.txt").read_text().split()
    mask = files.read_label_png(voc_dir / "SegmentationClass" / f"{stems[-1]}.png")
    mask[0, 0] = 200
    files.write_label_png(voc_dir / "SegmentationClass" / f"{stems[-1]}.png", mask)
    code, printed = command("import-labels", str(voc_dir), "--format", "voc", "--out", str(runs / "corrected"))
    row("an import failing on its last image", one_line(code, printed), not files_of(runs / "corrected"))

    (runs / "a_file").write_text("x")
    code, printed = command("synthesize", "--checkpoint", str(ckpt), "--data", str(data), "--out",
                            str(runs / "a_file" / "out"))
    row("output folder under a regular file", one_line(code, printed), True)
    if os.geteuid() != 0:
        (runs / "read_only").mkdir()
        (runs / "read_only").chmod(0o555)
        code, printed = command("synthesize", "--checkpoint", str(ckpt), "--data", str(data), "--out",
                                str(runs / "read_only"))
        row("read-only output folder", one_line(code, printed), not files_of(runs / "read_only"))
    else:
        row("read-only output folder", "not run: as root, permissions do not apply (tests simulate it)", "-")
    code, printed = command("synthesize", "--checkpoint", str(runs / "no_such_run" / "last.pt"),
                            "--data", str(data), "--out", str(runs / "s_missing"))
    row("a checkpoint path that does not exist", one_line(code, printed), True)

    code, printed = command("export", str(out), "--out", "ls", "--copy-images", cwd=runs)
    tasks = json.loads((runs / "ls" / "tasks.json").read_text()) if (runs / "ls" / "tasks.json").exists() else []
    row("export --format label-studio --copy-images, relative --out", one_line(code, printed),
        bool(tasks) and all((runs / "ls" / t["data"]["image"].split("?d=")[1]).is_file() for t in tasks))


if __name__ == "__main__":
    main()
