"""CWS mask networks (Table 1), the Separator (eqs. 3, 6–8) and the FLOP counts (Table 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from models.separation import ARCHS, SeparationError, Separator
from models.separation.flops import (
    PAPER_TABLE2,
    count_macs,
    network_gflops,
    network_macs,
    network_params,
)
from models.separation.nets import build_net

SR = 8000  # small separators for speed: at 8 kHz, K = 4 gives 33 bins per subband
SMALL = {"unet5": 0.125, "unet6": 0.0625, "mdensenet": 0.25, "mmdensenet": 0.25}


def small(arch: str, k: int, **kw) -> Separator:
    return Separator(arch, k=k, sample_rate=SR, width=SMALL[arch], **kw)


class FixedMasks(nn.Module):
    """Stands in for the network: constant masks per source."""

    def __init__(self, vocals: float, accompaniment: float):
        super().__init__()
        self.values = (vocals, accompaniment)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c2, f, n = x.shape  # c2 = 2·C·K; masks: 2 sources × C·K
        half = c2 // 2
        return torch.cat([torch.full((b, half, f, n), v) for v in self.values], dim=1)


# ------------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_size_params_match_table2(arch):
    params = network_params(arch, k=1)  # stereo, no CWS: Table 2's rows without +CWS
    paper = PAPER_TABLE2[arch].params_m * 1e6
    print(f"\n{arch}: {params / 1e6:.3f} M parameters, Table 2 {paper / 1e6:.2f} M "
          f"({100 * (params / paper - 1):+.1f} %)")
    assert abs(params / paper - 1) <= 0.10


@pytest.mark.parametrize("arch", ARCHS)
def test_only_in_and_out_convs_depend_on_k(arch):
    with torch.device("meta"):
        nets = {k: build_net(arch, 4 * k, 4 * k, SMALL[arch]) for k in (1, 8)}
    shapes = {k: {n: p.shape for n, p in net.named_parameters()} for k, net in nets.items()}
    differ = sorted(n for n in shapes[1] if shapes[1][n] != shapes[8][n])
    assert shapes[1].keys() == shapes[8].keys()
    # inputs and outputs are 2·C·K = 4 channels at K = 1, 32 at K = 8
    first_convs = {n for n in differ if shapes[1][n][1:2] == (4,) and shapes[8][n][1:2] == (32,)}
    out_convs = {n for n in differ if shapes[1][n][0] == 4 and shapes[8][n][0] == 32}
    assert set(differ) == first_convs | out_convs, differ
    assert len(first_convs) == (3 if arch == "mmdensenet" else 1)  # MMDN: three band stems


# ---------------------------------------------------------------------------------- networks


@pytest.mark.parametrize("arch", ARCHS)
def test_net_shapes_and_mask_range(arch):
    net = build_net(arch, 8, 8, SMALL[arch]).eval()
    min_f, min_n = net.min_size
    x = torch.randn(2, 8, max(min_f, 16) * 2 + 1, min_n * 2 + 3)  # odd sizes
    with torch.no_grad():
        m = net(x)
    assert m.shape == x.shape
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


# UNet-6 at 8 kHz / 8 bands has 17 bins, fewer than its 32: refused, see the test below
@pytest.mark.parametrize(("arch", "k"), [(a, k) for a in ARCHS for k in (1, 2, 4, 8)
                                         if (a, k) != ("unet6", 8)])
def test_separator_forward_shapes(arch, k):
    sep = small(arch, k).eval()
    t = max(sep.min_samples, 2 * SR // 5) + 3  # not divisible by K
    mix = torch.randn(2, 2, t)
    with torch.no_grad():
        stems = sep(mix)
        y, masks = sep.spectra(mix)
    assert stems.shape == (2, 2, 2, t)
    ck = 2 * k
    assert y.shape[:3] == (2, ck, 2) and masks.shape == (2, 2, ck, *y.shape[3:])


def test_unet6_needs_enough_bins():
    with pytest.raises(SeparationError, match="at least 32 frequency bins"):
        small("unet6", 8)


@pytest.mark.parametrize("k", [1, 4])
def test_masks_route_the_mixture(k):
    """Masks (1, 0) give vocals = mixture through the whole chain, accompaniment = 0."""
    sep = small("mdensenet", k).eval()
    sep.net = FixedMasks(1.0, 0.0)
    mix = torch.randn(1, 2, SR + 5)
    with torch.no_grad():
        stems = sep(mix)
    x, v = mix.double().numpy(), stems[:, 0].double().numpy()
    snr = 10 * np.log10((x**2).sum() / ((x - v) ** 2).sum())
    print(f"\nK={k}: mixture through analysis, STFT, iSTFT, synthesis: {snr:.1f} dB")
    assert snr >= 60.0
    assert float(stems[:, 1].abs().max()) == 0.0


def test_eval_forward_is_deterministic_and_train_is_not():
    sep = small("mmdensenet", 2)
    mix = torch.randn(1, 2, SR // 2)
    sep.eval()
    with torch.no_grad():
        assert torch.equal(sep(mix), sep(mix))
    sep.train()  # dropout 0.1
    with torch.no_grad():
        assert not torch.equal(sep(mix), sep(mix))


def test_config_round_trip_and_validation():
    sep = small("unet5", 2, dropout=0.2)
    config = json.loads(json.dumps(sep.config))
    assert config == {"arch": "unet5", "k": 2, "channels": 2, "sample_rate": SR,
                      "width": 0.125, "dropout": 0.2, "taps": 32, "loss_domain": "magnitude"}
    twin = Separator.from_config(config)
    twin.load_state_dict(sep.state_dict())
    assert twin.config == sep.config
    assert small("mdensenet", 1).config["taps"] is None
    with pytest.raises(SeparationError, match=r"arch='unet7'.*k=3"):
        Separator("unet7", k=3)
    short = small("mdensenet", 4).eval()
    with torch.no_grad():  # min_samples is exact: the shortest input the net can pool 4 times
        assert short(torch.randn(1, 2, short.min_samples)).shape[-1] == short.min_samples
    with pytest.raises(SeparationError, match="needs at least"):
        short(torch.randn(1, 2, short.min_samples - 1))
    with pytest.raises(SeparationError, match=r"\(batch, 2, samples\)"):
        small("mdensenet", 4)(torch.randn(1, 1, SR))


# -------------------------------------------------------------------------------------- loss


def test_loss_terms():
    sep = small("mdensenet", 4).eval()
    mix = torch.randn(2, 2, SR // 2)
    with torch.no_grad():
        y = sep.analyse(mix)
    mag_y = float(torch.sqrt(y[:, :, 0] ** 2 + y[:, :, 1] ** 2).mean())
    for domain in ("magnitude", "complex"):
        sep.loss_domain = domain
        sep.net = FixedMasks(1.0, 0.0)  # vocals = mixture, accompaniment silent: exact
        _, terms = sep.loss(mix, mix, torch.zeros_like(mix))
        assert terms["l1"] < 1e-4 * mag_y and terms["conservation"] < 1e-6 * mag_y
        sep.net = FixedMasks(0.5, 0.3)  # masks sum to 0.8: L_c = 0.2 mean |Y|
        loss, terms = sep.loss(mix, 0.5 * mix, 0.5 * mix)
        assert terms["conservation"] == pytest.approx(0.2 * mag_y, rel=1e-4)
        assert terms["l1"] == pytest.approx(0.2 * mag_y, rel=1e-3)  # |0.3 Y - 0.5 Y|
        assert float(loss) == pytest.approx(terms["l1"] + terms["conservation"])


def test_loss_trains_the_net():
    torch.manual_seed(0)
    sep = small("mdensenet", 2)
    mix, voc = torch.randn(2, 2, SR // 2), torch.randn(2, 2, SR // 2)
    loss, terms = sep.loss(mix + voc, voc, mix)
    assert set(terms) == {"l1", "conservation"}
    assert all(isinstance(v, float) for v in terms.values())
    loss.backward()
    grads = [p.grad for p in sep.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# ------------------------------------------------------------------------------------ export


def test_export_mdensenet_k4():
    sep = Separator("mdensenet", k=4, sample_rate=44100, width=0.25).eval()
    mix = torch.randn(1, 2, 11025)
    ep = torch.export.export(sep, (mix,))
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert not val.is_complex()
    with torch.no_grad():
        ref = sep(mix)
        out = ep.module()(mix)
    assert out.shape == (1, 2, 2, 11025)
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


# ------------------------------------------------------------------------------------- FLOPs


def test_mac_counter_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 5, (3, 2), padding=1), nn.ConvTranspose2d(5, 4, 2, stride=2),
                        nn.Flatten(), nn.LazyLinear(7))
    x = torch.randn(1, 3, 6, 4)
    count = count_macs(net, x)
    conv_out = 5 * 6 * 5  # (6 + 2 - 3 + 1) x (4 + 2 - 2 + 1)
    assert count.by_module["0"] == conv_out * 3 * 3 * 2
    assert count.by_module["1"] == conv_out * 4 * 2 * 2
    assert count.by_module["3"] == 7 * 4 * 12 * 10
    assert count.total == sum(count.by_module.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_meta_walk_equals_real_forward(arch):
    kw = {"seconds": 0.5, "sample_rate": SR, "width": SMALL[arch]}
    meta = network_macs(arch, 2, device="meta", **kw)
    real = network_macs(arch, 2, device="cpu", **kw)
    assert meta.total == real.total > 0 and meta.by_module == real.by_module


@pytest.mark.parametrize("arch", ["unet5", "mdensenet"])
def test_gflops_follow_table2(arch):
    paper = PAPER_TABLE2[arch].gflops
    ours = {k: network_gflops(arch, k) for k in (1, 2, 4, 8)}
    for k in (1, 2, 4, 8):
        ratio, paper_ratio = ours[k] / ours[1], paper[k] / paper[1]
        print(f"\n{arch} K={k}: {ours[k]:.2f} GFLOPs (MACs) vs Table 2 {paper[k]:.2f}; "
              f"ratio to K=1 {ratio:.3f} vs {paper_ratio:.3f}")
        assert abs(ratio / paper_ratio - 1) <= 0.15
        assert abs(ours[k] / paper[k] - 1) <= 0.05  # MACs, not 2 x MACs


@pytest.mark.parametrize(("dh", "dw"), [(0, 0), (1, 0), (0, 1), (1, 2), (-1, 1), (2, -2)])
def test_match_pads_with_zeros_or_crops_like_f_pad(dh, dw):
    """The skip alignment pads by concatenating zeros (an int8-safe op in XNNPACK, unlike a pad
    between an int8 producer and a float consumer); the values are F.pad's."""
    import torch.nn.functional as F

    from models.separation.nets import _match

    x = torch.randn(2, 3, 5, 6)
    ref = torch.zeros(1, 1, 5 + dh, 6 + dw)
    want = F.pad(x, (0, dw, 0, dh))
    got = _match(x, ref)
    assert got.shape == want.shape == (2, 3, 5 + dh, 6 + dw)
    assert torch.equal(got, want)
