"""The speech-to-singing network of Parekh et al. (ICASSP 2020, §2.2) and its MTL loss (§2.3).

Inputs are the speech log-magnitude ``X`` and the melody image ``C``, both ``(B, F, T)`` with
``F = 513`` (1024-point FFT at 16 kHz, 256-sample hop, §3.1); the output is the singing
log-magnitude ``Ŷ`` ``(B, F, T)`` and, with a phoneme decoder, per-frame phoneme logits
``(B, Np, T)``. Every tensor inside is a ``(B, ch, F', T')`` feature map.

Architecture (§2.2; ``c0 … c5`` = :attr:`StsConfig.channels`, shapes for ``F = 513, T = 64``):

* **Padding.** ``F`` is zero-padded at the top to the next multiple of 8 (513 → 520: seven
  silent bins above Nyquist) and ``T`` at the end to the next multiple of 8; the output is
  cropped back, so any ``T ≥ 1`` works and the padding is exactly reversible. Zeros are
  silence in ``log(1 + |S|)`` and "no melody" in ``C``.
* **Encoders** ``E1`` (speech) and ``E2`` (melody), same architecture, separate weights: six
  "1D convolution" blocks (§2.2), alternately along time (``Conv2d`` kernel ``(1, k)``, stride
  ``(1, 2)``) and frequency (kernel ``(k, 1)``, stride ``(2, 1)``), each followed by ReLU:
  ``(1, 520, 64) → (c0, 520, 32) → (c1, 260, 32) → (c2, 260, 16) → (c3, 130, 16) → (c4, 130, 8)
  → (c5, 65, 8)``; both axes are downsampled by 8 (§2.2). At the latent the ``c5 · 65``
  features of each frame go through instance normalization over time (the IN "before the
  recurrent GRU layers", §2.2), a unidirectional GRU and a linear map back to ``c5 · 65``.
* **Decoder** ``D``: the two encodings concatenated (``2·c5`` channels) go through six
  transposed "1D convolution" blocks mirroring the encoder (frequency first, stride 2, ReLU):
  ``(2c5, 65, 8) → (c4, 130, 8) → (c3, 130, 16) → (c2, 260, 16) → (c1, 260, 32) → (c0, 520, 32)
  → (c0, 520, 64)``; before blocks 2–6 the ``E1`` map of the same size is concatenated (skip
  connections, §2.2); a 1×1 conv to one channel gives ``Ŷ``. The output is **linear while
  training** and clamped at 0 in eval mode (the target ``log(1 + |S|)`` is non-negative).
  Measured (one batch of 8 × 128 frames of the synthetic corpus, sts-demo, Adam 0.002): with a
  softplus output the MSE fell 0.38 → 0.098 in 20 steps by driving 96 % of the bins to ≈ 0,
  where softplus has no gradient, and stayed there for 50 steps (0.071 at step 140); with the
  linear output it fell to 0.023 by step 90. Most target bins are close to 0 (mean 0.073), so
  any positive squashing function at the output stalls the same way.
* **Phoneme decoder** ``Dp`` (§2.2): reads the output of D's penultimate frequency-upsampling
  block (block 3, ``(c2, 260, 16)``); a transposed 1D conv **along time** (kernel 8, stride 4:
  ``(cp, 260, 64)``) — along time because Dp must give one prediction per output frame ``t``
  and its input has ``T/4`` frames, while the frequency axis is folded into the GRU's features
  anyway — then IN over time, a GRU over the ``cp · 260`` features of each frame and a 1D conv
  (kernel 1) to ``Np`` logits per frame.

Where the paper is silent we chose: kernel size ``k`` (odd; 5 for the paper size), channel
widths and GRU sizes (the paper gives none; see :data:`SIZES`), the block order (time first in
the encoder, so D ends on a time block and its penultimate frequency block is block 3), the
linear map after the latent GRU (the GRU width is configurable, the decoder needs ``c5 · 65``
features back), no skip from the raw input, IN without affine parameters (a conv or the GRU's
input weights follow every IN, so a per-feature scale and shift would be redundant), an IN
before Dp's GRU too (§2.2 puts IN "before the recurrent GRU layers"; P-MSE, which has no Dp,
has the "two IN layers before GRU" of §3.1), and AllNorm keeping those latent INs. The paper's
autoencoder's "latent code 64 times smaller than input" (§3.1) is read as the 8 × 8 spatial
downsampling; our encodings keep ``c5`` channels.

Streaming: every GRU is unidirectional (``bidirectional=False``), but the centred convolutions
and the IN statistics over time still need the whole clip (or chunk) at once. When ``T ≤ 8``
the latent has one frame, and IN over one frame outputs zeros: only the skips carry content.
:meth:`StsNet.infer` takes and returns the latent GRUs' states (``Encoder.forward``'s `hx` and
`return_state`), which the device program (:mod:`models.sts.program`) carries from chunk to
chunk.

Export: no Python branch on tensor values, no ``None`` output (``forward`` returns ``Ŷ`` alone
when there is no phoneme decoder, ``(Ŷ, logits)`` otherwise); under ``torch.export`` the GRUs
run unrolled in ops XNNPACK delegates (:class:`ExportableGRU`). What ``compress export`` ships
is :class:`models.sts.program.StsDeviceProgram` (no Dp, the GRU states explicit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.sts import StsError
from models.unrolled import cat_tree

#: frequency bins of a 1024-point FFT (§3.1)
N_FREQ = 513
#: the total down-sampling factor of each axis (§2.2)
FACTOR = 8
#: NUS-48E's phoneme set: 39 CMU phonemes + silence + inhalation (§3.1)
PAPER_PHONEMES = 41
#: the MTL weight of §3.1
PAPER_LAMBDA = 0.015
#: "gru" = the proposed IN before the latent GRUs, "none" = B2, "all" = AllNorm (§3.1)
NORMS = ("gru", "none", "all")
#: Dp's transposed conv along time: stride 4 takes D's block-3 output (T/4 frames) back to T
_DP_STRIDE = 4


@dataclass(frozen=True)
class StsConfig:
    """Hyper-parameters of :class:`StsNet`; :func:`system_config` gives the paper's systems.

    ``channels`` are the output widths of the six encoder blocks (time, frequency, time, ...);
    the decoder mirrors them. ``phonemes = 0`` drops Dp. ``lam`` is the MTL weight λ of §2.3
    (stored here for the trainer; > 0 needs a phoneme decoder). ``autoencoder`` marks the
    singing autoencoder of §3.1: the same network, trained with the singing as E1's input.
    """

    channels: tuple[int, ...] = (64, 64, 128, 128, 128, 128)
    kernel: int = 5
    gru_hidden: int = 256
    phonemes: int = 0
    phoneme_channels: int = 8
    use_melody: bool = True
    skips: bool = True
    norm: str = "gru"
    lam: float = 0.0
    autoencoder: bool = False
    n_freq: int = N_FREQ

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 6 or min(self.channels) < 1:
            raise StsError(f"channels must be 6 widths >= 1 (3 time + 3 frequency blocks), "
                           f"got {self.channels}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise StsError(f"kernel must be odd and >= 1 (centred, exact halving), "
                           f"got {self.kernel}")
        if self.gru_hidden < 1 or self.phoneme_channels < 1 or self.n_freq < 1:
            raise StsError(f"gru_hidden, phoneme_channels and n_freq must be >= 1, got "
                           f"{self.gru_hidden}, {self.phoneme_channels}, {self.n_freq}")
        if self.phonemes < 0:
            raise StsError(f"phonemes must be >= 0 (0 disables Dp), got {self.phonemes}")
        if self.norm not in NORMS:
            raise StsError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.lam < 0:
            raise StsError(f"lam must be >= 0, got {self.lam}")
        if self.lam > 0 and self.phonemes == 0:
            raise StsError(f"lam = {self.lam} > 0 needs a phoneme decoder: set phonemes > 0")

    @property
    def padded_freq(self) -> int:
        """``n_freq`` rounded up to a multiple of 8 (513 → 520)."""
        return -(-self.n_freq // FACTOR) * FACTOR

    def replace(self, **changes: Any) -> StsConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


#: network sizes; the paper gives no widths, so "paper" is our choice of a U-net-like width
SIZES: dict[str, dict[str, Any]] = {
    "paper": {"channels": (64, 64, 128, 128, 128, 128), "kernel": 5, "gru_hidden": 256,
              "phoneme_channels": 8},
    "demo": {"channels": (16, 16, 32, 32, 32, 32), "kernel": 5, "gru_hidden": 64,
             "phoneme_channels": 4},
    "unittest": {"channels": (4, 4, 4, 4, 4, 4), "kernel": 3, "gru_hidden": 8,
                 "phoneme_channels": 2},
}

#: the systems of §3.1 as config changes. "Proposed MSE + PhSync" is P-MSE on phoneme-stretched
#: data (a pre-processing setting, not a network), so it has no entry of its own.
SYSTEMS: dict[str, dict[str, Any]] = {
    "b1": {"use_melody": False, "lam": 0.0},
    "b2": {"norm": "none", "skips": False, "lam": 0.0},
    "allnorm": {"norm": "all", "lam": 0.0},
    "p-mse": {"lam": 0.0},
    "p-mtl": {"lam": PAPER_LAMBDA, "phonemes": PAPER_PHONEMES},
    "autoencoder": {"lam": 0.0, "autoencoder": True},
}


def system_config(system: str = "p-mtl", size: str = "paper", **overrides: Any) -> StsConfig:
    """The config of one §3.1 system at one size, with ``overrides`` applied last."""
    if system not in SYSTEMS:
        raise StsError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    if size not in SIZES:
        raise StsError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    return StsConfig(**{**SIZES[size], **SYSTEMS[system], **overrides})


def variants(size: str = "paper") -> dict[str, StsConfig]:
    """Every system of §3.1 (:data:`SYSTEMS`) at ``size``."""
    return {name: system_config(name, size) for name in SYSTEMS}


class TimeNorm(nn.InstanceNorm1d):
    """Instance normalization of ``(B, features, T)`` over time, per feature, no affine.

    Written out (mean, variance, rsqrt) rather than ``F.instance_norm``, which refuses a
    single frame; here one frame normalizes to zeros, so ``T ≤ 8`` inputs still run.
    """

    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__(features, eps=eps, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=-1, keepdim=True)
        return centred * torch.rsqrt(var + self.eps)


class ExportableGRU(nn.GRU):
    """A single-layer, unidirectional, ``batch_first`` ``nn.GRU``; eager calls use PyTorch's
    kernel, ``torch.export`` sees the recurrence unrolled frame by frame in ``linear``,
    ``sigmoid``, ``tanh``, slices, ``mul`` and ``add`` (delegable, as
    :class:`models.separation.lstm.ExportableLSTM` does for LSTMs). Same state dict.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, 1, batch_first=True, bidirectional=False)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.compiler.is_exporting():
            return super().forward(x, hx)
        return self.unrolled(x, hx)

    def unrolled(self, x: torch.Tensor, hx: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """PyTorch's GRU equations (gate order r, z, n) frame by frame:
        ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = n + z ⊙ (h − n)``.

        Each frame's ``linear`` of the state has no bias; ``b_h`` is added to it by an ``add``
        (the same sum). A bias shared by the T per-frame ``linear``s broke int8 programs:
        XNNPACK serialises a shared constant once, so every frame's int32 bias was quantized
        with the first frame's input scale (measured on sts-unittest's program: the GRU
        states' SQNR against eager was 19 and 12 dB in the runtime where PT2E's simulation
        gave 39 and 16 dB; -3 dB for a linear called twice whose first input is zeros).
        """
        b, t, _ = x.shape
        hid = self.hidden_size
        xp = F.linear(x, self.weight_ih_l0, self.bias_ih_l0)  # (B, T, 3H), all frames at once
        h = x.new_zeros(b, hid) if hx is None else hx.reshape(b, hid)
        hs: list[torch.Tensor] = [x] * t
        for step in range(t):
            gx = xp.narrow(1, step, 1).reshape(b, 3 * hid)
            gh = F.linear(h, self.weight_hh_l0) + self.bias_hh_l0
            rz = torch.sigmoid(gx[:, : 2 * hid] + gh[:, : 2 * hid])
            n = torch.tanh(gx[:, 2 * hid :] + rz[:, :hid] * gh[:, 2 * hid :])
            h = n + rz[:, hid:] * (h - n)
            hs[step] = h.reshape(b, 1, hid)
        return cat_tree(hs, 1), h.reshape(1, b, hid)


def _axis_conv(cin: int, cout: int, k: int, axis: str, up: bool) -> nn.Module:
    """A stride-2 "1D convolution" (§2.2) along ``axis`` ("time" or "freq") of a 4-D map:
    ``Conv2d`` halves the axis, ``ConvTranspose2d`` doubles it, exactly, for odd ``k``."""
    kernel = (1, k) if axis == "time" else (k, 1)
    stride = (1, 2) if axis == "time" else (2, 1)
    pad = (0, k // 2) if axis == "time" else (k // 2, 0)
    if not up:
        return nn.Conv2d(cin, cout, kernel, stride, pad)
    out_pad = (0, 1) if axis == "time" else (1, 0)
    return nn.ConvTranspose2d(cin, cout, kernel, stride, pad, output_padding=out_pad)


class AxisBlock(nn.Module):
    """[InstanceNorm2d (AllNorm)] → stride-2 conv or transposed conv along one axis → ReLU.

    Extra inputs are concatenated to the first on the channel axis inside the block (the
    decoder's skips, and E2's latent beside E1's): an int8 plan that quantizes block by block
    then quantizes each concatenation with the block, with one scale for all its inputs, which
    XNNPACK's quantized concatenation requires (a concatenation left between two quantized
    blocks with different scales fails to load: ``xnn_status_invalid_parameter`` on its
    ``cat2`` node)."""

    def __init__(self, cin: int, cout: int, k: int, axis: str, up: bool, norm: bool):
        super().__init__()
        self.axis, self.up = axis, up
        self.norm = nn.InstanceNorm2d(cin) if norm else nn.Identity()
        self.conv = _axis_conv(cin, cout, k, axis, up)

    @property
    def in_channels(self) -> int:
        return int(self.conv.in_channels)

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        if more:
            x = torch.cat([x, *more], dim=1)
        return F.relu(self.conv(self.norm(x)))


#: the encoder's block axes (§2.2: alternating, time first — our choice); D mirrors them
_ENC_AXES = ("time", "freq", "time", "freq", "time", "freq")


class Encoder(nn.Module):
    """E1 / E2 (§2.2): six alternating down blocks, then [IN over time] → GRU → linear at the
    latent. Returns the latent map ``(B, c5, F/8, T/8)`` and every block's output (skips)."""

    def __init__(self, cfg: StsConfig):
        super().__init__()
        widths = (1, *cfg.channels)
        self.blocks = nn.ModuleList(
            AxisBlock(widths[i], widths[i + 1], cfg.kernel, axis, up=False,
                      norm=cfg.norm == "all")
            for i, axis in enumerate(_ENC_AXES))
        feats = cfg.channels[-1] * (cfg.padded_freq // FACTOR)
        self.norm = TimeNorm(feats) if cfg.norm != "none" else nn.Identity()
        self.gru = ExportableGRU(feats, cfg.gru_hidden)
        self.proj = nn.Linear(cfg.gru_hidden, feats)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None,
                return_state: bool = False) -> tuple[Any, ...]:
        """``(latent, block outputs)``, and the GRU's state after the last latent frame
        ``(1, B, gru_hidden)`` third with `return_state`; `hx` (same shape) is the GRU's
        initial state (None: zeros)."""
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        b, ch, f, t = x.shape
        z = self.norm(x.reshape(b, ch * f, t)).transpose(1, 2)  # (B, T', ch·F')
        z, h = self.gru(z, hx)
        z = self.proj(z).transpose(1, 2).reshape(b, ch, f, t)
        return (z, maps, h) if return_state else (z, maps)


class Decoder(nn.Module):
    """D (§2.2): six transposed blocks mirroring the encoder, each after the first reading the
    previous output ⊕ the E1 map of the same size (with skips), then a linear 1×1 conv.
    Also returns the output of the penultimate frequency-upsampling block (block 3) for Dp."""

    def __init__(self, cfg: StsConfig):
        super().__init__()
        c = cfg.channels
        self.skips = cfg.skips
        enc_in = (1, *c)  # input width of each encoder block
        blocks = []
        for j in range(6):
            i = 5 - j  # the encoder block this one mirrors: maps E_i's size to E_{i-1}'s
            if j == 0:
                cin = c[5] * (2 if cfg.use_melody else 1)
            else:  # block j-1 gave c[i] channels; the skip E_i (E1's block-i output) c[i] more
                cin = c[i] * (2 if cfg.skips else 1)
            cout = enc_in[i] if i > 0 else c[0]  # the last block stays c0 wide: 1×1 conv next
            blocks.append(AxisBlock(cin, cout, cfg.kernel, _ENC_AXES[i], up=True,
                                    norm=cfg.norm == "all"))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c[0], 1, 1)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor],
                z2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, block-3 map)`` of the latent `z` (⊕ E2's latent `z2` when given), with
        E1's block outputs `skips`; every concatenation happens inside a block
        (:class:`AxisBlock`)."""
        tap = z
        for j, block in enumerate(self.blocks):
            if j == 0:
                z = block(z) if z2 is None else block(z, z2)
            elif self.skips:
                z = block(z, skips[5 - j])
            else:
                z = block(z)
            if j == 2:
                tap = z
        return self.out(z), tap


class PhonemeDecoder(nn.Module):
    """Dp (§2.2): [InstanceNorm2d (AllNorm)] → transposed 1D conv along time (kernel 8,
    stride 4, ReLU: D's block-3 map, ``T/4`` frames, back to ``T``) → [IN over time] → GRU
    over the ``cp · F/2`` features of each frame → 1D conv (kernel 1) to ``Np`` logits."""

    def __init__(self, cfg: StsConfig):
        super().__init__()
        cin, cp = cfg.channels[2], cfg.phoneme_channels
        s = _DP_STRIDE
        self.norm_up = nn.InstanceNorm2d(cin) if cfg.norm == "all" else nn.Identity()
        self.up = nn.ConvTranspose2d(cin, cp, (1, 2 * s), (1, s), (0, s // 2))
        feats = cp * (cfg.padded_freq // 2)
        self.norm = TimeNorm(feats) if cfg.norm != "none" else nn.Identity()
        self.gru = ExportableGRU(feats, cfg.gru_hidden)
        self.out = nn.Conv1d(cfg.gru_hidden, cfg.phonemes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.up(self.norm_up(x)))
        b, ch, f, t = x.shape
        h = self.gru(self.norm(x.reshape(b, ch * f, t)).transpose(1, 2))[0]
        return self.out(h.transpose(1, 2))  # (B, Np, T)


class StsNet(nn.Module):
    """The STS network of §2.2: ``forward(x, c)`` → ``Ŷ`` ``(B, F, T)``, or ``(Ŷ, logits)``
    with logits ``(B, Np, T)`` when ``cfg.phonemes > 0``. ``x`` is the speech log-magnitude
    (the singing for the autoencoder), ``c`` the binary melody image, both ``(B, F, T)``;
    ``c`` is accepted and ignored when ``use_melody`` is off (B1), so every system is called
    the same way. Any ``T ≥ 1``: both axes are padded to multiples of 8 and cropped back.
    :meth:`infer` is the conversion alone, with the latent GRU states in and out."""

    def __init__(self, cfg: StsConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or StsConfig()
        self.encoder1 = Encoder(cfg)
        self.encoder2 = Encoder(cfg) if cfg.use_melody else None
        self.decoder = Decoder(cfg)
        self.phoneme_decoder = PhonemeDecoder(cfg) if cfg.phonemes > 0 else None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (what checkpoints store)."""
        cfg = dataclasses.asdict(self.cfg)
        cfg["channels"] = list(cfg["channels"])
        return cfg

    @classmethod
    def from_system(cls, system: str = "p-mtl", size: str = "paper", **overrides: Any
                    ) -> StsNet:
        """The network of one §3.1 system (:func:`system_config`)."""
        return cls(system_config(system, size, **overrides))

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.dim() != 3 or x.shape[1] != self.cfg.n_freq or x.shape[2] < 1:
            raise StsError(f"{name} must be (batch, {self.cfg.n_freq} bins, frames >= 1), "
                           f"got {tuple(x.shape)}")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) → (B, 1, F8, T8): zeros appended (a concatenation, which int8 XNNPACK
        programs take where a quantized ``F.pad`` fails; see models.separation.nets)."""
        b, f, t = x.shape
        pf, pt = self.cfg.padded_freq - f, -t % FACTOR
        x = torch.cat([x, x.new_zeros(b, pf, t)], dim=1)
        x = torch.cat([x, x.new_zeros(b, f + pf, pt)], dim=2)
        return x.unsqueeze(1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, h1: torch.Tensor | None = None,
                h2: torch.Tensor | None = None, states: bool = False) -> Any:
        """``Ŷ``, or ``(Ŷ, logits)`` with Dp; `h1` / `h2` are the initial states ``(1, B,
        gru_hidden)`` of the latent GRUs of ``E1`` / ``E2`` (None: zeros). With `states`:
        :meth:`infer`'s ``(Ŷ, h1_out, h2_out)`` instead."""
        y, tap, h1_out, h2_out = self._run(x, c, h1, h2)
        if states:
            return y, h1_out, h2_out
        if self.phoneme_decoder is None:
            return y
        return y, self.phoneme_decoder(tap)[:, :, : x.shape[2]]

    def infer(self, x: torch.Tensor, c: torch.Tensor, h1: torch.Tensor | None = None,
              h2: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(Ŷ, h1_out, h2_out)``: the conversion alone (no Dp: its logits only serve the MTL
        loss), with the latent GRU states of ``E1`` (`h1`) and ``E2`` (`h2`) in and out, each
        ``(1, B, gru_hidden)`` (None: zeros, as in :meth:`forward`; ``h2_out`` is None without
        ``E2``, B1). ``Ŷ`` equals :meth:`forward`'s for zero states. The states are taken after
        the last latent frame, padding included: give ``T`` a multiple of 8 to carry them
        (:class:`models.sts.program.StsDeviceProgram`). A call of the module (hooks run)."""
        return self(x, c, h1, h2, states=True)  # type: ignore[no-any-return]

    def _run(self, x: torch.Tensor, c: torch.Tensor, h1: torch.Tensor | None,
             h2: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(Ŷ, D's block-3 map for Dp, E1's GRU state, E2's or None)``."""
        self._check(x, "x")
        self._check(c, "c")
        if c.shape != x.shape:
            raise StsError(f"c must have x's shape {tuple(x.shape)}, got {tuple(c.shape)}")
        f, t = x.shape[1], x.shape[2]
        z, maps, h1 = self.encoder1(self._pad(x), h1, return_state=True)
        h2_out = z2 = None
        if self.encoder2 is not None:
            z2, _, h2_out = self.encoder2(self._pad(c), h2, return_state=True)
        y, tap = self.decoder(z, maps, z2)  # E1's latent ⊕ E2's, inside the first block
        y = y[:, 0, :f, :t]
        if not self.training:  # log(1 + |S|) >= 0; training keeps the gradient of every bin
            y = y.clamp_min(0.0)
        return y, tap, h1, h2_out


def mtl_loss(y_hat: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None,
             labels: torch.Tensor | None, lam: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The MTL objective of §2.3, ``L = ||Y − Ŷ||² + (λ/T) Σ_t L_CE(ŷ_t, c_t)``, per frame.

    Both terms are read per frame and averaged over frames and batch: the MSE term is the
    squared norm of each frame's error over its ``F`` bins (``F ·`` the mean squared error),
    the CE term the mean over every labelled frame (``labels < 0``, unlabelled frames, are
    left out). The paper's ``(λ/T) Σ_t`` averages CE over the clip's frames, and its
    ``||Y − Ŷ||²`` is a squared norm, not a mean over bins; read per frame, neither term grows
    with the clip length, and λ = 0.015 (§3.1) weighs the CE against the error of a whole
    frame. Measured (2026-12-07, sts-demo, 400 steps of 8 × 128 frames, the synthetic
    corpus): with the MSE taken as the mean over bins instead (513 × less weight on the
    spectrogram against the CE), P-MTL's validation MSE stayed at ~0.07 while P-MSE's fell to
    0.050, and P-MTL scored LSD 17.7 dB / RCA 0.09 on the held-out songs against P-MSE's
    15.2 dB / 0.43. ``lam == 0`` or ``logits is None`` gives the MSE term alone (B1, B2,
    AllNorm, P-MSE). Adam's steps do not depend on the loss's scale, so the factor ``F``
    changes nothing for those.

    ``y_hat``, ``y``: ``(B, F, T)``; ``logits``: ``(B, Np, T)``; ``labels``: ``(B, T)`` integer
    phoneme indices. Returns the loss and its detached parts ``{"mse"[, "ce"]}``, ``"mse"``
    being the mean squared error over bins (the loss's first term divided by ``F``).
    """
    if y_hat.shape != y.shape:
        raise StsError(f"y_hat {tuple(y_hat.shape)} and y {tuple(y.shape)} differ in shape")
    mse = F.mse_loss(y_hat, y)
    parts = {"mse": mse.detach()}
    frame_sq = mse * y.shape[1]  # mean over (B, T) of each frame's squared error norm
    if logits is None or lam == 0:
        return frame_sq, parts
    if labels is None:
        raise StsError("lam > 0 with phoneme logits needs labels (batch, frames)")
    if logits.dim() != 3 or labels.shape != (logits.shape[0], logits.shape[2]):
        raise StsError(f"labels must be (batch, frames) = ({logits.shape[0]}, "
                       f"{logits.shape[-1]}) for logits {tuple(logits.shape)}, got "
                       f"{tuple(labels.shape)}")
    valid = labels >= 0
    ce_t = F.cross_entropy(logits, labels.clamp(min=0).long(), reduction="none")  # (B, T)
    ce = (ce_t * valid).sum() / valid.sum().clamp(min=1)
    parts["ce"] = ce.detach()
    return frame_sq + lam * ce, parts


def parameter_count(model: nn.Module) -> int:
    """The number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "FACTOR",
    "NORMS",
    "N_FREQ",
    "PAPER_LAMBDA",
    "PAPER_PHONEMES",
    "SIZES",
    "SYSTEMS",
    "Decoder",
    "Encoder",
    "ExportableGRU",
    "PhonemeDecoder",
    "StsConfig",
    "StsNet",
    "TimeNorm",
    "mtl_loss",
    "parameter_count",
    "system_config",
    "variants",
]
