"""Scoring a trained refiner on a labelled dataset's val split, and its visual check."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.labels import LABEL_SETS
from pipeline.metrics import ParsingScores
from pipeline.pictures.overlay import colorize, draw_keypoints, grid
from pipeline.priors.bank import PriorBank
from pipeline.formats.records import ReadReport
from pipeline.pictures.prior_grid import prior_colour
from pipeline.formats.records import with_splits
from refine_net.dataset import RefineDataset, make_samples
from refine_net.checkpoint import Checkpoint
from refine_net.train import evaluate, labelled_people, load_refiner, prior_argmax_scores, prior_config, training_config


def val_dataset(ckpt: Checkpoint, data: str | None = None, split: str = "val",
                report: ReadReport | None = None) -> RefineDataset:
    """The evaluation dataset of a refiner checkpoint: ``split`` people of ``data``
    (default: the training data), priors from the checkpoint's training bank (the
    ``train`` split).  Bad items are skipped into ``report`` and logged."""
    cfg = training_config(ckpt)
    recs = with_splits(labelled_people(data or ckpt.network["bank_data"], cfg.label_set, report or ReadReport()),
                       cfg.val_fraction)
    bank = PriorBank.from_records([r for r in recs if r.split == "train"], prior_config(ckpt))
    queries = [r for r in recs if r.split == split]
    return RefineDataset(make_samples(queries, bank, cfg.k, exclude_self=False), bank, cfg.k, train=False,
                         use_prior=cfg.use_prior, prior_source=cfg.prior_source)


def evaluate_checkpoint(path: str, data: str | None = None,
                        device: str = "auto") -> tuple[dict[str, ParsingScores], RefineDataset]:
    """{"prior argmax": ..., "refiner": ...} on the val split, and the dataset used.
    Raises CheckpointError naming the file when it is not a refiner checkpoint."""
    model, ckpt = load_refiner(path, device)
    ds = val_dataset(ckpt, data)
    scores = {"refiner": evaluate(model, DataLoader(ds, batch_size=16), ds.bank.num_classes)}
    if ds.use_prior:
        scores["prior argmax"] = prior_argmax_scores(ds)
    return scores, ds


@torch.no_grad()
def refine_grid(path: str, ds: RefineDataset, ids: Sequence[str], tile: int = 128,
                photos: bool = True) -> np.ndarray:
    """PNG grid rows: image (keypoints) | prior | refined | ground truth."""
    model, _ = load_refiner(path)          # CPU: a handful of crops
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
