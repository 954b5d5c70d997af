"""The feature contract: log-mel against librosa, DIO F0 on known tones."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from models.data.features import MelConfig, dio_f0, log_mel, n_frames
from models.errors import DataError


def test_log_mel_matches_librosa_reference() -> None:
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(sr)).astype(np.float32)
    cfg = MelConfig(sample_rate=sr)
    mel = log_mel(wav, cfg)
    ref = librosa.feature.melspectrogram(
        y=wav.astype(np.float64),
        sr=sr,
        n_fft=512,
        win_length=512,
        hop_length=128,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=80,
        fmin=0.0,
        fmax=sr / 2,
        htk=False,
        norm="slaney",
    )
    ref = np.log(np.maximum(ref, 1e-5))
    assert mel.shape == (80, 1 + sr // 128) == ref.shape
    assert mel.dtype == np.float32
    assert float(np.max(np.abs(mel - ref))) < 1e-4


@pytest.mark.parametrize("n", [1000, 1023, 16000, 22050])
def test_frame_count_is_one_plus_t_over_hop(n: int) -> None:
    wav = np.random.default_rng(1).standard_normal(n).astype(np.float32) * 0.1
    cfg = MelConfig(sample_rate=22050)
    assert log_mel(wav, cfg).shape == (80, n_frames(n, 128)) == (80, 1 + n // 128)
    f0, voiced = dio_f0(wav, 22050, 128)
    assert f0.shape == voiced.shape == (1 + n // 128,)


@pytest.mark.parametrize("hz", [110.0, 261.6, 660.0])
def test_dio_f0_on_a_harmonic_tone(hz: float) -> None:
    sr = 16000
    t = np.arange(sr) / sr
    wav = sum(0.2 / k * np.sin(2 * np.pi * hz * k * t) for k in range(1, 5)).astype(np.float32)
    f0, voiced = dio_f0(wav, sr, 128)
    mid = slice(10, -10)
    assert voiced[mid].mean() > 0.95
    cents = 1200 * np.abs(np.log2(f0[mid][voiced[mid]] / hz))
    assert np.median(cents) < 5.0


def test_bad_inputs_raise_data_error() -> None:
    cfg = MelConfig(sample_rate=16000)
    with pytest.raises(DataError, match="shape"):
        log_mel(np.zeros((2, 1000), np.float32), cfg)
    with pytest.raises(DataError, match="NaN"):
        log_mel(np.full(1000, np.nan, np.float32), cfg)
    with pytest.raises(DataError, match="too short"):
        log_mel(np.zeros(100, np.float32), cfg)
    with pytest.raises(DataError, match="win_length"):
        MelConfig(sample_rate=16000, win_length=1024)
    with pytest.raises(DataError, match="fmax"):
        MelConfig(sample_rate=16000, fmax=9000.0)
