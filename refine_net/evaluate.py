"""Scoring a trained refiner on a labelled dataset's val split, and its visual check."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.labels import LABEL_SETS
from pipeline.layouts import iter_records
from pipeline.metrics import ParsingScores
from pipeline.overlay import colorize, draw_keypoints, grid
from pipeline.prior import PriorBank, PriorConfig
from pipeline.prior_show import prior_colour
from refine_net.dataset import RefineDataset, make_samples
from refine_net.train import evaluate, load_refiner, prior_argmax_scores


def val_dataset(ckpt: dict, data: str | None = None, split: str = "val") -> RefineDataset:
    """The evaluation dataset of a checkpoint: ``split`` people of ``data`` (default: the
    training data), priors from the checkpoint's training bank (the ``train`` split)."""
    data = data or ckpt["bank_data"]
    options = {"label_set": ckpt["train_config"]["label_set"]} if ckpt["train_config"].get("label_set") else {}
    recs = [r for r in iter_records(data, skip_bad=True, **options)
            if r.label_map is not None and r.keypoints is not None]
    prior_cfg = PriorConfig(**ckpt["prior_config"])
    bank = PriorBank.from_records([r for r in recs if r.split == "train"], prior_cfg)
    queries = [r for r in recs if r.split == split]
    k = ckpt["train_config"]["k"]
    return RefineDataset(make_samples(queries, bank, k, exclude_self=False), bank, k, train=False,
                         use_prior=ckpt["refine_config"]["use_prior"])


def evaluate_checkpoint(path: str, data: str | None = None) -> tuple[dict[str, ParsingScores], RefineDataset]:
    """{"prior argmax": ..., "refiner": ...} on the val split, and the dataset used."""
    model, ckpt = load_refiner(path)
    ds = val_dataset(ckpt, data)
    scores = {"refiner": evaluate(model, DataLoader(ds, batch_size=16), ds.bank.num_classes)}
    if ds.use_prior:
        scores["prior argmax"] = prior_argmax_scores(ds)
    return scores, ds


@torch.no_grad()
def refine_grid(path: str, ds: RefineDataset, ids: Sequence[str], tile: int = 128,
                photos: bool = True) -> np.ndarray:
    """PNG grid rows: image (keypoints) | prior | refined | ground truth."""
    model, _ = load_refiner(path)
    pal = LABEL_SETS[ds.bank.label_set].palette
    rows = []
    for pid in ids:
        i = ds.s.person_ids.index(pid)
        x, _ = ds[i]
        probs = model(x[None])["parsing"].softmax(1)[0].numpy()
        prior = ds.prior(i, None)
        img = ds.s.images[i] if photos else np.zeros_like(ds.s.images[i])
        rows.append([draw_keypoints(img, ds.s.keypoints[i]), prior_colour(prior, pal),
                     colorize(probs.argmax(0).astype(np.uint8), pal), colorize(ds.s.targets[i], pal)])
    return grid(rows, tile)
