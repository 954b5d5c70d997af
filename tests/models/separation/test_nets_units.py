"""Dense-layer removal in the CWS dense nets and width narrowing in every separator net: shapes
kept, exactness where it is exact, the result rebuilt from its config."""

from __future__ import annotations

import pytest
import torch

from models import registry
from models.separation import SeparationError, Separator
from models.separation.nets import (
    MIN_WIDTH,
    narrow_widths,
    paper_blocks,
    remove_dense_layer,
)


@pytest.mark.parametrize("name", ["cws-mdensenet-unittest", "cws-mmdensenet-unittest"])
def test_removed_layers_keep_shapes_and_rebuild_from_layers(name):
    torch.manual_seed(0)
    m = registry.build(name).eval()
    x = registry.get(name).example_inputs(m)[0]  # (1, 2, T)
    before = list(m.dense_layers)
    blocks = m.net.dense_blocks()
    assert len(before) == len(blocks) and all(n >= 2 for n in before)
    with torch.no_grad():
        y0 = m(x)
    remove_dense_layer(blocks[0][1], 0)  # first layer: later layers lose its inputs
    remove_dense_layer(blocks[1][1], len(blocks[1][1].layers) - 1)  # last: output moves up
    remove_dense_layer(blocks[-1][1], 1)  # the head's last
    after = list(m.dense_layers)
    assert after == [before[0] - 1, before[1] - 1, *before[2:-1], before[-1] - 1]
    with torch.no_grad():
        y1 = m(x)
    assert y1.shape == y0.shape == (1, 2, 2, x.shape[-1])
    assert torch.isfinite(y1).all() and (y1 - y0).abs().max() > 0
    assert m.config["layers"] == after and "block_widths" not in m.config
    rebuilt = Separator(**m.config).eval()
    rebuilt.load_state_dict(m.state_dict())  # strict: every tensor has the same shape
    with torch.no_grad():
        assert torch.equal(rebuilt(x), y1)
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == sum(p.numel() for p in rebuilt.parameters())
    assert n_params < sum(p.numel() for p in registry.build(name).parameters())


def test_removing_a_middle_layer_equals_zeroing_its_activations():
    """Removal is exact: the later layers compute what they computed with the removed layer's
    channels contributing nothing after their BN + ReLU."""
    torch.manual_seed(1)
    m = registry.build("cws-mdensenet-unittest").eval()
    _, block, _ = m.net.dense_blocks()[2]
    x = torch.randn(1, block.in_channels, 8, 8)
    layer2 = block.layers[2]
    lo = block.in_channels + block.growth
    with torch.no_grad():
        feats = [x]
        for layer in block.layers[:2]:
            feats.append(layer(torch.cat(feats, 1)))
        h = layer2[1](layer2[0](torch.cat(feats, 1)))  # BN, ReLU
        h[:, lo : lo + block.growth] = 0
        want = layer2[2](h)
        remove_dense_layer(block, 1)
        feats = [x, block.layers[0](x)]
        got = block.layers[1][2](block.layers[1][1](block.layers[1][0](torch.cat(feats, 1))))
    assert torch.allclose(got, want, atol=1e-6)


def test_invalid_removals_and_layers_are_clear_errors():
    m = registry.build("cws-mdensenet-unittest")
    _, block, _ = m.net.dense_blocks()[0]
    with pytest.raises(SeparationError, match="does not exist"):
        remove_dense_layer(block, 9)
    while len(block.layers) > 1:
        remove_dense_layer(block, 0)
    with pytest.raises(SeparationError, match="at least one layer"):
        remove_dense_layer(block, 0)
    with pytest.raises(SeparationError, match="10 dense blocks"):
        Separator("mdensenet", sample_rate=8000, width=0.25, layers=[2, 2])
    with pytest.raises(SeparationError, match="only the dense nets"):
        Separator("unet5", sample_rate=8000, width=0.0625, layers=[2])
    assert Separator("unet5", sample_rate=8000, width=0.0625).dense_layers == []


def _dead_channel_zero(m: Separator, growths: list[int]) -> None:
    """Make channel 0 of every group that `growths` narrows contribute nothing: its producing
    filters zero, and every bias / BN mean that reads it zero, so BN → ReLU gives 0 there."""
    state = m.net.state_dict()
    with torch.no_grad():
        for g in m.net.width_groups(growths):
            if g.target == g.size:
                continue
            for s in g.slots:
                if s.producer or s.key.endswith((".bias", ".running_mean")):
                    state[s.key].narrow(s.axis, s.offset, 1).zero_()


@pytest.mark.parametrize("name", ["cws-mdensenet-unittest", "cws-mmdensenet-unittest",
                                  "cws-unet5-unittest"])
def test_narrowing_drops_the_weakest_channels_exactly(name):
    """A channel whose filters and readers' offsets are zero adds nothing, so narrowing every
    block by one channel drops exactly those (smallest filter norm) and leaves the stems as
    they were; the narrowed net rebuilds from its config."""
    torch.manual_seed(0)
    m = registry.build(name).eval()
    x = registry.get(name).example_inputs(m)[0]
    before = list(m.block_widths)
    assert (m.dense_layers, before) == paper_blocks(m.arch, m.width)
    growths = [g - 1 if g > MIN_WIDTH else g for g in before]
    _dead_channel_zero(m, growths)
    with torch.no_grad():
        y0 = m(x)
    n0 = sum(p.numel() for p in m.parameters())
    m.narrow(growths)
    assert m.block_widths == growths and m.config["block_widths"] == growths
    assert "layers" not in m.config
    with torch.no_grad():
        y1 = m(x)
    assert y1.shape == y0.shape
    assert float((y1 - y0).abs().max()) < 1e-5
    assert sum(p.numel() for p in m.parameters()) < n0
    rebuilt = Separator(**m.config).eval()
    rebuilt.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), y1)


def test_narrowing_after_removals_and_its_limits():
    torch.manual_seed(2)
    m = registry.build("cws-mdensenet-unittest").eval()
    x = registry.get("cws-mdensenet-unittest").example_inputs(m)[0]
    blocks = m.net.dense_blocks()
    remove_dense_layer(blocks[3][1], 1)
    m.narrow(m.block_widths)  # every target = its size: the identity
    with torch.no_grad():
        y = m(x)
    g = narrow_widths(m.block_widths, 0.5)
    assert g == [max(MIN_WIDTH, v // 2) for v in m.block_widths]
    m.narrow(g)
    with torch.no_grad():
        y2 = m(x)
    assert y2.shape == y.shape and torch.isfinite(y2).all()
    assert Separator(**m.config).dense_layers == m.dense_layers
    while max(m.block_widths) > MIN_WIDTH:
        m.narrow(narrow_widths(m.block_widths, 0.5))
    with pytest.raises(SeparationError, match="at its minimum"):
        narrow_widths(m.block_widths, 0.5)
    with pytest.raises(SeparationError, match="expected 10 values"):
        Separator("mdensenet", sample_rate=8000, width=0.25, block_widths=[2, 2])
    with pytest.raises(SeparationError, match="has 9 conv blocks"):
        Separator("unet5", sample_rate=8000, width=0.0625, block_widths=[2])
