"""experiments/resolution_ceiling.py: the ground truth brought through a parser's output grid."""
import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "resolution_ceiling.py"
spec = importlib.util.spec_from_file_location("resolution_ceiling", SCRIPT)
resolution_ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(resolution_ceiling)


def label_map():
    """A 200 x 100 map: a 60 x 40 block of class 1, a 2-pixel-wide strap of class 2, ignore in a corner."""
    m = np.zeros((200, 100), np.uint8)
    m[40:100, 30:70] = 1
    m[120:180, 50:52] = 2
    m[:10, :10] = 255
    return m


def test_a_full_resolution_grid_keeps_every_pixel():
    m = label_map()
    out = resolution_ceiling.through_grid(m, 3, 200)
    assert out.shape == m.shape and out.dtype == np.uint8
    assert np.array_equal(out[m != 255], m[m != 255])


def test_a_coarse_grid_keeps_the_block_and_loses_the_thin_strap():
    m = label_map()
    out = resolution_ceiling.through_grid(m, 3, 20)      # 10 x 20 cells of 10 px: the strap is a fifth of a cell
    block = m == 1
    assert (out[block] == 1).mean() > 0.9
    assert (out[m == 2] == 2).mean() < 0.1
    assert set(np.unique(out)) <= {0, 1, 2}              # ignore never predicted
