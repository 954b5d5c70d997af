"""Automatic key choice for conversion (``--pitch auto``): per-singer F0 statistics.

LHQ-SVC conditions the decoder on the source's F0 (§IV.B), so a converted output keeps the
source's key: a bass line sung by a soprano model stays a bass line, and the speaker embedding
alone cannot pull it to the target's register (the issue this module answers: unseen voices
stayed near the source without a hand-chosen shift). Singing voice conversion tools shift the
source F0 so its median lands on the target singer's; we do the same, by whole semitones so the
melody keeps its key relationships:

    shift = round(12 · log2(median_F0(target singer) / median_F0(source)))

Both medians are of voiced DIO frames (the estimator the model is trained on), in Hz. The
target's comes from the training clips and is stored with the model: ``extra["f0_stats"]`` in
checkpoints (written by the trainer, kept through every compression stage) and the
``speaker_f0_hz`` metadata of exported programs, so the phone app can do the same.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import ModelsError

log = logging.getLogger(__name__)

#: the shift is clamped to this many semitones either way (three octaves: an espeak-ng male
#: voice at ~100 Hz needs +27 to reach a 466 Hz soprano; at +24 it stopped 3 semitones short
#: and was heard as the 330 Hz singer, benchmarks/unseen_voices.py)
MAX_SHIFT = 36
#: fewer voiced seconds than this in the source make its median unreliable
MIN_VOICED_SECONDS = 0.2


def _summary(f0: np.ndarray, frames_per_second: float) -> dict[str, float]:
    return {
        "median_hz": round(float(np.median(f0)), 2),
        "p10_hz": round(float(np.percentile(f0, 10)), 2),
        "p90_hz": round(float(np.percentile(f0, 90)), 2),
        "voiced_seconds": round(len(f0) / frames_per_second, 2),
    }


def singer_f0_stats(
    clips: Iterable[Any], sample_rate: int, hop_length: int
) -> dict[str, dict[str, float]]:
    """``{singer: {median_hz, p10_hz, p90_hz, voiced_seconds}}`` over the voiced frames of
    `clips` (objects with ``singer``, ``f0`` (F,) in Hz and ``voiced`` (F,) like
    :class:`models.lhq_svc.data.Clip`). Singers without voiced frames are left out."""
    per: dict[str, list[np.ndarray]] = {}
    for c in clips:
        v = np.asarray(c.voiced, dtype=bool) & (np.asarray(c.f0) > 0)
        per.setdefault(c.singer, []).append(np.asarray(c.f0, dtype=np.float64)[v])
    fps = sample_rate / hop_length
    out = {}
    for singer, parts in sorted(per.items()):
        f0 = np.concatenate(parts) if parts else np.zeros(0)
        if len(f0):
            out[singer] = _summary(f0, fps)
    return out


@dataclass(frozen=True)
class AutoPitch:
    """The shift chosen for one conversion, with the numbers behind it (for the log)."""

    semitones: int
    source_hz: float
    target_hz: float
    speaker: str

    def describe(self) -> str:
        return (f"pitch auto: source median F0 {self.source_hz:.0f} Hz, {self.speaker}'s "
                f"{self.target_hz:.0f} Hz -> shift {self.semitones:+d} semitones")


def source_median_f0(wav: np.ndarray, sample_rate: int, hop_length: int, name: str) -> float:
    """Median DIO F0 (Hz) of the voiced frames of a mono signal; ModelsError when fewer than
    :data:`MIN_VOICED_SECONDS` of it are voiced."""
    from models.data.features import dio_f0

    f0, voiced = dio_f0(np.asarray(wav, dtype=np.float32).reshape(-1), sample_rate, hop_length)
    v = f0[voiced & (f0 > 0)]
    if len(v) * hop_length / sample_rate < MIN_VOICED_SECONDS:
        raise ModelsError(
            f"{name}: only {len(v) * hop_length / sample_rate:.2f} s of voiced audio, too little "
            "to choose a key; give --pitch N (semitones) instead of auto"
        )
    return float(np.median(v))


def choose_shift(source_hz: float, target_hz: float) -> int:
    """Whole semitones moving `source_hz` to `target_hz`, clamped to ±:data:`MAX_SHIFT`."""
    if not (source_hz > 0 and target_hz > 0):
        raise ModelsError(f"choose_shift: F0 medians must be > 0, got {source_hz}, {target_hz}")
    s = int(round(12.0 * math.log2(target_hz / source_hz)))
    return max(-MAX_SHIFT, min(MAX_SHIFT, s))


def require_medians(medians: Mapping[str, float] | None, where: str) -> Mapping[str, float]:
    """`medians` (``{singer: median F0 Hz}``) when there are any; a clear error otherwise."""
    if not medians:
        raise ModelsError(
            f"{where} has no per-singer F0 statistics (made before they were recorded); "
            "give --pitch N (semitones), or retrain / re-export it"
        )
    return medians


def auto_pitch(
    wav: np.ndarray,
    sample_rate: int,
    hop_length: int,
    speaker: str,
    medians: Mapping[str, float],
    name: str,
) -> AutoPitch:
    """The :class:`AutoPitch` for converting `wav` (mono, at `sample_rate`) to `speaker`."""
    if speaker not in medians:
        raise ModelsError(f"no F0 statistics for singer {speaker!r} (have: "
                          f"{', '.join(sorted(medians)) or 'none'}); give --pitch N instead")
    src = source_median_f0(wav, sample_rate, hop_length, name)
    tgt = float(medians[speaker])
    return AutoPitch(choose_shift(src, tgt), src, tgt, speaker)
