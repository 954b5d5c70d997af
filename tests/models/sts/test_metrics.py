"""§3.1 metrics: LSD, pYIN, raw chroma accuracy; phoneme accuracy; the 1-s rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.sts import StsError
from models.sts.metrics import (
    eligible,
    lsd_db,
    phoneme_accuracy,
    pyin_f0,
    raw_chroma_accuracy,
)
from models.sts.preprocess import HOP, SAMPLE_RATE

SR = SAMPLE_RATE


def random_magnitudes(seed: int = 0, shape: tuple[int, int] = (513, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10.0 ** rng.uniform(-2, 1.5, size=shape)  # 0.01 .. 31.6, all far above the floor


# ---------------------------------------------------------------------------------------- LSD


def test_lsd_zero_for_identical():
    X = np.log1p(random_magnitudes())
    assert lsd_db(X, X) == 0.0


@pytest.mark.parametrize("g", [2.0, 0.5, 10.0 ** (3 / 20)])
def test_lsd_pure_gain(g):
    M = random_magnitudes(1)
    ref = np.log1p(M)
    est = np.log1p(g * M)
    assert lsd_db(ref, est) == pytest.approx(abs(20 * np.log10(g)), rel=1e-9)
    assert lsd_db(est, ref) == pytest.approx(abs(20 * np.log10(g)), rel=1e-9)


def test_lsd_band_is_100_to_3500_hz():
    M = random_magnitudes(2)
    est = M.copy()
    est[:7] *= 100.0  # bins 0..6 are below 100 Hz (6 * 15.625 = 93.75 Hz)
    est[225:] *= 100.0  # bins 225.. are above 3.5 kHz (224 * 15.625 = 3500 Hz, included)
    assert lsd_db(np.log1p(M), np.log1p(est)) == pytest.approx(0.0, abs=1e-9)
    est[224] *= 10.0  # one in-band bin of the 218 in [7, 224] off by 20 dB
    expected = np.sqrt(20.0**2 / 218)
    assert lsd_db(np.log1p(M), np.log1p(est)) == pytest.approx(expected, rel=1e-9)


def test_lsd_floor_and_shape_errors():
    ref = np.zeros((513, 5))  # magnitude 0 -> floor 1e-5 = -100 dB
    est = np.full((513, 5), np.log1p(1e-3))  # -60 dB
    assert lsd_db(ref, est) == pytest.approx(40.0, rel=1e-6)
    with pytest.raises(StsError, match="shape"):
        lsd_db(ref, ref[:, :4])
    with pytest.raises(StsError, match="top_db"):
        lsd_db(ref, ref, top_db=0.0)
    with pytest.raises(StsError, match="frequency bins"):
        lsd_db(ref.T, ref.T)
    with pytest.raises(StsError, match="NaN"):
        lsd_db(ref, np.full((513, 5), np.nan))


# --------------------------------------------------------------------------------------- pYIN


def test_pyin_220hz():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    times, f0 = pyin_f0(x)
    assert f0.shape == times.shape == (1 + SR // HOP,)
    np.testing.assert_allclose(times[:3], [0.0, HOP / SR, 2 * HOP / SR])
    voiced = f0[f0 > 0]
    assert voiced.size > 0.9 * f0.size
    assert abs(np.median(voiced) / 220.0 - 1.0) < 0.01
    assert np.all(np.isfinite(f0))


def test_pyin_silence_is_zero_and_errors():
    _, f0 = pyin_f0(np.zeros(4000, np.float32))
    assert np.all(f0 == 0.0)
    with pytest.raises(StsError, match="too short"):
        pyin_f0(np.zeros(500, np.float32))
    with pytest.raises(StsError, match="sample rate"):
        pyin_f0(np.zeros(4000, np.float32), sr=8000)


# ----------------------------------------------------------------------- raw chroma accuracy


def melody(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A sung-like contour: notes with vibrato, unvoiced gaps, 16 ms frames."""
    times = np.arange(n) * HOP / SR
    notes = np.array([220.0, 246.9, 261.6, 293.7, 329.6, 293.7])
    f0 = notes[(np.arange(n) // 50) % notes.size] * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5 * times))
    f0[45:50] = 0.0
    f0[145:152] = 0.0
    return times, f0


def test_rca_identity_octave_tritone():
    t, f0 = melody()
    assert raw_chroma_accuracy(t, f0, t, f0) == 1.0
    assert raw_chroma_accuracy(t, f0, t, 2.0 * f0) >= 0.99
    assert raw_chroma_accuracy(t, f0, t, 0.5 * f0) >= 0.99
    assert raw_chroma_accuracy(t, f0, t, f0 * 2 ** (6 / 12)) < 0.3


def test_rca_partial_and_unvoiced_estimate():
    t, f0 = melody()
    est = f0.copy()
    voiced = np.flatnonzero(f0 > 0)
    est[voiced[: voiced.size // 4]] = 0.0  # first quarter of voiced frames missed
    assert raw_chroma_accuracy(t, f0, t, est) == pytest.approx(1 - (voiced.size // 4) / voiced.size)
    assert raw_chroma_accuracy(t, f0, t, np.zeros_like(f0)) == 0.0
    # Estimate on a different time grid (10 ms) is interpolated onto the reference times.
    t10 = np.arange(0, t[-1] + 0.01, 0.01)
    est10 = np.interp(t10, t, np.where(f0 > 0, f0, np.nan))
    assert raw_chroma_accuracy(t, f0, t10, np.nan_to_num(est10)) > 0.9


def test_rca_errors():
    t, f0 = melody(50)
    with pytest.raises(StsError, match="no voiced frames"):
        raw_chroma_accuracy(t, np.zeros_like(f0), t, f0)
    with pytest.raises(StsError, match="does not match"):
        raw_chroma_accuracy(t, f0[:-1], t, f0)


# --------------------------------------------------------------------------- phoneme accuracy


def test_phoneme_accuracy():
    n_p = 41  # 39 CMU phonemes + silence + inhalation (§3.1)
    labels = np.array([3, 3, 7, 7, 7, 0, 40, -1, -1, 12])
    logits = np.zeros((labels.size, n_p))
    predicted = np.array([3, 5, 7, 7, 1, 0, 40, 9, 9, 11])  # 5 of the 8 labelled frames right
    logits[np.arange(labels.size), predicted] = 4.0
    assert phoneme_accuracy(logits, labels) == pytest.approx(5 / 8)
    assert phoneme_accuracy(torch.from_numpy(logits), torch.from_numpy(labels)) == 5 / 8


def test_phoneme_accuracy_errors():
    logits = np.zeros((4, 5))
    with pytest.raises(StsError, match="does not match"):
        phoneme_accuracy(logits.T, np.zeros(4, int))
    with pytest.raises(StsError, match="Np"):
        phoneme_accuracy(logits, np.array([0, 1, 5, 2]))
    with pytest.raises(StsError, match="ignored"):
        phoneme_accuracy(logits, np.full(4, -1))


def test_eligible():
    assert eligible(1.0) and eligible(3.2)
    assert not eligible(0.99)
    with pytest.raises(StsError):
        eligible(float("nan"))


def test_lsd_counts_at_most_top_db_below_the_reference_peak():
    """Bins silent in the reference (-140 dB) against an estimate of exactly 0 count 80 dB
    each, not 100, once the reference has a 0 dB peak; a -60 dB estimate there counts 20 dB."""
    mag = np.full((513, 4), 1e-7)  # -140 dB
    mag[50] = 1.0  # one in-band harmonic at 0 dB, exact in both
    ref = np.log1p(mag)
    est = ref.copy()
    est[7:225] = 0.0  # every in-band bin silent ...
    est[50] = ref[50]  # ... but the harmonic
    n_band = 218  # bins 7..224
    assert lsd_db(ref, est) == pytest.approx(0.0, abs=1e-9)  # both at the -80 dB floor
    est[7:225] = np.log1p(1e-3)  # -60 dB everywhere in band
    est[50] = ref[50]
    assert lsd_db(ref, est) == pytest.approx(np.sqrt(20.0**2 * (n_band - 1) / n_band), rel=1e-6)
    # 120 dB of range reaches the absolute floor first: -100 dB, 40 dB from the estimate
    assert lsd_db(ref, est, top_db=120.0) == pytest.approx(
        np.sqrt(40.0**2 * (n_band - 1) / n_band), rel=1e-6)
