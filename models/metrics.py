"""Audio quality metrics as pure functions of audio arrays (mono float, one sample rate).

* :func:`speaker_similarity` — cosine similarity of Resemblyzer's pretrained GE2E speaker
  embeddings (weights ship in its wheel; the encoder instance is cached). The audio counterpart
  of the "CLIP score" LHQ-SVC's evolution loop maximises.
* :func:`log_spectral_distance` (dB) and :func:`mel_cepstral_distance` (dB, MFCC-style
  cepstra of the log-mel power rescaled to ln-magnitude:
  ``10 / ln 10 * sqrt(2 * sum_k (c_k - c'_k)^2)`` over coefficients 1..24, no c0) against a
  time-aligned reference.
* :func:`stoi` (pystoi) and :func:`pesq` (ITU-T P.862.2 wide-band at 16 kHz) against the
  ground-truth rendering (LHQ-SVC Table I reports both).
* :func:`f0_metrics` — raw chroma accuracy (mir_eval, octave errors forgiven) and RMSE in cents
  over frames voiced in both contours; :func:`f0_contour` is the DIO F0 of a signal.

Inputs of different lengths are truncated to the shorter one.
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any

import numpy as np

from models.audio import resample
from models.errors import AudioError

log = logging.getLogger(__name__)


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise AudioError(f"{name}: expected non-empty mono audio (T,), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{name}: contains NaN/Inf samples")
    return a


def _pair(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, e = _mono(ref, "reference"), _mono(est, "estimate")
    n = min(r.shape[0], e.shape[0])
    return r[:n], e[:n]


# ---- speaker similarity -------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _voice_encoder():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False)


def speaker_embedding(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resemblyzer utterance embedding (256-d, unit norm) of `wav`."""
    from resemblyzer import preprocess_wav

    x = _mono(wav, "audio")
    x16 = preprocess_wav(x.astype(np.float64), source_sr=sample_rate)
    if x16.size < 1600:  # resemblyzer trims silence; fall back to the raw signal
        x16 = resample(x, sample_rate, 16000) if sample_rate != 16000 else x
    return _voice_encoder().embed_utterance(np.asarray(x16, dtype=np.float32))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def speaker_similarity(wav: np.ndarray, reference: np.ndarray | list[np.ndarray],
                       sample_rate: int) -> float:
    """Cosine similarity of `wav`'s embedding to the (mean) embedding of `reference`(s)."""
    refs = reference if isinstance(reference, list) else [reference]
    ref_emb = np.mean([speaker_embedding(r, sample_rate) for r in refs], axis=0)
    return cosine(speaker_embedding(wav, sample_rate), ref_emb)


# ---- spectral distances -------------------------------------------------------------------
def log_spectral_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                          n_fft: int = 512, hop: int = 128) -> float:
    """Mean over frames of the RMS difference of 10 log10 power spectra (dB)."""
    import librosa

    r, e = _pair(ref, est)
    pr = np.abs(librosa.stft(r, n_fft=n_fft, hop_length=hop)) ** 2
    pe = np.abs(librosa.stft(e, n_fft=n_fft, hop_length=hop)) ** 2
    d = 10 * np.log10(pr + 1e-10) - 10 * np.log10(pe + 1e-10)
    return float(np.mean(np.sqrt(np.mean(d**2, axis=0))))


def mel_cepstral_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                          n_coeffs: int = 25, floor_db: float = 50.0) -> float:
    """MCD in dB over mel-cepstral coefficients 1..n_coeffs-1 (time-aligned frames, no DTW).

    Cepstra are the orthonormal DCT of the 80-band log-mel power (the MFCC recipe), rescaled to
    natural-log magnitude as the MCD formula ``10 / ln 10 * sqrt(2 * sum_k (c_k - c'_k)^2)``
    expects. Both spectra are floored `floor_db` below the reference's peak (deep spectral
    valleys would otherwise dominate) and only frames within `floor_db` - 10 dB of that peak
    count.
    """
    import librosa
    import scipy.fft

    r, e = _pair(ref, est)
    kw: dict[str, Any] = {"sr": sample_rate, "n_fft": 512, "hop_length": 128, "n_mels": 80}
    pr = 10 * np.log10(np.maximum(librosa.feature.melspectrogram(y=r, **kw), 1e-10))
    pe = 10 * np.log10(np.maximum(librosa.feature.melspectrogram(y=e, **kw), 1e-10))
    floor = float(pr.max()) - floor_db
    pr, pe = np.maximum(pr, floor), np.maximum(pe, floor)
    to_ln_mag = np.log(10.0) / 20.0
    cr = scipy.fft.dct(pr, axis=0, norm="ortho")[1:n_coeffs] * to_ln_mag
    ce = scipy.fft.dct(pe, axis=0, norm="ortho")[1:n_coeffs] * to_ln_mag
    keep = pr.max(axis=0) > floor + 10.0
    if not keep.any():
        raise AudioError("mel_cepstral_distance: the reference has no frame above the floor")
    diff = (cr - ce)[:, keep]
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=0))))


# ---- intelligibility / quality ------------------------------------------------------------
def stoi(ref: np.ndarray, est: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """Short-Time Objective Intelligibility of `est` against `ref` (pystoi).

    The project's one STOI wrapper (``export.parity.stoi`` adds the parity gate's rules on
    top): inputs are checked mono and finite (:class:`AudioError`) and cut to the shorter one.
    """
    from pystoi import stoi as _stoi

    r, e = _pair(ref, est)
    return float(_stoi(r.astype(np.float64), e.astype(np.float64), sample_rate,
                       extended=extended))


def pesq(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO) at 16 kHz; inputs are resampled to 16 kHz when needed."""
    from pesq import PesqError
    from pesq import pesq as _pesq

    r, e = _pair(ref, est)
    if sample_rate != 16000:
        r, e = resample(r, sample_rate, 16000), resample(e, sample_rate, 16000)
    try:
        return float(_pesq(16000, r.astype(np.float64), e.astype(np.float64), "wb"))
    except PesqError as exc:  # e.g. NoUtterancesError, BufferTooShortError
        raise AudioError(
            f"pesq: cannot score this pair ({type(exc).__name__}: {exc})"
        ) from exc


# ---- F0 ---------------------------------------------------------------------------------------
def f0_contour(wav: np.ndarray, sample_rate: int, hop_length: int = 128) -> np.ndarray:
    """DIO F0 in Hz per hop (0 = unvoiced), the data contract's estimator."""
    from models.data.features import dio_f0

    f0, _ = dio_f0(_mono(wav, "audio"), sample_rate, hop_length)
    return f0


def f0_metrics(ref_f0: np.ndarray, est_f0: np.ndarray, frame_seconds: float) -> dict[str, float]:
    """Raw chroma accuracy (mir_eval) and RMSE in cents on frames voiced in both contours."""
    import mir_eval

    n = min(len(ref_f0), len(est_f0))
    if n == 0:
        raise AudioError("f0_metrics: empty contour")
    ref = np.asarray(ref_f0[:n], dtype=np.float64)
    est = np.asarray(est_f0[:n], dtype=np.float64)
    times = np.arange(n) * frame_seconds
    rv, rc, ev, ec = mir_eval.melody.to_cent_voicing(times, ref, times, est)
    chroma = float(mir_eval.melody.raw_chroma_accuracy(rv, rc, ev, ec))
    both = (ref > 0) & (est > 0)
    if both.any():
        rmse = float(np.sqrt(np.mean((1200 * np.log2(est[both] / ref[both])) ** 2)))
    else:
        rmse = float("nan")
    return {"raw_chroma_accuracy": chroma, "f0_rmse_cents": rmse,
            "voiced_frames": int(both.sum())}
