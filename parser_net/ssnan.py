"""SS-NAN's neural aggregation of multi-scale, multi-level parsing maps (Zhao et al.,
"Self-Supervised Neural Aggregation Networks for Human Parsing", CVPRW 2017, section 3.2).

A Share-Net: one DeepLab (:class:`parser_net.model.DeepLab`) shared by the input scales
(1, 0.75, 0.5).  Each scale's Skip-Net gives parsing maps at two levels of its encoder: the
ASPP head on the top stage and a skip classifier on the second stage (stride 8, a smaller
receptive field).  The S x L maps are aggregated per pixel (Eq. 2 and 3)::

    a = conv3x3(relu(conv3x3(concat_n softmax(x_n))))       # (B, N, h, w), N = S x L
    w_n = exp(a_n) / sum_m exp(a_m)                         # shared by all classes
    r_c = sum_n w_n * x_{n, c}

where ``x_n`` are the maps' class scores (logits).  The paper's aggregation convs are 512 and
N_S wide; here the first is ``head_width`` wide (128 in the CPU profile).  Every input map is
supervised too (the paper's deep supervision of each Skip-Net): the output carries them as
``parsing_scales``, which :func:`parser_net.losses.parsing_loss` supervises.  The
self-supervised joint loss (Eq. 4) is :func:`parser_net.structure.structure_sensitive_loss`
(``--structure-loss``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from parser_net.model import ParserConfig, rescale, shared_deeplab

#: encoder stage (0-based) feeding the skip classifier: stride 8, 2 x width channels
SKIP_STAGE = 1


class NeuralAggregation(nn.Module):
    """Per-pixel softmax weights over N parsing maps, shared across classes (Eq. 2-3).

    Shape: input float (B, N, C, h, w) logits; output (fused (B, C, h, w) logits, weights
    (B, N, h, w) in [0, 1] summing to 1 over N)."""

    def __init__(self, n_maps: int, num_classes: int, hidden: int):
        super().__init__()
        self.n_maps = n_maps
        self.net = nn.Sequential(nn.Conv2d(n_maps * num_classes, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, n_maps, 3, padding=1))

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if maps.shape[1] != self.n_maps:
            raise ValueError(f"expected {self.n_maps} maps, got {maps.shape[1]}")
        weights = self.net(maps.softmax(2).flatten(1, 2)).softmax(1)
        return (weights.unsqueeze(2) * maps).sum(1), weights


class SSNAN(nn.Module):
    """A DeepLab shared over ``cfg.scales``, two levels per scale, neurally aggregated.

    Shape: input float (B, 3, H, W) normalized RGB; output ``{"parsing": (B, C, H, W)``
    aggregated logits, ``"parsing_scales": (S*L, B, C, H, W)`` every scale and level's logits
    (scale-major: scale 1 top, scale 1 skip, scale 0.75 top, ...), ``"aggregation_weights":
    (B, S*L, H/os, W/os)}``.  Raises ValueError when ``cfg.scales`` does not start with 1.
    """

    levels = 2

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        self.cfg = cfg
        self.deeplab = shared_deeplab(cfg)
        mid = self.deeplab.encoder.stage_channels[SKIP_STAGE]
        self.skip = nn.Sequential(nn.Conv2d(mid, cfg.head_width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Dropout2d(cfg.dropout), nn.Conv2d(cfg.head_width, cfg.num_classes, 1))
        self.aggregate = NeuralAggregation(len(cfg.scales) * self.levels, cfg.num_classes, cfg.head_width)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps, grid = [], None
        for scale in self.cfg.scales:
            levels = self.deeplab.encoder.levels(rescale(x, scale))
            top = self.deeplab.aspp(levels[-1])
            grid = grid or top.shape[-2:]
            for lg in (top, self.skip(levels[SKIP_STAGE])):
                maps.append(F.interpolate(lg, size=grid, mode="bilinear", align_corners=False))
        fused, weights = self.aggregate(torch.stack(maps, 1))

        def up(t):
            return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        return {"parsing": up(fused), "parsing_scales": torch.stack([up(t) for t in maps]),
                "aggregation_weights": weights}
