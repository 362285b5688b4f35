import numpy as np
import pytest

from pipeline.metrics import ConfusionMatrix, mean_iou, pck, pckh, scores_from_confusion
from pipeline.skeleton import J


def test_perfect_prediction_is_one_and_disjoint_is_zero():
    gt = np.array([[0, 1], [2, 2]])
    s = mean_iou([gt], [gt], 3)
    assert s.mean_iou == 1 and s.pixel_accuracy == 1 and s.mean_accuracy == 1
    s = mean_iou([np.zeros((2, 2), int)], [np.ones((2, 2), int)], 2)
    assert s.mean_iou == 0 and s.pixel_accuracy == 0


def test_hand_computed_iou_with_ignore():
    gt = np.array([[0, 0, 1, 1], [1, 255, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    # class 0: TP 1, FP 1 (pixel (1,3)), FN 1 -> 1/3; class 1: TP 2, FP 1, FN 1 -> 2/4
    # class 2: TP 1, FP 1, FN 1 -> 1/3; the 255 pixel is skipped
    s = mean_iou([gt], [pred], 3)
    np.testing.assert_allclose(s.iou, [1 / 3, 1 / 2, 1 / 3])
    assert s.mean_iou == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 7)
    np.testing.assert_allclose(s.class_accuracy, [1 / 2, 2 / 3, 1 / 2])


def test_one_matrix_over_the_set_not_a_mean_of_images():
    a_gt, a_pred = np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]])
    b_gt, b_pred = np.array([[1, 0, 0, 0]]), np.array([[0, 0, 0, 0]])
    s = mean_iou([a_gt, b_gt], [a_pred, b_pred], 2)
    np.testing.assert_allclose(s.iou, [3 / 4, 4 / 5])


def test_absent_class_is_nan_and_excluded():
    s = scores_from_confusion(np.array([[2, 0, 0], [0, 1, 0], [0, 0, 0]]))
    assert np.isnan(s.iou[2]) and s.mean_iou == 1.0
    assert s.as_dict(("bg", "a", "b"))["iou"]["b"] is None


def test_confusion_matrix_rejects_bad_ids():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0, 2]))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0]))


def test_pck_hand_computed():
    gt = np.zeros((2, 16, 3))
    gt[..., 2] = 2
    gt[0, J["upper_neck"], :2] = (0, 10)
    gt[0, J["head_top"], :2] = (0, 0)  # head size 10
    gt[1, J["upper_neck"], :2] = (0, 20)  # head size 20
    pred = gt.copy()
    pred[0, 0, 0] += 6  # > 0.5 * 10 -> wrong
    pred[1, 0, 0] += 6  # <= 0.5 * 20 -> right
    pred[1, 1, :] = np.nan  # a NaN prediction is wrong
    gt[1, 2, 2] = 0  # not annotated: not scored
    per_joint, total = pckh(pred, gt)
    assert per_joint[0] == 0.5 and per_joint[1] == 0.5 and per_joint[2] == 1.0
    assert total == pytest.approx(29 / 31)  # 31 scored joints, 2 wrong
    _, total = pck(pred, gt, np.array([np.nan, 20.0]), 0.5)  # person 0 unscored
    assert total == pytest.approx(14 / 15)
