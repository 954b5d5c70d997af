"""Conv-TasNet's temporal convolutional network (TCN), the separator of Vox-TasNet (issue 25).

Luo & Mesgarani, "Conv-TasNet: surpassing ideal time-frequency magnitude masking for speech
separation" (2019), the model Vox-TasNet (Borrelli et al., 2024, arXiv 2401.12068) adapts to
stereo. Hyper-parameters keep Conv-TasNet's names: ``N`` encoder filters, ``B`` bottleneck and
residual channels, ``Sc`` skip channels, ``H`` channels inside a block, ``P`` kernel size, ``X``
blocks per repeat (dilations 1, 2, …, 2^(X−1)), ``R`` repeats.

* :class:`GlobalLayerNorm` (gLN) normalises each example over channels *and all frames*: the
  offline model.
* :class:`CumulativeLayerNorm` (cLN) normalises frame t over channels and frames ≤ t: nothing
  after t enters, so a network of cLN and causal convolutions is causal.
* :class:`TemporalBlock`: 1×1 conv B → H, PReLU, norm, depthwise conv (kernel P, dilation d),
  PReLU, norm, then a 1×1 residual H → B and a 1×1 skip H → Sc.
* :class:`TCN`: norm + 1×1 bottleneck N → B, X·R blocks, PReLU on the sum of skips, 1×1 to
  ``masks · N`` channels, sigmoid. ``lookahead`` bounds the frames of future the output may see:
  ``None`` pads every depthwise conv symmetrically (offline); an integer ``a`` gives the first
  blocks their future context, each at most its own span ``(P − 1)·d``, until ``a`` frames are
  spent, and pads the rest causally, so output frame t depends on input frames ≤ t + a exactly
  (:attr:`TCN.lookahead_frames`). With cLN that is the near-causal model.

* :class:`VoxTasNet`: the stereo model (§2 of the Vox-TasNet paper as its summary describes it):
  a 2-D conv encoder (kernel ``(1, L)``, stride ``(1, L/2)``: one learned filterbank applied to
  each channel, so left and right get their own ``N``-dimensional embeddings; run as a 1-D conv
  per channel), the embeddings
  stacked to ``2N`` channels for the TCN (which sees both channels at once), one mask per
  channel's embedding for the **accompaniment** (singing voice cancellation), the 2-D transposed
  conv decoder, and the vocals as the residual ``mix − accompaniment``. Loss: negative SI-SDR of
  the accompaniment over both channels (Conv-TasNet trains on SI-SNR). Our reading of "2-D conv
  encoder": the kernel spans one channel; that the TCN mixes the channels is what makes the
  model stereo. Presets, training and export come next.
"""

from __future__ import annotations

import torch
from torch import nn

from models.separation import SeparationError

NORMS = ("gln", "cln")
_EPS = 1e-8


class _ChannelAffine(nn.Module):
    """A per-channel gain γ (1) and bias β (0), the affine part of gLN and cLN."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))


class GlobalLayerNorm(_ChannelAffine):
    """gLN: ``(x − mean) / sqrt(var + eps) · γ + β`` with mean and variance over (C, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return (x - mean) / torch.sqrt(var + _EPS) * self.gamma + self.beta


class CumulativeLayerNorm(_ChannelAffine):
    """cLN: frame t normalised by the mean and variance of channels × frames 0..t."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        c, t = x.shape[1], x.shape[2]
        count = c * torch.arange(1, t + 1, device=x.device, dtype=x.dtype).view(1, 1, t)
        s1 = torch.cumsum(x.sum(dim=1, keepdim=True), dim=2)
        s2 = torch.cumsum(x.pow(2).sum(dim=1, keepdim=True), dim=2)
        mean = s1 / count
        var = (s2 / count - mean.pow(2)).clamp_min(0.0)
        return (x - mean) / torch.sqrt(var + _EPS) * self.gamma + self.beta


class PReLU(nn.Module):
    """``max(0, x) − a · max(0, −x)`` with one learned slope ``a`` (0.25 at first):
    :class:`torch.nn.PReLU`'s function and parameter, in elementwise ops. ExecuTorch's XNNPACK
    lowering failed on ``nn.PReLU`` after a ``Conv1d`` (its channels-last pass, 2026-12-06)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) - self.weight * torch.relu(-x)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "gln":
        return GlobalLayerNorm(channels)
    if kind == "cln":
        return CumulativeLayerNorm(channels)
    raise SeparationError(f"norm={kind!r}; valid: {', '.join(NORMS)}")


class TemporalBlock(nn.Module):
    """One 1-D conv block of the TCN (module docstring); ``pad = (left, right)`` frames."""

    def __init__(self, b: int, h: int, sc: int, p: int, dilation: int, norm: str,
                 pad: tuple[int, int]):
        super().__init__()
        if sum(pad) != (p - 1) * dilation or min(pad) < 0:
            raise SeparationError(f"padding {pad} must add up to (P - 1) * d = "
                                  f"{(p - 1) * dilation}")
        self.pad = pad
        self.inp = nn.Conv1d(b, h, 1)
        self.act1 = PReLU()
        self.norm1 = make_norm(norm, h)
        self.depthwise = nn.Conv1d(h, h, p, dilation=dilation, groups=h)
        self.act2 = PReLU()
        self.norm2 = make_norm(norm, h)
        self.res = nn.Conv1d(h, b, 1)
        self.skip = nn.Conv1d(h, sc, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, b, T)
        y = self.norm1(self.act1(self.inp(x)))
        y = nn.functional.pad(y, self.pad)
        y = self.norm2(self.act2(self.depthwise(y)))
        return x + self.res(y), self.skip(y)


class TCN(nn.Module):
    """Conv-TasNet's separator: ``(batch, N, T)`` encoder frames → ``(batch, masks, N, T)``."""

    def __init__(self, n: int, b: int, h: int, p: int, x: int, r: int, sc: int | None = None,
                 masks: int = 1, norm: str = "gln", lookahead: int | None = None):
        super().__init__()
        if min(n, b, h, p, x, r, masks) < 1:
            raise SeparationError(f"TCN sizes must be >= 1: N={n} B={b} H={h} P={p} X={x} R={r} "
                                  f"masks={masks}")
        if lookahead is not None and lookahead < 0:
            raise SeparationError(f"lookahead={lookahead}; expected None (offline) or >= 0")
        sc = b if sc is None else sc
        self.n, self.masks = n, masks
        self.in_norm = make_norm(norm, n)
        self.bottleneck = nn.Conv1d(n, b, 1)
        blocks = []
        left_ahead = lookahead
        for _ in range(r):
            for i in range(x):
                d = 2**i
                span = (p - 1) * d
                if left_ahead is None:
                    pad = (span - span // 2, span // 2)
                else:
                    ahead = min(left_ahead, span)
                    left_ahead -= ahead
                    pad = (span - ahead, ahead)
                blocks.append(TemporalBlock(b, h, sc, p, d, norm, pad))
        self.blocks = nn.ModuleList(blocks)
        self.out_act = PReLU()
        self.out = nn.Conv1d(sc, masks * n, 1)
        self.lookahead_frames = sum(blk.pad[1] for blk in self.blocks)

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # (batch, N, T)
        y = self.bottleneck(self.in_norm(w))
        skips = torch.zeros((), dtype=w.dtype, device=w.device)
        for blk in self.blocks:
            y, s = blk(y)
            skips = skips + s
        m = torch.sigmoid(self.out(self.out_act(skips)))  # (batch, masks·N, T)
        return m.view(w.shape[0], self.masks, self.n, w.shape[-1])


class VoxTasNet(nn.Module):
    """Stereo Conv-TasNet for singing voice cancellation: ``(batch, C, T)`` mixture →
    ``(batch, 2, C, T)`` stems ``[vocals, accompaniment]`` (module docstring).

    ``lookahead_ms`` None: the offline model (gLN unless ``norm`` says otherwise); a number:
    the near-causal model (cLN), the TCN seeing that many milliseconds of future frames (the
    encoder's own window adds ``L`` samples).
    """

    def __init__(self, sample_rate: int = 44100, channels: int = 2, n: int = 512, l: int = 16,
                 b: int = 128, h: int = 512, p: int = 3, x: int = 8, r: int = 3,
                 norm: str | None = None, lookahead_ms: float | None = None):
        super().__init__()
        if l < 2 or l % 2:
            raise SeparationError(f"L={l}: the encoder window must be even (stride L/2)")
        if channels < 1:
            raise SeparationError(f"channels={channels}; expected >= 1")
        norm = norm or ("gln" if lookahead_ms is None else "cln")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.n, self.l, self.stride = n, l, l // 2
        self.hyper = {"N": n, "L": l, "B": b, "H": h, "P": p, "X": x, "R": r}
        self.norm, self.lookahead_ms = norm, lookahead_ms
        ahead = None if lookahead_ms is None else int(lookahead_ms * 1e-3 * sample_rate
                                                      // self.stride)
        # the 2-D conv of kernel (1, L) over (channel, time), run as a 1-D conv on each channel
        # folded into the batch: the same weights and sums, and a graph XNNPACK lowers (the
        # Conv2d form failed its channels-last pass, 2026-12-06)
        self.encoder = nn.Conv1d(1, n, l, stride=self.stride, bias=False)
        self.tcn = TCN(channels * n, b, h, p, x, r, masks=1, norm=norm, lookahead=ahead)
        self.decoder = nn.ConvTranspose1d(n, 1, l, stride=self.stride, bias=False)

    @property
    def config(self) -> dict[str, object]:
        return {"sample_rate": self.sample_rate, "channels": self.channels,
                **{k.lower(): v for k, v in self.hyper.items()}, "norm": self.norm,
                "lookahead_ms": self.lookahead_ms}

    @property
    def min_samples(self) -> int:
        return self.l

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.dim() != 3 or mix.shape[1] != self.channels or mix.shape[-1] < self.l:
            raise SeparationError(f"mix must be (batch, {self.channels}, >= {self.l} samples), "
                                  f"got {tuple(mix.shape)}")
        bsz, c, t = mix.shape
        frames = -(-(t - self.l) // self.stride) + 1
        pad = (frames - 1) * self.stride + self.l - t
        x = nn.functional.pad(mix, (0, pad)).reshape(bsz * c, 1, t + pad)
        w = torch.relu(self.encoder(x))  # (batch·C, N, frames): each channel's embedding
        stacked = w.reshape(bsz, c * self.n, frames)  # (batch, C·N, frames): stacked
        m = self.tcn(stacked)[:, 0].reshape(bsz * c, self.n, frames)
        acc = self.decoder(w * m).reshape(bsz, c, -1)[..., :t]  # (batch, C, T)
        return torch.stack([mix - acc, acc], dim=1)  # (batch, 2, C, T)

    def loss(self, mix: torch.Tensor, vocals: torch.Tensor, accompaniment: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative SI-SDR (dB) of the accompaniment estimate, both channels as one signal,
        averaged over the batch; ``vocals`` is what the residual should be (reported)."""
        est = self(mix)
        val = -si_sdr_torch(accompaniment, est[:, 1]).mean()
        with torch.no_grad():
            voc = si_sdr_torch(vocals, est[:, 0]).mean()
        return val, {"si_sdr_accompaniment": float(-val.detach()), "si_sdr_vocals": float(voc)}


def si_sdr_torch(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """SI-SDR (dB) per example of ``(batch, C, T)`` signals, channels concatenated; differentiable
    (the numpy :func:`models.separation.metrics.si_sdr` is the reported metric)."""
    r = (ref - ref.mean(dim=-1, keepdim=True)).reshape(ref.shape[0], -1)  # each channel
    e = (est - est.mean(dim=-1, keepdim=True)).reshape(est.shape[0], -1)  # centred, as metrics
    target = (e * r).sum(-1, keepdim=True) / (r.pow(2).sum(-1, keepdim=True) + _EPS) * r
    noise = e - target
    return 10 * torch.log10((target.pow(2).sum(-1) + _EPS) / (noise.pow(2).sum(-1) + _EPS))


def tcn_parameters(n: int, b: int, h: int, p: int, x: int, r: int, sc: int | None = None,
                   masks: int = 1) -> int:
    """Parameters of :class:`TCN` counted from its hyper-parameters (the count the module has;
    a test checks them against each other)."""
    sc = b if sc is None else sc
    norm = 2 * n
    block = (b * h + h) + 1 + 2 * h + (h * p + h) + 1 + 2 * h + (h * b + b) + (h * sc + sc)
    return norm + (n * b + b) + x * r * block + 1 + (sc * masks * n + masks * n)
