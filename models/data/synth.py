"""Source–filter singing and speaking voice, written for this project in numpy.

The classic source–filter model of speech (Fant 1960; Klatt 1980, "Software for a cascade /
parallel formant synthesizer", JASA 67): a glottal source excites a vocal-tract filter.

Source. A band-limited impulse train (the closed form of a sum of equal-amplitude cosine
harmonics up to 0.45 sr, so nothing aliases) driven by the instantaneous phase of the F0 track,
with per-cycle **jitter** (random F0 perturbation held for one glottal cycle) and **shimmer**
(per-cycle amplitude perturbation); the glottal spectral slope (**tilt**, dB / octave above
~150 Hz, source and lip radiation together) is applied in the filter. **Breathiness** adds
aspiration noise modulated by the glottal cycle (strongest in the open phase).

Filter. Per 16 ms frame a log-magnitude envelope is built from a cascade of second-order
resonators ``|H_k(f)| = F_k^2 / sqrt((F_k^2 - f^2)^2 + (B_k f)^2)`` (F1–F5; the analog form of
Klatt's cascade branch, unity gain at DC, peak gain F/B), an anti-resonance + pole pair for
nasals (and a little nasality on vowels), and the source tilt; it is turned into a minimum-phase
filter by the real cepstrum and applied by overlap-add. Formant targets per phoneme come from
Peterson & Barney (1952) adult-male averages, scaled per singer by the vocal-tract length factor
``formant_scale`` and per-formant offsets (an "accent"), smoothed across frames (coarticulation).

Consonants. Fricatives (s, f) are noise shaped by a log-Gaussian spectral band; plosives (p, t,
k) are a closure (silence), a shaped noise burst and aspiration through the next vowel's tract;
nasals (m, n) and the liquid (l) are voiced with their own low formants.

Renderings. :func:`sing` stretches each syllable's vowel over its note (onset consonant at the
note start, coda at its end), with portamento (Hann-smoothed pitch steps), delayed vibrato and
slow drift; :func:`speak` uses speech durations and a declining phrase contour with accents.
Both return the waveform with per-sample ground-truth F0 (0 where the voice source is off) and
phoneme indices; :func:`frame_labels` samples them at frame centres (``i * hop``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.signal

from models.errors import DataError

PHONEMES: tuple[str, ...] = ("sil", "a", "e", "i", "o", "u", "m", "n", "l", "s", "f", "p", "t", "k")
PHONEME_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONEMES)}
VOWELS: tuple[str, ...] = ("a", "e", "i", "o", "u")
CONSONANTS: tuple[str, ...] = ("m", "n", "l", "s", "f", "p", "t", "k")
NASALS = ("m", "n")
FRICATIVES = ("s", "f")
PLOSIVES = ("p", "t", "k")

# (F1..F4 Hz, B1..B4 Hz) for a scale-1.0 (adult-male-like) tract; vowels: Peterson & Barney
# (1952) male averages; nasals / liquid: typical murmur formants (Stevens 1998, ch. 9-10).
_FORMANTS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "a": ((730, 1090, 2440, 3400), (90, 110, 170, 250)),
    "e": ((530, 1840, 2480, 3500), (70, 100, 160, 250)),
    "i": ((270, 2290, 3010, 3700), (55, 100, 170, 250)),
    "o": ((570, 840, 2410, 3400), (80, 90, 160, 250)),
    "u": ((300, 870, 2240, 3400), (60, 90, 150, 250)),
    "m": ((250, 1100, 2300, 3300), (80, 200, 250, 300)),
    "n": ((250, 1500, 2500, 3400), (80, 200, 250, 300)),
    "l": ((360, 1300, 2700, 3400), (70, 150, 200, 250)),
}
_F5, _B5 = 4500.0, 350.0
_ANTIFORMANT = {"m": 900.0, "n": 1600.0}  # nasal zero (Hz, scale 1.0)
_VOWEL_ZERO = 550.0  # zero used for vowel nasality
# Voiced source level per voiced phoneme (vowels 1).
_VOICE_LEVEL = {**{v: 1.0 for v in VOWELS}, "m": 0.6, "n": 0.6, "l": 0.8}
# Noise band per obstruent: (centre Hz at scale 1, width in octaves (std), level).
_NOISE = {
    "s": (5500.0, 0.45, 0.55),
    "f": (3200.0, 1.40, 0.30),
    "p": (900.0, 1.00, 1.0),
    "t": (4000.0, 0.70, 1.0),
    "k": (2000.0, 0.60, 1.0),
}
_NOISE_IDS = {p: i for i, p in enumerate(_NOISE)}

# Per-singer spectral colouring (smooth, log-frequency interpolated): the resonances of the
# sinuses / piriform fossae and the mouth's radiation differ between people.
COLOUR_HZ: tuple[float, ...] = (900.0, 1500.0, 2300.0, 3200.0, 4500.0, 6500.0)
TARGET_RMS_DB = -20.0
ASP_GAIN = 0.03
PEAK_CEILING = 0.9


@dataclass(frozen=True)
class VoiceIdentity:
    """What makes a synthetic singer sound like themselves (stored in meta.json)."""

    name: str
    voice_type: str  # "bass", "baritone", "alto" or "soprano"
    formant_scale: float  # vocal-tract length factor: formant frequencies are multiplied by it
    formant_offsets: tuple[float, float, float, float]  # extra per-formant factors (accent)
    bandwidth_scale: float  # formant bandwidth factor
    tilt_db: float  # source spectral slope, dB / octave above ~150 Hz (negative)
    breathiness: float  # aspiration noise relative to the voiced source
    jitter: float  # per-cycle relative F0 perturbation (std)
    shimmer: float  # per-cycle relative amplitude perturbation (std)
    nasality: float  # 0..1, depth of a nasal zero on vowels
    vibrato_hz: float
    vibrato_cents: float
    portamento_s: float  # length of the pitch glide between notes
    range_midi: tuple[int, int]  # comfortable singing range (MIDI notes)
    speech_f0_hz: float  # mean speaking F0
    colour_db: tuple[float, ...] = (0.0,) * len(COLOUR_HZ)  # gains (dB) at COLOUR_HZ

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["formant_offsets"] = list(self.formant_offsets)
        d["range_midi"] = list(self.range_midi)
        d["colour_db"] = list(self.colour_db)
        return d


class Segment(NamedTuple):
    """One phoneme from sample `start` to `end` (exclusive)."""

    phone: str
    start: int
    end: int


@dataclass
class VoiceRender:
    """A rendered clip with per-sample ground truth."""

    wav: np.ndarray  # (T,) float32
    f0: np.ndarray  # (T,) float32 Hz, 0 where the voice source is off
    phonemes: np.ndarray  # (T,) int16 index into PHONEMES
    segments: list[Segment]
    sample_rate: int


@dataclass(frozen=True)
class NoteEvent:
    """A sung syllable: `syllable` index, start / duration in seconds and MIDI pitch."""

    syllable: int
    start_s: float
    dur_s: float
    midi: float


def split_syllable(syllable: str) -> tuple[str, str, str]:
    """``"kal" -> ("k", "a", "l")``: onset consonant, vowel, coda consonant ('' if none)."""
    vow = [i for i, c in enumerate(syllable) if c in VOWELS]
    bad = [c for c in syllable if c not in VOWELS and c not in CONSONANTS]
    if len(vow) != 1 or bad or len(syllable) > 3 or vow[0] > 1 or len(syllable) - vow[0] > 2:
        raise DataError(
            f"syllable {syllable!r}: expected (C)V(C) with one vowel of {VOWELS} and consonants "
            f"of {CONSONANTS}"
        )
    i = vow[0]
    return syllable[:i], syllable[i], syllable[i + 1 :]


def _smooth(x: np.ndarray, n: float) -> np.ndarray:
    """Hann-kernel smoothing over about `n` samples with edge padding (length preserved)."""
    n = max(int(n) | 1, 3)
    k = np.hanning(n + 2)[1:-1]
    k /= k.sum()
    pad = n // 2
    xp = np.pad(x, (pad, pad), mode="edge")
    return scipy.signal.oaconvolve(xp, k, mode="valid")


def _fill_nearest(idx: np.ndarray) -> np.ndarray:
    """Replace -1 entries by the previous valid entry (or the next one at the start)."""
    out = idx.copy()
    valid = out >= 0
    if not valid.any():
        return out
    pos = np.where(valid, np.arange(out.size), 0)
    np.maximum.accumulate(pos, out=pos)
    out = out[pos]
    first = int(np.argmax(valid))
    out[:first] = idx[first]
    return out


def _min_phase(log_mag: np.ndarray, nfft: int) -> np.ndarray:
    """Minimum-phase spectrum with the given natural-log magnitude (..., nfft//2+1)."""
    c = np.fft.irfft(log_mag, n=nfft, axis=-1)
    half = nfft // 2
    c[..., 1:half] *= 2.0
    c[..., half + 1 :] = 0.0
    return np.exp(np.fft.rfft(c, n=nfft, axis=-1))


def _resonators(f: np.ndarray, freqs: np.ndarray, bws: np.ndarray) -> np.ndarray:
    """Sum over formants of log |H_k(f)|: f (K,), freqs / bws (M, nf) -> (M, K)."""
    out = np.zeros((freqs.shape[0], f.shape[0]))
    f2 = (f * f)[None, :]
    for k in range(freqs.shape[1]):
        fk2 = (freqs[:, k] ** 2)[:, None]
        bk = bws[:, k][:, None]
        out += np.log(fk2) - 0.5 * np.log((fk2 - f2) ** 2 + (bk**2) * f2)
    return out


class _FrameGrid(NamedTuple):
    n: int  # analysis window
    hop: int
    nfft: int
    frames: int
    centres: np.ndarray  # (M,) sample index of each frame centre (clipped)


def _grid(t: int, sr: int) -> _FrameGrid:
    n = int(2 ** round(np.log2(0.032 * sr)))
    hop = n // 2
    frames = (t + n) // hop + 2
    centres = np.clip(np.arange(frames) * hop, 0, t - 1)
    return _FrameGrid(n, hop, 2 * n, frames, centres)


def _analyse(x: np.ndarray, g: _FrameGrid) -> np.ndarray:
    """Hann-windowed frames centred on ``m * hop``, zero-padded to nfft: (M, nfft//2+1)."""
    total = (g.frames - 1) * g.hop + g.n
    xp = np.zeros(total)
    xp[g.n // 2 : g.n // 2 + x.shape[0]] = x
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(g.n) / g.n)
    fr = np.lib.stride_tricks.sliding_window_view(xp, g.n)[:: g.hop][: g.frames]
    return np.fft.rfft(fr * win, n=g.nfft, axis=-1)


def _synthesise(spec: np.ndarray, g: _FrameGrid, t: int) -> np.ndarray:
    """Overlap-add the filtered frames back to a (t,) signal (periodic Hann at 50 % sums to 1)."""
    y = np.fft.irfft(spec, n=g.nfft, axis=-1)  # (M, nfft)
    blocks = g.nfft // g.hop
    out = np.zeros((g.frames + blocks, g.hop))
    for j in range(blocks):
        out[j : j + g.frames] += y[:, j * g.hop : (j + 1) * g.hop]
    flat = out.reshape(-1)
    return flat[g.n // 2 : g.n // 2 + t]


def render_voice(
    segments: Sequence[Segment],
    f0: np.ndarray,
    voice: VoiceIdentity,
    sr: int,
    rng: np.random.Generator,
    *,
    jitter_scale: float = 1.0,
) -> VoiceRender:
    """Render a phoneme sequence with a per-sample F0 contour (Hz, > 0 everywhere)."""
    f0 = np.asarray(f0, dtype=np.float64)
    t = f0.shape[0]
    if t == 0 or not np.all(f0 > 0) or not np.isfinite(f0).all():
        raise DataError("render_voice: f0 must be a non-empty, finite, positive (T,) contour")
    phones = np.zeros(t, dtype=np.int16)
    v_gate = np.zeros(t)
    v_level = np.zeros(t)
    n_gate = np.zeros(t)
    asp_gate = np.zeros(t)
    noise_id = np.full(t, -1, dtype=np.int64)
    tract_id = np.full(t, -1, dtype=np.int64)
    tract_phones = list(_FORMANTS)
    for seg in segments:
        a, b, p = max(seg.start, 0), min(seg.end, t), seg.phone
        if p not in PHONEME_INDEX:
            raise DataError(f"render_voice: unknown phoneme {p!r}; valid: {PHONEMES}")
        if b <= a:
            continue
        phones[a:b] = PHONEME_INDEX[p]
        if p in _FORMANTS:
            v_gate[a:b] = 1.0
            v_level[a:b] = _VOICE_LEVEL[p]
            tract_id[a:b] = tract_phones.index(p)
        elif p in FRICATIVES:
            n_gate[a:b] = _NOISE[p][2]
            noise_id[a:b] = _NOISE_IDS[p]
        elif p in PLOSIVES:
            d = b - a
            c = a + int(0.55 * d)
            r = c + max(int(0.15 * d), 1)
            n_gate[c:r] = _NOISE[p][2]
            asp_gate[r:b] = 0.35
            noise_id[a:b] = _NOISE_IDS[p]

    ms = sr / 1000.0
    v_gate_s = _smooth(v_gate, 15 * ms)
    v_amp = v_gate_s * _smooth(v_level, 15 * ms)
    n_amp = _smooth(n_gate, 4 * ms)
    asp_amp = _smooth(asp_gate, 6 * ms)

    # --- glottal source: band-limited impulse train with jitter and shimmer ---
    cyc0 = np.cumsum(f0) / sr
    k0 = cyc0.astype(np.int64)
    jit = 1.0 + voice.jitter * jitter_scale * rng.standard_normal(int(k0[-1]) + 2)
    f0a = f0 * jit[k0]
    cyc = np.cumsum(f0a) / sr
    kk = cyc.astype(np.int64)
    shim = 1.0 + voice.shimmer * rng.standard_normal(int(kk[-1]) + 2)
    phi = 2.0 * np.pi * (cyc - kk)
    h = np.maximum(np.floor(0.45 * sr / f0a), 1.0)
    den = np.sin(phi / 2.0)
    small = np.abs(den) < 1e-9
    blit = np.where(small, h, (np.sin((h + 0.5) * phi) / np.where(small, 1.0, den) - 1.0) / 2.0)
    voiced_src = blit * shim[kk] * v_amp
    open_mod = 0.7 + 0.3 * (0.5 - 0.5 * np.cos(phi))
    # aspiration relative to the voiced power, which grows with the number of harmonics
    asp_scale = np.sqrt(np.minimum(h / (0.45 * sr / 150.0), 1.0))
    breath = voice.breathiness * 2.0 * v_amp * open_mod * asp_scale
    asp = rng.standard_normal(t) * (breath + asp_amp)
    noise_src = rng.standard_normal(t) * n_amp

    # --- per-frame filters ---
    g = _grid(t, sr)
    f = np.fft.rfftfreq(g.nfft, 1.0 / sr)
    f[0] = f[1] * 0.5
    tid = _fill_nearest(tract_id)[g.centres]
    if (tid < 0).all():
        tid = np.zeros_like(tid)
    tab_f = np.array([[*_FORMANTS[p][0], _F5] for p in tract_phones])
    tab_b = np.array([[*_FORMANTS[p][1], _B5] for p in tract_phones])
    scale = voice.formant_scale * np.array([*voice.formant_offsets, 1.0])
    fr_f = tab_f[tid] * scale
    fr_b = tab_b[tid] * voice.bandwidth_scale
    kern = np.array([0.25, 0.5, 0.25])
    for arr in (fr_f, fr_b):
        for j in range(arr.shape[1]):
            arr[:, j] = np.convolve(np.pad(arr[:, j], 1, mode="edge"), kern, mode="valid")
    # formant tuning (Sundberg 1987, "The Science of the Singing Voice", ch. 6): singers raise F1
    # above F0 on high notes instead of letting the fundamental fall below the first resonance.
    fr_f[:, 0] = np.maximum(fr_f[:, 0], 1.1 * f0a[g.centres])
    fr_f[:, 1] = np.maximum(fr_f[:, 1], fr_f[:, 0] * 1.3)
    nyq = sr / 2.0
    fr_f = np.minimum(fr_f, 0.95 * nyq)
    log_v = _resonators(f, fr_f, fr_b)
    # nasal pole-zero pair; vowels get `nasality` of a fixed low zero.
    tp = np.array(tract_phones)[tid]
    zf = np.where(tp == "m", _ANTIFORMANT["m"], np.where(tp == "n", _ANTIFORMANT["n"], _VOWEL_ZERO))
    zmix = np.where(np.isin(tp, NASALS), 1.0, np.where(np.isin(tp, VOWELS), voice.nasality, 0.0))
    zmix = np.convolve(np.pad(zmix, 1, mode="edge"), kern, mode="valid")
    zf = zf * voice.formant_scale
    zp = zf * 1.3
    f2 = (f * f)[None, :]
    zf2, zp2 = (zf**2)[:, None], (zp**2)[:, None]
    log_zero = 0.5 * np.log((zf2 - f2) ** 2 + (100.0**2) * f2) - np.log(zf2)
    log_pole = np.log(zp2) - 0.5 * np.log((zp2 - f2) ** 2 + (150.0**2) * f2)
    log_v += zmix[:, None] * (log_zero + log_pole - np.log(zp2 / zf2))
    tilt = (voice.tilt_db / (20 * np.log10(2))) * 0.5 * np.log1p((f / 150.0) ** 2)
    if len(voice.colour_db) != len(COLOUR_HZ):
        raise DataError(f"colour_db: expected {len(COLOUR_HZ)} gains, got {len(voice.colour_db)}")
    colour = np.interp(np.log(f), np.log(COLOUR_HZ), voice.colour_db) * (np.log(10) / 20)
    # glottal formant (Doval, d'Alessandro & Henrich 2006): the glottal flow spectrum peaks near
    # F0, so H1 stands out above H2 (+8 dB bump, 0.5-octave wide, centred on F0).
    f0c = f0a[g.centres][:, None]
    glottal = (8.0 * np.log(10) / 20) * np.exp(-0.5 * (np.log2(f[None, :] / f0c) / 0.5) ** 2)
    log_voiced = log_v + (tilt + colour)[None, :] + glottal
    # aspiration: turbulence noise, a flat slope above a 2nd-order high-pass at 1.2 kHz
    asp_hp = np.log(f * f / (f * f + 1200.0**2))
    log_asp = log_v + (0.3 * tilt + colour + asp_hp)[None, :]
    # consonant noise bands
    nid = _fill_nearest(noise_id)[g.centres]
    nid = np.where(nid < 0, 0, nid)
    nz = list(_NOISE.values())
    centre = np.array([c for c, _, _ in nz])[nid] * np.sqrt(voice.formant_scale)
    centre = np.minimum(centre, 0.8 * nyq)
    width = np.array([w for _, w, _ in nz])[nid]
    lg = -0.5 * ((np.log2(f[None, :] / centre[:, None])) / width[:, None]) ** 2
    lg -= 0.5 * np.log(np.mean(np.exp(2 * lg), axis=1, keepdims=True))  # unit RMS gain
    h_voiced = _min_phase(log_voiced, g.nfft)
    h_asp = _min_phase(log_asp, g.nfft)
    h_noise = _min_phase(lg, g.nfft)
    spec = _analyse(voiced_src, g) * h_voiced * 0.05 + _analyse(asp, g) * h_asp * ASP_GAIN
    spec += _analyse(noise_src, g) * h_noise * 0.035
    wav = _synthesise(spec, g, t)

    # --- level: RMS of the active part to TARGET_RMS_DB, peak under the ceiling ---
    active = (v_gate_s > 0.5) | (n_amp > 0.05)
    rms = float(np.sqrt(np.mean(wav[active] ** 2))) if active.any() else 0.0
    if rms > 0:
        wav = wav * (10 ** (TARGET_RMS_DB / 20.0) / rms)
    peak = float(np.max(np.abs(wav)))
    if peak > PEAK_CEILING:
        wav = wav * (PEAK_CEILING / peak)
    gt_f0 = np.where(v_gate_s > 0.5, f0a, 0.0).astype(np.float32)
    return VoiceRender(wav.astype(np.float32), gt_f0, phones, list(segments), sr)


def midi_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _onset_dur(c: str, rng: np.random.Generator) -> float:
    if c in PLOSIVES:
        return float(rng.uniform(0.06, 0.09))
    if c in FRICATIVES:
        return float(rng.uniform(0.08, 0.11))
    return float(rng.uniform(0.05, 0.075))


def _slow_noise(t: int, sr: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Sum of three random low-frequency sinusoids, unit peak-ish amplitude: (t,)."""
    tt = np.arange(t) / sr
    out = np.zeros(t)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(lo, hi) * tt + rng.uniform(0, 2 * np.pi)) / 3.0
    return out


class Performance(NamedTuple):
    """What a singer does with a score, before any voice is heard: the phoneme timing and the
    expressive per-sample F0 contour (Hz, > 0 everywhere; portamento, vibrato and drift in)."""

    segments: list[Segment]
    f0: np.ndarray


def sing(
    syllables: Sequence[str],
    notes: Sequence[NoteEvent],
    voice: VoiceIdentity,
    sr: int,
    total_s: float,
    rng: np.random.Generator,
) -> VoiceRender:
    """Sing `notes` (one syllable each, vowel stretched over the note) in a `total_s` clip."""
    perf = perform(syllables, notes, voice, sr, total_s, rng)
    return render_voice(perf.segments, perf.f0, voice, sr, rng)


def perform(
    syllables: Sequence[str],
    notes: Sequence[NoteEvent],
    voice: VoiceIdentity,
    sr: int,
    total_s: float,
    rng: np.random.Generator,
) -> Performance:
    """The :class:`Performance` half of :func:`sing` (same draws from `rng`, in the same order).

    :func:`render_voice` of a performance with *another* singer's voice (its F0 moved to that
    singer's key) is the parallel ground truth of a conversion: same timing and expression,
    other timbre."""
    t = int(round(total_s * sr))
    if not notes:
        raise DataError("sing: no notes")
    segs: list[Segment] = []
    midi = np.full(t, np.nan)
    vib_env = np.zeros(t)
    cursor = 0
    for ev in notes:
        a = int(round(ev.start_s * sr))
        b = min(int(round((ev.start_s + ev.dur_s) * sr)), t)
        if a < cursor or b <= a:
            raise DataError(f"sing: note {ev} overlaps the previous one or is empty")
        if a > cursor:
            segs.append(Segment("sil", cursor, a))
        onset, vowel, coda = split_syllable(syllables[ev.syllable])
        d = b - a
        on = int(min(_onset_dur(onset, rng), 0.3 * ev.dur_s) * sr) if onset else 0
        cd = int(min(rng.uniform(0.06, 0.08), 0.2 * ev.dur_s) * sr) if coda else 0
        if onset:
            segs.append(Segment(onset, a, a + on))
        segs.append(Segment(vowel, a + on, b - cd))
        if coda:
            segs.append(Segment(coda, b - cd, b))
        midi[a:b] = ev.midi
        if ev.dur_s >= 0.3:
            tt = (np.arange(d) / sr) - 0.12
            ramp = np.clip(tt / 0.3, 0.0, 1.0)
            tail = np.clip((d / sr - np.arange(d) / sr) / 0.05, 0.0, 1.0)
            vib_env[a:b] = ramp * tail
        cursor = b
    if cursor < t:
        segs.append(Segment("sil", cursor, t))
    # gaps take the next note's pitch (clean onsets after rests), the tail the last one
    valid = ~np.isnan(midi)
    idx = np.where(valid, np.arange(t), t)
    idx = np.minimum.accumulate(idx[::-1])[::-1]
    last = int(np.nonzero(valid)[0][-1])
    idx = np.where(idx >= t, last, idx)
    midi = midi[idx]
    midi = _smooth(midi, voice.portamento_s * sr)
    rate = voice.vibrato_hz * (1.0 + 0.04 * _slow_noise(t, sr, rng, 0.1, 0.4))
    vib_phase = 2 * np.pi * np.cumsum(rate) / sr + rng.uniform(0, 2 * np.pi)
    midi = midi + (voice.vibrato_cents / 100.0) * vib_env * np.sin(vib_phase)
    midi = midi + 0.08 * _slow_noise(t, sr, rng, 0.15, 0.6)
    return Performance(segs, midi_to_hz(midi))


def speak(
    syllables: Sequence[str],
    phrases: Sequence[tuple[int, int]],
    voice: VoiceIdentity,
    sr: int,
    rng: np.random.Generator,
    *,
    lead_s: float = 0.25,
    tail_s: float = 0.3,
) -> VoiceRender:
    """Speak the lyrics phrase by phrase: speech durations, declining contour with accents."""
    if not phrases:
        raise DataError("speak: no phrases")
    plan: list[tuple[str, float]] = [("sil", lead_s)]
    accents: list[tuple[float, float]] = []  # (time s, semitones)
    phrase_spans: list[tuple[float, float]] = []
    now = lead_s
    for pi, (s0, s1) in enumerate(phrases):
        start = now
        for si in range(s0, s1):
            onset, vowel, coda = split_syllable(syllables[si])
            stressed = si == s0 or rng.random() < 0.35
            if onset:
                d = _onset_dur(onset, rng)
                plan.append((onset, d))
                now += d
            dv = rng.uniform(0.09, 0.15) * (1.4 if stressed else 1.0) * (1.5 if si == s1 - 1 else 1)
            plan.append((vowel, dv))
            if stressed:
                accents.append((now + dv / 2, float(rng.uniform(1.5, 3.0))))
            now += dv
            if coda:
                d = float(rng.uniform(0.05, 0.08))
                plan.append((coda, d))
                now += d
        phrase_spans.append((start, now))
        pause = float(rng.uniform(0.25, 0.4)) if pi < len(phrases) - 1 else tail_s
        plan.append(("sil", pause))
        now += pause
    t = int(round(now * sr))
    segs: list[Segment] = []
    cur = 0.0
    for p, d in plan:
        a, b = int(round(cur * sr)), int(round((cur + d) * sr))
        segs.append(Segment(p, a, min(b, t)))
        cur += d
    tt = np.arange(t) / sr
    base = 69.0 + 12.0 * np.log2(voice.speech_f0_hz / 440.0)
    st = np.zeros(t)
    for a_s, b_s in phrase_spans:
        m = (tt >= a_s) & (tt < b_s)
        frac = (tt[m] - a_s) / max(b_s - a_s, 1e-3)
        st[m] = 2.0 - 4.5 * frac - 1.5 * np.clip((frac - 0.85) / 0.15, 0, 1)
    # hold the contour through pauses (the source is off there)
    inside = np.zeros(t, dtype=bool)
    for a_s, b_s in phrase_spans:
        inside |= (tt >= a_s) & (tt < b_s)
    idx = np.where(inside, np.arange(t), -1)
    st = st[_fill_nearest(idx)]
    for c, amp in accents:
        st += amp * np.exp(-0.5 * ((tt - c) / 0.07) ** 2)
    st += 0.3 * _slow_noise(t, sr, rng, 0.5, 2.0)
    st = _smooth(st, 0.04 * sr)
    return render_voice(segs, midi_to_hz(base + st), voice, sr, rng, jitter_scale=1.5)


def frame_labels(render: VoiceRender, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth per frame (``1 + T // hop`` frames, frame i at sample ``i * hop``).

    Returns ``(f0 Hz float32, phonemes int16)``.
    """
    t = render.wav.shape[0]
    idx = np.minimum(np.arange(1 + t // hop) * hop, t - 1)
    return render.f0[idx].astype(np.float32), render.phonemes[idx].astype(np.int16)
