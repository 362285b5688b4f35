"""The Parsing Induced Learner and its ablations: the adaptive convolution (Eq. 3), shapes,
gradients, losses of pose-only variants, training and evaluation through the CLI."""
import json

import pytest
import torch

from parser_net.joint import JointConfig, joint_loss
from parser_net.model import ParserConfig
from parser_net.pil import POSE_ARCHS, ParsingPoseNet, channelwise_conv

CFG = JointConfig(ParserConfig(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2)),
                  pose_width=8)


def test_channelwise_conv_matches_a_per_sample_depthwise_conv():
    torch.manual_seed(0)
    x, k = torch.randn(3, 5, 9, 11), torch.randn(3, 5, 7, 7)
    out = channelwise_conv(x, k)
    for b in range(3):
        ref = torch.nn.functional.conv2d(x[b:b + 1], k[b][:, None], padding=3, groups=5)
        assert torch.allclose(out[b:b + 1], ref, atol=1e-5)
    assert torch.allclose(channelwise_conv(x, k, unfold=True), out, atol=1e-5)     # the ONNX path
    shared = channelwise_conv(x, k[0])
    assert torch.allclose(shared[1:2], torch.nn.functional.conv2d(x[1:2], k[0][:, None], padding=3, groups=5), atol=1e-5)
    with pytest.raises(ValueError):
        channelwise_conv(x, torch.randn(3, 5, 6, 6))
    with pytest.raises(ValueError):
        channelwise_conv(x, torch.randn(3, 4, 7, 7))


@pytest.mark.parametrize("arch", sorted(POSE_ARCHS))
def test_every_variant_shapes_loss_and_gradients(arch):
    torch.manual_seed(0)
    model = ParsingPoseNet(CFG, arch)
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    assert out["heatmaps"].shape == (2, 16, 8, 6) and out["heatmap_stages"].shape == (1, 2, 16, 8, 6)
    assert ("parsing" in out) == POSE_ARCHS[arch]
    if POSE_ARCHS[arch]:
        assert out["parsing"].shape == (2, 8, 64, 48)
    losses = joint_loss(out, torch.randint(0, 8, (2, 64, 48)), torch.rand(2, 16, 8, 6), torch.ones(2, 16),
                        torch.ones(2), pose_weight=100)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and (float(losses["parsing"]) > 0) == POSE_ARCHS[arch]
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_pil_kernels_depend_on_the_parsing_features_and_self_kernels_do_not():
    torch.manual_seed(0)
    pil = ParsingPoseNet(CFG, "pil").eval()
    x = torch.randn(2, 3, 64, 48)
    fs = pil.parsing_encoder(x)
    theta = pil.adapter(fs)
    assert theta.shape == (2, 32, 7, 7)                                   # (B, c_i, 7, 7), c_i = 8 x width
    assert not torch.allclose(theta[0], theta[1])
    # the same pose features with another image's kernels give other features: the pose
    # model's parameters are induced by the parsing encoder (Eq. 1)
    fp = pil.pose_encoder(x[:1])
    assert not torch.allclose(pil.fuse(fp, theta[:1]), pil.fuse(fp, theta[1:]))
    selfnet = ParsingPoseNet(CFG, "self")
    assert selfnet.fuse.theta.shape == (32, 7, 7) and selfnet.parsing_encoder is None
    with pytest.raises(ValueError, match="unknown pose network"):
        ParsingPoseNet(CFG, "hourglass")


@pytest.mark.parametrize("joint_arch", ["pil", "pose"])
def test_training_and_evaluate_cli(demo_dir, tmp_path, joint_arch):
    from flows.cli import main as cli
    from parser_net.config import ParserTrainConfig
    from parser_net.networks import load_parser
    from parser_net.train import fit_parser
    from pipeline.errors import ConfigError

    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / joint_arch), model="joint", joint_arch=joint_arch,
                            pose_data=str(demo_dir), pose_split="val", iterations=3, checkpoint_every=3, width=4,
                            size=64, batch_size=2, threads=1)
    ckpt = fit_parser(cfg)
    metrics = json.loads((tmp_path / joint_arch / "metrics.json").read_text())
    assert metrics["pose"]["people"] == 3 and 0 <= metrics["pose"]["pck"] <= 1
    assert ("val" in metrics) == (joint_arch == "pil")
    model, saved = load_parser(ckpt, parsing=False)
    assert saved.network["joint_arch"] == joint_arch and isinstance(model, ParsingPoseNet)
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(demo_dir), "--split", "val", "--out", str(out)]) == 0
    result = json.loads(out.read_text())[str(ckpt)]
    assert result["pose"]["people"] == 3 and ("mean_iou" in result) == (joint_arch == "pil")
    if joint_arch == "pose":
        with pytest.raises(ConfigError, match="outputs heatmaps.*has no parsing"):
            load_parser(ckpt)
