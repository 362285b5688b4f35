"""Parser networks build from a registry keyed by architecture, from a typed record that old
checkpoints' dicts still give."""
import typing
from dataclasses import asdict

import pytest
import torch

from parser_net.config import ParserArch, ParserTrainConfig
from parser_net.joint import JointNet
from parser_net.networks import (JOINT_ARCHITECTURES, PARSERS, NetworkRecord, build_network, heatmap_stride,
                                 network_outputs, network_record)


def test_the_registry_holds_every_architecture_the_config_offers():
    assert set(PARSERS) == set(typing.get_args(ParserArch))
    joint = ParserTrainConfig.model_fields["joint_arch"].annotation
    assert set(JOINT_ARCHITECTURES) == set(typing.get_args(joint))


def test_an_old_record_builds_the_network_it_was_saved_with():
    pcfg = ParserTrainConfig(data="x", out_dir="y", width=4, blocks=(1, 1, 1, 1), head_width=8).parser_config(5)
    old = {"kind": "joint", "arch": "deeplab", "parser": asdict(pcfg), "joint_stages": 1, "size": 32}
    del old["parser"]["encoder"]                               # saved before encoders, joint archs and HTCorrM
    record = NetworkRecord.from_dict(old)
    assert (record.joint_arch, record.parser.encoder) == ("jppnet", "scratch")
    assert isinstance(build_network(old), JointNet) and network_outputs(old) == ("parsing", "heatmaps")
    assert heatmap_stride(old) == pcfg.output_stride
    assert NetworkRecord.from_dict(record.to_dict()) == record
    new = network_record("joint", "deeplab", pcfg, 1, 32, "htcorrm", "pose", "none")
    assert network_outputs(new) == ("heatmaps",) and heatmap_stride(new) == 4
    out = build_network(network_record("parser", "decoder", pcfg, 1, 32))(torch.zeros(1, 3, 32, 24))
    assert out["parsing"].shape[:2] == (1, 5)
    with pytest.raises(ValueError, match=r"unknown joint architecture 'x'; choose from \['add', "):
        build_network(dict(old, joint_arch="x"))
