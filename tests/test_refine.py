import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.formats import files
from pipeline.readers.layouts import iter_records
from pipeline.formats.folder import keypoints_to_json
from pipeline.formats.records import ReadReport
from refine_net.losses import ce_loss, l1_mask_loss
from refine_net.model import RefineConfig, UNet
from pipeline.readers.layouts import keypoint_only_people
from pipeline.formats.synth_dataset import read_items
from refine_net.checkpoint import load_checkpoint
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.synthesize import Synthesizer
from refine_net.evaluate import evaluate_checkpoint
from refine_net.train import epoch_lr, fit_refiner, training_summary

from conftest import TINY_REFINER as TINY


def test_unet_forward_backward_finite():
    model = UNet(RefineConfig(num_classes=8, depth=6, base_filters=8))
    x = torch.randn(1, 3 + 8, 64, 64, requires_grad=True)
    out = model(x)["parsing"]
    assert out.shape == (1, 8, 64, 64) and torch.isfinite(out).all()
    l1_mask_loss(out, torch.randint(0, 8, (1, 64, 64))).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 11, 48, 48))
    assert UNet(RefineConfig(num_classes=8, use_prior=False, depth=4))(torch.randn(1, 3, 32, 32))["parsing"].shape[1] == 8


def test_losses_hand_computed_and_ignore():
    target = torch.tensor([[[0, 1], [255, 1]]])
    perfect = torch.where(torch.nn.functional.one_hot(target.clamp(max=1), 2).permute(0, 3, 1, 2).bool(),
                          torch.tensor(50.0), torch.tensor(-50.0))
    assert l1_mask_loss(perfect, target) < 1e-6 and ce_loss(perfect, target) < 1e-6
    uniform = torch.zeros(1, 2, 2, 2)  # p = 0.5 everywhere: |0.5 - 1| and |0.5 - 0| per class
    assert l1_mask_loss(uniform, target).item() == pytest.approx(0.5)
    assert ce_loss(uniform, torch.full((1, 2, 2), 255)).item() == 0


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = UNet(RefineConfig(num_classes=4, depth=4, base_filters=8, dropout_blocks=0))
    x, y = torch.randn(2, 7, 32, 32), torch.randint(0, 4, (2, 32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(40):
        loss = l1_mask_loss(model(x)["parsing"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def _weights(path):
    return load_checkpoint(path, kind="refiner").model


def test_same_seed_same_weights_and_resume(demo_dir, tmp_path):
    cfg = dict(data=str(demo_dir), epochs=2, **{**TINY, "dropout_blocks": 1})
    a = fit_refiner(RefinerTrainConfig(out_dir=str(tmp_path / "a"), **cfg))
    b = fit_refiner(RefinerTrainConfig(out_dir=str(tmp_path / "b"), **cfg))
    c = fit_refiner(RefinerTrainConfig(out_dir=str(tmp_path / "c"), seed=1, **cfg))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    # a 1-epoch run, extended to 2 epochs by resuming with a larger count == 2 epochs straight
    fit_refiner(RefinerTrainConfig(out_dir=str(tmp_path / "r"), **{**cfg, "epochs": 1}))
    assert load_checkpoint(tmp_path / "r" / "last.pt").step == 1
    r = fit_refiner(RefinerTrainConfig(out_dir=str(tmp_path / "r"), **cfg))
    wr = _weights(r)
    assert all(torch.equal(wa[k], wr[k]) for k in wa)
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and "val_miou" in history[0]


def test_training_summary_compares_the_refiner_with_its_prior(demo_dir, tmp_path):
    run = fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "s"), epochs=1, **TINY)).parent
    summary = training_summary(run)
    prior = evaluate_checkpoint(str(run / "last.pt"))[0]["prior argmax"].mean_iou
    assert summary["epochs"] == 1 and summary["prior_val_miou"] == pytest.approx(prior)
    history = [{"epoch": e, "val_miou": v} for e, v in enumerate([0.5, 0.7, 0.71, 0.72])]
    files.write_json(run / "history.json", history)            # last beats the first 3 by 0.01
    assert training_summary(run)["still_improving"] and training_summary(run)["val_miou"] == 0.72
    files.write_json(run / "history.json", history[:3] + [{"epoch": 3, "val_miou": 0.713}])
    assert not training_summary(run)["still_improving"]


def test_poly_schedule_decays_the_rate_per_epoch(demo_dir, tmp_path):
    cfg = RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "p"), epochs=2,
                             **{**TINY, "lr_schedule": "poly"})
    assert [epoch_lr(cfg, e) for e in (0, 1)] == [cfg.lr, pytest.approx(cfg.lr * 0.5 ** 0.9)]
    assert epoch_lr(cfg.model_copy(update={"lr_schedule": "constant"}), 1) == cfg.lr
    ckpt = load_checkpoint(fit_refiner(cfg))
    assert [g["lr"] for g in ckpt.optimizer["param_groups"]] == [pytest.approx(cfg.lr * 0.5 ** 0.9)]


def two_person_folder(demo_dir, root: Path) -> Path:
    """One image with two training figures side by side, their keypoints, no labels."""
    recs = [r for r in iter_records(demo_dir) if r.split == "train"][:2]
    left, right = (files.read_image(r.image_path) for r in recs)
    files.write_image(root / "images" / "two.png", np.concatenate([left, right], axis=1))
    kp_b = recs[1].keypoints.copy()
    kp_b[:, 0] += left.shape[1]
    people = [{"person_id": pid, "image": "images/two.png", "label": None, "split": "unlabelled",
               "keypoints": keypoints_to_json(kp)} for pid, kp in (("a", recs[0].keypoints), ("b", kp_b))]
    files.write_json(root / "people.json", people)
    files.write_json(root / "dataset.json", {"format": "partsynth", "label_set": "pascal10"})
    return root


def test_two_person_image_gives_both_people_labels(demo_dir, checkpoint, tmp_path):
    data = two_person_folder(demo_dir, tmp_path / "in")
    synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(data), out=str(tmp_path / 'out')))
    counts = synth.run(keypoint_only_people(data), tmp_path / "out")
    assert counts == {"images_done": 1, "images_reused": 0, "images_failed": 0}
    synth.finalize(tmp_path / "out")
    (item,) = read_items(tmp_path / "out")
    persons = {p.person_id: p for p in item.persons}
    assert persons["a"].status == persons["b"].status == "ok"
    assert persons["a"].pixels > 0 and persons["b"].pixels > 0
    label = files.read_label_png(tmp_path / "out" / item.label)
    half = label.shape[1] // 2
    assert (label[:, :half] > 0).any() and (label[:, half:] > 0).any()
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert {a["person_id"] for a in coco["annotations"]} == {"a", "b"}
    from pycocotools import mask as mask_utils

    for a in coco["annotations"]:  # RLEs decode to that person's pixels of that class
        m = mask_utils.decode({"size": a["segmentation"]["size"],
                               "counts": a["segmentation"]["counts"].encode()}).astype(bool)
        assert (label[m] == a["category_id"]).all()
        own, other = (m[:, :half].sum(), m[:, half:].sum())[:: 1 if a["person_id"] == "a" else -1]
        assert own > other, a["person_id"]        # each person's pixels lie on its own side
    written = list(iter_records(tmp_path / "out"))
    assert len(written) == 2 and all(r.label_map is not None for r in written)


def bad_input_folder(demo_dir, root: Path) -> Path:
    shutil.copytree(demo_dir, root)
    people = json.loads((root / "people.json").read_text())
    kp_only = [p for p in people if p["label"] is None]
    img = root / kp_only[0]["image"]
    img.write_bytes(img.read_bytes()[:300])  # truncated: the header reads, the pixels do not
    kp_only[1]["keypoints"][2] = [None, 4.0, 2.0]  # NaN coordinate on a present joint
    for row in kp_only[2]["keypoints"][:12]:
        row[:] = [None, None, 0.0]  # too few joints
    (root / "people.json").write_text(json.dumps(people))
    return root


def test_the_people_labelled_together_are_matched_by_one_query_with_the_same_neighbours(demo_dir, checkpoint,
                                                                                       tmp_path, monkeypatch):
    people = keypoint_only_people(demo_dir)
    cfg = SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path / "a"))
    synth = Synthesizer(cfg)
    query, calls = synth.bank.index.query, []

    def counted(kp, k, **kw):
        calls.append(np.asarray(kp).reshape(-1, 16, 3).shape[0])
        return query(kp, k, **kw)

    monkeypatch.setattr(synth.bank.index, "query", counted)
    synth.run(people, tmp_path / "a")
    assert calls == [len(people)]                    # the demo's people all have whole bodies
    # the same run with one query per person: the same neighbours, distances and labels
    monkeypatch.setattr(synth, "_query_ahead", lambda images: {})
    calls.clear()
    synth.run(people, tmp_path / "b")
    assert calls == [1] * len(people)
    one_each = {p.person_id: p for item in read_items(tmp_path / "b") for p in item.persons}
    batched = {p.person_id: p for item in read_items(tmp_path / "a") for p in item.persons}
    assert batched.keys() == one_each.keys() and all(p.status == "ok" for p in batched.values())
    for pid, p in batched.items():
        assert (p.neighbours, p.distances) == (one_each[pid].neighbours, one_each[pid].distances)
    for label in (tmp_path / "a" / "labels").glob("*.png"):
        assert label.read_bytes() == (tmp_path / "b" / "labels" / label.name).read_bytes()


def test_bad_items_are_reported_and_skipped_while_the_rest_is_written(demo_dir, checkpoint, tmp_path):
    data = bad_input_folder(demo_dir, tmp_path / "in")
    report = ReadReport()
    people = keypoint_only_people(data, report=report)
    assert len(report.skipped) == 1 and "NaN" in report.skipped[0][1]
    synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(data), out=str(tmp_path / 'out')))
    counts = synth.run(people, tmp_path / "out")
    assert counts["images_failed"] == 1
    totals = synth.finalize(tmp_path / "out")
    n = len(people)
    assert totals == {"images": n, "people_labelled": n - 2, "people_partial": 0, "people_skipped": 2}
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    reasons = set(manifest.loc[manifest.status == "skipped", "reason"])
    assert any("corrupt or unreadable image" in r for r in reasons)
    assert any("only 4 keypoints (< 6)" in r for r in reasons)     # a partial body, but too few joints
    assert len(list((tmp_path / "out" / "labels").glob("*.png"))) == n - 2
    ok = manifest[manifest.status == "ok"]
    assert (ok.refiner_sha256.str.len() == 64).all() and ok.neighbours.map(len).eq(3).all()


def _snapshot(out: Path) -> dict:
    snap = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.suffix != ".parquet":
            snap[str(p.relative_to(out))] = p.read_bytes()
    snap["manifest"] = pd.read_parquet(out / "manifest.parquet").to_json()
    return snap


def test_killed_and_restarted_synthesis_ends_identical(demo_dir, checkpoint, tmp_path):
    people = keypoint_only_people(demo_dir)
    synth = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path), save_probabilities=True))
    synth.run(people, tmp_path / "full")
    synth.finalize(tmp_path / "full")
    # "killed" after 3 images, with a half-written temp file left behind by the kill
    assert synth.run(people, tmp_path / "resumed", stop_after=3)["images_done"] == 3
    stale = tmp_path / "resumed" / "labels" / ".partsynth-tmp-demo00013-0a1b2c3d.k2j4l5.tmp.png"
    stale.write_bytes(b"partial")
    counts = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path), save_probabilities=True)).run(
        people, tmp_path / "resumed")
    assert counts["images_reused"] == 3 and counts["images_done"] == len(people) - 3
    synth.finalize(tmp_path / "resumed")
    assert not stale.exists()  # the rerun removed the killed run's partial file
    assert _snapshot(tmp_path / "resumed") == _snapshot(tmp_path / "full")
    assert not [p for p in (tmp_path / "full").rglob("*") if ".tmp" in p.name]


def test_extra_labelled_folders_join_the_train_split(demo_dir):
    from refine_net.train import prepare

    base = RefinerTrainConfig(data=str(demo_dir), out_dir="unused", **TINY)
    bank, _, _, val = prepare(base)
    labelled = [r for r in iter_records(demo_dir) if r.label_map is not None and r.keypoints is not None]
    assert len(bank.exemplars) == sum(r.split == "train" for r in labelled)
    more, _, _, val2 = prepare(base.model_copy(update={"extra_data": (str(demo_dir),)}))
    assert len(more.exemplars) == len(bank.exemplars) + len(labelled) and len(val2) == len(val)
