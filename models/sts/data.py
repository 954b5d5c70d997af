"""Training, validation and test samples of speech-to-singing (Parekh et al. 2020, §3.1).

Pairs come in the NUS-48E layout, ``root/<singer>/{sing,read}/<song>.wav`` plus ``<song>.txt``
phone lines ``start_s end_s phone`` (:class:`models.data.datasets.NusDataset`; ``root`` may
also be a folder holding ``nus48e/``). Audio is resampled to 16 kHz (§3.1 "Parameter details").

**Sample generation** (§3.1 "Test and Training sample generation", adapted):

1. The phone sequences of speech and singing, with silences and inhalations dropped
   (:data:`SILENCES`), must be equal (same phones, same order); a pair where they differ is
   skipped with a warning naming both label files.
2. The singing is cut into the segments "sandwiched between 2 silences"; speech is cut at the
   same phones (its own pauses stay inside and are removed by §2.1's silent-frame removal).
3. From each segment, every run of **at least** ``min_units`` consecutive *syllable nuclei*
   (vowels, :func:`vowel_set`: CMU ``AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW``, or
   ``a e i o u`` for the synthetic corpus) becomes one sample, cut from both files. This is our
   stand-in for the paper's "combinations [...] of three or more words": our labels have no
   word boundaries, and a syllable nucleus is the smallest unit both files mark. Consonants
   between two nuclei are split between the syllables (the first half, rounded down, ends the
   earlier syllable; one consonant starts the next syllable); leading / trailing consonants of
   a segment belong to its first / last syllable.
4. The melody is the singing's F0: the paper extracts it from the sung audio with a melody
   extractor [13]; we use pYIN (:func:`models.sts.metrics.pyin_f0`) on the whole sung file,
   cached on disk per file (``.npz``, recomputed when the wav changes), on the STFT frame
   grid. Singing cuts start and end on that grid, so the sample's F0 is a slice of it.
5. ``X, C = prepare(speech, f0)`` (§2.1: silence removal, one-factor stretch to the melody,
   log-magnitude, melody image), ``Y = log_magnitude(singing)``, and per-frame singing phone
   labels (index into :attr:`StsData.phonemes`, ``-1`` where unknown); all four have ``T``
   frames. For the singing autoencoder (§3.1) ``X`` is ``Y`` itself.

**Augmentation** (§2.3 "Data augmentation"): the input speech is pitch-shifted by an amount
drawn uniformly from [-1, 1] semitones, the target unchanged. Pitch shifting is slow, so
``versions`` (K) shifted copies are made once, at construction, with a seed: per *segment*
(every sample of a segment is a span of it, and the phase-vocoder shift is local in time, so
cutting the shifted segment equals shifting the cut, K times cheaper than shifting every
overlapping sample); the amounts are drawn per (pair, segment, copy) from ``seed``. A training
example takes one of the K copies at random.

**Splits** by song, so held-out songs are never seen in training (the paper keeps one song as
its test set): ``test`` is ``test_songs``, else the songs ``meta.json`` (our synthetic corpus,
beside or inside ``nus48e/``) marks ``"split": "test"``, else one song chosen by the hash of
its name; ``val`` is ``val_songs``, else one more song chosen the same way; ``train`` the rest.

Memory: audio is kept per segment (original + K shifted copies of the speech, and the
singing), F0 and labels per sample; the spectrograms are computed when a sample is used and
kept in a bounded LRU cache (``cache_mb``), so a corpus of any size fits; the values do not
depend on the cache, so batches are reproducible.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.datasets import NusDataset, NusPair, SkipsBadFiles, read_phone_lines
from models.errors import DataError
from models.sts import StsError
from models.sts.metrics import PYIN_FMAX, PYIN_FMIN, pyin_f0
from models.sts.preprocess import (
    HOP,
    MIN_STRETCH_SAMPLES,
    SAMPLE_RATE,
    log_magnitude,
    melody_image,
    prepare,
    remove_silent_frames,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: CMU vowels (stress digits stripped) and the synthetic corpus's five vowels
CMU_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow",
                        "oy", "uh", "uw"})
SIMPLE_VOWELS = frozenset("aeiou")
#: silence / pause / inhalation phones (lower case); NUS-48E has silence and inhalation (§3.1)
SILENCES = frozenset({"sil", "sp", "spn", "pau", "br", "breath", "inh", "inhale",
                      "inhalation", "#", "h#", "<sil>"})
SILENCE = "sil"
MIN_UNITS = 3  # §3.1 "three or more words"
VERSIONS = 3  # pitch-shifted copies of every speech segment
SHIFT_SEMITONES = 1.0  # §2.3: uniform in [-1, 1]
CACHE_DIRNAME = ".sts_cache"
_F0_VERSION = 1


class StsDataError(DataError, StsError):
    """A speech-to-singing corpus problem: a :class:`DataError` (the CLI prints it as one
    line) that is also a :class:`StsError`."""


def phone_key(phone: str) -> str:
    """Lower case, CMU stress digits stripped (``AA1`` → ``aa``)."""
    return re.sub(r"[0-9]+$", "", phone.strip().lower())


def is_silence(phone: str) -> bool:
    """Silence, pause or inhalation (:data:`SILENCES`)."""
    return phone_key(phone) in SILENCES


def is_vowel(phone: str) -> bool:
    """A syllable nucleus: a CMU vowel or one of ``a e i o u``."""
    k = phone_key(phone)
    return k in CMU_VOWELS or k in SIMPLE_VOWELS


def vowel_set(phonemes: Iterable[str]) -> set[str]:
    """The entries of a phoneme list that are syllable nuclei (:func:`is_vowel`)."""
    return {p for p in phonemes if is_vowel(p)}


def corpus_root(root: str | os.PathLike[str]) -> Path:
    """The NUS-layout folder: ``root/nus48e`` when it exists, else ``root``."""
    p = Path(root)
    if not p.exists():
        raise StsDataError(f"{p}: no such corpus folder; pass a folder holding nus48e/ or the "
                           "nus48e folder itself")
    return p / "nus48e" if (p / "nus48e").is_dir() else p


def _meta(root: Path) -> dict[str, Any] | None:
    for m in (root / "meta.json", root.parent / "meta.json"):
        if m.is_file():
            try:
                data = json.loads(m.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise StsDataError(f"{m}: unreadable meta.json ({exc}); fix or remove it") \
                    from exc
            return data if isinstance(data, dict) else None
    return None


def phoneme_list(root: str | os.PathLike[str]) -> list[str]:
    """The phoneme dictionary of a corpus (§3.1: "the same phoneme dictionary as employed in
    the dataset"): ``meta.json``'s ``phonemes`` when present (our synthetic corpus), else
    ``sil`` followed by every other phone the label files use, sorted (lower case, stress
    digits stripped; NUS-48E: 39 CMU phones, silence and inhalation)."""
    r = corpus_root(root)
    meta = _meta(r)
    if meta and isinstance(meta.get("phonemes"), list) and meta["phonemes"]:
        return [str(p) for p in meta["phonemes"]]
    phones: set[str] = set()
    for txt in sorted(r.glob("*/*/*.txt")):
        if txt.parent.name not in ("sing", "read"):
            continue
        try:
            phones.update(phone_key(p) for _, _, p in read_phone_lines(txt))
        except DataError as exc:
            log.warning("skipping %s: %s", txt, exc)
    if not phones:
        raise StsDataError(f"{r}: no phone labels found (expected <singer>/{{sing,read}}/"
                           "<song>.txt with lines 'start end phone')")
    phones.discard(SILENCE)
    return [SILENCE, *sorted(phones)]


def split_songs(songs: Sequence[str], test_songs: Sequence[str] | None = None,
                val_songs: Sequence[str] | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` song lists (disjoint, sorted); see the module docstring."""
    names = sorted(set(songs))

    def by_hash(pool: list[str], k: int) -> list[str]:
        return sorted(sorted(pool, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:k])

    if test_songs is not None:
        test = sorted(set(test_songs))
    else:
        marked = (meta or {}).get("songs") or {}
        test = sorted(n for n in names if isinstance(marked.get(n), dict)
                      and marked[n].get("split") == "test")
        if not test or len(test) >= len(names) - 1:
            test = by_hash(names, 1)
    rest = [n for n in names if n not in test]
    val = sorted(set(val_songs)) if val_songs is not None else by_hash(rest, 1)
    unknown = sorted((set(test) | set(val)) - set(names))
    if unknown:
        raise StsDataError(f"songs {unknown} are not in the corpus (have {names[:8]}"
                           f"{'...' if len(names) > 8 else ''}); name existing songs")
    if set(test) & set(val):
        raise StsDataError(f"songs {sorted(set(test) & set(val))} are both test and "
                           "validation songs; a song belongs to one split")
    train = [n for n in names if n not in test and n not in val]
    if not train or not val or not test:
        raise StsDataError(f"{len(names)} song(s) {names}: need at least 3 distinct songs (one "
                           "each to train on, validate and test); add songs")
    return {"train": train, "val": val, "test": test}


@dataclass(frozen=True, eq=False)
class StsSample:
    """One training / test sample: a run of ``n_units`` syllables of one segment of one pair.

    ``speech`` / ``singing`` are sample ranges inside the segment's audio (16 kHz; the singing
    range starts on the STFT grid and is ``(frames - 1) * HOP`` long). ``f0`` (Hz, 0 unvoiced)
    and ``labels`` (phoneme index, -1 unknown) have one value per STFT frame of the singing.
    """

    index: int
    split: str
    singer: str
    song: str
    segment: int
    first_unit: int
    n_units: int
    speech: tuple[int, int]
    singing: tuple[int, int]
    f0: np.ndarray
    labels: np.ndarray

    @property
    def frames(self) -> int:
        """``T``, the number of STFT frames of X, C, Y and labels."""
        return int(self.f0.shape[0])

    @property
    def speech_seconds(self) -> float:
        """Length of the speech cut (before silence removal), for the 1-s test rule (§3.1)."""
        return (self.speech[1] - self.speech[0]) / SAMPLE_RATE

    @property
    def key(self) -> str:
        """``singer/song#segment:first+n``, unique within a corpus."""
        return (f"{self.singer}/{self.song}#{self.segment}:{self.first_unit}+{self.n_units}")


@dataclass
class _Segment:
    speech: list[np.ndarray]  # [original, shifted 1..K]
    singing: np.ndarray
    shifts: tuple[float, ...]


def syllables(phones: Sequence[str]) -> list[tuple[int, int]]:
    """``(start, end)`` phone ranges of the syllables of a silence-free phone run: one per
    nucleus; consonants between two nuclei split with the first ``n // 2`` to the earlier
    syllable; leading / trailing consonants to the first / last syllable. ``[]`` without a
    nucleus."""
    nuclei = [i for i, p in enumerate(phones) if is_vowel(p)]
    if not nuclei:
        return []
    bounds = [0]
    for a, b in itertools.pairwise(nuclei):
        bounds.append(a + 1 + (b - a - 1) // 2)
    bounds.append(len(phones))
    return [(bounds[i], bounds[i + 1]) for i in range(len(nuclei))]


def _segments(phones: list[tuple[float, float, str]]) -> list[list[int]]:
    """Indices (into `phones`) of the non-silent runs between silences."""
    out: list[list[int]] = []
    cur: list[int] = []
    for i, (_, _, p) in enumerate(phones):
        if is_silence(p):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(i)
    if cur:
        out.append(cur)
    return out


class StsData(SkipsBadFiles):
    """The speech-to-singing samples of a NUS-layout corpus, split by song.

    Parameters
    ----------
    root : a folder holding ``nus48e/``, or the NUS-layout folder itself.
    min_units : syllable nuclei per sample, at least (our stand-in for §3.1's three words).
    versions : pitch-shifted copies (K) of every speech segment (§2.3); 0 disables them.
    seed : seed of the shift amounts.
    splits : which splits to build (others are only named: no audio, no pYIN).
    test_songs, val_songs : the held-out songs, overriding the default choice.
    phonemes : the phoneme list (a checkpoint's); default :func:`phoneme_list`.
    autoencoder : X is the singing's log-magnitude (§3.1 singing autoencoder); no shifts.
    cache_dir : where the pYIN F0 of each sung file is cached; default ``<root>/.sts_cache``
        (no disk cache, with a warning, when it cannot be written).
    cache_mb : memory budget of the spectrogram LRU cache.
    strict : unreadable files / mismatched pairs raise instead of being skipped.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_units: int = MIN_UNITS,
        versions: int = VERSIONS,
        seed: int = 0,
        splits: Sequence[str] = SPLITS,
        test_songs: Sequence[str] | None = None,
        val_songs: Sequence[str] | None = None,
        phonemes: Sequence[str] | None = None,
        autoencoder: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_mb: float = 512.0,
        strict: bool = False,
        progress: bool = False,
    ) -> None:
        if not isinstance(min_units, int) or min_units < 1:
            raise StsDataError(f"min_units={min_units!r}; expected an integer >= 1")
        if not isinstance(versions, int) or versions < 0:
            raise StsDataError(f"versions={versions!r}; expected an integer >= 0")
        bad = [s for s in splits if s not in SPLITS]
        if bad or not splits:
            raise StsDataError(f"splits={list(splits)}; valid: {', '.join(SPLITS)}")
        self.root = corpus_root(root)
        self.min_units = min_units
        self.autoencoder = bool(autoencoder)
        self.versions = 0 if self.autoencoder else versions
        self.seed = int(seed)
        self.strict = strict
        self.skipped: list[tuple[Path, str]] = []
        try:
            ds = NusDataset(self.root, sample_rate=SAMPLE_RATE, strict=strict)
        except DataError as exc:
            raise StsDataError(str(exc)) from None
        self.skipped.extend(ds.skipped)
        self.phonemes = list(phonemes) if phonemes is not None else phoneme_list(self.root)
        if not self.phonemes:
            raise StsDataError("the phoneme list is empty; pass the corpus's phonemes")
        self._index = {}
        for i, p in enumerate(self.phonemes):
            self._index.setdefault(p.lower(), i)
            self._index.setdefault(phone_key(p), i)
        self.songs = split_songs([name for _, name, _, _ in ds.pairs], test_songs, val_songs,
                                 _meta(self.root))
        self._split_of = {s: k for k, names in self.songs.items() for s in names}
        self._cache_dir = Path(cache_dir) if cache_dir is not None else self.root / CACHE_DIRNAME
        self._disk_cache = True
        self.pairs: list[tuple[str, str]] = []
        self.samples: dict[str, list[StsSample]] = {s: [] for s in SPLITS}
        self._segments: dict[tuple[str, str, int], _Segment] = {}
        self._lru: OrderedDict[tuple[int, str, int], np.ndarray] = OrderedDict()
        self._lru_bytes = 0
        self._lru_max = int(cache_mb * 2**20)
        self._all: list[StsSample] = []
        self._unknown_phones: set[str] = set()
        wanted = [i for i, (_, name, _, _) in enumerate(ds.pairs)
                  if self._split_of[name] in splits]
        from tqdm import tqdm

        for i in tqdm(wanted, desc="sts data", unit="pair", disable=not progress):
            _, _, sing_path, read_path = ds.pairs[i]
            try:
                pair = ds[i]
                self._add_pair(pair, sing_path, read_path)
            except DataError as exc:
                self._bad(sing_path, str(exc))
        if self._unknown_phones:
            log.warning("%s: phones %s are not in the phoneme list; their frames are "
                        "unlabelled (-1)", self.root, sorted(self._unknown_phones))
        if not self.pairs:
            raise StsDataError(
                f"{self.root}: no usable speech / singing pairs in {', '.join(splits)} "
                f"(skipped {len(self.skipped)}: "
                f"{self.skipped[0][1] if self.skipped else 'none found'}); check the wavs and "
                "that read/ and sing/ list the same phones")
        for s in splits:
            if not self.samples[s]:
                raise StsDataError(
                    f"{self.root}: no {s} samples of >= {min_units} syllables in songs "
                    f"{self.songs[s]}; lower min_units or add songs")

    # ---- construction -------------------------------------------------------------------
    def _add_pair(self, pair: NusPair, sing_path: Path, read_path: Path) -> None:
        sing_ph, read_ph = pair.sing_phones, pair.read_phones
        s_seq = [phone_key(p) for _, _, p in sing_ph if not is_silence(p)]
        r_seq = [phone_key(p) for _, _, p in read_ph if not is_silence(p)]
        if s_seq != r_seq:
            k = next((i for i, (a, b) in enumerate(zip(s_seq, r_seq)) if a != b),
                     min(len(s_seq), len(r_seq)))
            got = (s_seq[k] if k < len(s_seq) else "<end>", r_seq[k] if k < len(r_seq) else
                   "<end>")
            raise StsDataError(
                f"{sing_path.with_suffix('.txt')} and {read_path.with_suffix('.txt')} list "
                f"different phones (without silences: {len(s_seq)} vs {len(r_seq)}; first "
                f"difference at phone {k}: {got[0]!r} vs {got[1]!r}); fix the labels so both "
                "list the same phones in the same order")
        if not s_seq:
            raise StsDataError(f"{sing_path.with_suffix('.txt')}: no phones besides silence")
        split = self._split_of[pair.name]
        _, f0 = self._f0(pair, sing_path)
        read_nonsil = [i for i, (_, _, p) in enumerate(read_ph) if not is_silence(p)]
        starts = np.array([a for a, _, _ in sing_ph])
        ends = np.array([b for _, b, _ in sing_ph])
        frame_labels = self._frame_labels(sing_ph, starts, ends, f0.shape[0])
        pos = 0  # position in the silence-free sequence
        added = 0
        rng_base = zlib.crc32(f"{pair.singer}/{pair.name}".encode())
        for seg_no, idx in enumerate(_segments(sing_ph)):
            seg_phones = [sing_ph[i][2] for i in idx]
            sylls = syllables(seg_phones)
            r_idx = read_nonsil[pos : pos + len(idx)]
            pos += len(idx)
            if len(sylls) < self.min_units:
                continue
            # segment audio: singing on the frame grid, speech at its own phone times
            g0 = int(round(sing_ph[idx[0]][0] * SAMPLE_RATE / HOP))
            g1 = int(round(sing_ph[idx[-1]][1] * SAMPLE_RATE / HOP))
            s0 = int(round(read_ph[r_idx[0]][0] * SAMPLE_RATE))
            s1 = int(round(read_ph[r_idx[-1]][1] * SAMPLE_RATE))
            sing_seg = _cut(pair.sing, g0 * HOP, g1 * HOP)
            speech_seg = _cut(pair.read, s0, s1)
            if speech_seg.size < MIN_STRETCH_SAMPLES or g1 - g0 < 2:
                continue
            rng = np.random.default_rng([self.seed, rng_base, seg_no])
            shifts = tuple(float(v) for v in rng.uniform(-SHIFT_SEMITONES, SHIFT_SEMITONES,
                                                         self.versions))
            seg = _Segment([speech_seg, *(_pitch_shift(speech_seg, v) for v in shifts)],
                           sing_seg, shifts)
            n_samples = 0
            for a in range(len(sylls)):
                for b in range(a + self.min_units - 1, len(sylls)):
                    p0, p1 = sylls[a][0], sylls[b][1] - 1  # phone positions in the segment
                    fa = int(round(sing_ph[idx[p0]][0] * SAMPLE_RATE / HOP))
                    fb = int(round(sing_ph[idx[p1]][1] * SAMPLE_RATE / HOP))
                    ra = int(round(read_ph[r_idx[p0]][0] * SAMPLE_RATE)) - s0
                    rb = int(round(read_ph[r_idx[p1]][1] * SAMPLE_RATE)) - s0
                    if fb - fa < 2 or not self._usable(seg, ra, rb, f0[fa : fb + 1]):
                        continue
                    sample = StsSample(
                        index=len(self._all), split=split, singer=pair.singer,
                        song=pair.name, segment=seg_no, first_unit=a, n_units=b - a + 1,
                        speech=(ra, rb), singing=((fa - g0) * HOP, (fb - g0) * HOP),
                        f0=_slice(f0, fa, fb + 1, 0.0).astype(np.float32),
                        labels=_slice(frame_labels, fa, fb + 1, -1).astype(np.int64))
                    self._all.append(sample)
                    self.samples[split].append(sample)
                    n_samples += 1
            if n_samples:
                self._segments[(pair.singer, pair.name, seg_no)] = seg
                added += n_samples
        if added:
            self.pairs.append((pair.singer, pair.name))
        else:
            log.warning("%s: no sample of >= %d syllables between silences; pair unused",
                        sing_path, self.min_units)

    @staticmethod
    def _usable(seg: _Segment, a: int, b: int, f0: np.ndarray) -> bool:
        """What §2.1's :func:`prepare` needs: a voiced melody frame and >= 1024 non-silent
        speech samples in every copy."""
        if not np.any(f0 > 0):
            return False
        for wav in seg.speech:
            x = wav[a:b]
            if x.size < MIN_STRETCH_SAMPLES or not np.any(x):
                return False
            if remove_silent_frames(x).size < MIN_STRETCH_SAMPLES:
                return False
        return True

    def _frame_labels(self, phones: list[tuple[float, float, str]], starts: np.ndarray,
                      ends: np.ndarray, n: int) -> np.ndarray:
        """Phoneme index of every STFT frame of a sung file (-1: unknown / unannotated)."""
        ids = np.array([self._phone_id(p) for _, _, p in phones], dtype=np.int64)
        t = np.arange(n) * HOP / SAMPLE_RATE
        j = np.searchsorted(starts, t, side="right") - 1
        ok = (j >= 0) & (t < ends[np.clip(j, 0, None)])
        return np.where(ok, ids[np.clip(j, 0, None)], -1)

    def _phone_id(self, phone: str) -> int:
        p = phone.strip().lower()
        if p in self._index:
            return self._index[p]
        k = phone_key(p)
        if k in self._index:
            return self._index[k]
        if is_silence(p) and SILENCE in self._index:
            return self._index[SILENCE]
        self._unknown_phones.add(phone)
        return -1

    def _f0(self, pair: NusPair, sing_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """pYIN F0 of the whole sung file on the frame grid, cached on disk per file."""
        st = sing_path.stat()
        stamp = np.array([st.st_size, st.st_mtime_ns, _F0_VERSION, SAMPLE_RATE, HOP,
                          PYIN_FMIN, PYIN_FMAX, pair.sing.shape[0]], dtype=np.float64)
        path = self._cache_dir / pair.singer / f"{pair.name}.f0.npz"
        if self._disk_cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if np.array_equal(z["stamp"], stamp):
                        return z["times"], z["f0"]
            except (OSError, ValueError, KeyError, EOFError) as exc:
                log.warning("%s: unreadable F0 cache (%s); recomputing", path, exc)
        try:
            times, f0 = pyin_f0(pair.sing)
        except StsError as exc:
            raise StsDataError(f"{sing_path}: {exc}") from None
        if self._disk_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp.npz")
                np.savez(tmp, times=times, f0=f0, stamp=stamp)
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot write the F0 cache under %s (%s); F0 is recomputed on "
                            "every run (pass cache_dir=)", self._cache_dir, exc)
                self._disk_cache = False
        return times, f0

    # ---- samples ------------------------------------------------------------------------
    def split(self, name: str) -> list[StsSample]:
        """The samples of one split (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise StsDataError(f"split={name!r}; valid: {', '.join(SPLITS)}")
        return self.samples[name]

    @property
    def train(self) -> list[StsSample]:
        return self.samples["train"]

    @property
    def val(self) -> list[StsSample]:
        return self.samples["val"]

    @property
    def test(self) -> list[StsSample]:
        return self.samples["test"]

    def shifts(self, sample: StsSample) -> tuple[float, ...]:
        """Semitones of the pitch-shifted copies 1..K of the sample's speech (§2.3)."""
        return self._segments[(sample.singer, sample.song, sample.segment)].shifts

    def speech(self, sample: StsSample, version: int = 0) -> np.ndarray:
        """The speech cut (16 kHz); ``version`` 0 is the original, 1..K the shifted copies."""
        seg = self._segments[(sample.singer, sample.song, sample.segment)]
        if not 0 <= version < len(seg.speech):
            raise StsDataError(f"version={version}; this data has versions 0..{self.versions}")
        return seg.speech[version][sample.speech[0] : sample.speech[1]]

    def singing(self, sample: StsSample) -> np.ndarray:
        """The singing cut (16 kHz), ``(frames - 1) * HOP`` samples."""
        seg = self._segments[(sample.singer, sample.song, sample.segment)]
        return _cut(seg.singing, *sample.singing)

    def _cached(self, key: tuple[int, str, int], make: Any) -> np.ndarray:
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            return hit
        value = make()
        self._lru[key] = value
        self._lru_bytes += value.nbytes
        while self._lru_bytes > self._lru_max and len(self._lru) > 1:
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= old.nbytes
        return value

    def target(self, sample: StsSample) -> np.ndarray:
        """``Y = log(1 + |STFT(singing)|)``, ``(513, T)``."""
        return self._cached((sample.index, "y", 0), lambda: _fix(
            log_magnitude(self.singing(sample)), sample.frames))

    def inputs(self, sample: StsSample, version: int = 0) -> np.ndarray:
        """``X`` of §2.1 (the speech version's :func:`prepare`), or ``Y`` for the autoencoder."""
        if self.autoencoder:
            return self.target(sample)

        def make() -> np.ndarray:
            try:
                return prepare(self.speech(sample, version), sample.f0).x
            except StsError as exc:
                raise StsDataError(f"sample {sample.key} (version {version}): {exc}") from None

        return self._cached((sample.index, "x", version), make)

    def arrays(self, sample: StsSample, version: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X, C, Y, labels)`` of one sample, all with ``T`` frames."""
        return (self.inputs(sample, version), melody_image(sample.f0), self.target(sample),
                sample.labels)

    def batch(self, rng: np.random.Generator, size: int, frames: int, split: str = "train",
              augment: bool = True) -> tuple[Any, Any, Any, Any]:
        """A batch of `size` random samples of `split` as torch tensors ``X, C, Y`` ``(B, 513,
        frames)`` and ``labels`` ``(B, frames)`` (int64): each cropped at one random offset
        (the same in all four) or zero-padded at the end (labels -1). With `augment` (training
        split, K > 0) each example uses one of the K pitch-shifted speech copies at random.
        Only `rng` is consumed."""
        import torch

        if size < 1 or frames < 1:
            raise StsDataError(f"size={size}, frames={frames}; both must be >= 1")
        pool = self.split(split)
        if not pool:
            raise StsDataError(f"no {split} samples were built; include {split!r} in splits")
        xs, cs, ys, ls = [], [], [], []
        for _ in range(size):
            s = pool[int(rng.integers(len(pool)))]
            v = int(rng.integers(1, self.versions + 1)) if augment and self.versions else 0
            x, c, y, lab = self.arrays(s, v)
            t = s.frames
            off = int(rng.integers(t - frames + 1)) if t > frames else 0
            xs.append(_crop(x, off, frames, 0.0))
            cs.append(_crop(c, off, frames, 0.0))
            ys.append(_crop(y, off, frames, 0.0))
            ls.append(_crop(lab[None], off, frames, -1)[0])
        return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs)),
                torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ls)))

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary: root, songs per split, sample counts, phonemes."""
        return {"root": str(self.root), "songs": self.songs,
                "samples": {k: len(v) for k, v in self.samples.items()},
                "pairs": len(self.pairs), "phonemes": list(self.phonemes),
                "min_units": self.min_units, "versions": self.versions}


def _cut(wav: np.ndarray, a: int, b: int) -> np.ndarray:
    """``wav[a:b]`` zero-padded to ``b - a`` samples when `b` runs past the end."""
    out = wav[max(a, 0) : b]
    if out.shape[0] < b - a:
        out = np.pad(out, (0, b - a - out.shape[0]))
    return np.ascontiguousarray(out, dtype=np.float32)


def _slice(v: np.ndarray, a: int, b: int, fill: float) -> np.ndarray:
    out = v[a:b]
    if out.shape[0] < b - a:
        out = np.concatenate([out, np.full(b - a - out.shape[0], fill, dtype=v.dtype)])
    return out


def _fix(x: np.ndarray, t: int) -> np.ndarray:
    """Trim / zero-pad an ``(F, T')`` array to `t` frames."""
    if x.shape[1] >= t:
        return np.ascontiguousarray(x[:, :t])
    return np.pad(x, ((0, 0), (0, t - x.shape[1])))


def _crop(x: np.ndarray, off: int, n: int, fill: float) -> np.ndarray:
    out = x[:, off : off + n]
    if out.shape[1] < n:
        out = np.concatenate([out, np.full((x.shape[0], n - out.shape[1]), fill,
                                           dtype=x.dtype)], axis=1)
    return np.ascontiguousarray(out)


def _pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    """librosa's phase-vocoder pitch shift (length kept), §2.3."""
    import librosa

    y = librosa.effects.pitch_shift(wav, sr=SAMPLE_RATE, n_steps=float(semitones))
    return librosa.util.fix_length(y, size=wav.shape[0]).astype(np.float32)


# ---- a toy corpus -------------------------------------------------------------------------

_TOY_CONSONANTS = ("m", "n", "l", "s", "t", "k", "p", "f")
_TOY_FORMANTS = {"a": (800.0, 1200.0), "e": (500.0, 1900.0), "i": (300.0, 2300.0),
                 "o": (500.0, 900.0), "u": (320.0, 800.0)}
TOY_PHONEMES = ("sil", "a", "e", "i", "o", "u", *_TOY_CONSONANTS)


def _toy_voice(phones: list[tuple[str, float]], f0_of: Any, sr: int,
               rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Render ``(phone, seconds)`` with a formant-weighted harmonic voice (vowels, nasals,
    liquids) and noise (obstruents); ``f0_of(i, t)`` is the F0 of phone ``i`` at ``t`` s into
    it. Returns the waveform and the phone lines."""
    out, lines, t0 = [], [], 0.0
    for i, (ph, dur) in enumerate(phones):
        n = int(round(dur * sr))
        t = np.arange(n) / sr
        if ph == "sil":
            x = 1e-4 * rng.standard_normal(n)
        elif ph in "sftkp":
            x = 0.05 * rng.standard_normal(n)
            if ph == "s":
                x = np.diff(x, prepend=0.0)
        else:
            f0 = f0_of(i, t)
            phase = 2 * np.pi * np.cumsum(f0) / sr
            f1, f2 = _TOY_FORMANTS.get(ph, (300.0, 1500.0))
            x = np.zeros(n)
            for h in range(1, 24):
                fh = h * f0
                amp = (np.exp(-0.5 * ((fh - f1) / 150.0) ** 2)
                       + 0.6 * np.exp(-0.5 * ((fh - f2) / 200.0) ** 2) + 0.05 / h)
                x += np.where(fh < 0.45 * sr, amp, 0.0) * np.sin(h * phase)
            x *= 0.15 if ph in _TOY_FORMANTS else 0.05
        fade = min(int(0.01 * sr), n // 2)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade)
            x[:fade] *= ramp
            x[n - fade :] *= ramp[::-1]
        out.append(x)
        lines.append((t0, t0 + n / sr, ph))
        t0 += n / sr
    return np.concatenate(out).astype(np.float32), lines


def write_toy_corpus(root: str | os.PathLike[str], singers: int = 2, songs: int = 3,
                     phrases: Sequence[int] = (4, 3), seed: int = 0,
                     sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a tiny NUS-48E-layout corpus of synthetic voices for tests and smoke runs:
    ``root/nus48e/<singer>/{sing,read}/<song>.{wav,txt}`` and ``root/meta.json`` (phonemes:
    :data:`TOY_PHONEMES`; the last song is marked ``"split": "test"``). Each song has phrases
    of ``phrases`` CV syllables separated by silences; singing holds each vowel 0.24 s on a
    note, speech 0.22 s on a falling pitch, so a run of 4 syllables has > 1 s of speech.
    Returns ``root``."""
    import soundfile as sf

    root = Path(root)
    vowels = "aeiou"
    for j in range(songs):
        rng = np.random.default_rng([seed, j])
        lyric = [[(str(rng.choice(_TOY_CONSONANTS)), str(rng.choice(list(vowels))))
                  for _ in range(k)] for k in phrases]
        degrees = rng.choice([0, 2, 4, 5, 7, 9], size=sum(phrases))
        for i in range(singers):
            vrng = np.random.default_rng([seed, j, i])
            base = 55 + 5 * i
            sung: list[tuple[str, float]] = [("sil", 0.1)]
            spoken: list[tuple[str, float]] = [("sil", 0.1)]
            notes: dict[int, float] = {}
            syl = 0
            for p, words in enumerate(lyric):
                if p:
                    sung.append(("sil", 0.25))
                    spoken.append(("sil", 0.15))
                for c, v in words:
                    notes[len(sung) + 1] = 440.0 * 2 ** ((base + degrees[syl] - 69) / 12)
                    sung += [(c, 0.06), (v, 0.24)]
                    spoken += [(c, 0.06), (v, 0.22)]
                    syl += 1
            sung.append(("sil", 0.1))
            spoken.append(("sil", 0.1))
            speech_hz = 110.0 + 40.0 * i

            def sung_f0(k: int, t: np.ndarray, notes: dict[int, float] = notes,
                        base: int = base) -> np.ndarray:
                hz = notes.get(k, notes.get(k + 1, 440.0 * 2 ** ((base - 69) / 12)))
                return hz * 2 ** (0.3 * np.sin(2 * np.pi * 5.0 * t) / 12)

            def speech_f0(k: int, t: np.ndarray, hz: float = speech_hz) -> np.ndarray:
                return hz * (1.0 - 0.3 * t)

            for folder, phones, f0_of in (("sing", sung, sung_f0), ("read", spoken, speech_f0)):
                wav, lines = _toy_voice(phones, f0_of, sample_rate, vrng)
                d = root / "nus48e" / f"singer{i:02d}" / folder
                d.mkdir(parents=True, exist_ok=True)
                sf.write(d / f"song{j:03d}.wav", wav, sample_rate)
                (d / f"song{j:03d}.txt").write_text(
                    "".join(f"{a:.4f} {b:.4f} {ph}\n" for a, b, ph in lines))
    meta = {"phonemes": list(TOY_PHONEMES), "sample_rate": sample_rate,
            "songs": {f"song{j:03d}": {"split": "test" if j == songs - 1 else "train"}
                      for j in range(songs)}}
    (root / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return root
