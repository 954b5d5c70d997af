"""Audio I/O: formats, rates, channels, bad input, loudness."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from models.audio import (
    check_audio,
    load_audio,
    loudness_lufs,
    normalize_loudness,
    normalize_peak,
    resample,
    write_wav,
)
from models.errors import AudioError


def tone(sr: int, seconds: float = 1.0, f: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
def test_formats_load_and_resample(tmp_path, fmt, subtype):
    sr = 22050
    x = tone(sr)
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, sr, format=fmt, subtype=subtype)
    y, sr2 = load_audio(p, sample_rate=16000)
    assert sr2 == 16000
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 2
    # A 440 Hz tone survives resampling: dominant FFT bin at 440 Hz.
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 2


def test_mp3_when_libsndfile_supports_it(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no MP3")
    p = tmp_path / "a.mp3"
    sf.write(p, tone(44100), 44100, format="MP3")
    y, sr = load_audio(p, sample_rate=16000)
    assert sr == 16000 and np.max(np.abs(y)) > 0.3


def test_channels(tmp_path):
    sr = 16000
    st = np.stack([tone(sr, f=300), tone(sr, f=500, amp=0.2)], axis=1)
    p = tmp_path / "st.wav"
    sf.write(p, st, sr, subtype="FLOAT")
    mono, _ = load_audio(p, channels=1)
    assert mono.shape == (sr,)
    np.testing.assert_allclose(mono, st.mean(axis=1), atol=1e-6)
    stereo, _ = load_audio(p, channels=2)
    assert stereo.shape == (2, sr)
    keep, _ = load_audio(p, channels=None)
    assert keep.shape == (2, sr)
    # mono file upmixed to stereo duplicates the channel
    pm = tmp_path / "m.wav"
    sf.write(pm, tone(sr), sr, subtype="FLOAT")
    up, _ = load_audio(pm, channels=2)
    assert up.shape == (2, sr) and np.array_equal(up[0], up[1])
    # 3 channels cannot become stereo
    p3 = tmp_path / "3ch.wav"
    sf.write(p3, np.stack([tone(sr)] * 3, axis=1), sr)
    with pytest.raises(AudioError, match="3 channels"):
        load_audio(p3, channels=2)


def test_odd_rate_is_resampled(tmp_path):
    p = tmp_path / "odd.wav"
    sf.write(p, tone(7351, f=300), 7351)
    y, sr = load_audio(p, sample_rate=16000)
    assert sr == 16000 and abs(len(y) - 16000) <= 3
    y2, sr2 = load_audio(p)
    assert sr2 == 7351 and len(y2) == 7351


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3, "not a readable audio file"),
        (b"\x00\x01\x02" * 1000, "not a readable audio file"),
    ],
)
def test_corrupt_files(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=match) as e:
        load_audio(p)
    assert str(p) in str(e.value)


def test_missing_zero_frames_silent_nan(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no frames|empty"):
        load_audio(p)
    s = tmp_path / "silent.wav"
    sf.write(s, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        load_audio(s)
    y, _ = load_audio(s, allow_silent=True)
    assert np.all(y == 0)
    n = tmp_path / "nan.wav"
    x = tone(16000)
    x[100:110] = np.nan
    x[200] = np.inf
    sf.write(n, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="11 NaN/Inf"):
        load_audio(n)
    y, _ = load_audio(n, nan_policy="zero")
    assert np.isfinite(y).all() and y[105] == 0


def test_write_wav_atomic_and_roundtrip(tmp_path):
    x = tone(16000)
    p = write_wav(tmp_path / "sub" / "o.wav", x, 16000)
    y, sr = load_audio(p)
    assert sr == 16000 and np.max(np.abs(y - x)) < 1e-4
    bad = x.copy()
    bad[0] = np.nan
    with pytest.raises(AudioError):
        write_wav(tmp_path / "nan.wav", bad, 16000)
    assert not (tmp_path / "nan.wav").exists()
    assert list(tmp_path.glob("*.tmp*")) == []
    st = write_wav(tmp_path / "st.wav", np.stack([x, -x]), 16000)
    z, _ = load_audio(st, channels=None)
    assert z.shape == (2, 16000)


def test_loudness_reference_and_normalisation():
    # BS.1770: a 0 dBFS-peak 1 kHz sine in one channel measures about -3.01 LUFS.
    sr = 48000
    x = tone(sr, seconds=3.0, f=1000.0, amp=1.0)
    assert loudness_lufs(x, sr) == pytest.approx(-3.01, abs=0.05)
    # Stereo (same signal in both channels) is 3 dB louder.
    assert loudness_lufs(np.stack([x, x]), sr) == pytest.approx(-0.0, abs=0.06)
    y = normalize_loudness(tone(16000, 2.0, amp=0.01), 16000, target_lufs=-20.0)
    assert loudness_lufs(y, 16000) == pytest.approx(-20.0, abs=0.05)
    # Peak ceiling wins over the loudness target.
    z = normalize_loudness(tone(16000, 2.0, amp=0.01), 16000, target_lufs=0.0, peak_dbfs=-6.0)
    assert np.max(np.abs(z)) == pytest.approx(10 ** (-6 / 20), rel=1e-4)
    assert np.max(np.abs(normalize_peak(tone(16000), -3.0))) == pytest.approx(10 ** (-3 / 20))
    with pytest.raises(AudioError, match="silent"):
        normalize_loudness(np.zeros(16000, dtype=np.float32), 16000)


def test_check_audio_shapes_and_rates():
    with pytest.raises(AudioError, match="shape"):
        check_audio(np.zeros((1, 2, 3)))
    with pytest.raises(AudioError, match="empty"):
        check_audio(np.zeros(0))
    with pytest.raises(AudioError, match="outside"):
        resample(tone(16000), 16000, 500)


@pytest.mark.parametrize("fmt,subtype,ext", [
    ("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_16", "flac"),
])
def test_truncated_file_reads_the_readable_part_and_warns(tmp_path, caplog, fmt, subtype, ext):
    sr = 22050
    x = tone(sr, seconds=6.0)
    full = tmp_path / f"full.{ext}"
    sf.write(full, x, sr, format=fmt, subtype=subtype)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with caplog.at_level("WARNING", logger="models.audio"):
        y, got_sr = load_audio(cut)
    assert got_sr == sr
    if ext == "wav":  # a third of the bytes is a third of the frames
        assert abs(len(y) - 2.0 * sr) <= 100
    else:  # compressed: some of the frames before the cut
        assert sr <= len(y) < len(x)
    np.testing.assert_allclose(y[:1000], x[:1000], atol=1e-3)
    msgs = [r.getMessage() for r in caplog.records if "truncated or damaged" in r.getMessage()]
    assert len(msgs) == 1 and str(cut) in msgs[0]
    assert f"of the {6.0:.2f} s its header declares" in msgs[0]
    assert f"read {len(y) / sr:.2f} s" in msgs[0]


def test_intact_and_streamed_wavs_do_not_warn(tmp_path, caplog):
    sr = 16000
    x = tone(sr, seconds=1.0)
    p = tmp_path / "ok.wav"
    sf.write(p, x, sr, subtype="PCM_16")
    b = bytearray(p.read_bytes())
    s = tmp_path / "streamed.wav"  # data size 0xFFFFFFFF: written before the length was known
    i = b.find(b"data")
    b[i + 4 : i + 8] = b"\xff\xff\xff\xff"
    s.write_bytes(bytes(b))
    with caplog.at_level("WARNING", logger="models.audio"):
        assert len(load_audio(p)[0]) == sr
        assert len(load_audio(s)[0]) >= sr - 1
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_header_that_claims_hours_warns_with_both_durations(tmp_path, caplog):
    sr = 16000
    p = tmp_path / "liar.wav"
    sf.write(p, tone(sr, seconds=0.5), sr, subtype="PCM_16")
    b = bytearray(p.read_bytes())
    i = b.find(b"data")
    b[i + 4 : i + 8] = (8 * 3600 * sr * 2).to_bytes(4, "little")  # 8 h of 16-bit mono
    p.write_bytes(bytes(b))
    with caplog.at_level("WARNING", logger="models.audio"):
        y, _ = load_audio(p)
    assert abs(len(y) - sr // 2) <= 1
    (msg,) = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert "read 0.50 s of the 28800.00 s" in msg
