import cv2
import numpy as np
import pytest

from pipeline.demo import make_figure
from pipeline.labels import LABEL_SETS
from pipeline.priors.morph import bone_affine, lstsq_affine, morph_patches, segment_transforms
from pipeline.priors.bank import PriorBank, PriorConfig, make_exemplar, one_hot_mean
from pipeline.formats.records import PersonRecord
from pipeline.priors.segments import NO_SEGMENT, SEG, assign_segments, skeleton_map
from pipeline.skeleton import J


def test_bone_affine_hand_computed():
    a = bone_affine((0, 0), (1, 0), (5, 5), (5, 7))  # rotate +90 degrees, scale 2
    np.testing.assert_allclose(a, [[0, -2, 5], [2, 0, 5]], atol=1e-12)
    a = bone_affine((0, 0), (1, 0), (5, 5), (5, 7), across_scale=1.0)  # keep width
    np.testing.assert_allclose(a @ [0, 1, 1], [4, 5])
    assert bone_affine((1, 1), (1, 1), (0, 0), (1, 0)) is None


def test_lstsq_affine_recovers_and_rejects_mirror():
    a = np.array([[1.2, 0.3, 4.0], [-0.1, 0.9, -2.0]])
    src = np.array([[0, 0], [10, 0], [0, 10], [7, 3]], float)
    dst = src @ a[:, :2].T + a[:, 2]
    np.testing.assert_allclose(lstsq_affine(src, dst), a, atol=1e-9)
    assert lstsq_affine(src, dst * [-1, 1]) is None  # mirrored: refused
    assert lstsq_affine(src[:2], dst[:2]) is None
    line = np.array([[0, 0], [5, 5], [10, 10.001]])                  # (nearly) collinear: no affine
    assert lstsq_affine(line, line + 1) is None


def test_lstsq_affine_matches_numpy_least_squares():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 128, (6, 2))
    dst = src @ np.array([[0.9, 0.2], [-0.3, 1.1]]).T + [5, -3] + rng.normal(0, 2, (6, 2))
    x = np.hstack([src, np.ones((6, 1))])
    np.testing.assert_allclose(lstsq_affine(src, dst), np.linalg.lstsq(x, dst, rcond=None)[0].T, atol=1e-9)


def figure(size=64, index=0):
    fig = make_figure(11, index, size)
    return fig.label_map, fig.keypoints


def test_identity_pose_gives_the_exemplar_one_hot_map():
    lm, kp = figure()
    ex = make_exemplar(lm, kp, "pascal10")
    bank = PriorBank([ex], np.array([0]), "pascal10", PriorConfig(size=64), [])
    prior = bank.prior(kp, [0])
    assert prior.dtype == np.float32 and prior.shape == (11, 64, 64)
    np.testing.assert_array_equal(prior.argmax(0), lm)
    np.testing.assert_array_equal(prior.max(0), 1.0)


@pytest.mark.parametrize("angle,scale,shift", [(0, 1, (3, -2)), (20, 1, (0, 0)), (0, 0.8, (2, 1)),
                                               (-35, 1.25, (-4, 3))])
def test_similarity_of_the_pose_warps_masks_like_warpaffine(angle, scale, shift):
    lm = np.zeros((16, 16), np.uint8)
    lm[4:12, 6:10] = 2  # torso
    lm[1:4, 7:9] = 1  # head
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    pts = {"pelvis": (8, 11), "thorax": (8, 4), "upper_neck": (8, 3.5), "head_top": (8, 1),
           "right_shoulder": (6, 4), "left_shoulder": (10, 4), "right_hip": (7, 11), "left_hip": (9, 11)}
    for name, xy in pts.items():
        kp[J[name]] = (*xy, 2)
    m = cv2.getRotationMatrix2D((8, 8), angle, scale)
    m[:, 2] += shift
    target = kp.copy()
    target[:, :2] = kp[:, :2] @ m[:, :2].T + m[:, 2]
    ex = make_exemplar(lm, kp, "pascal6")
    t = segment_transforms(ex.keypoints, target)
    for seg in (SEG["torso"], SEG["head"]):
        np.testing.assert_allclose(t[seg], m, atol=1e-5)  # float32 keypoints
    got = morph_patches(ex.patches, t, 16)
    want = cv2.warpAffine(lm, m, (16, 16), flags=cv2.INTER_NEAREST)
    # Where a destination pixel maps back to within OpenCV's fixed-point step (1/1024 px) of
    # a half-pixel, nearest-neighbour may take either side (OpenCV 5.1 and 5.0 differ there):
    # those ties must hold one of the two candidate source pixels, all others must match.
    ys, xs = np.mgrid[:16, :16]
    inv = cv2.invertAffineTransform(m)
    sx, sy = (inv[i, 0] * xs + inv[i, 1] * ys + inv[i, 2] for i in (0, 1))
    tie = (np.abs(sx - np.floor(sx) - 0.5) < 2 ** -9) | (np.abs(sy - np.floor(sy) - 0.5) < 2 ** -9)
    assert tie.mean() < 0.5                      # most pixels are still compared exactly
    np.testing.assert_array_equal(got[~tie], want[~tie])
    padded = np.pad(lm, 1)
    for y, x in zip(*np.nonzero(tie)):
        candidates = {int(padded[int(np.clip(r, -1, 16)) + 1, int(np.clip(c, -1, 16)) + 1])
                      for r in (np.floor(sy[y, x]), np.ceil(sy[y, x])) for c in (np.floor(sx[y, x]), np.ceil(sx[y, x]))}
        assert int(got[y, x]) in candidates and int(want[y, x]) in candidates, (y, x)


def test_priors_sum_to_one_and_missing_joints_never_give_nan():
    exemplars = []
    for i in range(4):
        lm, kp = figure(64, i)
        if i == 1:
            kp[J["left_wrist"]] = (np.nan, np.nan, 0)  # exemplar without a wrist
        exemplars.append(make_exemplar(lm, kp, "pascal10"))
    bank = PriorBank(exemplars, np.arange(4), "pascal10", PriorConfig(size=64), [])
    _, target = figure(64, 9)
    target[J["right_wrist"]] = (np.nan, np.nan, 0)  # target without a wrist
    target[J["left_knee"]] = (np.nan, np.nan, 0)  # nor a knee: the lower leg borrows nothing
    prior = bank.prior(target, [0, 1, 2, 3])
    assert np.isfinite(prior).all()
    np.testing.assert_allclose(prior.sum(0), 1.0, atol=1e-6)
    assert set(np.unique(prior)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    # right lower arm still transferred (borrowing the upper arm's transform)
    assert prior[LABEL_SETS["pascal10"].names.index("right-lower-arm")].sum() > 0
    with pytest.raises(ValueError):
        bank.prior(target, [-1])


def test_one_hot_mean_hand_computed():
    maps = np.array([[[0, 1]], [[1, 255]]], np.uint8)
    np.testing.assert_allclose(one_hot_mean(maps, 2), [[[0.5, 0.5]], [[0.5, 0.5]]])


@pytest.mark.parametrize("k", [1, 3, 300])                          # 300 maps: counts beyond uint8
def test_one_hot_mean_matches_counting(k):
    maps = np.random.default_rng(k).choice([0, 1, 2, 3, 7, 255], size=(k, 5, 6)).astype(np.uint8)
    expected = np.stack([(maps == c).mean(0) for c in range(8)])
    expected[0] = 1 - expected[1:].sum(0)                           # 255 counts as background
    np.testing.assert_allclose(one_hot_mean(maps, 8), expected, atol=1e-6)


def test_assign_segments_respects_classes_and_nearest():
    lm, kp = figure(64, 2)
    seg = assign_segments(lm, kp, "pascal10")
    assert (seg[lm == 0] == NO_SEGMENT).all()
    assert (seg[lm == 1] == SEG["head"]).all()
    assert (seg[lm == 4] == SEG["right_upper_arm"]).all()  # right-upper-arm class
    free = assign_segments(lm, kp, None)  # nearest segment only
    assert (free[lm == 2] == SEG["torso"]).mean() > 0.9


def test_flip_augmentation_swaps_left_and_right():
    lm, kp = figure(64, 3)
    rec = PersonRecord("x.png", (64, 64), "p", "partsynth", lm, kp, None, "pascal10")
    bank = PriorBank.from_records([rec], PriorConfig(size=64, flip=True))
    a, b = bank.exemplars
    assert not a.flipped and b.flipped and bank.groups.tolist() == [0, 0]
    lut = LABEL_SETS["pascal10"].flip_lut()
    np.testing.assert_array_equal(b.label_map, lut[a.label_map[:, ::-1]])
    names = LABEL_SETS["pascal10"].names
    left, right = names.index("left-upper-arm"), names.index("right-upper-arm")
    np.testing.assert_array_equal(b.label_map == right, (a.label_map == left)[:, ::-1])
    np.testing.assert_allclose(b.keypoints[J["left_wrist"], 0], 63 - a.keypoints[J["right_wrist"], 0])


def test_skeleton_map_draws_one_class_per_segment():
    _, kp = figure(64, 4)
    sk = skeleton_map(kp, 64)
    assert set(np.unique(sk)) == set(range(11))
    mid = (kp[J["pelvis"], :2] + kp[J["thorax"], :2]) / 2
    assert sk[int(round(mid[1])), int(round(mid[0]))] == SEG["torso"] + 1
