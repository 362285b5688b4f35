"""The main job's config (:class:`ExperimentConfig`) and its presets, apart from the flow so
that the command line can build it without importing Prefect."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from parser_net.config import ParserTrainConfig
from pipeline.errors import ConfigError
from refine_net.config import DeviceName, Profile, RefinerTrainConfig, RunConfig, SynthConfig

#: what each preset trains, and how long (CPU profile); the data comes from ``preset_config``
PRESETS: dict[str, dict[str, Any]] = {
    "demo": dict(refiner_epochs=6, parser_iterations=300, finetune_iterations=100),
    # LSP's synthetic people hurt the CCP parser, CCP's own do not (docs/results.md, issue 14)
    "ccp": dict(refiner_epochs=20, parser_iterations=1500, finetune_iterations=500, photos_in_grids=False,
                parser_synthetic=("ccp",)),
}


class ExperimentConfig(RunConfig):
    """The main job, fully described: the sub-runs' configs are derived from it
    (:meth:`refiner`, :meth:`synthesis`, :meth:`parser`) with the sizes of ``profile``."""

    labelled: str = Field(description="labelled dataset: trains the refiner and the parsers; val is scored")
    keypoint_only: tuple[str, ...] = Field(description="datasets whose keypoint-only people get synthetic labels")
    parser_synthetic: tuple[str, ...] | None = Field(
        None, description="names of the keypoint-only sets (folder names) whose synthetic people train the "
                          "semi-supervised parser (default: all)")
    work: str = Field(description="run folder: refiner, synthesized sets, parsers (default data/runs/PRESET)")
    profile: Profile = Field("cpu", description="network sizes of every sub-run (cpu or gpu)")
    refiner_epochs: int = Field(20, description="refiner training epochs")
    parser_iterations: int = Field(1500, description="optimizer steps of each parser")
    finetune_iterations: int = Field(500, description="final real-only steps of the semi-supervised parser")
    threads: int = Field(2, description="torch threads and synthesis workers")
    score_synthesis: bool = Field(True, description="also label the val people as if keypoint-only and score the "
                                                    "synthetic labels against their ground truth")
    photos_in_grids: bool = Field(True, description="show the photographs in the prediction grid")
    reports: str = Field("reports", description="report folder root (reports/<flow run name>/)")
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu or cuda")

    def refiner(self) -> RefinerTrainConfig:
        """The refiner's training run (cross-entropy, the measured best on CCP)."""
        return RefinerTrainConfig(data=self.labelled, out_dir=str(Path(self.work) / "refiner"),
                                  epochs=self.refiner_epochs, loss="ce", threads=self.threads,
                                  profile=self.profile, device=self.device)

    @model_validator(mode="after")
    def _known_sources(self) -> ExperimentConfig:
        names = [Path(d).name for d in self.keypoint_only]
        unknown = set(self.parser_synthetic or ()) - set(names)
        if self.parser_synthetic == ():
            raise ValueError("parser_synthetic is empty: name at least one keypoint-only set, or leave it unset")
        if unknown:
            raise ValueError(f"parser_synthetic names {sorted(unknown)} are not keypoint-only sets ({names})")
        return self

    def trains_parser(self, data: str) -> bool:
        """Whether the synthetic people of keypoint-only set ``data`` train the semi-supervised parser."""
        return self.parser_synthetic is None or Path(data).name in self.parser_synthetic

    def synthesis(self, checkpoint: str, data: str) -> SynthConfig:
        """Synthesis of ``data``'s keypoint-only people into ``work/synth/<name>``; the bank
        is the refiner's training data, train split only (val people stay unseen)."""
        return self._synthesis(checkpoint, data, Path(data).name)

    def synthesis_check(self, checkpoint: str) -> SynthConfig:
        """Synthesis of the labelled set's val people as if they had keypoints only (their
        labels ignored), into ``work/synth/val_as_keypoint_only``, to be scored against
        their ground truth (:func:`pipeline.synth_score.score_synthesis`)."""
        return self._synthesis(checkpoint, self.labelled, "val_as_keypoint_only", relabel=True, split="val")

    def _synthesis(self, checkpoint: str, data: str, name: str, **options) -> SynthConfig:
        """Synthesis of ``data`` into ``work/synth/<name>`` with the train-split bank."""
        return SynthConfig(checkpoint=checkpoint, data=data, out=str(Path(self.work) / "synth" / name),
                           bank_split="train", threads_per_task=1, device=self.device, **options)

    def parser(self, name: str, synthetic: tuple[str, ...] = ()) -> ParserTrainConfig:
        """A parser run in ``work/<name>``: real labels only, or mixed with ``synthetic``
        (then fine-tuned on real labels for ``finetune_iterations`` steps)."""
        return ParserTrainConfig(data=self.labelled, out_dir=str(Path(self.work) / name), synthetic=synthetic,
                                 iterations=self.parser_iterations,
                                 finetune_iterations=self.finetune_iterations if synthetic else 0,
                                 threads=self.threads, profile=self.profile, device=self.device)


def preset_values(name: str, data_root: str | None = None) -> dict:
    """The config values of a preset.  ``demo``: the embedded synthetic set (generated
    when absent), a few minutes on 2 cores.  ``ccp``: ``DATA_ROOT/ccp`` (labelled people
    train the refiner and the parsers; val is scored) with the keypoint-only people of
    ``DATA_ROOT/ccp`` and ``DATA_ROOT/lsp`` (both labelled; CCP's train the
    semi-supervised parser).  Raises ConfigError for another name or a
    missing ``data_root``."""
    if name == "demo":
        from pipeline.demo import DEFAULT_DEMO_DIR, ensure_demo

        demo = str(ensure_demo(Path(data_root) if data_root else DEFAULT_DEMO_DIR))
        return dict(PRESETS["demo"], labelled=demo, keypoint_only=(demo,), work=str(Path("data/runs/demo")))
    if name == "ccp":
        if not data_root:
            raise ConfigError("--preset ccp needs --data-root (the folder holding ccp/ and lsp/)")
        root = Path(data_root)
        for sub in ("ccp", "lsp"):
            if not (root / sub).is_dir():
                raise ConfigError(f"{root / sub}: not found (expected the layout of ../shared/data)")
        return dict(PRESETS["ccp"], labelled=str(root / "ccp"), keypoint_only=(str(root / "ccp"), str(root / "lsp")),
                    work=str(Path("data/runs/ccp")))
    raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
