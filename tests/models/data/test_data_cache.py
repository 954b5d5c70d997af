"""The content-addressed feature cache."""

from __future__ import annotations

import logging
import pathlib
import shutil

import numpy as np
import pytest

from models.audio import load_audio
from models.data.cache import FeatureCache, find_labels
from models.data.features import MelConfig, dio_f0, log_mel


def test_cache_hit_does_not_recompute(tiny_corpus: pathlib.Path, tmp_path: pathlib.Path) -> None:
    clip = tiny_corpus / "dataset_raw/singer00/song000.wav"
    cfg = MelConfig(sample_rate=16000)
    cache = FeatureCache(tmp_path / "cache")
    a = cache.get(clip, cfg)
    assert (cache.hits, cache.misses) == (0, 1)
    entry = cache.entry_path(a.key)
    mtime = entry.stat().st_mtime_ns
    b = cache.get(clip, cfg)
    assert (cache.hits, cache.misses) == (1, 1) and entry.stat().st_mtime_ns == mtime
    assert np.array_equal(a.mel, b.mel) and np.array_equal(a.f0, b.f0)
    # a new cache object on the same directory hits too
    c = FeatureCache(tmp_path / "cache")
    c.get(clip, cfg)
    assert (c.hits, c.misses) == (1, 0)
    # values are the contract's
    wav, sr = load_audio(clip, 16000)
    assert np.array_equal(a.mel, log_mel(wav, cfg))
    f0, voiced = dio_f0(wav, sr, 128)
    assert np.array_equal(a.f0, f0) and np.array_equal(a.voiced, voiced)
    # labels were found next to the layout and resampled to the mel frames
    assert a.label_f0 is not None and a.phonemes is not None
    assert a.label_f0.shape == a.phonemes.shape == (a.mel.shape[1],)


def test_key_changes_with_params_and_content(
    tiny_corpus: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    clip = tiny_corpus / "dataset_raw/singer01/song001.wav"
    cache = FeatureCache(tmp_path / "cache")
    base = cache.key(clip, MelConfig(sample_rate=16000))
    assert base == cache.key(clip, MelConfig(sample_rate=16000))
    others = {
        cache.key(clip, MelConfig(sample_rate=16000, hop_length=160)),
        cache.key(clip, MelConfig(sample_rate=16000, n_mels=64)),
        cache.key(clip, MelConfig(sample_rate=24000)),
        cache.key(clip, MelConfig(sample_rate=16000), labels=None),
        FeatureCache(tmp_path / "cache", f0_ceil=800.0).key(clip, MelConfig(sample_rate=16000)),
    }
    assert base not in others and len(others) == 5
    # same bytes elsewhere (no labels there) vs. changed bytes
    copy = tmp_path / "x.wav"
    shutil.copy(clip, copy)
    assert cache.key(copy, MelConfig(sample_rate=16000)) == cache.key(
        clip, MelConfig(sample_rate=16000), labels=None
    )
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    assert cache.key(copy, MelConfig(sample_rate=16000)) != cache.key(
        clip, MelConfig(sample_rate=16000), labels=None
    )
    feats = cache.get(copy, MelConfig(sample_rate=24000))
    assert feats.label_f0 is None and feats.mel.shape[0] == 80
    assert feats.mel.shape[1] == 1 + load_audio(copy, 24000)[0].shape[0] // 128


def test_find_labels_for_each_layout(tiny_corpus: pathlib.Path) -> None:
    sung = find_labels(tiny_corpus / "nus48e/singer02/sing/song001.wav")
    read = find_labels(tiny_corpus / "nus48e/singer02/read/song001.wav")
    assert sung is not None and sung[0].name == "song001_sung.npz" and sung[1:] == (16000, 128)
    assert read is not None and read[0].name == "song001_spoken.npz"
    assert find_labels(tiny_corpus / "musdb/train/x/vocals.wav") is None


def test_corrupt_entry_is_recomputed_with_warning(
    tiny_corpus: pathlib.Path, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = tiny_corpus / "dataset_raw/singer02/song000.wav"
    cfg = MelConfig(sample_rate=16000)
    cache = FeatureCache(tmp_path / "cache")
    a = cache.get(clip, cfg)
    cache.entry_path(a.key).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="models.data.cache"):
        b = cache.get(clip, cfg)
    assert "unreadable" in caplog.text
    assert cache.misses == 2 and np.array_equal(a.mel, b.mel)
