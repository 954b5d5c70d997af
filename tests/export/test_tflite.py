"""LiteRT .tflite export (optional [tflite] extra)."""

from __future__ import annotations

import pytest

from export.errors import ExportError
from export.runtime import litert_available
from export.tflite import export_tflite

needs_litert = pytest.mark.skipif(
    not litert_available(),
    reason="the [tflite] extra (ai-edge-litert, litert-torch) is not installed",
)


@pytest.mark.skipif(litert_available(), reason="the [tflite] extra is installed")
def test_without_extra_raises_clear_error(tmp_path, tiny):
    model, x = tiny.audio_net()
    with pytest.raises(ExportError, match=r"\[tflite\] extra"):
        export_tflite(model, x, tmp_path, "tiny")
    assert list(tmp_path.iterdir()) == []


@needs_litert
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflite_export_parity(tmp_path, tiny, precision):
    model, x = tiny.audio_net()
    r = export_tflite(model, x, tmp_path, "tiny", precision=precision, threads=1)
    assert r.path.name == f"tiny_litert_{precision}.tflite"
    par = r.sidecar["parity"]
    if precision == "fp32":
        assert par["max_abs"] <= 1e-4 * par["outputs"][0]["scale"]
    else:
        assert par["sqnr_db"] >= 20.0 and par["max_abs"] > 1e-4
    assert r.sidecar["tool_versions"]["ai-edge-litert"]


@needs_litert
def test_tflite_planted_mismatch_writes_nothing(tmp_path, tiny):
    import torch

    from export.errors import ParityError

    with pytest.raises(ParityError):
        export_tflite(tiny.PlantedMismatch().eval(), (torch.randn(1, 8, 32),), tmp_path, "p")
    assert list(tmp_path.iterdir()) == []
