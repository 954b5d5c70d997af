"""Songs (lyrics, melody, chords) and their stereo accompaniment, synthesised in numpy.

A :class:`Song` is key-free: note pitches are semitones above the tonic, so each singer sings it
in their own key (``tonic_midi``). Songs are made of two-bar phrases in 4/4 over a common pop
chord progression (I–V–vi–IV and friends); the melody walks the major scale, lands on chord tones
on strong beats and rests at the end of each phrase; each note carries one CV / CVC syllable.

The accompaniment (:func:`render_accompaniment`) has two harmonic instruments (a struck "keys"
part playing the chords on beats 1 and 3, and an eighth-note plucked arpeggio), a bass on the
chord roots, and a synthesised drum kit (kick: exponentially falling sine sweep; snare: band-pass
noise + a 180 Hz body; hi-hat: high-passed noise), each placed with constant-power panning
(``L = cos θ``, ``R = sin θ``, ``θ = (pan + 1) π / 4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal

from models.data.synth import CONSONANTS, VOWELS, midi_to_hz
from models.errors import DataError

BEATS_PER_BAR = 4
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11, 12, 14)
# Chords as (root semitones above the tonic, minor?) per bar.
PROGRESSIONS: tuple[tuple[tuple[int, bool], ...], ...] = (
    ((0, False), (7, False), (9, True), (5, False)),  # I–V–vi–IV
    ((0, False), (9, True), (5, False), (7, False)),  # I–vi–IV–V
    ((9, True), (5, False), (0, False), (7, False)),  # vi–IV–I–V
    ((0, False), (5, False), (7, False), (5, False)),  # I–IV–V–IV
    ((0, False), (4, True), (5, False), (7, False)),  # I–iii–IV–V
)
_ONSETS = CONSONANTS
_CODAS = ("m", "n", "l", "s", "t", "k")


@dataclass(frozen=True)
class Note:
    """One sung note: syllable index, start and length in beats, semitones above the tonic."""

    syllable: int
    start_beat: float
    beats: float
    pitch: int


@dataclass(frozen=True)
class Song:
    name: str
    tempo_bpm: float
    bars: int
    lyrics: tuple[str, ...]
    notes: tuple[Note, ...]
    phrases: tuple[tuple[int, int], ...]  # syllable index ranges [start, end)
    chords: tuple[tuple[int, bool], ...]  # one per bar

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def music_seconds(self) -> float:
        return self.bars * BEATS_PER_BAR * self.seconds_per_beat

    @property
    def pitch_range(self) -> tuple[int, int]:
        ps = [n.pitch for n in self.notes]
        return min(ps), max(ps)

    def tonic_for_range(self, lo: int, hi: int) -> int:
        """The tonic (MIDI) that centres the melody in a singer's range [lo, hi]."""
        p_lo, p_hi = self.pitch_range
        tonic = int(round((lo + hi) / 2.0 - (p_lo + p_hi) / 2.0))
        tonic = min(tonic, hi - p_hi)  # keep the top in range first, then the bottom
        return max(tonic, lo - p_lo)

    def to_json(self) -> dict[str, Any]:
        return {
            "tempo_bpm": self.tempo_bpm,
            "bars": self.bars,
            "lyrics": list(self.lyrics),
            "notes": [
                {
                    "syllable": n.syllable,
                    "start_beat": n.start_beat,
                    "beats": n.beats,
                    "pitch": n.pitch,
                }
                for n in self.notes
            ],
            "phrases": [list(p) for p in self.phrases],
            "chords": [[r, "min" if m else "maj"] for r, m in self.chords],
        }


def _syllable(rng: np.random.Generator) -> str:
    s = str(rng.choice(_ONSETS)) + str(rng.choice(VOWELS))
    if rng.random() < 0.3:
        s += str(rng.choice(_CODAS))
    return s


def _rhythm(rng: np.random.Generator, beats: float) -> list[float]:
    """Note lengths (beats) filling `beats`, last note at least 1.5 beats."""
    choices = np.array([0.5, 1.0, 1.5, 2.0])
    probs = np.array([0.2, 0.45, 0.15, 0.2])
    out: list[float] = []
    left = beats
    while left > 2.0:
        d = float(rng.choice(choices, p=probs))
        if left - d < 1.5:
            break
        out.append(d)
        left -= d
    out.append(left)
    return out


def make_song(name: str, rng: np.random.Generator, target_seconds: float) -> Song:
    """A random song of about `target_seconds` (whole two-bar phrases, at least one)."""
    if target_seconds <= 0:
        raise DataError(f"make_song: target_seconds={target_seconds} (expected > 0)")
    tempo = float(round(rng.uniform(84, 116)))
    bar_s = BEATS_PER_BAR * 60.0 / tempo
    phrases_n = max(1, int(round(target_seconds / (2 * bar_s))))
    bars = 2 * phrases_n
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    chords = tuple(prog[b % len(prog)] for b in range(bars))
    lyrics: list[str] = []
    notes: list[Note] = []
    phrases: list[tuple[int, int]] = []
    degree = int(rng.integers(2, 5))
    for ph in range(phrases_n):
        first = len(lyrics)
        beat = float(ph * 2 * BEATS_PER_BAR)
        for d in _rhythm(rng, 2 * BEATS_PER_BAR - 1.0):
            bar = int(beat // BEATS_PER_BAR)
            root, minor = chords[bar]
            tones = {root % 12, (root + (3 if minor else 4)) % 12, (root + 7) % 12}
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 7))
            if beat % 2 == 0:  # strong beat: move to the nearest chord tone
                cands = [i for i in range(8) if MAJOR_SCALE[i] % 12 in tones]
                degree = min(cands, key=lambda i: (abs(i - degree), i))
            lyrics.append(_syllable(rng))
            notes.append(Note(len(lyrics) - 1, beat, d, MAJOR_SCALE[degree]))
            beat += d
        phrases.append((first, len(lyrics)))
    return Song(name, tempo, bars, tuple(lyrics), tuple(notes), tuple(phrases), chords)


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power (left, right) gains for pan in [-1 (left), 1 (right)]."""
    if not -1.0 <= pan <= 1.0:
        raise DataError(f"pan={pan} (expected -1 <= pan <= 1)")
    th = (pan + 1.0) * np.pi / 4.0
    return float(np.cos(th)), float(np.sin(th))


def _tone(
    hz: float, dur: float, sr: int, harmonics: np.ndarray, tau: float, attack: float = 0.005
) -> np.ndarray:
    """Additive tone with exponential decay; harmonics above 0.45 sr are dropped."""
    n = int(dur * sr)
    t = np.arange(n) / sr
    k = np.arange(1, harmonics.shape[0] + 1)
    keep = k * hz < 0.45 * sr
    parts = harmonics[keep, None] * np.sin(2 * np.pi * hz * k[keep, None] * t[None, :])
    env = np.exp(-t / tau) * np.clip(t / attack, 0, 1)
    return parts.sum(axis=0) * env


def _add(track: np.ndarray, x: np.ndarray, at: int) -> None:
    if at >= track.shape[0]:
        return
    m = min(x.shape[0], track.shape[0] - at)
    track[at : at + m] += x[:m]


def render_accompaniment(
    song: Song, tonic_midi: int, sr: int, total_s: float, lead_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Stereo backing track (2, T) for `song` in the key of `tonic_midi`, starting at `lead_s`."""
    t = int(round(total_s * sr))
    spb = song.seconds_per_beat
    keys = np.zeros(t)
    pluck = np.zeros(t)
    bass = np.zeros(t)
    kick = np.zeros(t)
    snare = np.zeros(t)
    hat = np.zeros(t)
    h_keys = 1.0 / np.arange(1, 7) ** 1.5
    h_pluck = 1.0 / np.arange(1, 9) ** 2
    h_bass = np.array([1.0, 0.5, 0.25])
    ks = np.arange(int(0.35 * sr)) / sr
    kick_hit = np.sin(2 * np.pi * np.cumsum(45 + 75 * np.exp(-ks / 0.03)) / sr) * np.exp(-ks / 0.12)
    sn = np.arange(int(0.25 * sr)) / sr
    hi = min(5000.0, 0.45 * sr)
    bp = scipy.signal.butter(2, [1000.0 / (sr / 2), hi / (sr / 2)], btype="band", output="sos")
    hp = scipy.signal.butter(2, min(6000.0, 0.35 * sr) / (sr / 2), btype="high", output="sos")
    for bar in range(song.bars):
        root, minor = song.chords[bar]
        third = 3 if minor else 4
        base = tonic_midi + root
        while base > tonic_midi - 3:
            base -= 12
        triad = [base, base + third, base + 7]
        bar_at = lead_s + bar * BEATS_PER_BAR * spb
        for beat in (0, 2):
            at = int(round((bar_at + beat * spb) * sr))
            for m in triad:
                _add(keys, 0.3 * _tone(float(midi_to_hz(m)), 2 * spb, sr, h_keys, 0.6), at)
            bm = base - 12
            while bm < 33:
                bm += 12
            _add(bass, 0.6 * _tone(float(midi_to_hz(bm)), 2 * spb, sr, h_bass, 0.8, 0.01), at)
        arp = [*triad, triad[0] + 12]
        for e in range(2 * BEATS_PER_BAR):
            at = int(round((bar_at + e * spb / 2) * sr))
            m = arp[[0, 1, 2, 3, 2, 1, 0, 1][e]] + 12
            _add(pluck, 0.25 * _tone(float(midi_to_hz(m)), spb, sr, h_pluck, 0.25, 0.002), at)
        for beat in range(BEATS_PER_BAR):
            at = int(round((bar_at + beat * spb) * sr))
            if beat in (0, 2) or rng.random() < 0.15:
                _add(kick, 0.9 * kick_hit, at)
            if beat in (1, 3):
                noise = scipy.signal.sosfilt(bp, rng.standard_normal(sn.shape[0]))
                body = 0.5 * np.sin(2 * np.pi * 180 * sn)
                _add(snare, 0.6 * (noise + body) * np.exp(-sn / 0.08), at)
            for half in (0, 1):
                at2 = int(round((bar_at + (beat + 0.5 * half) * spb) * sr))
                n = int(0.08 * sr)
                hh = scipy.signal.sosfilt(hp, rng.standard_normal(n)) * np.exp(
                    -np.arange(n) / sr / 0.02
                )
                _add(hat, (0.35 if half == 0 else 0.2) * hh, at2)
    out = np.zeros((2, t))
    for track, pan in (
        (keys, -0.4),
        (pluck, 0.45),
        (bass, 0.0),
        (kick, 0.0),
        (snare, -0.1),
        (hat, 0.3),
    ):
        gl, gr = pan_gains(pan)
        out[0] += gl * track
        out[1] += gr * track
    return out
