"""Loaders for the corpus layouts, which are also the layouts of real datasets.

* :class:`SingingCorpus` — ``root/dataset_raw/<singer>/*.{wav,flac,ogg,mp3}`` (RVC / so-vits;
  ``root`` may also be the ``dataset_raw`` folder itself, or a plain folder of recordings of
  one singer, named after the folder). With a ``meta.json`` (our synthetic
  corpus) clips come with ground-truth F0 and phoneme labels from ``labels/``; without one (a real
  dataset) F0 is estimated by DIO and there are no phonemes. Nothing here needs ``meta.json``.
* :class:`MusdbDataset` — ``root/{train,test}/<track>/{mixture,vocals,...}.wav`` (MUSDB18-HQ).
  The accompaniment is ``accompaniment.wav`` when present, else ``drums + bass + other``, else
  ``mixture - vocals``.
* :class:`NusDataset` — ``root/<singer>/{sing,read}/<name>.wav`` + ``<name>.txt`` phone lines
  ``start_s end_s phone`` (NUS-48E); items pair the sung and read versions of the same name.

Bad files: at construction every audio header is checked with libsndfile (a truncated or
garbage file fails there); iteration loads the audio and validates it (NaN, silence, ...).
A file that fails is **skipped with a warning** naming the file and the reason (``skipped``
lists them), or raises :class:`DataError` when ``strict=True``. Indexing one item (``ds[i]``)
always raises on a bad file.

Example::

    corpus = SingingCorpus("runs/demo/corpus", sample_rate=16000, hop_length=128)
    for item in corpus:                    # ClipItem(audio (T,), f0 (frames,), voiced, phonemes)
        ...
    musdb = MusdbDataset("runs/demo/corpus/musdb", subset="test")
    nus = NusDataset("runs/demo/corpus/nus48e")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.audio import load_audio
from models.data.features import dio_f0, n_frames
from models.errors import AudioError, DataError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def _check_header(path: Path) -> None:
    """Raise DataError when libsndfile cannot parse the header or the data is missing."""
    import soundfile as sf

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable audio file ({exc})") from exc
    if info.frames <= 0:
        raise DataError(f"{path}: audio has no frames")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def resample_labels(
    values: np.ndarray, src_rate: int, src_hop: int, dst_rate: int, dst_hop: int, frames: int
) -> np.ndarray:
    """Nearest-frame resampling of per-frame labels to another (rate, hop) grid of `frames`."""
    t = np.arange(frames) * (dst_hop / dst_rate)
    idx = np.rint(t * src_rate / src_hop).astype(np.int64)
    return values[np.clip(idx, 0, values.shape[0] - 1)]


@dataclass(frozen=True)
class Clip:
    """One clip of a singing corpus (paths are absolute)."""

    id: str
    singer: str
    path: Path
    song: str = ""
    style: str = "sung"
    split: str = ""
    labels: Path | None = None


@dataclass
class ClipItem:
    clip: Clip
    audio: np.ndarray  # (T,) float32 at sample_rate
    sample_rate: int
    hop_length: int
    f0: np.ndarray  # (frames,) float32 Hz, 0 = unvoiced; frames = 1 + T // hop_length
    voiced: np.ndarray  # (frames,) bool
    phonemes: np.ndarray | None  # (frames,) int16 or None
    f0_source: str  # "labels" or "dio"


def read_labels(path: Path) -> dict[str, np.ndarray]:
    """Read a labels .npz (f0 float32, phonemes int16, same length) or raise DataError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable labels file ({exc})") from exc
    missing = {"f0", "phonemes"} - set(out)
    if missing:
        raise DataError(f"{path}: labels lack {sorted(missing)} (have {sorted(out)})")
    if out["f0"].ndim != 1 or out["f0"].shape != out["phonemes"].shape:
        raise DataError(
            f"{path}: f0 {out['f0'].shape} and phonemes {out['phonemes'].shape} must be equal 1-D"
        )
    return out


class SkipsBadFiles:
    """A loader that skips unreadable files with a warning (kept in ``skipped``), or raises
    :class:`DataError` on the first one when ``strict``."""

    strict: bool
    skipped: list[tuple[Path, str]]

    def _bad(self, path: Path, why: str) -> None:
        if self.strict:
            raise DataError(why)
        log.warning("skipping %s: %s", path, why)
        self.skipped.append((path, why))


class SingingCorpus(SkipsBadFiles):
    """Clips of ``dataset_raw/<singer>/*`` with F0 (+ phonemes when labelled)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sample_rate: int | None = None,
        hop_length: int = 128,
        styles: tuple[str, ...] = ("sung",),
        split: str | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.hop_length = int(hop_length)
        self.strict = strict
        self.skipped: list[tuple[Path, str]] = []
        if hop_length < 1:
            raise DataError(f"hop_length={hop_length} (expected >= 1)")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such corpus directory")
        self.meta: dict[str, Any] | None = None
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            try:
                self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{meta_path}: unreadable meta.json ({exc})") from exc
        candidates = self._from_meta(styles, split) if self.meta else self._scan(split)
        self.clips: list[Clip] = []
        for clip in candidates:
            try:
                _check_header(clip.path)
                if clip.labels is not None and not clip.labels.is_file():
                    raise DataError(f"{clip.labels}: labels file missing")
            except DataError as exc:
                self._bad(clip.path, str(exc))
                continue
            self.clips.append(clip)
        if not self.clips:
            raise DataError(
                f"{self.root}: no usable clips (expected dataset_raw/<singer>/*"
                f"{{{','.join(AUDIO_EXTENSIONS)}}}, <singer>/* or a folder of one singer's "
                f"recordings; skipped {len(self.skipped)})"
            )

    # --- discovery ---
    def _scan(self, split: str | None) -> list[Clip]:
        if split is not None:
            raise DataError(f"split={split!r} needs a meta.json; {self.root} has none")
        raw = self.root / "dataset_raw"
        if not raw.is_dir():
            raw = self.root
        clips = []
        for singer in sorted(p for p in raw.iterdir() if p.is_dir()):
            for f in _audio_files(singer):
                clips.append(Clip(f"{singer.name}/{f.stem}", singer.name, f, song=f.stem))
        loose = _audio_files(raw)
        if loose and not clips:
            # a plain folder of recordings: one singer, named after the folder
            singer_name = raw.resolve().name or "singer"
            clips = [Clip(f"{singer_name}/{f.stem}", singer_name, f, song=f.stem)
                     for f in loose]
        elif loose:
            log.warning("%s: ignoring %d audio file(s) beside the singer folders (e.g. %s); "
                        "put them in a <singer>/ folder", raw, len(loose), loose[0].name)
        return clips

    def _from_meta(self, styles: tuple[str, ...], split: str | None) -> list[Clip]:
        assert self.meta is not None
        for key in ("sample_rate", "label_hop", "clips"):
            if key not in self.meta:
                raise DataError(f"{self.root / 'meta.json'}: missing key {key!r}")
        valid_styles = {"sung", "spoken"}
        if not set(styles) <= valid_styles:
            raise DataError(f"styles={styles!r}; valid: {sorted(valid_styles)}")
        clips = []
        for c in self.meta["clips"]:
            if c["style"] not in styles or (split is not None and c.get("split") != split):
                continue
            lab = self.root / c["labels"] if c.get("labels") else None
            clips.append(
                Clip(
                    c["id"],
                    c["singer"],
                    self.root / c["path"],
                    c.get("song", ""),
                    c["style"],
                    c.get("split", ""),
                    lab,
                )
            )
        return clips

    # --- access ---
    @property
    def singers(self) -> list[str]:
        return sorted({c.singer for c in self.clips})

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> ClipItem:
        clip = self.clips[i]
        try:
            audio, sr = load_audio(clip.path, self.sample_rate, channels=1)
        except AudioError as exc:
            raise DataError(str(exc)) from exc
        frames = n_frames(audio.shape[0], self.hop_length)
        if clip.labels is not None and self.meta is not None:
            lab = read_labels(clip.labels)
            src_sr, src_hop = int(self.meta["sample_rate"]), int(self.meta["label_hop"])
            expect = n_frames(round(audio.shape[0] * src_sr / sr), src_hop)
            if abs(lab["f0"].shape[0] - expect) > 1:
                raise DataError(
                    f"{clip.labels}: {lab['f0'].shape[0]} frames, but {clip.path} needs {expect}"
                )
            f0 = resample_labels(lab["f0"], src_sr, src_hop, sr, self.hop_length, frames)
            ph = resample_labels(lab["phonemes"], src_sr, src_hop, sr, self.hop_length, frames)
            return ClipItem(
                clip,
                audio,
                sr,
                self.hop_length,
                f0.astype(np.float32),
                f0 > 0,
                ph.astype(np.int16),
                "labels",
            )
        f0, voiced = dio_f0(audio, sr, self.hop_length)
        return ClipItem(clip, audio, sr, self.hop_length, f0, voiced, None, "dio")

    def __iter__(self) -> Iterator[ClipItem]:
        for i, clip in enumerate(self.clips):
            try:
                item = self[i]
            except DataError as exc:
                self._bad(clip.path, str(exc))
                continue
            yield item


@dataclass
class MusdbTrack:
    name: str
    subset: str
    path: Path
    sample_rate: int
    stems: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (2, T) float32

    @property
    def mixture(self) -> np.ndarray:
        return self.stems["mixture"]

    @property
    def vocals(self) -> np.ndarray:
        return self.stems["vocals"]

    @property
    def accompaniment(self) -> np.ndarray:
        return self.stems["accompaniment"]


class MusdbDataset(SkipsBadFiles):
    """MUSDB18-HQ-style tracks: ``root/{train,test}/<track>/{mixture,vocals,...}.wav``."""

    SUBSETS = ("train", "test")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        subset: str | None = None,
        sample_rate: int | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root)
        if (self.root / "musdb").is_dir() and not any(
            (self.root / s).is_dir() for s in self.SUBSETS
        ):
            self.root = self.root / "musdb"
        if subset is not None and subset not in self.SUBSETS:
            raise DataError(f"subset={subset!r}; valid: {self.SUBSETS} or None (both)")
        self.sample_rate = sample_rate
        self.strict = strict
        self.skipped: list[tuple[Path, str]] = []
        subsets = [subset] if subset else list(self.SUBSETS)
        self.tracks: list[tuple[str, Path]] = []
        for s in subsets:
            d = self.root / s
            if not d.is_dir():
                continue
            for t in sorted(p for p in d.iterdir() if p.is_dir()):
                try:
                    for stem in ("mixture", "vocals"):
                        _check_header(t / f"{stem}.wav")
                    self._accompaniment_files(t)
                except DataError as exc:
                    self._bad(t, str(exc))
                    continue
                self.tracks.append((s, t))
        if not self.tracks:
            raise DataError(
                f"{self.root}: no usable tracks (expected {{train,test}}/<track>/mixture.wav and "
                f"vocals.wav; skipped {len(self.skipped)})"
            )

    @staticmethod
    def _accompaniment_files(track: Path) -> list[Path]:
        acc = track / "accompaniment.wav"
        if acc.exists():
            _check_header(acc)
            return [acc]
        parts = [track / f"{s}.wav" for s in ("drums", "bass", "other")]
        if all(p.exists() for p in parts):
            for p in parts:
                _check_header(p)
            return parts
        return []  # mixture - vocals

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, i: int) -> MusdbTrack:
        subset, t = self.tracks[i]

        def load(p: Path) -> tuple[np.ndarray, int]:
            try:
                return load_audio(p, self.sample_rate, channels=2, allow_silent=True)
            except AudioError as exc:
                raise DataError(str(exc)) from exc

        mix, sr = load(t / "mixture.wav")
        voc, _ = load(t / "vocals.wav")
        parts = [load(p)[0] for p in self._accompaniment_files(t)]
        acc = sum(parts[1:], parts[0]) if parts else mix - voc
        n = mix.shape[-1]
        for name, x in (("vocals", voc), ("accompaniment", acc)):
            if abs(x.shape[-1] - n) > 1:
                raise DataError(f"{t}: {name} has {x.shape[-1]} samples, mixture has {n}")
        stems = {
            k: v[:, :n].astype(np.float32)
            for k, v in (("mixture", mix), ("vocals", voc), ("accompaniment", acc))
        }
        return MusdbTrack(t.name, subset, t, sr, stems)

    def __iter__(self) -> Iterator[MusdbTrack]:
        for i, (_, t) in enumerate(self.tracks):
            try:
                item = self[i]
            except DataError as exc:
                self._bad(t, str(exc))
                continue
            yield item


def read_phone_lines(path: Path) -> list[tuple[float, float, str]]:
    """Parse ``start_s end_s phone`` lines (NUS-48E style); blank lines are ignored."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable annotation ({exc})") from exc
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3:
                raise ValueError(f"{len(parts)} fields")
            a, b = float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise DataError(
                f"{path}:{n}: expected 'start_s end_s phone', got {line!r} ({exc})"
            ) from exc
        if b < a:
            raise DataError(f"{path}:{n}: end {b} < start {a}")
        out.append((a, b, parts[2]))
    return out


@dataclass
class NusPair:
    singer: str
    name: str
    sample_rate: int
    sing: np.ndarray  # (T,) float32
    read: np.ndarray  # (T',) float32
    sing_phones: list[tuple[float, float, str]]
    read_phones: list[tuple[float, float, str]]


class NusDataset(SkipsBadFiles):
    """NUS-48E-style paired sung / read clips with phone annotations."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sample_rate: int | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root)
        if (self.root / "nus48e").is_dir():
            self.root = self.root / "nus48e"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such directory")
        self.sample_rate = sample_rate
        self.strict = strict
        self.skipped: list[tuple[Path, str]] = []
        self.pairs: list[tuple[str, str, Path, Path]] = []
        for singer in sorted(p for p in self.root.iterdir() if p.is_dir()):
            sing_dir, read_dir = singer / "sing", singer / "read"
            if not sing_dir.is_dir() or not read_dir.is_dir():
                continue
            for s in _audio_files(sing_dir):
                r = next(
                    (
                        read_dir / (s.stem + e)
                        for e in AUDIO_EXTENSIONS
                        if (read_dir / (s.stem + e)).is_file()
                    ),
                    None,
                )
                if r is None:
                    continue
                try:
                    for p in (s, r):
                        _check_header(p)
                        if not p.with_suffix(".txt").is_file():
                            raise DataError(f"{p.with_suffix('.txt')}: annotation missing")
                except DataError as exc:
                    self._bad(s, str(exc))
                    continue
                self.pairs.append((singer.name, s.stem, s, r))
        if not self.pairs:
            raise DataError(
                f"{self.root}: no usable pairs (expected <singer>/sing/<name>.wav + .txt and "
                f"<singer>/read/<name>.wav + .txt; skipped {len(self.skipped)})"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> NusPair:
        singer, name, s, r = self.pairs[i]
        try:
            a, sr = load_audio(s, self.sample_rate)
            b, _ = load_audio(r, sr)
        except AudioError as exc:
            raise DataError(str(exc)) from exc
        return NusPair(
            singer,
            name,
            sr,
            a,
            b,
            read_phone_lines(s.with_suffix(".txt")),
            read_phone_lines(r.with_suffix(".txt")),
        )

    def __iter__(self) -> Iterator[NusPair]:
        for i, (_, _, s, _) in enumerate(self.pairs):
            try:
                item = self[i]
            except DataError as exc:
                self._bad(s, str(exc))
                continue
            yield item
