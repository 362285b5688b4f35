"""Building a parsing network from its saved description, and loading a parser checkpoint.

Kept apart from training and evaluation so that both import it (no import loop)."""
from __future__ import annotations

from dataclasses import asdict
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


#: the plain parsers (``kind`` parser) by ``arch``
PARSERS = {"deeplab": DeepLab, "attention": AttentionToScale, "ssnan": SSNAN, "decoder": EncoderDecoder}


def network_record(kind: str, arch: str, pcfg: ParserConfig, joint_stages: int, size: int,
                   joint_arch: str = "jppnet", main_task: str = "parsing", fusion: str = "hnl") -> dict:
    """What a checkpoint stores to rebuild the network (:func:`build_network`) and to feed it
    images at the training size (long side ``size`` pixels).  ``joint_arch``, ``main_task``
    and ``fusion`` matter for joint networks only (records without them: JPPNet)."""
    return {"kind": kind, "arch": arch, "parser": asdict(pcfg), "joint_stages": joint_stages, "size": size,
            "joint_arch": joint_arch, "main_task": main_task, "fusion": fusion}


def _parser_config(net: dict) -> ParserConfig:
    pc = dict(net["parser"])
    pc["blocks"], pc["aspp_rates"], pc["scales"] = tuple(pc["blocks"]), tuple(pc["aspp_rates"]), tuple(pc["scales"])
    return ParserConfig(**pc)


def build_network(net: dict) -> torch.nn.Module:
    """The untrained network a :func:`network_record` describes: a parser (``kind`` parser:
    ``arch`` deeplab, attention, ssnan or decoder) or a joint network (``kind`` joint: ``joint_arch``
    jppnet, :class:`parser_net.joint.JointNet`; one of :data:`parser_net.pil.POSE_ARCHS`,
    :class:`parser_net.pil.ParsingPoseNet`; or htcorrm, :class:`parser_net.htcorrm.HTCorrM`
    with ``main_task`` and ``fusion``).  Raises ValueError for an unknown architecture."""
    pcfg = _parser_config(net)
    if net["kind"] != "joint":
        if net["arch"] not in PARSERS:
            raise ValueError(f"unknown parser {net['arch']!r}; choose from {sorted(PARSERS)}")
        return PARSERS[net["arch"]](pcfg)
    jcfg = JointConfig(pcfg, stages=net["joint_stages"])
    arch = net.get("joint_arch", "jppnet")
    if arch == "jppnet":
        return JointNet(jcfg)
    if arch == "htcorrm":
        return HTCorrM(jcfg, net["main_task"], net["fusion"])
    return ParsingPoseNet(jcfg, arch)


def network_outputs(net: dict) -> tuple[str, ...]:
    """The output keys of the network a record describes, among parsing, heatmaps, edges."""
    arch = net.get("joint_arch", "jppnet")
    if net["kind"] != "joint":
        return ("parsing",)
    if arch == "jppnet":
        return "parsing", "heatmaps"
    if arch == "htcorrm":
        return tuple(OUTPUT[t] for t in (TASKS if net["fusion"] != "none" else (net["main_task"],)))
    return ("parsing", "heatmaps") if POSE_ARCHS[arch] else ("heatmaps",)


def heatmap_stride(net: dict) -> int:
    """Input pixels per heatmap cell of a network's record: HTCorrM's pose encoder
    upsamples to stride 4; the others predict at the output stride."""
    return FEATURE_STRIDE if net.get("joint_arch") == "htcorrm" else int(net["parser"]["output_stride"])


def load_parser(path: str | Path, device: str = "cpu", parsing: bool = True) -> tuple[torch.nn.Module, Checkpoint]:
    """A trained parser or joint network in eval mode on ``device`` and its :class:`Checkpoint`
    (``ckpt.network["size"]`` is the training long side, ``ckpt.network["kind"]`` parser or
    joint).  Raises: CheckpointError naming the file when it is not a parser checkpoint;
    ConfigError when ``parsing`` is asked for and the network has no parsing output."""
    ckpt = load_checkpoint(path, kind="parser")
    net = ckpt.network
    if parsing and "parsing" not in network_outputs(net):
        raise ConfigError(f"{path}: the network ({net['joint_arch']}, outputs {', '.join(network_outputs(net))}) "
                          "has no parsing output")
    model = build_network(net)
    model.load_state_dict(ckpt.model)
    return model.to(resolve_device(device)).eval(), ckpt
