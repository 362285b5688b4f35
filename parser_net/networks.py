"""Building a parsing network from its saved description, and loading a parser checkpoint.

Kept apart from training and evaluation so that both import it (no import loop)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from parser_net.decoder import EncoderDecoder
from parser_net.htcorrm import FEATURE_STRIDE, OUTPUT, TASKS, HTCorrM
from parser_net.joint import JointConfig, JointNet
from parser_net.model import AttentionToScale, DeepLab, ParserConfig
from parser_net.pil import POSE_ARCHS, ParsingPoseNet
from parser_net.ssnan import SSNAN
from pipeline.errors import ConfigError
from refine_net.checkpoint import Checkpoint, load_checkpoint
from refine_net.device import resolve_device


@dataclass(frozen=True)
class NetworkRecord:
    """What a parser checkpoint stores to rebuild its network and to feed it images (saved
    as a plain dict, :meth:`to_dict`, in the checkpoint's ``network``).

    Attributes:
        kind: ``parser`` (a plain parser) or ``joint`` (parsing and/or pose outputs).
        arch: the parser's head, a key of :data:`PARSERS` (also the trunk of joint networks).
        parser: the parser's :class:`parser_net.model.ParserConfig` (encoder included).
        joint_stages: refinement stages of a JPPNet-style joint network.
        size: the training long side in pixels (images are resized to it).
        joint_arch: for ``kind`` joint, a key of :data:`JOINT_ARCHITECTURES`.
        main_task, fusion: HTCorrM's main task and fusion.
    """

    kind: str
    arch: str
    parser: ParserConfig
    joint_stages: int
    size: int
    joint_arch: str = "jppnet"
    main_task: str = "parsing"
    fusion: str = "hnl"

    @classmethod
    def from_dict(cls, net: dict) -> NetworkRecord:
        """The record of a checkpoint's ``network`` dict; records saved before joint
        architectures, HTCorrM or encoders existed get their defaults (JPPNet, scratch)."""
        pc = dict(net["parser"])
        pc["blocks"], pc["aspp_rates"], pc["scales"] = tuple(pc["blocks"]), tuple(pc["aspp_rates"]), tuple(pc["scales"])
        return cls(net["kind"], net["arch"], ParserConfig(**pc), int(net["joint_stages"]), int(net["size"]),
                   net.get("joint_arch") or "jppnet", net.get("main_task") or "parsing", net.get("fusion") or "hnl")

    def to_dict(self) -> dict:
        return dict(asdict(self), parser=asdict(self.parser))

    @property
    def joint_config(self) -> JointConfig:
        return JointConfig(self.parser, stages=self.joint_stages)


@dataclass(frozen=True)
class Architecture:
    """A registry entry: how to build a network from its record, the outputs it has
    (among parsing, heatmaps, edges) and its heatmaps' stride (None: the parser's output
    stride)."""

    build: Callable[[NetworkRecord], torch.nn.Module]
    outputs: Callable[[NetworkRecord], tuple[str, ...]]
    heatmap_stride: int | None = None


def _parsing(record: NetworkRecord) -> tuple[str, ...]:
    return ("parsing",)


#: the plain parsers (``kind`` parser) by ``arch``
PARSERS: dict[str, Architecture] = {
    "deeplab": Architecture(lambda r: DeepLab(r.parser), _parsing),
    "attention": Architecture(lambda r: AttentionToScale(r.parser), _parsing),
    "ssnan": Architecture(lambda r: SSNAN(r.parser), _parsing),
    "decoder": Architecture(lambda r: EncoderDecoder(r.parser), _parsing),
}

#: the joint networks (``kind`` joint) by ``joint_arch``: JPPNet, HTCorrM, and the Parsing
#: Induced Learner's family (:data:`parser_net.pil.POSE_ARCHS`)
JOINT_ARCHITECTURES: dict[str, Architecture] = {
    "jppnet": Architecture(lambda r: JointNet(r.joint_config), lambda r: ("parsing", "heatmaps")),
    "htcorrm": Architecture(lambda r: HTCorrM(r.joint_config, r.main_task, r.fusion),
                            lambda r: tuple(OUTPUT[t] for t in (TASKS if r.fusion != "none" else (r.main_task,))),
                            heatmap_stride=FEATURE_STRIDE),
    **{name: Architecture(lambda r, name=name: ParsingPoseNet(r.joint_config, name),
                          lambda r, parses=parses: ("parsing", "heatmaps") if parses else ("heatmaps",))
       for name, parses in POSE_ARCHS.items()},
}


def network_record(kind: str, arch: str, pcfg: ParserConfig, joint_stages: int, size: int,
                   joint_arch: str = "jppnet", main_task: str = "parsing", fusion: str = "hnl") -> dict:
    """The ``network`` dict a checkpoint stores (:class:`NetworkRecord`): what rebuilds the
    network (:func:`build_network`) and feeds it images at the training size (long side
    ``size`` pixels).  ``joint_arch``, ``main_task`` and ``fusion`` matter for joint
    networks only."""
    return NetworkRecord(kind, arch, pcfg, joint_stages, size, joint_arch, main_task, fusion).to_dict()


def architecture(net: dict | NetworkRecord) -> tuple[Architecture, NetworkRecord]:
    """The registry entry of a network record (or its dict) and the typed record.
    Raises ValueError naming the choices for an unknown architecture."""
    record = net if isinstance(net, NetworkRecord) else NetworkRecord.from_dict(net)
    registry, key = (JOINT_ARCHITECTURES, record.joint_arch) if record.kind == "joint" else (PARSERS, record.arch)
    if key not in registry:
        raise ValueError(f"unknown {record.kind} architecture {key!r}; choose from {sorted(registry)}")
    return registry[key], record


def build_network(net: dict | NetworkRecord) -> torch.nn.Module:
    """The untrained network a record describes: a parser (``kind`` parser, ``arch`` one of
    :data:`PARSERS`) or a joint network (``kind`` joint, ``joint_arch`` one of
    :data:`JOINT_ARCHITECTURES`: JPPNet, :class:`parser_net.joint.JointNet`; HTCorrM with
    ``main_task`` and ``fusion``; one of :data:`parser_net.pil.POSE_ARCHS`,
    :class:`parser_net.pil.ParsingPoseNet`).  Raises ValueError for an unknown architecture."""
    arch, record = architecture(net)
    return arch.build(record)


def network_outputs(net: dict | NetworkRecord) -> tuple[str, ...]:
    """The output keys of the network a record describes, among parsing, heatmaps, edges."""
    arch, record = architecture(net)
    return arch.outputs(record)


def heatmap_stride(net: dict | NetworkRecord) -> int:
    """Input pixels per heatmap cell of a network's record: HTCorrM's pose encoder
    upsamples to stride 4; the others predict at the output stride."""
    arch, record = architecture(net)
    return arch.heatmap_stride or int(record.parser.output_stride)


def load_parser(path: str | Path, device: str = "cpu", parsing: bool = True) -> tuple[torch.nn.Module, Checkpoint]:
    """A trained parser or joint network in eval mode on ``device`` and its :class:`Checkpoint`
    (``ckpt.network["size"]`` is the training long side, ``ckpt.network["kind"]`` parser or
    joint).  Raises: CheckpointError naming the file when it is not a parser checkpoint;
    ConfigError when ``parsing`` is asked for and the network has no parsing output."""
    ckpt = load_checkpoint(path, kind="parser")
    arch, record = architecture(ckpt.network)
    outputs = arch.outputs(record)
    if parsing and "parsing" not in outputs:
        raise ConfigError(f"{path}: the network ({record.joint_arch}, outputs {', '.join(outputs)}) "
                          "has no parsing output")
    model = arch.build(record)
    model.load_state_dict(ckpt.model)
    return model.to(resolve_device(device)).eval(), ckpt
