"""DeepLab-style parsers in plain torch (method.md section 6).

* :class:`DeepLab`: a residual encoder whose last stages trade stride for dilation
  (atrous convolution, output stride 8 or 16) and a DeepLab-v2 ASPP head: one branch per
  rate (3x3 dilated conv -> ReLU -> dropout -> 1x1 to classes), branch logits summed
  (Chen et al., "DeepLab", TPAMI 2017).
* :class:`AttentionToScale`: the same DeepLab shared over input scales (1, 0.75, 0.5),
  fused by a learned per-pixel softmax over scales (Chen et al., "Attention to Scale",
  CVPR 2016), the multi-scale parser of the paper's VGG-16 entry.
* SS-NAN's neural aggregation over scales and encoder levels: :mod:`parser_net.ssnan`.

Both return ``{"parsing": (B, C, H, W) logits at the input size, ...}``.  Widths and depths
come from :class:`ParserConfig` so that a CPU profile trains from scratch at 128-160 px.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from refine_net.encoders import ENCODERS, EfficientNetLite

PAPER_RATES = (6, 12, 18, 24)
PAPER_CROP = 321


def scaled_rates(crop_size: int, output_stride: int, rates: tuple[int, ...] = PAPER_RATES) -> tuple[int, ...]:
    """ASPP rates for a crop size and output stride, from DeepLab-v2's (6, 12, 18, 24) at a
    321 px crop and output stride 8: ``max(1, round(r * crop/321 * 8/os))``.

    At 160 px / stride 8 this gives (3, 6, 9, 12): the same field of view relative to the
    image as the paper's rates.  Raises ValueError for a non-positive size or stride."""
    if crop_size <= 0 or output_stride <= 0:
        raise ValueError(f"crop_size and output_stride must be positive, got {crop_size}, {output_stride}")
    return tuple(max(1, round(r * crop_size / PAPER_CROP * 8 / output_stride)) for r in rates)


@dataclass(frozen=True)
class ParserConfig:
    """Architecture of a parser (saved with every checkpoint).

    Attributes:
        num_classes: C, background included.
        width: channels of the first residual stage; stages have width x (1, 2, 4, 8).
        blocks: residual blocks per stage (4 stages).
        output_stride: 8 or 16 (stride of the feature map fed to ASPP).
        aspp_rates: dilation rates of the ASPP branches (see :func:`scaled_rates`).
        head_width: channels inside each ASPP branch.
        dropout: dropout inside the ASPP branches.
        scales: input scales of :class:`AttentionToScale` (ignored by :class:`DeepLab`).
        in_channels: 3 for RGB.
        encoder: ``scratch`` (the residual :class:`Encoder`, sized by ``width`` and
            ``blocks``) or an EfficientNet-Lite of :mod:`refine_net.encoders` (``width`` and
            ``blocks`` then unused; its ImageNet weights are loaded by the training run,
            not here).
    """

    num_classes: int
    width: int = 24
    blocks: tuple[int, int, int, int] = (1, 1, 2, 1)
    output_stride: int = 8
    aspp_rates: tuple[int, ...] = (3, 6, 9, 12)
    head_width: int = 128
    dropout: float = 0.3
    scales: tuple[float, ...] = (1.0, 0.75, 0.5)
    in_channels: int = 3
    encoder: str = "scratch"

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {list(ENCODERS)}")
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"blocks must be 4 positive counts, got {self.blocks}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")


class BasicBlock(nn.Module):
    """Residual block: two 3x3 convs with batch norm; 1x1 projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class Encoder(nn.Module):
    """Stem (stride 4) and four residual stages; output stride 8 or 16 by dilation."""

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))                                             # stride 4
        # (stride, dilation) of stages 1-4
        plan = [(1, 1), (2, 1), (1, 2), (1, 4)] if cfg.output_stride == 8 else [(1, 1), (2, 1), (2, 1), (1, 2)]
        stages, cin = [], w
        for (stride, dilation), mult, n in zip(plan, (1, 2, 4, 8), cfg.blocks):
            cout = w * mult
            layers = [BasicBlock(cin, cout, stride, max(1, dilation // 2) if stride == 1 else 1)]
            layers += [BasicBlock(cout, cout, 1, dilation) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.stage_channels = tuple(w * m for m in (1, 2, 4, 8))

    def forward(self, x):
        return self.stages(self.stem(x))                                       # (B, 8w, H/os, W/os)

    def levels(self, x: torch.Tensor, n: int = 4) -> list[torch.Tensor]:
        """The output of the first ``n`` stages: (B, w, H/4, W/4), (B, 2w, H/8, W/8), then
        (B, 4w, ...) and (B, 8w, ...) at the output stride (8 or 16)."""
        out, f = [], self.stem(x)
        for stage in list(self.stages)[:n]:
            f = stage(f)
            out.append(f)
        return out


def make_encoder(cfg: ParserConfig) -> nn.Module:
    """The encoder ``cfg.encoder`` names at ``cfg.output_stride``: :class:`Encoder` for
    ``scratch``, else :class:`refine_net.encoders.EfficientNetLite` (randomly initialised).
    Both have ``levels(x, n)``, ``stage_channels`` and ``out_channels``."""
    if cfg.encoder == "scratch":
        return Encoder(cfg)
    if cfg.in_channels != 3:
        raise ValueError(f"a pretrained encoder takes 3 input channels, got {cfg.in_channels}")
    return EfficientNetLite(cfg.encoder, cfg.output_stride)


class ASPP(nn.Module):
    """DeepLab-v2 atrous spatial pyramid pooling: per-rate branches, logits summed."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...], head_width: int, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(
            nn.Conv2d(cin, head_width, 3, padding=r, dilation=r), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(head_width, num_classes, 1)) for r in rates)

    def forward(self, x):
        return sum(b(x) for b in self.branches)                                # (B, C, h, w)


class DeepLab(nn.Module):
    """Single-scale DeepLab parser.

    Shape: input float (B, 3, H, W) (normalized RGB); output ``{"parsing": (B, C, H, W)}``
    logits, bilinearly upsampled from output stride to the input size.
    """

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg)
        self.aspp = ASPP(self.encoder.out_channels, cfg.num_classes, cfg.aspp_rates, cfg.head_width, cfg.dropout)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features (B, 8w, h, w) and logits (B, C, h, w) at the output stride."""
        f = self.encoder(x)
        return f, self.aspp(f)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _, logits = self.features_and_logits(x)
        return {"parsing": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def shared_deeplab(cfg: ParserConfig) -> DeepLab:
    """The DeepLab a multi-scale parser shares over ``cfg.scales``; ValueError unless the
    scales start with 1.0 (the scale whose grid the others are resized to)."""
    if not cfg.scales or cfg.scales[0] != 1.0:
        raise ValueError(f"scales must start with 1.0, got {cfg.scales}")
    return DeepLab(cfg)


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, C, H, W) bilinearly resized by ``scale`` (x itself at 1.0)."""
    return x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False,
                                                recompute_scale_factor=False)


class AttentionToScale(nn.Module):
    """A DeepLab shared over input scales, fused by per-pixel soft attention over scales.

    Each scale s resizes the input, runs the shared DeepLab, and resizes its features and
    logits to the scale-1 feature grid.  An attention head (3x3 conv -> ReLU -> 1x1 conv to
    S maps, softmax over S) weights the scale logits: fused = sum_s a_s * logits_s.

    Shape: input (B, 3, H, W); output ``{"parsing": (B, C, H, W)`` fused logits,
    ``"parsing_scales": (S, B, C, H, W)`` per-scale logits (for the extra supervision of
    the paper), ``"scale_attention": (B, S, H/os, W/os)`` in [0, 1] summing to 1 over S}.
    """

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        self.cfg = cfg
        self.deeplab = shared_deeplab(cfg)
        s, c = len(cfg.scales), self.deeplab.encoder.out_channels
        self.attention = nn.Sequential(nn.Conv2d(s * c, 64, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(64, s, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats, logits, grid = [], [], None
        for scale in self.cfg.scales:
            f, lg = self.deeplab.features_and_logits(rescale(x, scale))
            if grid is None:
                grid = lg.shape[-2:]
            feats.append(F.interpolate(f, size=grid, mode="bilinear", align_corners=False))
            logits.append(F.interpolate(lg, size=grid, mode="bilinear", align_corners=False))
        attention = self.attention(torch.cat(feats, 1)).softmax(1)                # (B, S, h, w)
        stacked = torch.stack(logits, 1)                                           # (B, S, C, h, w)
        fused = (attention.unsqueeze(2) * stacked).sum(1)

        def up(t):
            return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        return {"parsing": up(fused), "parsing_scales": torch.stack([up(t) for t in logits]),
                "scale_attention": attention}

