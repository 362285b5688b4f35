"""Label maps resized for training stay on the pixels of the image resized with them."""
import cv2
import numpy as np
import pytest

from parser_net.dataset import ParsingItem, augment
from pipeline.labels import resize_label_map
from refine_net.dataset import _jitter


def _disc(size: int = 128) -> np.ndarray:
    """uint8 (size, size) label map: class 1 in an off-centre disc and a thin bar, 0 elsewhere."""
    label = np.zeros((size, size), np.uint8)
    cv2.circle(label, (size // 2 - 7, size // 2 + 5), size // 4, 1, -1)
    label[10:size - 10, 20:23] = 1
    return label


def _classes_seen_in(image: np.ndarray) -> np.ndarray:
    """Class 1 where the resized image (class 1 drawn as 200, class 0 as 0) is at least half bright."""
    return (image[..., 0] >= 100).astype(np.uint8)


@pytest.mark.parametrize("size_wh", [(143, 143), (200, 200), (47, 47), (100, 160)])
def test_resized_labels_match_the_bilinear_image_pixel_for_pixel(size_wh):
    label = _disc()
    image = np.repeat((label * 200)[..., None], 3, axis=2)
    seen = _classes_seen_in(cv2.resize(image, size_wh, interpolation=cv2.INTER_LINEAR))
    resized = resize_label_map(label, size_wh)
    assert resized.shape == size_wh[::-1]
    # cv2.INTER_NEAREST puts hundreds of edge pixels a pixel up and left of the image's edge here
    assert np.count_nonzero(resized != seen) <= 0.003 * resized.size


def test_refiner_jitter_keeps_image_target_and_prior_aligned():
    label = _disc()
    image = np.repeat((label * 200)[..., None], 3, axis=2)
    prior = np.stack([1.0 - label, label]).astype(np.float32)
    for seed in range(5):
        img, target, pri = _jitter(image, label, prior, np.random.default_rng(seed))
        assert np.count_nonzero(target != _classes_seen_in(img)) <= 0.003 * target.size
        assert np.count_nonzero(target != pri.argmax(0)) <= 0.003 * target.size


def test_parser_augmentation_keeps_image_and_label_aligned():
    label = _disc()
    item = ParsingItem(np.repeat((label * 200)[..., None], 3, axis=2), label, False, 1.0, "disc", None, True, None)
    for seed in range(5):
        out = augment(item, (96, 96), (0.6, 1.6), None, np.random.default_rng(seed))
        inside = out.label_map != 255
        assert np.count_nonzero((out.label_map != _classes_seen_in(out.image)) & inside) <= 0.003 * inside.sum()
