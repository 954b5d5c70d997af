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
