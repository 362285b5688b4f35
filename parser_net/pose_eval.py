"""Pose side of the joint networks: batch heatmap targets and PCK evaluation on whole images."""
from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import torch

from pipeline.formats import files
from pipeline.metrics import pck_torso
from pipeline.formats.records import PersonRecord
from parser_net.dataset import resize_long_side, to_tensor
from parser_net.heatmaps import decode_heatmaps, encode_heatmaps


def heatmap_targets(keypoints: list[np.ndarray], out_hw: tuple[int, int], stride: int,
                    sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack :func:`parser_net.heatmaps.encode_heatmaps` of a batch: float32 (B, J, h, w)
    and joint weights float32 (B, J)."""
    pairs = [encode_heatmaps(kp, out_hw, stride, sigma) for kp in keypoints]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs])))


@torch.no_grad()
def predict_keypoints(model: torch.nn.Module, image: np.ndarray, long_side: int, stride: int) -> np.ndarray:
    """Keypoints of the (single) person in an image: float32 (J, 3) x, y in the image's own
    pixels and the heatmap peak as confidence.  ``model`` returns ``{"heatmaps"}``."""
    small = resize_long_side(image, long_side, cv2.INTER_AREA)
    device = next(model.parameters(), torch.empty(0)).device
    heatmaps = model(to_tensor(small)[None].to(device))["heatmaps"]
    return keypoints_from_heatmaps(heatmaps, stride, small.shape[:2], image.shape[:2])


def keypoints_from_heatmaps(heatmaps: torch.Tensor, stride: int, input_hw: tuple[int, int],
                            image_hw: tuple[int, int]) -> np.ndarray:
    """float32 (J, 3) keypoints in the photo's pixels (x, y, heatmap peak) from the
    heatmaps (1, J, h, w) of the network's input of size ``input_hw`` (the photo resized
    to ``image_hw``'s aspect; pixel centres kept) at ``stride`` input pixels per cell."""
    kp = decode_heatmaps(heatmaps.cpu(), stride)[0].numpy()
    sy, sx = image_hw[0] / input_hw[0], image_hw[1] / input_hw[1]
    kp[:, 0] = (kp[:, 0] + 0.5) * sx - 0.5
    kp[:, 1] = (kp[:, 1] + 0.5) * sy - 0.5
    return kp


def evaluate_pose(model: torch.nn.Module, records: Iterable[PersonRecord], long_side: int, stride: int,
                  alpha: float = 0.2) -> dict:
    """PCK@alpha of the torso size (LSP's PCK@0.2) over single-person records with
    ground-truth keypoints.  Returns {"pck", "per_joint", "people"}; ValueError if none."""
    model.eval()
    preds, gts = [], []
    for r in records:
        if r.keypoints is None:
            continue
        kp = predict_keypoints(model, files.read_image(r.image_path), long_side, stride)
        kp[:, 2] = 2
        preds.append(kp)
        gts.append(r.keypoints)
    if not preds:
        raise ValueError("no people with keypoints to evaluate")
    per_joint, overall = pck_torso(np.stack(preds), np.stack(gts), alpha)
    return {"pck": float(overall), "per_joint": [None if np.isnan(v) else float(v) for v in per_joint],
            "people": len(preds), "alpha": alpha}
