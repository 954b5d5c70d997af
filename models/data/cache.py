"""On-disk feature cache keyed by content: ``sha256(audio bytes + label bytes + parameters)``.

``FeatureCache(dir).get(path, cfg)`` returns the contract's log-mel, DIO F0 and voicing of an
audio file at ``cfg.sample_rate`` (+ ground-truth F0 and phonemes resampled to the mel frames
when a corpus labels file belongs to it), computing them once. Entries are ``.npz`` files under
``dir/<key[:2]>/<key>.npz`` written atomically; the key changes whenever the audio bytes, the
labels bytes, any :class:`MelConfig` field, the F0 parameters or :data:`FEATURE_VERSION` change,
so a stale entry is never returned. An unreadable entry is reported with a warning and
recomputed. ``hits`` / ``misses`` count what happened.

Labels are found next to a corpus layout (``labels="auto"``): for
``<root>/dataset_raw/<singer>/<song>.wav`` or ``<root>/nus48e/<singer>/sing/<song>.wav`` it is
``<root>/labels/<singer>/<song>_sung.npz``; for ``nus48e/<singer>/read/`` ``..._spoken.npz``;
the rate and hop of the labels come from ``<root>/meta.json``.

Example::

    cache = FeatureCache("runs/demo/cache")
    feats = cache.get("runs/demo/corpus/dataset_raw/singer00/song000.wav", MelConfig(16000))
    feats.mel.shape, feats.f0.shape        # (80, frames), (frames,)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.audio import load_audio
from models.data.datasets import read_labels, resample_labels
from models.data.features import F0_CEIL, F0_FLOOR, MelConfig, dio_f0, log_mel
from models.data.npz import write_npz
from models.errors import AudioError, DataError

log = logging.getLogger(__name__)

FEATURE_VERSION = 1


@dataclass
class Features:
    mel: np.ndarray  # (n_mels, frames) float32
    f0: np.ndarray  # (frames,) float32, DIO estimate (0 = unvoiced)
    voiced: np.ndarray  # (frames,) bool
    label_f0: np.ndarray | None  # (frames,) float32 ground truth, when labels exist
    phonemes: np.ndarray | None  # (frames,) int16, when labels exist
    key: str


def find_labels(path: str | os.PathLike[str]) -> tuple[Path, int, int] | None:
    """(labels path, label sample rate, label hop) for a clip inside a corpus layout, or None."""
    p = Path(path).resolve()
    parts = p.parts
    cands: list[tuple[Path, str, str]] = []
    if len(parts) >= 3 and parts[-3] == "dataset_raw":
        cands.append((p.parents[2], parts[-2], "sung"))
    if len(parts) >= 4 and parts[-4] == "nus48e" and parts[-2] in ("sing", "read"):
        cands.append((p.parents[3], parts[-3], "sung" if parts[-2] == "sing" else "spoken"))
    for root, singer, style in cands:
        lab = root / "labels" / singer / f"{p.stem}_{style}.npz"
        meta = root / "meta.json"
        if lab.is_file() and meta.is_file():
            try:
                m = json.loads(meta.read_text(encoding="utf-8"))
                return lab, int(m["sample_rate"]), int(m["label_hop"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{meta}: unreadable meta.json ({exc})") from exc
    return None


class FeatureCache:
    """Content-addressed cache of mel / F0 / voicing (+ labels) per audio file."""

    def __init__(
        self, root: str | os.PathLike[str], *, f0_floor: float = F0_FLOOR, f0_ceil: float = F0_CEIL
    ) -> None:
        self.root = Path(root)
        self.f0_floor = float(f0_floor)
        self.f0_ceil = float(f0_ceil)
        self.hits = 0
        self.misses = 0

    def _params(self, cfg: MelConfig, labels: tuple[Path, int, int] | None) -> bytes:
        params = {
            "version": FEATURE_VERSION,
            "mel": asdict(cfg),
            "f0": {"method": "dio+stonemask", "floor": self.f0_floor, "ceil": self.f0_ceil},
            "labels": None if labels is None else {"rate": labels[1], "hop": labels[2]},
        }
        return json.dumps(params, sort_keys=True).encode()

    def _resolve_labels(
        self, path: Path, labels: str | os.PathLike[str] | tuple[Path, int, int] | None
    ) -> tuple[Path, int, int] | None:
        if labels is None:
            return None
        if isinstance(labels, str) and labels == "auto":
            return find_labels(path)
        if isinstance(labels, tuple):
            return labels
        raise DataError(
            f"labels={labels!r}; expected 'auto', None or (path, sample_rate, hop_length)"
        )

    def key(
        self,
        path: str | os.PathLike[str],
        cfg: MelConfig,
        labels: str | tuple[Path, int, int] | None = "auto",
    ) -> str:
        """The cache key of `path` under `cfg` (sha256 hex)."""
        p = Path(path)
        return self._key(p, cfg, self._resolve_labels(p, labels))

    def _key(self, p: Path, cfg: MelConfig, lab: tuple[Path, int, int] | None) -> str:
        h = hashlib.sha256()
        h.update(b"lhq-features\0")
        try:
            h.update(p.read_bytes())
            if lab is not None:
                h.update(b"\0labels\0")
                h.update(lab[0].read_bytes())
        except OSError as exc:
            raise DataError(f"{p}: cannot read for the feature cache ({exc})") from exc
        h.update(b"\0params\0")
        h.update(self._params(cfg, lab))
        return h.hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(
        self,
        path: str | os.PathLike[str],
        cfg: MelConfig,
        labels: str | tuple[Path, int, int] | None = "auto",
    ) -> Features:
        """Features of the audio file `path` at ``cfg.sample_rate`` (cached)."""
        p = Path(path)
        lab = self._resolve_labels(p, labels)
        key = self._key(p, cfg, lab)
        entry = self.entry_path(key)
        if entry.is_file():
            try:
                with np.load(entry, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
                feats = Features(
                    data["mel"],
                    data["f0"],
                    data["voiced"],
                    data.get("label_f0"),
                    data.get("phonemes"),
                    key,
                )
                self.hits += 1
                return feats
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("feature cache entry %s is unreadable (%s); recomputing", entry, exc)
        feats = self._compute(p, cfg, lab, key)
        self._store(entry, feats)
        self.misses += 1
        return feats

    def _compute(
        self, p: Path, cfg: MelConfig, lab: tuple[Path, int, int] | None, key: str
    ) -> Features:
        try:
            wav, sr = load_audio(p, cfg.sample_rate, channels=1)
        except AudioError as exc:
            raise DataError(str(exc)) from exc
        mel = log_mel(wav, cfg)
        f0, voiced = dio_f0(wav, sr, cfg.hop_length, f0_floor=self.f0_floor, f0_ceil=self.f0_ceil)
        label_f0 = phonemes = None
        if lab is not None:
            arr = read_labels(lab[0])
            frames = mel.shape[1]
            label_f0 = resample_labels(arr["f0"], lab[1], lab[2], sr, cfg.hop_length, frames)
            phonemes = resample_labels(arr["phonemes"], lab[1], lab[2], sr, cfg.hop_length, frames)
            label_f0 = label_f0.astype(np.float32)
            phonemes = phonemes.astype(np.int16)
        return Features(mel, f0, voiced, label_f0, phonemes, key)

    def _store(self, entry: Path, feats: Features) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"mel": feats.mel, "f0": feats.f0, "voiced": feats.voiced}
        if feats.label_f0 is not None and feats.phonemes is not None:
            arrays["label_f0"] = feats.label_f0
            arrays["phonemes"] = feats.phonemes
        write_npz(entry, **arrays)
