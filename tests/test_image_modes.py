"""Photos as cameras and tools write them: EXIF-rotated phone photos are read in the frame
they are displayed in, 16-bit images are scaled (not clipped), modes with no faithful 8-bit
RGB are refused naming the file."""
import numpy as np
import pytest
from PIL import Image

from pipeline.formats import files
from pipeline.errors import DataError


def phone_photo(path, orientation: int) -> np.ndarray:
    """A JPEG stored 60 wide x 40 high with an EXIF orientation tag; returns the stored pixels."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :20] = (255, 0, 0)                         # red block at the stored top-left
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=100, exif=exif)
    return stored


@pytest.mark.parametrize("orientation,red_corner", [(1, "top-left"), (6, "top-right"), (8, "bottom-left"),
                                                    (3, "bottom-right")])
def test_exif_orientation_gives_the_displayed_frame(tmp_path, orientation, red_corner):
    path = tmp_path / "phone.jpg"
    phone_photo(path, orientation)
    rgb = files.read_image(path)
    turned = orientation in (6, 8)
    assert rgb.shape == ((60, 40, 3) if turned else (40, 60, 3))
    assert files.image_size(path) == rgb.shape[:2]
    h, w = rgb.shape[:2]
    corners = {"top-left": rgb[2, 2], "top-right": rgb[2, w - 3], "bottom-left": rgb[h - 3, 2],
               "bottom-right": rgb[h - 3, w - 3]}
    assert corners[red_corner][0] > 200 and corners[red_corner][1] < 60      # red where a viewer shows it
    assert all(c[0] < 60 for k, c in corners.items() if k != red_corner)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grey = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = tmp_path / "depth16.png"
    Image.fromarray(grey).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")                   # Pillow reads it as 16/32-bit integers
    rgb = files.read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(grey / 257).astype(np.uint8))
    assert 120 < rgb.mean() < 135                        # a ramp, not a white image


def test_float_images_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(path)
    with pytest.raises(DataError, match=r"float.tif: floating-point image"):
        files.read_image(path)
