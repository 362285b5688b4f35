"""Losses of the refinement network (pure functions; the module stays a thin wrapper)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.labels import IGNORE


def l1_mask_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """The paper's loss: L1 between per-class probabilities and binary ground-truth masks.

    Shape:
        logits: float (B, C, H, W); probabilities are their softmax over C.
        target: int64 (B, H, W) class ids, ``ignore_index`` pixels excluded.
    Returns: scalar mean over the kept pixels and classes (0 when none is kept).
    """
    keep = target != ignore_index
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(torch.where(keep, target, 0), logits.shape[1]).permute(0, 3, 1, 2).to(probs)
    diff = (probs - onehot).abs() * keep.unsqueeze(1)
    return diff.sum() / (keep.sum() * logits.shape[1]).clamp(min=1)


def ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Pixel-wise cross-entropy (logits (B, C, H, W), target int64 (B, H, W)), 255 ignored."""
    if not (target != ignore_index).any():
        return logits.sum() * 0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


LOSSES = {"l1": l1_mask_loss, "ce": ce_loss}
