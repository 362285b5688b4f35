"""People per second of the partition labeller (body parts from a person's own mask and
skeleton), single process, one thread.

    python benchmarks/bench_partition.py --data ../shared/data/mmpose/coco/test_coco.json --repeats 20

Each person of a COCO keypoints file with its own instance mask is partitioned on the
whole photo as ``synthesize --labels pascal6`` does (``partition_people`` per image: each
person's parts, then depth order); the masks are decoded once beforehand, so the figure is
the partition alone (no image decoding, PNG writing or Prefect).  Prints people/s and the
process's peak memory.
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import cv2  # noqa: E402

from pipeline.formats.person_mask import read_person_mask  # noqa: E402
from pipeline.priors.partition import partition_people  # noqa: E402
from pipeline.readers.coco import read_coco  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mmpose/coco/test_coco.json")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    cv2.setNumThreads(1)
    images = defaultdict(list)
    for r in read_coco(args.data):
        if r.meta.get("rle"):
            images[r.image_path].append((read_person_mask(r, r.image_size), r.keypoints))
    people = sum(len(v) for v in images.values())
    print(f"{people} people with masks in {len(images)} images of {args.data}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; 1 thread")
    t = time.perf_counter()
    for _ in range(args.repeats):
        for persons in images.values():
            partition_people([m for m, _ in persons], [k for _, k in persons])
    dt = time.perf_counter() - t
    print(f"{people * args.repeats} partitions in {dt:.2f} s = {people * args.repeats / dt:.0f} people/s; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
