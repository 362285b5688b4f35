"""A JPPNet-style joint parsing + pose network in plain torch (Liang et al., "Look into
Person", TPAMI 2018; method.md section 7).

Shared residual trunk (:class:`parser_net.model.Encoder`, output stride 8 or 16), a
parsing branch (ASPP, :class:`parser_net.model.ASPP`) and a pose branch (convs to 16
keypoint heatmaps), then ``stages`` refinement stages.  Each stage *remaps* both tasks'
current maps with 1x1 convs into feature space, concatenates them with the trunk features
and feeds the result to a pose refiner (convs with growing kernels 3, 5, 7, for a growing
receptive field over the body) and a parsing refiner (convs + ASPP).  Every stage's
outputs are supervised (intermediate supervision, :func:`joint_loss`).

Output: ``{"parsing": (B, C, H, W)`` logits of the last stage at the input size,
``"heatmaps": (B, J, H/os, W/os)`` of the last stage, ``"parsing_stages": (S+1, B, C, H, W)``,
``"heatmap_stages": (S+1, B, J, H/os, W/os)}``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from parser_net.htcorrm import edge_loss
from parser_net.losses import weighted_ce
from parser_net.model import ASPP, ParserConfig, make_encoder
from parser_net.structure import structure_sensitive_loss


@dataclass(frozen=True)
class JointConfig:
    """Architecture of the joint network: the parser's trunk and head settings, the number
    of joints J, refinement ``stages``, and the widths of the pose branch and the remap."""

    parser: ParserConfig
    num_joints: int = 16
    stages: int = 1
    pose_width: int = 64
    remap_width: int = 32


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


class RefineStage(nn.Module):
    """Remap parsing and pose maps into features; refine both from [trunk, remapped maps]."""

    def __init__(self, feat: int, cfg: JointConfig):
        super().__init__()
        p, r = cfg.parser, cfg.remap_width
        self.remap_parsing = nn.Conv2d(p.num_classes, r, 1)
        self.remap_pose = nn.Conv2d(cfg.num_joints, r, 1)
        cin = feat + 2 * r
        self.pose = nn.Sequential(_conv(cin, cfg.pose_width, 3), _conv(cfg.pose_width, cfg.pose_width, 5),
                                  _conv(cfg.pose_width, cfg.pose_width, 7), nn.Conv2d(cfg.pose_width, cfg.num_joints, 1))
        self.parsing = nn.Sequential(_conv(cin, feat, 3), _conv(feat, feat, 5),
                                     ASPP(feat, p.num_classes, p.aspp_rates, p.head_width, p.dropout))

    def forward(self, f, parsing, heatmaps):
        x = torch.cat([f, F.relu(self.remap_parsing(parsing)), F.relu(self.remap_pose(heatmaps))], 1)
        return self.parsing(x), self.pose(x)


class JointNet(nn.Module):
    """Joint parsing + pose network; see the module docstring for the output dict."""

    def __init__(self, cfg: JointConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg.parser)
        feat = self.encoder.out_channels
        p = cfg.parser
        self.parsing_head = ASPP(feat, p.num_classes, p.aspp_rates, p.head_width, p.dropout)
        self.pose_head = nn.Sequential(_conv(feat, cfg.pose_width, 3), _conv(cfg.pose_width, cfg.pose_width, 3),
                                       nn.Conv2d(cfg.pose_width, cfg.num_joints, 1))
        self.stages = nn.ModuleList(RefineStage(feat, cfg) for _ in range(cfg.stages))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.encoder(x)                                                   # (B, F, h, w)
        parsing, heatmaps = self.parsing_head(f), self.pose_head(f)
        ps, hs = [parsing], [heatmaps]
        for stage in self.stages:
            parsing, heatmaps = stage(f, parsing, heatmaps)
            ps.append(parsing)
            hs.append(heatmaps)
        up = [F.interpolate(p, size=x.shape[-2:], mode="bilinear", align_corners=False) for p in ps]
        return {"parsing": up[-1], "heatmaps": hs[-1], "parsing_stages": torch.stack(up),
                "heatmap_stages": torch.stack(hs)}


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, joint_weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over present joints.

    Shape: pred, target float (B, J, h, w); joint_weight float (B, J) (0 for a missing
    joint or a sample without keypoints).  Returns 0 when no joint is present."""
    per_joint = ((pred - target) ** 2).mean((2, 3))                             # (B, J)
    total = joint_weight.sum()
    if total <= 0:
        return pred.sum() * 0
    return (per_joint * joint_weight).sum() / total


def joint_loss(output: dict[str, torch.Tensor], target: torch.Tensor, heatmaps: torch.Tensor,
               joint_weight: torch.Tensor, label_weight: torch.Tensor, pose_weight: float = 1.0,
               structure_regions: dict | None = None, edges: torch.Tensor | None = None,
               edge_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Intermediate-supervised loss of every stage.

    Args:
        output: :class:`JointNet`, :class:`parser_net.pil.ParsingPoseNet` or
            :class:`parser_net.htcorrm.HTCorrM` output (a task without its ``*_stages``
            contributes 0).
        target: int64 (B, H, W) label maps (255 ignored; all-255 for samples without labels).
        heatmaps: float (B, J, h, w) target heatmaps; joint_weight (B, J).
        label_weight: float (B,) per-sample parsing weight (0: no label map, so no parsing
            loss; lower for synthetic labels).
        pose_weight: weight of the heatmap loss (heatmap MSE is ~1e-3 of the CE; JPPNet
            balances the tasks with such a factor).
        structure_regions: merged regions (:data:`parser_net.structure.MERGED_REGIONS`) to
            use SS-JPPNet's structure-sensitive parsing loss, or None for plain CE.
        edges: uint8 (B, H, W) edge targets (:func:`parser_net.htcorrm.edge_targets`) for
            networks with ``edge_stages`` (HTCorrM), weighted by ``edge_weight``.
    Returns: {"loss", "parsing", "pose"} scalars, and "edges" with edge targets.
    """
    parsing = sum((structure_sensitive_loss(p, target, structure_regions, label_weight) if structure_regions
                   else weighted_ce(p, target, label_weight) for p in output.get("parsing_stages", ())),
                  next(iter(output.values())).sum() * 0)
    zero = next(iter(output.values())).sum() * 0
    pose = sum((heatmap_loss(h, heatmaps, joint_weight) for h in output.get("heatmap_stages", ())), zero)
    total = parsing + pose_weight * pose
    result = {"parsing": parsing.detach(), "pose": pose.detach()}
    if edges is not None and "edge_stages" in output:
        edge = sum(edge_loss(e, edges, label_weight) for e in output["edge_stages"])
        total, result["edges"] = total + edge_weight * edge, edge.detach()
    return {"loss": total, **result}
