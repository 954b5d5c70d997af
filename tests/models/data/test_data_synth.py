"""The source–filter voice and the accompaniment building blocks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.data.corpus import make_singer, make_singers
from models.data.music import make_song, pan_gains
from models.data.synth import (
    PHONEME_INDEX,
    NoteEvent,
    Segment,
    frame_labels,
    render_voice,
    sing,
    speak,
    split_syllable,
)
from models.errors import DataError

SR = 16000


def _centroid(wav: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(wav.shape[0])))
    f = np.fft.rfftfreq(wav.shape[0], 1 / SR)
    return float((spec * f).sum() / spec.sum())


def test_split_syllable() -> None:
    assert split_syllable("ka") == ("k", "a", "")
    assert split_syllable("lim") == ("l", "i", "m")
    assert split_syllable("o") == ("", "o", "")
    for bad in ("kx", "kaa", "", "skat"):
        with pytest.raises(DataError, match="syllable"):
            split_syllable(bad)


def test_formant_scale_moves_the_spectrum_up() -> None:
    v = make_singer(0, 0)
    segs = [Segment("a", 0, SR)]
    f0 = np.full(SR, 150.0)
    lo = render_voice(
        segs, f0, dataclasses.replace(v, formant_scale=0.85), SR, np.random.default_rng(0)
    )
    hi = render_voice(
        segs, f0, dataclasses.replace(v, formant_scale=1.25), SR, np.random.default_rng(0)
    )
    ratio = _centroid(hi.wav[2000:-2000]) / _centroid(lo.wav[2000:-2000])
    assert ratio > 1.15


def test_breathiness_adds_noise() -> None:
    v = dataclasses.replace(make_singer(0, 1), jitter=0.0, shimmer=0.0)
    segs = [Segment("e", 0, SR)]
    f0 = np.full(SR, 220.0)
    clean = render_voice(
        segs, f0, dataclasses.replace(v, breathiness=0.0), SR, np.random.default_rng(0)
    ).wav
    breathy = render_voice(
        segs, f0, dataclasses.replace(v, breathiness=0.3), SR, np.random.default_rng(0)
    ).wav
    g = float(breathy @ clean / (clean @ clean))
    resid = breathy - g * clean
    noise_db = 10 * np.log10(float(resid @ resid) / float(breathy @ breathy))
    assert -20.0 < noise_db < -8.0


def test_render_ground_truth_follows_phonemes() -> None:
    v = make_singer(0, 0)
    segs = [
        Segment("sil", 0, 1600),
        Segment("s", 1600, 3200),
        Segment("a", 3200, 9600),
        Segment("t", 9600, 11200),
        Segment("sil", 11200, 12800),
    ]
    r = render_voice(segs, np.full(12800, 180.0), v, SR, np.random.default_rng(0))
    assert r.wav.shape == (12800,) and r.wav.dtype == np.float32
    assert float(np.max(np.abs(r.wav))) <= 0.9 + 1e-6
    assert np.all(r.f0[4000:9000] > 170) and np.all(r.f0[4000:9000] < 190)
    assert np.all(r.f0[:1400] == 0) and np.all(r.f0[1800:3000] == 0)
    f0, ph = frame_labels(r, 128)
    assert f0.shape == ph.shape == (1 + 12800 // 128,)
    assert ph[50] == PHONEME_INDEX["a"] and ph[15] == PHONEME_INDEX["s"]
    # the fricative is noise: most of its energy above 3 kHz
    spec = np.abs(np.fft.rfft(r.wav[1800:3000])) ** 2
    f = np.fft.rfftfreq(1200, 1 / SR)
    assert spec[f > 3000].sum() / spec.sum() > 0.7


def test_sing_and_speak_from_the_same_lyrics() -> None:
    song = make_song("s", np.random.default_rng(3), 6.0)
    v = make_singer(0, 1)
    tonic = song.tonic_for_range(*v.range_midi)
    lo, hi = song.pitch_range
    assert v.range_midi[0] <= tonic + lo and tonic + hi <= v.range_midi[1]
    spb = song.seconds_per_beat
    events = [
        NoteEvent(n.syllable, 0.3 + n.start_beat * spb, n.beats * spb, tonic + n.pitch)
        for n in song.notes
    ]
    sung = sing(song.lyrics, events, v, SR, 0.9 + song.music_seconds, np.random.default_rng(0))
    spoken = speak(song.lyrics, song.phrases, v, SR, np.random.default_rng(0))
    # the sung F0 stays within the notes (+- vibrato and portamento), speech near speech_f0
    sf0 = sung.f0[sung.f0 > 0]
    midi = 69 + 12 * np.log2(sf0 / 440)
    assert midi.min() > tonic + lo - 1.5 and midi.max() < tonic + hi + 1.5
    pf0 = spoken.f0[spoken.f0 > 0]
    assert 0.6 * v.speech_f0_hz < np.median(pf0) < 1.4 * v.speech_f0_hz
    # same phonemes in the same order (silences aside)
    seq = [s.phone for s in sung.segments if s.phone != "sil"]
    seq2 = [s.phone for s in spoken.segments if s.phone != "sil"]
    assert seq == seq2


def test_singers_are_deterministic_and_varied() -> None:
    a = make_singers(0, 4)
    assert a == make_singers(0, 4)
    assert make_singers(0, 6)[:4] == a  # singer i does not depend on how many there are
    assert a != make_singers(1, 4)
    assert [s.voice_type for s in a] == ["bass", "soprano", "baritone", "alto"]
    scales = sorted(s.formant_scale for s in a)
    assert min(np.diff(scales)) > 0.03


def test_voice_noise_scales_only_the_cycle_noise_and_raises_the_retake_ceiling() -> None:
    """`voice_noise` multiplies jitter / shimmer / breathiness and nothing else; a retake (same
    performance, another noise stream) of the steadier voice is closer to the original."""
    from models import metrics
    from models.data.synth import perform

    loud, calm = make_singer(0, 1, 1.0), make_singer(0, 1, 0.25)
    noisy = ("breathiness", "jitter", "shimmer")
    for f in noisy:
        assert getattr(calm, f) == pytest.approx(0.25 * getattr(loud, f), abs=1e-6)
        assert getattr(loud, f) > 0
    assert dataclasses.replace(calm, **{f: getattr(loud, f) for f in noisy}) == loud
    notes = [NoteEvent(0, 0.1, 1.2, 69), NoteEvent(1, 1.3, 1.4, 72)]
    scores = {}
    for name, v in (("loud", loud), ("calm", calm)):
        perf = perform(["la", "ma"], notes, v, SR, 3.0, np.random.default_rng(5))
        a = render_voice(perf.segments, perf.f0, v, SR, np.random.default_rng(1)).wav
        b = render_voice(perf.segments, perf.f0, v, SR, np.random.default_rng(2)).wav
        scores[name] = metrics.stoi(a, b, SR)
    assert scores["calm"] > scores["loud"] + 0.05, scores
    with pytest.raises(DataError, match="voice_noise"):
        from models.data.corpus import CorpusConfig

        CorpusConfig(voice_noise=-1)


def test_pan_gains_constant_power() -> None:
    for p in (-1.0, -0.3, 0.0, 0.15, 1.0):
        gl, gr = pan_gains(p)
        assert abs(gl**2 + gr**2 - 1.0) < 1e-12
    assert pan_gains(0.2)[1] > pan_gains(0.2)[0]
    with pytest.raises(DataError, match="pan"):
        pan_gains(1.5)
