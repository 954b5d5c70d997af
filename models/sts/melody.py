"""Target melodies for speech-to-singing: a per-frame F0 contour on the STFT grid.

The network of Parekh et al. (ICASSP 2020) needs only the target ``F0`` contour (§2): in the
paper it is extracted from reference singing by a vocal melody extractor [13], and "even if
only the musical score is available, the vocal melody contour can be generated" (§2). Here
:func:`load_melody` accepts all three kinds of source and puts the contour on the frame grid
of §2.1 / §3.1 (16 kHz, 256-sample hop, centred frames: frame ``t`` at ``t * 256 / 16000`` s),
``0`` = unvoiced; §2.1 then turns it into the binary image ``C`` and stretches the speech to
its length.

* **MIDI** (``.mid`` / ``.midi``, read with ``mido``): the first track with pitched notes (or
  ``track=``); notes become a piecewise-constant contour ``440 * 2 ** ((n - 69) / 12)`` Hz,
  rests are unvoiced, overlapping notes are reduced to the highest sounding one (a monophonic
  reduction; the description says how many frames it touched). The tempo map is honoured
  (``set_tempo`` events of every track for type 0/1 files, of the chosen track for type 2).
  This is the score route of §2 without the control models of [7]: no vibrato, no
  overshoot or preparation, just the notes.
* **F0 file** (``.csv`` / ``.txt``): ``time_s, hz`` rows (comma or white space, optional header,
  ``#`` comments, further columns such as a confidence ignored; ``0`` / empty / ``nan`` =
  unvoiced), resampled with :func:`models.sts.preprocess.f0_to_frames`.
* **Sung (or hummed) reference** (any audio file libsndfile reads): pYIN
  (:func:`models.sts.metrics.pyin_f0`) after resampling to 16 kHz; the paper uses a CNN
  melody extractor [13] here, pYIN [27] is its own evaluation extractor (§3.1).

Every failure is a one-line :class:`~models.sts.StsError` naming the file.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.sts import StsError
from models.sts.preprocess import HOP, SAMPLE_RATE, f0_to_frames

MIDI_EXTENSIONS = (".mid", ".midi")
F0_EXTENSIONS = (".csv", ".txt")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus")
#: General MIDI's percussion channel (channel 10, 0-based 9): its notes are drums, not pitches
PERCUSSION_CHANNEL = 9
#: the MIDI default tempo, 120 bpm, until the first ``set_tempo``
DEFAULT_TEMPO = 500000
#: the frequency of a "none" melody (``load_melody(None, n_frames)``): A3
DEFAULT_HZ = 220.0
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class Melody:
    """A target melody on the STFT frame grid (§2.1).

    Attributes
    ----------
    f0 : ``(T,)`` float64, F0 in Hz per frame, 0 = unvoiced.
    times : ``(T,)`` frame centres in seconds, ``t * HOP / SAMPLE_RATE``.
    source : ``"midi"``, ``"f0"``, ``"audio"`` or ``"none"``.
    description : one human-readable line (file, what was read, duration, voicing).
    path : the file it came from (None for ``"none"``).
    """

    f0: np.ndarray
    times: np.ndarray
    source: str
    description: str
    path: str | None = None

    @property
    def n_frames(self) -> int:
        """``T``, the number of frames."""
        return int(self.f0.size)

    @property
    def seconds(self) -> float:
        """Duration of the singing made for it: ``(T - 1) * HOP / SAMPLE_RATE`` (the length
        :func:`models.sts.preprocess.prepare` stretches the speech to)."""
        return max(self.n_frames - 1, 0) * HOP / SAMPLE_RATE

    @property
    def voiced_fraction(self) -> float:
        """Fraction of frames with ``f0 > 0``."""
        return float(np.mean(self.f0 > 0)) if self.f0.size else 0.0


def midi_to_hz(note: float) -> float:
    """Equal temperament, A4 = MIDI 69 = 440 Hz: ``440 * 2 ** ((note - 69) / 12)``."""
    return 440.0 * 2.0 ** ((float(note) - 69.0) / 12.0)


def note_name(note: int) -> str:
    """``60 -> 'C4'`` (scientific pitch notation, MIDI 60 = middle C)."""
    return f"{_NOTE_NAMES[int(note) % 12]}{int(note) // 12 - 1}"


def frame_times(n_frames: int) -> np.ndarray:
    """Centres of `n_frames` STFT frames in seconds, ``t * HOP / SAMPLE_RATE``."""
    return np.arange(int(n_frames)) * HOP / SAMPLE_RATE


def frames_for_seconds(seconds: float) -> int:
    """The frame count whose last frame sits at `seconds` (rounded): ``round(s / hop) + 1``,
    so :attr:`Melody.seconds` is `seconds` to within half a hop."""
    return int(round(max(float(seconds), 0.0) * SAMPLE_RATE / HOP)) + 1


def load_melody(
    path_or_none: str | os.PathLike[str] | None,
    n_frames: int | None = None,
    *,
    track: int | None = None,
    hz: float = DEFAULT_HZ,
) -> Melody:
    """Read a target melody (MIDI, F0 file or sung reference) onto the STFT grid (§2, §2.1).

    Parameters
    ----------
    path_or_none : the melody file; the kind is chosen by extension (:data:`MIDI_EXTENSIONS`,
        :data:`F0_EXTENSIONS`, :data:`AUDIO_EXTENSIONS`). ``None`` gives a constant `hz`
        contour of `n_frames` frames (a monotone: for the B1 baseline of §3.1, which ignores
        the melody, and for tests).
    n_frames : force the length: the contour is cut or padded with unvoiced frames. Default:
        the source's own length (last note-off, last F0 time, or the audio's frames).
    track : MIDI only: the index in ``MidiFile.tracks`` to read (default: the first track with
        pitched notes).
    hz : the frequency of the ``None`` melody.

    Raises
    ------
    StsError
        Missing / unreadable / corrupt file, a MIDI track without notes, a contour without any
        voiced frame, an unknown extension, or `track` with a non-MIDI file.
    """
    if n_frames is not None and int(n_frames) < 1:
        raise StsError(f"n_frames={n_frames}; the melody needs at least 1 frame")
    if path_or_none is None:
        if n_frames is None:
            raise StsError("no melody file given: pass n_frames for a constant-pitch melody")
        if not (np.isfinite(hz) and hz > 0):
            raise StsError(f"hz={hz}; a constant melody needs a positive frequency")
        f0 = np.full(int(n_frames), float(hz))
        m = Melody(f0, frame_times(f0.size), "none", "", None)
        return _describe(m, f"no melody file: a constant {hz:g} Hz")
    p = Path(path_or_none)
    ext = p.suffix.lower()
    kinds = MIDI_EXTENSIONS + F0_EXTENSIONS + AUDIO_EXTENSIONS
    if ext not in kinds:
        raise StsError(f"{p}: unknown melody file type {ext or '(no extension)'!r}; give a MIDI "
                       f"file (.mid/.midi), an F0 file (.csv/.txt: time_s, hz) or a sung "
                       f"reference ({'/'.join(AUDIO_EXTENSIONS)})")
    if track is not None and ext not in MIDI_EXTENSIONS:
        raise StsError(f"{p}: track={track} applies to MIDI melodies only")
    if not p.is_file():
        raise StsError(f"{p}: no such melody file")
    if p.stat().st_size == 0:
        raise StsError(f"{p}: melody file is empty (0 bytes)")
    if ext in MIDI_EXTENSIONS:
        f0, what = _midi_contour(p, track)
        source = "midi"
    elif ext in F0_EXTENSIONS:
        f0, what = _f0_file_contour(p)
        source = "f0"
    else:
        f0, what = _audio_contour(p)
        source = "audio"
    if n_frames is not None:
        n = int(n_frames)
        if n != f0.size:
            what += f"; {'cut' if n < f0.size else 'padded (unvoiced)'} to {n} frames"
        f0 = np.pad(f0[:n], (0, max(n - f0.size, 0)))
    if not np.any(f0 > 0):
        raise StsError(f"{p}: the melody has no voiced frames ({f0.size} frames, all 0 Hz); "
                       "give a melody with notes or F0 > 0 where it sounds")
    m = Melody(f0.astype(np.float64), frame_times(f0.size), source, "", str(p))
    return _describe(m, f"{p.name}: {what}")


def _describe(m: Melody, what: str) -> Melody:
    voiced = m.f0[m.f0 > 0]
    rng = (f", {voiced.min():.0f}-{voiced.max():.0f} Hz" if voiced.size else "")
    text = (f"{what}; {m.n_frames} frames ({m.seconds:.2f} s), "
            f"{100 * m.voiced_fraction:.0f} % voiced{rng}")
    return Melody(m.f0, m.times, m.source, text, m.path)


# ---------------------------------------------------------------------------------------------
# MIDI
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One note of a MIDI track, in seconds (``end`` exclusive)."""

    start: float
    end: float
    pitch: int
    channel: int


def _read_midi(p: Path):  # type: ignore[no-untyped-def]
    import mido

    try:
        mid = mido.MidiFile(str(p))
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, EOFError):
            why = "the file ends in the middle of a chunk: truncated or corrupt"
        raise StsError(f"{p}: not a readable MIDI file ({why})") from None
    if not 0 < int(mid.ticks_per_beat) < 0x8000:
        raise StsError(f"{p}: SMPTE time division (ticks_per_beat={mid.ticks_per_beat}) is not "
                       "supported; save the file with metrical (ticks per beat) timing")
    if not mid.tracks:
        raise StsError(f"{p}: the MIDI file has no tracks")
    return mid


def _tempo_map(mid, track_index: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """``[(tick, microseconds per beat), ...]`` sorted, starting at tick 0.

    Types 0 and 1 share one tempo map (``set_tempo`` in any track, usually the first);
    type 2 tracks are independent sequences, each with its own tempo events.
    """
    tracks = [mid.tracks[track_index]] if mid.type == 2 else list(mid.tracks)
    events: list[tuple[int, int]] = []
    for tr in tracks:
        tick = 0
        for msg in tr:
            tick += int(msg.time)
            if msg.type == "set_tempo":
                events.append((tick, int(msg.tempo)))
    events.sort(key=lambda e: e[0])  # stable: for equal ticks the later event wins below
    tmap: list[tuple[int, int]] = [(0, DEFAULT_TEMPO)]
    for tick, tempo in events:
        if tick == tmap[-1][0]:
            tmap[-1] = (tick, tempo)
        else:
            tmap.append((tick, tempo))
    return tmap


def _ticks_to_seconds(ticks: np.ndarray, tmap: list[tuple[int, int]], tpb: int) -> np.ndarray:
    """Absolute ticks → seconds through the tempo map, with ``mido.tick2second`` per segment."""
    import mido

    starts = np.array([t for t, _ in tmap], dtype=np.int64)
    base = [0.0]
    for (t0, tempo), (t1, _) in itertools.pairwise(tmap):
        base.append(base[-1] + mido.tick2second(t1 - t0, tpb, tempo))
    out = np.empty(ticks.size)
    seg = np.searchsorted(starts, ticks, side="right") - 1
    for i, (tick, s) in enumerate(zip(ticks.tolist(), seg.tolist(), strict=True)):
        out[i] = base[s] + mido.tick2second(tick - tmap[s][0], tpb, tmap[s][1])
    return out


def _track_notes(track) -> tuple[list[tuple[int, int, int, int]], int]:  # type: ignore[no-untyped-def]
    """``([(start_tick, end_tick, pitch, channel)], end_of_track_tick)`` of one track.

    A ``note_on`` with velocity 0 is a ``note_off``; repeated note-ons of the same key are
    closed first-in first-out; notes still sounding at the end of the track end there;
    zero-length notes are dropped.
    """
    tick = 0
    open_notes: dict[tuple[int, int], list[int]] = {}
    notes: list[tuple[int, int, int, int]] = []
    for msg in track:
        tick += int(msg.time)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault((msg.channel, msg.note), []).append(tick)
        elif msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
            starts = open_notes.get((msg.channel, msg.note))
            if starts:
                notes.append((starts.pop(0), tick, int(msg.note), int(msg.channel)))
    for (channel, pitch), starts in open_notes.items():
        notes.extend((s, tick, pitch, channel) for s in starts)
    return [n for n in notes if n[1] > n[0]], tick


def midi_notes(path: str | os.PathLike[str], track: int | None = None
               ) -> tuple[list[Note], int, str]:
    """The notes (in seconds, sorted by start) of one MIDI track: ``(notes, index, name)``.

    Percussion (channel 10) is skipped: drum keys are instruments, not pitches. Without
    `track`, the first track with pitched notes is read.

    Raises
    ------
    StsError
        Unreadable file, `track` out of range, or no pitched notes.
    """
    p = Path(path)
    mid = _read_midi(p)
    n_tracks = len(mid.tracks)
    if track is not None and not 0 <= int(track) < n_tracks:
        raise StsError(f"{p}: track {track} does not exist; the file has {n_tracks} track(s), "
                       f"0..{n_tracks - 1}")
    candidates = [int(track)] if track is not None else list(range(n_tracks))
    for index in candidates:
        raw, _ = _track_notes(mid.tracks[index])
        raw = [n for n in raw if n[3] != PERCUSSION_CHANNEL]
        if not raw:
            continue
        tmap = _tempo_map(mid, index)
        ticks = np.array([[s, e] for s, e, _, _ in raw], dtype=np.int64)
        secs = _ticks_to_seconds(ticks.reshape(-1), tmap, int(mid.ticks_per_beat)).reshape(-1, 2)
        notes = sorted((Note(float(a), float(b), pitch, ch)
                        for (a, b), (_, _, pitch, ch) in zip(secs, raw, strict=True)),
                       key=lambda n: (n.start, n.pitch))
        return notes, index, str(getattr(mid.tracks[index], "name", "") or "")
    where = f"track {track}" if track is not None else f"any of its {n_tracks} track(s)"
    raise StsError(f"{p}: no notes in {where} (percussion channel 10 ignored); give a MIDI file "
                   "with a melody")


def notes_to_frames(notes: list[Note], n_frames: int) -> tuple[np.ndarray, int]:
    """Per-frame F0 of `notes` on the STFT grid and the number of frames where notes overlapped.

    Frame ``t`` (centre ``t * HOP / SAMPLE_RATE`` s) is voiced by every note with
    ``start <= centre < end``; when several sound, the highest pitch wins (monophonic
    reduction). Frames in no note (rests) are 0.
    """
    centres = frame_times(n_frames)
    f0 = np.zeros(int(n_frames))
    count = np.zeros(int(n_frames), dtype=np.int64)
    for n in notes:
        a = int(np.searchsorted(centres, n.start, side="left"))
        b = int(np.searchsorted(centres, n.end, side="left"))
        if b > a:
            f0[a:b] = np.maximum(f0[a:b], midi_to_hz(n.pitch))
            count[a:b] += 1
    return f0, int(np.count_nonzero(count > 1))


def _midi_contour(p: Path, track: int | None) -> tuple[np.ndarray, str]:
    notes, index, name = midi_notes(p, track)
    end = max(n.end for n in notes)
    f0, overlapped = notes_to_frames(notes, frames_for_seconds(end))
    lo, hi = min(n.pitch for n in notes), max(n.pitch for n in notes)
    label = f"track {index}" + (f" {name!r}" if name else "")
    what = (f"MIDI {label}, {len(notes)} note(s) {note_name(lo)}-{note_name(hi)}, "
            f"{end:.2f} s")
    if overlapped:
        what += (f"; overlapping notes in {overlapped} frame(s) reduced to the highest "
                 "(monophonic)")
    return f0, what


# ---------------------------------------------------------------------------------------------
# F0 files
# ---------------------------------------------------------------------------------------------

_SPLIT = re.compile(r"[,;\s]+")


def _parse_value(text: str) -> float:
    return math.nan if text == "" else float(text)


def read_f0_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(times_s, hz)`` of a two-column F0 file (0 / NaN = unvoiced).

    Columns are split at commas, semicolons or white space; blank lines and ``#`` comments are
    skipped; a first line that does not start with a number is a header; columns after the
    second (e.g. a confidence) are ignored; an empty, missing or ``nan`` F0 field is unvoiced.

    Raises
    ------
    StsError
        Undecodable text, a malformed line (named by number), no rows, or bad times.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise StsError(f"{p}: not a readable text F0 file ({exc})") from None
    times: list[float] = []
    hz: list[float] = []
    first = True
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        fields = [f.strip() for f in (body.split(",") if "," in body else _SPLIT.split(body))]
        try:
            t = float(fields[0])
        except ValueError:
            if first:  # a header line
                first = False
                continue
            raise StsError(f"{p}: line {lineno} ({body[:40]!r}) is not 'time_s, hz'; expected "
                           "numeric columns") from None
        try:
            f = _parse_value(fields[1]) if len(fields) > 1 else math.nan
        except ValueError:
            raise StsError(f"{p}: line {lineno} ({body[:40]!r}): F0 {fields[1]!r} is not a "
                           "number (use 0 or leave it empty for unvoiced)") from None
        first = False
        times.append(t)
        hz.append(f)
    if not times:
        raise StsError(f"{p}: no 'time_s, hz' rows")
    t_arr, f_arr = np.asarray(times), np.asarray(hz)
    if not np.all(np.isfinite(t_arr)) or (t_arr.size > 1 and np.any(np.diff(t_arr) <= 0)):
        raise StsError(f"{p}: times must be finite and strictly increasing")
    if np.any(np.isinf(f_arr)):
        raise StsError(f"{p}: F0 contains Inf; use 0 or an empty field for unvoiced")
    f_arr = np.where(np.isnan(f_arr) | (f_arr < 0), 0.0, f_arr)
    return t_arr, f_arr


def _f0_file_contour(p: Path) -> tuple[np.ndarray, str]:
    t, f = read_f0_file(p)
    if not np.any(f > 0):
        raise StsError(f"{p}: the melody has no voiced frames ({t.size} rows, all 0 Hz); give a "
                       "contour with F0 > 0 where it sounds")
    n = frames_for_seconds(t[-1])
    try:
        f0 = f0_to_frames(t, f, n)
    except StsError as exc:
        raise StsError(f"{p}: {exc}") from None
    return f0, f"F0 contour, {t.size} points over {t[0]:.2f}-{t[-1]:.2f} s"


# ---------------------------------------------------------------------------------------------
# Sung reference
# ---------------------------------------------------------------------------------------------


def _audio_contour(p: Path) -> tuple[np.ndarray, str]:
    from models.audio import load_audio
    from models.errors import ModelsError
    from models.sts.metrics import pyin_f0

    try:
        wav, _ = load_audio(p, sample_rate=SAMPLE_RATE, channels=1)
    except ModelsError as exc:
        raise StsError(str(exc)) from None
    try:
        _, f0 = pyin_f0(wav, sr=SAMPLE_RATE)
    except StsError as exc:
        raise StsError(f"{p}: {exc}") from None
    return f0, f"sung reference, pYIN F0 of {wav.size / SAMPLE_RATE:.2f} s"
