"""Training, validation and test data of the vocal / accompaniment separators.

Tracks come in the MUSDB18-HQ layout, ``root/{train,test}/<track>/{mixture,vocals}.wav`` plus
``accompaniment.wav`` (or ``drums/bass/other.wav``, or nothing: then the accompaniment is
``mixture - vocals``), discovered and checked by :class:`models.data.datasets.MusdbDataset`.

Splits:

* ``train`` / ``val`` — the ``train`` folder, split deterministically. When the folder holds the
  14 validation tracks that the ``musdb`` package defines (its ``mus.yaml``, read as a file:
  MUSDB18-HQ itself), those are the validation set, as in the CWS paper (§3.1). Otherwise about
  14 % of the tracks (at least 1, at most all but one) chosen by a hash of their names, so the
  choice does not depend on listing order and barely moves when tracks are added.
* ``test`` — the ``test`` folder.

Any file rate and channel count is converted to the model's: soxr resampling
(:func:`models.audio.resample`), mono duplicated for a stereo model, channels averaged for a mono
one (more than two channels are refused for a stereo model, as :mod:`models.audio` does).

Memory: nothing is cached for training. :meth:`SeparationData.sample` reads each chunk straight
from the files by frame range (libsndfile seeks in wav / flac), so memory is O(batch x chunk)
whatever the size of the corpus. Validation excerpts (``seconds`` per validation track, the
loudest-vocals stretch) are decoded once and kept; whole tracks (``val`` / ``test``
evaluation) are loaded one at a time by :meth:`SeparationData.tracks`.

Augmentation (CWS §3.1, after Uhlich et al.): every training example takes a vocals chunk and
an accompaniment chunk from two different randomly chosen tracks at random offsets, scales
each by a factor drawn from [0.6, 1.0] and sums them into the mixture.

Bad files: a track whose headers are unreadable is skipped with a warning at construction (or
raises with ``strict=True``); a chunk that cannot be read, or holds NaN / Inf, drops its track
from the training pool with a warning. Errors are :class:`~models.errors.DataError` naming the
file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import resample
from models.data.datasets import MusdbDataset, SkipsBadFiles
from models.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.14  # 14 of musdb's 100 training tracks
SCALE_RANGE = (0.6, 1.0)  # CWS §3.1
_RESAMPLE_MARGIN_S = 0.02  # read this much more on each side of a chunk before resampling


class _BadTrack(DataError):
    """A training chunk of `track` could not be read."""

    def __init__(self, track: str, message: str) -> None:
        super().__init__(message)
        self.track = track


@dataclass(frozen=True)
class TrackFiles:
    """Where one track's stems are (absolute paths) and their common rate and length."""

    name: str
    subset: str
    path: Path
    mixture: Path
    vocals: Path
    accompaniment: tuple[Path, ...]  # summed; () means mixture - vocals
    sample_rate: int  # of the files
    frames: int  # shortest stem, in file frames


@dataclass
class SeparationTrack:
    """A track (or an excerpt of one) at the model's rate and channel count, ``(C, T)`` each."""

    name: str
    sample_rate: int
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    start: int = 0  # first sample of the excerpt in the whole track


def to_channels(wav: np.ndarray, channels: int, name: str = "audio") -> np.ndarray:
    """``(C, T)`` -> ``(channels, T)``: mono duplicated, several channels averaged to mono."""
    c = wav.shape[0]
    if c == channels:
        return wav
    if channels == 1:
        return wav.mean(axis=0, keepdims=True).astype(np.float32)
    if channels == 2 and c == 1:
        return np.concatenate([wav, wav], axis=0)
    raise DataError(f"{name}: has {c} channel(s); the model takes {channels} (valid: a mono "
                    "file for any model, stereo for a mono or stereo model)")


@functools.lru_cache(maxsize=1)
def musdb_validation_names() -> tuple[str, ...]:
    """The validation track names the ``musdb`` package defines, or ``()`` without it.

    Read from the package's ``configs/mus.yaml`` as a file: importing ``musdb`` needs ffmpeg.
    """
    try:
        spec = importlib.util.find_spec("musdb")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    path = Path(next(iter(spec.submodule_search_locations))) / "configs" / "mus.yaml"
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        log.debug("musdb validation list unavailable (%s)", exc)
        return ()
    names = cfg.get("validation_tracks") if isinstance(cfg, dict) else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def split_validation(names: Sequence[str], n_val: int | None = None) -> list[str]:
    """The validation tracks among the training folder's `names` (sorted).

    musdb's own 14 when all are present (and `n_val` is None or 14); otherwise `n_val`
    (default ``round(0.14 * len(names))``, at least 1, at most ``len(names) - 1``) tracks with
    the smallest sha256 of their name.
    """
    names = sorted(set(names))
    if len(names) < 2:
        raise DataError(f"the train folder has {len(names)} usable track(s); a validation "
                        "split needs at least 2 (one to train on, one to validate)")
    known = musdb_validation_names()
    if known and set(known) <= set(names) and n_val in (None, len(known)):
        return sorted(known)
    k = round(VAL_FRACTION * len(names)) if n_val is None else int(n_val)
    if n_val is not None and not 1 <= k < len(names):
        raise DataError(f"n_val={n_val}; expected 1..{len(names) - 1} for {len(names)} tracks")
    k = min(max(k, 1), len(names) - 1)
    return sorted(sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:k])


def _read_frames(path: Path, start: int, n: int) -> np.ndarray:
    """Frames ``[start, start + n)`` of `path` as ``(C, n)`` float32 (zero-padded past the end)."""
    import soundfile as sf

    try:
        data = sf.read(str(path), start=start, stop=start + n, dtype="float32",
                       always_2d=True)[0]
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: unreadable at frames {start}..{start + n} ({exc})") from exc
    if not np.all(np.isfinite(data)):
        raise DataError(f"{path}: NaN/Inf samples in frames {start}..{start + n}")
    out = np.zeros((data.shape[1], n), np.float32)
    out[:, : data.shape[0]] = data.T
    return out


def _load_tracks(ds: MusdbDataset, channels: int, wanted: set[str] | None,
                 max_seconds: float | None, bad: Callable[[Path, str], None]
                 ) -> Iterator[SeparationTrack]:
    sr = int(ds.sample_rate or 0)
    n = None if max_seconds is None else max(1, round(max_seconds * sr))
    for i, (_, t) in enumerate(ds.tracks):
        if wanted is not None and t.name not in wanted:
            continue
        try:
            tr = ds[i]
            stems = [to_channels(tr.stems[k][:, :n], channels, str(t / f"{k}.wav"))
                     for k in ("mixture", "vocals", "accompaniment")]
        except DataError as exc:
            bad(t, str(exc))
            continue
        yield SeparationTrack(t.name, tr.sample_rate, stems[0], stems[1], stems[2])


def load_test_tracks(root: str | os.PathLike[str], sample_rate: int, channels: int,
                max_seconds: float | None = None, strict: bool = False
                ) -> Iterator[SeparationTrack]:
    """The tracks of ``root/test`` (no ``train`` folder needed), as :meth:`SeparationData.tracks`
    gives them."""
    ds = MusdbDataset(root, subset="test", sample_rate=sample_rate, strict=strict)

    def bad(path: Path, why: str) -> None:
        if strict:
            raise DataError(why)
        log.warning("skipping %s: %s", path, why)

    return _load_tracks(ds, channels, None, max_seconds, bad)


class SeparationData(SkipsBadFiles):
    """The splits of a MUSDB-layout corpus at `sample_rate` Hz and `channels` channels.

    `n_val`: validation tracks taken from ``train`` (see :func:`split_validation`); or
    `val_names` to name them. ``strict``: bad tracks raise instead of being skipped.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        *,
        n_val: int | None = None,
        val_names: Sequence[str] | None = None,
        strict: bool = False,
    ) -> None:
        if channels not in (1, 2):
            raise DataError(f"channels={channels}; valid: 1, 2")
        if sample_rate <= 0:
            raise DataError(f"sample_rate={sample_rate}; expected > 0")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.strict = strict
        self._train_ds = MusdbDataset(root, subset="train", sample_rate=sample_rate,
                                      strict=strict)
        self.root = self._train_ds.root
        self._test_ds: MusdbDataset | None = None
        self.skipped: list[tuple[Path, str]] = list(self._train_ds.skipped)
        files: dict[str, TrackFiles] = {}
        for _, t in self._train_ds.tracks:
            try:
                files[t.name] = self._index(t, "train")
            except DataError as exc:
                self._bad(t, str(exc))
        self.files = files
        names = sorted(files)
        if val_names is not None:
            unknown = sorted(set(val_names) - set(names))
            if unknown:
                raise DataError(f"validation tracks {unknown} are not in {self.root / 'train'} "
                                f"(have {len(names)}: {names[:5]}...)")
            self.val_names = sorted(set(val_names))
            if not self.val_names:
                raise DataError("val_names is empty; name at least one validation track")
            if len(self.val_names) >= len(names):
                raise DataError("every training track is a validation track; leave one to "
                                "train on")
        else:
            self.val_names = split_validation(names, n_val)
        self.train_names = [n for n in names if n not in set(self.val_names)]
        self._pool = list(self.train_names)  # training tracks whose chunks read fine
        self._val_cache: dict[float, list[SeparationTrack]] = {}

    # ---- bookkeeping ------------------------------------------------------------------------
    @staticmethod
    def _index(track: Path, subset: str) -> TrackFiles:
        import soundfile as sf

        acc = tuple(MusdbDataset._accompaniment_files(track))
        paths = [track / "mixture.wav", track / "vocals.wav", *acc]
        rates, frames = set(), []
        for p in paths:
            try:
                info = sf.info(str(p))
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
                raise DataError(f"{p}: not a readable audio file ({exc})") from exc
            rates.add(int(info.samplerate))
            frames.append(int(info.frames))
        if len(rates) > 1:
            raise DataError(f"{track}: stems have different sample rates {sorted(rates)} Hz")
        if max(frames) - min(frames) > 1:
            raise DataError(f"{track}: stems differ in length ({min(frames)} vs {max(frames)} "
                            "frames)")
        return TrackFiles(track.name, subset, track, paths[0], paths[1], acc, rates.pop(),
                          min(frames))

    # ---- training chunks --------------------------------------------------------------------
    def _chunk(self, f: TrackFiles, stem: str, offset: int, length: int) -> np.ndarray:
        """`length` model-rate samples of `stem` from file frame `offset`, ``(channels, L)``."""
        sr = f.sample_rate
        if sr == self.sample_rate:
            a, n, lead = offset, length, 0
        else:
            margin = math.ceil(_RESAMPLE_MARGIN_S * sr)
            a = max(offset - margin, 0)
            lead = offset - a
            n = lead + math.ceil(length * sr / self.sample_rate) + margin
        if stem == "vocals":
            x = _read_frames(f.vocals, a, n)
        elif f.accompaniment:
            parts = [_read_frames(p, a, n) for p in f.accompaniment]
            x = parts[0]
            for p in parts[1:]:
                if p.shape[0] != x.shape[0]:
                    raise DataError(f"{f.path}: accompaniment stems differ in channel count")
                x = x + p
        else:
            mix, voc = _read_frames(f.mixture, a, n), _read_frames(f.vocals, a, n)
            if mix.shape[0] != voc.shape[0]:
                raise DataError(f"{f.path}: mixture has {mix.shape[0]} channels, vocals "
                                f"{voc.shape[0]}")
            x = mix - voc
        x = to_channels(x, self.channels, str(f.path / f"{stem}.wav"))
        if sr != self.sample_rate:
            x = resample(x, sr, self.sample_rate)
            skip = round(lead * self.sample_rate / sr)
            x = x[:, skip : skip + length]
            if x.shape[1] < length:
                x = np.pad(x, ((0, 0), (0, length - x.shape[1])))
        return np.ascontiguousarray(x, dtype=np.float32)

    def _draw(self, rng: np.random.Generator, length: int, augment: bool,
              scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        pool = self._pool
        iv = int(rng.integers(len(pool)))
        if augment and len(pool) > 1:
            ia = int(rng.integers(len(pool) - 1))
            ia += ia >= iv  # a different track
        else:
            ia = iv
        fv, fa = self.files[pool[iv]], self.files[pool[ia]]

        def offset(f: TrackFiles) -> int:
            need = math.ceil(length * f.sample_rate / self.sample_rate)
            return int(rng.integers(max(f.frames - need, 0) + 1))

        ov = offset(fv)
        oa = offset(fa) if augment else ov
        gv, ga = (rng.uniform(*scale, size=2) if augment else (1.0, 1.0))
        try:
            voc = self._chunk(fv, "vocals", ov, length) * np.float32(gv)
        except DataError as exc:
            raise _BadTrack(fv.name, str(exc)) from exc
        try:
            acc = self._chunk(fa, "accompaniment", oa, length) * np.float32(ga)
        except DataError as exc:
            raise _BadTrack(fa.name, str(exc)) from exc
        return voc, acc

    def sample(
        self,
        rng: np.random.Generator,
        batch: int,
        length: int,
        *,
        augment: bool = True,
        scale: tuple[float, float] = SCALE_RANGE,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A training batch ``(mixture, vocals, accompaniment)``, each ``(B, C, length)``.

        With `augment` (CWS §3.1) vocals and accompaniment come from two different random
        tracks and random offsets, each scaled by a factor from `scale`; without it both come
        from the same offset of one track, unscaled. Only `rng` is consumed.
        """
        if batch < 1 or length < 1:
            raise DataError(f"batch={batch}, length={length}; both must be >= 1")
        lo, hi = scale
        if not 0 < lo <= hi:
            raise DataError(f"scale={scale}; expected 0 < low <= high")
        vs: list[np.ndarray] = []
        accs: list[np.ndarray] = []
        while len(vs) < batch:
            if not self._pool:
                raise DataError(f"{self.root}: no readable training tracks left "
                                f"(skipped {len(self.skipped)})")
            state = rng.bit_generator.state
            try:
                v, a = self._draw(rng, length, augment, (lo, hi))
            except _BadTrack as exc:
                if self.strict:
                    raise DataError(str(exc)) from exc
                self._bad(self.files[exc.track].path, str(exc))
                self._pool.remove(exc.track)
                rng.bit_generator.state = state  # redraw the same example from the new pool
                continue
            vs.append(v)
            accs.append(a)
        voc, acc = np.stack(vs), np.stack(accs)
        return voc + acc, voc, acc

    # ---- whole tracks -----------------------------------------------------------------------
    def _dataset(self, split: str) -> MusdbDataset:
        if split not in SPLITS:
            raise DataError(f"split={split!r}; valid: {SPLITS}")
        if split != "test":
            return self._train_ds
        if self._test_ds is None:
            self._test_ds = MusdbDataset(self.root, subset="test", sample_rate=self.sample_rate,
                                         strict=self.strict)
        return self._test_ds

    def names(self, split: str) -> list[str]:
        """Track names of `split`."""
        if split == "train":
            return list(self.train_names)
        if split == "val":
            return list(self.val_names)
        return sorted(t.name for _, t in self._dataset(split).tracks)

    def tracks(self, split: str, max_seconds: float | None = None
               ) -> Iterator[SeparationTrack]:
        """Whole tracks of `split` (or their first `max_seconds`), loaded one at a time; bad
        ones are skipped with a warning (raise with ``strict``)."""
        return _load_tracks(self._dataset(split), self.channels, set(self.names(split)),
                            max_seconds, self._bad)

    def validation(self, seconds: float) -> list[SeparationTrack]:
        """One excerpt of `seconds` per validation track, where its vocals are loudest (on a
        0.5-s grid); the whole track when it is shorter. Decoded once, then cached."""
        if seconds <= 0:
            raise DataError(f"validation seconds={seconds}; expected > 0")
        key = float(seconds)
        if key not in self._val_cache:
            n = max(1, round(seconds * self.sample_rate))
            step = max(1, self.sample_rate // 2)
            out = []
            for tr in self.tracks("val"):
                start = 0
                if tr.vocals.shape[-1] > n:
                    energy = np.cumsum(np.concatenate([[0.0], (tr.vocals.astype(np.float64)
                                                               ** 2).sum(axis=0)]))
                    starts = np.arange(0, tr.vocals.shape[-1] - n + 1, step)
                    start = int(starts[np.argmax(energy[starts + n] - energy[starts])])
                sl = slice(start, start + n)
                out.append(SeparationTrack(tr.name, tr.sample_rate, tr.mixture[:, sl].copy(),
                                           tr.vocals[:, sl].copy(),
                                           tr.accompaniment[:, sl].copy(), start))
            if not out:
                raise DataError(f"{self.root}: no readable validation track "
                                f"(of {self.val_names})")
            self._val_cache[key] = out
        return self._val_cache[key]
