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
    assert main(["eval", "--checkpoint", str(ck), "--data", str(svc_corpus),
                 "--scores", "clip"]) == 1
