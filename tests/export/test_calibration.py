"""Calibration from a folder of audio: chunks, silence, adapters, the sidecar record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.calibration import (
    calibration_from_dir,
    calibration_from_examples,
    resolve_adapter,
)
from export.errors import ExportError
from models.audio import write_wav

SR = 16000


def _write_clips(folder, seconds=(1.0, 0.6), silent=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SR)) / SR
        wav = 0.6 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
        write_wav(folder / f"clip{i}.wav", wav.astype(np.float32), SR)
    if silent:
        write_wav(folder / "silence.wav", np.zeros(SR, dtype=np.float32), SR)
    return folder


def test_chunks_round_robin_skip_silence(tmp_path, tiny):
    folder = _write_clips(tmp_path / "clips")
    model, x = tiny.wave_net()
    adapter = resolve_adapter(None, model, x)
    calib = calibration_from_dir(folder, adapter, sample_rate=SR, chunk_seconds=0.25, max_batches=5)
    assert len(calib.inputs) == 5
    assert all(inp[0].shape == (1, 4000) for inp in calib.inputs)
    src = calib.source
    assert src["kind"] == "audio_dir" and src["n_files"] == 2  # the silent file is skipped
    assert src["files"] == ["clip0.wav", "clip1.wav"]
    # round-robin: first chunk of clip0, first chunk of clip1, then second chunks...
    first, second = calib.inputs[0][0], calib.inputs[1][0]
    assert not torch.allclose(first, second)


def test_adapter_keeps_control_inputs():
    class Svc(torch.nn.Module):
        def forward(self, wav, speaker, shift):
            return wav * shift

    ex = (torch.zeros(1, 4000), torch.tensor([1]), torch.tensor([2.0]))
    adapter = resolve_adapter(None, Svc(), ex)
    out = adapter(torch.ones(3000), SR)
    assert out[0].shape == (1, 3000) and int(out[1]) == 1 and float(out[2]) == 2.0


def test_no_adapter_for_non_audio_inputs(tiny):
    model, x = tiny.audio_net()  # (1, 8, T) features: not audio
    with pytest.raises(ExportError, match="no input adapter"):
        resolve_adapter(None, model, x)


def test_model_adapter_is_used(tiny):
    model, x = tiny.audio_net()
    model.inputs_from_audio = lambda wav, sr: (wav[: 8 * 40].reshape(1, 8, 40),)
    adapter = resolve_adapter(None, model, x)
    assert adapter(torch.ones(SR), SR)[0].shape == (1, 8, 40)


def test_bad_folders(tmp_path, tiny):
    model, x = tiny.wave_net()
    adapter = resolve_adapter(None, model, x)
    with pytest.raises(ExportError, match="does not exist"):
        calibration_from_dir(tmp_path / "missing", adapter, sample_rate=SR, chunk_seconds=0.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no audio files"):
        calibration_from_dir(tmp_path / "empty", adapter, sample_rate=SR, chunk_seconds=0.5)
    _write_clips(tmp_path / "short", seconds=(0.2,), silent=True)
    with pytest.raises(ExportError, match="no file has a non-silent chunk"):
        calibration_from_dir(tmp_path / "short", adapter, sample_rate=SR, chunk_seconds=0.5)


def test_examples_record_says_so(tiny):
    _, x = tiny.audio_net()
    calib = calibration_from_examples(x)
    assert calib.source["kind"] == "example_inputs"
    assert "not on real audio" in calib.source["note"]


def test_int8_export_calibrated_on_audio_dir(tmp_path, tiny):
    """End to end through export_onnx (fast): the sidecar names the calibration folder."""
    from export.onnx_export import export_onnx

    folder = _write_clips(tmp_path / "clips", seconds=(1.0, 1.0))
    model, x = tiny.wave_net()
    x = (x[0][:, :4000],)
    calib = calibration_from_dir(
        folder, resolve_adapter(None, model, x), sample_rate=SR, chunk_seconds=0.25, max_batches=4
    )
    r = export_onnx(model, x, tmp_path / "out", "wave", precision="int8", calibration=calib)
    side = r.sidecar
    assert side["calibration"]["kind"] == "audio_dir"
    assert side["calibration"]["n_batches"] == 4
    assert side["parity"]["n_inputs"] == 3  # example + 2 calibration chunks
    assert side["parity"]["sqnr_db"] >= 20.0
