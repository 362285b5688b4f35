"""kNN queries per second against banks of 10^3, 10^5 and 10^6 poses.

    python benchmarks/bench_knn.py --banks 1000 100000 1000000 --queries 10000 --workers 2

Poses are random articulated poses (pipeline.demo.random_pose) jittered per joint; a
fraction of the joints is dropped (--bank-missing, --query-missing) to exercise the
missing-joint paths.  Prints index build
time, query time for all queries, queries/s, and the process's peak memory.  ``--dense``
also times plain brute force, the baseline an index must beat: squared distances of 256
queries at a time to every bank pose by one matrix product (--workers BLAS threads, missing
joints as 0, no re-scoring) and the blocked top-k of
:func:`pipeline.priors.pose_index.smallest_k`.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.demo import random_pose
from pipeline.priors.pose_index import _BLOCK, PoseIndex, smallest_k
from pipeline.skeleton import J


def random_poses(n: int, rng: np.random.Generator, base: np.ndarray, missing: float) -> np.ndarray:
    """n poses: base poses with Gaussian joint jitter (2 px), a ``missing`` fraction of the
    joints other than pelvis and thorax dropped."""
    kp = base[rng.integers(0, len(base), n)].copy()
    kp[..., :2] += rng.normal(0, 2.0, (n, 16, 2)).astype(np.float32)
    drop = rng.random((n, 16)) < missing
    drop[:, [J["pelvis"], J["thorax"]]] = False
    kp[drop] = (np.nan, np.nan, 0)
    return kp


def dense_search(bank: np.ndarray, queries: np.ndarray, k: int, threads: int) -> float:
    """Seconds for the brute-force search of ``queries`` (M, 16, 3) in ``bank`` (N, 16, 3)
    on x, y alone (NaN as 0): one float32 matrix product per 256 queries, then top-k."""
    x = np.nan_to_num(bank[..., :2].reshape(len(bank), -1)).astype(np.float32)
    pad = -len(x) % _BLOCK
    x = np.concatenate([x, np.full((pad, x.shape[1]), 1e6, np.float32)])
    xx = (x * x).sum(1)
    q = np.nan_to_num(queries[..., :2].reshape(len(queries), -1)).astype(np.float32)
    t = time.perf_counter()
    with threadpool_limits(threads):
        for i in range(0, len(q), 256):
            qb = q[i: i + 256]
            smallest_k(xx[None] - 2 * (qb @ x.T), k)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--banks", type=int, nargs="+", default=[1000, 100000, 1000000])
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bank-missing", type=float, default=0.05, help="fraction of bank joints dropped")
    p.add_argument("--query-missing", type=float, default=0.05, help="fraction of query joints dropped")
    p.add_argument("--dense", action="store_true", help="also time brute force by matrix products")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    base = np.stack([random_pose(rng, 256) for _ in range(20000)])
    queries = random_poses(args.queries, rng, base, args.query_missing)
    print(f"{os.cpu_count()} cpus, {args.workers} worker threads, k={args.k}, {args.queries} queries; "
          f"joints missing: bank {args.bank_missing:.0%}, queries {args.query_missing:.0%}")
    for n in args.banks:
        bank = random_poses(n, rng, base, args.bank_missing)
        t = time.perf_counter()
        index = PoseIndex(bank, workers=args.workers)
        index.query(queries[:1], args.k)  # builds the KD-tree of the common joint pattern
        build = time.perf_counter() - t
        t = time.perf_counter()
        index.query(queries, args.k)
        dt = time.perf_counter() - t
        print(f"bank {n:>8}: build {build:6.2f} s; {args.queries} queries in {dt:6.2f} s = "
              f"{args.queries / dt:8.0f} queries/s; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if args.dense:
            dt = dense_search(bank, queries, args.k, args.workers)
            print(f"bank {n:>8}: brute force, matrix products: {args.queries} queries in {dt:6.2f} s = "
                  f"{args.queries / dt:8.0f} queries/s ({1e3 * dt / args.queries:.3f} ms each)")


if __name__ == "__main__":
    main()
