"""Training / evaluation clips for LHQ-SVC from a corpus folder (the shared data contract).

Clips, audio and labels come from ``models.data.datasets.SingingCorpus`` (``meta.json`` written
by ``compress data synth``, or a plain ``dataset_raw/<singer>/*.wav`` tree); features follow the
contract: log-mel by ``models.data.features.log_mel`` and F0 by DIO (``dio_f0``), which the
decoder is trained on (§IV.B). Phoneme labels (for the built-in content encoder) and the
corpus's ground-truth F0 are kept when the corpus has them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """One rendering with its features (mel (M, F), f0 (F,), voiced (F,), phonemes (F,))."""

    id: str
    singer: str
    song: str
    split: str
    path: Path
    wav: np.ndarray
    mel: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    phonemes: np.ndarray | None = None
    label_f0: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ParallelRef:
    """A parallel ground truth of the synthetic corpus (``models.data.corpus``): singer
    `target`'s voice on the performance of clip `source`, `shift` semitones into its key;
    `retake` when target is the source's own singer (same performance, other noise)."""

    source: str
    target: str
    path: Path
    shift: float
    retake: bool


@dataclass
class Corpus:
    root: Path
    sample_rate: int
    singers: list[str]
    phonemes: list[str]
    clips: list[Clip]
    parallel: dict[tuple[str, str], ParallelRef] = field(default_factory=dict)
    # scale of the synthetic voices' cycle noise (models.data.corpus.VOICE_NOISE) as rendered;
    # 1.0 for synthetic corpora written before the knob, None for folders without meta.json
    voice_noise: float | None = None

    def parallel_reference(self, source_id: str, target: str) -> ParallelRef | None:
        """The parallel rendering of clip `source_id` by `target`, if the corpus has one."""
        return self.parallel.get((source_id, target))

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def by(self, singer: str, song: str) -> Clip | None:
        for c in self.clips:
            if c.singer == singer and c.song == song:
                return c
        return None


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - x.shape[0], dtype=x.dtype)])


def load_corpus(
    root: str | Path,
    sample_rate: int = 16000,
    hop_length: int = 128,
    splits: tuple[str, ...] = ("train", "test"),
    max_clips: int | None = None,
    f0_method: str = "dio",
) -> Corpus:
    """Load the sung clips of `root` (via ``models.data.datasets.SingingCorpus``) with features.

    Log-mel and DIO F0 follow the contract; phoneme labels and the corpus's ground-truth F0
    (``label_f0``) come from the labels when present. A folder without meta.json has every
    clip in the ``train`` split. Raises :class:`DataError` on a bad layout. ``f0_method``
    (:data:`models.data.features.CORPUS_F0_METHODS`) replaces DIO by CREPE tiny (``crepe``)
    or full (``crepe-full``) for the F0 the model is conditioned on.
    """
    from models.data.datasets import SingingCorpus
    from models.data.features import CORPUS_F0_METHODS, MelConfig, estimate_f0, log_mel

    if f0_method not in CORPUS_F0_METHODS:
        raise DataError(f"F0 method {f0_method!r}; valid: {', '.join(CORPUS_F0_METHODS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corpus {root}: no such directory")
    cfg = MelConfig(sample_rate=sample_rate, hop_length=hop_length)
    sc = SingingCorpus(root, sample_rate=sample_rate, hop_length=hop_length, styles=("sung",))
    phonemes = list((sc.meta or {}).get("phonemes", []))
    clips = []
    for item in sc:
        split = item.clip.split or "train"
        if split not in splits:
            continue
        wav = item.audio
        mel = log_mel(wav, cfg)
        f0, voiced = estimate_f0(wav, sample_rate, hop_length, f0_method)
        n = mel.shape[1]
        labelled = item.f0_source == "labels"
        ph = _fit(item.phonemes.astype(np.int64), n) if item.phonemes is not None else None
        lf0 = _fit(item.f0.astype(np.float32), n) if labelled else None
        clips.append(Clip(id=item.clip.id, singer=item.clip.singer,
                          song=item.clip.song or item.clip.path.stem, split=split,
                          path=item.clip.path, wav=wav, mel=mel, f0=f0, voiced=voiced,
                          phonemes=ph, label_f0=lf0))
        if max_clips is not None and len(clips) >= max_clips:
            break
    if not clips:
        raise DataError(f"corpus {root}: no sung clips in splits {list(splits)}")
    singers = sorted({c.singer for c in clips})
    parallel = {}
    for p in (sc.meta or {}).get("parallel", []):
        ref = ParallelRef(source=p["source"], target=p["target_singer"], path=root / p["path"],
                          shift=float(p["shift_semitones"]), retake=bool(p["retake"]))
        parallel[(ref.source, ref.target)] = ref
    voice_noise = None if sc.meta is None else float(
        sc.meta.get("config", {}).get("voice_noise", 1.0))
    return Corpus(root=root, sample_rate=sample_rate, singers=singers, phonemes=phonemes,
                  clips=clips, parallel=parallel, voice_noise=voice_noise)
