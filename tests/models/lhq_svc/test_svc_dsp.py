"""Torch log-mel vs the data contract's `log_mel`; torch F0 vs DIO; pitch shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.features import MelConfig, dio_f0, log_mel
from models.lhq_svc.f0 import F0Features, HarmonicTemplate, TorchF0, shift_f0
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


@pytest.mark.parametrize("hz", [97.0, 231.0, 523.0])
def test_harmonic_template_matches_the_log_mel_of_a_harmonic_comb(hz):
    """The tabulated comb vs the data contract's log-mel of real audio: every harmonic up to
    Nyquist, unit amplitude, random phases, at an F0 between the table's grid points."""
    rng = np.random.default_rng(1)
    t = np.arange(SR) / SR
    h = np.arange(1, int(SR / 2 / hz) + 1)
    x = np.cos(2 * np.pi * hz * h[:, None] * t + rng.uniform(0, 2 * np.pi, (h.size, 1))).sum(0)
    ref = log_mel((0.01 * x).astype(np.float32), MelConfig(sample_rate=SR))[:, 20:-20].mean(1)
    tmpl = HarmonicTemplate(SR)
    f0 = torch.full((1, 3), hz)
    got = tmpl(f0, torch.ones(1, 3))[0].numpy()
    assert got.shape == (80, 3) and np.allclose(got, got[:, :1])
    # the same spectrum up to the table's standardisation (an affine map of the log-mel)
    assert np.corrcoef(got[:, 0], ref)[0, 1] > 0.99
    # peaks where the harmonics are: the bin nearest 2 * F0 is above the bins between the
    # first harmonics for the widely spaced (resolved) ones
    if hz > 200:
        k2 = int(np.argmin(np.abs(_mel_centres() - 2 * hz)))
        k25 = int(np.argmin(np.abs(_mel_centres() - 2.5 * hz)))
        assert got[k2, 0] - got[k25, 0] > 0.5 and ref[k2] - ref[k25] > 1.0


def _mel_centres() -> np.ndarray:
    from models.data.features import mel_basis

    fb = mel_basis(MelConfig(sample_rate=SR))
    return (fb * np.arange(fb.shape[1])[None, :] * SR / 512).sum(1) / fb.sum(1)


def test_harmonic_template_interpolates_unvoiced_and_out_of_range():
    tmpl = HarmonicTemplate(SR)
    grid = 40.0 * 32.0 ** (torch.arange(1024) / 1023)
    f0 = torch.stack([grid[100], grid[101], (grid[100] * grid[101]).sqrt()]).view(1, 3)
    out = tmpl(f0, torch.ones(1, 3))[0]
    assert torch.allclose(out[:, 0], tmpl.table[100], atol=1e-5)
    assert torch.allclose(out[:, 1], tmpl.table[101], atol=1e-5)
    assert torch.allclose(out[:, 2], 0.5 * (tmpl.table[100] + tmpl.table[101]), atol=1e-4)
    edge = tmpl(torch.tensor([[0.0, 5.0, 3000.0, 220.0]]), torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    assert torch.all(edge[0, :, 0] == 0) and torch.all(edge[0, :, 3] == 0)  # unvoiced
    assert torch.allclose(edge[0, :, 1], tmpl.table[0], atol=1e-5)  # clamped to the range
    assert torch.allclose(edge[0, :, 2], tmpl.table[-1], atol=1e-5)
    # rebuilt from its arguments, never stored in a checkpoint
    assert "table" not in tmpl.state_dict() and tmpl.table.shape == (1024, 80)
    feats = F0Features(template=tmpl)
    assert feats.dim == F0Features().dim + 80
    both = feats(f0, torch.ones(1, 3))
    assert torch.equal(both[:, -80:], out[None])
    with pytest.raises(ValueError, match="f0_min"):
        HarmonicTemplate(SR, f0_min=900.0, f0_max=800.0)
