"""Wall time and peak memory of ``partsynth synthesize --labels pascal6`` on COCO-size keypoint
files (10^3, 10^4, 10^5 people), and of its reruns.

    python benchmarks/bench_coco_scale.py --sizes 1000 10000 100000 --work /tmp/coco_scale

For each size: a file from :mod:`benchmarks.coco_size` (made once in WORK/n<size>), then the
command as a user runs it, in a fresh process (``--workers``), timed from launch to exit,
with its peak RSS (the largest of its processes, the temporary Prefect server included);
then the same command again with nothing changed, then with one image (three people) added
to the file.  Prints a table: people, seconds, people/s, seconds per 1,000 people against
the smallest size's (linear time: 1.00), peak RSS against the smallest's (flat memory:
1.00), and the reruns' seconds and how many images each labelled anew.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco_size import make_coco_size, place_photo  # noqa: E402

MEASURE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
           "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_synthesize(data: Path, out: Path, workers: int, code: str | None = None) -> dict:
    """One ``partsynth synthesize --labels pascal6`` process: seconds, peak KiB, totals;
    ``code``: a checkout of another partsynth commit to run instead (its packages first on
    the path)."""
    program = ([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); "
                                      "from flows.cli import main; sys.exit(main())"]
               if code else [shutil.which("partsynth") or "partsynth"])
    cmd = [sys.executable, "-c", MEASURE, *program, "synthesize",
           "--labels", "pascal6", "--data", str(data), "--out", str(out), "--workers", str(workers)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[3:])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = done.stdout.splitlines()
    peak = int(next(ln for ln in lines if ln.startswith("PEAK_KIB")).split()[1])
    totals = ast.literal_eval(next(ln for ln in lines if ln.startswith(f"{out}: ")).split(": ", 1)[1])
    return {"seconds": seconds, "peak_kib": peak, "totals": totals}


def add_one_image(data: Path) -> None:
    """Append a copy of the file's first image (a new id and link, its annotations) to ``data``."""
    doc = json.loads(data.read_text())
    first = doc["images"][0]
    new_id = max(im["id"] for im in doc["images"]) + 1
    name = f"{new_id:012d}{Path(first['file_name']).suffix}"
    link = data.parent / name
    if not link.exists():
        place_photo(data.parent / first["file_name"], link)
    doc["images"].append(dict(first, id=new_id, file_name=name))
    next_ann = max(a["id"] for a in doc["annotations"]) + 1
    extra = [dict(a, id=next_ann + i, image_id=new_id)
             for i, a in enumerate(a for a in doc["annotations"] if a["image_id"] == first["id"])]
    doc["annotations"] += extra
    data.write_text(json.dumps(doc))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--work", default="/tmp/coco_scale")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-reruns", action="store_true", help="skip the two reruns")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--baseline", help="a checkout of another commit (git worktree add DIR REV) run beside this "
                                      "code on the same files, up to --baseline-max people; its figures are "
                                      "printed with the ratio new / baseline")
    p.add_argument("--baseline-max", type=int, default=10000)
    args = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, --workers {args.workers}")
    rows = []
    for n in args.sizes:
        folder = Path(args.work) / f"n{n}"
        made = make_coco_size(folder, n)
        out = folder / "synth"
        shutil.rmtree(out, ignore_errors=True)
        codes = {"": None}
        if args.baseline and n <= args.baseline_max:
            codes["baseline_"] = args.baseline
            shutil.rmtree(folder / "synth_baseline", ignore_errors=True)
        row = dict(people=made["people"], images=made["images"], file_mib=Path(made["path"]).stat().st_size / 2**20)
        for prefix, code in codes.items():
            row[prefix + "first"] = run_synthesize(Path(made["path"]), folder / f"synth{'_baseline' if code else ''}",
                                                   args.workers, code)
        if not args.no_reruns:
            for prefix, code in codes.items():
                row[prefix + "rerun"] = run_synthesize(Path(made["path"]), folder / f"synth{'_baseline' if code else ''}",
                                                       args.workers, code)
            add_one_image(Path(made["path"]))
            for prefix, code in codes.items():
                row[prefix + "one_added"] = run_synthesize(
                    Path(made["path"]), folder / f"synth{'_baseline' if code else ''}", args.workers, code)
        row.update(row["first"])
        rows.append(row)
        print(f"  {made['people']:,} people: {row['seconds']:.1f} s, peak {row['peak_kib'] / 2**20:.2f} GiB",
              flush=True)
    base = rows[0]
    print("\n| people | images | file MiB | seconds | people/s | s per 1,000 (ratio) | peak RSS GiB (ratio) "
          "| rerun s (images done) | one image added s (images done) |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_k0 = base["seconds"] / base["people"] * 1000
    for r in rows:
        per_k = r["seconds"] / r["people"] * 1000
        reruns = ["-", "-"]
        for i, key in enumerate(("rerun", "one_added")):
            if key in r:
                reruns[i] = f"{r[key]['seconds']:.1f} ({r[key]['totals']['images_done']})"
        print(f"| {r['people']:,} | {r['images']:,} | {r['file_mib']:.1f} | {r['seconds']:.1f} | "
              f"{r['people'] / r['seconds']:.0f} | {per_k:.2f} ({per_k / per_k0:.2f}) | "
              f"{r['peak_kib'] / 2**20:.2f} ({r['peak_kib'] / base['peak_kib']:.2f}) | {reruns[0]} | {reruns[1]} |")
    if any("baseline_first" in r for r in rows):
        print("\n| people | run | this code s | baseline s | ratio | this code peak GiB | baseline peak GiB | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            for key in ("first", "rerun", "one_added"):
                if f"baseline_{key}" in r:
                    a, b = r[key], r[f"baseline_{key}"]
                    print(f"| {r['people']:,} | {key} | {a['seconds']:.1f} | {b['seconds']:.1f} | "
                          f"{a['seconds'] / b['seconds']:.2f} | {a['peak_kib'] / 2**20:.2f} | "
                          f"{b['peak_kib'] / 2**20:.2f} | {a['peak_kib'] / b['peak_kib']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
