"""Vocoders: MelGAN shapes, harmonic-plus-noise pitch and phase continuity, STFT loss."""

from __future__ import annotations

import numpy as np
import torch

from models.data.features import dio_f0
from models.lhq_svc.mel import LogMel
from models.lhq_svc.vocoder import HNVocoder, MelGANGenerator, multi_resolution_stft_loss

SR = 16000


def test_melgan_upsamples_by_the_hop():
    g = MelGANGenerator(channels=16, ratios=(8, 4, 4))
    assert g.hop == 128
    assert g(torch.randn(2, 80, 7)).shape == (2, 7 * 128)


def test_hn_vocoder_untrained_reproduces_pitch_and_level():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 196 * t) + 0.1 * np.sin(2 * np.pi * 392 * t)).astype(np.float32)
    mel = LogMel(SR)(torch.from_numpy(x)[None])
    f0 = torch.full((1, mel.shape[-1]), 196.0)
    y = HNVocoder(channels=16).eval()(mel, f0)[0].detach().numpy()
    assert y.shape == (mel.shape[-1] * 128,)
    est, voiced = dio_f0(y[: x.shape[0]], SR)
    mid = est[10:-10][voiced[10:-10]]
    assert mid.size > 50 and np.median(np.abs(1200 * np.log2(mid / 196.0))) < 20
    assert 0.5 < y.std() / x.std() < 2.0


def test_hn_phase_continues_across_chunks():
    torch.manual_seed(0)
    v = HNVocoder(channels=16).eval()
    n = 120
    mel = -5 + 0.5 * torch.randn(1, 80, n)
    f0 = 200 + 2 * torch.randn(1, n).cumsum(-1)
    full = v(mel, f0)[0]
    off = 50
    part = v(mel[:, :, off:], f0[:, off:], v.cycles(f0, off * 128), off)[0]
    seg = slice(off * 128, off * 128 + 4000)
    assert (part[:4000] - full[seg]).abs().max() < 1e-2 * full.abs().max()
    restart = v(mel[:, :, off:], f0[:, off:])[0]
    assert (restart[:4000] - full[seg]).abs().max() > 0.1 * full.abs().max()


def test_stft_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4096, generator=g)
    assert float(multi_resolution_stft_loss(x, x)) < 1e-5
    assert float(multi_resolution_stft_loss(0.5 * x, x)) > 0.1
