"""MelGAN-family vocoder (LHQ-SVC ref. 23: Kumar et al., MelGAN) and its training losses.

Generator: ``conv(k7) -> [LeakyReLU -> ConvTranspose1d(x r) -> residual stack (dilations
1, 3, 9)] per stage -> LeakyReLU -> conv(k7) -> tanh``; the upsampling ratios multiply to the
hop (128 = 8 x 4 x 4 by default). Explicit symmetric padding everywhere (no
``padding='same'``), no weight-norm parametrisation in the graph, so it exports to XNNPACK.
``forward(mel (B, 80, F)) -> (B, F * hop)``.

:class:`HNVocoder` is the neural-source-filter alternative (mel + F0, harmonic-plus-noise
source), which the demo presets use because it trains in minutes on a CPU. Its Griffin-Lim
iterations are one parameter-free :class:`GriffinLimIteration` module each
(``source.iterations``), so an architecture search can time, remove or add them one by one.

Training (this repo): multi-resolution STFT loss (spectral convergence + log-magnitude L1,
Yamamoto et al.) plus an L1 on log-mel, computed with ``torch.stft`` in the LOSS only; an
optional multi-scale waveform discriminator (MelGAN's) with hinge loss and feature matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.lhq_svc.mel import fourier_basis
from models.units import ChannelGroup, Slot

# How :class:`HarmonicNoiseSource` turns the envelope into audio (see its docstring).
SYNTHESES = ("harmonic", "stft")


class ResidualStack(nn.Module):
    """Residual layers ``x + conv1x1(lrelu(conv_d(lrelu(x))))``, one per dilation ``d``; each
    layer can be removed or duplicated (``layers`` is a plain ModuleList)."""

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

    def conv(self, index: int) -> nn.Conv1d:
        """The dilated convolution of layer `index`."""
        return cast(nn.Conv1d, cast(nn.Sequential, self.layers[index])[1])

    @property
    def dilations(self) -> list[int]:
        return [int(self.conv(i).dilation[0]) for i in range(len(self.layers))]

    def width_groups(self, prefix: str, width: int) -> tuple[list[Slot], list[ChannelGroup]]:
        """Slots of the stack's residual stream (to be joined with the stream's producers
        and consumers outside), and one group per layer for its hidden channels; keys
        under `prefix` (the stack's key prefix, ending in a dot)."""
        stream: list[Slot] = []
        groups: list[ChannelGroup] = []
        for i in range(len(self.layers)):
            p = f"{prefix}layers.{i}."
            stream += [Slot(p + "1.weight", 1), Slot(p + "3.weight", 0, producer=True),
                       Slot(p + "3.bias", 0)]
            hidden = (Slot(p + "1.weight", 0, producer=True), Slot(p + "1.bias", 0),
                      Slot(p + "3.weight", 1))
            groups.append(ChannelGroup(p + "hidden", self.conv(i).out_channels, width, hidden))
        return stream, groups


def _stack_dilations(dilations: Sequence[int] | Sequence[Sequence[int]], stacks: int
                     ) -> list[list[int]]:
    """Per-stack dilation lists: a flat list is every stack's, a list of lists one each."""
    items: list[Any] = list(dilations)
    nested = [isinstance(d, Sequence) for d in items]
    if items and all(nested):
        if len(items) != stacks:
            raise ValueError(f"dilations {items} give {len(items)} stacks, expected {stacks}")
        return [[int(x) for x in d] for d in items]
    if any(nested):
        raise ValueError(f"dilations {items}: expected a list of ints or a list of lists")
    return [[int(d) for d in items] for _ in range(stacks)]


class MelGANGenerator(nn.Module):
    """Mel -> waveform generator; total upsampling = prod(``ratios``) = hop length.

    ``channels`` is the first stage's width; each upsampling stage halves it (at least 8).
    ``dilations`` is every stage's residual stack, or one list per stage (evolved models).
    """

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 256,
        ratios: list[int] | tuple[int, ...] = (8, 4, 4),
        dilations: Sequence[int] | Sequence[Sequence[int]] = (1, 3, 9),
        mel_mean: float = -5.0,
        mel_std: float = 2.5,
    ):
        super().__init__()
        per_stage = _stack_dilations(dilations, len(ratios))
        self._flat_dilations = not any(isinstance(d, Sequence) for d in dilations)
        self.hop = 1
        for r in ratios:
            self.hop *= r
        self.n_mels = n_mels
        self.ratios = list(ratios)
        self.mel_mean = mel_mean
        self.mel_std = mel_std
        layers: list[nn.Module] = [nn.Conv1d(n_mels, channels, 7, padding=3)]
        ch = channels
        for r, dil in zip(ratios, per_stage):
            out = self.stage_width(ch)
            layers += [
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    ch, out, 2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2
                ),
                ResidualStack(out, tuple(dil)),
            ]
            ch = out
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(ch, 1, 7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    @staticmethod
    def stage_width(channels: int) -> int:
        """Width of an upsampling stage fed by `channels` channels."""
        return max(channels // 2, 8)

    @property
    def channels(self) -> int:
        return cast(nn.Conv1d, self.net[0]).out_channels

    @property
    def stacks(self) -> list[ResidualStack]:
        """The residual stack of each upsampling stage (``net[3 + 3 s]``)."""
        return [cast(ResidualStack, self.net[3 + 3 * s]) for s in range(len(self.ratios))]

    def stage_channels(self, stage: int) -> int:
        """Width of upsampling stage `stage` (its transposed conv's output)."""
        return cast(nn.ConvTranspose1d, self.net[2 + 3 * stage]).out_channels

    def stack_path(self, stage: int) -> str:
        """Dotted path of stage `stage`'s residual stack below this module."""
        return f"net.{3 + 3 * stage}"

    @property
    def dilations(self) -> list[list[int]]:
        return [st.dilations for st in self.stacks]

    @property
    def config(self) -> dict[str, Any]:
        """Build kwargs of the current (possibly evolved or narrowed) generator."""
        dil: list[Any] = self.dilations
        if self._flat_dilations and all(d == dil[0] for d in dil):
            dil = list(dil[0])  # as built: one list for every stage
        return {"n_mels": self.n_mels, "channels": self.channels, "ratios": list(self.ratios),
                "dilations": dil, "mel_mean": self.mel_mean, "mel_std": self.mel_std}

    def width_groups(self, width: int) -> list[ChannelGroup]:
        """The channels narrowing ``channels`` to `width` slices (keys of this module): the
        input conv's output, then each stage's stream (its transposed conv's output, its
        residual stack, the next stage's input) at the halved widths, and every residual
        layer's hidden channels."""
        n = len(self.ratios)
        groups: list[ChannelGroup] = []
        old, new = self.channels, width
        # the input conv -> the first transposed conv (ConvTranspose1d weight: (in, out, k))
        producer = [Slot("net.0.weight", 0, producer=True), Slot("net.0.bias", 0)]
        for s in range(n):
            conv_t = f"net.{2 + 3 * s}."
            groups.append(ChannelGroup(f"stream{s}", old, new,
                                       (*producer, Slot(conv_t + "weight", 0))))
            old, new = self.stage_width(old), self.stage_width(new)
            stream, hidden = self.stacks[s].width_groups(f"{self.stack_path(s)}.", new)
            producer = [Slot(conv_t + "weight", 1, producer=True), Slot(conv_t + "bias", 0),
                        *stream]
            groups += hidden
        out = f"net.{2 + 3 * n}.weight"
        groups.append(ChannelGroup(f"stream{n}", old, new,
                                   (*producer, Slot(out, 1))))
        return groups

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


def interpolation_weights(hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame interpolation matrices: sample ``j`` of frame ``f`` (``0 <= j < hop``) from
    the frame values ``x_f`` and ``x_{f+1}``.

    * ``linear (hop, 2)``: ``[1 - j/h, j/h]`` -- linear interpolation between frame centres;
    * ``running (hop, 2)``: ``[A_j, B_j]``, the inclusive running sum of that interpolation
      inside the frame, ``sum_{i <= j} (1 - i/h) x_f + (i/h) x_{f+1} = x_f A_j + x_{f+1} B_j``
      with ``A_j = (j + 1) - j (j + 1) / (2h)`` and ``B_j = j (j + 1) / (2h)``.

    Applied with ``F.linear`` to ``stack([x_f, x_{f+1}], -1)`` they give ``(..., F, hop)``,
    i.e. ``(..., F * hop)`` after a reshape: a GEMM with a fixed weight, which XNNPACK runs.
    """
    j = np.arange(hop, dtype=np.float64)
    linear = np.stack([1.0 - j / hop, j / hop], axis=1)
    b = j * (j + 1) / (2 * hop)
    running = np.stack([(j + 1) - b, b], axis=1)
    return linear, running


def inverse_stft_basis(n_fft: int, hop: int) -> np.ndarray:
    """Inverse real-DFT basis ``(2K, n_fft)`` (rows: cos of bins 0..K-1, then -sin), windowed
    by a periodic Hann synthesis window and normalised for Hann^2 overlap-add at `hop`."""
    n_bins = n_fft // 2 + 1
    n = np.arange(n_fft)
    k = np.arange(n_bins)[:, None]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    c = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
    ang = 2 * np.pi * k * n[None, :] / n_fft
    norm = 3.0 / 8.0 * n_fft / hop
    return np.concatenate([c * np.cos(ang) * win, -c * np.sin(ang) * win]) / norm


class _STFTOps(nn.Module):
    """The STFT analysis / overlap-add synthesis shared by :class:`HarmonicNoiseSource` and
    :class:`GriffinLimIteration`; subclasses set ``n_fft``, ``hop``, ``n_bins``,
    ``overlap`` and the fixed ``analysis_weight`` / ``synthesis_weight`` tensors."""

    n_fft: int
    hop: int
    n_bins: int
    overlap: int
    analysis_weight: torch.Tensor
    synthesis_weight: torch.Tensor

    def overlap_add(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT of ``spec (B, 2K, F)`` (real rows, then imaginary): windowed frames
        from one GEMM, overlap-added by shifted sums of hop-long blocks ->
        ``(B, (F + overlap - 1) * hop)`` (frame ``f`` starts at sample ``f * hop``).

        Equal to ``conv_transpose1d(spec, basis, stride=hop)``, which XNNPACK runs ~40x slower
        than this for one output channel and a 512-long kernel.
        """
        b, _, n = spec.shape
        r = self.overlap
        frames = F.linear(spec.transpose(1, 2), self.synthesis_weight)  # (B, F, r * hop)
        frames = frames.reshape(b, n, r, self.hop)  # (B, F, r, hop)
        out = F.pad(frames[:, :, 0], (0, 0, 0, r - 1))  # (B, F + r - 1, hop)
        for i in range(1, r):
            out = out + F.pad(frames[:, :, i], (0, 0, i, r - 1 - i))
        return out.reshape(b, (n + r - 1) * self.hop)

    def analyse(self, wav: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """STFT of ``wav (B, T)`` as real and imaginary parts, each ``(B, K, n_frames)``.

        Frame ``f`` is centred on sample ``f * hop`` (zero padding), as the log-mel's frames
        and :meth:`overlap_add` are. A strided conv1d with the fixed windowed DFT basis.
        """
        pad = self.n_fft // 2
        spec = F.conv1d(F.pad(wav.unsqueeze(1), (pad, pad)), self.analysis_weight,
                        stride=self.hop)[:, :, :n_frames]  # (B, 2K, F)
        return spec[:, : self.n_bins], spec[:, self.n_bins :]

    def synthesise(self, mag: torch.Tensor, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """Inverse STFT of ``mag * (re, im) / |(re, im)|`` (all ``(B, K, F)``) -> ``(B, F * hop)``,
        aligned with the input frames."""
        b, k, n_frames = mag.shape
        scale = mag * torch.rsqrt(re * re + im * im + 1e-12)
        spec = torch.stack([scale * re, scale * im], dim=1).reshape(b, 2 * k, n_frames)
        y = self.overlap_add(spec)  # (B, (F + overlap - 1) * hop)
        start = self.n_fft // 2
        return y[:, start : start + n_frames * self.hop]


class GriffinLimIteration(_STFTOps):
    """One Griffin-Lim iteration (Griffin & Lim 1984): re-analyse the signal, keep its phase,
    impose the magnitude. ``forward(y (B, F * hop), mag (B, K, F)) -> (B, F * hop)``.

    No parameters and no buffers: it reads the STFT bases of the :class:`HarmonicNoiseSource`
    it belongs to (a plain reference, not a submodule), so the bases are moved and cast with
    the source and an exported program holds them once. One module per iteration
    (``HarmonicNoiseSource.iterations``), so each can be hooked, timed, removed or
    duplicated on its own.
    """

    def __init__(self, source: HarmonicNoiseSource):
        super().__init__()
        self.n_fft = source.n_fft
        self.hop = source.hop
        self.n_bins = source.n_bins
        self.overlap = source.overlap
        # not registered as a submodule: the source owns this module (no cycle in the tree)
        object.__setattr__(self, "_source", source)

    @property  # type: ignore[override]
    def analysis_weight(self) -> torch.Tensor:
        return self._source.analysis_weight

    @property  # type: ignore[override]
    def synthesis_weight(self) -> torch.Tensor:
        return self._source.synthesis_weight

    def forward(self, y: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        yr, yi = self.analyse(y, mag.shape[-1])  # (B, K, F) each
        return self.synthesise(mag, yr, yi)  # (B, F * hop)


class HarmonicNoiseSource(_STFTOps):
    """The fixed DSP half of :class:`HNVocoder`: envelope -> harmonic + noise waveform.

    No learned weights; it stays fp32 when the vocoder is quantized (``export_keep_fp32``).
    Every per-sample ``(B, H, T)`` op is one XNNPACK runs: frame -> sample interpolation is
    a GEMM with a fixed ``(hop, 2)`` weight (:func:`interpolation_weights`); the running
    phase inside a frame has a closed form for linearly interpolated F0 (a second fixed
    weight), so only the F-long frame-start offsets need a (float64) cumulative sum; ``2π k φ``
    and the sum over harmonics are 1x1 convolutions with fixed weights; the noise inverse
    STFT is a GEMM plus a shifted-block overlap-add.
    Frame-rate ops (gather, the float64 cumsum, casts) stay on portable kernels.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, harmonics: int,
                 synthesis: str = "harmonic", phase_iters: int = 0):
        super().__init__()
        if synthesis not in SYNTHESES:
            raise ValueError(f"synthesis={synthesis!r}; valid: {SYNTHESES}")
        if phase_iters < 0 or (phase_iters and synthesis != "stft"):
            raise ValueError(f"phase_iters={phase_iters!r}: a count >= 0, and only with "
                             "synthesis='stft'")
        self.synthesis = synthesis
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop_length
        self.n_bins = n_fft // 2 + 1
        self.harmonics = harmonics
        # STFT magnitude of a unit sinusoid under the Hann window is n_fft / 4
        self.amp_scale = 4.0 / n_fft
        linear, running = interpolation_weights(hop_length)
        fixed = {
            "up_weight": linear,  # (h, 2)
            # [f0_f, f0_{f+1}] (Hz), frame-start offset (cycles) -> cycles: (h, 3)
            "phase_weight": np.concatenate([running / sample_rate, np.ones((hop_length, 1))], 1),
            # 2π k, rounded to float32 as the original 2π * harmonic_index: (H, 1, 1)
            "harmonic_weight": 2 * np.pi * np.arange(1, harmonics + 1)[:, None, None],
            "sum_weight": np.ones((1, harmonics, 1)),  # (1, H, 1)
        }
        # inverse STFT as a GEMM, frames of `overlap` hops each: (overlap * hop, 2K)
        self.overlap = -(-n_fft // hop_length)
        basis = inverse_stft_basis(n_fft, hop_length)
        pad = self.overlap * hop_length - n_fft
        fixed["synthesis_weight"] = np.pad(basis, ((0, 0), (0, pad))).T
        # Plain tensor attributes, not buffers: checkpoints stay as they were, and
        # torch.export lifts them as constants (XNNPACK's lowering rejects non-persistent
        # buffers used as weights: "Non-persistent buffer ... is in the state dict").
        # ``_apply`` below moves / casts them with the module.
        self.up_weight, self.phase_weight, self.harmonic_weight, self.sum_weight = (
            torch.tensor(fixed[n], dtype=torch.float32)
            for n in ("up_weight", "phase_weight", "harmonic_weight", "sum_weight")
        )
        self.synthesis_weight = torch.tensor(fixed["synthesis_weight"], dtype=torch.float32)
        # forward STFT (``synthesis='stft'``): windowed real / imaginary DFT rows, (2K, 1, n_fft)
        re, im = fourier_basis(n_fft, n_fft)
        self.analysis_weight = torch.tensor(np.concatenate([re, im])[:, None, :],
                                            dtype=torch.float32)
        # frame increment x_f A_{h-1} + x_{f+1} B_{h-1} = (x_f (h+1) + x_{f+1} (h-1)) / (2 sr):
        # integer factors, exact in float64 (a float constant like (h+1)/(2 sr) would be
        # rounded to float32 by the exported program and drift by ~1e-6 cycles per second)
        self.frame_weights = (hop_length + 1, hop_length - 1)
        self.frame_divisor = 2 * sample_rate
        # Griffin-Lim iterations (``synthesis='stft'``), one module each
        self.iterations = nn.ModuleList(GriffinLimIteration(self) for _ in range(phase_iters))

    _FIXED = ("up_weight", "phase_weight", "harmonic_weight", "sum_weight", "synthesis_weight",
              "analysis_weight")

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``.to()``, ``.double()``, ... also convert the fixed weights (not buffers)."""
        for name in self._FIXED:
            setattr(self, name, fn(getattr(self, name)))
        return super()._apply(fn, recurse)

    @property
    def phase_iters(self) -> int:
        """Number of Griffin-Lim iterations (``len(iterations)``)."""
        return len(self.iterations)

    def insert_iteration(self, index: int) -> None:
        """One more Griffin-Lim iteration, at position `index` of :attr:`iterations`."""
        if self.synthesis != "stft":
            raise ValueError("Griffin-Lim iterations need synthesis='stft'")
        self.iterations.insert(index, GriffinLimIteration(self))

    @staticmethod
    def _next(x: torch.Tensor) -> torch.Tensor:
        """``x_{f+1}`` along the last axis, zero after the last frame.

        No ``torch.cat`` in this module: XNNPACK's quantizer annotates every ``cat`` whatever
        its filter says, which would put int8 observers on the fp32 (and float64) source.
        """
        return F.pad(x[..., 1:], (0, 1))

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Linear interpolation between frame centres: ``(B, C, F) -> (B, C, F * hop)``
        (after the last centre the value ramps to zero)."""
        b, c, f = x.shape
        pair = torch.stack([x, self._next(x)], dim=-1)  # (B, C, F, 2)
        y = F.linear(pair, self.up_weight)  # (B, C, F, hop)
        return y.reshape(b, c, f * self.hop)

    def frame_start_cycles(self, f0: torch.Tensor) -> torch.Tensor:
        """Cycles elapsed before each frame's first sample, float64 ``(B, F)`` (unwrapped)."""
        wa, wb = self.frame_weights
        f0_64 = f0.to(torch.float64)
        inc = f0_64 * wa + self._next(f0_64) * wb  # (B, F) Hz x samples x 2, exact
        return (torch.cumsum(inc, dim=-1) - inc) / self.frame_divisor

    def phase(self, f0: torch.Tensor, phase0: torch.Tensor | None = None) -> torch.Tensor:
        """Wrapped source phase in cycles ``(B, 1, F * hop)``: inclusive running sum of the
        interpolated ``f0 / sr`` plus ``phase0 (B,)`` (cycles)."""
        b, f = f0.shape
        start = self.frame_start_cycles(f0)  # (B, F) float64
        if phase0 is not None:
            p0 = phase0.reshape(-1, 1).to(torch.float64)
            start = start + (p0 - torch.floor(p0))
        start = (start - torch.floor(start)).to(f0.dtype)  # wrapped, in [0, 1)
        x = torch.stack([f0, self._next(f0), start], dim=-1)  # (B, F, 3)
        cyc = F.linear(x, self.phase_weight).reshape(b, 1, f * self.hop)  # (B, 1, T)
        return cyc - torch.floor(cyc)

    def harmonic_sum(
        self, amp: torch.Tensor, f0: torch.Tensor, phase0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_k a_k(t) sin(2π k φ(t))`` from frame-rate amplitudes ``amp (B, H, F)`` and
        ``f0 (B, F)`` -> ``(B, F * hop)``."""
        amp_s = self.upsample(amp)  # (B, H, T)
        cyc = self.phase(f0, phase0)  # (B, 1, T) wrapped cycles
        arg = F.conv1d(cyc, self.harmonic_weight)  # (B, H, T) = 2π k φ
        return F.conv1d(amp_s * torch.sin(arg), self.sum_weight)[:, 0]  # (B, T)

    def forward(
        self,
        mel: torch.Tensor,
        d: torch.Tensor,
        f0: torch.Tensor,
        voiced: torch.Tensor,
        mel_pinv: torch.Tensor,
        harmonic_index: torch.Tensor,
        noise_cos: torch.Tensor,
        noise_sin: torch.Tensor,
        phase0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mel (B, M, F)``, learned corrections ``d (B, 3K, F)``, ``f0 (B, F)``,
        ``voiced (B, 1, F)``, the fixed tables of :class:`HNVocoder` -> ``(B, F * hop)``.

        ``d`` holds three per-bin log-domain rows over the Mel pseudo-inverse envelope: the
        harmonic envelope's correction, the noise envelope's correction, and the noise gain
        (a sigmoid, pushed down on voiced frames).

        * ``synthesis='harmonic'``: harmonic amplitudes read from the harmonic envelope at
          ``k f0`` and summed as sinusoids; noise = the noise envelope with a fixed random phase
          through the inverse STFT. Two signals added in the time domain.
        * ``synthesis='stft'``: one spectrum. The unit-amplitude harmonic excitation (every
          ``k f0`` below Nyquist at amplitude 1) is analysed by the STFT; its magnitude, divided
          by a unit sinusoid's Hann peak ``n_fft / 4``, is a harmonic comb ``c`` (~1 on each
          harmonic's main lobe, ~0 between). The magnitude is ``env_h * c + env_n``, the phase
          is the excitation's (the fixed random noise phase where the excitation has no
          energy), and one inverse STFT makes the audio. ``phase_iters`` Griffin-Lim
          iterations (Griffin & Lim 1984: re-analyse, keep the phase, impose the magnitude)
          then make the phase consistent with the magnitude across overlapping frames.
          The magnitude is then whatever the envelopes say between harmonics too, so breath
          noise under voiced frames and the exact level of each STFT bin are reproduced, and
          the harmonic phases stay locked to F0.
        """
        n_frames = mel.shape[-1]
        k = self.n_bins
        base = torch.log(torch.clamp(torch.matmul(mel_pinv, torch.exp(mel)), min=1e-5))
        env_h = torch.exp(torch.clamp(base + d[:, :k], max=8.0))  # (B, K, F)
        env_n = torch.exp(torch.clamp(base + d[:, k : 2 * k], max=8.0))
        # harmonic k at fractional bin k * f0 / bin_hz; only those below bin K - 2 sound
        bin_hz = self.sample_rate / self.n_fft
        pos = harmonic_index * (f0.unsqueeze(1) / bin_hz)  # (B, H, F)
        valid = (pos < (k - 2)).to(mel.dtype) * voiced
        if self.synthesis == "stft":
            env_n = env_n * torch.sigmoid(d[:, 2 * k :] - 2.0 * voiced)  # ~0.5 unvoiced
            er, ei = self.analyse(self.harmonic_sum(valid, f0, phase0), n_frames)
            peak = self.n_fft / 4.0  # |STFT| of a unit sinusoid under the Hann window
            comb = torch.sqrt(er * er + ei * ei + 1e-12) / peak
            mag = env_h * comb + env_n  # (B, K, F)
            # phase: the excitation's, or the fixed random one where it is ~silent
            y = self.synthesise(mag, er + 1e-3 * peak * noise_cos, ei + 1e-3 * peak * noise_sin)
            for iteration in self.iterations:
                y = iteration(y, mag)  # (B, F * hop)
            return y  # (B, F * hop)
        env_n = env_n * torch.sigmoid(d[:, 2 * k :] - 4.0 * voiced)  # ~0.5 unvoiced, ~0.01 voiced
        # harmonic amplitudes at k * f0 (fractional bin, linear interpolation), frame rate
        pos = torch.clamp(pos, max=float(k - 2))
        lo = torch.floor(pos)
        frac = pos - lo
        lo_i = lo.to(torch.int64)
        a_lo = torch.gather(env_h, 1, lo_i)
        a_hi = torch.gather(env_h, 1, lo_i + 1)
        amp = (a_lo + frac * (a_hi - a_lo)) * valid * self.amp_scale  # (B, H, F)
        harm = self.harmonic_sum(amp, f0, phase0)  # (B, T)
        b = env_n.shape[0]
        spec = torch.stack([env_n * noise_cos, env_n * noise_sin], dim=1)  # (B, 2, K, F)
        spec = spec.reshape(b, 2 * k, n_frames)  # (B, 2K, F)
        noise = self.overlap_add(spec)  # (B, (F + overlap - 1) * hop)
        start = self.n_fft // 2
        noise = noise[:, start : start + n_frames * self.hop]
        return harm + noise  # (B, F * hop)


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
      phase = 2π cumsum(f0 / sr) (computed per frame in closed form); sum of ``a_k sin(k φ)``;
    * noise: envelope x learned per-bin gain (mostly on unvoiced frames) with a fixed random
      phase, synthesised through an inverse-STFT basis (a GEMM and an overlap-add).

    That is ``synthesis='harmonic'``. With ``synthesis='stft'`` (the demo presets) the same
    envelopes shape one STFT instead: magnitude = harmonic envelope x the harmonic comb of the
    unit excitation + noise envelope, phase = the excitation's, plus ``phase_iters``
    Griffin-Lim iterations (:class:`GriffinLimIteration` modules in ``source.iterations``).
    Same learned net and checkpoint tensors; copy-synthesis STOI on the held-out clips of the
    acceptance corpus went 0.853 (harmonic) -> 0.897 (stft) -> 0.917 (stft, 2 iterations,
    trained with them) (one-off probes, 4000 steps each; ``benchmarks/svc_quality.py``
    reports the preset's).

    The learned net (``pre``, ``stacks``, ``head``) runs at the frame rate; the fixed DSP is
    :class:`HarmonicNoiseSource` (``self.source``), kept fp32 under int8 export
    (``export_keep_fp32``). No complex tensors; the per-sample work is GEMMs, 1x1
    convolutions, ``sin`` and elementwise ops that XNNPACK runs; only frame-rate ops (gather,
    an F-long float64 cumsum) use portable kernels. Output length ``F * hop`` like
    :class:`MelGANGenerator`.
    """

    export_keep_fp32 = ("source",)

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 128,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        harmonics: int = 128,
        stacks: int = 1,
        dilations: Sequence[int] | Sequence[Sequence[int]] = (1, 3, 9),
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        phase_frames: int = 4096,
        synthesis: str = "harmonic",
        phase_iters: int = 0,
    ):
        super().__init__()
        import librosa

        from models.lhq_svc.mel import as_buffer

        per_stack = _stack_dilations(dilations, stacks)
        self.phase_frames = phase_frames
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
        self.stacks = nn.ModuleList(ResidualStack(channels, tuple(d)) for d in per_stack)
        self.head = nn.Conv1d(channels, 3 * self.n_bins, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.source = HarmonicNoiseSource(sample_rate, n_fft, hop_length, harmonics,
                                          synthesis, phase_iters)
        # The fixed tables below are persistent buffers of this module (checkpoints carry them
        # under these names); the source receives them as arguments.
        # inverse STFT basis (2K, 1, n_fft); the source uses the same matrix as a GEMM weight
        basis = inverse_stft_basis(n_fft, hop_length)[:, None, :]
        self.register_buffer("inverse_basis", as_buffer(basis))
        rng = np.random.default_rng(1234)
        ph = rng.uniform(0, 2 * np.pi, (self.n_bins, phase_frames))
        self.register_buffer("noise_cos", as_buffer(np.cos(ph)))
        self.register_buffer("noise_sin", as_buffer(np.sin(ph)))
        # per-sample interpolation ramp (used by ``cycles``)
        self.register_buffer("ramp", as_buffer(np.arange(hop_length) / hop_length))
        k_idx = np.arange(1, harmonics + 1)[None, :, None]
        self.register_buffer("harmonic_index", as_buffer(k_idx))
        self.amp_scale = self.source.amp_scale

    @property
    def channels(self) -> int:
        return self.pre.out_channels

    def residual_stacks(self) -> list[ResidualStack]:
        """The residual stacks (``stacks``), typed."""
        return [cast(ResidualStack, st) for st in self.stacks]

    @property
    def dilations(self) -> list[int] | list[list[int]]:
        """The residual stacks' dilations: one list when every stack has the same layers
        (always for one stack), else one list per stack."""
        per = [st.dilations for st in self.residual_stacks()]
        return list(per[0]) if per and all(d == per[0] for d in per) else per

    @property
    def config(self) -> dict[str, Any]:
        """Build kwargs of the current (possibly evolved or narrowed) vocoder."""
        return {"n_mels": self.n_mels, "channels": self.channels,
                "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop,
                "harmonics": self.harmonics, "stacks": len(self.stacks),
                "dilations": self.dilations if self.stacks else [], "mel_mean": self.mel_mean,
                "mel_std": self.mel_std, "phase_frames": self.phase_frames,
                "synthesis": self.source.synthesis, "phase_iters": self.source.phase_iters}

    def width_groups(self, width: int) -> list[ChannelGroup]:
        """The channels narrowing ``channels`` to `width` slices (keys of this module): the
        frame-rate stream (``pre`` -> residual stacks -> ``head``) and each residual layer's
        hidden channels."""
        stream = [Slot("pre.weight", 0, producer=True), Slot("pre.bias", 0),
                  Slot("head.weight", 1)]
        groups: list[ChannelGroup] = []
        for s, stack in enumerate(self.residual_stacks()):
            slots, hidden = stack.width_groups(f"stacks.{s}.", width)
            stream += slots
            groups += hidden
        return [ChannelGroup("stream", self.channels, width, tuple(stream)), *groups]

    def harmonic_groups(self, harmonics: int) -> list[ChannelGroup]:
        """The tensors narrowing ``harmonics`` slices; keep the lowest `harmonics` of them
        (:meth:`harmonic_keep`)."""
        return [ChannelGroup("harmonics", self.harmonics, harmonics,
                             (Slot("harmonic_index", 1),))]

    @staticmethod
    def harmonic_keep(harmonics: int) -> torch.Tensor:
        """Narrowing the harmonics keeps the lowest ones: indices ``0 .. harmonics - 1``."""
        return torch.arange(harmonics)

    def cycles(self, f0: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Harmonic-source cycles elapsed over the first `n_samples` of ``f0 (B, F)``: ``(B,)``.

        The unwrapped phase the source reaches at sample ``n_samples - 1`` (inclusive running
        sum of the interpolated ``f0 / sr``). Used by chunked conversion to carry the source
        phase from one chunk to the next. Eager only: float32 interpolation (with ``ramp``,
        as when the vocoder was written, so chunked conversion gives the same numbers), summed
        in float64, float32 result (~3e-5 cycles resolution at 500 cycles).
        """
        b, f = f0.shape
        nxt = HarmonicNoiseSource._next(f0)
        f0_s = f0.unsqueeze(-1) * (1.0 - self.ramp) + nxt.unsqueeze(-1) * self.ramp  # (B, F, h)
        f0_s = f0_s.reshape(b, f * self.hop)[:, :n_samples]
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
        if frame_offset == 0 and n_frames <= self.noise_cos.shape[1]:
            n_cos, n_sin = self.noise_cos[:, :n_frames], self.noise_sin[:, :n_frames]
        else:  # eager chunked / very long inputs: wrap around the phase table
            idx = (torch.arange(n_frames) + frame_offset) % self.noise_cos.shape[1]
            n_cos, n_sin = self.noise_cos[:, idx], self.noise_sin[:, idx]
        return self.source(mel, d, f0, voiced, self.mel_pinv, self.harmonic_index, n_cos, n_sin,
                           phase0)  # (B, F * hop)
