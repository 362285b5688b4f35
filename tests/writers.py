"""Small datasets written by tests in the real layouts."""
import json

import numpy as np
import scipy.io

from pipeline.formats import files
from pipeline.labels import CCP59_NAMES


def write_ccp(root, n=3, size=(12, 8), bright_hair=False):
    """A CCP-layout folder of n photos with a hair block at rows 2-5, cols 2-4; with
    ``bright_hair`` the photo is white there and black elsewhere (grey everywhere otherwise)."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    cells = np.empty((1, len(CCP59_NAMES)), dtype=object)
    for i, name in enumerate(CCP59_NAMES):
        cells[0, i] = np.array([name])
    scipy.io.savemat(root / "label_list.mat", {"label_list": cells})
    kps = {}
    for i in range(1, n + 1):
        gt = np.zeros(size, np.uint8)
        gt[2:6, 2:5] = 19  # hair
        photo = np.where(gt[..., None] == 19, 255, 0) if bright_hair else np.full((*size, 3), 100)
        files.write_image(root / "photos" / f"{i:04d}.jpg", np.broadcast_to(photo, (*size, 3)).astype(np.uint8))
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{i:04d}.mat", {"groundtruth": gt})
        lm = np.tile([[4.0, 4.0, 0.9]], (33, 1))
        lm[23:25, 1] = 9.0  # hips lower than the rest
        kps[f"{i:04d}.jpg"] = lm.tolist()
    (root / "keypoints_blazepose33.json").write_text(json.dumps(kps))
