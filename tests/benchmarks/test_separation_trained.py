"""benchmarks/separation.py, trained part: ``--train-corpus --quick --size unittest`` on a tiny
corpus trains, evaluates, exports and times the separators and merges one record per model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
SR = 8000




def _write_corpus(root: Path) -> Path:
    """3 training and 2 test songs of stereo 8 kHz: a vibrato tone over band noise."""
    rng = np.random.default_rng(0)
    for subset, names, seconds in (("train", ["a", "b", "c"], 3.0), ("test", ["x", "y"], 2.0)):
        for i, name in enumerate(names):
            n = int(seconds * SR)
            t = np.arange(n) / SR
            f0 = (180.0 + 40 * i) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
            phase = 2 * np.pi * np.cumsum(f0) / SR
            voice = sum(0.2 / h * np.sin(h * phase) for h in range(1, 6))
            vocals = np.stack([voice, 0.8 * voice], axis=1)
            acc = np.cumsum(rng.standard_normal((n, 2)), axis=0)
            acc = 0.3 * (acc - acc.mean(0)) / np.abs(acc - acc.mean(0)).max()
            d = root / "musdb" / subset / f"{name}{i}"
            d.mkdir(parents=True)
            for stem, x in (("vocals", vocals), ("accompaniment", acc),
                            ("mixture", vocals + acc)):
                sf.write(d / f"{stem}.wav", x.astype(np.float32), SR, subtype="FLOAT")
    return root / "musdb"


@pytest.fixture
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_trained_run_merges_finite_records_with_latency(tmp_path, capsys, _one_thread,
                                                              load_benchmark):
    bench = load_benchmark("separation")
    corpus = _write_corpus(tmp_path / "corpus")
    work = tmp_path / "work"
    out = tmp_path / "separation.json"
    rc = bench.main(["--train-corpus", str(corpus), "--work", str(work), "--quick",
                     "--size", "unittest", "--models", "unet5:4", "--json", str(out)])
    assert rc == 0
    records = json.loads(out.read_text())
    trained = [r for r in records if "trained" in r]
    assert [(r["model"], r["k"]) for r in trained] == [("unet5", 4)]
    r = trained[0]["trained"]
    assert r["preset"] == "cws-unet5-unittest"
    for key in ("sdr", "sdri", "si_sdr", "sdr_accompaniment", "sdri_accompaniment",
                "si_sdr_accompaniment", "sdr_int8", "latency_ms_per_audio_s",
                "latency_fp32_ms_per_audio_s"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r[key])
    assert r["latency_ms_per_audio_s"] > 0 and r["latency_fp32_ms_per_audio_s"] > 0
    assert r["test_songs"] == 2 and len(r["sdr_per_song"]) == 2
    assert r["train_steps"] == 4 and r["demo_params"] > 0
    for precision in ("int8", "fp32"):
        assert Path(r[f"pte_{precision}"]).is_file()
        assert r[f"parity_{precision}"]["passed"] is True
    assert set(r["museval_median"]) == {"vocals", "accompaniment"}
    assert all(rec["params"] > 0 for rec in records)  # the static records beside it
    saved = json.loads((work / "trained.json").read_text())
    assert len(saved["records"]) == 1 and saved["verdict"][0].startswith(("PASS", "FAIL"))
    assert "UNet-5 K=4: vocal SDRi" in capsys.readouterr().out
    # --trained merges the saved records again without training
    assert bench.main(["--trained", str(work / "trained.json")]) == 0
    assert "UNet-5 K=4: vocal SDRi" in capsys.readouterr().out


def _record(model: str, k: int, sdr: dict[str, float], latency: float) -> dict:
    med = float(np.median(list(sdr.values())))
    return {"model": model, "k": k, "sdr": med, "sdri": med - 1.0, "test_songs": len(sdr),
            "sdr_per_song": sdr, "latency_ms_per_audio_s": latency}


def test_verdict_checks_sdri_and_the_k4_k1_pair_with_the_per_song_noise(load_benchmark):
    bench = load_benchmark("separation")
    one = _record("mdensenet", 1, {"a": 5.0, "b": 6.0, "c": 7.0}, 40.0)
    four = _record("mdensenet", 4, {"a": 5.5, "b": 6.4, "c": 6.9}, 12.0)
    lines = bench.verdict([one, four])
    assert lines[0].startswith("PASS MDN K=1") and lines[1].startswith("PASS MDN K=4")
    assert lines[2].startswith("PASS MDN K=4 vs K=1: SDR 6.40 vs 6.00 dB (not lower")
    assert "K4 >= K1 on 2/3 songs" in lines[2] and "12.0 vs 40.0" in lines[2]
    d = bench.paired_difference(four["sdr_per_song"], one["sdr_per_song"])
    assert d["songs"] == 3 and d["mean"] == pytest.approx(0.2667, abs=1e-3)
    assert d["ci95_half_width"] == pytest.approx(1.96 * np.std([0.5, 0.4, -0.1], ddof=1)
                                                 / np.sqrt(3))
    worse = _record("mdensenet", 4, {"a": 4.0, "b": 5.0, "c": 6.0}, 50.0)
    worse["sdri"] = -0.5
    lines = bench.verdict([one, worse])
    assert lines[1].startswith("FAIL MDN K=4: vocal SDRi -0.50 dB")
    assert lines[2].startswith("FAIL MDN K=4 vs K=1") and "(not lower)" in lines[2]


def test_every_demo_and_unittest_preset_has_a_training_budget():
    from models.separation.presets import STEMS
    from models.separation.train import PRESET_TRAINING

    for stem in STEMS.values():
        demo, tiny = PRESET_TRAINING[f"{stem}-demo"], PRESET_TRAINING[f"{stem}-unittest"]
        assert demo.problems() == [] and tiny.problems() == []
        assert demo.steps <= 600 and demo.val_every < demo.steps and demo.patience >= 2
        assert tiny.steps <= 8 and not tiny.val_sdr
    assert not any(name in PRESET_TRAINING for name in STEMS.values())  # paper size: defaults


def test_quick_run_of_the_other_separators(tmp_path, capsys, _one_thread, load_benchmark):
    """``--others``: Vox-TasNet (and whatever else is named) through the same train / evaluate /
    export / time path, with its size at the paper's hyper-parameters, the parameter count its
    hyper-parameters give, and the stereo asymmetry score."""
    bench = load_benchmark("separation")
    corpus = _write_corpus(tmp_path / "corpus")
    work = tmp_path / "work"
    out = tmp_path / "separation.json"
    rc = bench.main(["--train-corpus", str(corpus), "--work", str(work), "--quick",
                     "--skip-cws", "--others", "vox-tasnet-causal-unittest", "--json", str(out)])
    assert rc == 0
    records = json.loads(out.read_text())
    (other,) = [r for r in records if r["k"] is None]
    r = other["trained"]
    assert r["model"] == r["preset"] == "vox-tasnet-causal-unittest"
    assert r["demo_params"] == r["expected_params"] == r["size"]["params"]
    paper = r["paper_size"]
    assert paper["name"] == "vox-tasnet-causal" and paper["params"] == 5_117_105
    assert 80 < paper["gmacs"] < 90  # 3 s of stereo 44.1 kHz through the paper-size model
    for key in ("sdr", "sdri", "si_sdr", "ssa_si_sdr", "sdr_int8", "latency_ms_per_audio_s",
                "latency_fp32_ms_per_audio_s", "peak_rss_mb_int8"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r[key])
    for precision in ("int8", "fp32"):
        assert r[f"parity_{precision}"]["passed"] is True
    text = capsys.readouterr().out
    assert "vox-tasnet-causal-unittest: vocal SDRi" in text
    assert f"{r['demo_params']} parameters, {r['demo_params']} from its hyper-parameters" in text
    assert bench.main(["--trained", str(work / "others.json")]) == 0
    assert "vox-tasnet-causal-unittest: int8" in capsys.readouterr().out
