"""Soft targets: pasted refiner probabilities, their augmentation, the
soft cross-entropy and a parser trained on them."""
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.ndimage import maximum_filter, minimum_filter

from parser_net.config import ParserTrainConfig
from parser_net.dataset import ParsingItem, augment, draw_batch
from parser_net.losses import weighted_ce, weighted_soft_ce
from parser_net.train import load_pool, train_parser
from pipeline.errors import DataError
from pipeline.formats.files import read_label_png
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.priors.paste import NO_OWNER, paste_people
from pipeline.priors.pose import CropBox
from pipeline.soft_labels import SoftLabels, soft_label_map
from pipeline.formats.synth_dataset import SynthItem, SynthPerson, read_items

BOXES = [CropBox(14.0, 15.0, 20.0), CropBox(24.0, 18.0, 16.0)]


def _crop_probs(rng, n=2, c=4, s=16):
    return [rng.dirichlet(np.full(c, 0.3), size=(s, s)).transpose(2, 0, 1).astype(np.float32) for _ in range(n)]


def test_pasted_probabilities_agree_with_the_pasted_label_map():
    rng = np.random.default_rng(0)
    pasted = paste_people((30, 40), _crop_probs(rng), BOXES, with_probabilities=True)
    dist = pasted.probabilities
    assert dist.shape == (4, 30, 40) and np.allclose(dist.sum(0), 1, atol=1e-5)
    covered = pasted.owner != NO_OWNER
    assert covered.any() and (~covered).any()
    assert np.array_equal(dist.argmax(0)[covered], pasted.label_map[covered])
    assert np.allclose(np.take_along_axis(dist, pasted.label_map[None].astype(int), 0)[0][covered],
                       pasted.confidence[covered])
    assert np.all(dist[0][~covered] == 1)                          # nobody there: background
    assert paste_people((30, 40), _crop_probs(rng), BOXES).probabilities is None


def _item(label_map):
    persons = [SynthPerson("a", "ok", box=tuple(BOXES[0])), SynthPerson("bad", "skipped"),
               SynthPerson("b", "skipped", box=tuple(BOXES[1]))]   # refined, then skipped: still has probabilities
    return SynthItem("/photos/p.jpg", label_map.shape, persons)


def test_soft_label_map_defers_to_the_stored_label_map():
    rng = np.random.default_rng(1)
    probs = _crop_probs(rng)
    pasted = paste_people((30, 40), probs, BOXES, with_probabilities=True)
    label = pasted.label_map.copy()
    fg = np.argwhere(label > 0)
    label[tuple(fg[0])] = 0                                          # clipped by a person mask
    label[tuple(fg[1])] = IGNORE                                     # below the confidence floor
    stored = np.stack([np.round(p * 255).astype(np.uint8) for p in probs])
    soft = soft_label_map(_item(label), stored, label)
    assert soft.shape == (30, 40, 4) and soft.dtype == np.uint8
    valid = label != IGNORE
    assert np.array_equal(soft.argmax(-1)[valid], label[valid])
    assert soft[tuple(fg[0])].tolist() == [255, 0, 0, 0]
    assert not soft[tuple(fg[1])].any()
    untouched = valid & (pasted.owner != NO_OWNER)
    untouched[tuple(fg[0])] = False
    err = np.abs(soft[untouched].astype(float) / 255 - np.moveaxis(pasted.probabilities, 0, -1)[untouched]).max(-1)
    assert np.mean(err < 0.01) > 0.97          # the rest: ties after rounding to uint8, made one-hot


def test_soft_label_map_names_the_image_when_counts_or_sizes_disagree():
    label = np.zeros((30, 40), np.uint8)
    stored = np.zeros((1, 4, 16, 16), np.uint8)
    with pytest.raises(DataError, match=r"p\.jpg.*1 people's probabilities for 2 refined people"):
        soft_label_map(_item(label), stored, label)
    with pytest.raises(DataError, match="differs from the image size"):
        soft_label_map(_item(label), np.zeros((2, 4, 16, 16), np.uint8), np.zeros((10, 10), np.uint8))


def test_augment_moves_soft_labels_with_crops_and_left_right_flips():
    pascal = LABEL_SETS["pascal10"]
    rng = np.random.default_rng(2)
    label = np.kron(rng.integers(0, pascal.num_classes, (8, 6)), np.ones((5, 5))).astype(np.uint8)
    label[:, :4] = IGNORE
    soft = (np.eye(pascal.num_classes + 1, pascal.num_classes)[np.minimum(label, pascal.num_classes)] * 255)
    item = ParsingItem(rng.integers(0, 255, (40, 30, 3)).astype(np.uint8), label, True, 1.0, "x",
                       soft=soft.astype(np.uint8))
    plain = ParsingItem(item.image, label, True, 1.0, "x")
    flips = 0
    for seed in range(8):
        a = augment(item, (36, 28), (0.7, 1.3), pascal.flip_lut(), np.random.default_rng(seed))
        b = augment(plain, (36, 28), (0.7, 1.3), pascal.flip_lut(), np.random.default_rng(seed))
        assert np.array_equal(a.label_map, b.label_map) and b.soft is None     # same draws with or without
        # away from class edges, where the soft labels are interpolated and the label map is not
        inner = (minimum_filter(a.label_map, 3) == maximum_filter(a.label_map, 3)) & (a.label_map != IGNORE)
        inner[[0, -1]] = inner[:, [0, -1]] = False       # a class edge may lie just beyond the crop
        assert inner.sum() > 100 and np.array_equal(a.soft.argmax(-1)[inner], a.label_map[inner])
        flips += not np.array_equal(a.image, augment(plain, (36, 28), (0.7, 1.3), None,
                                                     np.random.default_rng(seed)).image)
    assert 0 < flips < 8


def test_soft_cross_entropy_is_cross_entropy_on_one_hot_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 5))
    target[0, 0] = IGNORE
    one_hot = torch.nn.functional.one_hot(target.clamp_max(3), 4).permute(0, 3, 1, 2).float()
    w = torch.tensor([1.0, 0.3])
    ce = weighted_ce(logits, target, w)
    assert torch.allclose(weighted_soft_ce(logits, target, w, soft=one_hot), ce)
    assert torch.allclose(weighted_soft_ce(logits, target, w, soft=one_hot, temperature=3.0), ce)
    soft = one_hot * 0.6 + (1 - one_hot) * 0.4 / 3
    loss = weighted_soft_ce(logits, target, w, soft=soft)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and not torch.allclose(loss, ce)
    assert torch.allclose(weighted_soft_ce(logits, target, w, soft=soft, temperature=0.01), ce, atol=1e-4)


def test_soft_targets_refuse_the_joint_network_and_structure_loss():
    with pytest.raises(ValidationError, match="soft_targets"):
        ParserTrainConfig(data="d", out_dir="o", soft_targets=True, model="joint")
    with pytest.raises(ValidationError, match="soft_targets"):
        ParserTrainConfig(data="d", out_dir="o", soft_targets=True, structure_loss=True)
    with pytest.raises(ValidationError):
        ParserTrainConfig(data="d", out_dir="o", soft_temperature=0)


@pytest.fixture(scope="module")
def soft_synth(checkpoint, demo_dir, tmp_path_factory):
    """The demo's keypoint-only people synthesized with saved probabilities and a
    confidence floor (so that some pixels are 255)."""
    from pipeline.readers.layouts import keypoint_only_people
    from refine_net.config import SynthConfig
    from refine_net.synthesize import Synthesizer

    out = tmp_path_factory.mktemp("soft") / "synth"
    s = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(out),
                                save_probabilities=True, min_pixel_confidence=0.5))
    s.run(keypoint_only_people(demo_dir), out)
    s.finalize(out)
    return out


def test_soft_labels_of_a_synthesized_folder_match_its_label_maps(soft_synth):
    soft_labels = SoftLabels([soft_synth])
    items = [it for it in read_items(soft_synth) if it.label]
    assert items
    for it in items:
        label = read_label_png(soft_synth / it.label)
        soft = soft_labels(it.image, label)
        valid = label != IGNORE
        assert np.array_equal(soft.argmax(-1)[valid], label[valid])
        assert np.abs(soft[valid].astype(int).sum(-1) - 255).max() <= soft.shape[-1]
    assert soft_labels("/elsewhere/photo.jpg", label) is None


def test_soft_labels_refuse_a_folder_without_probabilities(synth):
    with pytest.raises(DataError, match="synth.*--save-probabilities"):
        SoftLabels([synth])


def test_a_parser_trains_on_soft_targets(soft_synth, demo_dir, tmp_path):
    pool = load_pool(str(demo_dir), (str(soft_synth),), "pascal6", 40, soft_targets=True)
    assert pool.synthetic and all(it.soft is not None for it in pool.synthetic)
    assert all(it.soft is None for it in pool.real)
    batch = draw_batch(pool.real + pool.synthetic, np.array([0, len(pool.real)]), (32, 24), (0.8, 1.0),
                       pool.label_set, 0, 0, with_soft=True)
    assert batch.soft.shape == (2, pool.label_set.num_classes, 32, 24)
    sums = batch.soft.sum(1)[batch.target != IGNORE]     # below 1 only beside ignored pixels (interpolated)
    assert (sums > 0).all() and (sums < 1.05).all() and float(sums.median()) == pytest.approx(1, abs=0.01)
    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "p"), synthetic=(str(soft_synth),),
                            soft_targets=True, soft_temperature=2.0, label_set="pascal6", iterations=3,
                            finetune_iterations=1, width=4, blocks=(1, 1, 1, 1), head_width=8, size=32,
                            batch_size=2, threads=1, checkpoint_every=3)
    train_parser(cfg, pool)
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert metrics["config"]["train"]["soft_targets"] and np.isfinite(metrics["history"][-1]["loss"])
    assert 0 <= metrics["val"]["mean_iou"] <= 1


def test_soft_labels_name_a_missing_or_corrupt_probabilities_file(soft_synth, tmp_path):
    import shutil

    copy = tmp_path / "synth"
    shutil.copytree(soft_synth, copy)
    item = next(it for it in read_items(copy) if it.label)
    label = read_label_png(copy / item.label)
    (copy / item.probs).write_bytes(b"not an npz")
    with pytest.raises(DataError, match=rf"{item.probs}.*unreadable probabilities"):
        SoftLabels([copy])(item.image, label)
    (copy / item.probs).unlink()
    with pytest.raises(DataError, match="unreadable probabilities"):
        SoftLabels([copy])(item.image, label)
