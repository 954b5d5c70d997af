"""Audio metrics: identities, orderings and known values."""

from __future__ import annotations

import numpy as np
import pytest

from models import metrics
from models.errors import AudioError

SR = 16000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Resemblyzer runs torch; on the shared 2-core machine 1 thread is far faster."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _voice(seconds=2.0, f0=180.0, formant=1.0, seed=0):
    """A crude vowel-like pulse train through two resonances (speaker-ish timbre)."""
    import scipy.signal

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = np.cumsum(f) / SR
    src = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    src += 0.01 * rng.standard_normal(n)
    y = src
    for fc, bw in ((700 * formant, 120), (1200 * formant, 150), (2600 * formant, 200)):
        r = np.exp(-np.pi * bw / SR)
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / SR), r * r], y)
    env = np.minimum(1, np.minimum(t, t[::-1]) * 10)
    return (0.5 * y / np.max(np.abs(y)) * env).astype(np.float32)


def test_identity_values():
    x = _voice()
    assert metrics.log_spectral_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    assert metrics.mel_cepstral_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    assert metrics.stoi(x, x, SR) > 0.99
    assert metrics.pesq(x, x, SR) > 4.4


def test_degradation_orders_the_metrics():
    x = _voice()
    rng = np.random.default_rng(1)
    light = x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    heavy = x + 0.2 * rng.standard_normal(x.shape).astype(np.float32)
    assert metrics.stoi(x, light, SR) > metrics.stoi(x, heavy, SR)
    assert metrics.log_spectral_distance(x, light, SR) < metrics.log_spectral_distance(x, heavy, SR)
    assert metrics.mel_cepstral_distance(x, light, SR) < metrics.mel_cepstral_distance(x, heavy, SR)
    assert metrics.pesq(x, light, SR) > metrics.pesq(x, heavy, SR)


def test_speaker_similarity_prefers_the_same_voice():
    a1, a2 = _voice(f0=150, formant=1.0, seed=0), _voice(f0=160, formant=1.0, seed=1)
    b = _voice(f0=150, formant=1.5, seed=2)
    assert metrics.speaker_similarity(a1, a1, SR) == pytest.approx(1.0, abs=1e-4)
    assert metrics.speaker_similarity(a1, a2, SR) > metrics.speaker_similarity(a1, b, SR)
    assert metrics._voice_encoder() is metrics._voice_encoder()  # cached instance
    emb = metrics.speaker_embedding(a1, SR)
    assert emb.shape == (256,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-3)


def test_f0_metrics():
    ref = np.array([0, 220, 220, 440, 0, 330.0])
    same = metrics.f0_metrics(ref, ref, 0.008)
    assert same["raw_chroma_accuracy"] == pytest.approx(1.0)
    assert same["f0_rmse_cents"] == pytest.approx(0.0)
    octave = metrics.f0_metrics(ref, ref * 2, 0.008)
    assert octave["raw_chroma_accuracy"] == pytest.approx(1.0)  # chroma forgives octaves
    assert octave["f0_rmse_cents"] == pytest.approx(1200.0)
    semitone = metrics.f0_metrics(ref, ref * 2 ** (1 / 12), 0.008)
    assert semitone["raw_chroma_accuracy"] == pytest.approx(0.0)
    assert semitone["f0_rmse_cents"] == pytest.approx(100.0)
    x = _voice(f0=200.0)
    f0 = metrics.f0_contour(x, SR)
    voiced = f0[f0 > 0]
    assert np.median(np.abs(1200 * np.log2(voiced / 200.0))) < 50


def test_bad_inputs():
    with pytest.raises(AudioError, match="mono"):
        metrics.stoi(np.zeros((2, 100)), np.zeros((2, 100)), SR)
    with pytest.raises(AudioError, match="NaN"):
        metrics.log_spectral_distance(np.full(1000, np.nan), np.zeros(1000), SR)


def test_pesq_turns_only_its_own_errors_into_audio_errors(monkeypatch):
    import pesq

    x = _voice(seconds=1.0)

    def no_utterance(*args, **kwargs):
        raise pesq.NoUtterancesError("b'No utterances detected'")

    monkeypatch.setattr(pesq, "pesq", no_utterance)
    with pytest.raises(AudioError, match="pesq: cannot score this pair \\(NoUtterancesError"):
        metrics.pesq(x, x, SR)

    def bug(*args, **kwargs):
        raise TypeError("not a PESQ condition")

    monkeypatch.setattr(pesq, "pesq", bug)
    with pytest.raises(TypeError, match="not a PESQ condition"):  # propagates, not rewrapped
        metrics.pesq(x, x, SR)
