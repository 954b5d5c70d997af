"""LHQ-SVC diffusion decoder with evolvable blocks (§III.A, eq. 1) and the conditioning (§IV.B).

The decoder maps a noisy mel latent ``x_t (B, 80, F)``, diffusion time ``t (B,)`` and the
conditioning sequence ``cond (B, 256, F)`` to a prediction (x̃ or v, see ``diffusion.py``).
Its body is an ORDERED LIST of blocks of two kinds (the architecture is data):

* ``res``   — D(z_t, t): gated dilated-conv residual block conditioned on the timestep
  embedding and (locally) on ``cond`` (DiffWave-style); each applies ``res_dilations`` in turn,
  so a block behaves the same wherever it sits in the list;
* ``xattn`` — Cross-Attention(z_t, c): multi-head attention from the latent (queries) to the
  conditioning sequence (keys / values), with an ALiBi-style distance bias that keeps it local
  and aligned, plus a small feed-forward layer.

Eq. (1): during robust training each block is replaced by the identity with probability
``skip_prob``. Evolution (§III.A) edits the list: :meth:`EvolvableDecoder.remove_block` and
:meth:`EvolvableDecoder.duplicate_block` (a deep copy inserted right after the original);
``architecture`` stays in sync, so a checkpoint rebuilds the evolved model. Block names are
``<kind><position>`` (``res0``, ``xattn1`` ...), recomputed from the list after each edit.

Mel prior (optional, ``mel_prior=True``). The conditioner also regresses a prior mean μ of the
normalised mel (L1 to the target, a Grad-TTS-style "encoder output" μ; Popov et al. 2021) and
appends it to the conditioning, ``cond = [c (cond_dim), μ (n_mels)]``. The decoder then runs the
diffusion of the residual ``r = x̃ - μ``: with ``ỹ_τ = β_τ x̃ + γ_τ ε`` (eq. 2) the residual's
latent is ``ỹ_τ - β_τ μ = β_τ r + γ_τ ε`` with the same ε, so the blocks see that latent and the
output is mapped back (x-prediction ``x̂ = μ + r̂``; v-prediction ``v̂_x = v̂_r - γ_τ μ``). From
the outside it is the same ``(ỹ_τ, τ, cond) -> prediction`` of x̃, so eq. (5), both samplers,
distillation and the evolvable-block API are unchanged. The prior runs once per conversion
(it is part of the conditioning), not once per sampling step: capacity there is cheap on device.
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from models.lhq_svc.diffusion import PREDICTIONS, alpha_sigma
from models.lhq_svc.f0 import F0Features
from models.lhq_svc.mel import SourceFilterMel
from models.units import ChannelGroup, Slot

BLOCK_KINDS = ("res", "xattn")
# the mel prior's output head: a free per-bin regression, or two spectral envelopes rendered
# through the F0's harmonic comb (models.lhq_svc.mel.SourceFilterMel)
PRIOR_KINDS = ("free", "source_filter")


class ChannelNorm(nn.Module):
    """LayerNorm over channels of ``(B, C, F)``, per frame (no statistics across time, so a
    chunk of a long input is normalised exactly as in the whole input).

    The statistics are taken after subtracting each frame's first channel (the shifted-data
    form of the variance, the same normalisation up to float rounding): a constant frame — a
    silent frame of a log-mel, every bin at the clamp floor — then normalises to exactly 0.
    Computed as ``x - mean(x)``, its residual is float32 rounding of the mean (~1e-6), which
    ``rsqrt(var + eps)`` multiplies by ~316, and which differs between eager PyTorch and
    XNNPACK (other summation order): the trained content encoder's posteriors on silent
    frames differed by 7e-3 between them, failing the fp32 export gate.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - x[:, :1]  # (B, C, F), exactly 0 where the frame is constant
        d = d - d.mean(dim=1, keepdim=True)
        var = (d**2).mean(dim=1, keepdim=True)  # (B, 1, F)
        return d * torch.rsqrt(var + self.eps) * self.weight + self.bias


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of continuous τ in [0, 1] (scaled by 1000): ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    ang = (t.float() * 1000.0).unsqueeze(1) * freqs.unsqueeze(0)  # (B, half)
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class ResBlock(nn.Module):
    """D(z_t, t): gated dilated convolutions with timestep and conditioning input."""

    kind = "res"

    def __init__(self, channels: int, cond_dim: int, temb_dim: int, dilations: list[int]):
        super().__init__()
        self.dilations = list(dilations)
        self.temb = nn.ModuleList(nn.Linear(temb_dim, channels) for _ in dilations)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, 2 * channels, 3, dilation=d, padding=d) for d in dilations
        )
        self.conds = nn.ModuleList(nn.Conv1d(cond_dim, 2 * channels, 1) for _ in dilations)
        self.outs = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.channels = channels

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for lin, conv, cproj, out in zip(self.temb, self.convs, self.conds, self.outs):
            h = x + lin(temb).unsqueeze(-1)  # (B, C, F)
            h = conv(h) + cproj(cond)  # (B, 2C, F)
            a, b = h[:, : self.channels], h[:, self.channels :]
            x = (x + out(torch.tanh(a) * torch.sigmoid(b))) * (1.0 / math.sqrt(2.0))
        return x


class CrossAttnBlock(nn.Module):
    """Cross-Attention(z_t, c): queries from the latent, keys / values from the conditioning."""

    kind = "xattn"

    def __init__(self, channels: int, cond_dim: int, temb_dim: int, heads: int, ff_mult: int = 2):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} not divisible by heads={heads}")
        self.heads = heads
        self.head_dim = channels // heads
        self.temb = nn.Linear(temb_dim, channels)
        self.norm_q = ChannelNorm(channels)
        self.norm_kv = ChannelNorm(cond_dim)
        self.q = nn.Conv1d(channels, channels, 1)
        self.kv = nn.Conv1d(cond_dim, 2 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.ff = nn.Sequential(
            nn.Conv1d(channels, ff_mult * channels, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(ff_mult * channels, channels, 1),
        )
        self.norm_ff = ChannelNorm(channels)
        # ALiBi slopes (per head), in frames^-1
        slopes = torch.tensor([2.0 ** (-(i + 1) * 4.0 / heads) for i in range(heads)])
        self.register_buffer("slopes", slopes.view(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        h = self.norm_q(x + self.temb(temb).unsqueeze(-1))  # (B, C, F)
        q = self.q(h).view(b, self.heads, self.head_dim, n).transpose(2, 3)  # (B, H, F, d)
        kv = self.kv(self.norm_kv(cond))  # (B, 2C, F)
        k = kv[:, :c].reshape(b, self.heads, self.head_dim, n)  # (B, H, d, F)
        v = kv[:, c:].reshape(b, self.heads, self.head_dim, n).transpose(2, 3)  # (B, H, F, d)
        pos = torch.arange(n, device=x.device, dtype=x.dtype)
        dist = (pos.view(1, 1, n, 1) - pos.view(1, 1, 1, n)).abs()  # (1, 1, F, F)
        logits = torch.matmul(q, k) * (1.0 / math.sqrt(self.head_dim)) - self.slopes * dist
        attn = torch.softmax(logits, dim=-1)  # (B, H, F, F)
        o = torch.matmul(attn, v).transpose(2, 3).reshape(b, c, n)  # (B, C, F)
        x = x + self.proj(o)
        return x + self.ff(self.norm_ff(x))


class EvolvableDecoder(nn.Module):
    """ε̂_θ(t, z_t) of eq. (1): ``forward(x_t (B, M, F), t (B,), cond (B, D, F)) -> (B, M, F)``."""

    def __init__(
        self,
        architecture: list[str],
        n_mels: int = 80,
        channels: int = 256,
        cond_dim: int = 256,
        temb_dim: int = 128,
        heads: int = 4,
        res_dilations: list[int] | tuple[int, ...] = (1, 2, 4),
        skip_prob: float = 0.0,
        mel_prior: bool = False,
        prediction: str = "x",
    ):
        super().__init__()
        bad = [k for k in architecture if k not in BLOCK_KINDS]
        if bad or not architecture:
            raise ValueError(
                f"architecture {list(architecture)!r}: expected a non-empty list of {BLOCK_KINDS}"
            )
        self.n_mels = n_mels
        self.channels = channels
        self.cond_dim = cond_dim
        self.temb_dim = temb_dim
        self.heads = heads
        self.res_dilations = list(res_dilations)
        self.skip_prob = float(skip_prob)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r}; valid: {PREDICTIONS}")
        self.mel_prior = bool(mel_prior)
        self.prediction = prediction
        self.in_proj = nn.Conv1d(n_mels, channels, 1)
        self.temb_mlp = nn.Sequential(
            nn.Linear(temb_dim, 2 * temb_dim), nn.SiLU(), nn.Linear(2 * temb_dim, temb_dim)
        )
        self.blocks = nn.ModuleList(self._make(k) for k in architecture)
        self.out_norm = ChannelNorm(channels)
        self.out_proj = nn.Conv1d(channels, n_mels, 1)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _make(self, kind: str) -> nn.Module:
        if kind == "res":
            return ResBlock(self.channels, self.cond_dim, self.temb_dim, self.res_dilations)
        return CrossAttnBlock(self.channels, self.cond_dim, self.temb_dim, self.heads)

    # ---- evolvable-architecture API -------------------------------------------------------
    @property
    def config(self) -> dict:
        """Build kwargs of the current (possibly evolved) decoder."""
        return {
            "architecture": self.architecture, "n_mels": self.n_mels,
            "channels": self.channels, "cond_dim": self.cond_dim, "temb_dim": self.temb_dim,
            "heads": self.heads, "res_dilations": list(self.res_dilations),
            "skip_prob": self.skip_prob, "mel_prior": self.mel_prior,
            "prediction": self.prediction,
        }

    @property
    def cond_channels(self) -> int:
        """Channels of the ``cond`` input: ``cond_dim`` (+ ``n_mels`` for the mel prior μ)."""
        return self.cond_dim + (self.n_mels if self.mel_prior else 0)

    @property
    def architecture(self) -> list[str]:
        return [b.kind for b in self.blocks]

    def block_kinds(self) -> list[str]:
        return self.architecture

    def block_names(self) -> list[str]:
        return [f"{b.kind}{i}" for i, b in enumerate(self.blocks)]

    def _index(self, name: str) -> int:
        names = self.block_names()
        if name not in names:
            raise KeyError(f"no block {name!r}; blocks: {names}")
        return names.index(name)

    def remove_block(self, name: str) -> None:
        """Delete block `name` (at least one block must remain)."""
        i = self._index(name)
        if len(self.blocks) == 1:
            raise ValueError(f"cannot remove {name!r}: it is the only block")
        del self.blocks[i]

    def duplicate_block(self, name: str) -> None:
        """Insert a deep copy of block `name` right after it."""
        i = self._index(name)
        self.blocks.insert(i + 1, copy.deepcopy(self.blocks[i]))

    def width_groups(self, width: int) -> list[ChannelGroup]:
        """The channels narrowing ``channels`` to `width` slices (keys of this module).

        Groups: the residual stream (every block's input and output), and inside each block
        the widths the constructor ties to ``channels``: a res layer's gate (the ``a`` and
        ``b`` halves of its conv and conditioning outputs, pruned as pairs), an attention
        block's query / key channels and value / output channels (each pruned head by head,
        the same count in every head, so ``heads`` and the per-head layout stay valid; the
        queries are rescaled by ``sqrt(new_head_dim / head_dim)`` so the logits keep their
        ``1 / sqrt(head_dim)`` scale) and its feed-forward hidden layer (``2 x channels``).
        """
        c, heads = self.channels, self.heads
        if width % heads:
            raise ValueError(f"decoder width {width} not divisible by heads={heads}")
        stream = [Slot("in_proj.weight", 0, producer=True), Slot("in_proj.bias", 0),
                  Slot("out_norm.weight", 1), Slot("out_norm.bias", 1),
                  Slot("out_proj.weight", 1)]
        groups: list[ChannelGroup] = []
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}."
            if isinstance(block, ResBlock):
                for j in range(len(block.dilations)):
                    stream += [Slot(f"{p}temb.{j}.weight", 0), Slot(f"{p}temb.{j}.bias", 0),
                               Slot(f"{p}convs.{j}.weight", 1),
                               Slot(f"{p}outs.{j}.weight", 0, producer=True),
                               Slot(f"{p}outs.{j}.bias", 0)]
                    gate = [Slot(f"{p}{m}.{j}.{t}", 0, off, producer=t == "weight")
                            for m in ("convs", "conds") for t in ("weight", "bias")
                            for off in (0, c)]
                    gate.append(Slot(f"{p}outs.{j}.weight", 1))
                    groups.append(ChannelGroup(f"{p}gate.{j}", c, width, tuple(gate)))
                continue
            ff = cast(nn.Conv1d, cast(CrossAttnBlock, block).ff[0]).out_channels
            stream += [Slot(f"{p}temb.weight", 0), Slot(f"{p}temb.bias", 0),
                       Slot(f"{p}norm_q.weight", 1), Slot(f"{p}norm_q.bias", 1),
                       Slot(f"{p}q.weight", 1), Slot(f"{p}proj.weight", 0, producer=True),
                       Slot(f"{p}proj.bias", 0), Slot(f"{p}norm_ff.weight", 1),
                       Slot(f"{p}norm_ff.bias", 1), Slot(f"{p}ff.0.weight", 1),
                       Slot(f"{p}ff.2.weight", 0, producer=True), Slot(f"{p}ff.2.bias", 0)]
            scale = math.sqrt(width / c)  # sqrt(new head_dim / head_dim)
            qk = (Slot(f"{p}q.weight", 0, producer=True, scale=scale),
                  Slot(f"{p}q.bias", 0, scale=scale), Slot(f"{p}kv.weight", 0, producer=True),
                  Slot(f"{p}kv.bias", 0))
            vo = (Slot(f"{p}kv.weight", 0, c, producer=True), Slot(f"{p}kv.bias", 0, c),
                  Slot(f"{p}proj.weight", 1))
            hidden = (Slot(f"{p}ff.0.weight", 0, producer=True), Slot(f"{p}ff.0.bias", 0),
                      Slot(f"{p}ff.2.weight", 1))
            groups += [ChannelGroup(f"{p}qk", c, width, qk, heads),
                       ChannelGroup(f"{p}vo", c, width, vo, heads),
                       ChannelGroup(f"{p}ff", ff, ff // c * width, hidden)]
        return [ChannelGroup("stream", c, width, tuple(stream)), *groups]

    def cond_width_slots(self) -> list[Slot]:
        """Slots (keys of this module) that read the conditioning ``c`` (its first
        ``cond_dim`` channels): what narrowing the conditioner's width slices here too."""
        out: list[Slot] = []
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}."
            if isinstance(block, ResBlock):
                out += [Slot(f"{p}conds.{j}.weight", 1) for j in range(len(block.dilations))]
            else:
                out += [Slot(f"{p}norm_kv.weight", 1), Slot(f"{p}norm_kv.bias", 1),
                        Slot(f"{p}kv.weight", 1)]
        return out

    # ---- forward ----------------------------------------------------------------------------
    def stem(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What every block receives: ``(h (B, C, F), temb (B, E), cond (B, cond_dim, F))``."""
        if cond.shape[1] != self.cond_channels:
            raise ValueError(f"cond has {cond.shape[1]} channels, expected {self.cond_channels}"
                             + (" (cond_dim + n_mels: the mel prior)" if self.mel_prior else ""))
        temb = self.temb_mlp(timestep_embedding(t, self.temb_dim))  # (B, E)
        if self.mel_prior:
            # τ clamped to [0, 1]: the schedule's log tan is NaN outside it (a runner feeding
            # random inputs gets finite outputs; inside the sampler τ is always in range)
            a, _ = alpha_sigma(t.clamp(0.0, 1.0))
            x_t = x_t - a.view(-1, 1, 1) * cond[:, self.cond_dim :]  # residual latent
        return self.in_proj(x_t), temb, cond[:, : self.cond_dim]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h, temb, c = self.stem(x_t, t, cond)
        skip = self.training and self.skip_prob > 0
        for block in self.blocks:
            if skip and float(torch.rand(())) < self.skip_prob:
                continue  # eq. (1): identity in place of the block
            h = block(h, temb, c)
        out = self.out_proj(F.silu(self.out_norm(h)))  # (B, M, F)
        if not self.mel_prior:
            return out
        mu = cond[:, self.cond_dim :]  # (B, M, F)
        if self.prediction == "x":
            return out + mu
        _, s = alpha_sigma(t.clamp(0.0, 1.0))
        return out - s.view(-1, 1, 1) * mu  # v of x̃ = v of the residual - γ μ


class Conditioner(nn.Module):
    """§IV.B: content, F0 and speaker each projected to ``dim`` (256) and combined.

    ``forward(content (B, Dc, F), f0_feats (B, Df, F), speaker (B,)) -> (B, dim, F)``:
    concatenation of the three projections, a 1x1 projection back to ``dim``, and a short
    stack of residual convolutions for local context.

    With ``prior_layers > 0`` the output also carries the mel prior μ (``(B, dim + n_mels, F)``,
    see :class:`EvolvableDecoder`). ``prior_kind="free"`` regresses μ per bin with a 1x1 head;
    ``"source_filter"`` predicts a harmonic and a noise log-envelope and renders them through
    the frame's harmonic comb (:class:`~models.lhq_svc.mel.SourceFilterMel`), so μ's harmonic
    fine structure follows the F0 exactly instead of being learned. It reads the F0 from
    ``f0_feats`` (:class:`~models.lhq_svc.f0.F0Features`: channel 0 is ``log2(f0 / f0_ref_hz)``
    on voiced frames, channel 1 the voicing flag), so the interface is the same for both.
    On held-out clips of the synthetic corpus a standalone prior (2000 steps, same trunk)
    scored μ STOI 0.736 with the free head and 0.805 with the source-filter head.
    """

    def __init__(
        self,
        content_dim: int,
        f0_dim: int,
        n_speakers: int,
        dim: int = 256,
        context_layers: int = 2,
        prior_layers: int = 0,
        n_mels: int = 80,
        prior_kernel: int = 3,
        prior_kind: str = "free",
        sample_rate: int = 16000,
        f0_ref_hz: float = 200.0,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        prior_neighbours: int = 2,
    ):
        super().__init__()
        if prior_layers < 0 or prior_kernel < 1 or prior_kernel % 2 == 0:
            raise ValueError(f"prior_layers={prior_layers}, prior_kernel={prior_kernel}; "
                             "expected >= 0 layers and an odd kernel")
        if prior_kind not in PRIOR_KINDS:
            raise ValueError(f"prior_kind={prior_kind!r}; valid: {PRIOR_KINDS}")
        self.content_proj = nn.Conv1d(content_dim, dim, 1)
        self.f0_proj = nn.Sequential(nn.Conv1d(f0_dim, dim, 1), nn.SiLU(), nn.Conv1d(dim, dim, 1))
        self.speaker = nn.Embedding(n_speakers, dim)
        # concat([c, f, s]) -> 1x1 conv, written as the sum of the projection's three column
        # blocks (identical maths; never materialises the time-broadcast speaker vector)
        self.mix_content = nn.Conv1d(dim, dim, 1)
        self.mix_f0 = nn.Conv1d(dim, dim, 1, bias=False)
        self.mix_speaker = nn.Linear(dim, dim, bias=False)
        self.context = nn.ModuleList(
            nn.Conv1d(dim, dim, 3, padding=1) for _ in range(context_layers)
        )
        self.prior = nn.ModuleList(
            nn.Conv1d(dim, dim, prior_kernel, padding=prior_kernel // 2)
            for _ in range(prior_layers)
        )
        self.render: SourceFilterMel | None = None
        if not prior_layers:
            self.prior_head = None
        elif prior_kind == "free":
            self.prior_head = nn.Conv1d(dim, n_mels, 1)
        else:
            # [log harmonic envelope, log noise envelope], starting near the corpus's levels
            # (voiced peaks about e^-1, the floor about e^-7 in the contract's log-mel)
            self.prior_head = nn.Conv1d(dim, 2 * n_mels, 1)
            with torch.no_grad():
                self.prior_head.weight.mul_(0.1)
                self.prior_head.bias[:n_mels].fill_(-3.0)
                self.prior_head.bias[n_mels:].fill_(-7.0)
            self.render = SourceFilterMel(sample_rate, n_mels=n_mels,
                                          neighbours=prior_neighbours)
        self.f0_ref_hz = float(f0_ref_hz)
        self.mel_mean = float(mel_mean)
        self.mel_std = float(mel_std)
        self._build = {"content_dim": content_dim, "f0_dim": f0_dim, "n_speakers": n_speakers,
                       "prior_kernel": prior_kernel, "prior_kind": prior_kind,
                       "sample_rate": sample_rate}
        self.dim = dim
        self.n_mels = n_mels
        self.out_dim = dim + (n_mels if prior_layers else 0)

    @property
    def config(self) -> dict[str, Any]:
        """Build kwargs of the current (possibly evolved or narrowed) conditioner."""
        return {**self._build, "dim": self.dim, "context_layers": len(self.context),
                "prior_layers": len(self.prior), "n_mels": self.n_mels,
                "f0_ref_hz": self.f0_ref_hz, "mel_mean": self.mel_mean,
                "mel_std": self.mel_std,
                "prior_neighbours": self.render.neighbours if self.render is not None else 2}

    def width_groups(self, width: int) -> list[ChannelGroup]:
        """The channels narrowing ``dim`` to `width` slices (keys of this module): the
        residual stream (the mix's three outputs, every context and prior conv's input and
        output, the prior head's input), and the widths the constructor ties to ``dim``: the
        content projection, the F0 MLP's hidden layer and output, the speaker embedding. The
        decoder reads the stream too (:meth:`EvolvableDecoder.cond_width_slots`)."""
        d = self.dim
        stream = [Slot("mix_content.weight", 0, producer=True), Slot("mix_content.bias", 0),
                  Slot("mix_f0.weight", 0, producer=True),
                  Slot("mix_speaker.weight", 0, producer=True)]
        for name in ("context", "prior"):
            for i in range(len(getattr(self, name))):
                stream += [Slot(f"{name}.{i}.weight", 0, producer=True),
                           Slot(f"{name}.{i}.bias", 0), Slot(f"{name}.{i}.weight", 1)]
        if self.prior_head is not None:
            stream.append(Slot("prior_head.weight", 1))
        return [
            ChannelGroup("stream", d, width, tuple(stream)),
            ChannelGroup("content", d, width, (
                Slot("content_proj.weight", 0, producer=True), Slot("content_proj.bias", 0),
                Slot("mix_content.weight", 1))),
            ChannelGroup("f0_hidden", d, width, (
                Slot("f0_proj.0.weight", 0, producer=True), Slot("f0_proj.0.bias", 0),
                Slot("f0_proj.2.weight", 1))),
            ChannelGroup("f0", d, width, (
                Slot("f0_proj.2.weight", 0, producer=True), Slot("f0_proj.2.bias", 0),
                Slot("mix_f0.weight", 1))),
            ChannelGroup("speaker", d, width, (
                Slot("speaker.weight", 1, producer=True), Slot("mix_speaker.weight", 1))),
        ]

    def prior_mean(self, cond: torch.Tensor) -> torch.Tensor:
        """μ ``(B, n_mels, F)`` (normalised mel) from this conditioner's output."""
        if self.prior_head is None:
            raise ValueError("this conditioner has no mel prior (prior_layers=0)")
        return cond[:, self.dim :]

    def hidden(
        self, content: torch.Tensor, f0_feats: torch.Tensor, speaker: torch.Tensor
    ) -> torch.Tensor:
        """The conditioning ``c`` ``(B, dim, F)``: projections, mix and context convolutions."""
        c = self.content_proj(content)  # (B, D, F)
        f = self.f0_proj(f0_feats)  # (B, D, F)
        s = self.mix_speaker(self.speaker(speaker)).unsqueeze(-1)  # (B, D, 1)
        h = self.mix_content(c) + self.mix_f0(f) + s  # (B, D, F)
        for conv in self.context:
            h = h + conv(F.silu(h))
        return h

    def prior_output(self, h: torch.Tensor) -> torch.Tensor:
        """The prior head's output on ``hidden``: μ ``(B, M, F)`` for the free head, the
        ``[log harmonic, log noise]`` envelopes ``(B, 2M, F)`` for the source-filter head."""
        if self.prior_head is None:
            raise ValueError("this conditioner has no mel prior (prior_layers=0)")
        p = h
        for conv in self.prior:
            p = p + conv(F.silu(p))
        return self.prior_head(F.silu(p))

    def forward(
        self, content: torch.Tensor, f0_feats: torch.Tensor, speaker: torch.Tensor
    ) -> torch.Tensor:
        h = self.hidden(content, f0_feats, speaker)
        if self.prior_head is None:
            return h
        mu = self.prior_output(h)
        if self.render is not None:
            f0, voiced = F0Features.decode(f0_feats, self.f0_ref_hz)
            logmel = self.render(mu[:, : self.n_mels], mu[:, self.n_mels :], f0, voiced)
            mu = (logmel - self.mel_mean) * (1.0 / self.mel_std)  # normalised, as x̃
        # [h, μ] as two zero-padded tensors added (exact: x + 0 = x) rather than torch.cat:
        # with the conditioner fp32 and the decoder int8, XNNPACK failed to create the int8
        # convolutions reading a quantized cat of fp32 inputs (xnn_status_invalid_parameter)
        return F.pad(h, (0, 0, 0, mu.shape[1])) + F.pad(mu, (0, 0, h.shape[1], 0))
