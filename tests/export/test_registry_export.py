"""Acceptance: EVERY registered ``*-unittest`` preset exports to .pte (fp32, int8) and .onnx (fp32)
and matches eager PyTorch in the real runtimes (ExecuTorch, onnxruntime).

Presets are enumerated from the registry, so a new family is covered as soon as it registers.
Untrained presets may zero-initialise output layers (diffusion decoders do), which would make
the parity figures vacuous; the test therefore fills every all-zero parameter with seeded
small noise, saves a checkpoint and exports that checkpoint (which also covers the checkpoint
path of ``export.api.export_model``).
"""

from __future__ import annotations

import pytest

from export.api import export_model
from export.common import fill_zero_parameters
from export.errors import ExportError
from models import registry
from models.checkpoint import save_checkpoint

UNITTEST_PRESETS = [n for n in registry.names() if n.endswith("-unittest")]
CASES = [("pte", "fp32"), ("pte", "int8"), ("onnx", "fp32")]

# Presets that do not export yet, with the measured error (the gate is NOT relaxed for them).
# strict xfail: when the model is fixed the test XPASSes and fails; then delete the entry.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}
# Whole pipelines unroll the sampler: lowering takes minutes on the 2-core machine.
SLOW_COMPONENTS = {"pipeline"}
# int8 .pte of the dense separators: PT2E calibration and XNNPACK lowering of their ~200
# quantized nodes take 1.5-2 min each here; the UNet separators cover the separator family's
# int8 path (the same filter bank, STFT and mask head) within the suite's time budget, and
# benchmarks/separation.py exports every architecture at int8.
# The whole LHQ-SVC pipeline's .pte (1 and 1.5 min here: ExecuTorch's XNNPACK lowering of its
# 34 partitions) is exported and parity-gated by other tests of the suite, on trained models:
# fp32 by tests/models/lhq_svc/test_pitch.py (`compress export` of a checkpoint, then run in the
# runtime), int8 by tests/compress/test_run.py (the student of `compress run`).
# Chimera .pte programs: torch.export unrolls the LSTM frame by frame, so each lowering took
# 45-200 s here (issue 25; all 12 Chimera cases passed when run, 12 min in all). The suite keeps
# the streaming program (what an app ships; its LSTM, STFT and mask head are the separator's)
# at fp32 and int8, and every Chimera preset's .onnx; chimera-mi-unittest is chimera-unittest's
# network (alpha only changes the loss).
# sts-unittest (issue 26): the exported module is the device program (models/sts/program.py:
# no phoneme decoder, the GRU states explicit); its fp32 and int8 .pte pass the gate, and
# tests/models/sts/test_program.py exports both (slow) from a seeded checkpoint and runs the fp32
# one chunk after chunk through `compress sing`'s loader. Here they would cost about 40 s
# together on the loaded 2-core machine (fp32: 164 ops, lowered in 10-13 s; int8: 413 ops,
# quantized and lowered in 25-35 s). An untrained sts-unittest clamps its whole output to 0 for
# about one random init in three, which fails the vacuity check here (the .onnx case included:
# its init depends on the tests run before it in the worker), and an output that peaks near
# 0.01 is mostly int8 noise (SQNR 4.6 dB on one such init, 49 dB on the seeded one). The int8
# run-time failure (delegate error 0x10) came from the softplus output of the first network: an
# int8 XNNPACK partition ending in the last conv's output and its exp (softplus's other ops ran
# on portable kernels) handed one of them back with a permuted shape; the output is a clamp now.
# chimera-mi-unittest's .onnx (19 s here): the same network and export as chimera-unittest's,
# whose .onnx is in the suite (alpha, 0 for the mask-inference variant, only weighs the loss).
# vox-tasnet-causal-unittest's .pte (26 s at int8 here): tests/benchmarks/
# test_separation_trained.py::test_quick_run_of_the_other_separators exports it at fp32 and int8
# from a trained checkpoint through the same export_model and asserts both parity gates passed.
# cws-unet5-unittest's .pte (11 s fp32, 15 s int8 here): tests/benchmarks/
# test_separation_trained.py::test_quick_trained_run_merges_finite_records_with_latency exports
# both from a trained checkpoint through the same export_model and asserts both gates passed
# (cws-unet6-unittest keeps the UNet separators' .pte here).
# lhq-svc-decoder-unittest's int8 .pte (37-45 s here): tests/compress/test_run.py exports the
# trained student's decoder alone at int8 (the run's decoder_pte_int8) and asserts its gate,
# delegation and SQNR as here; its fp32 .pte stays in this test.
NOT_IN_SUITE = {("sts-unittest", "pte", "fp32"),
                ("cws-unet5-unittest", "pte", "fp32"),
                ("cws-unet5-unittest", "pte", "int8"),
                ("lhq-svc-decoder-unittest", "pte", "int8"),
                ("chimera-mi-unittest", "onnx", "fp32"),
                ("vox-tasnet-causal-unittest", "pte", "fp32"),
                ("vox-tasnet-causal-unittest", "pte", "int8"),
                ("sts-unittest", "pte", "int8"),
                ("cws-mdensenet-unittest", "pte", "int8"),
                ("cws-mmdensenet-unittest", "pte", "int8"),
                ("lhq-svc-unittest", "pte", "fp32"),
                ("lhq-svc-unittest", "pte", "int8"),
                ("chimera-unittest", "pte", "fp32"),
                ("chimera-unittest", "pte", "int8"),
                ("chimera-mi-unittest", "pte", "fp32"),
                ("chimera-mi-unittest", "pte", "int8"),
                ("chimera-causal-unittest", "pte", "fp32"),
                ("chimera-causal-unittest", "pte", "int8")}


def _params() -> list:
    out = []
    for name in UNITTEST_PRESETS:
        for fmt, precision in CASES:
            if (name, fmt, precision) in NOT_IN_SUITE:
                continue
            marks = []
            if registry.get(name).component in SLOW_COMPONENTS:
                marks.append(pytest.mark.slow)
            reason = KNOWN_FAILURES.get((name, fmt, precision))
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True, raises=ExportError))
            out.append(
                pytest.param(name, fmt, precision, marks=marks, id=f"{name}-{fmt}-{precision}")
            )
    return out


def test_there_are_presets():
    assert UNITTEST_PRESETS, "no *-unittest presets registered"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            spec = registry.get(name)
            model = spec.build().eval()
            fill_zero_parameters(model)
            path = tmp_path_factory.mktemp(name) / "model.safetensors"
            save_checkpoint(path, model, model_name=name, config=spec.config())
            cache[name] = path
        return cache[name]

    return get


@pytest.mark.parametrize(("name", "fmt", "precision"), _params())
def test_preset_exports_with_parity(name, fmt, precision, checkpoints, tmp_path):
    ckpt = checkpoints(name)
    r = export_model(ckpt, fmt, precision, tmp_path, name=name, threads=1)
    ext = {"pte": "pte", "onnx": "onnx"}[fmt]
    backend = {"pte": "xnnpack", "onnx": "onnxruntime"}[fmt]
    assert r.path.name == f"{name}_{backend}_{precision}.{ext}" and r.path.is_file()
    assert r.sidecar_path.is_file()
    par = r.sidecar["parity"]
    assert par["passed"]
    for out in par["outputs"]:
        scale = out["scale"]
        assert scale > 1e-3, f"{name}: output {out['index']} is ~0, parity would be vacuous"
        if precision == "fp32":
            assert out["max_abs"] <= 1e-4 * scale
        else:
            assert out["sqnr_db"] == "inf" or out["sqnr_db"] >= 20.0
    if fmt == "pte":
        assert r.sidecar["delegation"]["hot_fallbacks"] == {}
        assert r.sidecar["metadata"]["model_name"] == name
        assert r.sidecar["metadata"]["sample_rate"] == registry.get(name).audio.sample_rate
