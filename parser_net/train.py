"""Training a parser on real + synthetic labels (Fang et al., CVPR 2018, sections 3.7, 4.3).

The run is iteration-based, so rows of an experiment get the same compute: ``iterations``
steps in all, of which the last ``finetune_iterations`` draw only real labels (the
release's recipe: train on the mixture, then fine-tune on the real labels).  Batches are a
pure function of (seed, step) (:func:`parser_net.dataset.sample_indices`,
:func:`parser_net.dataset.draw_batch`), so a resumed run draws the same batches as an
uninterrupted one, and the same for any number of processes: under ``torchrun`` each rank
draws its share of the global batch (:mod:`refine_net.distributed`).  ``last.pt`` holds the
model, optimizer, step, RNG state and the resolved config; ``metrics.json`` the val scores.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ConfigError
from pipeline.formats.files import write_json
from pipeline.labels import LABEL_SETS, LabelSet
from pipeline.readers.layouts import iter_records
from pipeline.formats.folder import read_dataset_info
from pipeline.formats.records import PersonRecord, ReadReport
from pipeline.soft_labels import SoftLabels
from pipeline.formats.synth_dataset import training_data_signature
from parser_net.config import ParserTrainConfig
from parser_net.dataset import ParsingItem, draw_batch, load_items, median_torso_fraction, sample_indices
from parser_net.evaluate import evaluate_records
from parser_net.joint import joint_loss
from parser_net.losses import parsing_loss, soft_parsing_loss
from parser_net.edge_eval import evaluate_edges
from parser_net.htcorrm import edge_targets
from parser_net.networks import build_network, heatmap_stride, network_outputs, network_record
from parser_net.pose_eval import evaluate_pose, heatmap_targets
from parser_net.structure import MERGED_REGIONS, structure_sensitive_loss
from refine_net.checkpoint import Checkpoint, rng_state, save_checkpoint
from refine_net.checkpoint import resume as resume_run
from refine_net.checkpoint import set_aside_stale_run
from refine_net.device import setup_run
from refine_net.distributed import (Stepper, World, barrier, close_world, init_world, micro_seed, shares,
                                    unwrap, wrap)
from refine_net.encoders import init_pretrained, param_groups
from refine_net.schedule import poly_lr, set_lr

log = logging.getLogger("partsynth.parser")

#: config fields that may change when a run is resumed (the run is extended or moved)
RESUMABLE_CHANGES = frozenset({"iterations", "threads", "device", "checkpoint_every", "strict", "amp", "accumulate"})


@dataclass
class Pool:
    """Preloaded data of a run (or of many runs sharing it, as in an experiment).
    ``report`` lists the bad items the readers skipped (file, reason)."""

    label_set: LabelSet
    real: list[ParsingItem]
    synthetic: list[ParsingItem]
    val: list[PersonRecord]
    pose_val: list[PersonRecord] = field(default_factory=list)
    report: ReadReport = field(default_factory=ReadReport)


def load_pool(data: str, synthetic: tuple[str, ...], label_set: str, long_side: int,
              pose_data: str | None = None, pose_split: str = "test", soft_targets: bool = False,
              match_person_scale: bool = False) -> Pool:
    """Read the real train/val split and the synthetic folders; preload train images.
    With ``pose_data``, its ``pose_split`` people with keypoints form the pose val set and
    their images are left out of the synthetic training items.  With ``soft_targets`` the
    synthetic items carry their soft labels (:class:`pipeline.soft_labels.SoftLabels`).
    With ``match_person_scale`` each synthetic photo is resized so that its person's torso
    is, relative to the long side, the real train people's median
    (:func:`parser_net.dataset.load_items`); without real people with a torso nothing is rescaled.
    Bad items are skipped, logged with file and reason, and listed in ``Pool.report``.

    Raises: ConfigError when a synthetic folder's label set differs or nothing is labelled;
    DataError when ``soft_targets`` and a synthetic folder has no saved probabilities."""
    report = ReadReport()
    recs = [r for r in iter_records(data, skip_bad=True, report=report, label_set=label_set)
            if r.label_map is not None]
    if not recs:
        raise ConfigError(f"{data}: no labelled people")
    lset = LABEL_SETS[recs[0].label_set]
    train = [r for r in recs if r.split == "train"] or [r for r in recs if r.split != "val"]
    val = [r for r in recs if r.split == "val"]
    synth = []
    for folder in synthetic:
        info = read_dataset_info(Path(folder))
        if info["label_set"] != lset.name:
            raise ConfigError(f"{folder}: label set {info['label_set']} differs from {lset.name}")
        synth += [r for r in iter_records(folder, skip_bad=True, report=report) if r.label_map is not None]
    pose_val = []
    if pose_data:
        pose_val = [r for r in iter_records(pose_data, skip_bad=True, report=report)
                    if r.split == pose_split and r.keypoints is not None]
        held_out = {Path(r.image_path).resolve() for r in pose_val}
        synth = [r for r in synth if Path(r.image_path).resolve() not in held_out]
    report.log_skipped(log)
    soft = SoftLabels(list(synthetic)) if soft_targets and synthetic else None
    person_scale = median_torso_fraction(train) if match_person_scale else None
    return Pool(lset, load_items(train, long_side),
                load_items(synth, long_side, soft_labels=soft, person_scale=person_scale), val, pose_val, report)


def select(pool: Pool, cfg: ParserTrainConfig) -> tuple[list[ParsingItem], list[ParsingItem]]:
    """The real and synthetic items of a run: confidence filter, then seeded subsets (no
    synthetic items when ``cfg.synthetic`` is empty, even if the pool holds some)."""
    rng = np.random.default_rng(cfg.subset_seed)

    def subset(items, n):
        if n is None or n >= len(items):
            return list(items)
        return [items[i] for i in sorted(rng.permutation(len(items))[:n])]

    synth = [it for it in pool.synthetic if it.confidence >= cfg.min_confidence] if cfg.synthetic else []
    return subset(pool.real, cfg.n_real), subset(synth, cfg.n_synthetic)


def batch_loss(model, x, y, weight, loss_fn: Callable | None = None, regions: dict | None = None) -> torch.Tensor:
    """The loss of one batch (graph kept).  ``loss_fn(output, target, label_weight=...)``
    returns a dict with ``loss`` (the joint networks'); by default the parsing loss of the
    output and of its scales (structure-sensitive with ``regions``)."""
    out = model(x)
    if loss_fn is not None:
        return loss_fn(out, y, label_weight=weight)["loss"]
    if regions is not None:
        return parsing_loss(out, y, weight, pixel_loss=lambda lg, t, w: structure_sensitive_loss(lg, t, regions, w))
    return parsing_loss(out, y, weight)


def make_optimizer(cfg: ParserTrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.encoder_lr_scale)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_parser(cfg: ParserTrainConfig, pool: Pool, progress: Callable[[str, int, int], None] | None = None,
                 resume: bool = True) -> Path:
    """Train on ``pool`` as ``cfg`` says, evaluate on its val split; returns ``last.pt``.

    Resumes from ``out_dir/last.pt`` when present and ``resume``; a larger ``iterations``
    extends the run (the poly schedule then follows the new length from the resumed step).
    ``progress(message, step, total)`` is called every step.
    Raises: ConfigError when the run folder holds a run with another config."""
    world, device = init_world(cfg.device)
    try:
        return _train(cfg, pool, world, device, progress, resume)
    finally:
        close_world(world)


def _train(cfg: ParserTrainConfig, pool: Pool, world: World, device: torch.device,
           progress: Callable[[str, int, int], None] | None, resume: bool) -> Path:
    micro = shares(cfg.batch_size, world, cfg.accumulate)
    out = setup_run(cfg.out_dir, cfg.threads, cfg.seed)
    real, synth = select(pool, cfg)
    if not real and cfg.finetune_iterations:
        raise ConfigError("fine-tuning on real labels needs real items")
    pcfg = cfg.parser_config(pool.label_set.num_classes)
    network = network_record(cfg.model, cfg.arch, pcfg, cfg.joint_stages, cfg.size, cfg.joint_arch,
                             cfg.main_task, cfg.fusion)
    model = build_network(network)
    loaded = init_pretrained(model, cfg.encoder_weights)           # none for a scratch encoder
    model = model.to(device)
    outputs = network_outputs(network)
    regions = MERGED_REGIONS[pool.label_set.name] if cfg.structure_loss else None
    optimizer = make_optimizer(cfg, model)
    saved_cfg = cfg.model_dump(mode="json")
    ckpt_path = out / "last.pt"
    signature = training_data_signature([cfg.data, *cfg.synthetic, *([cfg.pose_data] if cfg.pose_data else [])])
    if world.is_main:
        set_aside_stale_run(out, signature)
    barrier(world)
    step, history = resume_run(ckpt_path, "parser", saved_cfg, RESUMABLE_CHANGES, model, optimizer, resume)
    resolved = {"train": saved_cfg, "parser": asdict(pcfg), "label_set": pool.label_set.name,
                "n_real": len(real), "n_synthetic": len(synth), "skipped": pool.report.records(),
                "data_signature": signature}
    if world.is_main:
        write_json(out / "config.json", resolved)
        if loaded and step == 0:
            log.info("encoder %s initialised from %s", cfg.encoder, loaded[0])
        log.info("training %s on %d real + %d synthetic images for %d steps on %s%s", cfg.arch, len(real),
                 len(synth), cfg.iterations, device, f" x {world.size} ranks" if world.size > 1 else "")
    model = wrap(model, world, device)
    stepper = Stepper(model, optimizer, cfg.amp, device)
    mixed_until = cfg.iterations - cfg.finetune_iterations
    scale_max = cfg.scale_range[1]
    scale_range = (cfg.scale_range[0] / scale_max, 1.0)      # items are stored at size * scale_max
    items = real + synth                                     # indices >= len(real) are synthetic
    t0, running = time.time(), []

    def micro_loss(idx: np.ndarray, positions: range) -> Callable[[], torch.Tensor]:
        batch = draw_batch(items, idx[positions.start:positions.stop], cfg.crop_hw, scale_range, pool.label_set,
                           cfg.seed, step, cfg.flip, with_keypoints=cfg.model == "joint",
                           with_soft=cfg.soft_targets, positions=positions)
        weight = (torch.where(batch.synthetic, cfg.synthetic_weight, 1.0) * batch.has_label).to(device)
        x, y = batch.x.to(device, non_blocking=True), batch.target.to(device, non_blocking=True)
        if cfg.soft_targets:
            loss_fn = functools.partial(soft_parsing_loss, soft=batch.soft.to(device),
                                        temperature=cfg.soft_temperature)
        elif cfg.model == "joint":
            hs = heatmap_stride(network)
            heat, joint_w = heatmap_targets(batch.keypoints, (cfg.crop_hw[0] // hs, cfg.crop_hw[1] // hs), hs)
            loss_fn = functools.partial(joint_loss, heatmaps=heat.to(device), joint_weight=joint_w.to(device),
                                        pose_weight=cfg.pose_weight, structure_regions=regions,
                                        edges=edge_targets(y) if "edges" in outputs else None,
                                        edge_weight=cfg.edge_weight)
        else:
            loss_fn = None
        return lambda: batch_loss(model, x, y, weight, loss_fn=loss_fn, regions=regions)

    while step < cfg.iterations:
        n_synth = len(synth) if step < mixed_until else 0
        idx = sample_indices(len(real), n_synth, cfg.batch_size, cfg.real_fraction, cfg.seed, step)
        set_lr(optimizer, poly_lr(cfg.lr, step, cfg.iterations))
        running.append(stepper.step([micro_loss(idx, positions) for positions in micro],
                                    [micro_seed(cfg.seed, step, positions.start) for positions in micro]))
        step += 1
        if progress and world.is_main:
            progress(f"loss {np.mean(running[-20:]):.3f}", step, cfg.iterations)
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            now = time.time()
            history.append({"step": step, "loss": float(np.mean(running)), "seconds": now - t0})  # this interval
            running, t0 = [], now
            if world.is_main:
                save_checkpoint(ckpt_path, Checkpoint(
                    kind="parser", config=saved_cfg, network=network, label_set=pool.label_set.name,
                    model=unwrap(model).state_dict(), step=step, history=list(history),
                    optimizer=optimizer.state_dict(), rng=rng_state()))
                log.info("step %d/%d loss %.4f", step, cfg.iterations, history[-1]["loss"])
    if world.is_main:
        _score(cfg, pool, unwrap(model), network, outputs, out, resolved, history)
    barrier(world)
    return ckpt_path


def _score(cfg: ParserTrainConfig, pool: Pool, model: torch.nn.Module, network: dict, outputs, out: Path,
           resolved: dict, history: list[dict]) -> None:
    """Val scores of the trained network into ``metrics.json`` (rank 0)."""
    metrics = {"config": resolved, "history": history,
               "train_seconds": sum(h["seconds"] for h in history)}
    if pool.val and "parsing" in outputs:
        scores, n = evaluate_records(model, pool.val, pool.label_set, cfg.size, cfg.eval_scales)
        metrics["val"] = dict(scores.as_dict(pool.label_set.names), images=n)
        log.info("val mIoU %.4f on %d images", scores.mean_iou, n)
    if pool.val and "edges" in outputs:
        metrics["edges"] = evaluate_edges(model, pool.val, cfg.size)
        log.info("edge ODS %.4f on %d images", metrics["edges"]["ods"], metrics["edges"]["images"])
    if pool.pose_val and "heatmaps" in outputs:
        metrics["pose"] = evaluate_pose(model, pool.pose_val, cfg.size, heatmap_stride(network))
        log.info("PCK@0.2 %.4f on %d people", metrics["pose"]["pck"], metrics["pose"]["people"])
    write_json(out / "metrics.json", metrics)


def fit_parser(cfg: ParserTrainConfig, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Load the data ``cfg`` names and train (resumable); returns ``last.pt``."""
    pool = load_pool(cfg.data, tuple(cfg.synthetic), cfg.label_set, round(cfg.size * cfg.scale_range[1]),
                     cfg.pose_data, cfg.pose_split, cfg.soft_targets, cfg.match_person_scale)
    pool.report.refuse(cfg.strict)
    return train_parser(cfg, pool, progress)
