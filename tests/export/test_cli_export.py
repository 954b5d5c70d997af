"""`compress export` end to end on registry presets (onnx: the fastest real format)."""

from __future__ import annotations

import json

import numpy as np

from compress.cli import main
from models.audio import write_wav


def test_export_preset_to_onnx(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "export",
            "lhq-svc-vocoder-unittest",
            "--format",
            "onnx",
            "--precision",
            "fp32",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "lhq-svc-vocoder-unittest_onnxruntime_fp32.inputs.npz",
        "lhq-svc-vocoder-unittest_onnxruntime_fp32.json",
        "lhq-svc-vocoder-unittest_onnxruntime_fp32.onnx",
    ]
    assert "wrote" in printed and "max-abs" in printed and "SQNR" in printed
    side = json.loads((out / files[1]).read_text())
    assert side["example_inputs"] == files[0]
    assert side["metadata"]["source"].startswith("registry preset")


def test_int8_with_calibration_dir(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    t = np.arange(16000) / 16000
    write_wav(clips / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    out = tmp_path / "out"
    code = main(
        [
            "export",
            "lhq-svc-content-unittest",
            "--format",
            "onnx",
            "--precision",
            "int8",
            "--out",
            str(out),
            "--calibration",
            str(clips),
            "--chunk-seconds",
            "0.25",
        ]
    )
    assert code == 0, capsys.readouterr().err
    side = json.loads((out / "lhq-svc-content-unittest_onnxruntime_int8.json").read_text())
    assert side["calibration"]["kind"] == "audio_dir" and side["calibration"]["n_files"] == 1
    assert side["metadata"]["chunk_seconds"] == 0.25
    assert side["inputs"][0]["shape"] == [1, 4000]


def test_errors_are_one_line(tmp_path, capsys):
    code = main(["export", "no-such-model", "--format", "pte", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "neither an existing checkpoint path nor a registered model" in err
    clips = tmp_path / "clips"
    clips.mkdir()
    code = main(
        [
            "export",
            "lhq-svc-vocoder-unittest",
            "--format",
            "onnx",
            "--precision",
            "int8",
            "--out",
            str(tmp_path / "o"),
            "--calibration",
            str(clips),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "no input adapter" in err
    assert not (tmp_path / "o").exists()
