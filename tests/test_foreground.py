"""Foreground control (prior support clipping) and scoring synthesized labels against
ground truth (synthesize --relabel, data score)."""
import dataclasses

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.formats import files
from pipeline.errors import ConfigError
from pipeline.labels import LABEL_SETS
from pipeline.readers.layouts import iter_records, keypoint_only_people
from pipeline.priors.support import apply_person_masks, clip_to_support, prior_support
from pipeline.formats.synth_dataset import read_items
from pipeline.synth_score import score_synthesis
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.synthesize import Synthesizer, mirrored
from refine_net.train import fit_refiner
from checks import assert_scores_consistent
from conftest import TINY_REFINER


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
        {}, {"support_dilation": 0}, {"support_dilation": 4}, {"min_pixel_confidence": 0.5}, {"relabel": True},
        {"mirror_average": True})]
    assert len(set(prints)) == len(prints)
    assert Synthesizer(SynthConfig(**base, split="val")).fingerprint == prints[0]   # same people, same labels


def test_person_masks_clip_outside_and_fill_inside_from_the_nearest_part():
    label = np.zeros((10, 12), np.uint8)
    label[2:8, 2:6] = 3                           # person 0: class 3 on columns 2-5
    label[2:8, 6:8] = 5                           # and class 5 on columns 6-7
    label[0, 0] = 255                             # ignore stays ignore
    owner = np.where(label > 0, 0, -1).astype(np.int16)
    mask = np.zeros_like(label, bool)
    mask[2:8, 3:10] = True                        # the person mask: misses column 2, reaches column 9
    clipped = label.copy()
    apply_person_masks(clipped, owner.copy(), [mask], fill=False)
    assert (clipped[2:8, 2] == 0).all() and (clipped[2:8, 3:6] == 3).all() and clipped[0, 0] == 255
    filled, own = label.copy(), owner.copy()
    apply_person_masks(filled, own, [mask], fill=True)
    assert (filled[2:8, 2] == 0).all() and (filled[2:8, 8:10] == 5).all() and (own[2:8, 8:10] == 0).all()
    assert (filled[~mask & (label != 255)] == 0).all()
    untouched = label.copy()
    apply_person_masks(untouched, owner.copy(), [None])
    assert (untouched == label).all()
    with pytest.raises(ValueError, match="differs"):
        apply_person_masks(label.copy(), owner.copy(), [mask[:5]])


def test_synthesis_clips_to_the_person_masks_of_a_keypoints_folder(checkpoint, demo_dir, tmp_path):
    """Person masks from a keypoints folder of the same photos (here: a box around each
    demo person's keypoints, written as partsynth keypoints would) keep every label inside."""
    from pipeline.formats.estimated_poses import PersonMasks

    people = keypoint_only_people(demo_dir)[:6]
    kp_dir = tmp_path / "kp"
    (kp_dir / "masks").mkdir(parents=True)
    entries = []
    for i, r in enumerate(people):
        mask = np.zeros(r.image_size, np.uint8)
        pts = r.keypoints[np.isfinite(r.keypoints[:, 0]), :2]
        (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
        mask[y0:y1, x0:x1] = 255
        files.write_label_png(kp_dir / "masks" / f"{i}.png", mask)
        entries.append({"person_id": r.person_id, "image": str(r.image_path), "label": None, "split": None,
                        "keypoints": [[float(x), float(y), float(v)] for x, y, v in r.keypoints],
                        "meta": {"person_mask": f"masks/{i}.png"}})
    files.write_json(kp_dir / "people.json", entries)
    files.write_json(kp_dir / "dataset.json", {"format": "partsynth", "label_set": None, "keypoints_only": True})
    masks = PersonMasks(kp_dir)
    assert masks.find(people[0].image_path, people[0].keypoints) == str(kp_dir / "masks" / "0.png")
    assert masks.find(people[0].image_path, people[0].keypoints + [40, 0, 0]) is None       # another person
    cfg = SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path / "s"),
                      person_masks=str(kp_dir), person_mask_mode="clip")
    recs = [dataclasses.replace(r, meta={"person_mask": masks.find(r.image_path, r.keypoints)}) for r in people]
    Synthesizer(cfg).run(recs, cfg.out)
    for item in read_items(cfg.out):
        lab = files.read_label_png(tmp_path / "s" / item.label)
        i = next(i for i, r in enumerate(people) if str(r.image_path) == item.image)
        inside = files.read_label_png(kp_dir / "masks" / f"{i}.png") >= 128
        assert lab[~inside].max() == 0 and lab[inside].max() > 0


def test_mirrored_reverses_columns_and_swaps_left_and_right_channels():
    x = torch.zeros(1, 3 + 11, 4, 6)
    x[0, 3 + 3, :, 0] = 1.0                      # pascal10 class 3 (left) on the first column
    channels = torch.cat([torch.arange(3), 3 + torch.from_numpy(LABEL_SETS["pascal10"].flip_lut()[:11].astype("int64"))])
    m = mirrored(x, channels)
    assert m[0, 3 + 4, :, 5].eq(1).all() and m.sum() == x.sum()   # class 4 (right) on the last column
    assert torch.equal(mirrored(m, channels), x)


@pytest.mark.parametrize("use_prior", [True, False])
def test_mirror_averaged_refiner_is_mirror_equivariant(demo_dir, checkpoint, tmp_path, use_prior):
    """With mirror averaging, the probabilities of a mirrored crop are the mirror of the
    crop's probabilities, left and right classes swapped; one view alone is not.  The
    image-only refiner (--no-prior) too."""
    if not use_prior:
        checkpoint = fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "noprior"), epochs=2,
                                             use_prior=False, **TINY_REFINER))
    people = keypoint_only_people(demo_dir)
    image = next(iter({p.image_path for p in people}))
    for average in (False, True):
        synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path),
                                        mirror_average=average))
        x = torch.stack(synth._prepare(Path(image), [p for p in people if p.image_path == image]).inputs)
        assert x.shape[1] == 3 + 11 * use_prior
        probs = torch.from_numpy(np.stack(synth._refine(list(x))))
        of_mirror = torch.from_numpy(np.stack(synth._refine(list(mirrored(x, synth.mirror_channels)))))
        gap = (mirrored(of_mirror, synth.mirror_classes) - probs).abs().max().item()
        assert (gap < 1e-5) == average, gap
