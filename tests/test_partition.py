"""The partition labeller: body parts from a person's mask and skeleton (pascal6)."""
import cv2
import numpy as np
import pytest

from pipeline.labels import IGNORE
from pipeline.metrics import ConfusionMatrix
from pipeline.priors.partition import (depth_order, lip_to_pascal6, masked_morph_prior, partition_people,
                                       partition_person, partition_prior)
from pipeline.skeleton import J, empty_keypoints

HEAD, TORSO, UARM, LARM, ULEG, LLEG = 1, 2, 3, 4, 5, 6


def stick_figure(dx: float = 0.0, dy: float = 0.0):
    """A standing figure in a 96 x 64 frame: canonical keypoints (16, 3) and its true pascal6
    map, drawn part by part (thick limbs, torso polygon, head disc)."""
    pts = {"head_top": (32, 4), "upper_neck": (32, 18), "thorax": (32, 22), "pelvis": (32, 50),
           "right_shoulder": (24, 22), "left_shoulder": (40, 22), "right_hip": (27, 50), "left_hip": (37, 50),
           "right_elbow": (18, 36), "left_elbow": (46, 36), "right_wrist": (14, 50), "left_wrist": (50, 50),
           "right_knee": (26, 70), "left_knee": (38, 70), "right_ankle": (25, 90), "left_ankle": (39, 90)}
    kp = empty_keypoints()
    for name, (x, y) in pts.items():
        kp[J[name]] = (x + dx, y + dy, 2)
    gt = np.zeros((96, 64), np.uint8)

    def line(a, b, cls, width):
        p, q = (tuple(int(round(v)) for v in kp[J[n], :2]) for n in (a, b))
        cv2.line(gt, p, q, cls, width)

    for side in ("right", "left"):
        line(f"{side}_hip", f"{side}_knee", ULEG, 7)
        line(f"{side}_knee", f"{side}_ankle", LLEG, 5)
    corners = np.round(kp[[J["right_shoulder"], J["left_shoulder"], J["left_hip"], J["right_hip"]], :2]).astype(np.int32)
    cv2.fillConvexPoly(gt, corners, TORSO)
    for side in ("right", "left"):
        line(f"{side}_shoulder", f"{side}_elbow", UARM, 5)
        line(f"{side}_elbow", f"{side}_wrist", LARM, 4)
    cv2.circle(gt, (int(32 + dx), int(11 + dy)), 7, HEAD, -1)
    return kp, gt


def test_stick_figure_gets_its_own_parts():
    kp, gt = stick_figure()
    part = partition_person(gt > 0, kp)
    assert not part.notes and not part.estimated_joints
    assert ((part.label_map > 0) == (gt > 0)).all()                # exactly the mask, every pixel reached
    cm = ConfusionMatrix(7)
    cm.update(gt, part.label_map)
    scores = cm.compute()
    assert scores.mean_iou > 0.8, scores.iou
    assert (scores.iou > 0.6).all(), scores.iou


def test_hand_computed_pixels():
    kp, gt = stick_figure()
    lm = partition_person(gt > 0, kp).label_map
    assert lm[11, 32] == HEAD and lm[36, 32] == TORSO
    assert lm[29, 21] == UARM and lm[45, 15] == LARM                # along the right arm
    assert lm[60, 26] == ULEG and lm[85, 25] == LLEG                # along the right leg
    assert lm[0, 0] == 0                                            # outside the mask


def test_missing_knee_is_estimated_halfway():
    kp, gt = stick_figure()
    kp[J["right_knee"]] = (np.nan, np.nan, 0)
    part = partition_person(gt > 0, kp)
    assert part.estimated_joints == ["right_knee"]
    assert any("right_knee missing, estimated halfway" in n for n in part.notes)
    assert part.label_map[60, 26] == ULEG and part.label_map[86, 25] == LLEG


def test_leg_cut_above_the_knee_is_one_class():
    kp, gt = stick_figure()
    for name in ("left_knee", "left_ankle"):
        kp[J[name]] = (np.nan, np.nan, 0)
    cut = gt.copy()
    cut[62:] = 0                                                    # the frame ends at the thigh
    part = partition_person(cut > 0, kp)
    assert any("left leg" in n and "upper-legs only" in n for n in part.notes)
    left_thigh = part.label_map[52:62, 35:41]
    assert (left_thigh[cut[52:62, 35:41] > 0] == ULEG).all()


def test_pixels_no_part_reaches_are_ignore():
    kp, gt = stick_figure()
    mask = gt > 0
    mask[0:6, 55:64] = True                                         # a blob far from every part
    lm = partition_person(mask, kp).label_map
    assert (lm[0:6, 58:64] == IGNORE).all()
    nobody = empty_keypoints()
    part = partition_person(gt > 0, nobody)
    assert (part.label_map[gt > 0] == IGNORE).all() and "no usable segment" in part.notes[-1]


def test_joints_outside_the_mask_and_the_image_still_draw_their_segments():
    kp, gt = stick_figure(dy=10)                                    # ankles below the frame (96 rows)
    assert kp[J["right_ankle"], 1] > 96 and kp[J["right_knee"], 1] == 80
    lm = partition_person(gt > 0, kp).label_map
    assert (lm[88:96][gt[88:96] > 0] == LLEG).all()


def test_overlapping_people_go_to_the_one_in_front():
    back_kp, back = stick_figure(dx=-8, dy=-6)
    front_kp, front = stick_figure(dx=8)
    masks = [back > 0, front > 0]
    assert depth_order(masks) == [0, 1]                             # the front one reaches lower
    img = partition_people(masks, [back_kp, front_kp])
    both = masks[0] & masks[1]
    assert both.any() and (img.owner[both] == 1).all()
    assert (img.label_map[both] == img.people[1].label_map[both]).all()
    assert (img.owner[masks[0] & ~masks[1]] == 0).all()
    with pytest.raises(ValueError):
        partition_people([back > 0], [back_kp, front_kp])


def test_depth_order_ties_go_to_the_larger_mask():
    a, b = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    a[5:9, 0:2] = True
    b[2:9, 4:9] = True
    assert depth_order([b, a]) == [1, 0]


def test_lip_classes_become_body_parts():
    kp, gt = stick_figure()
    lip = np.zeros_like(gt)
    lip[gt == HEAD] = 13                                            # face
    lip[gt == TORSO] = 5                                            # upper-clothes
    lip[(gt == UARM) | (gt == LARM)] = 14                           # one LIP class for the whole arm
    lip[(gt == ULEG) | (gt == LLEG)] = 9                            # pants
    out = lip_to_pascal6(lip, kp)
    assert out[11, 32] == HEAD and out[36, 32] == TORSO
    assert out[29, 21] == UARM and out[45, 15] == LARM              # the arm split at the elbow
    assert out[60, 26] == ULEG and out[85, 25] == LLEG
    assert ((out > 0) == (lip > 0)).all()
    noarms = kp.copy()
    for name in ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist"):
        noarms[J[name]] = (np.nan, np.nan, 0)
    out = lip_to_pascal6(lip, noarms)
    assert (out[lip == 14] == IGNORE).all()                         # an arm no arm segment can take


def test_priors_sum_to_one():
    kp, gt = stick_figure()
    part = partition_person(gt > 0, kp).label_map
    part[0, 0] = IGNORE
    p = partition_prior(part)
    assert p.shape == (7, 96, 64) and np.allclose(p.sum(0), 1)
    assert p[0, 0, 0] == 0 and np.isclose(p[1, 0, 0], 1 / 6)
    morph = np.zeros((7, 96, 64), np.float32)
    morph[0] = 1.0
    morph[:, 30:40, 20:40] = 0
    morph[3, 30:40, 20:40] = 0.5
    morph[0, 30:40, 20:40] = 0.5
    both = masked_morph_prior(morph, gt > 0, part)
    assert np.allclose(both.sum(0), 1)
    assert (both[3, 30:40, 20:40][gt[30:40, 20:40] > 0] == 1).all()   # the morphed class, renormalised
    assert (both.argmax(0)[gt == 0] == 0).all()
    assert (both.argmax(0)[60:62, 26] == ULEG).all()                  # outside the morph, the partition
