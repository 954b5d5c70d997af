"""The Chimera network as a singing-voice separator (Luo et al., "Deep clustering and
conventional networks for music separation: stronger together", ICASSP 2017; issue 25).

:class:`ChimeraSeparator` wraps :class:`~models.separation.clustering.ChimeraNet` (the body and
its two heads) in the interface of every separator here (``forward (B, C, T) -> (B, 2, C, T)``
stems ``[vocals, accompaniment]``, ``loss``, ``config``, ``sample_rate``, ``channels``,
``min_samples``). The channels of a recording are separated independently (folded into the
batch): the paper's network is monaural.

Features (§3.1): a 512-point STFT with a 128-point hop (:class:`ConvSTFT`, periodic Hann), the
magnitudes summed by a 150-band mel filterbank (librosa's Slaney-scale triangles with a peak of
1, ``norm=None``: the area normalisation would make the high bands ~100 times quieter than the
low ones), log-compressed as ``log(mel + 1e-3)`` (the paper does not say which compression; a
log is the deep-clustering convention, and the floor keeps silent bins finite and bounded for
int8), and the first-order deltas of the log-mel frames appended. Deltas are a backward
difference ``x_t − x_{t−1}`` with 0 for the first frame, so a streaming program carries only the
previous frame (and a "started" flag for the first frame: :class:`ChimeraStream`).

Targets (§2, §3.1): the mel magnitudes of the sources and the mixture (the same filterbank):
the dominant-source labels ``Y`` (the ideal binary mask on the mel spectrogram) for the DC loss,
and the MSA / mMSA objectives on the mel magnitudes for the MI head; eq. (4) weighs them with
``alpha``. ``alpha = 0`` is the plain mask-inference network, ``alpha = 1`` plain deep clustering.
The mMSA reference mask is :func:`~models.separation.clustering.reference_masks`'s Wiener-like
mask ``R_c² / Σ R_c'²``, what §3.4 trained with.

Masks back to audio: the paper applies the mel masks to the mixture's mel spectrogram, inverts
the mel filterbank and takes the inverse STFT with the mixture's phase. Inverting a 150 × 257
filterbank is a pseudo-inverse (or an NNLS fit), which neither sums the stems to the mixture nor
exports cleanly. Here each mel-bin mask is spread onto the linear STFT bins with the filterbank
weights normalised per linear bin (``P[f, m] = W[m, f] / Σ_m' W[m', f]``; a bin no filter covers
— DC, Nyquist, or a low bin between narrow filters — takes the mask of the filter whose centre is
nearest), the linear mask multiplies the mixture's complex STFT and :class:`ConvSTFT` inverts
it. A linear bin's mask is thus the filterbank-weighted average of the masks of the bands that
cover it; masks that sum to 1 over the sources (the softmax) stay summing to 1, so the stems add
up to the mixture (up to float rounding). One matrix product, in the exported graph.

Framing: every STFT frame that overlaps the signal, no more (the first frame holds the first
``hop`` samples after ``n_fft − hop`` zeros, the last one the last samples). ConvSTFT centres its
frames (``n_fft / 2`` zeros before the signal); :meth:`ChimeraSeparator.forward` pads the
mixture by ``n_fft / 2 − hop`` more zeros on the left and enough on the right, and trims them
after the inverse. With this framing a streaming program, which can only hold ``n_fft − hop``
past samples, computes exactly the same frames in the same order — the recurrent body must see
the same sequence, or its state would differ for the whole stream — and every sample of the
signal is covered by all ``n_fft / hop`` frames of the overlap-add.

:class:`ChimeraStream` is the streaming mask-inference program of a unidirectional model
(``bidirectional=False``, the causal variant): chunk after chunk, every state an explicit
tensor. :func:`stream` runs it over a whole mixture.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.separation import SeparationError
from models.separation.clustering import (
    ChimeraNet,
    chimera_loss,
    dc_loss,
    dominant_labels,
    kmeans_masks,
    mmsa_loss,
    msa_loss,
)
from models.separation.stft import ConvSTFT, transposed_conv1d

MI_LOSSES = ("mmsa", "msa")
#: floor of the log compression of the mel magnitudes (module docstring)
LOG_FLOOR = 1e-3
_EPS = 1e-8


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` Slaney-scale triangles with a peak of 1, 0 Hz to Nyquist."""
    import librosa

    with warnings.catch_warnings():  # narrow low bands between two STFT bins are expected
        warnings.simplefilter("ignore")
        return np.asarray(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
                                              fmin=0.0, fmax=sample_rate / 2.0, norm=None),
                          dtype=np.float64)


def mask_spreading(fb: np.ndarray, sample_rate: int) -> np.ndarray:
    """``P (F, n_mels)``: mel-bin masks → linear-bin masks (module docstring); rows sum to 1."""
    import librosa

    n_mels, n_freq = fb.shape
    tot = fb.sum(axis=0)  # (F,)
    p = np.zeros((n_freq, n_mels))
    covered = tot > 1e-12
    p[covered] = (fb[:, covered] / tot[covered]).T
    centres = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=sample_rate / 2.0)[1:-1]
    freqs = np.linspace(0.0, sample_rate / 2.0, n_freq)
    for f in np.flatnonzero(~covered):
        p[f, int(np.argmin(np.abs(centres - freqs[f])))] = 1.0
    return p


def _buffer(arr: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(arr, dtype=np.float32))


class ChimeraSeparator(nn.Module):
    """Chimera network singing-voice separator: ``(B, C, T)`` → ``(B, 2, C, T)`` stems
    ``[vocals, accompaniment]`` from the mask-inference head (module docstring).

    Defaults are the paper's (§3.1–3.2): 16 kHz, STFT 512 / hop 128, 150 mel bands + deltas,
    4 BLSTM layers of 500 units per direction, ``D = 20``, ``C = 2`` softmax masks on the 150
    mel bins, ``alpha = 0.1`` with the mMSA objective (CHI_0.1 of Table 3).
    ``bidirectional=False``: a unidirectional LSTM body, the causal variant that
    :class:`ChimeraStream` runs chunk by chunk. :meth:`separate_dc` gives the DC head's output.
    """

    export_keep_fp32 = ("stft",)
    #: int8 export quantizes the network (body and heads); the STFT, the mel filterbank and the
    #: mask spreading touch the waveform / magnitudes and stay fp32
    export_int8_modules = ("net",)
    #: STOI is undefined for an accompaniment stem (:func:`export.parity.stoi_sample_rate`)
    export_stoi = False

    mel_fb: torch.Tensor
    spread: torch.Tensor

    def __init__(self, sample_rate: int = 16000, channels: int = 2, n_fft: int = 512,
                 hop: int = 128, n_mels: int = 150, deltas: bool = True, hidden: int = 500,
                 layers: int = 4, embedding: int = 20, alpha: float = 0.1,
                 mi_loss: str = "mmsa", bidirectional: bool = True, dropout: float = 0.0):
        super().__init__()
        if channels < 1 or n_mels < 1:
            raise SeparationError(f"channels={channels}, n_mels={n_mels}; expected >= 1")
        if n_fft < 4 or n_fft & (n_fft - 1) or hop < 1 or 2 * hop > n_fft:
            raise SeparationError(f"n_fft={n_fft}, hop={hop}: expected a power-of-two FFT and "
                                  "a hop of at most half of it")
        if mi_loss not in MI_LOSSES:
            raise SeparationError(f"mi_loss={mi_loss!r}; valid: {', '.join(MI_LOSSES)}")
        if not 0.0 <= alpha <= 1.0:
            raise SeparationError(f"alpha={alpha!r}; expected 0 <= alpha <= 1")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.n_fft, self.hop, self.n_mels = int(n_fft), int(hop), int(n_mels)
        self.deltas, self.alpha, self.mi_loss = bool(deltas), float(alpha), mi_loss
        self.bidirectional, self.dropout = bool(bidirectional), float(dropout)
        self.hidden, self.layers, self.embedding = int(hidden), int(layers), int(embedding)
        self.stft = ConvSTFT(sample_rate, 1000.0 * n_fft / sample_rate, 1000.0 * hop / sample_rate)
        if (self.stft.n_fft, self.stft.win_length, self.stft.hop_length) != (n_fft, n_fft, hop):
            raise SeparationError(f"ConvSTFT at {sample_rate} Hz gave window "
                                  f"{self.stft.win_length}, hop {self.stft.hop_length}, FFT "
                                  f"{self.stft.n_fft}; expected {n_fft}, {hop}, {n_fft}")
        fb = mel_filterbank(self.sample_rate, n_fft, n_mels)
        self.register_buffer("mel_fb", _buffer(fb.T))  # (F, n_mels): magnitudes → mel
        self.register_buffer("spread", _buffer(mask_spreading(fb, self.sample_rate).T))  # (M, F)
        features = n_mels * (2 if deltas else 1)
        self.net = ChimeraNet(features, n_mels, hidden, layers, embedding, 2, dropout,
                              bidirectional)

    # ---- interface ---------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, object]:
        """Constructor arguments (JSON-serialisable)."""
        return {"sample_rate": self.sample_rate, "channels": self.channels, "n_fft": self.n_fft,
                "hop": self.hop, "n_mels": self.n_mels, "deltas": self.deltas,
                "hidden": self.hidden, "layers": self.layers, "embedding": self.embedding,
                "alpha": self.alpha, "mi_loss": self.mi_loss,
                "bidirectional": self.bidirectional, "dropout": self.dropout}

    @property
    def min_samples(self) -> int:
        return self.n_fft

    @property
    def delay_samples(self) -> int:
        """What :class:`ChimeraStream` holds back: ``n_fft − hop`` samples (the overlap-add)."""
        return self.n_fft - self.hop

    # ---- the pieces --------------------------------------------------------------------------
    def _check(self, mix: torch.Tensor) -> None:
        if mix.dim() != 3 or mix.shape[1] != self.channels or mix.shape[-1] < self.min_samples:
            raise SeparationError(f"mix must be (batch, {self.channels}, >= {self.min_samples} "
                                  f"samples), got {tuple(mix.shape)}")

    def frames(self, length: int) -> int:
        """STFT frames of a ``length``-sample signal: every frame that overlaps it."""
        return -(-(length + self.n_fft - self.hop) // self.hop)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` → complex STFT ``(B, C, 2, F, N)`` in this model's framing (module
        docstring), ``N = frames(T)``."""
        t = x.shape[-1]
        left = self.n_fft // 2 - self.hop
        right = (self.frames(t) - 1) * self.hop - t - left
        return self.stft(F.pad(x, (left, right)))

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`spectrum`: ``(B, C, 2, F, N)`` → ``(B, C, length)``."""
        left = self.n_fft // 2 - self.hop
        return self.stft.inverse(spec, left + length)[..., left:]

    def magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """``(..., 2, F, N)`` → linear magnitude ``(..., N, F)``."""
        return torch.sqrt(spec[..., 0, :, :].pow(2) + spec[..., 1, :, :].pow(2)).transpose(-1, -2)

    def mel(self, mag: torch.Tensor) -> torch.Tensor:
        """Linear magnitudes ``(..., N, F)`` → mel magnitudes ``(..., N, n_mels)``."""
        return mag @ self.mel_fb

    def features(self, mel: torch.Tensor, prev: torch.Tensor | None = None,
                 started: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, N, n_mels)`` mel magnitudes → network input ``(B, N, features)``: the log mel
        and (``deltas``) its backward difference; the first frame's delta is 0 unless `prev`
        (the previous frame's log mel, ``(B, n_mels)``) and `started` (1: there is one) say
        otherwise (streaming)."""
        lm = torch.log(mel + LOG_FLOOR)
        if not self.deltas:
            return lm
        if prev is None:
            d = lm[:, 1:] - lm[:, :-1]
            return torch.cat([lm, torch.cat([torch.zeros_like(lm[:, :1]), d], dim=1)], dim=-1)
        before = torch.cat([prev.unsqueeze(1), lm[:, :-1]], dim=1)
        d = lm - before
        gate = torch.cat([started.reshape(1, 1, 1).expand(lm.shape[0], 1, 1),
                          torch.ones_like(lm[:, 1:, :1])], dim=1)  # (B, N, 1)
        return torch.cat([lm, d * gate], dim=-1)

    def apply_masks(self, masks: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """Mel masks ``(B, N, n_mels, S)`` on the mixture spectrum ``(B, 1, 2, F, N)`` →
        ``(B, S, 2, F, N)`` (spread onto the linear bins: module docstring)."""
        lin = torch.einsum("bnms,mf->bsfn", masks, self.spread)  # (B, S, F, N)
        return lin.unsqueeze(2) * spec

    def _analyse(self, mix: torch.Tensor, segment_frames: int | None = None,
                 embeddings: bool = True) -> tuple[torch.Tensor, torch.Tensor,
                                                   torch.Tensor | None, torch.Tensor]:
        """``(B, C, T)`` → (spectrum ``(B·C, 1, 2, F, N)``, mel ``(B·C, N, M)``, embeddings
        ``(B·C, N, M, D)``, masks ``(B·C, N, M, 2)``); `segment_frames`: the body runs on
        segments of that many frames independently (eager only)."""
        b, c, t = mix.shape
        spec = self.spectrum(mix.reshape(b * c, 1, t))
        mel = self.mel(self.magnitude(spec[:, 0]))
        feats = self.features(mel)
        if segment_frames is None:
            z, masks, _ = self.net(feats)
        else:
            outs = [self.net(seg) for seg in feats.split(segment_frames, 1)]
            z = torch.cat([o[0] for o in outs], 1)
            masks = torch.cat([o[1] for o in outs], 1)
        return spec, mel, self.net.embed(z) if embeddings else None, masks

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        self._check(mix)
        b, c, t = mix.shape
        spec, _, _, masks = self._analyse(mix, embeddings=False)
        stems = self.inverse(self.apply_masks(masks, spec), t)  # (B·C, 2, T)
        return stems.reshape(b, c, 2, t).transpose(1, 2)

    def loss(self, mix: torch.Tensor, vocals: torch.Tensor, accompaniment: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. (4): ``alpha · L_DC / (T·F) + (1 − alpha) · L_MI`` on the mel magnitudes, every
        channel a mixture of its own (the losses average over batch × channels)."""
        self._check(mix)
        b, c, t = mix.shape
        spec, mel, v, masks = self._analyse(mix)
        assert v is not None
        with torch.no_grad():
            srcs = torch.stack([vocals, accompaniment], dim=2).reshape(b * c, 2, t)
            ref = self.mel(self.magnitude(self.spectrum(srcs)))  # (B·C, 2, N, M)
            ref = ref.reshape(b * c, 2, -1)
            s = mel.reshape(b * c, -1)
        n_bins = s.shape[-1]
        m = masks.permute(0, 3, 1, 2).reshape(b * c, 2, n_bins)
        l_dc = dc_loss(v.reshape(b * c, n_bins, self.embedding), dominant_labels(ref))
        l_mi = (mmsa_loss if self.mi_loss == "mmsa" else msa_loss)(m, ref, s)
        val = chimera_loss(l_dc, l_mi, n_bins, self.alpha)
        with torch.no_grad():
            from models.separation.tasnet import si_sdr_torch

            est = self.inverse(self.apply_masks(masks, spec), t).reshape(b, c, 2, t)
            voc = si_sdr_torch(vocals, est[:, :, 0]).mean()
        return val, {"dc_per_bin": float(l_dc.detach()) / n_bins ** 2,
                     "mi_per_bin": float(l_mi.detach()) / n_bins,
                     "si_sdr_vocals": float(voc)}

    # ---- compression (the separation recipe's units) -------------------------------------------
    def remove_layer(self, index: int) -> None:
        """Drop LSTM layer `index` (>= 1; :meth:`~models.separation.lstm.LSTMStack.remove_layer`
        ); the config follows (``layers`` one fewer: every later layer has the same shape)."""
        try:
            self.net.body.remove_layer(index)
        except ValueError as exc:
            raise SeparationError(str(exc)) from None
        self.layers = len(self.net.body.layers)

    def narrow(self, hidden: int) -> None:
        """Keep `hidden` units per direction in every LSTM layer (the units of largest
        recurrent weight norm, :meth:`ChimeraNet.narrow`); the config follows."""
        try:
            self.net.narrow(int(hidden))
        except ValueError as exc:
            raise SeparationError(str(exc)) from None
        self.hidden = int(hidden)

    def narrow_embedding(self, embedding: int) -> None:
        """Keep `embedding` of the ``D`` embedding dimensions (:meth:`ChimeraNet.narrow_embedding`
        ); the config follows."""
        try:
            self.net.narrow_embedding(int(embedding))
        except ValueError as exc:
            raise SeparationError(str(exc)) from None
        self.embedding = int(embedding)

    # ---- deep clustering output --------------------------------------------------------------
    @torch.no_grad()
    def streaming_program(self, chunk_frames: int = 8) -> ChimeraStream:
        """The MI head as a streaming program of `chunk_frames` hops a call
        (:class:`ChimeraStream`; unidirectional models only)."""
        return ChimeraStream(self, chunk_frames)

    def separate_dc(self, mix: torch.Tensor, references: torch.Tensor | None = None,
                    seed: int = 0, segment_frames: int | None = None) -> torch.Tensor:
        """The DC head's output (§2.1, §3.2): K-means (k = 2) on the embeddings of the whole
        recording, per channel, the clusters as binary mel masks applied like the MI masks.
        ``mix (1, C, T)`` → ``(2, C, T)`` ``[vocals, accompaniment]``: per channel the cluster
        order is the permutation with the higher summed SDR against `references` ``(2, C, T)``
        (§3.4's best permutation), else the one whose binary masks agree more (mixture-weighted)
        with the MI head's soft masks. `segment_frames`: run the network on consecutive
        segments of that many frames independently (§3.2: the paper's test-time segments; the
        recording's features are computed whole, K-means still sees every embedding at once);
        None: the whole recording in one pass. Eager only."""
        self._check(mix)
        if mix.shape[0] != 1:
            raise SeparationError(f"separate_dc takes one recording (1, C, T), got "
                                  f"{tuple(mix.shape)}")
        c, t = mix.shape[1], mix.shape[2]
        if references is not None and tuple(references.shape) != (2, c, t):
            raise SeparationError(f"references must be (2, {c}, {t}), got "
                                  f"{tuple(references.shape)}")
        if segment_frames is not None and segment_frames < 1:
            raise SeparationError(f"segment_frames={segment_frames}; expected None or >= 1")
        spec, mel, v, masks = self._analyse(mix, segment_frames)
        assert v is not None
        n, m = mel.shape[1], mel.shape[2]
        out = torch.zeros(2, c, t, dtype=mix.dtype)
        for ch in range(c):
            km = kmeans_masks(v[ch].reshape(n * m, self.embedding), 2, seed=seed)  # (2, N·M)
            km = km.reshape(2, n, m).permute(1, 2, 0).unsqueeze(0)  # (1, N, M, 2)
            stems = self.inverse(self.apply_masks(km, spec[ch : ch + 1]), t)[0]  # (2, T)
            if references is not None:
                def sdr(a: torch.Tensor, b: torch.Tensor) -> float:
                    return float(10 * torch.log10((a.pow(2).sum() + _EPS)
                                                  / ((a - b).pow(2).sum() + _EPS)))

                keep = (sdr(references[0, ch], stems[0]) + sdr(references[1, ch], stems[1])
                        >= sdr(references[0, ch], stems[1]) + sdr(references[1, ch], stems[0]))
            else:
                w = mel[ch].unsqueeze(-1)  # (N, M, 1)
                same = float((km[0] * masks[ch] * w).sum())
                swap = float((km[0].flip(-1) * masks[ch] * w).sum())
                keep = same >= swap
            out[:, ch] = stems if keep else stems.flip(0)
        return out


class ChimeraStream(nn.Module):
    """The streaming mask-inference program of a unidirectional :class:`ChimeraSeparator`.

    One call takes ``chunk_frames · hop`` new samples of every channel and returns as many
    samples of both stems, ``delay = n_fft − hop`` samples late: output sample ``g`` of the
    stream (counting from the first call) is the whole-file ``model(mix)`` sample
    ``g − delay``. The first ``delay`` samples of the stream belong to no input sample (the
    zeros before the signal) and are discarded; to get the last ``delay`` samples the caller
    feeds zeros after the end (:func:`stream` does both). Every sample of the file matches
    (the framing of :class:`ChimeraSeparator` makes the stream's frames the whole-file frames,
    module docstring), within float rounding.

    State, all explicit tensors of fixed shape (``C`` channels, ``M`` mel bands, ``L`` LSTM
    layers, ``H`` hidden units), :meth:`initial_state`:

    * ``in_tail (C, n_fft − hop)``: the last input samples (the next frame's left part);
    * ``out_tail (C, 2, n_fft − hop)``: the overlap-add of the stems not yet complete;
    * ``prev_feats (C, M)``: the log mel of the last frame (for the delta);
    * ``started (1,)``: 0 before the first frame, then 1 (the first frame's delta is 0);
    * ``h, c (L, C, H)``: the LSTM state.

    ``forward(chunk (1, C, K·hop), in_tail, out_tail, prev_feats, started, h, c) ->
    (stems (1, 2, C, K·hop), in_tail, out_tail, prev_feats, started, h, c)``.
    """

    export_keep_fp32 = ("model.stft",)
    export_int8_modules = ("model.net",)
    export_stoi = False

    env: torch.Tensor

    def __init__(self, model: ChimeraSeparator, chunk_frames: int = 8):
        super().__init__()
        if not isinstance(model, ChimeraSeparator):
            raise SeparationError(f"ChimeraStream needs a ChimeraSeparator, got "
                                  f"{type(model).__name__}")
        if model.bidirectional:
            raise SeparationError("ChimeraStream needs a unidirectional model "
                                  "(bidirectional=False): a BLSTM's backward direction cannot "
                                  "carry state from chunk to chunk (the paper runs a BLSTM on "
                                  "fixed segments independently, §3.2)")
        if chunk_frames < 1:
            raise SeparationError(f"chunk_frames={chunk_frames}; expected >= 1")
        self.model = model
        self.chunk_frames = int(chunk_frames)
        self.sample_rate, self.channels = model.sample_rate, model.channels
        self.hop, self.n_fft = model.hop, model.n_fft
        self.delay = model.n_fft - model.hop
        # Σ window² of the overlap-add where every frame covers (one value per hop phase)
        win2 = model.stft.window_sq[0, 0].double().numpy()
        per = np.zeros(self.hop)
        for k in range(0, self.n_fft, self.hop):
            seg = win2[k : k + self.hop]
            per[: seg.shape[0]] += seg
        self.register_buffer("env", _buffer(np.tile(per, self.chunk_frames)))

    @classmethod
    def from_config(cls, chunk_frames: int = 8, **config: object) -> ChimeraStream:
        """A stream around a freshly built ``ChimeraSeparator(**config)`` (the registry
        factory: its config is the model's plus ``chunk_frames``)."""
        return cls(ChimeraSeparator(**config), chunk_frames)  # type: ignore[arg-type]

    @property
    def config(self) -> dict[str, object]:
        return {**self.model.config, "chunk_frames": self.chunk_frames}

    @property
    def chunk_samples(self) -> int:
        return self.chunk_frames * self.hop

    @property
    def delay_samples(self) -> int:
        """Samples by which the output lags the input (``n_fft − hop``)."""
        return int(self.delay)

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        """``(in_tail, out_tail, prev_feats, started, h, c)`` before the first chunk."""
        c, m = self.channels, self.model
        z = torch.zeros
        return (z(c, self.delay), z(c, 2, self.delay), z(c, m.n_mels), z(1),
                z(m.layers, c, m.hidden), z(m.layers, c, m.hidden))

    def forward(self, chunk: torch.Tensor, in_tail: torch.Tensor, out_tail: torch.Tensor,
                prev_feats: torch.Tensor, started: torch.Tensor, h: torch.Tensor,
                c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        ch, k = self.channels, self.chunk_frames
        x = torch.cat([in_tail, chunk.reshape(ch, self.chunk_samples)], dim=-1)  # (C, n_fft+..)
        spec = F.conv1d(x.unsqueeze(1), m.stft.forward_basis, stride=self.hop)  # (C, 2F, K)
        spec = spec.reshape(ch, 1, 2, m.stft.n_freq, k)
        mel = m.mel(m.magnitude(spec[:, 0]))  # (C, K, M)
        feats = m.features(mel, prev_feats, started)
        _, masks, (h2, c2) = m.net(feats, (h, c))
        est = m.apply_masks(masks, spec)  # (C, 2, 2, F, K)
        frames = transposed_conv1d(est.reshape(ch * 2, 2 * m.stft.n_freq, k),
                                   m.stft.inverse_poly, (k - 1) * self.hop + self.n_fft)
        frames = frames.reshape(ch, 2, -1)
        acc = frames + F.pad(out_tail, (0, frames.shape[-1] - self.delay))
        out = acc[..., : self.chunk_samples] / self.env  # (C, 2, K·hop): complete samples
        new_tail = acc[..., self.chunk_samples :]
        new_in = x[:, x.shape[-1] - self.delay :]
        new_prev = torch.log(mel[:, -1] + LOG_FLOOR)
        return (out.transpose(0, 1).unsqueeze(0), new_in, new_tail, new_prev,
                torch.ones_like(started), h2, c2)


def stream(model: ChimeraSeparator | ChimeraStream, mix: torch.Tensor, chunk_frames: int = 8
           ) -> torch.Tensor:
    """Run the streaming program over a whole mixture ``(1, C, T)`` chunk after chunk →
    ``(1, 2, C, T)``, equal to ``model(mix)`` (the stream's delay removed, zeros fed after the
    end to flush it)."""
    prog = model if isinstance(model, ChimeraStream) else ChimeraStream(model, chunk_frames)
    if mix.dim() != 3 or mix.shape[0] != 1 or mix.shape[1] != prog.channels:
        raise SeparationError(f"stream takes one mixture (1, {prog.channels}, T), got "
                              f"{tuple(mix.shape)}")
    t = mix.shape[-1]
    n = prog.chunk_samples
    total = -(-(t + prog.delay) // n) * n
    x = F.pad(mix, (0, total - t))
    state = prog.initial_state()
    outs = []
    with torch.no_grad():
        for s in range(0, total, n):
            y, *state = prog(x[..., s : s + n], *state)
            outs.append(y)
    return torch.cat(outs, dim=-1)[..., prog.delay : prog.delay + t]
