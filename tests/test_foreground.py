"""Foreground control (prior support clipping) and scoring synthesized labels against
ground truth (synthesize --relabel, data score)."""
import numpy as np
import pytest

from pipeline import files
from pipeline.errors import ConfigError
from pipeline.layouts import iter_records, keypoint_only_people
from pipeline.priors.support import clip_to_support, prior_support
from pipeline.synth_dataset import read_items
from pipeline.synth_score import score_synthesis
from refine_net.config import SynthConfig
from refine_net.synthesize import Synthesizer
from checks import assert_scores_consistent


def square_prior(size=21, lo=8, hi=13, classes=3):
    prior = np.zeros((classes, size, size), np.float32)
    prior[0] = 1.0
    prior[0, lo:hi, lo:hi] = 0.25
    prior[2, lo:hi, lo:hi] = 0.75
    return prior


def test_support_is_the_covered_pixels_grown_by_a_disc():
    prior = square_prior()
    exact = prior_support(prior, 0)
    assert exact.sum() == 25 and exact[8:13, 8:13].all()
    grown = prior_support(prior, 2)
    assert grown[8:13, 6:15].all() and grown[6:15, 8:13].all()      # 2 px on every side
    assert not grown[5, 10] and not grown[10, 15] and not grown[6, 6]  # not 3 px, not the square's corner
    with pytest.raises(ValueError, match="dilation"):
        prior_support(prior, -1)


def test_clipping_makes_the_outside_certain_background():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(21, 21)).transpose(2, 0, 1).astype(np.float32)
    support = prior_support(square_prior(), 1)
    clipped = clip_to_support(probs, support)
    assert np.allclose(clipped.sum(0), 1.0)
    assert (clipped[0, ~support] == 1).all() and (clipped[1:, ~support] == 0).all()
    assert np.array_equal(clipped[:, support], probs[:, support])
    assert not np.array_equal(probs[0, ~support], 1)                 # the input is left alone


def test_relabel_scores_synthesis_against_ground_truth(demo_dir, checkpoint, tmp_path):
    assert keypoint_only_people(demo_dir, split="val") == []             # labelled people are left alone ...
    people = keypoint_only_people(demo_dir, relabel=True, split="val")   # ... unless relabelled
    truth = {str(r.image_path): r.label_map for r in iter_records(demo_dir) if r.split == "val"}
    assert len(people) == len(truth) == 3 and all(r.label_map is None for r in people)
    cfg = SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path / "out"), relabel=True,
                      split="val")
    synth = Synthesizer(cfg)
    synth.run(people, tmp_path / "out")
    synth.finalize(tmp_path / "out")
    scores = score_synthesis(tmp_path / "out", demo_dir, "val")
    assert_scores_consistent(scores, 3)
    assert scores["mean_iou"] < 1 and 0 < scores["silhouette_iou"] < 1 and scores["images_unlabelled"] == 0
    items = read_items(tmp_path / "out")
    for item in items:              # the ground truth written as the synthesized labels scores 1
        files.write_label_png(tmp_path / "out" / item.label, truth[item.image])
    perfect = score_synthesis(tmp_path / "out", demo_dir, "val")
    assert perfect["mean_iou"] == perfect["silhouette_iou"] == 1.0
    gt = truth[items[0].image]
    files.write_label_png(tmp_path / "out" / items[0].label, np.where(gt > 0, 255, gt).astype(np.uint8))
    ignored = score_synthesis(tmp_path / "out", demo_dir, "val")     # the person ignored: background in the score,
    assert ignored["kept_mean_iou"] == 1.0 > ignored["mean_iou"]       # left out of the kept pixels' score
    assert ignored["ignored_fraction"] == pytest.approx((gt > 0).sum() / sum(t.size for t in truth.values()))
    (tmp_path / "out" / items[0].label).unlink()
    for f in (tmp_path / "out" / "items").glob("*.json"):   # an image nobody was labelled in counts as background
        if f.read_text().find(items[0].label) >= 0:
            f.write_text(f.read_text().replace(f'"{items[0].label}"', "null"))
    assert score_synthesis(tmp_path / "out", demo_dir, "val")["images_unlabelled"] == 1
    with pytest.raises(ConfigError, match="no synthesized image has ground truth"):
        score_synthesis(tmp_path / "out", demo_dir, "train")


def test_support_clipping_only_removes_foreground(demo_dir, checkpoint, tmp_path):
    people = keypoint_only_people(demo_dir)
    fg = {}
    for dilation in (None, 0):
        out = tmp_path / str(dilation)
        synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(out),
                                        support_dilation=dilation))
        synth.run(people, out)
        fg[dilation] = {i.image: files.read_label_png(out / i.label) for i in read_items(out) if i.label}
    free, clipped = fg[None], fg[0]
    assert set(clipped) <= set(free)
    removed = 0
    for image, label in clipped.items():
        changed = label != free[image]
        assert (label[changed] == 0).all()      # clipping turns pixels into background, never into a part
        removed += int(changed.sum())
    assert removed > 0


def test_uncertain_pixels_become_ignore_and_score_as_background(demo_dir, checkpoint, tmp_path):
    people = keypoint_only_people(demo_dir, relabel=True, split="val")
    labels, persons, scores = {}, {}, {}
    for t in (0.0, 0.9):
        out = tmp_path / str(t)
        synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(out), relabel=True,
                                        split="val", min_pixel_confidence=t))
        synth.run(people, out)
        synth.finalize(out)
        items = read_items(out)
        labels[t] = {i.image: files.read_label_png(out / i.label) for i in items}
        persons[t] = [p for i in items for p in i.persons]
        scores[t] = score_synthesis(out, demo_dir, "val")
        assert scores[t]["ignored_fraction"] == pytest.approx(
            sum(int((lm == 255).sum()) for lm in labels[t].values()) / sum(lm.size for lm in labels[t].values()))
    assert all((lm != 255).all() for lm in labels[0.0].values())
    assert scores[0.0]["kept_mean_iou"] == scores[0.0]["mean_iou"]         # nothing ignored: the same pixels
    ignored = 0
    for image, lm in labels[0.9].items():
        free = labels[0.0][image]
        assert np.array_equal(lm[lm != 255], free[lm != 255])        # only ignore is added
        ignored += int((lm == 255).sum())
    assert ignored > 0
    assert all("255" not in p.rle and 255 not in p.rle for p in persons[0.9])
    assert sum(p.pixels for p in persons[0.9]) + ignored >= sum(p.pixels for p in persons[0.0])


def test_each_labelling_option_changes_the_fingerprint(demo_dir, checkpoint, tmp_path):
    base = dict(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path / "o"))
    prints = [Synthesizer(SynthConfig(**base, **extra)).fingerprint for extra in (
        {}, {"support_dilation": 0}, {"support_dilation": 4}, {"min_pixel_confidence": 0.5}, {"relabel": True})]
    assert len(set(prints)) == len(prints)
    assert Synthesizer(SynthConfig(**base, split="val")).fingerprint == prints[0]   # same people, same labels
