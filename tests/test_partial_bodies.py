"""Partial bodies: people without pelvis or thorax matched on their joints, completed from
their neighbours, labelled with their unseen region as ignore (pipeline.priors.partial)."""
import dataclasses

import numpy as np
import pytest

from pipeline.formats import files

from pipeline.demo import random_pose
from pipeline.labels import IGNORE
from pipeline.readers.layouts import keypoint_only_people
from pipeline.priors.partial import (complete_pose, hidden_in_image, hidden_region, is_partial, lstsq_similarity,
                                     partial_neighbours)
from pipeline.priors.pose import CropBox, apply_affine, keypoint_problem
from pipeline.priors.pose_index import PoseIndex
from pipeline.skeleton import J, JOINT_NAMES
from pipeline.formats.synth_dataset import read_items
from refine_net.config import SynthConfig
from refine_net.synthesize import Synthesizer

LOWER = [J[n] for n in ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis")]


def drop(kp, joints):
    kp = np.array(kp, np.float32, copy=True)
    kp[joints] = (np.nan, np.nan, 0)
    return kp


def similarity(scale, angle, shift):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_similarity_fit_recovers_a_known_similarity_and_refuses_one_point():
    t = similarity(1.7, 0.4, (12.0, -3.0))
    src = np.random.default_rng(0).normal(size=(6, 2)) * 20
    dst = src @ t[:, :2].T + t[:, 2]
    np.testing.assert_allclose(lstsq_similarity(src, dst), t, atol=1e-9)
    assert lstsq_similarity(np.ones((4, 2)), dst[:4]) is None       # coincident source points


def test_an_upper_body_finds_its_own_whole_body_under_any_scale_and_shift():
    rng = np.random.default_rng(1)
    bank = np.stack([random_pose(rng, 200) for _ in range(40)])
    index = PoseIndex(bank)
    query = apply_affine(drop(bank[17], LOWER), similarity(0.6, 0.0, (300.0, 40.0)))
    assert is_partial(query) and not is_partial(bank[17])
    nb = partial_neighbours(index, query, 3)
    assert nb.ids[0, 0] == 17 and nb.distances[0, 0] < 1e-4 and nb.reasons == [""]
    assert (np.diff(nb.distances[0]) >= 0).all() and (nb.ids[0] >= 0).all()


def test_too_few_joints_or_joints_at_one_point_find_no_neighbour():
    rng = np.random.default_rng(2)
    index = PoseIndex(np.stack([random_pose(rng, 200) for _ in range(10)]))
    few = drop(random_pose(rng, 200), LOWER + [J["right_wrist"], J["left_wrist"], J["right_elbow"], J["left_elbow"]])
    nb = partial_neighbours(index, few, 3)
    assert (nb.ids == -1).all() and nb.reasons[0].startswith("only 5 comparable joints")
    same = drop(random_pose(rng, 200), LOWER)
    same[~np.isnan(same[:, 0]), :2] = 50.0
    assert partial_neighbours(index, same, 3).reasons == ["present joints all at one point"]


def test_completion_puts_the_missing_joints_where_the_neighbour_has_them():
    rng = np.random.default_rng(3)
    whole = random_pose(rng, 200)
    t = similarity(1.3, -0.2, (40.0, 10.0))
    target = apply_affine(whole, t)
    done, estimated = complete_pose(drop(target, LOWER), whole[None])
    assert [JOINT_NAMES[j] for j in np.flatnonzero(estimated)] == [JOINT_NAMES[j] for j in sorted(LOWER)]
    np.testing.assert_allclose(done[:, :2], target[:, :2], atol=1e-3)
    assert (done[estimated, 2] == 1).all()                              # estimated joints are "occluded"
    kept = ~estimated
    np.testing.assert_array_equal(done[kept], drop(target, LOWER)[kept])  # present joints untouched


def test_hidden_region_is_where_the_estimated_joints_are_nearest():
    kp = np.full((16, 3), np.nan, np.float32)
    kp[:, 2] = 0
    kp[J["thorax"]] = (10, 5, 2)
    kp[J["pelvis"]] = (10, 25, 1)
    est = np.zeros(16, bool)
    est[J["pelvis"]] = True
    hidden = hidden_region(kp, est, 32)
    assert hidden[25, 10] and hidden[16, 3] and not hidden[14, 10] and not hidden[0, 31]
    assert not hidden_region(kp, np.zeros(16, bool), 32).any()
    box = CropBox(cx=50.0, cy=50.0, side=64.0)                           # crop = image box 18..82, half scale
    image = hidden_in_image(hidden, box.crop_from_image(32), (100, 100))
    assert image[50 + 2 * (25 - 16), 50] and not image[50 - 30, 50] and not image[5, 5]


def test_keypoint_problem_lets_partial_bodies_through_only_when_asked():
    kp = drop(random_pose(np.random.default_rng(4), 200), LOWER)
    assert keypoint_problem(kp, (200, 200)) == "no pelvis (hips missing)"
    assert keypoint_problem(kp, (200, 200), allow_partial=True) == ""
    far = kp.copy()
    far[J["left_wrist"], :2] = (1e9, 5)
    assert "left_wrist" in keypoint_problem(far, (200, 200), allow_partial=True)   # other checks still apply


def test_upper_bodies_are_skipped_without_partial_bodies_and_labelled_with(demo_dir, checkpoint, tmp_path):
    people = [dataclasses.replace(r, keypoints=drop(r.keypoints, LOWER)) for r in keypoint_only_people(demo_dir)]
    base = dict(checkpoint=str(checkpoint), data=str(demo_dir))
    Synthesizer(SynthConfig(**base, out=str(tmp_path / "off"), partial_bodies=False)).run(people, tmp_path / "off")
    persons = [p for item in read_items(tmp_path / "off") for p in item.persons]
    assert len(persons) == len(people) and {p.reason for p in persons} == {"no pelvis (hips missing)"}
    on = Synthesizer(SynthConfig(**base, out=str(tmp_path / "on")))
    assert on.cfg.partial_bodies and on.fingerprint != Synthesizer(SynthConfig(**base, out="x", partial_bodies=False)).fingerprint
    on.run(people, tmp_path / "on")
    persons = [p for item in read_items(tmp_path / "on") for p in item.persons]
    ok = [p for p in persons if p.status == "ok"]
    assert len(ok) >= len(people) - 2          # the tiny refiner may leave a mirrored pose without foreground
    assert {p.reason for p in persons if p.status != "ok"} <= {"empty label (0 foreground pixels)"}
    assert all(set(p.estimated_joints) == {JOINT_NAMES[j] for j in LOWER} for p in ok)


def test_where_the_unseen_legs_are_is_ignore_and_the_seen_body_is_labelled(demo_dir, checkpoint, tmp_path):
    """Labelled people with their legs removed, each its own nearest neighbour (bank = the
    train split, k = 1): the completed legs are their own, so the leg joints lie in the
    hidden region."""
    whole = {r.person_id: r for r in keypoint_only_people(demo_dir, relabel=True, split="train")}
    people = [dataclasses.replace(r, keypoints=drop(r.keypoints, LOWER)) for r in whole.values()]
    Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path), k=1)).run(people, tmp_path)
    seen, unseen = [], []
    for item in read_items(tmp_path):
        label = files.read_label_png(tmp_path / item.label)
        h, w = label.shape
        for p in item.persons:
            assert p.status == "ok" and p.distances[0] < 1e-3                 # matched to itself
            x, y = np.round(whole[p.person_id].keypoints[:, :2]).astype(int).T
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            seen += [label[y[j], x[j]] for j in (J["thorax"], J["upper_neck"]) if inside[j]]
            unseen += [label[y[j], x[j]] for j in LOWER if inside[j]]
    assert len(seen) >= 8 and all(v != IGNORE for v in seen)
    assert len(unseen) >= 20 and all(v == IGNORE for v in unseen)


def test_the_inspect_page_shows_a_partial_body_the_prior_it_was_labelled_with(demo_dir, checkpoint, tmp_path):
    from pipeline.labels import LABEL_SETS
    from pipeline.pictures.inspect_page import bank_prior_fn
    from pipeline.pictures.prior_grid import prior_colour

    rec = keypoint_only_people(demo_dir)[0]
    rec = dataclasses.replace(rec, keypoints=drop(rec.keypoints, LOWER))
    synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path)))
    pending = synth._prepare(rec.image_path, [rec])
    person = pending.item.persons[0]
    assert person.status == "ok" and person.estimated_joints
    palette = LABEL_SETS[synth.label_set].palette
    shown = bank_prior_fn(synth.bank, palette)(person)
    np.testing.assert_array_equal(shown, prior_colour(pending.priors[0], palette))
