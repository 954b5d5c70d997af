"""Silence slicer: clips under 30 s, silent parts dropped, cut points inside silences."""

from __future__ import annotations

import numpy as np
import pytest

from models.audio import load_audio, write_wav
from models.errors import AudioError
from models.slicer import SlicerConfig, slice_audio, slice_file


def _song(sr: int, plan: list[tuple[str, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = []
    for kind, dur in plan:
        n = int(sr * dur)
        if kind == "voice":
            t = np.arange(n) / sr
            parts.append(0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(n))
        else:
            parts.append(1e-4 * rng.standard_normal(n))
    return np.concatenate(parts).astype(np.float32)


def test_cuts_at_silences_and_drops_silence():
    sr = 8000
    x = _song(sr, [("sil", 2), ("voice", 8), ("sil", 1.5), ("voice", 7), ("sil", 3)])
    clips = slice_audio(x, sr, SlicerConfig(min_length_s=5.0))
    assert len(clips) == 2
    (s0, e0), (s1, e1) = clips
    # first clip starts within max_sil_kept (0.5 s) before the voice at 2 s
    assert 1.45 * sr <= s0 <= 2.0 * sr
    # each clip covers its voiced part completely
    assert e0 >= 10.0 * sr - 80 and s1 <= 11.5 * sr + 80 and e1 >= 18.5 * sr - 80
    # trailing silence trimmed to about 0.5 s
    assert e1 <= 19.1 * sr
    for s, e in clips:
        assert (e - s) / sr < 30.0


def test_long_recording_split_under_30s_and_silent_dropped():
    sr = 8000
    x = _song(sr, [("voice", 75), ("sil", 10), ("voice", 6)])
    clips = slice_audio(x, sr)
    assert all((e - s) / sr <= 30.0 for s, e in clips)
    covered = sum(e - s for s, e in clips)
    assert covered >= 80 * sr  # all voice kept
    assert len(clips) >= 4  # 75 s of continuous voice needs at least 3 clips, plus the last one
    assert slice_audio(np.zeros(sr * 5, dtype=np.float32), sr) == []


def test_slice_file_writes_clips(tmp_path):
    sr = 8000
    x = _song(sr, [("voice", 6), ("sil", 2), ("voice", 6)])
    src = write_wav(tmp_path / "song.wav", x, sr)
    out = slice_file(src, tmp_path / "clips")
    assert [p.name for p in out] == ["song_0000.wav", "song_0001.wav"]
    y, _ = load_audio(out[0])
    assert 6.0 <= len(y) / sr <= 7.1


def test_bad_config():
    with pytest.raises(AudioError):
        SlicerConfig(min_length_s=0.1, min_interval_s=0.3)
    with pytest.raises(AudioError):
        SlicerConfig(max_length_s=2.0)


def test_cli_data_slice(tmp_path, capsys):
    from compress.cli import main

    sr = 8000
    x = _song(sr, [("sil", 1), ("voice", 6), ("sil", 2), ("voice", 6), ("sil", 1)])
    src = write_wav(tmp_path / "take.wav", x, sr)
    out = tmp_path / "clips"
    assert main(["data", "slice", str(src), "--out", str(out), "--sample-rate", "16000",
                 "--normalize", "-23"]) == 0
    clips = sorted(out.glob("*.wav"))
    assert [c.name for c in clips] == ["take_0000.wav", "take_0001.wav"]
    y, r = load_audio(clips[1])
    assert r == 16000 and 6.0 <= len(y) / r <= 7.1
    assert "2 clips" in capsys.readouterr().out
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk" * 10)
    assert main(["data", "slice", str(bad), "--out", str(out)]) == 1
