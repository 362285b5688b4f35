"""SS-NAN: the neural aggregation's equations, shapes, gradients and deep supervision."""
import pytest
import torch

from checks import assert_gradients_reach
from parser_net.losses import parsing_loss
from parser_net.model import ParserConfig
from parser_net.ssnan import SSNAN, NeuralAggregation
from parser_net.structure import MERGED_REGIONS, structure_sensitive_loss

TINY = dict(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2))


def test_aggregation_is_a_per_pixel_convex_combination_shared_by_classes():
    torch.manual_seed(0)
    agg = NeuralAggregation(n_maps=3, num_classes=4, hidden=6)
    maps = torch.randn(2, 3, 4, 5, 6)
    fused, w = agg(maps)
    assert fused.shape == (2, 4, 5, 6) and w.shape == (2, 3, 5, 6)
    assert torch.allclose(w.sum(1), torch.ones(2, 5, 6)) and (w >= 0).all()
    assert torch.allclose(fused, (w[:, :, None] * maps).sum(1), atol=1e-6)     # Eq. 2, one weight for all classes
    lo, hi = maps.min(1).values, maps.max(1).values
    assert (fused >= lo - 1e-5).all() and (fused <= hi + 1e-5).all()          # inside the convex hull
    # equal maps: whatever the weights, the fused map is that map
    same = maps[:, :1].expand(-1, 3, -1, -1, -1)
    assert torch.allclose(agg(same)[0], maps[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="expected 3 maps"):
        agg(maps[:, :2])


@pytest.mark.parametrize("stride", [8, 16])
def test_ssnan_shapes_and_gradients_reach_every_part(stride):
    torch.manual_seed(0)
    model = SSNAN(ParserConfig(**TINY, output_stride=stride))
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    assert out["parsing"].shape == (2, 8, 64, 48)
    assert out["parsing_scales"].shape == (6, 2, 8, 64, 48)                    # 3 scales x 2 levels
    w = out["aggregation_weights"]
    assert w.shape == (2, 6, 64 // stride, 48 // stride)
    assert torch.allclose(w.sum(1), torch.ones_like(w[:, 0]))
    target = torch.randint(0, 8, (2, 64, 48))
    loss = parsing_loss(out, target, pixel_loss=lambda lg, t, sw: structure_sensitive_loss(
        lg, t, MERGED_REGIONS["ccp8"], sw))
    loss.backward()
    assert torch.isfinite(loss)
    assert_gradients_reach([("skip", model.skip), ("aggregate", model.aggregate), ("aspp", model.deeplab.aspp),
                            ("stem", model.deeplab.encoder.stem)])


def test_deep_supervision_counts_every_map():
    """parsing_loss = loss(fused) + sum over the S x L maps, each the plain CE."""
    torch.manual_seed(0)
    model = SSNAN(ParserConfig(**TINY)).eval()
    out = model(torch.randn(1, 3, 32, 32))
    target = torch.randint(0, 8, (1, 32, 32))
    ce = torch.nn.functional.cross_entropy
    expected = ce(out["parsing"], target) + sum(ce(m, target) for m in out["parsing_scales"])
    assert torch.allclose(parsing_loss(out, target), expected, atol=1e-5)


def test_ssnan_needs_scale_one_first():
    with pytest.raises(ValueError, match="start with 1.0"):
        SSNAN(ParserConfig(**TINY, scales=(0.5, 1.0)))
