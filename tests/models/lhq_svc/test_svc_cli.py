"""`compress convert` / `compress eval`: success paths and one-line errors with no output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from compress.cli import main
from models import registry
from models.checkpoint import save_checkpoint

SR = 16000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    m = registry.build("lhq-svc-unittest", speakers=["alto", "bass"]).eval()
    d = tmp_path_factory.mktemp("ck")
    return save_checkpoint(d, m, model_name="lhq-svc-unittest", config=m.config,
                           architecture=m.architecture, extra={"speakers": m.speakers})


@pytest.fixture
def song(tmp_path):
    t = np.arange(int(1.3 * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    p = tmp_path / "in.wav"
    sf.write(p, wav.astype(np.float32), SR)
    return p


def _convert(ckpt, inp, out, speaker="bass", *extra):
    return main(["convert", "--checkpoint", str(ckpt), "--input", str(inp), "--speaker", speaker,
                 "--output", str(out), "--steps", "2", *extra])


def test_convert_writes_audio_of_input_length(ckpt, song, tmp_path):
    out = tmp_path / "out.wav"
    assert _convert(ckpt, song, out, "bass", "--pitch", "-3", "--chunk-seconds", "0.5") == 0
    wav, sr = sf.read(out)
    assert sr == SR and wav.shape == (int(1.3 * SR),)
    out2 = tmp_path / "out2.wav"
    assert _convert(ckpt.parent, song, out2, "alto", "--sampler", "ancestral", "--f0",
                    "torch") == 0
    assert sf.read(out2)[0].shape == wav.shape


def test_crepe_f0_on_the_pipelines_frames_and_convert_with_it(ckpt, song, tmp_path):
    from models.data.features import dio_f0
    from models.lhq_svc.pipeline import crepe_frames

    wav = sf.read(song, dtype="float32")[0]
    f0, voiced = crepe_frames(wav, SR, 128, "tiny")
    dio, _ = dio_f0(wav, SR, 128)
    assert f0.shape == voiced.shape == (1, dio.size)  # DIO's frames: 1 + T // hop
    inner = f0[0, 10:-10].numpy()  # the 220 Hz tone (its harmonic at 440 Hz is weaker)
    assert voiced[0, 10:-10].min() == 1.0
    assert np.max(np.abs(1200 * np.log2(inner / 220.0))) < 25.0
    out = tmp_path / "crepe.wav"
    assert _convert(ckpt, song, out, "bass", "--f0", "crepe") == 0
    assert sf.read(out)[0].shape == wav.shape


@pytest.mark.parametrize("case", ["unknown_speaker", "missing_ckpt", "corrupt_wav", "silent",
                                  "missing_input", "bad_temperature"])
def test_convert_bad_input_one_line_no_output(case, ckpt, song, tmp_path, capsys):
    out = tmp_path / "out.wav"
    inp, ck, spk = song, ckpt, "bass"
    if case == "unknown_speaker":
        spk = "tenor"
    elif case == "missing_ckpt":
        ck = tmp_path / "nope.safetensors"
    elif case == "corrupt_wav":
        inp = tmp_path / "bad.wav"
        inp.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    elif case == "silent":
        inp = tmp_path / "silent.wav"
        sf.write(inp, np.zeros(SR, dtype=np.float32), SR)
    elif case == "missing_input":
        inp = tmp_path / "none.wav"
    extra = ["--temperature", "3"] if case == "bad_temperature" else []
    assert _convert(ck, inp, out, spk, *extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("compress convert: error:")
    expect = {"unknown_speaker": "unknown speaker 'tenor'; valid: alto, bass",
              "missing_ckpt": "no such file", "corrupt_wav": "bad.wav",
              "silent": "silent", "missing_input": "none.wav",
              "bad_temperature": "--temperature: temperature=3.0; expected 0 <= T <= 2"}[case]
    assert expect in err[0]
    assert not out.exists()
    assert not list(tmp_path.glob("out.wav*"))


def test_eval_writes_json(svc_corpus, tmp_path):
    import torch

    torch.manual_seed(0)
    m = registry.build("lhq-svc-unittest", speakers=["singer00", "singer01"]).eval()
    ck = save_checkpoint(tmp_path / "ck", m, model_name="lhq-svc-unittest", config=m.config,
                         architecture=m.architecture, extra={"speakers": m.speakers})
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ck), "--data", str(svc_corpus), "--json", str(out),
                 "--steps", "1", "--max-items", "1", "--seconds", "1.5",
                 "--scores", "stoi,neg_lsd,chroma_accuracy"]) == 0
    rep = json.loads(out.read_text())
    conv = rep["conversion"]
    assert set(conv) >= {"stoi", "neg_lsd", "chroma_accuracy", "items"}
    assert -1.0 <= conv["stoi"] <= 1.0 and conv["neg_lsd"] < 0
    assert rep["reconstruction"]["items"] == 1
    assert rep["pitch_judge"] == "crepe-full" and rep["temperature"] is None
    # the judges: CREPE (tiny here, for time) and the search's combined score
    assert main(["eval", "--checkpoint", str(ck), "--data", str(svc_corpus), "--json", str(out),
                 "--steps", "1", "--max-items", "1", "--seconds", "1.5", "--pitch-judge",
                 "tiny", "--temperature", "0", "--scores",
                 "crepe_chroma,neg_crepe_f0_rmse_cents,combined"]) == 0
    rep = json.loads(out.read_text())
    conv = rep["conversion"]
    assert rep["pitch_judge"] == "crepe-tiny" and rep["temperature"] == 0.0
    assert 0.0 <= conv["crepe_chroma"] <= 1.0 and conv["neg_crepe_f0_rmse_cents"] <= 0.0
    assert -1.0 <= conv["combined"] <= 1.0
    assert main(["eval", "--checkpoint", str(ck), "--data", str(svc_corpus),
                 "--scores", "clip"]) == 1


def test_train_on_crepe_f0_records_it_and_convert_uses_it(svc_corpus, song, tmp_path,
                                                          monkeypatch, capsys):
    """`train(f0_method="crepe")` (`compress train --f0 crepe`): the corpus's F0 is CREPE
    tiny's (close to the synthetic corpus's true F0), the checkpoint records it, `convert`
    uses it by default, and a resume on another estimator is refused before any work."""
    from models.checkpoint import read_header
    from models.lhq_svc import pipeline
    from models.lhq_svc.data import load_corpus
    from models.lhq_svc.train import train
    from models.metrics import f0_metrics

    corpus = load_corpus(svc_corpus, f0_method="crepe", max_clips=1)
    for c in corpus.clips:
        m = f0_metrics(c.label_f0, c.f0, 128 / SR)
        assert m["raw_chroma_accuracy"] >= 0.9 and m["f0_rmse_cents"] < 60, (c.id, m)
    out = tmp_path / "ck"
    ck = train("lhq-svc-unittest", svc_corpus, out, components=["decoder"], steps=1,
               max_clips=2, f0_method="crepe", show_progress=False)
    header = read_header(ck)
    assert header.extra["f0_method"] == "crepe"
    used = []
    real = pipeline.crepe_frames
    monkeypatch.setattr(pipeline, "crepe_frames", lambda *a: used.append(a[3]) or real(*a))
    assert main(["convert", "--checkpoint", str(ck), "--input", str(song), "--speaker",
                 header.extra["speakers"][0], "--output", str(tmp_path / "o.wav"),
                 "--steps", "1"]) == 0
    assert used and set(used) == {"tiny"}
    capsys.readouterr()
    assert main(["train", "--model", "lhq-svc-unittest", "--data", str(svc_corpus), "--out",
                 str(out), "--steps", "1", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "was trained on crepe F0; resume it with --f0 crepe (not dio)" in err
