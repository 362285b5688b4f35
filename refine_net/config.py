"""The refiner's run configs: training (:class:`RefinerTrainConfig`) and label synthesis
(:class:`SynthConfig`).

Each is one frozen pydantic model: the CLI options (:mod:`flows.options`), the Prefect
flow parameters and the ``config`` saved in every checkpoint and run folder are all made
from it.  Profiles are named presets of the network sizes (:data:`REFINER_PROFILES`): a
profile fills the sizes that are not given explicitly.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import ConfigError

#: U-Net sizes: CPU (128 px, 32 filters, depth 5) and the paper's (256 px, 64, depth 8).
REFINER_PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"size": 128, "base_filters": 32, "depth": 5},
    "gpu": {"size": 256, "base_filters": 64, "depth": 8},
}

Profile = Literal["cpu", "gpu"]
DeviceName = Literal["auto", "cpu", "cuda"]

#: ``--encoder`` of the parsers and the refiner: trained from scratch, or an ImageNet
#: EfficientNet-Lite (refine_net.encoders)
EncoderName = Literal["scratch", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
EncoderField = Field("scratch", description="scratch (the residual encoder from random weights) or an "
                                            "EfficientNet-Lite encoder (ImageNet weights: --encoder-weights)")
EncoderWeightsField = Field("imagenet", description="initial weights of a pretrained encoder: imagenet (from the "
                                                    "partsynth[pretrained] wheels), none (random: the same "
                                                    "architecture from scratch) or the path of a state dict")
EncoderLrScaleField = Field(1.0, gt=0, description="learning rate of a pretrained encoder's parameters, as a fraction "
                                                   "of --lr (the rest of the network takes --lr)")


class RunConfig(BaseModel):
    """Base of every run config: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def fill_profile(values: Any, profiles: dict[str, dict[str, Any]]) -> Any:
    """Before-validation hook: the sizes ``values`` leaves unset (None or absent) come
    from ``profiles[values["profile"]]`` (default ``cpu``).  Raises ConfigError for an
    unknown profile."""
    if not isinstance(values, dict):
        return values
    profile = values.get("profile") or "cpu"
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(profiles)}")
    out = dict(values, profile=profile)
    for key, value in profiles[profile].items():
        if out.get(key) is None:
            out[key] = value
    return out


class TrainRunConfig(RunConfig):
    """Fields every training run has: how strict it is with bad items, and where it runs."""

    strict: bool = Field(False, description="fail instead of skipping bad items of the datasets")
    threads: int | None = Field(None, description="torch intra-op threads")
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu or cuda")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision of the forward pass: bf16 (GPUs "
                                                                  "and recent CPUs), fp16 (GPUs, with gradient "
                                                                  "scaling) or off")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step on each process (gradient "
                                                 "accumulation: the batch size stays the global one)")


class RefinerTrainConfig(TrainRunConfig):
    """A refinement training run (Fang et al., CVPR 2018, sections 3.5-3.6), fully described
    and saved in every checkpoint.  The ``train`` split trains, ``val`` is scored."""

    data: str = Field(description="labelled dataset with keypoints (train/val splits)")
    extra_data: tuple[str, ...] = Field((), description="further labelled folders whose people all train (e.g. "
                                                        "people corrected with import-labels); val stays data's")
    out_dir: str = Field(description="run folder (last.pt, config.json, history.json)",
                         json_schema_extra={"flag": "--out"})
    profile: Profile = Field("cpu", description="cpu: 128 px, 32 filters, depth 5; gpu: 256 px, 64 filters, "
                                                "depth 8 (the paper)")
    size: int = Field(None, description="crop side in pixels (profile)")
    base_filters: int = Field(None, description="U-Net filters of the first level (profile)")
    depth: int = Field(None, description="U-Net stride-2 levels (profile)")
    encoder: EncoderName = EncoderField
    encoder_weights: str = EncoderWeightsField
    encoder_lr_scale: float = EncoderLrScaleField
    margin: float = Field(0.25, description="crop box enlargement per side, fraction of the keypoint box")
    k: int = Field(3, description="neighbours averaged into each prior")
    n: int = Field(5, description="training priors draw k of the n nearest neighbours")
    use_prior: bool = Field(True, description="feed the prior; --no-prior trains the image-only baseline "
                                              "(paper Fig. 7)", json_schema_extra={"flag": "--prior"})
    prior_source: Literal["morph", "partition", "both"] = Field(
        "morph", description="the prior fed to the refiner: morph (the k nearest labelled people morphed onto the "
                             "pose, the paper's), partition (the person's own mask split by its skeleton; pascal6 "
                             "only, needs person masks) or both (the morph within the mask, gaps filled by the "
                             "partition)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="for data without a train split (OpenPose folders, "
                                                                  "PASCAL-Part): this share of the people, drawn by "
                                                                  "a hash of their id, is val, the rest train")
    loss: Literal["l1", "ce"] = Field("ce", description="ce (measured best on CCP) or l1 (the paper)")
    epochs: int = Field(20, description="epochs; a larger value on resume extends the run")
    batch_size: int = Field(8, description="batch size")
    lr: float = Field(1e-3, description="Adam learning rate (1e-3 with beta1 0.9 measured best on CCP; "
                                        "pix2pix: 2e-4, 0.5)")
    beta1: float = Field(0.9, description="Adam beta1")
    lr_schedule: Literal["constant", "poly"] = Field(
        "constant", description="constant, or poly: lr * (1 - epoch / epochs) ** 0.9 set at each epoch's start")
    max_minutes: float | None = Field(None, description="stop after the epoch that crosses this wall-time budget")
    dropout_blocks: int = Field(2, description="innermost decoder blocks with dropout 0.5")
    seed: int = Field(0, description="seeds torch, the k-of-n draws and the augmentation")
    label_set: str | None = Field(None, description="ccp8/ccp59 for CCP, pascal6/pascal10 for PASCAL-Part")
    jitter: bool = Field(True, description="random crop-box jitter while training")
    flip: bool = Field(True, description="random horizontal flips (left/right classes swapped)")

    @model_validator(mode="before")
    @classmethod
    def _profile(cls, values: Any) -> Any:
        return fill_profile(values, REFINER_PROFILES)

    @model_validator(mode="after")
    def _partition_is_pascal6(self) -> "RefinerTrainConfig":
        if self.prior_source != "morph" and self.label_set != "pascal6":
            raise ConfigError(f"--prior-source {self.prior_source} partitions body parts: it needs --label-set pascal6")
        if self.prior_source != "morph" and not self.use_prior:
            raise ConfigError(f"--prior-source {self.prior_source} with --no-prior: the refiner would not see it")
        return self


def missing_onnx(modules: tuple[str, ...] = ("onnx", "onnxruntime")) -> list[str]:
    """Which of ``modules`` (the exporter ``onnx``, ``onnxruntime``) are not installed."""
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_onnx(option: str, modules: tuple[str, ...] = ("onnx", "onnxruntime")) -> None:
    """Raise ConfigError naming ``option`` when one of ``modules`` (default: the exporter
    onnx and ONNX Runtime) is not installed, so that a run asking for ONNX stops before it
    trains anything."""
    missing = missing_onnx(modules)
    if missing:
        raise ConfigError(f"{option} needs {' and '.join(missing)}: pip install 'partsynth[onnx]'")


class SynthConfig(RunConfig):
    """A synthesis run (Fang et al., CVPR 2018, section 5): label every keypoint-only person
    of ``data`` into the dataset folder ``out``."""

    checkpoint: str | None = Field(None, description="refiner checkpoint (last.pt of train-refiner); none with "
                                                     "--labels pascal6: body parts from each person's own mask and "
                                                     "skeleton, no refiner")
    labels: Literal["pascal6"] | None = Field(None, description="pascal6 without --checkpoint: the partition labeller "
                                                                "(each person's mask split by its skeleton into head, "
                                                                "torso, upper/lower arms and legs); with a checkpoint "
                                                                "it must be the refiner's label set")
    data: str = Field(description="dataset (any supported layout) whose people without labels get labels")
    out: str = Field(description="output dataset folder (resumable, cached)")
    bank_data: str | None = Field(None, description="labelled bank (default: the refiner's training data)")
    extra_bank_data: tuple[str, ...] = Field((), description="further labelled folders joined to the bank, e.g. "
                                                            "people corrected with import-labels")
    bank_split: str | None = Field("train", description="bank split for priors ('all' or none: every person)")
    k: int = Field(3, description="nearest neighbours per prior")
    keypoint_margin: float = Field(0.5, description="skip people with a joint farther outside the image than this "
                                                    "fraction of its longer side")
    max_bone_ratio: float = Field(10.0, description="skip people with a bone longer than this many times their "
                                                    "median bone (implausible keypoints)")
    layout: str | None = Field(None, description="force the layout of --data instead of detecting it")
    save_probabilities: bool = Field(False, description="also write per-person crop probabilities")
    support_dilation: int | None = Field(None, ge=0, description="clip each label to its prior's support dilated "
                                                                  "by this many crop pixels (none: no clipping)")
    min_pixel_confidence: float = Field(0.0, ge=0.0, le=1.0,
                                        description="mark a person's pixels whose refined class probability is "
                                                    "below this as ignore (255): parsers then skip them")
    person_masks: str | None = Field(None, description="keypoints folder (partsynth keypoints) of the same photos: "
                                                       "each label is clipped to its person's mask (people read "
                                                       "from a keypoints folder use their own masks)")
    person_mask_mode: Literal["fill", "clip", "off"] = Field(
        "fill", description="with person masks: clip each label to its person's mask and give the mask's pixels "
                            "left background the nearest part's class (fill), only clip (clip), or ignore the "
                            "masks (off)")
    partial_bodies: bool = Field(True, description="label people without pelvis or thorax (upper-body shots, people "
                                                   "cut by the border) on the joints they have; where their missing "
                                                   "joints would be is ignore (255)")
    relabel: bool = Field(False, description="label every person, labelled ones too (their labels are ignored), "
                                             "to score synthesis against ground truth")
    split: str | None = Field(None, description="label only the people of this split (default: every split)")
    mirror_average: bool = Field(False, description="average the refiner's class probabilities over each crop and "
                                                    "its mirror image (left/right classes swapped)")
    threads_per_task: int = Field(1, description="torch (or ONNX Runtime) threads per worker")
    batch_size: int = Field(8, ge=1, description="people per refiner forward pass (speed only: labels are the "
                                                "same)")
    chunk_size: int = Field(64, ge=1, description="images per flow task on average (speed only; adding or "
                                                 "removing an image changes only its own chunk)")
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu or cuda")
    engine: Literal["torch", "onnx"] = Field("torch", description="run the refiner with torch, or with ONNX Runtime "
                                             "on the CPU (partsynth[onnx]; the checkpoint is exported once to "
                                             "<checkpoint>.onnx beside it)")

    @model_validator(mode="after")
    def _labeller(self) -> "SynthConfig":
        if self.checkpoint is None and self.labels is None:
            raise ConfigError("synthesis needs --checkpoint (a refiner), or --labels pascal6 for body parts from "
                              "each person's mask and skeleton")
        return self

    @model_validator(mode="after")
    def _onnx_on_the_cpu(self) -> "SynthConfig":
        if self.engine == "onnx" and self.device == "cuda":
            raise ConfigError("--engine onnx runs on the CPU; drop --device cuda or use --engine torch")
        if self.engine == "onnx":
            require_onnx("--engine onnx")
        return self

    @model_validator(mode="before")
    @classmethod
    def _all_splits(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("bank_split") == "all":
            values = dict(values, bank_split=None)
        return values

