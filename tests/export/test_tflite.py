"""LiteRT .tflite export (the [tflite] extra, which `make` installs).

Nothing here is skipped: without the extra the export tests fail with the install hint, and the
"extra missing" path is exercised with the availability check patched out.
"""

from __future__ import annotations

import pytest

import export.tflite as tflite_module
from export.errors import ExportError
from export.tflite import export_tflite


def test_without_extra_raises_clear_error(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(tflite_module, "litert_available", lambda: False)
    model, x = tiny.audio_net()
    with pytest.raises(ExportError, match=r"tiny \(tflite fp32\): .*\[tflite\] extra"):
        export_tflite(model, x, tmp_path, "tiny")
    assert list(tmp_path.iterdir()) == []


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


def test_tflite_planted_mismatch_writes_nothing(tmp_path, tiny):
    import torch

    from export.errors import ParityError

    with pytest.raises(ParityError):
        export_tflite(tiny.PlantedMismatch().eval(), (torch.randn(1, 8, 32),), tmp_path, "p")
    assert list(tmp_path.iterdir()) == []
