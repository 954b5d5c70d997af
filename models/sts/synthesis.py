"""Waveform synthesis from a predicted log-magnitude spectrogram (Parekh et al. 2020, §2.4).

§2.4: magnitudes are recovered with ``g(x) = e^x - 1``, raised to the power 1.2 and turned into
a waveform with Griffin-Lim [22] "with a modification ... [23]". Reference [23] is Tacotron,
whose modification *is* the power 1.2 (sharper harmonics, fewer artefacts). The phase
iterations here are the fast Griffin-Lim of Perraudin et al. (2013) — Griffin-Lim with a
momentum term, as ``librosa.griffinlim`` implements it; with ``momentum=0`` it is plain
Griffin-Lim [22]. The momentum is our choice, not something the paper states.
"""

from __future__ import annotations

import librosa
import numpy as np

from models.sts import StsError
from models.sts.preprocess import HOP, N_FFT, magnitude_from_log

POWER = 1.2  # §2.4
N_ITER = 100
MOMENTUM = 0.99


def griffin_lim(
    log_mag: np.ndarray,
    n_iter: int = N_ITER,
    power: float = POWER,
    hop: int = HOP,
    n_fft: int = N_FFT,
    length: int | None = None,
    momentum: float = MOMENTUM,
    seed: int = 0,
) -> np.ndarray:
    """Waveform (float32) whose STFT magnitude approximates ``(e^X - 1) ** power`` (§2.4).

    Parameters
    ----------
    log_mag : ``(n_fft // 2 + 1, T)`` log-magnitude spectrogram, ``log(1 + |S|)``.
    n_iter : Griffin-Lim iterations.
    power : exponent on the magnitudes before phase retrieval (1.2 in the paper, [23]).
    hop, n_fft : STFT of :func:`models.sts.preprocess.log_magnitude` (Hann, centred).
    length : exact output length in samples; default ``(T - 1) * hop``.
    momentum : fast Griffin-Lim momentum (0 = the original algorithm).
    seed : seed of the random initial phase, so results are reproducible.

    Returns
    -------
    The waveform. Raising magnitudes to ``power`` changes the overall level, so when the peak
    would exceed 1.0 (clip in a fixed-point file) the whole signal is scaled to peak 1.0;
    otherwise it is returned unscaled.

    Raises
    ------
    StsError
        Wrong shape (bins must be ``n_fft // 2 + 1``), NaN/Inf, or non-positive parameters.
    """
    x = np.asarray(log_mag)
    if x.ndim != 2 or x.shape[1] == 0:
        raise StsError(f"log_mag: expected a non-empty (F, T) spectrogram, got shape {x.shape}")
    if x.shape[0] != n_fft // 2 + 1:
        raise StsError(
            f"log_mag: {x.shape[0]} frequency bins, expected n_fft // 2 + 1 = {n_fft // 2 + 1}; "
            "pass (F, T), not (T, F), or the matching n_fft"
        )
    if n_iter < 1 or hop < 1 or not np.isfinite(power) or power <= 0:
        raise StsError(f"n_iter={n_iter}, hop={hop}, power={power}; all must be positive")
    if not 0.0 <= momentum < 1.0:
        raise StsError(f"momentum={momentum}; must be in [0, 1)")
    if length is not None and int(length) < 1:
        raise StsError(f"length={length}; must be at least 1 sample or None")
    mag = magnitude_from_log(x).astype(np.float64) ** power
    n_out = int(length) if length is not None else max((x.shape[1] - 1) * hop, 1)
    y = librosa.griffinlim(
        mag,
        n_iter=int(n_iter),
        hop_length=hop,
        win_length=n_fft,
        n_fft=n_fft,
        window="hann",
        center=True,
        length=n_out,
        pad_mode="constant",
        momentum=float(momentum),
        init="random",
        random_state=int(seed),
    )
    y = y.astype(np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 1.0:
        y = y / np.float32(peak)
    return y
