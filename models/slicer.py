"""Silence-based slicer: cut long vocal recordings into clips under 30 s, drop silent ones.

This is LHQ-SVC's data preparation (§IV.A, "Audio Slicing": clips shorter than 30 s, segments
without vocals discarded, cut at silences). The algorithm follows the idea of the open-source
Audio Slicer the paper cites (ref. 22), written from its description:

1. frame RMS in dBFS (window 4 hops, hop `hop_s`);
2. a silence is a run of frames below `threshold_db` lasting at least `min_interval_s`;
3. a silence becomes a cut only when the clip since the previous cut is at least
   `min_length_s` long; a long silence is removed keeping `max_sil_kept_s` on each side,
   a short one is cut at its quietest frame;
4. a clip still longer than `max_length_s` is split at its quietest frame in the last half
   of the allowed window, repeatedly;
5. clips with no frame above the threshold are dropped.

Stereo input is sliced on its mono downmix; the returned sample ranges apply to every channel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import check_audio, load_audio, write_wav
from models.errors import AudioError


@dataclass(frozen=True)
class SlicerConfig:
    threshold_db: float = -40.0
    min_length_s: float = 5.0
    min_interval_s: float = 0.3
    hop_s: float = 0.01
    max_sil_kept_s: float = 0.5
    max_length_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.min_length_s >= self.min_interval_s >= self.hop_s > 0:
            raise AudioError(
                "slicer: expected min_length_s >= min_interval_s >= hop_s > 0, got "
                f"{self.min_length_s}, {self.min_interval_s}, {self.hop_s}"
            )
        if self.max_length_s <= self.min_length_s:
            raise AudioError(
                f"slicer: max_length_s ({self.max_length_s}) must exceed "
                f"min_length_s ({self.min_length_s})"
            )


def frame_rms_db(wav: np.ndarray, hop: int) -> np.ndarray:
    """RMS per frame in dBFS, frames centred every `hop` samples with a 4-hop window."""
    win = 4 * hop
    padded = np.pad(wav.astype(np.float64), (win // 2, win // 2), mode="reflect")
    sq = np.concatenate([[0.0], np.cumsum(padded**2)])
    n = 1 + len(wav) // hop
    starts = np.arange(n) * hop
    energy = (sq[starts + win] - sq[starts]) / win
    return 10.0 * np.log10(np.maximum(energy, 1e-20))  # (frames,)


def slice_audio(
    wav: np.ndarray, sample_rate: int, cfg: SlicerConfig | None = None
) -> list[tuple[int, int]]:
    """Return `[(start, end), ...]` sample ranges of the non-silent clips of `wav`."""
    cfg = cfg or SlicerConfig()
    arr = check_audio(wav, "slicer input", allow_silent=True)
    mono = arr.mean(axis=0) if arr.ndim == 2 else arr
    hop = max(1, int(round(cfg.hop_s * sample_rate)))
    db = frame_rms_db(mono, hop)
    n = len(db)
    loud = db >= cfg.threshold_db
    if not loud.any():
        return []
    min_len = int(round(cfg.min_length_s / cfg.hop_s))
    min_int = int(round(cfg.min_interval_s / cfg.hop_s))
    keep = int(round(cfg.max_sil_kept_s / cfg.hop_s))
    max_len = int(round(cfg.max_length_s / cfg.hop_s))

    # Silent runs as [a, b) frame intervals.
    runs: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if not loud[i]:
            j = i
            while j < n and not loud[j]:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1

    segments: list[tuple[int, int]] = []
    seg_start = 0
    for a, b in runs:
        if a == 0:  # leading silence: keep at most `keep` frames of it
            seg_start = max(0, b - keep)
            continue
        if b == n:  # trailing silence
            break
        if b - a < min_int or a - seg_start < min_len:
            continue
        if b - a > 2 * keep:
            segments.append((seg_start, a + keep))
            seg_start = b - keep
        else:
            cut = a + int(np.argmin(db[a:b]))
            segments.append((seg_start, cut))
            seg_start = cut
    end = n
    if runs and runs[-1][1] == n and runs[-1][0] > seg_start:
        end = min(n, runs[-1][0] + keep)
    segments.append((seg_start, end))

    # Enforce the maximum length by cutting at the quietest frame late in the window.
    bounded: list[tuple[int, int]] = []
    for s, e in segments:
        while e - s > max_len:
            lo, hi = s + max_len // 2, s + max_len
            cut = lo + int(np.argmin(db[lo:hi]))
            bounded.append((s, cut))
            s = cut
        bounded.append((s, e))

    total = len(mono)
    out = []
    for s, e in bounded:
        if e <= s or not loud[s:e].any():
            continue  # no vocal content: dropped, as the paper does
        out.append((min(s * hop, total), min(e * hop, total)))
    return [(s, e) for s, e in out if e > s]


def slice_file(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sample_rate: int | None = None,
    cfg: SlicerConfig | None = None,
) -> list[Path]:
    """Slice an audio file into `out_dir/<stem>_<k>.wav` clips; return the written paths."""
    wav, sr = load_audio(path, sample_rate=sample_rate, channels=None)
    ranges = slice_audio(wav, sr, cfg)
    stem = Path(path).stem
    written = []
    for k, (s, e) in enumerate(ranges):
        clip = wav[..., s:e]
        written.append(write_wav(Path(out_dir) / f"{stem}_{k:04d}.wav", clip, sr))
    return written
