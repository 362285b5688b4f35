"""Training the refinement U-Net (Fang et al., CVPR 2018, sections 3.5-3.6, 4.2).

Two plain functions, :func:`train_one_epoch` and :func:`evaluate`, and :func:`main`,
which prepares the data from a labelled dataset folder, trains with Adam (lr 2e-4,
beta1 0.5), evaluates on the val split, and writes ``last.pt`` (resumable) and
``config.json`` to the run folder after every epoch.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.files import atomic_path, write_json
from pipeline.layouts import iter_records
from pipeline.metrics import ConfusionMatrix, ParsingScores
from pipeline.prior import PriorBank, PriorConfig
from refine_net.dataset import RefineDataset, make_samples
from refine_net.losses import LOSSES
from refine_net.model import RefineConfig, UNet

log = logging.getLogger("partsynth.refine")

#: U-Net sizes: CPU (128 px, 32 filters, depth 5) and the paper's (256 px, 64, depth 8).
PROFILES = {"cpu": {"size": 128, "base_filters": 32, "depth": 5},
            "gpu": {"size": 256, "base_filters": 64, "depth": 8}}


@dataclass(frozen=True)
class TrainConfig:
    """A refinement training run, fully described (saved in every checkpoint).

    Attributes:
        data: labelled dataset (any supported layout with keypoints); ``train`` split
            people train, ``val`` split people are evaluated.
        out_dir: run folder (``last.pt``, ``config.json``, ``history.json``).
        size, margin: crop frame (128 px CPU profile; 256 in the paper).
        k, n: priors average k neighbours drawn at random from the n nearest (k of n).
        use_prior: False trains the image-only baseline.
        loss: ``l1`` (the paper) or ``ce``.
        epochs, batch_size, lr, beta1: Adam schedule (paper: lr 2e-4, beta1 0.5, batch 1).
        max_minutes: stop after the epoch that crosses this wall-time budget (None: no cap).
        base_filters, depth, dropout_blocks: the U-Net (CPU: 32, 5, 2; paper: 64, 8, 3).
        seed: seeds torch, the k-of-n draws and the augmentation.
        label_set: forwarded to readers that take one (ccp8, pascal6, ...).
        threads: torch intra-op threads (None: torch's default).
    """

    data: str
    out_dir: str
    size: int = 128
    margin: float = 0.25
    k: int = 3
    n: int = 5
    use_prior: bool = True
    loss: str = "l1"
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    max_minutes: float | None = None
    base_filters: int = 32
    depth: int = 5
    dropout_blocks: int = 2
    seed: int = 0
    label_set: str | None = None
    threads: int | None = None
    jitter: bool = True
    flip: bool = True
    extra: dict = field(default_factory=dict)


def train_one_epoch(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                    loader: DataLoader, progress: Callable[[float], None] | None = None) -> float:
    """One pass over ``loader``; returns the mean loss."""
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        loss = loss_fn(model(x)["parsing"], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
        if progress is not None:
            progress(float(loss.detach()))
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, num_classes: int) -> ParsingScores:
    """mIoU etc. of argmax(logits) over ``loader`` (one confusion matrix; 255 ignored)."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for x, y in loader:
        cm.update(y.numpy(), model(x)["parsing"].argmax(1).numpy())
    return cm.compute()


def prior_argmax_scores(dataset: RefineDataset) -> ParsingScores:
    """Scores of argmax(prior) on an evaluation dataset (the refiner's starting point)."""
    cm = ConfusionMatrix(dataset.bank.num_classes)
    for i in range(len(dataset)):
        cm.update(dataset.s.targets[i], dataset.prior(i, None).argmax(0))
    return cm.compute()


def save_checkpoint(path: Path, **state) -> None:
    """torch.save atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_refiner(path: str | Path) -> tuple[UNet, dict]:
    """A trained U-Net in eval mode and its checkpoint dict (configs, history)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = UNet(RefineConfig(**ckpt["refine_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def prepare(cfg: TrainConfig):
    """Bank of train people, training and val datasets (val priors from the train bank)."""
    options = {"label_set": cfg.label_set} if cfg.label_set else {}
    recs = [r for r in iter_records(cfg.data, skip_bad=True, **options)
            if r.label_map is not None and r.keypoints is not None]
    train = [r for r in recs if r.split == "train"]
    val = [r for r in recs if r.split == "val"]
    prior_cfg = PriorConfig(size=cfg.size, margin=cfg.margin, k=cfg.k)
    bank = PriorBank.from_records(train, prior_cfg)
    train_ds = RefineDataset(make_samples(train, bank, cfg.n, exclude_self=True), bank, cfg.k,
                             train=True, use_prior=cfg.use_prior, seed=cfg.seed, jitter=cfg.jitter,
                             flip=cfg.flip)
    val_ds = None
    if val:
        val_ds = RefineDataset(make_samples(val, bank, cfg.k, exclude_self=False), bank, cfg.k,
                               train=False, use_prior=cfg.use_prior)
    return bank, prior_cfg, train_ds, val_ds


def main(cfg: TrainConfig, progress: Callable[[str, int, int], None] | None = None,
         resume: bool = True) -> Path:
    """Train (resuming from ``out_dir/last.pt`` when present and ``resume``); returns the
    checkpoint path.  ``progress(stage, done, total)`` is called per batch."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    bank, prior_cfg, train_ds, val_ds = prepare(cfg)
    refine_cfg = RefineConfig(num_classes=bank.num_classes, use_prior=cfg.use_prior,
                              base_filters=cfg.base_filters, depth=cfg.depth,
                              dropout_blocks=cfg.dropout_blocks)
    model = UNet(refine_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    ckpt_path = out / "last.pt"
    start, history = 0, []
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["train_config"] != _jsonable(cfg):
            raise ValueError(f"{ckpt_path} was trained with another config; use a new out_dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history = ckpt["epoch"] + 1, ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resuming %s at epoch %d", ckpt_path, start)
    write_json(out / "config.json", {"train": _jsonable(cfg), "refine": asdict(refine_cfg),
                                     "prior": asdict(prior_cfg), "label_set": bank.label_set})
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time() - sum(h["seconds"] for h in history)
    for epoch in range(start, cfg.epochs):
        if cfg.max_minutes is not None and time.time() - t0 > 60 * cfg.max_minutes:
            log.info("time budget of %.1f min reached after %d epochs", cfg.max_minutes, epoch)
            break
        train_ds.set_epoch(epoch)
        gen.manual_seed(cfg.seed * 100003 + epoch)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=gen)
        t = time.time()
        done = [0]

        def tick(loss, epoch=epoch, loader=loader):
            done[0] += 1
            if progress:
                progress(f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f}", done[0], len(loader))

        loss = train_one_epoch(model, LOSSES[cfg.loss], optimizer, loader, tick)
        entry = {"epoch": epoch, "loss": loss, "seconds": time.time() - t}
        if val_ds is not None:
            entry["val_miou"] = evaluate(model, DataLoader(val_ds, batch_size=16), bank.num_classes).mean_iou
        history.append(entry)
        log.info("epoch %d: loss %.4f%s (%.0f s)", epoch + 1, loss,
                 f", val mIoU {entry['val_miou']:.4f}" if "val_miou" in entry else "", entry["seconds"])
        save_checkpoint(ckpt_path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        epoch=epoch, history=history, torch_rng=torch.get_rng_state(),
                        train_config=_jsonable(cfg), refine_config=asdict(refine_cfg),
                        prior_config=asdict(prior_cfg), label_set=bank.label_set,
                        bank_data=str(cfg.data))
        write_json(out / "history.json", history)
    return ckpt_path


def _jsonable(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))
