"""Fault injection: the ways a user can lose data or get wrong labels marked "ok", run on a
small copy of the shared CCP data with a one-epoch refiner, as a table
case | outcome | files intact.

    python benchmarks/fault_injection.py --data-root ../shared/data --work /tmp/faults

"files intact" compares every label PNG and item record of the output with an
uninterrupted first run (byte for byte) and checks the user's own files are untouched.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import shutil
import time
from pathlib import Path

from flows.cli import main as cli
from flows.server import temporary_server
from pipeline import files
from refine_net.config import RefinerTrainConfig
from refine_net.train import main as train_refiner

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
    ckpt = train_refiner(RefinerTrainConfig(data=str(data), out_dir=str(work / "runs" / "refiner"), epochs=1,
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
        code, line = synth(truncated, data, work / "runs" / "synth_trunc")
        row("truncated checkpoint", f"exit {code}: {line}", True)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(data)])
        row("refiner checkpoint given to evaluate", f"exit {code}: {err.getvalue().strip()}", True)
    print(f"\n{len(ROWS)} cases in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
