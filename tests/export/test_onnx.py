"""ONNX export run in onnxruntime: fp32 / int8 parity, metadata, checker, gate."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from export.errors import ParityError
from export.onnx_export import export_onnx
from export.runtime import OnnxRunner, load_onnx_metadata

T = torch.export.Dim("T", min=16, max=256)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("onnx")
    model, x = tiny.audio_net()
    res = {
        prec: export_onnx(
            model,
            x,
            out,
            "tiny",
            precision=prec,
            dynamic_shapes=({2: T},),
            metadata={"sample_rate": 16000, "speakers": 2},
            threads=1,
        )
        for prec in ("fp32", "int8")
    }
    return out, model, res


def test_files_and_checker(exported):
    out, _, res = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny_onnxruntime_fp32.inputs.npz",
        "tiny_onnxruntime_fp32.json",
        "tiny_onnxruntime_fp32.onnx",
        "tiny_onnxruntime_int8.inputs.npz",
        "tiny_onnxruntime_int8.json",
        "tiny_onnxruntime_int8.onnx",
    ]
    for r in res.values():
        onnx.checker.check_model(onnx.load(str(r.path)), full_check=True)
        side = json.loads(r.sidecar_path.read_text())
        assert side["backend"] == "onnxruntime" and side["delegation"] is None
        assert side["tool_versions"]["onnxruntime"]


def test_parity_and_int8_is_quantized(exported):
    _, _, res = exported
    fp32 = res["fp32"].sidecar["parity"]
    assert fp32["max_abs"] <= 1e-4 * fp32["outputs"][0]["scale"]
    int8 = res["int8"].sidecar["parity"]
    assert int8["sqnr_db"] >= 20.0 and int8["max_abs"] > 10 * fp32["max_abs"]
    model = onnx.load_from_string(res["int8"].data)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


def test_metadata_props(exported):
    _, _, res = exported
    meta = load_onnx_metadata(res["int8"].path)
    assert meta["model_name"] == "tiny" and meta["precision"] == "int8"
    assert meta["sample_rate"] == "16000" and meta["speakers"] == "2"


def test_dynamic_length(exported):
    _, model, res = exported
    runner = OnnxRunner(res["fp32"].path, threads=1)
    x = torch.randn(1, 8, 200)
    with torch.no_grad():
        ref = model(x)
    y = runner(x)[0]
    assert float((y - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


def test_planted_mismatch_writes_nothing(tmp_path, tiny):
    model = tiny.PlantedMismatch().eval()
    with pytest.raises(ParityError, match="nothing written"):
        export_onnx(model, (torch.randn(1, 8, 32),), tmp_path, "planted")
    assert list(tmp_path.iterdir()) == []
