"""Target melodies (§2: the F0 contour from a score, an F0 extractor or a sung reference)."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from models.sts import StsError
from models.sts.melody import (
    Melody,
    frames_for_seconds,
    load_melody,
    midi_to_hz,
    note_name,
    read_f0_file,
)
from models.sts.preprocess import HOP, SAMPLE_RATE, f0_to_frames

TPB = 480  # ticks per beat
C4, E4, G4, C5 = 60, 64, 67, 72


def write_midi(path: Path, tracks: list[list[tuple]], tpb: int = TPB, type_: int = 1) -> Path:
    """`tracks`: lists of ``(kind, delta_ticks, value)`` with kind ``on`` / ``off`` (value =
    note), ``tempo`` (value = bpm) or ``name`` (value = track name)."""
    mid = mido.MidiFile(type=type_, ticks_per_beat=tpb)
    for events in tracks:
        tr = mido.MidiTrack()
        for kind, dt, value in events:
            if kind == "on":
                tr.append(mido.Message("note_on", note=value, velocity=90, time=dt))
            elif kind == "off":
                tr.append(mido.Message("note_off", note=value, velocity=0, time=dt))
            elif kind == "tempo":
                tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(value), time=dt))
            elif kind == "name":
                tr.append(mido.MetaMessage("track_name", name=value, time=dt))
            elif kind == "drum":
                tr.append(mido.Message("note_on", note=value, velocity=90, channel=9, time=dt))
                tr.append(mido.Message("note_off", note=value, channel=9, time=TPB))
        mid.tracks.append(tr)
    mid.save(str(path))
    return path


def frames_in(start: float, end: float, n: int) -> np.ndarray:
    """Indices of the frames whose centre is in ``[start, end)``."""
    c = np.arange(n) * HOP / SAMPLE_RATE
    return np.flatnonzero((c >= start) & (c < end))


def assert_note(m: Melody, start: float, end: float, hz: float) -> None:
    idx = frames_in(start, end, m.n_frames)
    assert idx.size > 0
    np.testing.assert_allclose(m.f0[idx], hz, atol=0.1)


# ------------------------------------------------------------------------------------- MIDI


def test_midi_notes_and_rest_at_120_bpm(tmp_path):
    # C4 E4 G4, one beat (0.5 s at 120 bpm) each, a one-beat rest, then C5 for half a beat.
    events = [("name", 0, "lead"), ("tempo", 0, 120)]
    for note in (C4, E4, G4):
        events += [("on", 0, note), ("off", TPB, note)]
    events += [("on", TPB, C5), ("off", TPB // 2, C5)]
    m = load_melody(write_midi(tmp_path / "tune.mid", [events]))
    assert m.source == "midi" and m.path.endswith("tune.mid")
    assert m.n_frames == frames_for_seconds(2.25) == 142
    np.testing.assert_allclose(m.times, np.arange(142) * HOP / SAMPLE_RATE)
    assert_note(m, 0.0, 0.5, 261.6256)
    assert_note(m, 0.5, 1.0, 329.6276)
    assert_note(m, 1.0, 1.5, 391.9954)
    assert np.all(m.f0[frames_in(1.5, 2.0, m.n_frames)] == 0.0)  # the rest
    assert_note(m, 2.0, 2.25, 523.2511)
    assert m.f0[-1] == 0.0  # the last frame sits at the final note-off
    assert "4 note(s) C4-C5" in m.description and "'lead'" in m.description
    assert "%" in m.description and abs(m.seconds - 2.25) <= HOP / SAMPLE_RATE


def test_tempo_change_in_a_conductor_track(tmp_path):
    # Track 0: tempo map only (120 bpm, then 60 bpm from beat 1); track 1: three one-beat notes.
    conductor = [("tempo", 0, 120), ("tempo", TPB, 60)]
    notes = []
    for note in (C4, E4, G4):
        notes += [("on", 0, note), ("off", TPB, note)]
    m = load_melody(write_midi(tmp_path / "tempo.mid", [conductor, notes]))
    assert_note(m, 0.0, 0.5, midi_to_hz(C4))
    assert_note(m, 0.5, 1.5, midi_to_hz(E4))  # one beat at 60 bpm = 1 s
    assert_note(m, 1.5, 2.5, midi_to_hz(G4))
    assert m.n_frames == frames_for_seconds(2.5)
    assert "track 1" in m.description


def test_overlapping_notes_keep_the_highest(tmp_path):
    # C4 over 0..1 s; G4 from 0.25 s to 0.75 s on top of it.
    events = [("on", 0, C4), ("on", TPB // 2, G4), ("off", TPB, G4), ("off", TPB // 2, C4)]
    m = load_melody(write_midi(tmp_path / "chord.mid", [events]))
    assert_note(m, 0.0, 0.25, midi_to_hz(C4))
    assert_note(m, 0.25, 0.75, midi_to_hz(G4))
    assert_note(m, 0.75, 1.0, midi_to_hz(C4))
    assert "reduced to the highest (monophonic)" in m.description


def test_track_option_and_percussion(tmp_path):
    drums = [("drum", 0, 38)]
    first = [("on", 0, C4), ("off", TPB, C4)]
    second = [("on", 0, G4), ("off", TPB, G4)]
    path = write_midi(tmp_path / "two.mid", [drums, first, second])
    assert_note(load_melody(path), 0.0, 0.5, midi_to_hz(C4))  # drums skipped, first melody
    assert_note(load_melody(path, track=2), 0.0, 0.5, midi_to_hz(G4))
    with pytest.raises(StsError, match=r"two\.mid: no notes in track 0"):
        load_melody(path, track=0)
    with pytest.raises(StsError, match=r"track 5 does not exist; the file has 3"):
        load_melody(path, track=5)


def test_n_frames_cuts_or_pads(tmp_path):
    path = write_midi(tmp_path / "one.mid", [[("on", 0, E4), ("off", TPB, E4)]])
    assert load_melody(path).n_frames == frames_for_seconds(0.5) == 32
    long = load_melody(path, n_frames=100)
    assert long.n_frames == 100 and np.all(long.f0[32:] == 0) and "padded" in long.description
    short = load_melody(path, n_frames=10)
    np.testing.assert_allclose(short.f0, midi_to_hz(E4), atol=0.1)


def test_note_helpers():
    assert note_name(60) == "C4" and note_name(69) == "A4" and note_name(61) == "C#4"
    assert midi_to_hz(69) == 440.0 and abs(midi_to_hz(60) - 261.6256) < 1e-3


# ---------------------------------------------------------------------------------- F0 files


def _contour() -> tuple[np.ndarray, np.ndarray]:
    t = np.round(np.arange(0.0, 1.5, 0.01), 6)
    f = 200.0 + 50.0 * np.sin(2 * np.pi * t)
    f[(t >= 0.6) & (t < 0.8)] = 0.0
    return t, f


def test_csv_contour_round_trip(tmp_path):
    t, f = _contour()
    rows = [f"{a:.6f},{b:.6f}" if b > 0 else f"{a:.6f}," for a, b in zip(t, f, strict=True)]
    rows[70] = f"{t[70]:.6f},0"  # "0" and "" both mean unvoiced
    path = tmp_path / "contour.csv"
    path.write_text("time_s,hz\n# a comment\n" + "\n".join(rows) + "\n")
    tt, ff = read_f0_file(path)
    np.testing.assert_allclose(tt, t, atol=1e-9)
    np.testing.assert_allclose(ff, f, atol=1e-5)
    m = load_melody(path)
    assert m.source == "f0" and m.n_frames == frames_for_seconds(t[-1])
    np.testing.assert_allclose(m.f0, f0_to_frames(t, f, m.n_frames), atol=1e-4)
    centres = m.times
    voiced = ((centres < 0.59) | (centres > 0.81)) & (centres < 1.485)
    expect = 200.0 + 50.0 * np.sin(2 * np.pi * centres)
    np.testing.assert_allclose(m.f0[voiced], expect[voiced], atol=0.1)
    assert np.all(m.f0[(centres > 0.61) & (centres < 0.79)] == 0.0)
    # the same contour as white-space separated .txt without a header, with a third column
    txt = tmp_path / "contour.txt"
    txt.write_text("\n".join(f"{a:.6f} {b:.6f} 0.9" for a, b in zip(t, f, strict=True)))
    np.testing.assert_allclose(load_melody(txt).f0, m.f0, atol=1e-4)


# ---------------------------------------------------------------------------- sung reference


def test_sung_reference_is_tracked_with_pyin(tmp_path):
    sr = 22050  # not 16 kHz: the loader resamples first
    t = np.arange(int(1.2 * sr)) / sr
    tone = 0.4 * np.sin(2 * np.pi * 330.0 * t) + 0.1 * np.sin(2 * np.pi * 660.0 * t)
    path = tmp_path / "ref.wav"
    sf.write(path, tone.astype(np.float32), sr)
    m = load_melody(path)
    assert m.source == "audio" and "pYIN" in m.description
    voiced = m.f0[m.f0 > 0]
    assert voiced.size > 0.8 * m.n_frames
    assert abs(np.median(voiced) - 330.0) < 3.3  # within 1 %
    assert np.all(np.abs(voiced[5:-5] - 330.0) < 3.3)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("data", [b"MThd\x00\x00\x00\x06\x00\x01\x00", b"not a midi file at all",
                                  b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\xff\xff"])
def test_corrupt_midi_is_one_line_naming_the_file(tmp_path, data):
    path = tmp_path / "broken.mid"
    path.write_bytes(data)
    with pytest.raises(StsError, match=r"broken\.mid: not a readable MIDI file") as exc:
        load_melody(path)
    assert "\n" not in str(exc.value)


def test_midi_without_notes(tmp_path):
    path = write_midi(tmp_path / "empty.mid", [[("tempo", 0, 100), ("name", 0, "x")]])
    with pytest.raises(StsError, match=r"empty\.mid: no notes in any of its 1 track"):
        load_melody(path)


def test_all_zero_contour(tmp_path):
    path = tmp_path / "zeros.csv"
    path.write_text("time,hz\n0.0,0\n0.1,0\n0.2,\n")
    with pytest.raises(StsError, match=r"zeros\.csv: the melody has no voiced frames"):
        load_melody(path)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(StsError, match=r"tune\.abc: unknown melody file type '\.abc'"):
        load_melody(tmp_path / "tune.abc")
    with pytest.raises(StsError, match=r"missing\.mid: no such melody file"):
        load_melody(tmp_path / "missing.mid")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,hz\n0.0,200\n0.1,abc\n")
    with pytest.raises(StsError, match=r"bad\.csv: line 3"):
        load_melody(bad)
    back = tmp_path / "back.csv"
    back.write_text("0.2,200\n0.1,200\n")
    with pytest.raises(StsError, match="strictly increasing"):
        load_melody(back)
    csv = tmp_path / "ok.csv"
    csv.write_text("0.0,200\n0.5,200\n")
    with pytest.raises(StsError, match="MIDI melodies only"):
        load_melody(csv, track=1)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(StsError, match=r"silent\.wav: signal is silent"):
        load_melody(silent)
    # a MIDI whose only note is cut off by n_frames
    late = write_midi(tmp_path / "late.mid", [[("on", 4 * TPB, C4), ("off", TPB, C4)]])
    with pytest.raises(StsError, match="no voiced frames"):
        load_melody(late, n_frames=10)


def test_constant_melody_without_a_file():
    m = load_melody(None, n_frames=20, hz=250.0)
    assert m.source == "none" and m.n_frames == 20 and np.all(m.f0 == 250.0)
    with pytest.raises(StsError, match="pass n_frames"):
        load_melody(None)
