"""Training the refinement U-Net (Fang et al., CVPR 2018, sections 3.5-3.6, 4.2).

:func:`fit_refiner` prepares the data from a labelled dataset folder, trains with Adam
(rate, beta1 and schedule from the config), evaluates on the val split, and writes
``last.pt`` (resumable) and ``config.json`` to the run folder after every epoch.  Each
epoch's global batches are a pure function of (seed, epoch) (:func:`epoch_batches`), so a
run under ``torchrun`` (each rank taking its share, :mod:`refine_net.distributed`) or with
``--accumulate`` sees the same samples as one process.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate

from pipeline.errors import ConfigError
from pipeline.formats.files import read_json, write_json
from pipeline.readers.layouts import iter_records
from pipeline.metrics import ConfusionMatrix, ParsingScores
from pipeline.priors.bank import PriorBank, PriorConfig
from pipeline.formats.records import ReadReport
from pipeline.formats.synth_dataset import training_data_signature
from refine_net.checkpoint import Checkpoint, load_checkpoint, rng_state, save_checkpoint
from refine_net.checkpoint import resume as resume_run
from refine_net.checkpoint import set_aside_stale_run
from refine_net.config import RefinerTrainConfig
from pipeline.formats.records import with_splits
from refine_net.dataset import RefineDataset, make_samples
from refine_net.device import resolve_device, setup_run
from refine_net.distributed import (Stepper, World, agree, barrier, close_world, init_world, micro_seed, shares,
                                    unwrap, wrap)
from refine_net.losses import LOSSES
from refine_net.encoders import init_pretrained, param_groups
from refine_net.model import RefineConfig, build_refiner
from refine_net.schedule import poly_lr, set_lr

log = logging.getLogger("partsynth.refine")

#: val mIoU gain (0..1) of the last epoch over the first three quarters that counts as still improving
IMPROVING_MIOU = 0.005

#: config fields that may change when a run is resumed (the run is extended or moved)
RESUMABLE_CHANGES = frozenset({"epochs", "max_minutes", "threads", "device", "strict", "amp", "accumulate"})


def epoch_batches(n: int, batch_size: int, parts: int, generator: torch.Generator) -> list[list[int]]:
    """The global batches of one epoch: a permutation of ``0 .. n-1`` drawn from
    ``generator`` (as ``DataLoader(shuffle=True)`` draws it) cut into ``batch_size`` runs;
    split into ``parts`` (ranks x micro-batches) > 1, the short last batch is cut to a
    multiple of ``parts`` (at most ``parts - 1`` samples of the epoch are left out)."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if parts > 1 and batches and len(batches[-1]) % parts:
        batches[-1] = batches[-1][: len(batches[-1]) // parts * parts]
    return [b for b in batches if b]


def train_one_epoch(stepper: Stepper, loss_fn: Callable, dataset: RefineDataset, batches: list[list[int]],
                    world: World, accumulate: int, progress: Callable[[float], None] | None = None) -> float:
    """One pass over ``batches`` (global batches of ``dataset`` indices; this rank takes its
    micro-batches of each: image + prior (b, 3 + C, S, S) float32 and label maps (b, S, S)
    int64); returns the mean loss of this rank's samples."""
    total, count = 0.0, 0
    device = stepper.device
    for b, batch in enumerate(batches):
        micro, seeds, n = [], [], 0
        for part in shares(len(batch), world, accumulate):     # epoch_batches cut the batches to fit
            x, y = default_collate([dataset[i] for i in batch[part.start:part.stop]])
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            micro.append(lambda x=x, y=y: loss_fn(stepper.model(x)["parsing"], y))
            seeds.append(micro_seed(dataset.seed, dataset.epoch, b, part.start))
            n += len(part)
        loss = stepper.step(micro, seeds)
        total += loss * n
        count += n
        if progress is not None:
            progress(loss)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, num_classes: int) -> ParsingScores:
    """mIoU etc. of argmax(logits) over ``loader`` (one confusion matrix; 255 ignored), on
    the model's device."""
    model.eval()
    device = next(model.parameters()).device
    cm = ConfusionMatrix(num_classes)
    for x, y in loader:
        cm.update(y.numpy(), model(x.to(device))["parsing"].argmax(1).cpu().numpy())
    return cm.compute()


def epoch_lr(cfg: RefinerTrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: ``cfg.lr``, or under the ``poly`` schedule
    (DeepLab's) ``cfg.lr * (1 - epoch / cfg.epochs) ** 0.9``.  A poly run extended on
    resume continues on the longer run's curve."""
    if cfg.lr_schedule == "poly":
        return poly_lr(cfg.lr, epoch, cfg.epochs)
    return cfg.lr


def prior_argmax_scores(dataset: RefineDataset) -> ParsingScores:
    """Scores of argmax(prior) on an evaluation dataset (the refiner's starting point)."""
    cm = ConfusionMatrix(dataset.bank.num_classes)
    for i in range(len(dataset)):
        cm.update(dataset.s.targets[i], dataset.prior(i, None).argmax(0))
    return cm.compute()


def training_summary(run_dir: str | Path) -> dict:
    """What a refiner run folder says about its training: ``epochs`` (int), ``val_miou``
    (the last epoch's val mIoU on crops, 0..1, or None without val people),
    ``still_improving`` (the last epoch beats every epoch of the first three quarters by
    more than :data:`IMPROVING_MIOU`) and ``prior_val_miou`` (argmax of its input prior on
    the same crops, 0..1, or None).

    Raises: FileNotFoundError naming the file when the folder holds no finished epoch."""
    run_dir = Path(run_dir)
    history = read_json(run_dir / "history.json")
    if not history:
        raise FileNotFoundError(f"{run_dir / 'history.json'}: no finished epoch")
    scores = [h["val_miou"] for h in history if "val_miou" in h]
    earlier = scores[: max(1, 3 * len(scores) // 4)]
    return {"epochs": len(history), "val_miou": scores[-1] if scores else None,
            "still_improving": bool(scores) and scores[-1] > max(earlier) + IMPROVING_MIOU,
            "prior_val_miou": read_json(run_dir / "config.json").get("val_prior_argmax_miou")}


def load_refiner(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """A trained refiner (:func:`refine_net.model.build_refiner`) in eval mode on ``device``
    and its :class:`Checkpoint`.

    Raises: CheckpointError naming the file when it is not a refiner checkpoint."""
    ckpt = load_checkpoint(path, kind="refiner")
    model = build_refiner(RefineConfig(**ckpt.network["refine"]))
    model.load_state_dict(ckpt.model)
    return model.to(resolve_device(device)).eval(), ckpt


def training_config(ckpt: Checkpoint) -> RefinerTrainConfig:
    """The :class:`RefinerTrainConfig` a refiner checkpoint was trained with."""
    return RefinerTrainConfig.model_validate(ckpt.config)


def prior_config(ckpt: Checkpoint) -> PriorConfig:
    """The crop frame and prior settings a refiner checkpoint was trained with."""
    return PriorConfig(**ckpt.network["prior"])


def labelled_people(data: str, label_set: str | None, report: ReadReport) -> list:
    """Labelled people with keypoints of ``data``; bad items are skipped into ``report``
    and logged with their file and reason."""
    options = {"label_set": label_set} if label_set else {}
    recs = [r for r in iter_records(data, skip_bad=True, report=report, **options)
            if r.label_map is not None and r.keypoints is not None]
    report.log_skipped(log)
    return recs


def prepare(cfg: RefinerTrainConfig, report: ReadReport | None = None):
    """Bank of train people, training and val datasets (val priors from the train bank).
    The people of ``cfg.extra_data`` join the train split whatever their own split.  Bad
    items are skipped into ``report``."""
    report = report if report is not None else ReadReport()
    recs = labelled_people(cfg.data, cfg.label_set, report)
    for extra in cfg.extra_data:
        recs += [replace(r, split="train") for r in labelled_people(extra, cfg.label_set, report)]
    report.refuse(cfg.strict)
    recs = with_splits(recs, cfg.val_fraction)
    train = [r for r in recs if r.split == "train"]
    val = [r for r in recs if r.split == "val"]
    if not train:
        raise ConfigError(f"{cfg.data}: no labelled people with keypoints in the train split")
    prior_cfg = PriorConfig(size=cfg.size, margin=cfg.margin, k=cfg.k)
    bank = PriorBank.from_records(train, prior_cfg)
    train_ds = RefineDataset(make_samples(train, bank, cfg.n, exclude_self=True), bank, cfg.k,
                             train=True, use_prior=cfg.use_prior, seed=cfg.seed, jitter=cfg.jitter,
                             flip=cfg.flip, prior_source=cfg.prior_source)
    val_ds = None
    if val:
        val_ds = RefineDataset(make_samples(val, bank, cfg.k, exclude_self=False), bank, cfg.k,
                               train=False, use_prior=cfg.use_prior, prior_source=cfg.prior_source)
    return bank, prior_cfg, train_ds, val_ds


def fit_refiner(cfg: RefinerTrainConfig, progress: Callable[[str, int, int], None] | None = None,
         resume: bool = True) -> Path:
    """Train (resuming from ``out_dir/last.pt`` when present and ``resume``; a larger
    ``epochs`` extends the run exactly as an uninterrupted run of that length); returns
    the checkpoint path.  ``progress(stage, done, total)`` is called per batch.  Writes
    ``config.json`` (the resolved config, prior and network settings, skipped items, and
    ``val_prior_argmax_miou``: the val mIoU of argmax(prior) on the same crops, the score the
    refiner has to beat, or None without val people or prior) and ``history.json`` beside
    ``last.pt``.

    Raises: ConfigError when the run folder holds another run, or no train people."""
    world, device = init_world(cfg.device)
    try:
        return _fit(cfg, world, device, progress, resume)
    finally:
        close_world(world)


def _fit(cfg: RefinerTrainConfig, world: World, device: torch.device,
         progress: Callable[[str, int, int], None] | None, resume: bool) -> Path:
    shares(cfg.batch_size, world, cfg.accumulate)                 # ConfigError unless the batch splits evenly
    parts = world.size * cfg.accumulate
    out = setup_run(cfg.out_dir, cfg.threads, cfg.seed)
    report = ReadReport()
    bank, prior_cfg, train_ds, val_ds = prepare(cfg, report)
    refine_cfg = RefineConfig(num_classes=bank.num_classes, use_prior=cfg.use_prior,
                              base_filters=cfg.base_filters, depth=cfg.depth,
                              dropout_blocks=cfg.dropout_blocks, encoder=cfg.encoder)
    model = build_refiner(refine_cfg)
    loaded = init_pretrained(model, cfg.encoder_weights)           # none for a scratch encoder
    model = model.to(device)
    optimizer = torch.optim.Adam(param_groups(model, cfg.encoder_lr_scale), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    saved_cfg = cfg.model_dump(mode="json")
    ckpt_path = out / "last.pt"
    signature = training_data_signature([cfg.data, *cfg.extra_data])
    if world.is_main:
        set_aside_stale_run(out, signature)
    barrier(world)
    start, history = resume_run(ckpt_path, "refiner", saved_cfg, RESUMABLE_CHANGES, model, optimizer, resume)
    network = {"refine": asdict(refine_cfg), "prior": asdict(prior_cfg),
               "bank_data": str(Path(cfg.data).resolve()), "prior_source": cfg.prior_source}
    if world.is_main:
        if loaded and start == 0:
            log.info("encoder %s initialised from %s", cfg.encoder, loaded[0])
        prior_miou = prior_argmax_scores(val_ds).mean_iou if val_ds is not None and cfg.use_prior else None
        write_json(out / "config.json", {"train": saved_cfg, **network, "label_set": bank.label_set,
                                         "skipped": report.records(), "data_signature": signature,
                                         "val_prior_argmax_miou": prior_miou})
    model = wrap(model, world, device)
    stepper = Stepper(model, optimizer, cfg.amp, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time() - sum(h["seconds"] for h in history)
    for epoch in range(start, cfg.epochs):
        if agree(world, cfg.max_minutes is not None and time.time() - t0 > 60 * cfg.max_minutes):
            log.info("time budget of %.1f min reached after %d epochs", cfg.max_minutes, epoch)
            break
        train_ds.set_epoch(epoch)
        set_lr(optimizer, epoch_lr(cfg, epoch))
        gen.manual_seed(cfg.seed * 100003 + epoch)
        batches = epoch_batches(len(train_ds), cfg.batch_size, parts, gen)
        t = time.time()
        done = [0]

        def tick(loss, epoch=epoch, total=len(batches)):
            done[0] += 1
            if progress and world.is_main:
                progress(f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f}", done[0], total)

        loss = train_one_epoch(stepper, LOSSES[cfg.loss], train_ds, batches, world, cfg.accumulate, tick)
        entry = {"epoch": epoch, "loss": loss, "seconds": time.time() - t}
        history.append(entry)
        if not world.is_main:
            continue
        if val_ds is not None:
            entry["val_miou"] = evaluate(unwrap(model), DataLoader(val_ds, batch_size=16), bank.num_classes).mean_iou
        log.info("epoch %d: loss %.4f%s (%.0f s)", epoch + 1, loss,
                 f", val mIoU {entry['val_miou']:.4f}" if "val_miou" in entry else "", entry["seconds"])
        save_checkpoint(ckpt_path, Checkpoint(
            kind="refiner", config=saved_cfg, network=network, label_set=bank.label_set,
            model=unwrap(model).state_dict(), step=epoch + 1, history=history, optimizer=optimizer.state_dict(),
            rng=rng_state()))
        write_json(out / "history.json", history)
    barrier(world)
    return ckpt_path
