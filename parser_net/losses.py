"""Losses of the parsers (pure functions over the model's output dict)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pipeline.labels import IGNORE


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None = None,
                ignore_index: int = IGNORE) -> torch.Tensor:
    """Pixel-wise cross-entropy averaged over the kept pixels, each sample's pixels weighted.

    Shape:
        logits: float (B, C, H, W).
        target: int64 (B, H, W) class ids; ``ignore_index`` pixels are skipped.
        sample_weight: float (B,) >= 0 (None: all 1), e.g. a lower weight for synthetic labels.
    Returns: scalar sum_b w_b * sum_px ce / sum_b w_b * n_kept_b (0 when nothing is kept).
    """
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")   # (B, H, W)
    kept = (target != ignore_index).flatten(1).sum(1).to(ce)                             # (B,)
    w = torch.ones_like(kept) if sample_weight is None else sample_weight.to(ce)
    denom = (w * kept).sum()
    if denom <= 0:
        return logits.sum() * 0
    return (w * ce.flatten(1).sum(1)).sum() / denom


def parsing_loss(output: dict[str, torch.Tensor], target: torch.Tensor,
                 sample_weight: torch.Tensor | None = None, scale_weight: float = 1.0,
                 pixel_loss: Callable[..., torch.Tensor] = weighted_ce) -> torch.Tensor:
    """``pixel_loss(logits, target, sample_weight)`` (default :func:`weighted_ce`) of
    ``output["parsing"]`` plus, for the multi-scale parsers, ``scale_weight`` x the same loss
    of every scale's logits (``output["parsing_scales"]``, (S, B, C, H, W)): the extra
    supervision of Chen et al., CVPR 2016, and SS-NAN's deep supervision."""
    loss = pixel_loss(output["parsing"], target, sample_weight)
    if "parsing_scales" in output and scale_weight:
        for logits in output["parsing_scales"]:
            loss = loss + scale_weight * pixel_loss(logits, target, sample_weight)
    return loss
