import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.skeleton import (HEAD_TOP_EXTENSION, J, UPPER_NECK_FRACTION, flip_keypoints,
                               from_blazepose33, from_coco17, from_lsp14, from_mpii16, from_named,
                               validate_keypoints)


def lsp_pose():
    # LSP order: r ankle, r knee, r hip, l hip, l knee, l ankle, r wrist, r elbow, r shoulder,
    # l shoulder, l elbow, l wrist, neck, head top
    xy = [(10, 100), (10, 70), (10, 40), (30, 40), (30, 70), (30, 100), (0, 40), (2, 20),
          (5, 10), (35, 10), (38, 20), (40, 40), (20, 8), (20, -10)]
    vis = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    return np.array([(x, y, v) for (x, y), v in zip(xy, vis)], dtype=float)


def test_lsp14_hand_computed():
    kp, derived = from_lsp14(lsp_pose())
    assert kp.dtype == np.float32 and kp.shape == (16, 3)
    np.testing.assert_allclose(kp[J["right_ankle"]], [10, 100, 2])
    np.testing.assert_allclose(kp[J["left_ankle"]], [30, 100, 1])  # occluded but annotated
    np.testing.assert_allclose(kp[J["right_wrist"]], [0, 40, 2])
    np.testing.assert_allclose(kp[J["upper_neck"]], [20, 8, 2])
    np.testing.assert_allclose(kp[J["head_top"]], [20, -10, 2])
    np.testing.assert_allclose(kp[J["pelvis"]], [20, 40, 2])  # mid-hips
    np.testing.assert_allclose(kp[J["thorax"]], [20, 10, 2])  # mid-shoulders
    assert derived.tolist() == [i in (J["pelvis"], J["thorax"]) for i in range(16)]


def test_lsp14_nan_joint_is_missing_and_derived_joint_too():
    raw = lsp_pose()
    raw[3, :2] = np.nan  # left hip unknown
    kp, _ = from_lsp14(raw)
    assert kp[J["left_hip"], 2] == 0 and np.isnan(kp[J["left_hip"], :2]).all()
    assert kp[J["pelvis"], 2] == 0 and np.isnan(kp[J["pelvis"], :2]).all()


def coco_pose():
    kp = np.zeros((17, 3))
    pts = {0: (20, 5), 1: (22, 3), 2: (18, 3), 3: (24, 4), 4: (16, 4), 5: (30, 20), 6: (10, 20),
           7: (32, 35), 8: (8, 35), 9: (33, 50), 10: (7, 50), 11: (26, 50), 12: (14, 50),
           13: (26, 70), 14: (14, 70), 15: (26, 90), 16: (14, 90)}
    for i, (x, y) in pts.items():
        kp[i] = (x, y, 2)
    return kp


def test_coco17_hand_computed():
    raw = coco_pose()
    raw[9] = (0, 0, 0)  # left wrist not labelled
    raw[11, 2] = 1  # left hip labelled, not visible
    kp, derived = from_coco17(raw.reshape(-1).tolist())
    np.testing.assert_allclose(kp[J["right_ankle"]], [14, 90, 2])
    np.testing.assert_allclose(kp[J["left_shoulder"]], [30, 20, 2])
    assert kp[J["left_wrist"], 2] == 0 and np.isnan(kp[J["left_wrist"], 0])
    np.testing.assert_allclose(kp[J["pelvis"]], [20, 50, 1])  # v = min of the hips
    np.testing.assert_allclose(kp[J["thorax"]], [20, 20, 2])
    # face centre = mid-ears (20, 4); up vector = (0, -16)
    np.testing.assert_allclose(kp[J["upper_neck"], :2], [20, 20 - 16 * UPPER_NECK_FRACTION], rtol=1e-6)
    np.testing.assert_allclose(kp[J["head_top"], :2], [20, 4 - 16 * HEAD_TOP_EXTENSION], rtol=1e-6)
    assert derived[[J["pelvis"], J["thorax"], J["upper_neck"], J["head_top"]]].all()
    assert not derived[J["right_ankle"]]


def test_coco17_head_falls_back_to_eyes_then_nose():
    raw = coco_pose()
    raw[3] = raw[4] = (0, 0, 0)  # no ears: eyes at y = 3
    kp, _ = from_coco17(raw)
    np.testing.assert_allclose(kp[J["head_top"], :2], [20, 3 - 17 * HEAD_TOP_EXTENSION], rtol=1e-6)
    raw[1] = raw[2] = (0, 0, 0)  # nose only, y = 5
    kp, _ = from_coco17(raw)
    np.testing.assert_allclose(kp[J["upper_neck"], :2], [20, 20 - 15 * UPPER_NECK_FRACTION], rtol=1e-6)
    raw[0] = (0, 0, 0)  # no face at all: head joints missing, never NaN with v > 0
    kp, _ = from_coco17(raw)
    assert kp[J["head_top"], 2] == 0 and kp[J["upper_neck"], 2] == 0


def test_blazepose33_hand_computed():
    lm = np.zeros((33, 3))
    lm[:, 2] = 0.9
    for i, (x, y) in {7: (24, 4), 8: (16, 4), 11: (30, 20), 12: (10, 20), 13: (32, 35),
                      14: (8, 35), 15: (33, 50), 16: (7, 50), 23: (26, 50), 24: (14, 50),
                      25: (26, 70), 26: (14, 70), 27: (26, 90), 28: (14, 90)}.items():
        lm[i, :2] = (x, y)
    lm[27, 2] = 0.2  # left ankle barely visible
    kp, derived = from_blazepose33(lm)
    np.testing.assert_allclose(kp[J["right_ankle"]], [14, 90, 2])
    np.testing.assert_allclose(kp[J["left_ankle"]], [26, 90, 1])
    np.testing.assert_allclose(kp[J["left_wrist"]], [33, 50, 2])
    np.testing.assert_allclose(kp[J["pelvis"]], [20, 50, 2])
    np.testing.assert_allclose(kp[J["head_top"], :2], [20, 4 - 16 * HEAD_TOP_EXTENSION], rtol=1e-6)
    assert derived.sum() == 4


def test_mpii16_sentinel_and_visibility():
    joints = np.arange(32, dtype=float).reshape(16, 2)
    joints[0] = -1
    vis = np.ones(16)
    vis[0] = 0
    kp, derived = from_mpii16(joints, vis)
    assert kp[0, 2] == 0 and np.isnan(kp[0, 0])
    np.testing.assert_allclose(kp[9], [18, 19, 2])
    assert not derived.any()


def test_named_poselets_names():
    pts = {"L_Shoulder": (30, 20), "R_Shoulder": (10, 20), "L_Hip": (26, 50), "R_Hip": (14, 50),
           "L_Ear": (24, 4), "R_Ear": (16, 4), "Nose": (20, 6), "L_Wrist": (33, 50, 1),
           "B_Head": (20, -10)}
    kp, derived = from_named(pts)
    np.testing.assert_allclose(kp[J["left_wrist"]], [33, 50, 1])
    np.testing.assert_allclose(kp[J["pelvis"]], [20, 50, 2])
    np.testing.assert_allclose(kp[J["head_top"]], [20, -10, 2])  # annotated, kept
    assert not derived[J["head_top"]] and derived[J["upper_neck"]]
    np.testing.assert_allclose(kp[J["upper_neck"], :2], [20, 20 - 16 * UPPER_NECK_FRACTION], rtol=1e-6)
    with pytest.raises(DataError, match="unknown keypoint name"):
        from_named({"elbow_thing": (1, 2)})


@pytest.mark.parametrize("fn,shape", [(from_lsp14, (13, 3)), (from_coco17, (16, 3)),
                                      (from_blazepose33, (32, 3)), (from_mpii16, (15, 2))])
def test_wrong_shape_raises(fn, shape):
    with pytest.raises(DataError, match="shape"):
        fn(np.zeros(shape), path="x.json")


def test_present_joint_with_nan_raises_naming_file():
    raw = coco_pose()
    raw[5, 0] = np.nan
    with pytest.raises(DataError, match=r"ann\.json.*NaN"):
        from_coco17(raw, path="ann.json")
    kp = np.zeros((16, 3), dtype=np.float32)
    kp[:, 2] = 2
    kp[3, 1] = np.nan
    with pytest.raises(DataError):
        validate_keypoints(kp)


def test_flip_keypoints_swaps_sides_and_mirrors_x():
    kp, _ = from_lsp14(lsp_pose())
    flipped = flip_keypoints(kp, width=41)
    np.testing.assert_allclose(flipped[J["left_ankle"], :2], [40 - 10, 100])  # was right ankle
    np.testing.assert_allclose(flipped[J["pelvis"], :2], [20, 40])
    np.testing.assert_allclose(flip_keypoints(flipped, 41), kp)
