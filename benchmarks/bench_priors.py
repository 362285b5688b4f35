"""Priors per second on the CCP bank, single process, one thread.

    python benchmarks/bench_priors.py --data ../shared/data/ccp --sizes 128 256 --k 3

Each prior is built as synthesis builds it: the kNN query over the bank (self excluded),
k morphs, one average.  Synthesis queries the bank once for all the people of the images it
labels together (a flow chunk, about 64 images), so the queries go in batches of
--query-batch people (64); ``--query-batch 1`` times one query per person.  Prints priors/s
per size and the process's peak memory.
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.readers.layouts import iter_records  # noqa: E402
from pipeline.priors.bank import PriorBank, PriorConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/ccp")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--queries", type=int, default=800)
    p.add_argument("--query-batch", type=int, default=64, help="people per kNN query")
    args = p.parse_args()
    cv2.setNumThreads(1)
    recs = [r for r in iter_records(args.data) if r.label_map is not None and r.keypoints is not None]
    print(f"bank: {len(recs)} labelled people from {args.data}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus; 1 thread")
    for size in args.sizes:
        t = time.perf_counter()
        bank = PriorBank.from_records(recs, PriorConfig(size=size, k=args.k))
        build = time.perf_counter() - t
        bank.index.workers = 1                       # one core: no query threads either
        kps = np.stack([e.keypoints for e in bank.exemplars])
        n = min(args.queries, len(kps))
        t = time.perf_counter()
        for start in range(0, n, args.query_batch):
            rows = np.arange(start, min(start + args.query_batch, n))
            nb = bank.index.query(kps[rows], args.k, exclude_groups=bank.groups[rows])
            for i, ids in zip(rows, nb.ids):
                bank.prior(kps[i], ids)
        dt = time.perf_counter() - t
        print(f"size {size}: bank built in {build:.1f} s; {n} priors (k={args.k}, queries of "
              f"{args.query_batch}) in {dt:.2f} s = "
              f"{n / dt:.0f} priors/s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
