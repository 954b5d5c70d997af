"""`compress sing`: speech + melody → singing with an sts checkpoint, end to end on files."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import lfilter

from compress.cli import main
from models import registry
from models.checkpoint import save_checkpoint
from models.sts.preprocess import HOP, SAMPLE_RATE

NUS = Path("/work/data/corpus/nus48e/singer00")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def speech_like(seconds: float, sr: int) -> np.ndarray:
    """A voiced, speech-like signal: gliding harmonics through three formant resonators."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(120.0 * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t))) / sr
    src = sum(np.sin(k * phase) / k for k in range(1, 40))
    out = np.zeros(n)
    for fc, bw in ((700, 110), (1220, 120), (2600, 250)):
        r, th = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        out += lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], src)
    out *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sing")
    model = registry.build("sts-unittest")
    ckpt = save_checkpoint(d / "sts" / "model.safetensors", model, model_name="sts-unittest",
                           config=model.config)
    sep = registry.build("vox-tasnet-unittest")
    other = save_checkpoint(d / "sep.safetensors", sep, model_name="vox-tasnet-unittest",
                            config=registry.get("vox-tasnet-unittest").config())
    speech = d / "speech.wav"
    sf.write(speech, speech_like(1.2, 22050), 22050)  # not 16 kHz: resampled
    mid = mido.MidiFile(ticks_per_beat=480)  # C4 E4 G4, half a second each at 120 bpm
    track = mido.MidiTrack()
    for note in (60, 64, 67):
        track.append(mido.Message("note_on", note=note, velocity=90, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=480))
    mid.tracks.append(track)
    mid.save(str(d / "tune.mid"))
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    corrupt = d / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    zeros = d / "zeros.csv"
    zeros.write_text("time_s,hz\n0.0,0\n0.5,0\n1.0,0\n")
    svc = registry.build("lhq-svc-unittest")
    svc_ckpt = save_checkpoint(d / "svc.safetensors", svc, model_name="lhq-svc-unittest",
                               config=registry.get("lhq-svc-unittest").config())
    melgan = registry.build("lhq-svc-vocoder-unittest")
    melgan_ckpt = save_checkpoint(d / "melgan.safetensors", melgan,
                                  model_name="lhq-svc-vocoder-unittest",
                                  config=registry.get("lhq-svc-vocoder-unittest").config())
    return {"svc": svc_ckpt, "melgan": melgan_ckpt, "ckpt": ckpt.parent, "other": other,
            "speech": speech, "midi": d / "tune.mid",
            "empty": empty, "corrupt": corrupt, "zeros": zeros, "dir": d}


def test_sing_end_to_end(files, tmp_path, capsys):
    out = tmp_path / "sung.wav"
    assert main(["sing", "--model", str(files["ckpt"]), "--speech", str(files["speech"]),
                 "--melody", str(files["midi"]), "--out", str(out), "--gl-iters", "4"]) == 0
    info = sf.info(out)
    assert info.samplerate == SAMPLE_RATE and info.channels == 1
    assert abs(info.frames - 1.5 * SAMPLE_RATE) <= HOP  # the melody's length
    captured = capsys.readouterr()
    assert f"wrote {out}: 1.50 s of singing" in captured.out
    assert "raw chroma accuracy of its pYIN F0 against the melody:" in captured.out
    assert "resampled from 22050 Hz to 16000 Hz" in captured.err
    assert "stretch factor 1.2" in captured.err and "3 note(s) C4-G4" in captured.err


@pytest.mark.parametrize("vocoder", [None, "svc"])
def test_sing_rendered_by_the_vocoder_follows_the_melody(files, tmp_path, capsys, vocoder):
    """An untrained network still sings on pitch: the vocoder's source is the melody's F0."""
    import re

    out = tmp_path / "sung.wav"
    argv = ["sing", "--model", str(files["ckpt"]), "--speech", str(files["speech"]),
            "--melody", str(files["midi"]), "--out", str(out)]
    argv += [] if vocoder is None else ["--vocoder", str(files[vocoder])]  # the default render
    assert main(argv) == 0
    assert abs(sf.info(out).frames - 1.5 * SAMPLE_RATE) <= HOP
    text = capsys.readouterr().out
    assert ("DSP vocoder" if vocoder is None else "svc.safetensors vocoder") in text
    rca = float(re.search(r"against the melody: ([\d.]+)%", text).group(1)) / 100
    assert rca >= 0.9, text


@pytest.mark.parametrize("case", ["melgan", "griffin-lim with vocoder", "gl-iters with vocoder"])
def test_vocoder_errors(files, tmp_path, capsys, case):
    argv = ["sing", "--model", str(files["ckpt"]), "--speech", str(files["speech"]),
            "--melody", str(files["midi"]), "--out", str(tmp_path / "x.wav")]
    if case == "melgan":
        argv += ["--vocoder", str(files["melgan"])]
        want = "not the harmonic-plus-noise vocoder"
    elif case == "griffin-lim with vocoder":
        argv += ["--vocoder", str(files["svc"]), "--render", "griffin-lim"]
        want = "--vocoder renders with the vocoder"
    else:
        argv += ["--render", "vocoder", "--gl-iters", "8"]
        want = "--gl-iters is for --render griffin-lim"
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and want in err[0], err
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("case", ["empty speech", "corrupt midi", "unvoiced melody",
                                  "missing checkpoint", "other family", "track on csv",
                                  "gl-iters"])
def test_errors_are_one_line_without_traceback(files, tmp_path, capsys, case):
    args = {"--model": str(files["ckpt"]), "--speech": str(files["speech"]),
            "--melody": str(files["midi"]), "--out": str(tmp_path / "x.wav")}
    extra: list[str] = []
    expect = {
        "empty speech": ("--speech", files["empty"], "empty.wav: file is empty"),
        "corrupt midi": ("--melody", files["corrupt"], "corrupt.mid: not a readable MIDI file"),
        "unvoiced melody": ("--melody", files["zeros"], "zeros.csv: the melody has no voiced"),
        "missing checkpoint": ("--model", files["dir"] / "nope.safetensors", "no such file"),
        "other family": ("--model", files["other"], "is a separation checkpoint"),
        "track on csv": ("--melody", files["zeros"], "MIDI melodies only"),
        "gl-iters": ("--gl-iters", "0", "--gl-iters 0: expected >= 1"),
    }[case]
    args[expect[0]] = str(expect[1])
    if case == "track on csv":
        extra = ["--track", "1"]
    argv = ["sing", *[a for kv in args.items() for a in kv], *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("compress sing: error:") and expect[2] in err[0], err
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(not (NUS / "read" / "song000.wav").is_file(),
                    reason="NUS-48E-style corpus not present")
def test_real_speech_and_sung_reference(files, tmp_path, capsys):
    """The first 2 s of a read lyric, sung to the pYIN contour of 2 s of the sung version."""
    speech, sr = sf.read(NUS / "read" / "song000.wav", frames=2 * 16000, dtype="float32")
    sung, sr2 = sf.read(NUS / "sing" / "song000.wav", frames=2 * 16000, dtype="float32")
    sf.write(tmp_path / "speech.wav", speech, sr)
    sf.write(tmp_path / "ref.wav", sung, sr2)
    out = tmp_path / "sung.wav"
    assert main(["sing", "--model", str(files["ckpt"]), "--speech", str(tmp_path / "speech.wav"),
                 "--melody", str(tmp_path / "ref.wav"), "--out", str(out), "--gl-iters",
                 "4"]) == 0
    assert abs(sf.info(out).duration - 2.0) <= 2 * HOP / SAMPLE_RATE
    assert "sung reference, pYIN F0" in capsys.readouterr().err
