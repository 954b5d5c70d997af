"""Speech-to-singing samples (§3.1): pairs, aligned samples of >= 3 syllable nuclei, pitch-shift
augmentation (§2.3), batches, the split by song, and bad corpora, on a tiny synthetic corpus."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.sts.data import (
    TOY_PHONEMES,
    StsData,
    StsDataError,
    is_silence,
    is_vowel,
    phoneme_list,
    split_songs,
    syllables,
    vowel_set,
    write_toy_corpus,
)
from models.sts.preprocess import HOP, N_BINS, SAMPLE_RATE


def toy_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 singers x 3 songs (phrases of 4 and 3 syllables), shared by the sts test files of a
    session with its pYIN cache (``nus48e/.sts_cache``)."""
    root = tmp_path_factory.getbasetemp() / "sts_toy_corpus"
    if not (root / "meta.json").exists():
        write_toy_corpus(root)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_corpus(tmp_path_factory)


@pytest.fixture(scope="module")
def data(corpus: Path) -> StsData:
    return StsData(corpus)


def _nuclei(labels: np.ndarray, phonemes: list[str]) -> int:
    """Runs of consecutive vowel-labelled frames."""
    vowel = np.array([is_vowel(phonemes[i]) if i >= 0 else False for i in labels])
    return int(np.sum(vowel[1:] & ~vowel[:-1]) + vowel[0])


def test_phone_classes_and_syllables():
    cmu = ["AA1", "ae", "ah0", "AO", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy",
           "uh", "uw", "b", "ch", "hh", "ng", "sil", "sp"]
    assert len(vowel_set(cmu)) == 15 and vowel_set(TOY_PHONEMES) == set("aeiou")
    assert is_silence("SIL") and is_silence("sp") and not is_silence("s")
    # nuclei a, i, u; between a and i two consonants split 1 | 1; one consonant starts a syllable
    assert syllables(["s", "t", "a", "n", "k", "i", "l", "u", "m"]) == [(0, 4), (4, 6), (6, 9)]
    assert syllables(["s", "t"]) == []


def test_pairs_found_and_samples_aligned_with_enough_nuclei(data: StsData):
    assert len(data.pairs) == 6 and not data.skipped
    assert data.phonemes == list(TOY_PHONEMES)
    # per pair: phrase of 4 syllables -> runs 0-2, 1-3, 0-3; phrase of 3 -> one run
    assert {k: len(v) for k, v in data.samples.items()} == {"train": 8, "val": 8, "test": 8}
    samples = data.train + data.val + data.test
    assert len({s.key for s in samples}) == len(samples)
    for s in samples:
        x, c, y, lab = data.arrays(s)
        t = s.frames
        assert x.shape == c.shape == y.shape == (N_BINS, t) and lab.shape == (t,)
        assert x.dtype == np.float32 and np.isfinite(x).all() and np.isfinite(y).all()
        assert data.singing(s).shape == ((t - 1) * HOP,)
        assert s.n_units >= 3 and _nuclei(lab, data.phonemes) >= s.n_units
        assert lab.min() >= -1 and lab.max() < len(data.phonemes)
        # one 1 per voiced frame of the melody, at the F0's bin
        voiced = s.f0 > 0
        assert voiced.any() and np.array_equal(c.sum(axis=0) > 0, voiced)
        assert 1.0 / 3 < s.speech_seconds / (s.n_units * 0.28) < 1.5
    assert sum(s.speech_seconds >= 1.0 for s in data.test) == 2  # the two 4-syllable runs


def test_pitch_shifted_copies_differ_from_the_original_and_keep_length(data: StsData, corpus):
    s = data.train[0]
    shifts = data.shifts(s)
    assert len(shifts) == 3 and all(-1.0 <= v <= 1.0 for v in shifts)
    orig = data.speech(s, 0)
    x0 = data.inputs(s, 0)
    for k in (1, 2, 3):
        shifted = data.speech(s, k)
        assert shifted.shape == orig.shape
        assert np.abs(shifted - orig).mean() > 0.05 * np.abs(orig).mean()
        xk = data.inputs(s, k)
        assert xk.shape == x0.shape and not np.allclose(xk, x0)
    assert np.array_equal(data.target(s), data.arrays(s, 2)[2])  # the target is unchanged
    # the amounts are seeded: the same at every build, others with another seed
    again = StsData(corpus, splits=("train",))
    assert again.shifts(again.train[0]) == shifts
    other = StsData(corpus, splits=("train",), seed=1, versions=1)
    assert other.shifts(other.train[0]) != shifts[:1]
    with pytest.raises(StsDataError, match="version"):
        data.speech(s, 4)


def test_batch_shapes_and_aligned_random_crops(data: StsData):
    x, c, y, lab = data.batch(np.random.default_rng(0), 4, 40)
    assert x.shape == c.shape == y.shape == (4, N_BINS, 40) and lab.shape == (4, 40)
    assert x.dtype == torch.float32 and lab.dtype == torch.int64
    # an unaugmented crop is one window of one sample, at the same offset in all four
    x, c, y, lab = (t[0].numpy() for t in data.batch(np.random.default_rng(3), 1, 20,
                                                     augment=False))
    rng = np.random.default_rng(3)  # the same draws: sample, then offset
    s = data.train[int(rng.integers(len(data.train)))]
    o = int(rng.integers(s.frames - 20 + 1))
    xs, cs, ys, ls = data.arrays(s, 0)
    assert np.array_equal(xs[:, o : o + 20], x) and np.array_equal(cs[:, o : o + 20], c)
    assert np.array_equal(ys[:, o : o + 20], y) and np.array_equal(ls[o : o + 20], lab)
    # longer than every sample: zero-padded, labels -1
    longest = max(s.frames for s in data.train)
    x, c, y, lab = data.batch(np.random.default_rng(0), 2, longest + 10)
    assert (lab[:, -10:] == -1).all() and (y[:, :, -10:] == 0).all() and (x[:, :, -10:] == 0).all()
    # the same rng gives the same batch (training resumes with the same batches)
    a = data.batch(np.random.default_rng(7), 3, 24)
    b = data.batch(np.random.default_rng(7), 3, 24)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_split_by_song(data: StsData):
    songs = data.songs
    assert songs["test"] == ["song002"]  # meta.json marks it
    assert len(set(songs["train"]) | set(songs["val"]) | set(songs["test"])) == 3
    for split in ("train", "val", "test"):
        assert {s.song for s in data.split(split)} == set(songs[split])
    # without meta.json: one test and one validation song by the hash of the names
    names = [f"s{i}" for i in range(6)]
    a = split_songs(names)
    assert a == split_songs(list(reversed(names)))
    assert len(a["test"]) == len(a["val"]) == 1 and len(a["train"]) == 4
    assert not set(a["test"]) & set(a["val"])
    with pytest.raises(StsDataError, match="at least 3 distinct songs"):
        split_songs(["a", "b"])
    with pytest.raises(StsDataError, match="not in the corpus"):
        split_songs(names, test_songs=["zz"])


def test_autoencoder_input_is_the_singing(corpus: Path):
    d = StsData(corpus, splits=("val",), autoencoder=True)
    s = d.val[0]
    x, _, y, _ = d.arrays(s)
    assert d.versions == 0 and np.array_equal(x, y)


def test_mismatched_phones_and_a_corrupt_wav_are_skipped_with_warnings(corpus, tmp_path,
                                                                       caplog):
    root = tmp_path / "c"
    shutil.copytree(corpus, root)  # with the F0 cache
    txt = root / "nus48e" / "singer01" / "read" / "song001.txt"
    lines = txt.read_text().splitlines()
    a, b, _ = lines[2].split()
    lines[2] = f"{a} {b} zz"
    txt.write_text("\n".join(lines) + "\n")
    bad_wav = root / "nus48e" / "singer00" / "sing" / "song000.wav"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with caplog.at_level(logging.WARNING, logger="models"):
        d = StsData(root)
    assert len(d.pairs) == 4 and ("singer01", "song001") not in d.pairs
    msgs = [r.getMessage() for r in caplog.records]
    assert any(str(txt) in m and "different phones" in m and "'zz'" in m for m in msgs)
    assert any(str(bad_wav) in m for m in msgs)
    assert len(d.skipped) == 2
    with pytest.raises(StsDataError, match="different phones|not a readable"):
        StsData(root, strict=True)


def test_bad_corpora_are_one_line_errors(tmp_path):
    with pytest.raises(StsDataError) as exc:
        StsData(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(exc.value) and "\n" not in str(exc.value)
    empty = tmp_path / "empty" / "nus48e" / "singer00"
    (empty / "sing").mkdir(parents=True)
    sf.write(empty / "sing" / "a.wav", np.zeros(1600, "f4"), SAMPLE_RATE)
    with pytest.raises(StsDataError) as exc:
        StsData(tmp_path / "empty")
    msg = str(exc.value)
    assert "no usable pairs" in msg and str(tmp_path / "empty" / "nus48e") in msg
    assert "\n" not in msg


def test_other_rates_are_resampled_and_phonemes_come_from_the_labels(tmp_path):
    root = write_toy_corpus(tmp_path / "r", singers=1, songs=3, phrases=(3,),
                            sample_rate=22050)
    (root / "meta.json").unlink()
    assert phoneme_list(root)[0] == "sil" and set(phoneme_list(root)) <= set(TOY_PHONEMES)
    d = StsData(root)
    assert sorted(len(v) for v in d.songs.values()) == [1, 1, 1]
    s = d.test[0]
    x, _, y, lab = d.arrays(s)
    assert lab.shape == (s.frames,)
    assert x.shape == y.shape == (N_BINS, s.frames)
    # a 3-syllable run: 3 x (0.06 + 0.24) s sung, at 16 kHz
    assert abs(len(d.singing(s)) / SAMPLE_RATE - 0.9) < 0.05
