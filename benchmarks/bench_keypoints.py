"""Keypoint estimation speed (BlazePose full, mediapipe 0.10.14, CPU): photos per second.

    python benchmarks/bench_keypoints.py --data-root ../shared/data --photos 200 --threads 1 2 --repeats 3

Single person: the first ``--photos`` CCP photos (832 x 550), whole photo, decode included.
Multi-person: the COCO fixture photos with their person detections (score >= 0.5, as
``partsynth keypoints --boxes``), one BlazePose run per padded box; people/s and photos/s.
``--threads N`` runs N threads, each with its own BlazePose graph (as the flow's workers).
Prints one line per configuration: median and spread over ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.formats import files
from pipeline.blazepose import BlazePose
from pipeline.person_boxes import read_person_boxes


def run(bp: BlazePose, jobs: list[tuple[str, list | None]], threads: int) -> tuple[float, int]:
    """Seconds to estimate every (photo, boxes) job with ``threads`` threads, and people found."""
    def one(job):
        photo, boxes = job
        found = bp.estimate(files.read_image(photo), None if boxes is None else [b for b, _ in boxes],
                            None if boxes is None else [s for _, s in boxes], path=photo)
        return sum(not isinstance(p, str) for p in found)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, jobs[:threads]))                        # warm up every thread's graph
        t = time.perf_counter()
        people = sum(pool.map(one, jobs))
    return time.perf_counter() - t, people


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bp = BlazePose()
    ccp = sorted(str(p) for p in (args.data_root / "ccp" / "photos").glob("*.jpg"))[: args.photos]
    coco = args.data_root / "mmpose" / "coco"
    coco_photos = sorted(str(p) for p in coco.glob("*.jpg"))
    boxes = read_person_boxes(coco / "test_coco_det_AP_H_56.json", coco_photos, 0.5)
    multi = [(p, boxes[p]) for p in coco_photos] * 10
    for name, jobs in (("single person, CCP photos", [(p, None) for p in ccp]),
                       (f"multi-person, COCO fixtures x10 ({sum(len(b) for _, b in multi)} boxes)", multi)):
        for threads in args.threads:
            times, people = [], 0
            for _ in range(args.repeats):
                seconds, people = run(bp, jobs, threads)
                times.append(seconds)
            rates = [len(jobs) / s for s in times]
            print(f"{name}, {threads} thread(s): {statistics.median(rates):.1f} photos/s "
                  f"(runs {' / '.join(f'{r:.1f}' for r in rates)}), {people / statistics.median(times):.1f} people/s, "
                  f"{people} people in {len(jobs)} photos", flush=True)


if __name__ == "__main__":
    main()
