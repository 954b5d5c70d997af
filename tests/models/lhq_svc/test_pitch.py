"""`--pitch auto`: per-singer F0 statistics, the whole-semitone shift, and `compress convert`
with a checkpoint and with an exported whole-pipeline `.pte` (run as the app runs it)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from compress.cli import main
from models import registry
from models.checkpoint import save_checkpoint
from models.errors import ModelsError
from models.lhq_svc.pitch import auto_pitch, choose_shift, singer_f0_stats, source_median_f0

SR = 16000
STATS = {"alto": {"median_hz": 330.0}, "bass": {"median_hz": 110.0}}


def _tone(hz: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * np.sin(4 * np.pi * hz * t)).astype("f4")


def test_singer_stats_are_medians_of_voiced_frames():
    f0a = np.array([0, 200, 210, 220, 0, 230, 240], dtype=np.float32)
    f0b = np.array([100, 110, 120, 0, 0], dtype=np.float32)
    clips = [SimpleNamespace(singer="a", f0=f0a, voiced=f0a > 0),
             SimpleNamespace(singer="b", f0=f0b, voiced=f0b > 0),
             SimpleNamespace(singer="c", f0=np.zeros(4, "f4"), voiced=np.zeros(4, bool))]
    st = singer_f0_stats(clips, SR, 128)
    assert set(st) == {"a", "b"}  # no voiced frame, no statistics
    assert st["a"]["median_hz"] == 220.0 and st["b"]["median_hz"] == 110.0
    assert st["a"]["voiced_seconds"] == round(5 * 128 / SR, 2)
    assert st["a"]["p10_hz"] < 220 < st["a"]["p90_hz"]


@pytest.mark.parametrize("src,tgt,want", [(220, 110, -12), (220, 330, 7), (220, 440, 12),
                                          (220, 226, 0), (220, 233.1, 1), (100, 466, 27),
                                          (50, 1000, 36), (1000, 50, -36)])
def test_shift_is_whole_semitones_and_clamped(src, tgt, want):
    assert choose_shift(src, tgt) == want


def test_source_median_from_audio_and_too_little_voice():
    assert abs(12 * np.log2(source_median_f0(_tone(196.0), SR, 128, "x") / 196.0)) < 0.1
    with pytest.raises(ModelsError, match="too little.*--pitch N"):
        source_median_f0(_tone(196.0, seconds=0.1), SR, 128, "short.wav")
    ap = auto_pitch(_tone(196.0), SR, 128, "bass", {"bass": 98.0}, "x")
    assert ap.semitones == -12 and "shift -12 semitones" in ap.describe()
    with pytest.raises(ModelsError, match="no F0 statistics for singer 'tenor'"):
        auto_pitch(_tone(196.0), SR, 128, "tenor", {"bass": 98.0}, "x")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    m = registry.build("lhq-svc-unittest", speakers=["alto", "bass"]).eval()
    d = tmp_path_factory.mktemp("ck")
    kw = dict(model_name="lhq-svc-unittest", config=m.config, architecture=m.architecture)
    with_stats = save_checkpoint(d / "with", m, extra={"speakers": m.speakers, "f0_stats": STATS},
                                 **kw)
    without = save_checkpoint(d / "without", m, extra={"speakers": m.speakers}, **kw)
    return with_stats, without


@pytest.fixture
def song(tmp_path):
    p = tmp_path / "in.wav"
    sf.write(p, _tone(220.0, 1.3), SR)
    return p


def test_convert_pitch_auto_passes_the_chosen_shift(ckpts, song, tmp_path, capsys, monkeypatch):
    from models.lhq_svc.pipeline import SVCPipeline

    seen = []
    real = SVCPipeline.convert_long

    def spy(self, audio, speaker, shift=0.0, **kw):
        seen.append((speaker, shift))
        return real(self, audio, speaker, shift, **kw)

    monkeypatch.setattr(SVCPipeline, "convert_long", spy)
    for spk, want in (("bass", -12.0), ("alto", 7.0)):
        out = tmp_path / f"{spk}.wav"
        assert main(["convert", "--checkpoint", str(ckpts[0]), "--input", str(song), "--speaker",
                     spk, "--output", str(out), "--steps", "1", "--pitch", "auto"]) == 0
        assert seen[-1] == (["alto", "bass"].index(spk), want)
        err = capsys.readouterr().err
        assert f"shift {want:+.0f} semitones" in err
        assert sf.info(out).frames == int(1.3 * SR)


def test_convert_pitch_auto_without_stats_is_one_clear_line(ckpts, song, tmp_path, capsys):
    out = tmp_path / "o.wav"
    assert main(["convert", "--checkpoint", str(ckpts[1]), "--input", str(song), "--speaker",
                 "bass", "--output", str(out), "--pitch", "auto"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no per-singer F0 statistics" in err[0] and "--pitch N" in err[0]
    assert not out.exists()
    with pytest.raises(SystemExit) as e:  # argparse: a usage error naming what is accepted
        main(["convert", "--checkpoint", str(ckpts[1]), "--input", str(song), "--speaker",
              "bass", "--output", str(out), "--pitch", "up"])
    assert e.value.code == 2
    assert "'up': expected semitones (e.g. -3, 2.5) or 'auto'" in capsys.readouterr().err


@pytest.mark.slow
def test_convert_with_the_exported_program(ckpts, song, tmp_path, capsys):
    """The .pte carries the singer names and F0 medians; `convert --model X.pte` runs it in
    the ExecuTorch runtime, chunked like the app, and matches the checkpoint's own chunked
    conversion through the same chunking (ChunkedSVC over the eager module)."""
    import torch

    from compress.svc_adapter import ChunkedSVC, load_pte_svc
    from models.checkpoint import load_model

    exp = tmp_path / "exp"
    assert main(["export", str(ckpts[0]), "--format", "pte", "--out", str(exp)]) == 0
    pte = exp / "lhq-svc-unittest_xnnpack_fp32.pte"
    sidecar = json.loads((exp / "lhq-svc-unittest_xnnpack_fp32.json").read_text())
    # this is the suite's fp32 export of the whole pipeline (test_registry_export leaves it to
    # this test): parity-gated, every hot op delegated
    assert sidecar["parity"]["passed"] and sidecar["delegation"]["hot_fallbacks"] == {}
    assert sidecar["parity"]["outputs"][0]["max_abs"] <= 1e-4 * sidecar["parity"]["outputs"][0][
        "scale"]
    meta = sidecar["metadata"]
    assert json.loads(meta["speaker_names"]) == ["alto", "bass"]
    assert json.loads(meta["speaker_f0_hz"]) == [330.0, 110.0]
    capsys.readouterr()
    out = tmp_path / "phone.wav"
    assert main(["convert", "--model", str(pte), "--input", str(song), "--speaker", "bass",
                 "--output", str(out), "--pitch", "auto"]) == 0
    cap = capsys.readouterr()
    assert "shift -12 semitones" in cap.err and "as on the phone" in cap.out
    y, sr = sf.read(out, dtype="float32")
    assert sr == SR and len(y) == int(1.3 * SR) and np.isfinite(y).all()
    svc, _ = load_pte_svc(pte)
    model, _ = load_model(ckpts[0])
    eager = ChunkedSVC(model.eval(), svc.chunk, ["alto", "bass"], SR, "eager")
    x, _ = sf.read(song, dtype="float32")
    with torch.no_grad():
        ref = eager.convert_long(x, 1, -12.0)
    # the written file is 16-bit PCM: compare within its quantization and the fp32 program's
    # parity (the export gate: 1e-4 of the output scale)
    assert np.max(np.abs(y - np.clip(ref, -1, 1))) < 2e-4 + 1e-4 * np.max(np.abs(ref))
    assert main(["convert", "--model", str(exp / "lhq-svc-unittest_xnnpack_fp32.json"),
                 "--input", str(song), "--speaker", "bass", "--output", str(out)]) == 1
