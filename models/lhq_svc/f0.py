"""F0 for LHQ-SVC (§IV.B): an exportable torch estimator, pitch shift and F0 features.

Preprocessing uses DIO (``models.data.features.dio_f0``) as the paper does; DIO is C code and
cannot run inside an exported graph, so the on-device path uses :class:`TorchF0`, a DSP
estimator made of torch ops only:

1. decimate to ~8 kHz with a windowed-sinc low-pass (float64, a polyphase sum of slices: the
   same numbers as a strided ``conv1d``);
2. Hann-windowed frames (centred, hop = ``hop_length / factor``), power spectrum through a
   zero-padded conv1d Fourier basis (linear, not circular, autocorrelation);
3. autocorrelation = power spectrum @ cosine basis, divided by the window's own autocorrelation
   (Boersma 1993), searched between ``f0_min`` and ``f0_max``;
4. the first local maximum reaching ``octave_ratio`` x the best peak is the period (guards
   against octave-down errors), refined by parabolic interpolation;
5. voiced = peak strength above ``voicing_threshold`` and frame level above a floor.

Steps 2-4 pick the peak in float32 (the big DFT conv1d and matmuls run in XNNPACK); the
refinement recomputes the normalised autocorrelation at the five lags around that peak
directly in the time domain in float64 (``sum_n y[n] y[n + lag]`` of the windowed frame — the
same linear autocorrelation, up to rounding), re-centres on the float64 maximum of the peak
and its two neighbours (inside the search range, only when a peak was found) and
interpolates there; the voicing strength and the frame level are float64 too.

Why (export issue 4): the HN vocoder integrates F0 into the harmonic phase, so F0 differences
of a few float32 ulps between the exported program and eager PyTorch (float32 sums ordered
differently, then divided by the peak's curvature in the parabolic interpolation) became a
phase drift: a trained ``lhq-svc-demo`` pipeline missed the fp32 export gate (1e-4 of the
output's scale) by 2.3x although every stage alone passed. In float64 the refinement is exact
to ~1e-16, so the exported F0 is bit-identical to eager (barring ties at that level), and a
near-tie between two neighbouring float32 lags no longer moves the interpolation centre. The
float64 work runs on portable kernels (~3 ms per second of audio on the 2-core x86 host, one
thread, vs ~2 ms for the float32 part), avoids ``torch.sum`` (:func:`sum64`), ``cat`` (the int8
quantizer would annotate it) and float64 convolutions (onnxruntime has none).

Frames line up with the log-mel frames: ``1 + T // hop_length``. ``stride=2`` estimates every
other frame and interpolates between them (:meth:`TorchF0.upsample`): the float64 refinement,
the estimator's largest cost on device (~3 of ~4 ms per second of audio, portable kernels),
halves. An architecture search may choose it (unit ``f0.rate``); a 6 Hz vibrato of ±50 cents
sampled every 16 ms instead of 8 ms is off by at most ~2 cents between estimates.
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


def sum64(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis in float64, in order: ``cumsum(x)[..., -1]``.

    Not ``torch.sum``: ExecuTorch's optimized ``sum.IntList_out`` kernel (executorch 1.5)
    accumulates a one-dimension reduction in float32 even for float64 and int64 tensors, which
    would throw the float64 refinement back to float32 precision on device. ``cumsum`` is a
    sequential scan with a float64 accumulator both in eager PyTorch and in ExecuTorch, so the
    two give the same bits.
    """
    return torch.cumsum(x, dim=-1)[..., -1]


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
        stride: int = 1,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride!r}; expected 1 (every frame) or 2 (every other "
                             "frame, interpolated)")
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.stride = int(stride)
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
        h = np.ones(1)
        if self.factor > 1:
            taps = 8 * self.factor + 1
            n = np.arange(taps) - taps // 2
            fc = 0.9 / (2 * self.factor)
            h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(taps)
            h = h / h.sum()
            # checkpoints carry this buffer (strict load); the forward uses ``self.taps``
            self.register_buffer("lowpass", as_buffer(h[None, None, :]))
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
        # float64 refinement (module docstring): lags lag_lo - 2 .. lag_hi + 2 around the peak
        self.max_lag = self.lag_hi + 2
        all_lags = np.arange(self.max_lag + 1)
        rw_all = np.array([np.sum(hann[: self.win - t] * hann[t:]) for t in all_lags])
        # Plain float64 tensor attributes, not buffers: checkpoints stay as they were and
        # torch.export lifts them as constants; ``_apply`` moves them with the module.
        self.hann64 = torch.tensor(hann, dtype=torch.float64)  # (W,)
        self.win_acf64 = torch.tensor(rw_all / np.sum(hann * hann), dtype=torch.float64)
        # the float32 low-pass taps as Python floats (exact in float32 and float64: an exported
        # program may hold scalars in float32)
        self.taps = tuple(float(v) for v in self.lowpass.reshape(-1).tolist())

    _FIXED64 = ("hann64", "win_acf64")

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``.to(device)`` moves the float64 tables; they stay float64 whatever ``fn`` casts to."""
        for name in self._FIXED64:
            setattr(self, name, fn(getattr(self, name)).to(torch.float64))
        return super()._apply(fn, recurse)

    def decimate64(self, wav: torch.Tensor) -> torch.Tensor:
        """Low-pass + decimate ``(B, T)`` in float64 -> ``(B, 1, T')``: the strided conv1d as a
        polyphase sum of shifted slices in a fixed order (the same bits in every runtime, and no
        float64 convolution, which onnxruntime lacks)."""
        x = wav.to(torch.float64)  # (B, T)
        if self.factor == 1:
            return x.unsqueeze(1)
        d = self.factor
        taps = len(self.taps)
        n_out = (x.shape[-1] - 1) // d + 1  # = conv1d(pad taps // 2, stride d) output length
        q_max = (taps - 1) // d
        need = (n_out + q_max) * d
        x = F.pad(x, (taps // 2, need - x.shape[-1] - taps // 2))  # (B, need)
        poly = x.reshape(x.shape[0], n_out + q_max, d).transpose(1, 2).contiguous()
        rows = [poly[:, p] for p in range(d)]  # d x (B, n): row p holds x[q * d + p]
        out = rows[0][:, 0:n_out] * self.taps[0]
        for j in range(1, taps):
            q, p = divmod(j, d)
            out = out + rows[p][:, q : q + n_out] * self.taps[j]
        return out.unsqueeze(1)  # (B, 1, T')

    def frames64(self, x: torch.Tensor, n_frames: int, hop: int) -> torch.Tensor:
        """Hann-windowed frames ``(B, F, W)`` of the padded signal ``x (B, 1, T' + W)`` (frame
        ``f`` starts at ``f * hop``, as in the strided DFT conv), read with one index_select."""
        b = x.shape[0]
        start = torch.arange(n_frames, device=x.device).unsqueeze(1) * hop  # (F, 1)
        index = (start + torch.arange(self.win, device=x.device)).reshape(-1)  # (F * W,)
        fr = torch.index_select(x[:, 0], 1, index).reshape(b, n_frames, self.win)
        return fr * self.hann64  # (B, F, W)

    def acf64(self, y: torch.Tensor, first: torch.Tensor, n_lags: int) -> list[torch.Tensor]:
        """Linear autocorrelation ``sum_n y[n] y[n + lag]`` of ``y (B, F, W)`` at the lags
        ``first + i`` (``i < n_lags``) of each frame (``first (B, F, 1)`` int64, ``0 <= first``,
        ``first + n_lags - 1 <= max_lag``) -> ``n_lags`` tensors ``(B, F, 1)``.

        One gather reads ``y[first : first + W + n_lags - 1]`` of each (zero-padded) frame; the
        lagged copies are static slices of it. A list, not a stacked tensor: no ``cat`` on
        float64 (XNNPACK's int8 quantizer annotates every ``cat``).
        """
        b, f, w = y.shape
        wp = w + self.max_lag
        span = w + n_lags - 1
        flat = F.pad(y, (0, self.max_lag)).reshape(b, f * wp)  # (B, F * Wp)
        start = torch.arange(f, device=y.device).view(1, f, 1) * wp + first  # (B, F, 1)
        index = (start + torch.arange(span, device=y.device)).reshape(b, f * span)
        z = torch.gather(flat, 1, index).reshape(b, f, span)  # (B, F, W + n_lags - 1)
        return [sum64(y * z[..., i : i + w]).unsqueeze(-1) for i in range(n_lags)]

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_out = wav.shape[-1] // self.hop_length + 1
        # with stride 2 every other frame is estimated and the rest interpolated (upsample)
        n_frames = (n_out - 1) // self.stride + 1
        hop = self.hop_d * self.stride
        half = self.win // 2
        x64 = F.pad(self.decimate64(wav), (half, half), mode="reflect")  # (B, 1, T' + W)
        # --- peak search, float32 (as the DFT conv / matmuls run in XNNPACK)
        x = x64.to(wav.dtype)
        spec = F.conv1d(x, self.basis, stride=hop)  # (B, 2K, Fr)
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
        # --- refinement, float64: lags idx - 2 .. idx + 2 (mid[i] is lag lag_lo + i)
        y = self.frames64(x64, n_frames, hop)  # (B, F, W)
        lag0 = idx + self.lag_lo  # (B, F, 1) int64, the float32 peak
        r64 = self.acf64(y, lag0 - 2, 5)  # 5 x (B, F, 1)
        r0_64 = sum64(y * y).unsqueeze(-1)  # (B, F, 1)
        # constants exactly representable in float32 (an exported program may round scalars)
        den = r0_64 + 2.0**-30
        n0, n1, n2, n3, n4 = (
            r64[i] / den / self.win_acf64[lag0 + (i - 2)] for i in range(5)
        )  # normalised autocorrelation at lag0 - 2 .. lag0 + 2, each (B, F, 1)
        # re-centre on the float64 maximum of lag0 - 1, lag0, lag0 + 1 (the centre wins ties),
        # only when the float32 search found a peak, and only inside the search range
        has_peak = torch.gather(is_peak, -1, idx)  # (B, F, 1)
        floor = torch.full_like(n2, -(2.0**30))
        lo = torch.where(has_peak & (lag0 > self.lag_lo), n1, floor)
        hi = torch.where(has_peak & (lag0 < self.lag_hi), n3, floor)
        go_lo = (lo > n2) & (lo >= hi)
        go_hi = (hi > n2) & (hi > lo)
        a = torch.where(go_lo, n0, torch.where(go_hi, n2, n1))
        c = torch.where(go_lo, n1, torch.where(go_hi, n3, n2))
        b = torch.where(go_lo, n2, torch.where(go_hi, n4, n3))
        centre = lag0 - go_lo.to(torch.int64) + go_hi.to(torch.int64)  # (B, F, 1)
        denom = torch.clamp(a - 2 * c + b, max=-(2.0**-20))
        delta = torch.clamp(0.5 * (a - b) / denom, -0.5, 0.5)
        lag = centre.to(torch.float64) + delta
        f0 = (self.sr_d / lag).squeeze(-1).to(wav.dtype)  # (B, F)
        strength = c.squeeze(-1)
        level = r0_64.squeeze(-1) / self.win_energy
        voiced = (strength > self.voicing_threshold) & (level > self.silence)
        voiced_f = voiced.to(wav.dtype)
        if self.stride == 1:
            return f0 * voiced_f, voiced_f
        return self.upsample(f0 * voiced_f, voiced_f, n_out)

    def upsample(self, f0: torch.Tensor, voiced: torch.Tensor, n_out: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Estimates on every other frame ``(B, F')`` -> ``(B, n_out)``: a frame between two
        estimates gets their mean when both are voiced and is unvoiced otherwise; a frame
        after the last estimate repeats it.

        Frame ``i`` reads estimates ``i // 2`` and ``min((i + 1) // 2, F' - 1)`` (one
        ``index_select`` each; the same one twice on even frames) and takes ``(a + b) * 0.5``:
        rounded once, the same in every backend (``a`` itself when both are one), so the
        exported program's F0 stays bit-identical to eager PyTorch (module docstring);
        ``floor((v_a + v_b) / 2)`` is the voicing of the pair (no comparison). No ``cat`` or
        ``stack``: the int8 quantizer annotates every ``cat``, whichever modules it is told
        to quantize, and an int8 F0 is off by Hz (it broke every group of a demo student's
        int8 sensitivity run)."""
        n_in = f0.shape[-1]
        i = torch.arange(n_out, device=f0.device)
        lo = torch.div(i, 2, rounding_mode="floor")
        hi = torch.clamp(torch.div(i + 1, 2, rounding_mode="floor"), max=n_in - 1)
        on = torch.floor((voiced.index_select(1, lo) + voiced.index_select(1, hi)) * 0.5)
        mean = (f0.index_select(1, lo) + f0.index_select(1, hi)) * 0.5
        return mean * on, on


def shift_f0(f0: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
    """Shift ``(B, F)`` F0 by ``(B,)`` semitones (unvoiced zeros stay zero).

    The ratio ``2 ** (semitones / 12)`` and the product are computed in float64 and rounded
    once: a float32 ``pow`` differs by an ulp between ExecuTorch's kernel and eager PyTorch for
    some shifts, and a constant 1-ulp F0 scale integrates into a harmonic phase drift that
    breaks the fp32 export gate (:class:`TorchF0`'s docstring).
    """
    ratio = torch.pow(2.0, semitones.to(torch.float64) / 12.0).unsqueeze(-1)  # (B, 1)
    return (f0.to(torch.float64) * ratio).to(f0.dtype)


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

    @staticmethod
    def decode(feats: torch.Tensor, ref_hz: float = 200.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f0 (B, F), voiced (B, F))`` back from features of ``F0Features(ref_hz)``: channel 0
        is ``u``, channel 1 the voicing (unvoiced frames come back as ``ref_hz``, voiced 0)."""
        return ref_hz * torch.exp(feats[:, 0] * math.log(2.0)), feats[:, 1]
