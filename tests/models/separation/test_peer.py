"""The asteroid Conv-TasNet peer (models/separation/peer.py): asteroid is installed by the
Makefile (``pip install --no-deps``), so these tests import it, they do not skip."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from models.separation import SeparationError
from models.separation.peer import AsteroidConvTasNet, asteroid_parameters
from models.separation.tasnet import snr_torch, tcn_parameters

SMALL = {"sample_rate": 8000, "n": 32, "l": 16, "b": 16, "h": 32, "x": 2, "r": 1}


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_stems_shape_and_residual_vocals():
    torch.manual_seed(0)
    m = AsteroidConvTasNet(**SMALL).eval()
    mix = torch.randn(2, 2, 4000)
    with torch.no_grad():
        stems = m(mix)
    assert stems.shape == (2, 2, 2, 4000)
    assert float((stems[:, 0] + stems[:, 1] - mix).abs().max()) < 1e-5
    assert m.min_samples == 16 and m.sample_rate == 8000 and m.channels == 2
    assert m.hyper == {"N": 32, "L": 16, "B": 16, "H": 32, "P": 3, "X": 2, "R": 1}
    # an odd length: the tail is padded to a whole frame and cropped again, not zero-filled
    with torch.no_grad():
        odd = m(mix[..., :3995])
    assert odd.shape == (2, 2, 2, 3995)
    assert float(odd[:, 1, :, -4:].abs().max()) > 0
    with pytest.raises(SeparationError, match="mix must be"):
        m(torch.randn(1, 1, 4000))


def test_config_is_json_and_rebuilds_the_same_model():
    m = AsteroidConvTasNet(**SMALL)
    cfg = json.loads(json.dumps(m.config))
    assert cfg == {**SMALL, "channels": 2, "p": 3, "norm": "gLN", "causal": False}
    assert _count(AsteroidConvTasNet(**cfg)) == _count(m)


def test_loss_is_finite_and_every_weight_learns():
    torch.manual_seed(0)
    m = AsteroidConvTasNet(**SMALL)
    mix = torch.randn(2, 2, 4000)
    loss, info = m.loss(mix, 0.3 * mix, 0.7 * mix)
    assert torch.isfinite(loss)
    assert set(info) == {"sdr_accompaniment", "si_sdr_accompaniment", "si_sdr_vocals"}
    assert info["sdr_accompaniment"] == pytest.approx(-float(loss.detach()))
    loss.backward()
    missing = {n for n, p in m.named_parameters() if p.grad is None}
    # as in Vox-TasNet, only the last block's residual conv is unread (the mask comes from the
    # skips); asteroid calls it res_conv
    assert missing == {"model.masker.TCN.1.res_conv.weight", "model.masker.TCN.1.res_conv.bias"}
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("kw", [SMALL, {**SMALL, "b": 24, "h": 40, "p": 5, "x": 3, "r": 2}])
def test_parameter_count_from_the_hyper_parameters(kw):
    m = AsteroidConvTasNet(**kw)
    n, l, b, h = m.hyper["N"], m.hyper["L"], m.hyper["B"], m.hyper["H"]
    p, x, r = m.hyper["P"], m.hyper["X"], m.hyper["R"]
    sc = b  # the wrapper sets asteroid's skip_chan to B, as our TCN does
    filterbanks = 2 * n * l  # free encoder + decoder filters, no bias
    in_norm = 2 * n  # gLN gain and bias on the N encoder channels
    bottleneck = n * b + b
    block = ((b * h + h) + 1 + 2 * h  # 1×1 B → H, PReLU, gLN
             + (h * p + h) + 1 + 2 * h  # depthwise conv, PReLU, gLN
             + (h * b + b) + (h * sc + sc))  # residual and skip 1×1 convs
    head = 1 + (sc * n + n)  # PReLU, 1×1 Sc → N (one mask)
    want = filterbanks + in_norm + bottleneck + x * r * block + head
    assert _count(m) == want == asteroid_parameters(n, l, b, h, p, x, r)
    assert want == tcn_parameters(n, b, h, p, x, r) + 2 * n * l  # our mono TCN's count
    # the mono model serves any number of channels with the same weights
    assert _count(AsteroidConvTasNet(**{**kw, "channels": 1})) == want


def test_paper_size_count_against_vox_tasnet():
    from models.separation.tasnet import VoxTasNet

    with torch.device("meta"):
        peer, vox = AsteroidConvTasNet(), VoxTasNet()
    n, b = 512, 128
    assert _count(peer) == 4_984_497 == asteroid_parameters(512, 16, 128, 512, 3, 8, 3)
    # Vox-TasNet's TCN takes and masks the 2·N stacked channels: the input norm, bottleneck
    # and mask conv grow by 2N + N·B + (N·Sc + N), Sc = B
    assert _count(vox) - _count(peer) == n * (b + b + 3)


def test_channels_are_separated_independently():
    torch.manual_seed(0)
    m = AsteroidConvTasNet(**SMALL).eval()
    mix = torch.randn(2, 2, 4000)
    other = mix.clone()
    other[:, 1] = torch.randn(2, 4000)
    with torch.no_grad():
        a, b = m(mix), m(other)
    assert float((a[:, :, 0] - b[:, :, 0]).abs().max()) < 1e-6  # left untouched by the right
    assert float((a[:, :, 1] - b[:, :, 1]).abs().max()) > 1e-3
    # and a channel's stems are what the model gives that channel alone
    mono = AsteroidConvTasNet(**{**SMALL, "channels": 1}).eval()
    mono.load_state_dict(m.state_dict())
    with torch.no_grad():
        left = mono(mix[:, :1])
    assert float((left[:, :, 0] - a[:, :, 0]).abs().max()) < 1e-5


def test_settings_it_refuses_and_missing_asteroid(monkeypatch):
    with pytest.raises(SeparationError, match="norm"):
        AsteroidConvTasNet(**SMALL, norm="BN")
    with pytest.raises(SeparationError, match="causal"):
        AsteroidConvTasNet(**SMALL, causal=True)  # gLN sees the future
    with pytest.raises(SeparationError, match="even"):
        AsteroidConvTasNet(**{**SMALL, "l": 15})
    causal = AsteroidConvTasNet(**SMALL, norm="cgLN", causal=True).eval()
    mix = torch.randn(1, 2, 2000)
    later = mix.clone()
    later[..., 1500:] = torch.randn(1, 2, 500)
    with torch.no_grad():
        # frames that end before sample 1500 are untouched; the decoder's window overlaps one
        assert torch.allclose(causal(mix)[..., :1480], causal(later)[..., :1480], atol=1e-6)
    monkeypatch.setitem(sys.modules, "asteroid.models.conv_tasnet", None)
    with pytest.raises(SeparationError, match=r"pip install --no-deps asteroid==0\.7\.0"):
        AsteroidConvTasNet(**SMALL)


def _toy(seed: int, batch: int, t: int = 4000, sr: int = 8000):
    """A sine 'voice' over a noise 'accompaniment', stereo with different gains per channel."""
    g = torch.Generator().manual_seed(seed)
    time = torch.arange(t) / sr
    f0 = 300 + 400 * torch.rand(batch, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(batch, 1, 1, generator=g)
    voice = torch.sin(2 * math.pi * f0 * time + phase) * torch.tensor([1.0, 0.6]).view(1, 2, 1)
    acc = 0.5 * torch.randn(batch, 2, t, generator=g)
    return voice + acc, voice, acc


def test_a_few_adam_steps_raise_the_accompaniment_sdr():
    torch.manual_seed(0)
    m = AsteroidConvTasNet(**SMALL)
    mix, voice, acc = _toy(0, 4)
    test_mix, _, test_acc = _toy(1, 4)

    def held_out() -> float:
        with torch.no_grad():
            return float(snr_torch(test_acc, m(test_mix)[:, 1]).mean())

    before = held_out()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        loss, _ = m.loss(mix, voice, acc)
        loss.backward()
        opt.step()
    after = held_out()
    # held-out accompaniment SDR: -0.1 dB at random init (a near-silent estimate), +9.1 dB
    # after 60 steps here, against -1.4 dB for the mixture itself taken as the estimate
    assert after > before + 5.0, (before, after)
    assert after > float(snr_torch(test_acc, test_mix).mean()), after
