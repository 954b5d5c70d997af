"""The CWS separator: filter bank → STFT → mask network → masked STFT → iSTFT → synthesis.

:class:`Separator` turns a ``(B, C, T)`` mixture into ``(B, 2, C, T)`` stems
``[vocals, accompaniment]`` (J = 2, eq. 1):

1. analysis into K subbands, channel ``c·K + k`` (§2.3, eq. 6; :class:`PQMF`);
2. complex STFT of each subband at ``sr / K`` (32 ms window, 8 ms hop, §2.4; :class:`ConvSTFT`),
   real and imaginary parts stacked channel-wise: the network input has ``2·C·K`` channels,
   channel ``2 (c·K + k) + {0: real, 1: imag}``;
3. the network (:mod:`models.separation.nets`) predicts sigmoid masks ``M_j`` for each source j
   and subband channel: ``(B, 2·C·K, F, N)``, source-major (vocals' C·K masks first);
4. ``X̂_j = M_j · Y`` (eq. 3) — a real mask on the complex mixture STFT;
5. iSTFT of each ``X̂_j`` and the synthesis bank give the stems, cropped to T.

No length restriction besides a minimum (:attr:`Separator.min_samples`): the filter bank pads
to whole subband samples and centres its filters, the STFT pads half an FFT on each side, the
networks take any spectrogram size; everything is cropped back to T. The graph is convolutions,
pooling, interpolation and elementwise ops with fixed shapes for a fixed T, so
``torch.export.export(model, (mix,))`` works; in ``eval()`` the forward is deterministic.

Training loss (§2.4, eqs. 7–8) is computed on the subband spectra, without synthesis: see
:meth:`Separator.loss`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from models.separation import SeparationError
from models.separation.nets import ARCHS, build_net, paper_blocks
from models.separation.stft import ConvSTFT, frame_geometry
from models.separation.subband import PQMF, SUBBANDS, default_taps

log = logging.getLogger(__name__)

SOURCES = ("vocals", "accompaniment")
LOSS_DOMAINS = ("magnitude", "complex")
_EPS = 1e-20


def subband_length(num_samples: int, k: int, taps: int | None = None) -> int:
    """Samples per subband of a ``num_samples`` input (:meth:`PQMF.subband_length`)."""
    if k == 1:
        return num_samples
    taps = default_taps(k) if taps is None else int(taps)
    return (num_samples + taps - 2) // k + 1


def spectrum_shape(k: int, channels: int, sample_rate: float, num_samples: int,
                   taps: int | None = None) -> tuple[int, int, int]:
    """The network input's ``(2·C·K, F, N)`` for ``num_samples`` of audio (no model needed)."""
    _, hop, n_fft = frame_geometry(sample_rate / k)
    return 2 * channels * k, n_fft // 2 + 1, 1 + subband_length(num_samples, k, taps) // hop


class Separator(nn.Module):
    """CWS voice / accompaniment separator (module docstring).

    Args:
        arch: ``"unet5"``, ``"unet6"``, ``"mdensenet"`` or ``"mmdensenet"``.
        k: subbands, 1 (no filter bank), 2, 4 or 8.
        channels: audio channels C (2: stereo, as in the paper).
        sample_rate: of the mixture; the STFT sizes follow ``sample_rate / k``.
        width: channel multiplier of the network (1 = the paper's sizes).
        dropout: dropout rate of the network (0.1 in §2.4).
        taps: filter-bank prototype length (default 16·K).
        loss_domain: ``"magnitude"`` (default) or ``"complex"``, see :meth:`loss`.
        layers: dense nets only: layers per dense block (:attr:`dense_layers`; None: the
            paper's).
        block_widths: the width of each block of the network (:attr:`block_widths`: the
            growth rate of each dense block, or the output channels of each UNet conv block;
            None: the paper's at `width`). :attr:`config` holds `layers` and `block_widths`
            only when they differ from the paper's, so an evolved separator (``compress run``
            removes layers and narrows widths) rebuilds from its checkpoint's config alone.
    """

    #: int8 export: only the mask network is quantized. The filter banks and the STFT run as
    #: method calls (``filterbank.analysis``, ``stft.inverse``), which leave no module name on
    #: their graph nodes, so ``export_keep_fp32`` alone would not reach them: without
    #: ``export_int8_modules`` the raw audio went through 8-bit analysis filters.
    export_keep_fp32 = ("filterbank", "stft")
    export_int8_modules = ("net",)
    #: no STOI in the parity gate (:func:`export.parity.stoi_sample_rate`): SQNR gates the stems
    export_stoi = False

    def __init__(self, arch: str = "mdensenet", k: int = 4, channels: int = 2,
                 sample_rate: int = 44100, width: float = 1.0, dropout: float = 0.1,
                 taps: int | None = None, loss_domain: str = "magnitude",
                 layers: list[int] | None = None, block_widths: list[int] | None = None):
        super().__init__()
        problems = []
        if arch not in ARCHS:
            problems.append(f"arch={arch!r} (valid: {', '.join(ARCHS)})")
        if k not in SUBBANDS:
            problems.append(f"k={k!r} (valid: {', '.join(map(str, SUBBANDS))})")
        if not (isinstance(channels, int) and channels >= 1):
            problems.append(f"channels={channels!r} (expected an int >= 1)")
        if not (isinstance(sample_rate, int) and sample_rate > 0):
            problems.append(f"sample_rate={sample_rate!r} (expected a positive int)")
        if not width > 0:
            problems.append(f"width={width!r} (expected > 0)")
        if not 0 <= dropout < 1:
            problems.append(f"dropout={dropout!r} (expected 0 <= dropout < 1)")
        if loss_domain not in LOSS_DOMAINS:
            problems.append(f"loss_domain={loss_domain!r} (valid: {', '.join(LOSS_DOMAINS)})")
        if problems:
            raise SeparationError("invalid Separator settings: " + "; ".join(problems))
        self.arch, self.k, self.channels = arch, k, channels
        self.sample_rate, self.width, self.dropout = sample_rate, float(width), float(dropout)
        self.loss_domain = loss_domain
        self.filterbank = PQMF(k, taps)
        self.taps = self.filterbank.taps
        self.stft = ConvSTFT(sample_rate / k)
        n_in = 2 * channels * k
        self.net = build_net(arch, n_in, n_in, width, dropout, layers, block_widths)
        min_f, self._min_frames = self.net.min_size
        if self.stft.n_freq < min_f:
            raise SeparationError(
                f"{arch} needs at least {min_f} frequency bins; the STFT at "
                f"{sample_rate}/{k} Hz has {self.stft.n_freq} (raise sample_rate or lower k)")

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), for checkpoints: ``Separator(**config)``."""
        cfg: dict[str, Any] = {
            "arch": self.arch, "k": self.k, "channels": self.channels,
            "sample_rate": self.sample_rate, "width": self.width, "dropout": self.dropout,
            "taps": self.taps if self.k > 1 else None, "loss_domain": self.loss_domain}
        layers, widths = paper_blocks(self.arch, self.width)
        if self.dense_layers != layers:
            cfg["layers"] = self.dense_layers
        if self.block_widths != widths:
            cfg["block_widths"] = self.block_widths
        return cfg

    @property
    def dense_layers(self) -> list[int]:
        """Layers per dense block of the network (empty for the UNets), what ``layers`` takes."""
        return self.net.dense_layers

    @property
    def block_widths(self) -> list[int]:
        """The network's width per block (dense growth rates, or UNet conv-block channels)."""
        return self.net.block_widths

    def narrow(self, widths: list[int]) -> None:
        """Narrow the mask network to `widths` (one per block, :attr:`block_widths`) in place.

        Each block keeps the output channels whose producing conv filters have the largest L2
        norm (:func:`models.units.channel_importance`, Torch-Pruning's magnitude criterion);
        every reader of those channels — later dense layers' BN and conv, transitions,
        up-samplers, skips, the mask head or out conv — is sliced with them
        (:meth:`MaskNet.width_groups`), and the network is rebuilt at the new widths with the
        sliced weights.
        """
        from models.units import channel_importance, select_channels, slice_state

        widths = [int(w) for w in widths]
        groups = self.net.width_groups(widths)
        state = self.net.state_dict()
        plan = [(g, select_channels(channel_importance(state, g), g.target)) for g in groups]
        n_in = 2 * self.channels * self.k
        net = build_net(self.arch, n_in, n_in, self.width, self.dropout,
                        self.dense_layers or None, widths)
        net.load_state_dict(slice_state(state, plan), strict=True)
        net.train(self.net.training)
        self.net = net

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Separator:
        return cls(**config)

    @property
    def min_samples(self) -> int:
        """Shortest input (samples) whose spectrogram the network can pool ``min_size`` times."""
        sub = (self._min_frames - 1) * self.stft.hop_length  # subband samples needed
        return max(1, sub if self.k == 1 else (sub - 1) * self.k - self.taps + 2)

    def _check(self, mix: torch.Tensor, name: str = "mix") -> None:
        if mix.dim() != 3 or mix.shape[1] != self.channels:
            raise SeparationError(f"{name} must be (batch, {self.channels}, samples), "
                                  f"got {tuple(mix.shape)}")
        if mix.shape[-1] < self.min_samples:
            raise SeparationError(f"{name} has {mix.shape[-1]} samples; {self.arch} with k="
                                  f"{self.k} at {self.sample_rate} Hz needs at least "
                                  f"{self.min_samples}")

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` → subband spectra ``(B, C·K, 2, F, N)`` (real, imag)."""
        return self.stft(self.filterbank.analysis(wav))

    def spectra(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture spectra ``Y`` ``(B, C·K, 2, F, N)`` and masks ``(B, 2, C·K, F, N)``."""
        self._check(mix)
        y = self.analyse(mix)  # (B, CK, 2, F, N)
        b, ck, _, n_freq, n_frames = y.shape
        masks = self.net(y.reshape(b, ck * 2, n_freq, n_frames))  # (B, 2·CK, F, N)
        return y, masks.reshape(b, 2, ck, n_freq, n_frames)

    @staticmethod
    def apply_masks(y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Eq. (3): ``X̂_j = M_j · Y`` → ``(B, 2, C·K, 2, F, N)``."""
        return masks.unsqueeze(3) * y.unsqueeze(1)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` mixture → ``(B, 2, C, T)`` stems ``[vocals, accompaniment]``."""
        b, c, t = mix.shape
        y, masks = self.spectra(mix)
        est = self.apply_masks(y, masks)  # (B, 2, CK, 2, F, N)
        ck = est.shape[2]
        sub = self.stft.inverse(est.reshape(b * 2, ck, *est.shape[3:]),
                                self.filterbank.subband_length(t))  # (2B, CK, L)
        return self.filterbank.synthesis(sub, t).reshape(b, 2, c, t)  # (B, 2, C, T)

    def loss(self, mix: torch.Tensor, vocals: torch.Tensor,
             accompaniment: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Eqs. (7)–(8): ``L = L_1 + L_c`` on the subband spectra, without synthesis (§2.4).

        ``X̂_j = M_j · Y`` are the masked mixture spectra (eq. 3), ``X_j`` the references'
        subband spectra (same filter bank and STFT), ``Y`` the mixture's.

        * ``L_1 = Σ_j mean |X̂_j − X_j|``;
        * ``L_c = mean |X̂_1 + X̂_2 − Y|``: the conservation term follows the mixture model of
          eq. (2), ``Y = X_1 + X_2``. The printed eq. (8) (``Σ_j |X̂_j − Y_j|``) is garbled —
          it would pull each estimate towards the whole mixture — so it is implemented as the
          sum's distance to the mixture, what §2.4 says the term is for.

        Magnitude or complex: §2.4 says each term is the mean absolute error "between network
        output X̂_j(f/K, t) and the corresponding reference magnitude", so by default
        (``loss_domain="magnitude"``) ``|·|`` compares magnitudes: ``L_1`` uses
        ``|X̂_j| = M_j |Y|`` against ``|X_j|``. ``L_c`` is the modulus of the complex
        residual; with real masks in [0, 1] it equals its magnitude form
        ``| |X̂_1| + |X̂_2| − |Y| | = |M_1 + M_2 − 1| |Y|``, so the reading does not change it.
        ``loss_domain="complex"`` takes ``L_1`` on the complex difference instead (the modulus
        of ``X̂_j − X_j``: phase-sensitive). Means over bins, frames, subband channels and batch
        replace the paper's sums (a constant factor).

        Returns ``(loss, {"l1": float, "conservation": float})``; ``loss`` has gradients.
        """
        self._check(mix)
        for name, ref in (("vocals", vocals), ("accompaniment", accompaniment)):
            if ref.shape != mix.shape:
                raise SeparationError(f"{name} must match mix {tuple(mix.shape)}, "
                                      f"got {tuple(ref.shape)}")
        y, masks = self.spectra(mix)
        est = self.apply_masks(y, masks)  # (B, 2, CK, 2, F, N)
        b = mix.shape[0]
        with torch.no_grad():
            refs = self.analyse(torch.cat([vocals, accompaniment], dim=0))  # (2B, CK, 2, F, N)
            refs = refs.reshape(2, b, *refs.shape[1:]).transpose(0, 1)  # (B, 2, CK, 2, F, N)

        def modulus(z: torch.Tensor) -> torch.Tensor:  # (..., 2, F, N) -> (..., F, N)
            # the clamp keeps the gradient finite (zero) where the modulus is zero
            return torch.sqrt((z[..., 0, :, :] ** 2 + z[..., 1, :, :] ** 2).clamp_min(_EPS))

        if self.loss_domain == "magnitude":
            diff = masks * modulus(y).unsqueeze(1) - modulus(refs)  # (B, 2, CK, F, N)
            l1 = diff.abs().mean(dim=(0, 2, 3, 4)).sum()
        else:
            l1 = modulus(est - refs).mean(dim=(0, 2, 3, 4)).sum()
        conservation = modulus(est.sum(dim=1) - y).mean()
        total = l1 + conservation
        return total, {"l1": float(l1.detach()), "conservation": float(conservation.detach())}
