"""§2.4 synthesis: Griffin-Lim (with momentum) from a log-magnitude spectrogram."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from models.sts import StsError
from models.sts.preprocess import HOP, N_FFT, SAMPLE_RATE, log_magnitude
from models.sts.synthesis import griffin_lim

SR = SAMPLE_RATE


def harmonic(seconds: float = 1.0, f0: float = 200.0, amp: float = 0.5) -> np.ndarray:
    """Five harmonics with 1/k amplitudes."""
    t = np.arange(round(seconds * SR)) / SR
    return sum(amp / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)).astype(np.float32)


def magnitude(y: np.ndarray) -> np.ndarray:
    return np.abs(
        librosa.stft(
            y, n_fft=N_FFT, hop_length=HOP, window="hann", center=True, pad_mode="constant"
        )
    )


def spectral_convergence(y: np.ndarray, target: np.ndarray) -> float:
    return float(np.linalg.norm(magnitude(y) - target) / np.linalg.norm(target))


def test_griffin_lim_converges_and_length():
    x = harmonic()
    X = log_magnitude(x)
    y = griffin_lim(X, n_iter=100, power=1.0, length=x.size)
    assert y.shape == x.shape and y.dtype == np.float32
    sc = spectral_convergence(y, np.expm1(X.astype(np.float64)))
    assert sc < 0.1
    # Momentum (fast Griffin-Lim) beats plain Griffin-Lim at the same iteration count.
    y0 = griffin_lim(X, n_iter=100, power=1.0, length=x.size, momentum=0.0)
    assert sc < spectral_convergence(y0, np.expm1(X.astype(np.float64)))


def test_griffin_lim_default_length_seed_and_power():
    X = log_magnitude(harmonic(0.5))
    y = griffin_lim(X, n_iter=10)
    assert y.shape == ((X.shape[1] - 1) * HOP,)
    np.testing.assert_array_equal(y, griffin_lim(X, n_iter=10))  # fixed seed: reproducible
    assert not np.array_equal(y, griffin_lim(X, n_iter=10, seed=1))
    # power=1.2 (§2.4) makes Griffin-Lim match |S| ** 1.2, not |S| (quiet input: no rescale).
    Xq = log_magnitude(harmonic(0.5, amp=0.05))
    target = np.expm1(Xq.astype(np.float64))
    y12 = griffin_lim(Xq, n_iter=50, power=1.2, length=8000)
    assert np.max(np.abs(y12)) < 1.0
    assert spectral_convergence(y12, target**1.2) < 0.1
    assert spectral_convergence(y12, target) > 0.4


def test_griffin_lim_normalises_only_when_clipping():
    loud = log_magnitude(harmonic(0.5, amp=0.9))
    y = griffin_lim(loud, n_iter=20)  # |S|**1.2 of a 0.9-amplitude signal would clip
    assert np.max(np.abs(y)) == pytest.approx(1.0)
    quiet = log_magnitude(harmonic(0.5, amp=0.05))
    yq = griffin_lim(quiet, n_iter=20, power=1.0)
    assert 0.02 < np.max(np.abs(yq)) < 0.2  # unscaled: close to the input level


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((100, 513), np.float32), "frequency bins"),
        (np.zeros(513, np.float32), r"\(F, T\)"),
        (np.full((513, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_griffin_lim_bad_input(x, match):
    with pytest.raises(StsError, match=match):
        griffin_lim(x)
