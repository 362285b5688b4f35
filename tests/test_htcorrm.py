"""HTCorrM: body edges and ODS, the Heterogeneous Non-Local module (Eq. 1-3), every main
task and fusion, losses, training and evaluation through the CLI."""
import json

import numpy as np
import pytest
import torch

from parser_net.htcorrm import FUSIONS, STAGES, TASKS, HTCorrM, HeterogeneousNonLocal, edge_loss, edge_targets
from parser_net.joint import JointConfig, joint_loss
from parser_net.model import ParserConfig
from pipeline.edges import edge_counts, label_boundaries, ods

CFG = JointConfig(ParserConfig(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2, 3, 4)),
                  pose_width=8)


def test_label_boundaries_hand_computed():
    lab = np.zeros((4, 5), np.uint8)
    lab[1:3, 1:3] = 2
    lab[0, 4] = 255
    edge = label_boundaries(lab)
    expected = np.array([[0, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [1, 1, 1, 1, 0],
                         [0, 1, 1, 0, 0]], bool)
    assert (edge == expected).all()                   # the 255 pixel makes no edge with its neighbours
    assert not label_boundaries(np.full((3, 3), 5)).any()
    with pytest.raises(ValueError):
        label_boundaries(np.zeros((2, 2, 2)))


def test_ods_perfect_shifted_and_empty():
    truth = np.zeros((20, 20), bool)
    truth[:, 10] = True
    perfect = ods(edge_counts(truth.astype(np.float32), truth, tolerance=1.5))
    assert perfect["ods"] == 1.0 and perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    shifted = np.roll(truth, 1, axis=1).astype(np.float32)
    assert ods(edge_counts(shifted, truth, tolerance=1.5))["ods"] == 1.0        # within tolerance
    assert ods(edge_counts(shifted, truth, tolerance=0.5))["ods"] == 0.0        # outside it
    half = truth.astype(np.float32)
    half[10:] = 0
    r = ods(edge_counts(half, truth, tolerance=0.5))
    assert r["precision"] == 1.0 and r["recall"] == 0.5 and abs(r["ods"] - 2 / 3) < 1e-9
    assert ods(edge_counts(np.zeros((5, 5)), np.zeros((5, 5), bool)))["ods"] == 0.0
    with pytest.raises(ValueError):
        edge_counts(np.zeros((4, 4)), np.zeros((4, 5), bool))


def test_hnl_equations():
    torch.manual_seed(0)
    hnl = HeterogeneousNonLocal(6, 4)
    feats = [torch.randn(2, 6, 3, 5) for _ in range(3)]
    main = feats[0]
    refined, s = hnl(feats, main)
    assert torch.equal(refined, main)                 # W2 starts at 0: F_r = F_m
    assert s.shape == (2, 15, 15) and torch.allclose(s.sum(-1), torch.ones(2, 15))
    torch.nn.init.normal_(hnl.w2.weight)
    refined, s = hnl(feats, main)
    f3 = hnl.f3(main).flatten(2).transpose(1, 2)
    expected = hnl.w2((s @ f3).transpose(1, 2).reshape(2, 4, 3, 5)) + main
    assert torch.allclose(refined, expected, atol=1e-5)
    # the relation map depends on the auxiliary features (heterogeneous), not on F_m alone
    _, s2 = hnl([feats[0], torch.randn(2, 6, 3, 5), feats[2]], main)
    assert not torch.allclose(s, s2)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("main", TASKS)
def test_every_main_task_and_fusion_shapes_loss_gradients(main, fusion):
    torch.manual_seed(0)
    model = HTCorrM(CFG, main, fusion)
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    keys = {"parsing": "parsing", "pose": "heatmaps", "edge": "edges"}
    built = TASKS if fusion != "none" else (main,)
    assert set(out) == {keys[t] for t in built} | {STAGES[t] for t in built}
    shapes = {"parsing": (2, 8, 64, 48), "heatmaps": (2, 16, 16, 12), "edges": (2, 1, 64, 48)}
    for t in built:
        assert out[keys[t]].shape == shapes[keys[t]]
        assert out[STAGES[t]].shape[0] == (2 if t == main and fusion != "none" else 1)
    y = torch.randint(0, 8, (2, 64, 48))
    losses = joint_loss(out, y, torch.rand(2, 16, 16, 12), torch.ones(2, 16), torch.ones(2), pose_weight=100,
                        edges=edge_targets(y))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert ("edges" in losses) == ("edge" in built)
    for name, p in model.named_parameters():
        if built == ("edge",) and name.startswith("backbone.stages.3."):
            assert p.grad is None                     # the edge encoder reads G1-G3 only
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_edge_targets_and_balanced_loss():
    y = torch.zeros(2, 6, 6, dtype=torch.long)
    y[:, 2:4, 2:4] = 3
    y[1] = 255                                        # no labels: all ignored
    e = edge_targets(y)
    assert e.dtype == torch.uint8 and (e[1] == 255).all() and e[0].sum() > 0
    assert torch.equal(e[0].bool(), torch.from_numpy(label_boundaries(y[0].numpy())))
    perfect = torch.where(e[:, None] == 1, 20.0, -20.0).float()
    assert float(edge_loss(perfect, e)) < 1e-6
    wrong = -perfect
    assert float(edge_loss(wrong, e)) > 10
    assert float(edge_loss(wrong, e, torch.tensor([0.0, 1.0]))) == 0.0     # the only labelled sample weighs 0


@pytest.mark.parametrize("main_task", ["edge", "parsing"])
def test_training_reports_every_task_and_cli_evaluates(demo_dir, tmp_path, main_task):
    from flows.cli import main as cli
    from parser_net.config import ParserTrainConfig
    from parser_net.networks import load_parser
    from parser_net.train import fit_parser

    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / main_task), model="joint",
                            joint_arch="htcorrm", main_task=main_task, fusion="hnl", pose_data=str(demo_dir),
                            pose_split="val", iterations=3, checkpoint_every=3, width=4, size=64, batch_size=2,
                            threads=1)
    ckpt = fit_parser(cfg)
    metrics = json.loads((tmp_path / main_task / "metrics.json").read_text())
    assert metrics["pose"]["people"] == 3 and 0 <= metrics["pose"]["pck"] <= 1
    assert metrics["edges"]["images"] == 3 and 0 <= metrics["edges"]["ods"] <= 1
    assert 0.0075 * 64 < metrics["edges"]["tolerance_px"] <= 0.0075 * np.hypot(64, 64) + 1e-3   # long side 64
    assert 0 <= metrics["val"]["mean_iou"] <= 1
    model, saved = load_parser(ckpt)
    assert saved.network["main_task"] == main_task and isinstance(model, HTCorrM)
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(demo_dir), "--split", "val", "--out", str(out)]) == 0
    assert json.loads(out.read_text())[str(ckpt)]["pose"]["people"] == 3
