"""Complex STFT / iSTFT as convolutions with a Fourier basis (CWS §2, §2.4).

"The STFT matrices with a FFT size of 32 ms and a hop size of 8 ms are used as the model input.
The actual frame length and shift size (in number of the samples) are automatically calculated
with the sample rate of the input audio" (§2.4). For a subband at ``sr / K`` the sizes are
those of ``sr / K`` (:func:`frame_geometry`): window ``floor(0.032 sr)`` samples (a periodic
Hann), hop ``floor(0.008 sr)``, FFT size the next power of two (the window is zero-padded to
it, centred). At 44.1 kHz, K = 1 / 2 / 4 / 8: windows 1411 / 705 / 352 / 176, hops
352 / 176 / 88 / 44, FFT sizes 2048 / 1024 / 512 / 256, so 1025 / 513 / 257 / 129 bins and
376 frames for 3 s (377 for K = 4 and 8, whose subbands carry the filter bank's lead-in): the
network input volume of Table 2's FLOP counts (:mod:`models.separation.flops`).

No ``torch.stft`` and no complex dtype in the graph: the forward transform is a strided
``conv1d`` with the windowed cosine and minus-sine bases, real and imaginary parts as
channels; the inverse is the overlap-add of the windowed one-sided inverse DFT basis (a
transposed convolution, computed in its polyphase form: :func:`transposed_conv1d`), divided by
the overlap-added squared window (the
least-squares iSTFT of Griffin & Lim 1984), so ``inverse(forward(x)) == x`` up to float
rounding for any length.
Frames are centred (``1 + L // hop`` frames, half an FFT of zeros on each side).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.separation import SeparationError

FRAME_MS = 32.0
HOP_MS = 8.0


def frame_geometry(sample_rate: float, frame_ms: float = FRAME_MS,
                   hop_ms: float = HOP_MS) -> tuple[int, int, int]:
    """``(win_length, hop_length, n_fft)`` in samples at ``sample_rate`` (module docstring)."""
    win = int(sample_rate * frame_ms / 1000.0 + 1e-9)
    hop = int(sample_rate * hop_ms / 1000.0 + 1e-9)
    if win < 4 or hop < 1 or hop > win // 2:
        raise SeparationError(
            f"STFT at {sample_rate} Hz with {frame_ms} ms frames and {hop_ms} ms hops gives a "
            f"{win}-sample window and {hop}-sample hop; expected a window of at least 4 samples "
            f"and a hop of at most half of it")
    return win, hop, 1 << (win - 1).bit_length()


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann of ``win_length`` centred in ``n_fft`` zeros (float64)."""
    w = np.zeros(n_fft)
    off = (n_fft - win_length) // 2
    w[off : off + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    return w


def polyphase_weight(weight: np.ndarray, stride: int) -> np.ndarray:
    """The ``conv1d`` weight ``(stride, C_in, r)`` that computes ``conv_transpose1d`` with the
    one-output-channel weight ``(C_in, 1, K)`` at ``stride`` (:func:`transposed_conv1d`);
    ``r = ceil(K / stride)``.

    Output sample ``t = j·stride + p`` is ``Σ_c Σ_m x[c, j − m] · W[c, m·stride + p]``: phase
    ``p`` of the output is an ordinary convolution of the input with the taps ``p, p + stride,
    ...`` of ``W`` (reversed, since ``conv1d`` correlates).
    """
    c_in, _, k = weight.shape
    r = -(-k // stride)
    w = np.zeros((c_in, r * stride))
    w[:, :k] = weight[:, 0, :]
    return w.reshape(c_in, r, stride).transpose(2, 0, 1)[:, :, ::-1].copy(order="C")


def transposed_conv1d(x: torch.Tensor, poly: torch.Tensor, length: int) -> torch.Tensor:
    """``conv_transpose1d(x, W, stride)[:, 0, :length]`` for ``x (N, C_in, L)`` from ``poly =
    polyphase_weight(W, stride)``: one ``conv1d`` with ``stride`` output channels (the output's
    phases) on the input padded by ``r − 1`` frames, then the phases interleaved →
    ``(N, length)``, ``length <= (L + r − 1)·stride``.

    XNNPACK runs a one-output-channel strided deconvolution very slowly: in the exported demo
    MDenseNet the iSTFT and the filter-bank synthesis as deconvolutions took 89 % of the
    program's time (``compress bench --profile``, 2026-12-06); this form is a plain convolution.
    """
    n, _, steps = x.shape
    stride, _, r = poly.shape
    y = F.conv1d(F.pad(x, (r - 1, r - 1)), poly)  # (N, stride, L + r - 1)
    return y.transpose(1, 2).reshape(n, (steps + r - 1) * stride)[:, :length]


def _buffer(arr: np.ndarray) -> torch.Tensor:
    src = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    return torch.empty(src.shape, dtype=torch.float32).copy_(src)


class ConvSTFT(nn.Module):
    """STFT ``(B, C, L) -> (B, C, 2, F, N)`` (real, imag) and its inverse, as convolutions.

    ``F = n_fft // 2 + 1`` bins, ``N = 1 + L // hop`` centred frames.
    """

    forward_basis: torch.Tensor
    inverse_basis: torch.Tensor
    window_sq: torch.Tensor
    inverse_poly: torch.Tensor
    window_poly: torch.Tensor
    #: buffers that follow from the constructor: checkpoints written before they existed
    #: still load (:func:`models.checkpoint.load_into` takes them from the model)
    _derived = ("inverse_poly", "window_poly")

    def __init__(self, sample_rate: float, frame_ms: float = FRAME_MS, hop_ms: float = HOP_MS):
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.win_length, self.hop_length, self.n_fft = frame_geometry(sample_rate, frame_ms,
                                                                      hop_ms)
        self.n_freq = self.n_fft // 2 + 1
        n = np.arange(self.n_fft)
        f = np.arange(self.n_freq)[:, None]
        ang = 2 * np.pi * f * n[None, :] / self.n_fft
        win = hann_window(self.win_length, self.n_fft)
        fwd = np.concatenate([np.cos(ang) * win, -np.sin(ang) * win])  # (2F, n_fft)
        # one-sided inverse DFT: DC and Nyquist once, the other bins twice (Hermitian half)
        weight = np.full((self.n_freq, 1), 2.0)
        weight[0] = weight[-1] = 1.0
        inv = np.concatenate([weight * np.cos(ang), -weight * np.sin(ang)]) / self.n_fft * win
        self.register_buffer("forward_basis", _buffer(fwd[:, None, :]))
        self.register_buffer("inverse_basis", _buffer(inv[:, None, :]))
        self.register_buffer("window_sq", _buffer((win**2)[None, None, :]))
        # the inverse as a convolution (transposed_conv1d)
        self.register_buffer("inverse_poly", _buffer(polyphase_weight(inv[:, None, :],
                                                                      self.hop_length)))
        self.register_buffer("window_poly", _buffer(polyphase_weight((win**2)[None, None, :],
                                                                     self.hop_length)))

    def frames(self, length: int) -> int:
        """STFT frames of a ``length``-sample signal."""
        return 1 + length // self.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` → ``(B, C, 2, F, N)``: index 0 of dim 2 is the real part, 1 the imag."""
        b, c, length = x.shape
        pad = self.n_fft // 2
        frames = F.pad(x.reshape(b * c, 1, length), (pad, pad))  # (B·C, 1, L + n_fft)
        spec = F.conv1d(frames, self.forward_basis, stride=self.hop_length)  # (B·C, 2F, N)
        return spec.reshape(b, c, 2, self.n_freq, spec.shape[-1])

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, C, 2, F, N)`` → ``(B, C, length)`` by windowed overlap-add / Σ window²."""
        b, c, _, n_freq, n_frames = spec.shape
        if n_freq != self.n_freq:
            raise SeparationError(f"iSTFT expects {self.n_freq} bins, got {n_freq}")
        full = (n_frames - 1) * self.hop_length + self.n_fft
        y = transposed_conv1d(spec.reshape(b * c, 2 * n_freq, n_frames), self.inverse_poly,
                              full)  # (B·C, (N - 1) hop + n_fft)
        ones = torch.ones(1, 1, n_frames, dtype=spec.dtype, device=spec.device)
        env = transposed_conv1d(ones, self.window_poly, full)  # a constant of the frame count
        pad = self.n_fft // 2
        if y.shape[-1] < pad + length:
            raise SeparationError(f"{n_frames} frames cover {y.shape[-1] - 2 * pad} samples, "
                                  f"fewer than the {length} asked for")
        y = y[..., pad : pad + length] / env[..., pad : pad + length].clamp_min(1e-10)
        return y.reshape(b, c, length)  # (B, C, L)
