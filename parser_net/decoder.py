"""The encoder-decoder parser: ASPP on the top features, fused with the stride-4 features
of the first residual stage (DeepLabv3+, Chen et al., ECCV 2018, section 3.1; the parsing
encoder of HTCorrM, Zhang et al., TPAMI 2021, section 3.2).

:class:`ASPPDecoder` is the head (HTCorrM's parsing encoder builds on it too);
:class:`EncoderDecoder` is the plain parser ``arch="decoder"``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from parser_net.model import ParserConfig, make_encoder
from refine_net.model import conv_bn_relu


class ASPPDecoder(nn.Module):
    """Five-branch ASPP (global pooling, 1x1, three 3x3 atrous at the last three of ``rates``)
    on the top features, concatenated and reduced by a 1x1 convolution, bilinearly
    upsampled to the stride-4 features G1, concatenated with them, fused by a 3x3 convolution.

    Shape: top (B, cin, H/os, W/os), g1 (B, g1, H/4, W/4) -> (B, c, H/4, W/4) float.
    """

    def __init__(self, cin: int, g1: int, c: int, rates: tuple[int, ...]):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, c, 1), nn.ReLU(inplace=True))
        self.branches = nn.ModuleList([conv_bn_relu(cin, c, 1)] + [conv_bn_relu(cin, c, 3, r) for r in rates[-3:]])
        self.reduce = conv_bn_relu(5 * c, c, 1)
        self.fuse = conv_bn_relu(c + g1, c, 3)

    def forward(self, top: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(top).expand(-1, -1, *top.shape[-2:])
        a = self.reduce(torch.cat([pooled] + [b(top) for b in self.branches], 1))
        a = F.interpolate(a, size=g1.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([a, g1], 1))


class EncoderDecoder(nn.Module):
    """The encoder (:func:`parser_net.model.make_encoder`: the residual encoder or an
    ImageNet EfficientNet-Lite; its stride-4 and top levels), :class:`ASPPDecoder` with
    ``cfg.head_width`` channels and a 1x1 classifier at stride 4 (no dropout: HTCorrM's
    parsing branch as measured; ``cfg.dropout`` is unused).

    Shape: input float (B, 3, H, W) (normalized RGB), H and W multiples of 8; output
    ``{"parsing": (B, C, H, W)}`` logits, bilinearly upsampled from stride 4.
    """

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg)
        self.decoder = ASPPDecoder(self.encoder.out_channels, self.encoder.stage_channels[0], cfg.head_width,
                                   cfg.aspp_rates)
        self.classifier = nn.Conv2d(cfg.head_width, cfg.num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.encoder.levels(x)
        logits = self.classifier(self.decoder(levels[-1], levels[0]))
        return {"parsing": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}
