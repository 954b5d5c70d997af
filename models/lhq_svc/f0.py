"""F0 for LHQ-SVC (§IV.B): an exportable torch estimator, pitch shift and F0 features.

Preprocessing uses DIO (``models.data.features.dio_f0``) as the paper does; DIO is C code and
cannot run inside an exported graph, so the on-device path uses :class:`TorchF0`, a DSP
estimator made of torch ops only:

1. decimate to ~8 kHz with a windowed-sinc low-pass ``conv1d`` (stride = factor);
2. Hann-windowed frames (centred, hop = ``hop_length / factor``), power spectrum through a
   zero-padded conv1d Fourier basis (linear, not circular, autocorrelation);
3. autocorrelation = power spectrum @ cosine basis, divided by the window's own autocorrelation
   (Boersma 1993), searched between ``f0_min`` and ``f0_max``;
4. the first local maximum reaching ``octave_ratio`` x the best peak is the period (guards
   against octave-down errors), refined by parabolic interpolation;
5. voiced = peak strength above ``voicing_threshold`` and frame level above a floor.

Frames line up with the log-mel frames: ``1 + T // hop_length``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.lhq_svc.mel import as_buffer, fourier_basis


def _decimation(sample_rate: int, hop_length: int) -> int:
    """Largest power-of-two factor dividing `hop_length` that keeps the rate >= 7 kHz."""
    d = 1
    while hop_length % (d * 2) == 0 and sample_rate / (d * 2) >= 7000:
        d *= 2
    return d


class TorchF0(nn.Module):
    """Autocorrelation F0 estimator: ``(B, T) -> (f0 Hz (B, F), voiced float (B, F))``."""

    def __init__(
        self,
        sample_rate: int = 16000,
        hop_length: int = 128,
        f0_min: float = 60.0,
        f0_max: float = 1100.0,
        voicing_threshold: float = 0.5,
        octave_ratio: float = 0.85,
        silence_db: float = -55.0,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.factor = _decimation(sample_rate, hop_length)
        sr_d = sample_rate / self.factor
        self.sr_d = sr_d
        self.hop_d = hop_length // self.factor
        # window >= 3 periods of f0_min (Boersma), even, for the zero-padded 2W DFT
        w = int(math.ceil(3 * sr_d / f0_min))
        self.win = w + (w % 2)
        self.voicing_threshold = voicing_threshold
        self.octave_ratio = octave_ratio
        self.silence = 10 ** (silence_db / 10)  # mean-square floor
        # low-pass before decimation (windowed sinc at 0.9 x the new Nyquist)
        if self.factor > 1:
            taps = 8 * self.factor + 1
            n = np.arange(taps) - taps // 2
            fc = 0.9 / (2 * self.factor)
            h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(taps)
            h = h / h.sum()
            self.register_buffer(
                "lowpass", as_buffer(h[None, None, :])
            )
        else:
            self.register_buffer("lowpass", torch.ones(1, 1, 1))
        n_fft = 2 * self.win
        re, im = fourier_basis(n_fft, self.win)
        # frame lives in the first `win` samples of the 2W zero-padded DFT
        off = (n_fft - self.win) // 2
        re, im = re[:, off : off + self.win], im[:, off : off + self.win]
        basis = np.concatenate([re, im], axis=0)[:, None, :]
        self.n_bins = n_fft // 2 + 1
        self.register_buffer("basis", as_buffer(basis))
        self.lag_lo = max(2, int(math.floor(sr_d / f0_max)) - 1)
        self.lag_hi = min(self.win - 2, int(math.ceil(sr_d / f0_min)) + 1)
        lags = np.arange(self.lag_lo - 1, self.lag_hi + 2)
        k = np.arange(self.n_bins)[:, None]
        weight = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
        cos = weight * np.cos(2 * np.pi * k * lags[None, :] / n_fft)  # (K, L)
        r0 = weight[:, 0] * np.ones(self.n_bins)
        self.register_buffer("cos_lags", as_buffer(cos))  # (K, L)
        self.register_buffer("cos_zero", as_buffer(r0[:, None]))  # (K, 1)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.win) / self.win)
        rw = np.array([np.sum(hann[: self.win - t] * hann[t:]) for t in lags])
        rw = rw / np.sum(hann * hann)
        self.register_buffer("win_acf", as_buffer(rw))
        self.win_energy = float(np.sum(hann * hann))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_frames = wav.shape[-1] // self.hop_length + 1
        x = wav.unsqueeze(1)  # (B, 1, T)
        if self.factor > 1:
            pad = self.lowpass.shape[-1] // 2
            x = F.conv1d(F.pad(x, (pad, pad)), self.lowpass, stride=self.factor)
        half = self.win // 2
        x = F.pad(x, (half, half), mode="reflect")  # (B, 1, T' + W)
        spec = F.conv1d(x, self.basis, stride=self.hop_d)  # (B, 2K, Fr)
        spec = spec[:, :, :n_frames]
        re = spec[:, : self.n_bins]
        im = spec[:, self.n_bins :]
        power = (re * re + im * im).transpose(1, 2)  # (B, F, K)
        r = torch.matmul(power, self.cos_lags)  # (B, F, L)
        r0 = torch.matmul(power, self.cos_zero)  # (B, F, 1)
        nacf = r / (r0 + 1e-9) / self.win_acf  # (B, F, L)
        mid = nacf[:, :, 1:-1]
        left = nacf[:, :, :-2]
        right = nacf[:, :, 2:]
        best = mid.amax(dim=-1, keepdim=True)
        is_peak = (mid >= left) & (mid > right) & (mid >= self.octave_ratio * best)
        n_mid = mid.shape[-1]
        rank = torch.arange(n_mid, 0, -1, device=wav.device, dtype=wav.dtype)
        idx = torch.argmax(is_peak.to(wav.dtype) * rank, dim=-1, keepdim=True)  # (B, F, 1)
        c = torch.gather(mid, -1, idx)
        a = torch.gather(left, -1, idx)
        b = torch.gather(right, -1, idx)
        denom = torch.clamp(a - 2 * c + b, max=-1e-6)
        delta = torch.clamp(0.5 * (a - b) / denom, -0.5, 0.5)
        lag = idx.to(wav.dtype) + float(self.lag_lo) + delta  # mid[i] is lag lag_lo + i
        f0 = (self.sr_d / lag).squeeze(-1)  # (B, F)
        strength = c.squeeze(-1)
        level = r0.squeeze(-1) / self.win_energy
        voiced = (strength > self.voicing_threshold) & (level > self.silence)
        voiced_f = voiced.to(wav.dtype)
        return f0 * voiced_f, voiced_f


def shift_f0(f0: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
    """Shift ``(B, F)`` F0 by ``(B,)`` semitones (unvoiced zeros stay zero)."""
    return f0 * torch.pow(2.0, semitones.to(f0.dtype) / 12.0).unsqueeze(-1)


class F0Features(nn.Module):
    """F0 + voicing -> ``(B, 2 + 2 * len(freqs), F)`` features (§IV.B "F0 curves and voicing").

    ``u = log2(f0 / ref)`` (octaves), features ``[u, voiced, sin(2 pi k u), cos(2 pi k u)]`` for
    each k; all zero on unvoiced frames except the voicing flag. A smooth alternative to a
    coarse-F0 embedding that quantizes well and needs no gather.
    """

    def __init__(self, ref_hz: float = 200.0, freqs: tuple[float, ...] = (0.5, 1, 2, 4, 8, 12)):
        super().__init__()
        self.ref_hz = ref_hz
        self.register_buffer(
            "freqs", torch.tensor([2 * math.pi * f for f in freqs]).view(1, -1, 1)
        )
        self.dim = 2 + 2 * len(freqs)

    def forward(self, f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        v = voiced.unsqueeze(1)  # (B, 1, F)
        u = torch.log2(torch.clamp(f0, min=1.0) / self.ref_hz).unsqueeze(1) * v  # (B, 1, F)
        ang = u * self.freqs  # (B, n, F)
        return torch.cat([u, v, torch.sin(ang) * v, torch.cos(ang) * v], dim=1)
