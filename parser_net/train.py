"""Training a parser on real + synthetic labels (Fang et al., CVPR 2018, sections 3.7, 4.3).

The run is iteration-based, so rows of an experiment get the same compute: ``iterations``
steps in all, of which the last ``finetune_iterations`` draw only real labels (the
release's recipe: train on the mixture, then fine-tune on the real labels).  Batches are a
pure function of (seed, step) (:func:`parser_net.dataset.sample_indices`,
:func:`parser_net.dataset.draw_batch`), so a resumed run draws the same batches as an
uninterrupted one.  ``last.pt`` holds the model, optimizer, step, RNG state and the
resolved config; ``metrics.json`` the val scores.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.files import atomic_path, write_json
from pipeline.labels import LABEL_SETS, LabelSet
from pipeline.layouts import iter_records
from pipeline.readers.folder import read_dataset_info
from pipeline.records import PersonRecord
from parser_net.dataset import ParsingItem, draw_batch, load_items, sample_indices
from parser_net.evaluate import evaluate_records
from parser_net.joint import JointConfig, JointNet, joint_loss
from parser_net.losses import parsing_loss
from parser_net.pose_eval import evaluate_pose, heatmap_targets
from parser_net.structure import MERGED_REGIONS, structure_sensitive_loss
from parser_net.model import ParserConfig, build_parser, scaled_rates

log = logging.getLogger("partsynth.parser")

#: CPU: trains from scratch on 2 cores in minutes; GPU: paper-sized (320 px, wider, deeper).
PROFILES = {
    "cpu": dict(size=160, width=16, blocks=(1, 1, 1, 1), batch_size=8, head_width=128),
    "gpu": dict(size=320, width=64, blocks=(2, 2, 2, 2), batch_size=16, head_width=512),
}


@dataclass(frozen=True)
class ParserTrainConfig:
    """A parser training run, fully described (saved in every checkpoint).

    Attributes:
        data: real labelled dataset (any supported layout); its ``train`` split trains (all
            labelled people when it has no split) and its ``val`` split is evaluated.
        out_dir: run folder (``last.pt``, ``config.json``, ``metrics.json``).
        synthetic: synthesized dataset folders (:mod:`refine_net.synthesize`) mixed in.
        n_real, n_synthetic: use a random subset of this many (None: all), drawn with
            ``subset_seed``.
        min_confidence: drop synthetic people whose refiner mean max-probability is lower.
        real_fraction: probability a sample is real during the mixed phase (None: pool
            all items and draw uniformly).
        synthetic_weight: loss weight of synthetic samples (real: 1).
        iterations: total optimizer steps; ``finetune_iterations`` of them, at the end, use
            real labels only.
        arch: ``deeplab`` or ``attention`` (to scale).
        size: long side of the training images at scale 1 (pixels); crops are
            (size, 3/4 size); ``scale_range`` the random rescale.
        optimizer: ``adam`` or ``sgd`` (momentum 0.9); poly learning-rate decay (power 0.9).
        label_set: label set of the real data reader (ccp8 for CCP); synthetic folders must match.
        model: ``parser`` (``arch``) or ``joint`` (:class:`parser_net.joint.JointNet`:
            parsing + 16 keypoint heatmaps, ``joint_stages`` refinement stages,
            heatmap loss weighted by ``pose_weight``).
        structure_loss: SS-JPPNet's structure-sensitive parsing loss
            (:mod:`parser_net.structure`) instead of plain cross-entropy.
        pose_data, pose_split: labelled-keypoint dataset scored with PCK@0.2 (LSP's test
            half: ``../shared/data/lsp``, ``test``); its images are never trained on.
    """

    data: str
    out_dir: str
    synthetic: tuple[str, ...] = ()
    n_real: int | None = None
    n_synthetic: int | None = None
    min_confidence: float = 0.0
    real_fraction: float | None = 0.5
    synthetic_weight: float = 1.0
    iterations: int = 3000
    finetune_iterations: int = 0
    arch: str = "deeplab"
    width: int = 16
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    head_width: int = 128
    output_stride: int = 8
    size: int = 160
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    subset_seed: int = 0
    label_set: str = "ccp8"
    threads: int | None = None
    checkpoint_every: int = 250
    eval_scales: tuple[float, ...] = (1.0,)
    model: str = "parser"
    structure_loss: bool = False
    pose_weight: float = 100.0
    joint_stages: int = 1
    pose_data: str | None = None
    pose_split: str = "test"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.finetune_iterations > self.iterations:
            raise ValueError("finetune_iterations exceeds iterations")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.label_set not in LABEL_SETS:
            raise ValueError(f"unknown label_set {self.label_set!r}")
        if self.real_fraction is not None and not 0 <= self.real_fraction <= 1:
            raise ValueError(f"real_fraction must be in [0, 1], got {self.real_fraction}")
        if self.model not in ("parser", "joint"):
            raise ValueError(f"model must be parser or joint, got {self.model!r}")

    def parser_config(self, num_classes: int) -> ParserConfig:
        crop = max(self.crop_hw)
        return ParserConfig(num_classes=num_classes, width=self.width, blocks=tuple(self.blocks),
                            output_stride=self.output_stride, aspp_rates=scaled_rates(crop, self.output_stride),
                            head_width=self.head_width)

    @property
    def crop_hw(self) -> tuple[int, int]:
        return self.size, round(self.size * 3 / 4)


@dataclass
class Pool:
    """Preloaded data of a run (or of many runs sharing it, as in an experiment)."""

    label_set: LabelSet
    real: list[ParsingItem]
    synthetic: list[ParsingItem]
    val: list[PersonRecord]
    pose_val: list[PersonRecord] = field(default_factory=list)


def load_pool(data: str, synthetic: tuple[str, ...], label_set: str, long_side: int,
              pose_data: str | None = None, pose_split: str = "test") -> Pool:
    """Read the real train/val split and the synthetic folders; preload train images.
    With ``pose_data``, its ``pose_split`` people with keypoints form the pose val set and
    their images are left out of the synthetic training items.

    Raises: ValueError when a synthetic folder's label set differs or nothing is labelled."""
    recs = [r for r in iter_records(data, skip_bad=True, label_set=label_set) if r.label_map is not None]
    if not recs:
        raise ValueError(f"{data}: no labelled people")
    lset = LABEL_SETS[recs[0].label_set]
    train = [r for r in recs if r.split == "train"] or [r for r in recs if r.split != "val"]
    val = [r for r in recs if r.split == "val"]
    synth = []
    for folder in synthetic:
        info = read_dataset_info(Path(folder))
        if info["label_set"] != lset.name:
            raise ValueError(f"{folder}: label set {info['label_set']} differs from {lset.name}")
        synth += [r for r in iter_records(folder, skip_bad=True) if r.label_map is not None]
    pose_val = []
    if pose_data:
        pose_val = [r for r in iter_records(pose_data, skip_bad=True) if r.split == pose_split and r.keypoints is not None]
        held_out = {Path(r.image_path).resolve() for r in pose_val}
        synth = [r for r in synth if Path(r.image_path).resolve() not in held_out]
    return Pool(lset, load_items(train, long_side), load_items(synth, long_side), val, pose_val)


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


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """DeepLab's poly schedule: base * (1 - step / total) ** power."""
    return base * (1 - step / total) ** power


def train_one_step(model, optimizer, x, y, weight, loss_fn: Callable | None = None, regions: dict | None = None) -> float:
    """One optimizer step on a batch; returns the loss.  ``loss_fn(output, target,
    label_weight=...)`` returns a dict with ``loss`` (the joint network's); by default the
    parsing loss (structure-sensitive with ``regions``)."""
    model.train()
    out = model(x)
    if loss_fn is not None:
        loss = loss_fn(out, y, label_weight=weight)["loss"]
    elif regions is not None:
        loss = structure_sensitive_loss(out["parsing"], y, regions, weight)
    else:
        loss = parsing_loss(out, y, weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def make_optimizer(cfg: ParserTrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_parser(cfg: ParserTrainConfig, pool: Pool, progress: Callable[[str, int, int], None] | None = None,
                 resume: bool = True) -> Path:
    """Train on ``pool`` as ``cfg`` says, evaluate on its val split; returns ``last.pt``.

    Resumes from ``out_dir/last.pt`` when present and ``resume`` (ValueError if that run
    had another config).  ``progress(message, step, total)`` is called every step."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    real, synth = select(pool, cfg)
    if not real and cfg.finetune_iterations:
        raise ValueError("fine-tuning on real labels needs real items")
    pcfg = cfg.parser_config(pool.label_set.num_classes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg, pcfg).to(device)
    regions = MERGED_REGIONS[pool.label_set.name] if cfg.structure_loss else None
    optimizer = make_optimizer(cfg, model)
    ckpt_path, step, history = out / "last.pt", 0, []
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["train_config"] != jsonable(cfg):
            raise ValueError(f"{ckpt_path} was trained with another config; use a new out_dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, history = ckpt["step"], ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resuming %s at step %d", ckpt_path, step)
    resolved = {"train": jsonable(cfg), "parser": asdict(pcfg), "label_set": pool.label_set.name,
                "n_real": len(real), "n_synthetic": len(synth)}
    write_json(out / "config.json", resolved)
    log.info("training %s on %d real + %d synthetic images for %d steps", cfg.arch, len(real), len(synth),
             cfg.iterations)
    mixed_until = cfg.iterations - cfg.finetune_iterations
    scale_max = cfg.scale_range[1]
    scale_range = (cfg.scale_range[0] / scale_max, 1.0)      # items are stored at size * scale_max
    items = real + synth                                     # indices >= len(real) are synthetic
    t0, running = time.time(), []
    while step < cfg.iterations:
        n_synth = len(synth) if step < mixed_until else 0
        idx = sample_indices(len(real), n_synth, cfg.batch_size, cfg.real_fraction, cfg.seed, step)
        x, y, is_synth, has_label, *kps = draw_batch(items, idx, cfg.crop_hw, scale_range, pool.label_set,
                                                     cfg.seed, step, cfg.flip, with_keypoints=cfg.model == "joint")
        weight = (torch.where(is_synth, cfg.synthetic_weight, 1.0) * has_label).to(device)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(cfg.lr, step, cfg.iterations)
        if cfg.model == "joint":
            heat, joint_w = heatmap_targets(kps[0], (cfg.crop_hw[0] // cfg.output_stride,
                                                     cfg.crop_hw[1] // cfg.output_stride), cfg.output_stride)
            loss_fn = functools.partial(joint_loss, heatmaps=heat.to(device), joint_weight=joint_w.to(device),
                                        pose_weight=cfg.pose_weight, structure_regions=regions)
        else:
            loss_fn = None
        running.append(train_one_step(model, optimizer, x, y, weight, loss_fn=loss_fn, regions=regions))
        step += 1
        if progress:
            progress(f"loss {np.mean(running[-20:]):.3f}", step, cfg.iterations)
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            now = time.time()
            history.append({"step": step, "loss": float(np.mean(running)), "seconds": now - t0})  # this interval
            running, t0 = [], now
            _save(ckpt_path, model, optimizer, step, history, cfg, pcfg, pool.label_set.name)
            log.info("step %d/%d loss %.4f", step, cfg.iterations, history[-1]["loss"])
    metrics = {"config": resolved, "history": history,
               "train_seconds": sum(h["seconds"] for h in history)}
    if pool.val:
        scores, n = evaluate_records(model, pool.val, pool.label_set, cfg.size, cfg.eval_scales)
        metrics["val"] = dict(scores.as_dict(pool.label_set.names), images=n)
        log.info("val mIoU %.4f on %d images", scores.mean_iou, n)
    if pool.pose_val and cfg.model == "joint":
        metrics["pose"] = evaluate_pose(model, pool.pose_val, cfg.size, cfg.output_stride)
        log.info("PCK@0.2 %.4f on %d people", metrics["pose"]["pck"], metrics["pose"]["people"])
    write_json(out / "metrics.json", metrics)
    return ckpt_path


def _save(path, model, optimizer, step, history, cfg, pcfg, label_set) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(model={k: v.cpu() for k, v in model.state_dict().items()}, optimizer=optimizer.state_dict(), step=step,
                        history=list(history), torch_rng=torch.get_rng_state(), train_config=jsonable(cfg),
                        parser_config=asdict(pcfg), arch=cfg.arch, label_set=label_set, size=cfg.size,
                        model_kind=cfg.model, joint_stages=cfg.joint_stages), tmp)


def load_parser(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A trained parser in eval mode and its checkpoint dict (configs, history, size)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    pc = dict(ckpt["parser_config"])
    pc["blocks"], pc["aspp_rates"], pc["scales"] = tuple(pc["blocks"]), tuple(pc["aspp_rates"]), tuple(pc["scales"])
    model = build_model_kind(ckpt.get("model_kind", "parser"), ckpt["arch"], ParserConfig(**pc), ckpt.get("joint_stages", 1))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def build_model(cfg: ParserTrainConfig, pcfg: ParserConfig) -> torch.nn.Module:
    """The network a run trains: a parser (``cfg.arch``) or the joint network."""
    return build_model_kind(cfg.model, cfg.arch, pcfg, cfg.joint_stages)


def build_model_kind(kind: str, arch: str, pcfg: ParserConfig, joint_stages: int = 1) -> torch.nn.Module:
    if kind == "joint":
        return JointNet(JointConfig(pcfg, stages=joint_stages))
    return build_parser(arch, pcfg)


def main(cfg: ParserTrainConfig, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Load the data ``cfg`` names and train (resumable); returns ``last.pt``."""
    pool = load_pool(cfg.data, tuple(cfg.synthetic), cfg.label_set, round(cfg.size * cfg.scale_range[1]),
                     cfg.pose_data, cfg.pose_split)
    return train_parser(cfg, pool, progress)


def jsonable(cfg: ParserTrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))
