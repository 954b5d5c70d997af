"""Conv-TasNet's TCN: gLN / cLN, the bounded look-ahead, the parameter count."""

from __future__ import annotations

import math

import pytest
import torch

from models.separation import SeparationError
from models.separation.tasnet import (
    TCN,
    CumulativeLayerNorm,
    GlobalLayerNorm,
    tcn_parameters,
)


def test_norms_normalise_over_what_they_say():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(2, 5, 40, generator=g, dtype=torch.float64)
    y = GlobalLayerNorm(5).double()(x)
    assert torch.allclose(y.mean(dim=(1, 2)), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(y.var(dim=(1, 2), unbiased=False), torch.ones(2, dtype=torch.float64),
                          atol=1e-6)
    cln = CumulativeLayerNorm(5).double()
    c = cln(x)
    for t in (0, 7, 39):  # frame t is normalised by frames 0..t only
        seg = x[:, :, : t + 1]
        m = seg.mean(dim=(1, 2), keepdim=True)
        v = seg.var(dim=(1, 2), unbiased=False, keepdim=True)
        want = (x[:, :, t : t + 1] - m) / torch.sqrt(v + 1e-8)
        assert torch.allclose(c[:, :, t : t + 1], want, atol=1e-9)
    x2 = x.clone()
    x2[:, :, 20:] += 5.0
    assert torch.equal(cln(x2)[:, :, :20], c[:, :, :20])  # the future does not enter


@pytest.mark.parametrize("lookahead", [0, 5, 11])
def test_output_sees_exactly_lookahead_frames_of_future(lookahead):
    torch.manual_seed(0)
    net = TCN(n=8, b=6, h=10, p=3, x=3, r=2, norm="cln", lookahead=lookahead).eval()
    assert net.lookahead_frames == lookahead
    w = torch.randn(1, 8, 60)
    t = 30
    with torch.no_grad():
        y = net(w)
        after = w.clone()
        after[:, :, t + lookahead + 1 :] = torch.randn(1, 8, 60 - t - lookahead - 1)
        assert torch.equal(net(after)[..., : t + 1], y[..., : t + 1])
        at = w.clone()
        at[:, :, t + lookahead] += 3.0
        assert float((net(at)[..., t] - y[..., t]).abs().max()) > 1e-6


def test_offline_tcn_shapes_and_parameter_count():
    net = TCN(n=16, b=8, h=12, p=3, x=4, r=2, sc=6, masks=2, norm="gln")
    with torch.no_grad():
        m = net(torch.randn(3, 16, 25))
    assert m.shape == (3, 2, 16, 25) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert sum(p.numel() for p in net.parameters()) == tcn_parameters(16, 8, 12, 3, 4, 2, 6, 2)
    # the offline net looks both ways: half of each span ahead
    assert net.lookahead_frames == sum((3 - 1) * 2**i // 2 for i in range(4)) * 2
    with pytest.raises(SeparationError, match="norm"):
        TCN(n=4, b=4, h=4, p=3, x=1, r=1, norm="bn")
    with pytest.raises(SeparationError, match="lookahead"):
        TCN(n=4, b=4, h=4, p=3, x=1, r=1, lookahead=-1)


def test_vox_tasnet_paper_size_stems_and_residual_vocals():
    from models.separation.metrics import si_sdr
    from models.separation.tasnet import VoxTasNet, si_sdr_torch

    with torch.device("meta"):
        big = VoxTasNet()  # N=512, L=16, B=128, H=512, P=3, X=8, R=3 on stereo
    n_params = sum(p.numel() for p in big.parameters())
    assert n_params == tcn_parameters(2 * 512, 128, 512, 3, 8, 3) + 2 * 512 * 16
    assert 4.5e6 < n_params < 5.5e6  # the paper's "about 5 M"
    torch.manual_seed(0)
    m = VoxTasNet(sample_rate=8000, n=16, l=8, b=8, h=16, x=2, r=1).eval()
    mix = torch.randn(2, 2, 1003)
    with torch.no_grad():
        stems = m(mix)
    assert stems.shape == (2, 2, 2, 1003)
    assert torch.allclose(stems.sum(dim=1), mix, atol=1e-6)  # vocals are the residual
    g = torch.Generator().manual_seed(1)
    ref, est = torch.randn(2, 2, 500, generator=g), torch.randn(2, 2, 500, generator=g)
    mixed = ref + 0.3 * est
    for i in range(2):
        assert float(si_sdr_torch(ref, mixed)[i]) == pytest.approx(
            si_sdr(ref[i].numpy(), mixed[i].numpy()), abs=1e-3)
    loss, info = m.loss(mix, mix * 0.5, mix * 0.5)
    loss.backward()
    assert torch.isfinite(loss) and "si_sdr_vocals" in info
    # every weight learns but the last block's residual conv, whose output nothing reads
    last = len(m.tcn.blocks) - 1
    assert {n for n, p in m.named_parameters() if p.grad is None} == {
        f"tcn.blocks.{last}.res.weight", f"tcn.blocks.{last}.res.bias"}


def test_near_causal_vox_tasnet_sees_a_bounded_future():
    from models.separation.tasnet import VoxTasNet

    torch.manual_seed(0)
    m = VoxTasNet(sample_rate=8000, n=8, l=8, b=8, h=8, x=3, r=1, lookahead_ms=2.0).eval()
    assert m.norm == "cln" and m.tcn.lookahead_frames == 4  # 16 samples at stride 4
    mix = torch.randn(1, 2, 400)
    later = mix.clone()
    later[..., 300:] = torch.randn(1, 2, 100)
    with torch.no_grad():
        a, b = m(mix), m(later)
    # samples up to 300 - (look-ahead 16 + window 8) are untouched by what comes after 300
    assert torch.equal(a[..., : 300 - 24], b[..., : 300 - 24])
    assert float((a - b)[..., 280:300].abs().max()) > 0


def test_prelu_is_torch_prelu():
    from models.separation.tasnet import PReLU

    act = PReLU()
    with torch.no_grad():
        act.weight.fill_(0.3)
    x = torch.randn(2, 5, 17)
    assert torch.allclose(act(x), torch.nn.functional.prelu(x, act.weight), atol=1e-7)


def test_narrowing_keeps_the_heaviest_channels_and_removal_keeps_shapes():
    from models.separation.tasnet import VoxTasNet

    torch.manual_seed(0)
    m = VoxTasNet(sample_rate=8000, n=8, l=8, b=6, h=10, x=2, r=2, lookahead_ms=3.0).eval()
    blk = m.tcn.blocks[0]
    with torch.no_grad():  # channels 7, 2, 5 carry by far the most weight
        for j, g in ((7, 9.0), (2, 8.0), (5, 7.0)):
            blk.inp.weight[j] *= g
    dw = blk.depthwise.weight.detach().clone()
    m.narrow(3)
    assert m.tcn.hidden == 3 and m.config["h"] == 3
    assert torch.equal(m.tcn.blocks[0].depthwise.weight, dw[[2, 5, 7]])
    assert all(b.norm1.gamma.shape == (1, 3, 1) for b in m.tcn.blocks)
    ahead = [b.pad[1] for b in m.tcn.blocks]
    m.remove_block(0)
    assert m.tcn.keep == [1, 2, 3] and m.tcn.lookahead_frames == sum(ahead[1:])
    x = torch.randn(1, 2, 800)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 2, 2, 800)
    assert torch.allclose(y.sum(dim=1), x, atol=1e-6)  # vocals + accompaniment = mixture
    back = VoxTasNet(**m.config)
    back.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(back.eval()(x), y)
    with pytest.raises(SeparationError, match="keep="):
        VoxTasNet(sample_rate=8000, n=8, l=8, b=6, h=10, x=2, r=2, blocks=[2, 1])
    with pytest.raises(SeparationError, match="narrow to H=11"):
        m.narrow(11)


def test_the_loss_is_scale_dependent_where_si_sdr_is_not():
    """The residual vocals need the accompaniment's scale: half the right accompaniment is
    SI-SDR-perfect but loses 20 log10(2) ≈ 6 dB of SDR, and its vocals are off."""
    from models.separation.tasnet import si_sdr_torch, snr_torch, stem_loss

    g = torch.Generator().manual_seed(1)
    voc, acc = torch.randn(2, 1, 2, 4000, generator=g)
    mix = voc + acc
    half = 0.5 * acc
    est = torch.stack([mix - half, half], dim=1)
    assert float(si_sdr_torch(acc, half)) > 60
    assert float(snr_torch(acc, half)) == pytest.approx(20 * math.log10(2), abs=1e-4)
    loss, info = stem_loss(est, voc, acc)
    assert float(loss) == pytest.approx(-20 * math.log10(2), abs=1e-4)
    assert info["si_sdr_accompaniment"] > 60 and info["si_sdr_vocals"] < 10
    perfect, _ = stem_loss(torch.stack([voc, acc], dim=1), voc, acc)
    assert float(perfect) < -60
