"""The refinement U-Net (pix2pix "unet_256" family; Fang et al., CVPR 2018, section 3.5).

Input: the person crop's image and its part-level prior stacked as channels,
(B, 3 + C, S, S); output: logits (B, C, S, S), one map per class.  Every level halves the
resolution with a 4x4 stride-2 convolution and doubles the filters (capped at 8x the
base); the decoder mirrors it with 4x4 stride-2 transposed convolutions and concatenates
the encoder's features (skip connections); instance norm, LeakyReLU(0.2) down, ReLU up,
dropout 0.5 in the innermost decoder blocks.  ``depth`` levels need S divisible by
2**depth (the paper: depth 8 at 256 px; the CPU profile: depth 5 at 128 px).

:class:`PretrainedUNet` (``RefineConfig.encoder`` an EfficientNet-Lite): the same contract
with an ImageNet encoder as the contracting path (:mod:`refine_net.encoders`).
:func:`build_refiner` picks one from the config.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from refine_net.encoders import ENCODERS, EfficientNetLite


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
        encoder: ``scratch`` (the pix2pix U-Net) or an EfficientNet-Lite
            (:class:`PretrainedUNet`; ``depth`` and ``dropout_blocks`` then unused).
    """

    num_classes: int
    image_channels: int = 3
    use_prior: bool = True
    base_filters: int = 32
    depth: int = 5
    dropout_blocks: int = 2
    encoder: str = "scratch"

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {list(ENCODERS)}")

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


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    """k x k convolution (padding keeps the size), batch norm, ReLU (also the parsers' heads)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PretrainedUNet(nn.Module):
    """The refiner with an ImageNet EfficientNet-Lite (``cfg.encoder``) as its contracting
    path: its maps at strides 32, 16, 8, 4, 2 are merged top-down (bilinear x2, concatenated
    with the skip, 3x3 conv + batch norm + ReLU; ``4b, 2b, b, b`` channels, b =
    ``cfg.base_filters``), upsampled to the input size and classified by a 3x3 + 1x1 head.

    The prior enters twice, so that it never disturbs the pretrained filters: as extra
    stem channels whose filters start at zero (the encoder sees the image alone at step 0
    and learns to use the prior), and concatenated at full resolution before the head,
    where its exact part boundaries are at hand (the stem halves the resolution).

    Shape: input float (B, 3 + C, S, S) (or (B, 3, S, S) without prior), the image in
    [-1, 1] (:func:`refine_net.dataset.image_to_tensor`), S divisible by 32; output
    ``{"parsing": logits (B, C, S, S)}``.  The ImageNet weights are loaded by the training
    run (:func:`refine_net.encoders.init_pretrained`), not here.
    """

    def __init__(self, cfg: RefineConfig):
        super().__init__()
        self.cfg = cfg
        prior = cfg.num_classes if cfg.use_prior else 0
        self.encoder = EfficientNetLite(cfg.encoder, 32, extra_channels=prior, input_norm="symmetric")
        b = cfg.base_filters
        skips = (self.encoder.stride2_channels, *self.encoder.stage_channels[:-1])   # strides 2, 4, 8, 16
        widths = (b, b, 2 * b, 4 * b)
        self.up = nn.ModuleList()
        ch = self.encoder.out_channels
        for skip, out in zip(reversed(skips), reversed(widths)):
            self.up.append(conv_bn_relu(ch + skip, out))
            ch = out
        self.head = nn.Sequential(conv_bn_relu(ch + prior, b), nn.Conv2d(b, cfg.num_classes, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected {self.cfg.in_channels} input channels, got {x.shape[1]}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by 32")
        maps = self.encoder.pyramid(x)
        f = maps.pop()
        for block in self.up:
            skip = maps.pop()
            f = block(torch.cat([F.interpolate(f, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                                 skip], 1))
        f = F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"parsing": self.head(torch.cat([f, x[:, 3:]], 1) if self.cfg.use_prior else f)}


def build_refiner(cfg: RefineConfig) -> nn.Module:
    """:class:`UNet` for ``cfg.encoder == "scratch"``, else :class:`PretrainedUNet`."""
    return UNet(cfg) if cfg.encoder == "scratch" else PretrainedUNet(cfg)
