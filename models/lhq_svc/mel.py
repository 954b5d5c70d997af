"""Exportable log-mel spectrogram (LHQ-SVC §IV.B: 512-point FFT, hop 128, 80 mel bins).

The STFT is a strided ``conv1d`` with a fixed (Hann-windowed) Fourier basis, so the graph has
no complex tensors and no ``torch.stft`` — it exports with ``torch.export`` and lowers to
XNNPACK. It matches ``models.data.features.log_mel`` (librosa: periodic Hann, center=True with
reflect padding, magnitude, Slaney mel, ``log(clamp(mel, 1e-5))``); frames: ``1 + T // hop``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def as_buffer(arr: np.ndarray) -> torch.Tensor:
    """float32 tensor with fresh contiguous strides (numpy's ``[None]`` axes have stride 0,
    which ExecuTorch rejects)."""
    src = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    return torch.empty(src.shape, dtype=torch.float32).copy_(src)


def fourier_basis(n_fft: int, win_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real/imag DFT bases, each ``(n_fft // 2 + 1, n_fft)`` float64.

    The periodic Hann window of ``win_length`` is centred in ``n_fft`` (as librosa does).
    """
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    win = np.zeros(n_fft)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    off = (n_fft - win_length) // 2
    win[off : off + win_length] = w
    ang = 2 * np.pi * k * n[None, :] / n_fft
    return np.cos(ang) * win, -np.sin(ang) * win


class STFTMagnitude(nn.Module):
    """``|STFT|`` of ``(B, T)`` audio as ``(B, n_fft // 2 + 1, 1 + T // hop)`` via conv1d."""

    def __init__(self, n_fft: int = 512, hop_length: int = 128, win_length: int | None = None):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        re, im = fourier_basis(n_fft, win_length or n_fft)
        basis = np.concatenate([re, im], axis=0)[:, None, :]  # (2K, 1, n_fft)
        self.register_buffer("basis", as_buffer(basis))
        self.n_bins = n_fft // 2 + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect")  # (B, 1, T + n_fft)
        spec = F.conv1d(x, self.basis, stride=self.hop_length)  # (B, 2K, frames)
        re = spec[:, : self.n_bins]
        im = spec[:, self.n_bins :]
        return torch.sqrt(re * re + im * im + 1e-12)  # (B, K, frames)


class LogMel(nn.Module):
    """Log-mel spectrogram ``(B, T) -> (B, n_mels, 1 + T // hop)`` matching the data contract."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        win_length: int = 512,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = None,
    ):
        super().__init__()
        import librosa

        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.stft = STFTMagnitude(n_fft, hop_length, win_length)
        fb = librosa.filters.mel(
            sr=sample_rate,
            n_fft=n_fft,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax if fmax is not None else sample_rate / 2,
            htk=False,
            norm="slaney",
        )
        self.register_buffer("mel_fb", as_buffer(fb))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mag = self.stft(wav)  # (B, K, F)
        mel = torch.matmul(self.mel_fb, mag)  # (B, n_mels, F)
        return torch.log(torch.clamp(mel, min=1e-5))
