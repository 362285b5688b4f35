"""SS-JPPNet's structure-sensitive loss (Gong et al., "Look into Person", CVPR 2017; also the
self-supervised joint loss of SS-NAN): "joints" are the centres of merged regions of a
label map; their distance between prediction and ground truth weights the pixel loss.

Merged regions (class ids of each label set):

* ``lip20`` / ``cihp20``: the paper's nine: head (hat, hair, sunglasses, face), upper body
  (upper-clothes, dress, coat, jumpsuits, scarf), lower body (pants, skirt, jumpsuits),
  left/right arm (+ gloves, which LIP does not split by side), left/right leg (+ socks),
  left/right shoe.
* ``pascal6``: head, torso, upper arms, lower arms, upper legs, lower legs (each class;
  PASCAL-Person-Part merges left and right already).
* ``pascal10``: head, torso, left arm, right arm, left leg, right leg.
* ``ccp8`` (clothing classes, no body parts): head (hair), upper body (upper-clothes,
  dress), lower body (lower-clothes, dress), feet (shoes).  Skin and accessories are
  spread over the body and have no single centre, so they define no joint.
"""
from __future__ import annotations

import torch

from parser_net.losses import IGNORE, weighted_ce

MERGED_REGIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "lip20": {"head": (1, 2, 4, 13), "upper-body": (5, 6, 7, 10, 11), "lower-body": (9, 12, 10),
              "left-arm": (14, 3), "right-arm": (15, 3), "left-leg": (16, 8), "right-leg": (17, 8),
              "left-shoe": (18,), "right-shoe": (19,)},
    "pascal6": {"head": (1,), "torso": (2,), "upper-arms": (3,), "lower-arms": (4,), "upper-legs": (5,),
                "lower-legs": (6,)},
    "pascal10": {"head": (1,), "torso": (2,), "left-arm": (3, 5), "right-arm": (4, 6), "left-leg": (7, 9),
                 "right-leg": (8, 10)},
    "ccp8": {"head": (1,), "upper-body": (3, 4), "lower-body": (5, 4), "feet": (6,)},
}
MERGED_REGIONS["cihp20"] = MERGED_REGIONS["lip20"]


def region_masks(label_map: torch.Tensor, regions: dict[str, tuple[int, ...]]) -> torch.Tensor:
    """int (B, H, W) class ids -> bool (B, R, H, W), one mask per merged region (255 is in none)."""
    return torch.stack([torch.isin(label_map, torch.tensor(ids, device=label_map.device))
                        for ids in regions.values()], 1)


def region_centres(label_map: torch.Tensor, regions: dict[str, tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of the merged regions of label maps.

    Shape: label_map int (B, H, W) -> centres float32 (B, R, 2) as (x, y) in pixels and
    present bool (B, R) (False for an empty region; its centre is 0)."""
    masks = region_masks(label_map, regions).float()                       # (B, R, H, W)
    h, w = label_map.shape[-2:]
    ys = torch.arange(h, device=label_map.device, dtype=torch.float32)
    xs = torch.arange(w, device=label_map.device, dtype=torch.float32)
    area = masks.sum((2, 3))
    cx = (masks.sum(2) * xs).sum(-1) / area.clamp(min=1)
    cy = (masks.sum(3) * ys).sum(-1) / area.clamp(min=1)
    return torch.stack([cx, cy], -1), area > 0


def joint_structure_loss(pred: torch.Tensor, target: torch.Tensor, regions: dict[str, tuple[int, ...]]) -> torch.Tensor:
    """Per-image joint loss: mean over regions of the squared distance between predicted
    and ground-truth region centres, in units of the image diagonal (scale-free).

    A region present in one map and absent in the other counts distance 1 (a whole
    diagonal); regions absent in both count 0.  Shape: pred, target int (B, H, W) -> (B,)
    float32 >= 0; 0 for identical maps."""
    cp, pp = region_centres(pred, regions)
    ct, pt = region_centres(target, regions)
    h, w = target.shape[-2:]
    d2 = ((cp - ct) ** 2).sum(-1) / float(h * h + w * w)
    d2 = torch.where(pp & pt, d2, torch.where(pp ^ pt, torch.ones_like(d2), torch.zeros_like(d2)))
    return d2.mean(1)


def structure_sensitive_loss(logits: torch.Tensor, target: torch.Tensor, regions: dict[str, tuple[int, ...]],
                             sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel cross-entropy with each image weighted by ``1 + joint loss`` of its argmax
    prediction (detached, as SS-JPPNet computes joints from the predicted parsing).

    SS-JPPNet multiplies the two losses; the ``1 +`` keeps the pixel loss alive once the
    structure is right.  Shape: logits (B, C, H, W), target int64 (B, H, W) with 255
    ignored, sample_weight (B,) or None.  Returns a scalar."""
    with torch.no_grad():
        pred = logits.argmax(1)
        pred = torch.where(target == IGNORE, torch.full_like(pred, IGNORE), pred)
        joint = joint_structure_loss(pred, target, regions)
    w = 1 + joint if sample_weight is None else sample_weight * (1 + joint)
    return weighted_ce(logits, target, w)
