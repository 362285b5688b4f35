"""Pose-similar cluster search (Fang et al., CVPR 2018, section 3.3; method.md section 2).

Distance between two normalised poses: the root mean square of the 2-D distances over the
joints present in *both* (pelvis excluded: it is the origin of both), unitless (torso
lengths).  Comparisons sharing fewer than ``min_shared`` joints are not made.

Search is exact.  Queries are grouped by their pattern of present joints.  A pattern
shared by many queries gets a scikit-learn ``KDTree`` over the bank poses that have all
its joints (cached); bank poses lacking some of them, and queries with rare patterns, are
compared by masked matrix products over the shared joints (chunked, then re-scored in
float64).  Candidate lists are merged by distance.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from sklearn.neighbors import KDTree
from threadpoolctl import threadpool_limits

from pipeline.priors.pose import normalize_poses
from pipeline.skeleton import J, NUM_JOINTS

#: Joints compared (all but the pelvis, which is the origin of every normalised pose).
COMPARED = np.array([j for j in range(NUM_JOINTS) if j != J["pelvis"]])


class Neighbours(NamedTuple):
    """Query result.

    Attributes:
        ids: int64 (M, k) bank row indices, nearest first; -1 where fewer were found.
        distances: float32 (M, k) RMS joint distances in torso lengths; inf where -1.
        reasons: per query, "" or why it has no neighbours (unusable pose, too few joints).
    """

    ids: np.ndarray
    distances: np.ndarray
    reasons: list[str]


#: Block length of the blocked top-k selection.
_BLOCK = 64


def smallest_k(d: np.ndarray, k: int) -> np.ndarray:
    """Column indices (m, k) of the k smallest finite values of each row of float32
    (m, R), R a multiple of :data:`_BLOCK`, unordered; -1 where a row has fewer.

    Blocked selection: the k-th smallest block minimum bounds the k-th smallest value, so
    only blocks whose minimum is within that bound are examined (about k blocks).  It is
    several times faster than ``argpartition`` over whole rows.
    """
    m, r = d.shape
    bm = d.reshape(m, r // _BLOCK, _BLOCK).min(axis=2)
    kb = min(k, bm.shape[1])
    bound = np.partition(bm, kb - 1, axis=1)[:, kb - 1]
    rows, blocks = np.nonzero((bm <= bound[:, None]) & np.isfinite(bm))
    cols = (blocks[:, None] * _BLOCK + np.arange(_BLOCK)).ravel()
    rws = np.repeat(rows, _BLOCK)
    vals = d[rws, cols]
    ok = np.isfinite(vals)
    rws, cols, vals = rws[ok], cols[ok], vals[ok]
    order = np.lexsort((vals, rws))
    rws, cols = rws[order], cols[order]
    rank = np.arange(len(rws)) - np.searchsorted(rws, rws, side="left")
    keep = rank < k
    out = np.full((m, k), -1, dtype=np.int64)
    out[rws[keep], rank[keep]] = cols[keep]
    return out


class PoseIndex:
    """Nearest-neighbour index over a bank of labelled poses.

    Args:
        keypoints: float (N, 16, 3) canonical keypoints in pixels of each bank person.
        groups: optional (N,) ids; rows sharing a group with a query are excluded by
            ``exclude_groups`` (a person and its flipped copy share a group).
        min_shared: minimum number of joints present in both poses for a comparison.
        workers: threads used to answer large query batches.
        tree_min_queries: a joint pattern gets its own KD-tree once a batch holds this many
            queries with it (building costs about as much as this many brute-force
            queries); rarer patterns are searched by exact masked matrix products.
    Attributes:
        rejected: (row, reason) for bank poses that cannot be compared (no usable torso).
    """

    def __init__(self, keypoints: np.ndarray, groups=None, min_shared: int = 6, workers: int = 2,
                 tree_min_queries: int = 1000):
        norm = normalize_poses(keypoints)
        self.coords = norm.coords[:, COMPARED]  # (N, 15, 2)
        self.valid = norm.valid[:, COMPARED]  # (N, 15)
        self.usable = norm.usable
        self.rejected = [(i, r) for i, r in enumerate(norm.reasons) if r]
        n = len(self.coords)
        self.groups = np.arange(n) if groups is None else np.asarray(groups)
        if len(self.groups) != n:
            raise ValueError(f"groups has {len(self.groups)} entries for {n} poses")
        _, counts = np.unique(self.groups, return_counts=True)
        self._max_group = int(counts.max()) if n else 1
        self.min_shared = min_shared
        self.workers = workers
        self.tree_min_queries = tree_min_queries
        self._trees: dict[bytes, tuple[np.ndarray, KDTree]] = {}
        self._features: dict[bytes, tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.coords)

    def _tree(self, mask: np.ndarray) -> tuple[np.ndarray, KDTree | None]:
        key = mask.tobytes()
        if key not in self._trees:
            rows = np.flatnonzero(self.usable & self.valid[:, mask].all(axis=1))
            data = self.coords[rows][:, mask].reshape(len(rows), -1).astype(np.float64)
            self._trees[key] = (rows, KDTree(data) if len(rows) else None)
        return self._trees[key]

    def _bank_features(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """The bank side of :meth:`_masked_topk` for ``rows``, padded to a multiple of
        :data:`_BLOCK` (dummy rows share no joint, so they are never chosen): features
        float32 (60, R), joint masks float32 (15, R), groups (R,) and row ids (R,).  Cached
        per row set (a few per bank: all usable rows, and the rows outside each KD-tree)."""
        key = rows.tobytes()
        if key not in self._features:
            pad = -len(rows) % _BLOCK
            b_valid = np.pad(self.valid[rows].astype(np.float32), ((0, pad), (0, 0)))
            b_xy = np.pad(np.nan_to_num(self.coords[rows]), ((0, pad), (0, 0), (0, 0))) * b_valid[..., None]
            b_feat = np.ascontiguousarray(np.concatenate(
                [b_valid, (b_xy ** 2).sum(-1), b_xy.reshape(len(b_xy), -1)], axis=1).T)
            self._features[key] = (b_feat, np.ascontiguousarray(b_valid.T),
                                   np.pad(self.groups[rows], (0, pad), constant_values=-1), np.pad(rows, (0, pad)))
        return self._features[key]

    def _masked_topk(self, q: np.ndarray, qvalid: np.ndarray, rows: np.ndarray, groups_q, want: int):
        """Exact ``want`` nearest among bank ``rows`` for queries q (m, 15, 2) with their own
        joint masks qvalid (m, 15), by matrix products over shared joints, in chunks.

        With masks a (query) and b (bank) and coordinates x (NaN set to 0):
        sum_j a_j b_j |x_qj - x_bj|^2 = [a |x_q|^2, a, -2 a x_q] . [b, b |x_b|^2, b x_b],
        one product; the shared-joint count a . b is a second.  The float32 candidates are
        then re-scored exactly in float64.
        """
        m = len(q)
        out_i = np.full((m, want), -1, dtype=np.int64)
        out_d = np.full((m, want), np.inf)
        if len(rows) == 0:
            return out_i, out_d
        b_feat, b_valid_t, b_groups, rows_p = self._bank_features(rows)
        chunk = max(8, (1 << 22) // len(rows_p))
        for s in range(0, m, chunk):
            a_valid = qvalid[s:s + chunk].astype(np.float32)
            a_xy = np.nan_to_num(q[s:s + chunk]) * a_valid[..., None]
            a_feat = np.concatenate([(a_xy ** 2).sum(-1), a_valid, -2 * a_xy.reshape(len(a_xy), -1)], axis=1)
            d = a_feat @ b_feat  # squared distances summed over shared joints
            n = a_valid @ b_valid_t
            np.maximum(d, 0, out=d)
            d[n < self.min_shared] = np.inf
            np.divide(d, np.maximum(n, 1, out=n), out=d)  # mean square over shared joints
            if groups_q is not None:
                d[b_groups[None, :] == np.asarray(groups_q)[s:s + chunk, None]] = np.inf
            cand = smallest_k(d, want)
            ids = np.where(cand >= 0, rows_p[np.maximum(cand, 0)], 0)
            exact = self._exact(q[s:s + chunk], qvalid[s:s + chunk], ids)
            exact[cand < 0] = np.inf
            order = np.argsort(exact, axis=1, kind="stable")
            out_i[s:s + chunk] = np.take_along_axis(ids, order, 1)
            out_d[s:s + chunk] = np.take_along_axis(exact, order, 1)
        out_i[~np.isfinite(out_d)] = -1
        return out_i, out_d

    def _exact(self, q: np.ndarray, qvalid: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """float64 RMS distances (m, c) from queries (m, 15, 2) to bank rows ids (m, c)."""
        shared = qvalid[:, None, :] & self.valid[ids]
        diff = np.where(shared[..., None], q[:, None].astype(np.float64) - self.coords[ids], 0.0)
        n = shared.sum(-1)
        d = np.sqrt((diff ** 2).sum(-1).sum(-1) / np.maximum(n, 1))
        return np.where(n >= self.min_shared, d, np.inf)

    def _search_pattern(self, q: np.ndarray, qmask: np.ndarray, groups_q, want: int):
        """Up to ``want`` nearest (ids, RMS distances) for queries q (m, 15, 2) that share
        the joint pattern qmask, using the pattern's KD-tree for complete bank rows."""
        m = len(q)
        rows, tree = self._tree(qmask)
        shared = int(qmask.sum())
        extra = self._max_group if groups_q is not None else 0
        cand_ids, cand_d = [], []
        if tree is not None:
            kk = min(want + extra, len(rows))
            d, i = tree.query(q[:, qmask].reshape(m, -1).astype(np.float64), k=kk)
            d = d / np.sqrt(shared)
            if groups_q is not None:
                d = np.where(self.groups[rows[i]] == np.asarray(groups_q)[:, None], np.inf, d)
            cand_ids.append(rows[i])
            cand_d.append(d)
        others = np.setdiff1d(np.flatnonzero(self.usable), rows, assume_unique=True)
        if len(others):
            i, d = self._masked_topk(q, np.broadcast_to(qmask, (m, len(qmask))), others, groups_q, want)
            cand_ids.append(i)
            cand_d.append(d)
        ids, dist = np.concatenate(cand_ids, axis=1), np.concatenate(cand_d, axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, :want]
        ids, dist = np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)
        if ids.shape[1] < want:
            pad = want - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
        return np.where(np.isfinite(dist), ids, -1), dist

    def query(self, keypoints: np.ndarray, k: int, *, exclude_groups=None,
              random_from: int | None = None, seed: int | None = None) -> Neighbours:
        """The k nearest bank poses of each query pose.

        Args:
            keypoints: float (M, 16, 3) or (16, 3) query keypoints in pixels.
            k: neighbours per query.
            exclude_groups: optional (M,) group ids; bank rows of the same group are never
                returned for that query (leave-one-out: pass the query's own id).
            random_from: draw the k neighbours at random from the ``random_from`` nearest
                (the paper's k of n; needs ``seed`` for reproducibility).
        Returns: :class:`Neighbours` (nearest first; a random draw is sorted by distance).
        """
        kp = np.asarray(keypoints, dtype=np.float32)
        kp = kp[None] if kp.ndim == 2 else kp
        want = max(k, random_from or 0)
        norm = normalize_poses(kp)
        q, qvalid = norm.coords[:, COMPARED], norm.valid[:, COMPARED]
        ids = np.full((len(kp), want), -1, dtype=np.int64)
        dist = np.full((len(kp), want), np.inf, dtype=np.float32)
        reasons = list(norm.reasons)
        excl = None if exclude_groups is None else np.asarray(exclude_groups)
        patterns: dict[bytes, list[int]] = {}
        for i in np.flatnonzero(norm.usable):
            if qvalid[i].sum() < self.min_shared:
                reasons[i] = f"only {int(qvalid[i].sum())} comparable joints (< {self.min_shared})"
                continue
            patterns.setdefault(qvalid[i].tobytes(), []).append(i)
        jobs, rare = [], []
        for key, members in patterns.items():
            members = np.array(members)
            if key not in self._trees and len(members) < self.tree_min_queries:
                rare.append(members)
                continue
            chunks = np.array_split(members, max(1, min(self.workers, len(members) // 256)))
            jobs += [("tree", c) for c in chunks if len(c)]
        if rare:
            rare = np.concatenate(rare)
            jobs += [("brute", c) for c in np.array_split(rare, max(1, min(self.workers, len(rare) // 64)))
                     if len(c)]

        def run(job):
            engine, rows = job
            g = None if excl is None else excl[rows]
            if engine == "tree":
                return (rows, *self._search_pattern(q[rows], qvalid[rows[0]], g, want))
            return (rows, *self._masked_topk(q[rows], qvalid[rows], np.flatnonzero(self.usable), g, want))

        if len(jobs) > 1 and self.workers > 1:
            # one BLAS thread per worker: the workers already keep the cores busy
            with threadpool_limits(1), ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(run, jobs))
        else:
            results = [run(j) for j in jobs]
        for rows, i_, d_ in results:
            ids[rows], dist[rows] = i_, d_
        for i in np.flatnonzero(norm.usable):
            if not reasons[i] and ids[i, 0] < 0:
                reasons[i] = "no bank pose shares enough joints"
        if random_from is not None and random_from > k:
            rng = np.random.default_rng(seed)
            pick = np.argsort(rng.random((len(kp), random_from)), axis=1)[:, :k]
            pick.sort(axis=1)
            ids, dist = np.take_along_axis(ids, pick, 1), np.take_along_axis(dist, pick, 1)
        return Neighbours(ids[:, :k], dist[:, :k].astype(np.float32), reasons)
