"""Building a parsing network from its saved description, and loading a parser checkpoint.

Kept apart from training and evaluation so that both import it (no import loop)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from parser_net.joint import JointConfig, JointNet
from parser_net.model import ParserConfig, build_parser
from refine_net.checkpoint import Checkpoint, load_checkpoint
from refine_net.device import resolve_device


def build_network(kind: str, arch: str, pcfg: ParserConfig, joint_stages: int = 1) -> torch.nn.Module:
    """A parser (``kind="parser"``: ``arch`` deeplab or attention) or the joint parsing +
    pose network (``kind="joint"``, :class:`parser_net.joint.JointNet`)."""
    if kind == "joint":
        return JointNet(JointConfig(pcfg, stages=joint_stages))
    return build_parser(arch, pcfg)


def network_record(kind: str, arch: str, pcfg: ParserConfig, joint_stages: int, size: int) -> dict:
    """What a checkpoint stores to rebuild the network (:func:`load_parser`) and to feed it
    images at the training size (long side ``size`` pixels)."""
    return {"kind": kind, "arch": arch, "parser": asdict(pcfg), "joint_stages": joint_stages, "size": size}


def load_parser(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """A trained parser or joint network in eval mode on ``device`` and its :class:`Checkpoint`
    (``ckpt.network["size"]`` is the training long side, ``ckpt.network["kind"]`` parser or
    joint).  Raises: CheckpointError naming the file when it is not a parser checkpoint."""
    ckpt = load_checkpoint(path, kind="parser")
    net = ckpt.network
    pc = dict(net["parser"])
    pc["blocks"], pc["aspp_rates"], pc["scales"] = tuple(pc["blocks"]), tuple(pc["aspp_rates"]), tuple(pc["scales"])
    model = build_network(net["kind"], net["arch"], ParserConfig(**pc), net["joint_stages"])
    model.load_state_dict(ckpt.model)
    return model.to(resolve_device(device)).eval(), ckpt
