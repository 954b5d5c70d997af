"""The corpus layout on disk, and determinism by seed."""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import pytest
import soundfile as sf

from compress.cli import main
from models.data.corpus import CorpusConfig, make_singer, synthesize_corpus
from models.data.synth import PHONEMES
from models.errors import DataError


def _digest(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_meta(tiny_corpus: pathlib.Path) -> None:
    meta = json.loads((tiny_corpus / "meta.json").read_text())
    assert meta["sample_rate"] == 16000 and meta["label_hop"] == 128 and meta["seed"] == 0
    assert meta["phonemes"] == list(PHONEMES)
    singers, songs = sorted(meta["singers"]), sorted(meta["songs"])
    assert len(singers) == 3 and len(songs) == 2
    splits = [meta["songs"][s]["split"] for s in songs]
    assert sorted(splits) == ["test", "train"]
    for name, ident in meta["singers"].items():
        for key in (
            "formant_scale",
            "tilt_db",
            "breathiness",
            "vibrato_hz",
            "vibrato_cents",
            "range_midi",
        ):
            assert key in ident, (name, key)
    clips = meta["clips"]
    assert len(clips) == 3 * 2 * 2
    for singer in singers:
        for song in songs:
            split = meta["songs"][song]["split"]
            assert (tiny_corpus / f"dataset_raw/{singer}/{song}.wav").is_file()
            for sub in ("sing", "read"):
                assert (tiny_corpus / f"nus48e/{singer}/{sub}/{song}.wav").is_file()
                lines = (tiny_corpus / f"nus48e/{singer}/{sub}/{song}.txt").read_text().split("\n")
                a, b, ph = lines[1].split()
                assert float(b) > float(a) and ph in PHONEMES
            track = tiny_corpus / f"musdb/{split}/{song}__{singer}"
            stems = {}
            for stem in ("mixture", "vocals", "accompaniment"):
                x, sr = sf.read(track / f"{stem}.wav", dtype="float32")
                assert sr == 16000 and x.ndim == 2 and x.shape[1] == 2
                assert sf.info(track / f"{stem}.wav").subtype == "PCM_16"
                stems[stem] = x
            # mixture = vocals + accompaniment up to PCM rounding
            err = np.abs(stems["mixture"] - stems["vocals"] - stems["accompaniment"]).max()
            assert err < 3 / 32768
            # vocals panned slightly off centre: the channel RMS differ by 0.3 .. 3.5 dB
            rms = np.sqrt((stems["vocals"] ** 2).mean(axis=0))
            assert 0.3 < abs(20 * np.log10(rms[0] / rms[1])) < 3.5
            # the accompaniment is really stereo (instruments panned apart)
            l, r = stems["accompaniment"].T
            assert np.abs(l - r).max() > 0.01
    for c in clips:
        wav, sr = sf.read(tiny_corpus / c["path"], dtype="float32")
        assert wav.ndim == 1 and abs(c["duration_s"] - wav.shape[0] / sr) < 1e-3
        with np.load(tiny_corpus / c["labels"]) as z:
            f0, ph = z["f0"], z["phonemes"]
        assert f0.dtype == np.float32 and ph.dtype == np.int16
        assert f0.shape == ph.shape == (1 + wav.shape[0] // 128,)
        assert ph.max() < len(PHONEMES)
        assert 0.3 < (f0 > 0).mean() < 0.95  # voiced most of the time, silences and consonants


def test_same_song_sung_by_every_singer_in_their_range(tiny_corpus: pathlib.Path) -> None:
    meta = json.loads((tiny_corpus / "meta.json").read_text())
    durations: dict[str, set[float]] = {}
    for c in meta["clips"]:
        if c["style"] != "sung":
            continue
        durations.setdefault(c["song"], set()).add(c["duration_s"])
        lo, hi = meta["singers"][c["singer"]]["range_midi"]
        with np.load(tiny_corpus / c["labels"]) as z:
            f0 = z["f0"]
        midi = 69 + 12 * np.log2(f0[f0 > 0] / 440)
        assert lo - 1.5 < np.percentile(midi, 1) and np.percentile(midi, 99) < hi + 1.5
    assert all(len(d) == 1 for d in durations.values())  # same song, same timing


def test_parallel_ground_truth_is_the_source_performance_in_the_target_voice(
    tiny_corpus: pathlib.Path,
) -> None:
    from models import metrics
    from models.lhq_svc.data import load_corpus

    meta = json.loads((tiny_corpus / "meta.json").read_text())
    singers = sorted(meta["singers"])
    test_songs = [s for s, v in meta["songs"].items() if v["split"] == "test"]
    par = meta["parallel"]
    assert len(par) == len(test_songs) * len(singers) ** 2  # every ordered pair, retakes too
    clips = {c["id"]: c for c in meta["clips"]}
    for p in par:
        src = clips[p["source"]]
        tgt = clips[f"{p['target_singer']}/{p['song']}/sung"]
        assert p["retake"] == (src["singer"] == p["target_singer"])
        assert p["shift_semitones"] == tgt["tonic_midi"] - src["tonic_midi"]
        wav, sr = sf.read(tiny_corpus / p["path"], dtype="float32")
        src_wav, _ = sf.read(tiny_corpus / src["path"], dtype="float32")
        assert sr == 16000 and wav.shape == src_wav.shape  # same performance, same timing
        with np.load(tiny_corpus / p["labels"]) as z, np.load(tiny_corpus / src["labels"]) as s:
            # same phoneme timing, and the source's F0 contour moved by exactly the key change
            # (the labels carry each rendering's own cycle-level jitter: < 1 % per cycle)
            assert np.array_equal(z["phonemes"], s["phonemes"])
            v = (z["f0"] > 0) & (s["f0"] > 0)
            assert v.mean() > 0.3 and np.array_equal(z["f0"] > 0, s["f0"] > 0)
            cents = 1200 * np.log2(z["f0"][v] / s["f0"][v]) - 100 * p["shift_semitones"]
            assert abs(np.median(cents)) < 2.0 and np.percentile(np.abs(cents), 95) < 40.0
        if p["retake"]:  # same performance and voice, another noise stream: close, not equal
            assert np.abs(wav - src_wav).max() > 1e-3
            assert 0.5 < metrics.stoi(src_wav, wav, sr) < 0.98
    corpus = load_corpus(tiny_corpus, splits=("test",))
    held = corpus.split("test")[0]
    other = next(s for s in corpus.singers if s != held.singer)
    ref = corpus.parallel_reference(held.id, other)
    assert ref is not None and not ref.retake and ref.path.is_file()
    assert corpus.parallel_reference(held.id, "nobody") is None


def test_two_runs_same_seed_are_byte_identical_other_seed_differs(tmp_path: pathlib.Path) -> None:
    cfg = CorpusConfig(singers=2, minutes=0.1, seed=0)
    synthesize_corpus(tmp_path / "a", cfg, progress=False)
    synthesize_corpus(tmp_path / "b", cfg, progress=False)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    # 10 files per (singer, song), meta.json, and a wav + labels per (test song, A, B) pair
    assert "meta.json" in da and len(da) == 2 * 2 * 10 + 1 + 1 * 2 * 2 * 2
    assert da == db
    synthesize_corpus(tmp_path / "c", CorpusConfig(singers=2, minutes=0.1, seed=1), progress=False)
    dc = _digest(tmp_path / "c")
    assert dc["meta.json"] != da["meta.json"]
    common = set(da) & set(dc)
    wavs = [k for k in common if k.endswith(".wav")]
    assert wavs and all(da[k] != dc[k] for k in wavs)
    # re-running into an existing corpus replaces it and gives the same bytes again
    synthesize_corpus(tmp_path / "a", cfg, progress=False)
    assert _digest(tmp_path / "a") == db


def test_refuses_a_non_corpus_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synthesize_corpus(tmp_path, CorpusConfig(singers=1, minutes=0.1), progress=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_bad_config_lists_every_problem() -> None:
    with pytest.raises(DataError) as exc:
        CorpusConfig(singers=0, minutes=-1, seed=-2, sample_rate=100)
    msg = str(exc.value)
    for word in ("singers=0", "minutes=-1", "seed=-2", "sample_rate=100"):
        assert word in msg


def test_cli_data_synth(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "corpus"
    rc = main(
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--singers",
            "1",
            "--minutes",
            "0.1",
            "--seed",
            "3",
            "--sample-rate",
            "22050",
            "--voice-noise",
            "0.5",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote corpus to {out.resolve()}" in text
    assert "1 singers, 2 songs (1 train / 1 test)" in text and "23 files" in text  # + retake
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sample_rate"] == 22050 and meta["config"]["voice_noise"] == 0.5
    loud = make_singer(3, 0, 1.0)
    assert meta["singers"]["singer00"]["shimmer"] == pytest.approx(0.5 * loud.shimmer, abs=1e-6)
    assert sf.info(out / "dataset_raw/singer00/song000.wav").samplerate == 22050
    rc = main(["data", "synth", "--out", str(out), "--singers", "0"])
    assert rc == 1
    assert "singers=0" in capsys.readouterr().err
    assert main(["data"]) == 1
    assert "missing sub-command; valid: synth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    help_text = capsys.readouterr().out
    assert "example:\n  compress data synth --out" in help_text
    # the documented default is the one the corpus and `compress run` configs use
    from compress.config import DataConfig
    from models.data.corpus import VOICE_NOISE

    assert f"default {VOICE_NOISE}" in " ".join(help_text.split())
    assert DataConfig().voice_noise == CorpusConfig().voice_noise == VOICE_NOISE
