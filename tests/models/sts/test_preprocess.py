"""§2.1 pre-processing: silence removal, time stretch, log-magnitude, melody image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import get_window

from models.sts import StsError
from models.sts.metrics import pyin_f0
from models.sts.preprocess import (
    HOP,
    N_BINS,
    N_FFT,
    SAMPLE_RATE,
    f0_to_frames,
    log_magnitude,
    magnitude_from_log,
    melody_image,
    prepare,
    prepare_pair,
    remove_silent_frames,
    silent_runs,
    stretch_to_length,
)

SR = SAMPLE_RATE


def tone(seconds: float, hz: float = 500.0, amp: float = 0.5) -> np.ndarray:
    """A sine; 500 Hz is 8 whole periods per 256-sample block, so every full block has the
    same power amp**2 / 2."""
    n = round(seconds * SR)
    return (amp * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


# --------------------------------------------------------------------------------- silence


def test_silent_gap_removed_and_short_gap_kept():
    # 0.5 s tone | 0.2 s zeros | 0.5 s tone | 2 blocks of zeros (block-aligned) | 0.5 s tone
    a = tone(0.5)  # 8000 samples = 31.25 blocks
    gap = np.zeros(3200, np.float32)  # 8000..11200
    b = tone(0.5)  # 11200..19200
    short = np.zeros(2 * HOP, np.float32)  # 19200..19712 = blocks 75 and 76 exactly
    c = tone(0.5)
    wav = np.concatenate([a, gap, b, short, c])
    assert 19200 % HOP == 0
    # Blocks 31 ([7936, 8192)) and 43 ([11008, 11264)) hold 64 tone samples each: -6 dB, kept.
    # Blocks 32..42 = [8192, 11008) are all zeros: an 11-block silent run -> removed.
    runs = silent_runs(wav)
    assert runs == [(32 * HOP, 43 * HOP)]
    out = remove_silent_frames(wav)
    assert out.dtype == np.float32
    assert wav.size - out.size == 11 * HOP == 2816
    # The 2-block gap (75..76) stayed, so the 512 zeros are still in the output.
    np.testing.assert_array_equal(out[: 32 * HOP], wav[: 32 * HOP])
    np.testing.assert_array_equal(out[32 * HOP :], wav[43 * HOP :])


def test_threshold_30db_kept_50db_removed():
    loud = tone(0.32)  # 20 blocks
    quiet30 = tone(5 * HOP / SR, amp=0.5 * 10 ** (-30 / 20))  # 5 blocks at -30 dB
    quiet50 = tone(5 * HOP / SR, amp=0.5 * 10 ** (-50 / 20))  # 5 blocks at -50 dB
    wav = np.concatenate([loud, quiet30, loud, quiet50, loud])
    start50 = 2 * loud.size + quiet30.size
    assert silent_runs(wav) == [(start50, start50 + quiet50.size)]
    assert remove_silent_frames(wav).size == wav.size - 5 * HOP
    # With a 25 dB threshold the -30 dB blocks are silent as well.
    assert len(silent_runs(wav, threshold_db=25.0)) == 2
    # With a 60 dB threshold nothing is silent.
    assert silent_runs(wav, threshold_db=60.0) == []


def test_min_run_and_edges():
    loud = tone(10 * HOP / SR)
    wav = np.concatenate([np.zeros(3 * HOP, np.float32), loud, np.zeros(2 * HOP + 10, np.float32)])
    # Leading 3 blocks removed; trailing run = 2 full blocks + a 10-sample partial block = 3.
    assert silent_runs(wav) == [(0, 3 * HOP), (13 * HOP, wav.size)]
    assert silent_runs(wav, min_run=4) == []
    np.testing.assert_array_equal(remove_silent_frames(wav), loud)


@pytest.mark.parametrize(
    ("wav", "match"),
    [
        (np.zeros(4000, np.float32), "all zeros"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), "NaN"),
        (np.ones((2, 100), np.float32), "mono"),
    ],
)
def test_silence_bad_input(wav, match):
    with pytest.raises(StsError, match=match):
        remove_silent_frames(wav)


def test_wrong_rate():
    with pytest.raises(StsError, match="16000"):
        remove_silent_frames(tone(0.1), sr=44100)


# ---------------------------------------------------------------------------------- stretch


def test_stretch_exact_length_and_pitch_kept():
    x = tone(1.0, hz=220.0)
    y = stretch_to_length(x, 24000)  # 1.5x longer
    assert y.shape == (24000,) and y.dtype == np.float32
    _, f0 = pyin_f0(y)
    voiced = f0[f0 > 0]
    assert voiced.size > 0.9 * f0.size
    assert abs(np.median(voiced) / 220.0 - 1.0) < 0.02
    # Energy is spread over the whole output (a real stretch, not zero padding).
    assert np.sqrt(np.mean(y[-4000:] ** 2)) > 0.2
    assert stretch_to_length(x, 9999).shape == (9999,)


def test_stretch_too_short():
    with pytest.raises(StsError, match="too short"):
        stretch_to_length(tone(0.01), 1000)


# ---------------------------------------------------------------------------- log-magnitude


def test_log_magnitude_shape_and_peak():
    a = 0.3
    n = 16000
    x = tone(n / SR, hz=1000.0, amp=a)  # 1000 Hz = bin 64 exactly
    X = log_magnitude(x)
    assert X.shape == (N_BINS, 1 + n // HOP) == (513, 63)
    assert X.dtype == np.float32
    win_sum = get_window("hann", N_FFT, fftbins=True).sum()
    expected = a * win_sum / 2  # sine of amplitude a -> |X| = a * sum(w) / 2 at its bin
    mid = X[:, 10:-10]
    assert np.all(np.argmax(mid, axis=0) == 64)
    peak = np.expm1(mid[64])
    np.testing.assert_allclose(peak, expected, rtol=0.02)
    np.testing.assert_allclose(np.log1p(expected), mid[64], rtol=0.02)
    # magnitude_from_log inverts and clips negatives at 0.
    np.testing.assert_allclose(magnitude_from_log(X)[64, 10:-10], expected, rtol=0.02)
    assert magnitude_from_log(np.array([[-0.5, 0.0]])).tolist() == [[0.0, 0.0]]


def test_log_magnitude_odd_length_frames():
    assert log_magnitude(tone(5000 / SR)).shape == (513, 1 + 5000 // 256) == (513, 20)


# ------------------------------------------------------------------------------ melody image


def test_melody_image_bins():
    f0 = np.array([440.0, 0.0, np.nan, 220.0, 100000.0, 30.0])
    C = melody_image(f0)
    assert C.shape == (513, 6) and C.dtype == np.float32
    assert set(np.unique(C).tolist()) <= {0.0, 1.0}
    assert C.sum(axis=0).tolist() == [1, 0, 0, 1, 1, 1]
    assert C[28, 0] == 1.0  # round(440 * 1024 / 16000) = round(28.16) = 28
    assert C[14, 3] == 1.0  # round(14.08) = 14
    assert C[512, 4] == 1.0  # clipped to the top bin
    assert C[2, 5] == 1.0  # round(1.92) = 2


@pytest.mark.parametrize("f0", [np.zeros(10), np.full(10, np.nan)])
def test_melody_without_voiced_frames(f0):
    with pytest.raises(StsError, match="melody has no voiced frames"):
        melody_image(f0)


def test_melody_inf_rejected():
    with pytest.raises(StsError, match="Inf"):
        melody_image(np.array([440.0, np.inf]))


# ---------------------------------------------------------------------------- f0 resampling


def test_f0_to_frames_interpolates_voiced_only():
    # Contour every 10 ms: 200 Hz rising to 300 Hz over 0..0.1 s, then unvoiced to 0.2 s.
    times = np.arange(21) * 0.01
    f0 = np.where(times <= 0.1 + 1e-9, 200.0 + 1000.0 * times, 0.0)
    out = f0_to_frames(times, f0, n_frames=20)
    centres = np.arange(20) * HOP / SR  # 0, 0.016, ...
    voiced_frames = centres <= 0.1
    np.testing.assert_allclose(out[voiced_frames], 200.0 + 1000.0 * centres[voiced_frames])
    # 0.112 s is nearer the unvoiced point at 0.11 s than the voiced one at 0.10 s.
    assert out[7] == 0.0
    assert np.all(out[~voiced_frames] == 0.0)
    # Beyond 0.2 s + 5 ms: outside the contour -> 0, even if the last value were voiced.
    out2 = f0_to_frames(times, np.full(21, 250.0), n_frames=20)
    np.testing.assert_allclose(out2[centres <= 0.2], 250.0)
    assert np.all(out2[centres > 0.205] == 0.0)


def test_f0_to_frames_bad_times():
    with pytest.raises(StsError, match="increasing"):
        f0_to_frames(np.array([0.0, 0.0, 0.1]), np.ones(3) * 200, 5)
    with pytest.raises(StsError, match="does not match"):
        f0_to_frames(np.arange(3) * 0.01, np.ones(4) * 200, 5)


# ---------------------------------------------------------------------------------- chain


def test_prepare_pair_shapes_and_stretch():
    speech = np.concatenate([tone(0.5, hz=220.0), np.zeros(4000, np.float32), tone(0.5)])
    t_frames = 150
    f0 = np.full(t_frames, 330.0)
    f0[:5] = 0.0
    X, C = prepare_pair(speech, f0)
    assert X.shape == C.shape == (513, t_frames)
    assert X.dtype == C.dtype == np.float32
    assert C.sum() == t_frames - 5 and np.all(C[21, 5:] == 1.0)  # round(21.12) = 21
    p = prepare(speech, f0)
    # Zeros 8000..12000: blocks 31 and 46 hold 64 / 32 tone samples (kept); 32..45 are cut.
    removed = 14 * HOP
    assert p.removed_seconds == pytest.approx(removed / SR)
    assert p.stretch_factor == pytest.approx((t_frames - 1) * HOP / (speech.size - removed))
    np.testing.assert_array_equal(p.x, X)


def test_prepare_errors():
    speech = tone(0.5)
    with pytest.raises(StsError, match="melody has no voiced frames"):
        prepare_pair(speech, np.zeros(50))
    with pytest.raises(StsError, match="at least 2 frames"):
        prepare_pair(speech, np.array([200.0]))
    with pytest.raises(StsError, match="too short|non-silent samples"):
        prepare_pair(tone(0.02), np.full(50, 200.0))
    with pytest.raises(StsError, match="sample rate"):
        prepare_pair(speech, np.full(50, 200.0), sr=22050)
