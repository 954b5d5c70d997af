"""MelGAN-family vocoder (LHQ-SVC ref. 23: Kumar et al., MelGAN) and its training losses.

Generator: ``conv(k7) -> [LeakyReLU -> ConvTranspose1d(x r) -> residual stack (dilations
1, 3, 9)] per stage -> LeakyReLU -> conv(k7) -> tanh``; the upsampling ratios multiply to the
hop (128 = 8 x 4 x 4 by default). Explicit symmetric padding everywhere (no
``padding='same'``), no weight-norm parametrisation in the graph, so it exports to XNNPACK.
``forward(mel (B, 80, F)) -> (B, F * hop)``.

:class:`HNVocoder` is the neural-source-filter alternative (mel + F0, harmonic-plus-noise
source), which the demo presets use because it trains in minutes on a CPU.

Training (this repo): multi-resolution STFT loss (spectral convergence + log-magnitude L1,
Yamamoto et al.) plus an L1 on log-mel, computed with ``torch.stft`` in the LOSS only; an
optional multi-scale waveform discriminator (MelGAN's) with hinge loss and feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualStack(nn.Module):
    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 3, 9)):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.Conv1d(channels, channels, 3, dilation=d, padding=d),
                nn.LeakyReLU(0.2),
                nn.Conv1d(channels, channels, 1),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)  # (B, C, T)
        return x


class MelGANGenerator(nn.Module):
    """Mel -> waveform generator; total upsampling = prod(``ratios``) = hop length."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 256,
        ratios: list[int] | tuple[int, ...] = (8, 4, 4),
        dilations: list[int] | tuple[int, ...] = (1, 3, 9),
        mel_mean: float = -5.0,
        mel_std: float = 2.5,
    ):
        super().__init__()
        self.config = {"n_mels": n_mels, "channels": channels, "ratios": list(ratios),
                       "dilations": list(dilations), "mel_mean": mel_mean, "mel_std": mel_std}
        self.hop = 1
        for r in ratios:
            self.hop *= r
        self.n_mels = n_mels
        self.mel_mean = mel_mean
        self.mel_std = mel_std
        layers: list[nn.Module] = [nn.Conv1d(n_mels, channels, 7, padding=3)]
        ch = channels
        for r in ratios:
            out = max(ch // 2, 8)
            layers += [
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    ch, out, 2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2
                ),
                ResidualStack(out, tuple(dilations)),
            ]
            ch = out
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(ch, 1, 7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.mel_mean) / self.mel_std  # (B, M, F)
        return self.net(x).squeeze(1)  # (B, F * hop)


def stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop, n_fft, win, center=True, return_complex=True)
    return spec.abs().clamp(min=1e-7)  # (B, K, F)


def multi_resolution_stft_loss(
    y_hat: torch.Tensor,
    y: torch.Tensor,
    resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (256, 64), (128, 32)),
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over resolutions (training only)."""
    total = y.new_zeros(())
    for n_fft, hop in resolutions:
        a = stft_mag(y_hat, n_fft, hop)
        b = stft_mag(y, n_fft, hop)
        sc = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp(min=1e-7)
        mag = F.l1_loss(torch.log(a), torch.log(b))
        total = total + sc + mag
    return total / len(resolutions)


class ScaleDiscriminator(nn.Module):
    def __init__(self, channels: int = 16):
        super().__init__()
        c = channels
        self.layers = nn.ModuleList(
            [
                nn.Conv1d(1, c, 15, padding=7),
                nn.Conv1d(c, 4 * c, 41, stride=4, padding=20, groups=4),
                nn.Conv1d(4 * c, 8 * c, 41, stride=4, padding=20, groups=16),
                nn.Conv1d(8 * c, 8 * c, 5, padding=2),
            ]
        )
        self.out = nn.Conv1d(8 * c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = x.unsqueeze(1)
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiScaleDiscriminator(nn.Module):
    """MelGAN's discriminator at three scales (raw, /2, /4 average-pooled)."""

    def __init__(self, channels: int = 16, scales: int = 3):
        super().__init__()
        self.discs = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        outs = []
        for i, d in enumerate(self.discs):
            if i:
                x = F.avg_pool1d(x.unsqueeze(1), 4, 2, padding=1).squeeze(1)
            outs.append(d(x))
        return outs


def discriminator_loss(real, fake) -> torch.Tensor:  # type: ignore[no-untyped-def]
    loss = 0.0
    for (r, _), (f, _) in zip(real, fake):
        loss = loss + F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return loss  # type: ignore[return-value]


def generator_adv_loss(real, fake) -> torch.Tensor:  # type: ignore[no-untyped-def]
    adv = 0.0
    fm = 0.0
    for (_, rf), (f, ff) in zip(real, fake):
        adv = adv + (-f).mean()
        for a, b in zip(rf, ff):
            fm = fm + F.l1_loss(b, a.detach())
    return adv, fm  # type: ignore[return-value]


class HNVocoder(nn.Module):
    """Harmonic-plus-noise neural source-filter vocoder: ``(mel (B, M, F), f0 (B, F)) -> audio``.

    The neural-source-filter alternative to MelGAN (as in so-vits-svc's NSF-HiFiGAN / DDSP):
    the F0 the pipeline already has drives a phase-coherent harmonic source, so the network only
    shapes spectra and converges in minutes on a CPU.

    * spectral envelope = Mel pseudo-inverse of ``exp(mel)`` (a fixed matrix) + a learned
      log-domain correction from residual dilated stacks (MelGAN's) at the frame rate
      (zero-initialised, so an untrained vocoder is the DSP baseline);
    * harmonics ``k = 1..K`` below Nyquist: amplitudes read from the envelope at ``k * f0``
      (linear interpolation between bins), linearly interpolated to the sample rate;
      phase = 2π cumsum(f0 / sr); sum of ``a_k sin(k φ)``;
    * noise: envelope x learned per-bin gain (mostly on unvoiced frames) with a fixed random
      phase, synthesised through an inverse-STFT basis (``conv_transpose1d`` overlap-add).

    No complex tensors; exports with ``torch.export`` (gather, cumsum, sin are portable ops).
    Output length ``F * hop`` like :class:`MelGANGenerator`.
    """

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 128,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        harmonics: int = 128,
        stacks: int = 1,
        dilations: list[int] | tuple[int, ...] = (1, 3, 9),
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        phase_frames: int = 4096,
    ):
        super().__init__()
        import librosa
        import numpy as np

        from models.lhq_svc.mel import as_buffer

        self.config = {"n_mels": n_mels, "channels": channels, "sample_rate": sample_rate,
                       "n_fft": n_fft, "hop_length": hop_length, "harmonics": harmonics,
                       "stacks": stacks, "dilations": list(dilations), "mel_mean": mel_mean,
                       "mel_std": mel_std, "phase_frames": phase_frames}
        self.sample_rate = sample_rate
        self.hop = hop_length
        self.n_fft = n_fft
        self.n_bins = n_fft // 2 + 1
        self.n_mels = n_mels
        self.harmonics = harmonics
        self.mel_mean = mel_mean
        self.mel_std = mel_std
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, htk=False,
                                 norm="slaney")
        self.register_buffer("mel_pinv", as_buffer(np.linalg.pinv(fb)))  # (K, M)
        self.pre = nn.Conv1d(n_mels + 1, channels, 7, padding=3)
        self.stacks = nn.ModuleList(ResidualStack(channels, tuple(dilations))
                                    for _ in range(stacks))
        self.head = nn.Conv1d(channels, 3 * self.n_bins, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # inverse STFT basis (periodic Hann synthesis window, Hann^2 overlap-add normalised)
        n = np.arange(n_fft)
        k = np.arange(self.n_bins)[:, None]
        win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
        c = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
        ang = 2 * np.pi * k * n[None, :] / n_fft
        norm = 3.0 / 8.0 * n_fft / hop_length
        basis = np.concatenate([c * np.cos(ang) * win, -c * np.sin(ang) * win])[:, None, :]
        self.register_buffer("inverse_basis", as_buffer(basis / norm))
        rng = np.random.default_rng(1234)
        ph = rng.uniform(0, 2 * np.pi, (self.n_bins, phase_frames))
        self.register_buffer("noise_cos", as_buffer(np.cos(ph)))
        self.register_buffer("noise_sin", as_buffer(np.sin(ph)))
        self.register_buffer("ramp", as_buffer(np.arange(hop_length) / hop_length))
        k_idx = np.arange(1, harmonics + 1)[None, :, None]
        self.register_buffer("harmonic_index", as_buffer(k_idx))
        # STFT magnitude of a unit sinusoid under the Hann window is n_fft / 4
        self.amp_scale = 4.0 / n_fft

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Linear interpolation between frame centres: ``(B, C, F) -> (B, C, F * hop)``
        (after the last centre the value ramps to zero). Elementwise ops only."""
        b, c, f = x.shape
        nxt = torch.cat([x[:, :, 1:], x[:, :, :1] * 0.0], dim=-1)  # (B, C, F)
        y = x.unsqueeze(-1) * (1.0 - self.ramp) + nxt.unsqueeze(-1) * self.ramp  # (B, C, F, hop)
        return y.reshape(b, c, f * self.hop)

    def cycles(self, f0: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Harmonic-source cycles elapsed over the first `n_samples` of ``f0 (B, F)``: ``(B,)``.

        Used by chunked conversion to carry the source phase from one chunk to the next.
        """
        f0_s = self._upsample(f0.unsqueeze(1))[:, 0, :n_samples]
        return torch.sum(f0_s.double(), dim=-1).float() / self.sample_rate

    def forward(
        self,
        mel: torch.Tensor,
        f0: torch.Tensor,
        phase0: torch.Tensor | None = None,
        frame_offset: int = 0,
    ) -> torch.Tensor:
        """``phase0 (B,)`` (cycles) and ``frame_offset`` continue the harmonic phase and the
        noise phase of a previous chunk; the defaults start both at zero."""
        n_frames = mel.shape[-1]
        f0 = f0[:, :n_frames]
        voiced = (f0 > 0).to(mel.dtype).unsqueeze(1)  # (B, 1, F)
        x = torch.cat([(mel - self.mel_mean) / self.mel_std, voiced], dim=1)
        h = F.leaky_relu(self.pre(x), 0.2)  # (B, C, F)
        for stack in self.stacks:
            h = stack(h)
        d = self.head(F.leaky_relu(h, 0.2))  # (B, 3K, F)
        k = self.n_bins
        base = torch.log(torch.clamp(torch.matmul(self.mel_pinv, torch.exp(mel)), min=1e-5))
        env_h = torch.exp(torch.clamp(base + d[:, :k], max=8.0))  # (B, K, F)
        noise_gain = torch.sigmoid(d[:, 2 * k :] - 4.0 * voiced)  # ~0.5 unvoiced, ~0.01 voiced
        env_n = torch.exp(torch.clamp(base + d[:, k : 2 * k], max=8.0)) * noise_gain
        # harmonic amplitudes at k * f0 (fractional bin, linear interpolation)
        bin_hz = self.sample_rate / self.n_fft
        pos = self.harmonic_index * (f0.unsqueeze(1) / bin_hz)  # (B, H, F)
        valid = (pos < (k - 2)).to(mel.dtype) * voiced
        pos = torch.clamp(pos, max=float(k - 2))
        lo = torch.floor(pos)
        frac = pos - lo
        lo_i = lo.to(torch.int64)
        a_lo = torch.gather(env_h, 1, lo_i)
        a_hi = torch.gather(env_h, 1, lo_i + 1)
        amp = (a_lo + frac * (a_hi - a_lo)) * valid * self.amp_scale  # (B, H, F)
        amp_s = self._upsample(amp)  # (B, H, T)
        f0_s = self._upsample(f0.unsqueeze(1))  # (B, 1, T)
        # float64 running phase: a float32 cumsum drifts by ~1e-5 cycles over a few seconds,
        # which the k-th harmonic multiplies by k (and runtimes accumulate in other orders)
        cyc = torch.cumsum(f0_s.to(torch.float64) / self.sample_rate, dim=-1)
        if phase0 is not None:
            p0 = phase0.reshape(-1, 1, 1).to(torch.float64)
            cyc = cyc + (p0 - torch.floor(p0))
        cyc = (cyc - torch.floor(cyc)).to(mel.dtype)  # wrapped cycles (B, 1, T)
        harm = torch.sum(amp_s * torch.sin(2 * torch.pi * self.harmonic_index * cyc), dim=1)
        if frame_offset == 0 and n_frames <= self.noise_cos.shape[1]:
            n_cos, n_sin = self.noise_cos[:, :n_frames], self.noise_sin[:, :n_frames]
        else:  # eager chunked / very long inputs: wrap around the phase table
            idx = (torch.arange(n_frames) + frame_offset) % self.noise_cos.shape[1]
            n_cos, n_sin = self.noise_cos[:, idx], self.noise_sin[:, idx]
        spec = torch.cat([env_n * n_cos, env_n * n_sin], dim=1)  # (B, 2K, F)
        noise = F.conv_transpose1d(spec, self.inverse_basis, stride=self.hop)
        start = self.n_fft // 2
        noise = noise[:, 0, start : start + n_frames * self.hop]
        return harm + noise  # (B, F * hop)
