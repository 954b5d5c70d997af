"""Torch log-mel vs the data contract's `log_mel`; torch F0 vs DIO; pitch shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.features import MelConfig, dio_f0, log_mel
from models.lhq_svc.f0 import F0Features, TorchF0, shift_f0
from models.lhq_svc.mel import LogMel

SR = 16000


def _tone(seconds: float, f0: float = 220.0, vibrato: float = 0.3, lead: int = 3000):
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * 2 ** (vibrato * np.sin(2 * np.pi * 1.5 * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = 0.3 * np.sin(ph) + 0.15 * np.sin(2 * ph) + 0.1 * np.sin(3 * ph)
    x[:lead] = 0.0
    return x.astype(np.float32), f


@pytest.mark.parametrize("n", [16000, 12345, 4000])
def test_torch_log_mel_matches_contract(n):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(n)).astype(np.float32) + _tone(n / SR, lead=0)[0]
    ref = log_mel(x, MelConfig(sample_rate=SR))
    got = LogMel(SR)(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == ref.shape == (80, 1 + n // 128)
    assert np.max(np.abs(got - ref)) < 1e-3


def test_torch_f0_agrees_with_dio_on_a_vibrato_tone():
    x, f = _tone(1.5)
    f0, voiced = TorchF0(SR, 128)(torch.from_numpy(x)[None])
    d, dv = dio_f0(x, SR, 128)
    assert f0.shape == (1, d.shape[0]) == (1, 1 + x.shape[0] // 128)
    a = f0[0].numpy()
    agree = np.mean((a > 0) == dv)
    both = (a > 0) & dv
    cents = np.abs(1200 * np.log2(a[both] / d[both]))
    truth = np.interp(np.arange(a.shape[0]) * 128, np.arange(f.shape[0]), f)
    cents_truth = np.abs(1200 * np.log2(a[both] / truth[both]))
    assert agree > 0.95
    assert np.median(cents) < 10.0 and np.percentile(cents, 95) < 50.0
    assert np.median(cents_truth) < 10.0
    # the silent lead-in is unvoiced
    assert voiced[0, :20].sum() == 0


@pytest.mark.parametrize("hz", [110.0, 440.0, 880.0])
def test_torch_f0_steady_tones(hz):
    x, _ = _tone(0.5, f0=hz, vibrato=0.0, lead=0)
    f0, voiced = TorchF0(SR, 128)(torch.from_numpy(x)[None])
    mid = f0[0, 5:-5]
    assert voiced[0, 5:-5].all()
    assert torch.max(torch.abs(1200 * torch.log2(mid / hz))) < 15.0


def test_shift_and_features():
    f0 = torch.tensor([[0.0, 220.0, 440.0]])
    assert torch.allclose(shift_f0(f0, torch.tensor([12.0])), torch.tensor([[0.0, 440.0, 880.0]]))
    assert torch.allclose(shift_f0(f0, torch.tensor([-12.0]))[0, 1], torch.tensor(110.0))
    feats = F0Features()(f0, (f0 > 0).float())
    assert feats.shape == (1, F0Features().dim, 3)
    assert torch.all(feats[0, :, 0] == 0)  # unvoiced frame carries no pitch
    assert feats[0, 1, 1] == 1.0
    back, voiced = F0Features.decode(feats)
    assert torch.allclose(back[0, 1:], f0[0, 1:], rtol=1e-5) and voiced.tolist() == [[0, 1, 1]]


def test_hann_lobe_matches_the_window_dtft():
    """lobe(ν) against the numeric DTFT of the 512-point periodic Hann window, normalised."""
    from models.lhq_svc.mel import hann_lobe

    n = 512
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    nu = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5, -1.0, -0.7])
    ref = np.abs(np.exp(-2j * np.pi * np.outer(nu, np.arange(n)) / n) @ w) / w.sum()
    got = hann_lobe(torch.tensor(nu, dtype=torch.float32)).abs().numpy()
    assert np.abs(got - ref).max() < 1e-3
    assert abs(got[0] - 1.0) < 1e-6 and abs(got[3] - 0.5) < 1e-6 and abs(got[8] - 0.5) < 1e-6
    # float32 next to the removable singularities (0, ±1) and far out: the float64 closed form
    near = np.concatenate([np.array([1e-7, -6e-8, 1 + 1.2e-7, 1 - 6e-8, -1 - 1.2e-7, 2e-4 - 1]),
                           np.linspace(-40.0, 40.0, 20001)])
    x = near.astype(np.float32).astype(np.float64)
    closed = np.where(np.abs(np.abs(x) - 1) < 1e-12, 0.5, np.sinc(x) / np.where(
        np.abs(np.abs(x) - 1) < 1e-12, 1.0, 1 - x * x))
    lobe = hann_lobe(torch.tensor(near, dtype=torch.float32)).double().numpy()
    assert np.isfinite(lobe).all() and np.abs(lobe - closed).max() < 2e-6


@pytest.mark.parametrize("f0", [110.0, 237.0, 523.3])
def test_source_filter_mel_renders_a_harmonic_series(f0):
    """A flat harmonic series of amplitude a (random phases) analysed by the contract's
    log-mel is what SourceFilterMel renders from H = a * 128 and no noise: on the bins within
    3 nats of each frame's peak (the harmonics) to 0.12 nats, median 0.01 over all bins."""
    from models.lhq_svc.mel import SourceFilterMel

    t = np.arange(SR) / SR
    amp = 0.01
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, 200)
    x = sum(np.cos(2 * np.pi * h * f0 * t + phases[h])
            for h in range(1, int((SR / 2 - 1) // f0) + 1)) * amp
    ref = log_mel(x.astype(np.float32), MelConfig(sample_rate=SR))[:, 20:-20]
    frames = ref.shape[1]
    got = SourceFilterMel(SR)(torch.full((1, 80, frames), float(np.log(amp * 128))),
                              torch.full((1, 80, frames), -30.0),
                              torch.full((1, frames), f0), torch.ones(1, frames))[0].numpy()
    err = np.abs(got - ref)
    loud = ref > ref.max(axis=0, keepdims=True) - 3.0
    assert err[loud].max() < 0.12 and np.median(err) < 0.01, (err[loud].max(), np.median(err))
    # the comb moves with the F0: half a semitone up changes the low bins by far more
    up = SourceFilterMel(SR)(torch.full((1, 80, frames), float(np.log(amp * 128))),
                             torch.full((1, 80, frames), -30.0),
                             torch.full((1, frames), f0 * 2 ** (1 / 24)), torch.ones(1, frames))
    assert np.abs(up[0].numpy() - ref)[:30].mean() > 5 * err[:30].mean()


def test_source_filter_mel_unvoiced_frames_are_the_noise_envelope():
    from models.lhq_svc.mel import SourceFilterMel

    sf = SourceFilterMel(SR)
    g = torch.Generator().manual_seed(0)
    log_h = torch.randn(2, 80, 6, generator=g) - 2.0
    log_n = torch.randn(2, 80, 6, generator=g) - 6.0
    f0 = torch.full((2, 6), 200.0)
    voiced = torch.tensor([[1.0, 1, 0, 0, 1, 0]] * 2)
    got = sf(log_h, log_n, f0, voiced)
    noise_only = torch.log(torch.clamp(
        torch.matmul(sf.mel_fb, torch.exp(torch.matmul(sf.interp, log_n))), min=1e-5))
    off = voiced[0] == 0
    assert torch.allclose(got[..., off], noise_only[..., off], atol=1e-5)
    assert (got[..., ~off] - noise_only[..., ~off]).abs().max() > 1.0  # the harmonics add


def test_band_envelope_loss_bands_and_window():
    from models.lhq_svc.mel import BandEnvelopeLoss

    loss = BandEnvelopeLoss(SR, 128, 80)
    assert loss.window == 48  # 384 ms of 8 ms hops
    assert loss.bands.shape == (15, 80) and (loss.bands.sum(1) >= 1).all()
    assert (loss.bands.sum(0) <= 1).all()  # each mel bin in at most one band
    # at 8 kHz the 3.8 kHz band's upper edge (4.28 kHz) is above Nyquist: 14 bands
    assert BandEnvelopeLoss(8000, 64, 80).bands.shape[0] == 14


def test_band_envelope_loss_scores_envelope_shape_not_level():
    from models.lhq_svc.mel import BandEnvelopeLoss

    loss = BandEnvelopeLoss(SR, 128, 80)
    t = torch.arange(96, dtype=torch.float32)
    ramp = (-1.0 + 0.2 * torch.sin(2 * np.pi * t / 40)).expand(1, 80, 96).clone()
    assert float(loss(ramp, ramp)) < 1e-5  # float32 rounding
    # a level offset (every band x e^1.5) keeps each envelope's shape: no loss
    assert float(loss(ramp + 1.5, ramp)) < 1e-4
    # the opposite modulation: every window anti-correlated, loss ~ 2
    anti = (-1.0 - 0.2 * torch.sin(2 * np.pi * t / 40)).expand(1, 80, 96).clone()
    assert float(loss(anti, ramp)) > 1.9
    # gradients reach the prediction
    p = anti.clone().requires_grad_(True)
    loss(p, ramp).backward()
    assert torch.isfinite(p.grad).all() and float(p.grad.abs().max()) > 0
    with pytest.raises(ValueError, match="pred"):
        loss(ramp[..., :50], ramp)


def test_band_envelope_loss_orders_degradations_like_stoi(svc_corpus):
    """On a real sung clip: more additive noise -> lower STOI (pystoi) and higher loss."""
    from models import metrics
    from models.audio import load_audio
    from models.lhq_svc.data import load_corpus
    from models.lhq_svc.mel import BandEnvelopeLoss

    wav, _ = load_audio(load_corpus(svc_corpus).clips[0].path, sample_rate=SR)  # from disk
    wav = wav[: 3 * SR]
    cfg = MelConfig(sample_rate=SR)
    loss = BandEnvelopeLoss(SR, 128, 80)
    ref = torch.from_numpy(log_mel(wav, cfg))[None]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(wav.shape[0]).astype(np.float32)
    scores, losses = [], []
    for snr_db in (20.0, 5.0, -5.0):
        g = np.sqrt(np.mean(wav**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
        y = wav + g * noise
        scores.append(metrics.stoi(wav, y, SR))
        losses.append(float(loss(torch.from_numpy(log_mel(y, cfg))[None], ref)))
    assert scores[0] > scores[1] > scores[2], scores
    assert losses[0] < losses[1] < losses[2], losses
    assert losses[2] > 2 * losses[0], losses
    # windows of near-silence score ~0 correlation even for the reference itself (soft gate)
    assert float(loss(ref, ref)) < 0.5 * losses[0]
