"""Export tests: tiny audio-ish models (conv1d + linear + attention), seeded, as fixtures.

The tests import nothing from here; they take the ``tiny`` fixture (a namespace of the model
classes and builders) because pytest runs with ``--import-mode=importlib``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000


class TinyAudioNet(nn.Module):
    """Features (B, C, T) -> (B, C_out, T): conv1d, self-attention (bmm), linear, conv1d."""

    def __init__(self, in_ch: int = 8, ch: int = 32, heads: int = 4, out_ch: int = 8):
        super().__init__()
        self.inp = nn.Conv1d(in_ch, ch, 5, padding=2)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)
        self.ff = nn.Linear(ch, ch)
        self.out = nn.Conv1d(ch, out_ch, 3, padding=1)
        self.heads = heads
        self.head_dim = ch // heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))  # (B, C, T)
        b, c, t = h.shape
        s = h.transpose(1, 2)  # (B, T, C)
        q, k, v = self.qkv(s).chunk(3, dim=-1)  # (B, T, C) each
        q = q.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
        k = k.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim), -1)
        o = torch.matmul(att, v).transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        s = s + self.proj(o)
        s = s + F.gelu(self.ff(s))
        return self.out(s.transpose(1, 2))  # (B, C_out, T)


class TinyWaveNet(nn.Module):
    """Waveform (B, T) -> waveform (B, T): a small residual conv1d stack (audio output)."""

    def __init__(self, ch: int = 16):
        super().__init__()
        self.inp = nn.Conv1d(1, ch, 7, padding=3)
        self.mid = nn.Conv1d(ch, ch, 5, padding=2)
        self.out = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(wav.unsqueeze(1)))  # (B, C, T)
        h = h + torch.tanh(self.mid(h))  # (B, C, T)
        return wav + 0.1 * self.out(h).squeeze(1)  # (B, T)


class PlantedMismatch(TinyAudioNet):
    """Eager forward differs from the exported graph: a branch on `is_exporting()`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if torch.compiler.is_exporting():
            return y * 1.01  # what gets exported is 1 % off
        return y


def tiny_audio_net() -> tuple[TinyAudioNet, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    return TinyAudioNet().eval(), (torch.randn(1, 8, 48),)


def tiny_wave_net() -> tuple[TinyWaveNet, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    wav = 0.5 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(SAMPLE_RATE)
    return TinyWaveNet().eval(), (wav.unsqueeze(0).float(),)


@pytest.fixture(scope="session")
def tiny() -> SimpleNamespace:
    """The tiny models and their builders."""
    return SimpleNamespace(
        SAMPLE_RATE=SAMPLE_RATE,
        TinyAudioNet=TinyAudioNet,
        TinyWaveNet=TinyWaveNet,
        PlantedMismatch=PlantedMismatch,
        QuantizationTraps=QuantizationTraps,
        audio_net=tiny_audio_net,
        wave_net=tiny_wave_net,
    )


class QuantizationTraps(nn.Module):
    """Patterns that broke XNNPACK int8 lowering of real models, in one tiny net.

    * a conv applied twice (shared weights, like a decoder unrolled over sampler steps);
    * a linear of a constant (a timestep embedding of a fixed step);
    * ``x - mean`` used twice (a channel norm: shared dequantize, float consumer);
    * an integer index ``i + 1`` feeding ``gather``.
    """

    def __init__(self, ch: int = 16):
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 3, padding=1)
        self.temb = nn.Linear(8, ch)
        self.register_buffer("t", torch.linspace(0.0, 1.0, 8).unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.temb(torch.sin(self.t * 3.0)).unsqueeze(-1)  # (1, C, 1), constant
        h = self.conv(x) + emb  # (B, C, T)
        h = self.conv(torch.relu(h))  # same weights again
        mu = h.mean(dim=1, keepdim=True)
        var = ((h - mu) ** 2).mean(dim=1, keepdim=True)
        h = (h - mu) * torch.rsqrt(var + 1e-5)  # (B, C, T)
        idx = torch.arange(h.shape[-1] - 1).unsqueeze(0).unsqueeze(0) + 1  # int64
        idx = idx.expand(h.shape[0], h.shape[1], -1)
        return torch.gather(h, 2, idx)  # (B, C, T - 1)
