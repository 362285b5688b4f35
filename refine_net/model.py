"""The refinement U-Net (pix2pix "unet_256" family; Fang et al., CVPR 2018, section 3.5).

Input: the person crop's image and its part-level prior stacked as channels,
(B, 3 + C, S, S); output: logits (B, C, S, S), one map per class.  Every level halves the
resolution with a 4x4 stride-2 convolution and doubles the filters (capped at 8x the
base); the decoder mirrors it with 4x4 stride-2 transposed convolutions and concatenates
the encoder's features (skip connections); instance norm, LeakyReLU(0.2) down, ReLU up,
dropout 0.5 in the innermost decoder blocks.  ``depth`` levels need S divisible by
2**depth (the paper: depth 8 at 256 px; the CPU profile: depth 5 at 128 px).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RefineConfig:
    """Architecture of the refinement U-Net.

    Attributes:
        num_classes: C, classes of the label set (background included).
        image_channels: 3 (RGB).
        use_prior: feed the prior (3 + C input channels); False trains the image-only
            baseline of the paper's Fig. 7 (3 input channels).
        base_filters: filters of the first level (64 in the paper).
        depth: number of stride-2 levels (8 in the paper).
        dropout_blocks: innermost decoder blocks with dropout 0.5 (3 in pix2pix).
    """

    num_classes: int
    image_channels: int = 3
    use_prior: bool = True
    base_filters: int = 32
    depth: int = 5
    dropout_blocks: int = 2

    @property
    def in_channels(self) -> int:
        return self.image_channels + (self.num_classes if self.use_prior else 0)


def _filters(cfg: RefineConfig, level: int) -> int:
    return cfg.base_filters * min(2 ** level, 8)


class UNet(nn.Module):
    """U-Net described by a :class:`RefineConfig`; ``forward`` returns
    ``{"parsing": logits (B, C, S, S)}``."""

    def __init__(self, cfg: RefineConfig):
        super().__init__()
        self.cfg = cfg
        self.down = nn.ModuleList()
        ch = cfg.in_channels
        for level in range(cfg.depth):
            out = _filters(cfg, level)
            layers: list[nn.Module] = [] if level == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(ch, out, 4, stride=2, padding=1, bias=level == 0 or level == cfg.depth - 1))
            if 0 < level < cfg.depth - 1:  # pix2pix: no norm on the outermost and innermost
                layers.append(nn.InstanceNorm2d(out))
            self.down.append(nn.Sequential(*layers))
            ch = out
        self.up = nn.ModuleList()
        for level in reversed(range(cfg.depth)):
            skip_in = ch if level == cfg.depth - 1 else 2 * ch  # innermost has no concat yet
            out = cfg.num_classes if level == 0 else _filters(cfg, level - 1)
            layers = [nn.ReLU(), nn.ConvTranspose2d(skip_in, out, 4, stride=2, padding=1, bias=level == 0)]
            if level > 0:
                layers.append(nn.InstanceNorm2d(out))
                if cfg.depth - 1 - level < cfg.dropout_blocks:
                    layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
            ch = out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: float (B, 3 + C, S, S) (or (B, 3, S, S) without prior), S divisible by 2**depth."""
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected {self.cfg.in_channels} input channels, got {x.shape[1]}")
        s = 2 ** self.cfg.depth
        if x.shape[-1] % s or x.shape[-2] % s:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {s}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)  # (B, F_l, S / 2^(l+1), ...)
        skips.pop()  # the innermost output feeds the first decoder block directly
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return {"parsing": x}
