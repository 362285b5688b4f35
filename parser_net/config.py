"""The parser's run config (:class:`ParserTrainConfig`), for plain parsers and the joint
parsing + pose network.

One frozen pydantic model: the CLI options (:mod:`flows.options`), the Prefect flow
parameters and the ``config`` saved in every checkpoint and run folder are all made from
it.  Profiles are named presets of the network sizes (:data:`PARSER_PROFILES`): a
profile fills the sizes that are not given explicitly.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.labels import LABEL_SETS
from refine_net.config import (DeviceName, EncoderField, EncoderLrScaleField, EncoderName, EncoderWeightsField,
                                Profile, RunConfig, TrainRunConfig, fill_profile)

#: the plain parsers' architectures (``--arch``; :data:`parser_net.networks.PARSERS`)
ParserArch = Literal["deeplab", "attention", "ssnan", "decoder"]

#: CPU: trains from scratch on 2 cores in minutes; GPU: paper-sized (320 px, wider, deeper).
PARSER_PROFILES: dict[str, dict[str, Any]] = {
    "cpu": dict(size=160, width=16, blocks=(1, 1, 1, 1), batch_size=8, head_width=128),
    "gpu": dict(size=320, width=64, blocks=(2, 2, 2, 2), batch_size=16, head_width=512),
}


class ParserTrainConfig(TrainRunConfig):
    """A parser training run (Fang et al., CVPR 2018, sections 3.7, 4.3), fully described
    and saved in every checkpoint.  ``iterations`` steps in all, the last
    ``finetune_iterations`` of them on real labels only; poly learning-rate decay."""

    data: str = Field(description="real labelled dataset (its train split trains, val is scored)")
    out_dir: str = Field(description="run folder (last.pt, config.json, metrics.json)",
                         json_schema_extra={"flag": "--out"})
    synthetic: tuple[str, ...] = Field((), description="synthesized dataset folders to mix in")
    profile: Profile = Field("cpu", description="cpu: 160 px, width 16; gpu: 320 px, width 64, deeper "
                                                "(paper-sized)")
    size: int = Field(None, description="long side of training images in pixels (profile)")
    width: int = Field(None, description="channels of the first residual stage (profile)")
    blocks: tuple[int, int, int, int] = Field(None, description="residual blocks per stage (profile)")
    head_width: int = Field(None, description="channels inside each ASPP branch (profile)")
    batch_size: int = Field(None, description="batch size (profile)")
    arch: ParserArch = Field(
        "deeplab", description="single-scale DeepLab/ASPP, attention to scale (scales 1, 0.75, 0.5), SS-NAN's "
                               "neural aggregation over those scales and two encoder levels, or decoder: ASPP "
                               "fused with the stride-4 features (DeepLabv3+; HTCorrM's parsing encoder)")
    encoder: EncoderName = EncoderField
    encoder_weights: str = EncoderWeightsField
    encoder_lr_scale: float = EncoderLrScaleField
    model: Literal["parser", "joint"] = Field("parser", description="joint: JPPNet-style parsing + 16-joint pose "
                                                                     "network")
    joint_arch: Literal["jppnet", "pose", "self", "add", "multi", "concat", "mtl", "pil", "htcorrm"] = Field(
        "jppnet", description="joint network: jppnet (parsing + pose with refinement stages); the Parsing "
                              "Induced Learner (pil) and its ablations: pose (pose only), self, add, multi, concat, "
                              "mtl; or htcorrm (parsing, pose and body edges, see --main-task, --fusion)")
    main_task: Literal["parsing", "pose", "edge"] = Field("parsing", description="htcorrm: the main task")
    fusion: Literal["none", "concat", "hnl"] = Field(
        "hnl", description="htcorrm: how the other tasks' features reach the main task (none: main task alone)")
    edge_weight: float = Field(1.0, ge=0, description="htcorrm: weight of the body-edge loss")
    n_real: int | None = Field(None, description="random subset of real people (default: all)")
    n_synthetic: int | None = Field(None, description="random subset of synthetic people (default: all)")
    min_confidence: float = Field(0.0, description="drop synthetic people below this refiner confidence")
    real_fraction: float | None = Field(0.5, description="share of real samples while mixing; negative: pool all")
    synthetic_weight: float = Field(1.0, description="loss weight of synthetic samples")
    soft_targets: bool = Field(False, description="train on the synthetic labels' pasted refiner probabilities "
                                                  "(soft cross-entropy) instead of their argmax; the synthetic "
                                                  "folders need --save-probabilities (plain parsers only)")
    soft_temperature: float = Field(1.0, gt=0, description="soft targets: sharpen (< 1) or flatten (> 1) them as "
                                                           "q^(1/T)")
    match_person_scale: bool = Field(False, description="resize each synthetic photo so that its person's torso, "
                                                         "as a fraction of the long side, is the real train people's "
                                                         "median (within 0.5-2x): for keypoint-only people framed "
                                                         "unlike the labelled ones, e.g. upper-body close-ups")
    iterations: int = Field(3000, description="optimizer steps in all; a larger value on resume extends the run")
    finetune_iterations: int = Field(0, description="final steps on real labels only")
    output_stride: int = Field(8, description="stride of the feature map fed to ASPP (8 or 16)")
    scale_range: tuple[float, float] = Field((0.75, 1.25), description="random rescale range while training")
    flip: bool = Field(True, description="random horizontal flips (left/right classes swapped)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam, or sgd with momentum 0.9")
    lr: float = Field(1e-3, description="base learning rate (poly decay, power 0.9)")
    weight_decay: float = Field(1e-4, description="weight decay")
    seed: int = Field(0, description="seeds the network, the batches and (by default) the subsets")
    subset_seed: int | None = Field(None, description="seed of the n-real / n-synthetic subsets (default: seed)")
    label_set: str = Field("ccp8", description="label set of the real data (synthetic folders must match)")
    checkpoint_every: int = Field(250, description="steps between checkpoints")
    eval_scales: tuple[float, ...] = Field((1.0,), description="test scales of the final val evaluation")
    structure_loss: bool = Field(False, description="SS-JPPNet structure-sensitive parsing loss")
    pose_weight: float = Field(100.0, description="joint network: heatmap loss weight")
    joint_stages: int = Field(1, description="joint network: refinement stages")
    pose_data: str | None = Field(None, description="keypoint dataset scored with PCK@0.2 (never trained on), "
                                                     "e.g. LSP")
    pose_split: str = Field("test", description="split of --pose-data scored")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, values: Any) -> Any:
        values = fill_profile(values, PARSER_PROFILES)
        if isinstance(values, dict) and values.get("subset_seed") is None:
            values = dict(values, subset_seed=values.get("seed", 0))
        return values

    @field_validator("real_fraction")
    @classmethod
    def _pooled(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            return None
        if v is not None and v > 1:
            raise ValueError(f"real_fraction must be in [0, 1] (negative: pool all), got {v}")
        return v

    @field_validator("label_set")
    @classmethod
    def _known_label_set(cls, v: str) -> str:
        if v not in LABEL_SETS:
            raise ValueError(f"unknown label_set {v!r}; known: {sorted(LABEL_SETS)}")
        return v

    @model_validator(mode="after")
    def _finetune_fits(self) -> ParserTrainConfig:
        if self.finetune_iterations > self.iterations:
            raise ValueError(f"finetune_iterations ({self.finetune_iterations}) exceeds iterations "
                             f"({self.iterations})")
        return self

    @model_validator(mode="after")
    def _soft_targets_fit(self) -> ParserTrainConfig:
        if self.soft_targets and (self.model != "parser" or self.structure_loss):
            raise ValueError("soft_targets train the plain parsers' cross-entropy; the joint networks and the "
                             "structure-sensitive loss take label maps")
        return self

    def parser_config(self, num_classes: int):
        """The network's :class:`parser_net.model.ParserConfig` for ``num_classes`` classes
        (ASPP rates scaled to the crop)."""
        from parser_net.model import ParserConfig, scaled_rates     # torch: only when a network is built

        return ParserConfig(num_classes=num_classes, width=self.width, blocks=tuple(self.blocks),
                            output_stride=self.output_stride,
                            aspp_rates=scaled_rates(max(self.crop_hw), self.output_stride),
                            head_width=self.head_width, encoder=self.encoder)

    @property
    def crop_hw(self) -> tuple[int, int]:
        """Training crop (h, w) in pixels: (size, 3/4 size)."""
        return self.size, round(self.size * 3 / 4)


class PredictConfig(RunConfig):
    """A ``partsynth predict`` run: parse every photo of ``data`` into ``out``."""

    checkpoint: str = Field(description="parser or joint checkpoint (last.pt of train-parser; with --engine onnx "
                                        "the .onnx of export-model)")
    data: str = Field(description="a photo, a folder of photos, or a dataset in any supported layout")
    out: str = Field(description="predictions folder (resumable; a partsynth dataset)")
    scales: tuple[float, ...] = Field((1.0,), min_length=1, description="test scales, e.g. 0.75 1 1.25")
    flip: bool = Field(False, description="also parse the mirrored photo")
    overlays: bool = Field(False, description="also write JPEG overlays (label map, keypoints) of each photo")
    save_probabilities: bool = Field(False, description="also write class probabilities (uint8 npz)")
    chunk_size: int = Field(32, ge=1, description="photos per flow task on average (speed only)")
    batch_size: int = Field(8, ge=1, description="photos per forward pass (speed only; same-shaped inputs are batched)")
    workers: int = Field(1, ge=1, description="flow tasks at a time")
    threads_per_task: int = Field(2, ge=1, description="torch (or ONNX Runtime) threads per task")
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu or cuda")
    engine: Literal["torch", "onnx"] = Field("torch", description="torch, or ONNX Runtime on the CPU "
                                                                  "(partsynth[onnx])")

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not s > 0 for s in v):
            raise ValueError(f"scales must be > 0, got {list(v)}")
        return v
