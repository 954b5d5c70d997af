"""Rendering a predicted singing spectrogram through the project's vocoder (issue 26, item 3).

The paper renders with Griffin-Lim (§2.4, :mod:`models.sts.synthesis`): the pitch the listener
hears is whatever harmonics the network drew, and phase retrieval smears them further. Beyond
the paper, this module renders the same network output through the harmonic-plus-noise
neural-source-filter vocoder of LHQ-SVC (:class:`models.lhq_svc.vocoder.HNVocoder`): the
network's spectrogram gives the **spectral envelope** (what is sung: phonemes, timbre,
loudness) and the target melody's F0 drives the **harmonic source** (what pitch it is sung
at), as in every NSF singing synthesizer. So the rendering follows the melody by construction;
what the network contributes is judged by LSD and by listening, not by the chroma accuracy.
:func:`models.sts.evaluate.evaluate_sts` and ``benchmarks/sts_table.py`` report both renderings
side by side for that reason.

Conversion (no audio round trip): the network's frames are ``log(1 + |STFT_1024|)`` at a
256-sample hop; the vocoder reads the contract's log-mel ``log(max(mel_512 · |STFT_512|,
1e-5))`` at a 128-sample hop (80 Slaney bands, :class:`models.lhq_svc.mel.LogMel`). The
Slaney filters have the same weight at the same frequency for any FFT size, and a sinusoid's
Hann-window lobe sums to twice as much over a 1024-point spectrum as over a 512-point one, so
``mel_512 ≈ fb_1024 · |STFT_1024| / 2`` for harmonic sounds (noise differs by √2; the test
bounds the mismatch on real singing). Frames are interpolated to the vocoder's hop; the F0 is
interpolated between voiced neighbours and 0 (unvoiced) elsewhere.

The vocoder is a trained LHQ-SVC pipeline checkpoint (its ``vocoder``, when it is the
harmonic-plus-noise kind) or an ``lhq-svc-vocoder-hn*`` checkpoint; without one it is the
untrained :class:`HNVocoder`, whose learned correction is zero-initialised: the DSP baseline
(envelope from the mel pseudo-inverse, harmonic comb at the F0, shaped noise).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.sts import StsError
from models.sts.preprocess import HOP, N_FFT, SAMPLE_RATE, magnitude_from_log

#: the renderings :func:`models.sts.infer.sing` offers
RENDERS = ("griffin-lim", "vocoder")
#: |STFT_1024| / |STFT_512| of a sinusoid under Hann windows of those lengths
FFT_GAIN = float(N_FFT) / 512.0
LOG_FLOOR = 1e-5


@lru_cache(maxsize=4)
def _mel_basis(n_mels: int, sample_rate: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=n_mels, htk=False,
                               norm="slaney").astype(np.float64)  # (M, 513)


def load_vocoder(path: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """The harmonic-plus-noise vocoder to render with, in eval mode.

    ``None``: an untrained :class:`~models.lhq_svc.vocoder.HNVocoder` at 16 kHz (the DSP
    baseline). A path: an LHQ-SVC pipeline checkpoint whose vocoder is the ``hn`` kind, or an
    ``lhq-svc-vocoder-hn*`` checkpoint.

    Raises
    ------
    StsError
        A missing or unreadable file, a model without a harmonic-plus-noise vocoder (a MelGAN
        takes no F0), or a vocoder at another sample rate than 16 kHz.
    """
    from models.errors import ModelsError
    from models.lhq_svc.vocoder import HNVocoder

    if path is None:
        voc: torch.nn.Module = HNVocoder(sample_rate=SAMPLE_RATE)
    else:
        from models.checkpoint import load_model

        p = Path(path)
        if not p.is_file():
            raise StsError(f"{p}: no such vocoder checkpoint; give an LHQ-SVC checkpoint with a "
                           "harmonic-plus-noise vocoder, or leave --vocoder out for the DSP one")
        try:
            model, _ = load_model(p)
        except ModelsError as exc:
            raise StsError(f"{p}: cannot load a vocoder: {exc}") from exc
        inner = getattr(model, "vocoder", model)
        if not isinstance(inner, HNVocoder):
            raise StsError(f"{p}: its vocoder is a {type(inner).__name__}, not the "
                           "harmonic-plus-noise vocoder (HNVocoder) that takes the melody's F0; "
                           "use a checkpoint of an hn preset (e.g. lhq-svc-demo)")
        voc = inner
    if int(getattr(voc, "sample_rate", SAMPLE_RATE)) != SAMPLE_RATE:
        raise StsError(f"the vocoder runs at {voc.sample_rate} Hz; speech-to-singing renders "
                       f"at {SAMPLE_RATE} Hz")
    return voc.eval()


def vocoder_mel(log_mag: np.ndarray, n_mels: int = 80, hop: int = 128,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The vocoder's log-mel ``(n_mels, 2 (T - 1) · HOP / hop)`` of a network output
    ``log(1 + |STFT|)`` ``(513, T)`` (module docstring: scale and frame interpolation).

    Frame ``j`` of the result is at sample ``j · hop``; the network's frame ``i`` at ``i · HOP``.
    """
    mag = magnitude_from_log(log_mag)  # (513, T), validated
    mel = _mel_basis(n_mels, sample_rate) @ mag / FFT_GAIN
    logmel = np.log(np.maximum(mel, LOG_FLOOR))  # (M, T)
    t = frame_times(log_mag.shape[1], hop)
    idx = np.arange(log_mag.shape[1])
    return np.stack([np.interp(t, idx, row) for row in logmel]).astype(np.float32)


def frame_times(n_frames: int, hop: int = 128) -> np.ndarray:
    """Positions, in network frames, of the vocoder frames covering ``(n_frames - 1) · HOP``
    samples."""
    if HOP % hop:
        raise StsError(f"the vocoder hop {hop} must divide the network hop {HOP}")
    n = max(n_frames - 1, 1) * (HOP // hop)
    return np.arange(n) * hop / HOP


def interpolate_f0(f0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) at fractional frame `times`: linear in log-frequency between two
    voiced neighbours, the nearest frame's value where a neighbour is unvoiced."""
    f = np.asarray(f0, dtype=np.float64)
    lo = np.clip(np.floor(times).astype(int), 0, f.size - 1)
    hi = np.clip(lo + 1, 0, f.size - 1)
    w = times - lo
    both = (f[lo] > 0) & (f[hi] > 0)
    out = np.where(w < 0.5, f[lo], f[hi])
    with np.errstate(divide="ignore", invalid="ignore"):
        glide = np.exp((1 - w) * np.log(f[lo]) + w * np.log(f[hi]))
    return np.where(both, glide, out).astype(np.float32)


def render_vocoder(log_mag: np.ndarray, f0: np.ndarray, vocoder: torch.nn.Module,
                   length: int | None = None) -> np.ndarray:
    """Waveform (float32, 16 kHz) of the network output `log_mag` ``(513, T)`` sung at `f0`
    (``(T,)`` Hz on the network's frames, 0 = unvoiced) by `vocoder` (:func:`load_vocoder`).

    ``length`` trims or zero-pads to exactly that many samples (default ``(T - 1) · HOP``).
    The peak is scaled to 1.0 when it would exceed it, as :func:`~models.sts.synthesis.
    griffin_lim` does.
    """
    x = np.asarray(log_mag)
    f = np.asarray(f0, dtype=np.float64)
    if x.ndim != 2 or f.ndim != 1 or f.size != x.shape[1]:
        raise StsError(f"render_vocoder: a (513, T) spectrogram and a (T,) F0 are needed, got "
                       f"{x.shape} and {f.shape}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise StsError("render_vocoder: the F0 has NaN/Inf or negative values")
    hop = int(vocoder.hop)
    mel = vocoder_mel(x, int(vocoder.n_mels), hop)
    f0v = interpolate_f0(f, frame_times(x.shape[1], hop))
    with torch.inference_mode():
        wav = vocoder(torch.from_numpy(mel)[None], torch.from_numpy(f0v)[None])[0]
    y = wav.float().cpu().numpy()
    n_out = int(length) if length is not None else max(x.shape[1] - 1, 1) * HOP
    y = y[:n_out] if y.size >= n_out else np.pad(y, (0, n_out - y.size))
    if not np.all(np.isfinite(y)):
        raise StsError("the vocoder returned NaN/Inf; check the vocoder checkpoint")
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return (y / peak if peak > 1.0 else y).astype(np.float32)
