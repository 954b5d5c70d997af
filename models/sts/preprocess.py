"""Input pre-processing of speech-to-singing (Parekh et al., ICASSP 2020, §2.1).

Given a speech waveform and a target melody (F0) contour, the paper's four steps are:

1. **Silent frame removal** (:func:`remove_silent_frames`, :func:`silent_runs`): frames more
   than 40 dB below the loudest frame are silent; runs of three or more silent frames
   ("longer than approximately 50 ms") are cut out.
2. **Time stretching** (:func:`stretch_to_length`): one uniform phase-vocoder factor makes the
   speech as long as the melody contour; no phoneme alignment is used.
3. **Log-magnitude** (:func:`log_magnitude`): ``X = log(1 + |STFT|)`` of shape ``(F, T)``;
   :func:`magnitude_from_log` is the inverse ``g(x) = e^x - 1`` of §2.4.
4. **Vocal pitch contour** (:func:`melody_image`): a binary image ``C`` of the same size as
   ``X`` with one 1 per voiced frame at the nearest frequency bin.

:func:`prepare` / :func:`prepare_pair` chain the four; :func:`f0_to_frames` puts a melody
contour sampled at any times onto the STFT frame grid first.

STFT parameters are the paper's (§3.1): 16 kHz audio, 1024-point FFT, 64 ms (1024-sample) Hann
window, 16 ms (256-sample) hop, hence ``F = 513`` bins; frames are centred (librosa's
``center=True``), so ``T = 1 + n_samples // 256`` and frame ``t`` sits at ``t * 256 / 16000`` s.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from models.sts import StsError

SAMPLE_RATE = 16000
N_FFT = 1024
WIN_LENGTH = 1024  # 64 ms at 16 kHz
HOP = 256  # 16 ms at 16 kHz
N_BINS = N_FFT // 2 + 1  # F = 513

SILENCE_DB = 40.0  # §2.1: "40 dB below the maximum energy frame"
MIN_SILENT_RUN = 3  # §2.1: "three or more consecutive silent frames"
MIN_STRETCH_SAMPLES = N_FFT  # one analysis window: shorter input cannot be phase-vocoded


def _check_rate(sr: int, what: str) -> None:
    if sr != SAMPLE_RATE:
        raise StsError(
            f"{what}: sample rate {sr} Hz, expected {SAMPLE_RATE} Hz; resample the audio first"
        )


def _check_wav(wav: np.ndarray, what: str, min_samples: int = 1) -> np.ndarray:
    """A finite, non-empty, mono signal as float32 (one-line StsError otherwise)."""
    arr = np.asarray(wav)
    if arr.ndim != 1:
        raise StsError(f"{what}: expected a mono signal of shape (n,), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise StsError(f"{what}: expected numeric samples, got dtype {arr.dtype}")
    if arr.size == 0:
        raise StsError(f"{what}: empty signal; pass at least {max(min_samples, 1)} samples")
    if not np.all(np.isfinite(arr)):
        n = int(np.count_nonzero(~np.isfinite(arr)))
        raise StsError(f"{what}: {n} NaN/Inf sample(s); clean or zero them first")
    if arr.size < min_samples:
        raise StsError(
            f"{what}: {arr.size} samples is too short; need at least {min_samples} "
            f"({1000.0 * min_samples / SAMPLE_RATE:.0f} ms at {SAMPLE_RATE} Hz)"
        )
    return arr.astype(np.float32, copy=False)


def _check_log_mag(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise StsError(f"{what}: expected a non-empty (F, T) spectrogram, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise StsError(f"{what}: expected numeric values, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise StsError(f"{what}: contains NaN/Inf; check the model output")
    return arr


# ---------------------------------------------------------------------------------------------
# 1. Silent frame removal
# ---------------------------------------------------------------------------------------------


def block_power(wav: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Mean-square power of consecutive non-overlapping blocks of `hop` samples.

    The last, partial block counts as a block; using the *mean* square (energy per sample)
    keeps it comparable with full blocks. For full blocks this is the short-time energy of
    §2.1 up to the constant factor `hop`, which cancels in the dB-below-maximum test.
    """
    x = _check_wav(wav, "speech").astype(np.float64)
    if hop < 1:
        raise StsError(f"hop={hop}; the block length must be a positive number of samples")
    n_blocks = -(-x.size // hop)
    padded = np.zeros(n_blocks * hop)
    padded[: x.size] = x
    sums = np.sum(padded.reshape(n_blocks, hop) ** 2, axis=1)
    lengths = np.full(n_blocks, float(hop))
    lengths[-1] = x.size - (n_blocks - 1) * hop
    return sums / lengths


def silent_runs(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    hop: int = HOP,
    threshold_db: float = SILENCE_DB,
    min_run: int = MIN_SILENT_RUN,
) -> list[tuple[int, int]]:
    """The ``(start_sample, end_sample)`` spans that §2.1 silent-frame removal cuts out.

    A block of `hop` samples is silent when its power is more than `threshold_db` below the
    loudest block's (strictly: ``10 log10(P / P_max) < -threshold_db``); every run of at least
    `min_run` consecutive silent blocks is one span (end exclusive, clipped to the signal).
    Shorter runs are kept, so brief stop closures inside words survive.

    Raises
    ------
    StsError
        Empty, non-finite or all-zero input, wrong rate, or non-positive parameters.
    """
    _check_rate(sr, "speech")
    if min_run < 1:
        raise StsError(f"min_run={min_run}; must be at least 1 block")
    if not np.isfinite(threshold_db) or threshold_db <= 0:
        raise StsError(f"threshold_db={threshold_db}; must be a positive finite number of dB")
    power = block_power(wav, hop)
    n = int(np.asarray(wav).size)
    peak = float(power.max())
    if peak <= 0.0:
        raise StsError("speech: the signal is all zeros (silent); pass audio that contains speech")
    silent = power < peak * 10.0 ** (-threshold_db / 10.0)
    runs: list[tuple[int, int]] = []
    start = None
    for i, s in enumerate([*silent.tolist(), False]):
        if s and start is None:
            start = i
        elif not s and start is not None:
            if i - start >= min_run:
                runs.append((start * hop, min(i * hop, n)))
            start = None
    return runs


def remove_silent_frames(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    hop: int = HOP,
    threshold_db: float = SILENCE_DB,
    min_run: int = MIN_SILENT_RUN,
) -> np.ndarray:
    """Cut the silent runs of :func:`silent_runs` out of `wav` (§2.1); returns float32.

    Removing silences makes the speech-to-singing alignment easier to learn (§2.1). The kept
    samples are concatenated as they are (no cross-fade), as in the paper.
    """
    runs = silent_runs(wav, sr=sr, hop=hop, threshold_db=threshold_db, min_run=min_run)
    x = np.asarray(wav, dtype=np.float32)
    if not runs:
        return x.copy()
    keep = np.ones(x.size, dtype=bool)
    for a, b in runs:
        keep[a:b] = False
    return x[keep]


# ---------------------------------------------------------------------------------------------
# 2. Time stretching
# ---------------------------------------------------------------------------------------------


def stretch_to_length(wav: np.ndarray, n_samples: int) -> np.ndarray:
    """Phase-vocoder time stretch of `wav` to exactly `n_samples` samples (§2.1).

    One uniform factor for the whole signal (librosa's ``effects.time_stretch`` with
    ``rate = len(wav) / n_samples`` and the paper's 1024 / 256 STFT), so pitch is kept and no
    phoneme alignment is needed; the result is trimmed or zero-padded to the exact length,
    since the vocoder's own length can be off by a few samples.

    Raises
    ------
    StsError
        Bad samples, input shorter than one 1024-sample window, or `n_samples` < 1.
    """
    x = _check_wav(wav, "speech", min_samples=MIN_STRETCH_SAMPLES)
    n_samples = int(n_samples)
    if n_samples < 1:
        raise StsError(f"n_samples={n_samples}; the target length must be at least 1 sample")
    if n_samples == x.size:
        return x.copy()
    rate = x.size / n_samples
    y = librosa.effects.time_stretch(x, rate=rate, n_fft=N_FFT, hop_length=HOP)
    return librosa.util.fix_length(y, size=n_samples).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# 3. Log-magnitude representation
# ---------------------------------------------------------------------------------------------


def log_magnitude(wav: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``X = log(1 + |STFT(wav)|)`` of shape ``(n_fft // 2 + 1, 1 + len(wav) // hop)`` (§2.1).

    Hann window of `n_fft` samples, centred frames (zero padding at the ends), float32. The
    ``log(1 + x)`` compression follows perceived loudness better than linear magnitude.
    """
    x = _check_wav(wav, "audio")
    spec = librosa.stft(
        x,
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft,
        window="hann",
        center=True,
        pad_mode="constant",
    )
    return np.log1p(np.abs(spec)).astype(np.float32)


def magnitude_from_log(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`log_magnitude`'s compression, ``g(x) = e^x - 1`` clipped at 0 (§2.4).

    The clip matters for network outputs, which can be slightly negative.
    """
    arr = _check_log_mag(x, "log-magnitude")
    return np.maximum(np.expm1(arr), 0.0)


# ---------------------------------------------------------------------------------------------
# 4. Vocal pitch contour
# ---------------------------------------------------------------------------------------------


def _check_f0(f0_hz: np.ndarray, what: str = "f0") -> np.ndarray:
    """A 1-D contour in Hz as float64 with NaN / non-positive values set to 0 (unvoiced)."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    if f0.ndim != 1 or f0.size == 0:
        raise StsError(f"{what}: expected a non-empty 1-D contour in Hz, got shape {f0.shape}")
    if np.any(np.isinf(f0)):
        raise StsError(f"{what}: contains Inf; use 0 or NaN for unvoiced frames")
    return np.where(np.isnan(f0) | (f0 < 0), 0.0, f0)


def melody_image(
    f0_hz: np.ndarray, n_bins: int = N_BINS, sr: int = SAMPLE_RATE, n_fft: int = N_FFT
) -> np.ndarray:
    """Binary melody image ``C`` of shape ``(n_bins, T)`` from a per-frame F0 contour (§2.1).

    Each voiced frame (``f0 > 0``) gets a single 1 at the nearest STFT bin,
    ``floor(f0 * n_fft / sr + 0.5)`` clipped to ``[0, n_bins - 1]``; unvoiced frames (0 or NaN;
    negative values too, mir_eval's convention) are all zeros.

    Raises
    ------
    StsError
        Empty / non-1-D / Inf contour, or a contour without any voiced frame.
    """
    if n_bins < 1 or n_fft < 1 or sr <= 0:
        raise StsError(f"n_bins={n_bins}, n_fft={n_fft}, sr={sr}; all must be positive")
    f0 = _check_f0(f0_hz, "melody")
    voiced = f0 > 0
    if not voiced.any():
        raise StsError(
            f"melody has no voiced frames ({f0.size} frames, all 0/NaN); "
            "pass a contour with F0 > 0 where the melody sounds"
        )
    image = np.zeros((n_bins, f0.size), dtype=np.float32)
    frames = np.flatnonzero(voiced)
    bins = np.clip(np.floor(f0[frames] * n_fft / sr + 0.5).astype(np.int64), 0, n_bins - 1)
    image[bins, frames] = 1.0
    return image


def f0_to_frames(
    times_s: np.ndarray,
    f0_hz: np.ndarray,
    n_frames: int,
    hop: int = HOP,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Resample a ``(time, Hz)`` melody contour onto the STFT frame centres ``t * hop / sr``.

    Between two voiced contour points the F0 is interpolated linearly (in Hz); next to an
    unvoiced point (0 or NaN) the nearest point decides, so voicing edges move by at most half
    a contour step. A frame further than half a (median) contour step outside the contour's
    time span is unvoiced (0). Used to bring a melody extractor's output (e.g. [13], §2) onto
    the grid of ``X`` before :func:`melody_image`.

    Raises
    ------
    StsError
        Mismatched / empty arrays, non-finite or non-increasing times, Inf F0, `n_frames` < 1.
    """
    t = np.asarray(times_s, dtype=np.float64)
    f0 = _check_f0(f0_hz, "melody")
    if t.ndim != 1 or t.size != f0.size:
        raise StsError(
            f"melody: times shape {t.shape} does not match f0 shape {f0.shape}; pass one time "
            "per F0 value"
        )
    if not np.all(np.isfinite(t)):
        raise StsError("melody: times contain NaN/Inf; pass finite times in seconds")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise StsError("melody: times must be strictly increasing; sort or de-duplicate them")
    if int(n_frames) < 1 or hop < 1 or sr <= 0:
        raise StsError(f"n_frames={n_frames}, hop={hop}, sr={sr}; all must be positive")
    centres = np.arange(int(n_frames)) * hop / sr
    half = 0.5 * float(np.median(np.diff(t))) if t.size > 1 else 0.5 * hop / sr
    out = np.zeros(centres.size)
    inside = (centres >= t[0] - half) & (centres <= t[-1] + half)
    c = centres[inside]
    # Right neighbour index j (t[j-1] <= c < t[j]), clipped so both neighbours exist.
    j = np.clip(np.searchsorted(t, c, side="right"), 1, max(t.size - 1, 1))
    i = j - 1
    if t.size == 1:
        out[inside] = f0[0]
        return out
    ta, tb, fa, fb = t[i], t[j], f0[i], f0[j]
    w = np.clip((c - ta) / (tb - ta), 0.0, 1.0)
    both = (fa > 0) & (fb > 0)
    nearest = np.where(np.abs(c - ta) <= np.abs(tb - c), fa, fb)
    out[inside] = np.where(both, (1.0 - w) * fa + w * fb, nearest)
    return out


# ---------------------------------------------------------------------------------------------
# The whole §2.1 chain
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """Network inputs for one (speech, melody) pair.

    Attributes
    ----------
    x : log-magnitude speech spectrogram ``(F, T)``, float32.
    c : binary melody image ``(F, T)``, float32.
    stretch_factor : output / input duration of the phase vocoder (> 1 means slowed down).
    removed_seconds : silence cut out before stretching.
    """

    x: np.ndarray
    c: np.ndarray
    stretch_factor: float
    removed_seconds: float


def prepare(speech: np.ndarray, f0_frames: np.ndarray, sr: int = SAMPLE_RATE) -> Prepared:
    """Run §2.1 on one pair: silence removal, stretch to the melody, ``X`` and ``C``.

    `f0_frames` is the melody on the STFT frame grid (see :func:`f0_to_frames`), one value per
    frame, ``T >= 2``. The speech is stretched to ``(T - 1) * HOP`` samples, which gives
    exactly ``T`` centred frames; ``X`` is still trimmed / padded to ``T`` as a safeguard.

    Raises
    ------
    StsError
        Wrong rate, bad samples, silent speech, speech shorter than 64 ms after silence
        removal, a melody shorter than two frames or without voiced frames.
    """
    _check_rate(sr, "speech")
    f0 = _check_f0(f0_frames, "melody")
    if f0.size < 2:
        raise StsError(f"melody: {f0.size} frame(s); need at least 2 frames ({HOP}-sample hop)")
    c = melody_image(f0, n_bins=N_BINS, sr=sr, n_fft=N_FFT)  # raises if no voiced frame
    x_in = _check_wav(speech, "speech")
    kept = remove_silent_frames(x_in, sr=sr)
    if kept.size < MIN_STRETCH_SAMPLES:
        raise StsError(
            f"speech: {kept.size} non-silent samples left after silence removal; need at least "
            f"{MIN_STRETCH_SAMPLES} ({1000 * MIN_STRETCH_SAMPLES // sr} ms)"
        )
    t_frames = f0.size
    n_samples = (t_frames - 1) * HOP
    stretched = stretch_to_length(kept, n_samples)
    x = log_magnitude(stretched)
    if x.shape[1] != t_frames:  # cannot happen with centred frames; kept as a guard
        x = librosa.util.fix_length(x, size=t_frames, axis=1)
    return Prepared(
        x=np.ascontiguousarray(x, dtype=np.float32),
        c=c,
        stretch_factor=n_samples / kept.size,
        removed_seconds=(x_in.size - kept.size) / sr,
    )


def prepare_pair(
    speech: np.ndarray, f0_frames: np.ndarray, sr: int = SAMPLE_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, C)``, both ``(F, T)`` float32, of :func:`prepare` (§2.1)."""
    p = prepare(speech, f0_frames, sr=sr)
    return p.x, p.c
