"""Loaders over the written layouts, real-dataset layouts (no meta.json) and corrupt files."""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import numpy as np
import pytest

from models.audio import write_wav
from models.data.datasets import MusdbDataset, NusDataset, SingingCorpus, resample_labels
from models.errors import DataError


@pytest.fixture()
def corpus_copy(tiny_corpus: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    dst = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, dst)
    return dst


def test_singing_corpus_with_labels(tiny_corpus: pathlib.Path) -> None:
    ds = SingingCorpus(tiny_corpus)
    assert len(ds) == 6 and ds.singers == ["singer00", "singer01", "singer02"]
    item = ds[0]
    assert item.f0_source == "labels" and item.sample_rate == 16000
    assert (
        item.f0.shape
        == item.voiced.shape
        == item.phonemes.shape
        == (1 + item.audio.shape[0] // 128,)
    )
    # another rate and hop: labels follow the time axis
    ds2 = SingingCorpus(tiny_corpus, sample_rate=24000, hop_length=256, styles=("sung", "spoken"))
    assert len(ds2) == 12
    it2 = ds2[0]
    assert it2.sample_rate == 24000 and it2.f0.shape == (1 + it2.audio.shape[0] // 256,)
    assert abs(it2.audio.shape[0] / 24000 - item.audio.shape[0] / 16000) < 1e-3
    # voiced fraction is the same on both grids
    assert abs(it2.voiced.mean() - item.voiced.mean()) < 0.02
    test = SingingCorpus(tiny_corpus, split="test")
    assert len(test) == 3 and {c.split for c in test.clips} == {"test"}


def test_resample_labels_nearest() -> None:
    v = np.arange(10, dtype=np.float32)
    out = resample_labels(v, 16000, 128, 16000, 64, 19)
    # frame i of the new grid sits at i * 64 samples -> old frame rint(i / 2) (half to even)
    assert out.tolist()[:8] == [0, 0, 1, 2, 2, 2, 3, 4]
    assert out.shape == (19,) and out[-1] == 9
    assert resample_labels(v, 16000, 128, 32000, 256, 10).tolist() == v.tolist()


def test_plain_dataset_raw_without_meta_uses_dio(corpus_copy: pathlib.Path) -> None:
    raw = corpus_copy / "dataset_raw"
    (corpus_copy / "meta.json").unlink()
    ds = SingingCorpus(corpus_copy)
    assert len(ds) == 6
    item = ds[1]
    assert item.f0_source == "dio" and item.phonemes is None
    assert 0.5 < item.voiced.mean() < 0.95
    # the dataset_raw folder itself works too, with flac files
    wav = ds[0].audio
    write_wav(raw / "singer00" / "extra.wav", wav, 16000)
    import soundfile as sf

    sf.write(raw / "singer01" / "extra.flac", wav, 16000)
    assert len(SingingCorpus(raw)) == 8


def _corrupt(path: pathlib.Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        path.write_bytes(path.read_bytes()[:30])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupt_clip_is_skipped_with_a_warning(
    corpus_copy: pathlib.Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = corpus_copy / "dataset_raw/singer01/song000.wav"
    _corrupt(bad, how)
    with caplog.at_level(logging.WARNING, logger="models.data.datasets"):
        ds = SingingCorpus(corpus_copy)
    assert len(ds) == 5 and [p for p, _ in ds.skipped] == [bad]
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    items = list(ds)
    assert len(items) == 5 and all(i.audio.shape[0] > 16000 for i in items)
    with pytest.raises(DataError, match="song000.wav"):
        SingingCorpus(corpus_copy, strict=True)
    # same on the plain layout (no meta.json)
    (corpus_copy / "meta.json").unlink()
    assert len(SingingCorpus(corpus_copy)) == 5


def test_corrupt_labels_and_silent_audio_skipped_at_load(
    corpus_copy: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    meta = json.loads((corpus_copy / "meta.json").read_text())
    sung = [c for c in meta["clips"] if c["style"] == "sung"]
    (corpus_copy / sung[0]["labels"]).write_bytes(b"not a zip")
    write_wav(corpus_copy / sung[1]["path"], np.zeros(16000, np.float32), 16000)
    ds = SingingCorpus(corpus_copy)
    assert len(ds) == 6  # headers are fine
    with caplog.at_level(logging.WARNING, logger="models.data.datasets"):
        items = list(ds)
    assert len(items) == 4 and len(ds.skipped) == 2
    with pytest.raises(DataError, match="labels"):
        ds[0]
    with pytest.raises(DataError, match="silent"):
        list(SingingCorpus(corpus_copy, strict=True))


def test_musdb_dataset(corpus_copy: pathlib.Path) -> None:
    ds = MusdbDataset(corpus_copy)
    assert len(ds) == 6
    tr = ds[0]
    assert tr.mixture.shape[0] == 2
    assert tr.mixture.shape == tr.vocals.shape == tr.accompaniment.shape
    assert np.abs(tr.mixture - tr.vocals - tr.accompaniment).max() < 3 / 32768
    test = MusdbDataset(corpus_copy / "musdb", subset="test", sample_rate=8000)
    assert len(test) == 3 and test[0].sample_rate == 8000
    # real MUSDB18-HQ stems (drums / bass / other) instead of accompaniment.wav
    track = ds.tracks[0][1]
    acc = tr.accompaniment
    (track / "accompaniment.wav").unlink()
    write_wav(track / "drums.wav", acc * 0.5, 16000)
    write_wav(track / "bass.wav", acc * 0.25, 16000)
    write_wav(track / "other.wav", acc * 0.25, 16000)
    assert np.abs(MusdbDataset(corpus_copy)[0].accompaniment - acc).max() < 4 / 32768
    # a corrupt track is skipped
    _corrupt(ds.tracks[1][1] / "vocals.wav", "garbage")
    again = MusdbDataset(corpus_copy)
    assert len(again) == 5 and len(list(again)) == 5 and len(again.skipped) == 1
    with pytest.raises(DataError, match="subset"):
        MusdbDataset(corpus_copy, subset="valid")


def test_nus_dataset(corpus_copy: pathlib.Path) -> None:
    ds = NusDataset(corpus_copy)
    assert len(ds) == 6
    pair = ds[0]
    assert pair.sing.ndim == pair.read.ndim == 1
    assert pair.sing_phones[0][2] == "sil"
    assert [p for _, _, p in pair.sing_phones if p != "sil"] == [
        p for _, _, p in pair.read_phones if p != "sil"
    ]
    assert abs(pair.sing_phones[-1][1] - pair.sing.shape[0] / pair.sample_rate) < 1e-3
    (corpus_copy / "nus48e/singer02/read/song001.txt").write_text("0.0 oops\n")
    with pytest.raises(DataError, match="start_s end_s phone"):
        list(NusDataset(corpus_copy, strict=True))
    assert len(list(NusDataset(corpus_copy))) == 5


def test_missing_root_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="no such corpus directory"):
        SingingCorpus(tmp_path / "nope")
    with pytest.raises(DataError, match="no usable clips"):
        SingingCorpus(tmp_path)
    with pytest.raises(DataError, match="no usable tracks"):
        MusdbDataset(tmp_path)
