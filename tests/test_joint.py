"""Joint parsing + pose pieces: heatmaps, structure-sensitive loss, the joint network."""
import numpy as np
import pytest
import torch

from parser_net.heatmaps import decode_heatmaps, encode_heatmaps
from parser_net.joint import JointConfig, JointNet, joint_loss
from parser_net.model import ParserConfig
from parser_net.structure import MERGED_REGIONS, joint_structure_loss, region_centres, structure_sensitive_loss


@pytest.mark.parametrize("stride", [1, 4, 8])
def test_heatmap_round_trip_within_half_a_pixel(stride):
    rng = np.random.default_rng(stride)
    size = 16 * stride
    kp = np.c_[rng.uniform(0, size - 1, (16, 2)), np.full(16, 2.0)]
    kp[5] = [np.nan, np.nan, 0]
    maps, weight = encode_heatmaps(kp, (16, 16), stride, sigma=1.5)
    assert maps.shape == (16, 16, 16) and weight[5] == 0 and maps[5].max() == 0 and weight.sum() == 15
    dec = decode_heatmaps(torch.from_numpy(maps)[None], stride)[0].numpy()
    ok = weight > 0
    assert np.abs(dec[ok, :2] - kp[ok, :2]).max() < 0.5
    assert np.allclose(dec[ok, 2], maps[ok].reshape(15, -1).max(1))


def test_heatmap_of_joint_outside_the_map_is_empty():
    maps, weight = encode_heatmaps(np.array([[100.0, 5.0, 2.0]]), (8, 8), 4)
    assert weight[0] == 0 and maps.max() == 0


def test_region_centres_hand_computed():
    lm = torch.zeros(1, 6, 6, dtype=torch.long)
    lm[0, 0:2, 0:2] = 1          # hair -> head at (0.5, 0.5)
    lm[0, 2:4, 2:6] = 3          # upper clothes -> upper body at (3.5, 2.5)
    c, present = region_centres(lm, MERGED_REGIONS["ccp8"])
    assert present[0].tolist() == [True, True, False, False]
    assert torch.allclose(c[0, 0], torch.tensor([0.5, 0.5])) and torch.allclose(c[0, 1], torch.tensor([3.5, 2.5]))


def test_structure_loss_zero_for_identical_and_grows_with_shift():
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 2:6, 4:8] = 1
    target[0, 6:12, 4:10] = 3
    assert float(joint_structure_loss(target, target, MERGED_REGIONS["ccp8"])[0]) == 0.0
    losses = []
    for dx in (1, 2, 4):
        shifted = torch.roll(target, dx, dims=2)
        losses.append(float(joint_structure_loss(shifted, target, MERGED_REGIONS["ccp8"])[0]))
    assert 0 < losses[0] < losses[1] < losses[2]
    logits = torch.randn(1, 8, 16, 16)
    assert float(structure_sensitive_loss(logits, target, MERGED_REGIONS["ccp8"])) >= \
        float(torch.nn.functional.cross_entropy(logits, target)) - 1e-6


def test_joint_network_forward_backward_and_missing_labels():
    torch.manual_seed(0)
    cfg = JointConfig(ParserConfig(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2)),
                      pose_width=8, remap_width=4, stages=1)
    model = JointNet(cfg)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["parsing"].shape == (2, 8, 64, 64) and out["heatmaps"].shape == (2, 16, 8, 8)
    assert out["parsing_stages"].shape[0] == 2 and out["heatmap_stages"].shape[0] == 2
    target = torch.randint(0, 8, (2, 64, 64))
    heat = torch.rand(2, 16, 8, 8)
    jw = torch.ones(2, 16)
    losses = joint_loss(out, target, heat, jw, torch.tensor([1.0, 1.0]), structure_regions=MERGED_REGIONS["ccp8"])
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # a sample without a label map contributes no parsing loss, one without keypoints no pose loss
    only_first = joint_loss(out, target, heat, torch.tensor([[1.0] * 16, [0.0] * 16]), torch.tensor([1.0, 0.0]))
    out1 = {k: v[:, :1] if k.endswith("stages") else v[:1] for k, v in out.items()}
    first = joint_loss(out1, target[:1], heat[:1], jw[:1], torch.tensor([1.0]))
    assert torch.allclose(only_first["parsing"], first["parsing"]) and torch.allclose(only_first["pose"], first["pose"])
    none = joint_loss(out, target, heat, torch.zeros(2, 16), torch.zeros(2))
    assert float(none["loss"].detach()) == 0.0


def test_augment_moves_keypoints_with_the_image():
    from parser_net.dataset import ParsingItem, augment
    from pipeline.labels import LABEL_SETS
    from pipeline.skeleton import J

    image = np.zeros((40, 30, 3), np.uint8)
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    kp[J["left_wrist"]] = [7, 11, 2]
    image[11, 7] = 255
    item = ParsingItem(image, np.zeros((40, 30), np.uint8), False, 1.0, "x", kp)
    flips = 0
    for seed in range(12):
        img, _, moved, _ = augment(item, (24, 20), (1.0, 1.0), LABEL_SETS["pascal10"].flip_lut(),
                                np.random.default_rng(seed), with_keypoints=True)
        joint = J["left_wrist"] if moved[J["left_wrist"], 2] > 0 else J["right_wrist"]
        flips += joint == J["right_wrist"]
        x, y = moved[joint, :2]
        if 0 <= x < 20 and 0 <= y < 24:
            assert img[int(round(y)), int(round(x)), 0] == 255
    assert flips > 0


def test_joint_training_reports_parsing_and_pck(demo_dir, tmp_path):
    import json

    from checks import assert_scores_consistent
    from parser_net.config import ParserTrainConfig
    from parser_net.networks import load_parser
    from parser_net.train import fit_parser

    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "joint"), model="joint", structure_loss=True,
                            pose_data=str(demo_dir), pose_split="val", iterations=3, checkpoint_every=3, width=4,
                            size=64, batch_size=2, threads=1)
    ckpt = fit_parser(cfg)
    metrics = json.loads((tmp_path / "joint" / "metrics.json").read_text())
    assert_scores_consistent(metrics["val"], images=3)
    assert metrics["pose"]["people"] == 3 and 0 <= metrics["pose"]["pck"] <= 1
    model, _ = load_parser(ckpt)
    assert "heatmaps" in model(torch.zeros(1, 3, 64, 64))
    from flows.cli import main as cli

    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(demo_dir), "--split", "val", "--out", str(out)]) == 0
    result = json.loads(out.read_text())[str(ckpt)]
    assert result["pose"]["people"] == 3 and 0 <= result["pose"]["pck"] <= 1
