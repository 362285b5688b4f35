"""The encoder-decoder parser (arch decoder): shapes, gradients, and that it is HTCorrM's
parsing branch trained alone."""
import pytest
import torch

from checks import assert_gradients_reach
from parser_net.decoder import EncoderDecoder
from parser_net.htcorrm import HTCorrM
from parser_net.joint import JointConfig
from parser_net.losses import parsing_loss
from parser_net.model import ParserConfig

TINY = dict(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2, 3, 4))


@pytest.mark.parametrize("stride", [8, 16])
def test_decoder_shapes_and_gradients_reach_every_part(stride):
    torch.manual_seed(0)
    model = EncoderDecoder(ParserConfig(**TINY, output_stride=stride))
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    assert set(out) == {"parsing"} and out["parsing"].shape == (2, 8, 64, 48)
    loss = parsing_loss(out, torch.randint(0, 8, (2, 64, 48)))
    loss.backward()
    assert_gradients_reach([("stem", model.encoder.stem), ("aspp", model.decoder.branches),
                            ("fuse", model.decoder.fuse), ("classifier", model.classifier)])


def test_decoder_resolves_at_stride_four_not_at_the_output_stride():
    """A one-pixel change of the input moves the logits of its stride-4 cell's neighbourhood
    hundreds of times more than far away: the skip from G1 carries local detail past the
    stride-8 top (the DeepLab's global pooling branch spreads it: a ratio about 1 there)."""
    torch.manual_seed(0)
    model = EncoderDecoder(ParserConfig(**TINY)).eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., 30:32, 30:32] += 5.0
    with torch.no_grad():
        d = (model(x)["parsing"] - model(y)["parsing"]).abs().sum(1)[0]
    assert d[28:34, 28:34].mean() > 50 * d[:8, :8].mean()


def test_decoder_is_htcorrm_parsing_alone():
    """Same parameters as HTCorrM with main task parsing and no fusion, and the same output
    once its weights are copied over (the row measured in docs/results.md)."""
    torch.manual_seed(0)
    pc = ParserConfig(**TINY)
    ht = HTCorrM(JointConfig(pc, pose_width=pc.head_width), "parsing", "none").eval()
    dec = EncoderDecoder(pc).eval()
    rename = {"backbone.": "encoder.", "encoders.parsing.": "decoder.", "classifiers.parsing.": "classifier."}
    state = {}
    for k, v in ht.state_dict().items():
        prefix = next(p for p in rename if k.startswith(p))
        state[rename[prefix] + k[len(prefix):]] = v
    dec.load_state_dict(state)              # strict: the same keys and shapes
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.allclose(dec(x)["parsing"], ht(x)["parsing"], atol=1e-6)
