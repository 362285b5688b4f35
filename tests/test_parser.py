"""Parsers: shapes, losses, augmentation, training/resume and evaluation on a tiny CCP folder."""
import json
import os

import numpy as np
import pytest
import torch

from flows.cli import main as cli
from pipeline.formats import files
from pipeline.labels import LABEL_SETS
from parser_net.dataset import ParsingItem, augment, sample_indices
from parser_net.evaluate import evaluate_records
from parser_net.losses import parsing_loss, weighted_ce
from parser_net.model import AttentionToScale, DeepLab, ParserConfig, scaled_rates
from parser_net.config import ParserTrainConfig
from parser_net.networks import load_parser
from parser_net.train import load_pool, train_parser
from pipeline.readers.layouts import iter_records
from checks import assert_scores_consistent
from writers import write_ccp

TINY = dict(num_classes=5, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2))


@pytest.mark.parametrize("arch", [DeepLab, AttentionToScale])
@pytest.mark.parametrize("stride", [8, 16])
def test_forward_backward_shapes_finite(arch, stride):
    torch.manual_seed(0)
    model = arch(ParserConfig(**TINY, output_stride=stride))
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out["parsing"].shape == (1, 5, 64, 64)
    loss = parsing_loss(out, torch.randint(0, 5, (1, 64, 64)))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    if arch is AttentionToScale:
        assert out["parsing_scales"].shape == (3, 1, 5, 64, 64)
        assert torch.allclose(out["scale_attention"].sum(1), torch.ones(1, 64 // stride, 64 // stride))


def test_scaled_rates_follow_the_paper():
    assert scaled_rates(321, 8) == (6, 12, 18, 24)
    assert scaled_rates(321, 16) == (3, 6, 9, 12)
    assert scaled_rates(160, 8) == (3, 6, 9, 12)
    assert scaled_rates(40, 16) == (1, 1, 1, 1)
    with pytest.raises(ValueError):
        scaled_rates(0, 8)
    with pytest.raises(ValueError):
        ParserConfig(num_classes=5, output_stride=4)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = DeepLab(ParserConfig(**TINY))
    x = torch.randn(2, 3, 32, 32)
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 8:24, 8:24] = 3
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = parsing_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_weighted_ce_weights_samples_and_ignores_255():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    alone = torch.nn.functional.cross_entropy(logits[:1], target[:1])
    assert torch.allclose(weighted_ce(logits, target, torch.tensor([1.0, 0.0])), alone)
    assert torch.allclose(weighted_ce(logits, target), torch.nn.functional.cross_entropy(logits, target))
    assert float(weighted_ce(logits, torch.full_like(target, 255))) == 0.0


def test_augment_flip_swaps_left_right_and_pads_with_ignore():
    pascal = LABEL_SETS["pascal10"]
    label = np.zeros((8, 8), np.uint8)
    label[:, :4] = 3                                    # left upper arm on the image's left half
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = 200
    item = ParsingItem(image, label, False, 1.0, "x")
    seen_flip = False
    for seed in range(20):
        img, lab, _, _ = augment(item, (12, 8), (1.0, 1.0), pascal.flip_lut(), np.random.default_rng(seed))
        assert img.shape == (12, 8, 3) and lab.shape == (12, 8)
        assert (lab == 255).sum() == 4 * 8              # 4 padded rows, ignore
        bright = img[..., 0] == 200
        if (lab == 4).any():                             # flipped: right arm now, on the right half
            seen_flip = True
            assert np.array_equal(bright, lab == 4) and not (lab == 3).any()
        else:
            assert np.array_equal(bright, lab == 3)
    assert seen_flip


def test_sample_indices_mixing():
    a = sample_indices(10, 90, 64, 1.0, 0, 5)
    assert (a < 10).all()
    b = sample_indices(10, 90, 64, 0.0, 0, 5)
    assert (b >= 10).all()
    assert np.array_equal(sample_indices(10, 90, 64, 0.5, 3, 7), sample_indices(10, 90, 64, 0.5, 3, 7))
    assert (sample_indices(10, 0, 8, 0.5, 0, 0) < 10).all()
    with pytest.raises(ValueError):
        sample_indices(0, 0, 8, None, 0, 0)


class Oracle(torch.nn.Module):
    """Predicts class 1 (hair) where the image is bright: a perfect parser for write_ccp folders."""

    def forward(self, x):
        bright = (x[:, :1] > 0).float()
        logits = torch.cat([1 - bright, bright, torch.zeros_like(x[:, :1]).expand(-1, 6, -1, -1)], 1)
        return {"parsing": 10 * logits}


def test_perfect_prediction_scores_one(tmp_path):
    write_ccp(tmp_path, n=3, size=(12, 8), bright_hair=True)
    records = list(iter_records(tmp_path))
    scores, n = evaluate_records(Oracle(), records, LABEL_SETS["ccp8"], long_side=12, flip=True)
    assert n == 3 and scores.mean_iou == pytest.approx(1.0) and scores.pixel_accuracy == pytest.approx(1.0)


def test_train_resume_and_cli_evaluate_on_unseen_ccp_folder(tmp_path):
    data = tmp_path / "ccp"
    write_ccp(data, n=4, size=(24, 16), bright_hair=True)
    pool = load_pool(str(data), (), "ccp8", 20)
    assert len(pool.real) == 3 and len(pool.val) == 1              # id 4 is val
    common = dict(data=str(data), iterations=4, checkpoint_every=2, width=4, blocks=(1, 1, 1, 1),
                  head_width=8, size=16, batch_size=2, threads=1)
    full = train_parser(ParserTrainConfig(out_dir=str(tmp_path / "a"), **common), pool)

    class Stop(Exception):
        pass

    def stop_at_3(_, step, total):
        if step == 3:
            raise Stop

    cfg_b = ParserTrainConfig(out_dir=str(tmp_path / "b"), **common)
    with pytest.raises(Stop):
        train_parser(cfg_b, pool, progress=stop_at_3)
    resumed = train_parser(cfg_b, pool)
    a, b = load_parser(full)[0].state_dict(), load_parser(resumed)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert_scores_consistent(metrics["val"], images=1)
    # the same run on changed data trains afresh; the old checkpoint is kept aside
    assert train_parser(ParserTrainConfig(out_dir=str(tmp_path / "a"), **common), pool) == full
    assert not list((tmp_path / "a").glob("last.stale-*.pt"))
    photo = next((data / "photos").iterdir())
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    signed = json.loads((tmp_path / "a" / "config.json").read_text())["data_signature"]
    again = train_parser(ParserTrainConfig(out_dir=str(tmp_path / "a"), **common), pool)
    (stale,) = (tmp_path / "a").glob("last.stale-*.pt")
    assert stale.name == f"last.stale-{signed}.pt" and again.stat().st_mtime_ns >= stale.stat().st_mtime_ns
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data_signature"] != signed

    unseen = tmp_path / "unseen"
    write_ccp(unseen, n=3, size=(30, 20), bright_hair=True)
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--checkpoint", str(full), "--data", str(unseen), "--out", str(out),
                "--scales", "0.75", "1", "--flip", "--grid", str(tmp_path / "grid.png"), "--no-photos"]) == 0
    grid_png = files.read_image(tmp_path / "grid.png")
    assert grid_png.shape[:2] == (20 + 3 * 132, 3 * 132)      # a title strip, 3 images: photo | the run | truth
    result = json.loads(out.read_text())[str(full)]
    assert_scores_consistent(result, images=3)
    assert set(result["iou"]) == set(LABEL_SETS["ccp8"].names)
    assert "mIoU" in out.with_suffix(".md").read_text()
    assert cli(["evaluate", "--checkpoint", str(full), "--data", str(tmp_path / "missing")]) == 1


def _person(path, hw, torso_px=None, label=1):
    """A one-person record of an hw-sized photo written to ``path``; its thorax sits
    ``torso_px`` above its pelvis (no keypoints when None)."""
    from pipeline.formats.records import PersonRecord
    from pipeline.skeleton import J

    files.write_image(path, np.full((*hw, 3), 128, np.uint8))
    kp = None
    if torso_px is not None:
        kp = np.zeros((16, 3), np.float32)
        kp[J["pelvis"]] = (hw[1] / 2, hw[0] * 0.9, 1)
        kp[J["thorax"]] = (hw[1] / 2, hw[0] * 0.9 - torso_px, 1)
    return PersonRecord(path, hw, path.stem, "ccp", np.full(hw, label, np.uint8), kp, label_set="ccp8")


def test_person_scale_resizes_close_ups_to_the_real_people_size(tmp_path):
    from parser_net.dataset import load_items, median_torso_fraction
    from pipeline.skeleton import J

    full = [_person(tmp_path / f"full{i}.png", (200, 100), torso_px=t) for i, t in enumerate((40, 50, 60))]
    scale = median_torso_fraction(full)
    assert scale == pytest.approx(0.25)
    close_up = _person(tmp_path / "close.png", (120, 90), torso_px=60)          # torso half the long side
    tiny = _person(tmp_path / "tiny.png", (200, 100), torso_px=5)               # 10x smaller: capped at 2x
    no_keypoints = _person(tmp_path / "nokp.png", (200, 100))
    items = load_items([close_up, tiny, no_keypoints], 100, person_scale=scale)
    assert [it.label_map.shape for it in items] == [(50, 38), (200, 100), (100, 50)]
    k = items[0].keypoints
    assert k[J["pelvis"], 1] - k[J["thorax"], 1] == pytest.approx(0.25 * 100, rel=0.03)   # as tall as the real people's
    assert [it.label_map.shape for it in load_items([close_up, tiny], 100)] == [(100, 75), (100, 50)]   # off: as before
