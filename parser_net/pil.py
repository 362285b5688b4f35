"""Pose networks that use parsing: the Parsing Induced Learner and its ablations (Nie et al.,
"Human Pose Estimation with Parsing Induced Learner", CVPR 2018, sections 3.1-3.2, Table 1).

All variants share a pose encoder (:class:`parser_net.model.Encoder`, output stride 8 or 16)
giving F^P and a linear pose classifier (1x1 conv to J heatmaps) on the refined F^P*:

* ``pose``: F^P* = F^P (the baseline).
* ``self``: F^P* = F^P + U(theta *_c V(F^P)) with a *static* 7x7 channel-wise theta (the
  paper's "Self": PIL's residual module without parsing).
* ``add`` / ``multi`` / ``concat``: a parsing encoder (a second Encoder, with its own linear
  parsing classifier, supervised by the labels) gives F^S; F^P* = F^P + F^S, F^P * F^S, or a
  1x1 conv of [F^P, F^S].
* ``mtl``: one encoder, F^P* = F^P, pose and parsing classifiers on it (multi-task learning).
* ``pil``: F^P* = F^P + F^a with F^a = U * (theta~ *_c (V * F^P)) (Eq. 3 and the adaptive
  convolution): theta~ (B, c_i, 7, 7) is predicted per image by the parameter adapter from F^S
  (Fig. 3: three convolutions, two poolings), V and U are learned 1x1 convolutions, no bias.

Output: ``{"heatmaps": (B, J, H/os, W/os), "heatmap_stages": (1, B, J, H/os, W/os)}`` and, for
the variants with a parsing classifier, ``"parsing": (B, C, H, W)`` logits at the input size
and ``"parsing_stages": (1, B, C, H, W)``; the loss is :func:`parser_net.joint.joint_loss`
(Eq. 2: heatmap MSE + beta x parsing cross-entropy).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from parser_net.model import make_encoder

#: variants and whether they have a parsing classifier
POSE_ARCHS: dict[str, bool] = {"pose": False, "self": False, "add": True, "multi": True, "concat": True,
                               "mtl": True, "pil": True}
KERNEL = 7


def channelwise_conv(x: torch.Tensor, kernels: torch.Tensor, unfold: bool | None = None) -> torch.Tensor:
    """Per-sample channel-wise (depthwise) convolution with 'same' padding.

    Shape: x float (B, C, h, w); kernels (B, C, k, k) with k odd, or (C, k, k) shared by the
    batch.  Returns (B, C, h, w): out[b, c] = x[b, c] (*) kernels[b, c] (cross-correlation,
    as nn.Conv2d).  Per-sample kernels run as one grouped convolution, or, with ``unfold``
    (by default while exporting to ONNX, whose Conv needs kernels of known shape), as
    patches (F.unfold) times kernels: the same numbers, more memory.
    Raises ValueError on mismatched channels or an even k."""
    b, c, h, w = x.shape
    k = int(kernels.shape[-1])                      # a constant even while tracing
    if k % 2 == 0 or kernels.shape[-3] != c:
        raise ValueError(f"kernels {tuple(kernels.shape)} do not fit input {tuple(x.shape)} (odd k, C channels)")
    if kernels.dim() == 3:
        return F.conv2d(x, kernels[:, None], padding=k // 2, groups=c)
    if torch.onnx.is_in_onnx_export() if unfold is None else unfold:
        patches = F.unfold(x, k, padding=k // 2).reshape(b, c, k * k, h * w)
        return (patches * kernels.reshape(b, c, k * k, 1)).sum(2).reshape(b, c, h, w)
    out = F.conv2d(x.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, k, k), padding=k // 2, groups=b * c)
    return out.reshape(b, c, h, w)


class ParameterAdapter(nn.Module):
    """Parsing features -> 7x7 channel-wise kernels theta~ (the paper's Fig. 3: conv, pool,
    conv, pool, conv).  The features are first resized (bilinear) to a fixed 4k x 4k grid, so
    that any input size gives k x k kernels through the fixed 2x2 max and average poolings
    (and the network exports to ONNX with dynamic sizes, which adaptive pooling does not).
    Shape: (B, F, h, w) -> (B, c, k, k)."""

    def __init__(self, cin: int, channels: int, hidden: int, k: int = KERNEL):
        super().__init__()
        self.grid = 4 * k
        self.net = nn.Sequential(
            nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.AvgPool2d(2),
            nn.Conv2d(hidden, channels, 3, padding=1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(F.interpolate(f, size=(self.grid, self.grid), mode="bilinear", align_corners=False))


class ResidualChannelwise(nn.Module):
    """F + U(theta *_c V(F)): the adaptive convolution (theta given per sample) or, with
    ``static=True``, the same module with a learned theta (the "Self" ablation).  V, U are
    1x1 convs without bias.  Shape: F (B, c, h, w), theta (B, c, k, k) -> (B, c, h, w)."""

    def __init__(self, channels: int, static: bool = False, k: int = KERNEL):
        super().__init__()
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.u = nn.Conv2d(channels, channels, 1, bias=False)
        self.theta = nn.Parameter(torch.randn(channels, k, k) / k) if static else None

    def forward(self, f: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        kernels = self.theta if self.theta is not None else theta
        if kernels is None:
            raise ValueError("the adaptive convolution needs per-sample kernels")
        return f + self.u(channelwise_conv(self.v(f), kernels))


class ParsingPoseNet(nn.Module):
    """One of :data:`POSE_ARCHS` (see the module docstring); ``cfg`` is a
    :class:`parser_net.joint.JointConfig` (its ``parser`` sets the encoders)."""

    def __init__(self, cfg, arch: str):
        super().__init__()
        if arch not in POSE_ARCHS:
            raise ValueError(f"unknown pose network {arch!r}; choose from {sorted(POSE_ARCHS)}")
        self.cfg, self.arch, p = cfg, arch, cfg.parser
        self.pose_encoder = make_encoder(p)
        feat = self.pose_encoder.out_channels
        self.parsing_encoder = make_encoder(p) if arch in ("add", "multi", "concat", "pil") else None
        self.parsing_classifier = nn.Conv2d(feat, p.num_classes, 1) if POSE_ARCHS[arch] else None
        self.fuse = {"self": lambda: ResidualChannelwise(feat, static=True), "pil": lambda: ResidualChannelwise(feat),
                     "concat": lambda: nn.Conv2d(2 * feat, feat, 1)}.get(arch, lambda: None)()
        self.adapter = ParameterAdapter(feat, feat, cfg.pose_width) if arch == "pil" else None
        self.pose_classifier = nn.Conv2d(feat, cfg.num_joints, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fp = self.pose_encoder(x)                                             # F^P (B, F, h, w)
        fs = self.parsing_encoder(x) if self.parsing_encoder is not None else fp
        if self.arch == "self":
            fp = self.fuse(fp)
        elif self.arch == "pil":
            fp = self.fuse(fp, self.adapter(fs))
        elif self.arch == "add":
            fp = fp + fs
        elif self.arch == "multi":
            fp = fp * fs
        elif self.arch == "concat":
            fp = self.fuse(torch.cat([fp, fs], 1))
        heatmaps = self.pose_classifier(fp)
        out = {"heatmaps": heatmaps, "heatmap_stages": heatmaps[None]}
        if self.parsing_classifier is not None:
            parsing = F.interpolate(self.parsing_classifier(fs), size=x.shape[-2:], mode="bilinear",
                                    align_corners=False)
            out.update(parsing=parsing, parsing_stages=parsing[None])
        return out
