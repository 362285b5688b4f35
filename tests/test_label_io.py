import numpy as np
import pytest
from PIL import Image

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.labels import (LABEL_SETS, ccp59_to_ccp8_lut, flip_label_map, pascal10_to_pascal6_lut,
                             remap, voc_palette)
from pipeline.pictures.overlay import colorize, overlay


def test_palette_png_round_trip_is_lossless(tmp_path):
    lm = np.arange(256, dtype=np.uint8).reshape(16, 16)
    files.write_label_png(tmp_path / "a.png", lm)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB"))[0, 1], voc_palette()[1])
    np.testing.assert_array_equal(files.read_label_png(tmp_path / "a.png"), lm)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_rgb_label_png_is_rejected_and_decodable(tmp_path):
    lm = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    files.write_image(tmp_path / "rgb.png", colorize(lm))
    with pytest.raises(DataError, match="palette or greyscale"):
        files.read_label_png(tmp_path / "rgb.png")
    rgb = files.read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(files.rgb_to_label_map(rgb, voc_palette()[:3]), lm)
    with pytest.raises(DataError, match="not in the palette"):
        files.rgb_to_label_map(rgb, voc_palette()[:2])


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_overlay_keeps_background_and_blends_foreground():
    img = np.full((2, 2, 3), 100, np.uint8)
    lm = np.array([[0, 1], [0, 0]], np.uint8)
    out = overlay(img, lm, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], [(100 + 128) // 2, 50, 50])  # VOC class 1 = (128, 0, 0)
    with pytest.raises(ValueError):
        overlay(img, np.zeros((3, 3), np.uint8))


def test_lookup_tables():
    lut = ccp59_to_ccp8_lut()
    names = LABEL_SETS["ccp59"].names
    assert lut[names.index("null")] == 0 and lut[names.index("hat")] == 1
    assert lut[names.index("skin")] == 2 and lut[names.index("romper")] == 4
    assert lut[names.index("socks")] == 5 and lut[names.index("wedges")] == 6
    assert lut[names.index("watch")] == 7 and lut[255] == 255
    assert (lut[:59] < 8).all()
    lm = np.array([[3, 4, 9, 10, 255]], np.uint8)
    np.testing.assert_array_equal(remap(lm, pascal10_to_pascal6_lut()), [[3, 3, 6, 6, 255]])


def test_flip_label_map_swaps_left_right():
    lm = np.array([[3, 0, 4], [9, 2, 10]], np.uint8)  # pascal10
    np.testing.assert_array_equal(flip_label_map(lm, LABEL_SETS["pascal10"]), [[3, 0, 4], [9, 2, 10]])
    lm = np.array([[3, 0, 0]], np.uint8)
    np.testing.assert_array_equal(flip_label_map(lm, LABEL_SETS["pascal10"]), [[0, 0, 4]])
    np.testing.assert_array_equal(flip_label_map(np.array([[14, 18]], np.uint8), LABEL_SETS["lip20"]),
                                  [[19, 15]])


def test_grid_titles_sit_over_their_columns():
    from pipeline.pictures.overlay import grid

    tiles = [[np.zeros((10, 10, 3), np.uint8), np.full((10, 10, 3), 200, np.uint8)]]
    plain = grid(tiles, tile_size=40)
    titled = grid(tiles, tile_size=40, titles=["photo", "a rather long model name that cannot fit"])
    assert titled.shape == (plain.shape[0] + 20, plain.shape[1], 3)
    assert np.array_equal(titled[20:], plain)                       # the tiles are where they were
    header = titled[:20].max(axis=2) > 128                          # white text on dark grey
    for col in range(2):
        ink = np.flatnonzero(header[:, col * 44:(col + 1) * 44].any(axis=0))
        assert ink.size and ink.min() >= 2 and ink.max() <= 41      # inside its own column
