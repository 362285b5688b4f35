import numpy as np
import pytest

from pipeline.demo import random_pose
from pipeline.priors.pose import CropBox, apply_affine, normalize_poses, person_box, require_usable
from pipeline.priors.pose_index import COMPARED, PoseIndex
from pipeline.errors import DataError
from pipeline.skeleton import J


def poses(n, seed=0, size=200):
    rng = np.random.default_rng(seed)
    return np.stack([random_pose(rng, size) for _ in range(n)])


def test_normalize_hand_computed():
    kp = np.zeros((16, 3), np.float32)
    kp[:, 2] = 2
    kp[:, :2] = 10
    kp[J["pelvis"], :2] = (10, 20)
    kp[J["thorax"], :2] = (10, 10)  # torso length 10, pointing up
    kp[J["head_top"], :2] = (13, 0)
    n = normalize_poses(kp)
    np.testing.assert_allclose(n.coords[0, J["head_top"]], [0.3, -2.0], rtol=1e-6)
    np.testing.assert_allclose(n.coords[0, J["pelvis"]], [0, 0])
    assert n.usable[0] and n.reasons == [""]


@pytest.mark.parametrize("change,reason", [({"pelvis": np.nan}, "no pelvis"),
                                           ({"thorax": np.nan}, "no thorax"),
                                           ({"thorax": 20.0}, "zero-length torso")])
def test_unusable_torso_reasons(change, reason):
    kp = np.zeros((16, 3), np.float32)
    kp[:, 2] = 2
    kp[J["pelvis"], :2] = (10, 20)
    kp[J["thorax"], :2] = (10, 10)
    for name, value in change.items():
        if np.isnan(value):
            kp[J[name]] = (np.nan, np.nan, 0)
        else:
            kp[J[name], :2] = (10, value)
    n = normalize_poses(kp)
    assert not n.usable[0] and n.reasons[0].startswith(reason)
    assert np.isnan(n.coords).all()
    with pytest.raises(DataError, match=reason):
        require_usable(kp, path="p.json")


def test_person_box_and_crop_affine():
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    kp[0] = (10, 10, 2)
    kp[1] = (30, 50, 2)
    box = person_box(kp, margin=0.25)
    assert box == CropBox(20.0, 30.0, 60.0)  # 40 px tall box, + 25% each side
    a = box.crop_from_image(120)  # scale 2
    np.testing.assert_allclose(a @ [20, 30, 1], [59.5, 59.5])  # centre -> crop centre
    np.testing.assert_allclose(apply_affine(kp, a)[0, :2], [39.5, 19.5])  # 2 (10 - 20) + 59.5
    assert np.isnan(apply_affine(kp, a)[5, 0])
    kp[1] = (np.nan, np.nan, 0)
    with pytest.raises(DataError, match="only 1 keypoints"):
        person_box(kp)


def brute_rms(q, bank, min_shared):
    nq, nb = normalize_poses(q), normalize_poses(bank)
    a, b = nq.coords[:, COMPARED], nb.coords[:, COMPARED]
    va, vb = nq.valid[:, COMPARED], nb.valid[:, COMPARED]
    shared = va[:, None] & vb[None]
    d2 = np.where(shared, ((a[:, None] - b[None]) ** 2).sum(-1), 0).sum(-1)
    n = shared.sum(-1)
    d = np.sqrt(d2 / np.maximum(n, 1))
    return np.where((n >= min_shared) & nb.usable[None], d, np.inf)


@pytest.mark.parametrize("tree_min_queries", [1, 10_000])  # KD-tree engine, matrix engine
def test_exact_search_with_missing_joints_matches_brute_force(tree_min_queries):
    rng = np.random.default_rng(1)
    bank, q = poses(400, 1), poses(60, 2)
    for arr, frac in ((bank, 0.05), (q, 0.15)):
        drop = rng.random(arr.shape[:2]) < frac
        drop[:, [J["pelvis"], J["thorax"]]] = False
        arr[drop] = (np.nan, np.nan, 0)
    bank[3, J["thorax"]] = (np.nan, np.nan, 0)  # unusable bank pose
    index = PoseIndex(bank, min_shared=8, tree_min_queries=tree_min_queries)
    assert index.rejected == [(3, "no thorax (shoulders missing)")]
    res = index.query(q, 5)
    d = brute_rms(q, bank, 8)
    expected = np.argsort(d, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(res.distances, np.take_along_axis(d, expected, 1), rtol=1e-4)
    assert (res.ids != 3).all()
    # one query at a time (the bank side cached between calls) answers as the batch did
    for i in (0, 17, 59):
        one = index.query(q[i], 5)
        np.testing.assert_array_equal(one.ids[0], res.ids[i])


@pytest.mark.parametrize("tree_min_queries", [1, 10_000])
def test_exclude_groups_and_random_draw(tree_min_queries):
    bank = poses(50, 3)
    index = PoseIndex(np.concatenate([bank, bank]), groups=np.r_[np.arange(50), np.arange(50)],
                      tree_min_queries=tree_min_queries)
    res = index.query(bank[:10], 3, exclude_groups=np.arange(10))
    assert all(i % 50 != q for q, row in enumerate(res.ids) for i in row)
    plain = PoseIndex(bank).query(bank[:10], 1)
    np.testing.assert_array_equal(plain.ids[:, 0], np.arange(10))  # itself, distance 0
    a = index.query(bank[:10], 3, random_from=6, seed=4, exclude_groups=np.arange(10))
    b = index.query(bank[:10], 3, random_from=6, seed=4, exclude_groups=np.arange(10))
    np.testing.assert_array_equal(a.ids, b.ids)
    n6 = index.query(bank[:10], 6, exclude_groups=np.arange(10))
    assert all(set(r) <= set(s) for r, s in zip(a.ids, n6.ids))
    assert (np.diff(a.distances, axis=1) >= 0).all()


def test_queries_with_too_few_joints_get_a_reason():
    bank = poses(20, 5)
    q = bank[:2].copy()
    q[0, [0, 1, 4, 5, 10, 11, 14, 15, 9, 8]] = (np.nan, np.nan, 0)  # 5 joints left
    q[1, J["pelvis"]] = (np.nan, np.nan, 0)
    res = PoseIndex(bank, min_shared=6).query(q, 2)
    assert (res.ids == -1).all() and np.isinf(res.distances).all()
    assert "comparable joints" in res.reasons[0] and "no pelvis" in res.reasons[1]


def test_smallest_k_matches_sorting():
    from pipeline.priors.pose_index import smallest_k

    rng = np.random.default_rng(7)
    d = rng.random((5, 256)).astype(np.float32)
    d[0, :250] = np.inf  # only 6 finite values
    d[1] = np.inf  # none
    d[2, [3, 70, 200]] = -1.0  # ties across blocks
    got = smallest_k(d, 4)
    for row, cols in zip(d, got):
        finite = np.flatnonzero(np.isfinite(row))
        want = set(finite[np.argsort(row[finite], kind="stable")][:4].tolist())
        assert set(c for c in cols.tolist() if c >= 0) == want
    assert (got[1] == -1).all()
