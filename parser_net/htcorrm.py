"""HTCorrM: parsing, pose and body edges from one backbone, correlated by the Heterogeneous
Non-Local module (Zhang et al., "On the Correlation among Edge, Pose and Parsing", TPAMI
2021, section 3), with any one task as the main task.

* Backbone: :class:`parser_net.model.Encoder` (the unified backbone; stages G1-G4).
* Parsing encoder: ASPP with five branches (global pooling, 1x1, three 3x3 atrous), concat,
  1x1 reduction, upsampled to G1 (stride 4) and concatenated with it, 3x3 conv -> F_p
  (:class:`parser_net.decoder.ASPPDecoder`, also the plain parser ``--arch decoder``).
* Pose encoder: two transposed convolutions (kernel 4 stride 2, then kernel 3 stride 1 at
  output stride 8, both stride 2 at 16) from the top features to stride 4 -> F_k.
* Edge encoder: 1x1 convs on G1, G2, G3 to a common width, resized to stride 4,
  concatenated, 3x3 then 1x1 conv -> F_b.
* Each encoder has a linear (1x1) classifier, supervised (the auxiliary outputs).
* Fusion into the main task's feature F_m: ``hnl`` (Eq. 1-3: F_h = W1 concat(F_p, F_k, F_b);
  S = softmax(F1 F2^T) over main-task positions, F1 = conv(F_h), F2 = conv(F_m);
  F_r = W2 (S F3) + F_m with F3 = conv(F_m) and W2 initialised to 0), ``concat``
  (F_r = F_m + W concat(F_p, F_k, F_b), W initialised to 0), or ``none`` (the main task
  alone: no other encoder is built).  O_m = W3 F_r, a 1x1 conv.

All features are C = ``pose_width`` channels at stride 4.  Output keys: ``parsing`` (B, Q,
H, W) logits at the input size, ``heatmaps`` (B, J, H/4, W/4), ``edges`` (B, 1, H, W) logits,
each with its stages (:data:`STAGES`: aux output, then O_m for the main task), for the tasks built.
The loss (Eq. 4) is :func:`parser_net.joint.joint_loss` with :func:`edge_loss` added.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.edges import label_boundaries
from pipeline.labels import IGNORE
from parser_net.decoder import ASPPDecoder
from refine_net.model import conv_bn_relu
from parser_net.model import make_encoder

TASKS = ("parsing", "pose", "edge")
FUSIONS = ("none", "concat", "hnl")
#: output key of each task
OUTPUT = {"parsing": "parsing", "pose": "heatmaps", "edge": "edges"}
#: key of each task's supervised maps (auxiliary output, then O_m for the main task)
STAGES = {"parsing": "parsing_stages", "pose": "heatmap_stages", "edge": "edge_stages"}
FEATURE_STRIDE = 4


class PoseEncoder(nn.Module):
    """Two transposed convolutions from the top features (stride 8 or 16) to stride 4."""

    def __init__(self, cin: int, c: int, output_stride: int):
        super().__init__()
        second = (4, 2, 1) if output_stride == 16 else (3, 1, 1)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(cin, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, *second, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, top: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        f = self.net(top)
        return f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)


class EdgeEncoder(nn.Module):
    """G1, G2, G3 -> 1x1 each -> resized to G1 -> concat -> 3x3 -> 1x1 -> F_b."""

    def __init__(self, channels: tuple[int, int, int], c: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(ch, c, 1) for ch in channels)
        self.out = nn.Sequential(conv_bn_relu(3 * c, c, 3), nn.Conv2d(c, c, 1), nn.ReLU(inplace=True))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        size = levels[0].shape[-2:]
        fs = [F.interpolate(lat(g), size=size, mode="bilinear", align_corners=False) if g.shape[-2:] != size
              else lat(g) for lat, g in zip(self.lateral, levels)]
        return self.out(torch.cat(fs, 1))


class HeterogeneousNonLocal(nn.Module):
    """Eq. 1-3 of the paper.  Shape: feats three (B, C, h, w), main (B, C, h, w) -> refined
    F_r (B, C, h, w) and the relation map S (B, L, L), L = h w, rows summing to 1."""

    def __init__(self, c: int, inner: int):
        super().__init__()
        self.w1 = nn.Conv2d(3 * c, c, 1)
        self.f1, self.f2, self.f3 = nn.Conv2d(c, inner, 1), nn.Conv2d(c, inner, 1), nn.Conv2d(c, inner, 1)
        self.w2 = nn.Conv2d(inner, c, 1)
        nn.init.zeros_(self.w2.weight)
        nn.init.zeros_(self.w2.bias)

    def forward(self, feats: list[torch.Tensor], main: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = main.shape
        hybrid = self.w1(torch.cat(feats, 1))                                   # F_h
        f1 = self.f1(hybrid).flatten(2).transpose(1, 2)                         # (B, L, c')
        f2 = self.f2(main).flatten(2)                                           # (B, c', L)
        s = torch.softmax(f1 @ f2, dim=-1)                                      # (B, L, L)
        f3 = self.f3(main).flatten(2).transpose(1, 2)                           # (B, L, c')
        y = (s @ f3).transpose(1, 2).reshape(b, -1, h, w)
        return self.w2(y) + main, s


class ConcatFusion(nn.Module):
    """F_r = F_m + W concat(F_p, F_k, F_b), W a 1x1 conv initialised to 0 (the paper's
    concatenation baseline in HNL's residual form)."""

    def __init__(self, c: int):
        super().__init__()
        self.w = nn.Conv2d(3 * c, c, 1)
        nn.init.zeros_(self.w.weight)
        nn.init.zeros_(self.w.bias)

    def forward(self, feats: list[torch.Tensor], main: torch.Tensor) -> tuple[torch.Tensor, None]:
        return main + self.w(torch.cat(feats, 1)), None


class HTCorrM(nn.Module):
    """See the module docstring.  ``cfg``: :class:`parser_net.joint.JointConfig`; ``main_task``
    one of :data:`TASKS`; ``fusion`` one of :data:`FUSIONS`.  Raises ValueError otherwise."""

    heatmap_stride = FEATURE_STRIDE

    def __init__(self, cfg, main_task: str = "parsing", fusion: str = "hnl"):
        super().__init__()
        if main_task not in TASKS or fusion not in FUSIONS:
            raise ValueError(f"main task must be one of {TASKS} and fusion one of {FUSIONS}, "
                             f"got {main_task!r}, {fusion!r}")
        p, c = cfg.parser, cfg.pose_width
        self.main_task, self.fusion = main_task, fusion
        self.tasks = TASKS if fusion != "none" else (main_task,)
        self.backbone = make_encoder(p)
        ch = self.backbone.stage_channels
        top = self.backbone.out_channels
        encoders = {"parsing": lambda: ASPPDecoder(top, ch[0], c, p.aspp_rates),
                    "pose": lambda: PoseEncoder(top, c, p.output_stride),
                    "edge": lambda: EdgeEncoder(ch[:3], c)}
        sizes = {"parsing": p.num_classes, "pose": cfg.num_joints, "edge": 1}
        self.encoders = nn.ModuleDict({t: encoders[t]() for t in self.tasks})
        self.classifiers = nn.ModuleDict({t: nn.Conv2d(c, sizes[t], 1) for t in self.tasks})
        self.fuse = {"hnl": lambda: HeterogeneousNonLocal(c, max(8, c // 2)), "concat": lambda: ConcatFusion(c),
                     "none": lambda: None}[fusion]()
        self.main_classifier = nn.Conv2d(c, sizes[main_task], 1) if self.fuse is not None else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.backbone.levels(x, 3 if self.tasks == ("edge",) else 4)   # edges alone need G1-G3
        g1, top = levels[0], levels[-1]
        feats = {}
        for t in self.tasks:
            enc = self.encoders[t]
            feats[t] = enc(top, g1) if t == "parsing" else enc(top, g1.shape[-2:]) if t == "pose" else enc(levels[:3])
        outs = {t: [self.classifiers[t](f)] for t, f in feats.items()}
        if self.fuse is not None:
            refined, relation = self.fuse([feats[t] for t in TASKS], feats[self.main_task])
            outs[self.main_task].append(self.main_classifier(refined))

        def up(t):
            return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        result = {}
        for t, maps in outs.items():
            maps = maps if t == "pose" else [up(m) for m in maps]
            result[OUTPUT[t]], result[STAGES[t]] = maps[-1], torch.stack(maps)
        return result


def edge_targets(target: torch.Tensor) -> torch.Tensor:
    """Edge labels of a batch of label maps (:func:`pipeline.edges.label_boundaries`).

    Shape: target int64 (B, H, W) class ids, 255 ignored -> uint8 (B, H, W): 1 edge, 0 not,
    255 where the label map is 255."""
    y = target.cpu().numpy()
    edges = np.stack([label_boundaries(m) for m in y]).astype(np.uint8)
    edges[y == IGNORE] = IGNORE
    return torch.from_numpy(edges).to(target.device)


def edge_loss(logits: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Class-balanced binary cross-entropy of edge logits (HED/BDCN): edge pixels weighted by
    the share of non-edge pixels and vice versa, over the batch's kept pixels.

    Shape: logits float (B, 1, H, W); target uint8 (B, H, W) from :func:`edge_targets`;
    sample_weight (B,) >= 0 or None.  Returns a scalar (0 when no pixel is kept)."""
    kept = target != IGNORE
    if sample_weight is not None:
        kept = kept & (sample_weight.view(-1, 1, 1) > 0)
    if not kept.any():
        return logits.sum() * 0
    y = (target == 1).float()
    pos = (y.bool() & kept).sum().float()
    neg = kept.sum().float() - pos
    w = torch.where(y.bool(), neg, pos) / (pos + neg)
    if sample_weight is not None:
        w = w * sample_weight.view(-1, 1, 1)
    w = w * kept
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="none")
    return (w * bce).sum() / w.sum().clamp(min=1e-12)
