"""Losses of the parsers (pure functions over the model's output dict)."""
from __future__ import annotations

import functools
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
    return _weighted_pixel_mean(logits, ce, target != ignore_index, sample_weight)


def _weighted_pixel_mean(logits: torch.Tensor, loss: torch.Tensor, kept: torch.Tensor,
                         sample_weight: torch.Tensor | None) -> torch.Tensor:
    """sum_b w_b * sum_px loss / sum_b w_b * n_kept_b for a per-pixel ``loss`` (B, H, W),
    0 on pixels not ``kept`` (bool (B, H, W)); 0 (keeping ``logits``' graph) when nothing
    is kept."""
    n_kept = kept.flatten(1).sum(1).to(loss)                                             # (B,)
    w = torch.ones_like(n_kept) if sample_weight is None else sample_weight.to(loss)
    denom = (w * n_kept).sum()
    if denom <= 0:
        return logits.sum() * 0
    return (w * loss.flatten(1).sum(1)).sum() / denom


def weighted_soft_ce(logits: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None = None, *,
                     soft: torch.Tensor, temperature: float = 1.0, ignore_index: int = IGNORE) -> torch.Tensor:
    """Soft cross-entropy -sum_c q_c log p_c against target distributions (knowledge
    distillation, Hinton et al., 2015), weighted and averaged as :func:`weighted_ce`; with
    one-hot ``soft`` it equals :func:`weighted_ce`.

    Shape:
        logits: float (B, C, H, W); p = softmax over C.
        target: int64 (B, H, W) class ids: only which pixels are ``ignore_index`` is used.
        sample_weight: float (B,) >= 0 (None: all 1).
        soft: float (B, C, H, W) >= 0, per-pixel class weights (normalized here to sum 1).
        temperature: q is sharpened (< 1) or flattened (> 1) as q^(1/T), renormalized;
            one-hot targets are unchanged.
    Returns: scalar (0 when nothing is kept)."""
    q = soft.to(logits)
    if temperature != 1.0:
        # q^(1/T) renormalized = softmax(log q / T) over C, stable for small T; all-zero rows stay 0
        log_q = torch.where(q > 0, q.clamp_min(1e-30).log() / temperature, torch.full_like(q, -torch.inf))
        q = torch.nan_to_num(torch.softmax(log_q, dim=1), nan=0.0)
    q = q / q.sum(1, keepdim=True).clamp_min(1e-12)
    kept = target != ignore_index                                                          # (B, H, W)
    ce = -(q * F.log_softmax(logits, dim=1)).sum(1) * kept
    return _weighted_pixel_mean(logits, ce, kept, sample_weight)


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


def soft_parsing_loss(output: dict[str, torch.Tensor], target: torch.Tensor,
                      label_weight: torch.Tensor | None = None, *, soft: torch.Tensor,
                      temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """:func:`parsing_loss` with :func:`weighted_soft_ce` against ``soft`` (float (B, C,
    H, W) target distributions) as ``{"loss": scalar}``, the form of a training step's
    ``loss_fn`` (:func:`parser_net.train.batch_loss`)."""
    pixel_loss = functools.partial(weighted_soft_ce, soft=soft, temperature=temperature)
    return {"loss": parsing_loss(output, target, label_weight, pixel_loss=pixel_loss)}
